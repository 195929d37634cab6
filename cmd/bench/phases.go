package main

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/EventStore/EventStore-Client-Go/v4/esdb"
	"github.com/google/uuid"
	"github.com/twmb/franz-go/pkg/kgo"

	"rxflow/commands"
	"rxflow/domain"
	"rxflow/events"
	"rxflow/infra/eventstore"
	"rxflow/infra/kafka"
	"rxflow/infra/kafka/kgoopts"
)

// bench holds what every phase needs.
type bench struct {
	opts    options
	brokers []string
	runs    int // numbers the topics, groups and prefixes of each run
	quiet   *slog.Logger
	env     []string // added to the children's environment: Kafka security, tracing
	// upstream is the restart phase's producer, one client for the whole
	// phase as a service's would be, so that no measured time includes a
	// client's start.
	upstream *kgo.Client
}

// consumerRun is one child consuming a backlog.
type consumerRun struct {
	throughput
	rss int64 // the child's peak RSS, bytes
}

// cpuPer is the CPU time per message of the child and of this process
// (the embedded broker and store, when they run here).
func (r consumerRun) cpuPer() (child, parent time.Duration) {
	if r.messages == 0 {
		return 0, 0
	}
	return r.childCPU / time.Duration(r.messages), r.parentCPU / time.Duration(r.messages)
}

func (b *bench) next(kind string) (topic, group, prefix string) {
	b.runs++
	id := fmt.Sprintf("%s-%d-%d", kind, time.Now().Unix(), b.runs)
	return "bench." + id, "bench-" + id, id
}

func (b *bench) childArgs(conn, topic, group, role string) []string {
	args := []string{"-brokers", strings.Join(b.brokers, ","), "-esdb", conn, "-topic", topic, "-group", group,
		"-partitions", strconv.Itoa(b.opts.partitions)}
	if b.opts.cpuprofile != "" {
		args = append(args, "-cpuprofile", fmt.Sprintf("%s.%s.%d", b.opts.cpuprofile, role, b.runs))
	}
	return args
}

// backlog pre-produces n commands to a fresh topic, then lets a child of the
// given role consume them and measures its rate.
func (b *bench) backlog(ctx context.Context, role, conn string, n int) (consumerRun, error) {
	topic, group, prefix := b.next(role)
	if err := kafka.EnsureTopics(ctx, b.kafka(), int32(b.opts.partitions), topic); err != nil {
		return consumerRun{}, err
	}
	cmds := workload(prefix, n, b.opts.prescriptions)
	progress("%s: producing %d commands over %d prescriptions to %s", role, n, b.opts.prescriptions, topic)
	if err := produceAll(ctx, b.kafka(), topic, cmds); err != nil {
		return consumerRun{}, err
	}
	c, err := startChild(ctx, role, b.env, b.childArgs(conn, topic, group, role)...)
	if err != nil {
		return consumerRun{}, err
	}
	defer c.stop()
	tp, err := c.waitHandled(ctx, n, role)
	if err != nil {
		return consumerRun{}, err
	}
	rss, err := c.peakRSS()
	run := consumerRun{throughput: tp, rss: rss}
	childCPU, parentCPU := run.cpuPer()
	progress("%s: %.0f/s, peak RSS %.0f MiB, CPU per message %s in the consumer + %s in the bench process", role, tp.rate, float64(rss)/(1<<20), childCPU, parentCPU)
	return run, err
}

// median keeps the run with the median rate, and the highest RSS of all.
func median(runs []consumerRun) consumerRun {
	sorted := slices.SortedFunc(slices.Values(runs), func(a, b consumerRun) int { return cmp.Compare(a.rate, b.rate) })
	out := sorted[len(sorted)/2]
	for _, r := range runs {
		out.rss = max(out.rss, r.rss)
	}
	return out
}

// kafka is how the bench process reaches the brokers.
func (b *bench) kafka() kafka.Config {
	return kafka.Config{Brokers: b.brokers, Security: b.opts.security}
}

func newProducer(cfg kafka.Config, opts ...kgo.Opt) (*kgo.Client, error) {
	security, err := kgoopts.Security(cfg.Security)
	if err != nil {
		return nil, err
	}
	opts = append([]kgo.Opt{kgo.SeedBrokers(cfg.Brokers...), kgo.ProducerBatchMaxBytes(1 << 20)}, opts...)
	return kgo.NewClient(append(opts, security...)...)
}

func produceAll(ctx context.Context, cfg kafka.Config, topic string, cmds []command) error {
	cl, err := newProducer(cfg, kgo.MaxBufferedRecords(1<<16))
	if err != nil {
		return err
	}
	defer cl.Close()
	var mu sync.Mutex
	var firstErr error
	for _, c := range cmds {
		cl.Produce(ctx, c.record(topic), func(_ *kgo.Record, err error) {
			if err != nil {
				mu.Lock()
				firstErr = cmp.Or(firstErr, err)
				mu.Unlock()
			}
		})
	}
	if err := cl.Flush(ctx); err != nil {
		return err
	}
	return firstErr
}

// latencies measures each command from just before it is produced to when
// its event arrives on a live $all subscription, producing at rate per
// second for the given duration while a processor child runs.
type latencies struct {
	rate          float64
	n             int
	p50, p99, max time.Duration
	// stamped is the time to the server's "created" stamp, set when the
	// append is taken into a commit, before the fsync: a lower bound.
	stampedP50, stampedP99 time.Duration
	rss                    int64
	// handling is the processor's own time from receiving a command to
	// its durable append (bucket upper bounds of its histogram).
	handlingP50, handlingP99 float64
	// wait is the time from a command's record timestamp (the bench's
	// clock, when produced) to the start of its handling (bucket bounds).
	waitP50, waitP99 float64
}

func (b *bench) latency(ctx context.Context, conn string, rate float64, d time.Duration) (latencies, error) {
	topic, group, prefix := b.next("latency")
	if err := kafka.EnsureTopics(ctx, b.kafka(), int32(b.opts.partitions), topic); err != nil {
		return latencies{}, err
	}
	c, err := startChild(ctx, roleProcessor, b.env, b.childArgs(conn, topic, group, "latency")...)
	if err != nil {
		return latencies{}, err
	}
	defer c.stop()
	// Warm up until the child has joined its group and handles commands.
	warm := workload(prefix+"-warm", 200, 50)
	if err := produceAll(ctx, b.kafka(), topic, warm); err != nil {
		return latencies{}, err
	}
	if err := c.waitCount(ctx, len(warm)); err != nil {
		return latencies{}, err
	}

	before, err := c.handlingBuckets(ctx)
	if err != nil {
		return latencies{}, err
	}
	waitBefore, err := c.waitBuckets(ctx)
	if err != nil {
		return latencies{}, err
	}
	n := max(1, int(rate*d.Seconds()))
	cmds := workload(prefix, n, b.opts.prescriptions)
	index := make(map[string]int, n)
	for i, c := range cmds {
		index[c.id] = i
	}
	base := time.Now()
	sent := make([]atomic.Int64, n) // nanoseconds since base
	got := make([]time.Duration, 0, n)
	stamped := make([]time.Duration, 0, n)
	subCtx, cancel := context.WithCancel(ctx)
	defer cancel()
	received, err := subscribe(subCtx, conn, func(commandID string, created time.Time) bool {
		i, ok := index[commandID]
		if !ok {
			return false
		}
		at := time.Duration(sent[i].Load())
		got = append(got, time.Since(base)-at)
		stamped = append(stamped, created.Sub(base)-at)
		return len(got) == n
	})
	if err != nil {
		return latencies{}, err
	}

	cl, err := newProducer(b.kafka(), kgo.ProducerLinger(0))
	if err != nil {
		return latencies{}, err
	}
	defer cl.Close()
	progress("latency: producing %d commands at %.0f/s", n, rate)
	var produceErr atomic.Pointer[error]
	for i := 0; i < n; {
		due := min(n, int(time.Since(base).Seconds()*rate)+1)
		for ; i < due; i++ {
			sent[i].Store(int64(time.Since(base)))
			cl.Produce(ctx, cmds[i].record(topic), func(_ *kgo.Record, err error) {
				if err != nil {
					produceErr.CompareAndSwap(nil, &err)
				}
			})
		}
		time.Sleep(200 * time.Microsecond)
	}
	if err := cl.Flush(ctx); err != nil {
		return latencies{}, err
	}
	if p := produceErr.Load(); p != nil {
		return latencies{}, *p
	}
	select {
	case err := <-received:
		if err != nil {
			return latencies{}, err
		}
	case <-time.After(time.Minute):
		return latencies{}, fmt.Errorf("latency: %d of %d events seen within a minute", len(got), n)
	}
	slices.Sort(got)
	slices.Sort(stamped)
	after, err := c.handlingBuckets(ctx)
	if err != nil {
		return latencies{}, err
	}
	waitAfter, err := c.waitBuckets(ctx)
	if err != nil {
		return latencies{}, err
	}
	rss, err := c.peakRSS()
	return latencies{rate: rate, n: n, p50: got[n/2], p99: got[n*99/100], max: got[n-1], rss: rss,
		stampedP50: stamped[n/2], stampedP99: stamped[n*99/100],
		handlingP50: quantile(before, after, 0.5), handlingP99: quantile(before, after, 0.99),
		waitP50: quantile(waitBefore, waitAfter, 0.5), waitP99: quantile(waitBefore, waitAfter, 0.99)}, err
}

// subscribe follows $all from its end and passes the command id and
// created stamp of prescription events to seen until it returns true; the channel then gets nil, or the error that
// ended the subscription. It returns once the subscription is live.
func subscribe(ctx context.Context, conn string, seen func(commandID string, created time.Time) bool) (<-chan error, error) {
	settings, err := esdb.ParseConnectionString(conn)
	if err != nil {
		return nil, err
	}
	settings.Logger = esdb.NoopLogging()
	client, err := esdb.NewClient(settings)
	if err != nil {
		return nil, err
	}
	sub, err := client.SubscribeToAll(ctx, esdb.SubscribeToAllOptions{From: esdb.End{},
		Filter: &esdb.SubscriptionFilter{Type: esdb.StreamFilterType, Prefixes: []string{events.StreamPrefix}}})
	if err != nil {
		client.Close()
		return nil, err
	}
	done := make(chan error, 1)
	go func() {
		defer client.Close()
		defer sub.Close()
		for {
			ev := sub.Recv()
			switch {
			case ev.SubscriptionDropped != nil:
				done <- cmp.Or(ev.SubscriptionDropped.Error, errors.New("subscription dropped"))
				return
			case ev.EventAppeared != nil:
				// Only the command id is needed: a full decode would cost
				// the bench CPU the processor could use.
				e := ev.EventAppeared.OriginalEvent()
				var meta struct {
					CommandID string `json:"commandId"`
				}
				if err := json.Unmarshal(e.UserMetadata, &meta); err != nil {
					done <- err
					return
				}
				if seen(meta.CommandID, e.CreatedDate) {
					done <- nil
					return
				}
			}
		}
	}()
	return done, nil
}

// commitLatency appends one event at a time from one writer for d: the
// store's durable commit time, which bounds every latency above it.
func commitLatency(ctx context.Context, conn string, d time.Duration) (p50, p99 time.Duration, err error) {
	settings, err := esdb.ParseConnectionString(conn)
	if err != nil {
		return 0, 0, err
	}
	settings.Logger = esdb.NoopLogging()
	client, err := esdb.NewClient(settings)
	if err != nil {
		return 0, 0, err
	}
	defer client.Close()
	stream := fmt.Sprintf("benchcommit-%d", time.Now().UnixNano())
	var took []time.Duration
	for start := time.Now(); time.Since(start) < d; {
		t := time.Now()
		ev := esdb.EventData{EventID: uuid.New(), EventType: "BenchCommit", ContentType: esdb.ContentTypeJson, Data: []byte(`{}`)}
		if _, err := client.AppendToStream(ctx, stream, esdb.AppendToStreamOptions{ExpectedRevision: esdb.Any{}}, ev); err != nil {
			return 0, 0, err
		}
		took = append(took, time.Since(t))
	}
	slices.Sort(took)
	return took[len(took)/2], took[len(took)*99/100], nil
}

// seed stores total events as full prescription lifecycles, five events per
// append, from many writers at once: real events in prescription streams,
// decided by the domain from seed-format commands.
func (b *bench) seed(ctx context.Context, conn string, total int) (time.Duration, error) {
	store, err := eventstore.Open(eventstore.Config{ConnectionString: conn, Logger: b.quiet})
	if err != nil {
		return 0, err
	}
	defer store.Close()
	_, _, prefix := b.next("seed")
	prescriptions := (total + len(completed) - 1) / len(completed)
	start := time.Now()
	var next, done atomic.Int64
	errs := make(chan error, b.opts.seedWriters)
	for range b.opts.seedWriters {
		go func() {
			for {
				i := int(next.Add(1)) - 1
				if i >= prescriptions || ctx.Err() != nil {
					errs <- ctx.Err()
					return
				}
				urn, pending, err := seedStream(prefix, i)
				if err == nil {
					_, err = store.Append(ctx, urn, commands.NoStream, pending)
				}
				if err != nil {
					errs <- err
					return
				}
				done.Add(int64(len(pending)))
			}
		}()
	}
	tick := time.NewTicker(2 * time.Second)
	defer tick.Stop()
	var firstErr error
	for range b.opts.seedWriters {
	wait:
		for {
			select {
			case err := <-errs:
				firstErr = cmp.Or(firstErr, err)
				break wait
			case <-tick.C:
				n := done.Load()
				progress("seed: %d/%d events (%.0f/s)", n, total, float64(n)/time.Since(start).Seconds())
			}
		}
	}
	return time.Since(start), firstErr
}

// seedStream returns the events of one completed prescription.
func seedStream(prefix string, i int) (string, []events.Pending, error) {
	urn := fmt.Sprintf("urn:rx:%s-%d", prefix, i)
	var p domain.Prescription
	now := time.Now().UTC()
	pending := make([]events.Pending, 0, len(completed))
	for j, st := range completed {
		id := fmt.Sprintf("%s/%d", urn, j+1)
		env, err := commands.Decode(commands.Raw{Key: []byte(urn),
			Value: fmt.Appendf(nil, `{"urn":%q,"event":%q,"commandId":%q,"payload":%s}`, urn, st.typ, id, st.payload)}, 0)
		if err != nil {
			return "", nil, err
		}
		evs, err := domain.Decide(p, env.Command, now)
		if err != nil {
			return "", nil, err
		}
		for k, e := range evs {
			pe, err := events.New(e, events.Metadata{EventID: events.EventID(urn, id, k).String(), CommandID: id, CommandHash: string(env.Hash),
				CorrelationID: id, CausationID: id, OccurredAt: now})
			if err != nil {
				return "", nil, err
			}
			pending = append(pending, pe)
			p = domain.Evolve(p, e)
		}
	}
	return urn, pending, nil
}

// rebuild replays every stored prescription event into a fresh read model.
// rebuildRun is one rebuild in a child process: its events, wall time,
// and the CPU time of the child and of this process (the embedded store).
type rebuildRun struct {
	events        int
	took          time.Duration
	cpu, storeCPU time.Duration
}

func (b *bench) rebuild(ctx context.Context, conn string) (rebuildRun, error) {
	b.runs++
	args := []string{childArg, "-role", roleRebuild, "-esdb", conn, "-dir", filepath.Join(b.opts.dir, fmt.Sprintf("projector-%d", b.runs))}
	if b.opts.cpuprofile != "" {
		args = append(args, "-cpuprofile", fmt.Sprintf("%s.%s.%d", b.opts.cpuprofile, roleRebuild, b.runs))
	}
	self, err := os.Executable()
	if err != nil {
		return rebuildRun{}, err
	}
	cmd := exec.CommandContext(ctx, self, args...)
	cmd.Env = append(os.Environ(), b.env...)
	cmd.Stderr = os.Stderr
	before := cpuTime(os.Getpid())
	out, err := cmd.Output()
	r := rebuildRun{storeCPU: cpuTime(os.Getpid()) - before}
	if err != nil {
		return r, fmt.Errorf("rebuild child: %w", err)
	}
	r.cpu = cmd.ProcessState.UserTime() + cmd.ProcessState.SystemTime()
	var took int64
	if _, err := fmt.Sscanf(string(out), "rebuilt %d %d", &r.events, &took); err != nil {
		return r, fmt.Errorf("rebuild child said %q: %w", out, err)
	}
	r.took = time.Duration(took)
	return r, nil
}

func discard() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

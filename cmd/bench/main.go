// Command bench measures the rxflow pipeline against its raw ceiling in one
// run, printing progress on stderr and a markdown table of results on stdout:
//
//  0. the store's durable commit time: one writer appending one event at a
//     time, which bounds every latency measured above it;
//  1. raw ceiling: a child process consumes a pre-produced backlog with the
//     processor's Watermill/sarama settings and appends one event per message
//     through the official EventStoreDB client, with no domain logic;
//  2. processor: a child process runs the real processor.Service over a
//     backlog of full prescription lifecycles (throughput), then over
//     commands produced at half that rate (latency from produce to the event
//     on a live $all subscription);
//  3. rebuild: the audit rebuild (projector.Rebuild) of every stored event;
//  4. flat cost: (2) again against a store seeded with -seed-events events;
//  5. memory: the peak RSS (VmHWM) of the processor child in (2) and (4);
//  6. read side (-only readside): the projector's rebuild and live apply
//     rates on SQLite and on PostgreSQL (-database), live apply also with
//     2 and 3 instances sharing the segments (readside.go).
//
// By default it starts an embedded Kafka broker (kfake) and an embedded
// EventStoreDB on disk in a temporary directory; -brokers and -esdb point it
// at real ones instead. BENCHMARKS.md has the full invocation:
//
//	go build -o /tmp/rxbench ./cmd/bench && /tmp/rxbench -n 200000 -seed-events 1000000
package main

import (
	"context"
	"errors"
	"fmt"
	"math"
	"os"
	"os/signal"
	"path/filepath"
	"runtime/pprof"
	"slices"
	"strings"
	"syscall"
	"time"

	"rxflow/infra/config"
	"rxflow/infra/kafka"
	"rxflow/standin/esdbserver"
	"rxflow/standin/kafkabroker"
)

type options struct {
	brokers, esdb   string
	security        kafka.Security // towards -brokers; the embedded broker is PLAINTEXT
	n               int
	prescriptions   int
	partitions      int
	latencySeconds  int
	latencyRate     int
	seedEvents      int
	seedWriters     int
	repeat          int
	dir, cpuprofile string
	brokerStop      string // shell commands for the restart phase's outage
	brokerStart     string
	only            map[string]bool // phases to run; empty runs all
	database        string          // PostgreSQL server for the readside phase: a role that may create databases
	projectorBin    string          // the projector binary for the readside phase; empty builds ./cmd/projector
	readsideEvents  int             // events the readside phase's live apply runs over
	otlpSink        bool            // trace the processor children, exporting to a local OTLP sink
}

// runs reports whether phase is to run. The restart phase runs only when
// named: it kills processes and may stop the broker; so does the readside
// phase: it builds and runs the projector binary.
func (o options) runs(phase string) bool {
	return (len(o.only) == 0 && phase != "restart" && phase != "readside") || o.only[phase]
}

func main() {
	if len(os.Args) > 1 && os.Args[1] == childArg {
		os.Exit(childMain(os.Args[2:]))
	}
	if err := run(os.Args[1:]); err != nil && !errors.Is(err, config.ErrHelp) {
		fmt.Fprintln(os.Stderr, config.Line("bench", err))
		os.Exit(1)
	}
}

func run(args []string) error {
	f := config.NewFlags("bench")
	brokers := f.String("brokers", "KAFKA_BROKERS", "", "Kafka bootstrap brokers; empty starts an embedded broker")
	esdbConn := f.String("esdb", "ESDB_CONNECTION_STRING", "", "EventStoreDB connection string; empty starts an embedded server on disk")
	n := f.Int("n", "BENCH_N", 50000, "commands per throughput run (raw and processor)")
	prescriptions := f.Int("prescriptions", "BENCH_PRESCRIPTIONS", 2000, "prescriptions in flight at once; each runs full lifecycles")
	partitions := f.Int("partitions", "BENCH_PARTITIONS", 64, "partitions of the command topics")
	latencySeconds := f.Int("latency-seconds", "BENCH_LATENCY_SECONDS", 10, "how long to produce at half the peak rate")
	latencyRate := f.Int("latency-rate", "BENCH_LATENCY_RATE", 0, "commands per second of the latency run; 0 is half the processor's measured peak (then the processor run comes first)")
	seedEvents := f.Int("seed-events", "BENCH_SEED_EVENTS", 200000, "events stored before the flat-cost run")
	seedWriters := f.Int("seed-writers", "BENCH_SEED_WRITERS", 64, "concurrent appends while seeding")
	runs := f.Int("runs", "BENCH_RUNS", 1, "repeat each throughput run and keep the median; the raw and processor runs alternate")
	dir := f.String("dir", "BENCH_DIR", "", "directory for the embedded stores; default a temporary one, removed at the end")
	only := f.String("only", "BENCH_ONLY", "", "comma-separated phases to run (raw, processor, latency, flat, rebuild; restart and readside only when named); default all")
	database := f.String("database", "BENCH_DATABASE", "", "readside phase: PostgreSQL URL of a role that may create databases (one fresh database per run); empty measures SQLite only")
	projectorBin := f.String("projector-bin", "BENCH_PROJECTOR_BIN", "", "readside phase: the projector binary; empty builds ./cmd/projector of this module")
	readsideEvents := f.Int("readside-events", "BENCH_READSIDE_EVENTS", 100000, "readside phase: events stored before each live-apply run")
	cpuprofile := f.String("cpuprofile", "BENCH_CPUPROFILE", "", "write CPU profiles: this file for the bench process, FILE.<role>.<run> for each child")
	brokerStop := f.String("broker-stop", "BENCH_BROKER_STOP", "", "restart phase: shell command that stops the Kafka broker (-brokers); with -broker-start, the outage is measured")
	brokerStart := f.String("broker-start", "BENCH_BROKER_START", "", "restart phase: shell command that starts the broker again and returns once it serves")
	otlpSink := f.Bool("otlp-sink", false, "turn tracing on in the processor children, exporting over OTLP/HTTP to a local sink process that discards the spans")
	kafkaSecurity := kafka.SecurityFlags(f)
	if err := f.Parse(args); err != nil {
		return err
	}
	security, err := kafkaSecurity()
	switch {
	case err != nil:
	case *brokers == "" && security != (kafka.Security{}):
		err = errors.New("the Kafka TLS and SASL settings need -brokers: the embedded broker speaks PLAINTEXT")
	default:
		err = security.Validate()
	}
	if err != nil {
		return err
	}
	o := options{brokers: *brokers, security: security, esdb: *esdbConn, n: *n, prescriptions: *prescriptions, partitions: *partitions,
		latencySeconds: *latencySeconds, latencyRate: *latencyRate, seedEvents: *seedEvents, seedWriters: *seedWriters, repeat: *runs, dir: *dir, cpuprofile: *cpuprofile,
		brokerStop: *brokerStop, brokerStart: *brokerStart,
		otlpSink: *otlpSink, database: *database, projectorBin: *projectorBin, readsideEvents: *readsideEvents}
	if o.n < 1000 || o.prescriptions < 1 || o.partitions < 1 || o.repeat < 1 || o.seedWriters < 1 || o.seedEvents < 0 || o.latencySeconds < 1 || o.latencyRate < 0 || o.readsideEvents < 1 {
		return errors.New("-n must be at least 1000; -prescriptions, -partitions, -runs, -seed-writers, -latency-seconds, -readside-events positive; -seed-events, -latency-rate not negative")
	}
	o.only = map[string]bool{}
	for _, p := range config.List(*only) {
		if !slices.Contains(phases, p) {
			return fmt.Errorf("-only: unknown phase %q (known: %v)", p, phases)
		}
		o.only[p] = true
	}
	if o.cpuprofile != "" {
		pf, err := os.Create(o.cpuprofile)
		if err != nil {
			return err
		}
		defer pf.Close()
		if err := pprof.StartCPUProfile(pf); err != nil {
			return err
		}
		defer pprof.StopCPUProfile()
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()

	if o.dir == "" {
		tmp, err := os.MkdirTemp("", "rxbench-")
		if err != nil {
			return err
		}
		defer os.RemoveAll(tmp)
		o.dir = tmp
	}
	b := &bench{opts: o, brokers: config.List(o.brokers), quiet: discard(), env: o.security.Environ()}
	if o.otlpSink {
		sink, err := startChild(ctx, roleOTLPSink, nil)
		if err != nil {
			return err
		}
		defer sink.stop()
		b.env = append(b.env, "OTEL_EXPORTER_OTLP_ENDPOINT=http://"+sink.addr, "OTEL_EXPORTER_OTLP_PROTOCOL=http/protobuf", "OTEL_TRACES_EXPORTER=otlp")
		progress("tracing on: the processor children export their spans to the OTLP sink at %s", sink.addr)
	}
	if len(b.brokers) == 0 {
		broker, err := kafkabroker.Start(kafkabroker.Config{Addr: "127.0.0.1:0", Partitions: int32(o.partitions)})
		if err != nil {
			return err
		}
		defer broker.Close()
		b.brokers = broker.Addrs()
	}
	// Each store is the configured one, or a fresh embedded server on disk.
	stores := 0
	openStore := func() (string, func(), error) {
		if o.esdb != "" {
			return o.esdb, func() {}, nil
		}
		stores++
		srv, err := esdbserver.Start(esdbserver.Config{Addr: "127.0.0.1:0", DataDir: filepath.Join(o.dir, fmt.Sprintf("esdb-%d", stores)), Logger: b.quiet})
		if err != nil {
			return "", nil, err
		}
		return srv.ConnectionString(), func() { _ = srv.Close() }, nil
	}
	r, err := b.all(ctx, openStore)
	if err != nil {
		return err
	}
	fmt.Print(r.table(o))
	return nil
}

// results are the figures of one run.
type results struct {
	commitP50, commitP99 time.Duration
	raw, empty, seeded   consumerRun
	pairedEmpty          consumerRun // the empty store, in turns with the seeded one
	lat                  latencies
	rebuild              rebuildRun
	seedTook             time.Duration
	restart              restartResults
	readside             readsideResults
}

// phases are the parts of a run, in order.
var phases = []string{"raw", "processor", "latency", "flat", "rebuild", "restart", "readside"}

func (b *bench) all(ctx context.Context, openStore func() (string, func(), error)) (r results, err error) {
	conn, closeStore, err := openStore()
	if err != nil {
		return r, err
	}
	defer closeStore()
	if b.opts.runs("raw") {
		progress("(0) durable append latency, one writer")
		if r.commitP50, r.commitP99, err = commitLatency(ctx, conn, 3*time.Second); err != nil {
			return r, fmt.Errorf("commit latency: %w", err)
		}
	}
	// The raw and processor runs alternate, so that each pair sees the same
	// store (it grows with every run, and its appends slow down as it does).
	raw := b.opts.runs("raw")
	processor := b.opts.runs("processor") || (b.opts.runs("latency") && b.opts.latencyRate == 0) || b.opts.runs("flat")
	var raws, processors []consumerRun
	for range b.opts.repeat {
		if raw {
			progress("(1) raw ceiling")
			run, err := b.backlog(ctx, roleRaw, conn, b.opts.n)
			if err != nil {
				return r, fmt.Errorf("raw ceiling: %w", err)
			}
			raws = append(raws, run)
		}
		if processor {
			progress("(2) processor, empty store")
			run, err := b.backlog(ctx, roleProcessor, conn, b.opts.n)
			if err != nil {
				return r, fmt.Errorf("processor: %w", err)
			}
			processors = append(processors, run)
		}
	}
	if raw {
		r.raw = median(raws)
	}
	if processor {
		r.empty = median(processors)
	}
	if b.opts.runs("restart") {
		progress("(5) restart and resume")
		if r.restart, err = b.restart(ctx, conn); err != nil {
			return r, fmt.Errorf("restart: %w", err)
		}
	}
	if b.opts.runs("latency") {
		progress("(2) latency at half of the peak")
		rate := r.empty.rate / 2
		if b.opts.latencyRate > 0 {
			rate = float64(b.opts.latencyRate)
		}
		if r.lat, err = b.latency(ctx, conn, rate, time.Duration(b.opts.latencySeconds)*time.Second); err != nil {
			return r, fmt.Errorf("latency: %w", err)
		}
	}
	if b.opts.runs("readside") {
		progress("(6) read side: rebuild and live apply, SQLite and PostgreSQL")
		if r.readside, err = b.readside(ctx, openStore); err != nil {
			return r, fmt.Errorf("readside: %w", err)
		}
	}
	if !b.opts.runs("flat") && !b.opts.runs("rebuild") {
		return r, nil
	}

	// The flat-cost run gets a store of its own, seeded first. An embedded
	// empty store stays open, so that runs on the two alternate and share
	// the machine's conditions; a configured store is the same for both.
	seededConn, closeSeeded, err := openStore()
	if err != nil {
		return r, err
	}
	defer closeSeeded()
	progress("(4) seeding %d events", b.opts.seedEvents)
	if r.seedTook, err = b.seed(ctx, seededConn, b.opts.seedEvents); err != nil {
		return r, fmt.Errorf("seed: %w", err)
	}
	if b.opts.runs("flat") {
		var empty, seeded []consumerRun
		for range b.opts.repeat {
			if seededConn != conn {
				progress("(4) processor, empty store")
				e, err := b.backlog(ctx, roleProcessor, conn, b.opts.n)
				if err != nil {
					return r, fmt.Errorf("processor on the empty store: %w", err)
				}
				empty = append(empty, e)
			}
			progress("(4) processor, %d events stored", b.opts.seedEvents)
			sr, err := b.backlog(ctx, roleProcessor, seededConn, b.opts.n)
			if err != nil {
				return r, fmt.Errorf("processor on the seeded store: %w", err)
			}
			seeded = append(seeded, sr)
		}
		r.pairedEmpty, r.seeded = r.empty, median(seeded)
		if len(empty) > 0 {
			r.pairedEmpty = median(empty)
		}
	}
	if !b.opts.runs("rebuild") {
		return r, nil
	}
	progress("(3) rebuild")
	if r.rebuild, err = b.rebuild(ctx, seededConn); err != nil {
		return r, fmt.Errorf("rebuild: %w", err)
	}
	return r, nil
}

func (r results) table(o options) string {
	var sb strings.Builder
	row := func(measure, target, measured, status string) {
		fmt.Fprintf(&sb, "| %s | %s | %s | %s |\n", measure, target, measured, status)
	}
	check := func(ok bool) string {
		if ok {
			return "met"
		}
		return "**not met**"
	}
	ms := func(d time.Duration) string { return fmt.Sprintf("%.2f ms", float64(d.Microseconds())/1000) }
	mib := func(b int64) string { return fmt.Sprintf("%.0f MiB", float64(b)/(1<<20)) }
	cpu := func(run consumerRun) string {
		child, parent := run.cpuPer()
		return fmt.Sprintf("%d µs + %d µs", child.Microseconds(), parent.Microseconds())
	}

	tracing := "tracing as the environment's OTEL_* variables say"
	if o.otlpSink {
		tracing = "tracing on: OTLP/HTTP to a local sink"
	}
	fmt.Fprintf(&sb, "\n%d commands per run, %d prescriptions in flight, %d partitions, %d seeded events (seeded in %s), %s\n\n",
		o.n, o.prescriptions, o.partitions, o.seedEvents, r.seedTook.Round(time.Second), tracing)
	sb.WriteString("| measure | target | measured | status |\n|---|---|---|---|\n")
	if o.runs("raw") {
		row("(0) one durable append, one writer: p50 / p99", "—", ms(r.commitP50)+" / "+ms(r.commitP99), "")
		row("(1) raw ceiling", "—", fmt.Sprintf("%.0f msgs/s", r.raw.rate), "")
		row("… CPU per message: consumer + bench process (broker, store)", "—", cpu(r.raw), "")
	}
	if r.empty.rate > 0 {
		row("(2) processor, commands end to end", "≥ 10,000/s", fmt.Sprintf("%.0f commands/s", r.empty.rate), check(r.empty.rate >= 10000))
		row("… CPU per command: processor + bench process (broker, store)", "—", cpu(r.empty), "")
	}
	if o.runs("raw") && r.empty.rate > 0 {
		proc, _ := r.empty.cpuPer()
		raw, _ := r.raw.cpuPer()
		if raw > 0 {
			ratio := float64(proc) / float64(raw)
			row("CPU per command ÷ CPU per message of the raw consumer (the child processes)", "≤ 1.2", fmt.Sprintf("%.2f", ratio), check(ratio <= 1.2))
		}
	}
	if o.runs("raw") && r.empty.rate > 0 {
		ratio := r.empty.rate / r.raw.rate
		row("(2) ÷ (1)", "≥ 0.90", fmt.Sprintf("%.2f", ratio), check(ratio >= 0.9))
	}
	if o.runs("latency") {
		row(fmt.Sprintf("latency at half of peak (%.0f/s, %d commands), produce → event on $all: p50 / p99 / max", r.lat.rate, r.lat.n), "p50 ≤ 5 ms, p99 ≤ 25 ms",
			ms(r.lat.p50)+" / "+ms(r.lat.p99)+" / "+ms(r.lat.max), check(r.lat.p50 <= 5*time.Millisecond && r.lat.p99 <= 25*time.Millisecond))
		row("… produce → server's created stamp (before the fsync): p50 / p99", "—", ms(r.lat.stampedP50)+" / "+ms(r.lat.stampedP99), "")
		row("… processor's handling time, receive → durable append: p50 / p99 (histogram bucket)", "—",
			fmt.Sprintf("≤ %g ms / ≤ %g ms", r.lat.handlingP50*1000, r.lat.handlingP99*1000), "")
		row("… the command's wait before its handling (record timestamp → handling starts): p50 / p99 (histogram bucket)", "—",
			fmt.Sprintf("≤ %g ms / ≤ %g ms", r.lat.waitP50*1000, r.lat.waitP99*1000), "")
	}
	if o.runs("rebuild") {
		rb := r.rebuild
		rate := float64(rb.events) / rb.took.Seconds()
		row(fmt.Sprintf("(3) rebuild of %d events", rb.events), "≥ 100,000 events/s", fmt.Sprintf("%.0f events/s", rate), check(rate >= 100000))
		if rb.events > 0 {
			n := float64(rb.events)
			row("… CPU per event: rebuild process + bench process (store)", "—",
				fmt.Sprintf("%.1f µs + %.1f µs", float64(rb.cpu.Microseconds())/n, float64(rb.storeCPU.Microseconds())/n), "")
		}
	}
	if o.runs("flat") {
		flat := (r.seeded.rate - r.pairedEmpty.rate) / r.pairedEmpty.rate * 100
		row(fmt.Sprintf("(4) processor with %d events stored, against the empty store in turns", o.seedEvents), "—",
			fmt.Sprintf("%.0f against %.0f commands/s", r.seeded.rate, r.pairedEmpty.rate), "")
		row("(4) against the empty store", "within 5%", fmt.Sprintf("%+.1f%%", flat), check(math.Abs(flat) <= 5))
	}
	if r.empty.rss > 0 {
		var figures []string
		peak := int64(0)
		for _, m := range []struct {
			name string
			rss  int64
		}{{"(2)", max(r.empty.rss, r.pairedEmpty.rss)}, {"latency", r.lat.rss}, {"(4)", r.seeded.rss}} {
			if m.rss > 0 {
				figures = append(figures, m.name+" "+mib(m.rss))
				peak = max(peak, m.rss)
			}
		}
		row("processor peak RSS", "≤ 150 MiB", strings.Join(figures, ", "), check(peak <= 150<<20))
	}
	if o.runs("raw") {
		row("raw consumer peak RSS", "—", mib(r.raw.rss), "")
	}
	if o.runs("restart") {
		secs := func(d time.Duration) string { return fmt.Sprintf("%.2f s", d.Seconds()) }
		row("(5) kill -9 → restart → first command handled, static member (group instance id)", "≤ 2 s", secs(r.restart.static), check(r.restart.static <= 2*time.Second))
		row("… the same, dynamic member (no group instance id)", "—", secs(r.restart.dynamic), "")
		if r.restart.outage > 0 {
			row("(5) Kafka outage ends → first command handled, static member", "≤ 2 s", secs(r.restart.outage), check(r.restart.outage <= 2*time.Second))
			row("… of which the broker's: outage ends → the group's coordinator answers", "—", secs(r.restart.coordinator), "")
		}
	}
	for _, run := range r.readside.rebuild {
		row(fmt.Sprintf("(6) rebuild of %d events, %s (`projector rebuild`)", run.events, run.backend), "≥ 100,000 events/s",
			fmt.Sprintf("%.0f events/s (%.1f s)", run.rate(), run.took.Seconds()), check(run.rate() >= 100000))
	}
	for _, run := range r.readside.live {
		target, status := "—", ""
		if run.instances == 1 {
			target, status = "≥ 5,000 events/s", check(run.rate() >= 5000)
		}
		row(fmt.Sprintf("(6) live apply of %d events, %d instance(s), %s", run.events, run.instances, run.backend), target,
			fmt.Sprintf("%.0f events/s (%.1f s; %s of the instances' CPU per event, every projector caught up)", run.rate(), run.took.Seconds(), run.cpuPerEvent()), status)
	}
	return sb.String()
}

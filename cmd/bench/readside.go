package main

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/EventStore/EventStore-Client-Go/v4/esdb"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"rxflow/events"
	"rxflow/standin/partnersim"
)

// The read side (phase "readside", issue 12) runs the real projector
// binary as child processes, on SQLite (its embedded default) and on
// PostgreSQL (-database):
//   - rebuild: `projector rebuild` over a store seeded with -seed-events
//     events, timed from the child's start to its exit;
//   - live apply: n instances start on a store seeded with -readside-events
//     events and apply them through their live path (catch-up subscription,
//     batched transactions, every projector: read model, outbound, partner
//     reactors against the simulators); the time runs from their start until
//     the query API reports (X-Read-Model-Position) that the read model has
//     applied the store's last position; their CPU time is read once every
//     projector has caught up (no lag on /metrics). SQLite with one
//     instance; PostgreSQL with 1, 2 and 3 instances sharing the segments.

// readsideToken is the static token the projector children accept.
const readsideToken = "bench-token"

// readsideRun is one timed run of the read side.
type readsideRun struct {
	backend   string // "SQLite" or "PostgreSQL"
	instances int    // 0 for a rebuild
	events    int
	took      time.Duration
	// live apply: the instances' CPU time (user and system) until every
	// projector had caught up; 0 if it did not within its limit or /proc
	// could not be read.
	cpu time.Duration
}

func (r readsideRun) rate() float64 { return float64(r.events) / r.took.Seconds() }

// cpuPerEvent is the instances' CPU per event of a live apply, every
// projector's work included, as text: "n µs", or "?" if unknown.
func (r readsideRun) cpuPerEvent() string {
	if r.cpu == 0 {
		return "?"
	}
	return fmt.Sprintf("%.0f µs", float64(r.cpu.Microseconds())/float64(r.events))
}

// readsideResults are the phase's figures.
type readsideResults struct {
	rebuild, live []readsideRun
}

func (b *bench) readside(ctx context.Context, openStore func() (string, func(), error)) (res readsideResults, err error) {
	bin := b.opts.projectorBin
	if bin == "" {
		if bin, err = buildProjector(ctx, b.opts.dir); err != nil {
			return res, err
		}
	}
	backends := []string{"SQLite"}
	if b.opts.database != "" {
		backends = append(backends, "PostgreSQL")
	} else {
		progress("readside: no -database, PostgreSQL skipped")
	}

	conn, closeStore, err := openStore()
	if err != nil {
		return res, err
	}
	defer closeStore()
	progress("readside: seeding %d events for the rebuilds", b.opts.seedEvents)
	if _, err := b.seed(ctx, conn, b.opts.seedEvents); err != nil {
		return res, fmt.Errorf("seed: %w", err)
	}
	stored := seededEvents(b.opts.seedEvents)
	for _, backend := range backends {
		env, drop, err := b.readStore(ctx, backend)
		if err != nil {
			return res, err
		}
		progress("readside: rebuild of %d events on %s", stored, backend)
		run := readsideRun{backend: backend, events: stored}
		run.took, err = rebuildChild(ctx, bin, append(env, "ESDB_CONNECTION_STRING="+conn), filepath.Join(b.opts.dir, "rebuild-"+backend+".log"))
		if err == nil && backend == "PostgreSQL" {
			err = checkRows(ctx, env, stored/len(completed))
		}
		drop()
		if err != nil {
			return res, fmt.Errorf("rebuild on %s: %w", backend, err)
		}
		progress("readside: rebuild on %s: %.0f events/s", backend, run.rate())
		res.rebuild = append(res.rebuild, run)
	}
	closeStore()

	live, closeLive, err := openStore()
	if err != nil {
		return res, err
	}
	defer closeLive()
	progress("readside: seeding %d events for live apply", b.opts.readsideEvents)
	if _, err := b.seed(ctx, live, b.opts.readsideEvents); err != nil {
		return res, fmt.Errorf("seed: %w", err)
	}
	head, err := lastPosition(ctx, live)
	if err != nil {
		return res, err
	}
	sim, err := partnersim.Start(partnersim.Config{Logger: b.quiet})
	if err != nil {
		return res, err
	}
	defer sim.Close()
	for _, backend := range backends {
		counts := []int{1}
		if backend == "PostgreSQL" {
			counts = []int{1, 2, 3}
		}
		for _, n := range counts {
			progress("readside: live apply of %d events, %d instance(s) on %s", b.opts.readsideEvents, n, backend)
			run := readsideRun{backend: backend, instances: n, events: seededEvents(b.opts.readsideEvents)}
			if run.took, run.cpu, err = b.liveApply(ctx, bin, backend, n, live, head, sim); err != nil {
				return res, fmt.Errorf("live apply, %d instance(s) on %s: %w", n, backend, err)
			}
			progress("readside: %.0f events/s, %s of the instances' CPU per event", run.rate(), run.cpuPerEvent())
			res.live = append(res.live, run)
		}
	}
	return res, nil
}

// seededEvents is how many events b.seed stores for total: whole lifecycles.
func seededEvents(total int) int {
	return (total + len(completed) - 1) / len(completed) * len(completed)
}

// buildProjector builds ./cmd/projector of this module into dir.
func buildProjector(ctx context.Context, dir string) (string, error) {
	gomod, err := exec.CommandContext(ctx, "go", "env", "GOMOD").Output()
	root := filepath.Dir(strings.TrimSpace(string(gomod)))
	if err != nil || root == "." {
		return "", fmt.Errorf("readside: -projector-bin not given and no module to build it from (go env GOMOD: %v)", err)
	}
	bin := filepath.Join(dir, "projector")
	build := exec.CommandContext(ctx, "go", "build", "-o", bin, "./cmd/projector")
	build.Dir = root
	if out, err := build.CombinedOutput(); err != nil {
		return "", fmt.Errorf("readside: go build ./cmd/projector: %w\n%s", err, out)
	}
	return bin, nil
}

// readStore returns a projector's environment for a fresh read side on
// backend, and a function that removes it: a new directory for SQLite, a
// new database on -database's server for PostgreSQL.
func (b *bench) readStore(ctx context.Context, backend string) (env []string, drop func(), err error) {
	b.runs++
	if backend == "SQLite" {
		dir := filepath.Join(b.opts.dir, fmt.Sprintf("projector-%d", b.runs))
		return []string{"PROJECTOR_DATA_DIR=" + dir}, func() { _ = os.RemoveAll(dir) }, nil
	}
	admin := b.opts.database
	u, err := url.Parse(admin)
	if err != nil {
		return nil, nil, errors.New("-database is not a URL")
	}
	name := "rxbench_" + strings.ToLower(rand.Text()[:12])
	conn, err := pgx.Connect(ctx, admin)
	if err != nil {
		return nil, nil, fmt.Errorf("-database: %w", err)
	}
	defer conn.Close(ctx)
	if _, err := conn.Exec(ctx, "CREATE DATABASE "+pgx.Identifier{name}.Sanitize()); err != nil {
		return nil, nil, fmt.Errorf("-database: %w", err)
	}
	u.Path = "/" + name
	drop = func() {
		ctx := context.Background()
		if conn, err := pgx.Connect(ctx, admin); err == nil {
			_, _ = conn.Exec(ctx, "DROP DATABASE "+pgx.Identifier{name}.Sanitize()+" WITH (FORCE)")
			conn.Close(ctx)
		}
	}
	return []string{"DATABASE_URL=" + u.String(), "PROJECTOR_DATA_DIR=" + filepath.Join(b.opts.dir, name)}, drop, nil
}

// checkRows checks that the PostgreSQL database of env holds want rows in
// its read model: the rebuild went there.
func checkRows(ctx context.Context, env []string, want int) error {
	for _, kv := range env {
		if dbURL, ok := strings.CutPrefix(kv, "DATABASE_URL="); ok {
			conn, err := pgxpool.New(ctx, dbURL)
			if err != nil {
				return err
			}
			defer conn.Close()
			var n int
			if err := conn.QueryRow(ctx, `SELECT count(*) FROM prescriptions`).Scan(&n); err != nil {
				return fmt.Errorf("the read model after the rebuild: %w", err)
			}
			if n != want {
				return fmt.Errorf("the rebuilt read model has %d prescriptions, want %d", n, want)
			}
			return nil
		}
	}
	return errors.New("no DATABASE_URL")
}

// rebuildChild runs `projector rebuild` with env and returns how long it ran.
func rebuildChild(ctx context.Context, bin string, env []string, logFile string) (time.Duration, error) {
	log, err := os.Create(logFile)
	if err != nil {
		return 0, err
	}
	defer log.Close()
	cmd := exec.CommandContext(ctx, bin, "rebuild")
	cmd.Env = append(os.Environ(), env...)
	cmd.Stdout, cmd.Stderr = log, log
	start := time.Now()
	if err := cmd.Run(); err != nil {
		return 0, fmt.Errorf("%w (log: %s)", err, logFile)
	}
	return time.Since(start), nil
}

// liveApply starts n projector instances on a fresh read side and returns
// the time from their start until the read model has applied head, and
// the CPU time the instances had used once every projector had caught up.
func (b *bench) liveApply(ctx context.Context, bin, backend string, n int, conn string, head uint64, sim *partnersim.Sim) (took, cpu time.Duration, err error) {
	env, drop, err := b.readStore(ctx, backend)
	if err != nil {
		return 0, 0, err
	}
	defer drop()
	topic, group, _ := b.next("readside")
	common := append(env, "ESDB_CONNECTION_STRING="+conn, "KAFKA_BROKERS="+strings.Join(b.brokers, ","),
		"COMMAND_TOPIC="+topic, "PROJECTOR_GROUP="+group,
		"DISPENSED_TOPIC="+topic+".dispensed", "FAILED_TOPIC="+topic+".failed", "STATUS_CHANGED_TOPIC="+topic+".changed",
		"QUERY_API_STATIC_TOKEN_ENABLED=true", "QUERY_API_TOKEN="+readsideToken, "LOG_LEVEL=warn",
		"INSURANCE_URL="+sim.URL(partnersim.Insurance), "PHARMACY_URL="+sim.URL(partnersim.Pharmacy),
		"NOTIFICATIONS_URL="+sim.URL(partnersim.Notifications), "ALERTING_URL="+sim.URL(partnersim.Alerting))
	common = append(common, b.env...)
	var addrs []string
	type child struct {
		cmd  *exec.Cmd
		log  string
		done chan struct{} // closed when it has exited
	}
	var children []child
	defer func() {
		for _, c := range children {
			_ = c.cmd.Process.Signal(syscall.SIGTERM)
			select {
			case <-c.done:
			case <-time.After(30 * time.Second):
				_ = c.cmd.Process.Kill()
				<-c.done
			}
		}
	}()
	start := time.Now()
	for i := range n {
		addr, err := freePort()
		if err != nil {
			return 0, 0, err
		}
		logFile := filepath.Join(b.opts.dir, fmt.Sprintf("live-%s-%d-%d.log", backend, n, i))
		log, err := os.Create(logFile)
		if err != nil {
			return 0, 0, err
		}
		defer log.Close()
		cmd := exec.CommandContext(ctx, bin)
		cmd.Env = append(os.Environ(), append(common, "PROJECTOR_HTTP_ADDR="+addr)...)
		if backend == "PostgreSQL" { // the embedded stores refuse the instance settings
			cmd.Env = append(cmd.Env, fmt.Sprintf("PROJECTOR_INSTANCE_ID=bench-%d", i))
		}
		cmd.Stdout, cmd.Stderr = log, log
		if err := cmd.Start(); err != nil {
			return 0, 0, err
		}
		c := child{cmd: cmd, log: logFile, done: make(chan struct{})}
		go func() { _ = cmd.Wait(); close(c.done) }()
		children, addrs = append(children, c), append(addrs, addr)
	}
	for last, at := uint64(0), time.Now(); ; {
		for _, c := range children {
			select {
			case <-c.done:
				return 0, 0, fmt.Errorf("a projector exited: %v (log: %s)", c.cmd.ProcessState, c.log)
			default:
			}
		}
		pos, err := readModelPosition(ctx, addrs[0])
		if err == nil && pos >= head {
			took := time.Since(start)
			// The reactors trail the read model: the CPU is read once
			// every projector of every instance has caught up.
			if !caughtUp(ctx, addrs, 5*time.Minute) {
				progress("readside: the projectors did not catch up within 5 minutes: no CPU figure")
				return took, 0, nil
			}
			for _, c := range children {
				cpu += cpuTime(c.cmd.Process.Pid)
			}
			return took, cpu, nil
		}
		if err == nil && pos != last {
			last = pos
		}
		if time.Since(at) >= 5*time.Second {
			progress("readside: read model at position %d of %d (%v)", last, head, err)
			at = time.Now()
		}
		select {
		case <-ctx.Done():
			return 0, 0, ctx.Err()
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// caughtUp waits, for at most limit, until no instance at addrs reports a
// lag (the sum of rxflow_projector_lag_events and rxflow_segment_lag_events
// on /metrics) in two scrapes 100 ms apart.
func caughtUp(ctx context.Context, addrs []string, limit time.Duration) bool {
	lagging := func() bool {
		for _, addr := range addrs {
			if n, err := lagEvents(ctx, addr); err != nil || n > 0 {
				return true
			}
		}
		return false
	}
	deadline := time.Now().Add(limit)
	for time.Now().Before(deadline) && ctx.Err() == nil {
		if !lagging() {
			time.Sleep(100 * time.Millisecond)
			if !lagging() {
				return true
			}
		}
		time.Sleep(100 * time.Millisecond)
	}
	return false
}

// lagEvents is the sum of the projector and segment lag gauges of the
// instance at addr.
func lagEvents(ctx context.Context, addr string) (float64, error) {
	var total float64
	for _, metric := range []string{"rxflow_projector_lag_events", "rxflow_segment_lag_events"} {
		samples, err := scrape(ctx, http.DefaultClient, addr, metric)
		if err != nil {
			return 0, err
		}
		for _, v := range samples {
			total += v
		}
	}
	return total, nil
}

// readModelPosition is the read model's position as the query API at addr
// reports it (X-Read-Model-Position of GET /prescriptions/stats).
func readModelPosition(ctx context.Context, addr string) (uint64, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+addr+"/prescriptions/stats", nil)
	if err != nil {
		return 0, err
	}
	req.Header.Set("Authorization", "Bearer "+readsideToken)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0, err
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	h := resp.Header.Get("X-Read-Model-Position")
	if h == "" {
		return 0, fmt.Errorf("status %d without a position", resp.StatusCode)
	}
	return strconv.ParseUint(h, 10, 64)
}

// lastPosition is the commit position of the last prescription event in
// the store at conn.
func lastPosition(ctx context.Context, conn string) (uint64, error) {
	settings, err := esdb.ParseConnectionString(conn)
	if err != nil {
		return 0, err
	}
	settings.Logger = esdb.NoopLogging()
	client, err := esdb.NewClient(settings)
	if err != nil {
		return 0, err
	}
	defer client.Close()
	stream, err := client.ReadAll(ctx, esdb.ReadAllOptions{Direction: esdb.Backwards, From: esdb.End{}}, 1000)
	if err != nil {
		return 0, err
	}
	defer stream.Close()
	for {
		ev, err := stream.Recv()
		if err != nil {
			return 0, fmt.Errorf("no prescription event among the last 1000 of $all: %w", err)
		}
		if strings.HasPrefix(ev.OriginalEvent().StreamID, events.StreamPrefix) {
			return ev.OriginalEvent().Position.Commit, nil
		}
	}
}

func freePort() (string, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	defer ln.Close()
	return ln.Addr().String(), nil
}

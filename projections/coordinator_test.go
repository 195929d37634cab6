package projections_test

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"rxflow/commands"
	"rxflow/events"
	"rxflow/infra/postgres"
	"rxflow/infra/postgres/postgrestest"
	"rxflow/projections"
)

// fenced is a projector of one segment writing to PostgreSQL as the
// PostgreSQL stores do: each event and its checkpoint in one transaction
// that first checks the lease's token under a shared lock on its row. It
// records which instance wrote what.
type fenced struct {
	pool   *pgxpool.Pool
	lease  projections.Lease
	writer string
	before func(ctx context.Context, rec events.Recorded) // optional: runs before each event's transaction
}

func (p *fenced) Name() string { return "applied" }

func (p *fenced) Checkpoint(ctx context.Context) (uint64, error) {
	var pos int64
	err := p.pool.QueryRow(ctx, `SELECT position FROM applied_checkpoints WHERE segment = $1`, p.lease.Segment).Scan(&pos)
	if errors.Is(err, pgx.ErrNoRows) {
		return 0, nil
	}
	return uint64(pos), err
}

func (p *fenced) write(ctx context.Context, f func(tx pgx.Tx) error) error {
	return pgx.BeginFunc(ctx, p.pool, func(tx pgx.Tx) error {
		var token int64
		if err := tx.QueryRow(ctx, `SELECT token FROM segment_leases WHERE segment = $1 FOR SHARE`, p.lease.Segment).Scan(&token); err != nil {
			return err
		}
		if token != p.lease.Token {
			return projections.ErrLeaseLost
		}
		return f(tx)
	})
}

func (p *fenced) saveCheckpoint(ctx context.Context, tx pgx.Tx, pos uint64) error {
	_, err := tx.Exec(ctx, `INSERT INTO applied_checkpoints (segment, position, writer) VALUES ($1, $2, $3)
		ON CONFLICT (segment) DO UPDATE SET position = excluded.position, writer = excluded.writer
		WHERE applied_checkpoints.position < excluded.position`, p.lease.Segment, int64(pos), p.writer)
	return err
}

func (p *fenced) Handle(ctx context.Context, rec events.Recorded) error {
	if !p.lease.Covers(rec.URN) {
		return fmt.Errorf("%s@%d is not in segment %d", rec.URN, rec.Position, p.lease.Segment)
	}
	if p.before != nil {
		p.before(ctx, rec)
	}
	return p.write(ctx, func(tx pgx.Tx) error {
		_, err := tx.Exec(ctx, `INSERT INTO applied (position, segment, writer, token) VALUES ($1, $2, $3, $4)`,
			int64(rec.Position), p.lease.Segment, p.writer, p.lease.Token)
		if err != nil {
			return err
		}
		return p.saveCheckpoint(ctx, tx, rec.Position)
	})
}

func (p *fenced) SaveCheckpoint(ctx context.Context, pos uint64) error {
	return p.write(ctx, func(tx pgx.Tx) error { return p.saveCheckpoint(ctx, tx, pos) })
}

// pausable passes lease calls through, except while paused: then they wait,
// as the calls of a stopped (SIGSTOP) process would.
type pausable struct {
	projections.Leases
	mu   sync.Mutex
	gate chan struct{} // closed while not paused
}

func newPausable(l projections.Leases) *pausable {
	p := &pausable{Leases: l, gate: make(chan struct{})}
	close(p.gate)
	return p
}

func (p *pausable) pause()  { p.mu.Lock(); p.gate = make(chan struct{}); p.mu.Unlock() }
func (p *pausable) resume() { p.mu.Lock(); close(p.gate); p.mu.Unlock() }
func (p *pausable) wait(ctx context.Context) error {
	p.mu.Lock()
	g := p.gate
	p.mu.Unlock()
	select {
	case <-g:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

func (p *pausable) Claim(ctx context.Context, held int) ([]projections.Claimed, int, error) {
	if err := p.wait(ctx); err != nil {
		return nil, 0, err
	}
	return p.Leases.Claim(ctx, held)
}

func (p *pausable) Renew(ctx context.Context, l projections.Lease) error {
	if err := p.wait(ctx); err != nil {
		return err
	}
	return p.Leases.Renew(ctx, l)
}

// instance is one projector instance: its coordinator, running until stop.
type instance struct {
	name   string
	leases *pausable
	coord  *projections.Coordinator
	held   atomic.Bool // its events wait in before while set
	hold   chan struct{}
	stop   func()
}

type cluster struct {
	t     *testing.T
	db    *postgres.DB
	feed  projections.Feed
	h     *commands.Handler
	count int
	ttl   time.Duration
}

func newCluster(t *testing.T, count int, ttl time.Duration) *cluster {
	db, err := postgres.Open(context.Background(), postgrestest.URL(t))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(db.Close)
	if _, err := db.Pool().Exec(context.Background(), `
		CREATE TABLE applied (position bigint PRIMARY KEY, segment int NOT NULL, writer text NOT NULL, token bigint NOT NULL);
		CREATE TABLE applied_checkpoints (segment int PRIMARY KEY, position bigint NOT NULL, writer text NOT NULL)`); err != nil {
		t.Fatal(err)
	}
	store := memoryStore(t)
	return &cluster{t: t, db: db, feed: store, h: commands.NewHandler(store, commands.HandlerConfig{}), count: count, ttl: ttl}
}

func (c *cluster) start(name string) *instance {
	c.t.Helper()
	return c.startWith(name, func(in *instance, lease projections.Lease) []projections.Projector {
		return []projections.Projector{&fenced{pool: c.db.Pool(), lease: lease, writer: name, before: in.wait}}
	})
}

// wait holds an event while the instance is held, as a stopped process
// would hold a write it has begun.
func (in *instance) wait(ctx context.Context, _ events.Recorded) {
	if in.held.Load() {
		select {
		case <-in.hold:
		case <-ctx.Done():
		}
	}
}

// startWith starts an instance whose segments run the projectors of build.
func (c *cluster) startWith(name string, build func(in *instance, lease projections.Lease) []projections.Projector) *instance {
	c.t.Helper()
	l, err := c.db.Leases(context.Background(), name, c.count, c.ttl)
	if err != nil {
		c.t.Fatal(err)
	}
	in := &instance{name: name, leases: newPausable(l), hold: make(chan struct{})}
	in.coord, err = projections.NewCoordinator(projections.CoordinatorConfig{
		Leases: in.leases, Feed: c.feed, TTL: c.ttl, Logger: quiet(),
		Runner: projections.RunnerConfig{MinBackoff: 20 * time.Millisecond, MaxBackoff: 100 * time.Millisecond, CheckpointIdle: 50 * time.Millisecond, Logger: quiet()},
		Build:  func(lease projections.Lease) []projections.Projector { return build(in, lease) },
	})
	if err != nil {
		c.t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- in.coord.Run(ctx) }()
	in.stop = sync.OnceFunc(func() {
		cancel()
		if err := <-done; err != nil {
			c.t.Errorf("%s: %v", name, err)
		}
	})
	c.t.Cleanup(in.stop)
	return in
}

func (c *cluster) request(n int, prefix string) []uint64 {
	var out []uint64
	for i := range n {
		out = append(out, request(c.t, c.h, fmt.Sprintf("urn:rx:%s-%d", prefix, i)))
	}
	return out
}

// applied is the number of events written, and by whom.
func (c *cluster) applied() (int, map[string]int) {
	rows, err := c.db.Pool().Query(context.Background(), `SELECT writer, count(*) FROM applied GROUP BY writer`)
	if err != nil {
		c.t.Fatal(err)
	}
	by := map[string]int{}
	total := 0
	for rows.Next() {
		var w string
		var n int
		if err := rows.Scan(&w, &n); err != nil {
			c.t.Fatal(err)
		}
		by[w] = n
		total += n
	}
	return total, by
}

func segments(ls []projections.Lease) []int {
	var out []int
	for _, l := range ls {
		out = append(out, l.Segment)
	}
	return out
}

// Instances share the segments fairly; a newcomer gets work; a dead
// instance's segments are taken over from the stored checkpoints and every
// event is applied exactly once (the applied table's key refuses a second
// write of an event, which would stall its segment).
func TestCoordinatorsShareAndTakeOver(t *testing.T) {
	c := newCluster(t, 4, 600*time.Millisecond)
	c.request(20, "first")
	a := c.start("a")
	waitFor(t, func() bool { n, _ := c.applied(); return n == 20 && len(a.coord.Held()) == 4 })

	b := c.start("b")
	waitFor(t, func() bool { return len(a.coord.Held()) == 2 && len(b.coord.Held()) == 2 })
	both := append(segments(a.coord.Held()), segments(b.coord.Held())...)
	if slices.Sort(both); !slices.Equal(both, []int{0, 1, 2, 3}) {
		t.Fatalf("segments held: %v, want each once", both)
	}
	c.request(20, "second")
	waitFor(t, func() bool { n, _ := c.applied(); return n == 40 })

	// a stops dead: no renewal, no write.
	a.held.Store(true)
	a.leases.pause()
	paused := time.Now()
	waitFor(t, func() bool { return len(b.coord.Held()) == 4 })
	t.Logf("takeover of a dead instance's segments: %v after its last chance to renew (lease %v)", time.Since(paused).Round(time.Millisecond), c.ttl)
	c.request(20, "third")
	waitFor(t, func() bool { n, _ := c.applied(); return n == 60 })
	if b.coord.Takeovers() != 2 {
		t.Errorf("takeovers %d, want 2", b.coord.Takeovers())
	}
	if _, by := c.applied(); by["a"] > 40 {
		t.Errorf("the dead instance wrote %d events", by["a"]-40)
	}
	close(a.hold)
	a.leases.resume()
	waitFor(t, func() bool { return len(a.coord.Held()) == 2 && len(b.coord.Held()) == 2 })
	if b.coord.Renewals() == 0 {
		t.Error("no renewal counted")
	}

	a.stop()
	b.stop()
	owners, err := c.db.Leases(context.Background(), "observer", 4, time.Second)
	if err != nil {
		t.Fatal(err)
	}
	if o, err := owners.Owners(context.Background()); err != nil || !slices.Equal(o, []string{"", "", "", ""}) {
		t.Fatalf("owners after shutdown %q (%v), want every segment released", o, err)
	}
}

// A paused instance (its renewals held past its lease, a write held in
// flight) writes nothing once another instance has claimed its segments:
// the held write is refused by the fence, the coordinator drops the
// segment at once, without waiting for its own renewals, and the event is
// applied once, by the new holder.
func TestStaleInstanceWritesNothingForALostSegment(t *testing.T) {
	c := newCluster(t, 2, 600*time.Millisecond)
	c.request(6, "before")
	a := c.start("a")
	waitFor(t, func() bool { n, _ := c.applied(); return n == 6 && len(a.coord.Held()) == 2 })

	a.held.Store(true)
	a.leases.pause()
	late := c.request(1, "late")[0]
	b := c.start("b")
	waitFor(t, func() bool { return len(b.coord.Held()) == 2 })
	waitFor(t, func() bool { n, _ := c.applied(); return n == 7 })

	seg := projections.SegmentOf("urn:rx:late-0", 2)
	close(a.hold) // the held write goes ahead, under the old token
	waitFor(t, func() bool { return !a.coord.Holds(seg) })
	var writer string
	var token int64
	if err := c.db.Pool().QueryRow(context.Background(), `SELECT writer, token FROM applied WHERE position = $1`, int64(late)).Scan(&writer, &token); err != nil {
		t.Fatal(err)
	}
	if writer != "b" || token != 2 {
		t.Errorf("the late event was written by %s under token %d, want b under token 2", writer, token)
	}
	if _, by := c.applied(); by["a"] != 6 {
		t.Errorf("the paused instance wrote %d events after its pause", by["a"]-6)
	}
	if err := c.db.Pool().QueryRow(context.Background(), `SELECT writer FROM applied_checkpoints WHERE segment = $1`, seg).Scan(&writer); err != nil || writer != "b" {
		t.Errorf("checkpoint of the lost segment last written by %q (%v), want b", writer, err)
	}

	a.leases.resume() // its renewal of the other segment is refused: it drops it, then gets its share again
	waitFor(t, func() bool { return len(a.coord.Held()) == 1 && len(b.coord.Held()) == 1 })
	if n, _ := c.applied(); n != 7 {
		t.Errorf("%d events applied, want 7", n)
	}
}

// Handing a segment over to a newcomer waits for its runners to finish the
// event under way; meanwhile the instance keeps renewing its other leases,
// so no other instance takes them over.
func TestHandoverKeepsTheOtherLeases(t *testing.T) {
	c := newCluster(t, 2, 600*time.Millisecond)
	c.request(4, "before")
	a := c.start("a")
	waitFor(t, func() bool { n, _ := c.applied(); return n == 4 && len(a.coord.Held()) == 2 })

	// a's last segment, the one it hands over, is stuck in an event.
	handed := a.coord.Held()[1].Segment
	urn := ""
	for i := 0; urn == ""; i++ {
		if u := fmt.Sprintf("urn:rx:stuck-%d", i); projections.SegmentOf(u, 2) == handed {
			urn = u
		}
	}
	a.held.Store(true)
	request(t, c.h, urn)
	b := c.start("b")
	kept := a.coord.Held()[0].Segment
	for deadline := time.Now().Add(5 * c.ttl); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		if !a.coord.Holds(kept) || b.coord.Holds(kept) {
			t.Fatalf("segment %d left a while a handed segment %d over: a holds %v, b %v", kept, handed, segments(a.coord.Held()), segments(b.coord.Held()))
		}
	}
	close(a.hold)
	waitFor(t, func() bool { return b.coord.Holds(handed) && a.coord.Holds(kept) })
	if n, _ := c.applied(); n != 5 {
		t.Errorf("%d events applied, want 5", n)
	}
}

// An instance whose calls to the lease table hang (a dead connection)
// drops its segments once a lease time has passed, rather than believing
// it still holds them, and claims its share again once the table answers.
func TestHungLeaseCallsDropTheSegments(t *testing.T) {
	c := newCluster(t, 2, 600*time.Millisecond)
	a := c.start("a")
	waitFor(t, func() bool { return len(a.coord.Held()) == 2 })
	a.leases.pause()
	waitFor(t, func() bool { return len(a.coord.Held()) == 0 })
	if err := a.coord.Ready(); err == nil {
		t.Error("ready while no call reaches the lease table")
	}
	a.leases.resume()
	waitFor(t, func() bool { return len(a.coord.Held()) == 2 })
}

// saves counts a recorder's checkpoint writes.
type saves struct {
	recorder
	n atomic.Int32
}

func (s *saves) SaveCheckpoint(ctx context.Context, pos uint64) error {
	s.n.Add(1)
	return s.recorder.SaveCheckpoint(ctx, pos)
}

// On a segment's feed a runner handles only the segment's events; the
// others move its cursor, so its checkpoint ends past them, with no
// checkpoint write per skipped event.
func TestSegmentFeedSkipsOtherSegmentsWithoutACheckpointEach(t *testing.T) {
	store := memoryStore(t)
	h := commands.NewHandler(store, commands.HandlerConfig{})
	lease := projections.Lease{Segment: 1, Count: 4, Token: 1}
	var mine, last uint64
	var want []uint64
	for i := range 40 {
		urn := fmt.Sprintf("urn:rx:seg-%d", i)
		last = request(t, h, urn)
		if lease.Covers(urn) {
			mine++
			want = append(want, last)
		}
	}
	if mine == 0 || mine > 20 {
		t.Fatalf("%d of 40 streams in the segment: pick other names", mine)
	}
	rec := &saves{}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	r := projections.NewRunner(projections.SegmentFeed(store, lease), rec,
		projections.RunnerConfig{CheckpointIdle: time.Hour, Logger: quiet()})
	go func() { _ = r.Run(ctx) }()
	waitFor(t, func() bool { up, _ := r.CaughtUp(); cp, _ := rec.Checkpoint(ctx); return up && cp == last })
	if got := rec.positions(); !slices.Equal(got, want) {
		t.Errorf("handled %v, want the segment's %v", got, want)
	}
	if n := rec.n.Load(); n > 2 {
		t.Errorf("%d checkpoint writes for %d skipped events, want at most 2", n, 40-mine)
	}
}

// Readiness: an instance is ready once its claims reach the lease table,
// also as a standby holding nothing while another holds every segment; it
// is not ready once its claims have not reached the table for a lease time.
func TestCoordinatorReadiness(t *testing.T) {
	c := newCluster(t, 1, 600*time.Millisecond)
	a := c.start("a")
	waitFor(t, func() bool { return len(a.coord.Held()) == 1 })
	b := c.start("b")
	waitFor(t, func() bool { return b.coord.Ready() == nil })
	if len(b.coord.Held()) != 0 || a.coord.Ready() != nil {
		t.Fatalf("b holds %v, a's readiness %v; want b a ready standby beside a ready holder", b.coord.Held(), a.coord.Ready())
	}
	b.leases.pause()
	waitFor(t, func() bool { return b.coord.Ready() != nil })
	if err := b.coord.Ready(); !strings.Contains(err.Error(), "no claim reached the lease table") {
		t.Errorf("readiness of a cut-off instance: %v", err)
	}
	b.leases.resume()
	waitFor(t, func() bool { return b.coord.Ready() == nil })
}

// refusals records what a projector's writes were refused with.
type refusals struct {
	projections.Projector
	before func(context.Context, events.Recorded)
	mu     sync.Mutex
	errs   []error
}

func (r *refusals) Handle(ctx context.Context, rec events.Recorded) error {
	r.before(ctx, rec)
	err := r.Projector.Handle(ctx, rec)
	if err != nil {
		r.mu.Lock()
		r.errs = append(r.errs, err)
		r.mu.Unlock()
	}
	return err
}

// The same pause on the PostgreSQL read model: the write the paused
// instance had begun is refused by the store (ErrLeaseLost), and the
// instance drops the segment while its renewals are still held.
func TestStaleInstanceOnThePostgreSQLReadModel(t *testing.T) {
	c := newCluster(t, 2, 600*time.Millisecond)
	queries := c.db.Queries()
	var mu sync.Mutex
	byInstance := map[string][]*refusals{}
	build := func(in *instance, lease projections.Lease) []projections.Projector {
		p := &refusals{Projector: projections.NewReadModelProjector(c.db.ReadModel(lease)), before: in.wait}
		mu.Lock()
		byInstance[in.name] = append(byInstance[in.name], p)
		mu.Unlock()
		return []projections.Projector{p}
	}
	before := c.request(6, "before")
	a := c.startWith("a", build)
	waitFor(t, func() bool { return len(a.coord.Held()) == 2 })
	// Every earlier event applied: the late one is the only write held.
	if err := queries.WaitFor(context.Background(), before[len(before)-1]); err != nil {
		t.Fatal(err)
	}
	a.held.Store(true)
	a.leases.pause()
	late := c.request(1, "late")[0]
	b := c.startWith("b", build)
	waitFor(t, func() bool { return len(b.coord.Held()) == 2 })
	if err := queries.WaitFor(context.Background(), late); err != nil {
		t.Fatal(err)
	}
	seg := projections.SegmentOf("urn:rx:late-0", 2)
	close(a.hold)
	waitFor(t, func() bool { return !a.coord.Holds(seg) })
	mu.Lock()
	var refused []error
	for _, p := range byInstance["a"] {
		p.mu.Lock()
		refused = append(refused, p.errs...)
		p.mu.Unlock()
	}
	mu.Unlock()
	if len(refused) != 1 || !errors.Is(refused[0], projections.ErrLeaseLost) {
		t.Fatalf("the paused instance's writes ended with %v, want one ErrLeaseLost", refused)
	}
	row, err := queries.Get(context.Background(), "urn:rx:late-0")
	if err != nil || row.LastPosition != late {
		t.Fatalf("late row %+v (%v), want it at %d", row, err, late)
	}
	a.leases.resume()
	waitFor(t, func() bool { return len(a.coord.Held()) == 1 && len(b.coord.Held()) == 1 })
}

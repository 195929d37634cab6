package projections

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"rxflow/events"
)

// Leases is the shared table of segment leases that projector instances
// claim (infra/postgres). Expiry is measured on the table's clock, never on
// an instance's.
type Leases interface {
	// Count is the number of segments, fixed for the table.
	Count() int
	// Claim marks this instance live for one lease time and claims free or
	// expired segments until it holds its fair share, ceil(Count / live
	// instances), given that it already holds held of them. It returns the
	// new leases (their tokens bumped) and the share.
	Claim(ctx context.Context, held int) (claimed []Claimed, share int, err error)
	// Renew extends l by one lease time; ErrLeaseLost if another instance
	// has claimed the segment since.
	Renew(ctx context.Context, l Lease) error
	// Release frees l's segment for any instance to claim at once, if l
	// still holds it; on shutdown, or to hand over a segment beyond the share.
	Release(ctx context.Context, l Lease) error
	// Leave marks this instance gone, on shutdown, so that the others'
	// shares grow at once.
	Leave(ctx context.Context) error
}

// Claimed is a lease just obtained by Claim.
type Claimed struct {
	Lease
	TakenOver bool // the segment was held by another instance, whose lease expired (not released)
}

// CoordinatorConfig configures a Coordinator. Leases, Feed and Build are
// required.
type CoordinatorConfig struct {
	Leases Leases
	Feed   Feed
	// Build makes the projectors of one segment, each writing to stores
	// bound to lease (fenced by its token).
	Build func(lease Lease) []Projector
	// Tasks, optional, is other work done while lease is held (the deadline
	// scheduler on segment 0), stopped with the segment's runners. A task
	// that returns ErrLeaseLost drops the segment.
	Tasks  func(lease Lease) []func(ctx context.Context) error
	TTL    time.Duration // the lease time; renewed and claimed every TTL/3; default 10s
	Runner RunnerConfig  // of every runner; its Lag is the coordinator's
	Lag    *LagTracker   // optional: tracks each runner as "<projector>/segment-<n>"
	Logger *slog.Logger
}

// Coordinator runs the projectors of the segments its instance holds: every
// TTL/3 it renews their leases, claims its fair share of the free and
// expired ones, and releases those beyond its share so that a newcomer gets
// work. A segment whose lease is lost (renewal refused or failed, or a
// store write refused with ErrLeaseLost) has its runners stopped at once;
// another instance resumes it from the stored checkpoints.
type Coordinator struct {
	cfg       CoordinatorConfig
	log       *slog.Logger
	mu        sync.Mutex
	held      map[int]*segment
	lastRound time.Time // of the last round that reached the lease table
	roundErr  error
	renewals  atomic.Uint64
	takeovers atomic.Uint64
	wg        sync.WaitGroup // segment goroutines and releases
}

// segment is one held segment and its runners.
type segment struct {
	lease   Lease
	runners []*Runner
	stop    context.CancelFunc
	done    chan struct{} // closed when every runner has returned
}

// NewCoordinator returns a coordinator; Run starts it.
func NewCoordinator(cfg CoordinatorConfig) (*Coordinator, error) {
	if cfg.Leases == nil || cfg.Feed == nil || cfg.Build == nil {
		return nil, errors.New("coordinator: Leases, Feed and Build are required")
	}
	if cfg.TTL == 0 {
		cfg.TTL = 10 * time.Second
	}
	if cfg.TTL < 3*time.Millisecond {
		return nil, fmt.Errorf("coordinator: lease time %v is too short", cfg.TTL)
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	cfg.Runner.Lag = cfg.Lag
	return &Coordinator{cfg: cfg, log: cfg.Logger, held: map[int]*segment{}}, nil
}

// Run coordinates until ctx ends, then stops every runner and releases
// every lease it holds, so that the others take them at once.
func (c *Coordinator) Run(ctx context.Context) error {
	tick := time.NewTicker(c.cfg.TTL / 3)
	defer tick.Stop()
	defer func() {
		// Past one lease time, leaving is moot: the instance's mark has
		// expired. Each release bounds its own call the same way.
		ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), c.cfg.TTL)
		defer cancel()
		c.shutdown(ctx)
	}()
	for {
		c.round(ctx)
		select {
		case <-ctx.Done():
			return nil
		case <-tick.C:
		}
	}
}

// round renews the held leases, claims up to the share and releases any
// segment beyond it. Each call to the lease table gets one lease time: a
// renewal that takes longer comes too late anyway, and a hung connection
// must not keep the instance believing it holds its segments.
func (c *Coordinator) round(ctx context.Context) {
	for _, l := range c.Held() {
		rctx, cancel := context.WithTimeout(ctx, c.cfg.TTL)
		err := c.cfg.Leases.Renew(rctx, l)
		cancel()
		if ctx.Err() != nil {
			return
		}
		switch {
		case err == nil:
			c.renewals.Add(1)
		case errors.Is(err, ErrLeaseLost):
			c.drop(l, "renewal refused: the lease was claimed by another instance")
		default:
			c.drop(l, "renewal failed: "+err.Error())
		}
	}
	cctx, cancel := context.WithTimeout(ctx, c.cfg.TTL)
	claimed, share, err := c.cfg.Leases.Claim(cctx, len(c.Held()))
	cancel()
	if ctx.Err() != nil {
		return
	}
	c.mu.Lock()
	c.roundErr = err
	if err == nil {
		c.lastRound = time.Now()
	}
	c.mu.Unlock()
	if err != nil {
		c.log.Warn("segment leases: claim failed", "err", err)
		return
	}
	for _, cl := range claimed {
		if cl.TakenOver {
			c.takeovers.Add(1)
		}
		c.start(ctx, cl)
	}
	if held := c.Held(); len(held) > share {
		for _, l := range held[share:] {
			// Off the round: runners finishing an event must not hold up
			// the renewal of the other leases.
			c.wg.Go(func() { c.release(ctx, l) })
		}
	}
}

// start runs the projectors of cl's segment, each on the segment's share of
// the feed.
func (c *Coordinator) start(ctx context.Context, cl Claimed) {
	ctx, stop := context.WithCancel(ctx)
	s := &segment{lease: cl.Lease, stop: stop, done: make(chan struct{})}
	feed := SegmentFeed(c.cfg.Feed, cl.Lease)
	for _, p := range c.cfg.Build(cl.Lease) {
		s.runners = append(s.runners, NewRunner(feed, named(p, fmt.Sprintf("%s/segment-%d", p.Name(), cl.Segment)), c.cfg.Runner))
	}
	c.mu.Lock()
	c.held[cl.Segment] = s
	c.mu.Unlock()
	c.log.Info("segment claimed", "segment", cl.Segment, "token", cl.Token, "takenOver", cl.TakenOver)
	var runners sync.WaitGroup
	work := make([]func(context.Context) error, 0, len(s.runners))
	for _, r := range s.runners {
		work = append(work, r.Run)
	}
	if c.cfg.Tasks != nil {
		work = append(work, c.cfg.Tasks(cl.Lease)...)
	}
	for _, run := range work {
		runners.Go(func() {
			if err := run(ctx); errors.Is(err, ErrLeaseLost) {
				c.drop(cl.Lease, "a store refused a write: the lease was claimed by another instance")
			}
		})
	}
	c.wg.Go(func() {
		runners.Wait()
		close(s.done)
	})
}

// drop stops l's runners at once, without releasing: the lease is gone.
func (c *Coordinator) drop(l Lease, why string) {
	c.mu.Lock()
	s, ok := c.held[l.Segment]
	if !ok || s.lease != l {
		c.mu.Unlock()
		return
	}
	delete(c.held, l.Segment)
	c.mu.Unlock()
	s.stop()
	go func() { <-s.done; c.forget(s) }()
	c.log.Warn("segment dropped", "segment", l.Segment, "token", l.Token, "reason", why)
}

// release stops l's runners, waits until they have saved what they handled,
// and frees the segment.
func (c *Coordinator) release(ctx context.Context, l Lease) {
	c.mu.Lock()
	s, ok := c.held[l.Segment]
	delete(c.held, l.Segment)
	c.mu.Unlock()
	if !ok {
		return
	}
	s.stop()
	<-s.done
	c.forget(s)
	// Even when ctx has ended (a stop): the others then claim the segment
	// at once rather than after the lease time.
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), c.cfg.TTL)
	defer cancel()
	if err := c.cfg.Leases.Release(ctx, l); err != nil {
		c.log.Warn("segment release failed; it frees when the lease expires", "segment", l.Segment, "err", err)
		return
	}
	c.log.Info("segment released", "segment", l.Segment, "token", l.Token)
}

// forget stops tracking the lag of s's runners.
func (c *Coordinator) forget(s *segment) {
	if c.cfg.Lag == nil {
		return
	}
	for _, r := range s.runners {
		c.cfg.Lag.Forget(r.Name())
	}
}

func (c *Coordinator) shutdown(ctx context.Context) {
	for _, l := range c.Held() {
		c.release(ctx, l)
	}
	c.wg.Wait()
	if err := c.cfg.Leases.Leave(ctx); err != nil {
		c.log.Warn("segment leases: leave failed; the instance counts as live until its lease time ends", "err", err)
	}
}

// Held is the leases held now, by segment.
func (c *Coordinator) Held() []Lease {
	c.mu.Lock()
	defer c.mu.Unlock()
	out := make([]Lease, 0, len(c.held))
	for _, s := range c.held {
		out = append(out, s.lease)
	}
	slices.SortFunc(out, func(a, b Lease) int { return a.Segment - b.Segment })
	return out
}

// Holds reports whether the instance holds segment.
func (c *Coordinator) Holds(segment int) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	_, ok := c.held[segment]
	return ok
}

// Runners is the runners of segment, none if it is not held.
func (c *Coordinator) Runners(segment int) []*Runner {
	c.mu.Lock()
	defer c.mu.Unlock()
	if s, ok := c.held[segment]; ok {
		return slices.Clone(s.runners)
	}
	return nil
}

// Renewals counts the leases renewed; Takeovers the segments claimed from
// an instance whose lease expired.
func (c *Coordinator) Renewals() uint64  { return c.renewals.Load() }
func (c *Coordinator) Takeovers() uint64 { return c.takeovers.Load() }

// Ready is nil while the instance is in touch with the lease table: its
// last round of claims reached it within one lease time. An instance that
// holds no segment because every one is held by another live instance is
// ready (a standby: it serves queries and takes over when one dies).
func (c *Coordinator) Ready() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	switch {
	case c.lastRound.IsZero() && c.roundErr == nil:
		return errors.New("segment leases: no claim made yet")
	case time.Since(c.lastRound) > c.cfg.TTL:
		return fmt.Errorf("segment leases: no claim reached the lease table for over %v: %v", c.cfg.TTL, c.roundErr)
	}
	return nil
}

// segmentNamed gives a projector of one segment a name of its own in the
// runner's logs and lag.
type segmentNamed struct {
	Projector
	name string
}

func (p segmentNamed) Name() string { return p.name }

// segmentNamedBatch is a segmentNamed BatchHandler.
type segmentNamedBatch struct {
	segmentNamed
	b BatchHandler
}

func (p segmentNamedBatch) HandleBatch(ctx context.Context, recs []events.Recorded) error {
	return p.b.HandleBatch(ctx, recs)
}

// named is p under name, a BatchHandler if p is one.
func named(p Projector, name string) Projector {
	if b, ok := p.(BatchHandler); ok {
		return segmentNamedBatch{segmentNamed{p, name}, b}
	}
	return segmentNamed{p, name}
}

// SegmentFeed is feed restricted to lease's segment: events of other
// segments arrive as Message.Skipped, which only moves a runner's cursor.
// Of a SharedFeed, the other segments' events are not handed to the
// subscription at all, and a run of them is one Message.Skipped.
func SegmentFeed(feed Feed, lease Lease) Feed {
	if h, ok := feed.(*SharedFeed); ok {
		return sharedSegment{h, lease}
	}
	return segmentFeed{feed, lease}
}

type segmentFeed struct {
	feed  Feed
	lease Lease
}

func (f segmentFeed) Subscribe(ctx context.Context, after uint64) (Subscription, error) {
	sub, err := f.feed.Subscribe(ctx, after)
	if err != nil {
		return nil, err
	}
	return segmentSub{sub, f.lease}, nil
}

type segmentSub struct {
	Subscription
	lease Lease
}

func (s segmentSub) Recv() (Message, error) {
	m, err := s.Subscription.Recv()
	if err == nil && m.Event != nil && !s.lease.Covers(m.Event.URN) {
		return Message{Skipped: m.Event.Position}, nil
	}
	return m, err
}

package projections_test

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"rxflow/commands"
	"rxflow/events"
	"rxflow/infra/eventstore"
	"rxflow/projections"
	"rxflow/standin/esdbserver"
)

// counted counts the subscriptions of its feed that are open.
type counted struct {
	projections.Feed
	opened, open, peak atomic.Int32
}

func (c *counted) Subscribe(ctx context.Context, after uint64) (projections.Subscription, error) {
	sub, err := c.Feed.Subscribe(ctx, after)
	if err != nil {
		return nil, err
	}
	c.opened.Add(1)
	for n := c.open.Add(1); ; {
		p := c.peak.Load()
		if n <= p || c.peak.CompareAndSwap(p, n) {
			break
		}
	}
	return &countedSub{Subscription: sub, c: c}, nil
}

type countedSub struct {
	projections.Subscription
	c    *counted
	once sync.Once
}

func (s *countedSub) Close() error {
	s.once.Do(func() { s.c.open.Add(-1) })
	return s.Subscription.Close()
}

// run starts a runner of p on feed until the test ends.
func run(t *testing.T, feed projections.Feed, p projections.Projector) *projections.Runner {
	t.Helper()
	r := projections.NewRunner(feed, p, projections.RunnerConfig{MinBackoff: 20 * time.Millisecond, MaxBackoff: 100 * time.Millisecond, Logger: quiet()})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); _ = r.Run(ctx) }()
	t.Cleanup(func() { cancel(); <-done })
	return r
}

func requests(t *testing.T, h *commands.Handler, prefix string, n int) []uint64 {
	t.Helper()
	var out []uint64
	for i := range n {
		out = append(out, request(t, h, fmt.Sprintf("urn:rx:%s-%d", prefix, i)))
	}
	return out
}

// untilShared appends live events until a single subscription of feed is
// open: every runner behind the shared reading has caught up and joined.
func untilShared(t *testing.T, feed *counted, h *commands.Handler, prefix string) []uint64 {
	t.Helper()
	var out []uint64
	for i := 0; feed.open.Load() != 1; i++ {
		if i == 200 {
			t.Fatalf("%d subscriptions still open after 200 live events, want 1", feed.open.Load())
		}
		out = append(out, request(t, h, fmt.Sprintf("urn:rx:%s-%d", prefix, i)))
	}
	return out
}

// Many runners on a SharedFeed read $all through one subscription (those
// that start once it has moved on catch up alone first), and each handles
// every event once, in order, the stored ones and the live ones.
func TestSharedFeedReadsOnceForEveryRunner(t *testing.T) {
	store := memoryStore(t)
	h := commands.NewHandler(store, commands.HandlerConfig{})
	want := requests(t, h, "shared", 30)
	feed := &counted{Feed: store}
	shared := projections.NewSharedFeed(feed, 0)
	recs := make([]*recorder, 6)
	for i := range recs {
		recs[i] = &recorder{}
		run(t, shared, recs[i])
	}
	want = append(want, untilShared(t, feed, h, "join")...)
	want = append(want, requests(t, h, "live", 30)...)
	for i, rec := range recs {
		waitFor(t, func() bool { return len(rec.positions()) >= len(want) })
		if got := rec.positions(); !slices.Equal(got, want) {
			t.Errorf("runner %d handled %v\nwant %v", i, got, want)
		}
	}
	if n := feed.open.Load(); n != 1 {
		t.Errorf("%d subscriptions of $all open for %d runners, want 1", n, len(recs))
	}
}

// A runner that starts further back than the shared reading's ring reaches
// catches up on a reading of its own, then joins: one subscription is left
// open.
func TestSharedFeedLateRunnerCatchesUpThenJoins(t *testing.T) {
	store := memoryStore(t)
	h := commands.NewHandler(store, commands.HandlerConfig{})
	want := requests(t, h, "early", 20)
	feed := &counted{Feed: store}
	shared := projections.NewSharedFeed(feed, 8)
	first := &recorder{}
	run(t, shared, first)
	waitFor(t, func() bool { return len(first.positions()) == len(want) })

	late := &recorder{}
	run(t, shared, late)
	waitFor(t, func() bool { return len(late.positions()) == len(want) })
	if n := feed.opened.Load(); n != 2 {
		t.Errorf("%d subscriptions opened, want 2: the shared one and the late runner's own", n)
	}
	// Live events move the late runner's own reading past the shared one,
	// and it joins.
	want = append(want, untilShared(t, feed, h, "join")...)
	want = append(want, requests(t, h, "after", 10)...)
	for name, rec := range map[string]*recorder{"first": first, "late": late} {
		waitFor(t, func() bool { return len(rec.positions()) >= len(want) })
		if got := rec.positions(); !slices.Equal(got, want) {
			t.Errorf("%s runner handled %v\nwant %v", name, got, want)
		}
	}
}

// blocked is a recorder whose Handle waits until release is closed.
type blocked struct {
	recorder
	release chan struct{}
}

func (b *blocked) Handle(ctx context.Context, rec events.Recorded) error {
	select {
	case <-b.release:
	case <-ctx.Done():
		return ctx.Err()
	}
	return b.recorder.Handle(ctx, rec)
}

// slowed is a recorder that takes a while over each event.
type slowed struct {
	recorder
	per time.Duration
}

func (s *slowed) Handle(ctx context.Context, rec events.Recorded) error {
	time.Sleep(s.per)
	return s.recorder.Handle(ctx, rec)
}

// Runners of two speeds share readings of $all: the fast ones one, the
// slow ones fall off it and read on their own lanes (one each at worst),
// and all join one again once they have caught up.
func TestSharedFeedRunnersOfTwoSpeeds(t *testing.T) {
	store := memoryStore(t)
	h := commands.NewHandler(store, commands.HandlerConfig{})
	feed := &counted{Feed: store}
	want := requests(t, h, "speeds", 300)
	shared := projections.NewSharedFeed(feed, 64)
	var recs []*recorder
	for i := range 6 {
		if i%2 == 0 {
			rec := &recorder{}
			run(t, shared, rec)
			recs = append(recs, rec)
		} else {
			rec := &slowed{per: 2 * time.Millisecond}
			run(t, shared, rec)
			recs = append(recs, &rec.recorder)
		}
	}
	for _, rec := range recs {
		waitFor(t, func() bool { return len(rec.positions()) >= len(want) })
	}
	want = append(want, untilShared(t, feed, h, "join")...)
	for i, rec := range recs {
		waitFor(t, func() bool { return len(rec.positions()) >= len(want) })
		if got := rec.positions(); !slices.Equal(got, want) {
			t.Errorf("runner %d handled %v\nwant %v", i, got, want)
		}
	}
	t.Logf("%d subscriptions of $all opened, at most %d open at once", feed.opened.Load(), feed.peak.Load())
	if n := feed.opened.Load(); n < 2 {
		t.Errorf("%d subscriptions of $all opened: the slow runners never fell off the fast reading", n)
	}
	if n := feed.peak.Load(); n > 4 {
		t.Errorf("%d subscriptions of $all open at once for 3 fast and 3 slow runners, want at most 4: one for the fast", n)
	}
}

// A runner that stops taking events falls off the end of the shared
// reading's ring: the others go on; released, it reads on its
// own from where it was, misses nothing and joins again.
func TestSharedFeedSlowRunnerHoldsNobodyUp(t *testing.T) {
	store := memoryStore(t)
	h := commands.NewHandler(store, commands.HandlerConfig{})
	feed := &counted{Feed: store}
	shared := projections.NewSharedFeed(feed, 8)
	fast, slow := &recorder{}, &blocked{release: make(chan struct{})}
	run(t, shared, fast)
	run(t, shared, slow)
	want := requests(t, h, "burst", 400) // well past the runner's read-ahead and the buffer
	waitFor(t, func() bool { return len(fast.positions()) == len(want) })
	if n := len(slow.positions()); n != 0 {
		t.Fatalf("the blocked runner handled %d events", n)
	}
	close(slow.release)
	waitFor(t, func() bool { return len(slow.positions()) >= len(want) })
	want = append(want, untilShared(t, feed, h, "rejoin")...)
	if feed.opened.Load() < 2 {
		t.Errorf("%d subscriptions opened: the slow runner was never dropped from the shared reading", feed.opened.Load())
	}
	for name, rec := range map[string]*recorder{"fast": fast, "slow": &slow.recorder} {
		waitFor(t, func() bool { return len(rec.positions()) >= len(want) })
		if got := rec.positions(); !slices.Equal(got, want) {
			t.Errorf("%s runner handled %v\nwant %v", name, got, want)
		}
	}
}

// Runners of segments on a SharedFeed each handle their segment's events
// only, their checkpoints end at the last event of $all, and one
// subscription is left open for them all.
func TestSharedFeedSegments(t *testing.T) {
	store := memoryStore(t)
	h := commands.NewHandler(store, commands.HandlerConfig{})
	var urns []string
	all := requests(t, h, "seg", 200)
	for i := range all {
		urns = append(urns, fmt.Sprintf("urn:rx:seg-%d", i))
	}
	feed := &counted{Feed: store}
	shared := projections.NewSharedFeed(feed, 0)
	const count = 4
	recs := make([]*saves, count)
	for s := range count {
		recs[s] = &saves{}
		run(t, projections.SegmentFeed(shared, projections.Lease{Segment: s, Count: count, Token: 1}), recs[s])
	}
	for i, pos := range untilShared(t, feed, h, "join") {
		all, urns = append(all, pos), append(urns, fmt.Sprintf("urn:rx:join-%d", i))
	}
	last := all[len(all)-1]
	for s, rec := range recs {
		waitFor(t, func() bool { cp, _ := rec.Checkpoint(context.Background()); return cp == last })
		var want []uint64
		for i, pos := range all {
			if projections.SegmentOf(urns[i], count) == s {
				want = append(want, pos)
			}
		}
		if got := rec.positions(); !slices.Equal(got, want) {
			t.Errorf("segment %d handled %v\nwant %v", s, got, want)
		}
		if n := rec.n.Load(); n > 10 {
			t.Errorf("segment %d: %d checkpoint writes for %d events, want few", s, n, len(all))
		}
	}
}

// When the shared subscription drops (the store restarts), every runner on
// it resubscribes and goes on from its checkpoint, missing nothing.
func TestSharedFeedSurvivesTheStoreGoingAway(t *testing.T) {
	dir := t.TempDir()
	srv, err := esdbserver.Start(esdbserver.Config{Addr: "127.0.0.1:0", DataDir: dir, Logger: quiet()})
	if err != nil {
		t.Fatal(err)
	}
	addr := srv.Addr()
	store, err := eventstore.Open(eventstore.Config{ConnectionString: srv.ConnectionString(), Logger: quiet()})
	if err != nil {
		t.Fatal(err)
	}
	defer store.Close()
	h := commands.NewHandler(store, commands.HandlerConfig{})
	want := requests(t, h, "before", 20)
	shared := projections.NewSharedFeed(store, 0)
	recs := []*recorder{{}, {}, {}}
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	defer func() { cancel(); wg.Wait() }() // the runners stop before the store closes
	for _, rec := range recs {
		r := projections.NewRunner(shared, rec, projections.RunnerConfig{MinBackoff: 20 * time.Millisecond, MaxBackoff: 100 * time.Millisecond, Logger: quiet()})
		wg.Go(func() { _ = r.Run(ctx) })
	}
	for _, rec := range recs {
		waitFor(t, func() bool { return len(rec.positions()) == len(want) })
	}
	if err := srv.Close(); err != nil {
		t.Fatal(err)
	}
	if srv, err = esdbserver.Start(esdbserver.Config{Addr: addr, DataDir: dir, Logger: quiet()}); err != nil {
		t.Fatal(err)
	}
	defer srv.Close()
	want = append(want, requests(t, h, "after", 20)...)
	for i, rec := range recs {
		waitFor(t, func() bool { return len(rec.positions()) >= len(want) })
		if got := rec.positions(); !slices.Equal(got, want) {
			t.Errorf("runner %d handled %v\nwant %v", i, got, want)
		}
	}
}

package storetest

import (
	"context"
	"errors"
	"reflect"
	"slices"
	"testing"
	"time"

	"rxflow/domain"
	"rxflow/events"
	"rxflow/projections"
)

// Shared is a store that projector instances share, each bound to the
// segment leases it holds (PostgreSQL).
type Shared struct {
	// Count is the number of segments; at least 2.
	Count int
	// Claim gives segment to a new holder, as an instance's claim does, and
	// returns its lease: every earlier lease of the segment is lost.
	Claim func(t *testing.T, segment int) projections.Lease
	// ReadModel and Ledger are the stores bound to a lease; Queries is the
	// query side over every segment. They share one database.
	ReadModel func(projections.Lease) interface {
		projections.ReadModel
		projections.ReadModelBatch
	}
	Ledger  func(projections.Lease) projections.Ledger
	Queries func() ReadModel
	// Rebuild replaces the read model with rows and waiting as of
	// checkpoint, fencing off the instances (projections.Replay's result,
	// loaded as `projector rebuild` does).
	Rebuild func(ctx context.Context, rows []projections.Row, waiting []projections.Waiting, checkpoint uint64) error
}

// RunShared runs the cases of a shared store as subtests of t: writes
// under a lost lease are refused with projections.ErrLeaseLost and write
// nothing; checkpoints are per segment, and the query side's checkpoint
// is their minimum. open returns a fresh, empty database.
func RunShared(t *testing.T, open func(t *testing.T) Shared) {
	t.Run("LostLeaseWritesNothing", func(t *testing.T) { testLostLease(t, open(t)) })
	t.Run("CheckpointsPerSegment", func(t *testing.T) { testPerSegment(t, open(t)) })
	t.Run("RebuildSwitchesInAndFencesOff", func(t *testing.T) { testRebuild(t, open(t)) })
}

// applySegments applies recs through each segment's read model, in
// batches, as instances holding leases do.
func applySegments(t *testing.T, s Shared, leases []projections.Lease, recs []events.Recorded) {
	t.Helper()
	for _, l := range leases {
		var mine []events.Recorded
		for _, rec := range recs {
			if l.Covers(rec.URN) {
				mine = append(mine, rec)
			}
		}
		for batch := range slices.Chunk(mine, 5) {
			if err := s.ReadModel(l).ApplyBatch(t.Context(), batch); err != nil {
				t.Fatal(err)
			}
		}
		if len(recs) > 0 {
			if err := s.ReadModel(l).SaveCheckpoint(t.Context(), recs[len(recs)-1].Position); err != nil {
				t.Fatal(err)
			}
		}
	}
}

// A rebuild replaces the rows and deadlines with the replayed ones, sets
// every segment's read-model checkpoint to its position and fences off the
// instances, which claim again and go on from there.
func testRebuild(t *testing.T, s Shared) {
	ctx := t.Context()
	claimAll := func() []projections.Lease {
		leases := make([]projections.Lease, s.Count)
		for seg := range leases {
			leases[seg] = s.Claim(t, seg)
		}
		return leases
	}
	d := newDataset(t, 37)
	cut := len(d.recs) / 2
	replayed := dataset{urns: d.urns, hist: d.hist, recs: d.recs[:cut]}
	checkpoint := d.recs[cut-1].Position

	leases := claimAll()
	applySegments(t, s, leases, d.recs) // the live model is ahead of the replay: the rebuild sets it back
	stale, staleEvs := history(t, 999, domain.StatusRequested)
	if err := s.ReadModel(leases[projections.SegmentOf(stale, s.Count)]).Apply(ctx, events.Recorded{URN: stale, Event: staleEvs[0], Position: d.last() + 10}); err != nil {
		t.Fatal(err)
	}

	var rows []projections.Row
	for _, urn := range d.urns {
		if r, ok := replayed.rows()[urn]; ok {
			rows = append(rows, r)
		}
	}
	if err := s.Rebuild(ctx, rows, replayed.waiting(), checkpoint); err != nil {
		t.Fatal(err)
	}
	q := s.Queries()
	if got, _ := listAll(t, q, projections.Filter{}); !reflect.DeepEqual(got, rows) {
		t.Fatalf("after the rebuild: urns %v\nwant %v", urnsOf(got), urnsOf(rows))
	}
	if got, want := waitingIn(t, q), sortedWaiting(replayed.waiting()); !reflect.DeepEqual(got, want) {
		t.Fatalf("waiting after the rebuild\n got %+v\nwant %+v", got, want)
	}
	if cp, err := q.Queries.Checkpoint(ctx); err != nil || cp != checkpoint {
		t.Fatalf("query checkpoint %d, %v; want the rebuild's %d", cp, err, checkpoint)
	}
	for _, l := range leases {
		if err := s.ReadModel(l).SaveCheckpoint(ctx, d.last()+100); !errors.Is(err, projections.ErrLeaseLost) {
			t.Fatalf("segment %d: a write under the lease held before the rebuild = %v, want ErrLeaseLost", l.Segment, err)
		}
	}

	leases = claimAll()
	for _, l := range leases {
		if cp, err := s.ReadModel(l).Checkpoint(ctx); err != nil || cp != checkpoint {
			t.Fatalf("segment %d resumes from %d, %v; want %d", l.Segment, cp, err, checkpoint)
		}
	}
	applySegments(t, s, leases, d.recs) // resubscribed from the checkpoint: the first half is ignored
	var want []projections.Row
	for _, urn := range d.urns {
		want = append(want, d.rows()[urn])
	}
	if got, _ := listAll(t, q, projections.Filter{}); !reflect.DeepEqual(got, want) {
		t.Fatalf("after catching up: urns %v\nwant %v", urnsOf(got), urnsOf(want))
	}
}

// inSegment returns the events of a prescription whose stream is in segment.
func inSegment(t *testing.T, segment, count int) (string, []domain.Event) {
	t.Helper()
	for n := range 1000 {
		if projections.SegmentOf(urnOf(n), count) == segment {
			return history(t, n, domain.StatusApproved)
		}
	}
	t.Fatalf("no test urn in segment %d of %d", segment, count)
	return "", nil
}

func testLostLease(t *testing.T, s Shared) {
	ctx := t.Context()
	old := s.Claim(t, 0)
	urn, evs := inSegment(t, 0, s.Count)
	if err := s.ReadModel(old).Apply(ctx, events.Recorded{URN: urn, Event: evs[0], Position: 10}); err != nil {
		t.Fatalf("apply under the held lease: %v", err)
	}
	if err := s.Ledger(old).Record(ctx, effect("held", projections.EffectDone, t0), 10); err != nil {
		t.Fatalf("record under the held lease: %v", err)
	}
	current := s.Claim(t, 0)
	if current.Token == old.Token {
		t.Fatalf("a claim kept the token %d", old.Token)
	}

	approve := events.Recorded{URN: urn, Event: evs[1], Revision: 1, Position: 20}
	stale := s.ReadModel(old)
	staleLedger := s.Ledger(old)
	for name, write := range map[string]func() error{
		"Apply":                  func() error { return stale.Apply(ctx, approve) },
		"ApplyBatch":             func() error { return stale.ApplyBatch(ctx, []events.Recorded{approve}) },
		"SaveCheckpoint":         func() error { return stale.SaveCheckpoint(ctx, 30) },
		"Ledger.Record":          func() error { return staleLedger.Record(ctx, effect("stale", projections.EffectDone, t0), 30) },
		"Ledger.SaveCheckpoint":  func() error { return staleLedger.SaveCheckpoint(ctx, "pharmacy", 30) },
		"Ledger.Record(no move)": func() error { return staleLedger.Record(ctx, effect("stale", projections.EffectParked, t0), 0) },
	} {
		if err := write(); !errors.Is(err, projections.ErrLeaseLost) {
			t.Errorf("%s under a lost lease = %v, want ErrLeaseLost", name, err)
		}
	}
	q := s.Queries()
	if row, err := q.Queries.Get(ctx, urn); err != nil || row.Status != domain.StatusRequested {
		t.Fatalf("after the stale writes: %+v, %v; want the row as requested", row, err)
	}
	live, liveLedger := s.ReadModel(current), s.Ledger(current)
	if cp, err := live.Checkpoint(ctx); err != nil || cp != 10 {
		t.Fatalf("read-model checkpoint %d, %v; want 10", cp, err)
	}
	if cp, err := liveLedger.Checkpoint(ctx, "pharmacy"); err != nil || cp != 10 {
		t.Fatalf("ledger checkpoint %d, %v; want 10", cp, err)
	}
	if _, found, err := liveLedger.Effect(ctx, "pharmacy/stale"); err != nil || found {
		t.Fatalf("an effect recorded under a lost lease is found (%v, %v)", found, err)
	}
	if parked, err := liveLedger.Parked(ctx); err != nil || len(parked) != 0 {
		t.Fatalf("parked %+v, %v; want none", parked, err)
	}

	if err := live.ApplyBatch(ctx, []events.Recorded{approve}); err != nil {
		t.Fatalf("apply under the new lease: %v", err)
	}
	if err := liveLedger.Record(ctx, effect("live", projections.EffectDone, t0), 20); err != nil {
		t.Fatalf("record under the new lease: %v", err)
	}
	if row, err := q.Queries.Get(ctx, urn); err != nil || row.Status != domain.StatusApproved {
		t.Fatalf("under the new lease: %+v, %v", row, err)
	}
}

func testPerSegment(t *testing.T, s Shared) {
	ctx := t.Context()
	leases := make([]projections.Lease, s.Count)
	for seg := range leases {
		leases[seg] = s.Claim(t, seg)
	}
	q := s.Queries()
	if cp, err := q.Queries.Checkpoint(ctx); err != nil || cp != 0 {
		t.Fatalf("query checkpoint %d, %v before any write; want 0", cp, err)
	}
	urn0, evs0 := inSegment(t, 0, s.Count)
	if err := s.ReadModel(leases[1]).Apply(ctx, events.Recorded{URN: urn0, Event: evs0[0], Position: 5}); err == nil {
		t.Fatal("segment 1's read model applied an event of segment 0")
	}
	if _, err := q.Queries.Get(ctx, urn0); !errors.Is(err, projections.ErrNotFound) {
		t.Fatalf("the refused event left a row: %v", err)
	}
	if err := s.ReadModel(leases[0]).Apply(ctx, events.Recorded{URN: urn0, Event: evs0[0], Position: 100}); err != nil {
		t.Fatal(err)
	}
	for seg := range leases {
		want := uint64(0)
		if seg == 0 {
			want = 100
		}
		if cp, err := s.ReadModel(leases[seg]).Checkpoint(ctx); err != nil || cp != want {
			t.Fatalf("segment %d checkpoint %d, %v; want %d", seg, cp, err, want)
		}
	}
	// Read-your-writes: position 100 is served once every segment is past it.
	waited := make(chan error, 1)
	go func() { waited <- q.Queries.WaitFor(ctx, 100) }()
	for seg := 1; seg < s.Count; seg++ {
		if cp, err := q.Queries.Checkpoint(ctx); err != nil || cp != 0 {
			t.Fatalf("query checkpoint %d, %v with segment %d at 0", cp, err, seg)
		}
		select {
		case err := <-waited:
			t.Fatalf("WaitFor(100) = %v while segment %d is at 0", err, seg)
		default:
		}
		if err := s.ReadModel(leases[seg]).SaveCheckpoint(ctx, 100+uint64(seg)); err != nil {
			t.Fatal(err)
		}
	}
	select {
	case err := <-waited:
		if err != nil {
			t.Fatalf("WaitFor(100) = %v", err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("WaitFor(100) still waits with every segment past 100")
	}
	if cp, err := q.Queries.Checkpoint(ctx); err != nil || cp != 100 {
		t.Fatalf("query checkpoint %d, %v; want the lowest segment's, 100", cp, err)
	}
	if err := s.Ledger(leases[1]).SaveCheckpoint(ctx, "pharmacy", 77); err != nil {
		t.Fatal(err)
	}
	if cp, err := s.Ledger(leases[0]).Checkpoint(ctx, "pharmacy"); err != nil || cp != 0 {
		t.Fatalf("segment 0's ledger checkpoint %d, %v; want 0: segment 1's is its own", cp, err)
	}
	ctx2, cancel := context.WithTimeout(ctx, 20*time.Millisecond)
	defer cancel()
	if err := q.Queries.WaitFor(ctx2, 1000); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("WaitFor(1000) = %v, want the deadline", err)
	}
}

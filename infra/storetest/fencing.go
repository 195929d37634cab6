package storetest

import (
	"context"
	"errors"
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
}

// RunShared runs the cases of a shared store as subtests of t: writes
// under a lost lease are refused with projections.ErrLeaseLost and write
// nothing; checkpoints are per segment, and the query side's checkpoint
// is their minimum. open returns a fresh, empty database.
func RunShared(t *testing.T, open func(t *testing.T) Shared) {
	t.Run("LostLeaseWritesNothing", func(t *testing.T) { testLostLease(t, open(t)) })
	t.Run("CheckpointsPerSegment", func(t *testing.T) { testPerSegment(t, open(t)) })
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

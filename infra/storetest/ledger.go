package storetest

import (
	"reflect"
	"testing"
	"time"

	"rxflow/projections"
)

// RunLedger runs the ledger suite as subtests of t; open returns a fresh,
// empty ledger bound to a lease covering every stream, closed when its
// test ends.
func RunLedger(t *testing.T, open func(t *testing.T) projections.Ledger) {
	for _, tc := range []struct {
		name string
		test func(t *testing.T, l projections.Ledger)
	}{
		{"CheckpointsPerProjectorOnlyForward", testLedgerCheckpoints},
		{"RecordKeepsEffectAndCheckpoint", testLedgerRecord},
		{"ParkedOldestFirstUntilRecordedAgain", testLedgerParked},
	} {
		t.Run(tc.name, func(t *testing.T) { tc.test(t, open(t)) })
	}
}

func ledgerCheckpointIs(t *testing.T, l projections.Ledger, projector string, want uint64) {
	t.Helper()
	if cp, err := l.Checkpoint(t.Context(), projector); err != nil || cp != want {
		t.Fatalf("checkpoint of %s = %d, %v; want %d", projector, cp, err, want)
	}
}

func testLedgerCheckpoints(t *testing.T, l projections.Ledger) {
	ledgerCheckpointIs(t, l, "pharmacy", 0)
	for _, step := range []struct {
		projector string
		save      uint64
	}{{"pharmacy", 10}, {"insurance", 7}, {"pharmacy", 5}, {"pharmacy", 12}} {
		if err := l.SaveCheckpoint(t.Context(), step.projector, step.save); err != nil {
			t.Fatal(err)
		}
	}
	ledgerCheckpointIs(t, l, "pharmacy", 12)
	ledgerCheckpointIs(t, l, "insurance", 7)
	ledgerCheckpointIs(t, l, "support", 0)
}

func effect(id string, status projections.EffectStatus, at time.Time) projections.Effect {
	return projections.Effect{ID: "pharmacy/" + id, Projector: "pharmacy", URN: "urn:rx:" + id, EventID: id,
		EventName: "PrescriptionProcessing", Status: status, At: at}
}

func testLedgerRecord(t *testing.T, l projections.Ledger) {
	if _, found, err := l.Effect(t.Context(), "pharmacy/none"); err != nil || found {
		t.Fatalf("Effect(unknown) = found %v, %v", found, err)
	}
	e := effect("e1", projections.EffectParked, t0)
	e.Error, e.Attempts = "pharmacy unavailable: 503", 4
	e.Refusal = &projections.Refusal{CommandID: "pharmacy-failure:e1", EventID: "r1", Code: "invalid_transition", Reason: "moved on", Status: "completed", At: t0.Add(time.Second)}
	if err := l.Record(t.Context(), e, 40); err != nil {
		t.Fatal(err)
	}
	got, found, err := l.Effect(t.Context(), e.ID)
	if err != nil || !found || !reflect.DeepEqual(got, e) {
		t.Fatalf("Effect = %+v, %v, %v\nwant %+v", got, found, err, e)
	}
	ledgerCheckpointIs(t, l, "pharmacy", 40)

	done := effect("e1", projections.EffectDone, t0.Add(time.Minute))
	if err := l.Record(t.Context(), done, 30); err != nil { // an older position: the checkpoint stays
		t.Fatal(err)
	}
	if got, _, _ := l.Effect(t.Context(), done.ID); !reflect.DeepEqual(got, done) {
		t.Fatalf("recorded again: %+v, want %+v", got, done)
	}
	ledgerCheckpointIs(t, l, "pharmacy", 40)
	if err := l.Record(t.Context(), effect("e2", projections.EffectDone, t0), 0); err != nil { // no position: no checkpoint
		t.Fatal(err)
	}
	ledgerCheckpointIs(t, l, "pharmacy", 40)
	if err := l.Record(t.Context(), effect("e3", projections.EffectFailedOver, t0), 50); err != nil {
		t.Fatal(err)
	}
	ledgerCheckpointIs(t, l, "pharmacy", 50)
}

func testLedgerParked(t *testing.T, l projections.Ledger) {
	parked := func() []string {
		t.Helper()
		ps, err := l.Parked(t.Context())
		if err != nil {
			t.Fatal(err)
		}
		var ids []string
		for _, p := range ps {
			if p.Status != projections.EffectParked {
				t.Errorf("Parked lists %s with status %s", p.ID, p.Status)
			}
			ids = append(ids, p.ID)
		}
		return ids
	}
	for i, id := range []string{"b", "a", "c"} { // recorded out of time order
		at := t0.Add(time.Duration(2-i) * time.Minute) // c oldest, a, b newest
		if err := l.Record(t.Context(), effect(id, projections.EffectParked, at), uint64(i+1)); err != nil {
			t.Fatal(err)
		}
	}
	if err := l.Record(t.Context(), effect("d", projections.EffectDone, t0), 9); err != nil {
		t.Fatal(err)
	}
	if got, want := parked(), []string{"pharmacy/c", "pharmacy/a", "pharmacy/b"}; !reflect.DeepEqual(got, want) {
		t.Fatalf("parked %v, want %v", got, want)
	}
	if err := l.Record(t.Context(), effect("a", projections.EffectDone, t0.Add(time.Hour)), 0); err != nil {
		t.Fatal(err)
	}
	if got, want := parked(), []string{"pharmacy/c", "pharmacy/b"}; !reflect.DeepEqual(got, want) {
		t.Fatalf("after retrying a: parked %v, want %v", got, want)
	}
}

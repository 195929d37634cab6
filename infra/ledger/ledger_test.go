package ledger_test

import (
	"context"
	"path/filepath"
	"testing"
	"time"

	"rxflow/infra/ledger"
	"rxflow/projections"
)

func TestLedgerSurvivesReopen(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "ledger.db")
	l, err := ledger.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	if err := l.SaveCheckpoint(ctx, "insurance", 10); err != nil {
		t.Fatal(err)
	}
	if err := l.SaveCheckpoint(ctx, "insurance", 5); err != nil {
		t.Fatal(err)
	}
	at := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	done := projections.Effect{ID: "insurance/e1", Projector: "insurance", URN: "u1", EventID: "e1", Status: projections.EffectDone, At: at}
	park := projections.Effect{ID: "insurance/e2", Projector: "insurance", URN: "u2", EventID: "e2", Status: projections.EffectParked, Error: "503", At: at.Add(time.Second)}
	if err := l.Record(ctx, done, 20); err != nil {
		t.Fatal(err)
	}
	if err := l.Record(ctx, park, 30); err != nil {
		t.Fatal(err)
	}
	if _, err := ledger.Open(path); err == nil {
		t.Fatal("a second open of a held ledger must fail")
	}
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}

	l, err = ledger.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	if pos, err := l.Checkpoint(ctx, "insurance"); err != nil || pos != 30 {
		t.Fatalf("checkpoint = %d, %v; want 30 (forward only, moved by Record)", pos, err)
	}
	if pos, _ := l.Checkpoint(ctx, "pharmacy"); pos != 0 {
		t.Fatalf("unknown projector checkpoint = %d", pos)
	}
	got, found, err := l.Effect(ctx, "insurance/e1")
	if err != nil || !found || got != done {
		t.Fatalf("effect = %+v %v %v", got, found, err)
	}
	if _, found, _ := l.Effect(ctx, "insurance/e3"); found {
		t.Fatal("unrecorded effect found")
	}
	list, err := l.Parked(ctx)
	if err != nil || len(list) != 1 || list[0] != park {
		t.Fatalf("parked = %+v %v", list, err)
	}
}

package ledger_test

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"rxflow/infra/ledger"
	"rxflow/projections"
)

func TestLedgerSurvivesReopen(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "ledger")
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
	if l2, err := ledger.Open(path); err == nil {
		l2.Close()
		t.Fatal("a second open of a held ledger must fail")
	} else if !strings.Contains(err.Error(), "is a projector using it?") {
		t.Fatalf("second open: %v", err)
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

// TestRefusesLegacyLedger: an earlier version's bbolt ledger.db next to the
// ledger directory must stop the projector, not start an empty ledger that
// would repeat every partner call.
func TestRefusesLegacyLedger(t *testing.T) {
	dir := t.TempDir()
	legacy := filepath.Join(dir, "ledger.db")
	if err := os.WriteFile(legacy, []byte("bbolt"), 0o600); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, "ledger")
	l, err := ledger.Open(path)
	if err == nil {
		l.Close()
		t.Fatal("open succeeded next to a legacy ledger.db")
	}
	if !strings.Contains(err.Error(), legacy) {
		t.Fatalf("error does not name %s: %v", legacy, err)
	}
	if _, err := os.Stat(path); !os.IsNotExist(err) {
		t.Fatalf("ledger directory created despite the refusal: %v", err)
	}
}

// TestParkedThenDone: a later Record of the same id with another status (an
// operator's successful retry) replaces the effect and takes it off the
// parked list.
func TestParkedThenDone(t *testing.T) {
	ctx := context.Background()
	l, err := ledger.Open(filepath.Join(t.TempDir(), "ledger"))
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	at := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	park := projections.Effect{ID: "pharmacy/e1", Projector: "pharmacy", URN: "u1", EventID: "e1", Status: projections.EffectParked, Error: "503", At: at}
	done := park
	done.Status, done.Error, done.At = projections.EffectDone, "", at.Add(time.Minute)
	if err := l.Record(ctx, park, 40); err != nil {
		t.Fatal(err)
	}
	if list, err := l.Parked(ctx); err != nil || len(list) != 1 || list[0] != park {
		t.Fatalf("parked = %+v %v; want the parked entry", list, err)
	}
	if err := l.Record(ctx, done, 50); err != nil {
		t.Fatal(err)
	}
	if got, found, err := l.Effect(ctx, done.ID); err != nil || !found || got != done {
		t.Fatalf("effect = %+v %v %v; want %+v", got, found, err, done)
	}
	if list, err := l.Parked(ctx); err != nil || len(list) != 0 {
		t.Fatalf("parked = %+v %v; want none once done", list, err)
	}
	if pos, err := l.Checkpoint(ctx, "pharmacy"); err != nil || pos != 50 {
		t.Fatalf("checkpoint = %d, %v; want 50", pos, err)
	}
}

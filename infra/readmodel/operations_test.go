package readmodel_test

import (
	"context"
	"errors"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"rxflow/infra/readmodel"
)

func openOperations(t *testing.T) *readmodel.Operations {
	t.Helper()
	o, err := readmodel.OpenOperations(filepath.Join(t.TempDir(), "operations.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = o.Close() })
	return o
}

// A dead letter or refusal delivered again (same partition and offset) is
// stored once, and counted once, by when it happened, not when it was
// consumed (a projector that starts late counts the same).
func TestOperationsStoreEachRecordOnce(t *testing.T) {
	ctx := context.Background()
	o := openOperations(t)
	d := readmodel.DeadLetterRow{ID: readmodel.DeadLetterID(3, 41), Topic: "dlq", Partition: 3, Offset: 41, Key: "urn:rx:1",
		Code: "malformed_json", Error: "bad", Raw: []byte(`{"code":"malformed_json"}`), At: t0, Received: t0.Add(2 * time.Hour)}
	for range 2 {
		if err := o.AddDeadLetter(ctx, d); err != nil {
			t.Fatal(err)
		}
		if err := o.AddRefusal(ctx, readmodel.RefusalRow{ID: "0-1", URN: "urn:rx:1", Code: "final_state", At: t0, Received: t0.Add(2 * time.Hour)}); err != nil {
			t.Fatal(err)
		}
	}
	got, err := o.DeadLetters(ctx, 10)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 1 || got[0].ID != "3-41" || string(got[0].Raw) != string(d.Raw) || !got[0].Received.Equal(d.Received) ||
		!got[0].At.Equal(t0) || got[0].Redrive != nil {
		t.Fatalf("dead letters %+v", got)
	}
	dls, refusals, err := o.CountSince(ctx, t0.Add(-time.Hour))
	if err != nil || dls != 1 || refusals != 1 {
		t.Errorf("counts since an hour before: %d dead letters, %d refusals, %v; want 1, 1", dls, refusals, err)
	}
	if dls, refusals, _ := o.CountSince(ctx, t0.Add(time.Nanosecond)); dls != 0 || refusals != 0 {
		t.Errorf("counts since just after: %d, %d; want 0, 0", dls, refusals)
	}
}

// A dead letter is claimed for redrive once; a released claim may be taken again.
func TestOperationsClaimRedriveOnce(t *testing.T) {
	ctx := context.Background()
	o := openOperations(t)
	if err := o.AddDeadLetter(ctx, readmodel.DeadLetterRow{ID: "0-0", Code: "c", Raw: []byte("x"), At: t0, Received: t0}); err != nil {
		t.Fatal(err)
	}
	first := readmodel.Redrive{CommandID: "redrive:dlq/0-0", At: t0, By: "ann"}
	if _, err := o.ClaimRedrive(ctx, "0-0", first); err != nil {
		t.Fatal(err)
	}
	prior, err := o.ClaimRedrive(ctx, "0-0", readmodel.Redrive{CommandID: "redrive:dlq/0-0", At: t0.Add(time.Second), By: "bob"})
	if !errors.Is(err, readmodel.ErrAlreadyRedriven) || prior.By != "ann" || !prior.At.Equal(t0) {
		t.Fatalf("second claim: %+v, %v", prior, err)
	}
	if err := o.ReleaseRedrive(ctx, "0-0", first.CommandID); err != nil {
		t.Fatal(err)
	}
	if _, err := o.ClaimRedrive(ctx, "0-0", first); err != nil {
		t.Errorf("claim after release: %v", err)
	}
	if _, err := o.ClaimRedrive(ctx, "9-9", first); !errors.Is(err, readmodel.ErrNoSuchRecord) {
		t.Errorf("claim of an unknown dead letter: %v", err)
	}
}

// Actions are numbered in order and listed oldest first, the latest limit,
// all or by prescription; they survive a reopen.
func TestOperationsActions(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "operations.db")
	o, err := readmodel.OpenOperations(path)
	if err != nil {
		t.Fatal(err)
	}
	for i, urn := range []string{"urn:rx:1", "urn:rx:2", "urn:rx:1", ""} {
		a, err := o.RecordAction(ctx, readmodel.OperatorAction{At: t0.Add(time.Duration(i) * time.Second), Actor: "ann", Action: "retry",
			Target: "t", URN: urn, Result: "done"})
		if err != nil || a.Seq != int64(i+1) {
			t.Fatalf("record %d: %+v, %v", i, a, err)
		}
	}
	o.Close()
	if o, err = readmodel.OpenOperations(path); err != nil {
		t.Fatal(err)
	}
	defer o.Close()
	seqs := func(urn string, limit int) []int64 {
		as, err := o.Actions(ctx, urn, limit)
		if err != nil {
			t.Fatal(err)
		}
		var out []int64
		for _, a := range as {
			out = append(out, a.Seq)
		}
		return out
	}
	if got := seqs("", 10); !slices.Equal(got, []int64{1, 2, 3, 4}) {
		t.Errorf("all: %v", got)
	}
	if got := seqs("", 2); !slices.Equal(got, []int64{3, 4}) {
		t.Errorf("latest two: %v", got)
	}
	if got := seqs("urn:rx:1", 10); !slices.Equal(got, []int64{1, 3}) {
		t.Errorf("urn:rx:1: %v", got)
	}
}

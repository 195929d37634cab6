package opstest

import (
	"errors"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"rxflow/infra/readmodel"
)

// NewOperations makes an empty operations storage for t and returns a func
// that opens an instance on it (another projector process's, for the
// second and later calls); instances are closed when t ends.
type NewOperations func(t *testing.T) (open func() Operations)

// RunOperations runs every case of the operations-store suite, each as a
// subtest on a storage of its own.
func RunOperations(t *testing.T, storage NewOperations) {
	for _, c := range []struct {
		name string
		run  func(t *testing.T, open func() Operations)
	}{
		{"EachRecordOnce", eachRecordOnce},
		{"ClaimRedriveOnce", claimRedriveOnce},
		{"Actions", actions},
		{"ConcurrentAddsAcrossInstances", concurrentAdds},
		{"ConcurrentClaimsAcrossInstances", concurrentClaims},
	} {
		t.Run(c.name, func(t *testing.T) { c.run(t, storage(t)) })
	}
}

// A dead letter or refusal delivered again (same partition and offset) is
// stored once, and counted once, by when it happened, not when it was
// consumed (a projector that starts late counts the same).
func eachRecordOnce(t *testing.T, open func() Operations) {
	ctx := t.Context()
	o := open()
	d := readmodel.DeadLetterRow{ID: readmodel.DeadLetterID(3, 41), Topic: "dlq", Partition: 3, Offset: 41, Key: "urn:rx:1",
		Code: "malformed_json", Error: "bad", Raw: []byte(`{"code":"malformed_json"}`), At: t0, Received: t0.Add(2 * time.Hour)}
	for i := range 2 {
		again := d
		again.Received = again.Received.Add(time.Duration(i) * time.Minute) // a redelivery is consumed later
		if err := o.AddDeadLetter(ctx, again); err != nil {
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
	if len(got) != 1 || got[0].ID != "3-41" || got[0].Topic != "dlq" || got[0].Partition != 3 || got[0].Offset != 41 || got[0].Key != "urn:rx:1" ||
		got[0].Code != "malformed_json" || got[0].Error != "bad" || string(got[0].Raw) != string(d.Raw) ||
		!got[0].Received.Equal(d.Received) || !got[0].At.Equal(t0) || got[0].Redrive != nil {
		t.Fatalf("dead letters %+v, want the first delivery of %+v", got, d)
	}
	one, err := o.DeadLetter(ctx, "3-41")
	if err != nil || one.ID != "3-41" || !one.Received.Equal(d.Received) {
		t.Errorf("dead letter 3-41: %+v, %v", one, err)
	}
	if _, err := o.DeadLetter(ctx, "9-9"); !errors.Is(err, readmodel.ErrNoSuchRecord) {
		t.Errorf("unknown dead letter: %v, want ErrNoSuchRecord", err)
	}
	dls, refusals, err := o.CountSince(ctx, t0.Add(-time.Hour))
	if err != nil || dls != 1 || refusals != 1 {
		t.Errorf("counts since an hour before: %d dead letters, %d refusals, %v; want 1, 1", dls, refusals, err)
	}
	if dls, refusals, _ := o.CountSince(ctx, t0.Add(time.Nanosecond)); dls != 0 || refusals != 0 {
		t.Errorf("counts since just after: %d, %d; want 0, 0", dls, refusals)
	}
}

// A dead letter is claimed for redrive once; a released claim may be taken
// again; only the claim's holder releases it.
func claimRedriveOnce(t *testing.T, open func() Operations) {
	ctx := t.Context()
	o := open()
	if err := o.AddDeadLetter(ctx, readmodel.DeadLetterRow{ID: "0-0", Code: "c", Raw: []byte("x"), At: t0, Received: t0}); err != nil {
		t.Fatal(err)
	}
	first := readmodel.Redrive{CommandID: "redrive:dlq/0-0", At: t0, By: "ann"}
	if got, err := o.ClaimRedrive(ctx, "0-0", first); err != nil || got != first {
		t.Fatalf("first claim: %+v, %v", got, err)
	}
	prior, err := o.ClaimRedrive(ctx, "0-0", readmodel.Redrive{CommandID: "redrive:dlq/0-0", At: t0.Add(time.Second), By: "bob"})
	if !errors.Is(err, readmodel.ErrAlreadyRedriven) || prior.By != "ann" || !prior.At.Equal(t0) || prior.CommandID != first.CommandID {
		t.Fatalf("second claim: %+v, %v", prior, err)
	}
	if d, err := o.DeadLetter(ctx, "0-0"); err != nil || d.Redrive == nil || d.Redrive.By != "ann" || !d.Redrive.At.Equal(t0) {
		t.Fatalf("claimed dead letter: %+v, %v", d, err)
	}
	if err := o.ReleaseRedrive(ctx, "0-0", "another command"); err != nil {
		t.Fatal(err)
	}
	if _, err := o.ClaimRedrive(ctx, "0-0", first); !errors.Is(err, readmodel.ErrAlreadyRedriven) {
		t.Fatalf("claim after a release by another command: %v, want ErrAlreadyRedriven", err)
	}
	if err := o.ReleaseRedrive(ctx, "0-0", first.CommandID); err != nil {
		t.Fatal(err)
	}
	if d, err := o.DeadLetter(ctx, "0-0"); err != nil || d.Redrive != nil {
		t.Fatalf("released dead letter: %+v, %v", d, err)
	}
	if _, err := o.ClaimRedrive(ctx, "0-0", first); err != nil {
		t.Errorf("claim after release: %v", err)
	}
	if _, err := o.ClaimRedrive(ctx, "9-9", first); !errors.Is(err, readmodel.ErrNoSuchRecord) {
		t.Errorf("claim of an unknown dead letter: %v", err)
	}
}

// Actions are numbered in order and listed oldest first, the latest limit,
// all or by prescription; another instance (a reopen, another process)
// reads them.
func actions(t *testing.T, open func() Operations) {
	ctx := t.Context()
	o := open()
	for i, urn := range []string{"urn:rx:1", "urn:rx:2", "urn:rx:1", ""} {
		want := readmodel.OperatorAction{At: t0.Add(time.Duration(i) * time.Second), Actor: "ann", Action: "retry",
			Target: "t", URN: urn, Result: "done", Detail: fmt.Sprint("detail ", i)}
		a, err := o.RecordAction(ctx, want)
		want.Seq = int64(i + 1)
		if err != nil || a != want {
			t.Fatalf("record %d: %+v, %v; want %+v", i, a, err, want)
		}
	}
	other := open()
	seqs := func(urn string, limit int) []int64 {
		as, err := other.Actions(ctx, urn, limit)
		if err != nil {
			t.Fatal(err)
		}
		var out []int64
		for _, a := range as {
			if !a.At.Equal(t0.Add(time.Duration(a.Seq-1)*time.Second)) || a.Detail != fmt.Sprint("detail ", a.Seq-1) || a.Actor != "ann" {
				t.Errorf("action %+v not as recorded", a)
			}
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

// Instances that consume the same records at once (a redelivery after a
// consumer-group rebalance) store each once, without an error.
func concurrentAdds(t *testing.T, open func() Operations) {
	ctx := t.Context()
	instances := []Operations{open(), open()}
	const records = 20
	var wg sync.WaitGroup
	for i, o := range instances {
		wg.Go(func() {
			for n := range records {
				d := readmodel.DeadLetterRow{ID: readmodel.DeadLetterID(0, int64(n)), Topic: "dlq", Offset: int64(n), Code: "c",
					Raw: []byte("x"), At: t0, Received: t0.Add(time.Duration(i) * time.Hour)}
				r := readmodel.RefusalRow{ID: readmodel.DeadLetterID(0, int64(n)), URN: "urn:rx:1", Code: "final_state", At: t0, Received: t0}
				if err := o.AddDeadLetter(ctx, d); err != nil {
					t.Error(err)
				}
				if err := o.AddRefusal(ctx, r); err != nil {
					t.Error(err)
				}
			}
		})
	}
	wg.Wait()
	got, err := instances[0].DeadLetters(ctx, readmodel.MaxLimit)
	if err != nil {
		t.Fatal(err)
	}
	ids := map[string]int{}
	for _, d := range got {
		ids[d.ID]++
	}
	if len(got) != records || len(ids) != records {
		t.Errorf("%d dead letters, %d distinct; want %d of each", len(got), len(ids), records)
	}
	if dls, refusals, err := instances[1].CountSince(ctx, t0); err != nil || dls != records || refusals != records {
		t.Errorf("counts: %d dead letters, %d refusals, %v; want %d each", dls, refusals, err, records)
	}
}

// Instances that claim the same dead letter at once: exactly one wins, and
// every other gets ErrAlreadyRedriven with the winner's claim.
func concurrentClaims(t *testing.T, open func() Operations) {
	ctx := t.Context()
	instances := []Operations{open(), open()}
	const dead, claimants = 10, 4 // claimants per instance and dead letter
	for n := range dead {
		if err := instances[0].AddDeadLetter(ctx, readmodel.DeadLetterRow{ID: readmodel.DeadLetterID(1, int64(n)), Code: "c", Raw: []byte("x"),
			At: t0, Received: t0}); err != nil {
			t.Fatal(err)
		}
	}
	type claim struct {
		by  string
		got readmodel.Redrive
		err error
	}
	results := make([][]claim, dead)
	var mu sync.Mutex
	var wg sync.WaitGroup
	for n := range dead {
		id := readmodel.DeadLetterID(1, int64(n))
		for i, o := range instances {
			for c := range claimants {
				by := fmt.Sprintf("instance-%d-operator-%d", i, c)
				wg.Go(func() {
					got, err := o.ClaimRedrive(ctx, id, readmodel.Redrive{CommandID: "redrive:dlq/" + id, At: t0, By: by})
					mu.Lock()
					results[n] = append(results[n], claim{by, got, err})
					mu.Unlock()
				})
			}
		}
	}
	wg.Wait()
	for n, claims := range results {
		var winners []string
		for _, c := range claims {
			if c.err == nil {
				winners = append(winners, c.by)
			}
		}
		if len(winners) != 1 {
			t.Errorf("dead letter %d: winners %v, want exactly one", n, winners)
			continue
		}
		for _, c := range claims {
			if c.err != nil && (!errors.Is(c.err, readmodel.ErrAlreadyRedriven) || c.got.By != winners[0]) {
				t.Errorf("dead letter %d, claim of %s: %+v, %v; want ErrAlreadyRedriven with %s's claim", n, c.by, c.got, c.err, winners[0])
			}
		}
		d, err := instances[1].DeadLetter(ctx, readmodel.DeadLetterID(1, int64(n)))
		if err != nil || d.Redrive == nil || d.Redrive.By != winners[0] {
			t.Errorf("dead letter %d: %+v, %v; want redriven by %s", n, d.Redrive, err, winners[0])
		}
	}
}

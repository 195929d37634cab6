package readmodel_test

import (
	"context"
	"database/sql"
	"errors"
	"maps"
	"path/filepath"
	"reflect"
	"slices"
	"testing"
	"time"

	"rxflow/domain"
	"rxflow/events"
	"rxflow/infra/readmodel"
	"rxflow/projections"
)

func TestApplyFoldsEveryColumn(t *testing.T) {
	eachStore(t, func(t *testing.T, s *readmodel.Store) {
		hist := map[string][]domain.Event{}
		var urns []string
		for n, st := range []domain.Status{domain.StatusCompleted, domain.StatusRejected, domain.StatusFailed, domain.StatusApproved} {
			urn, evs := history(t, n+1, st)
			hist[urn] = evs
			urns = append(urns, urn)
		}
		recs := interleave(urns, hist)
		applyAll(t, s, recs)

		last := map[string]events.Recorded{}
		for _, rec := range recs {
			last[rec.URN] = rec
		}
		var covered []domain.Prescription
		for _, urn := range urns {
			got, err := s.Get(t.Context(), urn)
			if err != nil {
				t.Fatal(err)
			}
			want := domain.Fold(hist[urn])
			if !reflect.DeepEqual(got.Prescription, want) {
				t.Errorf("%s:\n got %+v\nwant %+v", urn, got.Prescription, want)
			}
			l := last[urn]
			if got.LastRevision != l.Revision || got.LastPosition != l.Position || !got.UpdatedAt.Equal(l.Event.OccurredAt()) {
				t.Errorf("%s: revision %d position %d updated %v, want %d %d %v",
					urn, got.LastRevision, got.LastPosition, got.UpdatedAt, l.Revision, l.Position, l.Event.OccurredAt())
			}
			covered = append(covered, want)
		}
		// The data must exercise every field, or a dropped column would pass.
		for _, f := range unsetFields(reflect.TypeFor[domain.Prescription](), "", covered) {
			t.Errorf("test data leaves %s unset in every prescription", f)
		}
		if cp, err := s.Checkpoint(t.Context()); err != nil || cp != recs[len(recs)-1].Position {
			t.Fatalf("checkpoint = %d, %v; want %d", cp, err, recs[len(recs)-1].Position)
		}
		_, err := s.Get(t.Context(), "urn:rx:missing")
		if !errors.Is(err, projections.ErrNotFound) {
			t.Fatalf("Get(missing) = %v, want ErrNotFound", err)
		}
	})
}

// unsetFields names the leaf fields of typ (a struct) that are zero in every ps.
func unsetFields(typ reflect.Type, prefix string, ps []domain.Prescription) []string {
	var out []string
	var walk func(typ reflect.Type, index []int, name string)
	walk = func(typ reflect.Type, index []int, name string) {
		if typ.Kind() == reflect.Struct && typ != reflect.TypeFor[time.Time]() {
			for i := range typ.NumField() {
				walk(typ.Field(i).Type, append(slices.Clone(index), i), name+"."+typ.Field(i).Name)
			}
			return
		}
		for _, p := range ps {
			if !reflect.ValueOf(p).FieldByIndex(index).IsZero() {
				return
			}
		}
		out = append(out, name)
	}
	walk(typ, nil, prefix)
	return out
}

func TestRedeliveryChangesNothing(t *testing.T) {
	eachStore(t, func(t *testing.T, s *readmodel.Store) {
		d := newDataset(t, 11)
		applyAll(t, s, d.recs)
		before, _ := listAll(t, s, projections.Filter{})
		cp, _ := s.Checkpoint(t.Context())

		applyAll(t, s, d.recs) // every one at or below the checkpoint
		after, _ := listAll(t, s, projections.Filter{})
		if !reflect.DeepEqual(before, after) {
			t.Fatal("re-applying delivered events changed rows")
		}

		// A checkpoint without an event also fences off what precedes it.
		if err := s.SaveCheckpoint(t.Context(), cp+100); err != nil {
			t.Fatal(err)
		}
		urn, evs := history(t, 500, domain.StatusRequested)
		if err := s.Apply(t.Context(), events.Recorded{URN: urn, Event: evs[0], Position: cp + 50}); err != nil {
			t.Fatal(err)
		}
		if _, err := s.Get(t.Context(), urn); !errors.Is(err, projections.ErrNotFound) {
			t.Fatalf("event before the checkpoint was applied: %v", err)
		}
		if err := s.SaveCheckpoint(t.Context(), cp); err != nil {
			t.Fatal(err)
		}
		if got, _ := s.Checkpoint(t.Context()); got != cp+100 {
			t.Fatalf("checkpoint = %d after saving an older one, want %d", got, cp+100)
		}
		if err := s.Apply(t.Context(), events.Recorded{URN: urn, Event: evs[0], Position: cp + 101}); err != nil {
			t.Fatal(err)
		}
		if _, err := s.Get(t.Context(), urn); err != nil {
			t.Fatalf("event after the checkpoint: %v", err)
		}
	})
}

func TestApplyRejectsIncompleteRecords(t *testing.T) {
	s := openStore(t, ":memory:")
	_, evs := history(t, 1, domain.StatusRequested)
	for _, rec := range []events.Recorded{{Event: evs[0], Position: 10}, {URN: "urn:rx:1", Position: 10}} {
		if err := s.Apply(t.Context(), rec); err == nil {
			t.Errorf("Apply(%+v) succeeded", rec)
		}
	}
	if cp, _ := s.Checkpoint(t.Context()); cp != 0 {
		t.Fatalf("checkpoint moved to %d", cp)
	}
}

func TestRowAndCheckpointAreOneTransaction(t *testing.T) {
	path := filepath.Join(t.TempDir(), "rm.db")
	urn, evs := history(t, 1, domain.StatusCompleted)
	recs := interleave([]string{urn}, map[string][]domain.Event{urn: evs})

	s := openStore(t, path)
	applyAll(t, s, recs[:2])
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	s = openStore(t, path)
	row, err := s.Get(t.Context(), urn)
	if err != nil || row.Status != domain.StatusApproved || row.LastPosition != recs[1].Position {
		t.Fatalf("after reopen: %+v, %v", row, err)
	}
	if cp, _ := s.Checkpoint(t.Context()); cp != recs[1].Position {
		t.Fatalf("after reopen checkpoint = %d, want %d", cp, recs[1].Position)
	}

	// Make the checkpoint write fail after the row was written: the row
	// must roll back with it.
	raw, err := sql.Open("sqlite", path)
	if err != nil {
		t.Fatal(err)
	}
	defer raw.Close()
	if _, err := raw.Exec(`CREATE TRIGGER fail_checkpoint BEFORE UPDATE ON checkpoint BEGIN SELECT RAISE(ABORT, 'injected'); END`); err != nil {
		t.Fatal(err)
	}
	if err := s.Apply(t.Context(), recs[2]); err == nil {
		t.Fatal("Apply succeeded despite the failing checkpoint write")
	}
	if got, _ := s.Get(t.Context(), urn); !reflect.DeepEqual(got, row) {
		t.Fatalf("row changed without its checkpoint:\n got %+v\nwant %+v", got, row)
	}
	if _, err := raw.Exec(`DROP TRIGGER fail_checkpoint`); err != nil {
		t.Fatal(err)
	}
	applyAll(t, s, recs[2:])
	if got, _ := s.Get(t.Context(), urn); got.Status != domain.StatusCompleted {
		t.Fatalf("status = %s after the retry, want completed", got.Status)
	}
}

func TestOpenMigratesOnce(t *testing.T) {
	path := filepath.Join(t.TempDir(), "rm.db")
	s := openStore(t, path)
	d := newDataset(t, 3)
	applyAll(t, s, d.recs)
	s.Close()

	s = openStore(t, path) // the schema exists: no error, data kept
	if rows, _ := listAll(t, s, projections.Filter{}); len(rows) != 3 {
		t.Fatalf("reopened store has %d rows, want 3", len(rows))
	}
	s.Close()

	raw, err := sql.Open("sqlite", path)
	if err != nil {
		t.Fatal(err)
	}
	defer raw.Close()
	if _, err := raw.Exec("UPDATE schema_version SET version = 99"); err != nil {
		t.Fatal(err)
	}
	if s, err := readmodel.Open(path); err == nil {
		s.Close()
		t.Fatal("opened a database with a newer schema")
	}
}

func TestListPagesFiltersAndOrders(t *testing.T) {
	eachStore(t, func(t *testing.T, s *readmodel.Store) {
		d := newDataset(t, 120)
		applyAll(t, s, d.recs)
		want := map[string]projections.Row{}
		for _, r := range foldRows(d.recs) {
			want[r.URN] = r
		}

		rows, sizes := listAll(t, s, projections.Filter{Limit: 50})
		if !slices.Equal(sizes, []int{50, 50, 20}) {
			t.Fatalf("page sizes %v, want [50 50 20]", sizes)
		}
		if !slices.Equal(urnsOf(rows), d.urns) {
			t.Fatal("pages are not every urn once, in order")
		}
		for _, r := range rows {
			if !reflect.DeepEqual(r, want[r.URN]) {
				t.Fatalf("listed %+v\nwant %+v", r, want[r.URN])
			}
		}
		if _, sizes := listAll(t, s, projections.Filter{Limit: 40}); !slices.Equal(sizes, []int{40, 40, 40}) {
			t.Fatalf("page sizes %v, want [40 40 40]", sizes)
		}
		if _, sizes := listAll(t, s, projections.Filter{}); !slices.Equal(sizes, []int{50, 50, 20}) {
			t.Fatalf("default limit: page sizes %v, want [50 50 20]", sizes)
		}
		if _, sizes := listAll(t, s, projections.Filter{Limit: readmodel.MaxLimit}); !slices.Equal(sizes, []int{120}) {
			t.Fatalf("max limit: page sizes %v, want [120]", sizes)
		}

		filters := []projections.Filter{
			{PatientID: "pat-2"}, {PharmacyID: "ph-1"}, {PatientID: "pat-nobody"},
			{Status: domain.StatusProcessing, PharmacyID: "ph-0"},
			{Status: domain.StatusCompleted, PatientID: "pat-3", PharmacyID: "ph-2"},
		}
		for _, st := range domain.Statuses {
			filters = append(filters, projections.Filter{Status: st})
		}
		for _, f := range filters {
			var wantURNs []string
			for _, urn := range d.urns {
				r := want[urn]
				if (f.Status == "" || r.Status == f.Status) && (f.PatientID == "" || r.PatientID == f.PatientID) &&
					(f.PharmacyID == "" || r.PharmacyID == f.PharmacyID) {
					wantURNs = append(wantURNs, urn)
				}
			}
			f.Limit = 7
			rows, _ := listAll(t, s, f)
			if got := urnsOf(rows); !slices.Equal(got, wantURNs) {
				t.Errorf("filter %+v: got %v\nwant %v", f, got, wantURNs)
			}
		}
	})
}

func TestListRejectsInvalidFilters(t *testing.T) {
	s := openStore(t, ":memory:")
	for name, f := range map[string]projections.Filter{
		"negative limit": {Limit: -1},
		"limit too big":  {Limit: readmodel.MaxLimit + 1},
		"cursor":         {Cursor: "not base64!"},
		"padded cursor":  {Cursor: "dXJu="},
		"status":         {Status: "teleported"},
	} {
		if _, err := s.List(t.Context(), f); !errors.Is(err, readmodel.ErrInvalidFilter) {
			t.Errorf("%s: err = %v, want ErrInvalidFilter", name, err)
		}
	}
}

func TestStatsCountsEveryStatus(t *testing.T) {
	s := openStore(t, ":memory:")
	stats, err := s.Stats(t.Context(), "")
	if err != nil {
		t.Fatal(err)
	}
	want := map[domain.Status]int{}
	for _, st := range domain.Statuses {
		want[st] = 0
	}
	if !maps.Equal(stats, want) {
		t.Fatalf("empty stats = %v, want %v", stats, want)
	}

	d := newDataset(t, 30)
	applyAll(t, s, d.recs)
	for _, r := range foldRows(d.recs) {
		want[r.Status]++
	}
	if stats, err = s.Stats(t.Context(), ""); err != nil || !maps.Equal(stats, want) {
		t.Fatalf("stats = %v, %v; want %v", stats, err, want)
	}

	// One pharmacy's: only the rows it holds.
	ofPharmacy := map[domain.Status]int{}
	for _, st := range domain.Statuses {
		ofPharmacy[st] = 0
	}
	for _, r := range foldRows(d.recs) {
		if r.PharmacyID == "ph-1" {
			ofPharmacy[r.Status]++
		}
	}
	if maps.Equal(ofPharmacy, want) {
		t.Fatal("the dataset has no rows of other pharmacies; the pharmacy filter would go unchecked")
	}
	if stats, err = s.Stats(t.Context(), "ph-1"); err != nil || !maps.Equal(stats, ofPharmacy) {
		t.Fatalf("stats of ph-1 = %v, %v; want %v", stats, err, ofPharmacy)
	}
}

func TestWaitFor(t *testing.T) {
	d := newDataset(t, 3)
	target := d.recs[len(d.recs)-1].Position

	waitAsync := func(s *readmodel.Store, pos uint64) <-chan error {
		done := make(chan error, 1)
		go func() {
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			done <- s.WaitFor(ctx, pos)
		}()
		return done
	}
	notYet := func(t *testing.T, done <-chan error) {
		t.Helper()
		select {
		case err := <-done:
			t.Fatalf("WaitFor returned %v before the position was reached", err)
		default:
		}
	}

	t.Run("woken by Apply", func(t *testing.T) {
		t.Cleanup(readmodel.SetPollInterval(time.Hour)) // only the signal can wake it
		s := openStore(t, ":memory:")
		done := waitAsync(s, target)
		applyAll(t, s, d.recs[:len(d.recs)-1])
		notYet(t, done)
		applyAll(t, s, d.recs[len(d.recs)-1:])
		if err := <-done; err != nil {
			t.Fatal(err)
		}
		if cp, _ := s.Checkpoint(t.Context()); cp < target {
			t.Fatalf("WaitFor returned at checkpoint %d < %d", cp, target)
		}
	})
	t.Run("woken by SaveCheckpoint", func(t *testing.T) {
		t.Cleanup(readmodel.SetPollInterval(time.Hour))
		s := openStore(t, ":memory:")
		done := waitAsync(s, 500)
		if err := s.SaveCheckpoint(t.Context(), 499); err != nil {
			t.Fatal(err)
		}
		notYet(t, done)
		if err := s.SaveCheckpoint(t.Context(), 501); err != nil {
			t.Fatal(err)
		}
		if err := <-done; err != nil {
			t.Fatal(err)
		}
	})
	t.Run("reached already", func(t *testing.T) {
		s := openStore(t, ":memory:")
		applyAll(t, s, d.recs)
		ctx, cancel := context.WithCancel(t.Context())
		cancel()
		if err := s.WaitFor(ctx, target); err != nil {
			t.Fatal(err)
		}
	})
	t.Run("timeout", func(t *testing.T) {
		s := openStore(t, ":memory:")
		ctx, cancel := context.WithTimeout(t.Context(), 50*time.Millisecond)
		defer cancel()
		if err := s.WaitFor(ctx, 1); !errors.Is(err, context.DeadlineExceeded) {
			t.Fatalf("err = %v, want DeadlineExceeded", err)
		}
	})
	t.Run("written by another Store", func(t *testing.T) {
		path := filepath.Join(t.TempDir(), "rm.db")
		writer, reader := openStore(t, path), openStore(t, path)
		done := waitAsync(reader, target)
		applyAll(t, writer, d.recs)
		if err := <-done; err != nil {
			t.Fatal(err)
		}
	})
	t.Run("store closed", func(t *testing.T) {
		s := openStore(t, ":memory:")
		done := waitAsync(s, target)
		s.Close()
		if err := <-done; !errors.Is(err, readmodel.ErrClosed) {
			t.Fatalf("err = %v, want ErrClosed", err)
		}
	})
}

// Package storetest is a conformance suite for the read side's stores: the
// read model (projections.ReadModel and ReadModelBatch, which the
// read-model projection writes; httpapi.ReadModel and
// projections.DueDeadlines, which the query API and the deadline scheduler
// read) and the reactors' ledger (projections.Ledger). The same suite runs
// against the embedded stores (SQLite, Pebble) and against PostgreSQL, so
// that the query API and the projectors behave alike on both; Fencing adds
// the cases of stores shared by projector instances under segment leases.
//
// Each test opens fresh stores through the caller's functions.
package storetest

import (
	"context"
	"errors"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"rxflow/domain"
	"rxflow/events"
	"rxflow/infra/httpapi"
	"rxflow/infra/readmodel"
	"rxflow/projections"
)

// ReadModel is one read model under test: its write side, bound to a lease
// covering every stream (projections.Whole, or the only segment), and its
// query side over the same data.
type ReadModel struct {
	Writer interface {
		projections.ReadModel
		projections.ReadModelBatch
	}
	Queries interface {
		httpapi.ReadModel
		projections.DueDeadlines
	}
}

// RunReadModel runs the read-model suite as subtests of t; open returns a
// fresh, empty read model, closed when its test ends.
func RunReadModel(t *testing.T, open func(t *testing.T) ReadModel) {
	for _, tc := range []struct {
		name string
		test func(t *testing.T, open func(t *testing.T) ReadModel)
	}{
		{"ApplyFoldsEveryColumn", testApplyFoldsEveryColumn},
		{"BatchEqualsOneByOne", testBatchEqualsOneByOne},
		{"RedeliveryChangesNothing", testRedeliveryChangesNothing},
		{"IncompleteRecordsChangeNothing", testIncompleteRecords},
		{"ListPagesFiltersAndOrders", testList},
		{"ListRejectsInvalidFilters", testListInvalid},
		{"Stats", testStats},
		{"WaitFor", testWaitFor},
		{"DeadlinesAndDue", testDeadlines},
	} {
		t.Run(tc.name, func(t *testing.T) { tc.test(t, open) })
	}
}

func applyAll(t *testing.T, rm ReadModel, recs []events.Recorded) {
	t.Helper()
	for _, rec := range recs {
		var err error
		if _, refused := rec.Event.(domain.Refused); refused {
			err = rm.Writer.SaveCheckpoint(t.Context(), rec.Position) // as the projector does
		} else {
			err = rm.Writer.Apply(t.Context(), rec)
		}
		if err != nil {
			t.Fatal(err)
		}
	}
}

// listAll pages through f, returning every row and the page sizes.
func listAll(t *testing.T, rm ReadModel, f projections.Filter) ([]projections.Row, []int) {
	t.Helper()
	var rows []projections.Row
	var sizes []int
	for {
		page, err := rm.Queries.List(t.Context(), f)
		if err != nil {
			t.Fatal(err)
		}
		rows = append(rows, page.Rows...)
		sizes = append(sizes, len(page.Rows))
		if page.NextCursor == "" {
			return rows, sizes
		}
		if len(sizes) > 1000 {
			t.Fatal("pagination does not end")
		}
		f.Cursor = page.NextCursor
	}
}

// waitingIn lists every waiting deadline of every name, by urn then name.
func waitingIn(t *testing.T, rm ReadModel) []projections.Waiting {
	t.Helper()
	var out []projections.Waiting
	for _, d := range domain.Prescriptions.Deadlines {
		ws, err := rm.Queries.Due(t.Context(), d.Name, far, 1<<20)
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, ws...)
	}
	slices.SortFunc(out, func(a, b projections.Waiting) int {
		return strings.Compare(a.URN+"\x00"+a.Deadline, b.URN+"\x00"+b.Deadline)
	})
	return out
}

func sortedWaiting(ws []projections.Waiting) []projections.Waiting {
	ws = slices.Clone(ws)
	slices.SortFunc(ws, func(a, b projections.Waiting) int {
		return strings.Compare(a.URN+"\x00"+a.Deadline, b.URN+"\x00"+b.Deadline)
	})
	return ws
}

func checkpointIs(t *testing.T, rm ReadModel, want uint64) {
	t.Helper()
	if cp, err := rm.Writer.Checkpoint(t.Context()); err != nil || cp != want {
		t.Fatalf("writer checkpoint = %d, %v; want %d", cp, err, want)
	}
	if cp, err := rm.Queries.Checkpoint(t.Context()); err != nil || cp != want {
		t.Fatalf("query checkpoint = %d, %v; want %d", cp, err, want)
	}
}

// The rows are the events folded, every column of them, and the checkpoint
// is the last event's position.
func testApplyFoldsEveryColumn(t *testing.T, open func(t *testing.T) ReadModel) {
	rm := open(t)
	checkpointIs(t, rm, 0)
	d := newDataset(t, 21)
	applyAll(t, rm, d.recs)
	want := d.rows()
	var covered []domain.Prescription
	for _, urn := range d.urns {
		got, err := rm.Queries.Get(t.Context(), urn)
		if err != nil {
			t.Fatal(err)
		}
		if !reflect.DeepEqual(got, want[urn]) {
			t.Errorf("%s:\n got %+v\nwant %+v", urn, got, want[urn])
		}
		covered = append(covered, got.Prescription)
	}
	for _, f := range unsetFields(covered) {
		t.Errorf("test data leaves %s unset in every prescription: a lost column would pass", f)
	}
	checkpointIs(t, rm, d.last())
	if _, err := rm.Queries.Get(t.Context(), "urn:rx:missing"); !errors.Is(err, projections.ErrNotFound) {
		t.Fatalf("Get(missing) = %v, want ErrNotFound", err)
	}
}

// unsetFields names the leaf fields of domain.Prescription that are zero in every ps.
func unsetFields(ps []domain.Prescription) []string {
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
	walk(reflect.TypeFor[domain.Prescription](), nil, "Prescription")
	return out
}

// ApplyBatch, in batches of any size and with refusals among the events,
// leaves what Apply of each leaves; a batch with an invalid record writes
// nothing.
func testBatchEqualsOneByOne(t *testing.T, open func(t *testing.T) ReadModel) {
	d := newDataset(t, 23)
	one := open(t)
	applyAll(t, one, d.recs)
	wantRows, _ := listAll(t, one, projections.Filter{})
	wantWaiting := waitingIn(t, one)

	for _, size := range []int{1, 3, 64, len(d.recs)} {
		batched := open(t)
		for recs := range slices.Chunk(d.recs, size) {
			if err := batched.Writer.ApplyBatch(t.Context(), recs); err != nil {
				t.Fatal(err)
			}
		}
		rows, _ := listAll(t, batched, projections.Filter{})
		if !reflect.DeepEqual(rows, wantRows) {
			t.Errorf("batches of %d: rows differ from one by one", size)
		}
		if got := waitingIn(t, batched); !reflect.DeepEqual(got, wantWaiting) {
			t.Errorf("batches of %d: waiting deadlines\n got %+v\nwant %+v", size, got, wantWaiting)
		}
		checkpointIs(t, batched, d.last())
	}

	rm := open(t)
	bad := slices.Clone(d.recs[:5])
	bad[3].URN = ""
	if err := rm.Writer.ApplyBatch(t.Context(), bad); err == nil {
		t.Fatal("a batch with an event without a URN was applied")
	}
	checkpointIs(t, rm, 0)
	if rows, _ := listAll(t, rm, projections.Filter{}); len(rows) != 0 {
		t.Fatalf("a refused batch left %d rows", len(rows))
	}
}

// An event at or before the checkpoint changes nothing, in Apply and in
// ApplyBatch; the checkpoint only moves forward, with or without an event.
func testRedeliveryChangesNothing(t *testing.T, open func(t *testing.T) ReadModel) {
	rm := open(t)
	d := newDataset(t, 11)
	applyAll(t, rm, d.recs)
	before, _ := listAll(t, rm, projections.Filter{})
	cp := d.last()

	applyAll(t, rm, d.recs)
	if err := rm.Writer.ApplyBatch(t.Context(), d.recs); err != nil {
		t.Fatal(err)
	}
	if after, _ := listAll(t, rm, projections.Filter{}); !reflect.DeepEqual(before, after) {
		t.Fatal("re-applying delivered events changed rows")
	}
	if err := rm.Writer.SaveCheckpoint(t.Context(), cp+100); err != nil {
		t.Fatal(err)
	}
	urn, evs := history(t, 500, domain.StatusRequested)
	early := events.Recorded{URN: urn, Event: evs[0], Position: cp + 50}
	if err := rm.Writer.Apply(t.Context(), early); err != nil {
		t.Fatal(err)
	}
	if err := rm.Writer.ApplyBatch(t.Context(), []events.Recorded{early}); err != nil {
		t.Fatal(err)
	}
	if _, err := rm.Queries.Get(t.Context(), urn); !errors.Is(err, projections.ErrNotFound) {
		t.Fatalf("an event before the checkpoint was applied: %v", err)
	}
	if err := rm.Writer.SaveCheckpoint(t.Context(), cp); err != nil {
		t.Fatal(err)
	}
	checkpointIs(t, rm, cp+100)
	late := early
	late.Position = cp + 101
	if err := rm.Writer.ApplyBatch(t.Context(), []events.Recorded{early, late}); err != nil {
		t.Fatal(err)
	}
	if row, err := rm.Queries.Get(t.Context(), urn); err != nil || row.LastPosition != cp+101 {
		t.Fatalf("the event after the checkpoint: %+v, %v", row, err)
	}
	checkpointIs(t, rm, cp+101)
}

func testIncompleteRecords(t *testing.T, open func(t *testing.T) ReadModel) {
	rm := open(t)
	_, evs := history(t, 1, domain.StatusRequested)
	for _, rec := range []events.Recorded{{Event: evs[0], Position: 10}, {URN: "urn:rx:1", Position: 10}} {
		if err := rm.Writer.Apply(t.Context(), rec); err == nil {
			t.Errorf("Apply(%+v) succeeded", rec)
		}
	}
	checkpointIs(t, rm, 0)
}

// List pages through the matching rows in bytewise urn order, with every
// filter and page size; the last page has no cursor.
func testList(t *testing.T, open func(t *testing.T) ReadModel) {
	rm := open(t)
	d := newDataset(t, 41)
	applyAll(t, rm, d.recs)
	all := d.rows()
	for _, f := range []projections.Filter{
		{}, {Limit: 1}, {Limit: 7}, {Limit: 41}, {Limit: 500},
		{Status: domain.StatusCompleted, Limit: 2}, {PatientID: "pat-3", Limit: 3}, {PharmacyID: "ph-1"},
		{Status: domain.StatusFailed, PharmacyID: "ph-2", Limit: 1}, {PatientID: "nobody"},
	} {
		rows, sizes := listAll(t, rm, f)
		var want []projections.Row
		for _, urn := range d.urns {
			r := all[urn]
			if (f.Status == "" || r.Status == f.Status) && (f.PatientID == "" || r.PatientID == f.PatientID) && (f.PharmacyID == "" || r.PharmacyID == f.PharmacyID) {
				want = append(want, r)
			}
		}
		if !reflect.DeepEqual(rows, want) && len(rows)+len(want) > 0 {
			t.Errorf("%+v: urns\n got %v\nwant %v", f, urnsOf(rows), urnsOf(want))
		}
		limit := f.Limit
		if limit == 0 {
			limit = readmodel.DefaultLimit
		}
		for i, n := range sizes {
			if n > limit || (i < len(sizes)-1 && n != limit) {
				t.Errorf("%+v: page sizes %v", f, sizes)
				break
			}
		}
	}
}

func urnsOf(rows []projections.Row) []string {
	out := make([]string, len(rows))
	for i, r := range rows {
		out[i] = r.URN
	}
	return out
}

func testListInvalid(t *testing.T, open func(t *testing.T) ReadModel) {
	rm := open(t)
	for _, f := range []projections.Filter{
		{Limit: -1}, {Limit: readmodel.MaxLimit + 1}, {Cursor: "%%%"}, {Cursor: "="}, {Status: "lost"},
	} {
		if _, err := rm.Queries.List(t.Context(), f); !errors.Is(err, readmodel.ErrInvalidFilter) {
			t.Errorf("List(%+v) = %v, want ErrInvalidFilter", f, err)
		}
	}
}

func testStats(t *testing.T, open func(t *testing.T) ReadModel) {
	rm := open(t)
	empty, err := rm.Queries.Stats(t.Context(), "")
	if err != nil || len(empty) != len(domain.Statuses) {
		t.Fatalf("empty stats = %v, %v; want every status at 0", empty, err)
	}
	d := newDataset(t, 29)
	applyAll(t, rm, d.recs)
	for _, pharmacy := range []string{"", "ph-0", "ph-9"} {
		want := map[domain.Status]int{}
		for _, st := range domain.Statuses {
			want[st] = 0
		}
		for _, r := range d.rows() {
			if pharmacy == "" || r.PharmacyID == pharmacy {
				want[r.Status]++
			}
		}
		if got, err := rm.Queries.Stats(t.Context(), pharmacy); err != nil || !reflect.DeepEqual(got, want) {
			t.Errorf("Stats(%q) = %v, %v; want %v", pharmacy, got, err, want)
		}
	}
}

// WaitFor returns once the checkpoint reaches the position, woken by a
// write, and ctx's error if it never does.
func testWaitFor(t *testing.T, open func(t *testing.T) ReadModel) {
	rm := open(t)
	if err := rm.Queries.WaitFor(t.Context(), 0); err != nil {
		t.Fatalf("WaitFor(0) = %v", err)
	}
	done := make(chan error, 1)
	go func() { done <- rm.Queries.WaitFor(t.Context(), 500) }()
	urn, evs := history(t, 1, domain.StatusRequested)
	if err := rm.Writer.Apply(t.Context(), events.Recorded{URN: urn, Event: evs[0], Position: 400}); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-done:
		t.Fatalf("WaitFor(500) returned %v at checkpoint 400", err)
	default:
	}
	if err := rm.Writer.SaveCheckpoint(t.Context(), 500); err != nil {
		t.Fatal(err)
	}
	if err := <-done; err != nil {
		t.Fatalf("WaitFor(500) = %v after the checkpoint reached it", err)
	}
	ctx, cancel := context.WithTimeout(t.Context(), 50*time.Millisecond)
	defer cancel()
	if err := rm.Queries.WaitFor(ctx, 501); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("WaitFor past the checkpoint = %v, want the context's deadline", err)
	}
}

// The deadlines left waiting are those the events leave: entering a state
// starts its deadlines, leaving it cancels them, DeadlinePassed ends its
// own; Due returns those started by the cutoff, oldest first, at most limit.
func testDeadlines(t *testing.T, open func(t *testing.T) ReadModel) {
	rm := open(t)
	d := newDataset(t, 31)
	applyAll(t, rm, d.recs)
	want := sortedWaiting(d.waiting())
	if len(want) == 0 {
		t.Fatal("the test data leaves no deadline waiting")
	}
	if got := waitingIn(t, rm); !reflect.DeepEqual(got, want) {
		t.Fatalf("waiting\n got %+v\nwant %+v", got, want)
	}
	name := want[0].Deadline
	var ofName []projections.Waiting
	for _, w := range d.waiting() {
		if w.Deadline == name {
			ofName = append(ofName, w)
		}
	}
	slices.SortStableFunc(ofName, func(a, b projections.Waiting) int { return a.StartedAt.Compare(b.StartedAt) })
	if len(ofName) < 3 {
		t.Fatalf("only %d deadlines %s waiting: too few to test the cutoff", len(ofName), name)
	}
	cutoff := ofName[len(ofName)/2].StartedAt
	var byCutoff []projections.Waiting
	for _, w := range ofName {
		if !w.StartedAt.After(cutoff) {
			byCutoff = append(byCutoff, w)
		}
	}
	got, err := rm.Queries.Due(t.Context(), name, cutoff, 1<<20)
	if err != nil || !reflect.DeepEqual(got, byCutoff) {
		t.Fatalf("Due(%s, %v) = %+v, %v\nwant %+v", name, cutoff, got, err, byCutoff)
	}
	if got, err := rm.Queries.Due(t.Context(), name, cutoff, 2); err != nil || !reflect.DeepEqual(got, byCutoff[:2]) {
		t.Fatalf("Due limit 2 = %+v, %v; want %+v", got, err, byCutoff[:2])
	}
	if got, err := rm.Queries.Due(t.Context(), name, t0.Add(-time.Hour), 10); err != nil || len(got) != 0 {
		t.Fatalf("Due before every start = %+v, %v", got, err)
	}
}

package readmodel_test

import (
	"reflect"
	"testing"
	"time"

	"rxflow/domain"
	"rxflow/events"
	"rxflow/infra/readmodel"
	"rxflow/projections"
)

var far = time.Date(2100, 1, 1, 0, 0, 0, 0, time.UTC)

// due lists every waiting deadline of every name.
func due(t *testing.T, s *readmodel.Store) []projections.Waiting {
	t.Helper()
	var out []projections.Waiting
	for _, d := range domain.Prescriptions.Deadlines {
		ws, err := s.Due(t.Context(), d.Name, far, 1<<20)
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, ws...)
	}
	return out
}

// Each event keeps the deadlines its prescription waits for: entering a
// state starts its deadlines, leaving it cancels them, and DeadlinePassed
// ends its own.
func TestApplyKeepsWaitingDeadlines(t *testing.T) {
	eachStore(t, func(t *testing.T, s *readmodel.Store) {
		urn, evs := history(t, 1, domain.StatusDispensed) // request, approve, process, dispense
		pos := uint64(10)
		apply := func(rev int, e domain.Event) {
			t.Helper()
			pos += 10
			if err := s.Apply(t.Context(), events.Recorded{URN: urn, Event: e, Revision: uint64(rev), Position: pos}); err != nil {
				t.Fatal(err)
			}
		}
		want := func(ws ...projections.Waiting) {
			t.Helper()
			if got := due(t, s); !reflect.DeepEqual(got, ws) && !(len(got) == 0 && len(ws) == 0) {
				t.Fatalf("waiting\n got %+v\nwant %+v", got, ws)
			}
		}
		at := func(e domain.Event) time.Time { return e.OccurredAt().UTC() }
		apply(0, evs[0])
		want(projections.Waiting{URN: urn, Deadline: "approval-overdue", Since: 0, StartedAt: at(evs[0])})
		// A refusal at revision 1 is not folded by the read model; approve is revision 2.
		apply(2, evs[1])
		want(projections.Waiting{URN: urn, Deadline: "processing-overdue", Since: 2, StartedAt: at(evs[1])})
		if row, err := s.Get(t.Context(), urn); err != nil || row.StatusSince != 2 {
			t.Fatalf("status since %d, %v; want the approve's revision 2", row.StatusSince, err)
		}
		passed := domain.DeadlinePassed{Deadline: "processing-overdue", Status: domain.StatusApproved, Since: 2, At: at(evs[1]).Add(5 * time.Hour)}
		apply(3, passed)
		want()
		apply(4, evs[2]) // process: no deadline in processing
		want()
		apply(5, evs[3])
		want(projections.Waiting{URN: urn, Deadline: "pickup-overdue", Since: 5, StartedAt: at(evs[3])})
		// A DeadlinePassed of another entry of the state ends nothing.
		apply(6, domain.DeadlinePassed{Deadline: "pickup-overdue", Status: domain.StatusDispensed, Since: 4, At: far})
		want(projections.Waiting{URN: urn, Deadline: "pickup-overdue", Since: 5, StartedAt: at(evs[3])})
	})
}

// Due returns the deadlines started at or before the cutoff, oldest first,
// at most limit.
func TestDueCutoffAndLimit(t *testing.T) {
	s := openStore(t, ":memory:")
	var recs []events.Recorded
	for n := range 5 {
		urn, evs := history(t, n, domain.StatusRequested)
		recs = append(recs, events.Recorded{URN: urn, Event: evs[0], Position: uint64(100 + n)})
	}
	applyAll(t, s, recs)
	cutoff := recs[2].Event.OccurredAt()
	got, err := s.Due(t.Context(), "approval-overdue", cutoff, 10)
	if err != nil || len(got) != 3 || got[0].URN != recs[0].URN || got[2].URN != recs[2].URN {
		t.Fatalf("Due(cutoff = third start) = %+v, %v", got, err)
	}
	if got, err := s.Due(t.Context(), "approval-overdue", cutoff, 2); err != nil || len(got) != 2 {
		t.Fatalf("Due(limit 2) = %d rows, %v", len(got), err)
	}
	if got, err := s.Due(t.Context(), "approval-overdue", recs[0].Event.OccurredAt().Add(-time.Nanosecond), 10); err != nil || len(got) != 0 {
		t.Fatalf("Due(before every start) = %+v, %v", got, err)
	}
	if got, err := s.Due(t.Context(), "pickup-overdue", far, 10); err != nil || len(got) != 0 {
		t.Fatalf("Due(pickup-overdue) = %+v, %v", got, err)
	}
}

// A rebuild (Replay, then BulkLoad) waits for the same deadlines as the
// live projection, a passed one excepted.
func TestBulkLoadWaitsLikeApply(t *testing.T) {
	d := newDataset(t, 71)
	recs := append([]events.Recorded(nil), d.recs...)
	// One approved prescription's deadline passed.
	var approved string
	for _, urn := range d.urns {
		if domain.Fold(d.hist[urn]).Status == domain.StatusApproved {
			approved = urn
			break
		}
	}
	n := len(d.hist[approved])
	recs = append(recs, events.Recorded{URN: approved, Revision: uint64(n), Position: recs[len(recs)-1].Position + 1,
		Event: domain.DeadlinePassed{Deadline: "processing-overdue", Status: domain.StatusApproved, Since: n - 1, At: far}})

	live := openStore(t, ":memory:")
	applyAll(t, live, recs)
	waiting := map[string][]projections.Waiting{}
	var statuses = map[string]domain.Status{}
	for _, rec := range recs {
		before := statuses[rec.URN]
		after := domain.Evolve(domain.Prescription{Status: before}, rec.Event).Status
		statuses[rec.URN] = after
		waiting[rec.URN] = projections.DeadlinesAfter(domain.Prescriptions, rec, before, after).Apply(waiting[rec.URN])
	}
	var all []projections.Waiting
	for _, urn := range d.urns {
		all = append(all, waiting[urn]...)
	}
	rebuilt := openStore(t, ":memory:")
	if err := rebuilt.BulkLoad(t.Context(), foldRows(recs), all, recs[len(recs)-1].Position); err != nil {
		t.Fatal(err)
	}
	got, want := due(t, rebuilt), due(t, live)
	if len(want) == 0 || !reflect.DeepEqual(got, want) {
		t.Fatalf("rebuilt waits for\n%+v\nlive for\n%+v", got, want)
	}
	for _, w := range want {
		if w.URN == approved {
			t.Fatalf("%s still waits for %+v after it passed", approved, w)
		}
	}
}

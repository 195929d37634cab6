package readmodel_test

import (
	"fmt"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"rxflow/domain"
	"rxflow/events"
	"rxflow/infra/readmodel"
	"rxflow/projections"
)

var t0 = time.Date(2026, 11, 29, 10, 0, 0, 123456789, time.UTC)

// Command paths to every status.
var paths = map[domain.Status][]domain.CommandType{
	domain.StatusRequested:  {domain.Request},
	domain.StatusApproved:   {domain.Request, domain.Approve},
	domain.StatusRejected:   {domain.Request, domain.Reject},
	domain.StatusProcessing: {domain.Request, domain.Approve, domain.Process},
	domain.StatusDispensed:  {domain.Request, domain.Approve, domain.Process, domain.Dispense},
	domain.StatusCompleted:  {domain.Request, domain.Approve, domain.Process, domain.Dispense, domain.Complete},
	domain.StatusFailed:     {domain.Request, domain.Approve, domain.Process, domain.Fail},
}

// command is a valid command of type c for the n-th prescription.
func command(c domain.CommandType, urn string, n int) domain.Command {
	cmd := domain.Command{Type: c, URN: urn, Actor: fmt.Sprintf("actor-%d", n)}
	switch c {
	case domain.Request:
		cmd.PatientID, cmd.PrescriberID = fmt.Sprintf("pat-%d", n%5), fmt.Sprintf("dr-%d", n%4)
		cmd.Medication = domain.Medication{Name: "Amoxicillin", Code: "J01CA04", Strength: "500mg", Quantity: 20 + n%3, Refills: n % 2}
	case domain.Approve:
		cmd.ApprovedBy = fmt.Sprintf("dr-%d", n%4)
	case domain.Reject:
		cmd.Reason = fmt.Sprintf("interaction %d", n)
	case domain.Fail:
		cmd.Reason = fmt.Sprintf("out of stock %d", n)
	case domain.Process:
		cmd.PharmacyID = fmt.Sprintf("ph-%d", n%3)
	case domain.Dispense:
		cmd.Dispensing = domain.Dispensing{By: "pharmacist-1", Quantity: 20, LotNumber: fmt.Sprintf("LOT-%d", n)}
	}
	return cmd
}

// history decides the n-th prescription's events up to status to, each at
// a distinct time.
func history(t testing.TB, n int, to domain.Status) (string, []domain.Event) {
	t.Helper()
	urn := fmt.Sprintf("urn:rx:%04d", n)
	var p domain.Prescription
	var out []domain.Event
	for k, c := range paths[to] {
		at := t0.Add(time.Duration(n)*time.Hour + time.Duration(k)*time.Minute + time.Duration(n*7+k))
		evs, err := domain.Decide(p, command(c, urn, n), at)
		if err != nil {
			t.Fatalf("deciding %s for %s: %v", c, urn, err)
		}
		for _, e := range evs {
			p = domain.Evolve(p, e)
		}
		out = append(out, evs...)
	}
	// Every third prescription (1, 4, …) passes the deadlines of its state.
	for _, d := range domain.Prescriptions.DeadlinesIn(to) {
		if n%3 != 1 {
			break
		}
		at := p.StatusAt.Add(d.After)
		evs, err := domain.Decide(p, domain.Command{Type: domain.RecordDeadline, URN: urn, Deadline: d.Name, Since: p.StatusSince, DueAt: at}, at)
		if err != nil {
			t.Fatalf("deadline %s for %s: %v", d.Name, urn, err)
		}
		p = domain.Evolve(p, evs[0])
		out = append(out, evs...)
	}
	return urn, out
}

// interleave records the histories as $all would: streams interleaved
// round-robin in the order given, revisions per stream, positions
// increasing with gaps.
func interleave(urns []string, hist map[string][]domain.Event) []events.Recorded {
	var recs []events.Recorded
	pos := uint64(100)
	for k := 0; ; k++ {
		more := false
		for _, urn := range urns {
			if k >= len(hist[urn]) {
				continue
			}
			more = true
			pos += 37
			recs = append(recs, events.Recorded{URN: urn, Event: hist[urn][k], Revision: uint64(k), Position: pos})
		}
		if !more {
			return recs
		}
	}
}

// dataset is n prescriptions spread over every status, recorded in a
// shuffled urn order.
type dataset struct {
	urns []string // sorted
	hist map[string][]domain.Event
	recs []events.Recorded
}

func newDataset(t testing.TB, n int) dataset {
	t.Helper()
	d := dataset{hist: map[string][]domain.Event{}}
	var order []string
	for i := range n {
		j := (i * 37) % n // a permutation when gcd(37, n) = 1
		urn, evs := history(t, j, domain.Statuses[j%len(domain.Statuses)])
		d.hist[urn] = evs
		order = append(order, urn)
	}
	if len(d.hist) != n {
		t.Fatalf("dataset has %d prescriptions, want %d (pick n coprime with 37)", len(d.hist), n)
	}
	d.urns = slices.Sorted(slices.Values(order))
	d.recs = interleave(order, d.hist)
	return d
}

// rows folds the records in memory, as the audit replay does.
func foldRows(recs []events.Recorded) []projections.Row {
	byURN := map[string]projections.Row{}
	for _, rec := range recs {
		r := byURN[rec.URN]
		r.Prescription = domain.Evolve(r.Prescription, rec.Event)
		r.LastRevision, r.LastPosition, r.UpdatedAt = rec.Revision, rec.Position, rec.Event.OccurredAt()
		byURN[rec.URN] = r
	}
	var rows []projections.Row
	for _, r := range byURN {
		rows = append(rows, r)
	}
	return rows
}

func openStore(t testing.TB, path string) *readmodel.Store {
	t.Helper()
	s, err := readmodel.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

// eachStore runs f against an in-memory and a file store.
func eachStore(t *testing.T, f func(t *testing.T, s *readmodel.Store)) {
	t.Run("memory", func(t *testing.T) { f(t, openStore(t, ":memory:")) })
	t.Run("file", func(t *testing.T) { f(t, openStore(t, filepath.Join(t.TempDir(), "rm.db"))) })
}

func applyAll(t testing.TB, s *readmodel.Store, recs []events.Recorded) {
	t.Helper()
	for _, rec := range recs {
		if err := s.Apply(t.Context(), rec); err != nil {
			t.Fatal(err)
		}
	}
}

// listAll pages through f with limit, returning every row and page sizes.
func listAll(t testing.TB, s *readmodel.Store, f projections.Filter) ([]projections.Row, []int) {
	t.Helper()
	var rows []projections.Row
	var sizes []int
	for {
		page, err := s.List(t.Context(), f)
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

func urnsOf(rows []projections.Row) []string {
	out := make([]string, len(rows))
	for i, r := range rows {
		out[i] = r.URN
	}
	return out
}

func eventAt(urn string, e domain.Event, pos uint64) events.Recorded {
	return events.Recorded{URN: urn, Event: e, Position: pos}
}

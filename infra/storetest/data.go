package storetest

import (
	"fmt"
	"slices"
	"testing"
	"time"

	"rxflow/domain"
	"rxflow/events"
	"rxflow/projections"
)

var t0 = time.Date(2026, 11, 29, 10, 0, 0, 123456789, time.UTC)

// far is a cutoff after every deadline of the test data.
var far = time.Date(2100, 1, 1, 0, 0, 0, 0, time.UTC)

// paths are command sequences to every status.
var paths = map[domain.Status][]domain.CommandType{
	domain.StatusRequested:  {domain.Request},
	domain.StatusApproved:   {domain.Request, domain.Approve},
	domain.StatusRejected:   {domain.Request, domain.Reject},
	domain.StatusProcessing: {domain.Request, domain.Approve, domain.Process},
	domain.StatusDispensed:  {domain.Request, domain.Approve, domain.Process, domain.Dispense},
	domain.StatusCompleted:  {domain.Request, domain.Approve, domain.Process, domain.Dispense, domain.Complete},
	domain.StatusFailed:     {domain.Request, domain.Approve, domain.Process, domain.Fail},
}

func command(c domain.CommandType, urn string, n int) domain.Command {
	cmd := domain.Command{Type: c, URN: urn, Actor: fmt.Sprintf("actor-%d", n)}
	switch c {
	case domain.Request:
		cmd.PatientID, cmd.PrescriberID = fmt.Sprintf("pat-%d", n%5), fmt.Sprintf("dr-%d", n%4)
		cmd.Medication = domain.Medication{Name: "Amoxicillin", Code: "J01CA04", CodeSystem: "ATC", Strength: "500mg", Quantity: 20 + n%3, Refills: n % 2}
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

// urnOf is the n-th prescription's urn; their bytewise order is not the
// order of n, and some hold upper case and non-ASCII letters, so that a
// store sorting by another collation pages differently.
func urnOf(n int) string {
	prefix := []string{"", "B", "a", "é", "Z"}[n%5]
	return fmt.Sprintf("urn:rx:%s%04d", prefix, (n*7919)%10000)
}

// history decides the n-th prescription's events up to status to, each at
// a distinct time; every third one then passes its state's deadlines.
func history(t testing.TB, n int, to domain.Status) (string, []domain.Event) {
	t.Helper()
	urn := urnOf(n)
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

// dataset is n prescriptions over every status, recorded as $all would:
// streams interleaved, revisions per stream, positions increasing with
// gaps, and a refusal after the last event of every third prescription (a
// refusal takes a revision but changes no row).
type dataset struct {
	urns []string // sorted bytewise
	hist map[string][]domain.Event
	recs []events.Recorded
}

func newDataset(t testing.TB, n int) dataset {
	t.Helper()
	d := dataset{hist: map[string][]domain.Event{}}
	var order []string
	for i := range n {
		urn, evs := history(t, i, domain.Statuses[i%len(domain.Statuses)])
		d.hist[urn] = evs
		order = append(order, urn)
	}
	d.urns = slices.Sorted(slices.Values(order))
	pos := uint64(100)
	revision := map[string]uint64{}
	for k := 0; ; k++ {
		more := false
		for _, urn := range order {
			if k >= len(d.hist[urn]) {
				continue
			}
			more = true
			pos += 37
			d.recs = append(d.recs, events.Recorded{URN: urn, Event: d.hist[urn][k], Revision: revision[urn], Position: pos})
			revision[urn]++
			if k == len(d.hist[urn])-1 && slices.Index(order, urn)%3 == 0 {
				pos += 5
				refused := domain.Refused{Command: domain.Complete, Code: "invalid_transition", Reason: "test", Status: domain.StatusRequested, At: t0}
				d.recs = append(d.recs, events.Recorded{URN: urn, Event: refused, Revision: revision[urn], Position: pos})
				revision[urn]++
			}
		}
		if !more {
			return d
		}
	}
}

// rows folds the dataset in memory, as projections.Replay does.
func (d dataset) rows() map[string]projections.Row {
	out := map[string]projections.Row{}
	for _, rec := range d.recs {
		if _, refused := rec.Event.(domain.Refused); refused {
			continue
		}
		r := out[rec.URN]
		projections.FoldRow(&r, rec)
		out[rec.URN] = r
	}
	return out
}

// waiting is the deadlines the dataset leaves waiting, by urn.
func (d dataset) waiting() []projections.Waiting {
	by := map[string][]projections.Waiting{}
	rows := map[string]projections.Row{}
	for _, rec := range d.recs {
		if _, refused := rec.Event.(domain.Refused); refused {
			continue
		}
		r := rows[rec.URN]
		before := r.Status
		projections.FoldRow(&r, rec)
		rows[rec.URN] = r
		by[rec.URN] = projections.DeadlinesAfter(domain.Prescriptions, rec, before, r.Status).Apply(by[rec.URN])
	}
	var out []projections.Waiting
	for _, urn := range d.urns {
		out = append(out, by[urn]...)
	}
	return out
}

// last is the dataset's last position.
func (d dataset) last() uint64 { return d.recs[len(d.recs)-1].Position }

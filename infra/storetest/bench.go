package storetest

import (
	"fmt"
	"maps"
	"slices"
	"testing"
	"time"

	"rxflow/domain"
	"rxflow/events"
	"rxflow/projections"
)

// Lifecycles returns the events of prescriptions first … first+n-1, each
// requested, approved, processed, dispensed and completed (5 events), as
// $all holds them: 64 prescriptions in progress at a time, their events
// interleaved; positions 5·first+1, 5·first+2, …; for benchmarks of the
// stores.
func Lifecycles(tb testing.TB, first, n int) []events.Recorded {
	tb.Helper()
	out := make([]events.Recorded, 0, 5*n)
	base := uint64(5 * first)
	for start := first; start < first+n; start += 64 {
		window := make([][]domain.Event, 0, 64)
		urns := make([]string, 0, 64)
		for i := start; i < min(start+64, first+n); i++ {
			urn := fmt.Sprintf("urn:rx:bench-%08d", i)
			var p domain.Prescription
			var evs []domain.Event
			for k, c := range paths[domain.StatusCompleted] {
				decided, err := domain.Decide(p, command(c, urn, i), t0.Add(time.Duration(i)*time.Second+time.Duration(k)*time.Millisecond))
				if err != nil {
					tb.Fatal(err)
				}
				for _, e := range decided {
					p = domain.Evolve(p, e)
				}
				evs = append(evs, decided...)
			}
			window, urns = append(window, evs), append(urns, urn)
		}
		for k := range 5 {
			for j, evs := range window {
				out = append(out, events.Recorded{URN: urns[j], Event: evs[k], Revision: uint64(k), Position: base + uint64(len(out)) + 1})
			}
		}
	}
	return out
}

// Fold folds recs as projections.Replay does: the rows, sorted by urn,
// and the deadlines they wait for.
func Fold(recs []events.Recorded) ([]projections.Row, []projections.Waiting) {
	rows := map[string]*projections.Row{}
	waiting := map[string][]projections.Waiting{}
	for _, rec := range recs {
		if _, refused := rec.Event.(domain.Refused); refused {
			continue
		}
		r := rows[rec.URN]
		if r == nil {
			r = &projections.Row{}
			rows[rec.URN] = r
		}
		before := r.Status
		projections.FoldRow(r, rec)
		waiting[rec.URN] = projections.DeadlinesAfter(domain.Prescriptions, rec, before, r.Status).Apply(waiting[rec.URN])
	}
	var outRows []projections.Row
	var outWaiting []projections.Waiting
	for _, urn := range slices.Sorted(maps.Keys(rows)) {
		outRows = append(outRows, *rows[urn])
		outWaiting = append(outWaiting, waiting[urn]...)
	}
	return outRows, outWaiting
}

package storetest

import (
	"testing"

	"rxflow/events"
	"rxflow/projections"
)

// BenchmarkApplyBatches measures the live apply rate of w in events/s:
// full lifecycles (Lifecycles) applied in batches of size events through
// ApplyBatch, each batch one transaction with its checkpoint, as the
// runner hands them over when events wait.
func BenchmarkApplyBatches(b *testing.B, w projections.ReadModelBatch, size int) {
	const pool = 20_000 // prescriptions generated at a time
	var recs []events.Recorded
	next, applied := 0, 0
	for b.Loop() {
		if len(recs) < size {
			b.StopTimer()
			recs = append(recs, Lifecycles(b, next, pool)...)
			next += pool
			b.StartTimer()
		}
		if err := w.ApplyBatch(b.Context(), recs[:size]); err != nil {
			b.Fatal(err)
		}
		recs = recs[size:]
		applied += size
	}
	b.ReportMetric(float64(applied)/b.Elapsed().Seconds(), "events/s")
}

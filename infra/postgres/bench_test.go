package postgres_test

import (
	"fmt"
	"testing"

	"rxflow/infra/storetest"
)

// BenchmarkApply measures the live apply rate of one instance holding the
// only segment (its writes fenced) in events/s, by batch size: batch=1 is
// one transaction per event, the others as the runner batches waiting
// events. Needs RXFLOW_TEST_POSTGRES.
func BenchmarkApply(b *testing.B) {
	for _, size := range []int{1, 16, 256} {
		b.Run(fmt.Sprintf("batch=%d", size), func(b *testing.B) {
			db := openDB(b)
			storetest.BenchmarkApplyBatches(b, db.ReadModel(claim(b, db, 0, 1)), size)
		})
	}
}

// BenchmarkRebuild measures the rebuild's load and switch (COPY into fresh
// tables, keys and indexes, the switch) of 100,000 prescriptions folded
// from 500,000 events, in events/s and rows/s. The replay of $all that
// precedes it is not included.
func BenchmarkRebuild(b *testing.B) {
	const prescriptions = 100_000
	recs := storetest.Lifecycles(b, 0, prescriptions)
	rows, waiting := storetest.Fold(recs)
	db := openDB(b)
	claim(b, db, 0, 1)
	for b.Loop() {
		if err := db.RebuildReadModel(b.Context(), rows, waiting, recs[len(recs)-1].Position, 1); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(len(recs)*b.N)/b.Elapsed().Seconds(), "events/s")
	b.ReportMetric(float64(len(rows)*b.N)/b.Elapsed().Seconds(), "rows/s")
}

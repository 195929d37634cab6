package readmodel_test

import (
	"context"
	"fmt"
	"path/filepath"
	"testing"
	"time"

	"rxflow/domain"
	"rxflow/events"
	"rxflow/infra/readmodel"
	"rxflow/infra/storetest"
	"rxflow/projections"
)

// BenchmarkApply measures events/s through Apply on a durable file store
// (WAL, synchronous=FULL: one fsync per event).
func BenchmarkApply(b *testing.B) {
	s := openStore(b, filepath.Join(b.TempDir(), "rm.db"))
	var steps [][]domain.Event
	for n := range 50 {
		_, evs := history(b, n, domain.StatusCompleted)
		steps = append(steps, evs)
	}
	i := 0
	for b.Loop() {
		// Each prescription takes its five lifecycle events in turn.
		evs := steps[(i/5)%len(steps)]
		rec := events.Recorded{URN: fmt.Sprintf("urn:rx:%d", i/5), Event: evs[i%5], Revision: uint64(i % 5), Position: uint64(i + 1)}
		if err := s.Apply(b.Context(), rec); err != nil {
			b.Fatal(err)
		}
		i++
	}
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "events/s")
}

// BenchmarkApplyBatch measures the live apply rate in events/s by batch
// size on a durable file store: batch=1 is one transaction (one fsync) per
// event, the others as the runner batches waiting events.
func BenchmarkApplyBatch(b *testing.B) {
	for _, size := range []int{1, 16, 256} {
		b.Run(fmt.Sprintf("batch=%d", size), func(b *testing.B) {
			storetest.BenchmarkApplyBatches(b, openStore(b, filepath.Join(b.TempDir(), "rm.db")), size)
		})
	}
}

// BenchmarkRebuild measures the rebuild's load and swap (BulkLoad into a
// fresh file, Swap) of 100,000 prescriptions folded from 500,000 events,
// in events/s and rows/s; the replay of $all that precedes it is not
// included.
func BenchmarkRebuild(b *testing.B) {
	const prescriptions = 100_000
	recs := storetest.Lifecycles(b, 0, prescriptions)
	rows, waiting := storetest.Fold(recs)
	dir := b.TempDir()
	live := filepath.Join(dir, "readmodel.db")
	for b.Loop() {
		fresh := filepath.Join(dir, "readmodel.rebuild.db")
		s, err := readmodel.Open(fresh)
		if err != nil {
			b.Fatal(err)
		}
		if err := s.BulkLoad(b.Context(), rows, waiting, recs[len(recs)-1].Position); err != nil {
			b.Fatal(err)
		}
		if err := s.Close(); err != nil {
			b.Fatal(err)
		}
		if err := readmodel.Swap(live, fresh); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(len(recs)*b.N)/b.Elapsed().Seconds(), "events/s")
	b.ReportMetric(float64(len(rows)*b.N)/b.Elapsed().Seconds(), "rows/s")
}

// BenchmarkBulkLoad measures rows/s loading 100,000 rows into a fresh file
// store, commit included.
func BenchmarkBulkLoad(b *testing.B) {
	const n = 100_000
	rows := make([]projections.Row, n)
	var tmpl []projections.Row
	for k, st := range domain.Statuses {
		_, evs := history(b, k, st)
		tmpl = append(tmpl, projections.Row{Prescription: domain.Fold(evs), LastRevision: uint64(len(evs) - 1), UpdatedAt: evs[len(evs)-1].OccurredAt()})
	}
	for i := range rows {
		rows[i] = tmpl[i%len(tmpl)]
		rows[i].URN = fmt.Sprintf("urn:rx:%08d", (i*7919)%n) // not in key order
		rows[i].PatientID = fmt.Sprintf("pat-%d", i%9973)
		rows[i].LastPosition = uint64(i + 1)
	}
	dir := b.TempDir()
	run := 0
	for b.Loop() {
		b.StopTimer()
		run++
		s := openStore(b, filepath.Join(dir, fmt.Sprintf("rm-%d.db", run)))
		b.StartTimer()
		if err := s.BulkLoad(b.Context(), rows, nil, n); err != nil {
			b.Fatal(err)
		}
		b.StopTimer()
		s.Close()
		b.StartTimer()
	}
	b.ReportMetric(float64(n*b.N)/b.Elapsed().Seconds(), "rows/s")
}

// BenchmarkDue measures one search for due deadlines among 100,000 waiting
// prescriptions, 10 of them due.
func BenchmarkDue(b *testing.B) {
	const n, due = 100_000, 10
	s := openStore(b, filepath.Join(b.TempDir(), "rm.db"))
	start := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	ws := make([]projections.Waiting, n)
	for i := range ws {
		ws[i] = projections.Waiting{URN: fmt.Sprintf("urn:rx:%06d", i), Deadline: "approval-overdue", StartedAt: start.Add(time.Duration(i) * time.Second)}
	}
	if err := s.BulkLoad(b.Context(), nil, ws, 1); err != nil {
		b.Fatal(err)
	}
	cutoff := start.Add((due - 1) * time.Second)
	for b.Loop() {
		got, err := s.Due(b.Context(), "approval-overdue", cutoff, 500)
		if err != nil || len(got) != due {
			b.Fatalf("Due = %d rows, %v", len(got), err)
		}
	}
}

// BenchmarkAccessLogRecord measures records/s through AccessLog.Record on a
// durable file (WAL, synchronous=FULL: one fsync per record), one urn each:
// the cost every audited query API request pays before it is answered.
func BenchmarkAccessLogRecord(b *testing.B) {
	l := openAccessLog(b, filepath.Join(b.TempDir(), readmodel.AccessLogFile))
	a := readmodel.Access{At: t0, Subject: "auditor@hospital", Role: "auditor", Method: "GET", Route: "/prescriptions/{urn}",
		URNs: []string{"urn:rx:1"}, Status: 200, Outcome: "ok"}
	for b.Loop() {
		if _, err := l.Record(b.Context(), a); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "records/s")
}

// BenchmarkAccessLogRecordParallel is BenchmarkAccessLogRecord with 16
// callers per CPU at once, as concurrent query API requests record.
func BenchmarkAccessLogRecordParallel(b *testing.B) {
	l := openAccessLog(b, filepath.Join(b.TempDir(), readmodel.AccessLogFile))
	a := readmodel.Access{At: t0, Subject: "auditor@hospital", Role: "auditor", Method: "GET", Route: "/prescriptions/{urn}",
		URNs: []string{"urn:rx:1"}, Status: 200, Outcome: "ok"}
	b.SetParallelism(16)
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if _, err := l.Record(context.Background(), a); err != nil {
				b.Error(err)
				return
			}
		}
	})
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "records/s")
}

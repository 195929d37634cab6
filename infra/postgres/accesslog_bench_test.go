package postgres_test

import (
	"context"
	"testing"
	"time"

	"rxflow/infra/postgres"
	"rxflow/infra/postgres/postgrestest"
	"rxflow/infra/readmodel"
)

var benchAccess = readmodel.Access{At: time.Date(2026, 12, 1, 0, 0, 0, 0, time.UTC), Subject: "auditor@hospital", Role: "auditor",
	Method: "GET", Route: "/prescriptions/{urn}", URNs: []string{"urn:rx:1"}, Status: 200, Outcome: "ok"}

func benchAccessLog(b *testing.B) *postgres.AccessLog {
	db, err := postgres.Open(context.Background(), postgrestest.URL(b))
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(db.Close)
	l := db.AccessLog()
	b.Cleanup(func() { l.Close() })
	return l
}

// BenchmarkAccessLogRecord measures records/s through AccessLog.Record on
// PostgreSQL, one caller, one urn each: the cost every audited query API
// request pays before it is answered (readmodel's benchmark of the same
// name is SQLite's).
func BenchmarkAccessLogRecord(b *testing.B) {
	l := benchAccessLog(b)
	for b.Loop() {
		if _, err := l.Record(b.Context(), benchAccess); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "records/s")
}

// BenchmarkAccessLogRecordParallel is BenchmarkAccessLogRecord with 16
// callers per CPU at once, as concurrent query API requests record.
func BenchmarkAccessLogRecordParallel(b *testing.B) {
	l := benchAccessLog(b)
	b.SetParallelism(16)
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if _, err := l.Record(context.Background(), benchAccess); err != nil {
				b.Error(err)
				return
			}
		}
	})
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "records/s")
}

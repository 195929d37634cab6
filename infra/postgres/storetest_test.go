package postgres_test

import (
	"context"
	"net/url"
	"testing"

	"rxflow/infra/httpapi"
	"rxflow/infra/postgres"
	"rxflow/infra/postgres/postgrestest"
	"rxflow/infra/storetest"
	"rxflow/projections"
)

var (
	_ projections.ReadModel    = (*postgres.ReadModel)(nil)
	_ httpapi.ReadModel        = (*postgres.Queries)(nil)
	_ projections.DueDeadlines = (*postgres.Queries)(nil)
	_ projections.Ledger       = (*postgres.Ledger)(nil)
)

func openDB(t testing.TB, createOptions ...string) *postgres.DB {
	t.Helper()
	return open(t, postgrestest.URL(t, createOptions...))
}

// openDBIn opens a fresh database whose connections use pgx's query exec
// mode (default_query_exec_mode in the URL).
func openDBIn(t testing.TB, mode string) *postgres.DB {
	t.Helper()
	u, err := url.Parse(postgrestest.URL(t))
	if err != nil {
		t.Fatal(err)
	}
	q := u.Query()
	q.Set("default_query_exec_mode", mode)
	u.RawQuery = q.Encode()
	return open(t, u.String())
}

func TestReadModelConformance(t *testing.T) {
	storetest.RunReadModel(t, func(t *testing.T) storetest.ReadModel {
		db := openDB(t)
		return storetest.ReadModel{Writer: db.ReadModel(projections.Whole), Queries: db.Queries()}
	})
}

// On a database whose collation is not bytewise (ICU's en-US, as many
// production databases have), List still pages in the SQLite store's
// bytewise urn order: the urn columns are COLLATE "C".
func TestReadModelConformanceUnderICUCollation(t *testing.T) {
	storetest.RunReadModel(t, func(t *testing.T) storetest.ReadModel {
		db := openDB(t, "TEMPLATE template0 LOCALE_PROVIDER icu ICU_LOCALE 'en-US' LOCALE 'C.UTF-8'")
		return storetest.ReadModel{Writer: db.ReadModel(projections.Whole), Queries: db.Queries()}
	})
}

func TestLedgerConformance(t *testing.T) {
	storetest.RunLedger(t, func(t *testing.T) projections.Ledger { return openDB(t).Ledger(projections.Whole) })
}

func TestSharedConformance(t *testing.T) {
	storetest.RunShared(t, func(t *testing.T) storetest.Shared { return shared(openDB(t)) })
}

// Every query exec mode a DATABASE_URL may choose (PgBouncer's transaction
// pooling needs exec or simple_protocol) keeps the ports' contracts: the
// same statements, sent other ways, must encode alike, and a fenced write
// must stay one transaction.
func TestConformanceInEveryQueryExecMode(t *testing.T) {
	for _, mode := range []string{"cache_describe", "describe_exec", "exec", "simple_protocol"} {
		t.Run(mode, func(t *testing.T) {
			storetest.RunLedger(t, func(t *testing.T) projections.Ledger { return openDBIn(t, mode).Ledger(projections.Whole) })
			storetest.RunReadModel(t, func(t *testing.T) storetest.ReadModel {
				db := openDBIn(t, mode)
				return storetest.ReadModel{Writer: db.ReadModel(projections.Whole), Queries: db.Queries()}
			})
			storetest.RunShared(t, func(t *testing.T) storetest.Shared { return shared(openDBIn(t, mode)) })
		})
	}
}

// shared is db as storetest.RunShared takes it, with 3 segments.
func shared(db *postgres.DB) storetest.Shared {
	return storetest.Shared{
		Count: 3,
		Claim: func(t *testing.T, segment int) projections.Lease { return claim(t, db, segment, 3) },
		ReadModel: func(l projections.Lease) interface {
			projections.ReadModel
			projections.ReadModelBatch
		} {
			return db.ReadModel(l)
		},
		Ledger:  func(l projections.Lease) projections.Ledger { return db.Ledger(l) },
		Queries: func() storetest.ReadModel { return storetest.ReadModel{Queries: db.Queries()} },
		Rebuild: func(ctx context.Context, rows []projections.Row, waiting []projections.Waiting, checkpoint uint64) error {
			return db.RebuildReadModel(ctx, rows, waiting, checkpoint, 3)
		},
	}
}

// claim takes segment of count for a new holder, as an instance's claim
// does: the token grows.
func claim(t testing.TB, db *postgres.DB, segment, count int) projections.Lease {
	t.Helper()
	var token int64
	err := db.Pool().QueryRow(context.Background(), `INSERT INTO segment_leases (segment, owner, token, expires_at) VALUES ($1, 'test', 1, now() + interval '1 hour')
		ON CONFLICT (segment) DO UPDATE SET token = segment_leases.token + 1 RETURNING token`, segment).Scan(&token)
	if err != nil {
		t.Fatal(err)
	}
	return projections.Lease{Segment: segment, Count: count, Token: token}
}

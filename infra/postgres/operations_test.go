package postgres_test

import (
	"context"
	"testing"

	"rxflow/infra/console"
	"rxflow/infra/httpapi"
	"rxflow/infra/operator"
	"rxflow/infra/opstest"
	"rxflow/infra/postgres"
	"rxflow/infra/postgres/postgrestest"
)

// The stores plug into every place that uses an operations store or an
// access log.
var (
	_ operator.Store     = (*postgres.Operations)(nil)
	_ operator.Inbox     = (*postgres.Operations)(nil)
	_ httpapi.Operations = (*postgres.Operations)(nil)
	_ console.Operations = (*postgres.Operations)(nil)
	_ opstest.Operations = (*postgres.Operations)(nil)
	_ httpapi.AccessLog  = (*postgres.AccessLog)(nil)
	_ opstest.AccessLog  = (*postgres.AccessLog)(nil)
)

// open connects to url as another projector instance would: a pool of its
// own, closed when t ends.
func open(t testing.TB, url string) *postgres.DB {
	t.Helper()
	db, err := postgres.Open(context.Background(), url)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(db.Close)
	return db
}

// The operations store's suite on PostgreSQL: each instance has its own
// connection pool to the test's database.
func TestOperations(t *testing.T) {
	opstest.RunOperations(t, func(t *testing.T) func() opstest.Operations {
		url := postgrestest.URL(t)
		return func() opstest.Operations { return open(t, url).Operations() }
	})
}

// The access log's suite on PostgreSQL: each instance has its own
// connection pool to the test's database.
func TestAccessLog(t *testing.T) {
	opstest.RunAccessLog(t, func(t *testing.T) opstest.AccessStorage {
		url := postgrestest.URL(t)
		admin := open(t, url)
		return opstest.AccessStorage{
			Open: func() opstest.AccessLog {
				l := open(t, url).AccessLog()
				t.Cleanup(func() { _ = l.Close() })
				return l
			},
			Exec: func(stmt string) error {
				_, err := admin.Pool().Exec(context.Background(), stmt)
				return err
			},
		}
	})
}

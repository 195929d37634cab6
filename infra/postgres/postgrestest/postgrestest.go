// Package postgrestest gives tests a fresh PostgreSQL database of their own
// on the server named by RXFLOW_TEST_POSTGRES, a connection URL of a role
// that may create databases, e.g.
// postgres://rxflow:rxflow@127.0.0.1:5432/postgres?sslmode=disable.
// Without it, the tests that need PostgreSQL say they are skipped; CI
// always sets it (.ci/run).
package postgrestest

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"net/url"
	"os"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
)

// Env names the variable holding the server's connection URL.
const Env = "RXFLOW_TEST_POSTGRES"

// URL creates an empty database for t, dropped when t ends, and returns its
// connection URL; options are appended to its CREATE DATABASE (e.g.
// "TEMPLATE template0 LOCALE_PROVIDER icu ICU_LOCALE 'en-US'"). It skips t
// when Env is unset.
func URL(t testing.TB, options ...string) string {
	t.Helper()
	admin := os.Getenv(Env)
	if admin == "" {
		t.Skipf("%s is not set: this PostgreSQL test is skipped", Env)
	}
	u, err := url.Parse(admin)
	if err != nil {
		t.Fatalf("postgrestest: %s is not a URL: %v", Env, err)
	}
	name := "rxflow_test_" + rand.Text()[:16]
	ctx := context.Background()
	conn, err := pgx.Connect(ctx, admin)
	if err != nil {
		t.Fatalf("postgrestest: connect to %s: %v", Env, err)
	}
	defer conn.Close(ctx)
	create := "CREATE DATABASE " + pgx.Identifier{name}.Sanitize() + " " + strings.Join(options, " ")
	// The template may be in use for a moment (another test creating from
	// it, or connected to it): PostgreSQL then refuses with 55006.
	if err := retry(ctx, conn, create, "55006"); err != nil {
		t.Fatalf("postgrestest: create database: %v", err)
	}
	t.Cleanup(func() {
		conn, err := pgx.Connect(ctx, admin)
		if err != nil {
			t.Errorf("postgrestest: connect to drop %s: %v", name, err)
			return
		}
		defer conn.Close(ctx)
		// FORCE ends the test's own sessions; a server process of another
		// role in the database (an autovacuum worker) cannot be ended by a
		// role without pg_signal_backend (42501), but it ends soon.
		if err := retry(ctx, conn, "DROP DATABASE "+pgx.Identifier{name}.Sanitize()+" WITH (FORCE)", "42501", "55006"); err != nil {
			t.Errorf("postgrestest: drop database %s: %v", name, err)
		}
	})
	u.Path = "/" + name
	return fmt.Sprint(u)
}

// retry runs sql, again every 100 ms for up to 5 s while it fails with one
// of the SQLSTATE codes given.
func retry(ctx context.Context, conn *pgx.Conn, sql string, codes ...string) error {
	for attempt := 1; ; attempt++ {
		_, err := conn.Exec(ctx, sql)
		pgErr, ok := errors.AsType[*pgconn.PgError](err)
		if err == nil || !ok || !slices.Contains(codes, pgErr.Code) || attempt == 50 {
			return err
		}
		time.Sleep(100 * time.Millisecond)
	}
}

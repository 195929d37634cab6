package postgres

import (
	"context"
	"errors"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"rxflow/infra/postgres/postgrestest"
	"rxflow/projections"
)

func TestOpenMigratesOnceWhenInstancesStartTogether(t *testing.T) {
	url := postgrestest.URL(t)
	var wg sync.WaitGroup
	errs := make([]error, 4)
	for i := range errs {
		wg.Go(func() {
			db, err := Open(context.Background(), url)
			if err == nil {
				db.Close()
			}
			errs[i] = err
		})
	}
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Errorf("instance %d: %v", i, err)
		}
	}
	db, err := Open(context.Background(), url)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	var version int
	var dirty bool
	if err := db.pool.QueryRow(context.Background(), `SELECT version, dirty FROM schema_migrations`).Scan(&version, &dirty); err != nil {
		t.Fatal(err)
	}
	if version != int(SchemaVersion) || dirty {
		t.Errorf("schema version %d dirty %v, want %d clean", version, dirty, SchemaVersion)
	}
}

func TestOpenRefusesANewerSchema(t *testing.T) {
	url := postgrestest.URL(t)
	db, err := Open(context.Background(), url)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := db.pool.Exec(context.Background(), `UPDATE schema_migrations SET version = $1`, int(SchemaVersion)+1); err != nil {
		t.Fatal(err)
	}
	db.Close()
	if db, err := Open(context.Background(), url); err == nil {
		db.Close()
		t.Fatal("a schema newer than the code's was accepted")
	}
}

func TestConnectionStringErrorsHideThePassword(t *testing.T) {
	_, err := Open(context.Background(), "postgres://u:s3cret@127.0.0.1:5432/db?sslmode=bogus")
	if err == nil || strings.Contains(err.Error(), "s3cret") {
		t.Fatalf("err = %v, want an error without the password", err)
	}
}

// A server that accepts the connection and never answers fails Open after
// DefaultConnectTimeout (the URL sets none), migration included.
func TestOpenGivesUpOnAServerThatNeverAnswers(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		for {
			conn, err := ln.Accept()
			if err != nil {
				return
			}
			defer conn.Close() // held open, unanswered, until the test ends
		}
	}()
	done := make(chan error, 1)
	go func() {
		db, err := Open(context.Background(), "postgres://u:p@"+ln.Addr().String()+"/db?sslmode=disable")
		if err == nil {
			db.Close()
		}
		done <- err
	}()
	select {
	case err := <-done:
		if err == nil || !strings.Contains(err.Error(), "timeout") {
			t.Fatalf("Open = %v, want a timeout error", err)
		}
	case <-time.After(DefaultConnectTimeout + 20*time.Second):
		t.Fatal("Open still waits on a server that never answers")
	}
}

func TestFenceRefusesAnOlderToken(t *testing.T) {
	db, err := Open(context.Background(), postgrestest.URL(t))
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	ctx := context.Background()
	if _, err := db.pool.Exec(ctx, `INSERT INTO segment_leases (segment, owner, token) VALUES (0, 'b', 2)`); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		lease projections.Lease
		lost  bool
	}{
		{projections.Lease{Segment: 0, Count: 2, Token: 2}, false},
		{projections.Lease{Segment: 0, Count: 2, Token: 1}, true},
		{projections.Lease{Segment: 1, Count: 2, Token: 1}, true}, // no such segment row
		{projections.Whole, false},
	} {
		tx, err := db.pool.Begin(ctx)
		if err != nil {
			t.Fatal(err)
		}
		err = fence(ctx, tx, tc.lease)
		tx.Rollback(ctx)
		if lost := errors.Is(err, projections.ErrLeaseLost); lost != tc.lost || (err != nil && !lost) {
			t.Errorf("fence(%+v) = %v, want lost %v", tc.lease, err, tc.lost)
		}
	}
}

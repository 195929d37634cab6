package readmodel_test

import (
	"database/sql"
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"testing"

	"rxflow/domain"
	"rxflow/infra/readmodel"
	"rxflow/projections"
)

func TestBulkLoadAndSwapEqualApply(t *testing.T) {
	dir := t.TempDir()
	d := newDataset(t, 151)
	checkpoint := d.recs[len(d.recs)-1].Position + 5 // a later filtered-out checkpoint

	applied := openStore(t, filepath.Join(dir, "applied.db"))
	applyAll(t, applied, d.recs)
	if err := applied.SaveCheckpoint(t.Context(), checkpoint); err != nil {
		t.Fatal(err)
	}
	wantRows, _ := listAll(t, applied, projections.Filter{Limit: 100})

	// The live store lags behind with stale rows.
	livePath := filepath.Join(dir, "live.db")
	live := openStore(t, livePath)
	applyAll(t, live, d.recs[:40])
	live.Close()

	rebuilt := openStore(t, filepath.Join(dir, "rebuilt.db"))
	if err := rebuilt.BulkLoad(t.Context(), foldRows(d.recs), nil, checkpoint); err != nil {
		t.Fatal(err)
	}
	if err := rebuilt.BulkLoad(t.Context(), nil, nil, checkpoint+1); !errors.Is(err, readmodel.ErrNotEmpty) {
		t.Fatalf("second BulkLoad: %v, want ErrNotEmpty", err)
	}
	rebuiltPath := rebuilt.Path()
	rebuilt.Close()

	if err := readmodel.Swap(livePath, rebuiltPath); err != nil {
		t.Fatal(err)
	}
	for _, p := range []string{rebuiltPath, rebuiltPath + "-wal", rebuiltPath + "-shm", livePath + "-wal", livePath + "-shm"} {
		if _, err := os.Stat(p); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("%s left behind: %v", p, err)
		}
	}

	if got, want := schema(t, livePath), schema(t, applied.Path()); !reflect.DeepEqual(got, want) {
		t.Fatalf("swapped schema differs:\n got %v\nwant %v", got, want)
	}
	live = openStore(t, livePath)
	gotRows, _ := listAll(t, live, projections.Filter{Limit: 100})
	if !reflect.DeepEqual(gotRows, wantRows) {
		t.Fatalf("swapped store has %d rows differing from the %d applied ones", len(gotRows), len(wantRows))
	}
	if cp, err := live.Checkpoint(t.Context()); err != nil || cp != checkpoint {
		t.Fatalf("swapped checkpoint = %d, %v; want %d", cp, err, checkpoint)
	}
	// It carries on as a live store.
	urn, evs := history(t, 999, domain.StatusRequested)
	if err := live.Apply(t.Context(), eventAt(urn, evs[0], checkpoint+1)); err != nil {
		t.Fatal(err)
	}
	if _, err := live.Get(t.Context(), urn); err != nil {
		t.Fatal(err)
	}
}

// schema lists the tables and indexes of the database at path.
func schema(t *testing.T, path string) []string {
	t.Helper()
	db, err := sql.Open("sqlite", path)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	rows, err := db.Query("SELECT type || ' ' || name || ': ' || coalesce(sql, '') FROM sqlite_master ORDER BY name")
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	var out []string
	for rows.Next() {
		var s string
		if err := rows.Scan(&s); err != nil {
			t.Fatal(err)
		}
		out = append(out, s)
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	return out
}

func TestBulkLoadRefusesNonEmptyStore(t *testing.T) {
	s := openStore(t, ":memory:")
	d := newDataset(t, 2)
	applyAll(t, s, d.recs[:1])
	if err := s.BulkLoad(t.Context(), foldRows(d.recs), nil, 1e6); !errors.Is(err, readmodel.ErrNotEmpty) {
		t.Fatalf("err = %v, want ErrNotEmpty", err)
	}

	s = openStore(t, ":memory:")
	if err := s.SaveCheckpoint(t.Context(), 5); err != nil {
		t.Fatal(err)
	}
	if err := s.BulkLoad(t.Context(), nil, nil, 10); !errors.Is(err, readmodel.ErrNotEmpty) {
		t.Fatalf("err = %v, want ErrNotEmpty", err)
	}
}

func TestBulkLoadIsAllOrNothing(t *testing.T) {
	s := openStore(t, ":memory:")
	rows := foldRows(newDataset(t, 5).recs)
	rows = append(rows, rows[0]) // a duplicate urn fails the load
	if err := s.BulkLoad(t.Context(), rows, nil, 1000); err == nil {
		t.Fatal("BulkLoad with a duplicate urn succeeded")
	}
	if got, _ := listAll(t, s, projections.Filter{}); len(got) != 0 {
		t.Fatalf("failed load left %d rows", len(got))
	}
	if cp, _ := s.Checkpoint(t.Context()); cp != 0 {
		t.Fatalf("failed load left checkpoint %d", cp)
	}
	rows[0].URN = ""
	if err := s.BulkLoad(t.Context(), rows[:1], nil, 1000); err == nil {
		t.Fatal("BulkLoad of a row without a URN succeeded")
	}
}

func TestSwapRefusesOpenOrForeignDatabases(t *testing.T) {
	dir := t.TempDir()
	livePath, rebuiltPath := filepath.Join(dir, "live.db"), filepath.Join(dir, "rebuilt.db")
	live := openStore(t, livePath)
	d := newDataset(t, 3)
	applyAll(t, live, d.recs)
	rebuilt := openStore(t, rebuiltPath)
	if err := rebuilt.BulkLoad(t.Context(), foldRows(d.recs[:2]), nil, d.recs[1].Position); err != nil {
		t.Fatal(err)
	}
	rebuilt.Close()

	if err := readmodel.Swap(livePath, rebuiltPath); err == nil {
		t.Fatal("Swap replaced a live database that is still open")
	}
	if rows, _ := listAll(t, live, projections.Filter{}); len(rows) != 3 {
		t.Fatalf("live store has %d rows after the refused swap, want 3", len(rows))
	}
	live.Close()

	if err := readmodel.Swap(livePath, filepath.Join(dir, "missing.db")); err == nil {
		t.Fatal("Swap accepted a missing rebuilt database")
	}
	foreign := filepath.Join(dir, "foreign.db")
	if err := os.WriteFile(foreign, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := readmodel.Swap(livePath, foreign); err == nil {
		t.Fatal("Swap accepted a database without the read model schema")
	}
	s := openStore(t, livePath)
	if rows, _ := listAll(t, s, projections.Filter{}); len(rows) != 3 {
		t.Fatalf("live store has %d rows after refused swaps, want 3", len(rows))
	}
}

package readmodel

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"io/fs"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"rxflow/projections"
)

// bulkBatch is how many rows one INSERT of BulkLoad carries: fewer, larger
// statements cut the per-statement cost (32 rows of 28 columns stay far
// below SQLite's 32766 parameters).
const bulkBatch = 32

// BulkLoad writes rows, the deadlines they wait for and the checkpoint
// into an empty store in one transaction: the rebuild folds $all in memory
// (projections.Replay), then loads the result into a fresh database and
// Swaps it in. It fails with ErrNotEmpty if the store has rows or a
// checkpoint. Every row needs a URN, at most once.
func (s *Store) BulkLoad(ctx context.Context, rows []projections.Row, waiting []projections.Waiting, checkpoint uint64) error {
	if checkpoint > math.MaxInt64 {
		return fmt.Errorf("readmodel: bulk load: checkpoint %d out of range", checkpoint)
	}
	// Inserting in key order appends to the primary key's B-tree.
	type key struct {
		urn string
		row int
	}
	order := make([]key, len(rows))
	for i := range rows {
		if rows[i].URN == "" {
			return fmt.Errorf("readmodel: bulk load: row %d has no URN", i)
		}
		order[i] = key{rows[i].URN, i}
	}
	slices.SortFunc(order, func(a, b key) int { return strings.Compare(a.urn, b.urn) })

	s.writeMu.Lock()
	defer s.writeMu.Unlock()
	err := s.write(ctx, func(tx *sql.Tx) error {
		var hasRows bool
		if err := tx.QueryRowContext(ctx, "SELECT EXISTS (SELECT 1 FROM prescriptions)").Scan(&hasRows); err != nil {
			return err
		}
		cp, err := checkpointIn(ctx, tx.StmtContext(ctx, s.getCheckpoint))
		if err != nil {
			return err
		}
		if hasRows || cp > 0 {
			return ErrNotEmpty
		}
		// Building the secondary indexes once, after the rows are in, is
		// much cheaper than updating them row by row.
		indexes, err := dropIndexes(ctx, tx)
		if err != nil {
			return err
		}
		values := ", (?" + strings.Repeat(", ?", len(columnNames)-1) + ")"
		many, err := tx.PrepareContext(ctx, insertSQL+strings.Repeat(values, bulkBatch-1))
		if err != nil {
			return err
		}
		defer many.Close()
		one, err := tx.PrepareContext(ctx, insertSQL)
		if err != nil {
			return err
		}
		defer one.Close()
		args := make([]any, 0, bulkBatch*len(columnNames))
		for len(order) > 0 {
			stmt, n := many, bulkBatch
			if len(order) < bulkBatch {
				stmt, n = one, 1
			}
			args = args[:0]
			for _, k := range order[:n] {
				if args, err = appendRowArgs(args, &rows[k.row]); err != nil {
					return err
				}
			}
			// No ctx per statement: it would cost the driver a goroutine
			// each, and the transaction already rolls back when ctx ends.
			if _, err := stmt.Exec(args...); err != nil {
				return err
			}
			order = order[n:]
		}
		for _, ddl := range indexes {
			if _, err := tx.ExecContext(ctx, ddl); err != nil {
				return err
			}
		}
		if err := insertWaiting(ctx, tx, waiting); err != nil {
			return err
		}
		_, err = tx.StmtContext(ctx, s.setCheckpoint).ExecContext(ctx, Projector, int64(checkpoint))
		return err
	})
	if err != nil {
		return fmt.Errorf("readmodel: bulk load: %w", err)
	}
	s.advance(checkpoint)
	return nil
}

// dropIndexes drops the secondary indexes of prescriptions and returns the
// statements that recreate them. sqlite: reads sqlite_master.
func dropIndexes(ctx context.Context, tx *sql.Tx) ([]string, error) {
	rows, err := tx.QueryContext(ctx, "SELECT name, sql FROM sqlite_master WHERE type = 'index' AND tbl_name = 'prescriptions' AND sql IS NOT NULL")
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var names, ddl []string
	for rows.Next() {
		var name, create string
		if err := rows.Scan(&name, &create); err != nil {
			return nil, err
		}
		names, ddl = append(names, name), append(ddl, create)
	}
	if err := rows.Err(); err != nil {
		return nil, err
	}
	for _, name := range names {
		if _, err := tx.ExecContext(ctx, `DROP INDEX "`+name+`"`); err != nil {
			return nil, err
		}
	}
	return ddl, nil
}

// Swap atomically replaces the read model at livePath (if any) with the
// one at rebuiltPath, which it consumes. Both must be closed: if another
// connection still holds either, Swap fails and changes nothing live.
// Each database's WAL is first folded into its main file and the database
// left in rollback-journal mode, so no -wal or -shm side file outlives it
// (a stale -wal next to the new file would corrupt it); the next Open
// turns WAL back on.
func Swap(livePath, rebuiltPath string) error {
	if err := settle(rebuiltPath, true); err != nil {
		return fmt.Errorf("readmodel: swap: rebuilt %q: %w", rebuiltPath, err)
	}
	if err := settle(livePath, false); err != nil {
		return fmt.Errorf("readmodel: swap: live %q: %w", livePath, err)
	}
	// The rebuilt file must be on disk before the rename makes it live.
	if err := syncPath(rebuiltPath); err != nil {
		return fmt.Errorf("readmodel: swap: %w", err)
	}
	if err := os.Rename(rebuiltPath, livePath); err != nil {
		return fmt.Errorf("readmodel: swap: %w", err)
	}
	if err := syncPath(filepath.Dir(livePath)); err != nil {
		return fmt.Errorf("readmodel: swap: %w", err)
	}
	return nil
}

// settle folds path's WAL into the main file and switches it to the
// rollback journal, leaving no side files. A missing file is an error only
// if mustExist; a rebuilt database must also carry this code's schema.
func settle(path string, mustExist bool) error {
	if _, err := os.Stat(path); err != nil {
		if errors.Is(err, fs.ErrNotExist) && !mustExist {
			return nil
		}
		return err
	}
	// No busy_timeout: another connection holding the file makes this fail
	// at once instead of waiting.
	db, err := sql.Open("sqlite", path)
	if err != nil {
		return err
	}
	defer db.Close()
	db.SetMaxOpenConns(1)
	if mustExist {
		var v int
		if err := db.QueryRow("SELECT version FROM schema_version").Scan(&v); err != nil {
			return fmt.Errorf("not a read model: %w", err)
		}
		if v != len(migrations) {
			return fmt.Errorf("schema version %d, want %d", v, len(migrations))
		}
	}
	// sqlite: leaving WAL mode checkpoints the WAL and deletes it; it needs
	// the database to itself.
	var mode string
	if err := db.QueryRow("PRAGMA journal_mode=DELETE").Scan(&mode); err != nil {
		return fmt.Errorf("leave WAL mode (still open?): %w", err)
	}
	if mode != "delete" {
		return fmt.Errorf("journal mode stays %q (still open?)", mode)
	}
	if err := db.Close(); err != nil {
		return err
	}
	for _, side := range []string{path + "-wal", path + "-shm"} {
		if _, err := os.Stat(side); !errors.Is(err, fs.ErrNotExist) {
			return fmt.Errorf("%s remains (still open?)", side)
		}
	}
	return nil
}

// syncPath flushes a file, or a directory's entries, to disk.
func syncPath(path string) error {
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	return f.Sync()
}

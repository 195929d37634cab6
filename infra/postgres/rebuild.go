package postgres

import (
	"context"
	"fmt"
	"math"
	"strings"

	"github.com/jackc/pgx/v5"

	"rxflow/infra/readmodel"
	"rxflow/projections"
)

// rebuildSchema holds the tables a rebuild loads before they are switched in.
const rebuildSchema = "rxflow_rebuild"

// afterRebuildLoad, if set, runs between the load and the switch (tests).
var afterRebuildLoad func()

// rebuiltTables are the read model's tables, in switching order.
var rebuiltTables = []string{"prescriptions", "deadlines"}

// RebuildReadModel replaces the read model with rows and the deadlines
// they wait for, as folded from $all up to checkpoint (projections.Replay),
// while the query API keeps serving the old tables:
//
//  1. fresh, index-less copies of the tables are made in the schema
//     rxflow_rebuild and loaded with COPY; then their keys and indexes are
//     built as the live tables' are;
//  2. one transaction switches them in: it frees and bumps the token of every
//     segment lease, so that running projector instances are fenced off
//     (their next write is projections.ErrLeaseLost and they claim their
//     segments again), drops the old tables, moves the new ones in, and
//     sets the read-model checkpoint of each of the segments segments to
//     checkpoint, where the instances resume.
//
// Readers wait only for the switch's commit. The lease bump fences every
// projector of a segment, not only the read model: they all resume from
// their own checkpoints, which is harmless. segments is the database's
// segment count (≥ 1); with lease rows present it must be their number.
func (db *DB) RebuildReadModel(ctx context.Context, rows []projections.Row, waiting []projections.Waiting, checkpoint uint64, segments int) error {
	if checkpoint > math.MaxInt64 || segments < 1 {
		return fmt.Errorf("postgres: rebuild: checkpoint %d or segment count %d out of range", checkpoint, segments)
	}
	if err := db.loadRebuild(ctx, rows, waiting); err != nil {
		return fmt.Errorf("postgres: rebuild: load: %w", err)
	}
	if afterRebuildLoad != nil {
		afterRebuildLoad()
	}
	if err := db.switchRebuild(ctx, checkpoint, segments); err != nil {
		return fmt.Errorf("postgres: rebuild: switch: %w", err)
	}
	db.moved()
	return nil
}

// loadRebuild makes and fills the rebuild schema's tables.
func (db *DB) loadRebuild(ctx context.Context, rows []projections.Row, waiting []projections.Waiting) error {
	conn, err := db.pool.Acquire(ctx)
	if err != nil {
		return err
	}
	defer conn.Release()
	schema := pgx.Identifier{rebuildSchema}.Sanitize()
	if _, err := conn.Exec(ctx, "DROP SCHEMA IF EXISTS "+schema+" CASCADE; CREATE SCHEMA "+schema); err != nil {
		return err
	}
	for _, t := range rebuiltTables {
		// LIKE copies the columns, their types, collations, NOT NULLs and
		// defaults: the keys and indexes come after the rows.
		if _, err := conn.Exec(ctx, "CREATE TABLE "+schema+"."+t+" (LIKE "+t+" INCLUDING DEFAULTS)"); err != nil {
			return err
		}
	}
	if _, err := conn.CopyFrom(ctx, pgx.Identifier{rebuildSchema, "prescriptions"}, readmodel.ColumnNames(),
		pgx.CopyFromSlice(len(rows), func(i int) ([]any, error) {
			if rows[i].URN == "" {
				return nil, fmt.Errorf("row %d has no URN", i)
			}
			return readmodel.RowArgs(nil, &rows[i])
		})); err != nil {
		return err
	}
	if _, err := conn.CopyFrom(ctx, pgx.Identifier{rebuildSchema, "deadlines"}, []string{"urn", "deadline", "since", "started_at"},
		pgx.CopyFromSlice(len(waiting), func(i int) ([]any, error) {
			w := waiting[i]
			return []any{w.URN, w.Deadline, int64(w.Since), w.StartedAt.UnixNano()}, nil
		})); err != nil {
		return err
	}
	for _, t := range rebuiltTables {
		ddl, err := indexesLike(ctx, conn.Conn(), t)
		if err != nil {
			return err
		}
		for _, stmt := range ddl {
			if _, err := conn.Exec(ctx, stmt); err != nil {
				return fmt.Errorf("%s: %w", stmt, err)
			}
		}
		if _, err := conn.Exec(ctx, "ANALYZE "+schema+"."+t); err != nil {
			return err
		}
	}
	return nil
}

// indexesLike returns the statements that give the rebuild schema's table
// the live table's primary key and indexes, under the same names (an
// index lives in its table's schema, so the names do not clash).
func indexesLike(ctx context.Context, conn *pgx.Conn, table string) ([]string, error) {
	rows, err := conn.Query(ctx, `SELECT c.relname, pg_get_indexdef(i.indexrelid), COALESCE(pg_get_constraintdef(k.oid), '')
		FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid
		LEFT JOIN pg_constraint k ON k.conindid = i.indexrelid AND k.contype = 'p'
		WHERE i.indrelid = $1::regclass ORDER BY c.relname`, table)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	target := pgx.Identifier{rebuildSchema, table}.Sanitize()
	var ddl []string
	for rows.Next() {
		var name, def, constraint string
		if err := rows.Scan(&name, &def, &constraint); err != nil {
			return nil, err
		}
		id := pgx.Identifier{name}.Sanitize()
		if constraint != "" {
			ddl = append(ddl, "ALTER TABLE "+target+" ADD CONSTRAINT "+id+" "+constraint)
			continue
		}
		// def is "CREATE [UNIQUE] INDEX name ON schema.table USING ...".
		using := strings.Index(def, " USING ")
		if using < 0 {
			return nil, fmt.Errorf("index %s: unexpected definition %q", name, def)
		}
		create := "CREATE INDEX "
		if strings.HasPrefix(def, "CREATE UNIQUE INDEX ") {
			create = "CREATE UNIQUE INDEX "
		}
		ddl = append(ddl, create+id+" ON "+target+def[using:])
	}
	return ddl, rows.Err()
}

// switchRebuild swaps the loaded tables in and moves the checkpoints, in
// one transaction.
func (db *DB) switchRebuild(ctx context.Context, checkpoint uint64, segments int) error {
	return pgx.BeginFunc(ctx, db.pool, func(tx pgx.Tx) error {
		// First the leases: this waits for the fenced writes in flight (they
		// hold their lease row shared), and the writes that follow wait for
		// this commit, then find their token old. The leases are freed too,
		// so the instances claim the segments again at their next round.
		// FOR UPDATE waits for the writes under way (each holds its lease row
		// FOR KEY SHARE), so none lands after the switch.
		if _, err := tx.Exec(ctx, "SELECT segment FROM segment_leases ORDER BY segment FOR UPDATE"); err != nil {
			return err
		}
		tag, err := tx.Exec(ctx, "UPDATE segment_leases SET token = token + 1, owner = '', expires_at = '-infinity'")
		if err != nil {
			return err
		}
		if n := tag.RowsAffected(); n != 0 && n != int64(segments) {
			return fmt.Errorf("the database has %d segment leases, not %d", n, segments)
		}
		var current string
		if err := tx.QueryRow(ctx, "SELECT current_schema()").Scan(&current); err != nil {
			return err
		}
		for _, t := range rebuiltTables {
			if _, err := tx.Exec(ctx, "DROP TABLE "+t); err != nil {
				return err
			}
			if _, err := tx.Exec(ctx, "ALTER TABLE "+pgx.Identifier{rebuildSchema, t}.Sanitize()+" SET SCHEMA "+pgx.Identifier{current}.Sanitize()); err != nil {
				return err
			}
		}
		if _, err := tx.Exec(ctx, "DROP SCHEMA "+pgx.Identifier{rebuildSchema}.Sanitize()); err != nil {
			return err
		}
		if _, err := tx.Exec(ctx, "DELETE FROM checkpoints WHERE projector = $1", readmodel.Projector); err != nil {
			return err
		}
		_, err = tx.Exec(ctx, `INSERT INTO checkpoints (projector, segment, position) SELECT $1, s, $2 FROM generate_series(0, $3 - 1) s`,
			readmodel.Projector, int64(checkpoint), segments)
		return err
	})
}

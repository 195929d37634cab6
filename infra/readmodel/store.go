// Package readmodel is the query side's store: one row per prescription,
// folded from the prescription events with domain.Evolve, in SQLite
// (modernc.org/sqlite). It implements projections.ReadModel, which the
// read-model projection writes through, and httpapi.ReadModel, which the
// query API reads through. AccessLog, the query API's access audit log,
// lives here too, in a database file of its own (AccessLogFile).
//
// The SQL is kept portable (plain TEXT/BIGINT columns, ON CONFLICT upserts)
// so a PostgreSQL store can follow; sqlite-specific bits are marked
// "sqlite:". Placeholders are "?" and would become $n there.
package readmodel

import (
	"context"
	"database/sql"
	"encoding/base64"
	"errors"
	"fmt"
	"math"
	"slices"
	"strings"
	"sync"
	"time"

	_ "modernc.org/sqlite" // registers the "sqlite" driver

	"rxflow/domain"
	"rxflow/events"
	"rxflow/projections"
)

// Projector is this store's name in the checkpoint table.
const Projector = "readmodel"

// List limits.
const (
	DefaultLimit = 50
	MaxLimit     = 500
)

var (
	// ErrInvalidFilter is returned by List for a limit outside 0..MaxLimit,
	// a malformed cursor or an unknown status.
	ErrInvalidFilter = errors.New("readmodel: invalid filter")
	// ErrNotEmpty is returned by BulkLoad into a store that has rows or a
	// checkpoint.
	ErrNotEmpty = errors.New("readmodel: store is not empty")
	// ErrClosed is returned by WaitFor once the store is closed.
	ErrClosed = errors.New("readmodel: store closed")
)

// pollInterval is how often WaitFor re-reads the checkpoint from the
// database, to see writes by another process; writes through this Store
// wake it at once.
var pollInterval = 200 * time.Millisecond

// Store is the read model in one SQLite database. It is safe for
// concurrent use; writes are serialized.
type Store struct {
	db   *sql.DB
	path string // "" in memory

	getRow, upsert, getCheckpoint, setCheckpoint *sql.Stmt

	writeMu sync.Mutex // one writer at a time: SQLite has a single write lock anyway

	mu     sync.Mutex
	pos    uint64        // highest checkpoint known in this process
	moved  chan struct{} // closed and replaced when pos advances
	closed chan struct{}
}

var (
	_ projections.ReadModel      = (*Store)(nil)
	_ projections.ReadModelBatch = (*Store)(nil)
	_ projections.DueDeadlines   = (*Store)(nil)
)

// Open opens (creating if needed) the read model at path; "" or ":memory:"
// is a private in-memory database. A file database runs in WAL mode with
// synchronous=FULL, so an applied event and its checkpoint survive a crash.
func Open(path string) (*Store, error) {
	db, path, err := openDB(path)
	if err != nil {
		return nil, fmt.Errorf("readmodel: open %q: %w", path, err)
	}
	s := &Store{db: db, path: path, moved: make(chan struct{}), closed: make(chan struct{})}
	if err := s.init(context.Background()); err != nil {
		db.Close()
		return nil, fmt.Errorf("readmodel: open %q: %w", path, err)
	}
	return s, nil
}

// openDB opens the SQLite database at path; "" or ":memory:" is a private
// in-memory database, whose path is then "".
func openDB(path string) (*sql.DB, string, error) {
	inMemory := path == "" || path == ":memory:"
	// sqlite: WAL lets readers run beside the writer; synchronous=FULL syncs
	// the WAL at every commit; busy_timeout waits out another process's
	// write lock; _txlock=immediate takes the write lock at BEGIN, so a
	// read-then-write transaction cannot fail midway on a lock upgrade.
	dsn := path + "?_pragma=busy_timeout(5000)&_pragma=journal_mode(WAL)&_pragma=synchronous(FULL)&_txlock=immediate"
	if inMemory {
		path, dsn = "", ":memory:"
	}
	db, err := sql.Open("sqlite", dsn)
	if err != nil {
		return nil, path, err
	}
	if inMemory {
		// sqlite: every connection to :memory: is a database of its own.
		db.SetMaxOpenConns(1)
	}
	return db, path, nil
}

func (s *Store) init(ctx context.Context) error {
	if err := migrate(ctx, s.db, migrations); err != nil {
		return err
	}
	for _, p := range []struct {
		stmt **sql.Stmt
		sql  string
	}{
		{&s.getRow, selectSQL + " WHERE urn = ?"},
		{&s.upsert, upsertSQL},
		{&s.getCheckpoint, "SELECT position FROM checkpoint WHERE projector = ?"},
		// Only ever forward.
		{&s.setCheckpoint, `INSERT INTO checkpoint (projector, position) VALUES (?, ?)
			ON CONFLICT (projector) DO UPDATE SET position = excluded.position
			WHERE excluded.position > checkpoint.position`},
	} {
		stmt, err := s.db.PrepareContext(ctx, p.sql)
		if err != nil {
			return err
		}
		*p.stmt = stmt
	}
	pos, err := s.Checkpoint(ctx)
	s.pos = pos
	return err
}

// Path is the database file; "" for an in-memory store.
func (s *Store) Path() string { return s.path }

// Close closes the database and wakes WaitFor callers with ErrClosed.
func (s *Store) Close() error {
	s.mu.Lock()
	select {
	case <-s.closed:
	default:
		close(s.closed)
	}
	s.mu.Unlock()
	return s.db.Close() // also closes the prepared statements
}

// Apply folds rec into its prescription's row and moves the checkpoint to
// rec.Position in one transaction. An event at or before the checkpoint is
// ignored, so a redelivery is applied exactly once. The row is keyed by
// rec.URN (the stream's prescription), which must be set, as must
// rec.Event; a Position of 0 is never applied.
func (s *Store) Apply(ctx context.Context, rec events.Recorded) error {
	if err := s.apply(ctx, []events.Recorded{rec}, false); err != nil {
		return fmt.Errorf("readmodel: apply %s at position %d: %w", rec.URN, rec.Position, err)
	}
	return nil
}

// ApplyBatch implements projections.ReadModelBatch: Apply of each of recs
// (in $all order), all in one transaction with the checkpoint at the last
// one; a refusal (domain.Refused) changes no row and only moves the
// checkpoint.
func (s *Store) ApplyBatch(ctx context.Context, recs []events.Recorded) error {
	if len(recs) == 0 {
		return nil
	}
	if err := s.apply(ctx, recs, true); err != nil {
		return fmt.Errorf("readmodel: apply %d events from position %d: %w", len(recs), recs[0].Position, err)
	}
	return nil
}

// apply applies recs after the checkpoint in one transaction; refusals
// only move the checkpoint when skipRefusals.
func (s *Store) apply(ctx context.Context, recs []events.Recorded, skipRefusals bool) error {
	for _, rec := range recs {
		if rec.URN == "" || rec.Event == nil {
			return fmt.Errorf("event at position %d lacks a URN or a decoded event", rec.Position)
		}
		if rec.Position > math.MaxInt64 || rec.Revision > math.MaxInt64 {
			return fmt.Errorf("event at position %d: position or revision out of range", rec.Position)
		}
	}
	s.writeMu.Lock()
	defer s.writeMu.Unlock()
	var last uint64
	err := s.write(ctx, func(tx *sql.Tx) error {
		cp, err := checkpointIn(ctx, tx.StmtContext(ctx, s.getCheckpoint))
		if err != nil {
			return err
		}
		// Each row is read once and written once per batch.
		getRow := tx.StmtContext(ctx, s.getRow)
		rows := map[string]*projections.Row{}
		var order []string
		for _, rec := range recs {
			if rec.Position <= max(cp, last) {
				continue
			}
			last = rec.Position
			if _, refused := rec.Event.(domain.Refused); refused && skipRefusals {
				continue
			}
			row, ok := rows[rec.URN]
			if !ok {
				r, err := scanRow(getRow.QueryRowContext(ctx, rec.URN))
				if err != nil && !errors.Is(err, sql.ErrNoRows) {
					return err
				}
				row = &r
				rows[rec.URN] = row
				order = append(order, rec.URN)
			}
			before := row.Status
			projections.FoldRow(row, rec)
			if err := applyDeadlines(ctx, tx, projections.DeadlinesAfter(domain.Prescriptions, rec, before, row.Status)); err != nil {
				return err
			}
		}
		upsert := tx.StmtContext(ctx, s.upsert)
		for _, urn := range order {
			args, err := appendRowArgs(nil, rows[urn])
			if err != nil {
				return err
			}
			if _, err := upsert.ExecContext(ctx, args...); err != nil {
				return err
			}
		}
		if last == 0 {
			return nil
		}
		_, err = tx.StmtContext(ctx, s.setCheckpoint).ExecContext(ctx, Projector, int64(last))
		return err
	})
	if err != nil {
		return err
	}
	if last > 0 {
		s.advance(last)
	}
	return nil
}

// applyDeadlines writes what one event does to its prescription's waiting
// deadlines: the one that passed ends; a status change cancels every
// waiting one and starts those of the new state.
func applyDeadlines(ctx context.Context, tx *sql.Tx, c projections.DeadlineChange) error {
	if c.Passed != nil {
		if _, err := tx.ExecContext(ctx, "DELETE FROM deadlines WHERE urn = ? AND deadline = ? AND since = ?",
			c.URN, c.Passed.Deadline, c.Passed.Since); err != nil {
			return err
		}
	}
	if c.CancelAll {
		if _, err := tx.ExecContext(ctx, "DELETE FROM deadlines WHERE urn = ?", c.URN); err != nil {
			return err
		}
	}
	return insertWaiting(ctx, tx, c.Start)
}

// insertWaiting inserts ws, up to waitingBatch rows per statement.
func insertWaiting(ctx context.Context, tx *sql.Tx, ws []projections.Waiting) error {
	for len(ws) > 0 {
		n := min(len(ws), waitingBatch)
		args := make([]any, 0, 4*n)
		for _, w := range ws[:n] {
			args = append(args, w.URN, w.Deadline, w.Since, w.StartedAt.UnixNano())
		}
		q := "INSERT INTO deadlines (urn, deadline, since, started_at) VALUES (?, ?, ?, ?)" + strings.Repeat(", (?, ?, ?, ?)", n-1)
		if _, err := tx.ExecContext(ctx, q, args...); err != nil {
			return err
		}
		ws = ws[n:]
	}
	return nil
}

// waitingBatch is how many deadlines one INSERT of insertWaiting carries.
const waitingBatch = 256

// Due implements projections.DueDeadlines: the deadlines named deadline
// that started at or before cutoff, oldest first, at most limit. It reads
// one range of the index deadlines_due, so only the due rows.
func (s *Store) Due(ctx context.Context, deadline string, cutoff time.Time, limit int) ([]projections.Waiting, error) {
	rows, err := s.db.QueryContext(ctx, dueSQL, deadline, cutoff.UnixNano(), limit)
	if err != nil {
		return nil, fmt.Errorf("readmodel: due %s: %w", deadline, err)
	}
	defer rows.Close()
	out, err := CollectWaiting(rows, deadline)
	if err != nil {
		return nil, fmt.Errorf("readmodel: due %s: %w", deadline, err)
	}
	return out, nil
}

// dueSQL finds due deadlines: a range of the index deadlines_due.
const dueSQL = "SELECT urn, since, started_at FROM deadlines WHERE deadline = ? AND started_at <= ? ORDER BY started_at LIMIT ?"

// SaveCheckpoint moves the checkpoint to position if that is further.
func (s *Store) SaveCheckpoint(ctx context.Context, position uint64) error {
	if position > math.MaxInt64 {
		return fmt.Errorf("readmodel: checkpoint %d out of range", position)
	}
	s.writeMu.Lock()
	defer s.writeMu.Unlock()
	if _, err := s.setCheckpoint.ExecContext(ctx, Projector, int64(position)); err != nil {
		return fmt.Errorf("readmodel: save checkpoint: %w", err)
	}
	s.advance(position)
	return nil
}

// Checkpoint is the $all position of the last event applied; 0 if none.
func (s *Store) Checkpoint(ctx context.Context) (uint64, error) {
	pos, err := checkpointIn(ctx, s.getCheckpoint)
	if err != nil {
		return 0, fmt.Errorf("readmodel: checkpoint: %w", err)
	}
	return pos, nil
}

func checkpointIn(ctx context.Context, stmt *sql.Stmt) (uint64, error) {
	var pos int64
	err := stmt.QueryRowContext(ctx, Projector).Scan(&pos)
	if errors.Is(err, sql.ErrNoRows) {
		return 0, nil
	}
	return uint64(pos), err
}

// WaitFor blocks until the checkpoint reaches position or ctx ends (then it
// returns ctx's error). Apply and SaveCheckpoint on this Store wake it at
// once; writes by another process are seen within pollInterval.
func (s *Store) WaitFor(ctx context.Context, position uint64) error {
	var poll <-chan time.Time
	for {
		s.mu.Lock()
		pos, moved := s.pos, s.moved
		s.mu.Unlock()
		if pos >= position {
			return nil
		}
		if poll == nil {
			t := time.NewTicker(pollInterval)
			defer t.Stop()
			poll = t.C
		}
		select {
		case <-moved:
		case <-ctx.Done():
			return ctx.Err()
		case <-s.closed:
			return ErrClosed
		case <-poll:
			cp, err := s.Checkpoint(ctx)
			if err != nil {
				select {
				case <-s.closed:
					return ErrClosed
				default:
					return err
				}
			}
			s.advance(cp)
		}
	}
}

// advance records a checkpoint reached and wakes the waiters.
func (s *Store) advance(pos uint64) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if pos > s.pos {
		s.pos = pos
		close(s.moved)
		s.moved = make(chan struct{})
	}
}

// Get returns urn's row, or an error matching projections.ErrNotFound.
func (s *Store) Get(ctx context.Context, urn string) (projections.Row, error) {
	row, err := scanRow(s.getRow.QueryRowContext(ctx, urn))
	if errors.Is(err, sql.ErrNoRows) {
		return projections.Row{}, fmt.Errorf("readmodel: prescription %q: %w", urn, projections.ErrNotFound)
	}
	if err != nil {
		return projections.Row{}, fmt.Errorf("readmodel: get %q: %w", urn, err)
	}
	return row, nil
}

// List returns the rows matching f, ordered by urn, one page at a time.
// The cursor is the base64url form of the last urn of the previous page.
func (s *Store) List(ctx context.Context, f projections.Filter) (projections.Page, error) {
	limit, after, err := checkFilter(f)
	if err != nil {
		return projections.Page{}, err
	}
	var where []string
	var args []any
	for _, c := range []struct{ col, val string }{
		{"status", string(f.Status)}, {"patient_id", f.PatientID}, {"pharmacy_id", f.PharmacyID},
	} {
		if c.val != "" {
			where = append(where, c.col+" = ?")
			args = append(args, c.val)
		}
	}
	if f.Cursor != "" {
		where = append(where, "urn > ?")
		args = append(args, after)
	}
	q := selectSQL
	if len(where) > 0 {
		q += " WHERE " + strings.Join(where, " AND ")
	}
	// sqlite: TEXT compares bytewise; PostgreSQL needs COLLATE "C" on urn
	// for the same order.
	q += " ORDER BY urn LIMIT ?"
	args = append(args, limit+1) // one more tells whether a next page exists

	rows, err := s.db.QueryContext(ctx, q, args...)
	if err != nil {
		return projections.Page{}, fmt.Errorf("readmodel: list: %w", err)
	}
	defer rows.Close()
	var page projections.Page
	for rows.Next() {
		r, err := scanRow(rows)
		if err != nil {
			return projections.Page{}, fmt.Errorf("readmodel: list: %w", err)
		}
		page.Rows = append(page.Rows, r)
	}
	if err := rows.Err(); err != nil {
		return projections.Page{}, fmt.Errorf("readmodel: list: %w", err)
	}
	if len(page.Rows) > limit {
		page.Rows = page.Rows[:limit]
		page.NextCursor = Cursor(page.Rows[limit-1].URN)
	}
	return page, nil
}

// checkFilter returns the page size and the urn to list after.
func checkFilter(f projections.Filter) (limit int, after string, err error) {
	if f.Status != domain.StatusNone && !slices.Contains(domain.Statuses, f.Status) {
		return 0, "", fmt.Errorf("%w: unknown status %q", ErrInvalidFilter, f.Status)
	}
	if f.Limit < 0 || f.Limit > MaxLimit {
		return 0, "", fmt.Errorf("%w: limit %d outside 0..%d", ErrInvalidFilter, f.Limit, MaxLimit)
	}
	limit = f.Limit
	if limit == 0 {
		limit = DefaultLimit
	}
	urn, err := base64.RawURLEncoding.DecodeString(f.Cursor)
	if err != nil || (f.Cursor != "" && len(urn) == 0) {
		return 0, "", fmt.Errorf("%w: malformed cursor", ErrInvalidFilter)
	}
	return limit, string(urn), nil
}

// Stats counts prescriptions by status, those of pharmacyID only unless
// it is ""; every domain status is present.
func (s *Store) Stats(ctx context.Context, pharmacyID string) (map[domain.Status]int, error) {
	q, args := "SELECT status, COUNT(*) FROM prescriptions GROUP BY status", []any(nil)
	if pharmacyID != "" {
		q, args = "SELECT status, COUNT(*) FROM prescriptions WHERE pharmacy_id = ? GROUP BY status", []any{pharmacyID}
	}
	rows, err := s.db.QueryContext(ctx, q, args...)
	if err != nil {
		return nil, fmt.Errorf("readmodel: stats: %w", err)
	}
	defer rows.Close()
	stats := make(map[domain.Status]int, len(domain.Statuses))
	for _, st := range domain.Statuses {
		stats[st] = 0
	}
	for rows.Next() {
		var st string
		var n int
		if err := rows.Scan(&st, &n); err != nil {
			return nil, fmt.Errorf("readmodel: stats: %w", err)
		}
		stats[domain.Status(st)] = n
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("readmodel: stats: %w", err)
	}
	return stats, nil
}

// write runs fn in a transaction, committing if it returns nil.
// sqlite: file stores begin with BEGIN IMMEDIATE (_txlock), taking the
// write lock up front.
func (s *Store) write(ctx context.Context, fn func(*sql.Tx) error) error {
	return withTx(ctx, s.db, fn)
}

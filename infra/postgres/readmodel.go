package postgres

import (
	"context"
	"errors"
	"fmt"
	"math"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"rxflow/domain"
	"rxflow/events"
	"rxflow/infra/readmodel"
	"rxflow/projections"
)

// The read model's statements, derived from the columns infra/readmodel
// declares (readmodel.Columns), so both stores hold the same rows.
var (
	rmColumns   = readmodel.ColumnNames()
	rmSelectSQL = "SELECT " + strings.Join(rmColumns, ", ") + " FROM prescriptions"
	// rmUpsertSQL upserts many rows at once: $n is the array of column n's
	// values, one element per row.
	rmUpsertSQL = func() string {
		params := make([]string, len(rmColumns))
		set := make([]string, 0, len(rmColumns)-1)
		for i, c := range readmodel.Columns() {
			params[i] = "$" + strconv.Itoa(i+1) + "::" + strings.ToLower(strings.Fields(c.Type)[0]) + "[]"
			if i > 0 {
				set = append(set, c.Name+" = excluded."+c.Name)
			}
		}
		return "INSERT INTO prescriptions (" + strings.Join(rmColumns, ", ") + ") SELECT * FROM unnest(" + strings.Join(params, ", ") +
			") ON CONFLICT (" + rmColumns[0] + ") DO UPDATE SET " + strings.Join(set, ", ")
	}()
)

// saveCheckpointSQL moves (projector, segment)'s checkpoint forward only.
const saveCheckpointSQL = `INSERT INTO checkpoints (projector, segment, position) VALUES ($1, $2, $3)
	ON CONFLICT (projector, segment) DO UPDATE SET position = excluded.position
	WHERE excluded.position > checkpoints.position`

// ReadModel is the read model's write side bound to one segment lease
// (projections.ReadModel): its writes are fenced by the lease, and its
// checkpoint is the row (readmodel.Projector, lease.Segment) of checkpoints.
// Made by DB.ReadModel; the queries are on DB.Queries.
type ReadModel struct {
	db    *DB
	lease projections.Lease
}

var (
	_ projections.ReadModel      = (*ReadModel)(nil)
	_ projections.ReadModelBatch = (*ReadModel)(nil)
)

// ReadModel returns the read model's write side for lease.
func (db *DB) ReadModel(lease projections.Lease) *ReadModel { return &ReadModel{db: db, lease: lease} }

// Apply implements projections.ReadModel: ApplyBatch of rec alone.
func (m *ReadModel) Apply(ctx context.Context, rec events.Recorded) error {
	return m.ApplyBatch(ctx, []events.Recorded{rec})
}

// ApplyBatch implements projections.ReadModelBatch: it folds recs (in $all
// order) into their rows and deadlines and moves the segment's checkpoint
// to the last one, in one fenced transaction: all or nothing. Events at or
// before the checkpoint are ignored; a refusal only moves the checkpoint.
// Every rec needs a URN in the lease's segment and a decoded event. Errors:
// projections.ErrLeaseLost (nothing written), or the database's.
func (m *ReadModel) ApplyBatch(ctx context.Context, recs []events.Recorded) error {
	for _, rec := range recs {
		if rec.URN == "" || rec.Event == nil {
			return fmt.Errorf("postgres: read model: event at position %d lacks a URN or a decoded event", rec.Position)
		}
		if rec.Position > math.MaxInt64 || rec.Revision > math.MaxInt64 {
			return fmt.Errorf("postgres: read model: event at position %d: position or revision out of range", rec.Position)
		}
		if !m.lease.Covers(rec.URN) {
			return fmt.Errorf("postgres: read model: %s is not in segment %d of %d", rec.URN, m.lease.Segment, m.lease.Count)
		}
	}
	if len(recs) == 0 {
		return nil
	}
	reads := beginFenced(m.lease)
	var cp uint64
	reads.Queue(checkpointSQL+" FOR UPDATE", readmodel.Projector, m.lease.Segment).QueryRow(func(row pgx.Row) error {
		return scanCheckpoint(row, &cp)
	})
	urns := map[string]bool{}
	for _, rec := range recs {
		if _, refused := rec.Event.(domain.Refused); !refused {
			urns[rec.URN] = true
		}
	}
	rows := m.queueRows(reads, urns)
	err := m.db.readThenWrite(ctx, m.db.readPool, m.lease, reads, func(writes *pgx.Batch) error {
		return m.queueApply(writes, recs, cp, rows)
	})
	if err != nil {
		return fmt.Errorf("postgres: read model: apply %d events from position %d: %w", len(recs), recs[0].Position, err)
	}
	m.db.moved()
	return nil
}

// queueApply queues the writes that fold recs after checkpoint cp into
// rows (those read, by urn), their deadlines, and the new checkpoint;
// nothing if every rec is at or before cp.
func (m *ReadModel) queueApply(writes *pgx.Batch, recs []events.Recorded, cp uint64, rows map[string]*projections.Row) error {
	last := cp
	var order []string // urns in the order their rows were first changed
	seen := map[string]bool{}
	var dl deadlineChanges
	for _, rec := range recs {
		if rec.Position <= last {
			continue
		}
		last = rec.Position
		if _, refused := rec.Event.(domain.Refused); refused {
			continue
		}
		row, ok := rows[rec.URN]
		if !ok {
			row = &projections.Row{}
			rows[rec.URN] = row
		}
		if !seen[rec.URN] {
			seen[rec.URN] = true
			order = append(order, rec.URN)
		}
		before := row.Status
		projections.FoldRow(row, rec)
		dl.add(projections.DeadlinesAfter(domain.Prescriptions, rec, before, row.Status))
	}
	if last == cp {
		return nil
	}
	if len(order) > 0 {
		cols, err := columnArrays(rows, order)
		if err != nil {
			return err
		}
		writes.Queue(rmUpsertSQL, cols...)
	}
	dl.queue(writes)
	writes.Queue(saveCheckpointSQL, readmodel.Projector, m.lease.Segment, int64(last))
	return nil
}

// queueRows queues the read of the rows of urns that exist, into the
// map it returns, filled once reads is sent.
func (m *ReadModel) queueRows(reads *pgx.Batch, urns map[string]bool) map[string]*projections.Row {
	out := make(map[string]*projections.Row, len(urns))
	if len(urns) == 0 {
		return out
	}
	keys := make([]string, 0, len(urns))
	for urn := range urns {
		keys = append(keys, urn)
	}
	reads.Queue(rmSelectSQL+" WHERE urn = ANY($1)", keys).Query(func(rows pgx.Rows) error {
		for rows.Next() {
			r, err := readmodel.ScanRow(rows)
			if err != nil {
				return err
			}
			out[r.URN] = &r
		}
		return rows.Err()
	})
	return out
}

// columnArrays returns the rows of urns as one array per column, in
// column order, for rmUpsertSQL.
func columnArrays(rows map[string]*projections.Row, urns []string) ([]any, error) {
	cols := readmodel.Columns()
	text := make([][]string, len(cols))
	integer := make([][]*int64, len(cols))
	var args []any
	for _, urn := range urns {
		var err error
		if args, err = readmodel.RowArgs(args[:0], rows[urn]); err != nil {
			return nil, err
		}
		for i, v := range args {
			switch v := v.(type) {
			case string:
				text[i] = append(text[i], v)
			case int64:
				integer[i] = append(integer[i], &v)
			case nil:
				integer[i] = append(integer[i], nil)
			default:
				return nil, fmt.Errorf("column %s: unexpected %T", cols[i].Name, v)
			}
		}
	}
	out := make([]any, len(cols))
	for i, c := range cols {
		if strings.HasPrefix(c.Type, "TEXT") {
			out[i] = text[i]
		} else {
			out[i] = integer[i]
		}
	}
	return out, nil
}

// deadlineChanges is the net effect of a batch's events on the waiting
// deadlines: the prescriptions whose deadlines are all cancelled, the
// passed deadlines that end rows already stored, and the deadlines to
// insert. Applied in that order, it leaves what the events one by one
// would (projections.DeadlineChange.Apply).
type deadlineChanges struct {
	cancelled []string
	passed    []projections.Waiting
	start     map[string][]projections.Waiting // by urn: what waits after its last cancel
	order     []string                         // urns of start, first seen first
}

func (d *deadlineChanges) add(c projections.DeadlineChange) {
	if d.start == nil {
		d.start = map[string][]projections.Waiting{}
	}
	ws, started := d.start[c.URN]
	switch {
	case c.CancelAll:
		if !started {
			d.order = append(d.order, c.URN)
		}
		d.cancelled = append(d.cancelled, c.URN)
		d.start[c.URN] = c.Apply(nil)
		return
	case c.Passed != nil && started: // the batch itself started it
		d.start[c.URN] = c.Apply(ws)
	case c.Passed != nil:
		d.passed = append(d.passed, *c.Passed)
	}
}

func (d *deadlineChanges) queue(b *pgx.Batch) {
	if len(d.cancelled) > 0 {
		b.Queue("DELETE FROM deadlines WHERE urn = ANY($1)", d.cancelled)
	}
	if len(d.passed) > 0 {
		var urns, names []string
		var since []int64
		for _, w := range d.passed {
			urns, names, since = append(urns, w.URN), append(names, w.Deadline), append(since, int64(w.Since))
		}
		b.Queue(`DELETE FROM deadlines d USING unnest($1::text[], $2::text[], $3::bigint[]) AS p(urn, deadline, since)
			WHERE d.urn = p.urn AND d.deadline = p.deadline AND d.since = p.since`, urns, names, since)
	}
	var urns, names []string
	var since, started []int64
	for _, urn := range d.order {
		for _, w := range d.start[urn] {
			urns, names = append(urns, w.URN), append(names, w.Deadline)
			since, started = append(since, int64(w.Since)), append(started, w.StartedAt.UnixNano())
		}
	}
	if len(urns) > 0 {
		b.Queue(`INSERT INTO deadlines (urn, deadline, since, started_at) SELECT * FROM unnest($1::text[], $2::text[], $3::bigint[], $4::bigint[])`,
			urns, names, since, started)
	}
}

// SaveCheckpoint implements projections.ReadModel: the segment's checkpoint
// moves to position if that is further, fenced by the lease.
func (m *ReadModel) SaveCheckpoint(ctx context.Context, position uint64) error {
	if err := m.db.saveCheckpoint(ctx, m.db.readPool, m.lease, readmodel.Projector, position); err != nil {
		return fmt.Errorf("postgres: read model: %w", err)
	}
	m.db.moved()
	return nil
}

// Checkpoint implements projections.ReadModel: the $all position of the
// segment's last event applied; 0 if none.
func (m *ReadModel) Checkpoint(ctx context.Context) (uint64, error) {
	cp, err := checkpointOf(ctx, m.db.readPool, readmodel.Projector, m.lease.Segment)
	if err != nil {
		return 0, fmt.Errorf("postgres: read model: checkpoint: %w", err)
	}
	return cp, nil
}

// checkpointSQL reads (projector, segment)'s checkpoint.
const checkpointSQL = "SELECT position FROM checkpoints WHERE projector = $1 AND segment = $2"

// checkpointOf reads (projector, segment)'s checkpoint; 0 if none.
func checkpointOf(ctx context.Context, pool *pgxpool.Pool, projector string, segment int) (uint64, error) {
	var cp uint64
	err := scanCheckpoint(pool.QueryRow(ctx, checkpointSQL, projector, segment), &cp)
	return cp, err
}

// scanCheckpoint scans checkpointSQL's row into cp; 0 if there is none.
func scanCheckpoint(row pgx.Row, cp *uint64) error {
	var pos int64
	err := row.Scan(&pos)
	if errors.Is(err, pgx.ErrNoRows) {
		*cp = 0
		return nil
	}
	*cp = uint64(pos)
	return err
}

// saveCheckpoint moves (projector, lease.Segment)'s checkpoint forward to
// position, fenced by lease.
func (db *DB) saveCheckpoint(ctx context.Context, pool *pgxpool.Pool, lease projections.Lease, projector string, position uint64) error {
	if position > math.MaxInt64 {
		return fmt.Errorf("checkpoint %d out of range", position)
	}
	return db.write(ctx, pool, lease, func(b *pgx.Batch) {
		b.Queue(saveCheckpointSQL, projector, lease.Segment, int64(position))
	})
}

// write sends the statements queue queues, behind lease's fence, in one
// round trip as one implicit transaction: all or nothing. Errors:
// projections.ErrLeaseLost (nothing written), or the database's.
func (db *DB) write(ctx context.Context, pool *pgxpool.Pool, lease projections.Lease, queue func(*pgx.Batch)) error {
	b := &pgx.Batch{}
	queueFence(b, lease)
	queue(b)
	return leaseLost(pool.SendBatch(ctx, b).Close(), lease)
}

// beginFenced is a batch that begins a transaction and fences it by
// lease: the reads of a readThenWrite are queued behind.
func beginFenced(lease projections.Lease) *pgx.Batch {
	b := &pgx.Batch{}
	b.BeginTx(pgx.TxOptions{})
	queueFence(b, lease)
	return b
}

// readThenWrite is a transaction fenced by lease in three round trips:
// reads (made by beginFenced, their results taken by their queued
// callbacks); then the writes that queueWrites queues once the reads are
// in; then the commit. Nothing is written if queueWrites or any statement
// fails. Errors: projections.ErrLeaseLost (nothing written), or the
// database's.
func (db *DB) readThenWrite(ctx context.Context, pool *pgxpool.Pool, lease projections.Lease, reads *pgx.Batch, queueWrites func(*pgx.Batch) error) error {
	br := pool.SendBatch(ctx, reads)
	tx := br.Tx()
	defer func() { _ = tx.Rollback(context.WithoutCancel(ctx)) }() // a no-op once committed
	if err := br.Close(); err != nil {
		return leaseLost(err, lease)
	}
	writes := &pgx.Batch{}
	if err := queueWrites(writes); err != nil {
		return err
	}
	if writes.Len() > 0 {
		if err := tx.SendBatch(ctx, writes).Close(); err != nil {
			return err
		}
	}
	return tx.Commit(ctx)
}

// Queries is the read model's query side over every segment
// (httpapi.ReadModel, projections.DueDeadlines). Made by DB.Queries.
type Queries struct{ db *DB }

var _ projections.DueDeadlines = (*Queries)(nil)

// Queries returns the read model's query side.
func (db *DB) Queries() *Queries { return &Queries{db: db} }

// Get returns urn's row, or an error matching projections.ErrNotFound.
func (q *Queries) Get(ctx context.Context, urn string) (projections.Row, error) {
	row, err := readmodel.ScanRow(q.db.readPool.QueryRow(ctx, rmSelectSQL+" WHERE urn = $1", urn))
	if errors.Is(err, pgx.ErrNoRows) {
		return projections.Row{}, fmt.Errorf("postgres: prescription %q: %w", urn, projections.ErrNotFound)
	}
	if err != nil {
		return projections.Row{}, fmt.Errorf("postgres: get %q: %w", urn, err)
	}
	return row, nil
}

// List returns the rows matching f, ordered by urn (bytewise), one page at
// a time, with the SQLite store's cursors (readmodel.Cursor); a bad limit,
// cursor or status is readmodel.ErrInvalidFilter.
func (q *Queries) List(ctx context.Context, f projections.Filter) (projections.Page, error) {
	limit, after, err := readmodel.CheckFilter(f)
	if err != nil {
		return projections.Page{}, err
	}
	var where []string
	var args []any
	for _, c := range []struct{ col, val string }{
		{"status", string(f.Status)}, {"patient_id", f.PatientID}, {"pharmacy_id", f.PharmacyID},
	} {
		if c.val != "" {
			args = append(args, c.val)
			where = append(where, c.col+" = $"+strconv.Itoa(len(args)))
		}
	}
	if f.Cursor != "" {
		args = append(args, after)
		where = append(where, "urn > $"+strconv.Itoa(len(args)))
	}
	sql := rmSelectSQL
	if len(where) > 0 {
		sql += " WHERE " + strings.Join(where, " AND ")
	}
	args = append(args, limit+1) // one more tells whether a next page exists
	sql += " ORDER BY urn LIMIT $" + strconv.Itoa(len(args))
	rows, err := q.db.readPool.Query(ctx, sql, args...)
	if err != nil {
		return projections.Page{}, fmt.Errorf("postgres: list: %w", err)
	}
	defer rows.Close()
	var page projections.Page
	for rows.Next() {
		r, err := readmodel.ScanRow(rows)
		if err != nil {
			return projections.Page{}, fmt.Errorf("postgres: list: %w", err)
		}
		page.Rows = append(page.Rows, r)
	}
	if err := rows.Err(); err != nil {
		return projections.Page{}, fmt.Errorf("postgres: list: %w", err)
	}
	if len(page.Rows) > limit {
		page.Rows = page.Rows[:limit]
		page.NextCursor = readmodel.Cursor(page.Rows[limit-1].URN)
	}
	return page, nil
}

// Stats counts prescriptions by status, those of pharmacyID only unless
// it is ""; every domain status is present.
func (q *Queries) Stats(ctx context.Context, pharmacyID string) (map[domain.Status]int, error) {
	sql, args := "SELECT status, COUNT(*) FROM prescriptions GROUP BY status", []any(nil)
	if pharmacyID != "" {
		sql, args = "SELECT status, COUNT(*) FROM prescriptions WHERE pharmacy_id = $1 GROUP BY status", []any{pharmacyID}
	}
	rows, err := q.db.readPool.Query(ctx, sql, args...)
	if err != nil {
		return nil, fmt.Errorf("postgres: stats: %w", err)
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
			return nil, fmt.Errorf("postgres: stats: %w", err)
		}
		stats[domain.Status(st)] = n
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("postgres: stats: %w", err)
	}
	return stats, nil
}

// minCheckpointSQL is the lowest checkpoint of the projectors $1 over the
// segments: those with a lease row and those with a checkpoint of theirs
// (a database whose leases are not initialised yet, or a single Whole
// store); a (projector, segment) without a checkpoint counts as 0, and so
// does a database with no segment at all.
const minCheckpointSQL = `SELECT COALESCE(MIN(COALESCE(c.position, 0)), 0)
	FROM (SELECT segment FROM segment_leases UNION SELECT segment FROM checkpoints WHERE projector = ANY($1)) s
	CROSS JOIN unnest($1::text[]) p(projector)
	LEFT JOIN checkpoints c ON c.projector = p.projector AND c.segment = s.segment`

// Checkpoint is the $all position the whole read model has reached: the
// lowest of the segments' read-model checkpoints (see minCheckpointSQL).
func (q *Queries) Checkpoint(ctx context.Context) (uint64, error) {
	pos, err := q.db.LowestCheckpoint(ctx, []string{readmodel.Projector})
	if err != nil {
		return 0, fmt.Errorf("postgres: read model checkpoint: %w", err)
	}
	return pos, nil
}

// LowestCheckpoint is the lowest checkpoint of projectors over every
// segment, 0 where one has none yet (see minCheckpointSQL): whichever
// segments an instance comes to hold, their runners start after it.
func (db *DB) LowestCheckpoint(ctx context.Context, projectors []string) (uint64, error) {
	var pos int64
	if err := db.readPool.QueryRow(ctx, minCheckpointSQL, projectors).Scan(&pos); err != nil {
		return 0, err
	}
	return uint64(pos), nil
}

// PollInterval is how often WaitFor re-reads the checkpoints, to see the
// writes of other instances; writes through this DB wake it at once.
var PollInterval = 50 * time.Millisecond

// WaitFor blocks until Checkpoint reaches position (every segment has
// applied it: read-your-writes across instances) or ctx ends (then it
// returns ctx's error). It returns readmodel.ErrClosed once the DB is
// closed.
func (q *Queries) WaitFor(ctx context.Context, position uint64) error {
	var tick <-chan time.Time
	for {
		moved := q.db.movedChan()
		cp, err := q.Checkpoint(ctx)
		switch {
		case q.db.isClosed():
			return readmodel.ErrClosed
		case ctx.Err() != nil:
			return ctx.Err()
		case err != nil:
			return err
		case cp >= position:
			return nil
		}
		if tick == nil {
			t := time.NewTicker(PollInterval)
			defer t.Stop()
			tick = t.C
		}
		select {
		case <-moved:
		case <-tick:
		case <-ctx.Done():
			return ctx.Err()
		case <-q.db.closed:
			return readmodel.ErrClosed
		}
	}
}

// Due implements projections.DueDeadlines: the deadlines named deadline
// that started at or before cutoff, oldest first, at most limit; one range
// of the index deadlines_due.
func (q *Queries) Due(ctx context.Context, deadline string, cutoff time.Time, limit int) ([]projections.Waiting, error) {
	rows, err := q.db.readPool.Query(ctx, dueSQL, deadline, cutoff.UnixNano(), limit)
	if err != nil {
		return nil, fmt.Errorf("postgres: due %s: %w", deadline, err)
	}
	defer rows.Close()
	out, err := readmodel.CollectWaiting(rows, deadline)
	if err != nil {
		return nil, fmt.Errorf("postgres: due %s: %w", deadline, err)
	}
	return out, nil
}

const dueSQL = "SELECT urn, since, started_at FROM deadlines WHERE deadline = $1 AND started_at <= $2 ORDER BY started_at LIMIT $3"

// progress wakes WaitFor callers when a write through this DB moved a
// read-model checkpoint.
type progress struct {
	mu sync.Mutex
	ch chan struct{} // closed and replaced at each move
}

func (db *DB) moved() {
	db.progress.mu.Lock()
	defer db.progress.mu.Unlock()
	close(db.progress.ch)
	db.progress.ch = make(chan struct{})
}

func (db *DB) movedChan() <-chan struct{} {
	db.progress.mu.Lock()
	defer db.progress.mu.Unlock()
	return db.progress.ch
}

func (db *DB) isClosed() bool {
	select {
	case <-db.closed:
		return true
	default:
		return false
	}
}

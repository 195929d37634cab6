package readmodel

import (
	"context"
	"database/sql"
	"encoding/base64"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"time"
)

// AccessLogFile is the access log's file name in the projector's data
// directory, beside the read model's readmodel.db.
const AccessLogFile = "access-log.db"

// accessLogMigrations is the access log's schema, versioned like the read
// model's (migrations) but in its own database. Append only.
//
// The log is append-only: triggers refuse UPDATE and DELETE, so a record,
// once written, stays as written (retention is a matter of archiving the
// file, not of editing it). sqlite: AUTOINCREMENT (ids never reused) and
// RAISE; PostgreSQL would use an identity column and a trigger function.
var accessLogMigrations = []string{`
CREATE TABLE access_log (
	id          INTEGER PRIMARY KEY AUTOINCREMENT,
	at          BIGINT NOT NULL,
	subject     TEXT NOT NULL,
	role        TEXT NOT NULL,
	pharmacy_id TEXT NOT NULL,
	method      TEXT NOT NULL,
	route       TEXT NOT NULL,
	status      BIGINT NOT NULL,
	outcome     TEXT NOT NULL
);
CREATE INDEX access_log_subject ON access_log (subject, id);
CREATE TABLE access_log_urns (
	access_id BIGINT NOT NULL REFERENCES access_log (id),
	ord       BIGINT NOT NULL,
	urn       TEXT NOT NULL,
	PRIMARY KEY (access_id, ord)
);
CREATE INDEX access_log_urns_urn ON access_log_urns (urn, access_id);
CREATE TRIGGER access_log_no_update BEFORE UPDATE ON access_log BEGIN SELECT RAISE(ABORT, 'the access log is append-only'); END;
CREATE TRIGGER access_log_no_delete BEFORE DELETE ON access_log BEGIN SELECT RAISE(ABORT, 'the access log is append-only'); END;
CREATE TRIGGER access_log_urns_no_update BEFORE UPDATE ON access_log_urns BEGIN SELECT RAISE(ABORT, 'the access log is append-only'); END;
CREATE TRIGGER access_log_urns_no_delete BEFORE DELETE ON access_log_urns BEGIN SELECT RAISE(ABORT, 'the access log is append-only'); END;
`}

// Access is one record of the access log: who asked for what through
// which route, when, and what they got. It holds no payload data: no
// prescription field other than the urns.
type Access struct {
	ID         int64     `json:"id"`                   // assigned by Record, increasing
	At         time.Time `json:"at"`                   // when the answer was ready, UTC
	Subject    string    `json:"subject"`              // the caller's id (a JWT's sub, or the static token's); "" when unauthenticated
	Role       string    `json:"role"`                 // pharmacy, auditor or operator; "" when unauthenticated or refused a role
	PharmacyID string    `json:"pharmacyId,omitempty"` // a pharmacy caller's pharmacy
	Method     string    `json:"method"`               // the HTTP method
	Route      string    `json:"route"`                // the route's pattern, e.g. /prescriptions/{urn}/history
	URNs       []string  `json:"urns"`                 // the prescriptions asked for or answered with, in answer order
	Status     int       `json:"status"`               // the HTTP status answered
	Outcome    string    `json:"outcome"`              // "ok", or the error code answered (not_found, unauthorized, forbidden, …)
}

// AccessFilter selects access records. Empty fields match everything.
type AccessFilter struct {
	Subject string
	Role    string
	URN     string    // records naming this prescription
	Since   time.Time // at or after
	Until   time.Time // before
	Limit   int       // 1..MaxLimit; DefaultLimit when 0
	Cursor  string    // opaque: the NextCursor of the previous page
}

// AccessPage is one page of access records, newest first.
type AccessPage struct {
	Records    []Access
	NextCursor string // "" on the last page
}

// AccessLog is the durable access audit log of the query API, in its own
// SQLite database (AccessLogFile), not in the read model's: the read model
// is disposable (a rebuild replaces its file), the access log is not, and
// a separate file keeps its writes off the read-model projection's write
// lock and transactions. Safe for concurrent use. Records are committed by
// an AccessWriter (group commit).
type AccessLog struct {
	db   *sql.DB
	path string
	// insertAccess and insertURN are prepared once, at open.
	insertAccess, insertURN *sql.Stmt
	w                       *AccessWriter
}

// AccessWriter commits access records for an access log: one writer
// goroutine takes the records that arrive while it commits and commits them
// together in its next transaction (group commit, at most 256 records), so
// concurrent callers share an fsync instead of queueing for one each.
type AccessWriter struct {
	commit func(ctx context.Context, batch []Access) ([]int64, error)
	queue  chan *pendingAccess // unbuffered: a send succeeds only while the writer runs
	quit   chan struct{}       // closed by Close
	done   chan struct{}       // closed when the writer has stopped
	once   sync.Once
}

// pendingAccess is a record waiting for its commit.
type pendingAccess struct {
	a     Access
	id    int64
	err   error
	saved chan struct{} // closed once id or err is set
}

// maxAccessBatch bounds the records of one transaction.
const maxAccessBatch = 256

// accessCommitTimeout bounds one transaction of the writer.
const accessCommitTimeout = 10 * time.Second

// ErrAccessLogClosed is returned by Record once the log is closed.
var ErrAccessLogClosed = errors.New("readmodel: access log closed")

// NewAccessWriter starts a writer committing batches with commit, which
// must write every record of batch in one transaction and return their
// ids, in batch order (or an error, and write none). Close stops it.
func NewAccessWriter(commit func(ctx context.Context, batch []Access) (ids []int64, err error)) *AccessWriter {
	w := &AccessWriter{commit: commit, queue: make(chan *pendingAccess), quit: make(chan struct{}), done: make(chan struct{})}
	go w.run()
	return w
}

// Record appends a, with its urns, and returns its id once it is committed
// (durable). a.ID is ignored; a.At must be set. ctx bounds the wait for the
// writer to take the record; once taken, Record waits for its commit
// (bounded by the writer's own timeout, 10 s), so that a record is never
// written for a caller that was told it was not. ErrAccessLogClosed after
// Close.
func (w *AccessWriter) Record(ctx context.Context, a Access) (int64, error) {
	if a.At.IsZero() {
		return 0, errors.New("readmodel: access record without a time")
	}
	p := &pendingAccess{a: a, saved: make(chan struct{})}
	select {
	case w.queue <- p:
	case <-w.quit:
		return 0, ErrAccessLogClosed
	case <-ctx.Done():
		return 0, fmt.Errorf("readmodel: record access: %w", ctx.Err())
	}
	<-p.saved
	if p.err != nil {
		return 0, fmt.Errorf("readmodel: record access: %w", p.err)
	}
	return p.id, nil
}

// Close stops the writer once the records it has taken are committed.
func (w *AccessWriter) Close() {
	w.once.Do(func() { close(w.quit) })
	<-w.done
}

// run commits the records sent to queue, each batch in one transaction,
// until quit.
func (w *AccessWriter) run() {
	defer close(w.done)
	for {
		var batch []*pendingAccess
		select {
		case p := <-w.queue:
			batch = append(batch, p)
		case <-w.quit:
			return
		}
	more:
		for len(batch) < maxAccessBatch {
			select {
			case p := <-w.queue:
				batch = append(batch, p)
			default:
				break more
			}
		}
		records := make([]Access, len(batch))
		for i, p := range batch {
			records[i] = p.a
		}
		ctx, cancel := context.WithTimeout(context.Background(), accessCommitTimeout)
		ids, err := w.commit(ctx, records)
		cancel()
		if err == nil && len(ids) != len(batch) {
			err = fmt.Errorf("%d ids for %d records", len(ids), len(batch))
		}
		for i, p := range batch {
			if err != nil {
				p.err = err
			} else {
				p.id = ids[i]
			}
			close(p.saved)
		}
	}
}

// OpenAccessLog opens (creating if needed) the access log at path; "" or
// ":memory:" is a private in-memory log. A file runs in WAL mode with
// synchronous=FULL: a record Record returned for survives a crash.
func OpenAccessLog(path string) (*AccessLog, error) {
	db, path, err := openDB(path)
	if err != nil {
		return nil, fmt.Errorf("readmodel: open access log %q: %w", path, err)
	}
	if err := migrate(context.Background(), db, accessLogMigrations); err != nil {
		db.Close()
		return nil, fmt.Errorf("readmodel: open access log %q: %w", path, err)
	}
	l := &AccessLog{db: db, path: path}
	if l.insertAccess, err = db.Prepare(`INSERT INTO access_log (at, subject, role, pharmacy_id, method, route, status, outcome)
		VALUES (?, ?, ?, ?, ?, ?, ?, ?)`); err == nil {
		l.insertURN, err = db.Prepare("INSERT INTO access_log_urns (access_id, ord, urn) VALUES (?, ?, ?)")
	}
	if err != nil {
		db.Close()
		return nil, fmt.Errorf("readmodel: open access log %q: %w", path, err)
	}
	l.w = NewAccessWriter(func(ctx context.Context, batch []Access) (ids []int64, err error) {
		err = withTx(ctx, l.db, func(tx *sql.Tx) error {
			ids, err = l.insert(ctx, tx, batch)
			return err
		})
		return ids, err
	})
	return l, nil
}

// Path is the database file; "" in memory.
func (l *AccessLog) Path() string { return l.path }

// Close stops the writer, once the records it has taken are committed, and
// closes the database.
func (l *AccessLog) Close() error {
	l.w.Close()
	return l.db.Close()
}

// Record appends a: see AccessWriter.Record.
func (l *AccessLog) Record(ctx context.Context, a Access) (int64, error) { return l.w.Record(ctx, a) }

// insert inserts batch in tx and returns the records' ids.
func (l *AccessLog) insert(ctx context.Context, tx *sql.Tx, batch []Access) ([]int64, error) {
	rec, urns := tx.StmtContext(ctx, l.insertAccess), tx.StmtContext(ctx, l.insertURN)
	ids := make([]int64, len(batch))
	for i, a := range batch {
		res, err := rec.ExecContext(ctx, a.At.UnixNano(), a.Subject, a.Role, a.PharmacyID, a.Method, a.Route, a.Status, a.Outcome)
		if err != nil {
			return nil, err
		}
		if ids[i], err = res.LastInsertId(); err != nil {
			return nil, err
		}
		for j, urn := range a.URNs {
			if _, err := urns.ExecContext(ctx, ids[i], j, urn); err != nil {
				return nil, err
			}
		}
	}
	return ids, nil
}

// Query returns the records matching f, newest first, one page at a time;
// ErrInvalidFilter for a bad limit or cursor.
func (l *AccessLog) Query(ctx context.Context, f AccessFilter) (AccessPage, error) {
	limit, before, err := CheckAccessFilter(f)
	if err != nil {
		return AccessPage{}, err
	}
	var where []string
	var args []any
	for _, c := range []struct{ col, val string }{{"subject", f.Subject}, {"role", f.Role}} {
		if c.val != "" {
			where = append(where, c.col+" = ?")
			args = append(args, c.val)
		}
	}
	if f.URN != "" {
		where = append(where, "id IN (SELECT access_id FROM access_log_urns WHERE urn = ?)")
		args = append(args, f.URN)
	}
	if !f.Since.IsZero() {
		where, args = append(where, "at >= ?"), append(args, f.Since.UnixNano())
	}
	if !f.Until.IsZero() {
		where, args = append(where, "at < ?"), append(args, f.Until.UnixNano())
	}
	if before > 0 {
		where, args = append(where, "id < ?"), append(args, before)
	}
	q := "SELECT id, at, subject, role, pharmacy_id, method, route, status, outcome FROM access_log"
	if len(where) > 0 {
		q += " WHERE " + strings.Join(where, " AND ")
	}
	q += " ORDER BY id DESC LIMIT ?"
	args = append(args, limit+1) // one more tells whether a next page exists

	var page AccessPage
	if err := l.scan(ctx, &page, q, args...); err != nil {
		return AccessPage{}, fmt.Errorf("readmodel: query access log: %w", err)
	}
	if len(page.Records) > limit {
		page.Records = page.Records[:limit]
		page.NextCursor = AccessCursor(page.Records[limit-1].ID)
	}
	if err := l.fillURNs(ctx, page.Records); err != nil {
		return AccessPage{}, fmt.Errorf("readmodel: query access log: %w", err)
	}
	return page, nil
}

func (l *AccessLog) scan(ctx context.Context, page *AccessPage, q string, args ...any) error {
	rows, err := l.db.QueryContext(ctx, q, args...)
	if err != nil {
		return err
	}
	defer rows.Close()
	for rows.Next() {
		var a Access
		var at int64
		if err := rows.Scan(&a.ID, &at, &a.Subject, &a.Role, &a.PharmacyID, &a.Method, &a.Route, &a.Status, &a.Outcome); err != nil {
			return err
		}
		a.At, a.URNs = time.Unix(0, at).UTC(), []string{}
		page.Records = append(page.Records, a)
	}
	return rows.Err()
}

// fillURNs reads the urns of records, in the order they were recorded.
func (l *AccessLog) fillURNs(ctx context.Context, records []Access) error {
	if len(records) == 0 {
		return nil
	}
	index := make(map[int64]int, len(records))
	args := make([]any, len(records))
	for i, a := range records {
		index[a.ID], args[i] = i, a.ID
	}
	rows, err := l.db.QueryContext(ctx, "SELECT access_id, urn FROM access_log_urns WHERE access_id IN (?"+
		strings.Repeat(", ?", len(records)-1)+") ORDER BY access_id, ord", args...)
	if err != nil {
		return err
	}
	defer rows.Close()
	for rows.Next() {
		var id int64
		var urn string
		if err := rows.Scan(&id, &urn); err != nil {
			return err
		}
		records[index[id]].URNs = append(records[index[id]].URNs, urn)
	}
	return rows.Err()
}

// AccessCursor is the cursor of the page after a record id: the next page
// lists the records older than it.
func AccessCursor(id int64) string {
	return base64.RawURLEncoding.EncodeToString([]byte(strconv.FormatInt(id, 10)))
}

// CheckAccessFilter returns f's page size (DefaultLimit when 0) and the id
// to list before (0: from the newest), or ErrInvalidFilter for a limit
// outside 0..MaxLimit or a cursor that AccessCursor did not make.
func CheckAccessFilter(f AccessFilter) (limit int, before int64, err error) {
	if f.Limit < 0 || f.Limit > MaxLimit {
		return 0, 0, fmt.Errorf("%w: limit %d outside 0..%d", ErrInvalidFilter, f.Limit, MaxLimit)
	}
	limit = f.Limit
	if limit == 0 {
		limit = DefaultLimit
	}
	if f.Cursor == "" {
		return limit, 0, nil
	}
	raw, err := base64.RawURLEncoding.DecodeString(f.Cursor)
	if err == nil {
		before, err = strconv.ParseInt(string(raw), 10, 64)
	}
	if err != nil || before <= 0 {
		return 0, 0, fmt.Errorf("%w: malformed cursor", ErrInvalidFilter)
	}
	return limit, before, nil
}

// withTx runs fn in a transaction on db, committing if it returns nil.
func withTx(ctx context.Context, db *sql.DB, fn func(*sql.Tx) error) error {
	tx, err := db.BeginTx(ctx, nil)
	if err != nil {
		return err
	}
	if err := fn(tx); err != nil {
		tx.Rollback()
		return err
	}
	return tx.Commit()
}

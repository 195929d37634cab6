package postgres

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"rxflow/infra/readmodel"
)

// AccessLog is the query API's access log in PostgreSQL (migration
// 000004), with the behaviour of readmodel.AccessLog: append-only (the
// database refuses UPDATE, DELETE and TRUNCATE), records committed in
// batches by a readmodel.AccessWriter, queried newest first by id.
//
// Every instance writes into the same log. Each batch takes an EXCLUSIVE
// lock on access_log (readers are not blocked) before its ids are drawn, so
// ids increase in commit order: a reader that sees id n sees every smaller
// id, and a cursor (the records below an id) never skips a record that
// commits later. Safe for concurrent use.
type AccessLog struct {
	pool *pgxpool.Pool
	w    *readmodel.AccessWriter
}

// AccessLog returns an access log writing into db, with a writer of its
// own; close it (which stops the writer, not db) before db.
func (db *DB) AccessLog() *AccessLog {
	l := &AccessLog{pool: db.pool}
	l.w = readmodel.NewAccessWriter(l.insert)
	return l
}

// Close stops the writer, once the records it has taken are committed.
func (l *AccessLog) Close() error {
	l.w.Close()
	return nil
}

// Record appends a, with its urns, and returns its id once committed:
// see readmodel.AccessWriter.Record; readmodel.ErrAccessLogClosed after
// Close.
func (l *AccessLog) Record(ctx context.Context, a readmodel.Access) (int64, error) {
	return l.w.Record(ctx, a)
}

// insertAccess inserts one record and its urns ($9, in order) and returns
// its id.
const insertAccess = `WITH a AS (
	INSERT INTO access_log (at, subject, role, pharmacy_id, method, route, status, outcome)
	VALUES ($1, $2, $3, $4, $5, $6, $7, $8) RETURNING id
), u AS (
	INSERT INTO access_log_urns (access_id, ord, urn)
	SELECT a.id, u.ord - 1, u.urn FROM a, unnest($9::text[]) WITH ORDINALITY AS u (urn, ord)
)
SELECT id FROM a`

// insert commits records in one transaction and returns their ids. The
// lock is taken on its own, before the inserts are sent: a batch parses
// every statement first, and parsing an INSERT takes a lock that conflicts
// with the EXCLUSIVE one (a deadlock between two instances).
func (l *AccessLog) insert(ctx context.Context, records []readmodel.Access) ([]int64, error) {
	ids := make([]int64, len(records))
	err := pgx.BeginFunc(ctx, l.pool, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, "LOCK TABLE access_log IN EXCLUSIVE MODE"); err != nil {
			return err
		}
		b := &pgx.Batch{}
		for i, a := range records {
			urns := a.URNs
			if urns == nil {
				urns = []string{}
			}
			b.Queue(insertAccess, a.At.UnixNano(), a.Subject, a.Role, a.PharmacyID, a.Method, a.Route, a.Status, a.Outcome, urns).
				QueryRow(func(r pgx.Row) error { return r.Scan(&ids[i]) })
		}
		return tx.SendBatch(ctx, b).Close()
	})
	if err != nil {
		return nil, err
	}
	return ids, nil
}

// Query returns the records matching f, newest first, one page at a time;
// readmodel.ErrInvalidFilter for a bad limit or cursor.
func (l *AccessLog) Query(ctx context.Context, f readmodel.AccessFilter) (readmodel.AccessPage, error) {
	limit, before, err := readmodel.CheckAccessFilter(f)
	if err != nil {
		return readmodel.AccessPage{}, err
	}
	var where []string
	var args []any
	arg := func(cond string, v any) {
		args = append(args, v)
		where = append(where, strings.ReplaceAll(cond, "$", "$"+strconv.Itoa(len(args))))
	}
	if f.Subject != "" {
		arg("subject = $", f.Subject)
	}
	if f.Role != "" {
		arg("role = $", f.Role)
	}
	if f.URN != "" {
		arg("id IN (SELECT access_id FROM access_log_urns WHERE urn = $)", f.URN)
	}
	if !f.Since.IsZero() {
		arg("at >= $", f.Since.UnixNano())
	}
	if !f.Until.IsZero() {
		arg("at < $", f.Until.UnixNano())
	}
	if before > 0 {
		arg("id < $", before)
	}
	q := "SELECT id, at, subject, role, pharmacy_id, method, route, status, outcome FROM access_log"
	if len(where) > 0 {
		q += " WHERE " + strings.Join(where, " AND ")
	}
	args = append(args, limit+1) // one more tells whether a next page exists
	q += fmt.Sprintf(" ORDER BY id DESC LIMIT $%d", len(args))

	page, err := l.query(ctx, q, args)
	if err != nil {
		return readmodel.AccessPage{}, fmt.Errorf("postgres: query access log: %w", err)
	}
	if len(page.Records) > limit {
		page.Records = page.Records[:limit]
		page.NextCursor = readmodel.AccessCursor(page.Records[limit-1].ID)
	}
	return page, nil
}

// query reads the records of q and their urns, in one transaction (one
// snapshot).
func (l *AccessLog) query(ctx context.Context, q string, args []any) (readmodel.AccessPage, error) {
	var page readmodel.AccessPage
	err := pgx.BeginTxFunc(ctx, l.pool, pgx.TxOptions{IsoLevel: pgx.RepeatableRead, AccessMode: pgx.ReadOnly}, func(tx pgx.Tx) error {
		rows, err := tx.Query(ctx, q, args...)
		if err != nil {
			return err
		}
		page.Records, err = pgx.CollectRows(rows, func(r pgx.CollectableRow) (readmodel.Access, error) {
			var a readmodel.Access
			var at int64
			err := r.Scan(&a.ID, &at, &a.Subject, &a.Role, &a.PharmacyID, &a.Method, &a.Route, &a.Status, &a.Outcome)
			a.At, a.URNs = time.Unix(0, at).UTC(), []string{}
			return a, err
		})
		if err != nil || len(page.Records) == 0 {
			return err
		}
		index := make(map[int64]int, len(page.Records))
		ids := make([]int64, len(page.Records))
		for i, a := range page.Records {
			index[a.ID], ids[i] = i, a.ID
		}
		rows, err = tx.Query(ctx, "SELECT access_id, urn FROM access_log_urns WHERE access_id = ANY($1) ORDER BY access_id, ord", ids)
		if err != nil {
			return err
		}
		var id int64
		var urn string
		_, err = pgx.ForEachRow(rows, []any{&id, &urn}, func() error {
			a := &page.Records[index[id]]
			a.URNs = append(a.URNs, urn)
			return nil
		})
		return err
	})
	return page, err
}

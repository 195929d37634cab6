package readmodel

import (
	"encoding/base64"
	"time"

	"rxflow/projections"
)

// What another SQL store of the read model (infra/postgres) shares with
// this one, so that the prescriptions table is declared once
// (prescriptionColumns) and List pages alike.

// Column is one column of the prescriptions table as declared: its name
// and its SQL type (e.g. "BIGINT NOT NULL", "TEXT PRIMARY KEY").
type Column struct{ Name, Type string }

// Columns lists the prescriptions table's columns in declaration order;
// the first is the primary key (urn).
func Columns() []Column {
	out := make([]Column, len(prescriptionColumns))
	for i, c := range prescriptionColumns {
		out[i] = Column{c.name, c.typ}
	}
	return out
}

// ColumnNames is the prescriptions table's column names in declaration
// order, the order of RowArgs and ScanRow.
func ColumnNames() []string { return columnNames }

// RowArgs appends r's column values to dst in declaration order:
// strings, int64s, and unix nanoseconds (int64) or nil for timestamps. It
// fails for a revision or position beyond int64.
func RowArgs(dst []any, r *projections.Row) ([]any, error) { return appendRowArgs(dst, r) }

// ScanRow reads a row whose columns were selected in declaration order;
// sc is a *sql.Row, *sql.Rows or pgx.Row (the destinations are plain
// pointers and sql.Scanner values).
func ScanRow(sc interface{ Scan(dest ...any) error }) (projections.Row, error) { return scanRow(sc) }

// CheckFilter validates f: the page size (DefaultLimit when 0) and the urn
// to list after ("" for the first page); ErrInvalidFilter otherwise.
func CheckFilter(f projections.Filter) (limit int, after string, err error) { return checkFilter(f) }

// Cursor is the NextCursor of a page whose last urn is urn.
func Cursor(urn string) string { return base64.RawURLEncoding.EncodeToString([]byte(urn)) }

// Rows is a query's result as both database/sql and pgx give it.
type Rows interface {
	Next() bool
	Scan(dest ...any) error
	Err() error
}

// CollectWaiting reads due-deadline rows (urn, since, started_at in Unix
// nanoseconds), as the due query selects them, into deadline's Waiting.
func CollectWaiting(rows Rows, deadline string) ([]projections.Waiting, error) {
	var out []projections.Waiting
	for rows.Next() {
		w := projections.Waiting{Deadline: deadline}
		var started int64
		if err := rows.Scan(&w.URN, &w.Since, &started); err != nil {
			return nil, err
		}
		w.StartedAt = time.Unix(0, started).UTC()
		out = append(out, w)
	}
	return out, rows.Err()
}

package readmodel

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"math"
	"strings"
	"time"

	"rxflow/domain"
	"rxflow/projections"
)

// migrations[i] moves the schema from version i to i+1. Append only; never
// edit a migration that has shipped. The first one creates the
// prescriptions table from the columns declared with since 0; a column
// added later is declared with since = its version, at the end of
// prescriptionColumns, and gets its own migration: ALTER TABLE
// prescriptions ADD COLUMN with its name and type (a NOT NULL one needs a
// DEFAULT).
var migrations = []string{createPrescriptions() + `
CREATE INDEX prescriptions_status ON prescriptions (status, urn);
CREATE INDEX prescriptions_patient ON prescriptions (patient_id, urn);
CREATE INDEX prescriptions_pharmacy ON prescriptions (pharmacy_id, urn);
CREATE TABLE checkpoint (
	projector TEXT PRIMARY KEY,
	position  BIGINT NOT NULL
);
`,
	// 1 → 2: PrescriptionRequested v2's medication.codeSystem. Rows
	// projected before it hold ''; a rebuild fills them from the events.
	`ALTER TABLE prescriptions ADD COLUMN medication_code_system TEXT NOT NULL DEFAULT '';`,
	// 2 → 3: deadlines. status_since is the stream revision that entered
	// the status; deadlines holds the deadlines each prescription waits for,
	// indexed by (deadline, started_at) so that the due ones are one range
	// of the index. Rows projected before hold 0 and no deadline; a rebuild
	// fills both from the events.
	`ALTER TABLE prescriptions ADD COLUMN status_since BIGINT NOT NULL DEFAULT 0;
CREATE TABLE deadlines (
	urn        TEXT NOT NULL,
	deadline   TEXT NOT NULL,
	since      BIGINT NOT NULL,
	started_at BIGINT NOT NULL,
	PRIMARY KEY (urn, deadline)
);
CREATE INDEX deadlines_due ON deadlines (deadline, started_at);`,
	// 3 → 4: status_at (when the status was entered) and passed_deadlines
	// (domain.DeadlineSet of the deadlines passed in it). Rows projected
	// before hold NULL and 0; a rebuild fills both from the events.
	`ALTER TABLE prescriptions ADD COLUMN status_at BIGINT;
ALTER TABLE prescriptions ADD COLUMN passed_deadlines BIGINT NOT NULL DEFAULT 0;`,
}

// migrate brings db's schema to len(steps), in one transaction: steps[i]
// moves it from version i to i+1 (migrations for the read model,
// accessLogMigrations for the access log).
func migrate(ctx context.Context, db *sql.DB, steps []string) error {
	tx, err := db.BeginTx(ctx, nil)
	if err != nil {
		return err
	}
	defer tx.Rollback()
	if _, err := tx.ExecContext(ctx, "CREATE TABLE IF NOT EXISTS schema_version (version BIGINT NOT NULL)"); err != nil {
		return err
	}
	var v int
	switch err := tx.QueryRowContext(ctx, "SELECT version FROM schema_version").Scan(&v); {
	case errors.Is(err, sql.ErrNoRows):
		if _, err := tx.ExecContext(ctx, "INSERT INTO schema_version (version) VALUES (0)"); err != nil {
			return err
		}
	case err != nil:
		return err
	}
	if v > len(steps) {
		return fmt.Errorf("schema version %d is newer than this code's %d", v, len(steps))
	}
	for i := v; i < len(steps); i++ {
		if _, err := tx.ExecContext(ctx, steps[i]); err != nil {
			return fmt.Errorf("migration to version %d: %w", i+1, err)
		}
	}
	if _, err := tx.ExecContext(ctx, "UPDATE schema_version SET version = ?", len(steps)); err != nil {
		return err
	}
	return tx.Commit()
}

// column is one column of the prescriptions table: its name, its SQL type,
// and how a row's value is written to it (arg) and read back (dest, a Scan
// destination pointing into the row).
type column struct {
	name, typ string
	since     int // the schema version that added it; 0 for the table's first columns
	arg       func(r *projections.Row) any
	dest      func(r *projections.Row) any
}

// prescriptionColumns declares the prescriptions table once: the CREATE
// TABLE, the INSERT, the upsert, the SELECT and the scan are derived from
// it. The first column is the primary key.
//
// Timestamps are BIGINT unix nanoseconds in UTC (NULL when unset): exact,
// portable and read back in UTC. They cover the years 1678 to 2262.
var prescriptionColumns = []column{
	primaryKey(text("urn", func(r *projections.Row) *string { return &r.URN })),
	text("status", func(r *projections.Row) *domain.Status { return &r.Status }),
	integer("revision", func(r *projections.Row) *int { return &r.Revision }),
	text("patient_id", func(r *projections.Row) *string { return &r.PatientID }),
	text("prescriber_id", func(r *projections.Row) *string { return &r.PrescriberID }),
	text("pharmacy_id", func(r *projections.Row) *string { return &r.PharmacyID }),
	text("medication_name", func(r *projections.Row) *string { return &r.Medication.Name }),
	text("medication_code", func(r *projections.Row) *string { return &r.Medication.Code }),
	text("medication_strength", func(r *projections.Row) *string { return &r.Medication.Strength }),
	integer("medication_quantity", func(r *projections.Row) *int { return &r.Medication.Quantity }),
	integer("medication_refills", func(r *projections.Row) *int { return &r.Medication.Refills }),
	text("approved_by", func(r *projections.Row) *string { return &r.ApprovedBy }),
	text("rejected_by", func(r *projections.Row) *string { return &r.RejectedBy }),
	text("rejection_reason", func(r *projections.Row) *string { return &r.RejectionReason }),
	text("failure_reason", func(r *projections.Row) *string { return &r.FailureReason }),
	text("dispensed_by", func(r *projections.Row) *string { return &r.Dispensing.By }),
	integer("dispensed_quantity", func(r *projections.Row) *int { return &r.Dispensing.Quantity }),
	text("dispensed_lot_number", func(r *projections.Row) *string { return &r.Dispensing.LotNumber }),
	timestamp("requested_at", func(r *projections.Row) *time.Time { return &r.RequestedAt }),
	timestamp("approved_at", func(r *projections.Row) *time.Time { return &r.ApprovedAt }),
	timestamp("rejected_at", func(r *projections.Row) *time.Time { return &r.RejectedAt }),
	timestamp("processing_at", func(r *projections.Row) *time.Time { return &r.ProcessingAt }),
	timestamp("dispensed_at", func(r *projections.Row) *time.Time { return &r.DispensedAt }),
	timestamp("completed_at", func(r *projections.Row) *time.Time { return &r.CompletedAt }),
	timestamp("failed_at", func(r *projections.Row) *time.Time { return &r.FailedAt }),
	integer("last_revision", func(r *projections.Row) *uint64 { return &r.LastRevision }),
	integer("last_position", func(r *projections.Row) *uint64 { return &r.LastPosition }),
	timestamp("updated_at", func(r *projections.Row) *time.Time { return &r.UpdatedAt }),
	since(1, text("medication_code_system", func(r *projections.Row) *string { return &r.Medication.CodeSystem })),
	since(2, integer("status_since", func(r *projections.Row) *int { return &r.StatusSince })),
	since(3, timestamp("status_at", func(r *projections.Row) *time.Time { return &r.StatusAt })),
	since(3, integer("passed_deadlines", func(r *projections.Row) *domain.DeadlineSet { return &r.PassedDeadlines })),
}

// text is a TEXT NOT NULL column holding *field(r).
func text[T ~string](name string, field func(*projections.Row) *T) column {
	return column{name: name, typ: "TEXT NOT NULL",
		arg: func(r *projections.Row) any { return string(*field(r)) }, dest: func(r *projections.Row) any { return field(r) }}
}

// integer is a BIGINT NOT NULL column holding *field(r); appendRowArgs
// checks that the uint64 values fit.
func integer[T ~int | ~uint64](name string, field func(*projections.Row) *T) column {
	return column{name: name, typ: "BIGINT NOT NULL",
		arg: func(r *projections.Row) any { return int64(*field(r)) }, dest: func(r *projections.Row) any { return field(r) }}
}

// timestamp is a nullable BIGINT column of unix nanoseconds holding
// *field(r); the zero time is NULL.
func timestamp(name string, field func(*projections.Row) *time.Time) column {
	return column{name: name, typ: "BIGINT",
		arg: func(r *projections.Row) any { return nanos(*field(r)) }, dest: func(r *projections.Row) any { return nanosDest{field(r)} }}
}

// since marks c as added by migrations[version].
func since(version int, c column) column {
	c.since = version
	return c
}

// primaryKey makes c the table's key.
func primaryKey(c column) column {
	c.typ = strings.TrimSuffix(c.typ, " NOT NULL") + " PRIMARY KEY"
	return c
}

// createPrescriptions is the CREATE TABLE of the first schema version.
func createPrescriptions() string {
	var defs []string
	for _, c := range prescriptionColumns {
		if c.since == 0 {
			defs = append(defs, "\t"+c.name+" "+c.typ)
		}
	}
	return "\nCREATE TABLE prescriptions (\n" + strings.Join(defs, ",\n") + "\n);"
}

var (
	columnNames = func() []string {
		names := make([]string, len(prescriptionColumns))
		for i, c := range prescriptionColumns {
			names[i] = c.name
		}
		return names
	}()
	selectSQL = "SELECT " + strings.Join(columnNames, ", ") + " FROM prescriptions"
	insertSQL = "INSERT INTO prescriptions (" + strings.Join(columnNames, ", ") + ") VALUES (?" + strings.Repeat(", ?", len(columnNames)-1) + ")"
	upsertSQL = insertSQL + " ON CONFLICT (" + columnNames[0] + ") DO UPDATE SET " + updateAll()
)

func updateAll() string {
	set := make([]string, 0, len(columnNames)-1)
	for _, c := range columnNames[1:] {
		set = append(set, c+" = excluded."+c)
	}
	return strings.Join(set, ", ")
}

// appendRowArgs appends r as statement arguments, in column order.
func appendRowArgs(dst []any, r *projections.Row) ([]any, error) {
	if r.LastRevision > math.MaxInt64 || r.LastPosition > math.MaxInt64 {
		return nil, fmt.Errorf("row %q: revision or position out of range", r.URN)
	}
	for _, c := range prescriptionColumns {
		dst = append(dst, c.arg(r))
	}
	return dst, nil
}

// nanos is t as a nullable column value.
func nanos(t time.Time) any {
	if t.IsZero() {
		return nil
	}
	return t.UnixNano()
}

// nanosDest scans a nullable nanos column into a time in UTC; NULL is the
// zero time.
type nanosDest struct{ t *time.Time }

func (d nanosDest) Scan(src any) error {
	var n sql.NullInt64
	if err := n.Scan(src); err != nil {
		return err
	}
	*d.t = time.Time{}
	if n.Valid {
		*d.t = time.Unix(0, n.Int64).UTC()
	}
	return nil
}

type scanner interface{ Scan(dest ...any) error }

// scanRow reads one row selected with selectSQL.
func scanRow(sc scanner) (projections.Row, error) {
	var r projections.Row
	dest := make([]any, len(prescriptionColumns))
	for i, c := range prescriptionColumns {
		dest[i] = c.dest(&r)
	}
	if err := sc.Scan(dest...); err != nil {
		return projections.Row{}, err
	}
	return r, nil
}

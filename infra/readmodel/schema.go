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
// edit a migration that has shipped.
//
// Timestamps are BIGINT unix nanoseconds in UTC (NULL when unset): exact,
// portable and read back in UTC. They cover the years 1678 to 2262.
var migrations = []string{`
CREATE TABLE prescriptions (
	urn                  TEXT PRIMARY KEY,
	status               TEXT NOT NULL,
	revision             BIGINT NOT NULL,
	patient_id           TEXT NOT NULL,
	prescriber_id        TEXT NOT NULL,
	pharmacy_id          TEXT NOT NULL,
	medication_name      TEXT NOT NULL,
	medication_code      TEXT NOT NULL,
	medication_strength  TEXT NOT NULL,
	medication_quantity  BIGINT NOT NULL,
	medication_refills   BIGINT NOT NULL,
	approved_by          TEXT NOT NULL,
	rejected_by          TEXT NOT NULL,
	rejection_reason     TEXT NOT NULL,
	failure_reason       TEXT NOT NULL,
	dispensed_by         TEXT NOT NULL,
	dispensed_quantity   BIGINT NOT NULL,
	dispensed_lot_number TEXT NOT NULL,
	requested_at         BIGINT,
	approved_at          BIGINT,
	rejected_at          BIGINT,
	processing_at        BIGINT,
	dispensed_at         BIGINT,
	completed_at         BIGINT,
	failed_at            BIGINT,
	last_revision        BIGINT NOT NULL,
	last_position        BIGINT NOT NULL,
	updated_at           BIGINT
);
CREATE INDEX prescriptions_status ON prescriptions (status, urn);
CREATE INDEX prescriptions_patient ON prescriptions (patient_id, urn);
CREATE INDEX prescriptions_pharmacy ON prescriptions (pharmacy_id, urn);
CREATE TABLE checkpoint (
	projector TEXT PRIMARY KEY,
	position  BIGINT NOT NULL
);
`}

// migrate brings the schema to len(migrations), in one transaction.
func migrate(ctx context.Context, db *sql.DB) error {
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
	if v > len(migrations) {
		return fmt.Errorf("schema version %d is newer than this code's %d", v, len(migrations))
	}
	for i := v; i < len(migrations); i++ {
		if _, err := tx.ExecContext(ctx, migrations[i]); err != nil {
			return fmt.Errorf("migration to version %d: %w", i+1, err)
		}
	}
	if _, err := tx.ExecContext(ctx, "UPDATE schema_version SET version = ?", len(migrations)); err != nil {
		return err
	}
	return tx.Commit()
}

// columnNames is the prescriptions table in the order of appendRowArgs and
// scanRow.
var columnNames = []string{
	"urn", "status", "revision", "patient_id", "prescriber_id", "pharmacy_id",
	"medication_name", "medication_code", "medication_strength", "medication_quantity", "medication_refills",
	"approved_by", "rejected_by", "rejection_reason", "failure_reason",
	"dispensed_by", "dispensed_quantity", "dispensed_lot_number",
	"requested_at", "approved_at", "rejected_at", "processing_at", "dispensed_at", "completed_at", "failed_at",
	"last_revision", "last_position", "updated_at",
}

var (
	columns   = strings.Join(columnNames, ", ")
	insertSQL = "INSERT INTO prescriptions (" + columns + ") VALUES (?" + strings.Repeat(", ?", len(columnNames)-1) + ")"
	upsertSQL = insertSQL + " ON CONFLICT (urn) DO UPDATE SET " + updateAll()
)

func updateAll() string {
	set := make([]string, 0, len(columnNames)-1)
	for _, c := range columnNames[1:] {
		set = append(set, c+" = excluded."+c)
	}
	return strings.Join(set, ", ")
}

// appendRowArgs appends r as statement arguments, in columnNames order.
func appendRowArgs(dst []any, r *projections.Row) ([]any, error) {
	if r.LastRevision > math.MaxInt64 || r.LastPosition > math.MaxInt64 {
		return nil, fmt.Errorf("row %q: revision or position out of range", r.URN)
	}
	p := &r.Prescription
	return append(dst,
		p.URN, string(p.Status), p.Revision, p.PatientID, p.PrescriberID, p.PharmacyID,
		p.Medication.Name, p.Medication.Code, p.Medication.Strength, p.Medication.Quantity, p.Medication.Refills,
		p.ApprovedBy, p.RejectedBy, p.RejectionReason, p.FailureReason,
		p.Dispensing.By, p.Dispensing.Quantity, p.Dispensing.LotNumber,
		nanos(p.RequestedAt), nanos(p.ApprovedAt), nanos(p.RejectedAt), nanos(p.ProcessingAt),
		nanos(p.DispensedAt), nanos(p.CompletedAt), nanos(p.FailedAt),
		int64(r.LastRevision), int64(r.LastPosition), nanos(r.UpdatedAt),
	), nil
}

// nanos is t as a nullable column value.
func nanos(t time.Time) any {
	if t.IsZero() {
		return nil
	}
	return t.UnixNano()
}

type scanner interface{ Scan(dest ...any) error }

// scanRow reads one row selected with columns.
func scanRow(sc scanner) (projections.Row, error) {
	var r projections.Row
	var status string
	var lastRevision, lastPosition int64
	var times [8]sql.NullInt64
	p := &r.Prescription
	err := sc.Scan(
		&p.URN, &status, &p.Revision, &p.PatientID, &p.PrescriberID, &p.PharmacyID,
		&p.Medication.Name, &p.Medication.Code, &p.Medication.Strength, &p.Medication.Quantity, &p.Medication.Refills,
		&p.ApprovedBy, &p.RejectedBy, &p.RejectionReason, &p.FailureReason,
		&p.Dispensing.By, &p.Dispensing.Quantity, &p.Dispensing.LotNumber,
		&times[0], &times[1], &times[2], &times[3], &times[4], &times[5], &times[6],
		&lastRevision, &lastPosition, &times[7],
	)
	if err != nil {
		return projections.Row{}, err
	}
	p.Status = domain.Status(status)
	for i, t := range []*time.Time{&p.RequestedAt, &p.ApprovedAt, &p.RejectedAt, &p.ProcessingAt, &p.DispensedAt, &p.CompletedAt, &p.FailedAt, &r.UpdatedAt} {
		if times[i].Valid {
			*t = time.Unix(0, times[i].Int64).UTC()
		}
	}
	r.LastRevision, r.LastPosition = uint64(lastRevision), uint64(lastPosition)
	return r, nil
}

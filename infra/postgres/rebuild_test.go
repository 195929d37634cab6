package postgres_test

import (
	"context"
	"errors"
	"fmt"
	"reflect"
	"testing"
	"time"

	"rxflow/domain"
	"rxflow/infra/postgres"
	"rxflow/projections"
)

func indexes(t *testing.T, db *postgres.DB) []string {
	t.Helper()
	rows, err := db.Pool().Query(context.Background(), `SELECT schemaname || '.' || tablename || ' ' || indexdef FROM pg_indexes
		WHERE tablename IN ('prescriptions', 'deadlines') ORDER BY 1`)
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
	return out
}

func rowOf(urn string, st domain.Status, pos uint64) projections.Row {
	return projections.Row{Prescription: domain.Prescription{URN: urn, Status: st, PatientID: "p", PharmacyID: "ph"}, LastPosition: pos}
}

// Until the switch, queries read the old tables; after it, the new ones,
// with the same keys and indexes under the same names and nothing left of
// the rebuild's schema.
func TestRebuildServesTheOldTablesUntilTheSwitch(t *testing.T) {
	db := openDB(t)
	ctx := context.Background()
	lease := claim(t, db, 0, 1)
	old := rowOf("urn:rx:old", domain.StatusApproved, 5)
	if err := db.ReadModel(lease).SaveCheckpoint(ctx, 5); err != nil {
		t.Fatal(err)
	}
	if _, err := db.Pool().Exec(ctx, `INSERT INTO prescriptions (urn, status, revision, patient_id, prescriber_id, pharmacy_id, medication_name,
		medication_code, medication_strength, medication_quantity, medication_refills, approved_by, rejected_by, rejection_reason, failure_reason,
		dispensed_by, dispensed_quantity, dispensed_lot_number, last_revision, last_position, medication_code_system, status_since, passed_deadlines)
		VALUES ($1, $2, 0, 'p', '', 'ph', '', '', '', 0, 0, '', '', '', '', '', 0, '', 0, 5, '', 0, 0)`, old.URN, string(old.Status)); err != nil {
		t.Fatal(err)
	}
	before := indexes(t, db)
	if len(before) != 6 {
		t.Fatalf("indexes before: %v", before)
	}
	var fresh []projections.Row
	for i := range 1000 {
		fresh = append(fresh, rowOf(fmt.Sprintf("urn:rx:%04d", i), domain.StatusRequested, uint64(10+i)))
	}
	waiting := []projections.Waiting{{URN: "urn:rx:0001", Deadline: "approval-overdue", Since: 0, StartedAt: time.Unix(0, 42).UTC()}}
	q := db.Queries()
	served := false
	restore := postgres.SetAfterRebuildLoad(func() {
		served = true
		if got, err := q.Get(ctx, old.URN); err != nil || got.Status != old.Status {
			t.Errorf("during the rebuild: %+v, %v; want the old row", got, err)
		}
		if _, err := q.Get(ctx, "urn:rx:0001"); !errors.Is(err, projections.ErrNotFound) {
			t.Errorf("during the rebuild a new row is served: %v", err)
		}
		if cp, err := q.Checkpoint(ctx); err != nil || cp != 5 {
			t.Errorf("during the rebuild the checkpoint is %d, %v; want 5", cp, err)
		}
	})
	err := db.RebuildReadModel(ctx, fresh, waiting, 2000, 1)
	restore()
	if err != nil {
		t.Fatal(err)
	}
	if !served {
		t.Fatal("the hook between load and switch did not run")
	}
	if _, err := q.Get(ctx, old.URN); !errors.Is(err, projections.ErrNotFound) {
		t.Fatalf("the old row survived the rebuild: %v", err)
	}
	page, err := q.List(ctx, projections.Filter{Limit: 500})
	if err != nil || len(page.Rows) != 500 || page.Rows[0].URN != "urn:rx:0000" || page.NextCursor == "" {
		t.Fatalf("after the rebuild: %d rows, %v", len(page.Rows), err)
	}
	if got, err := q.Due(ctx, "approval-overdue", time.Unix(1, 0), 10); err != nil || !reflect.DeepEqual(got, waiting) {
		t.Fatalf("Due after the rebuild = %+v, %v", got, err)
	}
	if cp, err := q.Checkpoint(ctx); err != nil || cp != 2000 {
		t.Fatalf("checkpoint %d, %v; want 2000", cp, err)
	}
	if after := indexes(t, db); !reflect.DeepEqual(after, before) {
		t.Fatalf("indexes after the rebuild\n got %v\nwant %v", after, before)
	}
	var schemas int
	if err := db.Pool().QueryRow(ctx, `SELECT count(*) FROM pg_namespace WHERE nspname = 'rxflow_rebuild'`).Scan(&schemas); err != nil || schemas != 0 {
		t.Fatalf("the rebuild's schema remains (%d, %v)", schemas, err)
	}
	if err := db.RebuildReadModel(ctx, nil, nil, 3000, 2); err == nil {
		t.Fatal("a rebuild for 2 segments was accepted by a database of 1")
	}
	if cp, err := q.Checkpoint(ctx); err != nil || cp != 2000 {
		t.Fatalf("a refused rebuild moved the checkpoint to %d, %v", cp, err)
	}
}

package readmodel

import (
	"database/sql"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"rxflow/domain"
	"rxflow/events"
	"rxflow/projections"
)

// A read model written by schema version 1 (before PrescriptionRequested
// v2's medication_code_system, and before deadlines) is opened by today's
// code: migrated to the current version in place, every row kept, the new
// columns at their declared defaults (a rebuild fills them from the
// events), the same schema as a fresh store, and live projection goes on.
func TestOpenMigratesASchemaVersion1ReadModel(t *testing.T) {
	path := filepath.Join(t.TempDir(), "v1.db")
	at := time.Date(2026, 3, 1, 9, 0, 0, 0, time.UTC)
	old := projections.Row{
		Prescription: domain.Prescription{URN: "urn:rx:old", Status: domain.StatusRequested, Revision: 1, PatientID: "p1", PrescriberID: "d1",
			Medication: domain.Medication{Name: "Amoxicillin", Code: "J01CA04", Strength: "500mg", Quantity: 20, Refills: 1}, RequestedAt: at},
		LastRevision: 0, LastPosition: 42, UpdatedAt: at,
	}
	writeVersion1(t, path, old)

	s, err := Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	var v int
	if err := s.db.QueryRow("SELECT version FROM schema_version").Scan(&v); err != nil || v != len(migrations) || v < 3 {
		t.Fatalf("schema version %d, %v; want %d", v, err, len(migrations))
	}
	got, err := s.Get(t.Context(), old.URN)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(got, old) || got.Medication.CodeSystem != "" || got.StatusSince != 0 {
		t.Fatalf("migrated row\n got %+v\nwant %+v (code system and status since at their defaults)", got, old)
	}
	if cp, err := s.Checkpoint(t.Context()); err != nil || cp != 42 {
		t.Fatalf("checkpoint %d, %v; want 42", cp, err)
	}

	fresh := openInternal(t)
	if m, f := masterOf(t, s.db), masterOf(t, fresh.db); !reflect.DeepEqual(m, f) {
		t.Fatalf("migrated schema\n%s\nfresh schema\n%s", strings.Join(m, "\n"), strings.Join(f, "\n"))
	}

	// Live projection continues on the migrated store: the approval
	// folds into the old row and starts its deadline.
	approved := domain.Approved{ApprovedBy: "d1", At: at.Add(time.Hour)}
	if err := s.Apply(t.Context(), events.Recorded{URN: old.URN, Event: approved, Revision: 1, Position: 50}); err != nil {
		t.Fatal(err)
	}
	got, err = s.Get(t.Context(), old.URN)
	if err != nil || got.Status != domain.StatusApproved || got.StatusSince != 1 || got.PatientID != "p1" || got.Medication.Code != "J01CA04" {
		t.Fatalf("after approve: %+v, %v", got, err)
	}
	due, err := s.Due(t.Context(), "processing-overdue", approved.At, 10)
	if err != nil || len(due) != 1 || due[0] != (projections.Waiting{URN: old.URN, Deadline: "processing-overdue", Since: 1, StartedAt: approved.At}) {
		t.Fatalf("due after approve: %+v, %v", due, err)
	}
}

// writeVersion1 creates the read model as schema version 1 left it: its
// migration alone, and row written to the columns it had.
func writeVersion1(t *testing.T, path string, row projections.Row) {
	t.Helper()
	db, err := sql.Open("sqlite", path)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	var names, marks []string
	var args []any
	for _, c := range prescriptionColumns {
		if c.since == 0 {
			names, marks, args = append(names, c.name), append(marks, "?"), append(args, c.arg(&row))
		}
	}
	for _, stmt := range []string{
		"CREATE TABLE schema_version (version BIGINT NOT NULL)",
		"INSERT INTO schema_version (version) VALUES (1)",
		migrations[0],
		"INSERT INTO checkpoint (projector, position) VALUES ('readmodel', 42)",
	} {
		if _, err := db.Exec(stmt); err != nil {
			t.Fatalf("%s: %v", stmt, err)
		}
	}
	if _, err := db.Exec("INSERT INTO prescriptions ("+strings.Join(names, ", ")+") VALUES ("+strings.Join(marks, ", ")+")", args...); err != nil {
		t.Fatal(err)
	}
}

// masterOf lists a database's schema: every table and index with its SQL.
func masterOf(t *testing.T, db *sql.DB) []string {
	t.Helper()
	rows, err := db.Query("SELECT type || ' ' || name || ': ' || COALESCE(sql, '') FROM sqlite_master ORDER BY type, name")
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

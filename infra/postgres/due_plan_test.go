package postgres_test

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"rxflow/infra/postgres"
	"rxflow/projections"
)

// Due is a search: among 20,000 waiting deadlines, the plan reads the
// range of the index deadlines_due, not the table.
func TestDueReadsTheIndexRange(t *testing.T) {
	db := openDB(t)
	ctx := context.Background()
	start := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	var ws []projections.Waiting
	for i := range 20_000 {
		name := []string{"approval-overdue", "pickup-overdue"}[i%2]
		ws = append(ws, projections.Waiting{URN: fmt.Sprintf("urn:rx:%06d", i), Deadline: name, StartedAt: start.Add(time.Duration(i) * time.Second)})
	}
	if err := db.RebuildReadModel(ctx, nil, ws, 1, 1); err != nil { // loads and analyzes the table
		t.Fatal(err)
	}
	rows, err := db.Pool().Query(ctx, "EXPLAIN "+strings.NewReplacer("$1", "'approval-overdue'",
		"$2", fmt.Sprint(start.Add(10*time.Second).UnixNano()), "$3", "500").Replace(postgres.DueSQL))
	if err != nil {
		t.Fatal(err)
	}
	var lines []string
	for rows.Next() {
		var line string
		if err := rows.Scan(&line); err != nil {
			t.Fatal(err)
		}
		lines = append(lines, line)
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	plan := strings.Join(lines, "\n")
	if !strings.Contains(plan, "deadlines_due") || strings.Contains(plan, "Seq Scan") {
		t.Fatalf("plan: %s; want a scan of deadlines_due", plan)
	}
	got, err := db.Queries().Due(ctx, "approval-overdue", start.Add(10*time.Second), 500)
	if err != nil || len(got) != 6 { // 0, 2, 4, 6, 8, 10 seconds
		t.Fatalf("Due = %d rows, %v; want 6", len(got), err)
	}
}

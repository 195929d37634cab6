package readmodel

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"rxflow/projections"
)

// With 100,000 prescriptions waiting, finding the due deadlines reads only
// the due rows: the query plan is a search of the index deadlines_due
// bounded by the deadline and the cutoff, never a scan of the table, and
// the rows it returns are exactly the due ones.
func TestDueReadsOnlyDueRows(t *testing.T) {
	const waiting, dueCount = 100_000, 7
	s := openInternal(t)
	start := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	ws := make([]projections.Waiting, waiting)
	for i := range ws {
		// The dueCount oldest are due at the cutoff; the rest started later.
		ws[i] = projections.Waiting{URN: fmt.Sprintf("urn:rx:%06d", i), Deadline: "approval-overdue", Since: 0,
			StartedAt: start.Add(time.Duration(i) * time.Second)}
	}
	if err := s.BulkLoad(t.Context(), nil, ws, 1); err != nil {
		t.Fatal(err)
	}
	cutoff := start.Add((dueCount - 1) * time.Second)

	rows, err := s.db.QueryContext(t.Context(), "EXPLAIN QUERY PLAN "+dueSQL, "approval-overdue", cutoff.UnixNano(), 500)
	if err != nil {
		t.Fatal(err)
	}
	var plan []string
	for rows.Next() {
		var id, parent, unused int
		var detail string
		if err := rows.Scan(&id, &parent, &unused, &detail); err != nil {
			t.Fatal(err)
		}
		plan = append(plan, detail)
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	rows.Close()
	joined := strings.Join(plan, "; ")
	if len(plan) != 1 || !strings.Contains(joined, "SEARCH deadlines USING INDEX deadlines_due (deadline=? AND started_at<?)") {
		t.Fatalf("query plan %q: want one search of deadlines_due bounded by deadline and started_at", joined)
	}
	if strings.Contains(joined, "SCAN") || strings.Contains(joined, "TEMP B-TREE") {
		t.Fatalf("query plan %q scans or sorts", joined)
	}

	got, err := s.Due(t.Context(), "approval-overdue", cutoff, 500)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != dueCount {
		t.Fatalf("Due returned %d of %d waiting deadlines, want the %d due", len(got), waiting, dueCount)
	}
	for i, w := range got {
		if w != ws[i] {
			t.Fatalf("due[%d] = %+v, want %+v", i, w, ws[i])
		}
	}
}

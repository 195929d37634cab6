package readmodel_test

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"path/filepath"
	"slices"
	"sync"
	"testing"
	"time"

	"rxflow/infra/readmodel"
)

func openAccessLog(t testing.TB, path string) *readmodel.AccessLog {
	t.Helper()
	l, err := readmodel.OpenAccessLog(path)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	return l
}

// record appends a and returns it as Query gives it back.
func record(t testing.TB, l *readmodel.AccessLog, a readmodel.Access) readmodel.Access {
	t.Helper()
	id, err := l.Record(t.Context(), a)
	if err != nil {
		t.Fatal(err)
	}
	a.ID = id
	if a.URNs == nil {
		a.URNs = []string{}
	}
	return a
}

func ids(records []readmodel.Access) []int64 {
	out := make([]int64, len(records))
	for i, a := range records {
		out[i] = a.ID
	}
	return out
}

func TestAccessLogRecordsAndFilters(t *testing.T) {
	l := openAccessLog(t, filepath.Join(t.TempDir(), readmodel.AccessLogFile))
	var all []readmodel.Access
	for i := range 7 {
		a := readmodel.Access{At: t0.Add(time.Duration(i) * time.Minute), Subject: fmt.Sprintf("user-%d", i%2), Role: "auditor",
			Method: "GET", Route: "/prescriptions/{urn}", URNs: []string{fmt.Sprintf("urn:rx:%d", i%3)}, Status: 200, Outcome: "ok"}
		if i == 4 {
			a.Role, a.PharmacyID, a.Status, a.Outcome = "pharmacy", "ph-1", 404, "not_found"
			a.URNs = []string{"urn:rx:b", "urn:rx:a", "urn:rx:1"} // answer order, not sorted
		}
		if i == 5 {
			a.Subject, a.Role, a.URNs, a.Status, a.Outcome = "", "", nil, 401, "unauthorized"
		}
		all = append(all, record(t, l, a))
	}
	newestFirst := slices.Clone(all)
	slices.Reverse(newestFirst)

	page, err := l.Query(t.Context(), readmodel.AccessFilter{})
	if err != nil {
		t.Fatal(err)
	}
	for i, got := range page.Records {
		want := newestFirst[i]
		if got.ID != want.ID || !got.At.Equal(want.At) || got.At.Location() != time.UTC || got.Subject != want.Subject || got.Role != want.Role ||
			got.PharmacyID != want.PharmacyID || got.Method != want.Method || got.Route != want.Route || !slices.Equal(got.URNs, want.URNs) ||
			got.Status != want.Status || got.Outcome != want.Outcome {
			t.Errorf("record %d = %+v, want %+v", i, got, want)
		}
	}
	if len(page.Records) != len(all) || page.NextCursor != "" {
		t.Fatalf("query all: %d records, cursor %q; want %d, none", len(page.Records), page.NextCursor, len(all))
	}

	for name, c := range map[string]struct {
		f    readmodel.AccessFilter
		want func(readmodel.Access) bool
	}{
		"subject": {readmodel.AccessFilter{Subject: "user-1"}, func(a readmodel.Access) bool { return a.Subject == "user-1" }},
		"role":    {readmodel.AccessFilter{Role: "pharmacy"}, func(a readmodel.Access) bool { return a.Role == "pharmacy" }},
		"urn":     {readmodel.AccessFilter{URN: "urn:rx:1"}, func(a readmodel.Access) bool { return slices.Contains(a.URNs, "urn:rx:1") }},
		"since and until": {readmodel.AccessFilter{Since: t0.Add(2 * time.Minute), Until: t0.Add(5 * time.Minute)},
			func(a readmodel.Access) bool {
				return !a.At.Before(t0.Add(2*time.Minute)) && a.At.Before(t0.Add(5*time.Minute))
			}},
	} {
		var want []int64
		for _, a := range newestFirst {
			if c.want(a) {
				want = append(want, a.ID)
			}
		}
		page, err := l.Query(t.Context(), c.f)
		if err != nil || !slices.Equal(ids(page.Records), want) || len(want) == 0 || len(want) == len(all) {
			t.Errorf("%s: %v, %v; want %v (a proper subset)", name, ids(page.Records), err, want)
		}
	}
}

func TestAccessLogPagesNewestFirst(t *testing.T) {
	l := openAccessLog(t, "")
	var want []int64
	for range 11 {
		a := record(t, l, readmodel.Access{At: t0, Subject: "s", Role: "auditor", Method: "GET", Route: "/prescriptions", Status: 200, Outcome: "ok"})
		want = append(want, a.ID)
	}
	slices.Reverse(want)
	var got []int64
	var sizes []int
	f := readmodel.AccessFilter{Limit: 2}
	for {
		page, err := l.Query(t.Context(), f)
		if err != nil {
			t.Fatal(err)
		}
		got, sizes = append(got, ids(page.Records)...), append(sizes, len(page.Records))
		if page.NextCursor == "" {
			break
		}
		f.Cursor = page.NextCursor
	}
	if !slices.Equal(got, want) || !slices.Equal(sizes, []int{2, 2, 2, 2, 2, 1}) {
		t.Fatalf("pages: ids %v sizes %v; want %v in pages of 2", got, sizes, want)
	}
	for name, f := range map[string]readmodel.AccessFilter{
		"negative limit": {Limit: -1},
		"limit too big":  {Limit: readmodel.MaxLimit + 1},
		"not base64":     {Cursor: "not base64!"},
		"not an id":      {Cursor: "eA"},
		"zero id":        {Cursor: "MA"},
	} {
		if _, err := l.Query(t.Context(), f); !errors.Is(err, readmodel.ErrInvalidFilter) {
			t.Errorf("%s: err = %v, want ErrInvalidFilter", name, err)
		}
	}
}

// The log survives a reopen, and the database refuses to change or delete
// a record.
func TestAccessLogIsDurableAndAppendOnly(t *testing.T) {
	path := filepath.Join(t.TempDir(), readmodel.AccessLogFile)
	l, err := readmodel.OpenAccessLog(path)
	if err != nil {
		t.Fatal(err)
	}
	a := record(t, l, readmodel.Access{At: t0, Subject: "s", Role: "auditor", Method: "GET", Route: "/prescriptions/{urn}",
		URNs: []string{"urn:rx:1"}, Status: 200, Outcome: "ok"})
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := l.Record(t.Context(), a); !errors.Is(err, readmodel.ErrAccessLogClosed) {
		t.Fatalf("Record on a closed log: %v, want ErrAccessLogClosed", err)
	}

	db, err := sql.Open("sqlite", path)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	for _, stmt := range []string{"UPDATE access_log SET subject = 'x'", "DELETE FROM access_log",
		"UPDATE access_log_urns SET urn = 'urn:rx:2'", "DELETE FROM access_log_urns"} {
		if _, err := db.Exec(stmt); err == nil {
			t.Errorf("%s: allowed", stmt)
		}
	}
	db.Close()

	l = openAccessLog(t, path)
	page, err := l.Query(t.Context(), readmodel.AccessFilter{URN: "urn:rx:1"})
	if err != nil || len(page.Records) != 1 || page.Records[0].ID != a.ID || page.Records[0].Subject != "s" {
		t.Fatalf("after reopen: %+v, %v; want the record %d unchanged", page.Records, err, a.ID)
	}
	if _, err := l.Record(t.Context(), readmodel.Access{Subject: "s"}); err == nil {
		t.Fatal("a record without a time was accepted")
	}
}

// Concurrent callers share transactions: every record gets its own id and
// is stored whole with its urns.
func TestAccessLogConcurrentRecords(t *testing.T) {
	l := openAccessLog(t, filepath.Join(t.TempDir(), readmodel.AccessLogFile))
	const callers, each = 16, 20
	var wg sync.WaitGroup
	ids := make([][]int64, callers)
	for c := range callers {
		wg.Go(func() {
			for i := range each {
				subject := fmt.Sprintf("caller-%d", c)
				id, err := l.Record(context.Background(), readmodel.Access{At: t0, Subject: subject, Role: "auditor", Method: "GET",
					Route: "/prescriptions", URNs: []string{fmt.Sprintf("urn:rx:%d-%d", c, i), "urn:rx:shared"}, Status: 200, Outcome: "ok"})
				if err != nil {
					t.Error(err)
					return
				}
				ids[c] = append(ids[c], id)
			}
		})
	}
	wg.Wait()
	seen := map[int64]bool{}
	for c := range callers {
		if !slices.IsSorted(ids[c]) || len(ids[c]) != each {
			t.Errorf("caller %d: ids %v, want %d increasing", c, ids[c], each)
		}
		for _, id := range ids[c] {
			if seen[id] {
				t.Fatalf("id %d given twice", id)
			}
			seen[id] = true
		}
		page, err := l.Query(t.Context(), readmodel.AccessFilter{Subject: fmt.Sprintf("caller-%d", c), Limit: readmodel.MaxLimit})
		if err != nil || len(page.Records) != each {
			t.Fatalf("caller %d: %d records, %v", c, len(page.Records), err)
		}
		for _, a := range page.Records {
			i := slices.Index(ids[c], a.ID)
			if i < 0 || !slices.Equal(a.URNs, []string{fmt.Sprintf("urn:rx:%d-%d", c, i), "urn:rx:shared"}) {
				t.Errorf("record %d of caller %d: urns %v", a.ID, c, a.URNs)
			}
		}
	}
	page, err := l.Query(t.Context(), readmodel.AccessFilter{URN: "urn:rx:shared", Limit: readmodel.MaxLimit})
	if err != nil || len(page.Records) != callers*each {
		t.Fatalf("records naming the shared urn: %d, %v; want %d", len(page.Records), err, callers*each)
	}
}

// Close while callers record: each either gets its record committed (and
// readable after a reopen) or ErrAccessLogClosed; none hangs.
func TestAccessLogCloseWhileRecording(t *testing.T) {
	path := filepath.Join(t.TempDir(), readmodel.AccessLogFile)
	l, err := readmodel.OpenAccessLog(path)
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	var mu sync.Mutex
	var committed []int64
	started := make(chan struct{})
	for c := range 8 {
		wg.Go(func() {
			for i := 0; ; i++ {
				if c == 0 && i == 5 {
					close(started)
				}
				id, err := l.Record(context.Background(), readmodel.Access{At: t0, Subject: "s", Method: "GET", Route: "/r", Status: 200, Outcome: "ok"})
				if errors.Is(err, readmodel.ErrAccessLogClosed) {
					return
				}
				if err != nil {
					t.Error(err)
					return
				}
				mu.Lock()
				committed = append(committed, id)
				mu.Unlock()
			}
		})
	}
	<-started
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	wg.Wait()
	l = openAccessLog(t, path)
	var got []int64
	for f := (readmodel.AccessFilter{Limit: readmodel.MaxLimit}); ; {
		page, err := l.Query(t.Context(), f)
		if err != nil {
			t.Fatal(err)
		}
		got = append(got, ids(page.Records)...)
		if page.NextCursor == "" {
			break
		}
		f.Cursor = page.NextCursor
	}
	slices.Sort(committed)
	slices.Sort(got)
	if len(committed) < 5 || !slices.Equal(got, committed) {
		t.Fatalf("stored ids %v, want exactly the %d committed %v", got, len(committed), committed)
	}
}

package opstest

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"rxflow/infra/readmodel"
)

// AccessStorage is one test's access-log storage.
type AccessStorage struct {
	// Open opens an instance on the storage (another projector process's,
	// for the second and later calls), closed when the test ends if the
	// test did not close it.
	Open func() AccessLog
	// Exec runs a statement on the storage directly, bypassing the log.
	Exec func(stmt string) error
}

// NewAccessLog makes an empty access-log storage for t.
type NewAccessLog func(t *testing.T) AccessStorage

// RunAccessLog runs every case of the access-log suite, each as a subtest
// on a storage of its own.
func RunAccessLog(t *testing.T, storage NewAccessLog) {
	for _, c := range []struct {
		name string
		run  func(t *testing.T, s AccessStorage)
	}{
		{"RecordsAndFilters", recordsAndFilters},
		{"PagesNewestFirst", pagesNewestFirst},
		{"DurableAndAppendOnly", durableAndAppendOnly},
		{"ConcurrentRecords", concurrentRecords},
		{"CloseWhileRecording", closeWhileRecording},
		{"ConcurrentInstancesNumberInCommitOrder", commitOrder},
	} {
		t.Run(c.name, func(t *testing.T) { c.run(t, storage(t)) })
	}
}

// record appends a and returns it as Query gives it back.
func record(t testing.TB, l AccessLog, a readmodel.Access) readmodel.Access {
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

// all reads every record matching f, page by page.
func all(t testing.TB, l AccessLog, f readmodel.AccessFilter) []readmodel.Access {
	t.Helper()
	var out []readmodel.Access
	for {
		page, err := l.Query(t.Context(), f)
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, page.Records...)
		if page.NextCursor == "" {
			return out
		}
		f.Cursor = page.NextCursor
	}
}

func recordsAndFilters(t *testing.T, s AccessStorage) {
	l := s.Open()
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
		"since, to the nanosecond": {readmodel.AccessFilter{Since: t0.Add(time.Nanosecond)}, func(a readmodel.Access) bool { return a.At.After(t0) }},
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

func pagesNewestFirst(t *testing.T, s AccessStorage) {
	l := s.Open()
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

// The log survives its closing, and the database refuses to change or
// delete a record.
func durableAndAppendOnly(t *testing.T, s AccessStorage) {
	l := s.Open()
	a := record(t, l, readmodel.Access{At: t0, Subject: "s", Role: "auditor", Method: "GET", Route: "/prescriptions/{urn}",
		URNs: []string{"urn:rx:1"}, Status: 200, Outcome: "ok"})
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := l.Record(t.Context(), a); !errors.Is(err, readmodel.ErrAccessLogClosed) {
		t.Fatalf("Record on a closed log: %v, want ErrAccessLogClosed", err)
	}
	for _, stmt := range []string{"UPDATE access_log SET subject = 'x'", "DELETE FROM access_log",
		"UPDATE access_log_urns SET urn = 'urn:rx:2'", "DELETE FROM access_log_urns"} {
		if err := s.Exec(stmt); err == nil {
			t.Errorf("%s: allowed", stmt)
		}
	}

	l = s.Open()
	page, err := l.Query(t.Context(), readmodel.AccessFilter{URN: "urn:rx:1"})
	if err != nil || len(page.Records) != 1 || page.Records[0].ID != a.ID || page.Records[0].Subject != "s" ||
		!slices.Equal(page.Records[0].URNs, []string{"urn:rx:1"}) {
		t.Fatalf("after reopen: %+v, %v; want the record %d unchanged", page.Records, err, a.ID)
	}
	if _, err := l.Record(t.Context(), readmodel.Access{Subject: "s"}); err == nil {
		t.Fatal("a record without a time was accepted")
	}
}

// Concurrent callers share transactions: every record gets its own id and
// is stored whole with its urns.
func concurrentRecords(t *testing.T, s AccessStorage) {
	l := s.Open()
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
// readable afterwards) or ErrAccessLogClosed; none hangs.
func closeWhileRecording(t *testing.T, s AccessStorage) {
	l := s.Open()
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
	got := ids(all(t, s.Open(), readmodel.AccessFilter{Limit: readmodel.MaxLimit}))
	slices.Sort(committed)
	slices.Sort(got)
	if len(committed) < 5 || !slices.Equal(got, committed) {
		t.Fatalf("stored ids %v, want exactly the %d committed %v", got, len(committed), committed)
	}
}

// Instances recording at once into one storage number their records in
// the order they commit: whenever a reader looks, the records it sees are
// exactly ids 1..n, with no later-committed smaller id to come, so a
// cursor, which lists the records below an id, never skips one.
func commitOrder(t *testing.T, s AccessStorage) {
	instances := []AccessLog{s.Open(), s.Open()}
	reader := s.Open()
	const callers, each = 6, 25 // callers per instance
	var wg sync.WaitGroup
	var writing atomic.Int32
	for i, l := range instances {
		for c := range callers {
			writing.Add(1)
			wg.Go(func() {
				defer writing.Add(-1)
				for n := range each {
					if _, err := l.Record(context.Background(), readmodel.Access{At: t0, Subject: fmt.Sprintf("instance-%d", i), Method: "GET",
						Route: "/prescriptions", URNs: []string{fmt.Sprintf("urn:rx:%d-%d-%d", i, c, n)}, Status: 200, Outcome: "ok"}); err != nil {
						t.Error(err)
						return
					}
				}
			})
		}
	}
	looks := 0
	for {
		done := writing.Load() == 0
		page, err := reader.Query(t.Context(), readmodel.AccessFilter{Limit: readmodel.MaxLimit})
		if err != nil {
			t.Fatal(err)
		}
		looks++
		got := ids(page.Records)
		if !isRun(got) {
			t.Fatalf("look %d: ids %v have a gap: a smaller id is still to commit", looks, got)
		}
		if len(got) > 0 && len(got) < readmodel.MaxLimit && got[0] != int64(len(got)) {
			t.Fatalf("look %d: the %d records seen are not ids 1..%d", looks, len(got), got[0])
		}
		if done {
			break
		}
	}
	wg.Wait()
	got := ids(all(t, reader, readmodel.AccessFilter{Limit: readmodel.MaxLimit}))
	if len(got) != 2*callers*each || !isRun(got) || got[len(got)-1] != 1 {
		t.Fatalf("%d records, ids from %d to %d; want %d numbered 1 on without a gap", len(got), got[0], got[len(got)-1], 2*callers*each)
	}
	t.Logf("%d looks while %d records were written", looks, 2*callers*each)
}

// isRun: ids descend by one.
func isRun(ids []int64) bool {
	for i := 1; i < len(ids); i++ {
		if ids[i] != ids[i-1]-1 {
			return false
		}
	}
	return true
}

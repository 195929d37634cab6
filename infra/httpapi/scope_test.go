package httpapi_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"testing"

	"rxflow/domain"
	"rxflow/infra/httpapi"
	"rxflow/infra/readmodel"
)

// pharmacyFixture holds urn:rx:1 (requested for ph-1, then processed by
// ph-9: ph-9's now), urn:rx:2 and urn:rx:4 (ph-1's) and urn:rx:3 (ph-2's).
func pharmacyFixture(t *testing.T) *fixture {
	f := newFixture(t)
	f.lifecycle("urn:rx:1")
	f.do(t0, request("urn:rx:2", "pat-2"))
	other := request("urn:rx:3", "pat-3")
	other.PharmacyID = "ph-2"
	f.do(t0, other)
	f.do(t0, request("urn:rx:4", "pat-4"))
	return f
}

// as sends GET path with tok.
func (c *client) as(tok, path string) response {
	c.t.Helper()
	return c.send(http.MethodGet, path, "Bearer "+tok)
}

func decode[T any](t *testing.T, r response) T {
	t.Helper()
	var v T
	if err := json.Unmarshal(r.body, &v); err != nil {
		t.Fatalf("%v in %s", err, r.body)
	}
	return v
}

func urnsOf(l listJSON) []string {
	var out []string
	for _, it := range l.Items {
		out = append(out, it.URN)
	}
	return out
}

// A pharmacy reads its own prescriptions, and no other: in every route,
// another pharmacy's prescription answers exactly as one that does not
// exist. Every read, allowed or refused, is in the access log.
func TestPharmacySeesOnlyItsOwn(t *testing.T) {
	f := pharmacyFixture(t)
	key := newSigner(t, "k1")
	c, log := f.jwtAPI(httpapi.JWTConfig{JWKSFile: jwksFile(t, key)})
	ph1 := key.sign(t, claims("pharmacist@ph-1", "pharmacy", "pharmacy_id", "ph-1"))
	auditor := key.sign(t, claims("auditor@hospital", []string{"auditor"}))

	type want struct {
		status int
		urns   []string // recorded
	}
	expect := map[string]want{}
	requests := 0
	check := func(path string, r response, w want) {
		t.Helper()
		requests++
		if r.status != w.status {
			t.Errorf("GET %s: %d %s, want %d", path, r.status, r.body, w.status)
		}
		expect[path] = w
	}
	notFound := func(path, urn string) {
		t.Helper()
		r := c.as(ph1, path)
		check(path, r, want{http.StatusNotFound, []string{urn}})
		if e := decode[apiError](t, r); e.Error != "not_found" || e.Message != fmt.Sprintf("prescription %q not found", urn) {
			t.Errorf("GET %s: %+v, want the answer of a prescription that does not exist", path, e)
		}
	}

	// By urn: its own, another's, one it held before another took it, none.
	r := c.as(ph1, "/prescriptions/urn:rx:2")
	check("/prescriptions/urn:rx:2", r, want{http.StatusOK, []string{"urn:rx:2"}})
	if row := decode[rowJSON](t, r); row.URN != "urn:rx:2" {
		t.Errorf("own prescription: %+v", row)
	}
	notFound("/prescriptions/urn:rx:3", "urn:rx:3")
	notFound("/prescriptions/urn:rx:1", "urn:rx:1")
	notFound("/prescriptions/urn:rx:none", "urn:rx:none")

	// History and past states: the pharmacy it is with now decides.
	r = c.as(ph1, "/prescriptions/urn:rx:2/history")
	check("/prescriptions/urn:rx:2/history", r, want{http.StatusOK, []string{"urn:rx:2"}})
	notFound("/prescriptions/urn:rx:3/history", "urn:rx:3")
	notFound("/prescriptions/urn:rx:1/history", "urn:rx:1")
	notFound("/prescriptions/urn:rx:1/history?asOf=0", "urn:rx:1") // ph-1's at revision 0, ph-9's now
	notFound("/prescriptions/urn:rx:3/history?asOf=2030-01-01T00:00:00Z", "urn:rx:3")

	// Lists: its own only, whatever it asks for.
	for path, urns := range map[string][]string{
		"/prescriptions":                  {"urn:rx:2", "urn:rx:4"},
		"/prescriptions?pharmacyId=ph-1":  {"urn:rx:2", "urn:rx:4"},
		"/prescriptions?pharmacyId=ph-2":  nil,
		"/prescriptions?pharmacyId=ph-9":  nil,
		"/prescriptions?patientId=pat-3":  nil,
		"/prescriptions?status=completed": nil,
	} {
		r := c.as(ph1, path)
		check(path, r, want{http.StatusOK, urns})
		if got := urnsOf(decode[listJSON](t, r)); !slices.Equal(got, urns) {
			t.Errorf("GET %s: %v, want %v", path, got, urns)
		}
	}
	var pages []string
	for path := "/prescriptions?limit=1"; ; {
		r := c.as(ph1, path)
		l := decode[listJSON](t, r)
		check(path, r, want{http.StatusOK, urnsOf(l)})
		pages = append(pages, urnsOf(l)...)
		if l.NextCursor == nil {
			break
		}
		path = "/prescriptions?limit=1&cursor=" + *l.NextCursor
	}
	if !slices.Equal(pages, []string{"urn:rx:2", "urn:rx:4"}) {
		t.Errorf("pages of one: %v", pages)
	}

	// Stats count its own; parked effects and the access log are not its.
	r = c.as(ph1, "/prescriptions/stats")
	check("/prescriptions/stats", r, want{http.StatusOK, nil})
	if s := decode[struct {
		Counts map[domain.Status]int `json:"counts"`
		Total  int                   `json:"total"`
	}](t, r); s.Total != 2 || s.Counts[domain.StatusRequested] != 2 {
		t.Errorf("pharmacy stats: %+v, want its 2 requested", s)
	}
	for _, path := range []string{"/effects/parked", "/audit/access"} {
		r := c.as(ph1, path)
		check(path, r, want{http.StatusForbidden, nil})
		if e := decode[apiError](t, r); e.Error != "forbidden" {
			t.Errorf("GET %s: %+v", path, e)
		}
	}

	// Every request of the pharmacy is recorded, with what it was answered.
	records := accesses(t, log)
	if len(records) != requests {
		t.Fatalf("%d access records, want one per request (%d)", len(records), requests)
	}
	for _, a := range records {
		if a.Subject != "pharmacist@ph-1" || a.Role != "pharmacy" || a.PharmacyID != "ph-1" || a.Method != "GET" || !a.At.Equal(now) {
			t.Errorf("record %+v: not the pharmacy's", a)
		}
	}
	for path, w := range expect {
		route := routeOf(path)
		found := slices.ContainsFunc(records, func(a readmodel.Access) bool {
			return a.Route == route && a.Status == w.status && slices.Equal(a.URNs, orEmpty(w.urns))
		})
		if !found {
			t.Errorf("GET %s: no record of route %s, status %d, urns %v in %+v", path, route, w.status, w.urns, records)
		}
	}

	// An auditor reads what the pharmacy may not.
	if r := c.as(auditor, "/prescriptions/urn:rx:3"); r.status != http.StatusOK {
		t.Errorf("auditor: %d %s", r.status, r.body)
	}
	if l := decode[listJSON](t, c.as(auditor, "/prescriptions")); len(l.Items) != 4 {
		t.Errorf("auditor lists %v, want all 4", urnsOf(l))
	}
}

func orEmpty(s []string) []string {
	if s == nil {
		return []string{}
	}
	return s
}

// routeOf is the pattern a test path is served by.
func routeOf(path string) string {
	p, _, _ := strings.Cut(path, "?")
	switch {
	case p == "/prescriptions", p == "/prescriptions/stats", p == "/effects/parked", p == "/audit/access":
		return p
	case strings.HasSuffix(p, "/history"):
		return "/prescriptions/{urn}/history"
	default:
		return "/prescriptions/{urn}"
	}
}

// failingLog is an access log whose writes fail.
type failingLog struct{ *readmodel.AccessLog }

func (failingLog) Record(context.Context, readmodel.Access) (int64, error) {
	return 0, errors.New("disk full")
}

// An answer whose access record cannot be written is not sent: the caller
// gets 503 audit_unavailable, with no prescription data.
func TestAccessLogFailureFailsClosed(t *testing.T) {
	f := newFixture(t)
	f.lifecycle("urn:rx:1")
	c := serve(t, httpapi.Config{AccessLog: failingLog{memAccessLog(t)}}, f.store, f.hist, parkedList{})
	for _, tc := range []struct{ path, auth string }{
		{"/prescriptions/urn:rx:1", "Bearer " + token},
		{"/prescriptions", "Bearer " + token},
		{"/prescriptions/urn:rx:1/history", "Bearer " + token},
		{"/prescriptions/urn:rx:1", ""},
	} {
		r := c.send(http.MethodGet, tc.path, tc.auth)
		if e := decode[apiError](t, r); r.status != http.StatusServiceUnavailable || e.Error != "audit_unavailable" {
			t.Errorf("GET %s (auth %v): %d %s, want 503 audit_unavailable", tc.path, tc.auth != "", r.status, r.body)
		}
		for _, leak := range []string{"pat-1", "Amoxicillin", "urn:rx:1"} {
			if strings.Contains(string(r.body), leak) {
				t.Errorf("GET %s: the refusal leaks %q: %s", tc.path, leak, r.body)
			}
		}
		if got := r.header.Get(httpapi.PositionHeader); got != "" {
			t.Errorf("GET %s: %s %q sent with the refusal", tc.path, httpapi.PositionHeader, got)
		}
	}
	// An unknown route is not audited, so it does not depend on the log.
	if r := c.get("/no/such/route"); r.status != http.StatusNotFound {
		t.Errorf("unknown route: %d", r.status)
	}
}

type accessJSON struct {
	Items []struct {
		ID         int64    `json:"id"`
		At         string   `json:"at"`
		Subject    string   `json:"subject"`
		Role       string   `json:"role"`
		PharmacyID string   `json:"pharmacyId"`
		Method     string   `json:"method"`
		Route      string   `json:"route"`
		URNs       []string `json:"urns"`
		Status     int      `json:"status"`
		Outcome    string   `json:"outcome"`
	} `json:"items"`
	NextCursor *string `json:"nextCursor"`
}

// GET /audit/access: auditors read the log, filtered and paged; reading it
// is recorded too.
func TestAccessLogRoute(t *testing.T) {
	f := pharmacyFixture(t)
	key := newSigner(t, "k1")
	c, log := f.jwtAPI(httpapi.JWTConfig{JWKSFile: jwksFile(t, key)})
	ph1 := key.sign(t, claims("pharmacist@ph-1", "pharmacy", "pharmacy_id", "ph-1"))
	auditor := key.sign(t, claims("auditor@hospital", "auditor"))
	c.as(ph1, "/prescriptions/urn:rx:3")         // 1: refused, 404
	c.as(ph1, "/prescriptions")                  // 2: urn:rx:2, urn:rx:4
	c.as(auditor, "/prescriptions/urn:rx:3")     // 3
	c.send(http.MethodGet, "/prescriptions", "") // 4: unauthenticated

	r := c.as(auditor, "/audit/access?urn=urn:rx:3")
	got := decode[accessJSON](t, r)
	if r.status != http.StatusOK || len(got.Items) != 2 || got.Items[0].Subject != "auditor@hospital" || got.Items[0].Status != 200 ||
		got.Items[1].Subject != "pharmacist@ph-1" || got.Items[1].Status != 404 || got.Items[1].Outcome != "not_found" ||
		got.Items[1].PharmacyID != "ph-1" || got.Items[1].Route != "/prescriptions/{urn}" || got.Items[1].At != "2026-11-30T12:00:00Z" {
		t.Fatalf("?urn=urn:rx:3: %d %s", r.status, r.body)
	}
	got = decode[accessJSON](t, c.as(auditor, "/audit/access?subject=pharmacist@ph-1&role=pharmacy"))
	if len(got.Items) != 2 || !slices.Equal(got.Items[0].URNs, []string{"urn:rx:2", "urn:rx:4"}) {
		t.Fatalf("?subject: %+v", got)
	}
	// Pages of two, newest first: the two reads of the log above are in it
	// too (5, 6); each page's own record comes after its answer.
	var ids []int64
	for path := "/audit/access?limit=2"; ; {
		page := decode[accessJSON](t, c.as(auditor, path))
		for _, it := range page.Items {
			ids = append(ids, it.ID)
		}
		if page.NextCursor == nil {
			break
		}
		path = "/audit/access?limit=2&cursor=" + *page.NextCursor
	}
	if !slices.Equal(ids, []int64{6, 5, 4, 3, 2, 1}) {
		t.Fatalf("paged ids %v: want 6 down to 1", ids)
	}
	got = decode[accessJSON](t, c.as(auditor, "/audit/access?limit=1"))
	if len(got.Items) != 1 || got.Items[0].Route != "/audit/access" || got.Items[0].Subject != "auditor@hospital" {
		t.Fatalf("the last read of the log is not recorded first: %+v", got)
	}
	for _, q := range []string{"?role=admin", "?since=yesterday", "?until=2026-13-01T00:00:00Z", "?limit=0", "?limit=501",
		"?cursor=!!", "?urn=URN:x", "?subject=a&subject=b", "?other=1"} {
		r := c.as(auditor, "/audit/access"+q)
		if e := decode[apiError](t, r); r.status != http.StatusBadRequest || (e.Error != "bad_request" && e.Error != "invalid_urn") {
			t.Errorf("GET /audit/access%s: %d %s, want 400", q, r.status, r.body)
		}
	}
	recorded := len(accesses(t, log))
	got = decode[accessJSON](t, c.as(auditor, "/audit/access?since=2026-11-30T12:00:00Z&until=2026-11-30T12:00:01Z&limit=500"))
	if len(got.Items) != recorded {
		t.Errorf("a range around now: %d records, want all %d", len(got.Items), recorded)
	}
	got = decode[accessJSON](t, c.as(auditor, "/audit/access?until=2026-11-30T12:00:00Z"))
	if len(got.Items) != 0 {
		t.Errorf("until now (exclusive): %d records, want none", len(got.Items))
	}
}

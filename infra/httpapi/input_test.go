package httpapi_test

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
	"unicode/utf8"

	"rxflow/domain"
	"rxflow/events"
	"rxflow/infra/httpapi"
	"rxflow/infra/readmodel"
	"rxflow/projections"
)

// errorCodes are the error codes each status may carry.
var errorCodes = map[int][]string{
	http.StatusBadRequest:       {"bad_request", "invalid_urn"},
	http.StatusUnauthorized:     {"unauthorized"},
	http.StatusForbidden:        {"forbidden"}, // a route the caller's role may not use
	http.StatusNotFound:         {"not_found"},
	http.StatusMethodNotAllowed: {"method_not_allowed"},
	// Only with minPosition: the read model is behind the client's write.
	http.StatusGatewayTimeout: {"timeout"},
}

// checkAnswer checks what every answer to a client's input must be: a
// status of 200 or one in errorCodes (no redirect, no 5xx other than a
// minPosition timeout), Content-Type application/json, and a body that is
// one JSON object in valid UTF-8: for an error, {"error": code, "message":
// text} with a code its status allows. A HEAD answer has no body.
func checkAnswer(status int, h http.Header, body []byte, head bool) error {
	if ct := h.Get("Content-Type"); ct != "application/json" {
		return fmt.Errorf("status %d: Content-Type %q", status, ct)
	}
	if loc := h.Get("Location"); loc != "" {
		return fmt.Errorf("status %d: Location %q", status, loc)
	}
	codes, isError := errorCodes[status]
	if status != http.StatusOK && !isError {
		return fmt.Errorf("status %d is not an answer to a client's input", status)
	}
	if head {
		if len(body) != 0 {
			return fmt.Errorf("status %d: a body in answer to HEAD", status)
		}
		return nil
	}
	if !utf8.Valid(body) || !json.Valid(body) || !bytes.HasPrefix(body, []byte("{")) {
		return fmt.Errorf("status %d: body is not a JSON object in valid UTF-8: %q", status, body)
	}
	if !isError {
		// Whatever names a prescription names it by a valid urn.
		var named struct{ URN *string }
		if json.Unmarshal(body, &named) == nil && named.URN != nil && domain.ValidateURN(*named.URN) != nil {
			return fmt.Errorf("status 200 for the invalid urn %q", *named.URN)
		}
		return nil
	}
	var e apiError
	if err := json.Unmarshal(body, &e); err != nil || !slices.Contains(codes, e.Error) || e.Message == "" {
		return fmt.Errorf("status %d: error %s, want one of %v and a message", status, body, codes)
	}
	switch status {
	case http.StatusUnauthorized:
		if got := h.Get("WWW-Authenticate"); got != "Bearer" {
			return fmt.Errorf("401: WWW-Authenticate %q", got)
		}
	case http.StatusMethodNotAllowed:
		if got := h.Get("Allow"); got != http.MethodGet {
			return fmt.Errorf("405: Allow %q", got)
		}
	}
	return nil
}

// raw sends "method target HTTP/1.1" over a new connection to the test
// server, so that nothing on the client's side cleans or escapes target.
func (c *client) raw(method, target string, auth bool) response {
	c.t.Helper()
	conn, err := net.DialTimeout("tcp", strings.TrimPrefix(c.url, "http://"), 10*time.Second)
	if err != nil {
		c.t.Fatal(err)
	}
	defer conn.Close()
	if err := conn.SetDeadline(time.Now().Add(30 * time.Second)); err != nil {
		c.t.Fatal(err)
	}
	req := method + " " + target + " HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n"
	if auth {
		req += "Authorization: Bearer " + token + "\r\n"
	}
	if _, err := io.WriteString(conn, req+"\r\n"); err != nil {
		c.t.Fatal(err)
	}
	resp, err := http.ReadResponse(bufio.NewReader(conn), &http.Request{Method: method})
	if err != nil {
		c.t.Fatalf("%s %q: %v", method, target, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		c.t.Fatal(err)
	}
	return response{status: resp.StatusCode, header: resp.Header, body: body}
}

// counting is the real store and history, counting the calls that read
// them.
type counting struct {
	*readmodel.Store
	hist  projections.History
	calls *atomic.Int64
}

func (c counting) Get(ctx context.Context, urn string) (projections.Row, error) {
	c.calls.Add(1)
	return c.Store.Get(ctx, urn)
}

func (c counting) List(ctx context.Context, f projections.Filter) (projections.Page, error) {
	c.calls.Add(1)
	return c.Store.List(ctx, f)
}

func (c counting) Stats(ctx context.Context, pharmacyID string) (map[domain.Status]int, error) {
	c.calls.Add(1)
	return c.Store.Stats(ctx, pharmacyID)
}

func (c counting) Checkpoint(ctx context.Context) (uint64, error) {
	c.calls.Add(1)
	return c.Store.Checkpoint(ctx)
}

func (c counting) WaitFor(ctx context.Context, position uint64) error {
	c.calls.Add(1)
	return c.Store.WaitFor(ctx, position)
}

func (c counting) Load(ctx context.Context, urn string) ([]events.Recorded, error) {
	c.calls.Add(1)
	return c.hist.Load(ctx, urn)
}

// Kind 5: one urn grammar in the query API; look-alikes are refused, not
// looked up.
func TestURNGrammarInPaths(t *testing.T) {
	f := newFixture(t)
	f.lifecycle("urn:rx:1")
	long := "urn:rx:" + strings.Repeat("a", domain.MaxURNLength-len("urn:rx:"))
	allChars := "urn:x-y:AZaz09._~!$&'()*+,;=:@-"
	for _, urn := range []string{long, allChars, "urn:isbn:0451450523"} {
		f.do(t0, request(urn, "pat-2"))
	}
	var calls atomic.Int64
	rm := counting{Store: f.store, hist: f.hist, calls: &calls}
	c := serve(t, httpapi.Config{WaitTimeout: time.Minute}, rm, rm, parkedList{})

	valid := []struct{ name, seg, urn string }{
		{"plain", "urn:rx:1", "urn:rx:1"},
		{"colons encoded", "urn%3Arx%3A1", "urn:rx:1"},
		{"longest", long, long},
		{"every NSS character", allChars, allChars},
		{"another namespace", "urn:isbn:0451450523", "urn:isbn:0451450523"},
	}
	for _, tc := range valid {
		for _, path := range []string{"/prescriptions/" + tc.seg, "/prescriptions/" + tc.seg + "?minPosition=1", "/prescriptions/" + tc.seg + "/history"} {
			var body struct{ URN string }
			if c.getJSON(path, http.StatusOK, &body); body.URN != tc.urn {
				t.Errorf("%s %s: urn %q, want %q", tc.name, path, body.URN, tc.urn)
			}
		}
	}
	for _, seg := range []string{"urn:rx:404", "urn:rx:a+b", "urn:rx:1:2", "urn:x-1:%40"} {
		c.expectError("/prescriptions/"+seg, http.StatusNotFound, "not_found")
		c.expectError("/prescriptions/"+seg+"/history", http.StatusNotFound, "not_found")
	}

	invalid := []struct{ name, seg string }{
		{"no-break space", "urn:rx:a%C2%A0b"},
		{"trailing no-break space", "urn:rx:1%C2%A0"},
		{"zero-width space", "urn:rx:a%E2%80%8Bb"},
		{"zero-width joiner", "urn:rx:1%E2%80%8D"},
		{"byte order mark", "%EF%BB%BFurn:rx:1"},
		{"right-to-left override", "urn:rx:%E2%80%AE1"},
		{"soft hyphen", "urn:rx:1%C2%AD"},
		{"ideographic space", "urn:rx:a%E3%80%80b"},
		{"space", "urn:rx:a%20b"},
		{"tab", "urn:rx:a%09b"},
		{"line feed", "urn:rx:1%0A"},
		{"NUL", "urn:rx:a%00b"},
		{"BEL", "urn:rx:a%07b"},
		{"DEL", "urn:rx:a%7Fb"},
		{"C1 control", "urn:rx:a%C2%85b"},
		{"encoded slash", "urn:rx:a%2Fb"},
		{"encoded slash, lowercase", "urn:rx:a%2fb"},
		{"encoded dot segment", "urn:rx:a%2F..%2Fb"},
		{"encoded percent", "urn:rx:a%25b"},
		{"double-encoded slash", "urn:rx:a%252Fb"},
		{"uppercase URN", "URN:rx:1"},
		{"capitalised Urn", "Urn:rx:1"},
		{"uppercase NID", "urn:RX:1"},
		{"uppercase, encoded colons", "URN%3Arx%3A1"},
		{"Latin letter with accent", "urn:rx:caf%C3%A9"},
		{"Cyrillic look-alike in the NSS", "urn:rx:%D0%B0"},
		{"Cyrillic look-alike in the NID", "urn:r%D1%85:1"},
		{"fullwidth colons", "urn%EF%BC%9Arx%EF%BC%9A1"},
		{"invalid UTF-8", "urn:rx:%FF"},
		{"truncated UTF-8", "urn:rx:%C3"},
		{"one character too long", long + "a"},
		{"no urn prefix", "rx:1"},
		{"empty NSS", "urn:rx:"},
		{"one-letter NID", "urn:r:1"},
		{"empty NID", "urn::1"},
		{"NID starting with a hyphen", "urn:-rx:1"},
		{"NID ending with a hyphen", "urn:rx-:1"},
		{"no NSS", "urn:rx"},
		{"encoded dot-dot", "%2E%2E"},
		{"encoded dot", "%2E"},
		{"a word", "x"},
	}
	for _, tc := range invalid {
		for _, path := range []string{
			"/prescriptions/" + tc.seg, "/prescriptions/" + tc.seg + "?minPosition=99999",
			"/prescriptions/" + tc.seg + "/history", "/prescriptions/" + tc.seg + "/history?asOf=0",
		} {
			before := calls.Load()
			e, r := c.expectError(path, http.StatusBadRequest, "invalid_urn")
			if calls.Load() != before {
				t.Errorf("%s %s: the read model or the event store was read", tc.name, path)
			}
			if !strings.Contains(e.Message, domain.URNGrammar) || !utf8.Valid(r.body) {
				t.Errorf("%s %s: message %q, want the grammar", tc.name, path, e.Message)
			}
		}
	}

	// As sent on the wire, raw bytes and all. (net/http itself refuses a
	// request line with a control character, with a text/plain 400.)
	for _, seg := range []string{"urn:rx:\xff", "urn:rx:a\xc2\xa0b", "urn:rx:\xe2\x80\x8b1", "urn:rx:\xef\xbb\xbf", "URN:rx:1"} {
		r := c.raw(http.MethodGet, "/prescriptions/"+seg, true)
		if err := checkAnswer(r.status, r.header, r.body, false); err != nil || r.status != http.StatusBadRequest ||
			!bytes.Contains(r.body, []byte(`"invalid_urn"`)) {
			t.Errorf("raw %q: %d %s (%v), want 400 invalid_urn", seg, r.status, r.body, err)
		}
	}
}

// Kind 5: no urn collides with a route.
func TestStatsIsNotAURN(t *testing.T) {
	f := newFixture(t)
	f.lifecycle("urn:rx:1")
	f.do(t0, request("urn:rx:stats", "pat-2"))
	f.do(t0, request("urn:stats:x", "pat-3"))
	c := f.serve(httpapi.Config{})

	for _, path := range []string{"/prescriptions/stats", "/prescriptions/%73tats", "/prescriptions/stats?minPosition=1"} {
		var s struct {
			Counts map[domain.Status]int `json:"counts"`
			Total  *int                  `json:"total"`
		}
		c.getJSON(path, http.StatusOK, &s)
		if s.Total == nil || *s.Total != 3 || s.Counts[domain.StatusRequested] != 2 {
			t.Errorf("%s: %+v, want the stats of 3 prescriptions", path, s)
		}
	}
	for _, urn := range []string{"urn:rx:stats", "urn:stats:x"} {
		var row rowJSON
		if c.getJSON("/prescriptions/"+urn, http.StatusOK, &row); row.URN != urn || row.Status != domain.StatusRequested {
			t.Errorf("%s: %+v", urn, row)
		}
		var h historyJSON
		if c.getJSON("/prescriptions/"+urn+"/history", http.StatusOK, &h); h.URN != urn || len(h.Events) != 1 {
			t.Errorf("%s/history: %+v", urn, h)
		}
	}
	// "stats" is the route's, never a urn.
	c.expectError("/prescriptions/stats/history", http.StatusBadRequest, "invalid_urn")
	c.expectError("/prescriptions/Stats", http.StatusBadRequest, "invalid_urn")
	c.expectError("/prescriptions/stats%20", http.StatusBadRequest, "invalid_urn")
}

// Kind 11: every answer is JSON; non-canonical paths are answered, never
// redirected.
func TestNoRedirects(t *testing.T) {
	f := newFixture(t)
	f.lifecycle("urn:rx:1")
	c := f.serve(httpapi.Config{})
	for _, tc := range []struct {
		method, target string
		auth           bool
		status         int
		code           string
	}{
		{"GET", "/.", true, 404, "not_found"},
		{"GET", "/.#", true, 404, "not_found"},
		{"GET", "/..", true, 404, "not_found"},
		{"GET", "//", true, 404, "not_found"},
		{"GET", "//prescriptions", true, 404, "not_found"},
		{"GET", "///effects/parked", true, 404, "not_found"},
		{"GET", "/./prescriptions", true, 404, "not_found"},
		{"GET", "/prescriptions/../effects/parked", true, 404, "not_found"},
		{"GET", "/prescriptions/./stats", true, 404, "not_found"},
		{"GET", "/prescriptions/", true, 404, "not_found"},
		{"GET", "/prescriptions//", true, 404, "not_found"},
		{"GET", "/prescriptions/stats/", true, 404, "not_found"},
		{"GET", "/prescriptions/urn:rx:1/", true, 404, "not_found"},
		{"GET", "/prescriptions/urn:rx:1//history", true, 404, "not_found"},
		{"GET", "/prescriptions/urn:rx:1/history/..", true, 404, "not_found"},
		{"GET", "/prescriptions/urn:rx:1/history/.", true, 404, "not_found"},
		{"GET", "/effects//parked", true, 404, "not_found"},
		{"GET", "/effects/parked/", true, 404, "not_found"},
		{"GET", "/effects/parked/.", true, 404, "not_found"},
		{"GET", "//prescriptions?limit=1", true, 404, "not_found"},
		{"GET", "http://127.0.0.1//prescriptions", true, 404, "not_found"},
		{"GET", "/%2E%2E/effects/parked", true, 404, "not_found"},
		{"POST", "//prescriptions", true, 404, "not_found"},
		{"CONNECT", "127.0.0.1:443", true, 404, "not_found"},
		{"GET", "/prescriptions/%2E%2E", true, 400, "invalid_urn"},
		{"GET", "/prescriptions/%2E%2E/history", true, 400, "invalid_urn"},
		{"GET", "/.", false, 401, "unauthorized"},
		{"GET", "//prescriptions", false, 401, "unauthorized"},
		{"GET", "/prescriptions/../effects/parked", false, 401, "unauthorized"},
		{"GET", "http://127.0.0.1/prescriptions/stats", true, 200, ""},
		{"GET", "/prescriptions/urn:rx:1", true, 200, ""},
	} {
		r := c.raw(tc.method, tc.target, tc.auth)
		var e apiError
		_ = json.Unmarshal(r.body, &e)
		if err := checkAnswer(r.status, r.header, r.body, false); err != nil || r.status != tc.status || e.Error != tc.code {
			t.Errorf("%s %s (auth %v): %d %v %s (%v), want %d %q", tc.method, tc.target, tc.auth, r.status, r.header, r.body, err, tc.status, tc.code)
		}
	}
	// Through Go's client, which drops the fragment of "/.#" and sends "/.".
	for _, path := range []string{"/.#", "/.", "//prescriptions", "/prescriptions/../effects/parked"} {
		c.expectError(path, http.StatusNotFound, "not_found")
	}
}

// Kind 11: methods and unknown routes answer JSON.
func TestMethodsAndUnknownRoutesAreJSON(t *testing.T) {
	f := newFixture(t)
	f.lifecycle("urn:rx:1")
	c := f.serve(httpapi.Config{})
	routes := []string{"/prescriptions", "/prescriptions/stats", "/prescriptions/urn:rx:1", "/prescriptions/urn:rx:1/history", "/effects/parked"}
	for _, m := range []string{"POST", "PUT", "PATCH", "DELETE", "OPTIONS", "TRACE", "HEAD", "FOO"} {
		for _, path := range routes {
			r := c.raw(m, path, true)
			if err := checkAnswer(r.status, r.header, r.body, m == http.MethodHead); err != nil || r.status != http.StatusMethodNotAllowed {
				t.Errorf("%s %s: %d %s (%v), want 405", m, path, r.status, r.body, err)
			}
		}
	}
	for _, path := range []string{"/", "/x", "/prescription", "/Prescriptions", "/prescriptions/urn:rx:1/history/x", "/effects", "/effects/parked/x",
		"/healthz", "/metrics", "/%FF", "/prescriptions;x"} {
		for _, m := range []string{"GET", "POST"} {
			r := c.raw(m, path, true)
			if err := checkAnswer(r.status, r.header, r.body, false); err != nil || r.status != http.StatusNotFound {
				t.Errorf("%s %s: %d %s (%v), want 404", m, path, r.status, r.body, err)
			}
		}
	}
	// A wrong method on an invalid urn: the method is checked first.
	if r := c.raw("POST", "/prescriptions/URN:rx:1", true); r.status != http.StatusMethodNotAllowed {
		t.Errorf("POST on an invalid urn: %d %s", r.status, r.body)
	}
}

// panicking is the real store, whose Stats panics with v.
type panicking struct {
	*readmodel.Store
	v any
}

func (p panicking) Stats(context.Context, string) (map[domain.Status]int, error) { panic(p.v) }

// Kind 11: a panic is a logged JSON 500, and the server goes on.
func TestPanicIsJSON500(t *testing.T) {
	f := newFixture(t)
	f.lifecycle("urn:rx:1")
	var logs bytes.Buffer
	var mu sync.Mutex
	logger := slog.New(slog.NewTextHandler(&lockedWriter{w: &logs, mu: &mu}, nil))
	c := serve(t, httpapi.Config{Logger: logger}, panicking{Store: f.store, v: "secret-state"}, f.hist, parkedList{})

	_, r := c.expectError("/prescriptions/stats", http.StatusInternalServerError, "internal")
	if bytes.Contains(r.body, []byte("secret")) || r.header.Get("Content-Type") != "application/json" {
		t.Errorf("panic answer: %v %s", r.header, r.body)
	}
	var row rowJSON
	c.getJSON("/prescriptions/urn:rx:1", http.StatusOK, &row)
	mu.Lock()
	for _, want := range []string{"handler panicked", "secret-state", "route=/prescriptions/stats", "stack="} {
		if !bytes.Contains(logs.Bytes(), []byte(want)) {
			t.Errorf("log lacks %q: %s", want, logs.Bytes())
		}
	}
	mu.Unlock()

	// http.ErrAbortHandler is net/http's way to abort an answer: it is not
	// turned into a 500.
	abort := serve(t, httpapi.Config{Logger: logger}, panicking{Store: f.store, v: http.ErrAbortHandler}, f.hist, parkedList{})
	req, err := http.NewRequest(http.MethodGet, abort.url+"/prescriptions/stats", nil)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+token)
	if resp, err := httpClient.Do(req); err == nil {
		resp.Body.Close()
		t.Errorf("an aborted handler answered %d", resp.StatusCode)
	}
}

// Item 4: string query parameters are valid UTF-8, or the request is a 400;
// no answer echoes invalid UTF-8.
func TestQueryStringsMustBeUTF8(t *testing.T) {
	f := newFixture(t)
	f.lifecycle("urn:rx:1")
	c := f.serve(httpapi.Config{})
	for _, path := range []string{
		"/prescriptions?patientId=%FF",
		"/prescriptions?patientId=pat-1%C3",
		"/prescriptions?patientId=%ED%A0%80",
		"/prescriptions?patientId=%C0%AF",
		"/prescriptions?pharmacyId=%FE%FF",
		"/prescriptions?status=%FF",
		"/prescriptions?status=requested%80",
		"/prescriptions?cursor=%FF",
		"/prescriptions?limit=-1&cursor=%ff",
		"/prescriptions?%FF=1",
		"/prescriptions?patientId=a&patientId=%FF",
		"/prescriptions/stats?%FF",
		"/prescriptions/urn:rx:1?minPosition=%FF",
		"/prescriptions/urn:rx:1/history?asOf=%FF",
		"/effects/parked?%C3=",
	} {
		_, r := c.expectError(path, http.StatusBadRequest, "bad_request")
		if !utf8.Valid(r.body) {
			t.Errorf("%s: body not valid UTF-8: %q", path, r.body)
		}
	}
	for _, target := range []string{"/prescriptions?patientId=\xff", "/prescriptions?\xc3=1", "/prescriptions/urn:rx:1/history?asOf=\xff\xfe"} {
		r := c.raw(http.MethodGet, target, true)
		if err := checkAnswer(r.status, r.header, r.body, false); err != nil || r.status != http.StatusBadRequest {
			t.Errorf("raw %q: %d %s (%v), want 400", target, r.status, r.body, err)
		}
	}
	// Valid UTF-8 beyond ASCII is a filter like any other.
	for _, q := range []string{"patientId=pat-%C3%A9", "pharmacyId=%E2%82%AC", "patientId=%F0%9F%92%8A"} {
		var page listJSON
		if c.getJSON("/prescriptions?"+q, http.StatusOK, &page); page.Items == nil || len(page.Items) != 0 {
			t.Errorf("%s: %+v, want an empty page", q, page)
		}
	}
}

// Kind 5: openapi.yaml and docs/api.md state the grammar the API enforces.
func TestContractsStateTheURNGrammar(t *testing.T) {
	spec, err := os.ReadFile("../../openapi.yaml")
	if err != nil {
		t.Fatal(err)
	}
	_, param, ok := strings.Cut(string(spec), "\n  parameters:\n    urn:\n")
	if param, _, _ = strings.Cut(param, "    minPosition:\n"); !ok {
		t.Fatal("openapi.yaml: no urn parameter")
	}
	for _, want := range []string{
		"      schema:\n        type: string\n",
		fmt.Sprintf("\n        maxLength: %d\n", domain.MaxURNLength),
		"\n        pattern: '" + strings.ReplaceAll(domain.URNGrammar, "'", "''") + "'\n",
	} {
		if !strings.Contains(param, want) {
			t.Errorf("openapi.yaml: the urn parameter lacks %q:\n%s", want, param)
		}
	}
	if !bytes.Contains(spec, []byte("enum: [bad_request, invalid_urn,")) {
		t.Error("openapi.yaml: the Error schema lacks invalid_urn")
	}
	doc, err := os.ReadFile("../../docs/api.md")
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Contains(doc, []byte("```\n"+domain.URNGrammar+"\n```")) {
		t.Error("docs/api.md does not state the grammar")
	}
}

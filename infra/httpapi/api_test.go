package httpapi_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"slices"
	"strconv"
	"sync"
	"testing"
	"time"

	"rxflow/domain"
	"rxflow/events"
	"rxflow/infra/httpapi"
	"rxflow/infra/readmodel"
	"rxflow/projections"
)

const token = "s3cret-token"

var t0 = time.Date(2025, 3, 1, 9, 0, 0, 0, time.UTC)

// memHistory is an in-memory projections.History.
type memHistory struct {
	mu      sync.Mutex
	streams map[string][]events.Recorded
}

func (m *memHistory) Load(_ context.Context, urn string) ([]events.Recorded, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	return slices.Clone(m.streams[urn]), nil
}

type parkedList []projections.Effect

func (p parkedList) Parked(context.Context) ([]projections.Effect, error) { return p, nil }

// fixture is a store and a history fed with the same events.
type fixture struct {
	t     testing.TB
	store *readmodel.Store
	hist  *memHistory
	pos   uint64
}

func newFixture(t testing.TB) *fixture {
	t.Helper()
	store, err := readmodel.Open("")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { store.Close() })
	return &fixture{t: t, store: store, hist: &memHistory{streams: map[string][]events.Recorded{}}}
}

// record decides c at time at against urn's stream and returns its events
// as the event store would hand them back, appended to the history.
func (f *fixture) record(at time.Time, c domain.Command) []events.Recorded {
	f.t.Helper()
	f.hist.mu.Lock()
	defer f.hist.mu.Unlock()
	stream := f.hist.streams[c.URN]
	var p domain.Prescription
	for _, r := range stream {
		p = domain.Evolve(p, r.Event)
	}
	evs, err := domain.Decide(p, c, at)
	if err != nil {
		f.t.Fatalf("decide %s on %s: %v", c.Type, c.URN, err)
	}
	cmdID := fmt.Sprintf("cmd-%s-%d", c.URN, len(stream))
	var out []events.Recorded
	for i, e := range evs {
		name, data, err := events.Encode(e)
		if err != nil {
			f.t.Fatal(err)
		}
		f.pos += 100
		rec := events.Recorded{
			URN: c.URN, Name: name, Event: e, Data: data,
			Revision: uint64(len(stream)), Position: f.pos, Created: at.Add(time.Millisecond),
			Meta: events.Metadata{EventID: events.EventID(c.URN, cmdID, i).String(), CommandID: cmdID, CorrelationID: "corr-" + cmdID,
				CausationID: "msg-" + cmdID, Actor: c.Actor, OccurredAt: at, SchemaVersion: events.SchemaVersion(name)},
		}
		stream = append(stream, rec)
		out = append(out, rec)
	}
	f.hist.streams[c.URN] = stream
	return out
}

// do records c and applies its events to the read model.
func (f *fixture) do(at time.Time, c domain.Command) {
	f.t.Helper()
	for _, rec := range f.record(at, c) {
		if err := f.store.Apply(context.Background(), rec); err != nil {
			f.t.Fatal(err)
		}
	}
}

func request(urn, patient string) domain.Command {
	return domain.Command{Type: domain.Request, URN: urn, Actor: "dr-1", PatientID: patient, PrescriberID: "dr-1", PharmacyID: "ph-1",
		Medication: domain.Medication{Name: "Amoxicillin", Strength: "500mg", Quantity: 30, Refills: 1}}
}

// lifecycle takes urn from request to completion, one minute a step from t0.
func (f *fixture) lifecycle(urn string) {
	f.t.Helper()
	for i, c := range []domain.Command{
		request(urn, "pat-1"),
		{Type: domain.Approve, URN: urn, Actor: "dr-1"},
		{Type: domain.Process, URN: urn, Actor: "system", PharmacyID: "ph-9"},
		{Type: domain.Dispense, URN: urn, Actor: "ph-9", Dispensing: domain.Dispensing{By: "tech-2", Quantity: 30, LotNumber: "L1"}},
		{Type: domain.Complete, URN: urn, Actor: "ph-9"},
	} {
		f.do(t0.Add(time.Duration(i)*time.Minute), c)
	}
}

// httpClient bounds every request, so that a handler that hangs fails the
// test instead of stalling it.
var httpClient = &http.Client{Timeout: 30 * time.Second}

// client talks to a test server.
type client struct {
	t   testing.TB
	url string
}

// staticAuth accepts the static token only, as the operator.
func staticAuth(t testing.TB) *httpapi.Authenticator {
	t.Helper()
	a, err := httpapi.NewAuthenticator(httpapi.AuthConfig{StaticToken: token})
	if err != nil {
		t.Fatal(err)
	}
	return a
}

// memAccessLog is an in-memory access log, closed with the test.
func memAccessLog(t testing.TB) *readmodel.AccessLog {
	t.Helper()
	l, err := readmodel.OpenAccessLog("")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	return l
}

// serve serves the API over rm, h and parked; cfg's Auth defaults to
// staticAuth, its AccessLog to memAccessLog.
func serve(t testing.TB, cfg httpapi.Config, rm httpapi.ReadModel, h projections.History, parked projections.ParkedEffects) *client {
	t.Helper()
	if cfg.Auth == nil {
		cfg.Auth = staticAuth(t)
	}
	if cfg.AccessLog == nil {
		cfg.AccessLog = memAccessLog(t)
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	handler, err := httpapi.NewHandler(cfg, rm, h, parked)
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(handler)
	t.Cleanup(srv.Close)
	return &client{t: t, url: srv.URL}
}

func (f *fixture) serve(cfg httpapi.Config, parked ...projections.Effect) *client {
	return serve(f.t, cfg, f.store, f.hist, parkedList(parked))
}

type response struct {
	status int
	header http.Header
	body   []byte
}

// send makes a request with the given Authorization header ("" for none).
func (c *client) send(method, path, auth string) response {
	c.t.Helper()
	req, err := http.NewRequest(method, c.url+path, nil)
	if err != nil {
		c.t.Fatal(err)
	}
	if auth != "" {
		req.Header.Set("Authorization", auth)
	}
	resp, err := httpClient.Do(req)
	if err != nil {
		c.t.Fatal(err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		c.t.Fatal(err)
	}
	return response{status: resp.StatusCode, header: resp.Header, body: body}
}

func (c *client) get(path string) response {
	c.t.Helper()
	return c.send(http.MethodGet, path, "Bearer "+token)
}

// getJSON expects status and decodes the body into v.
func (c *client) getJSON(path string, status int, v any) response {
	c.t.Helper()
	r := c.get(path)
	if r.status != status {
		c.t.Fatalf("GET %s: %d %s, want %d", path, r.status, r.body, status)
	}
	if ct := r.header.Get("Content-Type"); ct != "application/json" {
		c.t.Errorf("GET %s: Content-Type %q", path, ct)
	}
	if err := json.Unmarshal(r.body, v); err != nil {
		c.t.Fatalf("GET %s: %v in %s", path, err, r.body)
	}
	return r
}

type apiError struct {
	Error      string  `json:"error"`
	Message    string  `json:"message"`
	Checkpoint *uint64 `json:"checkpoint"`
}

// expectError expects a JSON error answer.
func (c *client) expectError(path string, status int, code string) (apiError, response) {
	c.t.Helper()
	var e apiError
	r := c.getJSON(path, status, &e)
	if e.Error != code || e.Message == "" {
		c.t.Errorf("GET %s: error %+v, want code %q and a message", path, e, code)
	}
	return e, r
}

func positionHeader(t *testing.T, r response) uint64 {
	t.Helper()
	v := r.header.Get(httpapi.PositionHeader)
	pos, err := strconv.ParseUint(v, 10, 64)
	if err != nil {
		t.Fatalf("%s = %q: %v", httpapi.PositionHeader, v, err)
	}
	return pos
}

type rowJSON struct {
	URN          string            `json:"urn"`
	Status       domain.Status     `json:"status"`
	PatientID    string            `json:"patientId"`
	PharmacyID   string            `json:"pharmacyId"`
	Medication   domain.Medication `json:"medication"`
	ApprovedBy   string            `json:"approvedBy"`
	Dispensing   domain.Dispensing `json:"dispensing"`
	CompletedAt  time.Time         `json:"completedAt"`
	LastRevision uint64            `json:"lastRevision"`
	LastPosition uint64            `json:"lastPosition"`
	UpdatedAt    time.Time         `json:"updatedAt"`
}

type listJSON struct {
	Items      []rowJSON `json:"items"`
	NextCursor *string   `json:"nextCursor"`
}

func TestNewHandlerRefusesBadConfig(t *testing.T) {
	f := newFixture(t)
	auth, log := staticAuth(t), memAccessLog(t)
	for name, c := range map[string]struct {
		cfg    httpapi.Config
		rm     httpapi.ReadModel
		h      projections.History
		parked projections.ParkedEffects
	}{
		"no authenticator": {httpapi.Config{AccessLog: log}, f.store, f.hist, parkedList{}},
		"no access log":    {httpapi.Config{Auth: auth}, f.store, f.hist, parkedList{}},
		"negative timeout": {httpapi.Config{Auth: auth, AccessLog: log, WaitTimeout: -time.Second}, f.store, f.hist, parkedList{}},
		"no read model":    {httpapi.Config{Auth: auth, AccessLog: log}, nil, f.hist, parkedList{}},
		"no history":       {httpapi.Config{Auth: auth, AccessLog: log}, f.store, nil, parkedList{}},
		"no parked":        {httpapi.Config{Auth: auth, AccessLog: log}, f.store, f.hist, nil},
	} {
		if h, err := httpapi.NewHandler(c.cfg, c.rm, c.h, c.parked); err == nil || h != nil {
			t.Errorf("%s: got a handler (err %v)", name, err)
		}
	}
}

func TestAuth(t *testing.T) {
	f := newFixture(t)
	f.lifecycle("urn:rx:1")
	c := f.serve(httpapi.Config{})
	paths := []string{"/prescriptions", "/prescriptions/stats", "/prescriptions/urn:rx:1", "/prescriptions/urn:rx:1/history",
		"/prescriptions/urn:rx:1/history?asOf=0", "/effects/parked", "/no/such/route", "/healthz"}
	for _, auth := range []string{"", "Bearer", "Bearer ", "Bearer wrong", "Bearer " + token + "x", "Basic " + token, token, "Bearer  " + token} {
		for _, p := range paths {
			r := c.send(http.MethodGet, p, auth)
			var e apiError
			if err := json.Unmarshal(r.body, &e); err != nil || r.status != http.StatusUnauthorized || e.Error != "unauthorized" {
				t.Errorf("%q %s: %d %s, want 401 unauthorized", auth, p, r.status, r.body)
			}
			if got := r.header.Get("WWW-Authenticate"); got != "Bearer" {
				t.Errorf("%q %s: WWW-Authenticate %q", auth, p, got)
			}
		}
	}
	for _, auth := range []string{"Bearer " + token, "bearer " + token} {
		for _, p := range paths[:6] {
			if r := c.send(http.MethodGet, p, auth); r.status != http.StatusOK {
				t.Errorf("%q %s: %d %s, want 200", auth, p, r.status, r.body)
			}
		}
	}
}

func TestGetPrescription(t *testing.T) {
	f := newFixture(t)
	f.lifecycle("urn:rx:1")
	f.do(t0, request("urn:rx:2", "pat-2"))
	c := f.serve(httpapi.Config{})

	for _, path := range []string{"/prescriptions/urn:rx:1", "/prescriptions/urn%3Arx%3A1", "/prescriptions/urn%3arx:1"} {
		var row rowJSON
		r := c.getJSON(path, http.StatusOK, &row)
		want := rowJSON{URN: "urn:rx:1", Status: domain.StatusCompleted, PatientID: "pat-1", PharmacyID: "ph-9",
			Medication: domain.Medication{Name: "Amoxicillin", CodeSystem: domain.CodeSystemUnknown, Strength: "500mg", Quantity: 30, Refills: 1}, ApprovedBy: "dr-1",
			Dispensing: domain.Dispensing{By: "tech-2", Quantity: 30, LotNumber: "L1"}, CompletedAt: t0.Add(4 * time.Minute),
			LastRevision: 4, LastPosition: 500, UpdatedAt: t0.Add(4 * time.Minute)}
		if !row.CompletedAt.Equal(want.CompletedAt) || !row.UpdatedAt.Equal(want.UpdatedAt) {
			t.Errorf("%s: times %v %v", path, row.CompletedAt, row.UpdatedAt)
		}
		row.CompletedAt, row.UpdatedAt, want.CompletedAt, want.UpdatedAt = time.Time{}, time.Time{}, time.Time{}, time.Time{}
		if row != want {
			t.Errorf("%s:\n got %+v\nwant %+v", path, row, want)
		}
		if pos := positionHeader(t, r); pos != f.pos {
			t.Errorf("%s: position header %d, want %d", path, pos, f.pos)
		}
	}

	var raw map[string]any
	c.getJSON("/prescriptions/urn:rx:2", http.StatusOK, &raw)
	for _, k := range []string{"approvedBy", "approvedAt", "completedAt", "dispensing", "failureReason"} {
		if _, ok := raw[k]; ok {
			t.Errorf("a requested prescription shows unset %q: %v", k, raw)
		}
	}

	_, r := c.expectError("/prescriptions/urn:rx:404", http.StatusNotFound, "not_found")
	if pos := positionHeader(t, r); pos != f.pos {
		t.Errorf("404: position header %d, want %d", pos, f.pos)
	}
}

func TestListPaginates(t *testing.T) {
	f := newFixture(t)
	var all []string
	for i := range 23 {
		urn := fmt.Sprintf("urn:rx:%03d", i)
		all = append(all, urn)
		f.do(t0, request(urn, "pat-"+strconv.Itoa(i%3)))
		if i%4 == 0 {
			f.do(t0.Add(time.Minute), domain.Command{Type: domain.Approve, URN: urn, Actor: "dr-1"})
		}
	}
	c := f.serve(httpapi.Config{})

	for _, limit := range []int{1, 5, 23, 500} {
		var got []string
		path := fmt.Sprintf("/prescriptions?limit=%d", limit)
		for pages := 0; ; pages++ {
			if pages > 30 {
				t.Fatalf("limit %d: too many pages", limit)
			}
			var page listJSON
			r := c.getJSON(path, http.StatusOK, &page)
			if pos := positionHeader(t, r); pos != f.pos {
				t.Errorf("position header %d, want %d", pos, f.pos)
			}
			if len(page.Items) > limit {
				t.Fatalf("limit %d: page of %d", limit, len(page.Items))
			}
			for _, it := range page.Items {
				got = append(got, it.URN)
			}
			if page.NextCursor == nil {
				break
			}
			path = fmt.Sprintf("/prescriptions?limit=%d&cursor=%s", limit, url.QueryEscape(*page.NextCursor))
		}
		if !slices.Equal(got, all) {
			t.Errorf("limit %d: pages hold %v, want %v", limit, got, all)
		}
	}

	var page listJSON
	c.getJSON("/prescriptions", http.StatusOK, &page)
	if len(page.Items) != 23 || page.NextCursor != nil {
		t.Errorf("default page: %d items, cursor %v", len(page.Items), page.NextCursor)
	}
}

func TestListFilters(t *testing.T) {
	f := newFixture(t)
	f.lifecycle("urn:rx:done")
	f.do(t0, request("urn:rx:a", "pat-2"))
	f.do(t0, request("urn:rx:b", "pat-2"))
	f.do(t0, domain.Command{Type: domain.Approve, URN: "urn:rx:b", Actor: "dr-1"})
	c := f.serve(httpapi.Config{})
	for query, want := range map[string][]string{
		"status=requested":                  {"urn:rx:a"},
		"status=approved":                   {"urn:rx:b"},
		"status=completed":                  {"urn:rx:done"},
		"status=failed":                     nil,
		"patientId=pat-2":                   {"urn:rx:a", "urn:rx:b"},
		"patientId=pat-2&status=approved":   {"urn:rx:b"},
		"pharmacyId=ph-9":                   {"urn:rx:done"},
		"pharmacyId=ph-1":                   {"urn:rx:a", "urn:rx:b"},
		"patientId=nobody":                  nil,
		"status=&patientId=&pharmacyId=":    {"urn:rx:a", "urn:rx:b", "urn:rx:done"},
		"minPosition=1&timeout=1s&limit=10": {"urn:rx:a", "urn:rx:b", "urn:rx:done"},
	} {
		var page listJSON
		c.getJSON("/prescriptions?"+query, http.StatusOK, &page)
		var got []string
		for _, it := range page.Items {
			got = append(got, it.URN)
		}
		if !slices.Equal(got, want) || page.Items == nil {
			t.Errorf("%s: got %v (items %v), want %v", query, got, page.Items, want)
		}
	}
}

func TestBadParams(t *testing.T) {
	f := newFixture(t)
	f.lifecycle("urn:rx:1")
	c := f.serve(httpapi.Config{})
	for _, path := range []string{
		"/prescriptions?status=bogus",
		"/prescriptions?status=Requested",
		"/prescriptions?limit=0",
		"/prescriptions?limit=501",
		"/prescriptions?limit=-1",
		"/prescriptions?limit=ten",
		"/prescriptions?limit=",
		"/prescriptions?cursor=***",
		"/prescriptions?limit=5&limit=6",
		"/prescriptions?patient_id=pat-1",
		"/prescriptions?minPosition=-1",
		"/prescriptions?minPosition=x",
		"/prescriptions?timeout=0s",
		"/prescriptions?timeout=soon",
		"/prescriptions/stats?status=requested",
		"/prescriptions/urn:rx:1?limit=5",
		"/prescriptions/urn:rx:1?minPosition=1&timeout=-1s",
		"/prescriptions/urn:rx:1/history?asOf=yesterday",
		"/prescriptions/urn:rx:1/history?asOf=",
		"/prescriptions/urn:rx:1/history?asOf=-1",
		"/prescriptions/urn:rx:1/history?asOf=2025-03-01",
		"/prescriptions/urn:rx:1/history?asOf=0&asOf=1",
		"/prescriptions/urn:rx:1/history?at=0",
		"/effects/parked?all=1",
		"/effects/parked?%zz",
		"/prescriptions?status=%zz",
		"/prescriptions?status=requested;limit=5",
		"/prescriptions/urn:rx:1/history?asOf=%zz",
	} {
		_, r := c.expectError(path, http.StatusBadRequest, "bad_request")
		if u, _ := url.Parse(path); u.Path == "/prescriptions" && positionHeader(t, r) != f.pos {
			t.Errorf("%s: position header %q", path, r.header.Get(httpapi.PositionHeader))
		}
	}
}

func TestStats(t *testing.T) {
	f := newFixture(t)
	f.lifecycle("urn:rx:1")
	f.do(t0, request("urn:rx:2", "pat-2"))
	f.do(t0, request("urn:rx:3", "pat-3"))
	f.do(t0, domain.Command{Type: domain.Reject, URN: "urn:rx:3", Actor: "dr-1", Reason: "interaction"})
	c := f.serve(httpapi.Config{})
	var stats struct {
		Counts map[domain.Status]int `json:"counts"`
		Total  int                   `json:"total"`
	}
	r := c.getJSON("/prescriptions/stats", http.StatusOK, &stats)
	want := map[domain.Status]int{domain.StatusRequested: 1, domain.StatusRejected: 1, domain.StatusCompleted: 1}
	for _, s := range domain.Statuses {
		if n, ok := stats.Counts[s]; !ok || n != want[s] {
			t.Errorf("%s: %d (present %v), want %d", s, n, ok, want[s])
		}
	}
	if len(stats.Counts) != len(domain.Statuses) || stats.Total != 3 {
		t.Errorf("stats %+v", stats)
	}
	if pos := positionHeader(t, r); pos != f.pos {
		t.Errorf("position header %d, want %d", pos, f.pos)
	}
}

type historyJSON struct {
	URN    string `json:"urn"`
	Events []struct {
		EventID       string          `json:"eventId"`
		EventType     string          `json:"eventType"`
		Event         string          `json:"event"`
		Revision      uint64          `json:"revision"`
		Position      uint64          `json:"position"`
		Time          time.Time       `json:"time"`
		Recorded      time.Time       `json:"recorded"`
		Actor         string          `json:"actor"`
		CommandID     string          `json:"commandId"`
		CorrelationID string          `json:"correlationId"`
		CausationID   string          `json:"causationId"`
		Payload       json.RawMessage `json:"payload"`
	} `json:"events"`
}

func TestHistory(t *testing.T) {
	f := newFixture(t)
	f.lifecycle("urn:rx:1")
	// Stored but not yet projected: history reads the event store.
	f.record(t0, request("urn:rx:new", "pat-2"))
	c := f.serve(httpapi.Config{})

	for _, path := range []string{"/prescriptions/urn:rx:1/history", "/prescriptions/urn%3Arx%3A1/history"} {
		var h historyJSON
		r := c.getJSON(path, http.StatusOK, &h)
		if h.URN != "urn:rx:1" || len(h.Events) != 5 {
			t.Fatalf("%s: %s", path, r.body)
		}
		if r.header.Get(httpapi.PositionHeader) != "" {
			t.Errorf("%s: history, not read from the read model, has a position header", path)
		}
		stream, _ := f.hist.Load(context.Background(), "urn:rx:1")
		wantEvents := []string{"prescription.request", "prescription.approve", "prescription.process", "prescription.dispense", "prescription.complete"}
		for i, e := range h.Events {
			rec := stream[i]
			if e.Event != wantEvents[i] || e.EventType != rec.Name || e.Revision != uint64(i) || e.Position != rec.Position ||
				!e.Time.Equal(rec.Meta.OccurredAt) || !e.Recorded.Equal(rec.Created) || e.EventID != rec.Meta.EventID ||
				e.CommandID != rec.Meta.CommandID || e.Actor != rec.Meta.Actor || e.CorrelationID != rec.Meta.CorrelationID ||
				e.CausationID != rec.Meta.CausationID {
				t.Errorf("%s: event %d = %+v, want %s from %+v", path, i, e, wantEvents[i], rec)
			}
			var got, want any
			if json.Unmarshal(e.Payload, &got) != nil || json.Unmarshal(rec.Data, &want) != nil || fmt.Sprint(got) != fmt.Sprint(want) {
				t.Errorf("%s: event %d payload %s, want %s", path, i, e.Payload, rec.Data)
			}
		}
	}

	var h historyJSON
	c.getJSON("/prescriptions/urn:rx:new/history", http.StatusOK, &h)
	if len(h.Events) != 1 || h.Events[0].Event != "prescription.request" {
		t.Errorf("unprojected stream: %+v", h)
	}
	c.expectError("/prescriptions/urn:rx:new", http.StatusNotFound, "not_found")
	c.expectError("/prescriptions/urn:rx:404/history", http.StatusNotFound, "not_found")
}

type snapshotJSON struct {
	URN          string        `json:"urn"`
	Status       domain.Status `json:"status"`
	Revision     uint64        `json:"revision"`
	AsOf         time.Time     `json:"asOf"`
	Prescription rowJSON       `json:"prescription"`
}

func TestHistoryAsOf(t *testing.T) {
	f := newFixture(t)
	f.lifecycle("urn:rx:1")
	c := f.serve(httpapi.Config{})
	for _, tc := range []struct {
		asOf     string
		status   domain.Status
		revision uint64
		at       time.Time
	}{
		{"2025-03-01T09:00:00Z", domain.StatusRequested, 0, t0},
		{"2025-03-01T09:01:30Z", domain.StatusApproved, 1, t0.Add(90 * time.Second)},
		{"2025-03-01T10:01:30%2B01:00", domain.StatusApproved, 1, t0.Add(90 * time.Second)},
		{"2025-03-01T09:01:59.999999999Z", domain.StatusApproved, 1, t0.Add(2*time.Minute - time.Nanosecond)},
		{"2025-03-01T09:03:00Z", domain.StatusDispensed, 3, t0.Add(3 * time.Minute)},
		{"2030-01-01T00:00:00Z", domain.StatusCompleted, 4, time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)},
		{"0", domain.StatusRequested, 0, t0},
		{"2", domain.StatusProcessing, 2, t0.Add(2 * time.Minute)},
		{"4", domain.StatusCompleted, 4, t0.Add(4 * time.Minute)},
		{"1000", domain.StatusCompleted, 4, t0.Add(4 * time.Minute)},
	} {
		var s snapshotJSON
		path := "/prescriptions/urn:rx:1/history?asOf=" + tc.asOf
		c.getJSON(path, http.StatusOK, &s)
		if s.URN != "urn:rx:1" || s.Status != tc.status || s.Prescription.Status != tc.status || s.Revision != tc.revision || !s.AsOf.Equal(tc.at) {
			t.Errorf("%s: %+v, want %s at revision %d as of %v", path, s, tc.status, tc.revision, tc.at)
		}
		if s.Prescription.URN != "urn:rx:1" || s.Prescription.PatientID != "pat-1" {
			t.Errorf("%s: prescription %+v", path, s.Prescription)
		}
	}
	early, _ := c.expectError("/prescriptions/urn:rx:1/history?asOf=2025-03-01T08:59:59Z", http.StatusNotFound, "not_found")
	if want := `prescription "urn:rx:1" did not exist yet at 2025-03-01T08:59:59Z: its first event occurred at 2025-03-01T09:00:00Z`; early.Message != want {
		t.Errorf("asOf before the first event: message %q, want %q", early.Message, want)
	}
	missing, _ := c.expectError("/prescriptions/urn:rx:404/history?asOf=0", http.StatusNotFound, "not_found")
	if want := `prescription "urn:rx:404" not found`; missing.Message != want {
		t.Errorf("unknown prescription: message %q, want %q", missing.Message, want)
	}
}

func TestParkedEffects(t *testing.T) {
	f := newFixture(t)
	var empty struct {
		Items []projections.Effect `json:"items"`
	}
	f.serve(httpapi.Config{}).getJSON("/effects/parked", http.StatusOK, &empty)
	if empty.Items == nil || len(empty.Items) != 0 {
		t.Errorf("no parked effects: %+v, want an empty list", empty)
	}

	parked := []projections.Effect{
		{ID: "pharmacy/e1", Projector: "pharmacy", URN: "urn:rx:1", EventID: "e1", EventName: events.NameApproved,
			Status: projections.EffectParked, Error: "partner call failed: 503", At: t0},
		{ID: "insurance/e2", Projector: "insurance", URN: "urn:rx:2", EventID: "e2", EventName: events.NameRequested,
			Status: projections.EffectParked, Error: "partner call failed: 500", At: t0.Add(time.Second)},
	}
	var got struct {
		Items []projections.Effect `json:"items"`
	}
	f.serve(httpapi.Config{}, parked...).getJSON("/effects/parked", http.StatusOK, &got)
	if len(got.Items) != 2 {
		t.Fatalf("got %+v", got)
	}
	for i := range parked {
		g, w := got.Items[i], parked[i]
		if !g.At.Equal(w.At) {
			t.Errorf("effect %d at %v, want %v", i, g.At, w.At)
		}
		g.At, w.At = time.Time{}, time.Time{}
		if g != w {
			t.Errorf("effect %d = %+v, want %+v", i, g, w)
		}
	}
}

// waitSignal is the real store, announcing each WaitFor call.
type waitSignal struct {
	*readmodel.Store
	waiting chan uint64
}

func (w waitSignal) WaitFor(ctx context.Context, position uint64) error {
	w.waiting <- position
	return w.Store.WaitFor(ctx, position)
}

func TestMinPositionWaitsForTheWrite(t *testing.T) {
	f := newFixture(t)
	for _, urn := range []string{"urn:rx:a", "urn:rx:b", "urn:rx:c"} {
		f.do(t0, request(urn, "pat-1"))
	}
	rm := waitSignal{Store: f.store, waiting: make(chan uint64, 1)}
	c := serve(t, httpapi.Config{WaitTimeout: time.Minute}, rm, f.hist, parkedList{})

	for _, tc := range []struct {
		urn, path string
		check     func(body []byte) bool
	}{
		{"urn:rx:a", "/prescriptions/urn:rx:a?minPosition=%d", func(b []byte) bool {
			var row rowJSON
			return json.Unmarshal(b, &row) == nil && row.Status == domain.StatusApproved
		}},
		{"urn:rx:b", "/prescriptions?status=approved&minPosition=%d", func(b []byte) bool {
			var page listJSON
			return json.Unmarshal(b, &page) == nil && len(page.Items) == 2 && page.Items[1].URN == "urn:rx:b"
		}},
		{"urn:rx:c", "/prescriptions/stats?minPosition=%d", func(b []byte) bool {
			var s struct{ Counts map[domain.Status]int }
			return json.Unmarshal(b, &s) == nil && s.Counts[domain.StatusApproved] == 3 && s.Counts[domain.StatusRequested] == 0
		}},
	} {
		// The write's position, as the command side would have learned it.
		rec := f.record(t0.Add(time.Minute), domain.Command{Type: domain.Approve, URN: tc.urn, Actor: "dr-1"})[0]
		path := fmt.Sprintf(tc.path, rec.Position)
		done := make(chan response, 1)
		go func() { done <- c.get(path) }()
		select {
		case got := <-rm.waiting:
			if got != rec.Position {
				t.Fatalf("%s: waits for %d", path, got)
			}
		case r := <-done:
			t.Fatalf("%s: answered %d %s without waiting", path, r.status, r.body)
		}
		if err := f.store.Apply(context.Background(), rec); err != nil {
			t.Fatal(err)
		}
		r := <-done
		if r.status != http.StatusOK || !tc.check(r.body) {
			t.Errorf("%s: %d %s", path, r.status, r.body)
		}
		if pos := positionHeader(t, r); pos != rec.Position {
			t.Errorf("%s: position header %d, want %d", path, pos, rec.Position)
		}
	}
}

func TestMinPositionTimesOut(t *testing.T) {
	f := newFixture(t)
	f.lifecycle("urn:rx:1")
	short := f.serve(httpapi.Config{WaitTimeout: 50 * time.Millisecond})
	long := f.serve(httpapi.Config{WaitTimeout: time.Minute})
	for _, tc := range []struct {
		c    *client
		path string
	}{
		{short, "/prescriptions/urn:rx:1?minPosition=501"},
		{short, "/prescriptions?minPosition=100000&timeout=1h"}, // capped by WaitTimeout
		{short, "/prescriptions/stats?minPosition=501"},
		{long, "/prescriptions/urn:rx:1?minPosition=501&timeout=20ms"},
	} {
		e, r := tc.c.expectError(tc.path, http.StatusGatewayTimeout, "timeout")
		if e.Checkpoint == nil || *e.Checkpoint != f.pos {
			t.Errorf("%s: checkpoint %v, want %d", tc.path, e.Checkpoint, f.pos)
		}
		if pos := positionHeader(t, r); pos != f.pos {
			t.Errorf("%s: position header %d, want %d", tc.path, pos, f.pos)
		}
	}
	// Already there: no wait.
	for _, path := range []string{"/prescriptions/urn:rx:1?minPosition=500", "/prescriptions/urn:rx:1?minPosition=0"} {
		var row rowJSON
		short.getJSON(path, http.StatusOK, &row)
	}
}

func TestRoutingErrors(t *testing.T) {
	f := newFixture(t)
	f.lifecycle("urn:rx:1")
	c := f.serve(httpapi.Config{})
	for _, path := range []string{"/", "/prescription", "/prescriptions/urn:rx:1/history/x", "/prescriptions/urn:rx:1/other", "/effects", "/healthz", "/metrics"} {
		c.expectError(path, http.StatusNotFound, "not_found")
	}
	for _, m := range []string{http.MethodPost, http.MethodDelete, http.MethodPut} {
		for _, path := range []string{"/prescriptions", "/prescriptions/urn:rx:1", "/prescriptions/stats", "/prescriptions/urn:rx:1/history", "/effects/parked"} {
			r := c.send(m, path, "Bearer "+token)
			var e apiError
			if r.status != http.StatusMethodNotAllowed || json.Unmarshal(r.body, &e) != nil || e.Error != "method_not_allowed" || r.header.Get("Allow") != "GET" {
				t.Errorf("%s %s: %d %v %s", m, path, r.status, r.header, r.body)
			}
		}
	}
}

type brokenHistory struct{}

func (brokenHistory) Load(context.Context, string) ([]events.Recorded, error) {
	return nil, errors.New("esdb: connection refused to secret-host:2113")
}

type brokenParked struct{}

func (brokenParked) Parked(context.Context) ([]projections.Effect, error) {
	return nil, errors.New("pebble: secret-file locked")
}

func TestInternalErrorsAreLoggedNotLeaked(t *testing.T) {
	f := newFixture(t)
	var logs bytes.Buffer
	var mu sync.Mutex
	logger := slog.New(slog.NewTextHandler(&lockedWriter{w: &logs, mu: &mu}, nil))
	c := serve(t, httpapi.Config{Logger: logger}, f.store, brokenHistory{}, brokenParked{})
	for _, path := range []string{"/prescriptions/urn:rx:1/history", "/prescriptions/urn:rx:1/history?asOf=0", "/effects/parked"} {
		_, r := c.expectError(path, http.StatusInternalServerError, "internal")
		if bytes.Contains(r.body, []byte("secret")) {
			t.Errorf("%s leaks the cause: %s", path, r.body)
		}
	}
	mu.Lock()
	defer mu.Unlock()
	if !bytes.Contains(logs.Bytes(), []byte("secret-host")) || !bytes.Contains(logs.Bytes(), []byte("secret-file")) {
		t.Errorf("causes not logged: %s", logs.Bytes())
	}
}

type lockedWriter struct {
	w  io.Writer
	mu *sync.Mutex
}

func (l *lockedWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(p)
}

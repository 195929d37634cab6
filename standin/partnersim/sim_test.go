package partnersim_test

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"strings"
	"testing"
	"time"

	"rxflow/infra/partners"
	"rxflow/projections"
	"rxflow/standin/partnersim"
)

const pathPrescriptions = "/v1/prescriptions"

func startSim(t *testing.T) *partnersim.Sim {
	t.Helper()
	sim, err := partnersim.Start(partnersim.Config{Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := sim.Close(); err != nil {
			t.Errorf("close: %v", err)
		}
	})
	return sim
}

// do sends one raw request and returns status, headers and body.
func do(t *testing.T, method, url, key, contentType, body string) (int, http.Header, string) {
	t.Helper()
	req, err := http.NewRequest(method, url, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	if key != "" {
		req.Header.Set("Idempotency-Key", key)
	}
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp.StatusCode, resp.Header, string(b)
}

const notice = `{"urn":"urn:rx:1","patientId":"pat-1","message":"Your prescription is ready for pickup."}`

func TestURLsAndRoutes(t *testing.T) {
	sim := startSim(t)
	if !strings.HasPrefix(sim.Addr(), "127.0.0.1:") {
		t.Fatalf("default addr %s is not loopback", sim.Addr())
	}
	bodies := map[partnersim.Partner]struct{ path, body string }{
		partnersim.Insurance: {"/v1/approvals", `{"urn":"u","patientId":"p","prescriberId":"d","approvedBy":"a",
			"medication":{"name":"n","quantity":1,"refills":0},"approvedAt":"2025-01-01T00:00:00Z"}`},
		partnersim.Pharmacy: {"/v1/prescriptions", `{"urn":"u","patientId":"p","prescriberId":"d","pharmacyId":"ph",
			"medication":{"name":"n","quantity":1,"refills":2},"sentAt":"2025-01-01T00:00:00Z"}`},
		partnersim.Notifications: {"/v1/notifications", notice},
		partnersim.Alerting:      {"/v1/alerts", `{"summary":"s","severity":"warning","at":"2025-01-01T00:00:00Z"}`},
	}
	for _, p := range partnersim.Partners() {
		want := "http://" + sim.Addr() + "/" + string(p)
		if sim.URL(p) != want {
			t.Errorf("URL(%s) = %s, want %s", p, sim.URL(p), want)
		}
		b := bodies[p]
		if status, _, resp := do(t, "POST", sim.URL(p)+b.path, "k1", "application/json", b.body); status != http.StatusOK {
			t.Errorf("%s: status %d body %s", p, status, resp)
		}
		if n := len(sim.Accepted(p)); n != 1 {
			t.Errorf("%s accepted %d, want 1", p, n)
		}
	}
	if status, _, _ := do(t, "POST", sim.URL(partnersim.Insurance)+"/v1/alerts", "k", "application/json", notice); status != http.StatusNotFound {
		t.Errorf("wrong partner path: status %d, want 404", status)
	}
	if status, _, _ := do(t, "GET", sim.URL(partnersim.Alerting)+"/v1/alerts", "", "", ""); status != http.StatusMethodNotAllowed {
		t.Errorf("GET on a partner endpoint: status %d, want 405", status)
	}
}

// Every partner the reactors call has its simulator, under the partner's
// name and path: the request reaches the payload check (400), not a 404.
func TestEveryReactionPartnerIsSimulated(t *testing.T) {
	sim := startSim(t)
	ps := projections.PartnersOf(projections.Reactions)
	for _, r := range projections.Reactions {
		ps = append(ps, r.Partner)
	}
	for _, p := range ps {
		status, _, body := do(t, "POST", sim.URL(partnersim.Partner(p.Name))+p.Path, "k", "application/json", `{}`)
		if status != http.StatusBadRequest || !strings.Contains(body, "invalid payload") {
			t.Errorf("%s %s: status %d %s, want 400 invalid payload", p.Name, p.Path, status, body)
		}
	}
}

func TestRejectsBadRequestsAndRecordsThem(t *testing.T) {
	sim := startSim(t)
	url := sim.URL(partnersim.Notifications) + "/v1/notifications"
	cases := []struct {
		name, key, ctype, body string
		want                   int
		reason                 string
	}{
		{"missing key", "", "application/json", notice, 400, "Idempotency-Key"},
		{"not JSON", "k1", "application/json", `{"urn":`, 400, "not a JSON object"},
		{"wrong content type", "k1", "text/plain", notice, 415, "Content-Type"},
		{"missing field", "k1", "application/json", `{"urn":"u","patientId":"p"}`, 400, "message is required"},
		{"no recipient", "k1", "application/json", `{"urn":"u","message":"m"}`, 400, "exactly one of patientId and prescriberId"},
		{"two recipients", "k1", "application/json", `{"urn":"u","patientId":"p","prescriberId":"d","message":"m"}`, 400, "exactly one of patientId and prescriberId"},
	}
	for _, tc := range cases {
		status, _, body := do(t, "POST", url, tc.key, tc.ctype, tc.body)
		if status != tc.want || !strings.Contains(body, tc.reason) {
			t.Errorf("%s: status %d body %s, want %d mentioning %q", tc.name, status, body, tc.want, tc.reason)
		}
	}
	calls := sim.Calls(partnersim.Notifications)
	if len(calls) != len(cases) {
		t.Fatalf("recorded %d calls, want %d", len(calls), len(cases))
	}
	if calls[1].Body != nil || calls[3].Body == nil {
		t.Errorf("body recorded for invalid JSON or dropped for valid JSON: %+v", calls)
	}
	if len(sim.Accepted(partnersim.Notifications)) != 0 {
		t.Fatal("a rejected request was accepted")
	}
	// A key whose request was rejected can still be used for a good one.
	if status, _, _ := do(t, "POST", url, "k1", "application/json; charset=utf-8", notice); status != http.StatusOK {
		t.Fatalf("valid request after rejections: status %d", status)
	}
}

func TestReplayReturnsOriginalResponse(t *testing.T) {
	sim := startSim(t)
	url := sim.URL(partnersim.Notifications) + "/v1/notifications"

	s1, h1, b1 := do(t, "POST", url, "evt-1", "application/json", notice)
	// Same payload, different key order and spacing: still the same request.
	reordered := `{ "message":"Your prescription is ready for pickup.", "patientId":"pat-1", "urn":"urn:rx:1" }`
	s2, h2, b2 := do(t, "POST", url, "evt-1", "application/json", reordered)
	if s1 != 200 || s2 != 200 || b1 != b2 {
		t.Fatalf("original %d %s, replay %d %s; want identical 200s", s1, b1, s2, b2)
	}
	if h1.Get("Idempotent-Replayed") != "" || h2.Get("Idempotent-Replayed") != "true" {
		t.Errorf("Idempotent-Replayed headers %q, %q", h1.Get("Idempotent-Replayed"), h2.Get("Idempotent-Replayed"))
	}
	if !strings.Contains(b1, `"status":"accepted"`) {
		t.Errorf("accept body %s", b1)
	}
	calls := sim.Calls(partnersim.Notifications)
	if len(calls) != 2 || calls[1].Attempt != 2 || !calls[1].Replay || len(sim.Accepted(partnersim.Notifications)) != 1 {
		t.Fatalf("calls %+v accepted %d; want one accepted and one replay", calls, len(sim.Accepted(partnersim.Notifications)))
	}
	if s, _, b := do(t, "POST", url, "evt-1", "application/json", `{"urn":"other","patientId":"p","message":"m"}`); s != 422 {
		t.Fatalf("key reused with other payload: %d %s, want 422", s, b)
	}
}

func TestGoControls(t *testing.T) {
	sim := startSim(t)
	url := sim.URL(partnersim.Notifications) + "/v1/notifications"
	post := func(key string) (int, http.Header) {
		s, h, _ := do(t, "POST", url, key, "application/json", notice)
		return s, h
	}

	sim.FailNext(partnersim.Notifications, 2, 500)
	sim.SetRetryAfter(partnersim.Notifications, 1500*time.Millisecond)
	for i := range 2 {
		if s, h := post("k"); s != 500 || h.Get("Retry-After") != "" {
			t.Fatalf("failing request %d: %d Retry-After %q; want 500 without Retry-After", i, s, h.Get("Retry-After"))
		}
	}
	if s, _ := post("k"); s != 200 {
		t.Fatalf("after FailNext ran out: %d", s)
	}

	sim.SetDown(partnersim.Notifications, true)
	if s, h := post("k2"); s != 503 || h.Get("Retry-After") != "2" {
		t.Fatalf("down: %d Retry-After %q; want 503 with 2 (1.5s rounded up)", s, h.Get("Retry-After"))
	}
	sim.SetDown(partnersim.Notifications, false)
	if s, _ := post("k2"); s != 200 {
		t.Fatalf("back up: %d", s)
	}
	if n := len(sim.Accepted(partnersim.Notifications)); n != 2 {
		t.Fatalf("accepted %d, want 2", n)
	}
	if other := sim.Calls(partnersim.Pharmacy); len(other) != 0 {
		t.Fatalf("controls leaked to pharmacy: %+v", other)
	}

	sim.Reset()
	if len(sim.Calls(partnersim.Notifications)) != 0 || len(sim.Accepted(partnersim.Notifications)) != 0 {
		t.Fatal("Reset kept calls")
	}
	if s, h := post("k"); s != 200 || h.Get("Idempotent-Replayed") != "" {
		t.Fatalf("after Reset the key should be new: %d replay=%q", s, h.Get("Idempotent-Replayed"))
	}
}

func TestHTTPControls(t *testing.T) {
	sim := startSim(t)
	base := "http://" + sim.Addr()
	control := func(path string, want int) string {
		t.Helper()
		s, _, body := do(t, "POST", base+path, "", "", "")
		if s != want {
			t.Fatalf("POST %s: %d %s, want %d", path, s, body, want)
		}
		return body
	}
	cfg := partners.Config{
		BaseURL: sim.URL(partnersim.Pharmacy), MaxAttempts: 4,
		BaseBackoff: time.Millisecond, MaxBackoff: 2 * time.Millisecond, Logger: slog.New(slog.DiscardHandler),
	}
	c, err := partners.NewClient(cfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	order := projections.PharmacyOrder{URN: "urn:rx:1", PatientID: "p", PrescriberID: "d", PharmacyID: "ph",
		Medication: projections.Medication{Name: "n", Quantity: 1}, SentAt: time.Now().UTC()}
	ctx := context.Background()

	// fail: two 502s, then the client's third attempt succeeds.
	if body := control("/_sim/fail?partner=pharmacy&n=2&status=502", 200); !strings.Contains(body, `"failNext":2`) {
		t.Fatalf("fail echo %s", body)
	}
	if res, err := c.Post(ctx, pathPrescriptions, "evt-1", order); err != nil || res.Attempts != 3 {
		t.Fatalf("after /_sim/fail: %+v %v", res, err)
	}

	// calls: JSON report per partner.
	s, _, body := do(t, "GET", base+"/_sim/calls?partner=pharmacy", "", "", "")
	var report map[partnersim.Partner]partnersim.Report
	if err := json.Unmarshal([]byte(body), &report); s != 200 || err != nil {
		t.Fatalf("calls: %d %s %v", s, body, err)
	}
	r, ok := report[partnersim.Pharmacy]
	if len(report) != 1 || !ok || len(r.Calls) != 3 || len(r.Accepted) != 1 || r.Calls[0].Status != 502 || r.Accepted[0].IdempotencyKey != "evt-1" {
		t.Fatalf("calls report %s", body)
	}
	if _, _, all := do(t, "GET", base+"/_sim/calls", "", "", ""); !strings.Contains(all, `"alerting":{"calls":[],"accepted":[]}`) {
		t.Fatalf("all-partners report %s", all)
	}

	// down: every attempt gets 503 until brought back.
	control("/_sim/down?partner=pharmacy&down=true", 200)
	if _, err := c.Post(ctx, pathPrescriptions, "evt-2", order); !errors.Is(err, partners.ErrExhausted) {
		t.Fatalf("while down: %v", err)
	}
	control("/_sim/down?partner=pharmacy&down=false", 200)
	if _, err := c.Post(ctx, pathPrescriptions, "evt-2", order); err != nil {
		t.Fatalf("after down=false: %v", err)
	}

	// latency: shorter than the client timeout, the call still succeeds on the first try.
	if body := control("/_sim/latency?partner=pharmacy&ms=20", 200); !strings.Contains(body, `"latencyMs":20`) {
		t.Fatalf("latency echo %s", body)
	}
	if res, err := c.Post(ctx, pathPrescriptions, "evt-3", order); err != nil || res.Attempts != 1 {
		t.Fatalf("with latency: %+v %v", res, err)
	}

	// retryafter: reflected on simulated 503s.
	control("/_sim/retryafter?partner=pharmacy&s=7", 200)
	control("/_sim/fail?partner=pharmacy", 200) // defaults: n=1, status=503
	if s, h, _ := do(t, "POST", sim.URL(partnersim.Pharmacy)+"/v1/prescriptions", "x", "application/json", "{}"); s != 503 || h.Get("Retry-After") != "7" {
		t.Fatalf("retryafter: %d %q", s, h.Get("Retry-After"))
	}

	// refuse: a matching body is refused on every attempt, with the status
	// given; another body and a key accepted before are not.
	if body := control("/_sim/refuse?partner=pharmacy&field=pharmacyId&value=ph-closed&status=409", 200); !strings.Contains(body, `"refuse":{"field":"pharmacyId","value":"ph-closed","status":409}`) {
		t.Fatalf("refuse echo %s", body)
	}
	closed := order
	closed.PharmacyID = "ph-closed"
	for range 2 {
		if res, err := c.Post(ctx, pathPrescriptions, "evt-closed", closed); !errors.Is(err, partners.ErrPermanent) || res.Attempts != 1 {
			t.Fatalf("refused order: %+v %v; want a permanent refusal on the first attempt", res, err)
		}
	}
	if calls := sim.Calls(partnersim.Pharmacy); calls[len(calls)-1].Status != 409 || calls[len(calls)-1].Attempt != 2 {
		t.Fatalf("refused call recorded as %+v", calls[len(calls)-1])
	}
	if res, err := c.Post(ctx, pathPrescriptions, "evt-4", order); err != nil || res.Attempts != 1 {
		t.Fatalf("another pharmacy while refusing: %+v %v", res, err)
	}
	if res, err := c.Post(ctx, pathPrescriptions, "evt-1", order); err != nil || res.Attempts != 1 {
		t.Fatalf("replay while refusing: %+v %v", res, err)
	}
	if body := control("/_sim/refuse?partner=pharmacy", 200); strings.Contains(body, `"refuse"`) {
		t.Fatalf("refuse without field should cancel: %s", body)
	}
	if _, err := c.Post(ctx, pathPrescriptions, "evt-closed", closed); err != nil {
		t.Fatalf("after the refusal is cancelled: %v", err)
	}

	// reset clears calls and controls.
	control("/_sim/reset", 204)
	if n := len(sim.Calls(partnersim.Pharmacy)); n != 0 {
		t.Fatalf("after reset: %d calls", n)
	}
	if res, err := c.Post(ctx, pathPrescriptions, "evt-1", order); err != nil || res.Attempts != 1 {
		t.Fatalf("after reset: %+v %v", res, err)
	}

	// Bad control requests.
	for _, path := range []string{
		"/_sim/fail?partner=bank",
		"/_sim/fail?partner=pharmacy&status=200",
		"/_sim/fail?partner=pharmacy&n=-1",
		"/_sim/down?partner=pharmacy&down=maybe",
		"/_sim/latency?partner=pharmacy",
		"/_sim/retryafter?partner=pharmacy&s=x",
		"/_sim/refuse?partner=pharmacy&field=pharmacyId&value=x&status=200",
	} {
		control(path, 400)
	}
	if s, _, _ := do(t, "GET", base+"/_sim/calls?partner=bank", "", "", ""); s != 400 {
		t.Errorf("calls for unknown partner: %d", s)
	}
	if s, _, _ := do(t, "GET", base+"/_sim/reset", "", "", ""); s != 405 {
		t.Errorf("GET /_sim/reset: %d, want 405", s)
	}
}

func TestCloseCutsLatencyShort(t *testing.T) {
	sim, err := partnersim.Start(partnersim.Config{Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	sim.SetLatency(partnersim.Notifications, time.Hour)
	errc := make(chan error, 1)
	go func() {
		req, _ := http.NewRequest("POST", sim.URL(partnersim.Notifications)+"/v1/notifications", strings.NewReader(notice))
		req.Header.Set("Idempotency-Key", "k")
		req.Header.Set("Content-Type", "application/json")
		resp, err := http.DefaultClient.Do(req)
		if err == nil {
			resp.Body.Close()
		}
		errc <- err
	}()
	for len(sim.Calls(partnersim.Notifications)) == 0 {
		time.Sleep(2 * time.Millisecond)
	}
	if err := sim.Close(); err != nil {
		t.Fatalf("Close with a request in its latency: %v", err)
	}
	if err := <-errc; err == nil {
		t.Fatal("request in latency got an answer, want the connection closed")
	}
	again, err := partnersim.Start(partnersim.Config{Addr: sim.Addr(), Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatalf("address not released after Close: %v", err)
	}
	if err := again.Close(); err != nil {
		t.Fatal(err)
	}
}

func TestParsePartner(t *testing.T) {
	for _, p := range partnersim.Partners() {
		if got, err := partnersim.ParsePartner(string(p)); err != nil || got != p {
			t.Errorf("ParsePartner(%s) = %s, %v", p, got, err)
		}
	}
	if _, err := partnersim.ParsePartner("Insurance"); err == nil {
		t.Error("ParsePartner is case-sensitive; Insurance should fail")
	}
}

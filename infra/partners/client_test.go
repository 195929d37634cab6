package partners_test

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"rxflow/domain"
	"rxflow/events"
	"rxflow/infra/partners"
	"rxflow/projections"
	"rxflow/standin/partnersim"
)

var quiet = slog.New(slog.DiscardHandler)

func startSim(t *testing.T) *partnersim.Sim {
	t.Helper()
	sim, err := partnersim.Start(partnersim.Config{Logger: quiet})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := sim.Close(); err != nil {
			t.Errorf("close sim: %v", err)
		}
	})
	return sim
}

// fastConfig retries quickly so tests stay short.
func fastConfig(baseURL string) partners.Config {
	return partners.Config{
		BaseURL:     baseURL,
		Timeout:     2 * time.Second,
		MaxAttempts: 5,
		BaseBackoff: time.Millisecond,
		MaxBackoff:  5 * time.Millisecond,
		Logger:      quiet,
	}
}

func newClient(t *testing.T, cfg partners.Config) *partners.Client {
	t.Helper()
	c, err := partners.NewClient(cfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// Endpoints, below each partner's base URL (docs/partners.md).
const (
	pathApprovals     = "/v1/approvals"
	pathPrescriptions = "/v1/prescriptions"
	pathNotifications = "/v1/notifications"
	pathAlerts        = "/v1/alerts"
)

func notice(urn string) projections.PatientNotice {
	return projections.PatientNotice{URN: urn, PatientID: "pat-1", Message: projections.ReadyForPickup}
}

func order() projections.PharmacyOrder {
	return projections.PharmacyOrder{
		URN: "urn:rx:9", PatientID: "pat-1", PrescriberID: "doc-1", PharmacyID: "ph-9",
		Medication: med, SentAt: time.Date(2025, 3, 1, 10, 0, 0, 0, time.UTC),
	}
}

var med = projections.Medication{Name: "Amoxicillin", Code: "RX-723", Strength: "500mg", Quantity: 21, Refills: 0}

// bodyField decodes a recorded body and returns one top-level field.
func bodyField(t *testing.T, c partnersim.Call, field string) any {
	t.Helper()
	var m map[string]any
	if err := json.Unmarshal(c.Body, &m); err != nil {
		t.Fatalf("recorded body %s: %v", c.Body, err)
	}
	return m[field]
}

func callError(t *testing.T, err error) *partners.CallError {
	t.Helper()
	var ce *partners.CallError
	if !errors.As(err, &ce) {
		t.Fatalf("error %v (%T) is not a *CallError", err, err)
	}
	return ce
}

// newSet builds the reactors' adapter on the simulators, with fastConfig;
// baseURLs replace a partner's simulator by name.
func newSet(t *testing.T, sim *partnersim.Sim, baseURLs map[string]string) *partners.Set {
	t.Helper()
	ps := projections.PartnersOf(projections.Reactions)
	e := partners.Endpoints{}
	for _, p := range ps {
		e[p.Name] = fastConfig(cmp.Or(baseURLs[p.Name], sim.URL(partnersim.Partner(p.Name))))
	}
	set, err := partners.NewSet(ps, e, nil)
	if err != nil {
		t.Fatal(err)
	}
	return set
}

// Every row of the reactor table reaches its partner through Set, with the
// body the partner's contract asks for.
func TestReactionsReachTheirPartners(t *testing.T) {
	sim := startSim(t)
	ctx := context.Background()
	at := time.Date(2025, 3, 1, 10, 0, 0, 0, time.UTC)
	rx := domain.Prescription{URN: "urn:rx:1", PatientID: "pat-1", PrescriberID: "doc-1", PharmacyID: "ph-9", ApprovedBy: "pharm-1",
		Medication: domain.Medication{Name: "Amoxicillin", Code: "RX-723", Strength: "500mg", Quantity: 21},
		ApprovedAt: at, ProcessingAt: at, FailedAt: at, DispensedAt: at}
	passed := events.Recorded{Event: domain.DeadlinePassed{Deadline: "d", DueAt: at.Add(time.Hour), At: at.Add(2 * time.Hour)}}
	set := newSet(t, sim, nil)
	for _, r := range projections.Reactions {
		c := projections.Change{After: rx}
		if r.When.Deadline != "" {
			c.Event = passed
		}
		if n, err := set.Call(ctx, r.Partner, "evt-"+r.Name, r.Body(c)); err != nil || n != 1 {
			t.Fatalf("%s: %d attempt(s), %v; want 1, nil", r.Name, n, err)
		}
	}

	// The simulator checks fields by their JSON names, so these also pin the wire format.
	cases := []struct {
		p            partnersim.Partner
		key, field   string
		want         any
		otherField   string
		otherWantStr string
	}{
		{partnersim.Insurance, "evt-insurance", "approvedBy", "pharm-1", "approvedAt", "2025-03-01T10:00:00Z"},
		{partnersim.Pharmacy, "evt-pharmacy", "pharmacyId", "ph-9", "sentAt", "2025-03-01T10:00:00Z"},
		{partnersim.Notifications, "evt-patient-notification", "message", "Your prescription is ready for pickup.", "patientId", "pat-1"},
		{partnersim.Alerting, "evt-support-alert", "severity", "critical", "at", "2025-03-01T10:00:00Z"},
		{partnersim.Notifications, "evt-prescriber-reminder", "message", projections.ApprovalReminder, "prescriberId", "doc-1"},
		{partnersim.Alerting, "evt-processing-overdue-alert", "severity", "warning", "at", "2025-03-01T12:00:00Z"},
		{partnersim.Pharmacy, "evt-return-to-stock-pharmacy", "pharmacyId", "ph-9", "dueAt", "2025-03-01T11:00:00Z"},
		{partnersim.Notifications, "evt-return-to-stock-patient", "message", projections.ReturnedToStock, "patientId", "pat-1"},
	}
	for _, tc := range cases {
		var acc []partnersim.Call
		for _, c := range sim.Accepted(tc.p) {
			if c.IdempotencyKey == tc.key {
				acc = append(acc, c)
			}
		}
		if len(acc) != 1 {
			t.Fatalf("%s accepted %+v, want one call with key %s", tc.p, sim.Accepted(tc.p), tc.key)
		}
		if got := bodyField(t, acc[0], tc.field); got != tc.want {
			t.Errorf("%s %s = %v, want %v", tc.p, tc.field, got, tc.want)
		}
		if got := bodyField(t, acc[0], tc.otherField); got != tc.otherWantStr {
			t.Errorf("%s %s = %v, want %v", tc.p, tc.otherField, got, tc.otherWantStr)
		}
	}
	if n := len(sim.Accepted(partnersim.Pharmacy)) + len(sim.Accepted(partnersim.Notifications)) + len(sim.Accepted(partnersim.Alerting)) +
		len(sim.Accepted(partnersim.Insurance)); n != len(projections.Reactions) {
		t.Errorf("%d calls accepted, want one per reaction (%d)", n, len(projections.Reactions))
	}
	m := bodyField(t, sim.Accepted(partnersim.Pharmacy)[0], "medication").(map[string]any)
	if m["name"] != "Amoxicillin" || m["code"] != "RX-723" || m["strength"] != "500mg" || m["quantity"] != 21.0 || m["refills"] != 0.0 {
		t.Errorf("medication on the wire = %v", m)
	}
}

func TestRetriesOn503ThenSucceedsWithSameKey(t *testing.T) {
	sim := startSim(t)
	sim.FailNext(partnersim.Notifications, 3, http.StatusServiceUnavailable)
	c := newClient(t, fastConfig(sim.URL(partnersim.Notifications)))

	res, err := c.Post(context.Background(), pathNotifications, "evt-42", notice("urn:rx:42"))
	if err != nil {
		t.Fatalf("Post: %v", err)
	}
	if res.Attempts != 4 || res.Status != http.StatusOK {
		t.Fatalf("result %+v, want 4 attempts ending in 200", res)
	}
	calls := sim.Calls(partnersim.Notifications)
	if len(calls) != 4 {
		t.Fatalf("simulator saw %d calls, want 4", len(calls))
	}
	for i, call := range calls {
		if call.IdempotencyKey != "evt-42" || call.Attempt != i+1 {
			t.Errorf("call %d: key %q attempt %d, want evt-42 attempt %d", i, call.IdempotencyKey, call.Attempt, i+1)
		}
		if string(call.Body) != string(calls[0].Body) {
			t.Errorf("call %d body %s differs from first %s", i, call.Body, calls[0].Body)
		}
	}
	if n := len(sim.Accepted(partnersim.Notifications)); n != 1 {
		t.Fatalf("accepted %d, want 1", n)
	}
}

func TestRetryableStatuses(t *testing.T) {
	sim := startSim(t)
	c := newClient(t, fastConfig(sim.URL(partnersim.Notifications)))
	for _, status := range []int{408, 429, 500, 502, 503, 504} {
		sim.Reset()
		sim.FailNext(partnersim.Notifications, 1, status)
		res, err := c.Post(context.Background(), pathNotifications, "k", notice("urn:rx:1"))
		if err != nil || res.Attempts != 2 {
			t.Errorf("status %d: result %+v err %v, want success on attempt 2", status, res, err)
		}
	}
}

func TestPermanentStatusesNotRetried(t *testing.T) {
	sim := startSim(t)
	c := newClient(t, fastConfig(sim.URL(partnersim.Notifications)))
	for _, status := range []int{400, 401, 403, 404, 409, 422} {
		sim.Reset()
		sim.FailNext(partnersim.Notifications, 1, status)
		res, err := c.Post(context.Background(), pathNotifications, "k", notice("urn:rx:1"))
		if !errors.Is(err, partners.ErrPermanent) || errors.Is(err, partners.ErrExhausted) {
			t.Errorf("status %d: err %v, want ErrPermanent only", status, err)
			continue
		}
		ce := callError(t, err)
		if res.Attempts != 1 || ce.Attempts != 1 || ce.Status != status || ce.Path != pathNotifications {
			t.Errorf("status %d: result %+v, CallError %+v", status, res, ce)
		}
		if n := len(sim.Calls(partnersim.Notifications)); n != 1 {
			t.Errorf("status %d: simulator saw %d calls, want 1", status, n)
		}
	}
}

func TestInvalidPayloadIsPermanent(t *testing.T) {
	sim := startSim(t)
	c := newClient(t, fastConfig(sim.URL(partnersim.Notifications)))

	_, err := c.Post(context.Background(), pathNotifications, "evt-1", projections.PatientNotice{URN: "urn:rx:1", PatientID: "pat-1"})
	if !errors.Is(err, partners.ErrPermanent) {
		t.Fatalf("err %v, want ErrPermanent", err)
	}
	if ce := callError(t, err); ce.Status != http.StatusBadRequest || !strings.Contains(ce.Error(), "message is required") {
		t.Errorf("CallError %v, want 400 naming the missing field", ce)
	}
	if got := len(sim.Calls(partnersim.Notifications)); got != 1 {
		t.Errorf("simulator saw %d calls, want 1", got)
	}
}

func TestExhaustedAfterMaxAttempts(t *testing.T) {
	sim := startSim(t)
	sim.SetDown(partnersim.Pharmacy, true)
	cfg := fastConfig(sim.URL(partnersim.Pharmacy))
	cfg.MaxAttempts = 3
	c := newClient(t, cfg)

	res, err := c.Post(context.Background(), pathPrescriptions, "evt-7", map[string]string{"urn": "x"})
	if !errors.Is(err, partners.ErrExhausted) || errors.Is(err, partners.ErrPermanent) {
		t.Fatalf("err %v, want ErrExhausted only", err)
	}
	ce := callError(t, err)
	if res.Attempts != 3 || ce.Attempts != 3 || ce.Status != http.StatusServiceUnavailable {
		t.Fatalf("result %+v, CallError %+v; want 3 attempts, last status 503", res, ce)
	}
	if n := len(sim.Calls(partnersim.Pharmacy)); n != 3 {
		t.Fatalf("simulator saw %d calls, want 3", n)
	}
	if n := len(sim.Accepted(partnersim.Pharmacy)); n != 0 {
		t.Fatalf("accepted %d while down, want 0", n)
	}
}

// waitCalls polls until p has seen at least n calls.
func waitCalls(t *testing.T, sim *partnersim.Sim, p partnersim.Partner, n int) {
	t.Helper()
	deadline := time.After(10 * time.Second)
	for len(sim.Calls(p)) < n {
		select {
		case <-deadline:
			t.Fatalf("%s never saw %d calls", p, n)
		case <-time.After(2 * time.Millisecond):
		}
	}
}

type postResult struct {
	res partners.Result
	err error
}

func TestContextCancelStopsRetries(t *testing.T) {
	t.Run("during backoff", func(t *testing.T) {
		sim := startSim(t)
		sim.SetDown(partnersim.Alerting, true)
		sim.SetRetryAfter(partnersim.Alerting, time.Minute) // client would sleep a minute
		cfg := fastConfig(sim.URL(partnersim.Alerting))
		cfg.MaxBackoff = 2 * time.Minute
		c := newClient(t, cfg)

		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan postResult, 1)
		go func() {
			res, err := c.Post(ctx, pathAlerts, "evt-1", map[string]string{})
			done <- postResult{res, err}
		}()
		waitCalls(t, sim, partnersim.Alerting, 1)
		cancel()
		got := <-done
		if !errors.Is(got.err, context.Canceled) || errors.Is(got.err, partners.ErrExhausted) {
			t.Fatalf("err %v, want context.Canceled", got.err)
		}
		if got.res.Attempts != 1 || len(sim.Calls(partnersim.Alerting)) != 1 {
			t.Fatalf("attempts %d, simulator calls %d; want 1 and 1", got.res.Attempts, len(sim.Calls(partnersim.Alerting)))
		}
	})

	t.Run("in flight", func(t *testing.T) {
		sim := startSim(t)
		sim.SetLatency(partnersim.Alerting, time.Minute)
		cfg := fastConfig(sim.URL(partnersim.Alerting))
		cfg.Timeout = 2 * time.Minute
		cfg.MaxAttempts = 1 // cancellation must win over "retries exhausted"
		c := newClient(t, cfg)

		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan postResult, 1)
		go func() {
			res, err := c.Post(ctx, pathAlerts, "evt-1", map[string]string{})
			done <- postResult{res, err}
		}()
		waitCalls(t, sim, partnersim.Alerting, 1)
		cancel()
		got := <-done
		if !errors.Is(got.err, context.Canceled) || errors.Is(got.err, partners.ErrExhausted) || got.res.Attempts != 1 {
			t.Fatalf("result %+v err %v, want context.Canceled after 1 attempt", got.res, got.err)
		}
	})

	t.Run("already cancelled", func(t *testing.T) {
		sim := startSim(t)
		c := newClient(t, fastConfig(sim.URL(partnersim.Alerting)))
		ctx, cancel := context.WithCancel(context.Background())
		cancel()
		res, err := c.Post(ctx, pathAlerts, "evt-1", map[string]string{})
		if !errors.Is(err, context.Canceled) || res.Attempts != 0 || len(sim.Calls(partnersim.Alerting)) != 0 {
			t.Fatalf("result %+v err %v calls %d; want Canceled with no request", res, err, len(sim.Calls(partnersim.Alerting)))
		}
	})
}

func TestRetryAfterHonoured(t *testing.T) {
	sim := startSim(t)
	sim.SetRetryAfter(partnersim.Notifications, time.Second)
	sim.FailNext(partnersim.Notifications, 1, http.StatusTooManyRequests)
	cfg := fastConfig(sim.URL(partnersim.Notifications))
	cfg.MaxBackoff = 2 * time.Second // allows the 1s Retry-After; jitter alone would be under 1ms
	cfg.BaseBackoff = time.Millisecond
	c := newClient(t, cfg)

	res, err := c.Post(context.Background(), pathNotifications, "evt-1", notice("urn:rx:1"))
	if err != nil || res.Attempts != 2 {
		t.Fatalf("result %+v err %v, want success on attempt 2", res, err)
	}
	calls := sim.Calls(partnersim.Notifications)
	if len(calls) != 2 || calls[0].Status != http.StatusTooManyRequests || calls[1].Status != http.StatusOK {
		t.Fatalf("calls %+v, want 429 then 200", calls)
	}
	// A lower bound only: the retry must not come before the partner allowed it.
	if gap := calls[1].At.Sub(calls[0].At); gap < time.Second {
		t.Fatalf("retried %v after the 429, before Retry-After: 1", gap)
	}
}

func TestRetryAfterBeyondMaxBackoffGivesUp(t *testing.T) {
	sim := startSim(t)
	sim.SetRetryAfter(partnersim.Insurance, time.Hour)
	sim.FailNext(partnersim.Insurance, 1, http.StatusServiceUnavailable)
	c := newClient(t, fastConfig(sim.URL(partnersim.Insurance)))

	res, err := c.Post(context.Background(), pathApprovals, "evt-1", map[string]string{})
	if !errors.Is(err, partners.ErrExhausted) || res.Attempts != 1 {
		t.Fatalf("result %+v err %v, want ErrExhausted after 1 attempt", res, err)
	}
	if n := len(sim.Calls(partnersim.Insurance)); n != 1 {
		t.Fatalf("simulator saw %d calls, want 1", n)
	}
}

// The simulator only sends delay-seconds; this covers the HTTP-date form.
func TestRetryAfterHTTPDate(t *testing.T) {
	for _, tc := range []struct {
		name         string
		at           time.Time
		wantAttempts int
		wantErr      error
	}{
		{"past date retries at once", time.Now().Add(-time.Hour), 2, nil},
		{"far date gives up", time.Now().Add(time.Hour), 1, partners.ErrExhausted},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var hits atomic.Int32
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				if hits.Add(1) == 1 {
					w.Header().Set("Retry-After", tc.at.UTC().Format(http.TimeFormat))
					w.WriteHeader(http.StatusServiceUnavailable)
					return
				}
				w.WriteHeader(http.StatusOK)
			}))
			defer srv.Close()
			cfg := fastConfig(srv.URL)
			cfg.MaxBackoff = time.Minute
			res, err := newClient(t, cfg).Post(context.Background(), "/x", "k", struct{}{})
			if !errors.Is(err, tc.wantErr) || (tc.wantErr == nil && err != nil) || res.Attempts != tc.wantAttempts {
				t.Fatalf("result %+v err %v, want %d attempts and err %v", res, err, tc.wantAttempts, tc.wantErr)
			}
		})
	}
}

func TestReplaySameKeyNotDoubleAccepted(t *testing.T) {
	sim := startSim(t)
	c := newClient(t, fastConfig(sim.URL(partnersim.Notifications)))
	ctx := context.Background()

	for i := range 2 {
		if _, err := c.Post(ctx, pathNotifications, "evt-1", notice("urn:rx:1")); err != nil {
			t.Fatalf("post %d: %v", i, err)
		}
	}
	calls := sim.Calls(partnersim.Notifications)
	if len(calls) != 2 || calls[0].Replay || !calls[1].Replay {
		t.Fatalf("calls %+v, want original then replay", calls)
	}
	if n := len(sim.Accepted(partnersim.Notifications)); n != 1 {
		t.Fatalf("accepted %d, want 1", n)
	}

	if _, err := c.Post(ctx, pathNotifications, "evt-2", notice("urn:rx:1")); err != nil {
		t.Fatal(err)
	}
	if n := len(sim.Accepted(partnersim.Notifications)); n != 2 {
		t.Fatalf("accepted %d after a new key, want 2", n)
	}

	// Same key, different payload: a partner must refuse rather than guess.
	_, err := c.Post(ctx, pathNotifications, "evt-1", notice("urn:rx:OTHER"))
	if !errors.Is(err, partners.ErrPermanent) || callError(t, err).Status != http.StatusUnprocessableEntity {
		t.Fatalf("err %v, want ErrPermanent with 422", err)
	}
}

func TestClientTimeoutOnSlowPartnerIsRetried(t *testing.T) {
	t.Run("recovers", func(t *testing.T) {
		sim := startSim(t)
		sim.SetLatency(partnersim.Pharmacy, time.Minute)
		cfg := fastConfig(sim.URL(partnersim.Pharmacy))
		cfg.Timeout = 100 * time.Millisecond
		cfg.MaxAttempts = 50
		c := newClient(t, cfg)

		// Make the partner fast again once two attempts have arrived.
		stop := make(chan struct{})
		defer close(stop)
		go func() {
			for len(sim.Calls(partnersim.Pharmacy)) < 2 {
				select {
				case <-stop:
					return
				case <-time.After(2 * time.Millisecond):
				}
			}
			sim.SetLatency(partnersim.Pharmacy, 0)
		}()
		res, err := c.Post(context.Background(), pathPrescriptions, "evt-9", order())
		if err != nil {
			t.Fatalf("Post: %v", err)
		}
		if res.Attempts < 3 {
			t.Fatalf("attempts %d, want at least 3 (two timed out)", res.Attempts)
		}
		assertOneSideEffect(t, sim, partnersim.Pharmacy, "evt-9")
	})

	t.Run("exhausted", func(t *testing.T) {
		sim := startSim(t)
		sim.SetLatency(partnersim.Pharmacy, time.Minute)
		cfg := fastConfig(sim.URL(partnersim.Pharmacy))
		cfg.Timeout = 100 * time.Millisecond
		cfg.MaxAttempts = 3
		c := newClient(t, cfg)

		res, err := c.Post(context.Background(), pathPrescriptions, "evt-9", order())
		if !errors.Is(err, partners.ErrExhausted) || !errors.Is(err, context.DeadlineExceeded) {
			t.Fatalf("err %v, want ErrExhausted wrapping the attempt timeout", err)
		}
		if res.Attempts != 3 || res.Status != 0 {
			t.Fatalf("result %+v, want 3 attempts and no status", res)
		}
		assertOneSideEffect(t, sim, partnersim.Pharmacy, "evt-9")
	})
}

// assertOneSideEffect checks the slow partner processed key once and
// answered every later attempt from its idempotency store.
func assertOneSideEffect(t *testing.T, sim *partnersim.Sim, p partnersim.Partner, key string) {
	t.Helper()
	if acc := sim.Accepted(p); len(acc) != 1 || acc[0].IdempotencyKey != key {
		t.Fatalf("accepted %+v, want exactly one with key %s", acc, key)
	}
	for i, call := range sim.Calls(p) {
		if call.IdempotencyKey != key || call.Replay != (i > 0) {
			t.Errorf("call %d: key %q replay %v", i, call.IdempotencyKey, call.Replay)
		}
	}
}

func TestRequestHeaders(t *testing.T) {
	got := make(chan http.Header, 1)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		got <- r.Header.Clone()
		w.WriteHeader(http.StatusAccepted)
	}))
	defer srv.Close()
	cfg := fastConfig(srv.URL + "/") // trailing slash must not double up
	cfg.Token = "s3cret"
	res, err := newClient(t, cfg).Post(context.Background(), "/v1/alerts", "evt-5", struct{}{})
	if err != nil || res.Status != http.StatusAccepted {
		t.Fatalf("result %+v err %v", res, err)
	}
	h := <-got
	for name, want := range map[string]string{
		"Authorization":   "Bearer s3cret",
		"Content-Type":    "application/json",
		"Idempotency-Key": "evt-5",
	} {
		if h.Get(name) != want {
			t.Errorf("%s = %q, want %q", name, h.Get(name), want)
		}
	}
}

func TestConfigValidation(t *testing.T) {
	_, err := partners.NewClient(partners.Config{
		BaseURL: "ftp://partner", Timeout: -1, MaxAttempts: -1, BaseBackoff: -1, MaxBackoff: -2,
	}, nil)
	if err == nil {
		t.Fatal("invalid config accepted")
	}
	for _, want := range []string{"BaseURL", "Timeout", "MaxAttempts", "BaseBackoff", "MaxBackoff"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not mention %s", err, want)
		}
	}
	if _, err := partners.NewClient(partners.Config{}, nil); err == nil || !strings.Contains(err.Error(), "BaseURL is required") {
		t.Errorf("missing BaseURL: err %v", err)
	}
	if _, err := partners.NewClient(partners.Config{BaseURL: "http://127.0.0.1:1/insurance"}, nil); err != nil {
		t.Errorf("defaults should make a minimal config valid: %v", err)
	}
	if err := (partners.Config{BaseURL: "http://x"}).Validate(); err == nil {
		t.Error("Validate without defaults should reject zero durations")
	}
}

func TestEmptyIdempotencyKeyRejected(t *testing.T) {
	sim := startSim(t)
	c := newClient(t, fastConfig(sim.URL(partnersim.Notifications)))
	_, err := c.Post(context.Background(), pathNotifications, "", notice("urn:rx:1"))
	if !errors.Is(err, partners.ErrPermanent) || len(sim.Calls(partnersim.Notifications)) != 0 {
		t.Fatalf("err %v, want ErrPermanent before any request", err)
	}
}

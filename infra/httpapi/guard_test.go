package httpapi_test

import (
	"context"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"slices"
	"testing"
	"time"

	"rxflow/infra/httpapi"
	"rxflow/infra/readmodel"
)

// Another handler (the console's actions) behind the same Guard: the
// caller is in the context, RequireRole admits operators only, and every
// attempt is recorded with the urn the handler noted.
func TestGuardAroundAnAction(t *testing.T) {
	key := newSigner(t, "k1")
	auth, err := httpapi.NewAuthenticator(httpapi.AuthConfig{StaticToken: token, Now: clock, Logger: slog.New(slog.DiscardHandler),
		JWT: &httpapi.JWTConfig{JWKSFile: jwksFile(t, key), Issuer: issuer, Audience: audience}})
	if err != nil {
		t.Fatal(err)
	}
	log := memAccessLog(t)
	guard, err := httpapi.NewGuard(auth, log, slog.New(slog.DiscardHandler), clock)
	if err != nil {
		t.Fatal(err)
	}
	var callers []httpapi.Caller
	retry := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		c, ok := httpapi.CallerFrom(r.Context())
		if !ok {
			t.Error("no caller in a guarded handler")
		}
		callers = append(callers, c)
		httpapi.NoteURNs(r.Context(), "urn:rx:9")
		w.WriteHeader(http.StatusAccepted)
	})
	const route = "/effects/{id}/retry"
	srv := httptest.NewServer(guard.Handler(httpapi.RequireRole(retry, httpapi.RoleOperator), func(*http.Request) string { return route }))
	t.Cleanup(srv.Close)
	c := &client{t: t, url: srv.URL}

	operator := key.sign(t, claims("op@hospital", "operator"))
	auditor := key.sign(t, claims("auditor@hospital", "auditor"))
	for _, tc := range []struct {
		auth   string
		status int
	}{{"Bearer " + operator, http.StatusAccepted}, {"Bearer " + token, http.StatusAccepted}, {"Bearer " + auditor, http.StatusForbidden}, {"", http.StatusUnauthorized}} {
		if r := c.send(http.MethodPost, "/effects/pharmacy%2Fe1/retry", tc.auth); r.status != tc.status {
			t.Errorf("POST as %.20q: %d %s, want %d", tc.auth, r.status, r.body, tc.status)
		}
	}
	if want := []httpapi.Caller{{Subject: "op@hospital", Role: httpapi.RoleOperator}, {Subject: httpapi.StaticSubject, Role: httpapi.RoleOperator}}; !slices.Equal(callers, want) {
		t.Errorf("the action ran for %+v, want %+v", callers, want)
	}
	got := accesses(t, log)
	want := []readmodel.Access{
		{Subject: "op@hospital", Role: "operator", URNs: []string{"urn:rx:9"}, Status: http.StatusAccepted, Outcome: "ok"},
		{Subject: httpapi.StaticSubject, Role: "operator", URNs: []string{"urn:rx:9"}, Status: http.StatusAccepted, Outcome: "ok"},
		{Subject: "auditor@hospital", Role: "auditor", URNs: []string{}, Status: http.StatusForbidden, Outcome: "forbidden"},
		{URNs: []string{}, Status: http.StatusUnauthorized, Outcome: "unauthorized"},
	}
	if len(got) != len(want) {
		t.Fatalf("records %+v, want %+v", got, want)
	}
	for i, w := range want {
		g := got[i]
		if g.Subject != w.Subject || g.Role != w.Role || !slices.Equal(g.URNs, w.URNs) || g.Status != w.Status || g.Outcome != w.Outcome ||
			g.Method != http.MethodPost || g.Route != route || !g.At.Equal(now) {
			t.Errorf("record %d: %+v, want %+v", i, g, w)
		}
	}

	if _, err := httpapi.NewGuard(nil, log, nil, nil); err == nil {
		t.Error("a guard without an authenticator")
	}
	if _, err := httpapi.NewGuard(auth, nil, nil, nil); err == nil {
		t.Error("a guard without an access log")
	}
}

// RequireRole outside a Guard has no caller: 401.
func TestRequireRoleWithoutGuard(t *testing.T) {
	h := httpapi.RequireRole(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { t.Error("served without a caller") }), httpapi.RoleOperator)
	w := httptest.NewRecorder()
	h.ServeHTTP(w, httptest.NewRequest(http.MethodPost, "/x", nil))
	if w.Code != http.StatusUnauthorized {
		t.Fatalf("%d %s", w.Code, w.Body)
	}
}

// blockingWait is the real store whose WaitFor signals entered and then
// blocks until the request's context ends.
type blockingWait struct {
	*readmodel.Store
	entered chan struct{}
}

func (b blockingWait) WaitFor(ctx context.Context, _ uint64) error {
	close(b.entered)
	<-ctx.Done()
	return ctx.Err()
}

// A handler's panic is recorded as the 500 it answered; a request whose
// client went away before the answer as 499 client_gone.
func TestPanicAndClientGoneAreRecorded(t *testing.T) {
	f := newFixture(t)
	f.lifecycle("urn:rx:1")
	log := memAccessLog(t)
	c := serve(t, httpapi.Config{AccessLog: log}, panicking{Store: f.store, v: "boom"}, f.hist, parkedList{})
	c.expectError("/prescriptions/stats", http.StatusInternalServerError, "internal")
	if got := accesses(t, log); len(got) != 1 || got[0].Status != http.StatusInternalServerError || got[0].Outcome != "internal" ||
		got[0].Route != "/prescriptions/stats" {
		t.Fatalf("panic recorded as %+v", got)
	}

	log = memAccessLog(t)
	wait := blockingWait{Store: f.store, entered: make(chan struct{})}
	c = serve(t, httpapi.Config{AccessLog: log, WaitTimeout: time.Hour}, wait, f.hist, parkedList{})
	ctx, cancel := context.WithCancel(t.Context())
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, c.url+"/prescriptions/urn:rx:1?minPosition=999999", nil)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+token)
	done := make(chan error, 1)
	go func() {
		resp, err := httpClient.Do(req)
		if err == nil {
			resp.Body.Close()
		}
		done <- err
	}()
	<-wait.entered
	cancel()
	if err := <-done; err == nil {
		t.Fatal("the cancelled request got an answer")
	}
	// The server sees the client go, then records: poll for the record.
	deadline := time.Now().Add(10 * time.Second)
	for len(accesses(t, log)) == 0 && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	got := accesses(t, log)
	if len(got) != 1 || got[0].Status != httpapi.StatusClientGone || got[0].Outcome != "client_gone" || !slices.Equal(got[0].URNs, []string{"urn:rx:1"}) {
		t.Fatalf("client gone recorded as %+v", got)
	}
}

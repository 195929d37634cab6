package stack_test

import (
	"encoding/json"
	"io"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"testing"
	"time"

	"rxflow/infra/httpapi"
	"rxflow/infra/kafka/kafkatest"
	"rxflow/infra/operator"
	"rxflow/infra/readmodel"
	"rxflow/projections"
	"rxflow/service/stack"
	"rxflow/standin/partnersim"
)

// call sends method path with body to the projector's HTTP server, with the
// bearer token when auth is set, and returns the status and the body.
func call(t *testing.T, s *stack.Stack, method, path, body string, auth bool, header http.Header) (int, []byte) {
	t.Helper()
	req, err := http.NewRequest(method, "http://"+s.Projector.HTTPAddr()+path, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range header {
		req.Header[k] = v
	}
	if auth {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	client := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	resp, err := client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, b
}

type actionAnswer struct {
	Action readmodel.OperatorAction
	Effect *projections.Effect
}

func decode[T any](t *testing.T, b []byte) T {
	t.Helper()
	var v T
	if err := json.Unmarshal(b, &v); err != nil {
		t.Fatalf("decode %s: %v", b, err)
	}
	return v
}

// A dead letter is consumed into the operations store and listed; a redrive
// with an edit publishes one command, which the processor handles; a second
// redrive publishes nothing and answers 409; both are recorded, and the
// prescription's history shows them.
func TestRedriveOnce(t *testing.T) {
	kafkatest.ForEachCluster(t, func(t *testing.T, brokers []string) {
		s := startStack(t, brokers)
		urn := "urn:rx:redrive"
		kafkatest.Produce(t, s.Brokers, s.Topics.Commands, kafkatest.Record{Key: []byte(urn), Value: []byte(`{"urn":"` + urn + `","event":`)})

		var dls struct{ Items []httpapi.DeadLetterView }
		eventually(t, 30*time.Second, "the dead letter listed", func() bool {
			api(t, s, "/dead-letters", &dls)
			return len(dls.Items) == 1
		})
		dl := dls.Items[0]
		if dl.Key != urn || dl.Code != "malformed_json" || dl.Topic != s.Topics.DeadLetters || dl.Redrive != nil || len(dl.Record) == 0 {
			t.Fatalf("dead letter %+v", dl)
		}
		path := "/dead-letters/" + dl.ID + "/redrive"
		if code, _ := call(t, s, http.MethodPost, path, "", false, nil); code != http.StatusUnauthorized {
			t.Errorf("redrive without the token: %d, want 401", code)
		}
		if code, _ := call(t, s, http.MethodGet, path, "", true, nil); code != http.StatusMethodNotAllowed {
			t.Errorf("GET of the redrive route: %d, want 405", code)
		}
		if code, body := call(t, s, http.MethodPost, path, `{"value": " "}`, true, nil); code != http.StatusUnprocessableEntity ||
			decode[actionAnswer](t, body).Action.Result != operator.ResultRefused {
			t.Errorf("redrive with an empty edit: %d %s, want 422 refused", code, body)
		}
		edited, _ := json.Marshal(map[string]string{"value": `{"urn":"` + urn + `","event":"prescription.request","payload":` + payloads["prescription.request"] + `}`})
		code, body := call(t, s, http.MethodPost, path, string(edited), true, nil)
		first := decode[actionAnswer](t, body)
		if code != http.StatusOK || first.Action.Result != operator.ResultDone || first.Action.Actor != httpapi.StaticSubject || first.Action.URN != urn {
			t.Fatalf("redrive: %d %s", code, body)
		}
		eventually(t, 30*time.Second, "the redriven command processed", func() bool { return status(t, s, urn) == "requested" })

		code, body = call(t, s, http.MethodPost, path, "", true, nil)
		if second := decode[actionAnswer](t, body); code != http.StatusConflict || second.Action.Result != operator.ResultAlreadyRedriven {
			t.Errorf("second redrive: %d %s", code, body)
		}
		var redriven []kafkatest.Record
		for _, r := range kafkatest.ConsumeAll(t, s.Brokers, s.Topics.Commands) {
			if r.Headers[operator.HeaderRedriveOf] != "" {
				redriven = append(redriven, r)
			}
		}
		wantID := operator.RedriveCommandID(s.Topics.DeadLetters, dl.ID)
		if len(redriven) != 1 || redriven[0].Headers["command-id"] != wantID || string(redriven[0].Key) != urn {
			t.Fatalf("redriven records on the command topic: %+v, want one with command-id %s", redriven, wantID)
		}
		if code, _ := call(t, s, http.MethodPost, "/dead-letters/9-999/redrive", "", true, nil); code != http.StatusNotFound {
			t.Errorf("redrive of an unknown dead letter: %d, want 404", code)
		}

		var actions struct{ Items []readmodel.OperatorAction }
		api(t, s, "/operator-actions?urn="+url.QueryEscape(urn), &actions)
		if got := results(actions.Items); !slices.Equal(got, []string{"redrive:refused", "redrive:done", "redrive:already_redriven"}) {
			t.Errorf("recorded actions %v", got)
		}
		var history struct{ OperatorActions []readmodel.OperatorAction }
		api(t, s, "/prescriptions/"+urn+"/history", &history)
		if got := results(history.OperatorActions); !slices.Equal(got, []string{"redrive:refused", "redrive:done", "redrive:already_redriven"}) {
			t.Errorf("history's operator actions %v", got)
		}
	})
}

func results(as []readmodel.OperatorAction) []string {
	var out []string
	for _, a := range as {
		out = append(out, a.Action+":"+a.Result)
	}
	return out
}

// A parked insurance call is retried with the same idempotency key: while
// the partner is down the retry fails (502) and the effect stays parked;
// once healed it succeeds, leaves the parked list, and a third retry is a
// 409. Every attempt is recorded and in the history.
func TestRetryParked(t *testing.T) {
	s := startStack(t, nil)
	s.Sim.SetDown(partnersim.Insurance, true)
	urn := "urn:rx:retry"
	send(t, s, urn, "prescription.request", "prescription.approve")
	var parked struct{ Items []projections.Effect }
	eventually(t, 30*time.Second, "a parked insurance call", func() bool {
		api(t, s, "/effects/parked", &parked)
		return len(parked.Items) == 1
	})
	e := parked.Items[0]
	path := "/effects/" + e.Projector + "/" + e.EventID + "/retry"
	if e.Projector != "insurance" || e.URN != urn || e.Attempts != 3 { // the harness's MaxAttempts
		t.Fatalf("parked %+v, want 3 attempts", e)
	}
	if code, _ := call(t, s, http.MethodPost, path, "", false, nil); code != http.StatusUnauthorized {
		t.Errorf("retry without the token: %d, want 401", code)
	}
	if code, body := call(t, s, http.MethodPost, path, "", true, nil); code != http.StatusBadGateway ||
		decode[actionAnswer](t, body).Action.Result != operator.ResultFailed {
		t.Errorf("retry while down: %d %s", code, body)
	}
	if api(t, s, "/effects/parked", &parked); len(parked.Items) != 1 || parked.Items[0].Attempts != 6 {
		t.Errorf("after a failed retry, parked: %+v, want it with 6 attempts", parked.Items)
	}

	s.Sim.SetDown(partnersim.Insurance, false)
	code, body := call(t, s, http.MethodPost, path, "", true, nil)
	ok := decode[actionAnswer](t, body)
	if code != http.StatusOK || ok.Action.Result != operator.ResultDone || ok.Effect == nil || ok.Effect.Status != projections.EffectDone ||
		ok.Effect.Attempts != 7 {
		t.Fatalf("retry once healed: %d %s", code, body)
	}
	accepted := s.Sim.Accepted(partnersim.Insurance)
	if len(accepted) != 1 || accepted[0].IdempotencyKey != e.EventID {
		t.Errorf("insurance accepted %+v, want one call with key %s", accepted, e.EventID)
	}
	if api(t, s, "/effects/parked", &parked); len(parked.Items) != 0 {
		t.Errorf("still parked: %+v", parked.Items)
	}
	if code, _ := call(t, s, http.MethodPost, path, "", true, nil); code != http.StatusConflict {
		t.Errorf("retry of a done effect: %d, want 409", code)
	}
	if code, _ := call(t, s, http.MethodPost, "/effects/insurance/nope/retry", "", true, nil); code != http.StatusNotFound {
		t.Errorf("retry of an unknown effect: %d, want 404", code)
	}
	var history struct{ OperatorActions []readmodel.OperatorAction }
	api(t, s, "/prescriptions/"+urn+"/history", &history)
	if got := results(history.OperatorActions); !slices.Equal(got, []string{"retry:failed", "retry:done", "retry:not_parked"}) {
		t.Errorf("history's operator actions %v", got)
	}
}

// The console: sign-in exchanges the token for a strict session cookie;
// every page carries a CSP without inline script; a cross-origin POST is
// refused before it acts, whatever its cookie; a POST without a session is
// refused.
func TestConsoleSecurity(t *testing.T) {
	s := startStack(t, nil)
	if code, _ := call(t, s, http.MethodGet, "/console/", "", false, nil); code != http.StatusSeeOther {
		t.Errorf("console without a session: %d, want 303 to sign in", code)
	}
	form := http.Header{"Content-Type": {"application/x-www-form-urlencoded"}}
	if code, _ := call(t, s, http.MethodPost, "/console/login", "token=wrong", false, form); code != http.StatusUnauthorized {
		t.Errorf("sign-in with a wrong token: %d, want 401", code)
	}
	req, _ := http.NewRequest(http.MethodPost, "http://"+s.Projector.HTTPAddr()+"/console/login", strings.NewReader("token="+token))
	req.Header = form.Clone()
	resp, err := (&http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}).Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	cookies := resp.Cookies()
	if resp.StatusCode != http.StatusSeeOther || len(cookies) != 1 {
		t.Fatalf("sign-in: %d, cookies %v", resp.StatusCode, cookies)
	}
	ck := cookies[0]
	if !ck.HttpOnly || ck.SameSite != http.SameSiteStrictMode || ck.Path != "/console/" || len(ck.Value) < 40 {
		t.Errorf("session cookie %+v", ck)
	}
	session := http.Header{"Cookie": {ck.Name + "=" + ck.Value}, "Content-Type": {"application/x-www-form-urlencoded"}}

	req, _ = http.NewRequest(http.MethodGet, "http://"+s.Projector.HTTPAddr()+"/console/operations", nil)
	req.Header = session.Clone()
	resp, err = http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	csp := resp.Header.Get("Content-Security-Policy")
	directives := strings.Split(csp, ";")
	for i := range directives {
		directives[i] = strings.TrimSpace(directives[i])
	}
	if resp.StatusCode != http.StatusOK || !slices.Contains(directives, "script-src 'self'") || !slices.Contains(directives, "default-src 'none'") {
		t.Errorf("operations page: %d, CSP %q, want script-src 'self' alone and default-src 'none'", resp.StatusCode, csp)
	}

	for name, h := range map[string]http.Header{
		"Sec-Fetch-Site cross-site": {"Sec-Fetch-Site": {"cross-site"}},
		"foreign Origin":            {"Origin": {"http://attacker.example"}},
	} {
		hdr := session.Clone()
		for k, v := range h {
			hdr[k] = v
		}
		if code, _ := call(t, s, http.MethodPost, "/console/redrive", "id=0-0&edit=1&value=x", false, hdr); code != http.StatusForbidden {
			t.Errorf("%s: redrive answered %d, want 403", name, code)
		}
		if code, _ := call(t, s, http.MethodPost, "/console/retry", "id=insurance/x", false, hdr); code != http.StatusForbidden {
			t.Errorf("%s: retry answered %d, want 403", name, code)
		}
	}
	var actions struct{ Items []readmodel.OperatorAction }
	if api(t, s, "/operator-actions", &actions); len(actions.Items) != 0 {
		t.Errorf("refused requests were recorded as actions: %+v", actions.Items)
	}
	sameOrigin := session.Clone()
	sameOrigin.Set("Sec-Fetch-Site", "same-origin")
	if code, _ := call(t, s, http.MethodPost, "/console/redrive", "id=0-0", false, sameOrigin); code != http.StatusNotFound {
		t.Errorf("same-origin redrive of an unknown dead letter: %d, want 404 (past the origin check)", code)
	}
	if code, _ := call(t, s, http.MethodPost, "/console/retry", "id=insurance/x", false, form); code != http.StatusUnauthorized {
		t.Errorf("retry without a session: %d, want 401", code)
	}
}

// signIn returns a session cookie header of the console.
func signIn(t *testing.T, s *stack.Stack) http.Header {
	t.Helper()
	req, _ := http.NewRequest(http.MethodPost, "http://"+s.Projector.HTTPAddr()+"/console/login", strings.NewReader("token="+token))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	resp, err := (&http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}).Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if len(resp.Cookies()) != 1 {
		t.Fatalf("sign-in: %d, no cookie", resp.StatusCode)
	}
	return http.Header{"Cookie": {resp.Cookies()[0].Name + "=" + resp.Cookies()[0].Value}}
}

// The overview counts the refusals and dead letters of the last hour, read
// from their topics, and each state's prescriptions.
func TestOverviewCounts(t *testing.T) {
	s := startStack(t, nil)
	session := signIn(t, s)
	send(t, s, "urn:rx:refused", "prescription.approve") // no such prescription yet: refused
	send(t, s, "urn:rx:ok", "prescription.request")
	kafkatest.Produce(t, s.Brokers, s.Topics.Commands, kafkatest.Record{Key: []byte("urn:rx:bad"), Value: []byte("{")})
	var page string
	eventually(t, 30*time.Second, "one refusal and one dead letter on the overview", func() bool {
		code, body := call(t, s, http.MethodGet, "/console/", "", false, session)
		page = string(body)
		return code == http.StatusOK && strings.Contains(page, `id="refusals-hour">1<`) && strings.Contains(page, `id="deadletters-hour">1<`) &&
			strings.Contains(page, `data-status="requested">1<`)
	})
	if !strings.Contains(page, "requested: requested (1)") {
		t.Errorf("the diagram lacks the live count of requested:\n%s", page)
	}
}

// Untrusted text reaches the console's pages escaped (the browser tests
// check that no script runs; this checks the markup).
func TestConsoleEscapes(t *testing.T) {
	s := startStack(t, nil)
	session := signIn(t, s)
	urn := "urn:rx:hostile"
	kafkatest.Produce(t, s.Brokers, s.Topics.Commands, kafkatest.Record{Key: []byte(urn), Value: []byte(`{"urn":"` + urn +
		`","event":"prescription.request","payload":{"patientId":"<script>alert(1)</script>","prescriberId":"d1",` +
		`"medication":{"name":"\"><img src=x onerror=alert(2)>","quantity":1}}}`)})
	var body string
	eventually(t, 30*time.Second, "the prescription page", func() bool {
		code, b := call(t, s, http.MethodGet, "/console/prescription?urn="+url.QueryEscape(urn), "", false, session)
		body = string(b)
		return code == http.StatusOK && strings.Contains(body, "PrescriptionRequested") && strings.Contains(body, `id="status"`) // the read model's row too
	})
	for _, bad := range []string{"<script>alert", "<img src=x"} {
		if strings.Contains(body, bad) {
			t.Errorf("the page holds %q unescaped", bad)
		}
	}
	for _, want := range []string{"&lt;script&gt;alert(1)&lt;/script&gt;", "&#34;&gt;&lt;img src=x onerror=alert(2)&gt;"} {
		if !strings.Contains(body, want) {
			t.Errorf("the page lacks the escaped %q", want)
		}
	}
}

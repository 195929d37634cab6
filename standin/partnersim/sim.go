// Package partnersim provides SIMULATORS of rxflow's external partners
// (insurance, pharmacy, patient notifications, support alerting). They are
// local stand-ins for tests, the demo and the local stack — NOT the real
// partners, and they perform no real side effects.
//
// One HTTP server hosts all four under /<partner>/v1/..., so a partner
// client's BaseURL is http://<addr>/<partner>. Each simulator behaves like a
// well-behaved partner: it requires a JSON body and an Idempotency-Key,
// replays the original response for a repeated key, and can be told to
// fail, go down or slow down, from Go or over HTTP under /_sim/.
package partnersim

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"mime"
	"net"
	"net/http"
	"slices"
	"strconv"
	"sync"
	"time"
)

// Partner names one simulated partner.
type Partner string

// The simulated partners.
const (
	Insurance     Partner = "insurance"
	Pharmacy      Partner = "pharmacy"
	Notifications Partner = "notifications"
	Alerting      Partner = "alerting"
)

// routes are the simulated partners' POST paths (below /<partner>), in
// order, each with the payload check it applies. A new partner or path of
// projections.Reactions is one entry here, under the same name and path.
var routes = []struct {
	partner  Partner
	path     string
	validate func(map[string]any) []string
}{
	{Insurance, "/v1/approvals", validateApproval},
	{Pharmacy, "/v1/prescriptions", validatePrescription},
	{Pharmacy, "/v1/returns", validateReturn},
	{Notifications, "/v1/notifications", validateNotification},
	{Alerting, "/v1/alerts", validateAlert},
}

// Partners lists every simulated partner.
func Partners() []Partner {
	var ps []Partner
	for _, r := range routes {
		if !slices.Contains(ps, r.partner) {
			ps = append(ps, r.partner)
		}
	}
	return ps
}

// ParsePartner returns the Partner named s.
func ParsePartner(s string) (Partner, error) {
	p := Partner(s)
	if !slices.Contains(Partners(), p) {
		return "", fmt.Errorf("partnersim: unknown partner %q", s)
	}
	return p, nil
}

// maxBody bounds an accepted request body.
const maxBody = 1 << 20

// Config configures the simulator server.
type Config struct {
	// Addr to listen on; default "127.0.0.1:0" (the local stack uses 127.0.0.1:8090).
	Addr string
	// Logger receives one line per partner request (default slog.Default()).
	Logger *slog.Logger
}

// Call is one HTTP request a simulated partner received.
type Call struct {
	IdempotencyKey string          `json:"idempotencyKey"`
	Body           json.RawMessage `json:"body,omitempty"` // absent when not valid JSON
	At             time.Time       `json:"at"`
	Attempt        int             `json:"attempt"` // 1-based count of requests seen with this key
	Status         int             `json:"status"`  // status answered (the client may have hung up during latency)
	Replay         bool            `json:"replay"`  // answered from the idempotency store
	Reason         string          `json:"reason,omitempty"`
	Traceparent    string          `json:"traceparent,omitempty"` // the W3C traceparent header received, if any
}

// stored is the original answer for an accepted idempotency key.
type stored struct {
	canonical []byte // request body, re-encoded to compare payloads
	status    int
	body      []byte
}

type partnerState struct {
	calls      []Call
	accepted   []Call
	byKey      map[string]stored
	seenKeys   map[string]int
	seq        int
	failNext   int
	failStatus int
	down       bool
	latency    time.Duration
	retryAfter time.Duration
	refuse     Refusal
}

// Refusal makes a partner refuse, every time, the requests whose JSON body
// has the top-level string field Field equal to Value, with Status: a
// partner that declines some orders for good (say, a closed pharmacy),
// whatever the attempt. The zero Refusal refuses nothing.
type Refusal struct {
	Field  string `json:"field"`
	Value  string `json:"value"`
	Status int    `json:"status"` // 400–599
}

func newPartnerState() *partnerState {
	return &partnerState{byKey: map[string]stored{}, seenKeys: map[string]int{}}
}

// Sim is the running simulator server.
type Sim struct {
	addr   string
	srv    *http.Server
	log    *slog.Logger
	done   chan struct{}
	closed sync.Once

	mu    sync.Mutex
	state map[Partner]*partnerState
}

// Start listens on cfg.Addr and serves all four simulators until Close.
func Start(cfg Config) (*Sim, error) {
	if cfg.Addr == "" {
		cfg.Addr = "127.0.0.1:0"
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	ln, err := net.Listen("tcp", cfg.Addr)
	if err != nil {
		return nil, fmt.Errorf("partnersim: listen %s: %w", cfg.Addr, err)
	}
	s := &Sim{addr: ln.Addr().String(), log: cfg.Logger, done: make(chan struct{})}
	s.resetLocked()

	mux := http.NewServeMux()
	for _, r := range routes {
		mux.HandleFunc("POST /"+string(r.partner)+r.path, s.partnerHandler(r.partner, r.validate))
	}
	mux.HandleFunc("GET /_sim/calls", s.handleCalls)
	mux.HandleFunc("POST /_sim/fail", s.handleFail)
	mux.HandleFunc("POST /_sim/down", s.handleDown)
	mux.HandleFunc("POST /_sim/latency", s.handleLatency)
	mux.HandleFunc("POST /_sim/retryafter", s.handleRetryAfter)
	mux.HandleFunc("POST /_sim/refuse", s.handleRefuse)
	mux.HandleFunc("POST /_sim/reset", s.handleReset)

	s.srv = &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	go func() {
		if err := s.srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			s.log.Error("partnersim: serve failed", "err", err)
		}
	}()
	s.log.Info("partner simulators listening (stand-ins, not real partners)", "addr", s.addr)
	return s, nil
}

// Addr is the listening address, e.g. 127.0.0.1:8090.
func (s *Sim) Addr() string { return s.addr }

// URL is the base URL to give partner p's client, e.g. http://127.0.0.1:8090/insurance.
func (s *Sim) URL(p Partner) string { return "http://" + s.addr + "/" + string(p) }

// Calls returns every request p received, in arrival order, including
// rejected ones and replays.
func (s *Sim) Calls(p Partner) []Call {
	s.mu.Lock()
	defer s.mu.Unlock()
	if st := s.state[p]; st != nil {
		return append([]Call(nil), st.calls...)
	}
	return nil
}

// Accepted returns the request that first accepted each distinct
// idempotency key — the effective side effects — in order.
func (s *Sim) Accepted(p Partner) []Call {
	s.mu.Lock()
	defer s.mu.Unlock()
	if st := s.state[p]; st != nil {
		return append([]Call(nil), st.accepted...)
	}
	return nil
}

// FailNext makes the next n requests to p answer status without
// processing them. A status outside 400–599 means 503; n <= 0 cancels.
func (s *Sim) FailNext(p Partner, n int, status int) {
	if status < 400 || status > 599 {
		status = http.StatusServiceUnavailable
	}
	s.with(p, func(st *partnerState) { st.failNext, st.failStatus = max(n, 0), status })
}

// SetDown makes every request to p answer 503 while down.
func (s *Sim) SetDown(p Partner, down bool) {
	s.with(p, func(st *partnerState) { st.down = down })
}

// Refuse sets p's Refusal, replacing the previous one; a zero Field
// cancels it. A Status outside 400–599 means 422. A key accepted before is
// still replayed.
func (s *Sim) Refuse(p Partner, r Refusal) {
	if r.Field == "" {
		r = Refusal{}
	} else if r.Status < 400 || r.Status > 599 {
		r.Status = http.StatusUnprocessableEntity
	}
	s.with(p, func(st *partnerState) { st.refuse = r })
}

// SetLatency delays every answer from p by d. The request is processed
// first, so a client that times out meanwhile may already have caused the
// side effect — exactly the case idempotency keys exist for.
func (s *Sim) SetLatency(p Partner, d time.Duration) {
	s.with(p, func(st *partnerState) { st.latency = max(d, 0) })
}

// SetRetryAfter adds "Retry-After: <d in whole seconds, rounded up>" to
// p's simulated 429 and 503 answers; 0 removes it.
func (s *Sim) SetRetryAfter(p Partner, d time.Duration) {
	s.with(p, func(st *partnerState) { st.retryAfter = max(d, 0) })
}

// Reset forgets all calls and idempotency keys and clears every control.
func (s *Sim) Reset() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.resetLocked()
}

func (s *Sim) resetLocked() {
	s.state = map[Partner]*partnerState{}
	for _, p := range Partners() {
		s.state[p] = newPartnerState()
	}
}

// Close stops the server, cutting short any simulated latency.
func (s *Sim) Close() error {
	var err error
	s.closed.Do(func() {
		close(s.done)
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if err = s.srv.Shutdown(ctx); err != nil {
			err = errors.Join(err, s.srv.Close())
		}
	})
	return err
}

func (s *Sim) with(p Partner, f func(*partnerState)) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if st := s.state[p]; st != nil {
		f(st)
	}
}

// answer is what a partner handler writes back.
type answer struct {
	status     int
	body       []byte
	retryAfter time.Duration
	replay     bool
}

func (s *Sim) partnerHandler(p Partner, validate func(map[string]any) []string) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		raw, readErr := io.ReadAll(http.MaxBytesReader(w, r.Body, maxBody))
		key := r.Header.Get("Idempotency-Key")

		s.mu.Lock()
		st := s.state[p]
		call := Call{IdempotencyKey: key, At: time.Now(), Traceparent: r.Header.Get("traceparent")}
		if key != "" {
			st.seenKeys[key]++
			call.Attempt = st.seenKeys[key]
		}
		var ans answer
		ans, call.Reason = s.decide(p, st, r, key, raw, readErr, validate)
		call.Status, call.Replay = ans.status, ans.replay
		if json.Valid(raw) {
			call.Body = json.RawMessage(raw)
		}
		st.calls = append(st.calls, call)
		if ans.status == http.StatusOK && !ans.replay {
			st.accepted = append(st.accepted, call)
		}
		latency := st.latency
		s.mu.Unlock()

		s.log.Info("partnersim: request", "partner", p, "idempotency_key", key,
			"attempt", call.Attempt, "status", ans.status, "replay", ans.replay, "reason", call.Reason, "traceparent", call.Traceparent)

		if latency > 0 {
			t := time.NewTimer(latency)
			select {
			case <-t.C:
			case <-r.Context().Done(): // client gave up
				t.Stop()
				return
			case <-s.done:
				// Drop the connection rather than let the server send an empty 200.
				t.Stop()
				panic(http.ErrAbortHandler)
			}
		}
		w.Header().Set("Content-Type", "application/json")
		if ans.retryAfter > 0 {
			w.Header().Set("Retry-After", strconv.Itoa(int((ans.retryAfter+time.Second-1)/time.Second)))
		}
		if ans.replay {
			w.Header().Set("Idempotent-Replayed", "true")
		}
		w.WriteHeader(ans.status)
		_, _ = w.Write(ans.body)
	}
}

// decide picks the answer for one request; the caller holds s.mu.
func (s *Sim) decide(p Partner, st *partnerState, r *http.Request, key string, raw []byte, readErr error, validate func(map[string]any) []string) (answer, string) {
	simulated := func(status int, reason string) (answer, string) {
		a := answer{status: status, body: errorBody(reason)}
		if status == http.StatusTooManyRequests || status == http.StatusServiceUnavailable {
			a.retryAfter = st.retryAfter
		}
		return a, reason
	}
	refuse := func(status int, reason string) (answer, string) {
		return answer{status: status, body: errorBody(reason)}, reason
	}

	switch {
	case st.down:
		return simulated(http.StatusServiceUnavailable, "simulated outage")
	case st.failNext > 0:
		st.failNext--
		return simulated(st.failStatus, "simulated failure")
	case readErr != nil:
		return refuse(http.StatusBadRequest, "reading body: "+readErr.Error())
	case key == "":
		return refuse(http.StatusBadRequest, "missing Idempotency-Key header")
	}
	if mt, _, err := mime.ParseMediaType(r.Header.Get("Content-Type")); err != nil || mt != "application/json" {
		return refuse(http.StatusUnsupportedMediaType, "Content-Type must be application/json")
	}
	var doc map[string]any
	if err := json.Unmarshal(raw, &doc); err != nil {
		return refuse(http.StatusBadRequest, "body is not a JSON object: "+err.Error())
	}
	canonical, _ := json.Marshal(doc) // map keys sort, so equal payloads compare equal

	if prev, ok := st.byKey[key]; ok {
		if !bytes.Equal(prev.canonical, canonical) {
			return refuse(http.StatusUnprocessableEntity, "Idempotency-Key reused with a different payload")
		}
		return answer{status: prev.status, body: prev.body, replay: true}, "replay of accepted key"
	}
	if rf := st.refuse; rf.Field != "" && doc[rf.Field] == rf.Value {
		return simulated(rf.Status, fmt.Sprintf("simulated refusal: %s is %q", rf.Field, rf.Value))
	}
	if problems := validate(doc); len(problems) > 0 {
		body, _ := json.Marshal(map[string]any{"error": "invalid payload", "problems": problems})
		return answer{status: http.StatusBadRequest, body: body}, fmt.Sprintf("invalid payload: %v", problems)
	}

	st.seq++
	body, _ := json.Marshal(map[string]string{
		"status":    "accepted",
		"reference": fmt.Sprintf("%s-%06d", p, st.seq),
	})
	st.byKey[key] = stored{canonical: canonical, status: http.StatusOK, body: body}
	return answer{status: http.StatusOK, body: body}, ""
}

func errorBody(msg string) []byte {
	b, _ := json.Marshal(map[string]string{"error": msg})
	return b
}

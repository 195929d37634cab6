package partnersim

import (
	"encoding/json"
	"fmt"
	"net/http"
	"strconv"
	"time"
)

// HTTP controls under /_sim/, for the local stack and the demo.

// Report is one partner's entry in the GET /_sim/calls answer.
type Report struct {
	Calls    []Call `json:"calls"`
	Accepted []Call `json:"accepted"`
}

// Controls is a partner's current failure settings, echoed by the POST
// /_sim/* endpoints.
type Controls struct {
	Partner      Partner  `json:"partner"`
	Down         bool     `json:"down"`
	FailNext     int      `json:"failNext"`
	FailStatus   int      `json:"failStatus,omitempty"`
	LatencyMS    int64    `json:"latencyMs"`
	RetryAfterMS int64    `json:"retryAfterMs"`
	Refuse       *Refusal `json:"refuse,omitempty"`
}

// handleCalls answers GET /_sim/calls[?partner=p] with a map partner → Report.
func (s *Sim) handleCalls(w http.ResponseWriter, r *http.Request) {
	ps := Partners()
	if name := r.URL.Query().Get("partner"); name != "" {
		p, err := ParsePartner(name)
		if err != nil {
			httpError(w, http.StatusBadRequest, err.Error())
			return
		}
		ps = []Partner{p}
	}
	out := map[Partner]Report{}
	for _, p := range ps {
		out[p] = Report{Calls: nonNil(s.Calls(p)), Accepted: nonNil(s.Accepted(p))}
	}
	writeJSON(w, http.StatusOK, out)
}

// handleFail answers POST /_sim/fail?partner=p&n=N&status=S (n default 1, status default 503).
func (s *Sim) handleFail(w http.ResponseWriter, r *http.Request) {
	p, ok := partnerParam(w, r)
	if !ok {
		return
	}
	n, ok := intParam(w, r, "n", 1, 0, 1_000_000)
	if !ok {
		return
	}
	status, ok := intParam(w, r, "status", http.StatusServiceUnavailable, 400, 599)
	if !ok {
		return
	}
	s.FailNext(p, n, status)
	s.writeControls(w, p)
}

// handleDown answers POST /_sim/down?partner=p&down=true|false (default true).
func (s *Sim) handleDown(w http.ResponseWriter, r *http.Request) {
	p, ok := partnerParam(w, r)
	if !ok {
		return
	}
	down := true
	if v := r.URL.Query().Get("down"); v != "" {
		b, err := strconv.ParseBool(v)
		if err != nil {
			httpError(w, http.StatusBadRequest, "down must be true or false")
			return
		}
		down = b
	}
	s.SetDown(p, down)
	s.writeControls(w, p)
}

// handleLatency answers POST /_sim/latency?partner=p&ms=M.
func (s *Sim) handleLatency(w http.ResponseWriter, r *http.Request) {
	p, ok := partnerParam(w, r)
	if !ok {
		return
	}
	ms, ok := intParam(w, r, "ms", -1, 0, 3_600_000)
	if !ok {
		return
	}
	s.SetLatency(p, time.Duration(ms)*time.Millisecond)
	s.writeControls(w, p)
}

// handleRetryAfter answers POST /_sim/retryafter?partner=p&s=S.
func (s *Sim) handleRetryAfter(w http.ResponseWriter, r *http.Request) {
	p, ok := partnerParam(w, r)
	if !ok {
		return
	}
	secs, ok := intParam(w, r, "s", -1, 0, 86_400)
	if !ok {
		return
	}
	s.SetRetryAfter(p, time.Duration(secs)*time.Second)
	s.writeControls(w, p)
}

// handleRefuse answers POST /_sim/refuse?partner=p&field=f&value=v&status=S
// (status default 422); without field it cancels p's refusal.
func (s *Sim) handleRefuse(w http.ResponseWriter, r *http.Request) {
	p, ok := partnerParam(w, r)
	if !ok {
		return
	}
	status, ok := intParam(w, r, "status", http.StatusUnprocessableEntity, 400, 599)
	if !ok {
		return
	}
	q := r.URL.Query()
	s.Refuse(p, Refusal{Field: q.Get("field"), Value: q.Get("value"), Status: status})
	s.writeControls(w, p)
}

// handleReset answers POST /_sim/reset.
func (s *Sim) handleReset(w http.ResponseWriter, _ *http.Request) {
	s.Reset()
	w.WriteHeader(http.StatusNoContent)
}

func (s *Sim) writeControls(w http.ResponseWriter, p Partner) {
	s.mu.Lock()
	st := s.state[p]
	c := Controls{
		Partner: p, Down: st.down, FailNext: st.failNext,
		LatencyMS: st.latency.Milliseconds(), RetryAfterMS: st.retryAfter.Milliseconds(),
	}
	if st.failNext > 0 {
		c.FailStatus = st.failStatus
	}
	if st.refuse.Field != "" {
		rf := st.refuse
		c.Refuse = &rf
	}
	s.mu.Unlock()
	writeJSON(w, http.StatusOK, c)
}

func partnerParam(w http.ResponseWriter, r *http.Request) (Partner, bool) {
	p, err := ParsePartner(r.URL.Query().Get("partner"))
	if err != nil {
		httpError(w, http.StatusBadRequest, err.Error())
		return "", false
	}
	return p, true
}

// intParam reads an integer query parameter in [lo, hi]; def < 0 makes it required.
func intParam(w http.ResponseWriter, r *http.Request, name string, def, lo, hi int) (int, bool) {
	v := r.URL.Query().Get(name)
	if v == "" && def >= 0 {
		return def, true
	}
	n, err := strconv.Atoi(v)
	if err != nil || n < lo || n > hi {
		httpError(w, http.StatusBadRequest, fmt.Sprintf("%s must be an integer in [%d, %d]", name, lo, hi))
		return 0, false
	}
	return n, true
}

func nonNil(c []Call) []Call {
	if c == nil {
		return []Call{}
	}
	return c
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

func httpError(w http.ResponseWriter, status int, msg string) {
	writeJSON(w, status, map[string]string{"error": msg})
}

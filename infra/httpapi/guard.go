package httpapi

import (
	"bytes"
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"time"

	"rxflow/infra/readmodel"
)

// AccessLog is where the Guard records each audited request, and where
// GET /audit/access reads them: readmodel.AccessLog.
type AccessLog interface {
	// Record appends a and returns its id.
	Record(ctx context.Context, a readmodel.Access) (int64, error)
	// Query returns the records matching f, newest first;
	// readmodel.ErrInvalidFilter for a bad limit or cursor.
	Query(ctx context.Context, f readmodel.AccessFilter) (readmodel.AccessPage, error)
}

var _ AccessLog = (*readmodel.AccessLog)(nil)

// auditTimeout bounds the writing of one access record; it does not end
// when the client goes away.
const auditTimeout = 5 * time.Second

// Guard authenticates requests and records the audited ones in the access
// log, failing closed: an answer whose record cannot be written is not
// sent; the caller gets 503 audit_unavailable instead.
type Guard struct {
	auth *Authenticator
	log  AccessLog
	slog *slog.Logger
	now  func() time.Time
}

// NewGuard returns a guard checking tokens with auth and recording into
// accessLog, both required. logger defaults to slog.Default(), now (the
// time of each record) to time.Now.
func NewGuard(auth *Authenticator, accessLog AccessLog, logger *slog.Logger, now func() time.Time) (*Guard, error) {
	if auth == nil || accessLog == nil {
		return nil, errors.New("httpapi: the guard needs an authenticator and an access log")
	}
	if now == nil {
		now = time.Now
	}
	return &Guard{auth: auth, log: accessLog, slog: cmp.Or(logger, slog.Default()), now: now}, nil
}

// Handler serves next to authenticated callers, with the Caller in the
// request's context (CallerFrom); others get 401 unauthorized (no valid
// token) or 403 forbidden (a valid token without a usable role), as JSON.
//
// route names the audited route of a request (its pattern, such as
// /prescriptions/{urn}), or "" for one that is not audited (an unknown
// route); it runs before authentication, in the request's context, and may
// note the urns the path names (NoteURNs), so that the record of a refused
// request has them too. An audited request's answer is held back until its record
// (readmodel.Access: the caller, route, urns noted with NoteURNs, time,
// status and error code) is written; if that fails, the answer is dropped
// and the caller gets 503 audit_unavailable. Refusals (401, 403, 404) are
// recorded as well as answers.
func (g *Guard) Handler(next http.Handler, route func(*http.Request) string) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		n := &note{}
		r = r.WithContext(context.WithValue(r.Context(), callerKey{}, n))
		pattern := route(r)
		out := w
		var held *heldAnswer
		if pattern != "" {
			held = &heldAnswer{header: http.Header{}}
			out = held
		}
		caller, err := g.auth.Authenticate(r)
		switch {
		case errors.Is(err, ErrNoRole):
			n.subject = caller.Subject
			g.slog.Info("query api: token refused", "subject", clip(caller.Subject), "reason", err)
			writeError(out, http.StatusForbidden, "forbidden", "the token holds no role this API serves (pharmacy with a pharmacy claim, auditor or operator)")
		case err != nil:
			if r.Header.Get("Authorization") != "" {
				g.slog.Info("query api: token refused", "reason", err)
			}
			out.Header().Set("WWW-Authenticate", "Bearer")
			writeError(out, http.StatusUnauthorized, "unauthorized", "a valid bearer token is required")
		default:
			n.caller = &caller
			next.ServeHTTP(out, r)
		}
		if held == nil {
			return
		}
		if held.status == 0 {
			held.status = StatusClientGone // the handler wrote nothing
		}
		if err := g.record(r, pattern, n, held); err != nil {
			g.slog.Error("query api: access record not written; answering 503 instead", "route", pattern, "err", err)
			writeError(w, http.StatusServiceUnavailable, "audit_unavailable", "the access could not be recorded, so nothing is answered; retry later")
			return
		}
		held.sendTo(w)
	})
}

// record writes the access record of r's answer held.
func (g *Guard) record(r *http.Request, pattern string, n *note, held *heldAnswer) error {
	a := readmodel.Access{At: g.now().UTC(), Subject: n.subject, Method: r.Method, Route: pattern, URNs: n.urns,
		Status: held.status, Outcome: held.outcome()}
	if n.caller != nil {
		a.Subject, a.Role, a.PharmacyID = n.caller.Subject, string(n.caller.Role), n.caller.PharmacyID
	}
	ctx, cancel := context.WithTimeout(context.WithoutCancel(r.Context()), auditTimeout)
	defer cancel()
	if _, err := g.log.Record(ctx, a); err != nil {
		return fmt.Errorf("record %s %s of %s: %w", clip(a.Method), a.Route, clip(a.Subject), err)
	}
	return nil
}

// StatusClientGone is recorded for a request whose client went away before
// it was answered: nothing was sent.
const StatusClientGone = 499

// heldAnswer is an answer held back until its access record is written.
// Handlers write their answer in one piece, so holding it costs no more
// than the answer itself.
type heldAnswer struct {
	header http.Header
	status int
	body   bytes.Buffer
}

func (h *heldAnswer) Header() http.Header { return h.header }

func (h *heldAnswer) WriteHeader(status int) {
	if h.status == 0 {
		h.status = status
	}
}

func (h *heldAnswer) Write(p []byte) (int, error) {
	h.WriteHeader(http.StatusOK)
	return h.body.Write(p)
}

// outcome is "ok" for a 2xx, else the answer's error code.
func (h *heldAnswer) outcome() string {
	switch {
	case h.status == StatusClientGone:
		return "client_gone"
	case h.status < 300:
		return "ok"
	}
	var e struct{ Error string }
	if json.Unmarshal(h.body.Bytes(), &e) != nil || e.Error == "" {
		return "error"
	}
	return e.Error
}

func (h *heldAnswer) sendTo(w http.ResponseWriter) {
	if h.status == StatusClientGone {
		return
	}
	for k, v := range h.header {
		w.Header()[k] = v
	}
	w.WriteHeader(h.status)
	_, _ = w.Write(h.body.Bytes()) // the client went away: nothing to do
}

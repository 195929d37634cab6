// Package httpapi is the projector's HTTP query API: prescriptions from the
// read model (with read-your-writes through minPosition), their audit
// history and past states from the event store, parked partner calls, and
// the access log. See openapi.yaml and docs/api.md.
//
// # Callers
//
// Every route needs a bearer token: a JWT verified against the identity
// provider's JWKS (issuer, audience, expiry, an allowed asymmetric
// algorithm), or, for local runs, the static token (Authenticator). A
// token gives its caller one Role: RolePharmacy reads only the
// prescriptions of its pharmacy (another's is a 404, in every route; its
// stats count its own; parked effects and the access log are 403),
// RoleAuditor reads everything, RoleOperator reads everything and may act.
//
// The Guard authenticates each request and puts its Caller in the
// request's context. Another handler served beside this one (the console)
// uses the same pieces:
//
//	guard, _ := httpapi.NewGuard(auth, accessLog, logger, nil)
//	act := httpapi.RequireRole(retryHandler, httpapi.RoleOperator) // 403 for others
//	h := guard.Handler(act, func(*http.Request) string { return "/effects/{id}/retry" })
//	// inside a handler:
//	caller, _ := httpapi.CallerFrom(r.Context()) // Subject, Role, PharmacyID
//	httpapi.NoteURNs(r.Context(), urn)            // for the access record
//
// # Access log
//
// Every request to a route of this API (not an unknown route) is recorded
// in the AccessLog (readmodel.AccessLog) with the caller's subject, role
// and pharmacy, the route, the urns asked for or answered with, the time,
// the status and the error code; never payload data. Refused requests are
// recorded too. The answer is held until its record is written; if that
// fails, the caller gets 503 audit_unavailable instead (fail closed).
// Auditors and operators read the log through GET /audit/access.
//
// /healthz, /readyz and /metrics are not served here: the projector service
// mounts ops.Handle beside this handler, without authentication.
//
// Every answer is JSON (Content-Type application/json); an error is
// {"error": code, "message": text}. Nothing is redirected: a path that is
// not canonical is a 404 like any unknown route. A {urn} must match
// domain.URNGrammar, or the answer is 400 invalid_urn.
package httpapi

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/url"
	"path"
	"runtime/debug"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"rxflow/domain"
	"rxflow/events"
	"rxflow/infra/operator"
	"rxflow/infra/readmodel"
	"rxflow/projections"
)

// PositionHeader carries the read model's checkpoint on every answer read
// from it: the answer reflects every event up to at least that position.
const PositionHeader = "X-Read-Model-Position"

// DefaultWaitTimeout is the longest wait for minPosition unless configured.
const DefaultWaitTimeout = 5 * time.Second

// Config of the query API.
type Config struct {
	// Auth checks every request's bearer token; required: there is no
	// unauthenticated mode.
	Auth *Authenticator
	// AccessLog records every request to a route of the API; required.
	AccessLog AccessLog
	// WaitTimeout caps the wait for minPosition; default DefaultWaitTimeout.
	// A request may ask for less with ?timeout=.
	WaitTimeout time.Duration
	Logger      *slog.Logger     // default slog.Default()
	Now         func() time.Time // the access records' clock; default time.Now
	// Operator serves the operator routes (retry, redrive, dead letters,
	// operator actions) and adds operatorActions to the history; without
	// it those routes are 404s. With it, Operations is required.
	Operator *operator.Actions
	// Operations is the operations store the operator routes and the
	// history read: readmodel.Operations or postgres.Operations.
	Operations Operations
}

// Operations is what the API reads of the operations store.
type Operations interface {
	// DeadLetters returns up to limit dead letters, the latest consumed first.
	DeadLetters(ctx context.Context, limit int) ([]readmodel.DeadLetterRow, error)
	// Actions returns up to limit operator actions, the latest, oldest
	// first: every action if urn is "", else those concerning urn.
	Actions(ctx context.Context, urn string, limit int) ([]readmodel.OperatorAction, error)
}

var _ Operations = (*readmodel.Operations)(nil)

// ReadModel is what the API reads: the read model's queries, the checkpoint
// their answers reflect, and the wait for it. The read-model projection
// writes the same store through projections.ReadModel.
type ReadModel interface {
	// Get returns urn's row, or an error matching projections.ErrNotFound.
	Get(ctx context.Context, urn string) (projections.Row, error)
	// List returns the rows matching f, ordered by urn, one page at a time;
	// readmodel.ErrInvalidFilter for a bad limit, cursor or status.
	List(ctx context.Context, f projections.Filter) (projections.Page, error)
	// Stats counts prescriptions by status, those of pharmacyID only
	// unless it is ""; every status is present.
	Stats(ctx context.Context, pharmacyID string) (map[domain.Status]int, error)
	// Checkpoint is the $all position of the last event applied; 0 if none.
	Checkpoint(ctx context.Context) (uint64, error)
	// WaitFor blocks until the checkpoint reaches position, or ctx ends
	// (then it returns ctx's error).
	WaitFor(ctx context.Context, position uint64) error
}

var _ ReadModel = (*readmodel.Store)(nil)

type api struct {
	timeout  time.Duration
	log      *slog.Logger
	rm       ReadModel
	history  projections.History
	parked   projections.ParkedEffects
	access   AccessLog
	ops      *operator.Actions
	opsStore Operations
}

// NewHandler returns the query API's handler (routes and answers in
// openapi.yaml). Errors, all {"error": code, "message": text}: 400
// bad_request (a malformed, unknown or repeated query parameter, or one not
// in valid UTF-8) or invalid_urn (a {urn} not in domain.URNGrammar, refused
// before anything is read); 401 unauthorized; 403 forbidden (a token
// without a usable role, or a route the role may not use); 404 not_found
// (no such prescription or route, one a pharmacy may not read, or a path
// not in canonical form); 405 method_not_allowed (Allow: GET); 500
// internal (also for a handler's panic; the cause is only logged); 503
// audit_unavailable (the access record could not be written); 504 timeout
// (with "checkpoint"). With Config.Operator, the action routes (POST, the
// operator role only: 405 with Allow: POST, 403) also answer 409, 413, 422
// and 502 with the recorded action (openapi.yaml).
func NewHandler(cfg Config, rm ReadModel, h projections.History, parked projections.ParkedEffects) (http.Handler, error) {
	var errs []error
	if cfg.Auth == nil || cfg.AccessLog == nil {
		errs = append(errs, errors.New("httpapi: an authenticator and an access log are required"))
	}
	if cfg.WaitTimeout < 0 {
		errs = append(errs, fmt.Errorf("httpapi: wait timeout %v is negative", cfg.WaitTimeout))
	}
	if cfg.Operator != nil && cfg.Operations == nil {
		errs = append(errs, errors.New("httpapi: the operator routes need the operations store"))
	}
	if rm == nil || h == nil || parked == nil {
		errs = append(errs, errors.New("httpapi: the read model, history and parked effects are required"))
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	a := &api{timeout: cmp.Or(cfg.WaitTimeout, DefaultWaitTimeout), log: cmp.Or(cfg.Logger, slog.Default()), rm: rm, history: h, parked: parked,
		access: cfg.AccessLog, ops: cfg.Operator, opsStore: cfg.Operations}
	guard, err := NewGuard(cfg.Auth, cfg.AccessLog, a.log, cfg.Now)
	if err != nil {
		return nil, err
	}

	// Method-less patterns, so that a wrong method is a JSON 405 rather
	// than the catch-all's 404. /prescriptions/stats cannot shadow a
	// prescription: every urn starts with "urn:" (domain.URNGrammar), and
	// {urn} is checked against that grammar before anything is read.
	mux := http.NewServeMux()
	mux.HandleFunc("/prescriptions", a.get(a.fromReadModel(a.list, "status", "patientId", "pharmacyId", "limit", "cursor")))
	mux.HandleFunc("/prescriptions/stats", a.get(a.fromReadModel(a.stats)))
	mux.HandleFunc("/prescriptions/{urn}", a.get(a.withURN(a.fromReadModel(a.prescription))))
	mux.HandleFunc("/prescriptions/{urn}/history", a.get(a.withURN(a.historyOf)))
	mux.HandleFunc("/effects/parked", a.get(a.readsAll(a.parkedEffects)))
	mux.HandleFunc("/audit/access", a.get(a.readsAll(a.accessLog)))
	if a.ops != nil {
		mux.HandleFunc("/effects/{projector}/{eventId}/retry", a.post(a.retry))
		mux.HandleFunc("/dead-letters", a.get(a.readsAll(a.deadLetters)))
		mux.HandleFunc("/dead-letters/{id}/redrive", a.post(a.redrive))
		mux.HandleFunc("/operator-actions", a.get(a.readsAll(a.operatorActions)))
	}
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		a.fail(w, http.StatusNotFound, "not_found", "no such route")
	})
	// urnRoutes has the routes naming a {urn}, each noting the urn the
	// router matched (r.PathValue), if valid: the path is never parsed
	// again here, so whatever its encoding, the record names what is
	// served.
	urnRoutes := http.NewServeMux()
	noteURN := func(_ http.ResponseWriter, r *http.Request) {
		if urn := r.PathValue("urn"); domain.ValidateURN(urn) == nil {
			NoteURNs(r.Context(), urn)
		}
	}
	urnRoutes.HandleFunc("/prescriptions/{urn}", noteURN)
	urnRoutes.HandleFunc("/prescriptions/{urn}/history", noteURN)
	// audited is the route of a request to record, noting the urn its
	// path names, so that a refused request's record has it too.
	audited := func(r *http.Request) string {
		if !isCanonical(r) {
			return ""
		}
		_, pattern := mux.Handler(r)
		if pattern == "/" {
			return ""
		}
		if _, p := urnRoutes.Handler(r); p == pattern {
			// A copy: the router sets its path values on the request.
			urnRoutes.ServeHTTP(discard{}, r.Clone(r.Context()))
		}
		return pattern
	}
	// The outer recoverPanics catches the guard's own panics; the inner one
	// a route's, so that its 500 is recorded.
	return a.recoverPanics(guard.Handler(a.recoverPanics(a.canonical(mux)), audited)), nil
}

// discard is a ResponseWriter dropping what is written to it.
type discard struct{}

func (discard) Header() http.Header         { return http.Header{} }
func (discard) Write(p []byte) (int, error) { return len(p), nil }
func (discard) WriteHeader(int)             {}

// readsAll serves h to auditors and operators; a pharmacy gets 403.
func (a *api) readsAll(h http.HandlerFunc) http.HandlerFunc {
	return RequireRole(h, RoleAuditor, RoleOperator).ServeHTTP
}

// recoverPanics answers a handler's panic with a JSON 500 and logs it with
// its stack. Handlers write their answer in one piece, last, so nothing has
// been written yet when one panics.
func (a *api) recoverPanics(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		defer func() {
			v := recover()
			if v == nil {
				return
			}
			if v == http.ErrAbortHandler {
				panic(v) // net/http's way to abort a response: not ours to answer
			}
			a.log.Error("query api: handler panicked", "route", r.Pattern, "panic", v, "stack", string(debug.Stack()))
			a.fail(w, http.StatusInternalServerError, "internal", "internal error; see the server log")
		}()
		next.ServeHTTP(w, r)
	})
}

// canonical answers 404 for a path that is not in canonical form (an
// empty, "." or ".." segment, a trailing slash, no leading slash), which
// ServeMux would otherwise redirect to its cleaned form with a non-JSON
// 307. Such a path names no route, and the API redirects nothing. Paths
// are compared as sent, escaped, as ServeMux cleans them, so an encoded
// "/" or "." inside a {urn} reaches withURN and is refused there.
func (a *api) canonical(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !isCanonical(r) {
			a.fail(w, http.StatusNotFound, "not_found", "no such route (paths are not cleaned or redirected: "+
				"no empty, \".\" or \"..\" segment, no trailing slash)")
			return
		}
		next.ServeHTTP(w, r)
	})
}

func isCanonical(r *http.Request) bool {
	p := r.URL.EscapedPath()
	return strings.HasPrefix(p, "/") && path.Clean(p) == p
}

// get admits GET only.
func (a *api) get(h http.HandlerFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodGet {
			w.Header().Set("Allow", http.MethodGet)
			a.fail(w, http.StatusMethodNotAllowed, "method_not_allowed", r.Method+" is not allowed here; use GET")
			return
		}
		h(w, r)
	}
}

// withURN answers 400 invalid_urn, before anything is read, when the
// {urn} path value does not match domain.URNGrammar.
func (a *api) withURN(h http.HandlerFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		if err := domain.ValidateURN(r.PathValue("urn")); err != nil {
			a.fail(w, http.StatusBadRequest, "invalid_urn", err.Error()) // the grammar, not the input
			return
		}
		h(w, r)
	}
}

// fromReadModel serves a read-model route. It refuses query parameters
// other than params, minPosition and timeout; waits until the checkpoint
// reaches minPosition, if given; and sets PositionHeader on every answer.
// The checkpoint is read before serve reads the rows, so the header is a
// lower bound of what the answer reflects.
func (a *api) fromReadModel(serve http.HandlerFunc, params ...string) http.HandlerFunc {
	allowed := slices.Concat(params, []string{"minPosition", "timeout"})
	return func(w http.ResponseWriter, r *http.Request) {
		minPos, timeout, perr := a.waitParams(r, allowed)
		if perr == nil && minPos > 0 {
			ctx, cancel := context.WithTimeout(r.Context(), timeout)
			err := a.rm.WaitFor(ctx, minPos)
			cancel()
			switch {
			case r.Context().Err() != nil:
				return // the client went away
			case err != nil && ctx.Err() == nil:
				a.internal(w, r, fmt.Errorf("wait for position %d: %w", minPos, err))
				return
			}
		}
		pos, err := a.rm.Checkpoint(r.Context())
		if err != nil {
			a.internal(w, r, err)
			return
		}
		w.Header().Set(PositionHeader, strconv.FormatUint(pos, 10))
		switch {
		case perr != nil:
			a.fail(w, http.StatusBadRequest, "bad_request", perr.Error())
		case pos < minPos:
			a.log.Info("query api: read model did not reach minPosition in time", "minPosition", minPos, "checkpoint", pos, "timeout", timeout)
			a.failWith(w, http.StatusGatewayTimeout, errorBody{Error: "timeout", Checkpoint: &pos,
				Message: fmt.Sprintf("the read model has not reached position %d within %v (it is at %d); retry later", minPos, timeout, pos)})
		default:
			serve(w, r)
		}
	}
}

// query parses r's query string, admitting each allowed parameter once,
// with a name and a value in valid UTF-8.
func query(r *http.Request, allowed ...string) (url.Values, error) {
	q, err := url.ParseQuery(r.URL.RawQuery)
	if err != nil {
		return nil, fmt.Errorf("malformed query string: %v", err)
	}
	for name, vals := range q {
		switch {
		case !utf8.ValidString(name) || slices.ContainsFunc(vals, func(v string) bool { return !utf8.ValidString(v) }):
			return nil, fmt.Errorf("query parameter %q is not valid UTF-8", name) // %q escapes invalid bytes
		case len(allowed) == 0:
			return nil, errors.New("this route takes no query parameters")
		case !slices.Contains(allowed, name):
			return nil, fmt.Errorf("unknown query parameter %q (allowed: %s)", name, strings.Join(allowed, ", "))
		}
		if len(vals) > 1 {
			return nil, fmt.Errorf("query parameter %q is repeated", name)
		}
	}
	return q, nil
}

// waitParams checks the query and parses minPosition and timeout (a Go
// duration, at most the configured wait timeout).
func (a *api) waitParams(r *http.Request, allowed []string) (minPos uint64, timeout time.Duration, err error) {
	q, err := query(r, allowed...)
	if err != nil {
		return 0, 0, err
	}
	if v := q.Get("minPosition"); q.Has("minPosition") {
		if minPos, err = strconv.ParseUint(v, 10, 64); err != nil {
			return 0, 0, fmt.Errorf("minPosition %q is not a non-negative integer", v)
		}
	}
	timeout = a.timeout
	if v := q.Get("timeout"); q.Has("timeout") {
		d, err := time.ParseDuration(v)
		if err != nil || d <= 0 {
			return 0, 0, fmt.Errorf("timeout %q is not a positive duration such as 500ms or 2s", v)
		}
		timeout = min(d, a.timeout)
	}
	return minPos, timeout, nil
}

// prescription answers a prescription the caller may read; one of another
// pharmacy is not found.
func (a *api) prescription(w http.ResponseWriter, r *http.Request) {
	row, err := a.rm.Get(r.Context(), r.PathValue("urn"))
	if caller, _ := CallerFrom(r.Context()); err == nil && !caller.owns(row.PharmacyID) {
		err = fmt.Errorf("prescription of another pharmacy: %w", projections.ErrNotFound)
	}
	if err != nil {
		a.queryFailed(w, r, err)
		return
	}
	a.reply(w, r, projections.RowViewOf(row))
}

type listBody struct {
	Items      []projections.RowView `json:"items"`
	NextCursor string                `json:"nextCursor,omitempty"`
}

func (a *api) list(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	f := projections.Filter{Status: domain.Status(q.Get("status")), PatientID: q.Get("patientId"), PharmacyID: q.Get("pharmacyId"), Cursor: q.Get("cursor")}
	if f.Status != domain.StatusNone && !slices.Contains(domain.Statuses, f.Status) {
		a.fail(w, http.StatusBadRequest, "bad_request", fmt.Sprintf("unknown status %q (one of %v)", f.Status, domain.Statuses))
		return
	}
	limit, err := limitOf(q, 0)
	if err != nil {
		a.fail(w, http.StatusBadRequest, "bad_request", err.Error())
		return
	}
	f.Limit = limit
	// A pharmacy lists its own prescriptions only: its pharmacyId filter
	// is forced, and asking for another pharmacy's finds nothing.
	pharmacy, ok := a.scope(w, r)
	if !ok {
		return
	}
	if pharmacy != "" {
		if f.PharmacyID != "" && f.PharmacyID != pharmacy {
			a.reply(w, r, listBody{Items: []projections.RowView{}})
			return
		}
		f.PharmacyID = pharmacy
	}
	caller, _ := CallerFrom(r.Context())
	page, err := a.rm.List(r.Context(), f)
	if err != nil {
		a.queryFailed(w, r, err)
		return
	}
	body := listBody{Items: make([]projections.RowView, len(page.Rows)), NextCursor: page.NextCursor}
	for i, row := range page.Rows {
		if !caller.owns(row.PharmacyID) {
			a.internal(w, r, fmt.Errorf("list for pharmacy %q returned a row of %q", caller.PharmacyID, row.PharmacyID))
			return
		}
		body.Items[i] = projections.RowViewOf(row)
		NoteURNs(r.Context(), row.URN)
	}
	a.reply(w, r, body)
}

// scope is the pharmacy whose prescriptions r's caller may read, "" for
// all; a caller with neither role gets 403 (ok false).
func (a *api) scope(w http.ResponseWriter, r *http.Request) (pharmacy string, ok bool) {
	switch caller, _ := CallerFrom(r.Context()); {
	case caller.ReadsAll():
		return "", true
	case caller.Role == RolePharmacy && caller.PharmacyID != "":
		return caller.PharmacyID, true
	}
	a.fail(w, http.StatusForbidden, "forbidden", "no role to read prescriptions")
	return "", false
}

type statsBody struct {
	Counts map[domain.Status]int `json:"counts"`
	Total  int                   `json:"total"`
}

// stats counts every prescription, or for a pharmacy its own.
func (a *api) stats(w http.ResponseWriter, r *http.Request) {
	pharmacy, ok := a.scope(w, r)
	if !ok {
		return
	}
	counts, err := a.rm.Stats(r.Context(), pharmacy)
	if err != nil {
		a.internal(w, r, err)
		return
	}
	body := statsBody{Counts: counts}
	for _, n := range counts {
		body.Total += n
	}
	a.reply(w, r, body)
}

type historyBody struct {
	URN    string                     `json:"urn"`
	Events []projections.HistoryEntry `json:"events"`
	// OperatorActions concerning the prescription, oldest first; present
	// when the API serves operator routes.
	OperatorActions []readmodel.OperatorAction `json:"operatorActions,omitempty"`
}

// historyOf answers from the event store: the whole history, or with
// asOf (an RFC 3339 time or a revision number) the state at that point.
// A pharmacy reads the history of a prescription only if it is the
// prescription's pharmacy now (after its last event); else not found.
func (a *api) historyOf(w http.ResponseWriter, r *http.Request) {
	urn := r.PathValue("urn")
	q, err := query(r, "asOf")
	if err != nil {
		a.fail(w, http.StatusBadRequest, "bad_request", err.Error())
		return
	}
	history := a.history
	if caller, _ := CallerFrom(r.Context()); !caller.ReadsAll() {
		history = ownedHistory{History: a.history, caller: caller}
	}
	if !q.Has("asOf") {
		entries, err := projections.HistoryOf(r.Context(), history, urn)
		if err != nil {
			a.queryFailed(w, r, err)
			return
		}
		body := historyBody{URN: urn, Events: entries}
		if a.ops != nil {
			if body.OperatorActions, err = a.opsStore.Actions(r.Context(), urn, readmodel.MaxLimit); err != nil {
				a.internal(w, r, err)
				return
			}
		}
		a.reply(w, r, body)
		return
	}
	at, err := parseAsOf(q.Get("asOf"))
	if err != nil {
		a.fail(w, http.StatusBadRequest, "bad_request", err.Error())
		return
	}
	snap, err := projections.StateAsOf(r.Context(), history, urn, at)
	if err != nil {
		a.queryFailed(w, r, err)
		return
	}
	a.reply(w, r, snap)
}

// ownedHistory is the history of the prescriptions caller may read: the
// stream of another pharmacy's prescription loads as empty, which the
// queries answer as not found.
type ownedHistory struct {
	projections.History
	caller Caller
}

func (o ownedHistory) Load(ctx context.Context, urn string) ([]events.Recorded, error) {
	recs, err := o.History.Load(ctx, urn)
	if err != nil {
		return nil, err
	}
	var p domain.Prescription
	for _, rec := range recs {
		p = domain.Evolve(p, rec.Event)
	}
	if !o.caller.owns(p.PharmacyID) {
		return nil, nil
	}
	return recs, nil
}

// parseAsOf reads a revision number or an RFC 3339 time.
func parseAsOf(v string) (projections.AsOf, error) {
	if rev, err := strconv.ParseUint(v, 10, 64); err == nil {
		return projections.AsOf{Revision: &rev}, nil
	}
	t, err := time.Parse(time.RFC3339Nano, v)
	if err != nil || t.IsZero() {
		return projections.AsOf{}, fmt.Errorf("asOf %q is neither a revision number nor an RFC 3339 time (encode '+' as %%2B)", v)
	}
	return projections.AsOf{Time: t}, nil
}

type effectsBody struct {
	Items []projections.Effect `json:"items"`
}

func (a *api) parkedEffects(w http.ResponseWriter, r *http.Request) {
	if _, err := query(r); err != nil {
		a.fail(w, http.StatusBadRequest, "bad_request", err.Error())
		return
	}
	effects, err := a.parked.Parked(r.Context())
	if err != nil {
		a.internal(w, r, err)
		return
	}
	for _, e := range effects {
		NoteURNs(r.Context(), e.URN)
	}
	a.reply(w, r, effectsBody{Items: append(make([]projections.Effect, 0, len(effects)), effects...)})
}

// queryFailed answers a failed query: 404 for an unknown prescription (or
// one that did not exist yet at asOf, saying since when it does), 400
// for a filter the store refused (a bad cursor), 500 otherwise.
func (a *api) queryFailed(w http.ResponseWriter, r *http.Request, err error) {
	var early *projections.BeforeFirstEventError
	switch {
	case errors.As(err, &early):
		a.fail(w, http.StatusNotFound, "not_found", early.Error())
	case errors.Is(err, projections.ErrNotFound):
		a.fail(w, http.StatusNotFound, "not_found", fmt.Sprintf("prescription %q not found", r.PathValue("urn")))
	case errors.Is(err, readmodel.ErrInvalidFilter):
		a.fail(w, http.StatusBadRequest, "bad_request", strings.TrimPrefix(err.Error(), readmodel.ErrInvalidFilter.Error()+": "))
	default:
		a.internal(w, r, err)
	}
}

// errorBody is every error answer.
type errorBody struct {
	Error      string  `json:"error"`
	Message    string  `json:"message"`
	Checkpoint *uint64 `json:"checkpoint,omitempty"` // on a minPosition timeout
}

func (a *api) fail(w http.ResponseWriter, status int, code, msg string) {
	writeError(w, status, code, msg)
}

func (a *api) failWith(w http.ResponseWriter, status int, body errorBody) {
	b, _ := json.Marshal(body) // strings and a number: it cannot fail
	write(w, status, b)
}

// writeError answers {"error": code, "message": msg}.
func writeError(w http.ResponseWriter, status int, code, msg string) {
	b, _ := json.Marshal(errorBody{Error: code, Message: msg}) // strings: it cannot fail
	write(w, status, b)
}

// internal logs err, which may name a prescription, and answers 500
// without it.
func (a *api) internal(w http.ResponseWriter, r *http.Request, err error) {
	if r.Context().Err() != nil {
		return // the client went away
	}
	a.log.Error("query api: request failed", "route", r.Pattern, "err", err)
	a.fail(w, http.StatusInternalServerError, "internal", "internal error; see the server log")
}

// reply encodes v before writing anything, so that an encoding error still
// gets a clean 500.
func (a *api) reply(w http.ResponseWriter, r *http.Request, v any) {
	a.replyStatus(w, r, http.StatusOK, v)
}

func (a *api) replyStatus(w http.ResponseWriter, r *http.Request, status int, v any) {
	b, err := json.Marshal(v)
	if err != nil {
		a.internal(w, r, fmt.Errorf("encode answer: %w", err))
		return
	}
	write(w, status, b)
}

func write(w http.ResponseWriter, status int, body []byte) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	_, _ = w.Write(append(body, '\n')) // the client went away: nothing to do
}

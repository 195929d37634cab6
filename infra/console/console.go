// Package console is the operators' web console, served by the projector
// under /console/ on the query API's address: server-rendered pages
// (html/template) of the workflow and its live counts, the prescriptions,
// one prescription's whole story (events, refusals, partner effects,
// outbound messages, operator actions, past states), and the operations
// pages where parked partner calls are retried and dead letters redriven.
//
// Security. A browser signs in once with the query API's credentials
// (Config.Verify) and gets a session cookie: random, HttpOnly,
// SameSite=Strict, Secure when served over TLS, Path=/console/, valid for
// SessionTTL. Every non-GET request must come from the console's own origin
// (net/http's CrossOriginProtection: Sec-Fetch-Site, else Origin against
// Host), or it is refused with 403. Every page is sent with a
// Content-Security-Policy that allows scripts from the console itself only
// (script-src 'self': no inline script, no inline event handler), and
// everything shown is escaped by html/template: events, payloads and dead
// letters are untrusted input.
package console

import (
	"context"
	"crypto/rand"
	"embed"
	"encoding/base64"
	"errors"
	"fmt"
	"html/template"
	"io/fs"
	"log/slog"
	"net/http"
	"strings"
	"sync"
	"time"

	"rxflow/domain"
	"rxflow/infra/operator"
	"rxflow/infra/readmodel"
	"rxflow/projections"
)

//go:embed templates/*.html
var templateFS embed.FS

//go:embed static
var staticFS embed.FS

// Prefix is where the console is served.
const Prefix = "/console/"

// SessionTTL is how long a console session lasts after sign-in.
const SessionTTL = 8 * time.Hour

// CookieName is the session cookie's name.
const CookieName = "rxflow_console"

// CSP is the Content-Security-Policy of every console answer. Styles may be
// inline because the Mermaid diagram is an SVG with a <style> element;
// scripts may not.
const CSP = "default-src 'none'; script-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data:; " +
	"font-src 'self'; connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'"

// ReadModel is what the console reads from the read model.
type ReadModel interface {
	Get(ctx context.Context, urn string) (projections.Row, error)
	List(ctx context.Context, f projections.Filter) (projections.Page, error)
	Stats(ctx context.Context, pharmacyID string) (map[domain.Status]int, error) // "": every pharmacy
	Checkpoint(ctx context.Context) (uint64, error)
}

// Operations is what the console reads of the operations store.
type Operations interface {
	// CountSince counts the dead letters and refusals that happened at or
	// after since.
	CountSince(ctx context.Context, since time.Time) (deadLetters, refusals int, err error)
	// DeadLetters returns up to limit dead letters, the latest consumed first.
	DeadLetters(ctx context.Context, limit int) ([]readmodel.DeadLetterRow, error)
	// Actions returns up to limit operator actions, the latest, oldest
	// first: every action if urn is "", else those concerning urn.
	Actions(ctx context.Context, urn string, limit int) ([]readmodel.OperatorAction, error)
}

var _ Operations = (*readmodel.Operations)(nil)

// Lag is one projector's lag, for the overview.
type Lag struct {
	Projector string
	Behind    int           // events stored and not yet handled
	Age       time.Duration // age of the oldest of them
	CaughtUp  bool
	Err       string // the error the projector is stuck on, if any
}

// Config of the console. Every field is required but Logger and Clock.
type Config struct {
	// Verify checks a credential of the query API (a bearer token) and
	// names its holder, for the record of operator actions, and whether it
	// may act (retry, redrive); an error refuses the sign-in.
	Verify    func(ctx context.Context, credential string) (actor string, mayAct bool, err error)
	ReadModel ReadModel
	History   projections.History
	Ledger    projections.Ledger
	Operator  *operator.Actions
	// Operations is the operations store the pages read:
	// readmodel.Operations or postgres.Operations.
	Operations Operations
	Outbound   projections.OutboundTopics
	Lag        func() []Lag
	Clock      func() time.Time // default time.Now
	Logger     *slog.Logger     // default slog.Default()
}

type console struct {
	cfg   Config
	pages map[string]*template.Template

	mu       sync.Mutex
	sessions map[string]session
}

type session struct {
	actor   string
	mayAct  bool
	expires time.Time
}

// NewHandler returns the console's handler, for requests under Prefix.
func NewHandler(cfg Config) (http.Handler, error) {
	if cfg.Verify == nil || cfg.ReadModel == nil || cfg.History == nil || cfg.Ledger == nil || cfg.Operator == nil || cfg.Operations == nil ||
		cfg.Lag == nil {
		return nil, errors.New("console: Verify, ReadModel, History, Ledger, Operator, Operations and Lag are required")
	}
	if cfg.Clock == nil {
		cfg.Clock = time.Now
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	cfg.Outbound = cfg.Outbound.WithDefaults()
	c := &console{cfg: cfg, pages: map[string]*template.Template{}, sessions: map[string]session{}}
	for _, name := range []string{"login", "overview", "prescriptions", "prescription", "operations", "result"} {
		t, err := template.New(name).Funcs(funcs).ParseFS(templateFS, "templates/layout.html", "templates/"+name+".html")
		if err != nil {
			return nil, fmt.Errorf("console: template %s: %w", name, err)
		}
		c.pages[name] = t
	}
	static, err := fs.Sub(staticFS, "static")
	if err != nil {
		return nil, err
	}
	mux := http.NewServeMux()
	mux.Handle("GET /console/static/", http.StripPrefix("/console/static/", http.FileServerFS(static)))
	mux.HandleFunc("GET /console/login", c.loginPage)
	mux.HandleFunc("POST /console/login", c.login)
	mux.HandleFunc("POST /console/logout", c.logout)
	mux.HandleFunc("GET /console/{$}", c.signedIn(c.overview))
	mux.HandleFunc("GET /console/prescriptions", c.signedIn(c.prescriptions))
	mux.HandleFunc("GET /console/prescription", c.signedIn(c.prescription))
	mux.HandleFunc("GET /console/operations", c.signedIn(c.operations))
	mux.HandleFunc("POST /console/retry", c.signedIn(c.retry))
	mux.HandleFunc("POST /console/redrive", c.signedIn(c.redrive))
	mux.HandleFunc("/console/", func(w http.ResponseWriter, r *http.Request) {
		c.errorPage(w, r, http.StatusNotFound, "No such page.")
	})
	cop := http.NewCrossOriginProtection()
	cop.SetDenyHandler(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		c.errorPage(w, r, http.StatusForbidden, "Refused: this request did not come from the console's own pages (cross-origin request).")
	}))
	return secureHeaders(cop.Handler(mux)), nil
}

// secureHeaders sets the policy headers of every answer.
func secureHeaders(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h := w.Header()
		h.Set("Content-Security-Policy", CSP)
		h.Set("X-Content-Type-Options", "nosniff")
		h.Set("Referrer-Policy", "no-referrer")
		h.Set("X-Frame-Options", "DENY")
		if !strings.HasPrefix(r.URL.Path, "/console/static/") {
			h.Set("Cache-Control", "no-store")
		}
		next.ServeHTTP(w, r)
	})
}

// signedIn runs h for a request with a live session; others are sent to
// the sign-in page.
func (c *console) signedIn(h http.HandlerFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		if _, ok := c.session(r); !ok {
			if r.Method != http.MethodGet {
				c.errorPage(w, r, http.StatusUnauthorized, "Your session has ended: sign in again.")
				return
			}
			http.Redirect(w, r, "/console/login", http.StatusSeeOther)
			return
		}
		h(w, r)
	}
}

// actor names the session's holder, for the record of an action.
func (c *console) actor(r *http.Request) string {
	s, _ := c.sessionOf(r)
	return s.actor
}

func (c *console) session(r *http.Request) (string, bool) {
	s, ok := c.sessionOf(r)
	return s.actor, ok
}

func (c *console) sessionOf(r *http.Request) (session, bool) {
	ck, err := r.Cookie(CookieName)
	if err != nil {
		return session{}, false
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	s, ok := c.sessions[ck.Value]
	if !ok || !c.cfg.Clock().Before(s.expires) {
		delete(c.sessions, ck.Value)
		return session{}, false
	}
	return s, true
}

// mayAct says whether r's session may retry and redrive: its caller signed
// in with the operator role.
func (c *console) mayAct(r *http.Request) error {
	if s, ok := c.sessionOf(r); !ok || !s.mayAct {
		return errors.New("only the operator role may act")
	}
	return nil
}

func (c *console) loginPage(w http.ResponseWriter, r *http.Request) {
	c.render(w, r, http.StatusOK, "login", map[string]any{})
}

// login exchanges the API credential of the form's "token" field for a
// session cookie.
func (c *console) login(w http.ResponseWriter, r *http.Request) {
	actor, mayAct, err := c.cfg.Verify(r.Context(), r.PostFormValue("token"))
	if err != nil {
		c.render(w, r, http.StatusUnauthorized, "login", map[string]any{"Error": "Those credentials are not valid."})
		return
	}
	b := make([]byte, 32)
	_, _ = rand.Read(b) // never fails (crypto/rand)
	id := base64.RawURLEncoding.EncodeToString(b)
	now := c.cfg.Clock()
	c.mu.Lock()
	for k, s := range c.sessions {
		if !now.Before(s.expires) {
			delete(c.sessions, k)
		}
	}
	c.sessions[id] = session{actor: actor, mayAct: mayAct, expires: now.Add(SessionTTL)}
	c.mu.Unlock()
	http.SetCookie(w, &http.Cookie{Name: CookieName, Value: id, Path: Prefix, MaxAge: int(SessionTTL.Seconds()),
		HttpOnly: true, Secure: r.TLS != nil, SameSite: http.SameSiteStrictMode})
	http.Redirect(w, r, Prefix, http.StatusSeeOther)
}

func (c *console) logout(w http.ResponseWriter, r *http.Request) {
	if ck, err := r.Cookie(CookieName); err == nil {
		c.mu.Lock()
		delete(c.sessions, ck.Value)
		c.mu.Unlock()
	}
	http.SetCookie(w, &http.Cookie{Name: CookieName, Value: "", Path: Prefix, MaxAge: -1, HttpOnly: true, Secure: r.TLS != nil,
		SameSite: http.SameSiteStrictMode})
	http.Redirect(w, r, "/console/login", http.StatusSeeOther)
}

// render executes page into a buffer first, so a template error is a clean 500.
func (c *console) render(w http.ResponseWriter, r *http.Request, status int, page string, data map[string]any) {
	var b strings.Builder
	data["Page"] = page
	if actor, ok := c.session(r); ok {
		data["Actor"] = actor
	}
	if err := c.pages[page].ExecuteTemplate(&b, "layout", data); err != nil {
		c.cfg.Logger.Error("console: render", "page", page, "err", err)
		http.Error(w, "internal error; see the server log", http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.WriteHeader(status)
	_, _ = w.Write([]byte(b.String())) // the client went away: nothing to do
}

func (c *console) errorPage(w http.ResponseWriter, r *http.Request, status int, msg string) {
	c.render(w, r, status, "result", map[string]any{"Title": http.StatusText(status), "Message": msg})
}

// failed logs err and answers a 500 page without it.
func (c *console) failed(w http.ResponseWriter, r *http.Request, err error) {
	if r.Context().Err() != nil {
		return
	}
	c.cfg.Logger.Error("console: request failed", "path", r.URL.Path, "err", err)
	c.errorPage(w, r, http.StatusInternalServerError, "Internal error; see the server log.")
}

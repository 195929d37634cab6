package httpapi

import (
	"context"
	"net/http"
	"slices"
	"strings"
)

// Role is what a caller may do. A token's roles claim may hold several;
// the caller gets one (see callerOf).
type Role string

// The roles. Each reads prescriptions; only an operator acts.
const (
	// RolePharmacy reads only the prescriptions whose pharmacyId is its
	// own: another's is a 404, as if it did not exist.
	RolePharmacy Role = "pharmacy"
	// RoleAuditor reads everything, the access log included.
	RoleAuditor Role = "auditor"
	// RoleOperator reads everything, as an auditor, and may also perform
	// actions (retry, redrive).
	RoleOperator Role = "operator"
)

// Caller is the authenticated identity of a request, set in its context by
// the Guard: CallerFrom reads it.
type Caller struct {
	Subject    string // a JWT's sub, or StaticSubject
	Role       Role
	PharmacyID string // the pharmacy claim, for RolePharmacy only
}

// StaticSubject is the Subject of a caller holding the static token.
const StaticSubject = "static-token"

// ReadsAll says whether c reads every prescription (auditor, operator).
func (c Caller) ReadsAll() bool { return c.Role == RoleAuditor || c.Role == RoleOperator }

// MayAct says whether c may perform actions such as a retry or a redrive
// (operator).
func (c Caller) MayAct() bool { return c.Role == RoleOperator }

// owns says whether c may read a prescription of pharmacyID.
func (c Caller) owns(pharmacyID string) bool {
	return c.ReadsAll() || (c.Role == RolePharmacy && c.PharmacyID != "" && pharmacyID == c.PharmacyID)
}

type callerKey struct{}

// CallerFrom returns the caller the Guard authenticated for ctx's request;
// false outside a guarded handler.
func CallerFrom(ctx context.Context) (Caller, bool) {
	n, ok := ctx.Value(callerKey{}).(*note)
	if !ok || n.caller == nil {
		return Caller{}, false
	}
	return *n.caller, true
}

// note is what the Guard learns while a request is served, for its access
// record: the caller, once authenticated, and the urns asked for or
// answered with.
type note struct {
	caller  *Caller
	subject string // known when a valid token was refused a role
	urns    []string
}

// NoteURNs adds urns to the access record of ctx's request, in answer
// order. A guarded handler calls it with every prescription it was asked
// for or answers with, before it answers; outside a guarded handler it does
// nothing.
func NoteURNs(ctx context.Context, urns ...string) {
	if n, ok := ctx.Value(callerKey{}).(*note); ok {
		n.urns = append(n.urns, urns...)
	}
}

// RequireRole serves next only to a caller holding one of roles: others
// get 403 forbidden, and a request without a caller (outside the Guard)
// 401 unauthorized. It checks the role only; what a pharmacy may read is
// the handler's business.
//
//	mux.Handle("POST /effects/{id}/retry", httpapi.RequireRole(retry, httpapi.RoleOperator))
func RequireRole(next http.Handler, roles ...Role) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		c, ok := CallerFrom(r.Context())
		switch {
		case !ok:
			w.Header().Set("WWW-Authenticate", "Bearer")
			writeError(w, http.StatusUnauthorized, "unauthorized", "a valid bearer token is required")
		case !slices.Contains(roles, c.Role):
			writeError(w, http.StatusForbidden, "forbidden", "this needs the role "+joinRoles(roles, " or "))
		default:
			next.ServeHTTP(w, r)
		}
	})
}

func joinRoles(roles []Role, sep string) string {
	s := make([]string, len(roles))
	for i, r := range roles {
		s[i] = string(r)
	}
	return strings.Join(s, sep)
}

package httpapi

import (
	"fmt"
	"net/http"
	"slices"
	"time"

	"rxflow/domain"
	"rxflow/infra/readmodel"
)

type accessBody struct {
	Items      []readmodel.Access `json:"items"`
	NextCursor string             `json:"nextCursor,omitempty"`
}

// accessLog answers GET /audit/access: the access records, newest first,
// filtered by subject, role, urn and a time range [since, until) (RFC
// 3339), a page of limit (1..readmodel.MaxLimit) at a time.
func (a *api) accessLog(w http.ResponseWriter, r *http.Request) {
	q, err := query(r, "subject", "role", "urn", "since", "until", "limit", "cursor")
	if err != nil {
		a.fail(w, http.StatusBadRequest, "bad_request", err.Error())
		return
	}
	f := readmodel.AccessFilter{Subject: q.Get("subject"), Role: q.Get("role"), URN: q.Get("urn"), Cursor: q.Get("cursor")}
	roles := []Role{RolePharmacy, RoleAuditor, RoleOperator}
	if f.Role != "" && !slices.Contains(roles, Role(f.Role)) {
		a.fail(w, http.StatusBadRequest, "bad_request", fmt.Sprintf("unknown role %q (one of %s)", f.Role, joinRoles(roles, ", ")))
		return
	}
	if f.URN != "" {
		if err := domain.ValidateURN(f.URN); err != nil {
			a.fail(w, http.StatusBadRequest, "invalid_urn", err.Error())
			return
		}
	}
	for _, p := range []struct {
		name string
		t    *time.Time
	}{{"since", &f.Since}, {"until", &f.Until}} {
		if v := q.Get(p.name); q.Has(p.name) {
			if *p.t, err = time.Parse(time.RFC3339Nano, v); err != nil {
				a.fail(w, http.StatusBadRequest, "bad_request", fmt.Sprintf("%s %q is not an RFC 3339 time (encode '+' as %%2B)", p.name, v))
				return
			}
		}
	}
	limit, err := limitOf(q, 0)
	if err != nil {
		a.fail(w, http.StatusBadRequest, "bad_request", err.Error())
		return
	}
	f.Limit = limit
	page, err := a.access.Query(r.Context(), f)
	if err != nil {
		a.queryFailed(w, r, err)
		return
	}
	a.reply(w, r, accessBody{Items: append(make([]readmodel.Access, 0, len(page.Records)), page.Records...), NextCursor: page.NextCursor})
}

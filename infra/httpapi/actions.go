package httpapi

import (
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"time"
	"unicode/utf8"

	"rxflow/infra/operator"
	"rxflow/infra/readmodel"
	"rxflow/projections"
)

// maxRedriveBody bounds a redrive request's body.
const maxRedriveBody = 1 << 20

// DeadLetterView is the JSON form of a dead letter the projector consumed.
type DeadLetterView struct {
	ID        string             `json:"id"` // "<partition>-<offset>" on Topic
	Topic     string             `json:"topic"`
	Partition int32              `json:"partition"`
	Offset    int64              `json:"offset"`
	Key       string             `json:"key,omitempty"`
	Code      string             `json:"code"`
	Error     string             `json:"error"`
	At        time.Time          `json:"deadLetteredAt"`
	Received  time.Time          `json:"receivedAt"`
	Record    json.RawMessage    `json:"record,omitempty"`    // the dead-letter record, when it is JSON
	RawBase64 string             `json:"rawBase64,omitempty"` // its bytes otherwise
	Redrive   *readmodel.Redrive `json:"redrive,omitempty"`
}

// DeadLetterViewOf returns the JSON form of d.
func DeadLetterViewOf(d readmodel.DeadLetterRow) DeadLetterView {
	v := DeadLetterView{ID: d.ID, Topic: d.Topic, Partition: d.Partition, Offset: d.Offset, Key: d.Key, Code: d.Code, Error: d.Error,
		At: d.At, Received: d.Received, Redrive: d.Redrive}
	if json.Valid(d.Raw) {
		v.Record = d.Raw
	} else {
		v.RawBase64 = base64.StdEncoding.EncodeToString(d.Raw)
	}
	return v
}

type actionBody struct {
	Action readmodel.OperatorAction `json:"action"`
	Effect *projections.Effect      `json:"effect,omitempty"`
}

// post admits POST only, from a caller with the operator role, whose
// Subject names it as the actor of the recorded action.
func (a *api) post(h http.HandlerFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodPost {
			w.Header().Set("Allow", http.MethodPost)
			a.fail(w, http.StatusMethodNotAllowed, "method_not_allowed", r.Method+" is not allowed here; use POST")
			return
		}
		caller, _ := CallerFrom(r.Context())
		if !caller.MayAct() {
			a.fail(w, http.StatusForbidden, "forbidden", "only the operator role may act")
			return
		}
		if _, err := query(r); err != nil {
			a.fail(w, http.StatusBadRequest, "bad_request", err.Error())
			return
		}
		h(w, r)
	}
}

// actor names the caller of an action in its record: its subject.
func actor(r *http.Request) string {
	caller, _ := CallerFrom(r.Context())
	return caller.Subject
}

// retry answers POST /effects/{projector}/{eventId}/retry.
func (a *api) retry(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("projector") + "/" + r.PathValue("eventId")
	act, e, err := a.ops.Retry(r.Context(), actor(r), id)
	switch {
	case errors.Is(err, projections.ErrNoSuchEffect):
		a.fail(w, http.StatusNotFound, "not_found", fmt.Sprintf("no effect %q", id))
	case errors.Is(err, projections.ErrNotParked):
		a.replyStatus(w, r, http.StatusConflict, actionBody{Action: act, Effect: &e})
	case errors.Is(err, projections.ErrPartnerFailed):
		a.replyStatus(w, r, http.StatusBadGateway, actionBody{Action: act, Effect: &e})
	case err != nil:
		a.internal(w, r, err)
	default:
		a.reply(w, r, actionBody{Action: act, Effect: &e})
	}
}

// redrive answers POST /dead-letters/{id}/redrive, with an optional JSON
// body {"value": "<the command to send instead>"}.
func (a *api) redrive(w http.ResponseWriter, r *http.Request) {
	var body struct {
		Value *string `json:"value"`
	}
	b, err := io.ReadAll(io.LimitReader(r.Body, maxRedriveBody+1))
	switch {
	case err != nil:
		a.fail(w, http.StatusBadRequest, "bad_request", "could not read the body")
		return
	case len(b) > maxRedriveBody:
		a.fail(w, http.StatusRequestEntityTooLarge, "too_large", fmt.Sprintf("the body is over %d bytes", maxRedriveBody))
		return
	case len(b) > 0 && (!utf8.Valid(b) || json.Unmarshal(b, &body) != nil):
		a.fail(w, http.StatusBadRequest, "bad_request", `the body must be empty or a JSON object {"value": "<command text>"}`)
		return
	}
	act, err := a.ops.Redrive(r.Context(), actor(r), r.PathValue("id"), body.Value)
	switch {
	case errors.Is(err, readmodel.ErrNoSuchRecord):
		a.fail(w, http.StatusNotFound, "not_found", fmt.Sprintf("no dead letter %q", r.PathValue("id")))
	case errors.Is(err, readmodel.ErrAlreadyRedriven):
		a.replyStatus(w, r, http.StatusConflict, actionBody{Action: act})
	case errors.Is(err, operator.ErrNotRedrivable):
		a.replyStatus(w, r, http.StatusUnprocessableEntity, actionBody{Action: act})
	case err != nil:
		a.internal(w, r, err)
	default:
		a.reply(w, r, actionBody{Action: act})
	}
}

type deadLettersBody struct {
	Items []DeadLetterView `json:"items"`
}

// deadLetters answers GET /dead-letters[?limit=N], the latest first.
func (a *api) deadLetters(w http.ResponseWriter, r *http.Request) {
	limit, ok := a.limitParam(w, r, "limit")
	if !ok {
		return
	}
	rows, err := a.opsStore.DeadLetters(r.Context(), limit)
	if err != nil {
		a.internal(w, r, err)
		return
	}
	body := deadLettersBody{Items: make([]DeadLetterView, len(rows))}
	for i, d := range rows {
		body.Items[i] = DeadLetterViewOf(d)
	}
	a.reply(w, r, body)
}

type actionsBody struct {
	Items []readmodel.OperatorAction `json:"items"`
}

// operatorActions answers GET /operator-actions[?urn=&limit=], oldest first.
func (a *api) operatorActions(w http.ResponseWriter, r *http.Request) {
	limit, ok := a.limitParam(w, r, "limit", "urn")
	if !ok {
		return
	}
	items, err := a.opsStore.Actions(r.Context(), r.URL.Query().Get("urn"), limit)
	if err != nil {
		a.internal(w, r, err)
		return
	}
	a.reply(w, r, actionsBody{Items: append(make([]readmodel.OperatorAction, 0, len(items)), items...)})
}

// limitParam checks the query against allowed and reads limit (1..MaxLimit,
// default DefaultLimit).
func (a *api) limitParam(w http.ResponseWriter, r *http.Request, allowed ...string) (int, bool) {
	q, err := query(r, allowed...)
	if err != nil {
		a.fail(w, http.StatusBadRequest, "bad_request", err.Error())
		return 0, false
	}
	limit, err := limitOf(q, readmodel.DefaultLimit)
	if err != nil {
		a.fail(w, http.StatusBadRequest, "bad_request", err.Error())
		return 0, false
	}
	return limit, true
}

// limitOf reads the query's limit, a number in 1..readmodel.MaxLimit; def
// when it is absent.
func limitOf(q url.Values, def int) (int, error) {
	if !q.Has("limit") {
		return def, nil
	}
	v := q.Get("limit")
	n, err := strconv.Atoi(v)
	if err != nil || n < 1 || n > readmodel.MaxLimit {
		return 0, fmt.Errorf("limit %q is not a number in 1..%d", v, readmodel.MaxLimit)
	}
	return n, nil
}

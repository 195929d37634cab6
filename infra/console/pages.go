package console

import (
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"html/template"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"rxflow/commands"
	"rxflow/domain"
	"rxflow/infra/readmodel"
	"rxflow/projections"
)

var funcs = template.FuncMap{
	"time": func(t time.Time) string {
		if t.IsZero() {
			return ""
		}
		return t.UTC().Format("2006-01-02 15:04:05.000Z")
	},
	"pretty": prettyJSON,
	"query": func(kv ...string) template.URL {
		q := url.Values{}
		for i := 0; i+1 < len(kv); i += 2 {
			if kv[i+1] != "" {
				q.Set(kv[i], kv[i+1])
			}
		}
		return template.URL(q.Encode()) // every value escaped by Encode
	},
	"dur": func(d time.Duration) string { return d.Round(time.Millisecond).String() },
}

// prettyJSON indents JSON for reading; anything else is returned as is
// (html/template escapes it either way).
func prettyJSON(b []byte) string {
	var v any
	if json.Unmarshal(b, &v) != nil {
		return string(b)
	}
	var out strings.Builder
	enc := json.NewEncoder(&out)
	enc.SetEscapeHTML(false) // shown as text: html/template escapes it, and \u003c would hide what was sent
	enc.SetIndent("", "  ")
	if err := enc.Encode(v); err != nil {
		return string(b)
	}
	return strings.TrimSuffix(out.String(), "\n")
}

type stateCount struct {
	Status domain.Status
	Count  int
}

func (c *console) overview(w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()
	stats, err := c.cfg.ReadModel.Stats(ctx, "")
	if err != nil {
		c.failed(w, r, err)
		return
	}
	counts := make([]stateCount, 0, len(domain.Statuses))
	total := 0
	for _, s := range domain.Statuses {
		counts = append(counts, stateCount{s, stats[s]})
		total += stats[s]
	}
	since := c.cfg.Clock().Add(-time.Hour)
	dls, refusals, err := c.cfg.Operations.CountSince(ctx, since)
	if err != nil {
		c.failed(w, r, err)
		return
	}
	pos, err := c.cfg.ReadModel.Checkpoint(ctx)
	if err != nil {
		c.failed(w, r, err)
		return
	}
	c.render(w, r, http.StatusOK, "overview", map[string]any{
		"Diagram": diagram(domain.Prescriptions, stats), "Counts": counts, "Total": total,
		"DeadLetters": dls, "Refusals": refusals, "Lag": c.cfg.Lag(), "Checkpoint": pos,
	})
}

// diagram is the workflow's Mermaid state diagram (domain.Workflow.Mermaid)
// with each state's live count as its label.
func diagram(w domain.Workflow, stats map[domain.Status]int) string {
	var b strings.Builder
	b.WriteString(w.Mermaid())
	for _, s := range domain.Statuses {
		fmt.Fprintf(&b, "    %s: %s (%d)\n", s, s, stats[s])
	}
	return b.String()
}

func (c *console) prescriptions(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	f := projections.Filter{Status: domain.Status(q.Get("status")), PatientID: q.Get("patientId"), PharmacyID: q.Get("pharmacyId"),
		Cursor: q.Get("cursor"), Limit: 25}
	data := map[string]any{"Statuses": domain.Statuses, "Filter": f}
	page, err := c.cfg.ReadModel.List(r.Context(), f)
	switch {
	case errors.Is(err, readmodel.ErrInvalidFilter):
		data["Error"] = strings.TrimPrefix(err.Error(), readmodel.ErrInvalidFilter.Error()+": ")
		c.render(w, r, http.StatusBadRequest, "prescriptions", data)
		return
	case err != nil:
		c.failed(w, r, err)
		return
	}
	data["Rows"], data["Next"] = page.Rows, page.NextCursor
	c.render(w, r, http.StatusOK, "prescriptions", data)
}

// effectView is one partner effect of a prescription.
type effectView struct {
	projections.Effect
	Partner        string
	IdempotencyKey string
}

// timelineEntry is a history entry, marked when it is a refusal.
type timelineEntry struct {
	projections.HistoryEntry
	Refused bool
}

func (c *console) prescription(w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()
	urn := r.URL.Query().Get("urn")
	if err := domain.ValidateURN(urn); err != nil {
		c.errorPage(w, r, http.StatusBadRequest, "That is not a prescription urn: "+err.Error())
		return
	}
	entries, err := projections.HistoryOf(ctx, c.cfg.History, urn)
	if errors.Is(err, projections.ErrNotFound) {
		c.errorPage(w, r, http.StatusNotFound, "No prescription "+strconv.Quote(urn)+".")
		return
	}
	if err != nil {
		c.failed(w, r, err)
		return
	}
	timeline := make([]timelineEntry, len(entries))
	var effects []effectView
	for i, e := range entries {
		timeline[i] = timelineEntry{HistoryEntry: e, Refused: e.EventType == "PrescriptionCommandRefused"}
		for _, re := range projections.Reactions {
			eff, found, err := c.cfg.Ledger.Effect(ctx, re.Name+"/"+e.EventID)
			if err != nil {
				c.failed(w, r, err)
				return
			}
			if found {
				effects = append(effects, effectView{Effect: eff, Partner: re.Partner.Name, IdempotencyKey: e.EventID})
			}
		}
	}
	outbound, err := projections.OutboundOf(ctx, c.cfg.History, c.cfg.Outbound, urn)
	if err != nil {
		c.failed(w, r, err)
		return
	}
	actions, err := c.cfg.Operations.Actions(ctx, urn, readmodel.MaxLimit)
	if err != nil {
		c.failed(w, r, err)
		return
	}
	data := map[string]any{"URN": urn, "Timeline": timeline, "Effects": effects, "Outbound": outbound, "Actions": actions,
		"Back": "/console/prescription?" + url.Values{"urn": {urn}}.Encode()}
	if row, err := c.cfg.ReadModel.Get(ctx, urn); err == nil {
		data["Row"] = row
	} else if !errors.Is(err, projections.ErrNotFound) {
		c.failed(w, r, err)
		return
	}
	if v := r.URL.Query().Get("asOf"); v != "" {
		rev, err := strconv.ParseUint(v, 10, 64)
		if err != nil {
			data["AsOfError"] = "asOf must be a revision number"
		} else if snap, err := projections.StateAsOf(ctx, c.cfg.History, urn, projections.AsOf{Revision: &rev}); err != nil {
			data["AsOfError"] = err.Error()
		} else {
			b, _ := json.MarshalIndent(snap.Prescription, "", "  ") // a plain struct
			data["AsOf"], data["AsOfJSON"] = snap, string(b)
		}
	}
	c.render(w, r, http.StatusOK, "prescription", data)
}

// deadLetterView is a dead letter as the operations page shows it.
type deadLetterView struct {
	readmodel.DeadLetterRow
	Letter     *commands.DeadLetter // nil when the record is not a dead letter
	Value      string               // the original value as text, when valid UTF-8
	ValueBytes string               // its bytes, base64, otherwise
	Record     string               // the whole dead-letter record, indented, or base64 when not UTF-8
}

func deadLetterViewOf(d readmodel.DeadLetterRow) deadLetterView {
	v := deadLetterView{DeadLetterRow: d}
	if utf8.Valid(d.Raw) {
		v.Record = prettyJSON(d.Raw)
	} else {
		v.Record = "base64: " + base64.StdEncoding.EncodeToString(d.Raw)
	}
	var dl commands.DeadLetter
	if json.Unmarshal(d.Raw, &dl) == nil && dl.Code != "" {
		v.Letter = &dl
		if dl.Value != nil {
			v.Value = *dl.Value
		} else {
			v.ValueBytes = dl.ValueBase64
		}
	}
	return v
}

func (c *console) operations(w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()
	parked, err := c.cfg.Ledger.Parked(ctx)
	if err != nil {
		c.failed(w, r, err)
		return
	}
	rows, err := c.cfg.Operations.DeadLetters(ctx, readmodel.DefaultLimit)
	if err != nil {
		c.failed(w, r, err)
		return
	}
	dls := make([]deadLetterView, len(rows))
	for i, d := range rows {
		dls[i] = deadLetterViewOf(d)
	}
	actions, err := c.cfg.Operations.Actions(ctx, "", readmodel.DefaultLimit)
	if err != nil {
		c.failed(w, r, err)
		return
	}
	slices.Reverse(actions) // the latest first
	c.render(w, r, http.StatusOK, "operations", map[string]any{"Parked": parked, "DeadLetters": dls, "Actions": actions})
}

// back is where an action's result page links to: a console path from the
// form, else the operations page. Nothing outside the console.
func back(r *http.Request) string {
	b := r.PostFormValue("back")
	if !strings.HasPrefix(b, "/console/") || strings.ContainsAny(b, "\\\r\n") || strings.HasPrefix(b, "//") {
		return "/console/operations"
	}
	return b
}

// retry retries the parked effect of the form's "id".
func (c *console) retry(w http.ResponseWriter, r *http.Request) {
	if err := c.mayAct(r); err != nil {
		c.errorPage(w, r, http.StatusForbidden, err.Error())
		return
	}
	id := r.PostFormValue("id")
	act, _, err := c.cfg.Operator.Retry(r.Context(), c.actor(r), id)
	switch {
	case errors.Is(err, projections.ErrNoSuchEffect):
		c.errorPage(w, r, http.StatusNotFound, "No effect "+strconv.Quote(id)+".")
	case err != nil && act.Seq == 0:
		c.failed(w, r, err)
	default:
		c.actionResult(w, r, act)
	}
}

// redrive redrives the dead letter of the form's "id": as it was, or with
// the form's "value" when "edit" is set.
func (c *console) redrive(w http.ResponseWriter, r *http.Request) {
	if err := c.mayAct(r); err != nil {
		c.errorPage(w, r, http.StatusForbidden, err.Error())
		return
	}
	id := r.PostFormValue("id")
	var edited *string
	if r.PostFormValue("edit") != "" {
		v := strings.ReplaceAll(r.PostFormValue("value"), "\r\n", "\n") // browsers send textarea lines with CRLF
		edited = &v
	}
	act, err := c.cfg.Operator.Redrive(r.Context(), c.actor(r), id, edited)
	switch {
	case errors.Is(err, readmodel.ErrNoSuchRecord):
		c.errorPage(w, r, http.StatusNotFound, "No dead letter "+strconv.Quote(id)+".")
	case err != nil && act.Seq == 0:
		c.failed(w, r, err)
	default:
		c.actionResult(w, r, act)
	}
}

// actionResult shows a recorded action, whatever its result: the page
// answers 200 because the request did what it should, record the attempt.
// (The query API's action routes answer with the result's own status.)
func (c *console) actionResult(w http.ResponseWriter, r *http.Request, act readmodel.OperatorAction) {
	c.render(w, r, http.StatusOK, "result", map[string]any{"Title": "Operator action recorded", "Action": act, "Back": back(r)})
}

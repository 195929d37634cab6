package domain_test

import (
	"errors"
	"fmt"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"rxflow/domain"
)

var now = time.Date(2026, 11, 29, 10, 0, 0, 0, time.UTC)

const urn = "urn:rx:1"

func requestCmd() domain.Command {
	return domain.Command{Type: domain.Request, URN: urn, PatientID: "pat-1", PrescriberID: "dr-1",
		Medication: domain.Medication{Name: "Amoxicillin", Code: "J01CA04", Strength: "500mg", Quantity: 20, Refills: 1}}
}

// validCommand returns a command of type t that passes every guard.
func validCommand(t domain.CommandType) domain.Command {
	switch t {
	case domain.Request:
		return requestCmd()
	case domain.Approve:
		return domain.Command{Type: t, URN: urn, ApprovedBy: "dr-1"}
	case domain.Reject, domain.Fail:
		return domain.Command{Type: t, URN: urn, Reason: "because"}
	case domain.Process:
		return domain.Command{Type: t, URN: urn, PharmacyID: "ph-1"}
	default:
		return domain.Command{Type: t, URN: urn}
	}
}

// historyTo returns the events that bring a prescription to status s.
func historyTo(t *testing.T, s domain.Status) []domain.Event {
	t.Helper()
	paths := map[domain.Status][]domain.CommandType{
		domain.StatusNone:       nil,
		domain.StatusRequested:  {domain.Request},
		domain.StatusApproved:   {domain.Request, domain.Approve},
		domain.StatusRejected:   {domain.Request, domain.Reject},
		domain.StatusProcessing: {domain.Request, domain.Approve, domain.Process},
		domain.StatusDispensed:  {domain.Request, domain.Approve, domain.Process, domain.Dispense},
		domain.StatusCompleted:  {domain.Request, domain.Approve, domain.Process, domain.Dispense, domain.Complete},
		domain.StatusFailed:     {domain.Request, domain.Approve, domain.Process, domain.Fail},
	}
	var p domain.Prescription
	var history []domain.Event
	for _, c := range paths[s] {
		evs, err := domain.Decide(p, validCommand(c), now)
		if err != nil {
			t.Fatalf("building history to %s: %v", s, err)
		}
		for _, e := range evs {
			p = domain.Evolve(p, e)
		}
		history = append(history, evs...)
	}
	if p.Status != s {
		t.Fatalf("history reached %q, want %q", p.Status, s)
	}
	return history
}

func TestEveryStateEventPair(t *testing.T) {
	from := append([]domain.Status{domain.StatusNone}, domain.Statuses...)
	for _, s := range from {
		for _, c := range domain.CommandTypes {
			t.Run(string(s)+"/"+string(c), func(t *testing.T) {
				p := domain.Fold(historyTo(t, s))
				evs, err := domain.Decide(p, validCommand(c), now)
				want, listed := domain.Prescriptions.Lookup(s, c)
				if !listed {
					var r *domain.Refusal
					if !errors.As(err, &r) {
						t.Fatalf("pair not in table was accepted: events %v, err %v", evs, err)
					}
					if r.Status != s || r.Command != c || r.Reason == "" {
						t.Fatalf("rejection lacks context: %+v", r)
					}
					if domain.Prescriptions.IsFinal(s) && c != domain.Request && r.Code != domain.ReasonFinalState {
						t.Fatalf("from final state got code %s, want %s", r.Code, domain.ReasonFinalState)
					}
					return
				}
				if err != nil {
					t.Fatalf("table row rejected: %v", err)
				}
				if len(evs) != 1 || evs[0].Cause() != c || !evs[0].OccurredAt().Equal(now) {
					t.Fatalf("events = %#v", evs)
				}
				if got := domain.Evolve(p, evs[0]).Status; got != want.To {
					t.Fatalf("status after %s = %s, want %s", c, got, want.To)
				}
			})
		}
	}
}

func TestRejectionCodes(t *testing.T) {
	cases := []struct {
		name  string
		given domain.Status
		when  domain.Command
		code  domain.ReasonCode
	}{
		{"approve unknown prescription", domain.StatusNone, validCommand(domain.Approve), domain.ReasonUnknownPrescription},
		{"request twice", domain.StatusRequested, requestCmd(), domain.ReasonDuplicateRequest},
		{"dispense before processing", domain.StatusApproved, validCommand(domain.Dispense), domain.ReasonInvalidTransition},
		{"fail a completed prescription", domain.StatusCompleted, validCommand(domain.Fail), domain.ReasonFinalState},
		{"unknown event", domain.StatusRequested, domain.Command{Type: "prescription.teleport", URN: urn}, domain.ReasonUnknownCommand},
		{"urn of another prescription", domain.StatusRequested, domain.Command{Type: domain.Approve, URN: "urn:rx:other", ApprovedBy: "dr"}, domain.ReasonURNMismatch},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, err := domain.Decide(domain.Fold(historyTo(t, tc.given)), tc.when, now)
			var r *domain.Refusal
			if !errors.As(err, &r) || r.Code != tc.code {
				t.Fatalf("err = %v, want code %s", err, tc.code)
			}
		})
	}
}

func TestGuards(t *testing.T) {
	cases := []struct {
		guard string
		given domain.Status
		when  func(c *domain.Command)
		base  domain.CommandType
	}{
		{"patient_required", domain.StatusNone, func(c *domain.Command) { c.PatientID = "" }, domain.Request},
		{"prescriber_required", domain.StatusNone, func(c *domain.Command) { c.PrescriberID = "" }, domain.Request},
		{"medication_required", domain.StatusNone, func(c *domain.Command) { c.Medication.Name = "" }, domain.Request},
		{"medication_required", domain.StatusNone, func(c *domain.Command) { c.Medication.Quantity = 0 }, domain.Request},
		{"medication_required", domain.StatusNone, func(c *domain.Command) { c.Medication.Refills = -1 }, domain.Request},
		{"approver_required", domain.StatusRequested, func(c *domain.Command) { c.ApprovedBy = "" }, domain.Approve},
		{"reason_required", domain.StatusRequested, func(c *domain.Command) { c.Reason = "" }, domain.Reject},
		{"pharmacy_required", domain.StatusApproved, func(c *domain.Command) { c.PharmacyID = "" }, domain.Process},
		{"quantity_within_prescribed", domain.StatusProcessing, func(c *domain.Command) { c.Dispensing.Quantity = 21 }, domain.Dispense},
		{"quantity_within_prescribed", domain.StatusProcessing, func(c *domain.Command) { c.Dispensing.Quantity = -1 }, domain.Dispense},
		{"reason_required", domain.StatusProcessing, func(c *domain.Command) { c.Reason = "" }, domain.Fail},
	}
	for _, tc := range cases {
		t.Run(tc.guard+"/"+string(tc.base), func(t *testing.T) {
			c := validCommand(tc.base)
			tc.when(&c)
			_, err := domain.Decide(domain.Fold(historyTo(t, tc.given)), c, now)
			var r *domain.Refusal
			if !errors.As(err, &r) || r.Code != domain.ReasonGuardFailed || r.Guard != tc.guard {
				t.Fatalf("err = %v, want guard %s", err, tc.guard)
			}
		})
	}
}

func TestGuardsAdmitAlternatives(t *testing.T) {
	approved := domain.Fold(historyTo(t, domain.StatusRequested))
	evs, err := domain.Decide(approved, domain.Command{Type: domain.Approve, URN: urn, Actor: "dr-actor"}, now)
	if err != nil || evs[0].(domain.Approved).ApprovedBy != "dr-actor" {
		t.Fatalf("approve by actor: %v %#v", err, evs)
	}

	req := requestCmd()
	req.PharmacyID = "ph-preset"
	p := domain.Fold(mustDecide(t, domain.Prescription{}, req))
	p = domain.Fold(append(mustDecide(t, domain.Prescription{}, req), mustDecide(t, p, validCommand(domain.Approve))...))
	evs = mustDecide(t, p, domain.Command{Type: domain.Process, URN: urn})
	if got := evs[0].(domain.ProcessingStarted).PharmacyID; got != "ph-preset" {
		t.Fatalf("process without pharmacy kept %q, want the preset pharmacy", got)
	}
}

func mustDecide(t *testing.T, p domain.Prescription, c domain.Command) []domain.Event {
	t.Helper()
	evs, err := domain.Decide(p, c, now)
	if err != nil {
		t.Fatal(err)
	}
	return evs
}

func TestHappyPathState(t *testing.T) {
	p := domain.Fold(historyTo(t, domain.StatusCompleted))
	want := domain.Prescription{
		URN: urn, Status: domain.StatusCompleted, Revision: 5, StatusSince: 4, StatusAt: now, PatientID: "pat-1", PrescriberID: "dr-1", PharmacyID: "ph-1",
		Medication: domain.Medication{Name: "Amoxicillin", Code: "J01CA04", CodeSystem: domain.CodeSystemATC, Strength: "500mg", Quantity: 20, Refills: 1}, ApprovedBy: "dr-1",
		RequestedAt: now, ApprovedAt: now, ProcessingAt: now, DispensedAt: now, CompletedAt: now,
	}
	if !reflect.DeepEqual(p, want) {
		t.Fatalf("state\n got %+v\nwant %+v", p, want)
	}
	failed := domain.Fold(historyTo(t, domain.StatusFailed))
	if failed.FailureReason != "because" || !failed.FailedAt.Equal(now) {
		t.Fatalf("failed state %+v", failed)
	}
}

func TestWorkflowTableIsValid(t *testing.T) {
	if err := domain.Prescriptions.Validate(); err != nil {
		t.Fatal(err)
	}
}

// Each row names the event its builder returns.
func TestRecordersNameTheirEvent(t *testing.T) {
	for _, tr := range domain.Prescriptions.Transitions {
		e := tr.Records.Build(domain.Prescription{}, validCommand(tr.On), now)
		if got := fmt.Sprintf("%T", e); got != "domain."+tr.Records.Event {
			t.Errorf("%s from %q names %q but builds %s", tr.On, tr.From, tr.Records.Event, got)
		}
	}
}

func TestValidateFindsBrokenTables(t *testing.T) {
	base := domain.Prescriptions
	withRows := func(rows ...domain.Transition) domain.Workflow {
		w := base
		w.Transitions = append([]domain.Transition{}, rows...)
		return w
	}
	cases := map[string]struct {
		w    domain.Workflow
		want string
	}{
		"exit from final": {withRows(append(base.Transitions, domain.Transition{On: domain.Approve, From: domain.StatusCompleted, To: domain.StatusApproved})...),
			`final state "completed" has an exit`},
		"unreachable": {withRows(base.Transitions[:4]...), `state "completed" is not reachable`},
		"dead end": {withRows(domain.Transition{On: domain.Request, From: domain.StatusNone, To: domain.StatusRequested}),
			`state "requested" cannot reach a final state`},
		"ambiguous target": {withRows(append(base.Transitions, domain.Transition{On: domain.Fail, From: domain.StatusApproved, To: domain.StatusRejected})...),
			`leads to both`},
		// processor.New validates the table, so such a row stops the start-up.
		"row without a builder": {withRows(withRecords(base.Transitions, domain.Complete, domain.Recorder{Event: "Completed"})...),
			`"prescription.complete" from "dispensed" records no event`},
		"row without an event name": {withRows(withRecords(base.Transitions, domain.Complete, domain.Recorder{Build: base.Transitions[5].Records.Build})...),
			`"prescription.complete" from "dispensed" records no event`},
		"builder of another command": {withRows(withRecords(base.Transitions, domain.Approve, base.Transitions[2].Records)...),
			`"prescription.approve" from "requested" builds Rejected, an event of another command`},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			err := tc.w.Validate()
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("Validate() = %v, want it to mention %q", err, tc.want)
			}
		})
	}
}

// withRecords returns a copy of rows whose transition on c records r.
func withRecords(rows []domain.Transition, c domain.CommandType, r domain.Recorder) []domain.Transition {
	rows = slices.Clone(rows)
	for i := range rows {
		if rows[i].On == c {
			rows[i].Records = r
		}
	}
	return rows
}

func TestRefusedChangesNothingButRevision(t *testing.T) {
	p := domain.Fold(historyTo(t, domain.StatusApproved))
	_, err := domain.Decide(p, validCommand(domain.Complete), now)
	var r *domain.Refusal
	if !errors.As(err, &r) {
		t.Fatalf("complete from approved: %v", err)
	}
	refused := domain.RefusalOf(r, now)
	after := domain.Evolve(p, refused)
	p.Revision++
	if !reflect.DeepEqual(after, p) {
		t.Fatalf("refusal changed the state:\n got %+v\nwant %+v", after, p)
	}
	if got := refused.Refusal(); !reflect.DeepEqual(got, r) {
		t.Fatalf("rejection round trip: %+v vs %+v", got, r)
	}
}

func TestPremature(t *testing.T) {
	cases := []struct {
		code   domain.ReasonCode
		status domain.Status
		cmd    domain.CommandType
		want   bool
	}{
		{domain.ReasonUnknownPrescription, domain.StatusNone, domain.Approve, true},
		{domain.ReasonUnknownPrescription, domain.StatusNone, domain.Complete, true},
		{domain.ReasonInvalidTransition, domain.StatusRequested, domain.Process, true},  // after approve
		{domain.ReasonInvalidTransition, domain.StatusRequested, domain.Complete, true}, // after approve, process, dispense
		{domain.ReasonInvalidTransition, domain.StatusApproved, domain.Dispense, true},
		{domain.ReasonInvalidTransition, domain.StatusApproved, domain.Fail, true},
		{domain.ReasonInvalidTransition, domain.StatusProcessing, domain.Approve, false}, // approve lies behind
		{domain.ReasonInvalidTransition, domain.StatusDispensed, domain.Process, false},
		{domain.ReasonInvalidTransition, domain.StatusApproved, domain.Reject, false},
		{domain.ReasonFinalState, domain.StatusCompleted, domain.Complete, false},
		{domain.ReasonGuardFailed, domain.StatusRequested, domain.Approve, false},
		{domain.ReasonDuplicateRequest, domain.StatusRequested, domain.Request, false},
		{domain.ReasonURNMismatch, domain.StatusRequested, domain.Approve, false},
	}
	for _, tc := range cases {
		r := &domain.Refusal{Code: tc.code, Status: tc.status, Command: tc.cmd}
		if got := domain.Prescriptions.Premature(r); got != tc.want {
			t.Errorf("Premature(%s, %s in %q) = %v, want %v", tc.code, tc.cmd, tc.status, got, tc.want)
		}
	}
}

// A failure carries a stable reason code: the command's, else FailureReported.
func TestFailRecordsReasonCode(t *testing.T) {
	processing := domain.Fold(historyTo(t, domain.StatusProcessing))
	cases := []struct {
		name, reason, code, want string
	}{
		{"client without code", "out of stock", "", domain.FailureReported},
		{"client with code", "out of stock", "out_of_stock", "out_of_stock"},
		{"pharmacy unreachable", "Pharmacy processing error", "pharmacy_unavailable", "pharmacy_unavailable"},
		{"pharmacy refused", "Pharmacy processing error", "pharmacy_rejected", "pharmacy_rejected"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			evs := mustDecide(t, processing, domain.Command{Type: domain.Fail, URN: urn, Reason: tc.reason, ReasonCode: tc.code})
			want := domain.Failed{Reason: tc.reason, ReasonCode: tc.want, At: now}
			if len(evs) != 1 || !reflect.DeepEqual(evs[0], want) {
				t.Fatalf("events %#v, want %#v", evs, want)
			}
		})
	}
	// A code without a reason is still refused: the reason is the human text.
	_, err := domain.Decide(processing, domain.Command{Type: domain.Fail, URN: urn, ReasonCode: "out_of_stock"}, now)
	if r, ok := errors.AsType[*domain.Refusal](err); !ok || r.Guard != "reason_required" {
		t.Fatalf("fail with a code but no reason: %v", err)
	}
}

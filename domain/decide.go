package domain

import (
	"fmt"
	"time"
)

// Decide checks command c against the prescription p and the workflow table.
// It returns the event that records the transition, built by the table
// row's Recorder, or a *Refusal.
// now is the decision time; Decide never reads the clock.
func Decide(p Prescription, c Command, now time.Time) ([]Event, error) {
	w := Prescriptions
	refuse := func(code ReasonCode, format string, args ...any) ([]Event, error) {
		return nil, &Refusal{Code: code, Reason: fmt.Sprintf(format, args...), Status: p.Status, Command: c.Type}
	}
	if !IsCommand(c.Type) {
		return refuse(ReasonUnknownCommand, "unknown event %q", c.Type)
	}
	if p.Status != StatusNone && c.URN != p.URN {
		return refuse(ReasonURNMismatch, "command for %q applied to prescription %q", c.URN, p.URN)
	}
	if c.Type == RecordDeadline {
		return decideDeadline(p, c, now)
	}
	t, ok := w.Lookup(p.Status, c.Type)
	switch {
	case ok:
	case p.Status == StatusNone:
		return refuse(ReasonUnknownPrescription, "prescription %q was never requested", c.URN)
	case c.Type == Request:
		return refuse(ReasonDuplicateRequest, "prescription %q already exists (status %s)", c.URN, p.Status)
	case w.IsFinal(p.Status):
		return refuse(ReasonFinalState, "prescription is %s, a final state: no further transitions", p.Status)
	default:
		return refuse(ReasonInvalidTransition, "%s is not allowed from %s (allowed: %v)", c.Type, p.Status, w.Exits(p.Status))
	}
	for _, g := range t.Guards {
		if reason, ok := g.Check(p, c); !ok {
			return nil, &Refusal{Code: ReasonGuardFailed, Reason: reason, Status: p.Status, Command: c.Type, Guard: g.Name}
		}
	}
	return []Event{t.Records.Build(p, c, now)}, nil
}

// Evolve folds event e into p. It never fails: events are facts.
func Evolve(p Prescription, e Event) Prescription {
	revision := p.Revision
	p.Revision++
	if to, ok := Prescriptions.Target(e.Cause()); ok {
		p.Status, p.StatusSince, p.StatusAt, p.PassedDeadlines = to, revision, e.OccurredAt(), 0
	}
	switch e := e.(type) {
	case DeadlinePassed:
		if e.Since == p.StatusSince {
			p.PassedDeadlines = p.PassedDeadlines.With(e.Deadline)
		}
	case Requested:
		p.URN, p.PatientID, p.PrescriberID, p.PharmacyID = e.URN, e.PatientID, e.PrescriberID, e.PharmacyID
		p.Medication, p.RequestedAt = e.Medication, e.At
	case Approved:
		p.ApprovedBy, p.ApprovedAt = e.ApprovedBy, e.At
	case Rejected:
		p.RejectedBy, p.RejectionReason, p.RejectedAt = e.RejectedBy, e.Reason, e.At
	case ProcessingStarted:
		p.PharmacyID, p.ProcessingAt = e.PharmacyID, e.At
	case Dispensed:
		p.Dispensing, p.DispensedAt = e.Dispensing, e.At
	case Completed:
		p.CompletedAt = e.At
	case Failed:
		p.FailureReason, p.FailedAt = e.Reason, e.At
	}
	return p
}

// Fold rebuilds a prescription from its history.
func Fold(history []Event) Prescription {
	var p Prescription
	for _, e := range history {
		p = Evolve(p, e)
	}
	return p
}

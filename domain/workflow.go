// Package domain holds the prescription aggregate and its workflow table.
//
// The table in this file is the single source of truth for the workflow:
// Decide, Evolve, start-up validation and the generated docs all read it.
// The package is pure: it never reads the clock and never generates ids.
package domain

import (
	"errors"
	"fmt"
	"slices"
	"time"
)

// Status is the seed's PrescriptionStatus.
type Status string

// The seed's seven states. StatusNone is the state of a prescription that
// was never requested (an empty stream).
const (
	StatusNone       Status = ""
	StatusRequested  Status = "requested"
	StatusApproved   Status = "approved"
	StatusRejected   Status = "rejected"
	StatusProcessing Status = "processing"
	StatusDispensed  Status = "dispensed"
	StatusCompleted  Status = "completed"
	StatusFailed     Status = "failed"
)

// Statuses lists the seed's states in workflow order.
var Statuses = []Status{StatusRequested, StatusApproved, StatusRejected, StatusProcessing, StatusDispensed, StatusCompleted, StatusFailed}

// CommandType is the seed's PrescriptionEvent: what a client asks for.
type CommandType string

// The seed's seven events, with their exact string values.
const (
	Request  CommandType = "prescription.request"
	Approve  CommandType = "prescription.approve"
	Reject   CommandType = "prescription.reject"
	Process  CommandType = "prescription.process"
	Dispense CommandType = "prescription.dispense"
	Complete CommandType = "prescription.complete"
	Fail     CommandType = "prescription.fail"
)

// CommandTypes lists the seed's events in workflow order.
var CommandTypes = []CommandType{Request, Approve, Reject, Process, Dispense, Complete, Fail}

// Guard is a named condition a command must meet for its transition.
// Check returns a human-readable reason when the condition is not met.
type Guard struct {
	Name  string
	Check func(p Prescription, c Command) (reason string, ok bool)
}

// Transition is one row of the workflow table: command On moves a
// prescription from From to To once every guard passes, and Records builds
// the event that records it.
type Transition struct {
	On      CommandType
	From    Status
	To      Status
	Guards  []Guard
	Records Recorder
}

// Recorder names the event a transition records and builds it from the
// prescription, the command and the decision time. Build must return an
// event whose Cause is the transition's command.
type Recorder struct {
	Event string // the domain event's name, e.g. "Approved"
	Build func(p Prescription, c Command, now time.Time) Event
}

// Workflow is the seed's WorkflowDefinition: transitions, final states and
// the failed state.
type Workflow struct {
	Initial     Status
	Final       []Status
	FailedState Status
	Transitions []Transition
	Deadlines   []Deadline // per state; the durations are defaults a deployment may change (WithDeadlines)
}

// Prescriptions is the prescription workflow of the seed. Request creates a
// prescription in Requested; final states have no exits, unlike the seed's
// library, which logs and accepts transitions out of them.
var Prescriptions = Workflow{
	Initial:     StatusRequested,
	Final:       []Status{StatusCompleted, StatusRejected, StatusFailed},
	FailedState: StatusFailed,
	Transitions: []Transition{
		{On: Request, From: StatusNone, To: StatusRequested, Guards: []Guard{needPatient, needPrescriber, needMedication}, Records: recordRequested},
		{On: Approve, From: StatusRequested, To: StatusApproved, Guards: []Guard{needApprover}, Records: recordApproved},
		{On: Reject, From: StatusRequested, To: StatusRejected, Guards: []Guard{needReason}, Records: recordRejected},
		{On: Process, From: StatusApproved, To: StatusProcessing, Guards: []Guard{needPharmacy}, Records: recordProcessingStarted},
		{On: Dispense, From: StatusProcessing, To: StatusDispensed, Guards: []Guard{dispenseWithinPrescribed}, Records: recordDispensed},
		{On: Complete, From: StatusDispensed, To: StatusCompleted, Records: recordCompleted},
		{On: Fail, From: StatusProcessing, To: StatusFailed, Guards: []Guard{needReason}, Records: recordFailed},
	},
	Deadlines: []Deadline{
		{Name: "approval-overdue", In: StatusRequested, After: 48 * time.Hour, Action: "remind the prescriber (notification)"},
		{Name: "processing-overdue", In: StatusApproved, After: 4 * time.Hour, Action: "alert support"},
		{Name: "pickup-overdue", In: StatusDispensed, After: 10 * 24 * time.Hour, Action: "return to stock, with a notice to the pharmacy and to the patient"},
	},
}

// Lookup returns the transition that command c triggers from status s.
func (w Workflow) Lookup(s Status, c CommandType) (Transition, bool) {
	for _, t := range w.Transitions {
		if t.From == s && t.On == c {
			return t, true
		}
	}
	return Transition{}, false
}

// Target returns the status that command c leads to, wherever it starts.
func (w Workflow) Target(c CommandType) (Status, bool) {
	for _, t := range w.Transitions {
		if t.On == c {
			return t.To, true
		}
	}
	return StatusNone, false
}

// IsFinal reports whether s is a final state.
func (w Workflow) IsFinal(s Status) bool { return slices.Contains(w.Final, s) }

// Exits lists the commands accepted in status s.
func (w Workflow) Exits(s Status) []CommandType {
	var out []CommandType
	for _, t := range w.Transitions {
		if t.From == s {
			out = append(out, t.On)
		}
	}
	return out
}

// Validate checks the table's shape: every state reachable from the initial
// state, final states without exits, every other state able to reach a final
// state, one target per command so that Evolve is deterministic, every
// transition recording a named event of its own command, and deadlines with
// unique names and positive durations on reachable, non-final states.
func (w Workflow) Validate() error {
	var errs []error
	if !slices.Contains(w.Final, w.FailedState) {
		errs = append(errs, fmt.Errorf("failed state %q is not final", w.FailedState))
	}
	targets := map[CommandType]Status{}
	for _, t := range w.Transitions {
		if to, seen := targets[t.On]; seen && to != t.To {
			errs = append(errs, fmt.Errorf("command %q leads to both %q and %q", t.On, to, t.To))
		}
		targets[t.On] = t.To
		if w.IsFinal(t.From) {
			errs = append(errs, fmt.Errorf("final state %q has an exit on %q", t.From, t.On))
		}
		if t.Records.Event == "" || t.Records.Build == nil {
			errs = append(errs, fmt.Errorf("%q from %q records no event: it needs an event name and a builder", t.On, t.From))
		} else if e := t.Records.Build(Prescription{}, Command{Type: t.On}, time.Time{}); e == nil || e.Cause() != t.On {
			errs = append(errs, fmt.Errorf("%q from %q builds %s, an event of another command", t.On, t.From, t.Records.Event))
		}
	}
	reachable := w.reachableFrom(StatusNone)
	for _, s := range Statuses {
		if !reachable[s] {
			errs = append(errs, fmt.Errorf("state %q is not reachable from %q", s, w.Initial))
		}
		if w.IsFinal(s) {
			continue
		}
		if !slices.ContainsFunc(w.Final, func(f Status) bool { return w.reachableFrom(s)[f] }) {
			errs = append(errs, fmt.Errorf("state %q cannot reach a final state", s))
		}
	}
	if t, ok := w.Target(Request); !ok || t != w.Initial {
		errs = append(errs, fmt.Errorf("%q must create a prescription in %q", Request, w.Initial))
	}
	errs = append(errs, w.validateDeadlines())
	return errors.Join(errs...)
}

func (w Workflow) reachableFrom(start Status) map[Status]bool {
	seen := map[Status]bool{start: true}
	queue := []Status{start}
	for len(queue) > 0 {
		s := queue[0]
		queue = queue[1:]
		for _, t := range w.Transitions {
			if t.From == s && !seen[t.To] {
				seen[t.To] = true
				queue = append(queue, t.To)
			}
		}
	}
	return seen
}

// Premature reports whether refusal r may only mean that the command
// arrived before its predecessor: the prescription does not exist yet, or
// the command is valid from a state the workflow can still reach. A command
// refused in a final state, by a guard or as a duplicate is never premature.
func (w Workflow) Premature(r *Refusal) bool {
	switch r.Code {
	case ReasonUnknownPrescription:
		return true
	case ReasonInvalidTransition:
		ahead := w.reachableFrom(r.Status)
		for _, t := range w.Transitions {
			if t.On == r.Command && t.From != r.Status && ahead[t.From] {
				return true
			}
		}
	}
	return false
}

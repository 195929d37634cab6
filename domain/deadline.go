package domain

import (
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"
)

// Deadline is one row of the workflow's deadline table: a prescription that
// stays in state In for After (the default; a deployment may configure
// another) passes the deadline, which records DeadlinePassed in its stream
// and lets the reactions named in Action happen. The transition leaving In
// cancels it.
type Deadline struct {
	Name   string        // stable, e.g. "approval-overdue": keys the configuration and the command id
	In     Status        // the state it watches
	After  time.Duration // how long the prescription may stay in In
	Action string        // what passing it does, for the docs
}

// RecordDeadline is the command that records a passed deadline. It is not
// one of the seed's seven: only the projector's deadline scheduler sends it
// (docs: README "Deadlines"), with the deadline's name and the revision
// that started its state.
const RecordDeadline CommandType = "prescription.deadline"

// Refusal codes of RecordDeadline.
const (
	// ReasonDeadlineCancelled: the prescription left the deadline's state
	// (or entered it again later) before the deadline was recorded; the
	// transition won the race.
	ReasonDeadlineCancelled ReasonCode = "deadline_cancelled"
	// ReasonUnknownDeadline: the command names no deadline of the table.
	ReasonUnknownDeadline ReasonCode = "unknown_deadline"
	// ReasonDeadlineAlreadyPassed: this deadline already passed for this
	// entry into its state (the same deadline and since); it passes once.
	ReasonDeadlineAlreadyPassed ReasonCode = "deadline_already_passed"
	// ReasonDeadlineNotDue: the command's dueAt is later than the
	// processor's clock plus DeadlineClockSkew, or earlier than the time
	// the prescription entered the deadline's state.
	ReasonDeadlineNotDue ReasonCode = "deadline_not_due"
)

// DeadlineClockSkew is how far a deadline command's dueAt may lie ahead of
// the processor's clock (the scheduler's clock may run a little ahead).
const DeadlineClockSkew = time.Minute

// DeadlineSet is a set of deadlines of Prescriptions.Deadlines, by their
// place in the table (at most 64, which Validate checks). Its zero value is
// empty. It is a value, so Prescription stays comparable.
type DeadlineSet uint64

// With returns s with deadline name; an unknown name leaves s unchanged.
func (s DeadlineSet) With(name string) DeadlineSet {
	if i := Prescriptions.deadlineIndex(name); i >= 0 {
		s |= 1 << i
	}
	return s
}

// Has reports whether deadline name is in s.
func (s DeadlineSet) Has(name string) bool {
	i := Prescriptions.deadlineIndex(name)
	return i >= 0 && s&(1<<i) != 0
}

func (w Workflow) deadlineIndex(name string) int {
	return slices.IndexFunc(w.Deadlines, func(d Deadline) bool { return d.Name == name })
}

// DeadlinePassed records that a prescription stayed in a state past one of
// its deadlines. It changes no state: the prescription may still take the
// transition it waited for.
type DeadlinePassed struct {
	Deadline string
	Status   Status    // the state it waited in
	Since    int       // the stream revision of the event that entered Status
	DueAt    time.Time // when the deadline fell due, as the scheduler computed it
	At       time.Time // when it was recorded
}

func (DeadlinePassed) Cause() CommandType      { return RecordDeadline }
func (e DeadlinePassed) OccurredAt() time.Time { return e.At }

// Deadline returns the deadline named name.
func (w Workflow) Deadline(name string) (Deadline, bool) {
	for _, d := range w.Deadlines {
		if d.Name == name {
			return d, true
		}
	}
	return Deadline{}, false
}

func (w Workflow) deadlineNamed(name string) bool { _, ok := w.Deadline(name); return ok }

// DeadlinesIn lists the deadlines that watch state s.
func (w Workflow) DeadlinesIn(s Status) []Deadline {
	var out []Deadline
	for _, d := range w.Deadlines {
		if d.In == s {
			out = append(out, d)
		}
	}
	return out
}

// IsCommand reports whether c is a command Decide knows: the seed's seven
// and RecordDeadline.
func IsCommand(c CommandType) bool {
	return slices.Contains(CommandTypes, c) || c == RecordDeadline
}

// decideDeadline records deadline c.Deadline when the prescription is still
// in its state, entered at revision c.Since, the deadline has not passed
// yet for that entry (else ReasonDeadlineAlreadyPassed) and c.DueAt lies
// between the entry's time and now plus DeadlineClockSkew (else
// ReasonDeadlineNotDue). When the prescription has left the state, the
// transition won the race: ReasonDeadlineCancelled.
func decideDeadline(p Prescription, c Command, now time.Time) ([]Event, error) {
	refuse := func(code ReasonCode, format string, args ...any) ([]Event, error) {
		return nil, &Refusal{Code: code, Reason: fmt.Sprintf(format, args...), Status: p.Status, Command: c.Type}
	}
	d, ok := Prescriptions.Deadline(c.Deadline)
	switch {
	case !ok:
		return refuse(ReasonUnknownDeadline, "no deadline is named %q", c.Deadline)
	case p.Status == StatusNone:
		return refuse(ReasonUnknownPrescription, "prescription %q was never requested", c.URN)
	case p.Status != d.In || p.StatusSince != c.Since:
		return refuse(ReasonDeadlineCancelled, "deadline %s watched %s entered at revision %d; the prescription is %s since revision %d",
			d.Name, d.In, c.Since, p.Status, p.StatusSince)
	case p.PassedDeadlines.Has(d.Name):
		return refuse(ReasonDeadlineAlreadyPassed, "deadline %s already passed for %s entered at revision %d", d.Name, d.In, c.Since)
	case c.DueAt.After(now.Add(DeadlineClockSkew)):
		return refuse(ReasonDeadlineNotDue, "deadline %s is due at %s, after now (%s) plus %v",
			d.Name, c.DueAt.Format(time.RFC3339Nano), now.Format(time.RFC3339Nano), DeadlineClockSkew)
	case c.DueAt.Before(p.StatusAt):
		return refuse(ReasonDeadlineNotDue, "deadline %s is due at %s, before the prescription became %s at %s",
			d.Name, c.DueAt.Format(time.RFC3339Nano), d.In, p.StatusAt.Format(time.RFC3339Nano))
	}
	return []Event{DeadlinePassed{Deadline: d.Name, Status: d.In, Since: c.Since, DueAt: c.DueAt, At: now}}, nil
}

// validateDeadlines checks the deadline table: names unique and non-empty,
// a positive default, and a state that is reachable and not final.
func (w Workflow) validateDeadlines() error {
	var errs []error
	seen := map[string]bool{}
	reachable := w.reachableFrom(StatusNone)
	if len(w.Deadlines) > 64 {
		errs = append(errs, fmt.Errorf("%d deadlines, more than a DeadlineSet holds (64)", len(w.Deadlines)))
	}
	for _, d := range w.Deadlines {
		switch {
		case d.Name == "" || strings.ContainsAny(d.Name, "@: \t"):
			errs = append(errs, fmt.Errorf("deadline %q: a name must be non-empty, without '@', ':' or spaces", d.Name))
		case seen[d.Name]:
			errs = append(errs, fmt.Errorf("deadline %q is declared twice", d.Name))
		}
		seen[d.Name] = true
		if d.After <= 0 {
			errs = append(errs, fmt.Errorf("deadline %q: after %v, want a positive duration", d.Name, d.After))
		}
		if w.IsFinal(d.In) || !reachable[d.In] || d.In == StatusNone {
			errs = append(errs, fmt.Errorf("deadline %q watches %q, which is not a reachable, non-final state", d.Name, d.In))
		}
	}
	return errors.Join(errs...)
}

// WithDeadlines returns w with the durations of after (by deadline name)
// replacing the defaults. An unknown name is an error, so that a
// misspelled setting never goes unnoticed.
func (w Workflow) WithDeadlines(after map[string]time.Duration) (Workflow, error) {
	ds := make([]Deadline, len(w.Deadlines))
	copy(ds, w.Deadlines)
	var errs []error
	for name, d := range after {
		if !w.deadlineNamed(name) {
			errs = append(errs, fmt.Errorf("no deadline is named %q", name))
		}
		if d <= 0 {
			errs = append(errs, fmt.Errorf("deadline %q: %v is not a positive duration", name, d))
		}
	}
	for i := range ds {
		if d, ok := after[ds[i].Name]; ok {
			ds[i].After = d
		}
	}
	w.Deadlines = ds
	return w, errors.Join(errs...)
}

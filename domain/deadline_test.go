package domain_test

import (
	"errors"
	"strings"
	"testing"
	"time"

	"rxflow/domain"
)

func deadlineCommand(name string, since int) domain.Command {
	return domain.Command{Type: domain.RecordDeadline, URN: urn, Actor: "projector:deadlines", Deadline: name, Since: since, DueAt: now}
}

// A prescription still in the deadline's state, entered at the named
// revision, records DeadlinePassed, which changes nothing but the revision
// and the deadlines passed in that state.
func TestDeadlinePassesInItsState(t *testing.T) {
	for _, d := range domain.Prescriptions.Deadlines {
		p := domain.Fold(historyTo(t, d.In))
		evs := mustDecide(t, p, deadlineCommand(d.Name, p.StatusSince))
		got, ok := evs[0].(domain.DeadlinePassed)
		if len(evs) != 1 || !ok || got.Deadline != d.Name || got.Status != d.In || got.Since != p.StatusSince || !got.At.Equal(now) || !got.DueAt.Equal(now) {
			t.Fatalf("%s: events %+v", d.Name, evs)
		}
		after := domain.Evolve(p, got)
		p.Revision++
		p.PassedDeadlines = p.PassedDeadlines.With(d.Name)
		if after != p {
			t.Fatalf("%s: DeadlinePassed changed the state:\n got %+v\nwant %+v", d.Name, after, p)
		}
	}
}

// The transition leaving the state wins a race it comes first in: the
// deadline is refused as cancelled, and so is one for an earlier entry.
func TestDeadlineCancelledByTransition(t *testing.T) {
	requested := domain.Fold(historyTo(t, domain.StatusRequested))
	approved := domain.Fold(historyTo(t, domain.StatusApproved))
	for _, c := range []struct {
		p    domain.Prescription
		cmd  domain.Command
		code domain.ReasonCode
	}{
		{approved, deadlineCommand("approval-overdue", requested.StatusSince), domain.ReasonDeadlineCancelled},
		{approved, deadlineCommand("processing-overdue", approved.StatusSince-1), domain.ReasonDeadlineCancelled},
		{requested, deadlineCommand("no-such-deadline", 0), domain.ReasonUnknownDeadline},
		{domain.Prescription{}, deadlineCommand("approval-overdue", 0), domain.ReasonUnknownPrescription},
	} {
		_, err := domain.Decide(c.p, c.cmd, now)
		r, ok := errors.AsType[*domain.Refusal](err)
		if !ok || r.Code != c.code {
			t.Errorf("%s since %d in %s: %v, want %s", c.cmd.Deadline, c.cmd.Since, c.p.Status, err, c.code)
		}
	}
}

// A deadline passes once per entry into its state: the same (deadline,
// since) again, whatever its command id, is refused, and so it appends
// nothing the reactions could follow. A later entry into the state starts
// afresh.
func TestDeadlinePassesOncePerEntry(t *testing.T) {
	h := historyTo(t, domain.StatusRequested)
	p := domain.Fold(h)
	evs := mustDecide(t, p, deadlineCommand("approval-overdue", 0))
	p = domain.Evolve(p, evs[0])
	if !p.PassedDeadlines.Has("approval-overdue") || p.PassedDeadlines.Has("pickup-overdue") {
		t.Fatalf("passed deadlines %b", p.PassedDeadlines)
	}
	p = domain.Evolve(p, domain.Refused{At: now}) // a refusal in between changes nothing
	_, err := domain.Decide(p, deadlineCommand("approval-overdue", 0), now)
	if r, ok := errors.AsType[*domain.Refusal](err); !ok || r.Code != domain.ReasonDeadlineAlreadyPassed {
		t.Fatalf("repeat: %v, want %s", err, domain.ReasonDeadlineAlreadyPassed)
	}
	// Dispensed, then the pickup deadline: entering dispensed cleared the set.
	d := domain.Fold(historyTo(t, domain.StatusDispensed))
	if d.PassedDeadlines != 0 {
		t.Fatalf("a new state kept passed deadlines %b", d.PassedDeadlines)
	}
	mustDecide(t, d, deadlineCommand("pickup-overdue", d.StatusSince))
}

// A deadline command whose dueAt is later than now plus the allowed skew
// (a forged early deadline), or earlier than the entry into its state, is
// refused as not due; within the skew it is accepted.
func TestDeadlineNotDue(t *testing.T) {
	p := domain.Fold(historyTo(t, domain.StatusDispensed)) // entered at now
	for _, c := range []struct {
		dueAt time.Time
		ok    bool
	}{
		{now, true},
		{now.Add(domain.DeadlineClockSkew), true},
		{now.Add(domain.DeadlineClockSkew + time.Nanosecond), false},
		{now.Add(10 * 24 * time.Hour), false},
		{now.Add(-time.Nanosecond), false},
		{time.Time{}, false},
	} {
		cmd := deadlineCommand("pickup-overdue", p.StatusSince)
		cmd.DueAt = c.dueAt
		_, err := domain.Decide(p, cmd, now)
		r, refused := errors.AsType[*domain.Refusal](err)
		switch {
		case c.ok && err != nil:
			t.Errorf("dueAt %v: %v", c.dueAt, err)
		case !c.ok && (!refused || r.Code != domain.ReasonDeadlineNotDue):
			t.Errorf("dueAt %v: %v, want %s", c.dueAt, err, domain.ReasonDeadlineNotDue)
		}
	}
}

func TestStatusSinceIsTheRevisionThatEnteredTheState(t *testing.T) {
	h := historyTo(t, domain.StatusDispensed)
	p := domain.Fold(h)
	if p.StatusSince != len(h)-1 {
		t.Fatalf("StatusSince = %d, want %d", p.StatusSince, len(h)-1)
	}
	p = domain.Evolve(p, domain.Refused{At: now})
	if p.StatusSince != len(h)-1 {
		t.Fatalf("a refusal moved StatusSince to %d", p.StatusSince)
	}
}

func TestDeadlineTableValidation(t *testing.T) {
	for _, c := range []struct {
		d    domain.Deadline
		want string
	}{
		{domain.Deadline{Name: "x", In: domain.StatusCompleted, After: time.Hour}, "not a reachable, non-final state"},
		{domain.Deadline{Name: "x", In: domain.StatusNone, After: time.Hour}, "not a reachable, non-final state"},
		{domain.Deadline{Name: "x", In: domain.StatusApproved}, "positive duration"},
		{domain.Deadline{Name: "a b", In: domain.StatusApproved, After: time.Hour}, "a name must be"},
		{domain.Prescriptions.Deadlines[0], "declared twice"},
	} {
		w := domain.Prescriptions
		w.Deadlines = append(append([]domain.Deadline(nil), w.Deadlines...), c.d)
		if err := w.Validate(); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%+v: Validate = %v, want %q", c.d, err, c.want)
		}
	}
	if err := domain.Prescriptions.Validate(); err != nil {
		t.Fatal(err)
	}
}

func TestWithDeadlines(t *testing.T) {
	w, err := domain.Prescriptions.WithDeadlines(map[string]time.Duration{"pickup-overdue": 72 * time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	if d, _ := w.Deadline("pickup-overdue"); d.After != 72*time.Hour {
		t.Fatalf("pickup-overdue after %v", d.After)
	}
	if d, _ := domain.Prescriptions.Deadline("pickup-overdue"); d.After != 10*24*time.Hour {
		t.Fatalf("WithDeadlines changed the shared table: %v", d.After)
	}
	for _, bad := range []map[string]time.Duration{{"pickup-overdu": time.Hour}, {"pickup-overdue": 0}} {
		if _, err := domain.Prescriptions.WithDeadlines(bad); err == nil {
			t.Errorf("WithDeadlines(%v) accepted", bad)
		}
	}
}

package projections

import (
	"testing"
	"time"

	"rxflow/domain"
	"rxflow/events"
)

// A stream that holds the same deadline twice for one entry into its state
// (stored before the aggregate refused repeats) calls the partners for the
// first only; the same deadline after a later entry is followed again.
func TestDeadlineTriggerFollowsOnePassPerEntry(t *testing.T) {
	at := time.Date(2026, 11, 29, 10, 0, 0, 0, time.UTC)
	requested := domain.Requested{URN: "urn:rx:1", PatientID: "p1", PrescriberID: "d1", At: at}
	passed := domain.DeadlinePassed{Deadline: "approval-overdue", Status: domain.StatusRequested, Since: 0, DueAt: at, At: at}
	history := []domain.Event{requested, passed, passed}
	trigger := Trigger{Deadline: "approval-overdue"}
	var followed []int
	var p domain.Prescription
	for i, e := range history {
		c := Change{Event: events.Recorded{Event: e, Revision: uint64(i)}, Before: p, After: domain.Evolve(p, e)}
		if trigger.matches(c) {
			followed = append(followed, i)
		}
		p = c.After
	}
	if len(followed) != 1 || followed[0] != 1 {
		t.Fatalf("the trigger followed events %v, want [1]", followed)
	}
	// A DeadlinePassed for an earlier entry does not mark the current one.
	later := domain.DeadlinePassed{Deadline: "approval-overdue", Status: domain.StatusRequested, Since: 5, DueAt: at, At: at}
	if c := (Change{Event: events.Recorded{Event: later}, Before: p, After: p}); !trigger.matches(c) {
		t.Fatal("a deadline for another entry was not followed")
	}
}

package stack_test

import (
	"encoding/json"
	"slices"
	"sync/atomic"
	"testing"
	"time"

	"rxflow/events"
	"rxflow/infra/kafka/kafkatest"
	"rxflow/projections"
	"rxflow/service/projector"
	"rxflow/service/stack"
	"rxflow/standin/partnersim"
)

// A deadline through the whole system: the projector's scheduler, on a
// fake clock moved past the configured duration, sends prescription.deadline
// over Kafka; the processor records PrescriptionDeadlinePassed; the
// prescriber is reminded through the notification simulator; the approval
// that follows is accepted, and the history shows both.
func TestDeadlineThroughTheStack(t *testing.T) {
	kafkatest.ForEachCluster(t, func(t *testing.T, brokers []string) {
		var skew atomic.Int64 // how far the scheduler's and the processor's clocks are ahead
		s := startStackWith(t, brokers, func(c *stack.Config) {
			clock := func() time.Time { return time.Now().Add(time.Duration(skew.Load())) }
			c.Deadlines = projector.Deadlines{After: map[string]time.Duration{"approval-overdue": 3 * time.Hour}, Every: 20 * time.Millisecond, Clock: clock}
			c.ProcessorClock = clock // else the processor finds the deadline not yet due
		})
		urn := "urn:rx:deadline-stack"
		send(t, s, urn, "prescription.request")
		eventually(t, 30*time.Second, "the request in the read model", func() bool { return status(t, s, urn) == "requested" })
		if n := len(history(t, s, urn)); n != 1 {
			t.Fatalf("a deadline passed before its time: %d events", n)
		}

		skew.Store(int64(3*time.Hour + time.Minute))
		eventually(t, 30*time.Second, "the deadline in the history", func() bool { return len(history(t, s, urn)) == 2 })
		eventually(t, 30*time.Second, "the prescriber's reminder", func() bool {
			for _, c := range s.Sim.Accepted(partnersim.Notifications) {
				var n projections.PrescriberNotice
				if json.Unmarshal(c.Body, &n) == nil && n.URN == urn && n.PrescriberID == "dr-1" && n.Message == projections.ApprovalReminder {
					return true
				}
			}
			return false
		})
		send(t, s, urn, "prescription.approve")
		eventually(t, 30*time.Second, "the approval", func() bool { return status(t, s, urn) == "approved" })
		want := []string{events.NameRequested, events.NameDeadlinePassed, events.NameApproved}
		if got := history(t, s, urn); !slices.Equal(got, want) {
			t.Fatalf("history %v, want %v", got, want)
		}
		// The deadline changed no status: status-changed has the request and the approval only.
		eventually(t, 30*time.Second, "the approval's status change", func() bool {
			return len(kafkatest.ConsumeAll(t, s.Brokers, s.Topics.Outbound.StatusChanged)) >= 2
		})
		var changes []string
		for _, r := range kafkatest.ConsumeAll(t, s.Brokers, s.Topics.Outbound.StatusChanged) {
			var m projections.StatusChanged
			if err := json.Unmarshal(r.Value, &m); err != nil {
				t.Fatal(err)
			}
			changes = append(changes, m.EventType)
		}
		if !slices.Equal(changes, []string{events.NameRequested, events.NameApproved}) {
			t.Fatalf("status changes %v, want the request's and the approval's", changes)
		}
	})
}

// history lists urn's stored event names from the query API.
func history(t *testing.T, s *stack.Stack, urn string) []string {
	t.Helper()
	var h struct{ Events []struct{ EventType string } }
	api(t, s, "/prescriptions/"+urn+"/history", &h)
	var out []string
	for _, e := range h.Events {
		out = append(out, e.EventType)
	}
	return out
}

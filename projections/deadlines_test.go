package projections_test

import (
	"context"
	"fmt"
	"reflect"
	"testing"
	"time"

	"rxflow/commands"
	"rxflow/domain"
	"rxflow/projections"
)

func TestDeadlineCommandIDRoundTrips(t *testing.T) {
	id := projections.DeadlineCommandID("pickup-overdue", 12)
	if id != "deadline:pickup-overdue@12" {
		t.Fatalf("id %q", id)
	}
	if name, since, ok := projections.ParseDeadlineCommandID(id); !ok || name != "pickup-overdue" || since != 12 {
		t.Fatalf("parse %q = %q, %d, %v", id, name, since, ok)
	}
	for _, bad := range []string{"pharmacy-failure:x", "deadline:@3", "deadline:x@", "deadline:x@-1", "deadline:x", "deadline:x@1a"} {
		if _, _, ok := projections.ParseDeadlineCommandID(bad); ok {
			t.Errorf("parsed %q", bad)
		}
	}
}

// A rebuild's replay waits for the deadlines the live read model does: a
// deadline starts at the stream revision that entered its state, refusals
// folded in between or not, and one that passed waits no more.
func TestReplayWaitsForTheDeadlinesOfTheStreams(t *testing.T) {
	store := memoryStore(t)
	h := commands.NewHandler(store, commands.HandlerConfig{})
	handle := func(value string) commands.Outcome {
		t.Helper()
		env, err := commands.Decode(commands.Raw{Value: []byte(value)}, 0)
		if err != nil {
			t.Fatal(err)
		}
		out, err := h.Handle(context.Background(), env)
		if err != nil {
			t.Fatal(err)
		}
		return out
	}
	request(t, h, "urn:rx:w1")
	handle(`{"urn":"urn:rx:w1","event":"prescription.complete","commandId":"c2"}`) // refused, revision 1
	handle(`{"urn":"urn:rx:w1","event":"prescription.approve","commandId":"c3","payload":{"approvedBy":"d"}}`)
	request(t, h, "urn:rx:w2")
	deadline := fmt.Sprintf(`{"urn":"urn:rx:w2","event":"prescription.deadline","commandId":"deadline:approval-overdue@0","payload":{"deadline":"approval-overdue","since":0,"dueAt":%q}}`,
		time.Now().UTC().Format(time.RFC3339Nano)) // the handler's clock is time.Now
	if out := handle(deadline); out.Kind != commands.Appended {
		t.Fatalf("deadline: %+v", out)
	}
	request(t, h, "urn:rx:w3")

	replayed, err := projections.Replay(context.Background(), store, nil)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, w := range replayed.Waiting {
		got = append(got, fmt.Sprintf("%s %s %d", w.URN, w.Deadline, w.Since))
	}
	want := []string{"urn:rx:w1 processing-overdue 2", "urn:rx:w3 approval-overdue 0"}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("waiting %v, want %v", got, want)
	}
	if len(replayed.Rows) != 3 || replayed.Rows[0].URN != "urn:rx:w1" || replayed.Rows[0].Status != domain.StatusApproved || replayed.Rows[0].StatusSince != 2 {
		t.Fatalf("rows %+v, want urn:rx:w1 first, approved since revision 2", replayed.Rows)
	}
}

// Every deadline of the workflow table has a reaction, and every deadline
// reaction follows a declared deadline: a renamed deadline cannot silently
// lose its partner calls.
func TestEveryDeadlineHasItsReactions(t *testing.T) {
	reacted := map[string]bool{}
	for _, r := range projections.Reactions {
		if d := r.When.Deadline; d != "" {
			if _, ok := domain.Prescriptions.Deadline(d); !ok {
				t.Errorf("reaction %s follows deadline %q, which the workflow table does not declare", r.Name, d)
			}
			reacted[d] = true
		}
	}
	for _, d := range domain.Prescriptions.Deadlines {
		if !reacted[d.Name] {
			t.Errorf("deadline %s has no reaction", d.Name)
		}
	}
}

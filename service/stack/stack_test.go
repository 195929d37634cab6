package stack_test

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"rxflow/domain"
	"rxflow/infra/kafka/kafkatest"
	"rxflow/projections"
	"rxflow/service/projector"
	"rxflow/standin/partnersim"
)

func keys(calls []partnersim.Call) []string {
	var out []string
	for _, c := range calls {
		out = append(out, c.IdempotencyKey)
	}
	return out
}

// The seed's three scenarios, processor and projector together: each yields
// exactly the expected partner calls and Kafka messages.
func TestSeedScenarios(t *testing.T) {
	kafkatest.ForEachCluster(t, func(t *testing.T, brokers []string) {
		s := startStack(t, brokers)
		s.Sim.SetDown(partnersim.Pharmacy, false)
		happy, rejected, failing := "urn:rx:happy", "urn:rx:rejected", "urn:rx:pharmacy-down"
		send(t, s, happy, happyPath...)
		send(t, s, rejected, rejectedPath...)
		eventually(t, 30*time.Second, "happy path completed", func() bool { return status(t, s, happy) == "completed" })
		// The pharmacy reactor follows its own subscription: wait until it has
		// placed the happy path's order before the pharmacy goes down.
		eventually(t, 30*time.Second, "happy path's pharmacy order", func() bool { return len(s.Sim.Accepted(partnersim.Pharmacy)) == 1 })
		s.Sim.SetDown(partnersim.Pharmacy, true)
		send(t, s, failing, pharmacyPath...)
		eventually(t, 30*time.Second, "pharmacy failure to fail the prescription", func() bool { return status(t, s, failing) == "failed" })
		eventually(t, 30*time.Second, "rejected", func() bool { return status(t, s, rejected) == "rejected" })
		eventually(t, 30*time.Second, "projectors caught up", func() bool { return lag(t, s) == 0 && len(s.Sim.Accepted(partnersim.Alerting)) > 0 })

		var history struct{ Events []projections.HistoryEntry }
		api(t, s, "/prescriptions/"+happy+"/history", &history)
		approvedID := history.Events[1].EventID
		completedID := history.Events[4].EventID

		if got := keys(s.Sim.Accepted(partnersim.Insurance)); len(got) != 2 || got[0] != approvedID {
			t.Errorf("insurance notified %v, want the two approvals, first %s", got, approvedID)
		}
		if got := s.Sim.Accepted(partnersim.Pharmacy); len(got) != 1 || !strings.Contains(string(got[0].Body), happy) {
			t.Errorf("pharmacy received %d prescriptions, want only %s", len(got), happy)
		}
		if got := s.Sim.Calls(partnersim.Pharmacy); len(got) != 1+3 {
			t.Errorf("pharmacy saw %d calls, want 1 + 3 failed attempts", len(got))
		}
		if got := s.Sim.Accepted(partnersim.Notifications); len(got) != 1 || got[0].IdempotencyKey != completedID ||
			!strings.Contains(string(got[0].Body), projections.ReadyForPickup) {
			t.Errorf("patient notifications %v", got)
		}
		if got := s.Sim.Accepted(partnersim.Alerting); len(got) != 1 || !strings.Contains(string(got[0].Body), "Prescription processing failed.") ||
			!strings.Contains(string(got[0].Body), failing) {
			t.Errorf("support alerts %d: %v", len(got), got)
		}

		dispensed := kafkatest.ConsumeAll(t, s.Brokers, s.Topics.Outbound.Dispensed)
		if len(dispensed) != 1 || string(dispensed[0].Key) != happy {
			t.Fatalf("dispensed messages: %d", len(dispensed))
		}
		var d map[string]any
		if err := json.Unmarshal(dispensed[0].Value, &d); err != nil || d["urn"] != happy || d["patientId"] != "pat-1" || d["pharmacyId"] != "ph-1" || d["timestamp"] == nil || len(d) != 4 {
			t.Errorf("dispensed payload %s", dispensed[0].Value)
		}
		h := dispensed[0].Headers
		if h[projector.HeaderCEID] != history.Events[3].EventID || h[projector.HeaderDedupeKey] != h[projector.HeaderCEID] ||
			h[projector.HeaderCEType] != "prescription.dispensed" || h[projector.HeaderCESpecVersion] != "1.0" || h[projector.HeaderCESource] == "" ||
			h[projector.HeaderCETime] == "" || h[projector.HeaderContentType] != "application/json" {
			t.Errorf("dispensed headers %v", h)
		}
		failed := kafkatest.ConsumeAll(t, s.Brokers, s.Topics.Outbound.Failed)
		var f map[string]any
		if len(failed) != 1 || json.Unmarshal(failed[0].Value, &f) != nil || f["urn"] != failing ||
			f["reason"] != "Pharmacy processing error" || f["reasonCode"] != "pharmacy_unavailable" || f["timestamp"] == nil || len(f) != 4 {
			t.Fatalf("failed messages: %d %v", len(failed), failed)
		}
		changes := kafkatest.ConsumeAll(t, s.Brokers, s.Topics.Outbound.StatusChanged)
		if len(changes) != len(happyPath)+len(rejectedPath)+len(pharmacyPath)+1 {
			t.Errorf("%d status changes, want one per transition", len(changes))
		}
		if rej := kafkatest.ConsumeAll(t, s.Brokers, s.Topics.Rejections); len(rej) != 0 {
			t.Errorf("unexpected rejection %s", rej[0].Value)
		}
	})
}

// A parked notification is kept, alerted and visible through the API.
func TestParkedNotificationIsVisible(t *testing.T) {
	s := startStack(t, nil)
	s.Sim.SetDown(partnersim.Notifications, true)
	urn := "urn:rx:parked"
	send(t, s, urn, happyPath...)
	var parked struct{ Items []projections.Effect }
	eventually(t, 30*time.Second, "a parked notification", func() bool {
		api(t, s, "/effects/parked", &parked)
		return len(parked.Items) == 1
	})
	p := parked.Items[0]
	if p.Projector != "patient-notification" || p.URN != urn || p.Status != projections.EffectParked || p.Error == "" {
		t.Fatalf("parked effect %+v", p)
	}
	eventually(t, 10*time.Second, "support alerted", func() bool {
		a := s.Sim.Accepted(partnersim.Alerting)
		return len(a) == 1 && strings.Contains(string(a[0].Body), "parked")
	})
	if got := len(s.Sim.Calls(partnersim.Notifications)); got != 3 {
		t.Fatalf("%d notification attempts, want 3 before parking", got)
	}
}

// Restarting the projector mid-stream repeats no side effect and misses none,
// and a rebuilt read model equals the live one.
func TestProjectorRestartAndRebuild(t *testing.T) {
	s := startStack(t, nil)
	const n = 40
	urns := make([]string, n)
	for i := range n {
		urns[i] = "urn:rx:restart-" + string(rune('a'+i%26)) + strings.Repeat("x", i/26)
		send(t, s, urns[i], happyPath...)
		if i == n/2 {
			s.StopProjector()
			if err := s.StartProjector(); err != nil {
				t.Fatal(err)
			}
		}
	}
	eventually(t, 60*time.Second, "every prescription completed and notified", func() bool {
		return len(s.Sim.Accepted(partnersim.Notifications)) == n && lag(t, s) == 0
	})
	for _, p := range []partnersim.Partner{partnersim.Insurance, partnersim.Pharmacy, partnersim.Notifications} {
		acc := keys(s.Sim.Accepted(p))
		if len(acc) != n || len(slices.Compact(slices.Sorted(slices.Values(acc)))) != n {
			t.Errorf("%s: %d accepted calls, want %d distinct", p, len(acc), n)
		}
	}
	changes := kafkatest.ConsumeAll(t, s.Brokers, s.Topics.Outbound.StatusChanged)
	ids := map[string]int{}
	for _, c := range changes {
		ids[c.Headers[projector.HeaderDedupeKey]]++
	}
	if len(ids) != n*len(happyPath) || len(changes) != len(ids) {
		t.Errorf("%d status changes with %d distinct ids, want %d once each", len(changes), len(ids), n*len(happyPath))
	}

	var live struct{ Items []projections.RowView }
	api(t, s, "/prescriptions?limit=500", &live)
	if len(live.Items) != n {
		t.Fatalf("live read model has %d rows", len(live.Items))
	}
	s.StopProjector()
	res, err := projector.Rebuild(context.Background(), projector.RebuildConfig{EventStore: s.EventStoreConfig(), DataDir: s.ProjectorDir()}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if res.Rows != n || res.Events != n*len(happyPath) {
		t.Fatalf("rebuild %+v", res)
	}
	if err := s.StartProjector(); err != nil {
		t.Fatal(err)
	}
	var rebuilt struct{ Items []projections.RowView }
	api(t, s, "/prescriptions?limit=500", &rebuilt)
	if !slices.EqualFunc(live.Items, rebuilt.Items, func(a, b projections.RowView) bool {
		x, _ := json.Marshal(a)
		y, _ := json.Marshal(b)
		return string(x) == string(y)
	}) {
		t.Fatalf("rebuilt read model differs from the live one")
	}
	for _, u := range urns {
		if got := status(t, s, u); got != string(domain.StatusCompleted) {
			t.Fatalf("%s: %s", u, got)
		}
	}
}

// The demo plays every scenario and each ends as the workflow says.
func TestDemo(t *testing.T) {
	s := startStack(t, nil)
	var out strings.Builder
	if err := s.Demo(context.Background(), &out); err != nil {
		t.Fatalf("%v\n%s", err, out.String())
	}
	for _, want := range []string{"status completed", "status rejected", "status failed", "prescription.dispense refused", "status approved",
		"the projector's WARN lines"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("demo output lacks %q:\n%s", want, out.String())
		}
	}
}

// Command ids are scoped to their prescription: two prescriptions whose
// commands carry the same ids each get their own events, partner calls and
// outbound messages.
func TestSameCommandIDsOnTwoPrescriptions(t *testing.T) {
	kafkatest.ForEachCluster(t, func(t *testing.T, brokers []string) {
		s := startStack(t, brokers)
		urns := []string{"urn:rx:same-ids-a", "urn:rx:same-ids-b"}
		for _, urn := range urns {
			var recs []kafkatest.Record
			for i, e := range pharmacyPath {
				recs = append(recs, kafkatest.Record{Key: []byte(urn),
					Value: []byte(fmt.Sprintf(`{"urn":%q,"event":%q,"commandId":"shared-%d","payload":%s}`, urn, e, i, payloads[e]))})
			}
			kafkatest.Produce(t, s.Brokers, s.Topics.Commands, recs...)
		}
		for _, urn := range urns {
			eventually(t, 30*time.Second, urn+" processing", func() bool { return status(t, s, urn) == "processing" })
		}
		eventually(t, 30*time.Second, "both pharmacy orders", func() bool { return len(s.Sim.Accepted(partnersim.Pharmacy)) >= 2 })
		orders := s.Sim.Accepted(partnersim.Pharmacy)
		if len(orders) != 2 || orders[0].IdempotencyKey == orders[1].IdempotencyKey {
			t.Fatalf("pharmacy orders %v, want one per prescription with distinct keys", keys(orders))
		}
		for _, urn := range urns {
			if !slices.ContainsFunc(orders, func(c partnersim.Call) bool { return strings.Contains(string(c.Body), urn) }) {
				t.Errorf("no pharmacy order for %s", urn)
			}
		}
		// The insurance reactor runs on its own subscription: it may still be
		// behind the pharmacy's (seen once under load).
		eventually(t, 30*time.Second, "both insurance notices", func() bool { return len(s.Sim.Accepted(partnersim.Insurance)) >= 2 })
		if got := s.Sim.Accepted(partnersim.Insurance); len(got) != 2 || got[0].IdempotencyKey == got[1].IdempotencyKey {
			t.Errorf("insurance notices %v, want one per prescription", keys(got))
		}
	})
}

package stack_test

import (
	"context"
	"encoding/json"
	"maps"
	"slices"
	"strings"
	"testing"
	"time"

	"rxflow/events"
	"rxflow/infra/eventstore"
	"rxflow/infra/kafka/kafkatest"
	"rxflow/projections"
	"rxflow/standin/partnersim"
)

// byKey keeps the records of urn.
func byKey(recs []kafkatest.Record, urn string) []kafkatest.Record {
	var out []kafkatest.Record
	for _, r := range recs {
		if string(r.Key) == urn {
			out = append(out, r)
		}
	}
	return out
}

// noInternals fails if a message meant for outside consumers shows an
// internal detail: a URL, an HTTP status line, a partner's answer, the
// diagnostic header.
func noInternals(t *testing.T, what string, m kafkatest.Record) {
	t.Helper()
	all := string(m.Value)
	for k, v := range m.Headers {
		all += "\n" + k + ": " + v
	}
	for _, bad := range []string{"http", "HTTP", "POST", "/v1/", "simulated outage", "partners:", "attempt", "diagnostic"} {
		if strings.Contains(all, bad) {
			t.Errorf("%s shows %q:\n%s", what, bad, all)
		}
	}
}

// With the pharmacy down, clients move the prescription on before the
// projector's prescription.fail arrives. The processor refuses that command;
// the pharmacy effect is then parked with the refusal, support is alerted,
// and the audit history shows the refusal under the projector's actor.
func TestRefusedPharmacyFailureIsParked(t *testing.T) {
	kafkatest.ForEachCluster(t, func(t *testing.T, brokers []string) {
		s := startStack(t, brokers)
		s.Sim.SetDown(partnersim.Pharmacy, true)
		cases := []struct {
			urn    string
			then   []string // sent straight after process
			status string   // where the clients leave it
			code   string   // the follow-up's refusal
		}{
			{"urn:rx:race-dispensed", []string{"prescription.dispense"}, "dispensed", "invalid_transition"},
			{"urn:rx:race-completed", []string{"prescription.dispense", "prescription.complete"}, "completed", "final_state"},
			{"urn:rx:race-failed", []string{"prescription.fail"}, "failed", "final_state"},
		}
		for _, tc := range cases {
			send(t, s, tc.urn, append(slices.Clone(pharmacyPath), tc.then...)...)
		}
		var parked struct{ Items []projections.Effect }
		eventually(t, 30*time.Second, "three parked pharmacy effects", func() bool {
			api(t, s, "/effects/parked", &parked)
			return len(parked.Items) == len(cases)
		})
		eventually(t, 30*time.Second, "projectors caught up", func() bool { return lag(t, s) == 0 })
		rejections := kafkatest.ConsumeAll(t, s.Brokers, s.Topics.Rejections)
		changes := kafkatest.ConsumeAll(t, s.Brokers, s.Topics.Outbound.StatusChanged)
		alerts := s.Sim.Accepted(partnersim.Alerting)

		for _, tc := range cases {
			if got := status(t, s, tc.urn); got != tc.status {
				t.Errorf("%s: status %s, want %s", tc.urn, got, tc.status)
			}
			var history struct{ Events []projections.HistoryEntry }
			api(t, s, "/prescriptions/"+tc.urn+"/history", &history)
			started := history.Events[2]
			followUp := projections.FollowUpCommandID("pharmacy", started.EventID)
			if followUp != "pharmacy-failure:"+started.EventID {
				t.Fatalf("follow-up id %s", followUp)
			}
			h := history.Events[len(history.Events)-1]
			var refused struct{ Command, Code, Status string }
			_ = json.Unmarshal(h.Payload, &refused)
			if h.EventType != events.NameCommandRefused || h.Actor != "projector:pharmacy" || h.CommandID != followUp ||
				refused.Command != "prescription.fail" || refused.Code != tc.code || refused.Status != tc.status {
				t.Errorf("%s: history ends with %+v %s", tc.urn, h, h.Payload)
			}

			i := slices.IndexFunc(parked.Items, func(e projections.Effect) bool { return e.URN == tc.urn })
			if i < 0 {
				t.Errorf("%s: not parked: %+v", tc.urn, parked.Items)
				continue
			}
			p := parked.Items[i]
			if p.ID != "pharmacy/"+started.EventID || p.Projector != "pharmacy" || p.Status != projections.EffectParked || p.Refusal == nil ||
				p.Refusal.Code != tc.code || p.Refusal.CommandID != followUp || p.Refusal.EventID != h.EventID || p.Refusal.Reason == "" ||
				p.Refusal.Status != tc.status || !strings.Contains(p.Error, "503") {
				t.Errorf("%s: parked %+v refusal %+v", tc.urn, p, p.Refusal)
			}

			a := slices.IndexFunc(alerts, func(c partnersim.Call) bool { return c.IdempotencyKey == "refused/"+h.EventID })
			if a < 0 {
				t.Errorf("%s: support not alerted of the refusal", tc.urn)
			} else if body := string(alerts[a].Body); !strings.Contains(body, tc.urn) || !strings.Contains(body, tc.code) {
				t.Errorf("%s: alert %s", tc.urn, body)
			}

			// A refusal changes no status: one status change per transition.
			if got, want := len(byKey(changes, tc.urn)), len(pharmacyPath)+len(tc.then); got != want {
				t.Errorf("%s: %d status changes, want %d", tc.urn, got, want)
			}
			rej := byKey(rejections, tc.urn)
			if len(rej) != 1 {
				t.Errorf("%s: %d rejections, want the follow-up's", tc.urn, len(rej))
				continue
			}
			var r struct {
				CommandID, Code string
				Command         json.RawMessage
			}
			if err := json.Unmarshal(rej[0].Value, &r); err != nil || r.CommandID != followUp || r.Code != tc.code {
				t.Errorf("%s: rejection %s", tc.urn, rej[0].Value)
			}
			noInternals(t, "the rejection of "+tc.urn, rej[0])
		}
		// Exactly one alert per refusal, and no pharmacy failure was published.
		refusals := 0
		for _, a := range alerts {
			if strings.HasPrefix(a.IdempotencyKey, "refused/") {
				refusals++
			}
		}
		if refusals != len(cases) {
			t.Errorf("%d refusal alerts, want %d", refusals, len(cases))
		}
		for _, f := range kafkatest.ConsumeAll(t, s.Brokers, s.Topics.Outbound.Failed) {
			if strings.Contains(string(f.Value), "Pharmacy processing error") {
				t.Errorf("a refused pharmacy failure was published: %s", f.Value)
			}
		}
	})
}

// The pharmacy failure reaches outside consumers as human text and a stable
// code; the internal error chain stays in the stored event's metadata.
func TestPharmacyFailureShowsNoInternals(t *testing.T) {
	kafkatest.ForEachCluster(t, func(t *testing.T, brokers []string) {
		s := startStack(t, brokers)
		s.Sim.SetDown(partnersim.Pharmacy, true)
		urn := "urn:rx:internals"
		send(t, s, urn, pharmacyPath...)
		eventually(t, 30*time.Second, "the pharmacy failure to fail the prescription", func() bool { return status(t, s, urn) == "failed" })
		eventually(t, 30*time.Second, "projectors caught up", func() bool { return lag(t, s) == 0 })

		store, err := eventstore.Open(s.EventStoreConfig())
		if err != nil {
			t.Fatal(err)
		}
		defer store.Close()
		recs, err := store.Load(context.Background(), urn)
		if err != nil {
			t.Fatal(err)
		}
		stored := recs[len(recs)-1]
		if stored.Name != events.NameFailed || stored.Meta.Actor != "projector:pharmacy" {
			t.Fatalf("last event %s by %s", stored.Name, stored.Meta.Actor)
		}
		for _, want := range []string{"/v1/prescriptions", "HTTP 503", "simulated outage", "3 attempt(s)"} {
			if !strings.Contains(stored.Meta.Diagnostic, want) {
				t.Errorf("stored diagnostic %q lacks %q", stored.Meta.Diagnostic, want)
			}
		}
		if want := `{"reason":"Pharmacy processing error","reasonCode":"pharmacy_unavailable","failedAt":`; !strings.HasPrefix(string(stored.Data), want) {
			t.Errorf("stored payload %s, want it to start %s", stored.Data, want)
		}

		failed := byKey(kafkatest.ConsumeAll(t, s.Brokers, s.Topics.Outbound.Failed), urn)
		if len(failed) != 1 {
			t.Fatalf("%d prescription.failed messages", len(failed))
		}
		var f map[string]any
		if err := json.Unmarshal(failed[0].Value, &f); err != nil {
			t.Fatal(err)
		}
		if keys := slices.Sorted(maps.Keys(f)); !slices.Equal(keys, []string{"reason", "reasonCode", "timestamp", "urn"}) ||
			f["urn"] != urn || f["reason"] != "Pharmacy processing error" || f["reasonCode"] != "pharmacy_unavailable" ||
			f["timestamp"] != stored.Meta.OccurredAt.Format(time.RFC3339Nano) {
			t.Errorf("prescription.failed %s", failed[0].Value)
		}
		noInternals(t, "prescription.failed", failed[0])
		for _, m := range byKey(kafkatest.ConsumeAll(t, s.Brokers, s.Topics.Outbound.StatusChanged), urn) {
			noInternals(t, "prescription.status-changed", m)
		}
		if rej := byKey(kafkatest.ConsumeAll(t, s.Brokers, s.Topics.Rejections), urn); len(rej) != 0 {
			t.Errorf("unexpected rejection %s", rej[0].Value)
		}

		var row struct{ FailureReason string }
		api(t, s, "/prescriptions/"+urn, &row)
		if row.FailureReason != "Pharmacy processing error" {
			t.Errorf("query API failureReason %q", row.FailureReason)
		}
		// Support is internal: its alert carries the diagnostic.
		alerts := s.Sim.Accepted(partnersim.Alerting)
		if len(alerts) != 1 || alerts[0].IdempotencyKey != stored.Meta.EventID ||
			!strings.Contains(string(alerts[0].Body), "Pharmacy processing error (pharmacy_unavailable); diagnostic: ") ||
			!strings.Contains(string(alerts[0].Body), "simulated outage") {
			t.Errorf("support alerts %v", alerts)
		}
	})
}

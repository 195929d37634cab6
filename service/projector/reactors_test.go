package projector

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"net"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/ThreeDotsLabs/watermill"

	"rxflow/commands"
	"rxflow/domain"
	"rxflow/events"
	"rxflow/infra/eventstore"
	"rxflow/infra/kafka"
	"rxflow/infra/kafka/kafkatest"
	"rxflow/infra/ledger"
	"rxflow/infra/partners"
	"rxflow/projections"
	"rxflow/standin/esdbserver"
	"rxflow/standin/partnersim"
)

// rig drives reactors by hand, one event at a time, on the real adapters:
// the embedded EventStoreDB, Kafka (kfake, or KAFKA_BROKERS), the Pebble
// ledger and the partner simulators. Commands go through the command
// handler as the processor would run them, read back from Kafka when the
// projector sent them.
type rig struct {
	t        *testing.T
	brokers  []string
	topics   projections.OutboundTopics
	commands string // the command topic
	store    *eventstore.Store
	handler  *commands.Handler
	ledger   *ledger.Ledger
	sim      *partnersim.Sim
	pub      publisher
	log      *slog.Logger
}

func newRig(t *testing.T, brokers []string) *rig {
	t.Helper()
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	srv, err := esdbserver.Start(esdbserver.Config{Addr: "127.0.0.1:0", Logger: log})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = srv.Close() })
	store, err := eventstore.Open(eventstore.Config{ConnectionString: srv.ConnectionString(), Logger: log})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = store.Close() })
	led, err := ledger.Open(filepath.Join(t.TempDir(), "ledger"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = led.Close() })
	sim, err := partnersim.Start(partnersim.Config{Logger: log})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = sim.Close() })
	pub, err := kafka.NewPublisher(kafka.Config{Brokers: brokers}, watermill.NewSlogLogger(log))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = pub.Close() })
	g := &rig{t: t, brokers: brokers, commands: kafkatest.UniqueTopic(t, "cmd"),
		topics: projections.OutboundTopics{Dispensed: kafkatest.UniqueTopic(t, "dispensed"), Failed: kafkatest.UniqueTopic(t, "failed"),
			StatusChanged: kafkatest.UniqueTopic(t, "changed")},
		store: store, handler: commands.NewHandler(store, commands.HandlerConfig{}), ledger: led, sim: sim, pub: publisher{pub}, log: log}
	if err := kafka.EnsureTopics(context.Background(), kafka.Config{Brokers: brokers}, 1, g.commands, g.topics.Dispensed, g.topics.Failed,
		g.topics.StatusChanged); err != nil {
		t.Fatal(err)
	}
	return g
}

// reactor runs reaction r; pharmacyURL, if set, replaces the simulator's pharmacy.
func (g *rig) reactor(r projections.Reaction, pharmacyURL string) *projections.Reactor {
	g.t.Helper()
	ps := projections.PartnersOf(projections.Reactions)
	e := partners.Endpoints{}
	for _, p := range ps {
		e[p.Name] = partners.Config{BaseURL: g.sim.URL(partnersim.Partner(p.Name)), Timeout: 2 * time.Second, MaxAttempts: 2,
			BaseBackoff: time.Millisecond, MaxBackoff: 5 * time.Millisecond, Logger: g.log}
	}
	if pharmacyURL != "" {
		ph := e["pharmacy"]
		ph.BaseURL = pharmacyURL
		e["pharmacy"] = ph
	}
	set, err := partners.NewSet(ps, e, nil)
	if err != nil {
		g.t.Fatal(err)
	}
	return projections.NewReactor(r, projections.ReactorDeps{Ledger: g.ledger, History: g.store, Partners: set, Publisher: g.pub,
		CommandTopic: g.commands, Logger: g.log})
}

var payloads = map[domain.CommandType]string{
	domain.Request:  `{"patientId":"pat-1","prescriberId":"dr-1","pharmacyId":"ph-1","medication":{"name":"Amoxicillin","quantity":20}}`,
	domain.Approve:  `{"approvedBy":"dr-1"}`,
	domain.Process:  `{}`,
	domain.Dispense: `{"dispensedBy":"pharmacist-1","quantity":20}`,
	domain.Complete: `{}`,
	domain.Fail:     `{"reason":"out of stock"}`,
}

// send handles client commands for urn, in order, and returns the stream.
func (g *rig) send(urn string, cmds ...domain.CommandType) []events.Recorded {
	g.t.Helper()
	for _, c := range cmds {
		n := len(g.load(urn))
		g.handle(commands.Raw{Key: []byte(urn), Value: fmt.Appendf(nil, `{"urn":%q,"event":%q,"commandId":"%s/%d","actor":"client","payload":%s}`,
			urn, c, urn, n, payloads[c])})
	}
	return g.load(urn)
}

func (g *rig) handle(raw commands.Raw) commands.Outcome {
	g.t.Helper()
	env, err := commands.Decode(raw, 0)
	if err != nil {
		g.t.Fatal(err)
	}
	out, err := g.handler.Handle(context.Background(), env)
	if err != nil {
		g.t.Fatal(err)
	}
	return out
}

func (g *rig) load(urn string) []events.Recorded {
	g.t.Helper()
	recs, err := g.store.Load(context.Background(), urn)
	if err != nil {
		g.t.Fatal(err)
	}
	return recs
}

// sentCommand returns the one command the projector sent for urn.
func (g *rig) sentCommand(urn string) kafkatest.Record {
	g.t.Helper()
	var out []kafkatest.Record
	for _, r := range kafkatest.ConsumeAll(g.t, g.brokers, g.commands) {
		if string(r.Key) == urn {
			out = append(out, r)
		}
	}
	if len(out) != 1 {
		g.t.Fatalf("%d commands sent for %s, want 1", len(out), urn)
	}
	return out[0]
}

// deliver hands a sent command to the command handler, as the processor does.
func (g *rig) deliver(r kafkatest.Record) commands.Outcome {
	g.t.Helper()
	return g.handle(commands.Raw{Topic: r.Topic, Partition: r.Partition, Offset: r.Offset, Key: r.Key, Value: r.Value, Headers: r.Headers})
}

func mustHandle(t *testing.T, p projections.Projector, rec events.Recorded) {
	t.Helper()
	if err := p.Handle(context.Background(), rec); err != nil {
		t.Fatalf("%s handles %s: %v", p.Name(), rec.Name, err)
	}
}

func last(recs []events.Recorded) events.Recorded { return recs[len(recs)-1] }

// reaction returns the row of projections.Reactions named name.
func reaction(t *testing.T, name string) projections.Reaction {
	t.Helper()
	i := slices.IndexFunc(projections.Reactions, func(r projections.Reaction) bool { return r.Name == name })
	if i < 0 {
		t.Fatalf("no reaction %q", name)
	}
	return projections.Reactions[i]
}

// Kind: a reactor's own follow-up command that the processor refuses, for
// any reason, parks the effect with the refusal, alerts support once and
// stays in the audit history under the reactor's actor.
func TestRefusedFollowUpIsParked(t *testing.T) {
	kafkatest.ForEachCluster(t, func(t *testing.T, brokers []string) {
		g := newRig(t, brokers)
		g.sim.SetDown(partnersim.Pharmacy, true)
		pharmacy := reaction(t, "pharmacy")
		misconfigured := pharmacy // a reactor whose command fails a guard
		misconfigured.Name, misconfigured.FailWith = "pharmacy-misconfigured", projections.FailWith{}
		cases := []struct {
			name     string
			reaction projections.Reaction
			movesOn  []domain.CommandType // what clients send before the follow-up arrives
			code     domain.ReasonCode    // "" if the follow-up is accepted
			status   domain.Status        // the status it is refused in
		}{
			{"dispensed meanwhile", pharmacy, []domain.CommandType{domain.Dispense}, domain.ReasonInvalidTransition, domain.StatusDispensed},
			{"completed meanwhile", pharmacy, []domain.CommandType{domain.Dispense, domain.Complete}, domain.ReasonFinalState, domain.StatusCompleted},
			{"failed by a client meanwhile", pharmacy, []domain.CommandType{domain.Fail}, domain.ReasonFinalState, domain.StatusFailed},
			{"guard refuses the command", misconfigured, nil, domain.ReasonGuardFailed, domain.StatusProcessing},
			{"accepted", pharmacy, nil, "", ""},
		}
		for i, tc := range cases {
			t.Run(tc.name, func(t *testing.T) {
				urn := fmt.Sprintf("urn:rx:refused-%d", i)
				x := g.reactor(tc.reaction, "")
				started := last(g.send(urn, domain.Request, domain.Approve, domain.Process))
				mustHandle(t, x, started)
				effectID := tc.reaction.Name + "/" + started.Meta.EventID
				if e, ok, err := g.ledger.Effect(context.Background(), effectID); err != nil || !ok || e.Status != projections.EffectFailedOver {
					t.Fatalf("effect %s = %+v %v %v, want failed_over", effectID, e, ok, err)
				}
				g.send(urn, tc.movesOn...)
				out := g.deliver(g.sentCommand(urn))
				followUp := last(g.load(urn))
				alertsBefore := len(g.sim.Calls(partnersim.Alerting))
				mustHandle(t, x, followUp)
				parked, err := g.ledger.Parked(context.Background())
				if err != nil {
					t.Fatal(err)
				}
				i := slices.IndexFunc(parked, func(e projections.Effect) bool { return e.ID == effectID })

				if tc.code == "" {
					if out.Kind != commands.Appended || followUp.Name != events.NameFailed || i >= 0 ||
						len(g.sim.Calls(partnersim.Alerting)) != alertsBefore {
						t.Fatalf("accepted follow-up: outcome %+v, event %s, parked %v", out, followUp.Name, i >= 0)
					}
					return
				}
				if out.Kind != commands.Refused || out.Refusal.Code != tc.code || followUp.Name != events.NameCommandRefused {
					t.Fatalf("follow-up outcome %+v %v, event %s; want refused %s", out, out.Refusal, followUp.Name, tc.code)
				}
				if i < 0 {
					t.Fatalf("effect %s not parked: %+v", effectID, parked)
				}
				e := parked[i]
				wantRefusal := projections.Refusal{CommandID: projections.FollowUpCommandID(tc.reaction.Name, started.Meta.EventID),
					EventID: followUp.Meta.EventID, Code: string(tc.code), Reason: out.Refusal.Reason, Status: string(tc.status)}
				if e.Status != projections.EffectParked || e.URN != urn || e.EventID != started.Meta.EventID || e.Refusal == nil ||
					!e.Refusal.At.Equal(out.At) || !strings.Contains(e.Error, "503") {
					t.Fatalf("parked effect %+v %+v, want refusal %+v at %v", e, e.Refusal, wantRefusal, out.At)
				}
				got := *e.Refusal
				if got.At = (time.Time{}); got != wantRefusal {
					t.Fatalf("refusal %+v, want %+v", got, wantRefusal)
				}
				alerts := g.sim.Accepted(partnersim.Alerting)
				ai := slices.IndexFunc(alerts, func(c partnersim.Call) bool { return c.IdempotencyKey == "refused/"+followUp.Meta.EventID })
				if ai < 0 {
					t.Fatalf("no support alert for the refusal; alerts %v", alerts)
				}
				var alert map[string]any
				err = json.Unmarshal(alerts[ai].Body, &alert)
				if detail, _ := alert["detail"].(string); err != nil || alert["urn"] != urn || alert["severity"] != "critical" ||
					!strings.Contains(detail, string(tc.code)) {
					t.Fatalf("alert %s", alerts[ai].Body)
				}
				hist, err := projections.HistoryOf(context.Background(), g.store, urn)
				if err != nil {
					t.Fatal(err)
				}
				h := hist[len(hist)-1]
				if h.EventType != events.NameCommandRefused || h.Event != "" || h.Actor != projections.ReactorActor(tc.reaction.Name) ||
					h.Actor != "projector:"+tc.reaction.Name || h.CommandID != wantRefusal.CommandID || !strings.Contains(string(h.Payload), string(tc.code)) {
					t.Fatalf("history ends with %+v %s", h, h.Payload)
				}
				if followUp.Meta.Diagnostic == "" {
					t.Fatal("the refusal lost the follow-up's diagnostic")
				}

				// A replay (a restart before the checkpoint moved) alerts no more.
				calls := len(g.sim.Calls(partnersim.Alerting))
				mustHandle(t, x, followUp)
				mustHandle(t, x, started)
				again, _ := g.ledger.Parked(context.Background())
				if got := len(g.sim.Calls(partnersim.Alerting)); got != calls || len(again) != len(parked) {
					t.Fatalf("replay: %d alert calls (was %d), %d parked (was %d)", got, calls, len(again), len(parked))
				}
			})
		}
	})
}

// Refusals that are not a reactor's own follow-up leave its effects alone.
func TestOtherRefusalsAreNotParked(t *testing.T) {
	g := newRig(t, kafkatest.Brokers(t))
	g.sim.SetDown(partnersim.Pharmacy, true)
	pharmacy := g.reactor(reaction(t, "pharmacy"), "")
	urn := "urn:rx:others"
	started := last(g.send(urn, domain.Request, domain.Approve, domain.Process))
	mustHandle(t, pharmacy, started)
	followUp := g.sentCommand(urn)

	// Each refused command below reaches the pharmacy reactor, which must
	// neither park nor alert.
	refuse := func(id, actor string) events.Recorded {
		out := g.handle(commands.Raw{Key: []byte(urn), Value: fmt.Appendf(nil,
			`{"urn":%q,"event":"prescription.request","commandId":%q,"actor":%q,"payload":%s}`, urn, id, actor, payloads[domain.Request])})
		if out.Kind != commands.Refused {
			t.Fatalf("%s: %+v", id, out)
		}
		return last(g.load(urn))
	}
	refusals := map[string]events.Recorded{
		"a client's command":               refuse("client-1", "client"),
		"another reactor's follow-up":      refuse(projections.FollowUpCommandID("insurance", started.Meta.EventID), projections.ReactorActor("insurance")),
		"a follow-up of no recorded event": refuse(projections.FollowUpCommandID("pharmacy", "no-such-event"), projections.ReactorActor("pharmacy")),
	}
	for name, rec := range refusals {
		mustHandle(t, pharmacy, rec)
		if parked, _ := g.ledger.Parked(context.Background()); len(parked) != 0 || len(g.sim.Calls(partnersim.Alerting)) != 0 {
			t.Fatalf("%s: parked %+v, alerts %d", name, parked, len(g.sim.Calls(partnersim.Alerting)))
		}
	}
	// The real follow-up is accepted: the prescription fails, nothing is parked.
	if out := g.deliver(followUp); out.Kind != commands.Appended {
		t.Fatalf("follow-up: %+v", out)
	}
	mustHandle(t, pharmacy, last(g.load(urn)))
	if e, _, _ := g.ledger.Effect(context.Background(), "pharmacy/"+started.Meta.EventID); e.Status != projections.EffectFailedOver {
		t.Fatalf("effect %+v", e)
	}
}

func TestFollowUpCommandID(t *testing.T) {
	cases := []struct {
		id, reaction, event string
		ok                  bool
	}{
		{projections.FollowUpCommandID("pharmacy", "e1"), "pharmacy", "e1", true},
		{projections.FollowUpCommandID("patient-notification", "0b6f-1"), "patient-notification", "0b6f-1", true},
		{"pharmacy-failure:e1", "pharmacy", "e1", true}, // the stored form: never changes
		{"pharmacy-failure:", "", "", false},
		{"-failure:e1", "", "", false},
		{"cmd-1", "", "", false},
		{"kafka:prescription.events/0/12", "", "", false},
	}
	for _, tc := range cases {
		r, e, ok := projections.ParseFollowUpCommandID(tc.id)
		if ok != tc.ok || ok && (r != tc.reaction || e != tc.event) {
			t.Errorf("ParseFollowUpCommandID(%q) = %q %q %v, want %q %q %v", tc.id, r, e, ok, tc.reaction, tc.event, tc.ok)
		}
	}
	if projections.HeaderCommandID != commands.HeaderCommandID || projections.HeaderDiagnostic != commands.HeaderDiagnostic {
		t.Fatal("the follow-up's headers must be the command topic's")
	}
}

// Kind: nothing internal reaches an outside consumer. A pharmacy failure of
// any class publishes prescription.failed with human text and a stable code;
// the error chain stays in the stored event's metadata (and support's alert).
func TestFailureDetailStaysInternal(t *testing.T) {
	kafkatest.ForEachCluster(t, func(t *testing.T, brokers []string) {
		g := newRig(t, brokers)
		closed, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		unreachable := "http://" + closed.Addr().String() + "/pharmacy"
		closed.Close()
		outbound := projections.NewOutboundProjector(g.ledger, g.store, g.pub, g.topics)
		support := g.reactor(reaction(t, "support-alert"), "")
		cases := []struct {
			name       string
			setup      func()
			url        string
			code       string
			diagnostic []string // in the stored metadata and in support's alert
		}{
			{"pharmacy down", func() { g.sim.SetDown(partnersim.Pharmacy, true) }, "", projections.ReasonPharmacyUnavailable,
				[]string{"/v1/prescriptions", "HTTP 503", "simulated outage"}},
			{"pharmacy refuses", func() { g.sim.FailNext(partnersim.Pharmacy, 1, 422) }, "", projections.ReasonPharmacyRejected,
				[]string{"/v1/prescriptions", "HTTP 422", "simulated failure"}},
			{"pharmacy unreachable", func() {}, unreachable, projections.ReasonPharmacyUnavailable,
				[]string{"/v1/prescriptions", unreachable, "connection refused"}},
		}
		for i, tc := range cases {
			t.Run(tc.name, func(t *testing.T) {
				g.sim.Reset()
				tc.setup()
				urn := fmt.Sprintf("urn:rx:internal-%d", i)
				started := last(g.send(urn, domain.Request, domain.Approve, domain.Process))
				mustHandle(t, g.reactor(reaction(t, "pharmacy"), tc.url), started)

				cmd := g.sentCommand(urn)
				wantCmd := map[string]any{"urn": urn, "event": "prescription.fail", "commandId": "pharmacy-failure:" + started.Meta.EventID,
					"correlationId": started.Meta.CorrelationID, "actor": "projector:pharmacy",
					"payload": map[string]any{"reason": "Pharmacy processing error", "reasonCode": tc.code}}
				assertJSON(t, "sent command", cmd.Value, wantCmd)
				for _, d := range tc.diagnostic {
					if !strings.Contains(cmd.Headers["diagnostic"], d) {
						t.Errorf("diagnostic header %q lacks %q", cmd.Headers["diagnostic"], d)
					}
				}
				if out := g.deliver(cmd); out.Kind != commands.Appended {
					t.Fatalf("fail command: %+v", out)
				}
				failed := last(g.load(urn))
				if f, ok := failed.Event.(domain.Failed); !ok || f.Reason != projections.PharmacyFailureReason || f.ReasonCode != tc.code ||
					failed.Meta.Diagnostic != cmd.Headers["diagnostic"] {
					t.Fatalf("stored %s %#v, diagnostic %q", failed.Name, failed.Event, failed.Meta.Diagnostic)
				}
				mustHandle(t, outbound, failed)
				mustHandle(t, support, failed)

				var msgs []kafkatest.Record
				for _, topic := range []string{g.topics.Failed, g.topics.StatusChanged} {
					for _, r := range kafkatest.ConsumeAll(t, g.brokers, topic) {
						if string(r.Key) == urn {
							msgs = append(msgs, r)
						}
					}
				}
				if len(msgs) != 2 {
					t.Fatalf("%d outbound messages, want prescription.failed and one status change", len(msgs))
				}
				assertJSON(t, "prescription.failed", msgs[0].Value, map[string]any{"urn": urn, "reason": "Pharmacy processing error",
					"reasonCode": tc.code, "timestamp": failed.Event.OccurredAt().Format(time.RFC3339Nano)})
				var changed map[string]any
				_ = json.Unmarshal(msgs[1].Value, &changed)
				if keys := slices.Sorted(maps.Keys(changed)); !slices.Equal(keys, []string{"correlationId", "event", "eventId", "eventType", "from", "position",
					"revision", "timestamp", "to", "urn"}) {
					t.Errorf("status change has keys %v", keys)
				}
				for _, m := range msgs {
					assertClean(t, m, tc.diagnostic)
				}
				alerts := g.sim.Accepted(partnersim.Alerting)
				if len(alerts) != 1 || alerts[0].IdempotencyKey != failed.Meta.EventID {
					t.Fatalf("support alerts %v", alerts)
				}
				var alert map[string]any
				_ = json.Unmarshal(alerts[0].Body, &alert)
				if d, _ := alert["detail"].(string); !strings.Contains(d, "Pharmacy processing error ("+tc.code+")") || !strings.Contains(d, cmd.Headers["diagnostic"]) {
					t.Fatalf("support alert detail %q, want the reason, code and diagnostic", alert["detail"])
				}
			})
		}

		// A client's failure without a code publishes "reported" and its words.
		urn := "urn:rx:internal-client"
		failed := last(g.send(urn, domain.Request, domain.Approve, domain.Process, domain.Fail))
		mustHandle(t, outbound, failed)
		var got []kafkatest.Record
		for _, r := range kafkatest.ConsumeAll(t, g.brokers, g.topics.Failed) {
			if string(r.Key) == urn {
				got = append(got, r)
			}
		}
		if len(got) != 1 {
			t.Fatalf("%d prescription.failed for %s", len(got), urn)
		}
		assertJSON(t, "client failure", got[0].Value, map[string]any{"urn": urn, "reason": "out of stock", "reasonCode": "reported",
			"timestamp": failed.Event.OccurredAt().Format(time.RFC3339Nano)})
	})
}

// assertJSON checks that value is exactly want: the same keys, the same values.
func assertJSON(t *testing.T, what string, value []byte, want map[string]any) {
	t.Helper()
	var got map[string]any
	if err := json.Unmarshal(value, &got); err != nil {
		t.Fatalf("%s: %v: %s", what, err, value)
	}
	w, _ := json.Marshal(want)
	var norm map[string]any
	_ = json.Unmarshal(w, &norm)
	if !maps.EqualFunc(got, norm, func(a, b any) bool { x, _ := json.Marshal(a); y, _ := json.Marshal(b); return string(x) == string(y) }) {
		t.Fatalf("%s = %s\nwant %s", what, value, w)
	}
}

// assertClean checks that an outbound message shows nothing internal: no
// URL, no HTTP status, no partner answer, in its value or its headers.
func assertClean(t *testing.T, m kafkatest.Record, internal []string) {
	t.Helper()
	all := string(m.Value)
	for k, v := range m.Headers {
		all += "\n" + k + ": " + v
	}
	for _, bad := range append([]string{"http", "HTTP", "POST", "/v1/", "simulated", "partners:", "attempt", "diagnostic"}, internal...) {
		if strings.Contains(all, bad) {
			t.Errorf("%s message shows %q:\n%s", m.Topic, bad, all)
		}
	}
}

// Package deadlines_test runs the workflow's deadlines end to end on a fake
// clock: the projector's scheduler finds due deadlines in the SQLite read
// model and sends prescription.deadline; the processor's command path
// records DeadlinePassed (or refuses it) in the embedded EventStoreDB
// through the official client; the read model and the deadline reactions
// (side-effect ledger on Pebble, partner simulators over HTTP) follow the
// stored events. The command topic is the one part replaced: the commands
// the scheduler publishes are handed to the processor by the test, which
// lets it choose their order against the transitions. Nothing sleeps.
package deadlines_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"rxflow/commands"
	"rxflow/domain"
	"rxflow/events"
	"rxflow/infra/eventstore"
	"rxflow/infra/ledger"
	"rxflow/infra/partners"
	"rxflow/infra/readmodel"
	"rxflow/projections"
	"rxflow/standin/esdbserver"
	"rxflow/standin/partnersim"
)

var t0 = time.Date(2026, 11, 2, 9, 0, 0, 0, time.UTC)

// harness is one deployment: processor, projector parts and scheduler.
type harness struct {
	t        *testing.T
	dir      string
	now      time.Time
	store    *eventstore.Store
	proc     *commands.Processor
	refused  []commands.RefusalMessage
	sim      *partnersim.Sim
	partners *partners.Set
	rm       *readmodel.Store
	ledger   *ledger.Ledger
	sched    *projections.DeadlineScheduler
	outbox   []projections.Outbound // published by the scheduler, not yet delivered
	failKey  string                 // the next publish for this urn fails
	urns     map[string]bool
	log      *slog.Logger
}

func newHarness(t *testing.T) *harness {
	t.Helper()
	srv, err := esdbserver.Start(esdbserver.Config{Addr: "127.0.0.1:0"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = srv.Close() })
	store, err := eventstore.Open(eventstore.Config{ConnectionString: srv.ConnectionString()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = store.Close() })
	sim, err := partnersim.Start(partnersim.Config{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = sim.Close() })
	h := &harness{t: t, dir: t.TempDir(), now: t0, store: store, sim: sim, urns: map[string]bool{}, log: slog.New(slog.DiscardHandler)}
	endpoints := partners.Endpoints{}
	for _, p := range projections.PartnersOf(projections.Reactions) {
		endpoints[p.Name] = partners.Config{BaseURL: sim.URL(partnersim.Partner(p.Name)), MaxAttempts: 1}
	}
	if h.partners, err = partners.NewSet(projections.PartnersOf(projections.Reactions), endpoints, nil); err != nil {
		t.Fatal(err)
	}
	handler := commands.NewHandler(store, commands.HandlerConfig{Clock: h.clock})
	h.proc = commands.NewProcessor(handler, (*testOutbox)(h), commands.ProcessorConfig{Clock: h.clock})
	h.open()
	t.Cleanup(h.close)
	return h
}

func (h *harness) clock() time.Time { return h.now }

// open opens the projector's files and a scheduler over them, as a start does.
func (h *harness) open() {
	var err error
	if h.rm, err = readmodel.Open(filepath.Join(h.dir, "readmodel.db")); err != nil {
		h.t.Fatal(err)
	}
	if h.ledger, err = ledger.Open(filepath.Join(h.dir, "ledger")); err != nil {
		h.t.Fatal(err)
	}
	if h.sched, err = projections.NewDeadlineScheduler(h.rm, h.ledger, (*testPublisher)(h), projections.SchedulerConfig{
		CommandTopic: commands.TopicCommands, ResendAfter: 10 * time.Minute, Clock: h.clock, Logger: h.log}); err != nil {
		h.t.Fatal(err)
	}
}

func (h *harness) close() {
	if h.rm != nil {
		_ = h.rm.Close()
		_ = h.ledger.Close()
		h.rm, h.ledger = nil, nil
	}
}

// restart closes the projector's files and opens them again.
func (h *harness) restart() {
	h.close()
	h.open()
}

type testOutbox harness

func (o *testOutbox) Refuse(_ context.Context, m commands.RefusalMessage) error {
	o.refused = append(o.refused, m)
	return nil
}

func (o *testOutbox) DeadLetter(_ context.Context, raw commands.Raw, code string, cause error) error {
	o.t.Fatalf("dead letter %s: %v: %s", code, cause, raw.Value)
	return nil
}

func (o *testOutbox) Defer(context.Context, commands.Raw, string, time.Time) error {
	o.t.Fatal("a keyed command was deferred")
	return nil
}

type testPublisher harness

func (p *testPublisher) Publish(_ context.Context, msgs ...projections.Outbound) error {
	for _, m := range msgs {
		if m.Key == p.failKey {
			p.failKey = ""
			return errors.New("broker down")
		}
	}
	p.outbox = append(p.outbox, msgs...)
	return nil
}

// send hands one command to the processor, as the consumer does.
func (h *harness) send(urn, event, payload, id string) commands.Result {
	h.t.Helper()
	h.urns[urn] = true
	value := fmt.Sprintf(`{"urn":%q,"event":%q,"payload":%s,"actor":"tester"}`, urn, event, payload)
	res, err := h.proc.Process(context.Background(), commands.Raw{Topic: commands.TopicCommands, Key: []byte(urn), Value: []byte(value),
		Headers: map[string]string{commands.HeaderCommandID: id}})
	if err != nil {
		h.t.Fatalf("%s %s: %v", urn, event, err)
	}
	return res
}

const (
	request  = `{"patientId":"pat-1","prescriberId":"dr-1","pharmacyId":"ph-1","medication":{"name":"Amoxicillin","code":"J01CA04","quantity":20,"refills":0}}`
	approve  = `{"approvedBy":"dr-1"}`
	process  = `{"pharmacyId":"ph-1"}`
	dispense = `{"dispensedBy":"pharmacist","quantity":20,"lotNumber":"L7"}`
)

// to brings a new prescription to status s, one command a minute.
func (h *harness) to(urn string, s domain.Status) {
	h.t.Helper()
	steps := []struct {
		event, payload string
		reaches        domain.Status
	}{
		{string(domain.Request), request, domain.StatusRequested}, {string(domain.Approve), approve, domain.StatusApproved},
		{string(domain.Process), process, domain.StatusProcessing}, {string(domain.Dispense), dispense, domain.StatusDispensed},
	}
	for i, st := range steps {
		if res := h.send(urn, st.event, st.payload, fmt.Sprintf("c%d", i)); res.Outcome.Kind != commands.Appended {
			h.t.Fatalf("%s %s: %+v", urn, st.event, res.Outcome)
		}
		if st.reaches == s {
			return
		}
		h.now = h.now.Add(time.Minute)
	}
	h.t.Fatalf("no path to %s", s)
}

// deliver hands every command the scheduler published to the processor.
func (h *harness) deliver() []commands.Result {
	h.t.Helper()
	var out []commands.Result
	for _, o := range h.outbox {
		res, err := h.proc.Process(context.Background(), commands.Raw{Topic: o.Topic, Key: []byte(o.Key), Value: o.Payload, Headers: o.Headers})
		if err != nil {
			h.t.Fatalf("deliver %s: %v", o.Payload, err)
		}
		out = append(out, res)
	}
	h.outbox = nil
	return out
}

// project runs the read model and every reactor over the events stored
// since their checkpoints, in $all order, as their runners would.
func (h *harness) project() {
	h.t.Helper()
	ctx := context.Background()
	var recs []events.Recorded
	for urn := range h.urns {
		rs, err := h.store.Load(ctx, urn)
		if err != nil {
			h.t.Fatal(err)
		}
		recs = append(recs, rs...)
	}
	slices.SortFunc(recs, func(a, b events.Recorded) int { return int(a.Position) - int(b.Position) })
	ps := []projections.Projector{projections.NewReadModelProjector(h.rm)}
	for _, r := range projections.Reactions {
		ps = append(ps, projections.NewReactor(r, projections.ReactorDeps{Ledger: h.ledger, History: h.store, Partners: h.partners,
			Publisher: (*testPublisher)(h), CommandTopic: commands.TopicCommands, Clock: h.clock, Logger: h.log}))
	}
	for _, p := range ps {
		cp, err := p.Checkpoint(ctx)
		if err != nil {
			h.t.Fatal(err)
		}
		for _, rec := range recs {
			if rec.Position <= cp {
				continue
			}
			if err := p.Handle(ctx, rec); err != nil {
				h.t.Fatalf("%s: %v", p.Name(), err)
			}
			if err := p.SaveCheckpoint(ctx, rec.Position); err != nil {
				h.t.Fatal(err)
			}
		}
	}
}

// pass runs one scheduler pass at the clock's time.
func (h *harness) pass() int {
	h.t.Helper()
	n, err := h.sched.Pass(context.Background())
	if err != nil {
		h.t.Fatal(err)
	}
	return n
}

// names lists urn's stored events, by name, with the deadline or refusal code.
func (h *harness) names(urn string) []string {
	h.t.Helper()
	recs, err := h.store.Load(context.Background(), urn)
	if err != nil {
		h.t.Fatal(err)
	}
	var out []string
	for _, r := range recs {
		switch e := r.Event.(type) {
		case domain.DeadlinePassed:
			out = append(out, "DeadlinePassed:"+e.Deadline)
		case domain.Refused:
			out = append(out, fmt.Sprintf("Refused:%s:%s", e.Command, e.Code))
		default:
			out = append(out, strings.TrimPrefix(r.Name, "Prescription"))
		}
	}
	return out
}

// calls lists the bodies partner p accepted for urn.
func (h *harness) calls(p partnersim.Partner, path, urn string) []map[string]any {
	h.t.Helper()
	var out []map[string]any
	for _, c := range h.sim.Accepted(p) {
		var body map[string]any
		if err := json.Unmarshal(c.Body, &body); err != nil {
			h.t.Fatal(err)
		}
		if body["urn"] == urn && (path != "/v1/returns" || body["lotNumber"] != nil) && (path == "/v1/returns" || body["lotNumber"] == nil) {
			out = append(out, body)
		}
	}
	return out
}

func after(name string) time.Duration {
	d, _ := domain.Prescriptions.Deadline(name)
	return d.After
}

// Each deadline fires once when it falls due: one command, one
// DeadlinePassed, one call per reaction; later passes, a redelivery of the
// command and a replay of the events add nothing.
func TestEachDeadlineFiresOnce(t *testing.T) {
	h := newHarness(t)
	type check struct {
		partner partnersim.Partner
		path    string
		field   string
		want    string
	}
	for _, c := range []struct {
		deadline string
		in       domain.Status
		checks   []check
	}{
		{"approval-overdue", domain.StatusRequested, []check{{partnersim.Notifications, "", "prescriberId", "dr-1"}}},
		{"processing-overdue", domain.StatusApproved, []check{{partnersim.Alerting, "", "summary", projections.ProcessingOverdue}}},
		{"pickup-overdue", domain.StatusDispensed, []check{{partnersim.Pharmacy, "/v1/returns", "lotNumber", "L7"},
			{partnersim.Notifications, "", "message", projections.ReturnedToStock}}},
	} {
		urn := "urn:rx:once-" + c.deadline
		h.now = t0
		h.to(urn, c.in)
		entered := h.now
		h.project()

		h.now = entered.Add(after(c.deadline) - time.Second)
		if n := h.pass(); n != 0 {
			t.Fatalf("%s: %d commands a second before the deadline", c.deadline, n)
		}
		h.now = entered.Add(after(c.deadline))
		if n := h.pass(); n != 1 {
			t.Fatalf("%s: %d commands when due, want 1", c.deadline, n)
		}
		if n := h.pass(); n != 0 {
			t.Fatalf("%s: a second pass sent %d more", c.deadline, n)
		}
		sent := slices.Clone(h.outbox)
		res := h.deliver()
		if len(res) != 1 || res[0].Outcome.Kind != commands.Appended {
			t.Fatalf("%s: delivered %+v", c.deadline, res)
		}
		h.project()
		h.outbox = sent // a redelivery of the same command
		if res := h.deliver(); res[0].Outcome.Kind != commands.Duplicate {
			t.Fatalf("%s: the redelivered command was %s, want a duplicate", c.deadline, res[0].Outcome.Kind)
		}
		h.now = h.now.Add(24 * time.Hour)
		if n := h.pass(); n != 0 {
			t.Fatalf("%s: %d commands a day after it fired", c.deadline, n)
		}
		h.project()

		names := h.names(urn)
		if got := names[len(names)-1]; got != "DeadlinePassed:"+c.deadline || strings.Count(strings.Join(names, " "), "DeadlinePassed") != 1 {
			t.Fatalf("%s: history %v, want one DeadlinePassed at the end", c.deadline, names)
		}
		for _, ch := range c.checks {
			got := h.calls(ch.partner, ch.path, urn)
			if len(got) != 1 || got[0][ch.field] != ch.want {
				t.Fatalf("%s: %s%s got %v, want one call with %s=%q", c.deadline, ch.partner, ch.path, got, ch.field, ch.want)
			}
		}
	}
}

// The transition just before the deadline cancels it: projected before the
// pass, no command is sent; stored but not yet projected when the pass
// sends it, the command is refused as deadline_cancelled, recorded in the
// history, and no partner hears of it.
func TestTransitionJustBeforeCancels(t *testing.T) {
	h := newHarness(t)
	due := t0.Add(after("approval-overdue"))

	h.to("urn:rx:before-projected", domain.StatusRequested)
	h.project()
	h.now = due.Add(-time.Second)
	h.send("urn:rx:before-projected", string(domain.Approve), approve, "approve")
	h.project()
	h.now = due
	if n := h.pass(); n != 0 {
		t.Fatalf("%d commands for a deadline its transition cancelled", n)
	}

	h.now = t0
	h.to("urn:rx:before-racing", domain.StatusRequested)
	h.project()
	h.now = due.Add(-time.Second)
	h.send("urn:rx:before-racing", string(domain.Approve), approve, "approve")
	h.now = due
	if n := h.pass(); n != 1 { // the read model has not seen the approval yet
		t.Fatalf("%d commands, want 1", n)
	}
	res := h.deliver()
	if res[0].Outcome.Kind != commands.Refused || res[0].Outcome.Refusal.Code != domain.ReasonDeadlineCancelled {
		t.Fatalf("the deadline after the transition: %+v", res[0].Outcome)
	}
	h.project()
	want := []string{"Requested", "Approved", "Refused:prescription.deadline:deadline_cancelled"}
	if got := h.names("urn:rx:before-racing"); !slices.Equal(got, want) {
		t.Fatalf("history %v, want %v", got, want)
	}
	if got := h.calls(partnersim.Notifications, "", "urn:rx:before-racing"); len(got) != 0 {
		t.Fatalf("a cancelled deadline reminded the prescriber: %v", got)
	}
	// The approval started the next deadline; the cancelled one sends no more.
	h.now = due.Add(time.Hour)
	if n := h.pass(); n != 0 {
		t.Fatalf("%d commands after the cancellation", n)
	}
}

// The transition just after the deadline is still accepted, and the
// history shows both: the deadline, then the transition.
func TestTransitionJustAfterIsAcceptedAndHistoryShowsBoth(t *testing.T) {
	h := newHarness(t)
	urn := "urn:rx:after"
	h.to(urn, domain.StatusRequested)
	h.project()
	h.now = t0.Add(after("approval-overdue"))
	if n := h.pass(); n != 1 {
		t.Fatalf("%d commands, want 1", n)
	}
	if res := h.deliver(); res[0].Outcome.Kind != commands.Appended {
		t.Fatalf("deadline: %+v", res[0].Outcome)
	}
	h.now = h.now.Add(time.Second)
	if res := h.send(urn, string(domain.Approve), approve, "approve"); res.Outcome.Kind != commands.Appended || res.Outcome.Status != domain.StatusApproved {
		t.Fatalf("approve after the deadline: %+v", res.Outcome)
	}
	h.project()
	want := []string{"Requested", "DeadlinePassed:approval-overdue", "Approved"}
	if got := h.names(urn); !slices.Equal(got, want) {
		t.Fatalf("history %v, want %v", got, want)
	}
	hist, err := projections.HistoryOf(context.Background(), h.store, urn)
	if err != nil {
		t.Fatal(err)
	}
	if hist[1].EventType != events.NameDeadlinePassed || hist[1].Event != string(domain.RecordDeadline) || hist[1].Actor != projections.DeadlineActor ||
		hist[1].CommandID != projections.DeadlineCommandID("approval-overdue", 0) || !strings.Contains(string(hist[1].Payload), `"deadline":"approval-overdue"`) {
		t.Fatalf("history entry of the deadline: %+v", hist[1])
	}
	row, err := h.rm.Get(context.Background(), urn)
	if err != nil || row.Status != domain.StatusApproved || row.StatusSince != 2 {
		t.Fatalf("read model %+v, %v", row, err)
	}
	if got := h.calls(partnersim.Notifications, "", urn); len(got) != 1 {
		t.Fatalf("prescriber reminders %v, want 1", got)
	}
}

// A restart between due and fired neither fires twice nor loses the
// deadline: a command sent before the restart is not sent again within
// ResendAfter, one whose publish failed is sent after it, and a command
// sent again once ResendAfter passed is a duplicate.
func TestRestartBetweenDueAndFired(t *testing.T) {
	h := newHarness(t)
	h.to("urn:rx:sent", domain.StatusRequested)
	h.now = h.now.Add(time.Second) // due after urn:rx:sent, so a pass meets it second
	h.to("urn:rx:unsent", domain.StatusRequested)
	h.project()
	h.now = t0.Add(after("approval-overdue") + time.Minute)

	h.failKey = "urn:rx:unsent"
	if _, err := h.sched.Pass(context.Background()); err == nil {
		t.Fatal("a failed publish was not reported")
	}
	if len(h.outbox) != 1 || h.outbox[0].Key != "urn:rx:sent" {
		t.Fatalf("published %+v before the failure, want urn:rx:sent's command", h.outbox)
	}
	h.restart()
	if n := h.pass(); n != 1 {
		t.Fatalf("after the restart: %d commands, want the 1 whose publish failed", n)
	}
	if n := h.pass(); n != 0 {
		t.Fatalf("a second pass sent %d", n)
	}
	h.now = h.now.Add(10 * time.Minute) // ResendAfter, and still not projected
	h.restart()
	if n := h.pass(); n != 2 {
		t.Fatalf("after ResendAfter: %d commands sent again, want 2", n)
	}
	kinds := map[commands.OutcomeKind]int{}
	for _, res := range h.deliver() {
		kinds[res.Outcome.Kind]++
	}
	if kinds[commands.Appended] != 2 || kinds[commands.Duplicate] != 2 {
		t.Fatalf("outcomes %v, want 2 appended and 2 duplicates", kinds)
	}
	h.project()
	h.restart()
	h.project()
	h.now = h.now.Add(time.Hour)
	if n := h.pass(); n != 0 {
		t.Fatalf("%d commands once fired", n)
	}
	for _, urn := range []string{"urn:rx:sent", "urn:rx:unsent"} {
		names := h.names(urn)
		if !slices.Equal(names, []string{"Requested", "DeadlinePassed:approval-overdue"}) {
			t.Fatalf("%s: history %v", urn, names)
		}
		if got := h.calls(partnersim.Notifications, "", urn); len(got) != 1 {
			t.Fatalf("%s: %d reminders, want 1", urn, len(got))
		}
	}
}

// Until the read model has caught up, a pass sends nothing: a restart does
// not fire deadlines whose transition the read model has yet to see.
func TestNoPassBeforeTheReadModelCaughtUp(t *testing.T) {
	h := newHarness(t)
	h.to("urn:rx:ready", domain.StatusRequested)
	h.project()
	h.now = t0.Add(after("approval-overdue"))
	caughtUp := false
	sched, err := projections.NewDeadlineScheduler(h.rm, h.ledger, (*testPublisher)(h), projections.SchedulerConfig{
		CommandTopic: commands.TopicCommands, Clock: h.clock, Logger: h.log, Ready: func() bool { return caughtUp }})
	if err != nil {
		t.Fatal(err)
	}
	if n, err := sched.Pass(context.Background()); err != nil || n != 0 {
		t.Fatalf("before catching up: %d sent, %v", n, err)
	}
	caughtUp = true
	if n, err := sched.Pass(context.Background()); err != nil || n != 1 {
		t.Fatalf("once caught up: %d sent, %v; want 1", n, err)
	}
}

// A deadline that passed is not recorded again for the same entry into its
// state, whatever the command id (none, or another): each repeat is refused
// as deadline_already_passed, recorded and published like any refusal, and
// the prescriber is reminded once.
func TestRepeatedDeadlineRefused(t *testing.T) {
	h := newHarness(t)
	urn := "urn:rx:repeat"
	h.to(urn, domain.StatusRequested)
	h.project()
	h.now = t0.Add(after("approval-overdue"))
	if n := h.pass(); n != 1 {
		t.Fatalf("%d commands sent, want 1", n)
	}
	h.deliver()
	h.project()
	payload := fmt.Sprintf(`{"deadline":"approval-overdue","since":0,"dueAt":%q}`, h.now.Format(time.RFC3339Nano))
	for _, id := range []string{"", "another-id"} {
		h.now = h.now.Add(time.Minute)
		if res := h.send(urn, string(domain.RecordDeadline), payload, id); res.Outcome.Kind != commands.Refused {
			t.Fatalf("repeat with id %q: %+v", id, res.Outcome)
		}
	}
	h.project()
	want := []string{"Requested", "DeadlinePassed:approval-overdue",
		"Refused:prescription.deadline:deadline_already_passed", "Refused:prescription.deadline:deadline_already_passed"}
	if got := h.names(urn); !slices.Equal(got, want) {
		t.Fatalf("history %v, want %v", got, want)
	}
	if len(h.refused) != 2 || h.refused[0].Code != "deadline_already_passed" {
		t.Fatalf("published refusals %+v", h.refused)
	}
	if n := len(h.calls(partnersim.Notifications, "", urn)); n != 1 {
		t.Fatalf("the prescriber was reminded %d times, want once", n)
	}
}

// A forged early deadline (the command id the scheduler would use, sent
// right after dispensing) is refused as deadline_not_due and returns
// nothing to stock; so is one due before the prescription was dispensed.
func TestForgedEarlyDeadlineRefused(t *testing.T) {
	h := newHarness(t)
	urn := "urn:rx:forged"
	h.to(urn, domain.StatusDispensed)
	entered := h.now
	for i, dueAt := range []time.Time{entered.Add(after("pickup-overdue")), entered.Add(-time.Second)} {
		payload := fmt.Sprintf(`{"deadline":"pickup-overdue","since":3,"dueAt":%q}`, dueAt.Format(time.RFC3339Nano))
		h.send(urn, string(domain.RecordDeadline), payload, fmt.Sprintf("deadline:pickup-overdue@3#%d", i))
	}
	h.project()
	want := []string{"Requested", "Approved", "ProcessingStarted", "Dispensed",
		"Refused:prescription.deadline:deadline_not_due", "Refused:prescription.deadline:deadline_not_due"}
	if got := h.names(urn); !slices.Equal(got, want) {
		t.Fatalf("history %v, want %v", got, want)
	}
	if n := len(h.calls(partnersim.Pharmacy, "/v1/returns", urn)); n != 0 {
		t.Fatalf("%d returns to stock, want none", n)
	}
}

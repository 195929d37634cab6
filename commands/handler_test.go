package commands_test

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"rxflow/commands"
	"rxflow/domain"
	"rxflow/events"
	"rxflow/infra/eventstore"
	"rxflow/standin/esdbserver"
)

// newStore starts an embedded EventStoreDB and connects the real adapter.
func newStore(t *testing.T) *eventstore.Store {
	t.Helper()
	srv, err := esdbserver.Start(esdbserver.Config{Addr: "127.0.0.1:0"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = srv.Close() })
	st, err := eventstore.Open(eventstore.Config{ConnectionString: srv.ConnectionString()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = st.Close() })
	return st
}

var fixed = time.Date(2026, 11, 29, 12, 0, 0, 0, time.UTC)

func clock() time.Time { return fixed }

func envelope(t *testing.T, id, value string) commands.Envelope {
	t.Helper()
	env, err := commands.Decode(commands.Raw{Value: []byte(value), Headers: map[string]string{commands.HeaderCommandID: id, commands.HeaderActor: "tester"}}, 0)
	if err != nil {
		t.Fatal(err)
	}
	return env
}

const (
	requestJSON  = `{"urn":"urn:rx:h1","event":"prescription.request","payload":{"patientId":"p1","prescriberId":"d1","medication":{"name":"Amoxicillin","quantity":20}}}`
	approveJSON  = `{"urn":"urn:rx:h1","event":"prescription.approve","payload":{"approvedBy":"d1"}}`
	processJSON  = `{"urn":"urn:rx:h1","event":"prescription.process","payload":{"pharmacyId":"ph1"}}`
	dispenseJSON = `{"urn":"urn:rx:h1","event":"prescription.dispense","payload":{"dispensedBy":"pharmacist","quantity":20}}`
	completeJSON = `{"urn":"urn:rx:h1","event":"prescription.complete"}`
)

func handle(t *testing.T, h *commands.Handler, env commands.Envelope) commands.Outcome {
	t.Helper()
	out, err := h.Handle(context.Background(), env)
	if err != nil {
		t.Fatalf("handle %s: %v", env.ID, err)
	}
	return out
}

func TestHandlerHappyPathStoresEventsWithMetadata(t *testing.T) {
	st := newStore(t)
	h := commands.NewHandler(st, commands.HandlerConfig{Clock: clock})
	steps := []struct{ id, json, name string }{
		{"c1", requestJSON, events.NameRequested}, {"c2", approveJSON, events.NameApproved}, {"c3", processJSON, events.NameProcessingStarted},
		{"c4", dispenseJSON, events.NameDispensed}, {"c5", completeJSON, events.NameCompleted},
	}
	var lastPos uint64
	for i, s := range steps {
		out := handle(t, h, envelope(t, s.id, s.json))
		if out.Kind != commands.Appended || out.Revision != int64(i) || out.Position <= lastPos {
			t.Fatalf("step %s: %+v", s.id, out)
		}
		lastPos = out.Position
	}
	recs, err := st.Load(context.Background(), "urn:rx:h1")
	if err != nil || len(recs) != len(steps) {
		t.Fatalf("load: %d events, %v", len(recs), err)
	}
	for i, r := range recs {
		m := r.Meta
		if r.Name != steps[i].name || r.Revision != uint64(i) || m.CommandID != steps[i].id || m.CausationID != steps[i].id ||
			m.CorrelationID != steps[i].id || m.Actor != "tester" || m.EventID != events.EventID("urn:rx:h1", steps[i].id, 0).String() ||
			!m.OccurredAt.Equal(fixed) || m.SchemaVersion != events.SchemaVersion(steps[i].name) {
			t.Fatalf("event %d: %s %+v", i, r.Name, m)
		}
	}
	if recs[0].Meta.SchemaVersion != 2 || recs[1].Meta.SchemaVersion != 1 {
		t.Fatalf("schema versions %d, %d; want PrescriptionRequested at 2, PrescriptionApproved at 1", recs[0].Meta.SchemaVersion, recs[1].Meta.SchemaVersion)
	}
	if p := domain.Fold(eventsOf(recs)); p.Status != domain.StatusCompleted || p.Dispensing.By != "pharmacist" {
		t.Fatalf("folded state %+v", p)
	}
}

func eventsOf(recs []events.Recorded) []domain.Event {
	out := make([]domain.Event, len(recs))
	for i, r := range recs {
		out[i] = r.Event
	}
	return out
}

func TestHandlerDuplicatesAndReusedIDs(t *testing.T) {
	st := newStore(t)
	for _, cache := range []int{0, 100} {
		h := commands.NewHandler(st, commands.HandlerConfig{Clock: clock, CacheSize: cache})
		req := envelope(t, "dup-req", requestJSON)
		if cache == 0 {
			if out := handle(t, h, req); out.Kind != commands.Appended {
				t.Fatalf("first request: %+v", out)
			}
		}
		if out := handle(t, h, req); out.Kind != commands.Duplicate || out.Status != domain.StatusRequested {
			t.Fatalf("cache %d: redelivered request: %+v", cache, out)
		}
		other := envelope(t, "dup-req", approveJSON)
		out := handle(t, h, other)
		if out.Kind != commands.Refused || out.Refusal.Code != commands.ReasonCommandIDReused {
			t.Fatalf("cache %d: reused id: %+v", cache, out)
		}
		// A second request under a new id is the domain's duplicate request,
		// recorded once; its redelivery gets the same answer.
		id := fmt.Sprintf("dup-req-cache-%d", cache)
		first := handle(t, h, envelope(t, id, requestJSON))
		again := handle(t, h, envelope(t, id, requestJSON))
		if first.Kind != commands.Refused || first.Refusal.Code != domain.ReasonDuplicateRequest ||
			again.Kind != commands.Refused || *again.Refusal != *first.Refusal || !again.At.Equal(first.At) {
			t.Fatalf("cache %d: second request %+v, redelivered %+v", cache, first, again)
		}
	}
	recs, _ := st.Load(context.Background(), "urn:rx:h1")
	names := []string{}
	for _, r := range recs {
		names = append(names, r.Name)
	}
	want := []string{events.NameRequested, events.NameCommandRefused, events.NameCommandRefused}
	if !slices.Equal(names, want) {
		t.Fatalf("stream = %v, want %v", names, want)
	}
}

func TestHandlerStaleCacheNeverDecidesWrong(t *testing.T) {
	st := newStore(t)
	a := commands.NewHandler(st, commands.HandlerConfig{Clock: clock, CacheSize: 10})
	b := commands.NewHandler(st, commands.HandlerConfig{Clock: clock})
	handle(t, a, envelope(t, "s1", requestJSON)) // a caches "requested"
	handle(t, b, envelope(t, "s2", approveJSON)) // the stream moves on behind a's back

	// On a's stale state, process would be refused; the stream says it is allowed.
	if out := handle(t, a, envelope(t, "s3", processJSON)); out.Kind != commands.Appended || out.Status != domain.StatusProcessing {
		t.Fatalf("process on a stale cache: %+v", out)
	}
	handle(t, b, envelope(t, "s4", `{"urn":"urn:rx:h1","event":"prescription.fail","payload":{"reason":"out of stock"}}`))
	// On a's stale state, dispense would be appended; the expected revision catches it.
	out := handle(t, a, envelope(t, "s5", dispenseJSON))
	if out.Kind != commands.Refused || out.Refusal.Code != domain.ReasonFinalState || out.Attempts < 2 {
		t.Fatalf("dispense on a stale cache: %+v", out)
	}
}

func TestHandlerConcurrentWritersOneWinsEachRevision(t *testing.T) {
	st := newStore(t)
	handle(t, commands.NewHandler(st, commands.HandlerConfig{Clock: clock}), envelope(t, "r", requestJSON))
	// Approve and reject race from Requested: exactly one may win.
	var wg sync.WaitGroup
	outs := make([]commands.Outcome, 2)
	errs := make([]error, 2)
	for i, js := range []string{approveJSON, `{"urn":"urn:rx:h1","event":"prescription.reject","payload":{"reason":"allergy"}}`} {
		wg.Add(1)
		go func() {
			defer wg.Done()
			h := commands.NewHandler(st, commands.HandlerConfig{Clock: clock})
			outs[i], errs[i] = h.Handle(context.Background(), envelope(t, "race-"+string(rune('a'+i)), js))
		}()
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		t.Fatal(err)
	}
	appended := 0
	for _, o := range outs {
		if o.Kind == commands.Appended {
			appended++
		} else if o.Kind != commands.Refused || o.Refusal.Code != domain.ReasonFinalState && o.Refusal.Code != domain.ReasonInvalidTransition {
			t.Fatalf("loser outcome %+v", o)
		}
	}
	recs, _ := st.Load(context.Background(), "urn:rx:h1")
	if appended != 1 || len(recs) != 3 || recs[2].Name != events.NameCommandRefused {
		t.Fatalf("%d appended, stream has %d events; want exactly one winner and the loser's refusal", appended, len(recs))
	}
}

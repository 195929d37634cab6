package projections_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"testing"
	"time"

	"rxflow/domain"
	"rxflow/events"
	"rxflow/projections"
)

// memHistory is an in-memory projections.History.
type memHistory map[string][]events.Recorded

func (m memHistory) Load(_ context.Context, urn string) ([]events.Recorded, error) {
	return m[urn], nil
}

type failingHistory struct{ err error }

func (f failingHistory) Load(context.Context, string) ([]events.Recorded, error) { return nil, f.err }

// decide runs c against urn's stream in h and records the resulting events
// as the store would: metadata, revision, a position after pos, payload.
func decide(t *testing.T, h memHistory, pos *uint64, at time.Time, c domain.Command) {
	t.Helper()
	recs := h[c.URN]
	var p domain.Prescription
	for _, r := range recs {
		p = domain.Evolve(p, r.Event)
	}
	evs, err := domain.Decide(p, c, at)
	if err != nil {
		t.Fatalf("decide %s: %v", c.Type, err)
	}
	cmdID := fmt.Sprintf("cmd-%s-%d", c.URN, len(recs))
	for i, e := range evs {
		name, data, err := events.Encode(e)
		if err != nil {
			t.Fatal(err)
		}
		*pos += 10
		recs = append(recs, events.Recorded{
			URN: c.URN, Name: name, Event: e, Data: data,
			Revision: uint64(len(recs)), Position: *pos, Created: at.Add(time.Millisecond),
			Meta: events.Metadata{EventID: events.EventID(c.URN, cmdID, i).String(), CommandID: cmdID, CorrelationID: "corr-" + c.URN,
				CausationID: "msg-" + cmdID, Actor: c.Actor, OccurredAt: at, SchemaVersion: events.SchemaVersion(name)},
		})
	}
	h[c.URN] = recs
}

var t0 = time.Date(2025, 3, 1, 9, 0, 0, 0, time.UTC)

// lifecycle records request, approve, process, dispense and complete for
// urn, one minute apart from t0.
func lifecycle(t *testing.T, h memHistory, pos *uint64, urn string) {
	t.Helper()
	for i, c := range []domain.Command{
		{Type: domain.Request, Actor: "dr-1", PatientID: "pat-1", PrescriberID: "dr-1",
			Medication: domain.Medication{Name: "Amoxicillin", Strength: "500mg", Quantity: 30, Refills: 1}},
		{Type: domain.Approve, Actor: "dr-1"},
		{Type: domain.Process, Actor: "system", PharmacyID: "ph-9"},
		{Type: domain.Dispense, Actor: "ph-9", Dispensing: domain.Dispensing{By: "tech-2", Quantity: 30, LotNumber: "L1"}},
		{Type: domain.Complete, Actor: "ph-9"},
	} {
		c.URN = urn
		decide(t, h, pos, t0.Add(time.Duration(i)*time.Minute), c)
	}
}

func TestHistoryOf(t *testing.T) {
	h, pos := memHistory{}, uint64(0)
	lifecycle(t, h, &pos, "urn:rx:1")
	got, err := projections.HistoryOf(context.Background(), h, "urn:rx:1")
	if err != nil {
		t.Fatal(err)
	}
	want := []struct{ typ, event string }{
		{events.NameRequested, "prescription.request"},
		{events.NameApproved, "prescription.approve"},
		{events.NameProcessingStarted, "prescription.process"},
		{events.NameDispensed, "prescription.dispense"},
		{events.NameCompleted, "prescription.complete"},
	}
	if len(got) != len(want) {
		t.Fatalf("got %d entries, want %d", len(got), len(want))
	}
	recs := h["urn:rx:1"]
	for i, e := range got {
		r := recs[i]
		if e.EventType != want[i].typ || e.Event != want[i].event {
			t.Errorf("entry %d: %s/%s, want %s/%s", i, e.EventType, e.Event, want[i].typ, want[i].event)
		}
		if e.Revision != uint64(i) || e.Position != r.Position || !e.Time.Equal(r.Meta.OccurredAt) || !e.Recorded.Equal(r.Created) {
			t.Errorf("entry %d: revision %d position %d time %v recorded %v; want %d %d %v %v",
				i, e.Revision, e.Position, e.Time, e.Recorded, i, r.Position, r.Meta.OccurredAt, r.Created)
		}
		if e.EventID != r.Meta.EventID || e.CommandID != r.Meta.CommandID || e.Actor != r.Meta.Actor ||
			e.CorrelationID != r.Meta.CorrelationID || e.CausationID != r.Meta.CausationID {
			t.Errorf("entry %d: metadata %+v does not match %+v", i, e, r.Meta)
		}
		if string(e.Payload) != string(r.Data) {
			t.Errorf("entry %d: payload %s, want %s", i, e.Payload, r.Data)
		}
	}

	b, err := json.Marshal(got[1])
	if err != nil {
		t.Fatal(err)
	}
	var m map[string]any
	if err := json.Unmarshal(b, &m); err != nil {
		t.Fatal(err)
	}
	for _, k := range []string{"eventId", "eventType", "event", "revision", "position", "time", "recorded", "actor", "commandId", "correlationId", "causationId", "payload"} {
		if _, ok := m[k]; !ok {
			t.Errorf("JSON %s lacks %q", b, k)
		}
	}
	if p, _ := m["payload"].(map[string]any); p["approvedBy"] != "dr-1" {
		t.Errorf("payload is not the stored JSON: %s", b)
	}
}

func TestHistoryOfErrors(t *testing.T) {
	ctx := context.Background()
	if _, err := projections.HistoryOf(ctx, memHistory{}, "urn:rx:none"); !errors.Is(err, projections.ErrNotFound) {
		t.Errorf("empty stream: %v, want ErrNotFound", err)
	}
	boom := errors.New("boom")
	if _, err := projections.HistoryOf(ctx, failingHistory{boom}, "urn:rx:1"); !errors.Is(err, boom) || errors.Is(err, projections.ErrNotFound) {
		t.Errorf("failing store: %v, want boom", err)
	}
	h := memHistory{"urn:rx:1": {{URN: "urn:rx:1", Name: "Mystery"}}}
	if _, err := projections.HistoryOf(ctx, h, "urn:rx:1"); err == nil {
		t.Error("an undecoded event was accepted")
	}
}

func rev(r uint64) *uint64 { return &r }

func TestStateAsOf(t *testing.T) {
	h, pos := memHistory{}, uint64(0)
	lifecycle(t, h, &pos, "urn:rx:1")
	ctx := context.Background()
	for _, tc := range []struct {
		name       string
		at         projections.AsOf
		status     domain.Status
		revision   uint64
		asOf       time.Time
		approvedAt time.Time
	}{
		{"at the request", projections.AsOf{Time: t0}, domain.StatusRequested, 0, t0, time.Time{}},
		{"between events", projections.AsOf{Time: t0.Add(90 * time.Second)}, domain.StatusApproved, 1, t0.Add(90 * time.Second), t0.Add(time.Minute)},
		{"just before processing", projections.AsOf{Time: t0.Add(2*time.Minute - time.Nanosecond)}, domain.StatusApproved, 1, t0.Add(2*time.Minute - time.Nanosecond), t0.Add(time.Minute)},
		{"long after", projections.AsOf{Time: t0.Add(time.Hour)}, domain.StatusCompleted, 4, t0.Add(time.Hour), t0.Add(time.Minute)},
		{"revision 0", projections.AsOf{Revision: rev(0)}, domain.StatusRequested, 0, t0, time.Time{}},
		{"revision 3", projections.AsOf{Revision: rev(3)}, domain.StatusDispensed, 3, t0.Add(3 * time.Minute), t0.Add(time.Minute)},
		{"revision past the end", projections.AsOf{Revision: rev(99)}, domain.StatusCompleted, 4, t0.Add(4 * time.Minute), t0.Add(time.Minute)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s, err := projections.StateAsOf(ctx, h, "urn:rx:1", tc.at)
			if err != nil {
				t.Fatal(err)
			}
			if s.URN != "urn:rx:1" || s.Status != tc.status || s.Prescription.Status != tc.status || s.Revision != tc.revision || !s.AsOf.Equal(tc.asOf) {
				t.Errorf("got %s %s rev %d as of %v; want %s rev %d as of %v", s.URN, s.Status, s.Revision, s.AsOf, tc.status, tc.revision, tc.asOf)
			}
			if !s.Prescription.ApprovedAt.Equal(tc.approvedAt) || s.Prescription.PatientID != "pat-1" {
				t.Errorf("prescription %+v: want approvedAt %v", s.Prescription, tc.approvedAt)
			}
		})
	}
}

func TestStateAsOfNotFound(t *testing.T) {
	h, pos := memHistory{}, uint64(0)
	lifecycle(t, h, &pos, "urn:rx:1")
	ctx := context.Background()
	for name, c := range map[string]struct {
		urn string
		at  projections.AsOf
	}{
		"before the first event":     {"urn:rx:1", projections.AsOf{Time: t0.Add(-time.Second)}},
		"unknown stream by time":     {"urn:rx:2", projections.AsOf{Time: t0}},
		"unknown stream by revision": {"urn:rx:2", projections.AsOf{Revision: rev(0)}},
	} {
		if _, err := projections.StateAsOf(ctx, h, c.urn, c.at); !errors.Is(err, projections.ErrNotFound) {
			t.Errorf("%s: %v, want ErrNotFound", name, err)
		}
	}
	for name, at := range map[string]projections.AsOf{
		"neither": {},
		"both":    {Time: t0, Revision: rev(1)},
	} {
		if _, err := projections.StateAsOf(ctx, h, "urn:rx:1", at); err == nil || errors.Is(err, projections.ErrNotFound) {
			t.Errorf("%s set: %v, want a usage error", name, err)
		}
	}
}

// A stamp out of order ends the fold: the state stays a prefix of the stream.
func TestStateAsOfStopsAtFirstLaterEvent(t *testing.T) {
	h, pos := memHistory{}, uint64(0)
	lifecycle(t, h, &pos, "urn:rx:1")
	h["urn:rx:1"][2].Meta.OccurredAt = t0.Add(time.Hour) // processing stamped late
	s, err := projections.StateAsOf(context.Background(), h, "urn:rx:1", projections.AsOf{Time: t0.Add(30 * time.Minute)})
	if err != nil {
		t.Fatal(err)
	}
	if s.Revision != 1 || s.Status != domain.StatusApproved {
		t.Errorf("got rev %d %s, want rev 1 approved", s.Revision, s.Status)
	}
}

func TestViewJSON(t *testing.T) {
	requested := domain.Prescription{URN: "urn:rx:1", Status: domain.StatusRequested, PatientID: "pat-1", PrescriberID: "dr-1",
		Medication: domain.Medication{Name: "Amoxicillin", Quantity: 30}, RequestedAt: t0}
	b, err := json.Marshal(projections.ViewOf(requested))
	if err != nil {
		t.Fatal(err)
	}
	var m map[string]any
	if err := json.Unmarshal(b, &m); err != nil {
		t.Fatal(err)
	}
	for _, k := range []string{"urn", "status", "patientId", "prescriberId", "medication", "requestedAt"} {
		if _, ok := m[k]; !ok {
			t.Errorf("%s lacks %q", b, k)
		}
	}
	for _, k := range []string{"pharmacyId", "approvedBy", "dispensing", "approvedAt", "completedAt", "failedAt"} {
		if _, ok := m[k]; ok {
			t.Errorf("%s has unset %q", b, k)
		}
	}

	row := projections.Row{Prescription: requested, LastRevision: 0, LastPosition: 42, UpdatedAt: t0}
	b, err = json.Marshal(projections.RowViewOf(row))
	if err != nil {
		t.Fatal(err)
	}
	var rv map[string]any
	if err := json.Unmarshal(b, &rv); err != nil {
		t.Fatal(err)
	}
	if rv["urn"] != "urn:rx:1" || rv["lastPosition"] != 42.0 || rv["lastRevision"] != 0.0 || rv["updatedAt"] != t0.Format(time.RFC3339) {
		t.Errorf("row view %s", b)
	}
}

package events_test

import (
	"errors"
	"reflect"
	"testing"
	"time"

	"rxflow/domain"
	"rxflow/events"
)

var at = time.Date(2026, 11, 29, 10, 0, 0, 0, time.UTC)

func TestRoundTripEveryEvent(t *testing.T) {
	all := []domain.Event{
		domain.Requested{URN: "u", PatientID: "p", PrescriberID: "d", PharmacyID: "ph", Medication: domain.Medication{Name: "n", Code: "c", CodeSystem: "NDC", Strength: "s", Quantity: 3, Refills: 2}, At: at},
		domain.Approved{ApprovedBy: "d", At: at},
		domain.Rejected{RejectedBy: "d", Reason: "r", At: at},
		domain.ProcessingStarted{PharmacyID: "ph", At: at},
		domain.Dispensed{Dispensing: domain.Dispensing{By: "x", Quantity: 3, LotNumber: "L1"}, At: at},
		domain.Completed{At: at},
		domain.Failed{Reason: "r", ReasonCode: "c", At: at},
		domain.Refused{Command: domain.Approve, Code: domain.ReasonGuardFailed, Reason: "r", Guard: "approver_required", Status: domain.StatusRequested, At: at},
		domain.DeadlinePassed{Deadline: "approval-overdue", Status: domain.StatusRequested, Since: 3, DueAt: at.Add(-time.Minute), At: at},
	}
	names := map[string]bool{}
	for _, e := range all {
		name, data, err := events.Encode(e)
		if err != nil {
			t.Fatal(err)
		}
		names[name] = true
		back, err := events.Decode(name, events.SchemaVersion(name), data)
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if !reflect.DeepEqual(back, e) {
			t.Fatalf("%s round trip\n got %#v\nwant %#v", name, back, e)
		}
	}
	if len(names) != len(all) {
		t.Fatalf("%d distinct names for %d event kinds", len(names), len(all))
	}
}

// The stored form is a contract: a change here breaks every stored stream.
func TestStoredFormIsStable(t *testing.T) {
	name, data, err := events.Encode(domain.Approved{ApprovedBy: "dr-1", At: at})
	if err != nil {
		t.Fatal(err)
	}
	if want := `{"approvedBy":"dr-1","approvedAt":"2026-11-29T10:00:00Z"}`; name != "PrescriptionApproved" || string(data) != want {
		t.Fatalf("got %s %s, want PrescriptionApproved %s", name, data, want)
	}
	id := events.EventID("urn:rx:1", "cmd-1", 0).String()
	if id != events.EventID("urn:rx:1", "cmd-1", 0).String() || id == events.EventID("urn:rx:1", "cmd-1", 1).String() ||
		id == events.EventID("urn:rx:1", "cmd-2", 0).String() || id == events.EventID("urn:rx:2", "cmd-1", 0).String() {
		t.Fatal("event ids must be deterministic per (urn, command, index) and distinct otherwise")
	}
	// Pinned: changing the derivation would make retries of stored commands
	// look new to EventStoreDB's idempotent append.
	if id != "99095832-47b8-5f7e-8c5f-0ed3bfceb8ad" { // uuid5 by Python's uuid module
		t.Fatalf("EventID(urn:rx:1, cmd-1, 0) = %s, derivation changed", id)
	}
}

// PrescriptionFailed gained an optional reasonCode in version 1: events
// stored before it still decode, and an empty code is left out.
func TestFailedReasonCode(t *testing.T) {
	cases := []struct {
		name   string
		event  domain.Failed
		stored string
	}{
		{"with code", domain.Failed{Reason: "Pharmacy processing error", ReasonCode: "pharmacy_unavailable", At: at},
			`{"reason":"Pharmacy processing error","reasonCode":"pharmacy_unavailable","failedAt":"2026-11-29T10:00:00Z"}`},
		{"reported", domain.Failed{Reason: "out of stock", ReasonCode: domain.FailureReported, At: at},
			`{"reason":"out of stock","reasonCode":"reported","failedAt":"2026-11-29T10:00:00Z"}`},
		{"stored before codes", domain.Failed{Reason: "out of stock", At: at},
			`{"reason":"out of stock","failedAt":"2026-11-29T10:00:00Z"}`},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			name, data, err := events.Encode(tc.event)
			if err != nil || name != events.NameFailed || string(data) != tc.stored {
				t.Fatalf("Encode = %s %s %v, want %s", name, data, err, tc.stored)
			}
			back, err := events.Decode(events.NameFailed, events.SchemaVersion(events.NameFailed), []byte(tc.stored))
			if err != nil || !reflect.DeepEqual(back, tc.event) {
				t.Fatalf("Decode = %#v, %v; want %#v", back, err, tc.event)
			}
		})
	}
}

func TestDecodeErrors(t *testing.T) {
	cases := []struct {
		name    string
		version int
		data    string
		want    error
	}{
		{"PrescriptionTeleported", 1, `{}`, events.ErrUnknownEvent},
		{events.NameApproved, 2, `{}`, events.ErrUnsupportedVersion},
		{events.NameRequested, 3, `{}`, events.ErrUnsupportedVersion},
		{events.NameRequested, 0, `{}`, events.ErrUnsupportedVersion},
		{events.NameRequested, 1, `{"urn":`, events.ErrMalformedPayload},
		{events.NameRequested, 2, `{"urn":`, events.ErrMalformedPayload},
		{events.NameApproved, 1, `{"approvedBy":`, events.ErrMalformedPayload},
	}
	for _, tc := range cases {
		e, err := events.Decode(tc.name, tc.version, []byte(tc.data))
		if !errors.Is(err, tc.want) || e != nil {
			t.Errorf("Decode(%s v%d) = %v, %v; want %v", tc.name, tc.version, e, err, tc.want)
		}
	}
}

func TestStreamNames(t *testing.T) {
	if s := events.StreamName("urn:rx:1"); s != "prescription-urn:rx:1" {
		t.Fatalf("stream = %s", s)
	}
	if urn, ok := events.URNFromStream("prescription-urn:rx:1"); !ok || urn != "urn:rx:1" {
		t.Fatalf("URNFromStream = %q %v", urn, ok)
	}
	for _, s := range []string{"prescription-", "$all", "orders-1"} {
		if _, ok := events.URNFromStream(s); ok {
			t.Fatalf("%q accepted as a prescription stream", s)
		}
	}
}

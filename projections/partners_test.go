package projections_test

import (
	"encoding/json"
	"slices"
	"testing"
	"time"

	"rxflow/domain"
	"rxflow/events"
	"rxflow/projections"
)

// Each reaction's body is exactly the partner's wire contract
// (docs/partners.md), built from the stored change alone.
func TestReactionBodiesAreTheWireContract(t *testing.T) {
	at := time.Date(2025, 3, 1, 10, 0, 0, 0, time.UTC)
	c := projections.Change{
		Event: events.Recorded{Event: domain.Failed{Reason: "Pharmacy processing error", ReasonCode: "pharmacy_unavailable", At: at},
			Meta: events.Metadata{Diagnostic: "HTTP 503"}},
		After: domain.Prescription{URN: "urn:rx:1", PatientID: "pat-1", PrescriberID: "dr-1", PharmacyID: "ph-1", ApprovedBy: "dr-2",
			Medication: domain.Medication{Name: "Amoxicillin", Quantity: 21}, ApprovedAt: at, ProcessingAt: at.Add(time.Minute), FailedAt: at.Add(time.Hour)},
	}
	passed := c
	passed.Event = events.Recorded{Event: domain.DeadlinePassed{Deadline: "d", Status: domain.StatusDispensed, Since: 4, DueAt: at.Add(2 * time.Hour), At: at.Add(3 * time.Hour)}}
	passed.After.DispensedAt = at.Add(90 * time.Minute)
	passed.After.Dispensing.LotNumber = "L1"
	med := `"medication":{"name":"Amoxicillin","code":"","strength":"","quantity":21,"refills":0}`
	want := map[string]struct{ name, path, body string }{
		"prescriber-reminder": {"notifications", "/v1/notifications",
			`{"urn":"urn:rx:1","prescriberId":"dr-1","message":"A prescription awaits your approval."}`},
		"processing-overdue-alert": {"alerting", "/v1/alerts",
			`{"urn":"urn:rx:1","summary":"Prescription approved but not sent to the pharmacy in time.","detail":"approved at 2025-03-01T10:00:00Z by dr-2; deadline d was due at 2025-03-01T12:00:00Z","severity":"warning","at":"2025-03-01T13:00:00Z"}`},
		"return-to-stock-pharmacy": {"pharmacy", "/v1/returns",
			`{"urn":"urn:rx:1","patientId":"pat-1","pharmacyId":"ph-1",` + med + `,"lotNumber":"L1","dispensedAt":"2025-03-01T11:30:00Z","dueAt":"2025-03-01T12:00:00Z"}`},
		"return-to-stock-patient": {"notifications", "/v1/notifications",
			`{"urn":"urn:rx:1","patientId":"pat-1","message":"Your prescription was not picked up in time and has been returned to stock."}`},
		"insurance": {"insurance", "/v1/approvals",
			`{"urn":"urn:rx:1","patientId":"pat-1","prescriberId":"dr-1","approvedBy":"dr-2",` + med + `,"approvedAt":"2025-03-01T10:00:00Z"}`},
		"pharmacy": {"pharmacy", "/v1/prescriptions",
			`{"urn":"urn:rx:1","patientId":"pat-1","prescriberId":"dr-1","pharmacyId":"ph-1",` + med + `,"sentAt":"2025-03-01T10:01:00Z"}`},
		"patient-notification": {"notifications", "/v1/notifications",
			`{"urn":"urn:rx:1","patientId":"pat-1","message":"Your prescription is ready for pickup."}`},
		"support-alert": {"alerting", "/v1/alerts",
			`{"urn":"urn:rx:1","summary":"Prescription processing failed.","detail":"Pharmacy processing error (pharmacy_unavailable); diagnostic: HTTP 503","severity":"critical","at":"2025-03-01T11:00:00Z"}`},
	}
	if len(projections.Reactions) != len(want) {
		t.Fatalf("%d reactions, want %d", len(projections.Reactions), len(want))
	}
	for _, r := range projections.Reactions {
		w, ok := want[r.Name]
		if !ok {
			t.Fatalf("unexpected reaction %q", r.Name)
		}
		change := c
		if r.When.Deadline != "" {
			change = passed
		}
		body, err := json.Marshal(r.Body(change))
		if err != nil || r.Partner.Name != w.name || r.Partner.Path != w.path || string(body) != w.body {
			t.Errorf("%s: POST %s%s %s %v\nwant POST %s%s %s", r.Name, r.Partner.Name, r.Partner.Path, body, err, w.name, w.path, w.body)
		}
	}
}

// PartnersOf lists each partner once, in table order, and always Support.
func TestPartnersOf(t *testing.T) {
	names := func(ps []projections.Partner) []string {
		var n []string
		for _, p := range ps {
			n = append(n, p.Name)
		}
		return n
	}
	if got := names(projections.PartnersOf(projections.Reactions)); !slices.Equal(got, []string{"insurance", "pharmacy", "notifications", "alerting"}) {
		t.Errorf("PartnersOf(Reactions) = %v", got)
	}
	twice := append(slices.Clone(projections.Reactions[:1]), projections.Reactions[0])
	if got := names(projections.PartnersOf(twice)); !slices.Equal(got, []string{"insurance", "alerting"}) {
		t.Errorf("PartnersOf(insurance twice) = %v", got)
	}
}

package projections

import (
	"cmp"
	"fmt"
	"time"

	"rxflow/domain"
)

// Partner is an external party the reactors call: one endpoint that takes a
// JSON body with an idempotency key (docs/partners.md). How to reach it
// (base URL, token, timeouts, attempts) is the adapter's business, keyed by
// Name.
type Partner struct {
	Name  string // e.g. "insurance": keys its settings; the simulators serve it under /<Name>
	Path  string // below the base URL, e.g. "/v1/approvals"
	About string // what it is, for flag help, e.g. "insurance provider"
}

// Support is the support-alerting partner; its body is an Alert. The
// support-alert reaction calls it, and every reactor that parks an effect.
var Support = Partner{Name: "alerting", Path: "/v1/alerts", About: "support alerting"}

// Notifications is the notification service: its body is a PatientNotice
// or a PrescriberNotice.
var Notifications = Partner{Name: "notifications", Path: "/v1/notifications", About: "patient notification service"}

// PartnersOf lists the partners rs call, each once, in table order, then
// Support if none of them does: parked effects alert support whatever the
// table holds.
func PartnersOf(rs []Reaction) []Partner {
	var ps []Partner
	seen := map[string]bool{}
	add := func(p Partner) {
		if !seen[p.Name] {
			seen[p.Name] = true
			ps = append(ps, p)
		}
	}
	for _, r := range rs {
		add(r.Partner)
	}
	add(Support)
	return ps
}

// The request bodies below are the partners' wire contract
// (docs/partners.md). Each is built from the stored change alone, never
// from the clock, so that a redelivered event is the same call.

// Medication is the drug line of ApprovalNotice and PharmacyOrder. Unlike
// domain.Medication, every field is always sent.
type Medication struct {
	Name     string `json:"name"`
	Code     string `json:"code"`
	Strength string `json:"strength"`
	Quantity int    `json:"quantity"`
	Refills  int    `json:"refills"`
}

// ApprovalNotice tells the insurance provider a prescription was approved.
type ApprovalNotice struct {
	URN          string     `json:"urn"`
	PatientID    string     `json:"patientId"`
	PrescriberID string     `json:"prescriberId"`
	ApprovedBy   string     `json:"approvedBy"`
	Medication   Medication `json:"medication"`
	ApprovedAt   time.Time  `json:"approvedAt"`
}

// PharmacyOrder hands an approved prescription to the pharmacy.
type PharmacyOrder struct {
	URN          string     `json:"urn"`
	PatientID    string     `json:"patientId"`
	PrescriberID string     `json:"prescriberId"`
	PharmacyID   string     `json:"pharmacyId"`
	Medication   Medication `json:"medication"`
	SentAt       time.Time  `json:"sentAt"`
}

// PatientNotice is a message for the patient.
type PatientNotice struct {
	URN       string `json:"urn"`
	PatientID string `json:"patientId"`
	Message   string `json:"message"`
}

// PrescriberNotice is a message for the prescriber, through the
// notification service.
type PrescriberNotice struct {
	URN          string `json:"urn"`
	PrescriberID string `json:"prescriberId"`
	Message      string `json:"message"`
}

// ReturnToStock tells the pharmacy that a dispensed prescription was not
// picked up by its deadline and goes back to stock.
type ReturnToStock struct {
	URN         string     `json:"urn"`
	PatientID   string     `json:"patientId"`
	PharmacyID  string     `json:"pharmacyId"`
	Medication  Medication `json:"medication"`
	LotNumber   string     `json:"lotNumber"`
	DispensedAt time.Time  `json:"dispensedAt"`
	DueAt       time.Time  `json:"dueAt"` // when pickup was due
}

// The messages of the deadline reactions.
const (
	ApprovalReminder  = "A prescription awaits your approval."
	ReturnedToStock   = "Your prescription was not picked up in time and has been returned to stock."
	ProcessingOverdue = "Prescription approved but not sent to the pharmacy in time."
)

func medication(m domain.Medication) Medication {
	return Medication{Name: m.Name, Code: m.Code, Strength: m.Strength, Quantity: m.Quantity, Refills: m.Refills}
}

func approvalNotice(c Change) any {
	p := c.After
	return ApprovalNotice{URN: p.URN, PatientID: p.PatientID, PrescriberID: p.PrescriberID, ApprovedBy: p.ApprovedBy,
		Medication: medication(p.Medication), ApprovedAt: p.ApprovedAt}
}

func pharmacyOrder(c Change) any {
	p := c.After
	return PharmacyOrder{URN: p.URN, PatientID: p.PatientID, PrescriberID: p.PrescriberID, PharmacyID: p.PharmacyID,
		Medication: medication(p.Medication), SentAt: p.ProcessingAt}
}

func readyForPickup(c Change) any {
	return PatientNotice{URN: c.After.URN, PatientID: c.After.PatientID, Message: ReadyForPickup}
}

func failureAlert(c Change) any {
	return Alert{URN: c.After.URN, Summary: "Prescription processing failed.", Detail: failureDetail(c), Severity: "critical", At: c.After.FailedAt}
}

// failureDetail tells support why a prescription failed. Support is
// internal, so it gets the stored diagnostic (the error chain) as well.
func failureDetail(c Change) string {
	f, _ := c.Event.Event.(domain.Failed)
	d := fmt.Sprintf("%s (%s)", f.Reason, cmp.Or(f.ReasonCode, domain.FailureReported))
	if c.Event.Meta.Diagnostic != "" {
		d += "; diagnostic: " + c.Event.Meta.Diagnostic
	}
	return d
}

func deadlineOf(c Change) domain.DeadlinePassed {
	d, _ := c.Event.Event.(domain.DeadlinePassed)
	return d
}

func prescriberReminder(c Change) any {
	return PrescriberNotice{URN: c.After.URN, PrescriberID: c.After.PrescriberID, Message: ApprovalReminder}
}

func processingOverdueAlert(c Change) any {
	d := deadlineOf(c)
	return Alert{URN: c.After.URN, Summary: ProcessingOverdue, Severity: "warning", At: d.At,
		Detail: fmt.Sprintf("approved at %s by %s; deadline %s was due at %s", c.After.ApprovedAt.Format(time.RFC3339), c.After.ApprovedBy,
			d.Deadline, d.DueAt.Format(time.RFC3339))}
}

func returnToStock(c Change) any {
	p := c.After
	return ReturnToStock{URN: p.URN, PatientID: p.PatientID, PharmacyID: p.PharmacyID, Medication: medication(p.Medication),
		LotNumber: p.Dispensing.LotNumber, DispensedAt: p.DispensedAt, DueAt: deadlineOf(c).DueAt}
}

func returnedToStockNotice(c Change) any {
	return PatientNotice{URN: c.After.URN, PatientID: c.After.PatientID, Message: ReturnedToStock}
}

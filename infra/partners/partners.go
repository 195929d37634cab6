package partners

import (
	"context"
	"time"
)

// Partner endpoint paths, relative to each partner's BaseURL.
const (
	PathApprovals     = "/v1/approvals"
	PathPrescriptions = "/v1/prescriptions"
	PathNotifications = "/v1/notifications"
	PathAlerts        = "/v1/alerts"
)

// Support alert severities accepted by the alerting partner.
const (
	SeverityInfo     = "info"
	SeverityWarning  = "warning"
	SeverityCritical = "critical"
)

// ReadyForPickupMessage is the patient notice sent on Dispensed→Completed.
const ReadyForPickupMessage = "Your prescription is ready for pickup."

// Medication is the drug line shared by insurance and pharmacy payloads.
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

// SupportAlert raises an issue with the support team.
type SupportAlert struct {
	URN      string    `json:"urn"`
	Summary  string    `json:"summary"`
	Detail   string    `json:"detail"`
	Severity string    `json:"severity"`
	At       time.Time `json:"at"`
}

// Insurance is the insurance provider's client.
type Insurance struct{ c *Client }

// NewInsurance wraps a Client whose BaseURL points at the insurance provider.
func NewInsurance(c *Client) *Insurance { return &Insurance{c: c} }

// NotifyApproval posts n to /v1/approvals.
func (i *Insurance) NotifyApproval(ctx context.Context, key string, n ApprovalNotice) error {
	_, err := i.c.Post(ctx, PathApprovals, key, n)
	return err
}

// Pharmacy is the pharmacy's client.
type Pharmacy struct{ c *Client }

// NewPharmacy wraps a Client whose BaseURL points at the pharmacy.
func NewPharmacy(c *Client) *Pharmacy { return &Pharmacy{c: c} }

// SendPrescription posts o to /v1/prescriptions.
func (p *Pharmacy) SendPrescription(ctx context.Context, key string, o PharmacyOrder) error {
	_, err := p.c.Post(ctx, PathPrescriptions, key, o)
	return err
}

// Notifications is the patient-notification service's client.
type Notifications struct{ c *Client }

// NewNotifications wraps a Client whose BaseURL points at the notification service.
func NewNotifications(c *Client) *Notifications { return &Notifications{c: c} }

// NotifyPatient posts n to /v1/notifications.
func (n *Notifications) NotifyPatient(ctx context.Context, key string, notice PatientNotice) error {
	_, err := n.c.Post(ctx, PathNotifications, key, notice)
	return err
}

// Alerting is the support-alerting service's client.
type Alerting struct{ c *Client }

// NewAlerting wraps a Client whose BaseURL points at support alerting.
func NewAlerting(c *Client) *Alerting { return &Alerting{c: c} }

// AlertSupport posts a to /v1/alerts.
func (al *Alerting) AlertSupport(ctx context.Context, key string, a SupportAlert) error {
	_, err := al.c.Post(ctx, PathAlerts, key, a)
	return err
}

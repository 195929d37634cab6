package partners

import (
	"context"
	"errors"
	"fmt"
	"net/http"

	"rxflow/domain"
	"rxflow/projections"
)

// Endpoints holds the four partners' client configs.
type Endpoints struct {
	Insurance, Pharmacy, Notifications, Alerting Config
}

// Set implements projections.Partners over the four partner clients.
type Set struct {
	insurance     *Insurance
	pharmacy      *Pharmacy
	notifications *Notifications
	alerting      *Alerting
}

// NewSet builds the four clients; every config problem is reported at once.
func NewSet(e Endpoints, httpClient *http.Client) (*Set, error) {
	var errs []error
	client := func(name string, cfg Config) *Client {
		c, err := NewClient(cfg, httpClient)
		if err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", name, err))
		}
		return c
	}
	s := &Set{
		insurance:     NewInsurance(client("insurance", e.Insurance)),
		pharmacy:      NewPharmacy(client("pharmacy", e.Pharmacy)),
		notifications: NewNotifications(client("notifications", e.Notifications)),
		alerting:      NewAlerting(client("alerting", e.Alerting)),
	}
	return s, errors.Join(errs...)
}

func medication(m domain.Medication) Medication {
	return Medication{Name: m.Name, Code: m.Code, Strength: m.Strength, Quantity: m.Quantity, Refills: m.Refills}
}

// NotifyInsurance implements projections.Partners.
func (s *Set) NotifyInsurance(ctx context.Context, key string, p domain.Prescription) error {
	return outcome(s.insurance.NotifyApproval(ctx, key, ApprovalNotice{URN: p.URN, PatientID: p.PatientID, PrescriberID: p.PrescriberID,
		ApprovedBy: p.ApprovedBy, Medication: medication(p.Medication), ApprovedAt: p.ApprovedAt}))
}

// SendToPharmacy implements projections.Partners.
func (s *Set) SendToPharmacy(ctx context.Context, key string, p domain.Prescription) error {
	return outcome(s.pharmacy.SendPrescription(ctx, key, PharmacyOrder{URN: p.URN, PatientID: p.PatientID, PrescriberID: p.PrescriberID,
		PharmacyID: p.PharmacyID, Medication: medication(p.Medication), SentAt: p.ProcessingAt}))
}

// NotifyPatient implements projections.Partners.
func (s *Set) NotifyPatient(ctx context.Context, key string, p domain.Prescription, message string) error {
	return outcome(s.notifications.NotifyPatient(ctx, key, PatientNotice{URN: p.URN, PatientID: p.PatientID, Message: message}))
}

// AlertSupport implements projections.Partners.
func (s *Set) AlertSupport(ctx context.Context, key string, a projections.Alert) error {
	return outcome(s.alerting.AlertSupport(ctx, key, SupportAlert{URN: a.URN, Summary: a.Summary, Detail: a.Detail, Severity: a.Severity, At: a.At}))
}

// outcome maps a call's failure for the reactors: refused is
// projections.ErrPartnerRefused, still failing after every attempt is
// projections.ErrPartnerUnavailable (both are ErrPartnerFailed); a
// cancelled context stays transient.
func outcome(err error) error {
	switch {
	case errors.Is(err, ErrPermanent):
		return fmt.Errorf("%w: %w", projections.ErrPartnerRefused, err)
	case errors.Is(err, ErrExhausted):
		return fmt.Errorf("%w: %w", projections.ErrPartnerUnavailable, err)
	}
	return err
}

package events

import (
	"encoding/json"
	"fmt"
	"time"

	"rxflow/domain"
)

// medicationV1 is the stored shape of domain.Medication.
type medicationV1 struct {
	Name     string `json:"name"`
	Code     string `json:"code,omitempty"`
	Strength string `json:"strength,omitempty"`
	Quantity int    `json:"quantity"`
	Refills  int    `json:"refills"`
}

type requestedV1 struct {
	URN          string       `json:"urn"`
	PatientID    string       `json:"patientId"`
	PrescriberID string       `json:"prescriberId"`
	PharmacyID   string       `json:"pharmacyId,omitempty"`
	Medication   medicationV1 `json:"medication"`
	At           time.Time    `json:"requestedAt"`
}

type approvedV1 struct {
	ApprovedBy string    `json:"approvedBy"`
	At         time.Time `json:"approvedAt"`
}

type rejectedV1 struct {
	RejectedBy string    `json:"rejectedBy,omitempty"`
	Reason     string    `json:"reason"`
	At         time.Time `json:"rejectedAt"`
}

type processingStartedV1 struct {
	PharmacyID string    `json:"pharmacyId"`
	At         time.Time `json:"processingAt"`
}

type dispensedV1 struct {
	DispensedBy string    `json:"dispensedBy,omitempty"`
	Quantity    int       `json:"quantity,omitempty"`
	LotNumber   string    `json:"lotNumber,omitempty"`
	At          time.Time `json:"dispensedAt"`
}

type completedV1 struct {
	At time.Time `json:"completedAt"`
}

// failedV1 gained reasonCode without a version bump: it is optional, and
// events stored before it decode with an empty code.
type failedV1 struct {
	Reason     string    `json:"reason"`
	ReasonCode string    `json:"reasonCode,omitempty"`
	At         time.Time `json:"failedAt"`
}

type refusedV1 struct {
	Command string    `json:"command"`
	Code    string    `json:"code"`
	Reason  string    `json:"reason"`
	Guard   string    `json:"guard,omitempty"`
	Status  string    `json:"status"`
	At      time.Time `json:"refusedAt"`
}

// Encode returns the stable name and the JSON payload of e.
func Encode(e domain.Event) (name string, data []byte, err error) {
	var payload any
	switch e := e.(type) {
	case domain.Requested:
		m := e.Medication
		name, payload = NameRequested, requestedV1{URN: e.URN, PatientID: e.PatientID, PrescriberID: e.PrescriberID, PharmacyID: e.PharmacyID,
			Medication: medicationV1{Name: m.Name, Code: m.Code, Strength: m.Strength, Quantity: m.Quantity, Refills: m.Refills}, At: e.At}
	case domain.Approved:
		name, payload = NameApproved, approvedV1(e)
	case domain.Rejected:
		name, payload = NameRejected, rejectedV1(e)
	case domain.ProcessingStarted:
		name, payload = NameProcessingStarted, processingStartedV1(e)
	case domain.Dispensed:
		d := e.Dispensing
		name, payload = NameDispensed, dispensedV1{DispensedBy: d.By, Quantity: d.Quantity, LotNumber: d.LotNumber, At: e.At}
	case domain.Completed:
		name, payload = NameCompleted, completedV1(e)
	case domain.Failed:
		name, payload = NameFailed, failedV1(e)
	case domain.Refused:
		name, payload = NameCommandRefused, refusedV1{Command: string(e.Command), Code: string(e.Code), Reason: e.Reason, Guard: e.Guard, Status: string(e.Status), At: e.At}
	default:
		return "", nil, fmt.Errorf("%w: %T", ErrUnknownEvent, e)
	}
	data, err = json.Marshal(payload)
	return name, data, err
}

// Decode turns a stored payload back into its domain event.
func Decode(name string, version int, data []byte) (domain.Event, error) {
	e, err := decode(name, version, data)
	if err != nil {
		return nil, err
	}
	return e, nil
}

func decode(name string, version int, data []byte) (domain.Event, error) {
	if version != SchemaVersion {
		return nil, fmt.Errorf("%w: %s v%d", ErrUnsupportedVersion, name, version)
	}
	switch name {
	case NameRequested:
		p, err := unmarshal[requestedV1](name, data)
		m := p.Medication
		return domain.Requested{URN: p.URN, PatientID: p.PatientID, PrescriberID: p.PrescriberID, PharmacyID: p.PharmacyID,
			Medication: domain.Medication{Name: m.Name, Code: m.Code, Strength: m.Strength, Quantity: m.Quantity, Refills: m.Refills}, At: p.At}, err
	case NameApproved:
		p, err := unmarshal[approvedV1](name, data)
		return domain.Approved(p), err
	case NameRejected:
		p, err := unmarshal[rejectedV1](name, data)
		return domain.Rejected(p), err
	case NameProcessingStarted:
		p, err := unmarshal[processingStartedV1](name, data)
		return domain.ProcessingStarted(p), err
	case NameDispensed:
		p, err := unmarshal[dispensedV1](name, data)
		return domain.Dispensed{Dispensing: domain.Dispensing{By: p.DispensedBy, Quantity: p.Quantity, LotNumber: p.LotNumber}, At: p.At}, err
	case NameCompleted:
		p, err := unmarshal[completedV1](name, data)
		return domain.Completed(p), err
	case NameFailed:
		p, err := unmarshal[failedV1](name, data)
		return domain.Failed(p), err
	case NameCommandRefused:
		p, err := unmarshal[refusedV1](name, data)
		return domain.Refused{Command: domain.CommandType(p.Command), Code: domain.ReasonCode(p.Code), Reason: p.Reason, Guard: p.Guard,
			Status: domain.Status(p.Status), At: p.At}, err
	}
	return nil, fmt.Errorf("%w: %q", ErrUnknownEvent, name)
}

func unmarshal[T any](name string, data []byte) (T, error) {
	var p T
	if err := json.Unmarshal(data, &p); err != nil {
		return p, fmt.Errorf("%w: %s: %v", ErrMalformedPayload, name, err)
	}
	return p, nil
}

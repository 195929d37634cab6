package events

import (
	"fmt"
	"time"

	json "github.com/go-json-experiment/json/v1" // encoding/json's behaviour on the faster v2 engine

	"rxflow/domain"
)

// medicationV1 is the stored shape of domain.Medication in
// PrescriptionRequested v1. Frozen: only the v1→v2 upcaster reads it.
type medicationV1 struct {
	Name     string `json:"name"`
	Code     string `json:"code,omitempty"`
	Strength string `json:"strength,omitempty"`
	Quantity int    `json:"quantity"`
	Refills  int    `json:"refills"`
}

// requestedV1 is PrescriptionRequested v1. Frozen, like medicationV1.
type requestedV1 struct {
	URN          string       `json:"urn"`
	PatientID    string       `json:"patientId"`
	PrescriberID string       `json:"prescriberId"`
	PharmacyID   string       `json:"pharmacyId,omitempty"`
	Medication   medicationV1 `json:"medication"`
	At           time.Time    `json:"requestedAt"`
}

// medicationV2 is the stored shape of domain.Medication since
// PrescriptionRequested v2: it gained codeSystem.
type medicationV2 struct {
	Name       string `json:"name"`
	Code       string `json:"code,omitempty"`
	CodeSystem string `json:"codeSystem"`
	Strength   string `json:"strength,omitempty"`
	Quantity   int    `json:"quantity"`
	Refills    int    `json:"refills"`
}

// requestedV2 is PrescriptionRequested v2, the current version.
type requestedV2 struct {
	URN          string       `json:"urn"`
	PatientID    string       `json:"patientId"`
	PrescriberID string       `json:"prescriberId"`
	PharmacyID   string       `json:"pharmacyId,omitempty"`
	Medication   medicationV2 `json:"medication"`
	At           time.Time    `json:"requestedAt"`
}

// requestedV1ToV2 adds the code system that a v1 medication's code shows:
// ATC for a letter, two digits, two letters and two digits (J01CA04),
// RxNorm for all digits, else "unknown". The rule is frozen here, apart
// from domain.CodeSystemOf, so that reading old events never changes.
func requestedV1ToV2(p requestedV1) requestedV2 {
	m := p.Medication
	return requestedV2{URN: p.URN, PatientID: p.PatientID, PrescriberID: p.PrescriberID, PharmacyID: p.PharmacyID, At: p.At,
		Medication: medicationV2{Name: m.Name, Code: m.Code, CodeSystem: codeSystemOfV1(m.Code), Strength: m.Strength, Quantity: m.Quantity, Refills: m.Refills}}
}

func codeSystemOfV1(code string) string {
	isDigit := func(c byte) bool { return '0' <= c && c <= '9' }
	isUpper := func(c byte) bool { return 'A' <= c && c <= 'Z' }
	if len(code) == 7 && isUpper(code[0]) && isDigit(code[1]) && isDigit(code[2]) && isUpper(code[3]) && isUpper(code[4]) && isDigit(code[5]) && isDigit(code[6]) {
		return "ATC"
	}
	digits := code != ""
	for i := range len(code) {
		digits = digits && isDigit(code[i])
	}
	if digits {
		return "RxNorm"
	}
	return "unknown"
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

type deadlinePassedV1 struct {
	Deadline string    `json:"deadline"`
	Status   string    `json:"status"`
	Since    int       `json:"since"` // the stream revision that entered status
	DueAt    time.Time `json:"dueAt"`
	At       time.Time `json:"passedAt"`
}

// Encode returns the stable name and the JSON payload of e, at the
// event's current version (SchemaVersion(name)).
func Encode(e domain.Event) (name string, data []byte, err error) {
	var payload any
	switch e := e.(type) {
	case domain.Requested:
		m := e.Medication
		name, payload = NameRequested, requestedV2{URN: e.URN, PatientID: e.PatientID, PrescriberID: e.PrescriberID, PharmacyID: e.PharmacyID,
			Medication: medicationV2(m), At: e.At}
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
	case domain.DeadlinePassed:
		name, payload = NameDeadlinePassed, deadlinePassedV1{Deadline: e.Deadline, Status: string(e.Status), Since: e.Since, DueAt: e.DueAt, At: e.At}
	default:
		return "", nil, fmt.Errorf("%w: %T", ErrUnknownEvent, e)
	}
	data, err = json.Marshal(payload)
	return name, data, err
}

// Decode turns a stored payload, of the given schema version, back into its
// domain event: an older version is first brought to the current one
// through Upcasters, so that callers only ever see current events. A
// version newer than this code knows is ErrUnsupportedVersion.
func Decode(name string, version int, data []byte) (domain.Event, error) {
	e, _, err := Read(name, version, data)
	return e, err
}

// Read is Decode that also returns the payload at the current version: data
// itself when it is current, else the upcast JSON.
func Read(name string, version int, data []byte) (domain.Event, []byte, error) {
	current, err := Upcasters.Upcast(name, version, data)
	if err != nil {
		return nil, nil, err
	}
	e, err := decode(name, current)
	if err != nil {
		return nil, nil, err
	}
	return e, current, nil
}

// decode reads a payload at its event's current version.
func decode(name string, data []byte) (domain.Event, error) {
	switch name {
	case NameRequested:
		p, err := unmarshal[requestedV2](name, data)
		return domain.Requested{URN: p.URN, PatientID: p.PatientID, PrescriberID: p.PrescriberID, PharmacyID: p.PharmacyID,
			Medication: domain.Medication(p.Medication), At: p.At}, err
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
	case NameDeadlinePassed:
		p, err := unmarshal[deadlinePassedV1](name, data)
		return domain.DeadlinePassed{Deadline: p.Deadline, Status: domain.Status(p.Status), Since: p.Since, DueAt: p.DueAt, At: p.At}, err
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

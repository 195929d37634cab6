package domain

import (
	"strings"
	"time"
)

// Medication is what the prescriber ordered.
type Medication struct {
	Name       string `json:"name"`
	Code       string `json:"code,omitempty"`
	CodeSystem string `json:"codeSystem,omitempty"` // the vocabulary of Code, e.g. CodeSystemATC; see CodeSystemOf
	Strength   string `json:"strength,omitempty"`
	Quantity   int    `json:"quantity"`
	Refills    int    `json:"refills"`
}

// Code systems that rxflow recognises from a code's shape. Others may be
// named by the prescriber: CodeSystem is free text.
const (
	CodeSystemATC     = "ATC"     // WHO Anatomical Therapeutic Chemical, e.g. J01CA04
	CodeSystemRxNorm  = "RxNorm"  // US NLM RxNorm concept ids, all digits, e.g. 314076
	CodeSystemUnknown = "unknown" // no code, or a code of no recognisable shape
)

// CodeSystemOf names the code system of code from its shape: an ATC code is
// a letter, two digits, two letters and two digits (J01CA04); an RxNorm
// code is all digits. Anything else, and no code, is CodeSystemUnknown.
func CodeSystemOf(code string) string {
	switch {
	case shaped(code, "LDDLLDD"):
		return CodeSystemATC
	case code != "" && shaped(code, strings.Repeat("D", len(code))):
		return CodeSystemRxNorm
	}
	return CodeSystemUnknown
}

// shaped reports whether s matches pattern, where L stands for an ASCII
// capital letter and D for an ASCII digit.
func shaped(s, pattern string) bool {
	if len(s) != len(pattern) {
		return false
	}
	for i := range len(s) {
		c := s[i]
		switch pattern[i] {
		case 'L':
			if c < 'A' || c > 'Z' {
				return false
			}
		case 'D':
			if c < '0' || c > '9' {
				return false
			}
		}
	}
	return true
}

// Dispensing records what the pharmacy handed out.
type Dispensing struct {
	By        string `json:"by,omitempty"`
	Quantity  int    `json:"quantity,omitempty"`
	LotNumber string `json:"lotNumber,omitempty"`
}

// Prescription is the aggregate's state, rebuilt by folding its events with
// Evolve. It is a value: only Evolve produces a new one.
type Prescription struct {
	URN         string
	Status      Status
	Revision    int       // number of events folded in
	StatusSince int       // stream revision (from 0) of the event that entered Status
	StatusAt    time.Time // when the event that entered Status occurred
	// PassedDeadlines are the deadlines that passed since the prescription
	// entered Status (at StatusSince); entering a state clears it.
	PassedDeadlines DeadlineSet
	PatientID       string
	PrescriberID    string
	PharmacyID      string
	Medication      Medication

	ApprovedBy      string
	RejectedBy      string
	RejectionReason string
	FailureReason   string
	Dispensing      Dispensing

	RequestedAt  time.Time
	ApprovedAt   time.Time
	RejectedAt   time.Time
	ProcessingAt time.Time
	DispensedAt  time.Time
	CompletedAt  time.Time
	FailedAt     time.Time
}

// Command is a decoded request to move a prescription through the workflow.
// Which fields matter depends on Type; the table's guards say which are needed.
type Command struct {
	Type         CommandType
	URN          string
	Actor        string
	PatientID    string
	PrescriberID string
	PharmacyID   string
	Medication   Medication
	ApprovedBy   string
	Reason       string
	ReasonCode   string // a stable code for Reason, such as "pharmacy_unavailable"; optional
	Dispensing   Dispensing
	// RecordDeadline's: the deadline's name, the revision that started
	// its state, and when it fell due.
	Deadline string
	Since    int
	DueAt    time.Time
}

// Event is a fact that happened to a prescription. The set is closed: the
// implementations below are the only ones.
type Event interface {
	// Cause is the command type whose transition this event records; ""
	// for Refused, which records none.
	Cause() CommandType
	// OccurredAt is when the decision was taken.
	OccurredAt() time.Time
}

// Requested records the creation of a prescription.
type Requested struct {
	URN          string
	PatientID    string
	PrescriberID string
	PharmacyID   string
	Medication   Medication
	At           time.Time
}

// Approved records the prescriber's approval.
type Approved struct {
	ApprovedBy string
	At         time.Time
}

// Rejected records the prescriber's rejection (the seed's prescription.reject).
type Rejected struct {
	RejectedBy string
	Reason     string
	At         time.Time
}

// ProcessingStarted records that the prescription went to the pharmacy.
type ProcessingStarted struct {
	PharmacyID string
	At         time.Time
}

// Dispensed records that the medication was handed out.
type Dispensed struct {
	Dispensing Dispensing
	At         time.Time
}

// Completed records that the patient received the medication.
type Completed struct {
	At time.Time
}

// Failed records that dispensing failed. Reason is human text and
// ReasonCode a stable code, both fit for outside consumers; internal detail
// (an error chain) stays in the stored event's metadata.
type Failed struct {
	Reason     string
	ReasonCode string // the command's ReasonCode, or FailureReported
	At         time.Time
}

// FailureReported is the reason code of a failure whose command gave none:
// someone reported it, with Reason as their words.
const FailureReported = "reported"

// Refused records a command the workflow refused. It changes nothing but
// keeps the refusal in the audit trail, so that a redelivered command gets
// the same answer.
type Refused struct {
	Command CommandType
	Code    ReasonCode
	Reason  string
	Guard   string
	Status  Status // the status the command was refused in
	At      time.Time
}

// RefusalOf records refusal r, decided at at.
func RefusalOf(r *Refusal, at time.Time) Refused {
	return Refused{Command: r.Command, Code: r.Code, Reason: r.Reason, Guard: r.Guard, Status: r.Status, At: at}
}

// Refusal returns the refusal it recorded.
func (e Refused) Refusal() *Refusal {
	return &Refusal{Code: e.Code, Reason: e.Reason, Guard: e.Guard, Status: e.Status, Command: e.Command}
}

func (Refused) Cause() CommandType           { return "" } // no transition
func (Requested) Cause() CommandType         { return Request }
func (Approved) Cause() CommandType          { return Approve }
func (Rejected) Cause() CommandType          { return Reject }
func (ProcessingStarted) Cause() CommandType { return Process }
func (Dispensed) Cause() CommandType         { return Dispense }
func (Completed) Cause() CommandType         { return Complete }
func (Failed) Cause() CommandType            { return Fail }

func (e Requested) OccurredAt() time.Time         { return e.At }
func (e Approved) OccurredAt() time.Time          { return e.At }
func (e Rejected) OccurredAt() time.Time          { return e.At }
func (e ProcessingStarted) OccurredAt() time.Time { return e.At }
func (e Dispensed) OccurredAt() time.Time         { return e.At }
func (e Completed) OccurredAt() time.Time         { return e.At }
func (e Failed) OccurredAt() time.Time            { return e.At }
func (e Refused) OccurredAt() time.Time           { return e.At }

package domain

import "time"

// Medication is what the prescriber ordered.
type Medication struct {
	Name     string `json:"name"`
	Code     string `json:"code,omitempty"`
	Strength string `json:"strength,omitempty"`
	Quantity int    `json:"quantity"`
	Refills  int    `json:"refills"`
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
	URN          string
	Status       Status
	Revision     int // number of events folded in
	PatientID    string
	PrescriberID string
	PharmacyID   string
	Medication   Medication

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
	Dispensing   Dispensing
}

// Event is a fact that happened to a prescription. The set is closed: the
// implementations below are the only ones.
type Event interface {
	// Cause is the command type whose transition this event records.
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

// Rejected records the prescriber's refusal.
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

// Failed records that dispensing failed.
type Failed struct {
	Reason string
	At     time.Time
}

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

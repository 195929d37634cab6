package domain

import "fmt"

// ReasonCode classifies why a command was refused. Codes are stable: clients
// and the rejections topic match on them.
type ReasonCode string

// Refusal reason codes.
const (
	ReasonInvalidTransition   ReasonCode = "invalid_transition"
	ReasonFinalState          ReasonCode = "final_state"
	ReasonGuardFailed         ReasonCode = "guard_failed"
	ReasonUnknownPrescription ReasonCode = "unknown_prescription"
	ReasonDuplicateRequest    ReasonCode = "duplicate_request"
	ReasonUnknownCommand      ReasonCode = "unknown_event"
	ReasonURNMismatch         ReasonCode = "urn_mismatch"
)

// Refusal is a typed refusal of a command. Match it with errors.As.
type Refusal struct {
	Code    ReasonCode
	Reason  string
	Status  Status // the prescription's status when the command was refused
	Command CommandType
	Guard   string // the failed guard, for ReasonGuardFailed
}

func (r *Refusal) Error() string {
	return fmt.Sprintf("%s refused (%s): %s", r.Command, r.Code, r.Reason)
}

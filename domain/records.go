package domain

import "time"

// The events the workflow table's transitions record, and how each is built
// from the prescription, the command (already checked by the guards) and
// the decision time.
var (
	// A medication without a code system gets the one its code's shape shows.
	recordRequested = Recorder{Event: "Requested", Build: func(_ Prescription, c Command, now time.Time) Event {
		m := c.Medication
		if m.CodeSystem == "" {
			m.CodeSystem = CodeSystemOf(m.Code)
		}
		return Requested{URN: c.URN, PatientID: c.PatientID, PrescriberID: c.PrescriberID, PharmacyID: c.PharmacyID, Medication: m, At: now}
	}}
	recordApproved = Recorder{Event: "Approved", Build: func(_ Prescription, c Command, now time.Time) Event {
		return Approved{ApprovedBy: approver(c), At: now}
	}}
	recordRejected = Recorder{Event: "Rejected", Build: func(_ Prescription, c Command, now time.Time) Event {
		return Rejected{RejectedBy: c.Actor, Reason: c.Reason, At: now}
	}}
	// The pharmacy of the command, else the one named at the request.
	recordProcessingStarted = Recorder{Event: "ProcessingStarted", Build: func(p Prescription, c Command, now time.Time) Event {
		pharmacy := c.PharmacyID
		if pharmacy == "" {
			pharmacy = p.PharmacyID
		}
		return ProcessingStarted{PharmacyID: pharmacy, At: now}
	}}
	recordDispensed = Recorder{Event: "Dispensed", Build: func(_ Prescription, c Command, now time.Time) Event {
		return Dispensed{Dispensing: c.Dispensing, At: now}
	}}
	recordCompleted = Recorder{Event: "Completed", Build: func(_ Prescription, _ Command, now time.Time) Event {
		return Completed{At: now}
	}}
	// The command's reason code, else FailureReported.
	recordFailed = Recorder{Event: "Failed", Build: func(_ Prescription, c Command, now time.Time) Event {
		code := c.ReasonCode
		if code == "" {
			code = FailureReported
		}
		return Failed{Reason: c.Reason, ReasonCode: code, At: now}
	}}
)

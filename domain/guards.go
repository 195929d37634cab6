package domain

// The guards of the workflow table. Beyond the seed's rules:
//   - Request also needs a positive quantity and non-negative refills;
//   - Dispense may report the quantity handed out, which must not exceed the
//     quantity prescribed;
//   - Complete needs nothing beyond being in Dispensed.
var (
	needPatient = Guard{Name: "patient_required", Check: func(_ Prescription, c Command) (string, bool) {
		return "patientId is required", c.PatientID != ""
	}}
	needPrescriber = Guard{Name: "prescriber_required", Check: func(_ Prescription, c Command) (string, bool) {
		return "prescriberId is required", c.PrescriberID != ""
	}}
	needMedication = Guard{Name: "medication_required", Check: func(_ Prescription, c Command) (string, bool) {
		m := c.Medication
		switch {
		case m.Name == "":
			return "medication.name is required", false
		case m.Quantity <= 0:
			return "medication.quantity must be positive", false
		case m.Refills < 0:
			return "medication.refills must not be negative", false
		}
		return "", true
	}}
	needApprover = Guard{Name: "approver_required", Check: func(_ Prescription, c Command) (string, bool) {
		return "approvedBy (or the actor) is required", approver(c) != ""
	}}
	needReason = Guard{Name: "reason_required", Check: func(_ Prescription, c Command) (string, bool) {
		return "reason is required", c.Reason != ""
	}}
	needPharmacy = Guard{Name: "pharmacy_required", Check: func(p Prescription, c Command) (string, bool) {
		return "pharmacyId is required when the prescription has none", c.PharmacyID != "" || p.PharmacyID != ""
	}}
	dispenseWithinPrescribed = Guard{Name: "quantity_within_prescribed", Check: func(p Prescription, c Command) (string, bool) {
		return "dispensed quantity exceeds the prescribed quantity", c.Dispensing.Quantity >= 0 && c.Dispensing.Quantity <= p.Medication.Quantity
	}}
)

// approver is who approves: the payload's approvedBy, else the actor.
func approver(c Command) string {
	if c.ApprovedBy != "" {
		return c.ApprovedBy
	}
	return c.Actor
}

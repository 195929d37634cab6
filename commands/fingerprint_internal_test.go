package commands

import (
	"testing"
	"time"
	"unicode/utf8"

	"github.com/go-json-experiment/json"

	"rxflow/domain"
)

// fingerprintV1Form is the fp1 canonical form as JSON v2 encodes it by
// reflection: the reference that FingerprintOf's hand-written encoding
// must match byte for byte.
type fingerprintV1Form struct {
	Type         string    `json:"type"`
	URN          string    `json:"urn"`
	Actor        string    `json:"actor,omitzero"`
	PatientID    string    `json:"patientId,omitzero"`
	PrescriberID string    `json:"prescriberId,omitzero"`
	PharmacyID   string    `json:"pharmacyId,omitzero"`
	MedName      string    `json:"medicationName,omitzero"`
	MedCode      string    `json:"medicationCode,omitzero"`
	MedCodeSys   string    `json:"medicationCodeSystem,omitzero"`
	MedStrength  string    `json:"medicationStrength,omitzero"`
	MedQuantity  int       `json:"medicationQuantity,omitzero"`
	MedRefills   int       `json:"medicationRefills,omitzero"`
	ApprovedBy   string    `json:"approvedBy,omitzero"`
	Reason       string    `json:"reason,omitzero"`
	ReasonCode   string    `json:"reasonCode,omitzero"`
	DispensedBy  string    `json:"dispensedBy,omitzero"`
	Quantity     int       `json:"quantity,omitzero"`
	LotNumber    string    `json:"lotNumber,omitzero"`
	Deadline     string    `json:"deadline,omitzero"`
	Since        int       `json:"since,omitzero"`
	DueAt        time.Time `json:"dueAt,omitzero"`
}

// referenceFingerprint is FingerprintOf by reflection; ok is false for a
// command JSON v2 cannot encode (a time outside years 0–9999).
func referenceFingerprint(t *testing.T, c domain.Command) (Fingerprint, bool) {
	m, d := c.Medication, c.Dispensing
	b, err := json.Marshal(fingerprintV1Form{
		Type: string(c.Type), URN: c.URN, Actor: c.Actor, PatientID: c.PatientID, PrescriberID: c.PrescriberID, PharmacyID: c.PharmacyID,
		MedName: m.Name, MedCode: m.Code, MedCodeSys: m.CodeSystem, MedStrength: m.Strength, MedQuantity: m.Quantity, MedRefills: m.Refills,
		ApprovedBy: c.ApprovedBy, Reason: c.Reason, ReasonCode: c.ReasonCode, DispensedBy: d.By, Quantity: d.Quantity, LotNumber: d.LotNumber,
		Deadline: c.Deadline, Since: c.Since, DueAt: c.DueAt,
	}, json.Deterministic(true))
	if err != nil {
		return "", false
	}
	return Fingerprint(fingerprintV1Prefix + digest(b)), true
}

func FuzzFingerprintMatchesReflection(f *testing.F) {
	f.Add("prescription.request", "urn:rx:1", "Dr A", "p\"1", "<x>&", "\u2028", "Amox\\icillin", "", 3, -1, "lot\x01", 0, int64(0), 0)
	f.Add("prescription.dispense", "", "", "", "", "", "", "é", 0, 0, "", 1<<40, int64(1764556800123456789), 3600)
	f.Add("prescription.request", "urn:rx:2", "a b", "p", "q", "r", "Ibuprofen", "code", 1, 2, "lot", 5, int64(1764556800000000000), -1)
	f.Fuzz(func(t *testing.T, typ, urn, actor, patient, prescriber, pharmacy, med, reason string, qty, refills int, lot string, dq int, due int64, zone int) {
		c := domain.Command{Type: domain.CommandType(typ), URN: urn, Actor: actor, PatientID: patient, PrescriberID: prescriber, PharmacyID: pharmacy,
			Medication: domain.Medication{Name: med, Code: reason, CodeSystem: lot, Strength: patient, Quantity: qty, Refills: refills},
			ApprovedBy: actor, Reason: reason, ReasonCode: lot, Dispensing: domain.Dispensing{By: pharmacy, Quantity: dq, LotNumber: lot},
			Deadline: med, Since: refills}
		if due != 0 {
			c.DueAt = time.Unix(0, due).In(time.FixedZone("", zone%86400))
		}
		if !validUTF8(typ, urn, actor, patient, prescriber, pharmacy, med, reason, lot) {
			return // Decode refuses such commands; JSON v2 refuses to encode them
		}
		want, ok := referenceFingerprint(t, c)
		if !ok {
			return
		}
		if got := FingerprintOf(c); got != want {
			t.Fatalf("FingerprintOf(%+v) = %s, reflection gives %s", c, got, want)
		}
	})
}

func validUTF8(ss ...string) bool {
	for _, s := range ss {
		if !utf8.ValidString(s) {
			return false
		}
	}
	return true
}

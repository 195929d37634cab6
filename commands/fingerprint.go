package commands

import (
	"crypto/sha256"
	"encoding/hex"
	stdjson "encoding/json"
	"strings"
	"time"

	"github.com/go-json-experiment/json"

	"rxflow/domain"
)

// Fingerprint identifies what a command asks for, not how it was framed:
// "fp1:" and 32 hex digits. A stored fingerprint without a version prefix
// was written before fingerprints were versioned (see Matches).
type Fingerprint string

// fingerprintV1 is the canonical form behind "fp1:" fingerprints. Its member
// names and order are fixed and empty members are omitted, so a field added
// later leaves every earlier command's fingerprint as it was. Changing this
// form means a new version prefix, with Matches still knowing this one.
type fingerprintV1 struct {
	Type         string `json:"type"`
	URN          string `json:"urn"`
	Actor        string `json:"actor,omitzero"`
	PatientID    string `json:"patientId,omitzero"`
	PrescriberID string `json:"prescriberId,omitzero"`
	PharmacyID   string `json:"pharmacyId,omitzero"`
	MedName      string `json:"medicationName,omitzero"`
	MedCode      string `json:"medicationCode,omitzero"`
	MedCodeSys   string `json:"medicationCodeSystem,omitzero"` // added with PrescriptionRequested v2; omitted when absent, so earlier fingerprints are unchanged
	MedStrength  string `json:"medicationStrength,omitzero"`
	MedQuantity  int    `json:"medicationQuantity,omitzero"`
	MedRefills   int    `json:"medicationRefills,omitzero"`
	ApprovedBy   string `json:"approvedBy,omitzero"`
	Reason       string `json:"reason,omitzero"`
	ReasonCode   string `json:"reasonCode,omitzero"`
	DispensedBy  string `json:"dispensedBy,omitzero"`
	Quantity     int    `json:"quantity,omitzero"`
	LotNumber    string `json:"lotNumber,omitzero"`
	// prescription.deadline's, added after fp1 shipped: omitted when absent
	Deadline string    `json:"deadline,omitzero"`
	Since    int       `json:"since,omitzero"`
	DueAt    time.Time `json:"dueAt,omitzero"`
}

const fingerprintV1Prefix = "fp1:"

// FingerprintOf returns the current fingerprint of c.
func FingerprintOf(c domain.Command) Fingerprint {
	m, d := c.Medication, c.Dispensing
	b, _ := json.Marshal(fingerprintV1{ // strings and ints always marshal
		Type: string(c.Type), URN: c.URN, Actor: c.Actor, PatientID: c.PatientID, PrescriberID: c.PrescriberID, PharmacyID: c.PharmacyID,
		MedName: m.Name, MedCode: m.Code, MedCodeSys: m.CodeSystem, MedStrength: m.Strength, MedQuantity: m.Quantity, MedRefills: m.Refills,
		ApprovedBy: c.ApprovedBy, Reason: c.Reason, ReasonCode: c.ReasonCode, DispensedBy: d.By, Quantity: d.Quantity, LotNumber: d.LotNumber,
		Deadline: c.Deadline, Since: c.Since, DueAt: c.DueAt,
	}, json.Deterministic(true))
	return Fingerprint(fingerprintV1Prefix + digest(b))
}

// Matches reports whether stored, a fingerprint written by this or an
// earlier version, is the fingerprint of c.
func (stored Fingerprint) Matches(c domain.Command) bool {
	if strings.HasPrefix(string(stored), fingerprintV1Prefix) {
		return stored == FingerprintOf(c)
	}
	return string(stored) == legacyFingerprint(c)
}

// legacyFingerprint is the unversioned fingerprint written before fp1: the
// hash of encoding/json's form of the command struct as it was then. The
// struct is frozen here so that it never changes again.
func legacyFingerprint(c domain.Command) string {
	if c.ReasonCode != "" || c.Medication.CodeSystem != "" || c.Type == domain.RecordDeadline {
		return "" // that version knew no reason code, no code system and no deadline
	}
	type medication struct {
		Name     string `json:"name"`
		Code     string `json:"code,omitempty"`
		Strength string `json:"strength,omitempty"`
		Quantity int    `json:"quantity"`
		Refills  int    `json:"refills"`
	}
	type dispensing struct {
		By        string `json:"by,omitempty"`
		Quantity  int    `json:"quantity,omitempty"`
		LotNumber string `json:"lotNumber,omitempty"`
	}
	type command struct {
		Type                                            string
		URN, Actor, PatientID, PrescriberID, PharmacyID string
		Medication                                      medication
		ApprovedBy, Reason                              string
		Dispensing                                      dispensing
	}
	m, d := c.Medication, c.Dispensing
	b, _ := stdjson.Marshal(command{Type: string(c.Type), URN: c.URN, Actor: c.Actor, PatientID: c.PatientID, PrescriberID: c.PrescriberID,
		PharmacyID: c.PharmacyID,
		Medication: medication{Name: m.Name, Code: m.Code, Strength: m.Strength, Quantity: m.Quantity, Refills: m.Refills}, ApprovedBy: c.ApprovedBy, Reason: c.Reason, Dispensing: dispensing(d)})
	return digest(b)
}

func digest(b []byte) string {
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:16])
}

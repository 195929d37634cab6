package commands

import (
	"crypto/sha256"
	"encoding/hex"
	stdjson "encoding/json"
	"strconv"
	"strings"
	"time"

	"github.com/go-json-experiment/json/jsontext"

	"rxflow/domain"
)

// Fingerprint identifies what a command asks for, not how it was framed:
// "fp1:" and 32 hex digits. A stored fingerprint without a version prefix
// was written before fingerprints were versioned (see Matches).
type Fingerprint string

// The canonical form behind "fp1:" fingerprints is one JSON object with
// these members, in this order, each omitted when empty or zero (JSON v2's
// encoding of a struct with omitzero members), so a field added later leaves
// every earlier command's fingerprint as it was. Changing this form means a
// new version prefix, with Matches still knowing this one. It is written
// here by hand, not by reflection: it is on the path of every command.
// medicationCodeSystem was added with PrescriptionRequested v2, and
// deadline, since and dueAt with prescription.deadline; omitted when absent,
// earlier fingerprints are unchanged. dueAt is RFC 3339 with nanoseconds in
// the time's own offset, as JSON v2 writes a time.Time.

const fingerprintV1Prefix = "fp1:"

// FingerprintOf returns the current fingerprint of c.
func FingerprintOf(c domain.Command) Fingerprint {
	m, d := c.Medication, c.Dispensing
	b := make([]byte, 0, 256)
	b = append(b, '{')
	b = appendMember(b, "type", string(c.Type), true)
	b = appendMember(b, "urn", c.URN, true)
	for _, f := range [...]struct{ name, value string }{
		{"actor", c.Actor}, {"patientId", c.PatientID}, {"prescriberId", c.PrescriberID}, {"pharmacyId", c.PharmacyID},
		{"medicationName", m.Name}, {"medicationCode", m.Code}, {"medicationCodeSystem", m.CodeSystem}, {"medicationStrength", m.Strength},
	} {
		b = appendMember(b, f.name, f.value, false)
	}
	b = appendInt(b, "medicationQuantity", m.Quantity)
	b = appendInt(b, "medicationRefills", m.Refills)
	for _, f := range [...]struct{ name, value string }{
		{"approvedBy", c.ApprovedBy}, {"reason", c.Reason}, {"reasonCode", c.ReasonCode}, {"dispensedBy", d.By},
	} {
		b = appendMember(b, f.name, f.value, false)
	}
	b = appendInt(b, "quantity", d.Quantity)
	b = appendMember(b, "lotNumber", d.LotNumber, false)
	// prescription.deadline's, added after fp1 shipped: omitted when absent
	b = appendMember(b, "deadline", c.Deadline, false)
	b = appendInt(b, "since", c.Since)
	if !c.DueAt.IsZero() {
		b = c.DueAt.AppendFormat(append(b, `"dueAt":"`...), time.RFC3339Nano)
		b = append(b, '"', ',')
	}
	b[len(b)-1] = '}' // the last member's comma; "type" is always there
	return Fingerprint(fingerprintV1Prefix + digest(b))
}

// appendMember appends "name":value, to b, unless value is empty and not
// always. Names are plain ASCII; a value that is not valid UTF-8 (Decode
// refuses those) is quoted with U+FFFD in place of the bad bytes.
func appendMember(b []byte, name, value string, always bool) []byte {
	if value == "" && !always {
		return b
	}
	b = append(append(append(b, '"'), name...), '"', ':')
	b, _ = jsontext.AppendQuote(b, value)
	return append(b, ',')
}

func appendInt(b []byte, name string, n int) []byte {
	if n == 0 {
		return b
	}
	b = append(append(append(b, '"'), name...), '"', ':')
	return append(strconv.AppendInt(b, int64(n), 10), ',')
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
	if c.ReasonCode != "" || c.Medication.CodeSystem != "" {
		return "" // that version knew no reason code and no code system
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

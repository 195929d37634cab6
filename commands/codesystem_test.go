package commands_test

import (
	"errors"
	"testing"

	"rxflow/commands"
	"rxflow/domain"
)

// The request accepts medication.codeSystem, under the same input rules as
// the other medication fields.
func TestDecodeCodeSystem(t *testing.T) {
	req := func(medication string) commands.Raw {
		return commands.Raw{Value: []byte(`{"urn":"urn:rx:cs","event":"prescription.request","payload":{"patientId":"p1","prescriberId":"d1","medication":` + medication + `}}`)}
	}
	env, err := commands.Decode(req(`{"name":"Lisinopril","code":"314076","codeSystem":"RxNorm","quantity":30,"refills":0}`), 0)
	if err != nil {
		t.Fatal(err)
	}
	if want := (domain.Medication{Name: "Lisinopril", Code: "314076", CodeSystem: "RxNorm", Quantity: 30}); env.Command.Medication != want {
		t.Fatalf("medication %+v, want %+v", env.Command.Medication, want)
	}
	env, err = commands.Decode(req(`{"name":"Lisinopril","code":"314076","quantity":30,"refills":0}`), 0)
	if err != nil || env.Command.Medication.CodeSystem != "" {
		t.Fatalf("without codeSystem: %+v, %v; the command carries none (the domain names it)", env.Command.Medication, err)
	}
	for medication, code := range map[string]commands.DecodeCode{
		`{"name":"n","quantity":1,"codeSystem":7}`:                    commands.DecodeWrongType,
		`{"name":"n","quantity":1,"CodeSystem":"ATC"}`:                commands.DecodeMalformed,
		`{"name":"n","quantity":1,"codeSystem":"A","codeSystem":"B"}`: commands.DecodeMalformed,
		`{"name":"n","quantity":1,"codeSystem":"AT\u0000C"}`:          commands.DecodeInvalidText,
	} {
		_, err := commands.Decode(req(medication), 0)
		var de *commands.DecodeError
		if !errors.As(err, &de) || de.Code != code {
			t.Errorf("%s: %v, want %s", medication, err, code)
		}
	}
}

// medicationCodeSystem joins the canonical form only when present, so a
// command without it keeps its fingerprint (TestFingerprintsArePinned), and
// one with it has its own.
func TestFingerprintWithCodeSystem(t *testing.T) {
	c := domain.Command{Type: domain.Request, URN: "urn:rx:1", PatientID: "p1", PrescriberID: "d1", PharmacyID: "ph1",
		Medication: domain.Medication{Name: "Amoxicillin", Code: "J01CA04", CodeSystem: "ATC", Strength: "500mg", Quantity: 20, Refills: 1}}
	// sha256, first 16 bytes, of {"type":"prescription.request","urn":"urn:rx:1","patientId":"p1","prescriberId":"d1",
	// "pharmacyId":"ph1","medicationName":"Amoxicillin","medicationCode":"J01CA04","medicationCodeSystem":"ATC",
	// "medicationStrength":"500mg","medicationQuantity":20,"medicationRefills":1} (checked with Python's hashlib).
	const pinned = commands.Fingerprint("fp1:da234a4adc35b3e831232810f0cb10d7")
	if got := commands.FingerprintOf(c); got != pinned {
		t.Fatalf("FingerprintOf = %q, want %q", got, pinned)
	}
	without := c
	without.Medication.CodeSystem = ""
	if pinned.Matches(without) || commands.FingerprintOf(without) == pinned {
		t.Fatal("the code system is not part of the fingerprint")
	}
	if commands.Fingerprint("b722af88425fc9799bd2e149a1a13827").Matches(c) {
		t.Fatal("an unversioned fingerprint, written before code systems, matches a command with one")
	}
}

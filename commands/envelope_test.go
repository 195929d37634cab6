package commands_test

import (
	"errors"
	"strings"
	"testing"

	"rxflow/commands"
	"rxflow/domain"
)

func TestDecodeSeedMessage(t *testing.T) {
	raw := commands.Raw{Topic: "prescription.events", Partition: 3, Offset: 42, Key: []byte("urn:rx:1"), Value: []byte(`{
		"urn": "urn:rx:1", "event": "prescription.request",
		"payload": {"patientId": "p1", "prescriberId": "d1", "pharmacyId": "ph1", "extra": "ignored",
			"medication": {"name": "Amoxicillin", "code": "J01CA04", "strength": "500mg", "quantity": 20, "refills": 2}}}`)}
	env, err := commands.Decode(raw, 0)
	if err != nil {
		t.Fatal(err)
	}
	want := domain.Command{Type: domain.Request, URN: "urn:rx:1", PatientID: "p1", PrescriberID: "d1", PharmacyID: "ph1",
		Medication: domain.Medication{Name: "Amoxicillin", Code: "J01CA04", Strength: "500mg", Quantity: 20, Refills: 2}}
	if env.Command != want {
		t.Fatalf("command\n got %+v\nwant %+v", env.Command, want)
	}
	if env.ID != "kafka:prescription.events/3/42" || env.CorrelationID != env.ID {
		t.Fatalf("derived ids: command %q correlation %q", env.ID, env.CorrelationID)
	}
}

func TestDecodeIdentity(t *testing.T) {
	headers := map[string]string{commands.HeaderCommandID: "h-cmd", commands.HeaderCorrelationID: "h-corr", commands.HeaderActor: "h-actor"}
	env, err := commands.Decode(commands.Raw{Value: []byte(`{"urn":"urn:rx:u","event":"prescription.complete"}`), Headers: headers}, 0)
	if err != nil || env.ID != "h-cmd" || env.CorrelationID != "h-corr" || env.Command.Actor != "h-actor" {
		t.Fatalf("from headers: %+v %v", env, err)
	}
	env, err = commands.Decode(commands.Raw{Value: []byte(`{"urn":"urn:rx:u","event":"prescription.complete","commandId":"j-cmd","correlationId":"j-corr","actor":"j-actor"}`), Headers: headers}, 0)
	if err != nil || env.ID != "j-cmd" || env.CorrelationID != "j-corr" || env.Command.Actor != "j-actor" {
		t.Fatalf("JSON fields must win over headers: %+v %v", env, err)
	}
}

func TestFingerprintTellsContentApart(t *testing.T) {
	a, _ := commands.Decode(commands.Raw{Value: []byte(`{"urn":"urn:rx:u","event":"prescription.reject","payload":{"reason":"a"}}`)}, 0)
	b, _ := commands.Decode(commands.Raw{Value: []byte(`{ "event":"prescription.reject", "urn":"urn:rx:u", "payload":{"reason":"a"} }`)}, 0)
	c, _ := commands.Decode(commands.Raw{Value: []byte(`{"urn":"urn:rx:u","event":"prescription.reject","payload":{"reason":"b"}}`)}, 0)
	if a.Hash == "" || a.Hash != b.Hash {
		t.Fatalf("same content, different framing: %q vs %q", a.Hash, b.Hash)
	}
	if a.Hash == c.Hash {
		t.Fatal("different reasons share a fingerprint")
	}
}

func TestDecodeFailures(t *testing.T) {
	cases := []struct {
		name  string
		key   string
		value string
		code  commands.DecodeCode
	}{
		{"malformed json", "", `{"urn": "urn:rx:u", "event": `, commands.DecodeMalformed},
		{"not an object", "", `[1,2]`, commands.DecodeMalformed},
		{"trailing garbage", "", `{"urn":"urn:rx:u","event":"prescription.complete"} x`, commands.DecodeMalformed},
		{"urn wrong type", "", `{"urn": 7, "event": "prescription.complete"}`, commands.DecodeWrongType},
		{"quantity wrong type", "", `{"urn":"urn:rx:u","event":"prescription.request","payload":{"medication":{"quantity":"ten"}}}`, commands.DecodeWrongType},
		{"payload not an object", "", `{"urn":"urn:rx:u","event":"prescription.request","payload":"x"}`, commands.DecodeWrongType},
		{"missing urn", "", `{"event": "prescription.complete"}`, commands.DecodeMissingURN},
		{"urn with spaces", "", `{"urn": "a b", "event": "prescription.complete"}`, commands.DecodeInvalidURN},
		{"urn too long", "", `{"urn": "` + strings.Repeat("u", 300) + `", "event": "prescription.complete"}`, commands.DecodeInvalidURN},
		{"missing event", "", `{"urn": "urn:rx:u"}`, commands.DecodeMissingEvent},
		{"unknown event", "", `{"urn": "urn:rx:u", "event": "prescription.teleport"}`, commands.DecodeUnknownEvent},
		{"key differs from urn", "other", `{"urn": "urn:rx:u", "event": "prescription.complete"}`, commands.DecodeKeyMismatch},
		{"oversized", "", `{"urn":"urn:rx:u","event":"prescription.reject","payload":{"reason":"` + strings.Repeat("x", commands.DefaultMaxCommandBytes) + `"}}`, commands.DecodeTooLarge},
		{"empty", "", ``, commands.DecodeMalformed},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, err := commands.Decode(commands.Raw{Key: []byte(tc.key), Value: []byte(tc.value)}, 0)
			var de *commands.DecodeError
			if !errors.As(err, &de) || de.Code != tc.code {
				t.Fatalf("err = %v, want code %s", err, tc.code)
			}
		})
	}
}

package commands_test

import (
	"errors"
	"strings"
	"testing"

	"rxflow/commands"
	"rxflow/domain"
)

const approve = `{"urn":"urn:rx:t1","event":"prescription.approve","payload":{"approvedBy":"d1"}}`

func decodeCode(t *testing.T, raw commands.Raw) commands.DecodeCode {
	t.Helper()
	_, err := commands.Decode(raw, 0)
	if err == nil {
		return ""
	}
	var de *commands.DecodeError
	if !errors.As(err, &de) {
		t.Fatalf("error %v is not a *DecodeError", err)
	}
	return de.Code
}

// Kind 1: any value that is not exactly one JSON object is malformed.
func TestDecodeExactlyOneObject(t *testing.T) {
	bad := []string{
		approve + `}`, approve + `]`, approve + `,`, approve + approve, approve + ` {}`, approve + ` null`, approve + `x`,
		`[` + approve + `]`, `null`, `true`, `"` + approve + `"`, `42`, ``, ` `, `{`, `}`, `{}}`,
		"\ufeff" + approve, // a byte-order mark is not whitespace
		`{"urn":"urn:rx:t1","event":"prescription.approve","payload":{"approvedBy":"d1"}`,
		`{"urn":"urn:rx:t1","event":"prescription.approve",}`, `{'urn':'urn:rx:t1'}`, `{"urn":"urn:rx:t1" "event":"x"}`,
		`{"urn":"urn:rx:t1","event":"prescription.approve","payload":{"approvedBy":"d1"}}/*c*/`,
		`{"urn":"urn:rx:t1","event":"prescription.approve","payload":{"approvedBy":"d1"},"n":NaN}`,
	}
	for _, v := range bad {
		if code := decodeCode(t, commands.Raw{Value: []byte(v)}); code != commands.DecodeMalformed {
			t.Errorf("%q: code %q, want %q", v, code, commands.DecodeMalformed)
		}
	}
	for _, v := range []string{approve, " \n\t" + approve + "\r\n ", `{"event":"prescription.approve","urn":"urn:rx:t1","payload":null,"approvedAt":"x"}`} {
		if code := decodeCode(t, commands.Raw{Value: []byte(v)}); code != "" {
			t.Errorf("%q: code %q, want it accepted", v, code)
		}
	}
}

// Kind 3: names match exactly; a duplicate or case-variant name is malformed.
func TestDecodeExactNames(t *testing.T) {
	request := func(extra string) string {
		return `{"urn":"urn:rx:a","event":"prescription.request","payload":{"patientId":"p","prescriberId":"d",` +
			`"medication":{"name":"m","quantity":1` + extra + `}}}`
	}
	bad := []string{
		`{"urn":"urn:rx:a","event":"prescription.complete","URN":"urn:rx:b"}`,
		`{"urn":"urn:rx:a","event":"prescription.complete","urn":"urn:rx:b"}`,
		`{"URN":"urn:rx:b","event":"prescription.complete"}`,
		`{"urn":"urn:rx:a","Event":"prescription.reject","event":"prescription.complete"}`,
		`{"urn":"urn:rx:a","event":"prescription.complete","commandId":"c1","CommandID":"c2"}`,
		`{"urn":"urn:rx:a","event":"prescription.reject","payload":{"reason":"a","Reason":"b"}}`,
		`{"urn":"urn:rx:a","event":"prescription.reject","payload":{"reason":"a","reason":"b"}}`,
		request(`,"Quantity":900`), request(`,"quantity":900`), request(`,"NAME":"x"`),
		`{"urn":"urn:rx:a","event":"prescription.complete","payload":{},"payload":{}}`,
		`{"urn":"urn:rx:a","event":"prescription.complete","x":{"k":1,"k":2}}`, // even inside an unknown member
	}
	for _, v := range bad {
		if code := decodeCode(t, commands.Raw{Value: []byte(v)}); code != commands.DecodeMalformed {
			t.Errorf("%s: code %q, want %q", v, code, commands.DecodeMalformed)
		}
	}
	// Unknown members with other names are ignored, as the seed's clients expect.
	env, err := commands.Decode(commands.Raw{Value: []byte(request(`,"form":"tablet"`))}, 0)
	if err != nil || env.Command.URN != "urn:rx:a" || env.Command.Medication.Quantity != 1 {
		t.Fatalf("unknown member: %+v, %v", env.Command, err)
	}
}

// Kind 4: every id, header and string must be valid UTF-8; ids and text
// must be clean.
func TestDecodeText(t *testing.T) {
	cases := []struct {
		name string
		raw  commands.Raw
		code commands.DecodeCode
	}{
		{"raw 0xFF 0xFE in a string", commands.Raw{Value: []byte("{\"urn\":\"urn:rx:t1\",\"event\":\"prescription.approve\",\"payload\":{\"approvedBy\":\"\xff\xfe\"}}")}, commands.DecodeInvalidUTF8},
		{"overlong encoding", commands.Raw{Value: []byte("{\"urn\":\"urn:rx:t1\",\"event\":\"prescription.approve\",\"payload\":{\"approvedBy\":\"\xc0\xaf\"}}")}, commands.DecodeInvalidUTF8},
		{"encoded surrogate", commands.Raw{Value: []byte("{\"urn\":\"urn:rx:t1\",\"event\":\"prescription.approve\",\"payload\":{\"approvedBy\":\"\xed\xa0\x80\"}}")}, commands.DecodeInvalidUTF8},
		{"escaped lone surrogate", commands.Raw{Value: []byte(`{"urn":"urn:rx:t1","event":"prescription.approve","payload":{"approvedBy":"\ud800"}}`)}, commands.DecodeInvalidUTF8},
		{"invalid byte in a member name", commands.Raw{Value: []byte("{\"urn\":\"urn:rx:t1\",\"event\":\"prescription.complete\",\"\x98\":1}")}, commands.DecodeInvalidUTF8},
		{"command-id header", commands.Raw{Value: []byte(approve), Headers: map[string]string{"command-id": "cmd-\x98-1"}}, commands.DecodeInvalidUTF8},
		{"actor header", commands.Raw{Value: []byte(approve), Headers: map[string]string{"actor": "dr\xff"}}, commands.DecodeInvalidUTF8},
		{"correlation-id header", commands.Raw{Value: []byte(approve), Headers: map[string]string{"correlation-id": "\xfe"}}, commands.DecodeInvalidUTF8},
		{"any other header", commands.Raw{Value: []byte(approve), Headers: map[string]string{"traceparent": "\xfe"}}, commands.DecodeInvalidUTF8},
		{"header name", commands.Raw{Value: []byte(approve), Headers: map[string]string{"x-\xfe": "v"}}, commands.DecodeInvalidUTF8},
		{"key", commands.Raw{Key: []byte("urn:rx:t1\xff"), Value: []byte(approve)}, commands.DecodeInvalidUTF8},
		{"command id with a space", commands.Raw{Value: []byte(approve), Headers: map[string]string{"command-id": "cmd 1"}}, commands.DecodeInvalidText},
		{"command id with a no-break space", commands.Raw{Value: []byte(`{"urn":"urn:rx:t1","event":"prescription.complete","commandId":"c\u00a01"}`)}, commands.DecodeInvalidText},
		{"command id with a zero-width space", commands.Raw{Value: []byte(`{"urn":"urn:rx:t1","event":"prescription.complete","commandId":"c\u200b1"}`)}, commands.DecodeInvalidText},
		{"command id with U+FFFD", commands.Raw{Value: []byte(`{"urn":"urn:rx:t1","event":"prescription.complete","commandId":"c\ufffd1"}`)}, commands.DecodeInvalidText},
		{"actor with a control", commands.Raw{Value: []byte(`{"urn":"urn:rx:t1","event":"prescription.complete","actor":"a\u0007"}`)}, commands.DecodeInvalidText},
		{"correlation id too long", commands.Raw{Value: []byte(`{"urn":"urn:rx:t1","event":"prescription.complete","correlationId":"` + strings.Repeat("c", commands.MaxIDLength+1) + `"}`)}, commands.DecodeInvalidText},
		{"NUL in a reason", commands.Raw{Value: []byte(`{"urn":"urn:rx:t1","event":"prescription.reject","payload":{"reason":"a\u0000b"}}`)}, commands.DecodeInvalidText},
		{"a command id in the derived form", commands.Raw{Value: []byte(`{"urn":"urn:rx:t1","event":"prescription.complete","commandId":"kafka:prescription.events/0/5"}`)}, commands.DecodeInvalidText},
		{"a derived command id in the header", commands.Raw{Value: []byte(approve), Headers: map[string]string{"command-id": "kafka:x/1/2"}}, commands.DecodeInvalidText},
		{"a reason code that is free text", commands.Raw{Value: []byte(`{"urn":"urn:rx:t1","event":"prescription.fail","payload":{"reason":"r","reasonCode":"pharmacy unavailable: GET http://10.0.0.5 -> 500"}}`)}, commands.DecodeInvalidText},
		{"a reason code in capitals", commands.Raw{Value: []byte(`{"urn":"urn:rx:t1","event":"prescription.fail","payload":{"reason":"r","reasonCode":"OUT_OF_STOCK"}}`)}, commands.DecodeInvalidText},
		{"a header the adapter found invalid", commands.Raw{Value: []byte(approve), HeaderProblem: `invalid_utf8: header "_watermill_message_uuid" is not valid UTF-8`}, commands.DecodeInvalidUTF8},
		{"a repeated header", commands.Raw{Value: []byte(approve), HeaderProblem: `invalid_header: header "command-id" is repeated`}, commands.DecodeInvalidHeader},
		{"NUL in the diagnostic header", commands.Raw{Value: []byte(approve), Headers: map[string]string{"diagnostic": "a\x00"}}, commands.DecodeInvalidText},
	}
	for _, n := range []string{"9007199254740992", "-9007199254740992", "9223372036854775807"} {
		cases = append(cases, struct {
			name string
			raw  commands.Raw
			code commands.DecodeCode
		}{"integer " + n, commands.Raw{Value: []byte(`{"urn":"urn:rx:t1","event":"prescription.dispense","payload":{"quantity":` + n + `}}`)}, commands.DecodeWrongType})
	}
	for _, tc := range cases {
		if code := decodeCode(t, tc.raw); code != tc.code {
			t.Errorf("%s: code %q, want %q", tc.name, code, tc.code)
		}
	}
	env, err := commands.Decode(commands.Raw{Value: []byte(`{"urn":"urn:rx:t1","event":"prescription.reject","actor":"Dr. Müller","payload":{"reason":"Wechselwirkung ⚠ mit\nAspirin"}}`)}, 0)
	if err != nil || env.Command.Actor != "Dr. Müller" || env.Command.Reason != "Wechselwirkung ⚠ mit\nAspirin" {
		t.Fatalf("valid text refused: %+v %v", env.Command, err)
	}
}

// Kind 5: the one URN grammar at the command boundary.
func TestDecodeURNGrammar(t *testing.T) {
	for _, urn := range []string{"stats", "urn:rx:a\u00a0b", "urn:rx:a\u200bb", "URN:rx:1", "urn:RX:1", "urn:rx:a/b", "urn:rx:%41", "urn:rx:é", "urn:rx:a b", "urn:rx:\u2028"} {
		v := `{"urn":"` + urn + `","event":"prescription.complete"}`
		if code := decodeCode(t, commands.Raw{Value: []byte(v)}); code != commands.DecodeInvalidURN {
			t.Errorf("urn %q: code %q, want %q", urn, code, commands.DecodeInvalidURN)
		}
	}
}

// Kind 10: fingerprints come from a canonical, versioned form. These hashes
// are pinned: a change to them breaks idempotency for every stored command.
func TestFingerprintsArePinned(t *testing.T) {
	cmds := []domain.Command{
		{Type: domain.Request, URN: "urn:rx:1", PatientID: "p1", PrescriberID: "d1", PharmacyID: "ph1",
			Medication: domain.Medication{Name: "Amoxicillin", Code: "J01CA04", Strength: "500mg", Quantity: 20, Refills: 1}},
		{Type: domain.Approve, URN: "urn:rx:1", ApprovedBy: "d1"},
		{Type: domain.Dispense, URN: "urn:rx:1", Actor: "pharmacist", Dispensing: domain.Dispensing{By: "ph", Quantity: 20, LotNumber: "L1"}},
		{Type: domain.Fail, URN: "urn:rx:1", Reason: "out of stock"},
	}
	// sha256, first 16 bytes, of the canonical texts, e.g. for approve
	// {"type":"prescription.approve","urn":"urn:rx:1","approvedBy":"d1"}
	// (checked with Python's hashlib when pinned).
	fp1 := []commands.Fingerprint{
		"fp1:cea9d4cf47bdfd521aa84302c1913eea",
		"fp1:0df14da0172b511a02eca595fb8b5782",
		"fp1:ed4374db162c4e7e09ff65ceabbc712c",
		"fp1:13f3d5a415c47b37a844dc450f176ade",
	}
	// Written by the code before fingerprints were versioned (commit fab0947).
	legacy := []commands.Fingerprint{
		"b722af88425fc9799bd2e149a1a13827",
		"0e5b233edcbdd69d0031586ed525eb46",
		"2813ee92302199a07e049c16df28b5be",
		"163beb5d9ba395e8715da7fddab20c95",
	}
	for i, c := range cmds {
		if got := commands.FingerprintOf(c); got != fp1[i] {
			t.Errorf("FingerprintOf(%s) = %q, want %q", c.Type, got, fp1[i])
		}
		if !fp1[i].Matches(c) || !legacy[i].Matches(c) {
			t.Errorf("%s: stored fingerprints no longer recognised (fp1 %v, legacy %v)", c.Type, fp1[i].Matches(c), legacy[i].Matches(c))
		}
		other := c
		other.URN = "urn:rx:2"
		if fp1[i].Matches(other) || legacy[i].Matches(other) {
			t.Errorf("%s: a fingerprint matches another command", c.Type)
		}
	}
	withCode := cmds[3]
	withCode.ReasonCode = "out_of_stock"
	if commands.FingerprintOf(withCode) == fp1[3] || legacy[3].Matches(withCode) {
		t.Error("the reason code is not part of the fingerprint")
	}
}

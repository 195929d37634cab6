package commands_test

import (
	"testing"
	"time"

	"rxflow/commands"
	"rxflow/domain"
)

// The projector's prescription.deadline decodes under the same input rules
// as the seed's commands, and its fields are part of its fingerprint.
func TestDecodeDeadlineCommand(t *testing.T) {
	value := `{"urn":"urn:rx:d1","event":"prescription.deadline","commandId":"deadline:approval-overdue@0","actor":"projector:deadlines",
		"payload":{"deadline":"approval-overdue","since":0,"dueAt":"2026-11-29T10:00:00+01:00"}}`
	env, err := commands.Decode(commands.Raw{Key: []byte("urn:rx:d1"), Value: []byte(value)}, 0)
	if err != nil {
		t.Fatal(err)
	}
	want := domain.Command{Type: domain.RecordDeadline, URN: "urn:rx:d1", Actor: "projector:deadlines", Deadline: "approval-overdue",
		DueAt: time.Date(2026, 11, 29, 9, 0, 0, 0, time.UTC)}
	if env.Command != want || env.ID != "deadline:approval-overdue@0" {
		t.Fatalf("command %+v, id %q\nwant %+v", env.Command, env.ID, want)
	}
	other := env.Command
	other.Since = 3
	if env.Hash.Matches(other) || env.Hash == commands.FingerprintOf(domain.Command{Type: domain.RecordDeadline, URN: "urn:rx:d1", Actor: "projector:deadlines"}) {
		t.Fatal("the fingerprint ignores the deadline's fields")
	}
	for _, c := range []struct {
		payload string
		code    commands.DecodeCode
	}{
		{`{"deadline":"approval-overdue","since":"0"}`, commands.DecodeWrongType},
		{`{"deadline":"approval-overdue","since":9007199254740992}`, commands.DecodeWrongType},
		{`{"deadline":"approval-overdue","dueAt":"yesterday"}`, commands.DecodeWrongType},
		{`{"Deadline":"approval-overdue"}`, commands.DecodeMalformed},
		{`{"deadline":"a\u0000b"}`, commands.DecodeInvalidText},
	} {
		raw := commands.Raw{Value: []byte(`{"urn":"urn:rx:d1","event":"prescription.deadline","payload":` + c.payload + `}`)}
		if got := decodeCode(t, raw); got != c.code {
			t.Errorf("payload %s: %q, want %q", c.payload, got, c.code)
		}
	}
}

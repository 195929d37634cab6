package commands_test

import (
	"encoding/json"
	"errors"
	"testing"
	"unicode/utf8"

	"rxflow/commands"
	"rxflow/domain"
)

// FuzzDecode checks the decoder alone, fast: it never panics, a refusal is
// a *DecodeError with valid UTF-8 text, and an accepted command obeys the
// input rules.
//
//	go test -run '^$' -fuzz FuzzDecode -fuzztime 10m ./commands/
func FuzzDecode(f *testing.F) {
	for _, v := range []string{approve, approve + `}`, `{"urn":"urn:rx:a","event":"prescription.complete","URN":"urn:rx:b"}`,
		"{\"urn\":\"urn:rx:t1\",\"event\":\"prescription.approve\",\"payload\":{\"approvedBy\":\"\xff\xfe\"}}",
		`{"urn":"urn:rx:a\u00a0b","event":"prescription.complete"}`, `{"urn":"stats","event":"prescription.complete"}`,
		`{"urn":"urn:rx:a","event":"prescription.reject","payload":{"reason":"\ud800"}}`} {
		f.Add([]byte("urn:rx:t1"), []byte(v), "cmd-1")
	}
	f.Add([]byte(nil), []byte(approve), "cmd-\x98-1")
	f.Fuzz(func(t *testing.T, key, value []byte, commandID string) {
		raw := commands.Raw{Key: key, Value: value, Headers: map[string]string{commands.HeaderCommandID: commandID}}
		env, err := commands.Decode(raw, 0)
		if err != nil {
			var de *commands.DecodeError
			if !errors.As(err, &de) || de.Code == "" || !utf8.ValidString(err.Error()) {
				t.Fatalf("refusal %v is not a coded *DecodeError with valid UTF-8 text", err)
			}
			return
		}
		if domain.ValidateURN(env.Command.URN) != nil || !utf8.ValidString(env.ID) || env.ID == "" || !utf8.Valid(env.Source) || !json.Valid(env.Source) {
			t.Fatalf("accepted a command that breaks the input rules: %+v", env)
		}
		if len(key) > 0 && string(key) != env.Command.URN {
			t.Fatalf("key %q accepted for urn %q", key, env.Command.URN)
		}
		if env.Hash != commands.FingerprintOf(env.Command) || !env.Hash.Matches(env.Command) {
			t.Fatalf("fingerprint %q does not match its command", env.Hash)
		}
	})
}

package kgoopts_test

import (
	"strings"
	"testing"

	"rxflow/infra/kafka"
	"rxflow/infra/kafka/kgoopts"
)

// The options follow the settings, and settings that kafka.Config would
// refuse are refused here too. (The options at work: infra/kafka's
// TestSecurePublishSubscribe and TestSecureRefusals.)
func TestSecurity(t *testing.T) {
	for _, c := range []struct {
		name    string
		sec     kafka.Security
		opts    int
		wantErr string
	}{
		{name: "plaintext", sec: kafka.Security{}, opts: 0},
		{name: "TLS", sec: kafka.Security{TLS: kafka.TLS{Enable: true}}, opts: 1},
		{name: "TLS and SCRAM", sec: kafka.Security{TLS: kafka.TLS{Enable: true}, SASL: kafka.SASL{Mechanism: kafka.MechanismSCRAMSHA512, User: "u", Password: "p"}}, opts: 2},
		{name: "PLAIN without TLS, allowed", sec: kafka.Security{SASL: kafka.SASL{Mechanism: kafka.MechanismPlain, User: "u", Password: "p", AllowWithoutTLS: true}}, opts: 1},
		{name: "PLAIN without TLS", sec: kafka.Security{SASL: kafka.SASL{Mechanism: kafka.MechanismPlain, User: "u", Password: "p"}}, wantErr: "without TLS is refused"},
		{name: "CA file missing", sec: kafka.Security{TLS: kafka.TLS{CAFile: "/nonexistent/ca.pem"}}, wantErr: "/nonexistent/ca.pem"},
	} {
		opts, err := kgoopts.Security(c.sec)
		switch {
		case c.wantErr != "":
			if err == nil || !strings.Contains(err.Error(), c.wantErr) {
				t.Errorf("%s: error %v, want %q", c.name, err, c.wantErr)
			}
		case err != nil:
			t.Errorf("%s: %v", c.name, err)
		case len(opts) != c.opts:
			t.Errorf("%s: %d options, want %d", c.name, len(opts), c.opts)
		}
	}
}

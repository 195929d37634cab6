package kafkatest

import (
	"os"
	"slices"
	"strings"
	"testing"

	"rxflow/infra/kafka"
)

// The environment variables naming a real Kafka cluster's SASL_SSL
// listener, for the tests that run only against it. .ci/kafka/start.sh
// writes them for its broker (127.0.0.1:9094) into
// .ci/kafka/target/run/sasl-ssl.env, and .ci/run exports them.
const (
	// SASLSSLBrokersEnv: comma-separated host:port of the listener.
	SASLSSLBrokersEnv = "KAFKA_SASL_SSL_BROKERS"
	// SASLSSLCAFileEnv: PEM file of the CA that signs the brokers' certificates.
	SASLSSLCAFileEnv = "KAFKA_SASL_SSL_CA_FILE"
	// SASLSSLMechanismsEnv: comma-separated mechanisms the listener accepts
	// for the user, each one of kafka.Mechanisms.
	SASLSSLMechanismsEnv = "KAFKA_SASL_SSL_MECHANISMS"
	// SASLSSLUserEnv and SASLSSLPasswordEnv: a user of every mechanism.
	SASLSSLUserEnv     = "KAFKA_SASL_SSL_USER"
	SASLSSLPasswordEnv = "KAFKA_SASL_SSL_PASSWORD"
)

// SASLSSL is a real cluster's SASL_SSL listener and a user of it.
type SASLSSL struct {
	Brokers    []string
	CAFile     string
	Mechanisms []string
	User       string
	Password   kafka.Secret
}

// Security returns the client settings for the listener with mechanism:
// TLS verified against CAFile, SASL as User.
func (s SASLSSL) Security(mechanism string) kafka.Security {
	return kafka.Security{TLS: kafka.TLS{CAFile: s.CAFile},
		SASL: kafka.SASL{Mechanism: mechanism, User: s.User, Password: s.Password}}
}

// RequireSASLSSL returns the listener the KAFKA_SASL_SSL_* variables name.
// Without KAFKA_SASL_SSL_BROKERS it skips the test, saying so; with it but
// another variable missing or a mechanism unknown, it fails the test.
func RequireSASLSSL(t testing.TB) SASLSSL {
	t.Helper()
	raw := os.Getenv(SASLSSLBrokersEnv)
	if strings.TrimSpace(raw) == "" {
		t.Skipf("%s not set: no real Kafka SASL_SSL listener to test against (.ci/run starts one)", SASLSSLBrokersEnv)
	}
	s := SASLSSL{CAFile: os.Getenv(SASLSSLCAFileEnv), User: os.Getenv(SASLSSLUserEnv),
		Password: kafka.Secret(os.Getenv(SASLSSLPasswordEnv))}
	for b := range strings.SplitSeq(raw, ",") {
		if b = strings.TrimSpace(b); b != "" {
			s.Brokers = append(s.Brokers, b)
		}
	}
	for m := range strings.SplitSeq(os.Getenv(SASLSSLMechanismsEnv), ",") {
		if m = strings.ToUpper(strings.TrimSpace(m)); m == "" {
			continue
		} else if !slices.Contains(kafka.Mechanisms, m) {
			t.Fatalf("kafkatest: %s names an unknown mechanism %q", SASLSSLMechanismsEnv, m)
		}
		s.Mechanisms = append(s.Mechanisms, m)
	}
	for _, c := range []struct {
		env string
		set bool
	}{{SASLSSLCAFileEnv, s.CAFile != ""}, {SASLSSLMechanismsEnv, len(s.Mechanisms) > 0}, {SASLSSLUserEnv, s.User != ""}, {SASLSSLPasswordEnv, s.Password != ""}} {
		if !c.set {
			t.Fatalf("kafkatest: %s is set but %s is empty", SASLSSLBrokersEnv, c.env)
		}
	}
	return s
}

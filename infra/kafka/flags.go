package kafka

import (
	"fmt"
	"os"
	"strconv"
	"strings"

	"rxflow/infra/config"
)

// The environment variables of the security settings. Each has a flag of
// the same name in lower case without "KAFKA_" and with "-" for "_",
// prefixed "-kafka-": KAFKA_TLS_CA_FILE is -kafka-tls-ca-file.
const (
	EnvTLS                 = "KAFKA_TLS"
	EnvTLSCAFile           = "KAFKA_TLS_CA_FILE"
	EnvTLSCertFile         = "KAFKA_TLS_CERT_FILE"
	EnvTLSKeyFile          = "KAFKA_TLS_KEY_FILE"
	EnvTLSServerName       = "KAFKA_TLS_SERVER_NAME"
	EnvSASLMechanism       = "KAFKA_SASL_MECHANISM"
	EnvSASLUser            = "KAFKA_SASL_USER"
	EnvSASLPassword        = "KAFKA_SASL_PASSWORD"
	EnvSASLPasswordFile    = "KAFKA_SASL_PASSWORD_FILE"
	EnvSASLAllowWithoutTLS = "KAFKA_SASL_ALLOW_WITHOUT_TLS"
)

// SecurityEnv lists every environment variable SecurityFlags reads.
var SecurityEnv = []string{EnvTLS, EnvTLSCAFile, EnvTLSCertFile, EnvTLSKeyFile, EnvTLSServerName,
	EnvSASLMechanism, EnvSASLUser, EnvSASLPassword, EnvSASLPasswordFile, EnvSASLAllowWithoutTLS}

func flagName(env string) string {
	return "kafka-" + strings.ReplaceAll(strings.ToLower(strings.TrimPrefix(env, "KAFKA_")), "_", "-")
}

// SecurityFlags defines the Kafka TLS and SASL flags on f, each defaulting
// to its environment variable, so that every binary has the same ones.
// After f.Parse, the returned function gives the settings: it reads the
// password file, if one is named, and reports what cannot be read or goes
// together badly. Config.Validate reports the rest (files, mechanism, a
// user without a password, SASL without TLS).
func SecurityFlags(f *config.Flags) func() (Security, error) {
	str := func(env, usage string) *string { return f.String(flagName(env), env, "", usage) }
	tlsOn := f.EnvBool(flagName(EnvTLS), EnvTLS, false, "connect to the Kafka brokers over TLS (implied by any -kafka-tls-* setting)")
	ca := str(EnvTLSCAFile, "PEM file of the CAs that sign the Kafka brokers' certificates; default the system roots")
	cert := str(EnvTLSCertFile, "PEM client certificate for Kafka brokers that require one (mTLS); needs -kafka-tls-key-file")
	key := str(EnvTLSKeyFile, "PEM key of -kafka-tls-cert-file")
	serverName := str(EnvTLSServerName, "name the Kafka brokers' certificates must carry; default each broker's host")
	mechanism := str(EnvSASLMechanism, "Kafka SASL mechanism: PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512; empty: no SASL")
	user := str(EnvSASLUser, "Kafka SASL user")
	password := f.Secret(flagName(EnvSASLPassword), EnvSASLPassword, "Kafka SASL password; prefer the environment or -kafka-sasl-password-file to the flag")
	passwordFile := str(EnvSASLPasswordFile, "file holding the Kafka SASL password (one trailing newline is dropped)")
	allow := f.EnvBool(flagName(EnvSASLAllowWithoutTLS), EnvSASLAllowWithoutTLS, false,
		"allow Kafka SASL without TLS (PLAIN then sends the password in the clear); refused otherwise")
	return func() (Security, error) {
		s := Security{
			TLS: TLS{Enable: *tlsOn, CAFile: *ca, CertFile: *cert, KeyFile: *key, ServerName: *serverName},
			SASL: SASL{Mechanism: strings.ToUpper(strings.TrimSpace(*mechanism)), User: *user, Password: Secret(*password),
				AllowWithoutTLS: *allow},
		}
		if *passwordFile == "" {
			return s, nil
		}
		if *password != "" {
			return s, fmt.Errorf("-%s (env %s) and -%s (env %s) are both set: give the password once",
				flagName(EnvSASLPassword), EnvSASLPassword, flagName(EnvSASLPasswordFile), EnvSASLPasswordFile)
		}
		b, err := os.ReadFile(*passwordFile)
		if err != nil {
			return s, fmt.Errorf("-%s (env %s): %w", flagName(EnvSASLPasswordFile), EnvSASLPasswordFile, err)
		}
		pw := strings.TrimSuffix(strings.TrimSuffix(string(b), "\n"), "\r")
		if pw == "" {
			return s, fmt.Errorf("-%s (env %s): %s is empty", flagName(EnvSASLPasswordFile), EnvSASLPasswordFile, *passwordFile)
		}
		s.SASL.Password = Secret(pw)
		return s, nil
	}
}

// Environ returns s as the environment variables SecurityFlags reads, every
// one of them, unset settings as empty values, for a child process that
// reads its settings from its environment (cmd/bench's consumers). The
// password travels as KAFKA_SASL_PASSWORD, which the child's environment
// keeps from other users, unlike its arguments.
func (s Security) Environ() []string {
	kv := func(k, v string) string { return k + "=" + v }
	b := func(v bool) string {
		if v {
			return strconv.FormatBool(v)
		}
		return ""
	}
	return []string{
		kv(EnvTLS, b(s.TLS.On())), kv(EnvTLSCAFile, s.TLS.CAFile), kv(EnvTLSCertFile, s.TLS.CertFile),
		kv(EnvTLSKeyFile, s.TLS.KeyFile), kv(EnvTLSServerName, s.TLS.ServerName),
		kv(EnvSASLMechanism, s.SASL.Mechanism), kv(EnvSASLUser, s.SASL.User), kv(EnvSASLPassword, s.SASL.Password.Reveal()),
		kv(EnvSASLPasswordFile, ""), kv(EnvSASLAllowWithoutTLS, b(s.SASL.AllowWithoutTLS)),
	}
}

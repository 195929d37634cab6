package kafka

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"slices"
	"strings"

	"github.com/IBM/sarama"
	"github.com/xdg-go/scram"
)

// Security holds how the clients authenticate the brokers and themselves:
// TLS, SASL, or both. The zero value is PLAINTEXT, for the embedded broker
// and local runs. docs/deploy.md ("Kafka security") has the flags and
// environment variables of each field; SecurityFlags defines them.
type Security struct {
	TLS  TLS
	SASL SASL
}

// TLS configures TLS towards the brokers. The broker's certificate is always
// verified, against CAFile or the system roots, and must name the broker:
// there is no setting that turns verification off.
type TLS struct {
	// Enable turns TLS on. Setting any other field turns it on too.
	Enable bool
	// CAFile is a PEM file of the CA certificates that sign the brokers'
	// certificates. It replaces the system roots; empty uses them (a
	// managed Kafka with a public CA).
	CAFile string
	// CertFile and KeyFile are the client's PEM certificate and key, for
	// brokers that require one (mTLS, ssl.client.auth=required). Both or
	// neither.
	CertFile, KeyFile string
	// ServerName is the name the brokers' certificates must carry; empty
	// uses the host of each broker's address (bootstrap and advertised).
	ServerName string
}

// On reports whether TLS is used.
func (t TLS) On() bool {
	return t.Enable || t.CAFile != "" || t.CertFile != "" || t.KeyFile != "" || t.ServerName != ""
}

// SASL mechanisms.
const (
	MechanismPlain       = "PLAIN"
	MechanismSCRAMSHA256 = "SCRAM-SHA-256"
	MechanismSCRAMSHA512 = "SCRAM-SHA-512"
)

// Mechanisms lists the SASL mechanisms the clients speak.
var Mechanisms = []string{MechanismPlain, MechanismSCRAMSHA256, MechanismSCRAMSHA512}

// SASL configures SASL authentication. An empty Mechanism turns it off.
type SASL struct {
	// Mechanism is one of Mechanisms, or "" for none.
	Mechanism string
	User      string
	// Password is printed and logged as "[redacted]".
	Password Secret
	// AllowWithoutTLS permits SASL on a connection without TLS. Without it,
	// Validate refuses SASL with TLS off: PLAIN would send the password in
	// the clear, and SCRAM, which does not, still leaves its exchange open
	// to an offline guess and every record (health data) readable and
	// alterable on the wire.
	AllowWithoutTLS bool
}

// Secret is a string that does not show itself: fmt, slog and encoders
// print "[redacted]". Reveal returns the value.
type Secret string

const redacted = "[redacted]"

// Reveal returns the secret itself.
func (s Secret) Reveal() string { return string(s) }

func (s Secret) String() string               { return redacted }
func (s Secret) GoString() string             { return `"` + redacted + `"` }
func (s Secret) LogValue() slog.Value         { return slog.StringValue(redacted) }
func (s Secret) MarshalText() ([]byte, error) { return []byte(redacted), nil }

// On reports whether SASL is used.
func (s SASL) On() bool { return s.Mechanism != "" }

// Validate reports every problem of the settings at once; it also reads
// the TLS files, so that one that is missing, unreadable or malformed is
// reported at start-up rather than at the first connection.
// Config.Validate includes it.
func (s Security) Validate() error { return errors.Join(s.validate()...) }

func (s Security) validate() []error {
	var errs []error
	if s.TLS.On() {
		if _, err := s.TLS.config(); err != nil {
			errs = append(errs, err)
		}
	}
	switch {
	case !s.SASL.On():
		if s.SASL.User != "" || s.SASL.Password != "" {
			errs = append(errs, errors.New("kafka: a SASL user or password is set but no SASL mechanism"))
		}
		if s.SASL.AllowWithoutTLS {
			errs = append(errs, errors.New("kafka: SASL without TLS is allowed but no SASL mechanism is set"))
		}
	case !slices.Contains(Mechanisms, s.SASL.Mechanism):
		errs = append(errs, fmt.Errorf("kafka: unknown SASL mechanism %q (known: %s, %s, %s)", s.SASL.Mechanism, MechanismPlain, MechanismSCRAMSHA256, MechanismSCRAMSHA512))
	default:
		if s.SASL.User == "" {
			errs = append(errs, fmt.Errorf("kafka: SASL %s needs a user", s.SASL.Mechanism))
		}
		if s.SASL.Password == "" {
			errs = append(errs, fmt.Errorf("kafka: SASL %s needs a password", s.SASL.Mechanism))
		}
		if !s.TLS.On() && !s.SASL.AllowWithoutTLS {
			errs = append(errs, fmt.Errorf("kafka: SASL %s without TLS is refused: enable TLS, or allow SASL without TLS explicitly", s.SASL.Mechanism))
		}
	}
	return errs
}

// describe says how the clients connect, in Kafka's security.protocol
// terms, for error messages: "" for PLAINTEXT, else e.g. "SASL_SSL,
// SCRAM-SHA-256 as rx". It never holds the password.
func (s Security) describe() string {
	switch {
	case s.SASL.On() && s.TLS.On():
		return fmt.Sprintf("SASL_SSL, %s as %s", s.SASL.Mechanism, s.SASL.User)
	case s.SASL.On():
		return fmt.Sprintf("SASL_PLAINTEXT, %s as %s", s.SASL.Mechanism, s.SASL.User)
	case s.TLS.On() && s.TLS.CertFile != "":
		return "SSL, client certificate " + s.TLS.CertFile
	case s.TLS.On():
		return "SSL"
	}
	return ""
}

// closedHint says what a connection the broker closed without an answer
// (EOF) most likely means for clients set up as s, or "" when err is not
// that: Apache Kafka closes the connection of a client that skips SASL on
// a SASL listener, and some brokers do on refused credentials.
func (s Security) closedHint(err error) string {
	switch {
	case !errors.Is(err, io.EOF):
		return ""
	case s.SASL.On():
		return "the broker closed the connection: it may have refused the SASL credentials, or its listener may not speak " + strings.SplitN(s.describe(), ",", 2)[0]
	case s.TLS.On():
		return "the broker closed the connection: its listener may require SASL (KAFKA_SASL_MECHANISM)"
	}
	return "the broker closed the connection: its listener may require TLS (KAFKA_TLS) or SASL (KAFKA_SASL_MECHANISM)"
}

// config returns the client TLS configuration: TLS 1.2 at least, the
// broker's certificate verified against CAFile (or the system roots) and
// ServerName (or each broker's host).
func (t TLS) config() (*tls.Config, error) {
	var errs []error
	c := &tls.Config{MinVersion: tls.VersionTLS12, ServerName: t.ServerName}
	if t.CAFile != "" {
		pem, err := os.ReadFile(t.CAFile)
		if err != nil {
			errs = append(errs, fmt.Errorf("kafka: TLS CA file: %w", err))
		} else {
			c.RootCAs = x509.NewCertPool()
			if !c.RootCAs.AppendCertsFromPEM(pem) {
				errs = append(errs, fmt.Errorf("kafka: TLS CA file %s holds no PEM certificate", t.CAFile))
			}
		}
	}
	switch {
	case t.CertFile != "" && t.KeyFile != "":
		cert, err := tls.LoadX509KeyPair(t.CertFile, t.KeyFile)
		if err != nil {
			errs = append(errs, fmt.Errorf("kafka: TLS client certificate %s and key %s: %w", t.CertFile, t.KeyFile, err))
		} else {
			c.Certificates = []tls.Certificate{cert}
		}
	case t.CertFile != "":
		errs = append(errs, fmt.Errorf("kafka: TLS client certificate %s has no key file", t.CertFile))
	case t.KeyFile != "":
		errs = append(errs, fmt.Errorf("kafka: TLS client key %s has no certificate file", t.KeyFile))
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	return c, nil
}

// TLSConfig returns the client TLS configuration of s, or nil when TLS is
// off, for clients other than sarama's (tests and tools).
func (s Security) TLSConfig() (*tls.Config, error) {
	if !s.TLS.On() {
		return nil, nil
	}
	return s.TLS.config()
}

// ApplySarama sets the TLS and SASL settings of sc.
func (s Security) ApplySarama(sc *sarama.Config) error {
	if s.TLS.On() {
		tc, err := s.TLS.config()
		if err != nil {
			return err
		}
		sc.Net.TLS.Enable, sc.Net.TLS.Config = true, tc
	}
	if !s.SASL.On() {
		return nil
	}
	sc.Net.SASL.Enable = true
	sc.Net.SASL.Handshake = true
	sc.Net.SASL.Version = sarama.SASLHandshakeV1
	sc.Net.SASL.User = s.SASL.User
	sc.Net.SASL.Password = s.SASL.Password.Reveal()
	switch s.SASL.Mechanism {
	case MechanismPlain:
		sc.Net.SASL.Mechanism = sarama.SASLTypePlaintext
	case MechanismSCRAMSHA256:
		sc.Net.SASL.Mechanism = sarama.SASLTypeSCRAMSHA256
		sc.Net.SASL.SCRAMClientGeneratorFunc = func() sarama.SCRAMClient { return &scramClient{hash: scram.SHA256} }
	case MechanismSCRAMSHA512:
		sc.Net.SASL.Mechanism = sarama.SASLTypeSCRAMSHA512
		sc.Net.SASL.SCRAMClientGeneratorFunc = func() sarama.SCRAMClient { return &scramClient{hash: scram.SHA512} }
	default:
		return fmt.Errorf("kafka: unknown SASL mechanism %q", s.SASL.Mechanism)
	}
	return nil
}

// scramClient is sarama's SCRAM conversation over xdg-go/scram, as in
// sarama's own SCRAM example.
type scramClient struct {
	hash scram.HashGeneratorFcn
	conv *scram.ClientConversation
}

func (c *scramClient) Begin(user, password, authzID string) error {
	client, err := c.hash.NewClient(user, password, authzID)
	if err != nil {
		return fmt.Errorf("kafka: SCRAM: %w", err) // names neither the password nor any part of it
	}
	c.conv = client.NewConversation()
	return nil
}

func (c *scramClient) Step(challenge string) (string, error) { return c.conv.Step(challenge) }

func (c *scramClient) Done() bool { return c.conv.Done() }

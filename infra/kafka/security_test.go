package kafka_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ThreeDotsLabs/watermill"
	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/twmb/franz-go/pkg/kgo"

	"rxflow/infra/config"
	"rxflow/infra/kafka"
	"rxflow/infra/kafka/kafkatest"
	"rxflow/infra/kafka/kgoopts"
	"rxflow/standin/kafkabroker"
)

// password is every test's SASL password; no error or log may show it.
const password = "pw-s3cret-do-not-show"

// refuseLimit bounds a refused connection: an error, never a hang.
const refuseLimit = 30 * time.Second

func noPassword(t *testing.T, what, s string) {
	t.Helper()
	if strings.Contains(s, password) {
		t.Errorf("%s shows the password: %s", what, s)
	}
}

func TestSecurityValidate(t *testing.T) {
	pki := kafkatest.NewPKI(t)
	dir := t.TempDir()
	notPEM := filepath.Join(dir, "not.pem")
	if err := os.WriteFile(notPEM, []byte("not a certificate\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	missing := filepath.Join(dir, "missing.pem")
	unreadable := filepath.Join(dir, "unreadable.pem")
	if err := os.Mkdir(unreadable, 0o700); err != nil { // a directory: unreadable as a file, also for root
		t.Fatal(err)
	}
	scram := func(m string) kafka.SASL { return kafka.SASL{Mechanism: m, User: "rx", Password: password} }
	tlsOn := kafka.TLS{Enable: true}

	for _, c := range []struct {
		name string
		sec  kafka.Security
		want []string // each must be in the error; none: valid
	}{
		{name: "plaintext", sec: kafka.Security{}},
		{name: "TLS with the system roots", sec: kafka.Security{TLS: tlsOn}},
		{name: "TLS with a CA file", sec: kafka.Security{TLS: pki.ClientTLS(false)}},
		{name: "mTLS", sec: kafka.Security{TLS: pki.ClientTLS(true)}},
		{name: "server name alone turns TLS on", sec: kafka.Security{TLS: kafka.TLS{ServerName: "kafka.example.com"}, SASL: scram(kafka.MechanismPlain)}},
		{name: "TLS and PLAIN", sec: kafka.Security{TLS: tlsOn, SASL: scram(kafka.MechanismPlain)}},
		{name: "TLS and SCRAM-SHA-256", sec: kafka.Security{TLS: tlsOn, SASL: scram(kafka.MechanismSCRAMSHA256)}},
		{name: "TLS and SCRAM-SHA-512", sec: kafka.Security{TLS: tlsOn, SASL: scram(kafka.MechanismSCRAMSHA512)}},
		{name: "PLAIN without TLS, allowed", sec: kafka.Security{SASL: kafka.SASL{Mechanism: kafka.MechanismPlain, User: "rx", Password: password, AllowWithoutTLS: true}}},

		{name: "CA file missing", sec: kafka.Security{TLS: kafka.TLS{CAFile: missing}}, want: []string{"CA file", missing, "no such file"}},
		{name: "CA file unreadable", sec: kafka.Security{TLS: kafka.TLS{CAFile: unreadable}}, want: []string{"CA file", unreadable}},
		{name: "CA file not PEM", sec: kafka.Security{TLS: kafka.TLS{CAFile: notPEM}}, want: []string{notPEM, "holds no PEM certificate"}},
		{name: "certificate without key", sec: kafka.Security{TLS: kafka.TLS{CertFile: pki.ClientCertFile}}, want: []string{pki.ClientCertFile, "has no key file"}},
		{name: "key without certificate", sec: kafka.Security{TLS: kafka.TLS{KeyFile: pki.ClientKeyFile}}, want: []string{pki.ClientKeyFile, "has no certificate file"}},
		{name: "certificate and key do not match", sec: kafka.Security{TLS: kafka.TLS{CertFile: pki.ClientCertFile, KeyFile: pki.ServerKeyFile}},
			want: []string{pki.ClientCertFile, "private key does not match public key"}},
		{name: "certificate file missing", sec: kafka.Security{TLS: kafka.TLS{CertFile: missing, KeyFile: pki.ClientKeyFile}}, want: []string{missing, "no such file"}},
		{name: "unknown mechanism", sec: kafka.Security{TLS: tlsOn, SASL: scram("GSSAPI")}, want: []string{`unknown SASL mechanism "GSSAPI"`, "SCRAM-SHA-512"}},
		{name: "lower-case mechanism", sec: kafka.Security{TLS: tlsOn, SASL: scram("plain")}, want: []string{`unknown SASL mechanism "plain"`}},
		{name: "user without password", sec: kafka.Security{TLS: tlsOn, SASL: kafka.SASL{Mechanism: kafka.MechanismSCRAMSHA256, User: "rx"}},
			want: []string{"SASL SCRAM-SHA-256 needs a password"}},
		{name: "password without user", sec: kafka.Security{TLS: tlsOn, SASL: kafka.SASL{Mechanism: kafka.MechanismPlain, Password: password}},
			want: []string{"SASL PLAIN needs a user"}},
		{name: "PLAIN without TLS", sec: kafka.Security{SASL: scram(kafka.MechanismPlain)}, want: []string{"SASL PLAIN without TLS is refused"}},
		{name: "SCRAM without TLS", sec: kafka.Security{SASL: scram(kafka.MechanismSCRAMSHA512)}, want: []string{"SASL SCRAM-SHA-512 without TLS is refused"}},
		{name: "user and password without mechanism", sec: kafka.Security{TLS: tlsOn, SASL: kafka.SASL{User: "rx", Password: password}},
			want: []string{"SASL user or password is set but no SASL mechanism"}},
		{name: "allowed without TLS but no SASL", sec: kafka.Security{SASL: kafka.SASL{AllowWithoutTLS: true}}, want: []string{"no SASL mechanism"}},
		{name: "every problem at once", sec: kafka.Security{TLS: kafka.TLS{CAFile: missing, CertFile: pki.ClientCertFile}, SASL: kafka.SASL{Mechanism: kafka.MechanismPlain, Password: password}},
			want: []string{"CA file", "has no key file", "needs a user"}},
	} {
		t.Run(c.name, func(t *testing.T) {
			err := c.sec.Validate()
			cfgErr := kafka.Config{Brokers: []string{"127.0.0.1:9092"}, Security: c.sec}.Validate()
			if len(c.want) == 0 {
				if err != nil || cfgErr != nil {
					t.Errorf("valid settings refused: %v / %v", err, cfgErr)
				}
				return
			}
			if err == nil || cfgErr == nil {
				t.Fatalf("invalid settings passed: Security.Validate %v, Config.Validate %v", err, cfgErr)
			}
			if err.Error() != cfgErr.Error() {
				t.Errorf("Config.Validate says %q, Security.Validate %q", cfgErr, err)
			}
			for _, w := range c.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not say %q", err, w)
				}
			}
			noPassword(t, "error", err.Error())
		})
	}

	// Config.Validate reports the other problems beside the security ones.
	err := kafka.Config{Brokers: []string{"no-port"}, MaxMessageBytes: -1,
		Security: kafka.Security{SASL: scram(kafka.MechanismPlain)}}.Validate()
	for _, w := range []string{`"no-port"`, "MaxMessageBytes -1", "without TLS is refused"} {
		if err == nil || !strings.Contains(err.Error(), w) {
			t.Errorf("error %v does not say %q", err, w)
		}
	}
}

// The password shows as "[redacted]" however a Config is printed, logged
// or encoded.
func TestPasswordRedacted(t *testing.T) {
	cfg := kafka.Config{Brokers: []string{"b:9093"}, Security: kafka.Security{
		TLS: kafka.TLS{Enable: true}, SASL: kafka.SASL{Mechanism: kafka.MechanismSCRAMSHA512, User: "rx", Password: password}}}
	var logs bytes.Buffer
	slog.New(slog.NewJSONHandler(&logs, nil)).Info("cfg", "kafka", cfg, "password", cfg.Security.SASL.Password)
	slog.New(slog.NewTextHandler(&logs, nil)).Info("cfg", "kafka", cfg, "password", cfg.Security.SASL.Password)
	js, err := json.Marshal(cfg)
	if err != nil {
		t.Fatal(err)
	}
	for _, out := range []string{
		fmt.Sprint(cfg), fmt.Sprintf("%+v", cfg), fmt.Sprintf("%#v", cfg), fmt.Sprintf("%s", cfg.Security.SASL.Password),
		fmt.Sprintf("%q", cfg.Security.SASL.Password), logs.String(), string(js),
	} {
		noPassword(t, "output", out)
		if !strings.Contains(out, "[redacted]") {
			t.Errorf("output does not say the password is redacted: %s", out)
		}
	}
	if fmt.Sprintf("%x", cfg.Security.SASL.Password) == fmt.Sprintf("%x", password) {
		t.Error("the hex verb shows the password in hexadecimal")
	}
	if cfg.Security.SASL.Password.Reveal() != password {
		t.Error("Reveal does not return the password")
	}
}

// SecurityFlags reads every setting from the environment or a flag, and
// Environ gives a child process the same settings.
func TestSecurityFlags(t *testing.T) {
	for _, env := range kafka.SecurityEnv {
		t.Setenv(env, "") // "" is unset
	}
	dir := t.TempDir()
	pwFile := filepath.Join(dir, "password")
	if err := os.WriteFile(pwFile, []byte(password+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	parse := func(args ...string) (kafka.Security, error) {
		f := config.NewFlags("test")
		sec := kafka.SecurityFlags(f)
		if err := f.Parse(args); err != nil {
			return kafka.Security{}, err
		}
		return sec()
	}

	if s, err := parse(); err != nil || s != (kafka.Security{}) {
		t.Errorf("nothing set: %+v, %v; want PLAINTEXT", s, err)
	}

	want := kafka.Security{
		TLS:  kafka.TLS{Enable: true, CAFile: "/ca.pem", CertFile: "/c.pem", KeyFile: "/k.pem", ServerName: "kafka.internal"},
		SASL: kafka.SASL{Mechanism: kafka.MechanismSCRAMSHA256, User: "rx", Password: password},
	}
	s, err := parse("-kafka-tls", "-kafka-tls-ca-file", "/ca.pem", "-kafka-tls-cert-file", "/c.pem", "-kafka-tls-key-file", "/k.pem",
		"-kafka-tls-server-name", "kafka.internal", "-kafka-sasl-mechanism", "scram-sha-256", "-kafka-sasl-user", "rx",
		"-kafka-sasl-password-file", pwFile)
	if err != nil || s != want {
		t.Errorf("flags: %#v, %v\nwant %#v", s, err, want)
	}

	// The same from the environment, as a child gets it from Environ.
	for _, kv := range want.Environ() {
		k, v, _ := strings.Cut(kv, "=")
		if !slices.Contains(kafka.SecurityEnv, k) {
			t.Errorf("Environ sets %s, which SecurityFlags does not read", k)
		}
		t.Setenv(k, v)
	}
	if s, err := parse(); err != nil || s != want {
		t.Errorf("environment: %#v, %v\nwant %#v", s, err, want)
	}
	if s.SASL.Password.Reveal() != password {
		t.Errorf("password from the environment %q", s.SASL.Password.Reveal())
	}

	t.Setenv(kafka.EnvSASLPasswordFile, pwFile)
	if _, err := parse(); err == nil || !strings.Contains(err.Error(), "both set") {
		t.Errorf("password and password file: %v, want an error", err)
	} else {
		noPassword(t, "error", err.Error())
	}
	t.Setenv(kafka.EnvSASLPassword, "")
	t.Setenv(kafka.EnvSASLPasswordFile, filepath.Join(dir, "missing"))
	if _, err := parse(); err == nil || !strings.Contains(err.Error(), "KAFKA_SASL_PASSWORD_FILE") {
		t.Errorf("missing password file: %v, want an error naming KAFKA_SASL_PASSWORD_FILE", err)
	}
	t.Setenv(kafka.EnvSASLPasswordFile, "")
	t.Setenv(kafka.EnvSASLAllowWithoutTLS, "maybe")
	if _, err := parse(); err == nil || !strings.Contains(err.Error(), "KAFKA_SASL_ALLOW_WITHOUT_TLS") {
		t.Errorf("malformed boolean: %v, want an error naming KAFKA_SASL_ALLOW_WITHOUT_TLS", err)
	}
	t.Setenv(kafka.EnvSASLAllowWithoutTLS, "true")
	if s, err := parse(); err != nil || !s.SASL.AllowWithoutTLS {
		t.Errorf("KAFKA_SASL_ALLOW_WITHOUT_TLS=true: %+v, %v", s, err)
	}

	// -h shows the flags, never the password.
	t.Setenv(kafka.EnvSASLPassword, password)
	f := config.NewFlags("test")
	kafka.SecurityFlags(f)
	var usage bytes.Buffer
	f.SetOutput(&usage)
	f.PrintDefaults()
	noPassword(t, "usage", usage.String())
	for _, env := range kafka.SecurityEnv {
		if !strings.Contains(usage.String(), "(env "+env+")") {
			t.Errorf("usage has no flag for %s", env)
		}
	}
}

// secure is one way of reaching a secured embedded broker.
type secure struct {
	name   string
	server func(p *kafkatest.PKI) *kafkabroker.Config
	client func(p *kafkatest.PKI) kafka.Security
}

var users = []kafkabroker.User{
	{Mechanism: kafka.MechanismPlain, Name: "rx-plain", Password: password},
	{Mechanism: kafka.MechanismSCRAMSHA256, Name: "rx-256", Password: password},
	{Mechanism: kafka.MechanismSCRAMSHA512, Name: "rx-512", Password: password},
}

func tlsBroker(p *kafkatest.PKI) *kafkabroker.Config {
	return &kafkabroker.Config{TLS: p.ServerTLS()}
}

func saslBroker(p *kafkatest.PKI) *kafkabroker.Config {
	return &kafkabroker.Config{TLS: p.ServerTLS(), Users: users}
}

func mtlsBroker(p *kafkatest.PKI) *kafkabroker.Config {
	return &kafkabroker.Config{TLS: p.ServerMTLS()}
}

func withSASL(mechanism, user string) func(p *kafkatest.PKI) kafka.Security {
	return func(p *kafkatest.PKI) kafka.Security {
		return kafka.Security{TLS: p.ClientTLS(false), SASL: kafka.SASL{Mechanism: mechanism, User: user, Password: password}}
	}
}

func start(t *testing.T, cfg *kafkabroker.Config) []string {
	t.Helper()
	return kafkatest.SecureBrokers(t, cfg.TLS, cfg.Users...)
}

// Publishing and consuming through the project's publisher and subscriber,
// and through kafkatest's franz-go clients, over TLS, TLS with each SASL
// mechanism, and mTLS.
func TestSecurePublishSubscribe(t *testing.T) {
	for _, c := range []secure{
		{name: "TLS", server: tlsBroker, client: func(p *kafkatest.PKI) kafka.Security { return kafka.Security{TLS: p.ClientTLS(false)} }},
		{name: "TLS with the server name given", server: tlsBroker, client: func(p *kafkatest.PKI) kafka.Security {
			return kafka.Security{TLS: kafka.TLS{CAFile: p.CAFile, ServerName: "localhost"}}
		}},
		{name: "TLS and SASL PLAIN", server: saslBroker, client: withSASL(kafka.MechanismPlain, "rx-plain")},
		{name: "TLS and SCRAM-SHA-256", server: saslBroker, client: withSASL(kafka.MechanismSCRAMSHA256, "rx-256")},
		{name: "TLS and SCRAM-SHA-512", server: saslBroker, client: withSASL(kafka.MechanismSCRAMSHA512, "rx-512")},
		{name: "mTLS", server: mtlsBroker, client: func(p *kafkatest.PKI) kafka.Security { return kafka.Security{TLS: p.ClientTLS(true)} }},
	} {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			pki := kafkatest.NewPKI(t)
			cfg := kafka.Config{Brokers: start(t, c.server(pki)), ConsumerGroup: "g-secure", Security: c.client(pki)}
			roundTrip(t, cfg, "secure")
		})
	}
}

// roundTrip creates topic, publishes two messages through NewPublisher
// and one through kafkatest, consumes the three through NewSubscriber, and
// reads them and the committed offsets back through kafkatest.
func roundTrip(t *testing.T, cfg kafka.Config, topic string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	if err := kafka.EnsureTopics(ctx, cfg, 1, topic); err != nil {
		t.Fatalf("EnsureTopics: %v", err)
	}
	var logs logBuffer
	logger := watermill.NewSlogLogger(slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug})))
	pub, err := kafka.NewPublisher(cfg, logger)
	if err != nil {
		t.Fatalf("NewPublisher: %v", err)
	}
	for i := range 2 {
		m := message.NewMessage(watermill.NewUUID(), fmt.Appendf(nil, "published-%d", i))
		m.Metadata.Set(kafka.MetadataKey, "rx-1")
		if err := pub.Publish(topic, m); err != nil {
			t.Fatalf("Publish: %v", err)
		}
	}
	if err := pub.Close(); err != nil {
		t.Fatal(err)
	}
	kafkatest.ProduceWith(t, cfg, topic, kafkatest.Record{Key: []byte("rx-1"), Value: []byte("produced")})

	sub, err := kafka.NewSubscriber(cfg, logger)
	if err != nil {
		t.Fatalf("NewSubscriber: %v", err)
	}
	msgs, err := sub.Subscribe(ctx, topic)
	if err != nil {
		t.Fatalf("Subscribe: %v", err)
	}
	var got []string
	for len(got) < 3 {
		select {
		case m := <-msgs:
			got = append(got, string(m.Payload))
			m.Ack()
		case <-ctx.Done():
			t.Fatalf("consumed %v, then nothing", got)
		}
	}
	if want := []string{"published-0", "published-1", "produced"}; !slices.Equal(got, want) {
		t.Errorf("consumed %v, want %v", got, want)
	}
	if recs := kafkatest.ConsumeAllWith(t, cfg, topic); len(recs) != 3 {
		t.Errorf("kafkatest read %d records, want 3", len(recs))
	}
	// The subscriber commits the acked offsets every second.
	for off := map[int32]int64{}; off[0] != 3; off = kafkatest.CommittedOffsetsWith(t, cfg, cfg.ConsumerGroup, topic) {
		select {
		case <-ctx.Done():
			t.Fatalf("committed offsets %v, want partition 0 at 3", off)
		case <-time.After(100 * time.Millisecond):
		}
	}
	if err := sub.Close(); err != nil {
		t.Fatal(err)
	}
	noPassword(t, "logs", logs.String())
}

// Every refused connection is an error, and soon: from NewPublisher (which
// connects), EnsureTopics and Subscribe, and from a franz-go client with
// the same settings. kfake closes the connection on refused SASL
// credentials (EOF), where Apache Kafka answers SASL_AUTHENTICATION_FAILED
// first; the error then names the mechanism and the user it tried, and
// says what a closed connection may mean.
func TestSecureRefusals(t *testing.T) {
	other := kafkatest.NewPKI(t) // an unrelated CA
	for _, c := range []struct {
		secure
		want []string // in NewPublisher's error
	}{
		{secure{name: "wrong SCRAM-SHA-256 password", server: saslBroker, client: func(p *kafkatest.PKI) kafka.Security {
			return kafka.Security{TLS: p.ClientTLS(false), SASL: kafka.SASL{Mechanism: kafka.MechanismSCRAMSHA256, User: "rx-256", Password: "wrong-" + password}}
		}}, []string{"SASL_SSL, SCRAM-SHA-256 as rx-256", "it may have refused the SASL credentials"}},
		{secure{name: "wrong PLAIN password", server: saslBroker, client: func(p *kafkatest.PKI) kafka.Security {
			return kafka.Security{TLS: p.ClientTLS(false), SASL: kafka.SASL{Mechanism: kafka.MechanismPlain, User: "rx-plain", Password: "wrong-" + password}}
		}}, []string{"SASL_SSL, PLAIN as rx-plain", "it may have refused the SASL credentials"}},
		{secure{name: "unknown user", server: saslBroker, client: withSASL(kafka.MechanismSCRAMSHA512, "nobody")}, []string{"SASL_SSL, SCRAM-SHA-512 as nobody", "it may have refused the SASL credentials"}},
		{secure{name: "no SASL where the broker wants it", server: saslBroker, client: func(p *kafkatest.PKI) kafka.Security {
			return kafka.Security{TLS: p.ClientTLS(false)}
		}}, []string{"(SSL)", "its listener may require SASL"}},
		{secure{name: "plaintext to a TLS listener", server: tlsBroker, client: func(*kafkatest.PKI) kafka.Security {
			return kafka.Security{}
		}}, []string{"its listener may require TLS"}},
		{secure{name: "wrong server name", server: tlsBroker, client: func(p *kafkatest.PKI) kafka.Security {
			return kafka.Security{TLS: kafka.TLS{CAFile: p.CAFile, ServerName: "kafka.example.com"}}
		}}, []string{"(SSL)", "certificate is valid for", "not kafka.example.com"}},
		{secure{name: "CA not matching", server: tlsBroker, client: func(p *kafkatest.PKI) kafka.Security {
			return kafka.Security{TLS: other.ClientTLS(false)}
		}}, []string{"certificate signed by unknown authority"}},
		{secure{name: "system roots for a private CA", server: tlsBroker, client: func(p *kafkatest.PKI) kafka.Security {
			return kafka.Security{TLS: kafka.TLS{Enable: true}}
		}}, []string{"certificate signed by unknown authority"}},
		{secure{name: "mTLS without a client certificate", server: mtlsBroker, client: func(p *kafkatest.PKI) kafka.Security {
			return kafka.Security{TLS: p.ClientTLS(false)}
		}}, []string{"certificate required"}},
		{secure{name: "mTLS with a client certificate of another CA", server: mtlsBroker, client: func(p *kafkatest.PKI) kafka.Security {
			return kafka.Security{TLS: kafka.TLS{CAFile: p.CAFile, CertFile: other.ClientCertFile, KeyFile: other.ClientKeyFile}}
		}}, []string{"SSL, client certificate ", "certificate required"}},
	} {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			pki := kafkatest.NewPKI(t)
			cfg := kafka.Config{Brokers: start(t, c.server(pki)), ConsumerGroup: "g-refused", Security: c.client(pki)}
			refused(t, "NewPublisher", c.want, func() error {
				pub, err := kafka.NewPublisher(cfg, watermill.NopLogger{})
				if pub != nil {
					_ = pub.Close()
				}
				return err
			})
			refused(t, "EnsureTopics", nil, func() error {
				ctx, cancel := context.WithTimeout(context.Background(), refuseLimit)
				defer cancel()
				return kafka.EnsureTopics(ctx, cfg, 1, "refused")
			})
			refused(t, "franz-go client (kgoopts)", nil, func() error {
				opts, err := kgoopts.Security(cfg.Security)
				if err != nil {
					return err
				}
				cl, err := kgo.NewClient(append(opts, kgo.SeedBrokers(cfg.Brokers...))...)
				if err != nil {
					return err
				}
				defer cl.Close()
				ctx, cancel := context.WithTimeout(context.Background(), refuseLimit)
				defer cancel()
				return cl.Ping(ctx)
			})
			refused(t, "Subscribe", nil, func() error {
				sub, err := kafka.NewSubscriber(cfg, watermill.NopLogger{})
				if err != nil {
					return err
				}
				defer sub.Close()
				_, err = sub.Subscribe(context.Background(), "refused")
				return err
			})
		})
	}
}

// refused runs f and wants an error within refuseLimit holding each of want
// and not the password; it returns the error.
func refused(t *testing.T, what string, want []string, f func() error) error {
	t.Helper()
	done := make(chan error, 1)
	start := time.Now()
	go func() { done <- f() }()
	select {
	case err := <-done:
		if err == nil {
			t.Errorf("%s succeeded", what)
			return nil
		}
		t.Logf("%s refused after %v: %v", what, time.Since(start).Round(time.Millisecond), err)
		for _, w := range want {
			if !strings.Contains(err.Error(), w) {
				t.Errorf("%s: error %q does not say %q", what, err, w)
			}
		}
		noPassword(t, what+" error", err.Error())
		return err
	case <-time.After(refuseLimit):
		t.Fatalf("%s neither connected nor failed within %v", what, refuseLimit)
		return nil
	}
}

// logBuffer is a log destination safe for concurrent writers.
type logBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *logBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *logBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

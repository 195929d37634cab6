package kafka_test

import (
	"context"
	"crypto/x509"
	"errors"
	"io"
	"strings"
	"testing"

	"github.com/IBM/sarama"
	"github.com/ThreeDotsLabs/watermill"
	"github.com/twmb/franz-go/pkg/kgo"

	"rxflow/infra/kafka"
	"rxflow/infra/kafka/kafkatest"
	"rxflow/infra/kafka/kgoopts"
)

// Publishing and consuming through the project's publisher and subscriber,
// and through kafkatest's franz-go clients, on a real Apache Kafka's
// SASL_SSL listener (KAFKA_SASL_SSL_*), once per mechanism it accepts.
func TestRealBrokerSASLSSL(t *testing.T) {
	l := kafkatest.RequireSASLSSL(t)
	for _, mechanism := range l.Mechanisms {
		t.Run(mechanism, func(t *testing.T) {
			cfg := kafka.Config{Brokers: l.Brokers, ConsumerGroup: kafkatest.UniqueGroup(t, "g-sasl-ssl"), Security: l.Security(mechanism)}
			roundTrip(t, cfg, kafkatest.UniqueTopic(t, "sasl-ssl"))
		})
	}
}

// On a real Apache Kafka's SASL_SSL listener, a wrong password, an unknown
// user, a CA that did not sign the broker's certificate, a server name the
// certificate does not carry and a client without SASL are each an error
// soon (sarama's dial, read and metadata retry bounds), never a hang, saying
// what was refused and never the password: Kafka's
// SASL_AUTHENTICATION_FAILED for the credentials, Go's x509 errors for the
// certificate, and the connection the broker closes (EOF) for a client that
// skips SASL.
func TestRealBrokerSASLSSLRefusals(t *testing.T) {
	l := kafkatest.RequireSASLSSL(t)
	other := kafkatest.NewPKI(t) // an unrelated CA
	type refusal struct {
		name     string
		security kafka.Security
		want     []string // in the errors of NewPublisher and EnsureTopics, which name the brokers and how they were reached
		reason   string   // in Subscribe's error too: watermill's subscriber says only why
		is       func(error) bool
	}
	authFailed := func(err error) bool { return errors.Is(err, sarama.ErrSASLAuthenticationFailed) }
	unknownCA := func(err error) bool { var e x509.UnknownAuthorityError; return errors.As(err, &e) }
	var cases []refusal
	for _, m := range l.Mechanisms {
		wrong := l.Security(m)
		wrong.SASL.Password = "wrong-" + l.Password
		cases = append(cases, refusal{name: m + " wrong password", security: wrong,
			want: []string{"SASL_SSL, " + m + " as " + l.User, "SASL Authentication failed"}, reason: "SASL Authentication failed", is: authFailed})
	}
	nobody := l.Security(l.Mechanisms[0])
	nobody.SASL.User = "nobody-" + l.User
	cases = append(cases, refusal{name: "unknown user", security: nobody,
		want: []string{"SASL_SSL, " + l.Mechanisms[0] + " as nobody-" + l.User, "SASL Authentication failed"}, reason: "SASL Authentication failed", is: authFailed})
	untrusted := l.Security(l.Mechanisms[0])
	untrusted.TLS.CAFile = other.CAFile
	cases = append(cases, refusal{name: "untrusted CA", security: untrusted,
		want: []string{"SASL_SSL", "certificate signed by unknown authority"}, reason: "certificate signed by unknown authority", is: unknownCA})
	wrongName := l.Security(l.Mechanisms[0])
	wrongName.TLS.ServerName = "kafka.example.com"
	cases = append(cases, refusal{name: "wrong server name", security: wrongName,
		want: []string{"SASL_SSL", "not kafka.example.com"}, reason: "not kafka.example.com", is: func(err error) bool { var e x509.HostnameError; return errors.As(err, &e) }})
	noSASL := l.Security(l.Mechanisms[0])
	noSASL.SASL = kafka.SASL{}
	cases = append(cases, refusal{name: "TLS without SASL", security: noSASL,
		want: []string{"(SSL)", "EOF", "its listener may require SASL"}, reason: "EOF", is: func(err error) bool { return errors.Is(err, io.EOF) }})

	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			cfg := kafka.Config{Brokers: l.Brokers, ConsumerGroup: kafkatest.UniqueGroup(t, "g-refused"), Security: c.security}
			topic := kafkatest.UniqueTopic(t, "refused")
			check := func(what string, err error, class bool) {
				t.Helper()
				if err == nil {
					return // refused has reported it
				}
				if strings.Contains(err.Error(), l.Password.Reveal()) {
					t.Errorf("%s: error shows the password: %v", what, err)
				}
				if class && !c.is(err) {
					t.Errorf("%s: error %v (%T) is not of the expected class", what, err, err)
				}
			}
			err := refused(t, "NewPublisher", c.want, func() error {
				pub, err := kafka.NewPublisher(cfg, watermill.NopLogger{})
				if pub != nil {
					_ = pub.Close()
				}
				return err
			})
			check("NewPublisher", err, true)
			err = refused(t, "EnsureTopics", c.want, func() error {
				ctx, cancel := context.WithTimeout(context.Background(), refuseLimit)
				defer cancel()
				return kafka.EnsureTopics(ctx, cfg, 1, topic)
			})
			check("EnsureTopics", err, true)
			err = refused(t, "Subscribe", []string{c.reason}, func() error {
				sub, err := kafka.NewSubscriber(cfg, watermill.NopLogger{})
				if err != nil {
					return err
				}
				defer sub.Close()
				_, err = sub.Subscribe(context.Background(), topic)
				return err
			})
			check("Subscribe", err, false)
			err = refused(t, "franz-go client (kgoopts)", nil, func() error {
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
			check("franz-go client", err, false)
		})
	}
}

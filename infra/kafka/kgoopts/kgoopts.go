// Package kgoopts turns kafka.Security into franz-go client options, for the
// tools and test helpers that reach Kafka with franz-go (cmd/bench's
// producers, kafkatest) rather than through infra/kafka's sarama clients:
// the same settings then hold for both clients. The services never use it.
package kgoopts

import (
	"fmt"

	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/sasl/plain"
	"github.com/twmb/franz-go/pkg/sasl/scram"

	"rxflow/infra/kafka"
)

// Security returns the options that make a franz-go client use s: TLS with
// the broker's certificate verified, and SASL. It reports a setting that
// kafka.Config.Validate would refuse, such as SASL without TLS unless
// allowed, or a TLS file that cannot be read.
func Security(s kafka.Security) ([]kgo.Opt, error) {
	if err := s.Validate(); err != nil {
		return nil, err
	}
	var opts []kgo.Opt
	tc, err := s.TLSConfig()
	if err != nil {
		return nil, err
	}
	if tc != nil {
		opts = append(opts, kgo.DialTLSConfig(tc))
	}
	if !s.SASL.On() {
		return opts, nil
	}
	user, pass := s.SASL.User, s.SASL.Password.Reveal()
	switch s.SASL.Mechanism {
	case kafka.MechanismPlain:
		opts = append(opts, kgo.SASL(plain.Auth{User: user, Pass: pass}.AsMechanism()))
	case kafka.MechanismSCRAMSHA256:
		opts = append(opts, kgo.SASL(scram.Auth{User: user, Pass: pass}.AsSha256Mechanism()))
	case kafka.MechanismSCRAMSHA512:
		opts = append(opts, kgo.SASL(scram.Auth{User: user, Pass: pass}.AsSha512Mechanism()))
	default:
		return nil, fmt.Errorf("kafka: unknown SASL mechanism %q", s.SASL.Mechanism)
	}
	return opts, nil
}

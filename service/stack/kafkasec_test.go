package stack_test

import (
	"context"
	"io"
	"log/slog"
	"strings"
	"testing"

	"rxflow/infra/kafka"
	"rxflow/infra/kafka/kafkatest"
	"rxflow/projections"
	"rxflow/service/stack"
	"rxflow/standin/kafkabroker"
)

// The seed's scenarios, played by the processor, the projector and the
// demo's publisher over TLS and SCRAM-SHA-512, against a broker that speaks
// nothing else.
func TestDemoOverTLSAndSCRAM(t *testing.T) {
	pki := kafkatest.NewPKI(t)
	const user, password = "rxflow", "stack-s3cret"
	brokers := kafkatest.SecureBrokers(t, pki.ServerTLS(), kafkabroker.User{Mechanism: kafka.MechanismSCRAMSHA512, Name: user, Password: password})
	security := kafka.Security{TLS: pki.ClientTLS(false), SASL: kafka.SASL{Mechanism: kafka.MechanismSCRAMSHA512, User: user, Password: password}}
	changed := kafkatest.UniqueTopic(t, "changed")
	s, err := stack.Start(stack.Config{
		DataDir: t.TempDir(), Brokers: brokers, KafkaSecurity: security, Token: token,
		ESDBAddr: "127.0.0.1:0", PartnersAddr: "127.0.0.1:0", APIAddr: "127.0.0.1:0", ProcessorAddr: "127.0.0.1:0",
		Topics: stack.Topics{Outbound: projections.OutboundTopics{StatusChanged: changed}},
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil)),
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := s.Close(); err != nil {
			t.Errorf("stack: %v", err)
		}
	})
	var out strings.Builder
	if err := s.Demo(context.Background(), &out); err != nil {
		t.Fatalf("%v\n%s", err, out.String())
	}
	for _, want := range []string{"status completed", "status rejected", "status failed", "prescription.dispense refused", "status approved"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("demo output lacks %q:\n%s", want, out.String())
		}
	}
	if recs := kafkatest.ConsumeAllWith(t, kafka.Config{Brokers: brokers, Security: security}, changed); len(recs) == 0 {
		t.Error("no status change published on the secured broker")
	}
}

// The embedded broker has no TLS or SASL: settings for them without
// Brokers are a mistake, reported.
func TestKafkaSecurityNeedsBrokers(t *testing.T) {
	_, err := stack.Start(stack.Config{DataDir: t.TempDir(), Token: token,
		KafkaSecurity: kafka.Security{TLS: kafka.TLS{Enable: true}}})
	if err == nil || !strings.Contains(err.Error(), "KafkaSecurity needs Brokers") {
		t.Errorf("error %v, want one saying KafkaSecurity needs Brokers", err)
	}
}

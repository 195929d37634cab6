package stack_test

import (
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"strings"
	"testing"

	"rxflow/infra/kafka"
	"rxflow/infra/kafka/kafkatest"
	"rxflow/projections"
	"rxflow/service/stack"
)

// The seed's scenarios (the happy path first) played by the processor, the
// projector and the demo's publisher on a real Apache Kafka's SASL_SSL
// listener (KAFKA_SASL_SSL_*), once per SASL mechanism it accepts: every
// command, refusal and outbound event crosses TLS with SASL.
func TestDemoOnRealBrokerSASLSSL(t *testing.T) {
	l := kafkatest.RequireSASLSSL(t)
	for _, mechanism := range l.Mechanisms {
		t.Run(mechanism, func(t *testing.T) {
			security := l.Security(mechanism)
			topics := stack.Topics{
				Commands: kafkatest.UniqueTopic(t, "cmd"), Rejections: kafkatest.UniqueTopic(t, "rej"), DeadLetters: kafkatest.UniqueTopic(t, "dlq"),
				ConsumerGroup: kafkatest.UniqueGroup(t, "proc"),
				Outbound: projections.OutboundTopics{Dispensed: kafkatest.UniqueTopic(t, "dispensed"), Failed: kafkatest.UniqueTopic(t, "failed"),
					StatusChanged: kafkatest.UniqueTopic(t, "changed")},
			}
			s, err := stack.Start(stack.Config{
				DataDir: t.TempDir(), Brokers: l.Brokers, KafkaSecurity: security, Token: token,
				ESDBAddr: "127.0.0.1:0", PartnersAddr: "127.0.0.1:0", APIAddr: "127.0.0.1:0", ProcessorAddr: "127.0.0.1:0",
				Topics: topics, Logger: slog.New(slog.NewTextHandler(io.Discard, nil)),
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
			cfg := kafka.Config{Brokers: l.Brokers, Security: security}
			dispensed := kafkatest.ConsumeAllWith(t, cfg, topics.Outbound.Dispensed)
			if len(dispensed) != 1 {
				t.Fatalf("%d records on the dispensed topic, want the happy path's one", len(dispensed))
			}
			var d struct{ URN, PatientID, PharmacyID string }
			if err := json.Unmarshal(dispensed[0].Value, &d); err != nil || !strings.HasPrefix(d.URN, "urn:rx:demo-happy-") || string(dispensed[0].Key) != d.URN {
				t.Errorf("dispensed record %s (key %q) is not the happy path's dispensed event keyed by its urn: %v", dispensed[0].Value, dispensed[0].Key, err)
			}
			if recs := kafkatest.ConsumeAllWith(t, cfg, topics.Rejections); len(recs) == 0 {
				t.Error("no refusal on the rejections topic of the secured listener")
			}
			if recs := kafkatest.ConsumeAllWith(t, cfg, topics.Outbound.StatusChanged); len(recs) == 0 {
				t.Error("no status change on the secured listener")
			}
		})
	}
}

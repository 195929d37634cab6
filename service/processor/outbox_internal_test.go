package processor

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"rxflow/commands"
	"rxflow/infra/kafka"
	"rxflow/infra/kafka/kafkatest"
)

// A refusal too large to publish is not an outage: it must not wait
// forever (the poison filter then dead-letters its command), and a refusal
// keeps the command's size: "<" is not escaped to six bytes.
func TestRefusalTooLargeIsNotAnOutage(t *testing.T) {
	brokers := kafkatest.Brokers(t)
	cfg := kafka.Config{Brokers: brokers, MaxMessageBytes: 4 << 10}
	pub, err := kafka.NewPublisher(cfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = pub.Close() })
	topic := kafkatest.UniqueTopic(t, "rej")
	o := &outbox{pub: pub, rejectionTopic: topic, maxBytes: cfg.MaxMessageBytes, clock: time.Now}
	refusal := func(n int) commands.RefusalMessage {
		return commands.RefusalMessage{URN: "urn:rx:big", Event: "prescription.complete", CommandID: "c1", Code: "final_state",
			Command: []byte(`{"urn":"urn:rx:big","event":"prescription.complete","x":"` + strings.Repeat("<", n) + `"}`)}
	}
	if err := o.Refuse(context.Background(), refusal(3000)); err != nil {
		t.Fatalf("a 3,000-byte command in a 4 KiB message: %v (escaped to 6 bytes a character it would not fit)", err)
	}
	err = o.Refuse(context.Background(), refusal(8000))
	if err == nil || errors.Is(err, commands.ErrUnavailable) || !kafka.TooLarge(err) {
		t.Fatalf("too large: err = %v, want a permanent error, not ErrUnavailable", err)
	}
	got := kafkatest.ConsumeAll(t, brokers, topic)
	if len(got) != 1 || strings.Count(string(got[0].Value), "<") != 3000 {
		t.Fatalf("%d refusals published", len(got))
	}
}

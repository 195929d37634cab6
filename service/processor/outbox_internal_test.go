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

// A record of the retry topic is trusted only when this processor could have
// written it; any other is handled at once as the record it is, so no
// record, forged or corrupt, can hold a retry partition.
func TestDeferredRawTrustsOnlyItsOwnRecords(t *testing.T) {
	now := time.Date(2026, 12, 1, 8, 0, 0, 0, time.UTC)
	delays := []time.Duration{time.Second, 2 * time.Second, 4 * time.Second}
	own := func(edit func(h map[string]string)) commands.Raw {
		h := map[string]string{
			HeaderRetrySourceTopic:     commands.TopicCommands,
			HeaderRetrySourcePartition: "3",
			HeaderRetrySourceOffset:    "42",
			HeaderRetryCount:           "2",
			HeaderRetryNotBefore:       now.Add(2 * time.Second).Format(time.RFC3339Nano),
			"command-id":               "c-1",
		}
		if edit != nil {
			edit(h)
		}
		return commands.Raw{Topic: commands.TopicRetry, Partition: 0, Offset: 7, Value: []byte(`{}`), Headers: h}
	}

	raw, due := deferredRaw(own(nil), commands.TopicCommands, delays, now)
	if raw.Topic != commands.TopicCommands || raw.Partition != 3 || raw.Offset != 42 || raw.Deferrals != 2 ||
		!due.Equal(now.Add(2*time.Second)) || raw.Headers["command-id"] != "c-1" || raw.Headers[HeaderRetryCount] != "" {
		t.Fatalf("own record: %+v due %v, want the original coordinates, 2 deferrals, due in 2s, retry headers removed", raw, due)
	}

	for name, edit := range map[string]func(h map[string]string){
		"due beyond the longest delay": func(h map[string]string) { h[HeaderRetryNotBefore] = now.Add(time.Hour).Format(time.RFC3339Nano) },
		"count beyond the delays":      func(h map[string]string) { h[HeaderRetryCount] = "4" },
		"count zero":                   func(h map[string]string) { h[HeaderRetryCount] = "0" },
		"another source topic":         func(h map[string]string) { h[HeaderRetrySourceTopic] = "elsewhere" },
		"no due time":                  func(h map[string]string) { delete(h, HeaderRetryNotBefore) },
		"malformed partition":          func(h map[string]string) { h[HeaderRetrySourcePartition] = "x" },
		"partition beyond int32":       func(h map[string]string) { h[HeaderRetrySourcePartition] = "4294967296" },
		"malformed offset":             func(h map[string]string) { h[HeaderRetrySourceOffset] = "-" },
	} {
		rec := own(edit)
		raw, due := deferredRaw(rec, commands.TopicCommands, delays, now)
		if !due.IsZero() || raw.Topic != commands.TopicRetry || raw.Offset != 7 || raw.Deferrals != 0 {
			t.Errorf("%s: got %s/%d-%d with %d deferrals due %v, want the record itself, handled at once",
				name, raw.Topic, raw.Partition, raw.Offset, raw.Deferrals, due)
		}
	}
}

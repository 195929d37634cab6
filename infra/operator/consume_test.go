package operator_test

import (
	"testing"
	"time"

	"github.com/ThreeDotsLabs/watermill/message"

	"rxflow/infra/kafka"
	"rxflow/infra/operator"
)

func consumed(payload string) *message.Message {
	m := message.NewMessage("id", []byte(payload))
	m.Metadata.Set(kafka.MetadataTopic, "dlq")
	m.Metadata.Set(kafka.MetadataPartition, "2")
	m.Metadata.Set(kafka.MetadataOffset, "17")
	m.Metadata.Set(kafka.MetadataKey, "urn:rx:1")
	return m
}

// A dead letter is described by its code, error and time; a record that is
// not a dead letter is kept whole, with code "unreadable", never dropped.
func TestDeadLetterOf(t *testing.T) {
	now := time.Date(2026, 12, 1, 3, 0, 0, 0, time.UTC)
	d := operator.DeadLetterOf(consumed(`{"code":"malformed_json","error":"bad","deadLetteredAt":"2026-12-01T02:59:00Z","valueBase64":""}`), now)
	if d.ID != "2-17" || d.Topic != "dlq" || d.Key != "urn:rx:1" || d.Code != "malformed_json" || d.Error != "bad" ||
		!d.At.Equal(now.Add(-time.Minute)) || !d.Received.Equal(now) {
		t.Errorf("dead letter %+v", d)
	}
	for _, raw := range []string{"not json \xff", `{"no":"code"}`} {
		d := operator.DeadLetterOf(consumed(raw), now)
		if d.Code != "unreadable" || string(d.Raw) != raw || d.Error == "" || !d.At.Equal(now) {
			t.Errorf("%q: %+v", raw, d)
		}
	}
}

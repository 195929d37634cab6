package processor

import (
	"context"
	"encoding/json"
	"maps"
	"strconv"

	"github.com/ThreeDotsLabs/watermill"
	"github.com/ThreeDotsLabs/watermill/message"

	"rxflow/commands"
	"rxflow/infra/kafka"
)

// Dead-letter headers, beside the original message's own headers.
const (
	HeaderDLQCode      = "dlq-code"
	HeaderDLQError     = "dlq-error"
	HeaderDLQTopic     = "dlq-topic"
	HeaderDLQPartition = "dlq-partition"
	HeaderDLQOffset    = "dlq-offset"
	// HeaderDLQTruncatedFrom gives the original size of a message too big to
	// copy whole; the original stays at dlq-topic/dlq-partition/dlq-offset.
	HeaderDLQTruncatedFrom = "dlq-truncated-from"
	// HeaderDedupeKey identifies an outbound message for consumers' dedupe.
	HeaderDedupeKey = "dedupe-key"
)

// outbox publishes outcomes to Kafka: rejections as JSON, dead letters as
// the original bytes with the reason in headers.
type outbox struct {
	pub             message.Publisher
	rejectionTopic  string
	deadLetterTopic string
	maxBytes        int // the publisher's message limit
}

// headroom leaves space for headers in a dead letter.
const headroom = 16 << 10

func (o *outbox) Reject(_ context.Context, m commands.RejectionMessage) error {
	body, err := json.Marshal(m)
	if err != nil {
		return err
	}
	msg := message.NewMessage(watermill.NewUUID(), body)
	msg.Metadata.Set(kafka.MetadataKey, m.URN)
	msg.Metadata.Set(HeaderDedupeKey, m.CommandID)
	msg.Metadata.Set(commands.HeaderCommandID, m.CommandID)
	msg.Metadata.Set(commands.HeaderCorrelationID, m.CorrelationID)
	return o.pub.Publish(o.rejectionTopic, msg)
}

func (o *outbox) DeadLetter(_ context.Context, raw commands.Raw, code string, cause error) error {
	value := raw.Value
	if limit := o.maxBytes - headroom; len(value) > limit {
		value = value[:limit]
	}
	msg := message.NewMessage(watermill.NewUUID(), value)
	maps.Copy(msg.Metadata, raw.Headers)
	if len(value) < len(raw.Value) {
		msg.Metadata.Set(HeaderDLQTruncatedFrom, strconv.Itoa(len(raw.Value)))
	}
	if len(raw.Key) > 0 {
		msg.Metadata.Set(kafka.MetadataKey, string(raw.Key))
	}
	source := raw.Topic + "/" + strconv.Itoa(int(raw.Partition)) + "/" + strconv.FormatInt(raw.Offset, 10)
	msg.Metadata.Set(HeaderDedupeKey, source)
	msg.Metadata.Set(HeaderDLQCode, code)
	msg.Metadata.Set(HeaderDLQError, cause.Error())
	msg.Metadata.Set(HeaderDLQTopic, raw.Topic)
	msg.Metadata.Set(HeaderDLQPartition, strconv.Itoa(int(raw.Partition)))
	msg.Metadata.Set(HeaderDLQOffset, strconv.FormatInt(raw.Offset, 10))
	return o.pub.Publish(o.deadLetterTopic, msg)
}

package processor

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"maps"
	"slices"
	"strconv"
	"time"

	"github.com/ThreeDotsLabs/watermill"
	"github.com/ThreeDotsLabs/watermill/message"

	"rxflow/commands"
	"rxflow/infra/kafka"
	"rxflow/infra/telemetry"
)

// Dead-letter headers, beside the JSON body (commands.DeadLetter), for
// consumers that filter on headers. Their values are valid UTF-8.
const (
	HeaderDLQCode      = "dlq-code"
	HeaderDLQError     = "dlq-error" // the first maxHeaderError bytes of the error
	HeaderDLQTopic     = "dlq-topic"
	HeaderDLQPartition = "dlq-partition"
	HeaderDLQOffset    = "dlq-offset"
	// HeaderDedupeKey identifies an outbound message for consumers' dedupe.
	HeaderDedupeKey = "dedupe-key"
)

// Headers of a deferred command on the retry topic: where it first came
// from (so that its derived command id stays the same), the retry number
// and the time it may be handled again (RFC 3339, nanoseconds).
const (
	HeaderRetrySourceTopic     = "retry-source-topic"
	HeaderRetrySourcePartition = "retry-source-partition"
	HeaderRetrySourceOffset    = "retry-source-offset"
	HeaderRetryCount           = "retry-count"
	HeaderRetryNotBefore       = "retry-not-before"
)

var retryHeaders = []string{HeaderRetrySourceTopic, HeaderRetrySourcePartition, HeaderRetrySourceOffset, HeaderRetryCount, HeaderRetryNotBefore}

// outbox publishes outcomes to Kafka: rejections and dead letters as JSON,
// deferred commands as they came, to the retry topic.
type outbox struct {
	pub             message.Publisher
	rejectionTopic  string
	deadLetterTopic string
	retryTopic      string
	maxBytes        int // the publisher's message limit
	clock           func() time.Time
}

// headroom leaves space for headers and the JSON around a dead letter's
// value or a refusal's command.
const headroom = 16 << 10

// maxHeaderError bounds the dlq-error header; the body has the whole error.
const maxHeaderError = 1 << 10

// publish marks a failure as an outage (commands.ErrUnavailable), except a
// message too large to publish, which retrying cannot fix.
func (o *outbox) publish(topic string, msg *message.Message) error {
	err := o.pub.Publish(topic, msg)
	switch {
	case err == nil:
		return nil
	case kafka.TooLarge(err):
		return fmt.Errorf("publish to %s: %w", topic, err)
	default:
		return fmt.Errorf("%w: publish to %s: %w", commands.ErrUnavailable, topic, err)
	}
}

func (o *outbox) Refuse(ctx context.Context, m commands.RefusalMessage) error {
	// Without HTML escaping the embedded command keeps its size: "<" would
	// otherwise take six bytes.
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(m); err != nil {
		return err
	}
	body := bytes.TrimSuffix(buf.Bytes(), []byte("\n"))
	msg := message.NewMessage(watermill.NewUUID(), body)
	msg.Metadata.Set(kafka.MetadataKey, m.URN)
	msg.Metadata.Set(HeaderDedupeKey, m.URN+" "+m.CommandID+" "+m.Code) // command ids are scoped to their prescription
	msg.Metadata.Set(commands.HeaderCommandID, m.CommandID)
	msg.Metadata.Set(commands.HeaderCorrelationID, m.CorrelationID)
	telemetry.Inject(ctx, msg.Metadata)
	return o.publish(o.rejectionTopic, msg)
}

func (o *outbox) DeadLetter(ctx context.Context, raw commands.Raw, code string, cause error) error {
	// base64 takes 4 bytes for 3.
	d := commands.NewDeadLetter(raw, code, cause, o.clock(), (o.maxBytes-headroom)*3/8)
	body, err := json.Marshal(d)
	if err != nil {
		return err
	}
	msg := message.NewMessage(watermill.NewUUID(), body)
	if d.Key != nil {
		msg.Metadata.Set(kafka.MetadataKey, *d.Key)
	}
	errText := d.Error
	if len(errText) > maxHeaderError {
		errText = commands.ValidText(errText[:maxHeaderError])
	}
	msg.Metadata.Set(HeaderDedupeKey, d.Source.Topic+"/"+strconv.Itoa(int(raw.Partition))+"/"+strconv.FormatInt(raw.Offset, 10))
	msg.Metadata.Set(HeaderDLQCode, code)
	msg.Metadata.Set(HeaderDLQError, errText)
	msg.Metadata.Set(HeaderDLQTopic, d.Source.Topic)
	msg.Metadata.Set(HeaderDLQPartition, strconv.Itoa(int(raw.Partition)))
	msg.Metadata.Set(HeaderDLQOffset, strconv.FormatInt(raw.Offset, 10))
	telemetry.Inject(ctx, msg.Metadata)
	return o.publish(o.deadLetterTopic, msg)
}

func (o *outbox) Defer(ctx context.Context, raw commands.Raw, urn string, notBefore time.Time) error {
	msg := message.NewMessage(watermill.NewUUID(), raw.Value)
	maps.Copy(msg.Metadata, raw.Headers)
	msg.Metadata.Set(kafka.MetadataKey, urn)
	msg.Metadata.Set(HeaderRetrySourceTopic, raw.Topic)
	msg.Metadata.Set(HeaderRetrySourcePartition, strconv.Itoa(int(raw.Partition)))
	msg.Metadata.Set(HeaderRetrySourceOffset, strconv.FormatInt(raw.Offset, 10))
	msg.Metadata.Set(HeaderRetryCount, strconv.Itoa(raw.Deferrals+1))
	msg.Metadata.Set(HeaderRetryNotBefore, notBefore.UTC().Format(time.RFC3339Nano))
	telemetry.Inject(ctx, msg.Metadata) // the retry continues this trace
	return o.publish(o.retryTopic, msg)
}

// deferredRaw rebuilds the original command from a record of the retry
// topic, and says when it may be handled. A record whose retry headers this
// processor could not have written (a count beyond its delays, another
// source topic, a due time later than its longest delay from now) is
// handled at once as the record it is, so that no record can hold a retry
// partition.
func deferredRaw(rec commands.Raw, commandTopic string, delays []time.Duration, now time.Time) (commands.Raw, time.Time) {
	h := rec.Headers
	count, err1 := strconv.Atoi(h[HeaderRetryCount])
	partition, err2 := strconv.ParseInt(h[HeaderRetrySourcePartition], 10, 32)
	offset, err3 := strconv.ParseInt(h[HeaderRetrySourceOffset], 10, 64)
	notBefore, err4 := time.Parse(time.RFC3339Nano, h[HeaderRetryNotBefore])
	if err1 != nil || err2 != nil || err3 != nil || err4 != nil || count < 1 || count > len(delays) ||
		h[HeaderRetrySourceTopic] != commandTopic || notBefore.After(now.Add(slices.Max(delays))) {
		return rec, time.Time{}
	}
	raw := commands.Raw{Topic: h[HeaderRetrySourceTopic], Partition: int32(partition), Offset: offset,
		Value: rec.Value, Headers: maps.Clone(h), Deferrals: count}
	for _, k := range retryHeaders {
		delete(raw.Headers, k)
	}
	return raw, notBefore
}

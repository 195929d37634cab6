package projector

import (
	"context"
	"time"

	"github.com/ThreeDotsLabs/watermill/message"

	"rxflow/infra/kafka"
	"rxflow/infra/telemetry"
	"rxflow/projections"
)

// CloudEvents Kafka protocol binding (binary mode) headers, and the dedupe key.
const (
	HeaderCEID          = "ce_id"
	HeaderCEType        = "ce_type"
	HeaderCESource      = "ce_source"
	HeaderCETime        = "ce_time"
	HeaderCESpecVersion = "ce_specversion"
	HeaderContentType   = "content-type"
	HeaderDedupeKey     = "dedupe-key"
)

// ceSource identifies this system as the CloudEvents source.
const ceSource = "urn:rxflow:projector"

// publisher implements projections.Publisher over a Watermill Kafka publisher.
type publisher struct {
	pub message.Publisher
}

func (p publisher) Publish(ctx context.Context, msgs ...projections.Outbound) error {
	for _, o := range msgs {
		msg := message.NewMessage(o.ID, o.Payload)
		for k, v := range o.Headers {
			msg.Metadata.Set(k, v)
		}
		msg.Metadata.Set(kafka.MetadataKey, o.Key)
		msg.Metadata.Set(HeaderDedupeKey, o.ID)
		msg.Metadata.Set(HeaderCEID, o.ID)
		msg.Metadata.Set(HeaderCEType, o.Type)
		msg.Metadata.Set(HeaderCESource, ceSource)
		msg.Metadata.Set(HeaderCETime, o.Time.UTC().Format(time.RFC3339Nano))
		msg.Metadata.Set(HeaderCESpecVersion, "1.0")
		msg.Metadata.Set(HeaderContentType, "application/json")
		telemetry.Inject(ctx, msg.Metadata)
		if err := p.pub.Publish(o.Topic, msg); err != nil {
			return err
		}
	}
	return nil
}

package operator

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"time"

	"github.com/ThreeDotsLabs/watermill/message"

	"rxflow/commands"
	"rxflow/infra/kafka"
	"rxflow/infra/readmodel"
)

// Inbox is where Consume stores the records it reads. Each add stores its
// record unless one with the same id (its partition and offset) is stored
// already, so that a redelivery, to this instance or to another one of the
// consumer group, stores nothing new.
type Inbox interface {
	AddDeadLetter(ctx context.Context, d readmodel.DeadLetterRow) error
	AddRefusal(ctx context.Context, r readmodel.RefusalRow) error
}

var _ Inbox = (*readmodel.Operations)(nil)

// Consume stores every record of the dead-letter topic and of the refusals
// topic in store, keyed by partition and offset, until ctx ends. A record
// is acknowledged once stored; one that cannot be stored is not
// acknowledged, so Kafka delivers it again. A dead-letter record that is not
// a dead letter is kept with code "unreadable" and its bytes; a refusal that
// is not a refusal is logged and counted with code "unreadable".
func Consume(ctx context.Context, sub message.Subscriber, deadLetterTopic, refusalTopic string, store Inbox, log *slog.Logger) error {
	dls, err := sub.Subscribe(ctx, deadLetterTopic)
	if err != nil {
		return fmt.Errorf("operator: subscribe %s: %w", deadLetterTopic, err)
	}
	refs, err := sub.Subscribe(ctx, refusalTopic)
	if err != nil {
		return fmt.Errorf("operator: subscribe %s: %w", refusalTopic, err)
	}
	for {
		var msg *message.Message
		var store1 func(context.Context, *message.Message) error
		select {
		case <-ctx.Done():
			return nil
		case m, ok := <-dls:
			if !ok {
				return errClosed(ctx)
			}
			msg, store1 = m, func(ctx context.Context, m *message.Message) error {
				return store.AddDeadLetter(ctx, DeadLetterOf(m, time.Now()))
			}
		case m, ok := <-refs:
			if !ok {
				return errClosed(ctx)
			}
			msg, store1 = m, func(ctx context.Context, m *message.Message) error {
				return store.AddRefusal(ctx, refusalOf(m, time.Now(), log))
			}
		}
		if err := store1(ctx, msg); err != nil {
			log.Error("operator: store consumed record", "topic", msg.Metadata.Get(kafka.MetadataTopic), "err", err)
			msg.Nack()
			continue
		}
		msg.Ack()
	}
}

func errClosed(ctx context.Context) error {
	if ctx.Err() != nil {
		return nil
	}
	return errors.New("operator: subscription closed")
}

func coordinates(m *message.Message) (int32, int64) {
	p, _ := strconv.ParseInt(m.Metadata.Get(kafka.MetadataPartition), 10, 32)
	o, _ := strconv.ParseInt(m.Metadata.Get(kafka.MetadataOffset), 10, 64)
	return int32(p), o
}

// DeadLetterOf describes a consumed dead-letter record, received at now.
func DeadLetterOf(m *message.Message, now time.Time) readmodel.DeadLetterRow {
	p, o := coordinates(m)
	d := readmodel.DeadLetterRow{ID: readmodel.DeadLetterID(p, o), Topic: m.Metadata.Get(kafka.MetadataTopic), Partition: p, Offset: o,
		Key: m.Metadata.Get(kafka.MetadataKey), Raw: append([]byte{}, m.Payload...), Received: now.UTC(), At: now.UTC()}
	var dl commands.DeadLetter
	if err := json.Unmarshal(m.Payload, &dl); err != nil || dl.Code == "" {
		d.Code, d.Error = "unreadable", "the record is not a dead letter"
		if err != nil {
			d.Error += ": " + err.Error()
		}
		return d
	}
	d.Code, d.Error = dl.Code, dl.Error
	if !dl.DeadLetteredAt.IsZero() {
		d.At = dl.DeadLetteredAt.UTC()
	}
	return d
}

func refusalOf(m *message.Message, now time.Time, log *slog.Logger) readmodel.RefusalRow {
	p, o := coordinates(m)
	var r struct {
		URN, Event, CommandID, Code string
		RejectedAt                  time.Time
	}
	if err := json.Unmarshal(m.Payload, &r); err != nil || r.Code == "" {
		log.Warn("operator: a refusals record is not a refusal", "partition", p, "offset", o, "err", err)
		r.Code = "unreadable"
	}
	if r.RejectedAt.IsZero() {
		r.RejectedAt = now
	}
	return readmodel.RefusalRow{ID: readmodel.DeadLetterID(p, o), URN: r.URN, Code: r.Code, Event: r.Event, CommandID: r.CommandID,
		At: r.RejectedAt.UTC(), Received: now.UTC()}
}

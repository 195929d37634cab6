package kafka_test

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/ThreeDotsLabs/watermill/message"

	"rxflow/infra/kafka"
	"rxflow/infra/kafka/kafkatest"
)

// Two subscribers of one group that share a group instance id cannot both
// consume unnoticed: the broker fences one with FENCED_INSTANCE_ID, and
// OnFenced says so with the group and the id.
func TestSharedGroupInstanceIDIsFenced(t *testing.T) {
	kafkatest.ForEachCluster(t, func(t *testing.T, brokers []string) {
		topic, group := kafkatest.UniqueTopic(t, "static"), kafkatest.UniqueGroup(t, "static")
		instance := "replica-" + strings.ReplaceAll(group, "_", "-")
		if len(instance) > 249 {
			instance = instance[:249]
		}
		ctx, cancel := context.WithCancel(context.Background())
		defer cancel()
		if err := kafka.EnsureTopics(ctx, kafka.Config{Brokers: brokers}, 2, topic); err != nil {
			t.Fatal(err)
		}
		fenced := make(chan error, 16)
		subscribe := func(name string) <-chan *message.Message {
			cfg := kafka.Config{Brokers: brokers, ConsumerGroup: group, GroupInstanceID: instance,
				OnFenced: func(err error) { fenced <- err }}
			sub, err := kafka.NewSubscriber(cfg, kafka.NewLogger(slog.New(slog.NewTextHandler(io.Discard, nil))))
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { _ = sub.Close() })
			msgs, err := sub.Subscribe(ctx, topic)
			if err != nil {
				t.Fatalf("%s: %v", name, err)
			}
			return msgs
		}
		first := subscribe("first")
		kafkatest.Produce(t, brokers, topic, kafkatest.Record{Key: []byte("k"), Value: []byte("one")})
		select {
		case msg := <-first:
			msg.Ack()
		case <-time.After(30 * time.Second):
			t.Fatal("the first subscriber received nothing in 30 s")
		}
		second := subscribe("second")
		go func() { // keep both consuming, so that each meets the broker's answer
			for {
				select {
				case m := <-first:
					if m != nil {
						m.Ack()
					}
				case m := <-second:
					if m != nil {
						m.Ack()
					}
				case <-ctx.Done():
					return
				}
			}
		}()
		select {
		case err := <-fenced:
			if !errors.Is(err, kafka.ErrFencedInstanceID) || !strings.Contains(err.Error(), instance) || !strings.Contains(err.Error(), group) {
				t.Fatalf("OnFenced got %v, want FENCED_INSTANCE_ID naming %q and %q", err, group, instance)
			}
		case <-time.After(60 * time.Second):
			t.Fatal("two subscribers shared a group instance id for 60 s and neither was fenced")
		}
	})
}

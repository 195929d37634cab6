package processor_test

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"rxflow/infra/eventstore"
	"rxflow/infra/kafka"
	"rxflow/infra/kafka/kafkatest"
	"rxflow/service/processor"
)

// Two processors started with one group instance id do not share it
// unnoticed: the broker fences one, and its Run stops with an error that
// says so, while the other keeps running.
func TestSharedGroupInstanceIDStopsAProcessor(t *testing.T) {
	kafkatest.ForEachCluster(t, func(t *testing.T, brokers []string) {
		tp := newTopics(t)
		esdb := startESDB(t, "127.0.0.1:0")
		instance := "replica-" + strings.ReplaceAll(tp.group, "_", "-")
		ctx, cancel := context.WithCancel(context.Background())
		defer cancel()
		runs := make(chan error, 2)
		start := func() *processor.Service {
			svc, err := processor.New(processor.Config{
				Kafka:        kafka.Config{Brokers: brokers, ConsumerGroup: tp.group, GroupInstanceID: instance},
				CommandTopic: tp.commands, RejectionTopic: tp.rejections, DeadLetterTopic: tp.dlq, RetryTopic: tp.retry,
				EventStore: eventstore.Config{ConnectionString: esdb.ConnectionString(), Logger: quiet()},
				HTTPAddr:   "127.0.0.1:0", Logger: quiet(),
			})
			if err != nil {
				t.Fatal(err)
			}
			go func() { runs <- svc.Run(ctx) }()
			select {
			case <-svc.Running():
			case <-time.After(30 * time.Second):
				t.Fatal("processor did not start")
			}
			return svc
		}
		first := start()
		kafkatest.Produce(t, brokers, tp.commands, command("urn:rx:static-1", "c-1", "prescription.request", `{"patientId":"p","prescriberId":"d","medication":{"name":"m","quantity":1}}`))
		eventually(t, 30*time.Second, "the first processor to handle a command", func() bool {
			return metric(t, first, `rxflow_commands_total{outcome="appended"}`) == "1"
		})
		start()
		select {
		case err := <-runs:
			if !errors.Is(err, kafka.ErrFencedInstanceID) || !strings.Contains(err.Error(), instance) {
				t.Fatalf("a processor stopped with %v, want FENCED_INSTANCE_ID naming %q", err, instance)
			}
		case <-time.After(60 * time.Second):
			t.Fatal("two processors shared a group instance id for 60 s and neither stopped")
		}
		cancel()
		if err := <-runs; err != nil && !errors.Is(err, kafka.ErrFencedInstanceID) {
			t.Errorf("the other processor: %v", err)
		}
	})
}

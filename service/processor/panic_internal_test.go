package processor

import (
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/ThreeDotsLabs/watermill/message"

	"rxflow/commands"
	"rxflow/infra/eventstore"
	"rxflow/infra/kafka"
	"rxflow/infra/kafka/kafkatest"
	"rxflow/standin/esdbserver"
)

// A handler that panics on a message counts as failing: after the retries
// the message is dead-lettered as processing_failed, with the panic as its
// error, and the messages behind it are handled. No command input panics
// the real handler (the fuzz targets check that), so a handler that panics
// on purpose is added to the service's own router, with its middleware.
func TestRecoveredPanicIsDeadLettered(t *testing.T) {
	brokers := kafkatest.Brokers(t)
	srv, err := esdbserver.Start(esdbserver.Config{Addr: "127.0.0.1:0", Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = srv.Close() })
	quiet := slog.New(slog.NewTextHandler(io.Discard, nil))
	dlq, panics := kafkatest.UniqueTopic(t, "dlq"), kafkatest.UniqueTopic(t, "panics")
	svc, err := New(Config{
		Kafka:        kafka.Config{Brokers: brokers, ConsumerGroup: kafkatest.UniqueGroup(t, "proc")},
		CommandTopic: kafkatest.UniqueTopic(t, "cmd"), RejectionTopic: kafkatest.UniqueTopic(t, "rej"), DeadLetterTopic: dlq,
		RetryTopic: kafkatest.UniqueTopic(t, "retry"), Retry: RetryPolicy{MaxRetries: 2, InitialInterval: time.Millisecond, MaxInterval: time.Millisecond},
		EventStore: eventstore.Config{ConnectionString: srv.ConnectionString(), Logger: quiet}, HTTPAddr: "127.0.0.1:0", Logger: quiet,
	})
	if err != nil {
		t.Fatal(err)
	}
	handled := make(chan string, 10)
	svc.router.AddConsumerHandler("panics", panics, svc.sub, func(msg *message.Message) error {
		if string(msg.Payload) == "boom" {
			panic("boom")
		}
		handled <- string(msg.Payload)
		return nil
	})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- svc.Run(ctx) }()
	t.Cleanup(func() { cancel(); <-done })
	kafkatest.Produce(t, brokers, panics, kafkatest.Record{Key: []byte("k"), Value: []byte("boom")}, kafkatest.Record{Key: []byte("k"), Value: []byte("after")})

	select {
	case v := <-handled:
		if v != "after" {
			t.Fatalf("handled %q", v)
		}
	case <-time.After(60 * time.Second):
		t.Fatal("the message behind the panicking one was not handled")
	}
	var dead []kafkatest.Record
	for deadline := time.Now().Add(30 * time.Second); len(dead) == 0 && time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
		dead = kafkatest.ConsumeAll(t, brokers, dlq)
	}
	if len(dead) != 1 {
		t.Fatalf("%d dead letters, want 1", len(dead))
	}
	var d commands.DeadLetter
	if err := json.Unmarshal(dead[0].Value, &d); err != nil {
		t.Fatal(err)
	}
	if d.Code != commands.DeadLetterProcessingFailed || !strings.Contains(d.Error, "panic") || d.Value == nil || *d.Value != "boom" || d.Source.Topic != panics {
		t.Fatalf("dead letter: %+v", d)
	}
}

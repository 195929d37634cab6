package processor_test

import (
	"net"
	"strings"
	"testing"

	"rxflow/infra/eventstore"
	"rxflow/infra/kafka"
	"rxflow/service/processor"
)

// With Kafka unreachable, New fails with an error naming the broker; the
// clean-up of what it had opened does not panic (it once called Close on a
// nil *Publisher inside a non-nil interface).
func TestNewKafkaUnreachable(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	broker := ln.Addr().String()
	ln.Close()
	svc, err := processor.New(processor.Config{
		Kafka:      kafka.Config{Brokers: []string{broker}},
		EventStore: eventstore.Config{ConnectionString: "esdb://" + broker + "?tls=false", Logger: quiet()},
		HTTPAddr:   "127.0.0.1:0", Logger: quiet(),
	})
	if err == nil {
		t.Fatal("New succeeded without a broker")
	}
	if svc != nil {
		t.Errorf("New failed but returned a service")
	}
	if !strings.Contains(err.Error(), broker) {
		t.Errorf("error %q does not name the broker %s", err, broker)
	}
}

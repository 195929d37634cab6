package projector_test

import (
	"io"
	"log/slog"
	"net"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"rxflow/infra/eventstore"
	"rxflow/infra/kafka"
	"rxflow/service/projector"
)

// With Kafka unreachable, New fails with an error naming the broker, its
// clean-up does not panic, and it releases the data directory: a second
// attempt fails the same way, not on the ledger's lock.
func TestNewKafkaUnreachable(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	broker := ln.Addr().String()
	ln.Close()
	quiet := slog.New(slog.NewTextHandler(io.Discard, nil))
	cfg := projector.Config{
		Kafka:      kafka.Config{Brokers: []string{broker}},
		EventStore: eventstore.Config{ConnectionString: "esdb://" + broker + "?tls=false", Logger: quiet},
		DataDir:    filepath.Join(t.TempDir(), "projector"),
		HTTPAddr:   "127.0.0.1:0", Token: "t", Logger: quiet,
	}
	for range 2 {
		svc, err := projector.New(cfg)
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
}

// A deadline setting the workflow table does not know, or a non-positive
// duration, stops the start-up with a message naming it.
func TestConfigRefusesUnknownDeadlines(t *testing.T) {
	cfg := projector.Config{Kafka: kafka.Config{Brokers: []string{"127.0.0.1:1"}}, EventStore: eventstore.Config{ConnectionString: "esdb://127.0.0.1:1?tls=false"},
		Token: "t", Partitions: 1}
	if err := cfg.Validate(); err != nil {
		t.Fatalf("valid config: %v", err)
	}
	for want, after := range map[string]map[string]time.Duration{
		`no deadline is named "pickup-overdu"`: {"pickup-overdu": time.Hour},
		"not a positive duration":              {"pickup-overdue": 0},
	} {
		cfg.Deadlines.After = after
		if err := cfg.Validate(); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("deadline %s: Validate = %v, want %q", after, err, want)
		}
	}
}

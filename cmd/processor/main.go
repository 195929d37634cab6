// Command processor consumes prescription commands from Kafka, validates them
// against the workflow and appends the resulting events to EventStoreDB.
package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/signal"
	"syscall"

	"rxflow/infra/config"
	"rxflow/infra/eventstore"
	"rxflow/infra/kafka"
	"rxflow/infra/processor"
)

func main() {
	if err := run(os.Args[1:]); err != nil {
		fmt.Fprintln(os.Stderr, "processor:", err)
		os.Exit(1)
	}
}

func run(args []string) error {
	f := config.NewFlags("processor")
	brokers := f.String("brokers", "KAFKA_BROKERS", "127.0.0.1:9092", "Kafka bootstrap brokers, comma-separated")
	group := f.String("group", "PROCESSOR_GROUP", "rxflow-processor", "Kafka consumer group")
	commandTopic := f.String("command-topic", "COMMAND_TOPIC", "prescription.events", "topic of incoming commands")
	rejectionTopic := f.String("rejection-topic", "REJECTION_TOPIC", "prescription.rejections", "topic of refused commands")
	dlqTopic := f.String("dlq-topic", "DLQ_TOPIC", "prescription.events.dlq", "topic of undecodable commands")
	partitions := f.Int("partitions", "KAFKA_PARTITIONS", 8, "partitions of topics created at start-up")
	esdbURL := f.String("esdb", "ESDB_CONNECTION_STRING", "esdb://127.0.0.1:2113?tls=false", "EventStoreDB connection string")
	httpAddr := f.String("http", "PROCESSOR_HTTP_ADDR", "127.0.0.1:9101", "address of /healthz, /readyz and /metrics")
	maxBytes := f.Int("max-command-bytes", "MAX_COMMAND_BYTES", 64<<10, "largest accepted command message; bigger ones are dead-lettered")
	logLevel := f.String("log-level", "LOG_LEVEL", "info", "debug, info, warn or error")
	if err := f.Parse(args); err != nil {
		return err
	}
	log, err := config.Logger(*logLevel)
	if err != nil {
		return err
	}
	svc, err := processor.New(processor.Config{
		Kafka:        kafka.Config{Brokers: config.List(*brokers), ConsumerGroup: *group},
		CommandTopic: *commandTopic, RejectionTopic: *rejectionTopic, DeadLetterTopic: *dlqTopic,
		Partitions: int32(*partitions), EventStore: eventstore.Config{ConnectionString: *esdbURL},
		HTTPAddr: *httpAddr, MaxCommandBytes: *maxBytes, Logger: log,
	})
	if err != nil {
		return err
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := svc.Run(ctx); err != nil && !errors.Is(err, context.Canceled) {
		return err
	}
	return nil
}

// Command processor consumes prescription commands from Kafka, validates them
// against the workflow and appends the resulting events to EventStoreDB.
package main

import (
	"context"
	"errors"
	"fmt"
	"math"
	"os"
	"os/signal"
	"syscall"

	"rxflow/commands"
	"rxflow/infra/config"
	"rxflow/infra/eventstore"
	"rxflow/infra/kafka"
	"rxflow/infra/telemetry"
	"rxflow/service/processor"
)

// main prints a failed start-up as one line on stderr and exits with
// status 1; docs/deploy.md ("Start-up failures") lists the cases.
func main() {
	err := run(os.Args[1:])
	if err != nil && !errors.Is(err, config.ErrHelp) {
		fmt.Fprintln(os.Stderr, config.Line("processor", err))
		os.Exit(1)
	}
}

func run(args []string) error {
	f := config.NewFlags("processor")
	brokers := f.String("brokers", "KAFKA_BROKERS", "127.0.0.1:9092", "Kafka bootstrap brokers, comma-separated")
	group := f.String("group", "PROCESSOR_GROUP", "rxflow-processor", "Kafka consumer group")
	instance := f.String("group-instance-id", "PROCESSOR_GROUP_INSTANCE_ID", "",
		"this replica's stable Kafka group.instance.id (static membership: a restart resumes at once); unique per replica; empty: dynamic membership")
	commandTopic := f.String("command-topic", "COMMAND_TOPIC", commands.TopicCommands, "topic of incoming commands")
	rejectionTopic := f.String("rejection-topic", "REJECTION_TOPIC", commands.TopicRejections, "topic of refused commands")
	dlqTopic := f.String("dlq-topic", "DLQ_TOPIC", commands.TopicDeadLetters, "topic of undecodable and poison commands")
	retryTopic := f.String("retry-topic", "RETRY_TOPIC", commands.TopicRetry, "topic of deferred keyless commands")
	deferDelays := f.String("defer-delays", "DEFER_DELAYS", "1s,2s,4s,8s,16s", "waits before each retry of a keyless command refused as premature")
	partitions := f.IntRange("partitions", "KAFKA_PARTITIONS", 8, 1, math.MaxInt32, "partitions of topics created at start-up")
	esdbURL := f.String("esdb", "ESDB_CONNECTION_STRING", "esdb://127.0.0.1:2113?tls=false", "EventStoreDB connection string")
	httpAddr := f.String("http", "PROCESSOR_HTTP_ADDR", "127.0.0.1:9101", "address of /healthz, /readyz and /metrics")
	maxBytes := f.IntRange("max-command-bytes", "MAX_COMMAND_BYTES", 64<<10, 1, math.MaxInt, "largest accepted command message; bigger ones are dead-lettered")
	logLevel := f.String("log-level", "LOG_LEVEL", "info", "debug, info, warn or error")
	kafkaSecurity := kafka.SecurityFlags(f)
	err := f.Parse(args)
	if errors.Is(err, config.ErrHelp) {
		return err
	}
	log, logErr := config.Logger(*logLevel)
	security, securityErr := kafkaSecurity()
	delays, delaysErr := config.Durations(*deferDelays)
	if delaysErr != nil {
		delaysErr = fmt.Errorf("-defer-delays (env DEFER_DELAYS): %w", delaysErr)
	}
	if err := errors.Join(err, logErr, securityErr, delaysErr); err != nil {
		return err
	}
	stopTracing, err := telemetry.Setup(context.Background(), "rxflow-processor")
	if err != nil {
		return err
	}
	defer stopTracing()
	svc, err := processor.New(processor.Config{
		Kafka:        kafka.Config{Brokers: config.List(*brokers), ConsumerGroup: *group, GroupInstanceID: *instance, Security: security},
		CommandTopic: *commandTopic, RejectionTopic: *rejectionTopic, DeadLetterTopic: *dlqTopic, RetryTopic: *retryTopic,
		DeferDelays: delays, Partitions: int32(*partitions), EventStore: eventstore.Config{ConnectionString: *esdbURL, Logger: log},
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

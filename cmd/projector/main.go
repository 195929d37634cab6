// Command projector follows the prescription events in EventStoreDB: it
// calls the partners, publishes the outbound Kafka events, keeps the read
// model and serves the query API.
//
//	projector [flags]          run the projectors and the query API
//	projector rebuild [flags]  replay $all into a fresh read model and swap it in (SQLite: projector stopped)
package main

import (
	"context"
	"errors"
	"fmt"
	"math"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"rxflow/commands"
	"rxflow/infra/config"
	"rxflow/infra/eventstore"
	"rxflow/infra/httpapi"
	"rxflow/infra/kafka"
	"rxflow/infra/partners"
	"rxflow/infra/telemetry"
	"rxflow/projections"
	"rxflow/service/projector"
)

const synopsis = `  projector [flags]          run the projectors and the query API
  projector rebuild [flags]  replay $all into a fresh read model and swap it in (SQLite: projector stopped)`

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	var err error
	if len(os.Args) > 1 && os.Args[1] == "rebuild" {
		err = rebuild(ctx, os.Args[2:])
	} else {
		err = run(ctx, os.Args[1:])
	}
	if err != nil && !errors.Is(err, config.ErrHelp) {
		fmt.Fprintln(os.Stderr, config.Line("projector", err))
		os.Exit(1)
	}
}

func run(ctx context.Context, args []string) error {
	f := config.NewFlags("projector")
	f.Synopsis = synopsis
	brokers := f.String("brokers", "KAFKA_BROKERS", "127.0.0.1:9092", "Kafka bootstrap brokers, comma-separated")
	commandTopic := f.String("command-topic", "COMMAND_TOPIC", commands.TopicCommands, "command topic, for the pharmacy's failure command and redrives")
	rejectionTopic := f.String("rejection-topic", "REJECTION_TOPIC", commands.TopicRejections, "topic of refused commands, consumed for the console")
	dlqTopic := f.String("dlq-topic", "DLQ_TOPIC", commands.TopicDeadLetters, "topic of dead letters, consumed for the console and redrive")
	group := f.String("group", "PROJECTOR_GROUP", "rxflow-projector-operations", "Kafka consumer group reading the dead-letter and refusals topics")
	dispensed := f.String("dispensed-topic", "DISPENSED_TOPIC", projections.TopicDispensed, "topic of prescription.dispensed")
	failed := f.String("failed-topic", "FAILED_TOPIC", projections.TopicFailed, "topic of prescription.failed")
	changed := f.String("status-changed-topic", "STATUS_CHANGED_TOPIC", projections.TopicStatusChanged, "topic of every status change")
	partitions := f.IntRange("partitions", "KAFKA_PARTITIONS", 8, 1, math.MaxInt32, "partitions of topics created at start-up")
	esdbURL := f.String("esdb", "ESDB_CONNECTION_STRING", "esdb://127.0.0.1:2113?tls=false", "EventStoreDB connection string")
	dataDir := f.String("data", "PROJECTOR_DATA_DIR", "data/projector", "directory of the read model, the operations store and the side-effect ledger")
	httpAddr := f.String("http", "PROJECTOR_HTTP_ADDR", "127.0.0.1:8080", "address of the query API, the console (/console/), /healthz, /readyz and /metrics")
	database := f.Secret("database", "DATABASE_URL", "PostgreSQL connection URL of the shared read side (read model, ledger, checkpoints, operations, access log, segment leases); empty: the embedded stores in -data, one instance")
	segments := f.IntRange("segments", "PROJECTOR_SEGMENTS", 8, 1, projector.MaxSegments, "segments of the event space on PostgreSQL; fixed at the database's first start")
	instanceID := f.String("instance-id", "PROJECTOR_INSTANCE_ID", "", "this instance's id among those sharing the database, unique per replica (default: host name and a random suffix)")
	leaseTTL := f.EnvDuration("lease-ttl", "PROJECTOR_LEASE_TTL", 10*time.Second, "a segment lease's time on PostgreSQL; renewed every third of it")
	auth := httpapi.AuthFlags(f)
	partnerURLs := map[string]*string{} // -<name>-url, <NAME>_URL: one per partner of the reactor table
	for _, p := range projections.PartnersOf(projections.Reactions) {
		env := strings.ToUpper(strings.ReplaceAll(p.Name, "-", "_")) + "_URL"
		partnerURLs[p.Name] = f.String(p.Name+"-url", env, "http://127.0.0.1:8090/"+p.Name, p.About+" base URL")
	}
	partnerToken := f.String("partner-token", "PARTNER_API_TOKEN", "", "bearer token sent to the partners (none if empty)")
	logLevel := f.String("log-level", "LOG_LEVEL", "info", "debug, info, warn or error")
	kafkaSecurity := kafka.SecurityFlags(f)
	deadlines := config.DeadlineFlags(f)
	err := f.Parse(args)
	if errors.Is(err, config.ErrHelp) {
		return err
	}
	log, logErr := config.Logger(*logLevel)
	security, securityErr := kafkaSecurity()
	after, every, resend, deadlineErr := deadlines()
	authCfg, authErr := auth()
	var segmentsErr error
	if *database == "" && (f.Given("segments", "PROJECTOR_SEGMENTS") || f.Given("instance-id", "PROJECTOR_INSTANCE_ID") || f.Given("lease-ttl", "PROJECTOR_LEASE_TTL")) {
		segmentsErr = errors.New("-segments, -instance-id and -lease-ttl (PROJECTOR_SEGMENTS, PROJECTOR_INSTANCE_ID, PROJECTOR_LEASE_TTL) need -database (DATABASE_URL): without PostgreSQL the projector runs alone on its embedded stores")
	}
	if err := errors.Join(err, logErr, securityErr, deadlineErr, authErr, segmentsErr); err != nil {
		return err
	}
	stopTracing, err := telemetry.Setup(ctx, "rxflow-projector")
	if err != nil {
		return err
	}
	defer stopTracing()
	endpoints := partners.Endpoints{}
	for name, url := range partnerURLs {
		endpoints[name] = partners.Config{BaseURL: *url, Token: *partnerToken, Logger: log}
	}
	svc, err := projector.New(projector.Config{
		Kafka:        kafka.Config{Brokers: config.List(*brokers), Security: security},
		CommandTopic: *commandTopic, RejectionTopic: *rejectionTopic, DeadLetterTopic: *dlqTopic, ConsumerGroup: *group,
		Outbound:   projections.OutboundTopics{Dispensed: *dispensed, Failed: *failed, StatusChanged: *changed},
		Partitions: int32(*partitions),
		EventStore: eventstore.Config{ConnectionString: *esdbURL, Logger: log},
		DataDir:    *dataDir,
		Partners:   endpoints,
		HTTPAddr:   *httpAddr, Auth: authCfg, Logger: log,
		Deadlines: projector.Deadlines{After: after, Every: every, ResendAfter: resend},
		Segments:  projector.Segments{Database: *database, Count: *segments, InstanceID: *instanceID, LeaseTTL: *leaseTTL},
	})
	if err != nil {
		return err
	}
	return svc.Run(ctx)
}

func rebuild(ctx context.Context, args []string) error {
	f := config.NewFlags("projector rebuild")
	f.Synopsis = synopsis
	esdbURL := f.String("esdb", "ESDB_CONNECTION_STRING", "esdb://127.0.0.1:2113?tls=false", "EventStoreDB connection string")
	dataDir := f.String("data", "PROJECTOR_DATA_DIR", "data/projector", "directory of the read model and the side-effect ledger (projector stopped)")
	database := f.Secret("database", "DATABASE_URL", "PostgreSQL connection URL of the shared read side: rebuilt beside the running instances; empty: the read model in -data")
	segments := f.IntRange("segments", "PROJECTOR_SEGMENTS", 8, 1, projector.MaxSegments, "the database's segment count")
	if err := f.Parse(args); err != nil {
		return err
	}
	progressed := false
	progress := func(n int, pos uint64) {
		progressed = true
		fmt.Fprintf(os.Stderr, "\rreplayed %d events (position %d)", n, pos)
	}
	events := eventstore.Config{ConnectionString: *esdbURL}
	var res projector.RebuildResult
	var err error
	if *database != "" {
		res, err = projector.RebuildPostgres(ctx, projector.PostgresRebuildConfig{EventStore: events, Database: *database, Segments: *segments}, progress)
	} else {
		res, err = projector.Rebuild(ctx, projector.RebuildConfig{EventStore: events, DataDir: *dataDir}, progress)
	}
	if progressed {
		fmt.Fprintln(os.Stderr) // end the progress line
	}
	if err != nil {
		return err
	}
	fmt.Printf("rebuilt read model: %d events, %d prescriptions, checkpoint %d, in %v\n", res.Events, res.Rows, res.Checkpoint, res.Took)
	return nil
}

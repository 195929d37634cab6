package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"os/signal"
	"runtime/pprof"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/EventStore/EventStore-Client-Go/v4/esdb"
	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/prometheus/client_golang/prometheus"

	"rxflow/events"
	"rxflow/infra/config"
	"rxflow/infra/eventstore"
	"rxflow/infra/kafka"
	"rxflow/infra/ops"
	"rxflow/infra/telemetry"
	"rxflow/service/processor"
	"rxflow/service/projector"
)

// childArg makes the bench binary run one consumer as a child process, so
// that its memory and CPU are its own.
const childArg = "-child"

// Roles of a child process.
const (
	roleRaw       = "raw"
	roleProcessor = "processor"
	roleOTLPSink  = "otlp-sink" // an OTLP/HTTP receiver that discards what it gets
	roleRebuild   = "rebuild"   // one projector.Rebuild, then exit
)

// Counters the parent reads from a child's /metrics: the processor's own,
// and the raw consumer's.
const (
	metricProcessed = "rxflow_commands_total"
	metricRaw       = "rxflow_bench_raw_appends_total"
)

// childMain runs a consumer until SIGTERM. Once it consumes, it prints
// "ready <http address>" on stdout; progress is on <address>/metrics.
func childMain(args []string) int {
	fs := flag.NewFlagSet("bench child", flag.ContinueOnError)
	role := fs.String("role", roleProcessor, "raw or processor")
	brokers := fs.String("brokers", "", "Kafka brokers")
	conn := fs.String("esdb", "", "EventStoreDB connection string")
	topic := fs.String("topic", "", "command topic")
	group := fs.String("group", "", "consumer group")
	partitions := fs.Int("partitions", 8, "partitions of the topics")
	cpuprofile := fs.String("cpuprofile", "", "write a CPU profile here")
	instance := fs.String("instance-id", "", "group instance id (static membership)")
	dataDir := fs.String("dir", "", "rebuild: the projector's data directory")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn})).With("child", *role)
	if *cpuprofile != "" {
		f, err := os.Create(*cpuprofile)
		if err != nil {
			log.Error("cpu profile", "err", err)
			return 1
		}
		defer f.Close()
		if err := pprof.StartCPUProfile(f); err != nil {
			log.Error("cpu profile", "err", err)
			return 1
		}
		defer pprof.StopCPUProfile()
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
	defer stop()
	if *role == roleRebuild {
		if err := runRebuild(ctx, log, *conn, *dataDir); err != nil {
			log.Error("child failed", "err", err)
			return 1
		}
		return 0
	}
	if *role == roleOTLPSink {
		if err := runOTLPSink(ctx, log); err != nil {
			log.Error("child failed", "err", err)
			return 1
		}
		return 0
	}
	// The TLS and SASL settings come from the environment the parent set
	// (kafka.Security.Environ), not from the arguments: they may hold a
	// password.
	env := config.NewFlags("bench child")
	kafkaSecurity := kafka.SecurityFlags(env)
	err := env.Parse(nil)
	security, securityErr := kafkaSecurity()
	if err = errors.Join(err, securityErr); err != nil {
		log.Error("kafka security settings", "err", err)
		return 2
	}
	kcfg := kafka.Config{Brokers: config.List(*brokers), ConsumerGroup: *group, GroupInstanceID: *instance, Security: security}
	switch *role {
	case roleProcessor:
		err = runProcessor(ctx, log, kcfg, *topic, int32(*partitions), *conn)
	case roleRaw:
		err = runRaw(ctx, log, kcfg, *topic, *conn)
	default:
		err = fmt.Errorf("unknown role %q", *role)
	}
	if err != nil {
		log.Error("child failed", "err", err)
		return 1
	}
	return 0
}

func runProcessor(ctx context.Context, log *slog.Logger, kcfg kafka.Config, topic string, partitions int32, conn string) error {
	stopTracing, err := telemetry.Setup(ctx, "rxflow-bench-processor")
	if err != nil {
		return err
	}
	defer stopTracing()
	svc, err := processor.New(processor.Config{
		Kafka: kcfg, CommandTopic: topic, RejectionTopic: topic + ".rejections", DeadLetterTopic: topic + ".dlq",
		Partitions: partitions, EventStore: eventstore.Config{ConnectionString: conn, Logger: log},
		HTTPAddr: "127.0.0.1:0", Logger: log,
	})
	if err != nil {
		return err
	}
	done := make(chan error, 1)
	go func() { done <- svc.Run(ctx) }()
	select {
	case <-svc.Running():
		fmt.Println("ready", svc.HTTPAddr())
	case err := <-done:
		return err
	}
	return <-done
}

// runRebuild is `projector rebuild` in a process of its own, as deployed:
// its CPU and its garbage collector are not the embedded store's. It
// prints "rebuilt <events> <nanoseconds>" on stdout.
func runRebuild(ctx context.Context, log *slog.Logger, conn, dir string) error {
	res, err := projector.Rebuild(ctx, projector.RebuildConfig{EventStore: eventstore.Config{ConnectionString: conn, Logger: log}, DataDir: dir},
		func(n int, _ uint64) {
			if n%100000 == 0 {
				progress("rebuild: %d events read", n)
			}
		})
	if err != nil {
		return err
	}
	fmt.Println("rebuilt", res.Events, int64(res.Took))
	return nil
}

// runRaw is the ceiling: the same subscriber and router as the processor,
// and one append per message through the same client, with no domain logic.
func runRaw(ctx context.Context, log *slog.Logger, kcfg kafka.Config, topic, conn string) error {
	settings, err := esdb.ParseConnectionString(conn)
	if err != nil {
		return err
	}
	settings.Logger = esdb.NoopLogging()
	client, err := esdb.NewClient(settings)
	if err != nil {
		return err
	}
	defer client.Close()
	wlog := kafka.NewLogger(log)
	sub, err := kafka.NewSubscriber(kcfg, wlog)
	if err != nil {
		return err
	}
	defer sub.Close()
	router, err := message.NewRouter(message.RouterConfig{CloseTimeout: 30 * time.Second}, wlog)
	if err != nil {
		return err
	}
	appended := prometheus.NewCounter(prometheus.CounterOpts{Name: metricRaw, Help: "Messages appended by the raw consumer."})
	reg := prometheus.NewRegistry()
	reg.MustRegister(appended)
	router.AddConsumerHandler("raw", topic, sub, func(msg *message.Message) error {
		source := msg.Metadata.Get(kafka.MetadataTopic) + "/" + msg.Metadata.Get(kafka.MetadataPartition) + "/" + msg.Metadata.Get(kafka.MetadataOffset)
		id := events.EventID(msg.Metadata.Get(kafka.MetadataKey), source, 0)
		// Metadata of the same shape as the processor's, encoded the same way.
		meta := events.Metadata{EventID: id.String(), CommandID: source, OccurredAt: time.Now().UTC(), SchemaVersion: 1}.AppendJSON(nil)
		ev := esdb.EventData{EventID: id, EventType: "BenchRawAppended", ContentType: esdb.ContentTypeJson, Data: msg.Payload, Metadata: meta}
		if _, err := client.AppendToStream(msg.Context(), "benchraw-"+msg.Metadata.Get(kafka.MetadataKey), esdb.AppendToStreamOptions{ExpectedRevision: esdb.Any{}}, ev); err != nil {
			return err
		}
		appended.Inc()
		return nil
	})
	mux := http.NewServeMux()
	ops.Handle(mux, reg, func(context.Context) error { return nil })
	srv, err := ops.Listen("127.0.0.1:0", mux)
	if err != nil {
		return err
	}
	go func() { _ = srv.Serve(ctx, log) }()
	done := make(chan error, 1)
	go func() { done <- router.Run(ctx) }()
	select {
	case <-router.Running():
		fmt.Println("ready", srv.Addr())
	case err := <-done:
		return err
	}
	if err := <-done; err != nil && !errors.Is(err, context.Canceled) {
		return err
	}
	return nil
}

// runOTLPSink answers every OTLP/HTTP export with success and discards it:
// the cost of tracing measured is the exporting process's alone.
// At exit it says on stderr how many exports and bytes it received.
func runOTLPSink(ctx context.Context, log *slog.Logger) error {
	var exports, bytes atomic.Int64
	mux := http.NewServeMux()
	mux.HandleFunc("POST /v1/traces", func(w http.ResponseWriter, r *http.Request) {
		n, _ := io.Copy(io.Discard, r.Body)
		exports.Add(1)
		bytes.Add(n)
		w.Header().Set("Content-Type", "application/x-protobuf")
		w.WriteHeader(http.StatusOK) // an empty ExportTraceServiceResponse: all accepted
	})
	srv, err := ops.Listen("127.0.0.1:0", mux)
	if err != nil {
		return err
	}
	fmt.Println("ready", srv.Addr())
	err = srv.Serve(ctx, log)
	fmt.Fprintf(os.Stderr, "otlp sink: %d exports, %d bytes received\n", exports.Load(), bytes.Load())
	return err
}

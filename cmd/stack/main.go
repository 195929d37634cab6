// Command stack runs the whole system locally in the foreground, on embedded
// defaults: the embedded Kafka broker (127.0.0.1:9092) and EventStoreDB
// server (127.0.0.1:2113), persisted under ./data, the partner simulators
// (127.0.0.1:8090), the processor and the projector with its query API
// (127.0.0.1:8080).
//
//	go run ./cmd/stack          run until Ctrl-C
//	go run ./cmd/stack -demo    also play the seed's scenarios and print their timelines
//
// Each address has a flag (-h lists them), for when a default port is taken.
package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/signal"
	"strings"
	"syscall"

	"rxflow/infra/config"
	"rxflow/infra/telemetry"
	"rxflow/service/projector"
	"rxflow/service/stack"
	"rxflow/standin/esdbserver"
)

// main prints a failed start-up as one line on stderr and exits with
// status 1; docs/deploy.md ("Start-up failures") lists the cases.
func main() {
	err := run(os.Args[1:])
	if err != nil && !errors.Is(err, config.ErrHelp) {
		fmt.Fprintln(os.Stderr, config.Line("stack", err))
		os.Exit(1)
	}
}

func run(args []string) error {
	f := config.NewFlags("stack")
	dataDir := f.String("data", "RXFLOW_DATA_DIR", "data/stack", "directory of every persisted part (the standalone services default to data/esdb and data/projector, so they never reuse the stack's)")
	token := f.String("token", "QUERY_API_TOKEN", "dev-token", "bearer token of the query API")
	demo := f.Bool("demo", false, "play the seed's scenarios through Kafka and print their timelines")
	demoOnly := f.Bool("demo-only", false, "play the demo, then stop (exit status 1 if a scenario went wrong)")
	logLevel := f.String("log-level", "LOG_LEVEL", "warn", "debug, info, warn or error")
	kafkaAddr := f.String("kafka-addr", "STACK_KAFKA_ADDR", "127.0.0.1:9092", "listen address of the embedded Kafka broker")
	esdbAddr := f.String("esdb-addr", "STACK_ESDB_ADDR", esdbserver.DefaultAddr, "listen address of the embedded EventStoreDB")
	partnersAddr := f.String("partners-addr", "STACK_PARTNERS_ADDR", "127.0.0.1:8090", "listen address of the partner simulators")
	apiAddr := f.String("api-addr", "STACK_API_ADDR", "127.0.0.1:8080", "address of the query API and the projector's ops endpoints")
	processorAddr := f.String("processor-addr", "STACK_PROCESSOR_ADDR", "127.0.0.1:9101", "address of the processor's /healthz, /readyz and /metrics")
	database := f.Secret("database", "DATABASE_URL", "PostgreSQL connection URL for the projector's read side (8 segments, one instance); empty: the embedded stores in -data")
	deadlines := config.DeadlineFlags(f)
	err := f.Parse(args)
	if errors.Is(err, config.ErrHelp) {
		return err
	}
	log, logErr := config.Logger(*logLevel)
	after, every, resend, deadlineErr := deadlines()
	if err := errors.Join(err, logErr, deadlineErr); err != nil {
		return err
	}
	stopTracing, err := telemetry.Setup(context.Background(), "rxflow-stack")
	if err != nil {
		return err
	}
	defer stopTracing()
	s, err := stack.Start(stack.Config{DataDir: *dataDir, Token: *token, Logger: log, Database: *database,
		Deadlines: projector.Deadlines{After: after, Every: every, ResendAfter: resend},
		KafkaAddr: *kafkaAddr, ESDBAddr: *esdbAddr, PartnersAddr: *partnersAddr, APIAddr: *apiAddr, ProcessorAddr: *processorAddr})
	if err != nil {
		return err
	}
	printBanner(s, *token)
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if *demo || *demoOnly {
		if err := s.Demo(ctx, os.Stdout); err != nil {
			return errors.Join(err, s.Close())
		}
	}
	if !*demoOnly {
		fmt.Println("\nRunning. Ctrl-C to stop.")
		<-ctx.Done()
	}
	return s.Close()
}

// requestExample is the banner's sample command (key|value, seed format),
// the same as the README's "With kcat".
const requestExample = `urn:rx:1|{"urn":"urn:rx:1","event":"prescription.request","payload":{"patientId":"p1","prescriberId":"d1","pharmacyId":"ph1","medication":{"name":"Amoxicillin","quantity":20}}}`

func printBanner(s *stack.Stack, token string) {
	brokers := strings.Join(s.Brokers, ",")
	fmt.Printf(`rxflow local stack
  Kafka (embedded)         %s
  EventStoreDB (embedded)  %s
  query API                http://%s   (Authorization: Bearer %s)
  console                  http://%s/console/   (sign in with the same token)
  processor ops            http://%s/metrics
  partner simulators       %s   (stand-ins for the real partners)

Send a command (seed format, key = urn):
  echo '%s' \
    | kcat -P -b %s -t %s -K '|'
  curl -H 'Authorization: Bearer %s' http://%s/prescriptions/urn:rx:1
`, brokers, s.ESDB.ConnectionString(), s.Projector.HTTPAddr(), token, s.Projector.HTTPAddr(), s.Processor.HTTPAddr(), strings.TrimSuffix(s.Sim.URL("insurance"), "/insurance"),
		requestExample, brokers, s.Topics.Commands, token, s.Projector.HTTPAddr())
}

// Command ready waits until a Kafka broker serves clients: its metadata lists
// a broker, a record can be produced, and the group coordinator is up. It
// takes the services' Kafka TLS and SASL flags and environment variables
// (docs/deploy.md, "Kafka security"), so that it also checks a SASL_SSL
// listener.
//
//	go run ./.ci/kafka/ready -brokers 127.0.0.1:9092 -timeout 120s
//	KAFKA_SASL_PASSWORD=… go run ./.ci/kafka/ready -brokers 127.0.0.1:9094 \
//	  -kafka-tls-ca-file ca.crt -kafka-sasl-mechanism SCRAM-SHA-512 -kafka-sasl-user rxflow
package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"strings"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"

	"rxflow/infra/config"
	"rxflow/infra/kafka"
	"rxflow/infra/kafka/kgoopts"
)

func main() {
	f := config.NewFlags("ready")
	brokers := f.FlagSet.String("brokers", "127.0.0.1:9092", "comma-separated bootstrap brokers")
	timeout := f.FlagSet.Duration("timeout", 2*time.Minute, "how long to wait")
	security := kafka.SecurityFlags(f)
	if err := f.Parse(os.Args[1:]); errors.Is(err, config.ErrHelp) {
		return
	} else if err != nil {
		fail(err)
	}
	sec, err := security()
	if err != nil {
		fail(err)
	}
	opts, err := kgoopts.Security(sec)
	if err != nil {
		fail(err)
	}

	ctx, cancel := context.WithTimeout(context.Background(), *timeout)
	defer cancel()
	start := time.Now()
	for {
		if err = check(ctx, strings.Split(*brokers, ","), opts); err == nil {
			slog.Info("kafka ready", "brokers", *brokers, "waited", time.Since(start).Round(time.Millisecond))
			return
		}
		select {
		case <-ctx.Done():
			slog.Error("kafka not ready", "brokers", *brokers, "waited", time.Since(start).Round(time.Millisecond), "err", err)
			os.Exit(1)
		case <-time.After(250 * time.Millisecond):
		}
	}
}

func fail(err error) {
	fmt.Fprintln(os.Stderr, config.Line("ready", err))
	os.Exit(2)
}

// check asks brokers, through a client made with security, for metadata, a
// produced record and a group coordinator.
func check(ctx context.Context, brokers []string, security []kgo.Opt) error {
	cl, err := kgo.NewClient(append([]kgo.Opt{
		kgo.SeedBrokers(brokers...),
		kgo.AllowAutoTopicCreation(),
		kgo.MetadataMinAge(100 * time.Millisecond),
		kgo.UnknownTopicRetries(-1),
	}, security...)...)
	if err != nil {
		return err
	}
	defer cl.Close()
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()

	meta, err := kmsg.NewPtrMetadataRequest().RequestWith(ctx, cl)
	if err != nil {
		return fmt.Errorf("metadata: %w", err)
	}
	if len(meta.Brokers) == 0 {
		return errors.New("metadata lists no broker")
	}
	rec := &kgo.Record{Topic: "rxflow-ready", Value: []byte("ready")}
	if err := cl.ProduceSync(ctx, rec).FirstErr(); err != nil {
		return fmt.Errorf("produce: %w", err)
	}
	fc := kmsg.NewPtrFindCoordinatorRequest()
	fc.CoordinatorKey = "rxflow-ready"
	fc.CoordinatorKeys = []string{"rxflow-ready"}
	resp, err := fc.RequestWith(ctx, cl)
	if err != nil {
		return fmt.Errorf("find coordinator: %w", err)
	}
	code := resp.ErrorCode
	if len(resp.Coordinators) > 0 {
		code = resp.Coordinators[0].ErrorCode
	}
	if err := kerr.ErrorForCode(code); err != nil {
		return fmt.Errorf("find coordinator: %w", err)
	}
	return nil
}

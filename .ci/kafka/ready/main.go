// Command ready waits until a Kafka broker serves clients: its metadata lists
// a broker, a record can be produced, and the group coordinator is up.
//
//	go run ./.ci/kafka/ready -brokers 127.0.0.1:9092 -timeout 120s
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"strings"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"
)

func main() {
	brokers := flag.String("brokers", "127.0.0.1:9092", "comma-separated bootstrap brokers")
	timeout := flag.Duration("timeout", 2*time.Minute, "how long to wait")
	flag.Parse()

	ctx, cancel := context.WithTimeout(context.Background(), *timeout)
	defer cancel()
	start := time.Now()
	var err error
	for {
		if err = check(ctx, strings.Split(*brokers, ",")); err == nil {
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

func check(ctx context.Context, brokers []string) error {
	cl, err := kgo.NewClient(
		kgo.SeedBrokers(brokers...),
		kgo.AllowAutoTopicCreation(),
		kgo.MetadataMinAge(100*time.Millisecond),
		kgo.UnknownTopicRetries(-1),
	)
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

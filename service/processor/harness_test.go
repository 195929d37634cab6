package processor_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"rxflow/commands"
	"rxflow/infra/eventstore"
	"rxflow/infra/kafka"
	"rxflow/infra/kafka/kafkatest"
	"rxflow/service/processor"
	"rxflow/standin/esdbserver"
)

// topics are one test's topics, unique so that real Kafka can be shared.
type topics struct{ commands, rejections, dlq, retry, group string }

func newTopics(t *testing.T) topics {
	return topics{
		commands:   kafkatest.UniqueTopic(t, "cmd"),
		rejections: kafkatest.UniqueTopic(t, "rej"),
		dlq:        kafkatest.UniqueTopic(t, "dlq"),
		retry:      kafkatest.UniqueTopic(t, "retry"),
		group:      kafkatest.UniqueGroup(t, "proc"),
	}
}

// startESDB starts an embedded EventStoreDB in memory.
func startESDB(t *testing.T, addr string) *esdbserver.Server {
	t.Helper()
	srv, err := esdbserver.Start(esdbserver.Config{Addr: addr, Logger: quiet()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = srv.Close() })
	return srv
}

func quiet() *slog.Logger {
	return slog.New(slog.NewTextHandler(io.Discard, nil))
}

func openStore(t *testing.T, conn string) *eventstore.Store {
	t.Helper()
	st, err := eventstore.Open(eventstore.Config{ConnectionString: conn, Logger: quiet()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = st.Close() })
	return st
}

// startProcessor runs a processor until the test ends and waits until it consumes.
func startProcessor(t *testing.T, brokers []string, tp topics, esdbConn string) *processor.Service {
	t.Helper()
	return startProcessorWith(t, brokers, tp, esdbConn, nil)
}

// startProcessorWith is startProcessor with the config changed by tune.
func startProcessorWith(t *testing.T, brokers []string, tp topics, esdbConn string, tune func(*processor.Config)) *processor.Service {
	t.Helper()
	cfg := processor.Config{
		Kafka:        kafka.Config{Brokers: brokers, ConsumerGroup: tp.group},
		CommandTopic: tp.commands, RejectionTopic: tp.rejections, DeadLetterTopic: tp.dlq, RetryTopic: tp.retry,
		EventStore: eventstore.Config{ConnectionString: esdbConn, Logger: quiet()},
		HTTPAddr:   "127.0.0.1:0", Logger: quiet(),
	}
	if tune != nil {
		tune(&cfg)
	}
	svc, err := processor.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- svc.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("processor run: %v", err)
		}
	})
	select {
	case <-svc.Running():
	case err := <-done:
		t.Fatalf("processor stopped: %v", err)
	case <-time.After(30 * time.Second):
		t.Fatal("processor did not start")
	}
	return svc
}

// eventually polls cond until it holds, failing the test after timeout.
func eventually(t *testing.T, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", timeout, what)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// metric reads one sample of the processor's /metrics.
func metric(t *testing.T, svc *processor.Service, sample string) string {
	t.Helper()
	resp, err := http.Get("http://" + svc.HTTPAddr() + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	for line := range strings.SplitSeq(string(body), "\n") {
		if v, ok := strings.CutPrefix(line, sample+" "); ok {
			return v
		}
	}
	return ""
}

// command builds a seed-format command record keyed by urn.
func command(urn, id, event, payload string) kafkatest.Record {
	if payload == "" {
		payload = "{}"
	}
	return kafkatest.Record{Key: []byte(urn), Value: []byte(fmt.Sprintf(`{"urn":%q,"event":%q,"commandId":%q,"payload":%s}`, urn, event, id, payload))}
}

// rejectionOf decodes a record of the rejections topic, which must be
// valid UTF-8 JSON.
func rejectionOf(t *testing.T, rec kafkatest.Record) commands.RefusalMessage {
	t.Helper()
	if !utf8.Valid(rec.Value) || !json.Valid(rec.Value) {
		t.Fatalf("rejection is not valid UTF-8 JSON: %q", rec.Value)
	}
	var m commands.RefusalMessage
	if err := json.Unmarshal(rec.Value, &m); err != nil {
		t.Fatal(err)
	}
	return m
}

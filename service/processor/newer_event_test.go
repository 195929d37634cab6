package processor_test

import (
	"context"
	"strconv"
	"testing"
	"time"

	"github.com/EventStore/EventStore-Client-Go/v4/esdb"
	"github.com/google/uuid"

	"rxflow/domain"
	"rxflow/events"
	"rxflow/infra/kafka/kafkatest"
	"rxflow/service/processor"
)

// During a rolling deploy a newer replica may write an event this code
// cannot read. A command on that stream is not unprocessable: it waits,
// retried like an outage past every router retry, is never dead-lettered,
// and its offset is not committed; the wait shows in a metric.
func TestCommandOnANewerEventWaitsForNewerCode(t *testing.T) {
	kafkatest.ForEachCluster(t, func(t *testing.T, brokers []string) {
		tp := newTopics(t)
		srv := startESDB(t, "127.0.0.1:0")
		urn := "urn:rx:newer-" + tp.group
		appendNewer(t, srv.ConnectionString(), urn)
		svc := startProcessorWith(t, brokers, tp, srv.ConnectionString(), func(c *processor.Config) {
			c.Retry = processor.RetryPolicy{MaxRetries: 2, InitialInterval: time.Millisecond, MaxInterval: time.Millisecond}
		})
		sent := kafkatest.Produce(t, brokers, tp.commands, command(urn, urn+"/approve", "prescription.approve", validPayload[domain.Approve]))

		// 3 runs per delivery: waiting past 4 deliveries shows the router
		// gave up retrying without dead-lettering it.
		eventually(t, 60*time.Second, "the command to be retried across deliveries", func() bool {
			if v := metric(t, svc, `rxflow_commands_total{outcome="dead_lettered"}`); v != "" && v != "0" {
				t.Fatalf("dead-lettered: %s", v)
			}
			n, _ := strconv.Atoi(metric(t, svc, "rxflow_commands_waiting_for_newer_code_total"))
			return n >= 12
		})
		if got := kafkatest.ConsumeAll(t, brokers, tp.dlq); len(got) != 0 {
			t.Fatalf("dead-lettered %d records: %s", len(got), got[0].Value)
		}
		if off, ok := kafkatest.CommittedOffsets(t, brokers, tp.group, tp.commands)[sent[0].Partition]; ok && off > sent[0].Offset {
			t.Fatalf("offset %d committed while the command waits", off)
		}
		if v := metric(t, svc, `rxflow_dead_letters_total{code="unprocessable"}`); v != "" && v != "0" {
			t.Fatalf("unprocessable dead letters: %s", v)
		}
	})
}

// appendNewer writes urn's stream as a newer replica would: a request at a
// schema version this code does not know.
func appendNewer(t *testing.T, conn, urn string) {
	t.Helper()
	settings, err := esdb.ParseConnectionString(conn)
	if err != nil {
		t.Fatal(err)
	}
	settings.Logger = func(esdb.LogLevel, string, ...any) {}
	client, err := esdb.NewClient(settings)
	if err != nil {
		t.Fatal(err)
	}
	defer client.Close()
	newer := events.SchemaVersion(events.NameRequested) + 1
	meta := `{"eventId":"` + uuid.NewString() + `","commandId":"c1","occurredAt":"2026-11-29T10:00:00Z","schemaVersion":` + strconv.Itoa(newer) + `}`
	data := `{"urn":"` + urn + `","patientId":"p1","prescriberId":"d1","medication":{"name":"A","quantity":1,"refills":0,"form":"tablet"},"requestedAt":"2026-11-29T10:00:00Z"}`
	ev := esdb.EventData{EventID: uuid.New(), EventType: events.NameRequested, ContentType: esdb.ContentTypeJson, Data: []byte(data), Metadata: []byte(meta)}
	if _, err := client.AppendToStream(context.Background(), events.StreamName(urn), esdb.AppendToStreamOptions{ExpectedRevision: esdb.NoStream{}}, ev); err != nil {
		t.Fatal(err)
	}
}

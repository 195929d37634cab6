package processor_test

import (
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"
	"time"

	"rxflow/commands"
	"rxflow/domain"
	"rxflow/events"
	"rxflow/infra/kafka/kafkatest"
	"rxflow/service/processor"
	"rxflow/standin/esdbserver"
)

// fastRetries makes the router give up on a failing message within
// milliseconds, so that a misjudged outage would be dead-lettered at once.
func fastRetries(cfg *processor.Config) {
	cfg.Retry = processor.RetryPolicy{MaxRetries: 2, InitialInterval: 10 * time.Millisecond, MaxInterval: 20 * time.Millisecond}
}

// A message that keeps failing while the store and broker are healthy is
// dead-lettered (processing_failed) and the valid commands queued behind it
// on its partition are processed. Here the poison is a request whose event
// exceeds the store's maximum append size: every append is refused.
func TestPoisonMessageDoesNotHoldItsPartition(t *testing.T) {
	kafkatest.ForEachCluster(t, func(t *testing.T, brokers []string) {
		tp := newTopics(t)
		srv, err := esdbserver.Start(esdbserver.Config{Addr: "127.0.0.1:0", MaxAppendSize: 4 << 10, Logger: quiet()})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = srv.Close() })
		svc := startProcessorWith(t, brokers, tp, srv.ConnectionString(), fastRetries)
		st := openStore(t, srv.ConnectionString())

		poisonURN := "urn:rx:poison-" + tp.group
		big := fmt.Sprintf(`{"patientId":"p","prescriberId":"d","medication":{"name":%q,"quantity":1}}`, strings.Repeat("m", 8<<10))
		recs := []kafkatest.Record{command(poisonURN, "poison", "prescription.request", big)}
		var valid []string
		for i := range 5 {
			urn := fmt.Sprintf("urn:rx:behind-%d-%s", i, tp.group)
			valid = append(valid, urn)
			recs = append(recs, command(urn, urn+"/req", "prescription.request", validPayload[domain.Request]))
		}
		kafkatest.ProduceToPartitions(t, brokers, tp.commands, recs...) // all on partition 0, the poison first

		eventually(t, 60*time.Second, "the commands behind the poison", func() bool {
			for _, urn := range valid {
				if !slices.Equal(names(t, st, urn), []string{events.NameRequested}) {
					return false
				}
			}
			return true
		})
		var dead []kafkatest.Record
		eventually(t, 30*time.Second, "the poison's dead letter", func() bool {
			dead = kafkatest.ConsumeAll(t, brokers, tp.dlq)
			return len(dead) > 0
		})
		if len(dead) != 1 || dead[0].Headers[processor.HeaderDLQCode] != commands.DeadLetterProcessingFailed {
			t.Fatalf("dead letters: %+v", dead)
		}
		d := deadLetterOf(t, dead[0])
		if d.Code != commands.DeadLetterProcessingFailed || !strings.Contains(d.Error, "append") || d.Source.Offset != 0 ||
			string(deadLetterValue(t, d)) != string(recs[0].Value) {
			t.Fatalf("dead letter: %+v", d)
		}
		if got := names(t, st, poisonURN); len(got) != 0 {
			t.Fatalf("poison stream holds %v", got)
		}
		if got := metric(t, svc, `rxflow_dead_letters_total{code="processing_failed"}`); got != "1" {
			t.Fatalf("processing_failed metric = %q, want 1", got)
		}
	})
}

// During a store outage nothing is dead-lettered, however many times the
// router's retries are spent; everything is processed after recovery.
func TestStoreOutageNeverDeadLetters(t *testing.T) {
	kafkatest.ForEachCluster(t, func(t *testing.T, brokers []string) {
		tp := newTopics(t)
		srv := startESDB(t, "127.0.0.1:0")
		addr := srv.Addr()
		if err := srv.Close(); err != nil {
			t.Fatal(err)
		}
		startProcessorWith(t, brokers, tp, "esdb://"+addr+"?tls=false", fastRetries)
		var recs []kafkatest.Record
		var urns []string
		for i := range 4 {
			urn := fmt.Sprintf("urn:rx:outage-%d-%s", i, tp.group)
			urns = append(urns, urn)
			recs = append(recs, command(urn, urn+"/req", "prescription.request", validPayload[domain.Request]))
		}
		kafkatest.ProduceToPartitions(t, brokers, tp.commands, recs...)

		time.Sleep(5 * time.Second) // far more than the retries' few milliseconds
		if n := len(kafkatest.ConsumeAll(t, brokers, tp.dlq)) + len(kafkatest.ConsumeAll(t, brokers, tp.rejections)); n != 0 {
			t.Fatalf("%d outcomes published while the store was down", n)
		}
		srv = startESDB(t, addr)
		st := openStore(t, srv.ConnectionString())
		eventually(t, 60*time.Second, "the held commands to be appended", func() bool {
			for _, urn := range urns {
				if !slices.Equal(names(t, st, urn), []string{events.NameRequested}) {
					return false
				}
			}
			return true
		})
		if n := len(kafkatest.ConsumeAll(t, brokers, tp.dlq)); n != 0 {
			t.Fatalf("%d dead letters after an outage", n)
		}
	})
}

// Keyless commands, as the seed's producer sends them, land on any
// partition; request, approve and process of each prescription still end
// in processing, because a command that came too early is retried later.
func TestKeylessCommandsKeepTheirOrder(t *testing.T) {
	kafkatest.ForEachCluster(t, func(t *testing.T, brokers []string) {
		tp := newTopics(t)
		srv := startESDB(t, "127.0.0.1:0")
		startProcessorWith(t, brokers, tp, srv.ConnectionString(), func(cfg *processor.Config) {
			cfg.DeferDelays = []time.Duration{200 * time.Millisecond, 400 * time.Millisecond, 800 * time.Millisecond, 1600 * time.Millisecond, 3200 * time.Millisecond}
		})
		st := openStore(t, srv.ConnectionString())
		rng := rand.New(rand.NewPCG(1, 2))
		var recs []kafkatest.Record
		var urns []string
		for i := range 50 {
			urn := fmt.Sprintf("urn:rx:keyless-%d-%s", i, tp.group)
			urns = append(urns, urn)
			for _, c := range []domain.CommandType{domain.Request, domain.Approve, domain.Process} {
				rec := command(urn, "", string(c), validPayload[c])
				rec.Key, rec.Value = nil, []byte(fmt.Sprintf(`{"urn":%q,"event":%q,"payload":%s}`, urn, c, validPayload[c]))
				rec.Partition = rng.Int32N(8)
				recs = append(recs, rec)
			}
		}
		kafkatest.ProduceToPartitions(t, brokers, tp.commands, recs...)
		want := []string{events.NameRequested, events.NameApproved, events.NameProcessingStarted}
		eventually(t, 90*time.Second, "every prescription in processing", func() bool {
			for _, urn := range urns {
				if !slices.Equal(names(t, st, urn), want) {
					return false
				}
			}
			return true
		})
		if rejs := kafkatest.ConsumeAll(t, brokers, tp.rejections); len(rejs) != 0 {
			t.Fatalf("%d rejections, first %s", len(rejs), rejs[0].Value)
		}
	})
}

// A command with its key is refused at once; a keyless one that can never
// succeed is refused after its delayed retries, and the refusal says so.
func TestOnlyKeylessCommandsAreDeferred(t *testing.T) {
	kafkatest.ForEachCluster(t, func(t *testing.T, brokers []string) {
		tp := newTopics(t)
		srv := startESDB(t, "127.0.0.1:0")
		startProcessorWith(t, brokers, tp, srv.ConnectionString(), func(cfg *processor.Config) {
			cfg.DeferDelays = []time.Duration{100 * time.Millisecond, 200 * time.Millisecond}
		})
		keyed := "urn:rx:keyed-" + tp.group
		keyless := "urn:rx:never-" + tp.group
		kafkatest.Produce(t, brokers, tp.commands, command(keyed, "k1", "prescription.approve", validPayload[domain.Approve]),
			kafkatest.Record{Value: []byte(fmt.Sprintf(`{"urn":%q,"event":"prescription.approve","commandId":"k2","payload":{"approvedBy":"d"}}`, keyless))})

		var rejs []kafkatest.Record
		eventually(t, 30*time.Second, "both final rejections", func() bool {
			rejs = kafkatest.ConsumeAll(t, brokers, tp.rejections)
			return len(rejs) >= 2
		})
		byURN := map[string]commands.RefusalMessage{}
		for _, r := range rejs {
			m := rejectionOf(t, r)
			byURN[m.URN] = m
		}
		if m := byURN[keyed]; m.Code != string(domain.ReasonUnknownPrescription) || m.Retries != 0 {
			t.Errorf("keyed command: %+v", m)
		}
		if m := byURN[keyless]; m.Code != string(domain.ReasonUnknownPrescription) || m.Retries != 2 || !strings.Contains(m.Reason, "2 delayed retries") {
			t.Errorf("keyless command: %+v", m)
		}
		retried := kafkatest.ConsumeAll(t, brokers, tp.retry)
		if len(retried) != 2 {
			t.Fatalf("%d records on the retry topic, want 2 (the keyless command only)", len(retried))
		}
		for i, r := range retried {
			if string(r.Key) != keyless || r.Headers[processor.HeaderRetryCount] != fmt.Sprint(i+1) {
				t.Errorf("retry record %d: key %q headers %v", i, r.Key, r.Headers)
			}
		}
	})
}

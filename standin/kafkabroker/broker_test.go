package kafkabroker_test

import (
	"context"
	"maps"
	"net"
	"slices"
	"strconv"
	"testing"
	"time"

	"github.com/IBM/sarama"
	"github.com/ThreeDotsLabs/watermill"
	"github.com/ThreeDotsLabs/watermill/message"

	"rxflow/infra/kafka"
	"rxflow/infra/kafka/kafkatest"
	"rxflow/standin/kafkabroker"
)

func start(t *testing.T, cfg kafkabroker.Config) *kafkabroker.Broker {
	t.Helper()
	b, err := kafkabroker.Start(cfg)
	if err != nil {
		t.Fatalf("start: %v", err)
	}
	t.Cleanup(b.Close)
	return b
}

func partitions(t *testing.T, brokers []string, topic string) int {
	t.Helper()
	c := sarama.NewConfig()
	c.Version = sarama.V3_6_0_0
	client, err := sarama.NewClient(brokers, c)
	if err != nil {
		t.Fatal(err)
	}
	defer client.Close()
	ps, err := client.Partitions(topic)
	if err != nil {
		t.Fatalf("partitions of %s: %v", topic, err)
	}
	return len(ps)
}

func TestStartPicksFreePortAndCreatesTopics(t *testing.T) {
	b := start(t, kafkabroker.Config{Addr: "127.0.0.1:0", Topics: []string{"seeded"}})
	addrs := b.Addrs()
	if len(addrs) != 1 {
		t.Fatalf("addrs %v, want one", addrs)
	}
	if _, port, _ := net.SplitHostPort(addrs[0]); port == "0" || port == "" {
		t.Fatalf("addr %s has no bound port", addrs[0])
	}
	if n := partitions(t, addrs, "seeded"); n != 8 {
		t.Errorf("seeded topic has %d partitions, want 8", n)
	}
	kafkatest.Produce(t, addrs, "auto", kafkatest.Record{Value: []byte("v")})
	if n := partitions(t, addrs, "auto"); n != 8 {
		t.Errorf("auto-created topic has %d partitions, want 8", n)
	}
}

func TestStartOnBusyAddrFails(t *testing.T) {
	b := start(t, kafkabroker.Config{Addr: "127.0.0.1:0"})
	if b2, err := kafkabroker.Start(kafkabroker.Config{Addr: b.Addrs()[0]}); err == nil {
		b2.Close()
		t.Fatal("second broker started on a busy address")
	}
}

// With a DataDir, a restarted broker still has the topics, the records and
// the consumer groups' committed offsets, and adds newly configured topics.
func TestRestartKeepsTopicsRecordsAndOffsets(t *testing.T) {
	dir := t.TempDir()
	cfg := kafkabroker.Config{Addr: "127.0.0.1:0", DataDir: dir, Partitions: 3, Topics: []string{"orders"}}
	b := start(t, cfg)
	brokers := b.Addrs()
	kcfg := kafka.Config{Brokers: brokers, ConsumerGroup: "projector"}

	pub, err := kafka.NewPublisher(kcfg, watermill.NopLogger{})
	if err != nil {
		t.Fatal(err)
	}
	for i := range 20 {
		m := message.NewMessage(watermill.NewUUID(), []byte(strconv.Itoa(i)))
		m.Metadata.Set(kafka.MetadataKey, "rx-"+strconv.Itoa(i%5))
		if err := pub.Publish("orders", m); err != nil {
			t.Fatal(err)
		}
	}
	if err := pub.Close(); err != nil {
		t.Fatal(err)
	}
	consume(t, kcfg, "orders", 12)

	records := kafkatest.ConsumeAll(t, brokers, "orders")
	offsets := kafkatest.CommittedOffsets(t, brokers, "projector", "orders")
	if len(records) != 20 || len(offsets) == 0 {
		t.Fatalf("before restart: %d records, offsets %v", len(records), offsets)
	}
	b.Close()

	cfg.Topics = append(cfg.Topics, "added")
	b = start(t, cfg)
	brokers = b.Addrs()
	if n := partitions(t, brokers, "orders"); n != 3 {
		t.Errorf("after restart orders has %d partitions, want 3", n)
	}
	if n := partitions(t, brokers, "added"); n != 3 {
		t.Errorf("topic added on restart has %d partitions, want 3", n)
	}
	if got := kafkatest.ConsumeAll(t, brokers, "orders"); !slices.EqualFunc(got, records, sameRecord) {
		t.Errorf("after restart records differ:\n got %v\nwant %v", got, records)
	}
	if got := kafkatest.CommittedOffsets(t, brokers, "projector", "orders"); !maps.Equal(got, offsets) {
		t.Errorf("after restart committed offsets %v, want %v", got, offsets)
	}
}

func sameRecord(a, b kafkatest.Record) bool {
	return a.Partition == b.Partition && a.Offset == b.Offset &&
		string(a.Key) == string(b.Key) && string(a.Value) == string(b.Value) && maps.Equal(a.Headers, b.Headers)
}

// consume acks n messages of topic in cfg's group, then closes the
// subscriber, which commits their offsets.
func consume(t *testing.T, cfg kafka.Config, topic string, n int) {
	t.Helper()
	sub, err := kafka.NewSubscriber(cfg, watermill.NopLogger{})
	if err != nil {
		t.Fatal(err)
	}
	defer func() {
		if err := sub.Close(); err != nil {
			t.Errorf("close subscriber: %v", err)
		}
	}()
	msgs, err := sub.Subscribe(context.Background(), topic)
	if err != nil {
		t.Fatal(err)
	}
	for range n {
		select {
		case m := <-msgs:
			m.Ack()
		case <-time.After(time.Minute):
			t.Fatal("no message within a minute")
		}
	}
}

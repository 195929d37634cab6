// Package bustest is the conformance suite of rxflow's Kafka bus: the
// guarantees the services rely on, checked against a given cluster with the
// settings of package kafka.
package bustest

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"os"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/ThreeDotsLabs/watermill"
	"github.com/ThreeDotsLabs/watermill/message"

	"rxflow/infra/kafka"
	"rxflow/infra/kafka/kafkatest"
)

const (
	// partitions of every topic the suite creates.
	partitions = 8
	// wait bounds each wait for a message or a cluster operation; it guards
	// against hangs and asserts nothing about speed.
	wait = 60 * time.Second
)

// Run runs the suite against brokers; the subtests run in parallel, each on
// its own topics and consumer groups.
func Run(t *testing.T, brokers []string) {
	tests := []struct {
		name string
		fn   func(*testing.T, []string)
	}{
		{"RoundTripKeyPicksPartition", testRoundTripKeyPicksPartition},
		{"KeylessMessagesSpread", testKeylessMessagesSpread},
		{"PerKeyOrdering", testPerKeyOrdering},
		{"MetadataRoundTrip", testMetadataRoundTrip},
		{"LargeMessage", testLargeMessage},
		{"OversizedRecordIsDelivered", testOversizedRecordIsDelivered},
		{"NackRedelivers", testNackRedelivers},
		{"AckedNotRedeliveredAfterReopen", testAckedNotRedeliveredAfterReopen},
		{"GroupMembersSplitPartitions", testGroupMembersSplitPartitions},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			tc.fn(t, brokers)
		})
	}
}

// Published messages with one key share a partition, and a franz-go producer
// (Kafka's Java partitioning) puts that key on the same partition.
func testRoundTripKeyPicksPartition(t *testing.T, brokers []string) {
	cfg, topic := setup(t, brokers, 0)
	pub := publisher(t, cfg)
	keys := []string{"rx-1", "rx-2", "rx-3"}
	var sent []*message.Message
	for i := range 10 {
		for _, k := range keys {
			sent = append(sent, newMessage(k, fmt.Sprintf("%s/%d", k, i)))
		}
	}
	publish(t, pub, topic, sent...)

	got := receive(t, subscribe(t, cfg, topic), len(sent))
	partitionOf := map[string]string{}
	for _, m := range got {
		k := m.Metadata.Get(kafka.MetadataKey)
		p := m.Metadata.Get(kafka.MetadataPartition)
		if prev, ok := partitionOf[k]; ok && prev != p {
			t.Errorf("key %s on partitions %s and %s", k, prev, p)
		}
		partitionOf[k] = p
	}
	assertSameMessages(t, sent, got)

	for _, k := range keys {
		raw := kafkatest.Produce(t, brokers, topic, kafkatest.Record{Key: []byte(k), Value: []byte("raw")})
		if p := strconv.Itoa(int(raw[0].Partition)); p != partitionOf[k] {
			t.Errorf("key %s: published to partition %s, franz-go produced to %s", k, partitionOf[k], p)
		}
	}
	for _, r := range kafkatest.ConsumeAll(t, brokers, topic) {
		if _, ok := r.Headers[kafka.MetadataKey]; ok {
			t.Errorf("record at %d/%d carries the key as a header too", r.Partition, r.Offset)
		}
	}
}

// Messages without a key get no record key, so they are not all hashed to
// one partition.
func testKeylessMessagesSpread(t *testing.T, brokers []string) {
	cfg, topic := setup(t, brokers, 0)
	pub := publisher(t, cfg)
	for i := range 40 {
		publish(t, pub, topic, newMessage("", strconv.Itoa(i)))
	}
	used := map[int32]bool{}
	for _, r := range kafkatest.ConsumeAll(t, brokers, topic) {
		if r.Key != nil {
			t.Errorf("record at %d/%d has key %q", r.Partition, r.Offset, r.Key)
		}
		used[r.Partition] = true
	}
	if len(used) < 2 {
		t.Errorf("40 keyless messages all went to partitions %v", used)
	}
}

// Concurrent publishers of many keys: one subscriber sees every key's
// messages exactly once and in publish order.
func testPerKeyOrdering(t *testing.T, brokers []string) {
	const keys, perKey, publishers = 40, 25, 8
	cfg, topic := setup(t, brokers, 0)
	pub := publisher(t, cfg)

	var wg sync.WaitGroup
	errs := make(chan error, publishers)
	for w := range publishers {
		wg.Go(func() {
			for i := range perKey {
				for k := w; k < keys; k += publishers {
					key := fmt.Sprintf("key-%d", k)
					if err := pub.Publish(topic, newMessage(key, strconv.Itoa(i))); err != nil {
						errs <- err
						return
					}
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatalf("publish: %v", err)
	}

	next := map[string]int{}
	partitionOf := map[string]string{}
	for _, m := range receive(t, subscribe(t, cfg, topic), keys*perKey) {
		k := m.Metadata.Get(kafka.MetadataKey)
		if want := strconv.Itoa(next[k]); string(m.Payload) != want {
			t.Errorf("key %s: got message %s, want %s", k, m.Payload, want)
		}
		next[k]++
		if p, ok := partitionOf[k]; ok && p != m.Metadata.Get(kafka.MetadataPartition) {
			t.Errorf("key %s moved from partition %s to %s", k, p, m.Metadata.Get(kafka.MetadataPartition))
		}
		partitionOf[k] = m.Metadata.Get(kafka.MetadataPartition)
	}
	for k := range keys {
		if n := next[fmt.Sprintf("key-%d", k)]; n != perKey {
			t.Errorf("key-%d: got %d messages, want %d", k, n, perKey)
		}
	}
}

// Metadata travels as headers; consumed messages also carry the record's
// topic, partition, offset and key, which are not re-sent as headers when
// the message is published again.
func testMetadataRoundTrip(t *testing.T, brokers []string) {
	cfg, topic := setup(t, brokers, 0)
	forward := kafkatest.UniqueTopic(t, "bus-forward")
	ensureTopics(t, cfg, forward)
	pub := publisher(t, cfg)

	sent := newMessage("rx-42", "payload")
	sent.Metadata.Set("correlation_id", "c-1")
	sent.Metadata.Set("unicode", "Ünïcødé ✓")
	sent.Metadata.Set("empty", "")
	publish(t, pub, topic, sent)

	got := receive(t, subscribe(t, cfg, topic), 1)[0]
	raw := kafkatest.ConsumeAll(t, brokers, topic)
	if len(raw) != 1 {
		t.Fatalf("topic holds %d records, want 1", len(raw))
	}
	want := map[string]string{
		"correlation_id":        "c-1",
		"unicode":               "Ünïcødé ✓",
		"empty":                 "",
		kafka.MetadataKey:       "rx-42",
		kafka.MetadataTopic:     topic,
		kafka.MetadataPartition: strconv.Itoa(int(raw[0].Partition)),
		kafka.MetadataOffset:    strconv.FormatInt(raw[0].Offset, 10),
	}
	for k, v := range want {
		if gv, ok := got.Metadata[k]; !ok || gv != v {
			t.Errorf("metadata %s = %q (present %t), want %q", k, gv, ok, v)
		}
	}
	if len(got.Metadata) != len(want) {
		t.Errorf("metadata %v has entries beyond %v", got.Metadata, want)
	}
	if got.UUID != sent.UUID || string(got.Payload) != "payload" {
		t.Errorf("got message %s %q, want %s %q", got.UUID, got.Payload, sent.UUID, "payload")
	}

	publish(t, pub, forward, got)
	fwd := kafkatest.ConsumeAll(t, brokers, forward)
	if len(fwd) != 1 {
		t.Fatalf("forward topic holds %d records, want 1", len(fwd))
	}
	if string(fwd[0].Key) != "rx-42" {
		t.Errorf("forwarded record key %q, want rx-42", fwd[0].Key)
	}
	for _, h := range []string{kafka.MetadataKey, kafka.MetadataTopic, kafka.MetadataPartition, kafka.MetadataOffset} {
		if v, ok := fwd[0].Headers[h]; ok {
			t.Errorf("forwarded record has header %s=%q", h, v)
		}
	}
	if fwd[0].Headers["correlation_id"] != "c-1" {
		t.Errorf("forwarded record headers %v lack correlation_id", fwd[0].Headers)
	}
}

// A message over sarama's default 1 MiB limit but within MaxMessageBytes is
// published and delivered intact; one over MaxMessageBytes is refused.
func testLargeMessage(t *testing.T, brokers []string) {
	const limit = 3 << 20
	cfg, topic := setup(t, brokers, limit)
	pub := publisher(t, cfg)

	big := newMessage("big", "")
	big.Payload = pattern(2 << 20)
	publish(t, pub, topic, big)
	if err := pub.Publish(topic, newMessage("too-big", string(pattern(limit+1)))); err == nil {
		t.Errorf("publishing %d bytes with MaxMessageBytes %d succeeded", limit+1, limit)
	}

	got := receive(t, subscribe(t, cfg, topic), 1)[0]
	if got.UUID != big.UUID || !bytes.Equal(got.Payload, big.Payload) {
		t.Errorf("got %s with %d bytes, want %s with %d bytes", got.UUID, len(got.Payload), big.UUID, len(big.Payload))
	}
}

// A record larger than the subscriber's MaxMessageBytes, written by another
// producer, still reaches the subscriber, which can then dead-letter it.
func testOversizedRecordIsDelivered(t *testing.T, brokers []string) {
	cfg, topic := setup(t, brokers, 3<<20)
	value := pattern(2 << 20)
	kafkatest.Produce(t, brokers, topic, kafkatest.Record{Key: []byte("k"), Value: value})

	cfg.MaxMessageBytes = 0 // the subscriber keeps the 1 MiB default
	got := receive(t, subscribe(t, cfg, topic), 1)[0]
	if !bytes.Equal(got.Payload, value) {
		t.Errorf("got %d bytes, want the %d-byte record", len(got.Payload), len(value))
	}
}

// A nacked message comes again, before the next message of its partition.
func testNackRedelivers(t *testing.T, brokers []string) {
	cfg, topic := setup(t, brokers, 0)
	pub := publisher(t, cfg)
	first, second := newMessage("k", "first"), newMessage("k", "second")
	publish(t, pub, topic, first, second)

	msgs := subscribe(t, cfg, topic)
	m := next(t, msgs)
	if m.UUID != first.UUID {
		t.Fatalf("got %s first, want %s", m.Payload, first.Payload)
	}
	offset := m.Metadata.Get(kafka.MetadataOffset)
	m.Nack()
	again := next(t, msgs)
	if again.UUID != first.UUID || again.Metadata.Get(kafka.MetadataOffset) != offset {
		t.Fatalf("after nack got %s at offset %s, want %s at %s again",
			again.Payload, again.Metadata.Get(kafka.MetadataOffset), first.Payload, offset)
	}
	again.Ack()
	if m := next(t, msgs); m.UUID != second.UUID {
		t.Fatalf("after ack got %s, want %s", m.Payload, second.Payload)
	}
}

// Offsets of acked messages are committed when a subscriber closes: a new
// subscriber of the group gets at most the last acked message again.
func testAckedNotRedeliveredAfterReopen(t *testing.T, brokers []string) {
	const n = 30
	cfg, topic := setup(t, brokers, 0)
	pub := publisher(t, cfg)
	var sent []*message.Message
	for i := range n {
		sent = append(sent, newMessage("one-partition", strconv.Itoa(i)))
	}
	publish(t, pub, topic, sent...)

	sub := newSubscriber(t, cfg)
	msgs, err := sub.Subscribe(context.Background(), topic)
	if err != nil {
		t.Fatal(err)
	}
	got := receive(t, msgs, n)
	assertSameMessages(t, sent, got)
	if err := sub.Close(); err != nil {
		t.Fatalf("close subscriber: %v", err)
	}

	partition, _ := strconv.Atoi(got[n-1].Metadata.Get(kafka.MetadataPartition))
	last, _ := strconv.ParseInt(got[n-1].Metadata.Get(kafka.MetadataOffset), 10, 64)
	committed, ok := kafkatest.CommittedOffsets(t, brokers, cfg.ConsumerGroup, topic)[int32(partition)]
	if !ok || committed < last || committed > last+1 {
		t.Errorf("committed offset %d (present %t), want %d or %d", committed, ok, last, last+1)
	}

	sentinel := newMessage("one-partition", "sentinel")
	publish(t, pub, topic, sentinel)
	reopened := subscribe(t, cfg, topic)
	for {
		m := next(t, reopened)
		m.Ack()
		if m.UUID == sentinel.UUID {
			break
		}
		if m.UUID != sent[n-1].UUID {
			t.Errorf("acked message %s delivered again after reopen", m.Payload)
		}
	}
}

// Two subscribers of one group split the partitions and together receive
// every message; a rebalance may redeliver at most the message in flight on
// each partition.
func testGroupMembersSplitPartitions(t *testing.T, brokers []string) {
	const maxDuplicates = 2 * partitions // up to two rebalances
	cfg, topic := setup(t, brokers, 0)
	pub := publisher(t, cfg)

	var mu sync.Mutex
	seen := map[string]int{} // UUID -> deliveries
	perMember := [2]int{}
	for i := range perMember {
		msgs := subscribe(t, cfg, topic)
		go func() {
			for m := range msgs {
				mu.Lock()
				seen[m.UUID]++
				perMember[i]++
				mu.Unlock()
				m.Ack()
			}
		}()
	}
	var sent []*message.Message
	deadline := time.Now().Add(wait)
	for round := 0; ; round++ {
		batch := make([]*message.Message, 0, 2*partitions)
		for k := range 2 * partitions {
			batch = append(batch, newMessage(fmt.Sprintf("key-%d", k), strconv.Itoa(round)))
		}
		publish(t, pub, topic, batch...)
		sent = append(sent, batch...)
		mu.Lock()
		both := perMember[0] > 0 && perMember[1] > 0
		mu.Unlock()
		if both {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("after %d messages, members received %v: the group did not split the partitions", len(sent), perMember)
		}
		time.Sleep(100 * time.Millisecond)
	}

	for {
		mu.Lock()
		var missing, duplicates int
		for _, m := range sent {
			switch n := seen[m.UUID]; {
			case n == 0:
				missing++
			case n > 1:
				duplicates += n - 1
			}
		}
		members := perMember
		mu.Unlock()
		if missing == 0 {
			t.Logf("%d messages, members received %v, %d duplicates", len(sent), members, duplicates)
			if duplicates > maxDuplicates {
				t.Errorf("%d duplicates, want at most %d", duplicates, maxDuplicates)
			}
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d of %d messages never delivered (members received %v)", missing, len(sent), members)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func setup(t *testing.T, brokers []string, maxMessageBytes int) (kafka.Config, string) {
	t.Helper()
	cfg := kafka.Config{
		Brokers:         brokers,
		ConsumerGroup:   kafkatest.UniqueGroup(t, "bus"),
		MaxMessageBytes: maxMessageBytes,
	}
	topic := kafkatest.UniqueTopic(t, "bus")
	ensureTopics(t, cfg, topic)
	return cfg, topic
}

func ensureTopics(t *testing.T, cfg kafka.Config, topics ...string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), wait)
	defer cancel()
	if err := kafka.EnsureTopics(ctx, cfg, partitions, topics...); err != nil {
		t.Fatalf("ensure topics: %v", err)
	}
}

func logger() watermill.LoggerAdapter {
	return watermill.NewSlogLogger(slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn})))
}

func publisher(t *testing.T, cfg kafka.Config) message.Publisher {
	t.Helper()
	pub, err := kafka.NewPublisher(cfg, logger())
	if err != nil {
		t.Fatalf("new publisher: %v", err)
	}
	t.Cleanup(func() {
		if err := pub.Close(); err != nil {
			t.Errorf("close publisher: %v", err)
		}
	})
	return pub
}

// newSubscriber returns a subscriber of cfg's group, closed when the test ends.
func newSubscriber(t *testing.T, cfg kafka.Config) message.Subscriber {
	t.Helper()
	sub, err := kafka.NewSubscriber(cfg, logger())
	if err != nil {
		t.Fatalf("new subscriber: %v", err)
	}
	t.Cleanup(func() {
		if err := sub.Close(); err != nil {
			t.Errorf("close subscriber: %v", err)
		}
	})
	return sub
}

// subscribe subscribes a new subscriber of cfg's group to topic.
func subscribe(t *testing.T, cfg kafka.Config, topic string) <-chan *message.Message {
	t.Helper()
	msgs, err := newSubscriber(t, cfg).Subscribe(context.Background(), topic)
	if err != nil {
		t.Fatalf("subscribe to %s: %v", topic, err)
	}
	return msgs
}

func newMessage(key, payload string) *message.Message {
	m := message.NewMessage(watermill.NewUUID(), []byte(payload))
	if key != "" {
		m.Metadata.Set(kafka.MetadataKey, key)
	}
	return m
}

func publish(t *testing.T, pub message.Publisher, topic string, msgs ...*message.Message) {
	t.Helper()
	if err := pub.Publish(topic, msgs...); err != nil {
		t.Fatalf("publish to %s: %v", topic, err)
	}
}

// next returns the next message without acking it.
func next(t *testing.T, msgs <-chan *message.Message) *message.Message {
	t.Helper()
	select {
	case m, ok := <-msgs:
		if !ok {
			t.Fatal("subscription closed")
		}
		return m
	case <-time.After(wait):
		t.Fatalf("no message within %s", wait)
	}
	return nil
}

// receive acks and returns the next n messages.
func receive(t *testing.T, msgs <-chan *message.Message, n int) []*message.Message {
	t.Helper()
	got := make([]*message.Message, 0, n)
	for len(got) < n {
		m := next(t, msgs)
		m.Ack()
		got = append(got, m)
	}
	return got
}

// assertSameMessages checks that got holds each sent message exactly once,
// with its payload.
func assertSameMessages(t *testing.T, sent, got []*message.Message) {
	t.Helper()
	want := map[string]string{}
	for _, m := range sent {
		want[m.UUID] = string(m.Payload)
	}
	for _, m := range got {
		p, ok := want[m.UUID]
		if !ok {
			t.Errorf("unexpected or repeated message %s %q", m.UUID, m.Payload)
			continue
		}
		if p != string(m.Payload) {
			t.Errorf("message %s: payload %q, want %q", m.UUID, m.Payload, p)
		}
		delete(want, m.UUID)
	}
	if len(want) > 0 {
		t.Errorf("%d messages not received", len(want))
	}
}

// pattern returns n bytes that differ along their length.
func pattern(n int) []byte {
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(i*7 + i/251)
	}
	return b
}

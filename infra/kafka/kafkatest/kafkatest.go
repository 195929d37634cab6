// Package kafkatest runs Kafka-facing tests against kfake always and also
// against a real Kafka cluster when KAFKA_BROKERS names one, and offers raw
// record helpers for assertions that bypass Watermill.
package kafkatest

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"os"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/IBM/sarama"
	"github.com/google/uuid"
	"github.com/twmb/franz-go/pkg/kgo"

	"rxflow/infra/kafka"
	"rxflow/infra/kafka/kgoopts"
	"rxflow/standin/kafkabroker"
)

// BrokersEnv names the environment variable with the comma-separated brokers
// of a real Kafka cluster, the same one the services read in production.
const BrokersEnv = "KAFKA_BROKERS"

// timeout bounds each helper's round trips to the cluster.
const timeout = 30 * time.Second

// RealBrokers returns the brokers named by KAFKA_BROKERS, or nil when unset.
func RealBrokers() []string {
	var brokers []string
	for b := range strings.SplitSeq(os.Getenv(BrokersEnv), ",") {
		if b = strings.TrimSpace(b); b != "" {
			brokers = append(brokers, b)
		}
	}
	return brokers
}

// Brokers starts an in-memory embedded broker on a free port for the test
// and returns its addresses; the broker stops when the test ends.
func Brokers(t testing.TB) []string {
	t.Helper()
	b, err := kafkabroker.Start(kafkabroker.Config{Addr: "127.0.0.1:0"})
	if err != nil {
		t.Fatalf("start embedded kafka: %v", err)
	}
	t.Cleanup(b.Close)
	return b.Addrs()
}

var logNoRealKafka sync.Once

// ForEachCluster runs fn as subtest "kfake" against a fresh embedded broker,
// then as subtest "kafka" against KAFKA_BROKERS. Without KAFKA_BROKERS there
// is no "kafka" subtest at all; that is logged once per test binary.
// Real clusters are shared: use UniqueTopic and UniqueGroup.
func ForEachCluster(t *testing.T, fn func(t *testing.T, brokers []string)) {
	t.Run("kfake", func(t *testing.T) { fn(t, Brokers(t)) })
	brokers := RealBrokers()
	if brokers == nil {
		logNoRealKafka.Do(func() { t.Logf("%s not set: Kafka tests run against kfake only", BrokersEnv) })
		return
	}
	t.Run("kafka", func(t *testing.T) { fn(t, brokers) })
}

// UniqueTopic returns a topic name not used before, built from prefix and
// the test's name.
func UniqueTopic(t testing.TB, prefix string) string { return unique(t, prefix) }

// UniqueGroup returns a consumer group name not used before.
func UniqueGroup(t testing.TB, prefix string) string { return unique(t, prefix) }

func unique(t testing.TB, prefix string) string {
	name := strings.Map(func(r rune) rune {
		if r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '-' {
			return r
		}
		return '-'
	}, t.Name())
	if len(name) > 120 {
		name = name[len(name)-120:]
	}
	return fmt.Sprintf("%s-%s-%s", prefix, name, uuid.NewString()[:8])
}

// Record is a raw Kafka record.
type Record struct {
	Topic     string
	Partition int32
	Offset    int64
	Key       []byte // nil: no key
	Value     []byte
	Headers   map[string]string
	Timestamp time.Time // zero: the producer's clock when produced
}

// Produce writes recs to topic with franz-go, independently of the sarama
// client under test, and returns them with partition and offset set. Keyed
// records go to the partition Kafka's Java client would choose (murmur2).
// Missing topics are created with the broker's defaults.
func Produce(t testing.TB, brokers []string, topic string, recs ...Record) []Record {
	t.Helper()
	return produce(t, kafka.Config{Brokers: brokers}, topic, recs, nil)
}

// ProduceWith is Produce over cfg's brokers with its TLS and SASL settings.
func ProduceWith(t testing.TB, cfg kafka.Config, topic string, recs ...Record) []Record {
	t.Helper()
	return produce(t, cfg, topic, recs, nil)
}

// ProduceToPartitions is Produce with each record written to its own
// Partition, whatever its key. The topic must exist with enough partitions.
func ProduceToPartitions(t testing.TB, brokers []string, topic string, recs ...Record) []Record {
	t.Helper()
	return produce(t, kafka.Config{Brokers: brokers}, topic, recs, kgo.RecordPartitioner(kgo.ManualPartitioner()))
}

func produce(t testing.TB, cfg kafka.Config, topic string, recs []Record, partitioner kgo.Opt) []Record {
	t.Helper()
	security, err := kgoopts.Security(cfg.Security)
	if err != nil {
		t.Fatalf("kafkatest: %v", err)
	}
	opts := []kgo.Opt{
		kgo.SeedBrokers(cfg.Brokers...),
		kgo.AllowAutoTopicCreation(),
		kgo.ProducerBatchMaxBytes(32 << 20),
		// A topic just auto-created is briefly unknown to the broker: retry
		// soon, until the context ends.
		kgo.MetadataMinAge(100 * time.Millisecond),
		kgo.UnknownTopicRetries(-1),
	}
	if partitioner != nil {
		opts = append(opts, partitioner)
	}
	cl, err := kgo.NewClient(append(opts, security...)...)
	if err != nil {
		t.Fatalf("kafkatest: new client: %v", err)
	}
	defer cl.Close()

	krs := make([]*kgo.Record, len(recs))
	for i, r := range recs {
		kr := &kgo.Record{Topic: topic, Partition: r.Partition, Key: r.Key, Value: r.Value, Timestamp: r.Timestamp}
		for k, v := range r.Headers {
			kr.Headers = append(kr.Headers, kgo.RecordHeader{Key: k, Value: []byte(v)})
		}
		krs[i] = kr
	}
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	if err := cl.ProduceSync(ctx, krs...).FirstErr(); err != nil {
		t.Fatalf("kafkatest: produce to %s: %v", topic, err)
	}
	out := make([]Record, len(recs))
	for i, kr := range krs {
		out[i] = recs[i]
		out[i].Topic, out[i].Partition, out[i].Offset = topic, kr.Partition, kr.Offset
	}
	return out
}

// ConsumeAll returns every record in topic up to each partition's current
// end, ordered by partition, then offset.
func ConsumeAll(t testing.TB, brokers []string, topic string) []Record {
	t.Helper()
	return ConsumeAllWith(t, kafka.Config{Brokers: brokers}, topic)
}

// ConsumeAllWith is ConsumeAll over cfg's brokers with its TLS and SASL
// settings.
func ConsumeAllWith(t testing.TB, cfg kafka.Config, topic string) []Record {
	t.Helper()
	recs, err := consumeAll(cfg, topic)
	if err != nil {
		t.Fatalf("kafkatest: consume %s: %v", topic, err)
	}
	return recs
}

func consumeAll(cfg kafka.Config, topic string) (recs []Record, err error) {
	sc, err := saramaConfig(cfg.Security)
	if err != nil {
		return nil, err
	}
	security, err := kgoopts.Security(cfg.Security)
	if err != nil {
		return nil, err
	}
	client, err := sarama.NewClient(cfg.Brokers, sc)
	if err != nil {
		return nil, err
	}
	defer func() { err = errors.Join(err, client.Close()) }()
	partitions, err := client.Partitions(topic)
	if err != nil {
		return nil, err
	}
	offsets := map[int32]kgo.Offset{}
	ends := map[int32]int64{}
	for _, p := range partitions {
		start, err := client.GetOffset(topic, p, sarama.OffsetOldest)
		if err != nil {
			return nil, err
		}
		end, err := client.GetOffset(topic, p, sarama.OffsetNewest)
		if err != nil {
			return nil, err
		}
		if start < end {
			offsets[p] = kgo.NewOffset().At(start)
			ends[p] = end
		}
	}
	if len(offsets) == 0 {
		return nil, nil
	}

	cl, err := kgo.NewClient(append([]kgo.Opt{
		kgo.SeedBrokers(cfg.Brokers...),
		kgo.ConsumePartitions(map[string]map[int32]kgo.Offset{topic: offsets}),
	}, security...)...)
	if err != nil {
		return nil, err
	}
	defer cl.Close()
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	for len(ends) > 0 {
		fetches := cl.PollFetches(ctx)
		if err := ctx.Err(); err != nil {
			return nil, fmt.Errorf("%d partitions not read to their end within %s", len(ends), timeout)
		}
		if err := fetches.Err(); err != nil {
			return nil, err
		}
		for _, r := range fetches.Records() {
			end, ok := ends[r.Partition]
			if !ok || r.Offset >= end {
				continue
			}
			rec := Record{Topic: r.Topic, Partition: r.Partition, Offset: r.Offset, Key: r.Key, Value: r.Value}
			if len(r.Headers) > 0 {
				rec.Headers = make(map[string]string, len(r.Headers))
				for _, h := range r.Headers {
					rec.Headers[h.Key] = string(h.Value)
				}
			}
			recs = append(recs, rec)
			if r.Offset == end-1 {
				delete(ends, r.Partition)
			}
		}
	}
	slices.SortFunc(recs, func(a, b Record) int {
		return cmp.Or(cmp.Compare(a.Partition, b.Partition), cmp.Compare(a.Offset, b.Offset))
	})
	return recs, nil
}

// CommittedOffsets returns the offsets group has committed on topic's
// partitions; partitions without a commit are absent.
func CommittedOffsets(t testing.TB, brokers []string, group, topic string) map[int32]int64 {
	t.Helper()
	return CommittedOffsetsWith(t, kafka.Config{Brokers: brokers}, group, topic)
}

// CommittedOffsetsWith is CommittedOffsets over cfg's brokers with its TLS
// and SASL settings.
func CommittedOffsetsWith(t testing.TB, cfg kafka.Config, group, topic string) map[int32]int64 {
	t.Helper()
	offsets, err := committedOffsets(cfg, group, topic)
	if err != nil {
		t.Fatalf("kafkatest: committed offsets of %s on %s: %v", group, topic, err)
	}
	return offsets
}

func committedOffsets(cfg kafka.Config, group, topic string) (offsets map[int32]int64, err error) {
	sc, err := saramaConfig(cfg.Security)
	if err != nil {
		return nil, err
	}
	admin, err := sarama.NewClusterAdmin(cfg.Brokers, sc)
	if err != nil {
		return nil, err
	}
	defer func() { err = errors.Join(err, admin.Close()) }()
	resp, err := admin.ListConsumerGroupOffsets(group, nil) // nil: every partition
	if err != nil {
		return nil, err
	}
	if resp.Err != sarama.ErrNoError {
		return nil, resp.Err
	}
	offsets = make(map[int32]int64)
	for p, b := range resp.Blocks[topic] {
		if b.Err != sarama.ErrNoError {
			return nil, fmt.Errorf("partition %d: %w", p, b.Err)
		}
		if b.Offset >= 0 {
			offsets[p] = b.Offset
		}
	}
	return offsets, nil
}

func saramaConfig(s kafka.Security) (*sarama.Config, error) {
	c := sarama.NewConfig()
	c.Version = sarama.V3_6_0_0
	c.ClientID = "rxflow-kafkatest"
	c.Metadata.AllowAutoTopicCreation = false // reading must not create topics
	if err := s.ApplySarama(c); err != nil {
		return nil, err
	}
	return c, nil
}

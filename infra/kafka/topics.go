package kafka

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/IBM/sarama"
)

// recordBatchOverhead is the framing of a record batch around its records:
// a batch holding a message of MaxMessageBytes must fit max.message.bytes.
const recordBatchOverhead = 61

// EnsureTopics creates each missing topic with the given number of
// partitions, the broker's default replication factor and a
// max.message.bytes that admits messages of cfg.MaxMessageBytes. Existing
// topics are left as they are. It returns once every topic has a leader for
// each of its partitions, or when ctx ends.
func EnsureTopics(ctx context.Context, cfg Config, partitions int32, topics ...string) (err error) {
	cfg.setDefaults()
	if err := cfg.Validate(); err != nil {
		return err
	}
	if partitions < 1 {
		return fmt.Errorf("kafka: cannot create topics with %d partitions", partitions)
	}
	sc, err := cfg.saramaConfig()
	if err != nil {
		return err
	}
	admin, err := sarama.NewClusterAdmin(cfg.Brokers, sc)
	if err != nil {
		return connectError(cfg, fmt.Errorf("connect admin: %w", err))
	}
	defer func() { err = errors.Join(err, admin.Close()) }()

	maxBytes := strconv.Itoa(cfg.MaxMessageBytes + recordBatchOverhead)
	for _, topic := range topics {
		if err := ctx.Err(); err != nil {
			return err
		}
		err := admin.CreateTopic(topic, &sarama.TopicDetail{
			NumPartitions:     partitions,
			ReplicationFactor: -1, // broker default
			ConfigEntries:     map[string]*string{"max.message.bytes": &maxBytes},
		}, false)
		if err != nil && !errors.Is(err, sarama.ErrTopicAlreadyExists) {
			return fmt.Errorf("kafka: create topic %q: %w", topic, err)
		}
	}
	return waitForLeaders(ctx, admin, topics)
}

// waitForLeaders polls the metadata until every partition of topics has a
// leader: a topic just created may not be served yet.
func waitForLeaders(ctx context.Context, admin sarama.ClusterAdmin, topics []string) error {
	for {
		err := leadersReady(admin, topics)
		if err == nil {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("kafka: topics not ready: %w", errors.Join(ctx.Err(), err))
		case <-time.After(50 * time.Millisecond):
		}
	}
}

func leadersReady(admin sarama.ClusterAdmin, topics []string) error {
	metas, err := admin.DescribeTopics(topics)
	if err != nil {
		return err
	}
	for _, m := range metas {
		if m.Err != sarama.ErrNoError {
			return fmt.Errorf("topic %q: %w", m.Name, m.Err)
		}
		for _, p := range m.Partitions {
			if p.Leader < 0 || p.Err != sarama.ErrNoError {
				return fmt.Errorf("topic %q partition %d has no leader", m.Name, p.ID)
			}
		}
	}
	return nil
}

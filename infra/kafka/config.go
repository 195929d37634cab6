// Package kafka connects rxflow to Apache Kafka through Watermill and sarama.
//
// Every publisher and subscriber shares one set of settings, chosen so that
// they behave the same on a real Kafka 4.x cluster and on kfake:
//
//   - Publishing is synchronous with acks=all and an idempotent producer.
//     The watermill metadata entry [MetadataKey] becomes the record key and
//     so picks the partition (murmur2, as Kafka's Java client does); records
//     with one key therefore keep their order.
//   - Subscribing needs a consumer group. A group without committed offsets
//     starts at the oldest record.
//   - Delivery is at least once. watermill-kafka marks a record's offset only
//     after the handler acks the message, and sarama's auto-commit sends the
//     marked offsets to Kafka every second and when the group session ends
//     (rebalance or Close). A message delivered but not acked, or acked
//     while its partition is being revoked, is therefore delivered again, to
//     this or another member; a crash also repeats up to a second of acked
//     messages. Handlers must be idempotent.
//   - Within a partition, the next message is delivered only after the
//     previous one is acked. A nacked message is delivered again after 100ms
//     and blocks its partition until it is acked.
//   - Connections are PLAINTEXT unless Config.Security sets TLS (the
//     broker's certificate always verified), SASL (PLAIN, SCRAM-SHA-256 or
//     SCRAM-SHA-512), or both; SASL without TLS needs an explicit allowance.
//
// How sarama's own retries fit with the other layers: docs/failure-policy.md.
package kafka

import (
	"errors"
	"fmt"
	"net"
	"time"

	"github.com/IBM/sarama"
)

// DefaultMaxMessageBytes is the default Config.MaxMessageBytes: 1 MiB.
const DefaultMaxMessageBytes = 1 << 20

// Bounds of what a subscriber fetches ahead of its handlers; see
// saramaConfig. With 64 partitions they hold a few megabytes, where
// sarama's defaults (1 MiB per partition, 256 messages) held a
// 200,000-command backlog whole (BENCHMARKS.md, "Memory").
const (
	FetchPartitionBytes = 16 << 10 // per partition and fetch
	FetchRequestBytes   = 1 << 20  // per fetch request, all partitions of a broker
	ChannelBuffer       = 32       // decoded messages queued per partition
)

// protocolVersion is the Kafka protocol version sarama speaks; both kfake and
// Kafka 4.x accept it.
var protocolVersion = sarama.V3_6_0_0

// Config holds the settings shared by publishers, subscribers and EnsureTopics.
type Config struct {
	// Brokers lists the bootstrap brokers as host:port.
	Brokers []string

	// ConsumerGroup names the consumer group; required for subscribers.
	ConsumerGroup string

	// MaxMessageBytes is the largest message the publisher sends, and the
	// max.message.bytes of topics made by EnsureTopics. Subscribers receive
	// larger records too (they fetch FetchPartitionBytes per partition at a
	// time, and a larger record batch comes whole), so that the application
	// can dead-letter them rather than lose them.
	// Default DefaultMaxMessageBytes.
	MaxMessageBytes int

	// ClientID is the Kafka client.id. Default "rxflow".
	ClientID string

	// Security is TLS and SASL towards the brokers; the zero value is
	// PLAINTEXT.
	Security Security

	// GroupInstanceID, if set, makes subscribers static members of their
	// consumer group (Kafka's group.instance.id, KIP-345): a member that
	// restarts within the session timeout, or reconnects after a broker
	// outage, takes its partitions back at once instead of waiting for its
	// old session to expire. Each replica needs its own stable id (for
	// example its pod name, docs/deploy.md); a static member does not leave
	// the group when it stops, so its partitions wait for the session
	// timeout (sarama's default, 10 s) if it does not come back. At most
	// 249 characters of [a-zA-Z0-9._-]. Empty: dynamic membership.
	GroupInstanceID string

	// OnFenced, if set, is called when the broker fences a subscriber
	// because another member of its group joined with the same
	// GroupInstanceID (FENCED_INSTANCE_ID). The subscriber would otherwise
	// reconnect and fence the other in turn, each consuming part of the
	// time; the caller should stop. It may be called more than once, from
	// any goroutine, with an error that wraps ErrFencedInstanceID.
	OnFenced func(err error) `json:"-"`
}

// ErrFencedInstanceID is the broker's FENCED_INSTANCE_ID: another member of
// the group uses the same group instance id.
var ErrFencedInstanceID = sarama.ErrFencedInstancedId

func (c *Config) setDefaults() {
	if c.MaxMessageBytes == 0 {
		c.MaxMessageBytes = DefaultMaxMessageBytes
	}
	if c.ClientID == "" {
		c.ClientID = "rxflow"
	}
}

// Validate reports every problem of the configuration at once.
// A zero MaxMessageBytes or ClientID is valid: it means the default.
func (c Config) Validate() error {
	var errs []error
	if len(c.Brokers) == 0 {
		errs = append(errs, errors.New("kafka: no brokers configured"))
	}
	for _, b := range c.Brokers {
		if _, _, err := net.SplitHostPort(b); err != nil {
			errs = append(errs, fmt.Errorf("kafka: broker %q is not host:port: %w", b, err))
		}
	}
	if c.MaxMessageBytes < 0 || c.MaxMessageBytes >= int(sarama.MaxRequestSize) {
		errs = append(errs, fmt.Errorf("kafka: MaxMessageBytes %d is outside [0, %d)", c.MaxMessageBytes, sarama.MaxRequestSize))
	}
	if c.GroupInstanceID != "" && !validInstanceID(c.GroupInstanceID) {
		errs = append(errs, fmt.Errorf("kafka: group instance id %q must be 1 to 249 characters of [a-zA-Z0-9._-]", c.GroupInstanceID))
	}
	errs = append(errs, c.Security.validate()...)
	return errors.Join(errs...)
}

// saramaConfig returns the sarama settings of c; c must have its defaults
// set. It fails only if a TLS file can no longer be read.
func (c Config) saramaConfig() (*sarama.Config, error) {
	sc := sarama.NewConfig()
	sc.Version = protocolVersion
	sc.ClientID = c.ClientID

	sc.Producer.Return.Successes = true // required by the sync producer
	sc.Producer.RequiredAcks = sarama.WaitForAll
	sc.Producer.Idempotent = true
	sc.Net.MaxOpenRequests = 1 // required by the idempotent producer
	sc.Producer.Retry.Max = 10
	sc.Producer.MaxMessageBytes = c.MaxMessageBytes
	sc.Producer.Partitioner = sarama.NewMurmur2Partitioner

	sc.Consumer.Return.Errors = true
	sc.Consumer.Offsets.Initial = sarama.OffsetOldest
	// Committing synchronously after every message (auto-commit off) limits a
	// subscriber to tens of messages per second.
	sc.Consumer.Offsets.AutoCommit.Enable = true
	sc.Consumer.Offsets.AutoCommit.Interval = time.Second
	// What a subscriber holds ahead of its handlers is bounded, so that a
	// backlog costs no more memory than a few messages per partition: each
	// partition fetches FetchPartitionBytes at a time (a record batch larger
	// than that still comes whole: Kafka returns the first batch of a
	// partition whatever its size), at most FetchRequestBytes per request,
	// and queues at most ChannelBuffer decoded messages.
	sc.Consumer.Fetch.Default = FetchPartitionBytes
	sc.Consumer.Fetch.MaxBytes = FetchRequestBytes
	sc.ChannelBufferSize = ChannelBuffer
	sc.Consumer.Group.InstanceId = c.GroupInstanceID
	// A broker back from an outage answers joins with "coordinator loading"
	// for a moment: retry the join every 250 ms (sarama's default, 2 s,
	// delayed the resumption by as much), for up to 5 s before the
	// subscriber reconnects.
	sc.Consumer.Group.Rebalance.Retry.Backoff = 250 * time.Millisecond
	sc.Consumer.Group.Rebalance.Retry.Max = 20
	if err := c.Security.ApplySarama(sc); err != nil {
		return nil, err
	}
	return sc, nil
}

// validInstanceID applies Kafka's rule for a group.instance.id, which is
// that of a topic name (sarama checks it too, but with a less clear error).
func validInstanceID(id string) bool {
	if len(id) > 249 || id == "." || id == ".." {
		return false
	}
	for _, r := range id {
		if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '.' || r == '_' || r == '-') {
			return false
		}
	}
	return id != ""
}

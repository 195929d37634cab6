package kafka

import (
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/IBM/sarama"
	"github.com/ThreeDotsLabs/watermill"
	wkafka "github.com/ThreeDotsLabs/watermill-kafka/v3/pkg/kafka"
	"github.com/ThreeDotsLabs/watermill/message"

	"rxflow/infra/telemetry"
)

// Metadata entries of consumed messages. MetadataKey is also read by the
// publisher: its value becomes the record key. Every other metadata entry
// travels as a record header and comes back unchanged.
//
// The record's timestamp is in the message context: RecordTime.
const (
	MetadataKey       = "key"             // record key; absent for records without one
	MetadataTopic     = "kafka_topic"     // topic the record was read from
	MetadataPartition = "kafka_partition" // partition, decimal
	MetadataOffset    = "kafka_offset"    // offset within the partition, decimal
)

// RecordTime is the timestamp of the record a consumed message came from:
// its producer's clock when it was produced (CreateTime), or the broker's
// when it was appended (a topic with LogAppendTime). ok is false for a
// message that was not consumed from Kafka.
func RecordTime(msg *message.Message) (t time.Time, ok bool) {
	return wkafka.MessageTimestampFromCtx(msg.Context())
}

// recordMetadata holds the entries that describe a consumed record rather than
// the message; the publisher does not write them as headers.
var recordMetadata = []string{MetadataKey, MetadataTopic, MetadataPartition, MetadataOffset, MetadataHeaderProblem}

// MetadataHeaderProblem is set on a consumed message whose record headers
// the metadata map cannot show faithfully: a name or value that is not
// valid UTF-8 ("invalid_utf8: ..."), or a name that is repeated or is one
// of the entries above ("invalid_header: ..."). Its value starts with that
// code.
const MetadataHeaderProblem = "kafka_header_problem"

// NewPublisher returns a synchronous publisher: Publish returns once every
// message is stored by all in-sync replicas. It connects to the brokers
// first: with none reachable it returns a nil Publisher and an error naming
// them. Refused connections fail within a second or so; a broker that does
// not answer takes sarama's dial timeout per attempt, so if connecting
// takes longer than slowConnect it logs that it is still trying.
// A nil logger logs to slog.Default().
func NewPublisher(cfg Config, logger watermill.LoggerAdapter) (message.Publisher, error) {
	cfg.setDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	sc, err := cfg.saramaConfig()
	if err != nil {
		return nil, err
	}
	logger = orDefault(logger)
	warnPlaintextSASL(cfg, logger)
	slow := time.AfterFunc(slowConnect, func() {
		logger.Info("kafka: still connecting to the brokers", watermill.LogFields{"brokers": strings.Join(cfg.Brokers, ",")})
	})
	pub, err := wkafka.NewPublisher(wkafka.PublisherConfig{
		Brokers:               cfg.Brokers,
		Marshaler:             newMarshaler(),
		OverwriteSaramaConfig: sc,
		// With tracing on, each record gets a producer span ("<topic>
		// publish", dnwe/otelsarama), the child of the traceparent in its
		// headers (telemetry.Inject), whose own context replaces it.
		OTELEnabled: telemetry.Enabled(),
	}, logger)
	slow.Stop()
	if err != nil {
		// Not pub: a nil *wkafka.Publisher in the interface is not nil.
		return nil, connectError(cfg, err)
	}
	return pub, nil
}

// NewSubscriber returns a consumer-group subscriber; see the package
// documentation for when offsets are committed. Consumed messages carry the
// record's topic, partition, offset and key in their metadata (MetadataTopic
// and the others) besides the record headers. It does not connect: the
// brokers are first reached by Subscribe. A nil logger logs to
// slog.Default().
func NewSubscriber(cfg Config, logger watermill.LoggerAdapter) (message.Subscriber, error) {
	cfg.setDefaults()
	err := cfg.Validate()
	if cfg.ConsumerGroup == "" {
		err = errors.Join(err, errors.New("kafka: subscribers need a ConsumerGroup"))
	}
	if err != nil {
		return nil, err
	}
	sc, err := cfg.saramaConfig()
	if err != nil {
		return nil, err
	}
	logger = orDefault(logger)
	warnPlaintextSASL(cfg, logger)
	if cfg.OnFenced != nil {
		logger = fenceWatch{LoggerAdapter: logger, cfg: cfg}
	}
	sub, err := wkafka.NewSubscriber(wkafka.SubscriberConfig{
		Brokers:               cfg.Brokers,
		Unmarshaler:           newMarshaler(),
		OverwriteSaramaConfig: sc,
		ConsumerGroup:         cfg.ConsumerGroup,
		ReconnectRetrySleep:   reconnectSleep,
	}, logger)
	if err != nil {
		// Not sub: a nil *wkafka.Subscriber in the interface is not nil.
		return nil, fmt.Errorf("kafka: subscriber: %w", err)
	}
	return sub, nil
}

// fenceWatch passes the errors that watermill-kafka logs, and otherwise
// retries, to cfg.OnFenced when they are FENCED_INSTANCE_ID: sarama
// returns it from the group's join and sync, and watermill-kafka only logs
// it and reconnects.
type fenceWatch struct {
	watermill.LoggerAdapter
	cfg Config
}

func (f fenceWatch) Error(msg string, err error, fields watermill.LogFields) {
	f.LoggerAdapter.Error(msg, err, fields)
	if errors.Is(err, ErrFencedInstanceID) {
		f.cfg.OnFenced(fmt.Errorf("kafka: group %q: another member joined with group instance id %q, and the broker fenced this one: %w",
			f.cfg.ConsumerGroup, f.cfg.GroupInstanceID, err))
	}
}

func (f fenceWatch) With(fields watermill.LogFields) watermill.LoggerAdapter {
	return fenceWatch{LoggerAdapter: f.LoggerAdapter.With(fields), cfg: f.cfg}
}

// reconnectSleep is the pause between a subscriber's attempts to reconnect
// after it lost the brokers (each attempt also takes sarama's metadata
// retries, about 0.75 s when refused): with Watermill's default of 1 s, a
// subscriber resumed up to 1.75 s after the brokers came back.
const reconnectSleep = 250 * time.Millisecond

// slowConnect is how long NewPublisher connects before it says so.
var slowConnect = 5 * time.Second

// connectError names the brokers a client could not reach, and how it
// tried: sarama's own message ("client has run out of available brokers")
// does neither. A connection the broker just closed (EOF) gets a hint of
// why (Security.closedHint).
func connectError(cfg Config, err error) error {
	how := ""
	if d := cfg.Security.describe(); d != "" {
		how = " (" + d + ")"
	}
	if hint := cfg.Security.closedHint(err); hint != "" {
		return fmt.Errorf("kafka: brokers %s%s: %w (%s)", strings.Join(cfg.Brokers, ","), how, err, hint)
	}
	return fmt.Errorf("kafka: brokers %s%s: %w", strings.Join(cfg.Brokers, ","), how, err)
}

// warnPlaintextSASL logs that SASL runs without TLS, which Validate allows
// only when asked to. (Watermill's logger has no warning level.)
func warnPlaintextSASL(cfg Config, logger watermill.LoggerAdapter) {
	sasl := cfg.Security.SASL
	if !sasl.On() || cfg.Security.TLS.On() {
		return
	}
	msg := "kafka: WARNING: SASL without TLS, as allowed: nothing on the connection is encrypted"
	if sasl.Mechanism == MechanismPlain {
		msg += ", and the SASL PLAIN password crosses the network in the clear"
	}
	logger.Info(msg, watermill.LogFields{"mechanism": sasl.Mechanism, "brokers": strings.Join(cfg.Brokers, ",")})
}

func orDefault(logger watermill.LoggerAdapter) watermill.LoggerAdapter {
	if logger == nil {
		return watermill.NewSlogLogger(slog.Default())
	}
	return logger
}

// marshaler keys records by MetadataKey and exposes the consumed record's
// coordinates as metadata.
type marshaler struct {
	wkafka.MarshalerUnmarshaler
}

func newMarshaler() marshaler {
	return marshaler{wkafka.NewWithPartitioningMarshaler(func(_ string, msg *message.Message) (string, error) {
		return msg.Metadata.Get(MetadataKey), nil
	})}
}

func (m marshaler) Marshal(topic string, msg *message.Message) (*sarama.ProducerMessage, error) {
	pm, err := m.MarshalerUnmarshaler.Marshal(topic, msg)
	if err != nil {
		return nil, err
	}
	if msg.Metadata.Get(MetadataKey) == "" {
		pm.Key = nil // spreads keyless records over the partitions
	}
	pm.Headers = slices.DeleteFunc(pm.Headers, func(h sarama.RecordHeader) bool {
		return slices.Contains(recordMetadata, string(h.Key))
	})
	return pm, nil
}

func (m marshaler) Unmarshal(cm *sarama.ConsumerMessage) (*message.Message, error) {
	msg, err := m.MarshalerUnmarshaler.Unmarshal(cm)
	if err != nil {
		return nil, err
	}
	for _, k := range recordMetadata {
		delete(msg.Metadata, k) // a header must not pose as the record's own data
	}
	if problem := headerProblem(cm.Headers); problem != "" {
		msg.Metadata.Set(MetadataHeaderProblem, problem)
	}
	if cm.Key != nil {
		msg.Metadata.Set(MetadataKey, string(cm.Key))
	}
	msg.Metadata.Set(MetadataTopic, cm.Topic)
	msg.Metadata.Set(MetadataPartition, strconv.FormatInt(int64(cm.Partition), 10))
	msg.Metadata.Set(MetadataOffset, strconv.FormatInt(cm.Offset, 10))
	return msg, nil
}

// headerProblem says what in headers the metadata map would hide.
func headerProblem(headers []*sarama.RecordHeader) string {
	seen := map[string]bool{}
	for _, h := range headers {
		name := string(h.Key)
		switch {
		case !utf8.Valid(h.Key) || !utf8.Valid(h.Value):
			return fmt.Sprintf("invalid_utf8: header %q is not valid UTF-8", name)
		case seen[name]:
			return fmt.Sprintf("invalid_header: header %q is repeated", name)
		case slices.Contains(recordMetadata, name):
			return fmt.Sprintf("invalid_header: header name %q is reserved", name)
		}
		seen[name] = true
	}
	return ""
}

// TooLarge reports whether a publish failed because the message is larger
// than the producer or the broker accepts. Retrying cannot help, so it is
// not an outage.
func TooLarge(err error) bool {
	var cfgErr sarama.ConfigurationError
	return errors.As(err, &cfgErr) || errors.Is(err, sarama.ErrMessageSizeTooLarge)
}

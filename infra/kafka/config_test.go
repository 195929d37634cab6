package kafka

import (
	"maps"
	"strings"
	"testing"

	"github.com/IBM/sarama"
	"github.com/ThreeDotsLabs/watermill/message"
)

func TestValidateReportsEveryProblem(t *testing.T) {
	err := Config{Brokers: []string{"no-port", "ok:9092"}, MaxMessageBytes: -1}.Validate()
	if err == nil {
		t.Fatal("invalid config passed validation")
	}
	for _, want := range []string{`"no-port"`, "MaxMessageBytes -1"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not mention %s", err, want)
		}
	}
	if err := (Config{}).Validate(); err == nil || !strings.Contains(err.Error(), "no brokers") {
		t.Errorf("empty config: error %v, want one about brokers", err)
	}
	if err := (Config{Brokers: []string{"127.0.0.1:9092"}}).Validate(); err != nil {
		t.Errorf("minimal config: %v", err)
	}
}

func TestNewSubscriberNeedsGroup(t *testing.T) {
	_, err := NewSubscriber(Config{Brokers: []string{"127.0.0.1:9092"}}, nil)
	if err == nil || !strings.Contains(err.Error(), "ConsumerGroup") {
		t.Errorf("error %v, want one about the consumer group", err)
	}
}

// sarama accepts our settings, including the idempotent producer's
// requirements, and both sides honour MaxMessageBytes.
func TestSaramaConfig(t *testing.T) {
	for _, maxBytes := range []int{0, 10 << 20} {
		cfg := Config{Brokers: []string{"127.0.0.1:9092"}, MaxMessageBytes: maxBytes}
		cfg.setDefaults()
		sc, err := cfg.saramaConfig()
		if err != nil {
			t.Fatal(err)
		}
		if err := sc.Validate(); err != nil {
			t.Errorf("MaxMessageBytes %d: sarama rejects the config: %v", maxBytes, err)
		}
		if sc.Producer.MaxMessageBytes != cfg.MaxMessageBytes {
			t.Errorf("MaxMessageBytes %d: producer limit %d", cfg.MaxMessageBytes, sc.Producer.MaxMessageBytes)
		}
		// The prefetch is bounded whatever MaxMessageBytes is; larger records
		// still arrive (bustest's testLargeMessage and
		// testOversizedRecordIsDelivered, on kfake and real Kafka), as long as
		// nothing caps a partition's fetch (Fetch.Max 0).
		if sc.Consumer.Fetch.Default != FetchPartitionBytes || sc.Consumer.Fetch.MaxBytes != FetchRequestBytes ||
			sc.ChannelBufferSize != ChannelBuffer || sc.Consumer.Fetch.Max != 0 {
			t.Errorf("MaxMessageBytes %d: fetch %d per partition (max %d), %d per request, %d messages queued; want %d, no max, %d, %d",
				cfg.MaxMessageBytes, sc.Consumer.Fetch.Default, sc.Consumer.Fetch.Max, sc.Consumer.Fetch.MaxBytes, sc.ChannelBufferSize,
				FetchPartitionBytes, FetchRequestBytes, ChannelBuffer)
		}
		if !sc.Consumer.Offsets.AutoCommit.Enable || sc.Consumer.Offsets.Initial != sarama.OffsetOldest {
			t.Error("subscribers must auto-commit and start at the oldest offset")
		}
	}
}

func TestMarshal(t *testing.T) {
	msg := message.NewMessage("id-1", []byte("body"))
	msg.Metadata.Set(MetadataKey, "rx-1")
	msg.Metadata.Set("trace", "t-1")
	for _, k := range []string{MetadataTopic, MetadataPartition, MetadataOffset} {
		msg.Metadata.Set(k, "stale")
	}
	pm, err := newMarshaler().Marshal("orders", msg)
	if err != nil {
		t.Fatal(err)
	}
	if key, _ := pm.Key.Encode(); string(key) != "rx-1" {
		t.Errorf("record key %q, want rx-1", key)
	}
	headers := map[string]string{}
	for _, h := range pm.Headers {
		headers[string(h.Key)] = string(h.Value)
	}
	if len(headers) != 2 || headers["trace"] != "t-1" || headers["_watermill_message_uuid"] != "id-1" {
		t.Errorf("headers %v, want only trace and the message UUID", headers)
	}

	pm, err = newMarshaler().Marshal("orders", message.NewMessage("id-2", nil))
	if err != nil {
		t.Fatal(err)
	}
	if pm.Key != nil {
		t.Errorf("keyless message got record key %v", pm.Key)
	}
}

func TestUnmarshal(t *testing.T) {
	cm := &sarama.ConsumerMessage{
		Topic: "orders", Partition: 3, Offset: 42, Value: []byte("body"),
		Headers: []*sarama.RecordHeader{
			{Key: []byte("_watermill_message_uuid"), Value: []byte("id-1")},
			{Key: []byte(MetadataKey), Value: []byte("spoofed")},
			{Key: []byte("trace"), Value: []byte("t-1")},
		},
	}
	msg, err := newMarshaler().Unmarshal(cm)
	if err != nil {
		t.Fatal(err)
	}
	// The spoofed key is dropped, and flagged: the command boundary refuses
	// a record whose headers the metadata cannot show faithfully.
	want := message.Metadata{MetadataTopic: "orders", MetadataPartition: "3", MetadataOffset: "42", "trace": "t-1",
		MetadataHeaderProblem: `invalid_header: header name "key" is reserved`}
	if msg.UUID != "id-1" || !maps.Equal(msg.Metadata, want) {
		t.Errorf("got %s %v, want id-1 %v", msg.UUID, msg.Metadata, want)
	}

	cm.Key = []byte("rx-1")
	if msg, err = newMarshaler().Unmarshal(cm); err != nil {
		t.Fatal(err)
	}
	if got := msg.Metadata.Get(MetadataKey); got != "rx-1" {
		t.Errorf("metadata key %q, want rx-1", got)
	}
}

func TestUnmarshalFlagsHeadersTheMetadataWouldHide(t *testing.T) {
	cases := map[string][]*sarama.RecordHeader{
		`invalid_utf8: header "command-id" is not valid UTF-8`:              {{Key: []byte("command-id"), Value: []byte("bad\xff")}, {Key: []byte("x"), Value: []byte("y")}},
		`invalid_utf8: header "x-\xfe" is not valid UTF-8`:                  {{Key: []byte("x-\xfe"), Value: []byte("v")}},
		`invalid_utf8: header "_watermill_message_uuid" is not valid UTF-8`: {{Key: []byte("_watermill_message_uuid"), Value: []byte("\xfe")}},
		`invalid_header: header "command-id" is repeated`:                   {{Key: []byte("command-id"), Value: []byte("a")}, {Key: []byte("command-id"), Value: []byte("b")}},
		`invalid_header: header name "kafka_offset" is reserved`:            {{Key: []byte("kafka_offset"), Value: []byte("1")}},
		"": {{Key: []byte("command-id"), Value: []byte("c")}, {Key: []byte("actor"), Value: []byte("Dr. Müller")}},
	}
	for want, headers := range cases {
		msg, err := newMarshaler().Unmarshal(&sarama.ConsumerMessage{Topic: "t", Value: []byte("{}"), Headers: headers})
		if err != nil {
			t.Fatal(err)
		}
		if got := msg.Metadata.Get(MetadataHeaderProblem); got != want {
			t.Errorf("headers %d: problem %q, want %q", len(headers), got, want)
		}
	}
}

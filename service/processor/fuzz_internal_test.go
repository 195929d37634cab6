package processor

import (
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"sync"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/ThreeDotsLabs/watermill"
	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/ThreeDotsLabs/watermill/pubsub/gochannel"

	"rxflow/commands"
	"rxflow/infra/eventstore"
	"rxflow/standin/esdbserver"
)

// fuzzSeeds are inputs from public bug reports of similar systems and from
// issue 10: trailing data, case-variant and duplicate names, invalid UTF-8
// in values, keys and headers, look-alike URNs, keyless commands.
var fuzzSeeds = []struct {
	key, value, header string
	headerValue        []byte
	keyless            bool
}{
	{"urn:rx:t1", `{"urn":"urn:rx:t1","event":"prescription.approve","payload":{"approvedBy":"d1"}}}`, "", nil, false},
	{"urn:rx:t1", `{"urn":"urn:rx:t1","event":"prescription.approve","payload":{"approvedBy":"d1"}}`, "", nil, false},
	{"urn:rx:a", `{"urn":"urn:rx:a","event":"prescription.request","payload":{"patientId":"p","prescriberId":"d","medication":{"name":"m","quantity":2}},"URN":"urn:rx:b"}`, "", nil, false},
	{"urn:rx:a", `{"urn":"urn:rx:a","event":"prescription.request","payload":{"patientId":"p","prescriberId":"d","medication":{"name":"m","quantity":2}}}`, "", nil, false},
	{"urn:rx:a", "{\"urn\":\"urn:rx:a\",\"event\":\"prescription.approve\",\"payload\":{\"approvedBy\":\"\xff\xfe\"}}", "", nil, false},
	{"urn:rx:a", `{"urn":"urn:rx:a","event":"prescription.approve","payload":{"approvedBy":"d"}}`, "command-id", []byte("cmd-\x98-1"), false},
	{"urn:rx:a", `{"urn":"urn:rx:a","event":"prescription.approve","payload":{"approvedBy":"d"}}`, "actor", []byte("\xc0\xaf"), false},
	{"", `{"urn":"urn:rx:a\u00a0","event":"prescription.complete"}`, "", nil, true},
	{"", `{"urn":"stats","event":"prescription.complete"}`, "", nil, true},
	{"", `{"urn":"urn:rx:k","event":"prescription.approve","payload":{"approvedBy":"d"}}`, "", nil, true},
	{"urn:rx:a", `{"urn":"urn:rx:a","event":"prescription.reject","payload":{"reason":"\ud800"}}`, "", nil, false},
	{"urn:rx:a", `[{"urn":"urn:rx:a"}]`, "", nil, false},
	{"urn:rx:\xff", `{"urn":"urn:rx:a","event":"prescription.complete"}`, "", nil, false},
}

// FuzzProcess drives the whole command path (decode, the handler on the
// embedded store, the real outbox) with arbitrary records, and checks that
// each gets exactly one outcome and that everything published is valid
// UTF-8 JSON. The store is healthy, so no record may end in an error.
//
//	go test -run '^$' -fuzz FuzzProcess -fuzztime 10m ./service/processor/
func FuzzProcess(f *testing.F) {
	for _, s := range fuzzSeeds {
		f.Add(s.key, []byte(s.value), s.header, s.headerValue, s.keyless, uint8(0))
	}
	quiet := slog.New(slog.NewTextHandler(io.Discard, nil))
	srv, err := esdbserver.Start(esdbserver.Config{Addr: "127.0.0.1:0", Logger: quiet})
	if err != nil {
		f.Fatal(err)
	}
	f.Cleanup(func() { _ = srv.Close() })
	store, err := eventstore.Open(eventstore.Config{ConnectionString: srv.ConnectionString(), Logger: quiet})
	if err != nil {
		f.Fatal(err)
	}
	f.Cleanup(func() { _ = store.Close() })
	// Publish returns once the message is acked, that is recorded here.
	bus := gochannel.NewGoChannel(gochannel.Config{BlockPublishUntilSubscriberAck: true}, watermill.NopLogger{})
	f.Cleanup(func() { _ = bus.Close() })
	var mu sync.Mutex
	published := map[string][]*message.Message{}
	for _, topic := range []string{"rej", "dlq", "retry"} {
		ch, err := bus.Subscribe(context.Background(), topic)
		if err != nil {
			f.Fatal(err)
		}
		go func() {
			for msg := range ch {
				mu.Lock()
				published[topic] = append(published[topic], msg)
				mu.Unlock()
				msg.Ack()
			}
		}()
	}
	ob := &outbox{pub: bus, rejectionTopic: "rej", deadLetterTopic: "dlq", retryTopic: "retry", maxBytes: 1 << 20, clock: time.Now}
	proc := commands.NewProcessor(commands.NewHandler(store, commands.HandlerConfig{CacheSize: 100}), ob,
		commands.ProcessorConfig{DeferDelays: []time.Duration{time.Millisecond}})

	var offset int64
	f.Fuzz(func(t *testing.T, key string, value []byte, header string, headerValue []byte, keyless bool, deferrals uint8) {
		offset++
		raw := commands.Raw{Topic: "cmd", Offset: offset, Value: value, Headers: map[string]string{}, Deferrals: int(deferrals % 3)}
		if !keyless {
			raw.Key = []byte(key)
		}
		if header != "" {
			raw.Headers[header] = string(headerValue)
		}
		res, err := proc.Process(context.Background(), raw)
		if err != nil {
			t.Fatalf("no outcome for %q: %v", value, err)
		}
		want := map[string]int{}
		switch {
		case res.DeadLetter != "":
			want["dlq"] = 1
		case res.Outcome.Kind == commands.Refused:
			want["rej"] = 1
		case res.Outcome.Kind == commands.Deferred:
			want["retry"] = 1
		case res.Outcome.Kind == commands.Appended || res.Outcome.Kind == commands.Duplicate:
		default:
			t.Fatalf("no outcome: %+v", res)
		}
		mu.Lock()
		defer mu.Unlock()
		for _, topic := range []string{"rej", "dlq", "retry"} {
			for _, msg := range published[topic] {
				checkOutbound(t, topic, msg)
			}
			if n := len(published[topic]); n != want[topic] {
				t.Fatalf("%d messages on %s for outcome %+v, want %d", n, topic, res, want[topic])
			}
			published[topic] = nil
		}
	})
}

func checkOutbound(t *testing.T, topic string, msg *message.Message) {
	t.Helper()
	if !utf8.Valid(msg.Payload) || !json.Valid(msg.Payload) {
		t.Fatalf("%s: payload is not valid UTF-8 JSON: %q", topic, msg.Payload)
	}
	var obj map[string]any
	if err := json.Unmarshal(msg.Payload, &obj); err != nil {
		t.Fatalf("%s: payload is not a JSON object: %v", topic, err)
	}
	for k, v := range msg.Metadata {
		if !utf8.ValidString(k) || !utf8.ValidString(v) {
			t.Fatalf("%s: header %q is not valid UTF-8", topic, k)
		}
	}
}

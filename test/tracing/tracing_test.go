// Package tracing tests the OpenTelemetry traces of the whole system: the
// local stack (kfake, the embedded store, the processor, the projector and
// the partner simulators) in one process, with an in-memory span exporter
// installed as the global tracer provider before anything starts. It is a
// package of its own because that provider is global.
package tracing

import (
	"bytes"
	"crypto/rand"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"

	"rxflow/infra/kafka/kafkatest"
	"rxflow/infra/partners"
	"rxflow/infra/telemetry"
	"rxflow/projections"
	"rxflow/service/stack"
	"rxflow/standin/partnersim"
)

var spans = tracetest.NewInMemoryExporter()

func TestMain(m *testing.M) {
	// Synchronous export: a span is in the exporter once it has ended.
	telemetry.Use(sdktrace.NewTracerProvider(sdktrace.WithSyncer(spans)))
	os.Exit(m.Run())
}

const token = "test-token"

// logs collects the stack's log records as JSON lines.
type logs struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (l *logs) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.Write(p)
}

// find returns the decoded records whose msg is msg.
func (l *logs) find(msg string) []map[string]any {
	l.mu.Lock()
	defer l.mu.Unlock()
	var out []map[string]any
	for line := range strings.SplitSeq(l.buf.String(), "\n") {
		var rec map[string]any
		if json.Unmarshal([]byte(line), &rec) == nil && rec["msg"] == msg {
			out = append(out, rec)
		}
	}
	return out
}

func startStack(t *testing.T, w io.Writer) *stack.Stack {
	t.Helper()
	s, err := stack.Start(stack.Config{
		DataDir: t.TempDir(), Token: token,
		KafkaAddr: "127.0.0.1:0", ESDBAddr: "127.0.0.1:0", PartnersAddr: "127.0.0.1:0", APIAddr: "127.0.0.1:0", ProcessorAddr: "127.0.0.1:0",
		Topics: stack.Topics{
			Commands: kafkatest.UniqueTopic(t, "cmd"), Rejections: kafkatest.UniqueTopic(t, "rej"), DeadLetters: kafkatest.UniqueTopic(t, "dlq"),
			ConsumerGroup: kafkatest.UniqueGroup(t, "proc"),
			Outbound: projections.OutboundTopics{Dispensed: kafkatest.UniqueTopic(t, "dispensed"), Failed: kafkatest.UniqueTopic(t, "failed"),
				StatusChanged: kafkatest.UniqueTopic(t, "changed")},
		},
		Partner: partners.Config{Timeout: 2 * time.Second, MaxAttempts: 3, BaseBackoff: 5 * time.Millisecond, MaxBackoff: 20 * time.Millisecond},
		Logger:  slog.New(slog.NewJSONHandler(w, &slog.HandlerOptions{Level: slog.LevelDebug})),
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := s.Close(); err != nil {
			t.Errorf("stack: %v", err)
		}
	})
	return s
}

func command(urn, event, payload string) []byte {
	return fmt.Appendf(nil, `{"urn":%q,"event":%q,"payload":%s}`, urn, event, payload)
}

func status(t *testing.T, s *stack.Stack, urn string) string {
	req, _ := http.NewRequest(http.MethodGet, "http://"+s.Projector.HTTPAddr()+"/prescriptions/"+urn, nil)
	req.Header.Set("Authorization", "Bearer "+token)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var row struct{ Status string }
	_ = json.NewDecoder(resp.Body).Decode(&row) // a 404 leaves it empty
	return row.Status
}

// spanTree is the ended spans of one trace.
type spanTree struct {
	t     *testing.T
	id    trace.TraceID
	spans []tracetest.SpanStub
}

// traceOf returns the ended spans of trace id.
func traceOf(t *testing.T, id trace.TraceID) spanTree {
	tr := spanTree{t: t, id: id}
	for _, s := range spans.GetSpans() {
		if s.SpanContext.TraceID() == id {
			tr.spans = append(tr.spans, s)
		}
	}
	return tr
}

// named returns the spans called name.
func (tr spanTree) named(name string) []tracetest.SpanStub {
	var out []tracetest.SpanStub
	for _, s := range tr.spans {
		if s.Name == name {
			out = append(out, s)
		}
	}
	return out
}

// has reports whether every name has at least one span.
func (tr spanTree) has(names ...string) bool {
	for _, n := range names {
		if len(tr.named(n)) == 0 {
			return false
		}
	}
	return true
}

// one returns the one span called name, failing the test otherwise.
func (tr spanTree) one(name string) tracetest.SpanStub {
	tr.t.Helper()
	got := tr.named(name)
	if len(got) != 1 {
		tr.t.Fatalf("trace %s: %d spans named %q, want 1; spans: %v", tr.id, len(got), name, tr.names())
	}
	return got[0]
}

// children returns the spans whose parent is p.
func (tr spanTree) children(p tracetest.SpanStub) []tracetest.SpanStub {
	var out []tracetest.SpanStub
	for _, s := range tr.spans {
		if s.Parent.SpanID() == p.SpanContext.SpanID() {
			out = append(out, s)
		}
	}
	return out
}

func (tr spanTree) names() []string {
	var out []string
	for _, s := range tr.spans {
		out = append(out, s.Name)
	}
	return out
}

// parent checks that child's parent is parent.
func (tr spanTree) parent(child, parent tracetest.SpanStub) {
	tr.t.Helper()
	if child.Parent.SpanID() != parent.SpanContext.SpanID() {
		tr.t.Errorf("span %q has parent %s, want %q (%s)", child.Name, child.Parent.SpanID(), parent.Name, parent.SpanContext.SpanID())
	}
}

func attr(s tracetest.SpanStub, key string) string {
	for _, kv := range s.Attributes {
		if string(kv.Key) == key {
			return kv.Value.Emit()
		}
	}
	return ""
}

// consumeSpan waits for the consume span of the command event of urn that
// ended with outcome.
func consumeSpan(t *testing.T, s *stack.Stack, urn, event, outcome string) tracetest.SpanStub {
	t.Helper()
	var found tracetest.SpanStub
	eventually(t, "the consume span of "+urn, func() bool {
		for _, sp := range spans.GetSpans() {
			if sp.Name == "consume "+s.Topics.Commands && attr(sp, "rxflow.urn") == urn && attr(sp, "rxflow.command") == event &&
				attr(sp, "rxflow.outcome") == outcome {
				found = sp
				return true
			}
		}
		return false
	})
	return found
}

func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// One command, sent without a traceparent, is one new trace: the
// processor's spans, the store call, and each projector's handling of the
// event it appended, with the outbound publish under the outbound
// projector.
func TestCommandStartsOneTrace(t *testing.T) {
	s := startStack(t, io.Discard)
	urn := "urn:rx:traced-new"
	kafkatest.Produce(t, s.Brokers, s.Topics.Commands, kafkatest.Record{Key: []byte(urn), Value: command(urn, "prescription.request",
		`{"patientId":"pat-1","prescriberId":"dr-1","pharmacyId":"ph-1","medication":{"name":"Amoxicillin","quantity":20}}`)})
	consume := consumeSpan(t, s, urn, "prescription.request", "appended")
	if consume.Parent.IsValid() {
		t.Fatalf("consume span has parent %v: a command without traceparent starts a new trace", consume.Parent)
	}
	if consume.SpanKind != trace.SpanKindConsumer {
		t.Errorf("consume span kind %v", consume.SpanKind)
	}
	id := consume.SpanContext.TraceID()
	publish := s.Topics.Outbound.StatusChanged + " publish"
	var tr spanTree
	eventually(t, "the projectors' spans", func() bool {
		tr = traceOf(t, id)
		return tr.has("project readmodel", "project kafka-outbound", publish)
	})
	for _, name := range []string{"decode", "load", "decide", "append"} {
		tr.parent(tr.one(name), consume)
	}
	load, appendSpan, write := tr.one("load"), tr.one("append"), tr.one("streams.append")
	if reads := tr.children(load); len(reads) != 1 || reads[0].Name != "streams.read" {
		t.Errorf("load's children %v, want one streams.read", reads)
	}
	tr.parent(write, appendSpan)
	if write.SpanKind != trace.SpanKindClient || attr(write, "db.kurrentdb.stream") != "prescription-"+urn {
		t.Errorf("streams.append: kind %v, attributes %v", write.SpanKind, write.Attributes)
	}
	// The projectors continue the trace from the event's metadata: the
	// stored span is the store call's.
	tr.parent(tr.one("project readmodel"), write)
	outbound := tr.one("project kafka-outbound")
	tr.parent(outbound, write)
	tr.parent(tr.one(publish), outbound)
	if got := tr.named("project insurance"); len(got) != 1 {
		t.Errorf("%d insurance spans for the request: every projector handles every event", len(got))
	}

	// The outbound record carries the publish span's context.
	changes := kafkatest.ConsumeAll(t, s.Brokers, s.Topics.Outbound.StatusChanged)
	if len(changes) != 1 {
		t.Fatalf("%d status changes", len(changes))
	}
	want := fmt.Sprintf("00-%s-%s-01", id, tr.one(publish).SpanContext.SpanID())
	if got := changes[0].Headers["traceparent"]; got != want {
		t.Errorf("outbound traceparent %q, want %q", got, want)
	}
}

// A command with a traceparent joins that trace, and the partner call its
// event causes is in it, with the traceparent sent to the partner.
func TestCommandJoinsItsTraceparent(t *testing.T) {
	s := startStack(t, io.Discard)
	urn := "urn:rx:traced-join"
	kafkatest.Produce(t, s.Brokers, s.Topics.Commands, kafkatest.Record{Key: []byte(urn), Value: command(urn, "prescription.request",
		`{"patientId":"pat-1","prescriberId":"dr-1","pharmacyId":"ph-1","medication":{"name":"Amoxicillin","quantity":20}}`)})
	eventually(t, "requested", func() bool { return status(t, s, urn) == "requested" })

	// A trace of its own on every run: the exporter outlives a test (-count).
	var tid trace.TraceID
	var sid trace.SpanID
	_, _ = rand.Read(tid[:])
	_, _ = rand.Read(sid[:])
	traceID, parentID := tid.String(), sid.String()
	kafkatest.Produce(t, s.Brokers, s.Topics.Commands, kafkatest.Record{Key: []byte(urn), Value: command(urn, "prescription.approve", `{"approvedBy":"dr-1"}`),
		Headers: map[string]string{"traceparent": "00-" + traceID + "-" + parentID + "-01"}})
	consume := consumeSpan(t, s, urn, "prescription.approve", "appended")
	if consume.SpanContext.TraceID().String() != traceID || consume.Parent.SpanID().String() != parentID || !consume.Parent.IsRemote() {
		t.Fatalf("consume span %s with parent %s, want a child of %s-%s", consume.SpanContext.TraceID(), consume.Parent.SpanID(), traceID, parentID)
	}
	var tr spanTree
	eventually(t, "the insurance call's spans", func() bool {
		tr = traceOf(t, consume.SpanContext.TraceID())
		return tr.has("project insurance", "HTTP POST", "project readmodel", "project kafka-outbound") && len(s.Sim.Accepted(partnersim.Insurance)) == 1
	})
	// One trace: the processor's spans, every projector's, the partner call.
	for _, name := range []string{"decode", "decide", "append"} {
		tr.parent(tr.one(name), consume)
	}
	write := tr.one("streams.append")
	tr.parent(write, tr.one("append"))
	tr.parent(tr.one("project readmodel"), write)
	tr.parent(tr.one("project kafka-outbound"), write)
	insurance := tr.one("project insurance")
	tr.parent(insurance, write)
	if attr(insurance, "rxflow.urn") != urn || attr(insurance, "rxflow.projector") != "insurance" || attr(insurance, "rxflow.event_id") == "" {
		t.Errorf("projector span attributes %v, want its urn, projector and event id", insurance.Attributes)
	}
	call := tr.one("HTTP POST")
	tr.parent(call, insurance)
	if call.SpanKind != trace.SpanKindClient {
		t.Errorf("partner call span kind %v", call.SpanKind)
	}
	got := s.Sim.Accepted(partnersim.Insurance)[0].Traceparent
	if want := fmt.Sprintf("00-%s-%s-01", traceID, call.SpanContext.SpanID()); got != want {
		t.Errorf("insurance received traceparent %q, want %q", got, want)
	}
}

// A refusal and a dead letter are published in the command's trace, with
// its context in their headers, and the processor's log lines carry the
// trace and span ids.
func TestRefusalAndDeadLetterAreTraced(t *testing.T) {
	var out logs
	s := startStack(t, &out)
	urn := "urn:rx:traced-refused"
	kafkatest.Produce(t, s.Brokers, s.Topics.Commands,
		kafkatest.Record{Key: []byte(urn), Value: command(urn, "prescription.approve", `{"approvedBy":"dr-1"}`)},
		kafkatest.Record{Key: []byte(urn), Value: []byte(`{"urn":`)})

	consume := consumeSpan(t, s, urn, "prescription.approve", "refused")
	id := consume.SpanContext.TraceID()
	refusal := s.Topics.Rejections + " publish"
	var tr spanTree
	eventually(t, "the refusal's publish span", func() bool { tr = traceOf(t, id); return tr.has(refusal) })
	tr.parent(tr.one(refusal), consume)
	rejections := kafkatest.ConsumeAll(t, s.Brokers, s.Topics.Rejections)
	if len(rejections) != 1 || !strings.HasPrefix(rejections[0].Headers["traceparent"], "00-"+id.String()+"-") {
		t.Errorf("rejection records %v: want one, carrying trace %s", rejections, id)
	}
	lines := out.find("command refused")
	if len(lines) != 1 || lines[0]["trace_id"] != id.String() || lines[0]["span_id"] != consume.SpanContext.SpanID().String() {
		t.Errorf("refusal log lines %v: want trace_id %s and span_id %s", lines, id, consume.SpanContext.SpanID())
	}

	// The malformed record has no urn: its consume span is found by outcome.
	var dead tracetest.SpanStub
	eventually(t, "the dead letter's consume span", func() bool {
		for _, sp := range spans.GetSpans() {
			if sp.Name == "consume "+s.Topics.Commands && attr(sp, "rxflow.outcome") == "dead_lettered" && attr(sp, "messaging.kafka.offset") == "1" &&
				traceOf(t, sp.SpanContext.TraceID()).has(s.Topics.DeadLetters+" publish") {
				dead = sp
				return true
			}
		}
		return false
	})
	tr = traceOf(t, dead.SpanContext.TraceID())
	decode := tr.one("decode")
	tr.parent(decode, dead)
	if decode.Status.Code.String() != "Error" {
		t.Errorf("decode span of a malformed command: status %v", decode.Status)
	}
	tr.parent(tr.one(s.Topics.DeadLetters+" publish"), dead)
	if lines := out.find("command dead-lettered"); len(lines) != 1 || lines[0]["trace_id"] != dead.SpanContext.TraceID().String() {
		t.Errorf("dead-letter log lines %v", lines)
	}
}

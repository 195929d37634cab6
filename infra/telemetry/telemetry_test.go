package telemetry

import (
	"bytes"
	"context"
	"encoding/json"
	"log/slog"
	"testing"

	"go.opentelemetry.io/otel/trace"

	"rxflow/events"
)

func TestWanted(t *testing.T) {
	cases := []struct {
		env     map[string]string
		on, err bool
	}{
		{env: nil},
		{env: map[string]string{"OTEL_EXPORTER_OTLP_ENDPOINT": "http://collector:4318"}, on: true},
		{env: map[string]string{"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "http://collector:4318/v1/traces"}, on: true},
		{env: map[string]string{"OTEL_TRACES_EXPORTER": "otlp"}, on: true},
		{env: map[string]string{"OTEL_TRACES_EXPORTER": "none", "OTEL_EXPORTER_OTLP_ENDPOINT": "http://collector:4318"}},
		{env: map[string]string{"OTEL_SDK_DISABLED": "true", "OTEL_EXPORTER_OTLP_ENDPOINT": "http://collector:4318"}},
		{env: map[string]string{"OTEL_TRACES_EXPORTER": "zipkin"}, err: true},
	}
	for _, c := range cases {
		on, err := wanted(func(k string) string { return c.env[k] })
		if on != c.on || (err != nil) != c.err {
			t.Errorf("%v: on %v, err %v; want on %v, error %v", c.env, on, err, c.on, c.err)
		}
	}
}

func TestExporterProtocols(t *testing.T) {
	for _, p := range []string{"", "grpc", "http/protobuf"} {
		exp, err := exporter(context.Background(), func(k string) string {
			if k == "OTEL_EXPORTER_OTLP_PROTOCOL" {
				return p
			}
			return ""
		})
		if err != nil {
			t.Fatalf("protocol %q: %v", p, err)
		}
		_ = exp.Shutdown(context.Background())
	}
	if _, err := exporter(context.Background(), func(string) string { return "http/json" }); err == nil {
		t.Error("http/json accepted")
	}
}

// Setup leaves the no-op provider in place without an endpoint.
func TestSetupOffWithoutEndpoint(t *testing.T) {
	t.Setenv("OTEL_EXPORTER_OTLP_ENDPOINT", "")
	t.Setenv("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "")
	t.Setenv("OTEL_TRACES_EXPORTER", "")
	stop, err := Setup(context.Background(), "test")
	if err != nil {
		t.Fatal(err)
	}
	stop()
	if Enabled() {
		t.Fatal("tracing on without an endpoint")
	}
}

var sampled = trace.NewSpanContext(trace.SpanContextConfig{
	TraceID: trace.TraceID{0x4b, 0xf9, 1}, SpanID: trace.SpanID{0x00, 0xf0, 2}, TraceFlags: trace.FlagsSampled})

// The stored form uses the KurrentDB/Eventuous keys, and reading it back
// gives a remote parent with the same ids.
func TestEventMetadataRoundTrip(t *testing.T) {
	var meta events.Metadata
	StampEvent(trace.ContextWithSpanContext(context.Background(), sampled), &meta)
	b, err := json.Marshal(meta)
	if err != nil {
		t.Fatal(err)
	}
	var stored map[string]any
	_ = json.Unmarshal(b, &stored)
	if stored["$traceId"] != "4bf90100000000000000000000000000" || stored["$spanId"] != "00f0020000000000" {
		t.Fatalf("stored metadata %s", b)
	}
	var back events.Metadata
	if err := json.Unmarshal(b, &back); err != nil {
		t.Fatal(err)
	}
	sc := trace.SpanContextFromContext(EventContext(context.Background(), back))
	if sc.TraceID() != sampled.TraceID() || sc.SpanID() != sampled.SpanID() || !sc.IsRemote() || !sc.IsSampled() {
		t.Fatalf("read back %v", sc)
	}
}

func TestEventMetadataWithoutTrace(t *testing.T) {
	var meta events.Metadata
	StampEvent(context.Background(), &meta)
	unsampled := trace.NewSpanContext(trace.SpanContextConfig{TraceID: sampled.TraceID(), SpanID: sampled.SpanID()})
	StampEvent(trace.ContextWithSpanContext(context.Background(), unsampled), &meta)
	if meta.TraceID != "" || meta.SpanID != "" {
		t.Fatalf("stamped %+v without a sampled span", meta)
	}
	// Events stored before tracing, and malformed ids, give no parent.
	for _, m := range []events.Metadata{{}, {TraceID: "xyz", SpanID: "00f0020000000000"}, {TraceID: "4bf90100000000000000000000000000"}} {
		if sc := trace.SpanContextFromContext(EventContext(context.Background(), m)); sc.IsValid() {
			t.Errorf("%+v gave parent %v", m, sc)
		}
	}
}

func TestLogHandlerAddsTraceIDs(t *testing.T) {
	var buf bytes.Buffer
	log := NewLogger(slog.New(slog.NewJSONHandler(&buf, nil))).With("service", "test")
	log.InfoContext(trace.ContextWithSpanContext(context.Background(), sampled), "traced")
	log.Info("untraced")
	dec := json.NewDecoder(&buf)
	var traced, untraced map[string]any
	if err := dec.Decode(&traced); err != nil {
		t.Fatal(err)
	}
	if err := dec.Decode(&untraced); err != nil {
		t.Fatal(err)
	}
	if traced["trace_id"] != sampled.TraceID().String() || traced["span_id"] != sampled.SpanID().String() || traced["service"] != "test" {
		t.Errorf("traced record %v", traced)
	}
	if _, ok := untraced["trace_id"]; ok {
		t.Errorf("untraced record %v", untraced)
	}
}

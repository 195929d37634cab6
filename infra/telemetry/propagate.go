package telemetry

import (
	"context"
	"log/slog"

	"github.com/ThreeDotsLabs/watermill/message"
	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/trace"

	"rxflow/events"
)

// Watermill has no OpenTelemetry propagation in its core modules, and the
// Kafka publisher's own (watermill-kafka's OTELEnabled, dnwe/otelsarama)
// reads the parent from the record's headers. A message's metadata becomes
// those headers, so the trace context travels as W3C traceparent and
// tracestate entries in it, written and read by the global propagator.

// Inject writes ctx's trace context into md (traceparent, tracestate),
// replacing any there; it writes nothing when ctx holds no sampled-or-not
// span context or tracing is off.
func Inject(ctx context.Context, md message.Metadata) {
	otel.GetTextMapPropagator().Inject(ctx, propagation.MapCarrier(md))
}

// Extract returns ctx with the remote span context that md's traceparent
// carries, if any and valid; ctx unchanged otherwise.
func Extract(ctx context.Context, md message.Metadata) context.Context {
	return otel.GetTextMapPropagator().Extract(ctx, propagation.MapCarrier(md))
}

// StampEvent records ctx's span in an event's metadata as $traceId and
// $spanId, the keys the KurrentDB and EventStoreDB clients' tracing and
// Eventuous write into the JSON metadata of every appended event
// (KurrentDB-Client-Dotnet, TraceConstants.TraceId / SpanId in
// KurrentDB.Diagnostics.Tracing; Eventuous, DiagnosticTags.TraceId / SpanId
// in Eventuous.Diagnostics): lowercase hex, 32 and 16 digits. Nothing is
// written when ctx holds no sampled span (tracing off, or sampled out).
func StampEvent(ctx context.Context, meta *events.Metadata) {
	sc := trace.SpanContextFromContext(ctx)
	if !sc.IsValid() || !sc.IsSampled() {
		return
	}
	meta.TraceID, meta.SpanID = sc.TraceID().String(), sc.SpanID().String()
}

// EventContext returns ctx with the remote span context stored in meta by
// StampEvent, marked sampled (only sampled spans are stamped); ctx unchanged when meta has none or holds
// malformed ids (events stored before tracing, or by other writers).
func EventContext(ctx context.Context, meta events.Metadata) context.Context {
	if meta.TraceID == "" {
		return ctx
	}
	tid, err1 := trace.TraceIDFromHex(meta.TraceID)
	sid, err2 := trace.SpanIDFromHex(meta.SpanID)
	if err1 != nil || err2 != nil {
		return ctx
	}
	sc := trace.NewSpanContext(trace.SpanContextConfig{TraceID: tid, SpanID: sid, TraceFlags: trace.FlagsSampled, Remote: true})
	return trace.ContextWithRemoteSpanContext(ctx, sc)
}

// LogHandler adds trace_id and span_id to every record logged with a
// context holding a valid span context (slog's InfoContext and the like).
type LogHandler struct{ slog.Handler }

// NewLogger returns log with LogHandler around its handler.
func NewLogger(log *slog.Logger) *slog.Logger {
	if _, ok := log.Handler().(LogHandler); ok {
		return log
	}
	return slog.New(LogHandler{log.Handler()})
}

// Handle implements slog.Handler.
func (h LogHandler) Handle(ctx context.Context, r slog.Record) error {
	if sc := trace.SpanContextFromContext(ctx); sc.IsValid() {
		r.AddAttrs(slog.String("trace_id", sc.TraceID().String()), slog.String("span_id", sc.SpanID().String()))
	}
	return h.Handler.Handle(ctx, r)
}

// WithAttrs implements slog.Handler.
func (h LogHandler) WithAttrs(attrs []slog.Attr) slog.Handler {
	return LogHandler{h.Handler.WithAttrs(attrs)}
}

// WithGroup implements slog.Handler.
func (h LogHandler) WithGroup(name string) slog.Handler { return LogHandler{h.Handler.WithGroup(name)} }

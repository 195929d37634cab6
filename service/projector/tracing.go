package projector

import (
	"context"

	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/trace"

	"rxflow/events"
	"rxflow/infra/telemetry"
	"rxflow/projections"
)

var tracer = otel.Tracer("rxflow/service/projector")

// traced wraps a projector so that its handling of each event is a span,
// "project <projector>", in the trace of the append that stored the event
// (the $traceId and $spanId of its metadata): the partner call, the
// outbound publish or the read-model apply it makes are its children.
// An event stored without them starts a new trace.
type traced struct{ projections.Projector }

func (t traced) Handle(ctx context.Context, rec events.Recorded) error {
	ctx, span := t.start(ctx, rec)
	defer span.End()
	return t.end(span, t.Projector.Handle(ctx, rec))
}

// start begins rec's span, in the trace of the append that stored it. Its
// attributes are built only for a span that records (tracing off, or the
// trace not sampled, leaves them out: every runner starts one per event).
func (t traced) start(ctx context.Context, rec events.Recorded) (context.Context, trace.Span) {
	ctx, span := tracer.Start(telemetry.EventContext(ctx, rec.Meta), "project "+t.Name(), trace.WithSpanKind(trace.SpanKindConsumer))
	if span.IsRecording() {
		span.SetAttributes(attribute.String("rxflow.projector", t.Name()), attribute.String("rxflow.event", rec.Name),
			attribute.String("rxflow.event_id", rec.Meta.EventID), attribute.String("rxflow.urn", rec.URN),
			attribute.Int64("rxflow.position", int64(rec.Position)))
	}
	return ctx, span
}

func (t traced) end(span trace.Span, err error) error {
	if err != nil {
		span.RecordError(err)
		span.SetStatus(codes.Error, err.Error())
	}
	return err
}

// tracedBatch is a traced BatchHandler: each event of a batch has its span,
// in its own trace, covering the batch's one transaction.
type tracedBatch struct {
	traced
	b projections.BatchHandler
}

func (t tracedBatch) HandleBatch(ctx context.Context, recs []events.Recorded) error {
	spans := make([]trace.Span, len(recs))
	for i, rec := range recs {
		_, spans[i] = t.start(ctx, rec)
	}
	err := t.b.HandleBatch(ctx, recs)
	for _, span := range spans {
		t.end(span, err)
		span.End()
	}
	return err
}

// withTracing wraps p in traced, or in tracedBatch if p takes batches.
func withTracing(p projections.Projector) projections.Projector {
	if b, ok := p.(projections.BatchHandler); ok {
		return tracedBatch{traced{p}, b}
	}
	return traced{p}
}

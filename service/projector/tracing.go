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
	ctx, span := tracer.Start(telemetry.EventContext(ctx, rec.Meta), "project "+t.Name(), trace.WithSpanKind(trace.SpanKindConsumer),
		trace.WithAttributes(attribute.String("rxflow.projector", t.Name()), attribute.String("rxflow.event", rec.Name),
			attribute.String("rxflow.event_id", rec.Meta.EventID), attribute.String("rxflow.urn", rec.URN),
			attribute.Int64("rxflow.position", int64(rec.Position))))
	defer span.End()
	err := t.Projector.Handle(ctx, rec)
	if err != nil {
		span.RecordError(err)
		span.SetStatus(codes.Error, err.Error())
	}
	return err
}

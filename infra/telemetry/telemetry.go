// Package telemetry sets up OpenTelemetry tracing from the standard OTEL_*
// environment variables, and holds the small pieces of propagation the
// libraries do not provide: W3C trace context over Watermill message
// metadata (Kafka headers), over an event's metadata ($traceId, $spanId),
// and trace_id / span_id on slog records.
//
// Spans are made through the global providers (otel.Tracer,
// otel.GetTextMapPropagator), as instrumentation libraries do. Until Setup
// turns tracing on they are the OpenTelemetry API's no-ops: no span is
// recorded, no context is propagated, and the cost is a few calls per span.
package telemetry

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"strings"
	"sync/atomic"
	"time"

	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracegrpc"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracehttp"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/sdk/resource"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	semconv "go.opentelemetry.io/otel/semconv/v1.40.0"
)

// enabled is set once a real tracer provider is installed.
var enabled atomic.Bool

// Enabled reports whether spans are recorded and exported: Setup found an
// exporter to use, or a test installed a provider with Use.
func Enabled() bool { return enabled.Load() }

// Propagator is the one installed when tracing is on: W3C trace context
// (traceparent, tracestate) and W3C baggage.
var Propagator = propagation.NewCompositeTextMapPropagator(propagation.TraceContext{}, propagation.Baggage{})

// Use installs tp and Propagator as the global tracer provider and
// propagator and marks tracing on: what Setup does once it has built its
// provider, and what tests do with an in-memory exporter.
func Use(tp *sdktrace.TracerProvider) {
	otel.SetTracerProvider(tp)
	otel.SetTextMapPropagator(Propagator)
	enabled.Store(true)
}

// Setup turns tracing on when the environment asks for it, and returns a
// function that flushes the spans still buffered, for at most
// StopTimeout, and stops tracing (a no-op when it stayed off); a failure to
// flush is logged.
//
// Tracing is on when OTEL_TRACES_EXPORTER is "otlp", or when it is unset and
// OTEL_EXPORTER_OTLP_ENDPOINT or OTEL_EXPORTER_OTLP_TRACES_ENDPOINT is set.
// It stays off when OTEL_SDK_DISABLED is "true", OTEL_TRACES_EXPORTER is
// "none", or no endpoint is set. Spans then go through a batch processor to
// an OTLP exporter over gRPC or HTTP/protobuf (OTEL_EXPORTER_OTLP_PROTOCOL or
// OTEL_EXPORTER_OTLP_TRACES_PROTOCOL: "grpc" or "http/protobuf", the
// default). The exporters and the SDK read the other standard variables
// themselves: the endpoint, OTEL_EXPORTER_OTLP_HEADERS, _TIMEOUT,
// _CERTIFICATE, _COMPRESSION, OTEL_TRACES_SAMPLER (default parentbased_always_on),
// OTEL_BSP_*, OTEL_SERVICE_NAME and OTEL_RESOURCE_ATTRIBUTES. service is the
// service.name when OTEL_SERVICE_NAME is unset.
//
// Errors: an unknown exporter or protocol, or an exporter that cannot be
// built from its variables.
func Setup(ctx context.Context, service string) (stop func(), err error) {
	off := func() {}
	on, err := wanted(os.Getenv)
	if err != nil || !on {
		return off, err
	}
	exp, err := exporter(ctx, os.Getenv)
	if err != nil {
		return off, err
	}
	res, err := resource.Merge(resource.Default(), resource.NewSchemaless(semconv.ServiceName(service)))
	if err != nil {
		return off, err
	}
	// The environment's own attributes (OTEL_SERVICE_NAME, OTEL_RESOURCE_ATTRIBUTES) win.
	if res, err = resource.Merge(res, envResource(ctx)); err != nil {
		return off, err
	}
	tp := sdktrace.NewTracerProvider(sdktrace.WithBatcher(exp), sdktrace.WithResource(res))
	Use(tp)
	return func() {
		ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), StopTimeout)
		defer cancel()
		if err := tp.Shutdown(ctx); err != nil {
			slog.Warn("telemetry: spans not flushed at exit", "err", err)
		}
	}, nil
}

// StopTimeout bounds the flush of the spans at exit.
const StopTimeout = 5 * time.Second

func envResource(ctx context.Context) *resource.Resource {
	r, err := resource.New(ctx, resource.WithFromEnv())
	if err != nil {
		return resource.Empty()
	}
	return r
}

// wanted reads whether the environment turns tracing on.
func wanted(env func(string) string) (bool, error) {
	if strings.EqualFold(strings.TrimSpace(env("OTEL_SDK_DISABLED")), "true") {
		return false, nil
	}
	switch e := strings.TrimSpace(env("OTEL_TRACES_EXPORTER")); e {
	case "none":
		return false, nil
	case "otlp":
		return true, nil
	case "":
		return env("OTEL_EXPORTER_OTLP_ENDPOINT") != "" || env("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT") != "", nil
	default:
		return false, fmt.Errorf("telemetry: OTEL_TRACES_EXPORTER=%q: only otlp and none are supported", e)
	}
}

// exporter builds the OTLP exporter of the protocol the environment names.
func exporter(ctx context.Context, env func(string) string) (*otlptrace.Exporter, error) {
	protocol := env("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL")
	if protocol == "" {
		protocol = env("OTEL_EXPORTER_OTLP_PROTOCOL")
	}
	switch protocol {
	case "grpc":
		return otlptracegrpc.New(ctx)
	case "", "http/protobuf":
		return otlptracehttp.New(ctx)
	default:
		return nil, errors.New("telemetry: OTEL_EXPORTER_OTLP_PROTOCOL=" + protocol + ": only grpc and http/protobuf are supported")
	}
}

package telemetry

import (
	"go.opentelemetry.io/otel/attribute"
	semconv "go.opentelemetry.io/otel/semconv/v1.40.0"
)

// DBSystem marks a span of a call to the event store, with the value the
// KurrentDB clients give db.system.name.
var DBSystem = semconv.DBSystemNameKey.String("kurrentdb")

// DBOperation is the store call's name (streams.append, streams.read).
func DBOperation(op string) attribute.KeyValue { return semconv.DBOperationName(op) }

// DBStream is the stream a store call reads or writes, under the KurrentDB
// clients' key.
func DBStream(stream string) attribute.KeyValue {
	return attribute.String("db.kurrentdb.stream", stream)
}

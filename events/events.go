// Package events is the stored form of the prescription's domain events:
// explicit, stable event names, versioned JSON payloads, the metadata
// written beside every event, stream names and deterministic event ids.
package events

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/go-json-experiment/json/jsontext"
	"github.com/google/uuid"

	"rxflow/domain"
)

// StreamPrefix starts every prescription stream: one stream per prescription.
const StreamPrefix = "prescription-"

// StreamName is the stream that holds prescription urn's events.
func StreamName(urn string) string { return StreamPrefix + urn }

// URNFromStream is the inverse of StreamName.
func URNFromStream(stream string) (string, bool) {
	urn, ok := strings.CutPrefix(stream, StreamPrefix)
	return urn, ok && urn != ""
}

// Stable event names. They never change once stored; a new payload shape
// gets a new version in Upcasters, not a new name.
const (
	NameRequested         = "PrescriptionRequested"
	NameApproved          = "PrescriptionApproved"
	NameRejected          = "PrescriptionRejected"
	NameProcessingStarted = "PrescriptionProcessingStarted"
	NameDispensed         = "PrescriptionDispensed"
	NameCompleted         = "PrescriptionCompleted"
	NameFailed            = "PrescriptionFailed"
	// NameCommandRefused records a refused command: no transition, but the
	// audit trail keeps it and a redelivery gets the same answer.
	NameCommandRefused = "PrescriptionCommandRefused"
	// NameDeadlinePassed records a deadline of the workflow table that
	// passed: no transition, but the reactions of the deadline follow it.
	NameDeadlinePassed = "PrescriptionDeadlinePassed"
)

// Errors of Decode, matched with errors.Is.
var (
	ErrUnknownEvent       = errors.New("unknown event name")
	ErrUnsupportedVersion = errors.New("unsupported schema version")
	// ErrNewerVersion is the ErrUnsupportedVersion of an event stored at a
	// version newer than this code writes: newer code (a newer replica,
	// during a rolling deploy) wrote it, and reading it needs that code.
	ErrNewerVersion     = fmt.Errorf("%w: newer than this code", ErrUnsupportedVersion)
	ErrMalformedPayload = errors.New("malformed event payload")
)

// Metadata is stored as JSON beside every event.
type Metadata struct {
	EventID       string    `json:"eventId"`
	CommandID     string    `json:"commandId"`
	CommandHash   string    `json:"commandHash,omitempty"` // fingerprint of the command's content, to tell a retry from a conflicting reuse of its id
	CorrelationID string    `json:"correlationId,omitempty"`
	CausationID   string    `json:"causationId,omitempty"`
	Actor         string    `json:"actor,omitempty"`
	Diagnostic    string    `json:"diagnostic,omitempty"` // internal detail from the command's diagnostic header; never published outside
	OccurredAt    time.Time `json:"occurredAt"`
	SchemaVersion int       `json:"schemaVersion"` // the payload's version, per event name: SchemaVersion(name) when written
	// TraceID and SpanID are the W3C trace context of the append that
	// stored the event (lowercase hex, 32 and 16 digits), under the keys
	// the KurrentDB/EventStoreDB clients and Eventuous use; empty when it
	// was not traced, and in events stored before tracing existed.
	TraceID string `json:"$traceId,omitempty"`
	SpanID  string `json:"$spanId,omitempty"`
}

// Recorded is an event read back from the store.
type Recorded struct {
	URN      string
	Name     string
	Event    domain.Event
	Meta     Metadata
	Data     []byte // the JSON payload at its event's current version (upcast when Meta.SchemaVersion, the stored one, is older), for audit
	Revision uint64 // position in its stream, from 0
	Position uint64 // commit position in $all
	Created  time.Time
}

var eventIDSpace = uuid.MustParse("9a3c3c1e-8f7c-4a8e-9a55-3f1f6c1b2d10")

// EventID derives the id of the index-th event recorded for commandID in
// urn's stream. The same command always yields the same ids, so a retried
// append is idempotent in EventStoreDB; command ids are scoped to their
// prescription, so the urn is part of the id: two prescriptions never
// share an event id, a ledger entry or a dedupe key.
func EventID(urn, commandID string, index int) uuid.UUID {
	return uuid.NewSHA1(eventIDSpace, []byte(urn+"\n"+commandID+"#"+strconv.Itoa(index)))
}

// Pending is an event ready to be appended.
type Pending struct {
	Name string
	Data []byte
	Meta Metadata
}

// New encodes e with its metadata for appending.
func New(e domain.Event, meta Metadata) (Pending, error) {
	name, data, err := Encode(e)
	if err != nil {
		return Pending{}, err
	}
	meta.SchemaVersion = SchemaVersion(name)
	return Pending{Name: name, Data: data, Meta: meta}, nil
}

// AppendJSON appends m as one JSON object to b: the members and the
// omissions of its json tags, written without reflection because every
// appended event carries it. The bytes may differ from encoding/json's
// (which escapes <, > and & among others) but read back the same
// (FuzzMetadataJSON); text that is not valid UTF-8 holds U+FFFD in place of
// the bad bytes, as with encoding/json. OccurredAt is in RFC 3339 with
// nanoseconds, as time.Time's MarshalJSON writes it.
func (m Metadata) AppendJSON(b []byte) []byte {
	b = appendJSONString(append(b, `{"eventId":`...), m.EventID)
	b = appendJSONString(append(b, `,"commandId":`...), m.CommandID)
	for _, f := range [...]struct{ name, value string }{
		{`,"commandHash":`, m.CommandHash}, {`,"correlationId":`, m.CorrelationID}, {`,"causationId":`, m.CausationID},
		{`,"actor":`, m.Actor}, {`,"diagnostic":`, m.Diagnostic}, {`,"$traceId":`, m.TraceID}, {`,"$spanId":`, m.SpanID},
	} {
		if f.value != "" {
			b = appendJSONString(append(b, f.name...), f.value)
		}
	}
	b = m.OccurredAt.AppendFormat(append(b, `,"occurredAt":"`...), time.RFC3339Nano)
	b = strconv.AppendInt(append(b, `","schemaVersion":`...), int64(m.SchemaVersion), 10)
	return append(b, '}')
}

func appendJSONString(b []byte, s string) []byte {
	b, _ = jsontext.AppendQuote(b, s) // invalid UTF-8 becomes U+FFFD, as documented
	return b
}

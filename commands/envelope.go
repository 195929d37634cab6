// Package commands is the command side: the seed's Kafka message format,
// its decoding and validation, and the handler that loads a prescription,
// decides and appends. It knows nothing of Kafka or EventStoreDB: it
// declares the small ports it needs.
package commands

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"unicode/utf8"

	"rxflow/domain"
)

// Headers that may carry the optional envelope fields. JSON fields win.
const (
	HeaderCommandID     = "command-id"
	HeaderCorrelationID = "correlation-id"
	HeaderActor         = "actor"
	// HeaderDiagnostic carries internal detail (an error chain, a partner's
	// answer) that is kept in the stored event's metadata and never
	// published to outside consumers.
	HeaderDiagnostic = "diagnostic"
)

// DefaultMaxCommandBytes bounds a command message. Bigger ones are dead-lettered.
const DefaultMaxCommandBytes = 64 << 10

// MaxURNLength bounds a urn, which becomes a stream name and a Kafka key.
const MaxURNLength = 256

// Raw is a command message as it came off the bus.
type Raw struct {
	Topic     string
	Partition int32
	Offset    int64
	Key       []byte
	Value     []byte
	Headers   map[string]string
}

// Envelope is a decoded command with its identity.
type Envelope struct {
	ID            string // the command id; derived from topic/partition/offset when absent
	CorrelationID string
	Diagnostic    string // internal detail, stored in the events' metadata only
	Hash          string // fingerprint of the content, to tell a retry from a reused id
	Command       domain.Command
	Source        []byte // the message as received
}

// wireCommand is the seed's message: {"urn", "event", "payload"}, plus
// optional identity fields.
type wireCommand struct {
	URN           string          `json:"urn"`
	Event         string          `json:"event"`
	Payload       json.RawMessage `json:"payload"`
	CommandID     string          `json:"commandId"`
	CorrelationID string          `json:"correlationId"`
	Actor         string          `json:"actor"`
}

// wirePayload is the union of every command's payload fields. Unknown fields
// are ignored, so a client of the seed's NestJS system works unchanged.
type wirePayload struct {
	PatientID    string `json:"patientId"`
	PrescriberID string `json:"prescriberId"`
	PharmacyID   string `json:"pharmacyId"`
	Medication   *struct {
		Name     string `json:"name"`
		Code     string `json:"code"`
		Strength string `json:"strength"`
		Quantity int    `json:"quantity"`
		Refills  int    `json:"refills"`
	} `json:"medication"`
	ApprovedBy  string `json:"approvedBy"`
	Reason      string `json:"reason"`
	ReasonCode  string `json:"reasonCode"`
	DispensedBy string `json:"dispensedBy"`
	Quantity    int    `json:"quantity"`
	LotNumber   string `json:"lotNumber"`
}

// DecodeCode classifies why a message could not be decoded.
type DecodeCode string

// Decode failure codes, carried to the dead-letter topic.
const (
	DecodeTooLarge     DecodeCode = "too_large"
	DecodeMalformed    DecodeCode = "malformed_json"
	DecodeWrongType    DecodeCode = "wrong_type"
	DecodeMissingURN   DecodeCode = "missing_urn"
	DecodeInvalidURN   DecodeCode = "invalid_urn"
	DecodeMissingEvent DecodeCode = "missing_event"
	DecodeUnknownEvent DecodeCode = "unknown_event"
	DecodeKeyMismatch  DecodeCode = "key_mismatch"
)

// DecodeError says why a message is not a command. Match it with errors.As.
type DecodeError struct {
	Code DecodeCode
	Err  error
}

func (e *DecodeError) Error() string { return fmt.Sprintf("%s: %v", e.Code, e.Err) }
func (e *DecodeError) Unwrap() error { return e.Err }

func decodeErr(code DecodeCode, format string, args ...any) *DecodeError {
	return &DecodeError{Code: code, Err: fmt.Errorf(format, args...)}
}

// Decode validates and decodes a raw message. maxBytes <= 0 means
// DefaultMaxCommandBytes.
func Decode(raw Raw, maxBytes int) (Envelope, error) {
	if maxBytes <= 0 {
		maxBytes = DefaultMaxCommandBytes
	}
	if len(raw.Value) > maxBytes {
		return Envelope{}, decodeErr(DecodeTooLarge, "message is %d bytes, limit %d", len(raw.Value), maxBytes)
	}
	var w wireCommand
	if err := strictJSON(raw.Value, &w); err != nil {
		return Envelope{}, err
	}
	switch {
	case w.URN == "":
		return Envelope{}, decodeErr(DecodeMissingURN, "urn is required")
	case len(w.URN) > MaxURNLength || !utf8.ValidString(w.URN) || strings.ContainsFunc(w.URN, isControlOrSpace):
		return Envelope{}, decodeErr(DecodeInvalidURN, "urn must be at most %d printable characters without spaces", MaxURNLength)
	case len(raw.Key) > 0 && string(raw.Key) != w.URN:
		return Envelope{}, decodeErr(DecodeKeyMismatch, "message key %q differs from urn %q", raw.Key, w.URN)
	case w.Event == "":
		return Envelope{}, decodeErr(DecodeMissingEvent, "event is required")
	case !slices.Contains(domain.CommandTypes, domain.CommandType(w.Event)):
		return Envelope{}, decodeErr(DecodeUnknownEvent, "unknown event %q (known: %v)", w.Event, domain.CommandTypes)
	}
	var p wirePayload
	if len(w.Payload) > 0 && !bytes.Equal(w.Payload, []byte("null")) {
		if err := strictJSON(w.Payload, &p); err != nil {
			return Envelope{}, err
		}
	}
	cmd := domain.Command{
		Type: domain.CommandType(w.Event), URN: w.URN, Actor: first(w.Actor, raw.Headers[HeaderActor]),
		PatientID: p.PatientID, PrescriberID: p.PrescriberID, PharmacyID: p.PharmacyID,
		ApprovedBy: p.ApprovedBy, Reason: p.Reason, ReasonCode: p.ReasonCode,
		Dispensing: domain.Dispensing{By: p.DispensedBy, Quantity: p.Quantity, LotNumber: p.LotNumber},
	}
	if m := p.Medication; m != nil {
		cmd.Medication = domain.Medication{Name: m.Name, Code: m.Code, Strength: m.Strength, Quantity: m.Quantity, Refills: m.Refills}
	}
	id := first(w.CommandID, raw.Headers[HeaderCommandID])
	if id == "" {
		id = fmt.Sprintf("kafka:%s/%d/%d", raw.Topic, raw.Partition, raw.Offset)
	}
	return Envelope{
		ID:            id,
		CorrelationID: first(w.CorrelationID, raw.Headers[HeaderCorrelationID], id),
		Diagnostic:    raw.Headers[HeaderDiagnostic],
		Hash:          fingerprint(cmd),
		Command:       cmd,
		Source:        raw.Value,
	}, nil
}

// strictJSON decodes one JSON object, telling bad syntax from wrong types.
func strictJSON(data []byte, v any) error {
	dec := json.NewDecoder(bytes.NewReader(data))
	if err := dec.Decode(v); err != nil {
		var typeErr *json.UnmarshalTypeError
		if errors.As(err, &typeErr) {
			return decodeErr(DecodeWrongType, "field %q: got JSON %s, want %s", typeErr.Field, typeErr.Value, typeErr.Type)
		}
		return decodeErr(DecodeMalformed, "%v", err)
	}
	if dec.More() {
		return decodeErr(DecodeMalformed, "trailing data after the JSON object")
	}
	return nil
}

// fingerprint hashes what a command asks for, not how it was framed.
func fingerprint(c domain.Command) string {
	b, _ := json.Marshal(c) // a struct of strings and ints always marshals
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:16])
}

func first(vals ...string) string {
	for _, v := range vals {
		if v != "" {
			return v
		}
	}
	return ""
}

func isControlOrSpace(r rune) bool { return r <= ' ' || r == 0x7f }

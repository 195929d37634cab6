// Package commands is the command side: the seed's Kafka message format,
// its decoding under the input rules, and the handler that loads a
// prescription, decides and appends. It knows nothing of Kafka or
// EventStoreDB: it declares the small ports it needs.
//
// Its retry layers, the handler's conflict retries and the keyless
// deferral, and what each passes on: docs/failure-policy.md.
package commands

import (
	"errors"
	"fmt"
	"regexp"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/go-json-experiment/json"
	"github.com/go-json-experiment/json/jsontext"

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

// MaxIDLength bounds a command id, a correlation id and an actor, in bytes.
const MaxIDLength = 256

// MaxDiagnosticBytes bounds the diagnostic header.
const MaxDiagnosticBytes = 4 << 10

// maxSafeInteger is the largest integer every JSON reader holds exactly.
const maxSafeInteger = 1<<53 - 1

// derivedIDPrefix starts the id of a command that came without one
// ("kafka:<topic>/<partition>/<offset>"); clients may not use it.
const derivedIDPrefix = "kafka:"

// reasonCodePattern is the grammar of a stable reason code: it is
// published as is in prescription.failed.
var reasonCodePattern = regexp.MustCompile(`^[a-z0-9_]{1,64}$`)

// Raw is a command message as it came off the bus.
type Raw struct {
	Topic     string
	Partition int32
	Offset    int64
	Key       []byte // empty for a keyless record
	Value     []byte
	Headers   map[string]string
	// Deferrals counts the delayed retries this command already had because
	// it came without a key and arrived before its predecessor.
	Deferrals int
	// HeaderProblem is set by the adapter when the record's headers break
	// the input rules where Headers cannot show it: "invalid_utf8: ..." or
	// "invalid_header: ..." (a repeated or reserved name).
	HeaderProblem string
}

// Envelope is a decoded command with its identity.
type Envelope struct {
	ID            string // the command id; derived from topic/partition/offset when absent
	CorrelationID string
	Diagnostic    string      // internal detail, stored in the events' metadata only
	Hash          Fingerprint // of the content, to tell a retry from a reused id
	Command       domain.Command
	Source        []byte // the message as received: one JSON object, valid UTF-8
	// Deferrals counts the delayed retries the command already had, and
	// Deferrable lets the handler defer it once more instead of recording a
	// premature refusal. The processor sets both for keyless commands.
	Deferrals  int
	Deferrable bool
}

// wireCommand is the seed's message: {"urn", "event", "payload"}, plus
// optional identity fields. Unknown members are ignored, so a client of
// the seed's NestJS system works unchanged, unless a name differs from a
// known one only by case.
type wireCommand struct {
	URN           string         `json:"urn"`
	Event         string         `json:"event"`
	Payload       jsontext.Value `json:"payload"`
	CommandID     string         `json:"commandId"`
	CorrelationID string         `json:"correlationId"`
	Actor         string         `json:"actor"`
	Unknown       jsontext.Value `json:",embed"`
}

// wirePayload is the union of every command's payload fields.
type wirePayload struct {
	PatientID    string          `json:"patientId"`
	PrescriberID string          `json:"prescriberId"`
	PharmacyID   string          `json:"pharmacyId"`
	Medication   *wireMedication `json:"medication"`
	ApprovedBy   string          `json:"approvedBy"`
	Reason       string          `json:"reason"`
	ReasonCode   string          `json:"reasonCode"`
	DispensedBy  string          `json:"dispensedBy"`
	Quantity     int             `json:"quantity"`
	LotNumber    string          `json:"lotNumber"`
	// prescription.deadline's (sent by the projector's deadline scheduler)
	Deadline string         `json:"deadline"`
	Since    int            `json:"since"`
	DueAt    time.Time      `json:"dueAt"`
	Unknown  jsontext.Value `json:",embed"`
}

type wireMedication struct {
	Name       string         `json:"name"`
	Code       string         `json:"code"`
	CodeSystem string         `json:"codeSystem"`
	Strength   string         `json:"strength"`
	Quantity   int            `json:"quantity"`
	Refills    int            `json:"refills"`
	Unknown    jsontext.Value `json:",embed"`
}

// DecodeCode classifies why a message could not be decoded.
type DecodeCode string

// Decode failure codes, carried to the dead-letter topic.
const (
	DecodeTooLarge      DecodeCode = "too_large"
	DecodeMalformed     DecodeCode = "malformed_json" // not exactly one JSON object; a duplicate or case-variant name
	DecodeInvalidUTF8   DecodeCode = "invalid_utf8"   // in the value, the key or a header
	DecodeInvalidText   DecodeCode = "invalid_text"   // an id with a space, control or format character; NUL in any string
	DecodeWrongType     DecodeCode = "wrong_type"
	DecodeMissingURN    DecodeCode = "missing_urn"
	DecodeInvalidURN    DecodeCode = "invalid_urn"
	DecodeMissingEvent  DecodeCode = "missing_event"
	DecodeUnknownEvent  DecodeCode = "unknown_event"
	DecodeKeyMismatch   DecodeCode = "key_mismatch"
	DecodeInvalidHeader DecodeCode = "invalid_header" // a repeated or reserved header name
)

// DecodeError says why a message is not a command. Match it with errors.As.
// Its text is valid UTF-8 whatever the input was.
type DecodeError struct {
	Code DecodeCode
	Err  error
}

func (e *DecodeError) Error() string {
	return strings.ToValidUTF8(fmt.Sprintf("%s: %v", e.Code, e.Err), "\uFFFD")
}
func (e *DecodeError) Unwrap() error { return e.Err }

func decodeErr(code DecodeCode, format string, args ...any) *DecodeError {
	return &DecodeError{Code: code, Err: fmt.Errorf(format, args...)}
}

// Decode validates and decodes a raw message under the input rules of
// ARCHITECTURE.md: exactly one JSON object, exact-case unique member names,
// valid UTF-8 everywhere, the URN grammar, clean ids. maxBytes <= 0 means
// DefaultMaxCommandBytes. Every failure is a *DecodeError.
func Decode(raw Raw, maxBytes int) (Envelope, error) {
	if maxBytes <= 0 {
		maxBytes = DefaultMaxCommandBytes
	}
	if len(raw.Value) > maxBytes {
		return Envelope{}, decodeErr(DecodeTooLarge, "message is %d bytes, limit %d", len(raw.Value), maxBytes)
	}
	if err := checkFraming(raw); err != nil {
		return Envelope{}, err
	}
	var w wireCommand
	if err := strictJSON(raw.Value, &w); err != nil {
		return Envelope{}, err
	}
	if err := checkUnknown(w.Unknown, "urn", "event", "payload", "commandId", "correlationId", "actor"); err != nil {
		return Envelope{}, err
	}
	switch {
	case w.URN == "":
		return Envelope{}, decodeErr(DecodeMissingURN, "urn is required")
	case domain.ValidateURN(w.URN) != nil:
		return Envelope{}, &DecodeError{Code: DecodeInvalidURN, Err: domain.ErrInvalidURN}
	case len(raw.Key) > 0 && string(raw.Key) != w.URN:
		return Envelope{}, decodeErr(DecodeKeyMismatch, "message key %q differs from urn %q", raw.Key, w.URN)
	case w.Event == "":
		return Envelope{}, decodeErr(DecodeMissingEvent, "event is required")
	case !domain.IsCommand(domain.CommandType(w.Event)):
		return Envelope{}, decodeErr(DecodeUnknownEvent, "unknown event %q (known: %v and %s)", w.Event, domain.CommandTypes, domain.RecordDeadline)
	}
	p, err := decodePayload(w.Payload)
	if err != nil {
		return Envelope{}, err
	}
	cmd := domain.Command{
		Type: domain.CommandType(w.Event), URN: w.URN, Actor: first(w.Actor, raw.Headers[HeaderActor]),
		PatientID: p.PatientID, PrescriberID: p.PrescriberID, PharmacyID: p.PharmacyID,
		ApprovedBy: p.ApprovedBy, Reason: p.Reason, ReasonCode: p.ReasonCode,
		Dispensing: domain.Dispensing{By: p.DispensedBy, Quantity: p.Quantity, LotNumber: p.LotNumber},
		Deadline:   p.Deadline, Since: p.Since, DueAt: p.DueAt.UTC(),
	}
	if m := p.Medication; m != nil {
		cmd.Medication = domain.Medication{Name: m.Name, Code: m.Code, CodeSystem: m.CodeSystem, Strength: m.Strength, Quantity: m.Quantity, Refills: m.Refills}
	}
	env := Envelope{
		ID:            first(w.CommandID, raw.Headers[HeaderCommandID]),
		CorrelationID: first(w.CorrelationID, raw.Headers[HeaderCorrelationID]),
		Diagnostic:    raw.Headers[HeaderDiagnostic],
		Command:       cmd,
		Source:        raw.Value,
	}
	ids := [...]struct {
		name, value string
		inner       bool // a name: single inner spaces allowed
	}{{"command id", env.ID, false}, {"correlation id", env.CorrelationID, false}, {"actor", cmd.Actor, true}}
	for _, id := range ids {
		if err := checkID(id.name, id.value, id.inner); err != nil {
			return Envelope{}, err
		}
	}
	if strings.HasPrefix(env.ID, derivedIDPrefix) {
		return Envelope{}, decodeErr(DecodeInvalidText, "command id %q: the prefix %q is reserved for ids derived from the record", env.ID, derivedIDPrefix)
	}
	if cmd.ReasonCode != "" && !reasonCodePattern.MatchString(cmd.ReasonCode) {
		return Envelope{}, decodeErr(DecodeInvalidText, "reasonCode %q must match %s", cmd.ReasonCode, reasonCodePattern)
	}
	if err := checkStrings(cmd, env.Diagnostic); err != nil {
		return Envelope{}, err
	}
	if env.ID == "" {
		env.ID = fmt.Sprintf("%s%s/%d/%d", derivedIDPrefix, raw.Topic, raw.Partition, raw.Offset)
	}
	env.CorrelationID = first(env.CorrelationID, env.ID)
	env.Hash = FingerprintOf(cmd)
	return env, nil
}

// checkFraming checks what surrounds the JSON: the key and the headers must
// be valid UTF-8, and so must the value.
func checkFraming(raw Raw) error {
	if code, msg, ok := strings.Cut(raw.HeaderProblem, ": "); ok {
		if code == string(DecodeInvalidUTF8) {
			return decodeErr(DecodeInvalidUTF8, "%s", msg)
		}
		return decodeErr(DecodeInvalidHeader, "%s", msg)
	}
	if !utf8.Valid(raw.Key) {
		return decodeErr(DecodeInvalidUTF8, "the message key is not valid UTF-8")
	}
	for k, v := range raw.Headers {
		if !utf8.ValidString(k) || !utf8.ValidString(v) {
			return decodeErr(DecodeInvalidUTF8, "header %q is not valid UTF-8", k)
		}
	}
	if len(raw.Headers[HeaderDiagnostic]) > MaxDiagnosticBytes {
		return decodeErr(DecodeTooLarge, "header %q is longer than %d bytes", HeaderDiagnostic, MaxDiagnosticBytes)
	}
	if !utf8.Valid(raw.Value) {
		return decodeErr(DecodeInvalidUTF8, "the message is not valid UTF-8 (RFC 8259 §8.1)")
	}
	return nil
}

func decodePayload(data jsontext.Value) (wirePayload, error) {
	var p wirePayload
	if len(data) == 0 || data.Kind() == 'n' {
		return p, nil
	}
	if data.Kind() != '{' {
		return p, decodeErr(DecodeWrongType, "payload: got JSON %s, want an object", data.Kind())
	}
	if err := strictJSON(data, &p); err != nil {
		return p, err
	}
	if err := checkUnknown(p.Unknown, "patientId", "prescriberId", "pharmacyId", "medication", "approvedBy", "reason",
		"reasonCode", "dispensedBy", "quantity", "lotNumber", "deadline", "since", "dueAt"); err != nil {
		return p, err
	}
	ints := []int{p.Quantity, p.Since}
	if p.Medication != nil {
		if err := checkUnknown(p.Medication.Unknown, "name", "code", "codeSystem", "strength", "quantity", "refills"); err != nil {
			return p, err
		}
		ints = append(ints, p.Medication.Quantity, p.Medication.Refills)
	}
	for _, n := range ints {
		if n > maxSafeInteger || n < -maxSafeInteger {
			return p, decodeErr(DecodeWrongType, "the integer %d is outside ±(2^53-1), which JavaScript clients cannot read exactly (RFC 7493 §2.2)", n)
		}
	}
	return p, nil
}

// strictJSON decodes exactly one JSON object into v, with JSON v2's rules:
// member names match exactly and may not repeat, nothing may follow the
// object, and strings must be valid Unicode.
func strictJSON(data []byte, v any) error {
	if k := jsontext.Value(data); !startsObject(k) {
		return decodeErr(DecodeMalformed, "the message must be exactly one JSON object")
	}
	err := json.Unmarshal(data, v)
	if err == nil {
		return nil
	}
	if semErr, ok := errors.AsType[*json.SemanticError](err); ok && semErr.GoType != nil && !errors.Is(err, jsontext.ErrDuplicateName) {
		return decodeErr(DecodeWrongType, "field %q: got JSON %s, want %s", semErr.JSONPointer, semErr.JSONKind, semErr.GoType)
	}
	// Valid but for an escaped lone surrogate, which decodes to no text.
	if json.Unmarshal(data, new(jsontext.Value), jsontext.AllowInvalidUTF8(true)) == nil {
		return decodeErr(DecodeInvalidUTF8, "a string escapes an invalid Unicode code point: %v", err)
	}
	return decodeErr(DecodeMalformed, "%v", err)
}

// startsObject reports whether data, whitespace aside, starts with "{".
func startsObject(data jsontext.Value) bool {
	trimmed := strings.TrimLeft(string(data), " \t\r\n")
	return strings.HasPrefix(trimmed, "{")
}

// checkUnknown refuses an unknown member whose name differs from a known
// one only by case: case-sensitive readers would see another command.
func checkUnknown(unknown jsontext.Value, known ...string) error {
	if len(unknown) == 0 {
		return nil
	}
	var members map[string]jsontext.Value
	if err := json.Unmarshal(unknown, &members); err != nil {
		return decodeErr(DecodeMalformed, "%v", err)
	}
	for name := range members {
		for _, k := range known {
			if strings.EqualFold(name, k) {
				return decodeErr(DecodeMalformed, "member %q differs from %q only by case", name, k)
			}
		}
	}
	return nil
}

// checkID allows an id to be empty, or up to MaxIDLength bytes of
// characters that are neither space, control nor format characters. A name
// (inner) may hold single U+0020 spaces between words.
func checkID(name, id string, inner bool) error {
	if len(id) > MaxIDLength {
		return decodeErr(DecodeInvalidText, "%s is longer than %d bytes", name, MaxIDLength)
	}
	if inner && (strings.TrimSpace(id) != id || strings.Contains(id, "  ")) {
		return decodeErr(DecodeInvalidText, "%s %q has leading, trailing or repeated spaces", name, id)
	}
	if i := strings.IndexFunc(id, func(r rune) bool {
		return (unicode.IsSpace(r) && !(inner && r == ' ')) || unicode.IsControl(r) || unicode.Is(unicode.Cf, r) || r == utf8.RuneError
	}); i >= 0 {
		return decodeErr(DecodeInvalidText, "%s %q has a space, control or format character at byte %d", name, id, i)
	}
	return nil
}

// checkStrings refuses NUL in any text, which no store keeps faithfully.
func checkStrings(c domain.Command, diagnostic string) error {
	for _, s := range []string{c.PatientID, c.PrescriberID, c.PharmacyID, c.ApprovedBy, c.Reason, c.ReasonCode, c.Deadline,
		c.Medication.Name, c.Medication.Code, c.Medication.CodeSystem, c.Medication.Strength, c.Dispensing.By, c.Dispensing.LotNumber, diagnostic} {
		if strings.ContainsRune(s, 0) {
			return decodeErr(DecodeInvalidText, "a string holds the NUL character")
		}
	}
	return nil
}

func first(vals ...string) string {
	for _, v := range vals {
		if v != "" {
			return v
		}
	}
	return ""
}

package commands

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"
	"unicode/utf8"

	"rxflow/domain"
)

// ErrUnavailable marks a failure of a dependency (the store or the broker)
// that is down or too slow: the message waits and is retried, and it is
// never dead-lettered for it. Adapters wrap such failures with it.
var ErrUnavailable = errors.New("dependency unavailable")

// RefusalMessage is what the rejections topic carries for a refused
// command: the command, a reason code, a readable reason and the status.
type RefusalMessage struct {
	URN           string          `json:"urn"`
	Event         string          `json:"event"`
	CommandID     string          `json:"commandId"`
	CorrelationID string          `json:"correlationId,omitempty"`
	Code          string          `json:"code"`
	Reason        string          `json:"reason"`
	Guard         string          `json:"guard,omitempty"`
	Status        string          `json:"status"`            // the prescription's status; "" if it does not exist
	Command       json.RawMessage `json:"command"`           // the command as received, always one JSON value
	Retries       int             `json:"retries,omitempty"` // delayed retries before this final refusal
	RejectedAt    time.Time       `json:"rejectedAt"`
}

// Outbox is the processor's port to the outcome topics. Every call returns
// only once the message is durably published; a broker failure is wrapped
// with ErrUnavailable.
type Outbox interface {
	Refuse(ctx context.Context, m RefusalMessage) error
	// DeadLetter publishes an undecodable or unprocessable message with its
	// raw bytes, its headers, a code and why it was refused.
	DeadLetter(ctx context.Context, raw Raw, code string, cause error) error
	// Defer publishes raw again, to be handled not before notBefore, as
	// command urn's retry number raw.Deferrals+1.
	Defer(ctx context.Context, raw Raw, urn string, notBefore time.Time) error
}

// Dead-letter codes for messages that decoded but were not processed.
const (
	DeadLetterUnprocessable    = "unprocessable"     // the handler found it can never be processed
	DeadLetterProcessingFailed = "processing_failed" // it kept failing while the store and broker were healthy
)

// DefaultDeferDelays are the waits before each delayed retry of a keyless
// command refused as premature: about 31 s in all.
var DefaultDeferDelays = []time.Duration{time.Second, 2 * time.Second, 4 * time.Second, 8 * time.Second, 16 * time.Second}

// ProcessorConfig tunes a Processor. Zero values take the defaults.
type ProcessorConfig struct {
	MaxBytes    int             // largest command message; default DefaultMaxCommandBytes
	DeferDelays []time.Duration // waits before each delayed retry of a keyless command; default DefaultDeferDelays
	Clock       func() time.Time
}

// Result is what became of one message.
type Result struct {
	Envelope   Envelope
	Outcome    Outcome
	DeadLetter string // the dead-letter code, if the message went there
}

// Processor turns command messages into outcomes: an append, a duplicate,
// a published refusal, a delayed retry or a published dead letter. A
// message is done only when Process returns nil; otherwise it must be
// retried.
type Processor struct {
	handler *Handler
	outbox  Outbox
	cfg     ProcessorConfig
}

// NewProcessor returns a Processor.
func NewProcessor(h *Handler, outbox Outbox, cfg ProcessorConfig) *Processor {
	if cfg.DeferDelays == nil {
		cfg.DeferDelays = DefaultDeferDelays
	}
	if cfg.Clock == nil {
		cfg.Clock = time.Now
	}
	return &Processor{handler: h, outbox: outbox, cfg: cfg}
}

// Process handles one message. An error means nothing durable happened for
// it yet, and it must be redelivered.
//
// A command without a Kafka key may arrive before its predecessor (keyless
// records land on any partition). If it is refused only for that reason
// (domain.Workflow.Premature), it is deferred: published again to be
// retried after the next of cfg.DeferDelays, and recorded as refused only
// once they are spent. A command with a key is never deferred.
func (p *Processor) Process(ctx context.Context, raw Raw) (Result, error) {
	_, span := tracer.Start(ctx, "decode")
	env, err := Decode(raw, p.cfg.MaxBytes)
	endSpan(span, err)
	if decErr, ok := errors.AsType[*DecodeError](err); ok {
		return p.deadLetter(ctx, Result{}, raw, string(decErr.Code), decErr)
	}
	env.Deferrals = raw.Deferrals
	env.Deferrable = len(raw.Key) == 0 && raw.Deferrals < len(p.cfg.DeferDelays)
	res := Result{Envelope: env}
	res.Outcome, err = p.handler.Handle(ctx, env)
	switch {
	case errors.Is(err, ErrPermanent):
		return p.deadLetter(ctx, res, raw, DeadLetterUnprocessable, err)
	case err != nil:
		return Result{}, err
	case res.Outcome.Kind == Deferred:
		notBefore := p.cfg.Clock().Add(p.cfg.DeferDelays[raw.Deferrals])
		if err := p.outbox.Defer(ctx, raw, env.Command.URN, notBefore); err != nil {
			return Result{}, fmt.Errorf("defer: %w", err)
		}
	case res.Outcome.Kind == Refused:
		if err := p.outbox.Refuse(ctx, refusalMessage(env, res.Outcome.Refusal, res.Outcome.At)); err != nil {
			return Result{}, fmt.Errorf("publish refusal: %w", err)
		}
	}
	return res, nil
}

func (p *Processor) deadLetter(ctx context.Context, res Result, raw Raw, code string, cause error) (Result, error) {
	if err := p.outbox.DeadLetter(ctx, raw, code, cause); err != nil {
		return Result{}, fmt.Errorf("dead-letter: %w", err)
	}
	res.DeadLetter = code
	return res, nil
}

func refusalMessage(env Envelope, r *domain.Refusal, at time.Time) RefusalMessage {
	return RefusalMessage{
		URN: env.Command.URN, Event: string(env.Command.Type), CommandID: env.ID, CorrelationID: env.CorrelationID,
		Code: string(r.Code), Reason: r.Reason, Guard: r.Guard, Status: string(r.Status),
		Command: jsonValue(env.Source), Retries: env.Deferrals, RejectedAt: at.UTC(),
	}
}

// jsonValue embeds b as is when it is one valid UTF-8 JSON value, and as a
// JSON string otherwise, so that the message always marshals.
func jsonValue(b []byte) json.RawMessage {
	if utf8.Valid(b) && json.Valid(b) {
		return b
	}
	s, _ := json.Marshal(strings.ToValidUTF8(string(b), "\uFFFD")) // a string always marshals
	return s
}

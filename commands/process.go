package commands

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"rxflow/domain"
)

// RejectionMessage is what the rejections topic carries for a refused
// command: the command, a reason code, a readable reason and the status.
type RejectionMessage struct {
	URN           string          `json:"urn"`
	Event         string          `json:"event"`
	CommandID     string          `json:"commandId"`
	CorrelationID string          `json:"correlationId,omitempty"`
	Code          string          `json:"code"`
	Reason        string          `json:"reason"`
	Guard         string          `json:"guard,omitempty"`
	Status        string          `json:"status"` // the prescription's status; "" if it does not exist
	Command       json.RawMessage `json:"command"`
	RejectedAt    time.Time       `json:"rejectedAt"`
}

// Outbox is the processor's port to the outcome topics. Both calls return
// only once the message is durably published.
type Outbox interface {
	Reject(ctx context.Context, m RejectionMessage) error
	// DeadLetter publishes an undecodable or unprocessable message with its
	// raw bytes, its headers and why it was refused.
	DeadLetter(ctx context.Context, raw Raw, code string, cause error) error
}

// Dead-letter code for a command that decoded but can never be processed.
const DeadLetterUnprocessable = "unprocessable"

// Result is what became of one message.
type Result struct {
	Envelope   Envelope
	Outcome    Outcome
	DeadLetter string // the dead-letter code, if the message went there
}

// Processor turns command messages into outcomes: an append, a duplicate,
// a published rejection or a published dead letter. A message is done only
// when Process returns nil; otherwise it must be retried.
type Processor struct {
	handler  *Handler
	outbox   Outbox
	maxBytes int
}

// NewProcessor returns a Processor. maxBytes bounds a command message
// (DefaultMaxCommandBytes when <= 0).
func NewProcessor(h *Handler, outbox Outbox, maxBytes int) *Processor {
	return &Processor{handler: h, outbox: outbox, maxBytes: maxBytes}
}

// Process handles one message. An error means nothing durable happened for
// it yet, and it must be redelivered.
func (p *Processor) Process(ctx context.Context, raw Raw) (Result, error) {
	env, err := Decode(raw, p.maxBytes)
	if decErr, ok := errors.AsType[*DecodeError](err); ok {
		if err := p.outbox.DeadLetter(ctx, raw, string(decErr.Code), decErr); err != nil {
			return Result{}, fmt.Errorf("dead-letter: %w", err)
		}
		return Result{DeadLetter: string(decErr.Code)}, nil
	}
	res := Result{Envelope: env}
	res.Outcome, err = p.handler.Handle(ctx, env)
	switch {
	case errors.Is(err, ErrPermanent):
		if err := p.outbox.DeadLetter(ctx, raw, DeadLetterUnprocessable, err); err != nil {
			return Result{}, fmt.Errorf("dead-letter: %w", err)
		}
		res.DeadLetter = DeadLetterUnprocessable
		return res, nil
	case err != nil:
		return Result{}, err
	case res.Outcome.Kind == Rejected:
		if err := p.outbox.Reject(ctx, rejection(env, res.Outcome.Rejection, res.Outcome.At)); err != nil {
			return Result{}, fmt.Errorf("publish rejection: %w", err)
		}
	}
	return res, nil
}

func rejection(env Envelope, r *domain.Rejection, at time.Time) RejectionMessage {
	return RejectionMessage{
		URN: env.Command.URN, Event: string(env.Command.Type), CommandID: env.ID, CorrelationID: env.CorrelationID,
		Code: string(r.Code), Reason: r.Reason, Guard: r.Guard, Status: string(r.Status),
		Command: json.RawMessage(env.Source), RejectedAt: at.UTC(),
	}
}

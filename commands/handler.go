package commands

import (
	"context"
	"errors"
	"fmt"
	"time"

	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/trace"

	"rxflow/domain"
	"rxflow/events"
)

// tracer makes the command path's spans: decode, load, decide and append.
// They are no-ops until a tracer provider is installed (infra/telemetry).
var tracer = otel.Tracer("rxflow/commands")

// endSpan ends span, recording err if there is one.
func endSpan(span trace.Span, err error) {
	if err != nil {
		span.RecordError(err)
		span.SetStatus(codes.Error, err.Error())
	}
	span.End()
}

// ErrConcurrency is returned by EventStore.Append when the stream moved
// past the expected revision.
var ErrConcurrency = errors.New("stream changed since it was read")

// ErrPermanent marks a failure that retrying cannot fix, such as a stream
// holding an event this code cannot read.
var ErrPermanent = errors.New("permanent failure")

// ErrNewerEvent marks a stream holding an event at a schema version newer
// than this code reads (events.ErrNewerVersion): a newer replica wrote it
// during a rolling deploy. It wraps ErrUnavailable, so the command waits,
// retried like an outage, until code that reads the event handles it; it
// is never dead-lettered.
var ErrNewerEvent = fmt.Errorf("%w: the stream holds an event newer than this code", ErrUnavailable)

// NoStream is the expected revision of a stream that must not exist yet.
const NoStream int64 = -1

// EventStore is the handler's port to the prescription streams.
type EventStore interface {
	// Load returns every event of urn's stream, oldest first; none if the
	// stream does not exist.
	Load(ctx context.Context, urn string) ([]events.Recorded, error)
	// Append writes evs to urn's stream if its last revision is expected
	// (NoStream for a new stream). It returns ErrConcurrency otherwise, and
	// the $all position of the last event written.
	Append(ctx context.Context, urn string, expected int64, evs []events.Pending) (position uint64, err error)
}

// ReasonCommandIDReused refuses a command whose id was already used for
// different content.
const ReasonCommandIDReused domain.ReasonCode = "command_id_reused"

// OutcomeKind says what became of a command.
type OutcomeKind string

// Outcome kinds.
const (
	Appended  OutcomeKind = "appended"
	Duplicate OutcomeKind = "duplicate" // already applied: nothing written
	Refused   OutcomeKind = "refused"   // refused; recorded in the stream unless its id was reused
	// Deferred: refused only because it may have arrived before its
	// predecessor (domain.Workflow.Premature) while env.Deferrable; nothing
	// was written, and the command is to be retried later.
	Deferred OutcomeKind = "deferred"
)

// Outcome is the result of handling one command.
type Outcome struct {
	Kind     OutcomeKind
	Status   domain.Status // the prescription's status afterwards
	Refusal  *domain.Refusal
	At       time.Time // when the outcome was decided; for a duplicate, zero
	Position uint64    // $all position of the last appended event
	Revision int64     // stream revision afterwards; -1 if the stream does not exist
	Attempts int       // appends tried, counting concurrency retries
}

// HandlerConfig tunes the Handler.
type HandlerConfig struct {
	MaxAttempts int // appends tried on concurrency conflicts; default 5
	CacheSize   int // prescriptions kept in memory; 0 disables the cache
	Clock       func() time.Time
}

// Handler loads a prescription, decides and appends: the command path. It
// never calls a partner; side effects happen in projectors.
type Handler struct {
	store       EventStore
	clock       func() time.Time
	maxAttempts int
	cache       *stateCache
}

// NewHandler returns a Handler over store.
func NewHandler(store EventStore, cfg HandlerConfig) *Handler {
	if cfg.MaxAttempts <= 0 {
		cfg.MaxAttempts = 5
	}
	if cfg.Clock == nil {
		cfg.Clock = time.Now
	}
	return &Handler{store: store, clock: cfg.Clock, maxAttempts: cfg.MaxAttempts, cache: newStateCache(cfg.CacheSize)}
}

// Handle applies env exactly once. A returned error is transient (store
// down, too many conflicts) or wraps ErrPermanent; refusals are outcomes.
// A refusal is appended too, as domain.Refused: the audit trail keeps it and
// a redelivery of the command gets the same answer.
func (h *Handler) Handle(ctx context.Context, env Envelope) (Outcome, error) {
	urn := env.Command.URN
	for attempt := 1; ; attempt++ {
		// A cached state may be stale but never holds a command the stream
		// lacks: duplicates found in it are real, and every append is
		// guarded by the expected revision.
		st, cached := h.cache.get(urn)
		if !cached {
			var err error
			if st, err = h.load(ctx, urn); err != nil {
				return Outcome{}, err
			}
		}
		_, span := tracer.Start(ctx, "decide")
		out, pending, next, err := h.decide(st, env)
		if span.IsRecording() {
			span.SetAttributes(attribute.String("rxflow.outcome", string(out.Kind)), attribute.Bool("rxflow.cached", cached))
		}
		endSpan(span, err)
		if err != nil {
			return Outcome{}, err
		}
		out.Attempts = attempt
		if len(pending) == 0 {
			return out, nil
		}
		actx, span := tracer.Start(ctx, "append")
		if span.IsRecording() {
			span.SetAttributes(attribute.Int("rxflow.events", len(pending)), attribute.Int("rxflow.attempt", attempt))
		}
		pos, err := h.store.Append(actx, urn, st.last, pending)
		endSpan(span, err)
		switch {
		case errors.Is(err, ErrConcurrency) && attempt < h.maxAttempts:
			h.cache.drop(urn)
			continue
		case err != nil:
			h.cache.drop(urn)
			return Outcome{}, fmt.Errorf("append %s after %d attempts: %w", env.ID, attempt, err)
		}
		h.cache.put(urn, next)
		out.Position = pos
		return out, nil
	}
}

func (h *Handler) load(ctx context.Context, urn string) (_ state, err error) {
	ctx, span := tracer.Start(ctx, "load")
	defer func() { endSpan(span, err) }()
	recs, err := h.store.Load(ctx, urn)
	if span.IsRecording() {
		span.SetAttributes(attribute.Int("rxflow.events", len(recs)))
	}
	if err != nil {
		return state{}, fmt.Errorf("load %s: %w", urn, err)
	}
	return stateOf(recs), nil
}

// decide turns a command into an outcome, the events to append (none for a
// duplicate) and the state they lead to.
func (h *Handler) decide(st state, env Envelope) (Outcome, []events.Pending, state, error) {
	out := Outcome{Status: st.p.Status, Revision: st.last}
	if seen, ok := st.commands[env.ID]; ok {
		switch {
		case !seen.hash.Matches(env.Command):
			out.Kind, out.At = Refused, h.clock().UTC()
			out.Refusal = &domain.Refusal{Code: ReasonCommandIDReused, Status: st.p.Status, Command: env.Command.Type,
				Reason: fmt.Sprintf("command id %q was already used for a different command", env.ID)}
		case seen.refusal != nil:
			out.Kind, out.Refusal, out.At = Refused, seen.refusal.Refusal(), seen.refusal.At
		default:
			out.Kind = Duplicate
		}
		return out, nil, st, nil
	}
	now := h.clock().UTC()
	evs, err := domain.Decide(st.p, env.Command, now)
	out.Kind, out.At = Appended, now
	if rej, ok := errors.AsType[*domain.Refusal](err); ok {
		if env.Deferrable && domain.Prescriptions.Premature(rej) {
			out.Kind, out.Refusal = Deferred, rej
			return out, nil, st, nil
		}
		if env.Deferrals > 0 {
			rej.Reason += fmt.Sprintf(" (after %d delayed retries: the command came without a Kafka key and may have arrived before its predecessor)", env.Deferrals)
		}
		out.Kind, out.Refusal = Refused, rej
		evs = []domain.Event{domain.RefusalOf(rej, now)}
	} else if err != nil {
		return Outcome{}, nil, st, err
	}
	pending := make([]events.Pending, len(evs))
	for i, e := range evs {
		meta := events.Metadata{
			EventID: events.EventID(env.Command.URN, env.ID, i).String(), CommandID: env.ID, CommandHash: string(env.Hash),
			CorrelationID: env.CorrelationID, CausationID: env.ID, Actor: env.Command.Actor, Diagnostic: env.Diagnostic, OccurredAt: now,
		}
		if pending[i], err = events.New(e, meta); err != nil {
			return Outcome{}, nil, st, err
		}
	}
	next := st.with(env, evs)
	out.Status, out.Revision = next.p.Status, next.last
	return out, pending, next, nil
}

// Package projections is the read and reaction side. Projectors follow the
// prescription events in $all, each from its own durable checkpoint:
// reactors call the partners and publish outbound Kafka events, the read
// model keeps one row per prescription for queries, and the audit history
// is read back from the streams themselves. It declares the ports it needs;
// infra/ implements them.
package projections

import (
	"context"
	"errors"
	"fmt"
	"time"

	"rxflow/domain"
	"rxflow/events"
)

// Message is what a Feed subscription delivers.
type Message struct {
	// Event is set for a prescription event, a refusal (domain.Refused)
	// included. DecodeErr is set instead of Event.Event when the event
	// could not be decoded.
	Event     *events.Recorded
	DecodeErr error
	// Checkpoint is set (non-zero) when the server has searched up to this
	// $all position without finding more matching events.
	Checkpoint uint64
	// Skipped is set instead of Event for an event of another segment (see
	// SegmentFeed): it moves the cursor like an event handled, with no
	// checkpoint write of its own.
	Skipped    uint64
	CaughtUp   bool // the subscription has delivered everything stored so far
	FellBehind bool // the subscription lags and is reading from storage again
}

// Feed follows the prescription events in $all.
type Feed interface {
	// Subscribe delivers the prescription events after position (0: from
	// the start), then live ones, until ctx ends or the subscription drops.
	Subscribe(ctx context.Context, after uint64) (Subscription, error)
}

// Subscription is one live subscription of a Feed.
type Subscription interface {
	// Recv blocks for the next message; an error means the subscription
	// dropped and must be re-established.
	Recv() (Message, error)
	Close() error
}

// History reads prescription streams, the source of truth.
type History interface {
	// Load returns every event of urn's stream, oldest first; none if the
	// stream does not exist.
	Load(ctx context.Context, urn string) ([]events.Recorded, error)
}

// ErrNotFound is returned by queries for a prescription that does not exist.
var ErrNotFound = errors.New("not found")

// Row is one prescription in the read model.
type Row struct {
	domain.Prescription
	LastRevision uint64    // revision of the last event applied
	LastPosition uint64    // $all position of the last event applied
	UpdatedAt    time.Time // when the last event occurred
}

// Filter selects rows for List. Empty fields match everything.
type Filter struct {
	Status     domain.Status
	PatientID  string
	PharmacyID string
	Limit      int    // 1..500; the store applies a default of 50 when 0
	Cursor     string // opaque: the NextCursor of the previous page
}

// Page is one page of List.
type Page struct {
	Rows       []Row
	NextCursor string // "" on the last page
}

// ReadModel is the store the read-model projection writes: one Row per
// prescription. Apply and its checkpoint are one transaction, so each event
// is applied exactly once. Its queries are declared by the query API, which
// reads them (httpapi.ReadModel).
type ReadModel interface {
	// Apply folds rec into its prescription's row and moves the checkpoint
	// to rec.Position, atomically. An event at or before the checkpoint is
	// ignored.
	Apply(ctx context.Context, rec events.Recorded) error
	// SaveCheckpoint moves the checkpoint to a position with no matching
	// event (a filtered-subscription checkpoint), if it is further.
	SaveCheckpoint(ctx context.Context, position uint64) error
	// Checkpoint is the $all position of the last event applied; 0 if none.
	Checkpoint(ctx context.Context) (uint64, error)
}

// ReadModelBatch is a ReadModel that applies several events in one
// transaction, for the runner's batches (BatchHandler).
type ReadModelBatch interface {
	// ApplyBatch folds recs, in $all order, into their rows and moves the
	// checkpoint to the last one, in one transaction: all or nothing.
	// Events at or before the checkpoint are ignored; a refusal
	// (domain.Refused) changes no row and only moves the checkpoint.
	ApplyBatch(ctx context.Context, recs []events.Recorded) error
}

// ParkedEffects lists the partner calls that failed after all their
// attempts, or whose follow-up command was refused (status EffectParked),
// oldest first: visible through the API.
type ParkedEffects interface {
	Parked(ctx context.Context) ([]Effect, error)
}

// Errors of Partners. ErrPartnerFailed marks a partner call that was
// refused, or kept failing after its retries; the two that wrap it say
// which. Other errors (such as a cancelled context) are transient: the event
// is handled again later.
var (
	ErrPartnerFailed = errors.New("partner call failed")
	// ErrPartnerRefused: the partner answered and refused the call (a 4xx
	// other than 408 and 429); the same call cannot succeed.
	ErrPartnerRefused = fmt.Errorf("%w: refused by the partner", ErrPartnerFailed)
	// ErrPartnerUnavailable: the partner could not be reached, or kept
	// failing until the retries ran out; the same call may succeed later.
	ErrPartnerUnavailable = fmt.Errorf("%w: partner unavailable", ErrPartnerFailed)
)

// Alert is a message for the support team: the body of a Support call.
type Alert struct {
	URN      string    `json:"urn"`
	Summary  string    `json:"summary"`
	Detail   string    `json:"detail"`
	Severity string    `json:"severity"` // "critical" or "warning"
	At       time.Time `json:"at"`
}

// Partners calls the external partners.
type Partners interface {
	// Call posts body, as JSON, to p with the idempotency key key: the same
	// key is the same call. It returns how many requests it sent (the
	// adapter retries transient failures), 0 if none. A failure is
	// ErrPartnerRefused or ErrPartnerUnavailable; any other error (a
	// cancelled ctx) is transient.
	Call(ctx context.Context, p Partner, key string, body any) (attempts int, err error)
}

// Outbound is a message for a Kafka topic.
type Outbound struct {
	Topic   string
	Key     string // the urn
	ID      string // unique per message, and its dedupe key: derived from the event id
	Type    string // CloudEvents type, e.g. TypeDispensed
	Time    time.Time
	Payload []byte            // JSON
	Headers map[string]string // extra headers
}

// Publisher sends outbound messages; it returns once they are durable.
type Publisher interface {
	Publish(ctx context.Context, msgs ...Outbound) error
}

// EffectStatus is the outcome of a reactor's side effect.
type EffectStatus string

// Effect outcomes.
const (
	EffectDone       EffectStatus = "done"        // the partner accepted the call
	EffectParked     EffectStatus = "parked"      // it kept failing, or its follow-up command was refused: kept for support
	EffectFailedOver EffectStatus = "failed_over" // it kept failing: the prescription is being failed
)

// Effect is one side effect's durable outcome.
type Effect struct {
	ID        string       `json:"id"` // "<projector>/<event id>"
	Projector string       `json:"projector"`
	URN       string       `json:"urn"`
	EventID   string       `json:"eventId"`
	EventName string       `json:"eventName"`
	Status    EffectStatus `json:"status"`
	Error     string       `json:"error,omitempty"`    // the partner's failure, internal detail included
	Attempts  int          `json:"attempts,omitempty"` // requests sent to the partner for it, operators' retries included
	Refusal   *Refusal     `json:"refusal,omitempty"`
	At        time.Time    `json:"at"`
}

// Refusal is the processor's refusal of a reactor's follow-up command (see
// FollowUpCommandID), as recorded in the prescription's stream. An effect
// whose follow-up was refused is parked.
type Refusal struct {
	CommandID string    `json:"commandId"`
	EventID   string    `json:"eventId"` // of the PrescriptionCommandRefused event
	Code      string    `json:"code"`    // a refusal code, e.g. "invalid_transition"
	Reason    string    `json:"reason"`
	Status    string    `json:"status"` // the prescription's status when it was refused
	At        time.Time `json:"at"`
}

// Ledger is the reactors' durable memory: a checkpoint per projector and the
// outcome of every side effect, so that none is repeated after a restart, a
// crash or a replay.
type Ledger interface {
	ParkedEffects
	Checkpoint(ctx context.Context, projector string) (uint64, error)
	SaveCheckpoint(ctx context.Context, projector string, position uint64) error
	// Effect returns the recorded outcome of effect id, if any.
	Effect(ctx context.Context, id string) (Effect, bool, error)
	// Record stores e and moves projector's checkpoint to position, if
	// further, atomically. e is listed by Parked while its Status is
	// EffectParked, and no longer once recorded with another.
	Record(ctx context.Context, e Effect, position uint64) error
}

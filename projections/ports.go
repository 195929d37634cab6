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
	"time"

	"rxflow/domain"
	"rxflow/events"
)

// Message is what a Feed subscription delivers.
type Message struct {
	// Event is set for a prescription event. DecodeErr is set instead of
	// Event.Event when the event could not be decoded.
	Event     *events.Recorded
	DecodeErr error
	// Checkpoint is set (non-zero) when the server has searched up to this
	// $all position without finding more matching events.
	Checkpoint uint64
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

// ReadModel is the query side's store. Apply and its checkpoint are one
// transaction, so each event is applied exactly once.
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
	Get(ctx context.Context, urn string) (Row, error) // ErrNotFound if absent
	List(ctx context.Context, f Filter) (Page, error)
	// Stats counts prescriptions by status; every status is present.
	Stats(ctx context.Context) (map[domain.Status]int, error)
}

// ParkedEffect is a partner call that failed after all its attempts. It is
// kept, visible through the API, and support is alerted.
type ParkedEffect struct {
	ID        string    `json:"id"`        // "<projector>/<event id>"
	Projector string    `json:"projector"` // e.g. "insurance"
	URN       string    `json:"urn"`
	EventID   string    `json:"eventId"`
	EventName string    `json:"eventName"`
	Attempts  int       `json:"attempts"`
	LastError string    `json:"lastError"`
	ParkedAt  time.Time `json:"parkedAt"`
}

// ParkedEffects lists parked partner calls, oldest first.
type ParkedEffects interface {
	Parked(ctx context.Context) ([]ParkedEffect, error)
}

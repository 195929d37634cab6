// Package opstest is the conformance suite of the projector's operations
// store (dead letters, refusals, redrive claims, operator actions) and of
// the query API's access log, run against every implementation: SQLite
// (infra/readmodel) and PostgreSQL (infra/postgres). Each case gets an
// empty storage and may open several instances on it, as several projector
// processes share one database.
package opstest

import (
	"context"
	"time"

	"rxflow/infra/readmodel"
)

// t0 has nanoseconds: a store must give times back exactly.
var t0 = time.Date(2026, 11, 29, 10, 0, 0, 123456789, time.UTC)

// Operations is the operations store under test.
type Operations interface {
	AddDeadLetter(ctx context.Context, d readmodel.DeadLetterRow) error
	AddRefusal(ctx context.Context, r readmodel.RefusalRow) error
	DeadLetters(ctx context.Context, limit int) ([]readmodel.DeadLetterRow, error)
	DeadLetter(ctx context.Context, id string) (readmodel.DeadLetterRow, error)
	ClaimRedrive(ctx context.Context, id string, r readmodel.Redrive) (readmodel.Redrive, error)
	ReleaseRedrive(ctx context.Context, id, commandID string) error
	CountSince(ctx context.Context, since time.Time) (deadLetters, refusals int, err error)
	RecordAction(ctx context.Context, a readmodel.OperatorAction) (readmodel.OperatorAction, error)
	Actions(ctx context.Context, urn string, limit int) ([]readmodel.OperatorAction, error)
}

var _ Operations = (*readmodel.Operations)(nil)

// AccessLog is the access log under test.
type AccessLog interface {
	Record(ctx context.Context, a readmodel.Access) (int64, error)
	Query(ctx context.Context, f readmodel.AccessFilter) (readmodel.AccessPage, error)
	// Close stops recording, once the records taken are committed; Record
	// answers readmodel.ErrAccessLogClosed afterwards.
	Close() error
}

var _ AccessLog = (*readmodel.AccessLog)(nil)

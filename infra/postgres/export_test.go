package postgres

import (
	"context"

	"github.com/jackc/pgx/v5"

	"rxflow/projections"
)

// fence runs l's fence alone in tx, as the writes' pipelines run it first.
func fence(ctx context.Context, tx pgx.Tx, l projections.Lease) error {
	b := &pgx.Batch{}
	queueFence(b, l)
	if b.Len() == 0 {
		return nil
	}
	return leaseLost(tx.SendBatch(ctx, b).Close(), l)
}

// SetAfterRebuildLoad makes RebuildReadModel call f between loading the
// fresh tables and switching them in; it returns a func restoring the
// previous state.
func SetAfterRebuildLoad(f func()) (restore func()) {
	old := afterRebuildLoad
	afterRebuildLoad = f
	return func() { afterRebuildLoad = old }
}

// DueSQL is Due's statement: deadline, cutoff (unix nanoseconds), limit.
const DueSQL = dueSQL

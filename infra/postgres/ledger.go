package postgres

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"time"

	"github.com/jackc/pgx/v5"

	"rxflow/projections"
)

// Ledger is the reactors' side-effect ledger bound to one segment lease
// (projections.Ledger): its writes are fenced by the lease, and a
// projector's checkpoint is the row (projector, lease.Segment) of
// checkpoints. Effects and the parked list are global: an effect's id
// names its event, whichever segment handled it. Made by DB.Ledger.
type Ledger struct {
	db    *DB
	lease projections.Lease
}

var _ projections.Ledger = (*Ledger)(nil)

// Ledger returns the side-effect ledger for lease. The deadline scheduler,
// which runs on the instance holding segment 0, records under that lease.
func (db *DB) Ledger(lease projections.Lease) *Ledger { return &Ledger{db: db, lease: lease} }

// Checkpoint implements projections.Ledger: projector's checkpoint in the
// lease's segment; 0 if none.
func (l *Ledger) Checkpoint(ctx context.Context, projector string) (uint64, error) {
	cp, err := checkpointOf(ctx, l.db.pool, projector, l.lease.Segment)
	if err != nil {
		return 0, fmt.Errorf("postgres: ledger: checkpoint of %s: %w", projector, err)
	}
	return cp, nil
}

// SaveCheckpoint implements projections.Ledger: the checkpoint moves only
// forward, fenced by the lease (projections.ErrLeaseLost: nothing written).
func (l *Ledger) SaveCheckpoint(ctx context.Context, projector string, position uint64) error {
	if err := l.db.saveCheckpoint(ctx, l.db.pool, l.lease, projector, position); err != nil {
		return fmt.Errorf("postgres: ledger: %w", err)
	}
	return nil
}

const effectColumns = "id, projector, urn, event_id, event_name, status, error, attempts, refusal, at"

// Effect implements projections.Ledger.
func (l *Ledger) Effect(ctx context.Context, id string) (projections.Effect, bool, error) {
	e, err := scanEffect(l.db.pool.QueryRow(ctx, "SELECT "+effectColumns+" FROM effects WHERE id = $1", id))
	if errors.Is(err, pgx.ErrNoRows) {
		return projections.Effect{}, false, nil
	}
	if err != nil {
		return projections.Effect{}, false, fmt.Errorf("postgres: ledger: effect %s: %w", id, err)
	}
	return e, true, nil
}

// Record implements projections.Ledger: e (replacing an earlier outcome of
// its id) and projector's checkpoint, if position is further, in one
// transaction fenced by the lease (projections.ErrLeaseLost: nothing
// written). A position of 0 moves no checkpoint.
func (l *Ledger) Record(ctx context.Context, e projections.Effect, position uint64) error {
	if position > math.MaxInt64 {
		return fmt.Errorf("postgres: ledger: checkpoint %d out of range", position)
	}
	// The refusal goes as text: as []byte, the exec and simple_protocol
	// query exec modes would send it as bytea, which JSONB refuses.
	var refusal *string
	if e.Refusal != nil {
		b, err := json.Marshal(e.Refusal)
		if err != nil {
			return fmt.Errorf("postgres: ledger: %w", err)
		}
		text := string(b)
		refusal = &text
	}
	err := l.db.write(ctx, l.db.pool, l.lease, func(b *pgx.Batch) {
		b.Queue(`INSERT INTO effects (`+effectColumns+`) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)
			ON CONFLICT (id) DO UPDATE SET projector = excluded.projector, urn = excluded.urn, event_id = excluded.event_id,
			event_name = excluded.event_name, status = excluded.status, error = excluded.error, attempts = excluded.attempts,
			refusal = excluded.refusal, at = excluded.at`,
			e.ID, e.Projector, e.URN, e.EventID, e.EventName, string(e.Status), e.Error, e.Attempts, refusal, e.At.UnixNano())
		if position > 0 {
			b.Queue(saveCheckpointSQL, e.Projector, l.lease.Segment, int64(position))
		}
	})
	if err != nil {
		return fmt.Errorf("postgres: ledger: record %s: %w", e.ID, err)
	}
	return nil
}

// Parked implements projections.ParkedEffects: every parked effect, of
// every segment, oldest first.
func (l *Ledger) Parked(ctx context.Context) ([]projections.Effect, error) {
	rows, err := l.db.pool.Query(ctx, "SELECT "+effectColumns+" FROM effects WHERE status = 'parked' ORDER BY at, id")
	if err != nil {
		return nil, fmt.Errorf("postgres: ledger: parked: %w", err)
	}
	defer rows.Close()
	var out []projections.Effect
	for rows.Next() {
		e, err := scanEffect(rows)
		if err != nil {
			return nil, fmt.Errorf("postgres: ledger: parked: %w", err)
		}
		out = append(out, e)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("postgres: ledger: parked: %w", err)
	}
	return out, nil
}

func scanEffect(row pgx.Row) (projections.Effect, error) {
	var e projections.Effect
	var status string
	var refusal []byte
	var at int64
	if err := row.Scan(&e.ID, &e.Projector, &e.URN, &e.EventID, &e.EventName, &status, &e.Error, &e.Attempts, &refusal, &at); err != nil {
		return e, err
	}
	e.Status, e.At = projections.EffectStatus(status), time.Unix(0, at).UTC()
	if refusal != nil {
		e.Refusal = &projections.Refusal{}
		if err := json.Unmarshal(refusal, e.Refusal); err != nil {
			return e, err
		}
	}
	return e, nil
}

package postgres

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"rxflow/infra/readmodel"
)

// Operations is the operations store in PostgreSQL (migration 000004): the
// dead letters and refusals consumed from Kafka, keyed by their Kafka
// coordinates, and the record of every operator action, with the behaviour
// of readmodel.Operations. Every projector instance shares it: a record
// consumed by two instances (a redelivery after a consumer-group
// rebalance) is stored once, and a dead letter is claimed for redrive by
// one instance only. Not fenced by a segment lease: it is not derived from
// the event store. Safe for concurrent use.
type Operations struct {
	pool *pgxpool.Pool
}

// Operations returns the operations store in db.
func (db *DB) Operations() *Operations { return &Operations{pool: db.pool} }

// AddDeadLetter stores d unless a record with its id is already stored.
func (o *Operations) AddDeadLetter(ctx context.Context, d readmodel.DeadLetterRow) error {
	_, err := o.pool.Exec(ctx, `INSERT INTO dead_letters
		(id, topic, partition_no, offset_no, record_key, code, error, raw, dead_lettered_at, received_at)
		VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10) ON CONFLICT (id) DO NOTHING`,
		d.ID, d.Topic, d.Partition, d.Offset, d.Key, d.Code, d.Error, d.Raw, d.At.UnixNano(), d.Received.UnixNano())
	if err != nil {
		return fmt.Errorf("operations store: add dead letter %s: %w", d.ID, err)
	}
	return nil
}

// AddRefusal stores r unless a record with its id is already stored.
func (o *Operations) AddRefusal(ctx context.Context, r readmodel.RefusalRow) error {
	_, err := o.pool.Exec(ctx, `INSERT INTO refusals (id, urn, code, event, command_id, rejected_at, received_at)
		VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT (id) DO NOTHING`,
		r.ID, r.URN, r.Code, r.Event, r.CommandID, r.At.UnixNano(), r.Received.UnixNano())
	if err != nil {
		return fmt.Errorf("operations store: add refusal %s: %w", r.ID, err)
	}
	return nil
}

const deadLetterColumns = `id, topic, partition_no, offset_no, record_key, code, error, raw, dead_lettered_at, received_at,
	redrive_command_id, redrive_at, redrive_by`

func scanDeadLetter(row pgx.Row) (readmodel.DeadLetterRow, error) {
	var d readmodel.DeadLetterRow
	var at, received int64
	var cmd, by *string
	var rat *int64
	if err := row.Scan(&d.ID, &d.Topic, &d.Partition, &d.Offset, &d.Key, &d.Code, &d.Error, &d.Raw, &at, &received, &cmd, &rat, &by); err != nil {
		return readmodel.DeadLetterRow{}, err
	}
	d.At, d.Received = time.Unix(0, at).UTC(), time.Unix(0, received).UTC()
	if cmd != nil {
		d.Redrive = &readmodel.Redrive{CommandID: *cmd, At: time.Unix(0, *rat).UTC(), By: *by}
	}
	return d, nil
}

// DeadLetters returns up to limit dead letters, the most recently consumed first.
func (o *Operations) DeadLetters(ctx context.Context, limit int) ([]readmodel.DeadLetterRow, error) {
	rows, err := o.pool.Query(ctx, "SELECT "+deadLetterColumns+" FROM dead_letters ORDER BY received_at DESC, id LIMIT $1", limit)
	if err != nil {
		return nil, fmt.Errorf("operations store: dead letters: %w", err)
	}
	out, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (readmodel.DeadLetterRow, error) { return scanDeadLetter(r) })
	if err != nil {
		return nil, fmt.Errorf("operations store: dead letters: %w", err)
	}
	return out, nil
}

// DeadLetter returns the dead letter id; an error matching
// readmodel.ErrNoSuchRecord if none.
func (o *Operations) DeadLetter(ctx context.Context, id string) (readmodel.DeadLetterRow, error) {
	d, err := scanDeadLetter(o.pool.QueryRow(ctx, "SELECT "+deadLetterColumns+" FROM dead_letters WHERE id = $1", id))
	if errors.Is(err, pgx.ErrNoRows) {
		return readmodel.DeadLetterRow{}, fmt.Errorf("operations store: dead letter %q: %w", id, readmodel.ErrNoSuchRecord)
	}
	if err != nil {
		return readmodel.DeadLetterRow{}, fmt.Errorf("operations store: dead letter %q: %w", id, err)
	}
	return d, nil
}

// ClaimRedrive marks dead letter id as redriven by r, once across every
// instance: a second claim returns the first one's Redrive and
// readmodel.ErrAlreadyRedriven, and an unknown id readmodel.ErrNoSuchRecord.
// Claims of one dead letter are serialized by its row lock (SELECT … FOR
// UPDATE), so the loser reads the winner's committed claim.
func (o *Operations) ClaimRedrive(ctx context.Context, id string, r readmodel.Redrive) (readmodel.Redrive, error) {
	var prior readmodel.Redrive
	err := pgx.BeginFunc(ctx, o.pool, func(tx pgx.Tx) error {
		var cmd, by *string
		var at *int64
		err := tx.QueryRow(ctx, `SELECT redrive_command_id, redrive_at, redrive_by FROM dead_letters WHERE id = $1 FOR UPDATE`, id).
			Scan(&cmd, &at, &by)
		switch {
		case errors.Is(err, pgx.ErrNoRows):
			return fmt.Errorf("operations store: dead letter %q: %w", id, readmodel.ErrNoSuchRecord)
		case err != nil:
			return fmt.Errorf("operations store: claim redrive of %s: %w", id, err)
		case cmd != nil:
			prior = readmodel.Redrive{CommandID: *cmd, At: time.Unix(0, *at).UTC(), By: *by}
			return readmodel.ErrAlreadyRedriven
		}
		_, err = tx.Exec(ctx, `UPDATE dead_letters SET redrive_command_id = $1, redrive_at = $2, redrive_by = $3 WHERE id = $4`,
			r.CommandID, r.At.UnixNano(), r.By, id)
		if err != nil {
			return fmt.Errorf("operations store: claim redrive of %s: %w", id, err)
		}
		return nil
	})
	switch {
	case errors.Is(err, readmodel.ErrAlreadyRedriven):
		return prior, err
	case err != nil:
		return readmodel.Redrive{}, err
	}
	return r, nil
}

// ReleaseRedrive undoes the claim commandID holds on dead letter id: its
// publication failed, so it may be redriven again.
func (o *Operations) ReleaseRedrive(ctx context.Context, id, commandID string) error {
	_, err := o.pool.Exec(ctx, `UPDATE dead_letters SET redrive_command_id = NULL, redrive_at = NULL, redrive_by = NULL
		WHERE id = $1 AND redrive_command_id = $2`, id, commandID)
	if err != nil {
		return fmt.Errorf("operations store: release redrive of %s: %w", id, err)
	}
	return nil
}

// CountSince counts the dead letters and refusals that happened (their
// deadLetteredAt and rejectedAt) at or after since.
func (o *Operations) CountSince(ctx context.Context, since time.Time) (deadLetters, refusals int, err error) {
	err = o.pool.QueryRow(ctx, `SELECT
		(SELECT COUNT(*) FROM dead_letters WHERE dead_lettered_at >= $1),
		(SELECT COUNT(*) FROM refusals WHERE rejected_at >= $1)`, since.UnixNano()).Scan(&deadLetters, &refusals)
	if err != nil {
		return 0, 0, fmt.Errorf("operations store: counts: %w", err)
	}
	return deadLetters, refusals, nil
}

// RecordAction appends a and returns it with its Seq.
func (o *Operations) RecordAction(ctx context.Context, a readmodel.OperatorAction) (readmodel.OperatorAction, error) {
	err := o.pool.QueryRow(ctx, `INSERT INTO operator_actions (at, actor, action, target, urn, result, detail)
		VALUES ($1, $2, $3, $4, $5, $6, $7) RETURNING seq`, a.At.UnixNano(), a.Actor, a.Action, a.Target, a.URN, a.Result, a.Detail).Scan(&a.Seq)
	if err != nil {
		return readmodel.OperatorAction{}, fmt.Errorf("operations store: record action: %w", err)
	}
	return a, nil
}

// Actions returns up to limit recorded actions, oldest first: the latest
// limit of every action if urn is "", else of those concerning urn.
func (o *Operations) Actions(ctx context.Context, urn string, limit int) ([]readmodel.OperatorAction, error) {
	q, args := "SELECT seq, at, actor, action, target, urn, result, detail FROM operator_actions", []any{limit}
	if urn != "" {
		q, args = q+" WHERE urn = $2", append(args, urn)
	}
	rows, err := o.pool.Query(ctx, q+" ORDER BY seq DESC LIMIT $1", args...)
	if err != nil {
		return nil, fmt.Errorf("operations store: actions: %w", err)
	}
	out, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (readmodel.OperatorAction, error) {
		var a readmodel.OperatorAction
		var at int64
		err := r.Scan(&a.Seq, &at, &a.Actor, &a.Action, &a.Target, &a.URN, &a.Result, &a.Detail)
		a.At = time.Unix(0, at).UTC()
		return a, err
	})
	if err != nil {
		return nil, fmt.Errorf("operations store: actions: %w", err)
	}
	slices.Reverse(out) // the latest limit, oldest first
	return out, nil
}

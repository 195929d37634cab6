package postgres

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"

	"rxflow/projections"
)

// ErrSegmentCount is returned by DB.Leases for a database split into
// another number of segments than asked for.
var ErrSegmentCount = errors.New("segment count differs from the database's")

// Leases is one projector instance's access to the segment_leases table
// (projections.Leases). Every expiry is computed by the database (now()),
// so the instances' clocks do not matter.
type Leases struct {
	db    *DB
	owner string
	count int
	ttl   time.Duration
}

var _ projections.Leases = (*Leases)(nil)

// initLock is the advisory lock under which the first instance creates the
// segment rows.
const initLock = 7_212_001

// Leases returns instance owner's leases on count segments, each lasting
// ttl from its claim or renewal. The first instance to start creates the
// count segment rows; a later one with another count gets ErrSegmentCount
// (the count is fixed: every checkpoint is per segment).
func (db *DB) Leases(ctx context.Context, owner string, count int, ttl time.Duration) (*Leases, error) {
	if owner == "" || count < 1 || ttl <= 0 {
		return nil, fmt.Errorf("postgres: leases need an instance id, a positive segment count and lease time (got %q, %d, %v)", owner, count, ttl)
	}
	err := pgx.BeginFunc(ctx, db.pool, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, `SELECT pg_advisory_xact_lock($1)`, initLock); err != nil {
			return err
		}
		var n int
		if err := tx.QueryRow(ctx, `SELECT count(*) FROM segment_leases`).Scan(&n); err != nil {
			return err
		}
		switch n {
		case count:
			return nil
		case 0:
			_, err := tx.Exec(ctx, `INSERT INTO segment_leases (segment) SELECT generate_series(0, $1 - 1)`, count)
			return err
		}
		return fmt.Errorf("postgres: the database is split into %d segments, not %d: %w; the count is fixed at the database's first start (start with -segments=%d, or use a fresh database)", n, count, ErrSegmentCount, n)
	})
	if err != nil {
		if errors.Is(err, ErrSegmentCount) {
			return nil, err
		}
		return nil, fmt.Errorf("postgres: segment leases: %w", err)
	}
	return &Leases{db: db, owner: owner, count: count, ttl: ttl}, nil
}

// Count implements projections.Leases.
func (l *Leases) Count() int { return l.count }

// Claim implements projections.Leases: it marks the instance live until
// ttl from now, counts the live instances, and claims free or expired
// segments (lowest first, skipping rows a write holds) until it holds
// ceil(count / live). Each claim increments the segment's token.
func (l *Leases) Claim(ctx context.Context, held int) ([]projections.Claimed, int, error) {
	var claimed []projections.Claimed
	var share int
	err := pgx.BeginFunc(ctx, l.db.leasePool, func(tx pgx.Tx) error {
		claimed = nil
		if _, err := tx.Exec(ctx, `DELETE FROM projector_instances WHERE expires_at <= now()`); err != nil {
			return err
		}
		if _, err := tx.Exec(ctx, `INSERT INTO projector_instances (id, expires_at) VALUES ($1, now() + $2 * interval '1 microsecond')
			ON CONFLICT (id) DO UPDATE SET expires_at = excluded.expires_at`, l.owner, l.ttl.Microseconds()); err != nil {
			return err
		}
		var live int
		if err := tx.QueryRow(ctx, `SELECT count(*) FROM projector_instances WHERE expires_at > now()`).Scan(&live); err != nil {
			return err
		}
		share = (l.count + live - 1) / live
		if held >= share {
			return nil
		}
		rows, err := tx.Query(ctx, `WITH free AS (
				SELECT segment, owner FROM segment_leases WHERE expires_at <= now() ORDER BY segment LIMIT $1 FOR UPDATE SKIP LOCKED)
			UPDATE segment_leases s SET owner = $2, token = s.token + 1, expires_at = now() + $3 * interval '1 microsecond'
			FROM free WHERE s.segment = free.segment
			RETURNING s.segment, s.token, free.owner`, share-held, l.owner, l.ttl.Microseconds())
		if err != nil {
			return err
		}
		for rows.Next() {
			var c projections.Claimed
			var previous string
			if err := rows.Scan(&c.Segment, &c.Token, &previous); err != nil {
				return err
			}
			c.Count, c.TakenOver = l.count, previous != "" && previous != l.owner
			claimed = append(claimed, c)
		}
		return rows.Err()
	})
	if err != nil {
		return nil, 0, fmt.Errorf("postgres: claim segments: %w", err)
	}
	return claimed, share, nil
}

// Renew implements projections.Leases.
func (l *Leases) Renew(ctx context.Context, lease projections.Lease) error {
	tag, err := l.db.leasePool.Exec(ctx, `UPDATE segment_leases SET expires_at = now() + $4 * interval '1 microsecond'
		WHERE segment = $1 AND token = $2 AND owner = $3`, lease.Segment, lease.Token, l.owner, l.ttl.Microseconds())
	if err != nil {
		return fmt.Errorf("postgres: renew segment %d: %w", lease.Segment, err)
	}
	if tag.RowsAffected() == 0 {
		return fmt.Errorf("segment %d token %d: %w", lease.Segment, lease.Token, projections.ErrLeaseLost)
	}
	return nil
}

// Release implements projections.Leases: the segment is free at once (its
// token moves at the next claim).
func (l *Leases) Release(ctx context.Context, lease projections.Lease) error {
	_, err := l.db.leasePool.Exec(ctx, `UPDATE segment_leases SET owner = '', expires_at = '-infinity'
		WHERE segment = $1 AND token = $2 AND owner = $3`, lease.Segment, lease.Token, l.owner)
	if err != nil {
		return fmt.Errorf("postgres: release segment %d: %w", lease.Segment, err)
	}
	return nil
}

// Leave implements projections.Leases: the instance no longer counts as
// live, so the others' shares grow at their next round.
func (l *Leases) Leave(ctx context.Context) error {
	if _, err := l.db.leasePool.Exec(ctx, `DELETE FROM projector_instances WHERE id = $1`, l.owner); err != nil {
		return fmt.Errorf("postgres: leave: %w", err)
	}
	return nil
}

// Owners is each segment's holder ("" when free or expired), by segment,
// on the database's clock: for metrics and tests.
func (l *Leases) Owners(ctx context.Context) ([]string, error) {
	rows, err := l.db.leasePool.Query(ctx, `SELECT CASE WHEN expires_at > now() THEN owner ELSE '' END FROM segment_leases ORDER BY segment`)
	if err != nil {
		return nil, fmt.Errorf("postgres: segment owners: %w", err)
	}
	owners, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		return nil, fmt.Errorf("postgres: segment owners: %w", err)
	}
	return owners, nil
}

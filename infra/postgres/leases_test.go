package postgres

import (
	"context"
	"errors"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"rxflow/infra/postgres/postgrestest"
	"rxflow/projections"
)

func openDB(t *testing.T) *DB {
	t.Helper()
	db, err := Open(context.Background(), postgrestest.URL(t))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(db.Close)
	return db
}

func leases(t *testing.T, db *DB, owner string, count int, ttl time.Duration) *Leases {
	t.Helper()
	l, err := db.Leases(context.Background(), owner, count, ttl)
	if err != nil {
		t.Fatal(err)
	}
	return l
}

func segmentsOf(cs []projections.Claimed) []int {
	var out []int
	for _, c := range cs {
		out = append(out, c.Segment)
	}
	return out
}

func TestLeasesRefuseAnotherSegmentCount(t *testing.T) {
	db := openDB(t)
	leases(t, db, "a", 8, time.Minute)
	leases(t, db, "b", 8, time.Minute) // the same count: accepted
	_, err := db.Leases(context.Background(), "c", 4, time.Minute)
	if !errors.Is(err, ErrSegmentCount) || !strings.Contains(err.Error(), "split into 8 segments, not 4") {
		t.Fatalf("another segment count: %v, want ErrSegmentCount naming both counts", err)
	}
	var n int
	if err := db.pool.QueryRow(context.Background(), `SELECT count(*) FROM segment_leases`).Scan(&n); err != nil || n != 8 {
		t.Fatalf("%d segment rows (%v), want 8", n, err)
	}
}

// Alone, an instance claims every segment; with a second live instance its
// share halves, the newcomer gets what the first releases, and no segment
// is ever held by two.
func TestClaimTakesTheFairShare(t *testing.T) {
	db := openDB(t)
	ctx := context.Background()
	a, b := leases(t, db, "a", 5, time.Minute), leases(t, db, "b", 5, time.Minute)
	got, share, err := a.Claim(ctx, 0)
	if err != nil || share != 5 || !slices.Equal(segmentsOf(got), []int{0, 1, 2, 3, 4}) {
		t.Fatalf("alone: claimed %v, share %d, %v; want all 5", segmentsOf(got), share, err)
	}
	if got[0].Token != 1 || got[0].TakenOver {
		t.Errorf("first claim %+v, want token 1 and no takeover", got[0])
	}
	got, share, err = b.Claim(ctx, 0)
	if err != nil || share != 3 || len(got) != 0 {
		t.Fatalf("newcomer: claimed %v, share %d, %v; want nothing free and a share of 3", segmentsOf(got), share, err)
	}
	if _, share, _ = a.Claim(ctx, 5); share != 3 {
		t.Fatalf("first instance's share with two live: %d, want 3", share)
	}
	for _, s := range []int{3, 4} {
		if err := a.Release(ctx, projections.Lease{Segment: s, Count: 5, Token: 1}); err != nil {
			t.Fatal(err)
		}
	}
	got, _, err = b.Claim(ctx, 0)
	if err != nil || !slices.Equal(segmentsOf(got), []int{3, 4}) || got[0].Token != 2 || got[0].TakenOver {
		t.Fatalf("after the release: %+v, %v; want segments 3, 4 at token 2, not taken over", got, err)
	}
	owners, err := a.Owners(ctx)
	if err != nil || !slices.Equal(owners, []string{"a", "a", "a", "b", "b"}) {
		t.Fatalf("owners %v (%v)", owners, err)
	}
	if err := b.Leave(ctx); err != nil {
		t.Fatal(err)
	}
	if _, share, _ = a.Claim(ctx, 3); share != 5 {
		t.Fatalf("share once the other left: %d, want 5", share)
	}
}

// A lease expires on the database's clock: once the holder stops renewing,
// another instance claims it (a takeover, with a new token), and the old
// holder's renewal and fenced writes are refused with ErrLeaseLost.
func TestExpiredLeaseIsTakenOverAndTheOldTokenFenced(t *testing.T) {
	db := openDB(t)
	ctx := context.Background()
	a, b := leases(t, db, "a", 1, 300*time.Millisecond), leases(t, db, "b", 1, 300*time.Millisecond)
	got, _, err := a.Claim(ctx, 0)
	if err != nil || len(got) != 1 {
		t.Fatalf("claim: %v, %v", got, err)
	}
	old := got[0].Lease
	if err := a.Renew(ctx, old); err != nil {
		t.Fatalf("renew of a held lease: %v", err)
	}
	if got, _, _ := b.Claim(ctx, 0); len(got) != 0 {
		t.Fatalf("a live lease was claimed: %+v", got)
	}
	var taken []projections.Claimed
	waitUntil(t, func() bool {
		taken, _, err = b.Claim(ctx, 0)
		return err != nil || len(taken) > 0
	})
	if err != nil || !taken[0].TakenOver || taken[0].Token != old.Token+1 {
		t.Fatalf("takeover: %+v, %v; want a takeover at token %d", taken, err, old.Token+1)
	}
	if err := a.Renew(ctx, old); !errors.Is(err, projections.ErrLeaseLost) {
		t.Fatalf("renewal under the old token: %v, want ErrLeaseLost", err)
	}
	for lease, want := range map[projections.Lease]error{old: projections.ErrLeaseLost, taken[0].Lease: nil, projections.Whole: nil} {
		err := pgx.BeginFunc(ctx, db.pool, func(tx pgx.Tx) error { return fence(ctx, tx, lease) })
		if !errors.Is(err, want) || (want == nil && err != nil) {
			t.Errorf("fence of %+v: %v, want %v", lease, err, want)
		}
	}
	if err := a.Release(ctx, old); err != nil {
		t.Fatal(err)
	}
	if owners, _ := b.Owners(ctx); owners[0] != "b" {
		t.Fatalf("a release under the old token freed the new holder's segment: owners %v", owners)
	}
}

func waitUntil(t *testing.T, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatal("timed out")
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// An instance that claims again a segment it had let expire holds it under
// a new token: its old lease (a runner still finishing) is refused.
func TestReclaimBySameInstanceMovesTheToken(t *testing.T) {
	db := openDB(t)
	ctx := context.Background()
	a := leases(t, db, "a", 1, 200*time.Millisecond)
	first, _, err := a.Claim(ctx, 0)
	if err != nil || len(first) != 1 {
		t.Fatalf("claim: %v, %v", first, err)
	}
	var again []projections.Claimed
	waitUntil(t, func() bool {
		again, _, err = a.Claim(ctx, 0)
		return err != nil || len(again) > 0
	})
	if err != nil || again[0].Token != first[0].Token+1 || again[0].TakenOver {
		t.Fatalf("reclaim: %+v, %v; want token %d, not a takeover", again, err, first[0].Token+1)
	}
	if err := a.Renew(ctx, first[0].Lease); !errors.Is(err, projections.ErrLeaseLost) {
		t.Fatalf("renewal under the old token: %v, want ErrLeaseLost", err)
	}
	if err := a.Renew(ctx, again[0].Lease); err != nil {
		t.Fatalf("renewal under the new token: %v", err)
	}
}

// An instance paused in the middle of a fenced write holds its lease row
// shared; with IdleInTransactionTimeout the server ends its session, so
// another instance claims the expired segment, and the paused write can
// never commit.
func TestPausedWriteDoesNotHoldUpATakeover(t *testing.T) {
	url := postgrestest.URL(t)
	ctx := context.Background()
	paused, err := Open(ctx, url, IdleInTransactionTimeout(300*time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	defer paused.Close()
	other, err := Open(ctx, url)
	if err != nil {
		t.Fatal(err)
	}
	defer other.Close()
	a, b := leases(t, paused, "a", 1, 200*time.Millisecond), leases(t, other, "b", 1, 200*time.Millisecond)
	got, _, err := a.Claim(ctx, 0)
	if err != nil || len(got) != 1 {
		t.Fatalf("claim: %v, %v", got, err)
	}
	tx, err := paused.pool.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer tx.Rollback(ctx) // before paused.Close, which waits for the connection
	if err := fence(ctx, tx, got[0].Lease); err != nil {
		t.Fatal(err)
	}
	// The write's instance stops here, its transaction open.
	var taken []projections.Claimed
	waitUntil(t, func() bool {
		taken, _, err = b.Claim(ctx, 0)
		return err != nil || len(taken) > 0
	})
	if err != nil || !taken[0].TakenOver {
		t.Fatalf("takeover: %+v, %v", taken, err)
	}
	if _, err := tx.Exec(ctx, `INSERT INTO checkpoints (projector, segment, position) VALUES ('stale', 0, 1)`); err == nil {
		if err := tx.Commit(ctx); err == nil {
			t.Fatal("the paused write committed after the takeover")
		}
	}
}

// Package postgres is the PostgreSQL adapter of the read side: the read
// model, the reactors' ledger, the projectors' checkpoints and the segment
// leases of projector instances that share the work, all in one database,
// chosen by a connection string (-database, DATABASE_URL). Without one, the
// projector keeps its embedded stores (SQLite and Pebble).
//
// Writes for a segment are fenced: each runs in a transaction that first
// checks, under a shared row lock, that the lease's token is still the
// segment's (see fenceSQL), so an instance that lost its lease writes
// nothing.
package postgres

import (
	"context"
	"embed"
	"errors"
	"fmt"
	"strconv"
	"sync"
	"time"

	"github.com/golang-migrate/migrate/v4"
	migratepgx "github.com/golang-migrate/migrate/v4/database/pgx/v5"
	"github.com/golang-migrate/migrate/v4/source/iofs"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/jackc/pgx/v5/stdlib"

	"rxflow/projections"
)

//go:embed migrations/*.sql
var migrations embed.FS

// DB is a PostgreSQL database holding the read side.
type DB struct {
	pool      *pgxpool.Pool // the ledger, operations and access log: one transaction per partner effect
	readPool  *pgxpool.Pool // the read model's own connections: its batches and the query API never wait behind the effects' commits
	leasePool *pgxpool.Pool // the leases' own connections: a renewal never waits for the writers' turn
	progress  progress
	closed    chan struct{} // closed by Close
	closeOnce sync.Once
}

// Open connects to the database at url (a libpq connection string or URL,
// e.g. postgres://user:pass@host:5432/db) and migrates its schema to this
// version's. Migrations are versioned (migrations/*.sql) and run under an
// advisory lock, so instances that start at once do not race: the others
// wait, then find nothing left to do. A database whose schema is newer than
// this code's is refused.
func Open(ctx context.Context, url string, opts ...Option) (*DB, error) {
	cfg, err := pgxpool.ParseConfig(url)
	if err != nil {
		return nil, fmt.Errorf("postgres: connection string: %w", redact(err))
	}
	if cfg.ConnConfig.ConnectTimeout == 0 {
		cfg.ConnConfig.ConnectTimeout = DefaultConnectTimeout
	}
	for _, o := range opts {
		o(cfg)
	}
	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		return nil, fmt.Errorf("postgres: %w", err)
	}
	if err := migrateUp(pool); err != nil {
		pool.Close()
		return nil, err
	}
	readPool, err := pgxpool.NewWithConfig(ctx, cfg.Copy())
	if err != nil {
		pool.Close()
		return nil, fmt.Errorf("postgres: %w", err)
	}
	leaseCfg := cfg.Copy()
	leaseCfg.MaxConns = 2
	leasePool, err := pgxpool.NewWithConfig(ctx, leaseCfg)
	if err != nil {
		pool.Close()
		readPool.Close()
		return nil, fmt.Errorf("postgres: %w", err)
	}
	return &DB{pool: pool, readPool: readPool, leasePool: leasePool, progress: progress{ch: make(chan struct{})}, closed: make(chan struct{})}, nil
}

// DefaultConnectTimeout bounds each new connection (dial and start-up,
// the migration's included) when url sets no connect_timeout: a server
// that accepts and never answers, or a host that drops packets, fails
// Open instead of holding it for the system's TCP timeout or for ever.
const DefaultConnectTimeout = 10 * time.Second

// Option tunes the connections of Open.
type Option func(*pgxpool.Config)

// IdleInTransactionTimeout has the server end any session of this DB that
// stays idle inside a transaction for longer than d (PostgreSQL's
// idle_in_transaction_session_timeout), releasing its locks. A fenced
// write holds its lease row shared until it commits; if its instance is
// paused (SIGSTOP) in the middle, the lock would keep any other instance
// from claiming the segment for as long as the pause lasts. Give it a
// fraction of the lease time. d is rounded up to a millisecond.
func IdleInTransactionTimeout(d time.Duration) Option {
	ms := strconv.FormatInt(int64(max((d+time.Millisecond-1)/time.Millisecond, 1)), 10)
	return func(cfg *pgxpool.Config) { cfg.ConnConfig.RuntimeParams["idle_in_transaction_session_timeout"] = ms }
}

// SchemaVersion is the version this code's schema ends at: its last
// migration's, from the migrations' file names (NNNNNN_name.up.sql).
var SchemaVersion = func() uint {
	src, err := iofs.New(migrations, "migrations")
	if err != nil {
		panic(err) // the embedded files are malformed: a build defect
	}
	defer src.Close()
	v, err := src.First()
	for err == nil {
		var next uint
		if next, err = src.Next(v); err == nil {
			v = next
		}
	}
	return v
}()

func migrateUp(pool *pgxpool.Pool) error {
	src, err := iofs.New(migrations, "migrations")
	if err != nil {
		return fmt.Errorf("postgres: migrations: %w", err)
	}
	driver, err := migratepgx.WithInstance(stdlib.OpenDBFromPool(pool), &migratepgx.Config{MigrationsTable: "schema_migrations"})
	if err != nil {
		return fmt.Errorf("postgres: %w", err)
	}
	m, err := migrate.NewWithInstance("iofs", src, "pgx5", driver)
	if err != nil {
		driver.Close()
		return fmt.Errorf("postgres: migrations: %w", err)
	}
	defer m.Close() // gives its connection back to the pool
	upErr := m.Up() // under the advisory lock
	if errors.Is(upErr, migrate.ErrNoChange) {
		upErr = nil
	}
	if version, dirty, err := m.Version(); err == nil && (version > SchemaVersion || dirty) {
		return fmt.Errorf("postgres: schema version %d (dirty %v) is not this code's %d: a newer or failed migration ran", version, dirty, SchemaVersion)
	}
	if upErr != nil {
		return fmt.Errorf("postgres: migrate to version %d: %w", SchemaVersion, upErr)
	}
	return nil
}

// Close closes the connections and wakes WaitFor callers.
func (db *DB) Close() {
	db.closeOnce.Do(func() { close(db.closed) })
	db.pool.Close()
	db.readPool.Close()
	db.leasePool.Close()
}

// Pool is the connection pool, for tests and benchmarks.
func (db *DB) Pool() *pgxpool.Pool { return db.pool }

// fenceSQL is the fence of every segment write (migration 000006): it
// holds a key-share lock on the lease's row until the transaction ends, so
// a claim by another instance (which locks the row FOR UPDATE) waits for
// the write and then sees it, while the holder's renewals (which change no
// key) do not wait for its own writers; and it raises leaseLostCode when
// the segment's token is no longer the writer's. A failing statement
// aborts the rest of its transaction, so the fence and the writes behind
// it go in one pipeline.
const fenceSQL = "SELECT segment_fence($1, $2)"

// leaseLostCode is the SQLSTATE segment_fence raises.
const leaseLostCode = "RX001"

// queueFence queues l's fence as b's next statement; projections.Whole is
// never fenced.
func queueFence(b *pgx.Batch, l projections.Lease) {
	if l != projections.Whole {
		b.Queue(fenceSQL, l.Segment, l.Token)
	}
}

// leaseLost is err, as projections.ErrLeaseLost when the fence of l
// refused the write.
func leaseLost(err error, l projections.Lease) error {
	if pgErr, ok := errors.AsType[*pgconn.PgError](err); ok && pgErr.Code == leaseLostCode {
		return fmt.Errorf("segment %d token %d: %w", l.Segment, l.Token, projections.ErrLeaseLost)
	}
	return err
}

// redact keeps the connection string, and so its password, out of an error.
func redact(err error) error {
	if _, ok := errors.AsType[*pgconn.ParseConfigError](err); ok {
		return errors.New("cannot parse it (its text is not repeated here: it may hold a password)")
	}
	return err
}

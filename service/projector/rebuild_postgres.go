package projector

import (
	"context"
	"fmt"
	"time"

	"rxflow/infra/eventstore"
	"rxflow/infra/postgres"
	"rxflow/projections"
)

// PostgresRebuildConfig says where the events are and which PostgreSQL
// database holds the read model.
type PostgresRebuildConfig struct {
	EventStore eventstore.Config
	Database   string // the PostgreSQL connection URL (-database, DATABASE_URL)
	Segments   int    // the database's segment count (-segments); ≥ 1
}

// RebuildPostgres is the audit replay on PostgreSQL: it folds every
// prescription event in $all, loads the result into fresh tables and
// switches them in (postgres.DB.RebuildReadModel). Unlike the SQLite
// rebuild, the projectors may keep running: the switch fences them off and
// they resume from the rebuild's position; the query API serves the old
// tables until the switch. progress, if set, is called as events are read.
func RebuildPostgres(ctx context.Context, cfg PostgresRebuildConfig, progress func(events int, position uint64)) (res RebuildResult, err error) {
	start := time.Now()
	if err := validateTables(); err != nil {
		return res, fmt.Errorf("rebuild: %w", err)
	}
	db, err := postgres.Open(ctx, cfg.Database)
	if err != nil {
		return res, fmt.Errorf("rebuild: %w", err)
	}
	defer db.Close()
	store, err := eventstore.Open(cfg.EventStore)
	if err != nil {
		return res, err
	}
	defer store.Close()
	replayed, err := projections.Replay(ctx, store, func(n int, pos uint64) {
		res.Events = n
		if progress != nil {
			progress(n, pos)
		}
	})
	if err != nil {
		return res, err
	}
	if err := db.RebuildReadModel(ctx, replayed.Rows, replayed.Waiting, replayed.Checkpoint, cfg.Segments); err != nil {
		return res, err
	}
	res.Rows, res.Checkpoint, res.Took = len(replayed.Rows), replayed.Checkpoint, time.Since(start)
	return res, nil
}

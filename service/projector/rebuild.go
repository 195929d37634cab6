package projector

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"rxflow/infra/eventstore"
	"rxflow/infra/ledger"
	"rxflow/infra/readmodel"
	"rxflow/projections"
)

// RebuildConfig says where the events are and where the read model lives.
type RebuildConfig struct {
	EventStore eventstore.Config
	DataDir    string // the projector's data directory; default ./data/projector
}

// RebuildResult describes a finished rebuild.
type RebuildResult struct {
	Events     int
	Rows       int
	Checkpoint uint64
	Took       time.Duration
}

// Rebuild is the audit replay: it folds every prescription event in $all
// into a fresh read model, then swaps it in for the live one. The projector
// must be stopped; Rebuild holds its ledger to make sure. progress, if set,
// is called as events are read.
func Rebuild(ctx context.Context, cfg RebuildConfig, progress func(events int, position uint64)) (res RebuildResult, err error) {
	start := time.Now()
	if err := validateTables(); err != nil {
		return res, fmt.Errorf("rebuild: %w", err)
	}
	cfg.DataDir = cmp.Or(cfg.DataDir, filepath.Join("data", "projector"))
	held, err := ledger.Open(filepath.Join(cfg.DataDir, "ledger"))
	if err != nil {
		return res, fmt.Errorf("rebuild: %w", err)
	}
	defer held.Close()
	store, err := eventstore.Open(cfg.EventStore)
	if err != nil {
		return res, err
	}
	defer store.Close()

	counted := func(n int, pos uint64) {
		res.Events = n
		if progress != nil {
			progress(n, pos)
		}
	}
	replayed, err := projections.Replay(ctx, store, counted)
	if err != nil {
		return res, err
	}
	live := filepath.Join(cfg.DataDir, "readmodel.db")
	fresh := filepath.Join(cfg.DataDir, "readmodel.rebuild.db")
	for _, f := range []string{fresh, fresh + "-wal", fresh + "-shm"} {
		if err := os.Remove(f); err != nil && !errors.Is(err, os.ErrNotExist) {
			return res, err
		}
	}
	rm, err := readmodel.Open(fresh)
	if err != nil {
		return res, err
	}
	if err := errors.Join(rm.BulkLoad(ctx, replayed.Rows, replayed.Waiting, replayed.Checkpoint), rm.Close()); err != nil {
		return res, fmt.Errorf("load rebuilt read model: %w", err)
	}
	if err := readmodel.Swap(live, fresh); err != nil {
		return res, err
	}
	res.Rows, res.Checkpoint, res.Took = len(replayed.Rows), replayed.Checkpoint, time.Since(start)
	return res, nil
}

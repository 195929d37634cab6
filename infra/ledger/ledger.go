// Package ledger is the reactors' durable memory in Pebble: one checkpoint
// per projector and the outcome of every side effect. It implements
// projections.Ledger. Pebble locks its directory, so two processes can
// never run the same reactors on one ledger.
package ledger

import (
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"sync"

	"github.com/cockroachdb/pebble/v2"

	"rxflow/infra/pebbledb"

	"rxflow/projections"
)

// Key prefixes of the one keyspace.
const (
	checkpointPrefix = "checkpoint/" // + projector -> big-endian position
	effectPrefix     = "effect/"     // + effect id -> JSON Effect
	parkedPrefix     = "parked/"     // + effect id -> JSON Effect, as parked
	parkedEnd        = "parked0"     // just past every parked key: '0' follows '/'
)

// legacyFile is the bbolt ledger file of earlier versions.
const legacyFile = "ledger.db"

// Ledger is a Pebble-backed projections.Ledger.
type Ledger struct {
	db *pebble.DB
	mu sync.Mutex // serializes the checkpoint's read-modify-write
}

// Open opens (or creates) the ledger directory at path. It fails if the
// ledger is already open, or if an earlier version's ledger file sits next
// to it.
func Open(path string) (*Ledger, error) {
	legacy := filepath.Join(filepath.Dir(path), legacyFile)
	switch fi, err := os.Stat(legacy); {
	case err == nil && fi.Mode().IsRegular():
		return nil, fmt.Errorf("ledger: %s is a ledger written by an earlier version (bbolt); this version keeps it in %s (Pebble). "+
			"Replaying side effects from an empty ledger would repeat partner calls: migrate or remove it deliberately", legacy, path)
	case err != nil && !errors.Is(err, fs.ErrNotExist):
		return nil, fmt.Errorf("ledger: %w", err)
	}
	db, err := pebbledb.Open(path, "ledger", slog.Default())
	if err != nil {
		return nil, fmt.Errorf("ledger %s (is a projector using it?): %w", path, err)
	}
	return &Ledger{db: db}, nil
}

// Close closes the store.
func (l *Ledger) Close() error { return l.db.Close() }

// Checkpoint implements projections.Ledger.
func (l *Ledger) Checkpoint(_ context.Context, projector string) (uint64, error) {
	return l.checkpoint(projector)
}

func (l *Ledger) checkpoint(projector string) (uint64, error) {
	v, closer, err := l.db.Get([]byte(checkpointPrefix + projector))
	if errors.Is(err, pebble.ErrNotFound) {
		return 0, nil
	}
	if err != nil {
		return 0, err
	}
	defer closer.Close()
	if len(v) != 8 {
		return 0, fmt.Errorf("ledger: checkpoint of %s: bad value %x", projector, v)
	}
	return binary.BigEndian.Uint64(v), nil
}

// SaveCheckpoint implements projections.Ledger; the checkpoint only moves forward.
func (l *Ledger) SaveCheckpoint(_ context.Context, projector string, position uint64) error {
	return l.commit(projector, position, func(*pebble.Batch) error { return nil })
}

// Effect implements projections.Ledger.
func (l *Ledger) Effect(_ context.Context, id string) (e projections.Effect, found bool, err error) {
	v, closer, err := l.db.Get([]byte(effectPrefix + id))
	if errors.Is(err, pebble.ErrNotFound) {
		return e, false, nil
	}
	if err != nil {
		return e, false, err
	}
	defer closer.Close()
	return e, true, json.Unmarshal(v, &e)
}

// Record implements projections.Ledger: the effect, its parked entry if
// parked (removed otherwise), and the checkpoint are written in one synced
// batch.
func (l *Ledger) Record(_ context.Context, e projections.Effect, position uint64) error {
	v, err := json.Marshal(e)
	if err != nil {
		return err
	}
	return l.commit(e.Projector, position, func(b *pebble.Batch) error {
		if err := b.Set([]byte(effectPrefix+e.ID), v, nil); err != nil {
			return err
		}
		if e.Status == projections.EffectParked {
			return b.Set([]byte(parkedPrefix+e.ID), v, nil)
		}
		return b.Delete([]byte(parkedPrefix+e.ID), nil) // a retried effect leaves the parked list
	})
}

// commit writes fill's batch, plus the projector's checkpoint if position
// is further, durably and atomically.
func (l *Ledger) commit(projector string, position uint64, fill func(*pebble.Batch) error) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	b := l.db.NewBatch()
	defer b.Close()
	if err := fill(b); err != nil {
		return err
	}
	cur, err := l.checkpoint(projector)
	if err != nil {
		return err
	}
	if position > cur {
		if err := b.Set([]byte(checkpointPrefix+projector), binary.BigEndian.AppendUint64(nil, position), nil); err != nil {
			return err
		}
	}
	if b.Empty() {
		return nil
	}
	return b.Commit(pebble.Sync)
}

// Parked implements projections.ParkedEffects.
func (l *Ledger) Parked(context.Context) ([]projections.Effect, error) {
	it, err := l.db.NewIter(&pebble.IterOptions{
		LowerBound: []byte(parkedPrefix),
		UpperBound: []byte(parkedEnd),
	})
	if err != nil {
		return nil, err
	}
	defer it.Close()
	var out []projections.Effect
	for it.First(); it.Valid(); it.Next() {
		v, err := it.ValueAndErr()
		if err != nil {
			return nil, err
		}
		var e projections.Effect
		if err := json.Unmarshal(v, &e); err != nil {
			return nil, err
		}
		out = append(out, e)
	}
	if err := it.Error(); err != nil {
		return nil, err
	}
	slices.SortFunc(out, func(a, b projections.Effect) int { return a.At.Compare(b.At) })
	return out, nil
}

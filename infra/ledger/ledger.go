// Package ledger is the reactors' durable memory in bbolt: one checkpoint
// per projector and the outcome of every side effect. It implements
// projections.Ledger. bbolt locks its file, so two processes can never run
// the same reactors on one ledger.
package ledger

import (
	"context"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"time"

	bolt "go.etcd.io/bbolt"

	"rxflow/projections"
)

var (
	checkpoints = []byte("checkpoints") // projector -> big-endian position
	effects     = []byte("effects")     // effect id -> JSON Effect
	parked      = []byte("parked")      // effect id -> JSON Effect, while parked
)

// Ledger is a bbolt-backed projections.Ledger.
type Ledger struct {
	db *bolt.DB
}

// Open opens (or creates) the ledger file at path. It fails if another
// process holds it.
func Open(path string) (*Ledger, error) {
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return nil, err
	}
	db, err := bolt.Open(path, 0o600, &bolt.Options{Timeout: 2 * time.Second})
	if err != nil {
		return nil, fmt.Errorf("ledger %s: %w", path, err)
	}
	err = db.Update(func(tx *bolt.Tx) error {
		for _, b := range [][]byte{checkpoints, effects, parked} {
			if _, err := tx.CreateBucketIfNotExists(b); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		db.Close()
		return nil, err
	}
	return &Ledger{db: db}, nil
}

// Close closes the file.
func (l *Ledger) Close() error { return l.db.Close() }

// Checkpoint implements projections.Ledger.
func (l *Ledger) Checkpoint(_ context.Context, projector string) (pos uint64, err error) {
	err = l.db.View(func(tx *bolt.Tx) error {
		if v := tx.Bucket(checkpoints).Get([]byte(projector)); len(v) == 8 {
			pos = binary.BigEndian.Uint64(v)
		}
		return nil
	})
	return pos, err
}

// SaveCheckpoint implements projections.Ledger; the checkpoint only moves forward.
func (l *Ledger) SaveCheckpoint(_ context.Context, projector string, position uint64) error {
	return l.db.Update(func(tx *bolt.Tx) error { return saveCheckpoint(tx, projector, position) })
}

func saveCheckpoint(tx *bolt.Tx, projector string, position uint64) error {
	b := tx.Bucket(checkpoints)
	if v := b.Get([]byte(projector)); len(v) == 8 && binary.BigEndian.Uint64(v) >= position {
		return nil
	}
	return b.Put([]byte(projector), binary.BigEndian.AppendUint64(nil, position))
}

// Effect implements projections.Ledger.
func (l *Ledger) Effect(_ context.Context, id string) (e projections.Effect, found bool, err error) {
	err = l.db.View(func(tx *bolt.Tx) error {
		v := tx.Bucket(effects).Get([]byte(id))
		if v == nil {
			return nil
		}
		found = true
		return json.Unmarshal(v, &e)
	})
	return e, found, err
}

// Record implements projections.Ledger.
func (l *Ledger) Record(_ context.Context, e projections.Effect, position uint64) error {
	v, err := json.Marshal(e)
	if err != nil {
		return err
	}
	return l.db.Update(func(tx *bolt.Tx) error {
		if err := tx.Bucket(effects).Put([]byte(e.ID), v); err != nil {
			return err
		}
		if e.Status == projections.EffectParked {
			if err := tx.Bucket(parked).Put([]byte(e.ID), v); err != nil {
				return err
			}
		}
		return saveCheckpoint(tx, e.Projector, position)
	})
}

// Parked implements projections.ParkedEffects.
func (l *Ledger) Parked(context.Context) ([]projections.Effect, error) {
	var out []projections.Effect
	err := l.db.View(func(tx *bolt.Tx) error {
		return tx.Bucket(parked).ForEach(func(_, v []byte) error {
			var e projections.Effect
			if err := json.Unmarshal(v, &e); err != nil {
				return err
			}
			out = append(out, e)
			return nil
		})
	})
	slices.SortFunc(out, func(a, b projections.Effect) int { return a.At.Compare(b.At) })
	return out, err
}

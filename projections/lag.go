package projections

import (
	"context"
	"slices"
	"sync"
	"time"

	"rxflow/events"
)

// LagTracker measures how far behind each projector is, in events and in
// seconds. It is itself a projector, run on the feed from the lowest
// checkpoint: it remembers the position and time of every event that some
// projector has not handled yet.
type LagTracker struct {
	mu        sync.Mutex
	positions []uint64    // events not yet handled by every projector, ascending
	created   []time.Time // when each of them was stored
	handled   map[string]uint64
	seen      uint64 // position of the last event observed
	now       func() time.Time
}

// NewLagTracker tracks the named projectors from their checkpoints.
func NewLagTracker(checkpoints map[string]uint64, now func() time.Time) *LagTracker {
	t := &LagTracker{handled: make(map[string]uint64, len(checkpoints)), now: now}
	first := true
	for name, pos := range checkpoints {
		t.handled[name] = pos
		if first || pos < t.seen {
			t.seen, first = pos, false
		}
	}
	return t
}

// NewLagTrackerAfter tracks the projectors that report later (Handled),
// observing the events after position: the lowest checkpoint any of them
// can start from, so that the tracker's runner does not read $all before it.
func NewLagTrackerAfter(position uint64, now func() time.Time) *LagTracker {
	t := NewLagTracker(nil, now)
	t.seen = position
	return t
}

// Handled records that projector has handled everything up to position.
func (t *LagTracker) Handled(projector string, position uint64) {
	t.mu.Lock()
	defer t.mu.Unlock()
	old, known := t.handled[projector]
	t.handled[projector] = position
	if len(t.positions) == 0 || (known && old >= t.positions[0]) {
		return // another projector has not handled the oldest event kept
	}
	low := position
	for _, p := range t.handled {
		low = min(low, p)
	}
	if n, _ := slices.BinarySearch(t.positions, low+1); n > 0 {
		t.positions, t.created = slices.Delete(t.positions, 0, n), slices.Delete(t.created, 0, n)
	}
}

// Forget stops tracking projector (a runner of a segment given up), so
// that the events it had not handled are no longer kept for it.
func (t *LagTracker) Forget(projector string) {
	t.mu.Lock()
	defer t.mu.Unlock()
	delete(t.handled, projector)
	low, any := uint64(0), false
	for _, p := range t.handled {
		if !any || p < low {
			low, any = p, true
		}
	}
	if !any {
		low = t.seen
	}
	if n, _ := slices.BinarySearch(t.positions, low+1); n > 0 {
		t.positions, t.created = slices.Delete(t.positions, 0, n), slices.Delete(t.created, 0, n)
	}
}

// Lag returns how many observed events projector has not handled, and the
// age of the oldest of them.
func (t *LagTracker) Lag(projector string) (behind int, age time.Duration) {
	t.mu.Lock()
	defer t.mu.Unlock()
	i, _ := slices.BinarySearch(t.positions, t.handled[projector]+1)
	if i == len(t.positions) {
		return 0, 0
	}
	return len(t.positions) - i, t.now().Sub(t.created[i])
}

// Name implements Projector.
func (t *LagTracker) Name() string { return "lag-tracker" }

// Checkpoint implements Projector: the tracker remembers in memory only.
func (t *LagTracker) Checkpoint(context.Context) (uint64, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.seen, nil
}

// Handle implements Projector: it observes a stored event.
func (t *LagTracker) Handle(_ context.Context, rec events.Recorded) error {
	t.mu.Lock()
	defer t.mu.Unlock()
	if rec.Position <= t.seen {
		return nil
	}
	t.seen = rec.Position
	for _, p := range t.handled {
		if p < rec.Position {
			t.positions = append(t.positions, rec.Position)
			t.created = append(t.created, rec.Created)
			break
		}
	}
	return nil
}

// SaveCheckpoint implements Projector.
func (t *LagTracker) SaveCheckpoint(context.Context, uint64) error { return nil }

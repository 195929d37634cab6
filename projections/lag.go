package projections

import (
	"cmp"
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
	mu      sync.Mutex
	pending []observed // events not yet handled by every projector, by position
	handled map[string]uint64
	seen    uint64 // position of the last event observed
	now     func() time.Time
}

// observed is one event some projector has not handled yet.
type observed struct {
	position uint64
	created  time.Time // when it was stored
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
	if len(t.pending) == 0 || (known && old >= t.pending[0].position) {
		return // another projector has not handled the oldest event kept
	}
	low := position
	for _, p := range t.handled {
		low = min(low, p)
	}
	t.drop(low)
}

// drop forgets the events up to position low. It reslices rather than
// copies, so that handling an event costs the same however long the
// backlog is: the dropped front is freed when append next grows the slice.
func (t *LagTracker) drop(low uint64) {
	t.pending = t.pending[t.after(low):]
}

// after is the index of the first pending event after position.
func (t *LagTracker) after(position uint64) int {
	i, _ := slices.BinarySearchFunc(t.pending, position+1, func(o observed, p uint64) int { return cmp.Compare(o.position, p) })
	return i
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
	t.drop(low)
}

// Lag returns how many observed events projector has not handled, and the
// age of the oldest of them.
func (t *LagTracker) Lag(projector string) (behind int, age time.Duration) {
	t.mu.Lock()
	defer t.mu.Unlock()
	i := t.after(t.handled[projector])
	if i == len(t.pending) {
		return 0, 0
	}
	return len(t.pending) - i, t.now().Sub(t.pending[i].created)
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
			t.pending = append(t.pending, observed{position: rec.Position, created: rec.Created})
			break
		}
	}
	return nil
}

// SaveCheckpoint implements Projector.
func (t *LagTracker) SaveCheckpoint(context.Context, uint64) error { return nil }

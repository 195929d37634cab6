package projections

import (
	"errors"
	"hash/fnv"
)

// The event space is split into segments by a stable hash of the stream
// name (the prescription's urn), in the manner of Axon's tracking segments:
// every event of one prescription falls in one segment, so one instance
// handles it, in order. Each instance holds the segments it has a Lease on.

// SegmentOf is the segment of stream among count segments: the FNV-1a
// (32-bit) hash of its bytes, modulo count. It must never change: every
// stored checkpoint is per segment.
func SegmentOf(stream string, count int) int {
	if count <= 1 {
		return 0
	}
	h := fnv.New32a()
	h.Write([]byte(stream))
	return int(h.Sum32() % uint32(count))
}

// Lease is an instance's right to handle one segment of Count. Token grows
// with every claim of the segment: a store refuses a write made under an
// older token with ErrLeaseLost, so an instance that lost its lease (paused,
// partitioned) can never apply stale work (fencing).
type Lease struct {
	Segment int
	Count   int   // segments in all; ≥ 1
	Token   int64 // the claim's fencing token
}

// Whole is the lease of a store that is not shared: one segment holding
// every stream, never fenced (SQLite and Pebble, one projector).
var Whole = Lease{Segment: 0, Count: 1}

// Covers reports whether stream's events fall in l's segment.
func (l Lease) Covers(stream string) bool { return SegmentOf(stream, l.Count) == l.Segment }

// ErrLeaseLost is returned by a store's write under a lease that another
// instance has claimed since: nothing was written, and the segment must be
// given up.
var ErrLeaseLost = errors.New("segment lease lost")

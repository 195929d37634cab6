package projections

import (
	"fmt"
	"testing"
)

// The hash is pinned (expected values from an independent FNV-1a in Python): stored checkpoints are per segment, so a change would
// hand every prescription to another segment's checkpoint.
func TestSegmentOfIsPinned(t *testing.T) {
	for _, tc := range []struct {
		stream string
		count  int
		want   int
	}{
		{"urn:rx:1", 1, 0},
		{"urn:rx:1", 4, 1},
		{"urn:rx:2", 4, 0},
		{"urn:rx:3", 4, 3},
		{"urn:rx:abc", 16, 6},
	} {
		if got := SegmentOf(tc.stream, tc.count); got != tc.want {
			t.Errorf("SegmentOf(%q, %d) = %d, want %d", tc.stream, tc.count, got, tc.want)
		}
	}
}

func TestSegmentsSpreadStreams(t *testing.T) {
	const count, streams = 8, 8000
	per := make([]int, count)
	for i := range streams {
		per[SegmentOf(fmt.Sprintf("urn:rx:%d", i), count)]++
	}
	for s, n := range per {
		if n < streams/count*8/10 || n > streams/count*12/10 {
			t.Errorf("segment %d holds %d of %d streams, want within 20%% of %d", s, n, streams, streams/count)
		}
	}
	if !(Lease{Segment: SegmentOf("urn:rx:9", 3), Count: 3}).Covers("urn:rx:9") || !Whole.Covers("urn:rx:9") {
		t.Error("a lease does not cover a stream of its segment")
	}
}

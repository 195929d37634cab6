package esdbtest

import (
	"strings"
	"testing"

	"github.com/EventStore/EventStore-Client-Go/v4/esdb"
	"github.com/google/uuid"
)

// appended records one event and the position its append reported (only
// meaningful for the last event of an append).
type appended struct {
	stream   string
	revision uint64
	event    esdb.EventData
	result   *esdb.WriteResult
}

func position(r *esdb.WriteResult) esdb.Position {
	return esdb.Position{Commit: r.CommitPosition, Prepare: r.PreparePosition}
}

func less(a, b esdb.Position) bool {
	return a.Commit < b.Commit || (a.Commit == b.Commit && a.Prepare < b.Prepare)
}

// requireWellFormed asserts commit == prepare and a non-zero position.
func requireWellFormed(t *testing.T, what string, p esdb.Position) {
	t.Helper()
	if p.Commit == 0 || p.Commit != p.Prepare {
		t.Fatalf("%s: position %+v, want non-zero with commit == prepare", what, p)
	}
}

// readAllUntil reads $all from opts until every id in want has been seen,
// returning every event read (ours and others).
func (s *suite) readAllUntil(t *testing.T, opts esdb.ReadAllOptions, want map[uuid.UUID]bool) []*esdb.RecordedEvent {
	t.Helper()
	rs, err := s.client.ReadAll(ctxFor(t), opts, 100_000)
	if err != nil {
		t.Fatalf("read $all: %v", err)
	}
	defer rs.Close()
	var out []*esdb.RecordedEvent
	seen := 0
	for seen < len(want) {
		ev, err := rs.Recv()
		if err != nil {
			t.Fatalf("read $all after %d events (%d of ours of %d): %v", len(out), seen, len(want), err)
		}
		rec := ev.OriginalEvent()
		out = append(out, rec)
		if want[rec.EventID] {
			seen++
		}
	}
	return out
}

func (s *suite) allTests() []namedTest {
	// setup appends six single events round-robin to three streams, then one
	// three-event batch, all sequentially so their $all order is known.
	setup := func(t *testing.T) (string, []appended) {
		prefix := streamName("all")
		streams := []string{prefix + "-a", prefix + "-b", prefix + "-c"}
		var log []appended
		var last esdb.Position
		revs := map[string]uint64{}
		for i := 0; i < 6; i++ {
			stream := streams[i%3]
			ev := newEvent("AllTested")
			res := s.mustAppend(t, stream, esdb.Any{}, ev)
			p := position(res)
			requireWellFormed(t, "append result", p)
			if !less(last, p) {
				t.Fatalf("append %d: position %+v not after previous %+v", i, p, last)
			}
			last = p
			log = append(log, appended{stream, revs[stream], ev, res})
			revs[stream]++
		}
		batch := newEvents(3, "AllTested")
		res := s.mustAppend(t, streams[0], esdb.Revision(1), batch...)
		p := position(res)
		requireWellFormed(t, "batch append result", p)
		if !less(last, p) {
			t.Fatalf("batch append: position %+v not after previous %+v", p, last)
		}
		for i, ev := range batch {
			var r *esdb.WriteResult
			if i == len(batch)-1 {
				r = res
			}
			log = append(log, appended{streams[0], uint64(2 + i), ev, r})
		}
		return prefix, log
	}
	ids := func(log []appended) map[uuid.UUID]bool {
		m := map[uuid.UUID]bool{}
		for _, a := range log {
			m[a.event.EventID] = true
		}
		return m
	}
	ours := func(prefix string, events []*esdb.RecordedEvent) []*esdb.RecordedEvent {
		var out []*esdb.RecordedEvent
		for _, e := range events {
			if strings.HasPrefix(e.StreamID, prefix) {
				out = append(out, e)
			}
		}
		return out
	}
	return []namedTest{
		{"ForwardsFromPositionIncludesIt", func(t *testing.T) {
			prefix, log := setup(t)
			from := position(log[0].result)
			all := s.readAllUntil(t, esdb.ReadAllOptions{Direction: esdb.Forwards, From: from}, ids(log))
			if all[0].EventID != log[0].event.EventID || all[0].Position != from {
				t.Fatalf("first event read forwards from %+v: got %s at %+v, want %s there", from, all[0].EventID, all[0].Position, log[0].event.EventID)
			}
			for i := 1; i < len(all); i++ {
				if !less(all[i-1].Position, all[i].Position) {
					t.Fatalf("$all forwards: position %+v follows %+v", all[i].Position, all[i-1].Position)
				}
			}
			mine := ours(prefix, all)
			if len(mine) != len(log) {
				t.Fatalf("$all forwards: got %d of our events, want %d", len(mine), len(log))
			}
			for i, rec := range mine {
				requireWellFormed(t, "$all event", rec.Position)
				requireEvent(t, rec, log[i].stream, log[i].revision, log[i].event)
				if log[i].result != nil && rec.Position != position(log[i].result) {
					t.Fatalf("event %d: $all position %+v, its append reported %+v", i, rec.Position, position(log[i].result))
				}
			}
		}},
		{"BackwardsFromPositionExcludesIt", func(t *testing.T) {
			prefix, log := setup(t)
			lastIdx := len(log) - 1
			from := position(log[lastIdx].result)
			want := ids(log[:lastIdx])
			all := s.readAllUntil(t, esdb.ReadAllOptions{Direction: esdb.Backwards, From: from}, want)
			for i, rec := range all {
				if !less(rec.Position, from) {
					t.Fatalf("$all backwards from %+v returned event at %+v", from, rec.Position)
				}
				if i > 0 && !less(rec.Position, all[i-1].Position) {
					t.Fatalf("$all backwards: position %+v follows %+v", rec.Position, all[i-1].Position)
				}
			}
			mine := ours(prefix, all)
			if len(mine) != lastIdx {
				t.Fatalf("$all backwards: got %d of our events, want %d", len(mine), lastIdx)
			}
			for i, rec := range mine {
				a := log[lastIdx-1-i]
				requireEvent(t, rec, a.stream, a.revision, a.event)
			}
		}},
		{"StreamReadPositionsMatchAll", func(t *testing.T) {
			_, log := setup(t)
			for _, a := range log {
				if a.result == nil {
					continue
				}
				got := s.mustReadStream(t, a.stream, esdb.ReadStreamOptions{From: esdb.Revision(a.revision)}, 1)
				if len(got) != 1 || got[0].OriginalEvent().Position != position(a.result) {
					t.Fatalf("%s@%d: stream read gave %d events, want one at %+v", a.stream, a.revision, len(got), position(a.result))
				}
			}
		}},
		{"EndIsAfterLastAppend", func(t *testing.T) {
			_, log := setup(t)
			lastAppend := position(log[len(log)-1].result)
			if end := s.lastAllPosition(t); less(end, lastAppend) {
				t.Fatalf("last $all position %+v is before our last append at %+v", end, lastAppend)
			}
		}},
		{"ForwardsFromStart", func(t *testing.T) {
			setup(t)
			rs, err := s.client.ReadAll(ctxFor(t), esdb.ReadAllOptions{From: esdb.Start{}}, 5)
			if err != nil {
				t.Fatalf("read $all: %v", err)
			}
			defer rs.Close()
			events, err := drain(rs)
			if err != nil || len(events) != 5 {
				t.Fatalf("read 5 from $all start: got %d events, err %v", len(events), err)
			}
			for i, ev := range events {
				requireWellFormed(t, "$all event", ev.OriginalEvent().Position)
				if i > 0 && !less(events[i-1].OriginalEvent().Position, ev.OriginalEvent().Position) {
					t.Fatalf("$all from start: position %+v follows %+v", ev.OriginalEvent().Position, events[i-1].OriginalEvent().Position)
				}
			}
		}},
	}
}

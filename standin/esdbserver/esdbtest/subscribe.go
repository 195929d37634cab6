package esdbtest

import (
	"context"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/EventStore/EventStore-Client-Go/v4/esdb"
	"github.com/google/uuid"
)

func (s *suite) subscribeStream(t *testing.T, stream string, from esdb.StreamPosition) *subReader {
	t.Helper()
	sub, err := s.client.SubscribeToStream(ctxFor(t), stream, esdb.SubscribeToStreamOptions{From: from})
	if err != nil {
		t.Fatalf("subscribe to %s: %v", stream, err)
	}
	return readSub(t, sub)
}

func (s *suite) subscribeAll(t *testing.T, opts esdb.SubscribeToAllOptions) *subReader {
	t.Helper()
	sub, err := s.client.SubscribeToAll(ctxFor(t), opts)
	if err != nil {
		t.Fatalf("subscribe to $all: %v", err)
	}
	return readSub(t, sub)
}

// expectStream asserts the next events of r are want at revisions first...
func expectStream(t *testing.T, r *subReader, stream string, first uint64, want ...esdb.EventData) {
	t.Helper()
	for i, ev := range want {
		requireEvent(t, r.nextEvent(t), stream, first+uint64(i), ev)
	}
}

// filterCase is one server-side $all filter and the predicate it must equal.
type filterCase struct {
	name   string
	filter func(base, typeTok string) *esdb.SubscriptionFilter
	match  func(stream, eventType, base, typeTok string) bool
}

var filterCases = []filterCase{
	{
		name: "StreamPrefix",
		filter: func(base, _ string) *esdb.SubscriptionFilter {
			return &esdb.SubscriptionFilter{Type: esdb.StreamFilterType, Prefixes: []string{base + "-a", base + "-c"}}
		},
		match: func(stream, _, base, _ string) bool {
			return strings.HasPrefix(stream, base+"-a") || strings.HasPrefix(stream, base+"-c")
		},
	},
	{
		name: "StreamRegex",
		filter: func(base, _ string) *esdb.SubscriptionFilter {
			return &esdb.SubscriptionFilter{Type: esdb.StreamFilterType, Regex: "^" + regexp.QuoteMeta(base) + "-(b|c)$"}
		},
		match: func(stream, _, base, _ string) bool { return stream == base+"-b" || stream == base+"-c" },
	},
	{
		name: "EventTypePrefix",
		filter: func(_, tok string) *esdb.SubscriptionFilter {
			return &esdb.SubscriptionFilter{Type: esdb.EventFilterType, Prefixes: []string{tok + "Al"}}
		},
		match: func(_, eventType, _, tok string) bool { return strings.HasPrefix(eventType, tok+"Al") },
	},
	{
		name: "EventTypeRegex",
		filter: func(_, tok string) *esdb.SubscriptionFilter {
			return &esdb.SubscriptionFilter{Type: esdb.EventFilterType, Regex: "^" + tok + "Beta$"}
		},
		match: func(_, eventType, _, tok string) bool { return eventType == tok+"Beta" },
	},
}

func (s *suite) subscriptionTests() []namedTest {
	tests := []namedTest{
		{"StreamFromStartBeforeItExists", func(t *testing.T) {
			stream := streamName("substart")
			r := s.subscribeStream(t, stream, esdb.Start{})
			e := newEvents(5, "SubTested")
			s.mustAppend(t, stream, esdb.NoStream{}, e[:3]...)
			expectStream(t, r, stream, 0, e[:3]...)
			s.mustAppend(t, stream, esdb.Revision(2), e[3:]...)
			expectStream(t, r, stream, 3, e[3:]...)
		}},
		{"StreamFromStartCatchesUp", func(t *testing.T) {
			stream := streamName("subcatchup")
			e := newEvents(5, "SubTested")
			s.mustAppend(t, stream, esdb.NoStream{}, e[:3]...)
			r := s.subscribeStream(t, stream, esdb.Start{})
			expectStream(t, r, stream, 0, e[:3]...)
			s.mustAppend(t, stream, esdb.Revision(2), e[3:]...)
			expectStream(t, r, stream, 3, e[3:]...)
		}},
		{"StreamFromEnd", func(t *testing.T) {
			stream := streamName("subend")
			e := newEvents(5, "SubTested")
			s.mustAppend(t, stream, esdb.NoStream{}, e[:3]...)
			r := s.subscribeStream(t, stream, esdb.End{})
			s.mustAppend(t, stream, esdb.Revision(2), e[3:]...)
			expectStream(t, r, stream, 3, e[3:]...)
		}},
		{"StreamFromRevisionStartsAfterIt", func(t *testing.T) {
			stream := streamName("subrev")
			e := newEvents(7, "SubTested")
			s.mustAppend(t, stream, esdb.NoStream{}, e[:5]...)
			r := s.subscribeStream(t, stream, esdb.Revision(1))
			expectStream(t, r, stream, 2, e[2:5]...)
			s.mustAppend(t, stream, esdb.Revision(4), e[5])
			s.mustAppend(t, stream, esdb.Revision(5), e[6])
			expectStream(t, r, stream, 5, e[5:]...)
		}},
		{"AllFromStart", func(t *testing.T) {
			stream := streamName("suballstart")
			e := newEvents(3, "SubTested")
			s.mustAppend(t, stream, esdb.NoStream{}, e...)
			r := s.subscribeAll(t, esdb.SubscribeToAllOptions{From: esdb.Start{}})
			var prev esdb.Position
			for i := 0; i < len(e); {
				ev := r.nextEvent(t)
				if !less(prev, ev.Position) {
					t.Fatalf("$all subscription: position %+v follows %+v", ev.Position, prev)
				}
				prev = ev.Position
				if ev.StreamID == stream {
					requireEvent(t, ev, stream, uint64(i), e[i])
					i++
				}
			}
		}},
		{"AllFromEnd", func(t *testing.T) {
			before := s.lastAllPosition(t)
			r := s.subscribeAll(t, esdb.SubscribeToAllOptions{From: esdb.End{}})
			stream := streamName("suballend")
			e := newEvents(3, "SubTested")
			s.mustAppend(t, stream, esdb.NoStream{}, e...)
			for i := 0; i < len(e); {
				ev := r.nextEvent(t)
				if !less(before, ev.Position) {
					t.Fatalf("$all subscription from end delivered %+v, which precedes the end %+v", ev.Position, before)
				}
				if ev.StreamID == stream {
					requireEvent(t, ev, stream, uint64(i), e[i])
					i++
				}
			}
		}},
		{"AllFromPositionStartsAfterIt", func(t *testing.T) {
			// Resuming from a stored position yields exactly the events after it.
			stream := streamName("suballpos")
			e := newEvents(7, "SubTested")
			var positions []esdb.Position
			for i := 0; i < 5; i++ {
				positions = append(positions, position(s.mustAppend(t, stream, esdb.Any{}, e[i])))
			}
			stored := positions[1]
			r := s.subscribeAll(t, esdb.SubscribeToAllOptions{From: stored})
			next := func() *esdb.RecordedEvent {
				for {
					ev := r.nextEvent(t)
					if !less(stored, ev.Position) {
						t.Fatalf("resumed from %+v but got event at %+v", stored, ev.Position)
					}
					if ev.StreamID == stream {
						return ev
					}
				}
			}
			for i := 2; i < 5; i++ {
				ev := next()
				requireEvent(t, ev, stream, uint64(i), e[i])
				if ev.Position != positions[i] {
					t.Fatalf("event %d: position %+v, append reported %+v", i, ev.Position, positions[i])
				}
			}
			s.mustAppend(t, stream, esdb.Revision(4), e[5])
			s.mustAppend(t, stream, esdb.Revision(5), e[6])
			requireEvent(t, next(), stream, 5, e[5])
			requireEvent(t, next(), stream, 6, e[6])
		}},
		{"FilterCheckpoints", s.testFilterCheckpoints},
		{"CatchUpToLiveStream", s.testCatchUpToLiveStream},
		{"CatchUpToLiveAll", s.testCatchUpToLiveAll},
	}
	for _, fc := range filterCases {
		tests = append(tests, namedTest{"Filter" + fc.name, func(t *testing.T) { s.testFilter(t, fc) }})
	}
	return tests
}

// testFilter writes a mix of streams and types, subscribes to $all from a
// position before them with a server-side filter, and requires exactly the
// matching events in $all order, then a live matching one.
func (s *suite) testFilter(t *testing.T, fc filterCase) {
	base := streamName("filter")
	other := streamName("filterother")
	tok := "T" + strings.ReplaceAll(uuid.NewString(), "-", "")
	writes := []struct{ stream, eventType string }{
		{base + "-a", tok + "Alpha"},
		{base + "-b", tok + "Beta"},
		{base + "-c", tok + "Alpha"},
		{other, tok + "Beta"},
		{base + "-a", tok + "Beta"},
		{base + "-c", tok + "Beta"},
		{base + "-b", tok + "Alpha"},
		{base + "-ab", tok + "Gamma"},
	}
	from := position(s.mustAppend(t, streamName("filtermarker"), esdb.Any{}, newEvent("FilterMarker")))
	var want []esdb.EventData
	var wantStreams []string
	for _, w := range writes {
		ev := newEvent(w.eventType)
		s.mustAppend(t, w.stream, esdb.Any{}, ev)
		if fc.match(w.stream, w.eventType, base, tok) {
			want = append(want, ev)
			wantStreams = append(wantStreams, w.stream)
		}
	}
	r := s.subscribeAll(t, esdb.SubscribeToAllOptions{
		From:   from,
		Filter: fc.filter(base, tok),
	})
	check := func(ev esdb.EventData, stream string) {
		t.Helper()
		got := r.nextEvent(t)
		if got.EventID != ev.EventID {
			t.Fatalf("filtered subscription: got %s event %s (%s), want %s event %s", got.StreamID, got.EventID, got.EventType, stream, ev.EventID)
		}
		if got.StreamID != stream || got.EventType != ev.EventType {
			t.Fatalf("filtered subscription: got %s/%s, want %s/%s", got.StreamID, got.EventType, stream, ev.EventType)
		}
	}
	for i, ev := range want {
		check(ev, wantStreams[i])
	}
	// A live event that matches every filter here; nothing may come before it.
	live := newEvent(tok + "AlphaBeta")
	liveStream := base + "-c"
	if fc.name == "EventTypeRegex" {
		live.EventType = tok + "Beta"
	}
	s.mustAppend(t, liveStream, esdb.Any{}, live)
	check(live, liveStream)
}

func (s *suite) testFilterCheckpoints(t *testing.T) {
	from := position(s.mustAppend(t, streamName("cpmarker"), esdb.Any{}, newEvent("CheckpointMarker")))
	r := s.subscribeAll(t, esdb.SubscribeToAllOptions{
		From:               from,
		Filter:             &esdb.SubscriptionFilter{Type: esdb.StreamFilterType, Prefixes: []string{streamName("nomatch")}},
		MaxSearchWindow:    1,
		CheckpointInterval: 1,
	})
	stream := streamName("cp")
	var last *esdb.WriteResult
	for i := 0; i < 20; i++ {
		last = s.mustAppend(t, stream, esdb.Any{}, newEvent("CheckpointTested"))
	}
	target := position(last)
	deadline := time.Now().Add(eventTimeout)
	var prev esdb.Position
	for {
		ev := r.next(t, time.Until(deadline))
		switch {
		case ev.SubscriptionDropped != nil:
			t.Fatalf("subscription dropped: %v", ev.SubscriptionDropped.Error)
		case ev.EventAppeared != nil:
			t.Fatalf("filter matches no stream, yet got event %s in %s", ev.EventAppeared.OriginalEvent().EventID, ev.EventAppeared.OriginalEvent().StreamID)
		case ev.CheckPointReached != nil:
			cp := *ev.CheckPointReached
			if less(cp, from) || less(cp, prev) {
				t.Fatalf("checkpoint %+v goes back (start %+v, previous %+v)", cp, from, prev)
			}
			prev = cp
			if !less(cp, target) {
				return
			}
		}
	}
}

// liveWriters appends perWriter events per writer, in batches of one to
// three, to the stream streamOf(w) with expected revision any. It returns
// once half the load is acknowledged, with a wait function that returns
// every acknowledged event, per stream, in acknowledgement order.
func (s *suite) liveWriters(t *testing.T, writers, perWriter int, streamOf func(int) string) func() map[string][]esdb.EventData {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), opTimeout)
	t.Cleanup(cancel)
	total := writers * perWriter
	type ack struct {
		stream string
		events []esdb.EventData
	}
	acks := make(chan ack, total)
	errs := make(chan error, writers)
	for w := 0; w < writers; w++ {
		go func() {
			stream := streamOf(w)
			for n := 0; n < perWriter; {
				batch := newEvents(min(1+n%3, perWriter-n), "LiveTested")
				if _, err := s.client.AppendToStream(ctx, stream, esdb.AppendToStreamOptions{}, batch...); err != nil {
					errs <- err
					return
				}
				acks <- ack{stream, batch}
				n += len(batch)
			}
			errs <- nil
		}()
	}
	got := map[string][]esdb.EventData{}
	count, finished := 0, 0
	for count < total/2 {
		select {
		case a := <-acks:
			got[a.stream] = append(got[a.stream], a.events...)
			count += len(a.events)
		case err := <-errs:
			if err != nil {
				t.Fatalf("writer: %v", err)
			}
			finished++
		case <-ctx.Done():
			t.Fatalf("writers stalled after %d events", count)
		}
	}
	return func() map[string][]esdb.EventData {
		t.Helper()
		for ; finished < writers; finished++ {
			if err := <-errs; err != nil {
				t.Fatalf("writer: %v", err)
			}
		}
		close(acks)
		for a := range acks {
			got[a.stream] = append(got[a.stream], a.events...)
		}
		return got
	}
}

// testCatchUpToLiveStream subscribes from the start of a stream while four
// writers are appending to it: the subscriber must see every event exactly
// once, at contiguous revisions.
func (s *suite) testCatchUpToLiveStream(t *testing.T) {
	const writers, perWriter = 4, 150
	stream := streamName("livestream")
	wait := s.liveWriters(t, writers, perWriter, func(int) string { return stream })
	r := s.subscribeStream(t, stream, esdb.Start{})
	seen := map[uuid.UUID]bool{}
	var order []uuid.UUID
	for rev := uint64(0); rev < writers*perWriter; rev++ {
		ev := r.nextEvent(t)
		if ev.StreamID != stream || ev.EventNumber != rev {
			t.Fatalf("event %d: got %s@%d, want %s@%d", rev, ev.StreamID, ev.EventNumber, stream, rev)
		}
		if seen[ev.EventID] {
			t.Fatalf("event %s delivered twice", ev.EventID)
		}
		seen[ev.EventID] = true
		order = append(order, ev.EventID)
	}
	for _, ev := range wait()[stream] {
		if !seen[ev.EventID] {
			t.Fatalf("acknowledged event %s never delivered", ev.EventID)
		}
	}
	// The stream must hold the same events in the order delivered.
	stored := s.mustReadStream(t, stream, esdb.ReadStreamOptions{}, writers*perWriter+10)
	if len(stored) != len(order) {
		t.Fatalf("stream holds %d events, delivered %d", len(stored), len(order))
	}
	for i, ev := range stored {
		if ev.OriginalEvent().EventID != order[i] {
			t.Fatalf("revision %d: stream holds %s, subscription delivered %s", i, ev.OriginalEvent().EventID, order[i])
		}
	}
}

// testCatchUpToLiveAll subscribes to $all from a position taken before four
// writers started, while they append to their own streams.
func (s *suite) testCatchUpToLiveAll(t *testing.T) {
	const writers, perWriter = 4, 150
	prefix := streamName("liveall")
	from := position(s.mustAppend(t, prefix+"-marker", esdb.Any{}, newEvent("LiveMarker")))
	streams := make([]string, writers)
	for w := range streams {
		streams[w] = prefix + "-w" + string(rune('a'+w))
	}
	wait := s.liveWriters(t, writers, perWriter, func(w int) string { return streams[w] })
	r := s.subscribeAll(t, esdb.SubscribeToAllOptions{From: from})
	delivered := map[string][]uuid.UUID{}
	seen := map[uuid.UUID]bool{}
	prev := from
	for n := 0; n < writers*perWriter; {
		ev := r.nextEvent(t)
		if !less(prev, ev.Position) {
			t.Fatalf("$all subscription: position %+v follows %+v", ev.Position, prev)
		}
		prev = ev.Position
		if !strings.HasPrefix(ev.StreamID, prefix+"-w") {
			continue
		}
		if seen[ev.EventID] {
			t.Fatalf("event %s delivered twice", ev.EventID)
		}
		seen[ev.EventID] = true
		if want := uint64(len(delivered[ev.StreamID])); ev.EventNumber != want {
			t.Fatalf("%s: got revision %d, want %d (gap or reorder)", ev.StreamID, ev.EventNumber, want)
		}
		delivered[ev.StreamID] = append(delivered[ev.StreamID], ev.EventID)
		n++
	}
	written := wait()
	for _, stream := range streams {
		// Each writer appends sequentially, so its stream order is its ack order.
		want := written[stream]
		if len(want) != len(delivered[stream]) {
			t.Fatalf("%s: delivered %d events, written %d", stream, len(delivered[stream]), len(want))
		}
		for i, ev := range want {
			if delivered[stream][i] != ev.EventID {
				t.Fatalf("%s@%d: delivered %s, written %s", stream, i, delivered[stream][i], ev.EventID)
			}
		}
	}
}

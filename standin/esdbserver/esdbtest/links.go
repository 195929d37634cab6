package esdbtest

import (
	"strings"
	"testing"

	"github.com/EventStore/EventStore-Client-Go/v4/esdb"
	"github.com/google/uuid"
)

// Link events have type "$>" and data "<revision>@<stream>". With
// resolveLinkTos EventStoreDB (StorageReaderWorker.ResolveLinkToEvent)
// returns the target as the event and the link record as the link; a link
// whose target cannot be read (stream tombstoned or soft-deleted, revision
// truncated or missing) comes back with the link and no event; data whose
// revision does not parse is left as a plain event. Subscriptions resolve
// the same way.

// linkFixture is a stream of links to a target stream and to targets that
// are gone.
type linkFixture struct {
	links  string
	target string
	events []esdb.EventData // target stream's events, revision = index
	// want[i] is the target of link i: an index into events, gone, or plain.
	want []int
	data []string // link i's data
	// before is the position of the last event written before the links.
	before esdb.Position
}

const (
	linkGone  = -1 // link without an event
	linkPlain = -2 // not resolved: the record itself is the event
)

func linkEvent(data string) esdb.EventData {
	return esdb.EventData{EventID: uuid.New(), EventType: "$>", ContentType: esdb.ContentTypeBinary, Data: []byte(data)}
}

func (s *suite) linkFixture(t *testing.T) linkFixture {
	t.Helper()
	base := streamName("links")
	f := linkFixture{links: base + "-L", target: base + "-T", events: newEvents(3, "LinkTarget")}
	s.mustAppend(t, f.target, esdb.NoStream{}, f.events...)

	tomb, soft, trunc := base+"-tomb", base+"-soft", base+"-trunc"
	s.mustAppend(t, tomb, esdb.NoStream{}, newEvent("LinkTarget"))
	s.mustAppend(t, soft, esdb.NoStream{}, newEvents(2, "LinkTarget")...)
	f.before = position(s.mustAppend(t, trunc, esdb.NoStream{}, newEvents(3, "LinkTarget")...))

	add := func(data string, want int) {
		f.data, f.want = append(f.data, data), append(f.want, want)
	}
	add("2@"+f.target, 2)
	add("0@"+f.target, 0)
	add("1@"+f.target, 1)
	add("0@"+tomb, linkGone)
	add("1@"+soft, linkGone)
	add("0@"+trunc, linkGone)
	add("9@"+f.target, linkGone)
	add("0@"+base+"-missing", linkGone)
	add("not-a-number@"+f.target, linkPlain)
	var links []esdb.EventData
	for _, d := range f.data {
		links = append(links, linkEvent(d))
	}
	s.mustAppend(t, f.links, esdb.NoStream{}, links...)

	if _, err := s.client.TombstoneStream(ctxFor(t), tomb, esdb.TombstoneStreamOptions{}); err != nil {
		t.Fatalf("tombstone %s: %v", tomb, err)
	}
	if _, err := s.client.DeleteStream(ctxFor(t), soft, esdb.DeleteStreamOptions{}); err != nil {
		t.Fatalf("delete %s: %v", soft, err)
	}
	var meta esdb.StreamMetadata
	meta.SetMaxCount(1)
	if _, err := s.client.SetStreamMetadata(ctxFor(t), trunc, esdb.AppendToStreamOptions{}, meta); err != nil {
		t.Fatalf("set $maxCount on %s: %v", trunc, err)
	}
	return f
}

// requireLink checks one resolved or unresolved link read at link
// revision rev.
func (f linkFixture) requireLink(t *testing.T, what string, ev *esdb.ResolvedEvent, rev uint64, resolved bool) {
	t.Helper()
	want := f.want[rev]
	if !resolved {
		want = linkPlain
	}
	rec := ev.Link
	if want == linkPlain {
		if ev.Link != nil {
			t.Fatalf("%s: link %d (%s) came with a link record %s@%d, want a plain event", what, rev, f.data[rev], ev.Link.StreamID, ev.Link.EventNumber)
		}
		rec = ev.Event
	}
	if rec == nil {
		t.Fatalf("%s: link %d (%s): no link record", what, rev, f.data[rev])
	}
	if rec.StreamID != f.links || rec.EventNumber != rev || rec.EventType != "$>" || string(rec.Data) != f.data[rev] {
		t.Fatalf("%s: link %d: got %s@%d type %q data %q, want %s@%d type $> data %q",
			what, rev, rec.StreamID, rec.EventNumber, rec.EventType, rec.Data, f.links, rev, f.data[rev])
	}
	if ev.OriginalEvent() != rec {
		t.Fatalf("%s: link %d: the original event is not the link record", what, rev)
	}
	switch want {
	case linkPlain:
	case linkGone:
		if ev.Event != nil {
			t.Fatalf("%s: link %d (%s) to a target that is gone: got event %s@%d, want none", what, rev, f.data[rev], ev.Event.StreamID, ev.Event.EventNumber)
		}
	default:
		if ev.Event == nil {
			t.Fatalf("%s: link %d (%s): no event, want %s@%d", what, rev, f.data[rev], f.target, want)
		}
		requireEvent(t, ev.Event, f.target, uint64(want), f.events[want])
	}
	if ev.Commit != nil && *ev.Commit != rec.Position.Commit {
		t.Fatalf("%s: link %d: commit position %d, want the link's %d", what, rev, *ev.Commit, rec.Position.Commit)
	}
}

func (s *suite) linkTests() []namedTest {
	return []namedTest{
		{"ReadStream", func(t *testing.T) {
			f := s.linkFixture(t)
			for _, resolve := range []bool{false, true} {
				fwd := s.mustReadStream(t, f.links, esdb.ReadStreamOptions{ResolveLinkTos: resolve}, 100)
				if len(fwd) != len(f.data) {
					t.Fatalf("read links (resolve %v): got %d records, want %d", resolve, len(fwd), len(f.data))
				}
				for i, ev := range fwd {
					f.requireLink(t, "read forwards", ev, uint64(i), resolve)
				}
				bwd := s.mustReadStream(t, f.links, esdb.ReadStreamOptions{Direction: esdb.Backwards, From: esdb.End{}, ResolveLinkTos: resolve}, 100)
				if len(bwd) != len(f.data) {
					t.Fatalf("read links backwards (resolve %v): got %d records, want %d", resolve, len(bwd), len(f.data))
				}
				for i, ev := range bwd {
					f.requireLink(t, "read backwards", ev, uint64(len(f.data)-1-i), resolve)
				}
			}
		}},
		{"ReadAll", func(t *testing.T) {
			f := s.linkFixture(t)
			first := s.mustReadStream(t, f.links, esdb.ReadStreamOptions{}, 1)[0].OriginalEvent().Position
			for _, resolve := range []bool{false, true} {
				rs, err := s.client.ReadAll(ctxFor(t), esdb.ReadAllOptions{From: first, ResolveLinkTos: resolve}, 100_000)
				if err != nil {
					t.Fatalf("read $all: %v", err)
				}
				rev := uint64(0)
				for rev < uint64(len(f.data)) {
					ev, err := rs.Recv()
					if err != nil {
						t.Fatalf("read $all (resolve %v) after %d links: %v", resolve, rev, err)
					}
					if ev.OriginalEvent().StreamID == f.links {
						f.requireLink(t, "read $all", ev, rev, resolve)
						rev++
					}
				}
				rs.Close()
			}
		}},
		{"SubscribeStream", func(t *testing.T) {
			f := s.linkFixture(t)
			for _, resolve := range []bool{false, true} {
				sub, err := s.client.SubscribeToStream(ctxFor(t), f.links, esdb.SubscribeToStreamOptions{From: esdb.Start{}, ResolveLinkTos: resolve})
				if err != nil {
					t.Fatalf("subscribe: %v", err)
				}
				r := readSub(t, sub)
				for i := range f.data {
					f.requireLink(t, "subscription catch-up", r.nextResolved(t), uint64(i), resolve)
				}
				if resolve {
					// A live link, resolved too.
					live := linkEvent("1@" + f.target)
					s.mustAppend(t, f.links, esdb.Any{}, live)
					f.data, f.want = append(f.data, string(live.Data)), append(f.want, 1)
					f.requireLink(t, "live subscription", r.nextResolved(t), uint64(len(f.data)-1), true)
				}
			}
		}},
		{"SubscribeAll", func(t *testing.T) {
			f := s.linkFixture(t)
			r := s.subscribeAll(t, esdb.SubscribeToAllOptions{
				From:           f.before,
				ResolveLinkTos: true,
				Filter:         &esdb.SubscriptionFilter{Type: esdb.StreamFilterType, Prefixes: []string{f.links}},
			})
			for i := range f.data {
				ev := r.nextResolved(t)
				if !strings.HasPrefix(ev.OriginalEvent().StreamID, f.links) {
					t.Fatalf("filtered on %s, got %s", f.links, ev.OriginalEvent().StreamID)
				}
				f.requireLink(t, "$all subscription", ev, uint64(i), true)
			}
		}},
	}
}

// nextResolved returns the next event with its link, failing on a drop.
func (r *subReader) nextResolved(t *testing.T) *esdb.ResolvedEvent {
	t.Helper()
	for {
		ev := r.next(t, eventTimeout)
		if ev.SubscriptionDropped != nil {
			t.Fatalf("subscription dropped: %v", ev.SubscriptionDropped.Error)
		}
		if ev.EventAppeared != nil {
			return ev.EventAppeared
		}
	}
}

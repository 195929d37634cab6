package esdbtest

import (
	"context"
	"testing"
	"time"

	"github.com/EventStore/EventStore-Client-Go/v4/esdb"
	"github.com/EventStore/EventStore-Client-Go/v4/protos/shared"
	api "github.com/EventStore/EventStore-Client-Go/v4/protos/streams"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/reflect/protoreflect"
)

// Since KurrentDB 25.0.1 (streams.proto there) CaughtUp carries the server
// time and the checkpoint to resume from: stream_revision (int64, field 2)
// for a stream subscription unless nothing was sent yet, position (field
// 3) for a $all one unless the subscription starts at the beginning and
// nothing was sent yet; Checkpoint carries the time (field 3). FellBehind
// is defined but never sent ("currently not sent to clients",
// Streams.Read.cs). Client v4.2.0's protos predate these fields, so the
// tests decode them from the messages' unknown fields.

// notice is a decoded CaughtUp.
type notice struct {
	time   time.Time
	hasRev bool
	rev    int64
	hasPos bool
	pos    esdb.Position
}

// decodeNotice decodes CaughtUp's fields (timestamp 1, stream_revision 2,
// position 3).
func decodeNotice(t *testing.T, raw protoreflect.RawFields) notice {
	t.Helper()
	var n notice
	b := []byte(raw)
	for len(b) > 0 {
		num, typ, l := protowire.ConsumeTag(b)
		if l < 0 {
			t.Fatalf("notice fields %x: bad tag", []byte(raw))
		}
		b = b[l:]
		var v []byte
		var x uint64
		if typ == protowire.BytesType {
			v, l = protowire.ConsumeBytes(b)
		} else {
			x, l = protowire.ConsumeVarint(b)
		}
		if l < 0 {
			t.Fatalf("notice fields %x: bad field %d", []byte(raw), num)
		}
		b = b[l:]
		switch {
		case num == 1 && typ == protowire.BytesType:
			n.time = decodeTimestamp(t, v)
		case num == 2 && typ == protowire.VarintType:
			n.hasRev, n.rev = true, int64(x)
		case num == 3 && typ == protowire.BytesType:
			n.hasPos = true
			fields := decodeVarints(t, v)
			n.pos = esdb.Position{Commit: fields[1], Prepare: fields[2]}
		}
	}
	return n
}

func decodeVarints(t *testing.T, b []byte) map[protowire.Number]uint64 {
	t.Helper()
	out := map[protowire.Number]uint64{}
	for len(b) > 0 {
		num, typ, l := protowire.ConsumeTag(b)
		if l < 0 || typ != protowire.VarintType {
			t.Fatalf("fields %x: want varints", b)
		}
		b = b[l:]
		v, l := protowire.ConsumeVarint(b)
		if l < 0 {
			t.Fatalf("fields %x: bad varint", b)
		}
		b = b[l:]
		out[num] = v
	}
	return out
}

func decodeTimestamp(t *testing.T, b []byte) time.Time {
	t.Helper()
	f := decodeVarints(t, b)
	return time.Unix(int64(f[1]), int64(int32(f[2])))
}

// decodeCheckpointTime returns a Checkpoint's timestamp (field 3).
func decodeCheckpointTime(t *testing.T, raw protoreflect.RawFields) time.Time {
	t.Helper()
	b := []byte(raw)
	for len(b) > 0 {
		num, typ, l := protowire.ConsumeTag(b)
		if l < 0 {
			t.Fatalf("checkpoint fields %x: bad tag", []byte(raw))
		}
		b = b[l:]
		if num == 3 && typ == protowire.BytesType {
			v, _ := protowire.ConsumeBytes(b)
			return decodeTimestamp(t, v)
		}
		if l = protowire.ConsumeFieldValue(num, typ, b); l < 0 {
			t.Fatalf("checkpoint fields %x: bad field", []byte(raw))
		}
		b = b[l:]
	}
	return time.Time{}
}

// requireRecent asserts a server time is now, allowing for clock skew
// against a remote server.
func requireRecent(t *testing.T, what string, ts time.Time) {
	t.Helper()
	if ts.IsZero() {
		t.Fatalf("%s: no timestamp", what)
	}
	if d := time.Since(ts); d > 5*time.Minute || d < -5*time.Minute {
		t.Fatalf("%s: timestamp %v, %v from now", what, ts, d)
	}
}

// subscribeRaw opens a subscription over the raw connection and returns a
// function that yields its messages until CaughtUp, which it returns
// decoded. FellBehind fails the test.
func (s *suite) subscribeRaw(t *testing.T, opts *api.ReadReq_Options) (caughtUp func() ([]*api.ReadResp, notice)) {
	t.Helper()
	opts.ReadDirection = api.ReadReq_Options_Forwards
	opts.CountOption = &api.ReadReq_Options_Subscription{Subscription: &api.ReadReq_Options_SubscriptionOptions{}}
	if opts.FilterOption == nil {
		opts.FilterOption = &api.ReadReq_Options_NoFilter{NoFilter: &shared.Empty{}}
	}
	opts.UuidOption = &api.ReadReq_Options_UUIDOption{Content: &api.ReadReq_Options_UUIDOption_Structured{Structured: &shared.Empty{}}}
	ctx, cancel := context.WithTimeout(context.Background(), opTimeout)
	t.Cleanup(cancel)
	call, err := api.NewStreamsClient(s.raw).Read(ctx, &api.ReadReq{Options: opts})
	if err != nil {
		t.Fatalf("raw subscription: %v", err)
	}
	return func() ([]*api.ReadResp, notice) {
		t.Helper()
		var before []*api.ReadResp
		for {
			m, err := call.Recv()
			if err != nil {
				t.Fatalf("raw subscription after %d messages: %v", len(before), err)
			}
			switch {
			case m.GetFellBehind() != nil:
				t.Fatalf("raw subscription: got FellBehind, which KurrentDB never sends")
			case m.GetCaughtUp() != nil:
				n := decodeNotice(t, m.GetCaughtUp().ProtoReflect().GetUnknown())
				requireRecent(t, "CaughtUp", n.time)
				return before, n
			}
			before = append(before, m)
		}
	}
}

func streamOpts(stream string, from func() *api.ReadReq_Options_StreamOptions) *api.ReadReq_Options {
	so := from()
	so.StreamIdentifier = &shared.StreamIdentifier{StreamName: []byte(stream)}
	return &api.ReadReq_Options{StreamOption: &api.ReadReq_Options_Stream{Stream: so}}
}

func allOpts(all *api.ReadReq_Options_AllOptions) *api.ReadReq_Options {
	return &api.ReadReq_Options{StreamOption: &api.ReadReq_Options_All{All: all}}
}

func (s *suite) noticeTests() []namedTest {
	start := func() *api.ReadReq_Options_StreamOptions {
		return &api.ReadReq_Options_StreamOptions{RevisionOption: &api.ReadReq_Options_StreamOptions_Start{Start: &shared.Empty{}}}
	}
	end := func() *api.ReadReq_Options_StreamOptions {
		return &api.ReadReq_Options_StreamOptions{RevisionOption: &api.ReadReq_Options_StreamOptions_End{End: &shared.Empty{}}}
	}
	rev0 := func() *api.ReadReq_Options_StreamOptions {
		return &api.ReadReq_Options_StreamOptions{RevisionOption: &api.ReadReq_Options_StreamOptions_Revision{Revision: 0}}
	}
	return []namedTest{
		{"StreamCaughtUpCarriesRevision", func(t *testing.T) {
			stream := streamName("caughtup")
			s.mustAppend(t, stream, esdb.NoStream{}, newEvents(3, "NoticeTested")...)
			cases := []struct {
				name   string
				from   func() *api.ReadReq_Options_StreamOptions
				events int
			}{
				{"from start", start, 3},
				{"from end", end, 0},
				{"from revision 0", rev0, 2},
			}
			for _, c := range cases {
				msgs, n := s.subscribeRaw(t, streamOpts(stream, c.from))()
				if got := countEvents(msgs); got != c.events {
					t.Fatalf("%s: %d events before CaughtUp, want %d", c.name, got, c.events)
				}
				if !n.hasRev || n.rev != 2 || n.hasPos {
					t.Fatalf("%s: CaughtUp %+v, want stream_revision 2 and no position", c.name, n)
				}
			}
			// A new subscription after a fourth event: the checkpoint moves on.
			s.mustAppend(t, stream, esdb.Revision(2), newEvent("NoticeTested"))
			msgs, n := s.subscribeRaw(t, streamOpts(stream, start))()
			if countEvents(msgs) != 4 || !n.hasRev || n.rev != 3 {
				t.Fatalf("after a fourth event: %d events, CaughtUp %+v; want 4 and stream_revision 3", countEvents(msgs), n)
			}
		}},
		{"EmptyStreamCaughtUpHasNoCheckpoint", func(t *testing.T) {
			stream := streamName("caughtupempty")
			for _, from := range []func() *api.ReadReq_Options_StreamOptions{start, end} {
				_, n := s.subscribeRaw(t, streamOpts(stream, from))()
				if n.hasRev || n.hasPos {
					t.Fatalf("CaughtUp on a stream with no events: %+v, want neither revision nor position", n)
				}
			}
		}},
		{"AllCaughtUpCarriesPosition", func(t *testing.T) {
			stream := streamName("caughtupall")
			last := position(s.mustAppend(t, stream, esdb.NoStream{}, newEvents(3, "NoticeTested")...))
			_, n := s.subscribeRaw(t, allOpts(&api.ReadReq_Options_AllOptions{AllOption: &api.ReadReq_Options_AllOptions_End{End: &shared.Empty{}}}))()
			if n.hasRev || !n.hasPos || less(n.pos, last) {
				t.Fatalf("$all from end: CaughtUp %+v, want a position at or after our last append %+v and no revision", n, last)
			}
			_, n = s.subscribeRaw(t, allOpts(&api.ReadReq_Options_AllOptions{AllOption: &api.ReadReq_Options_AllOptions_Start{Start: &shared.Empty{}}}))()
			if n.hasRev || !n.hasPos || less(n.pos, last) {
				t.Fatalf("$all from start: CaughtUp %+v, want a position at or after our last append %+v and no revision", n, last)
			}
		}},
		{"CheckpointCarriesTimestamp", func(t *testing.T) {
			from := position(s.mustAppend(t, streamName("cptime"), esdb.Any{}, newEvent("NoticeTested")))
			for i := 0; i < 5; i++ {
				s.mustAppend(t, streamName("cptime"), esdb.Any{}, newEvent("NoticeTested"))
			}
			opts := allOpts(&api.ReadReq_Options_AllOptions{AllOption: &api.ReadReq_Options_AllOptions_Position{
				Position: &api.ReadReq_Options_Position{CommitPosition: from.Commit, PreparePosition: from.Prepare},
			}})
			opts.FilterOption = &api.ReadReq_Options_Filter{Filter: &api.ReadReq_Options_FilterOptions{
				Filter: &api.ReadReq_Options_FilterOptions_StreamIdentifier{StreamIdentifier: &api.ReadReq_Options_FilterOptions_Expression{
					Prefix: []string{streamName("nomatch")},
				}},
				Window:                       &api.ReadReq_Options_FilterOptions_Max{Max: 1},
				CheckpointIntervalMultiplier: 1,
			}}
			msgs, n := s.subscribeRaw(t, opts)()
			checkpoints := 0
			for _, m := range msgs {
				if cp := m.GetCheckpoint(); cp != nil {
					checkpoints++
					requireRecent(t, "Checkpoint", decodeCheckpointTime(t, cp.ProtoReflect().GetUnknown()))
				}
			}
			if checkpoints == 0 {
				t.Fatalf("filtered catch-up over 5 non-matching events with window 1: no checkpoint")
			}
			if n.hasRev || !n.hasPos || less(n.pos, from) {
				t.Fatalf("filtered $all: CaughtUp %+v, want a position after %+v", n, from)
			}
		}},
		{"ClientSeesCaughtUp", func(t *testing.T) {
			stream := streamName("caughtupclient")
			e := newEvents(2, "NoticeTested")
			s.mustAppend(t, stream, esdb.NoStream{}, e...)
			r := s.subscribeStream(t, stream, esdb.Start{})
			expectStream(t, r, stream, 0, e...)
			for {
				ev := r.next(t, eventTimeout)
				if ev.SubscriptionDropped != nil || ev.EventAppeared != nil || ev.FellBehind != nil {
					t.Fatalf("after the stored events: got %+v, want CaughtUp", ev)
				}
				if ev.CaughtUp != nil {
					return
				}
			}
		}},
	}
}

func countEvents(msgs []*api.ReadResp) int {
	n := 0
	for _, m := range msgs {
		if m.GetEvent() != nil {
			n++
		}
	}
	return n
}

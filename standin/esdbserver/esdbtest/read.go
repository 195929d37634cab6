package esdbtest

import (
	"bytes"
	"errors"
	"io"
	"strconv"
	"testing"
	"time"

	"github.com/EventStore/EventStore-Client-Go/v4/esdb"
)

// requireRevisions asserts the events are exactly the given revisions of
// want (want[i] sits at revision i) in that order.
func requireRevisions(t *testing.T, what, stream string, got []*esdb.ResolvedEvent, want []esdb.EventData, revisions ...uint64) {
	t.Helper()
	if len(got) != len(revisions) {
		t.Fatalf("%s: got %d events, want revisions %v", what, len(got), revisions)
	}
	for i, rev := range revisions {
		requireEvent(t, got[i].OriginalEvent(), stream, rev, want[rev])
	}
}

func (s *suite) readStreamTests() []namedTest {
	// setup writes ten events: even ones JSON, odd ones binary; event 9 has
	// neither data nor metadata.
	setup := func(t *testing.T) (string, []esdb.EventData) {
		stream := streamName("read")
		e := newEvents(10, "ReadTested")
		for i := range e {
			if i%2 == 0 {
				e[i].ContentType = esdb.ContentTypeJson
				e[i].Data = []byte(`{"n":` + strconv.Itoa(i) + `}`)
			}
		}
		e[9].Data, e[9].Metadata = []byte{}, []byte{}
		s.mustAppend(t, stream, esdb.NoStream{}, e[:4]...)
		s.mustAppend(t, stream, esdb.Revision(3), e[4:]...)
		return stream, e
	}
	fwd := func(from esdb.StreamPosition) esdb.ReadStreamOptions {
		return esdb.ReadStreamOptions{Direction: esdb.Forwards, From: from}
	}
	bwd := func(from esdb.StreamPosition) esdb.ReadStreamOptions {
		return esdb.ReadStreamOptions{Direction: esdb.Backwards, From: from}
	}
	return []namedTest{
		{"ForwardsAndBackwards", func(t *testing.T) {
			stream, e := setup(t)
			cases := []struct {
				name  string
				opts  esdb.ReadStreamOptions
				count uint64
				want  []uint64
			}{
				{"forwards from start, all", fwd(esdb.Start{}), 100, []uint64{0, 1, 2, 3, 4, 5, 6, 7, 8, 9}},
				{"forwards from start, count 3", fwd(esdb.Start{}), 3, []uint64{0, 1, 2}},
				{"forwards from revision 4, count 3", fwd(esdb.Revision(4)), 3, []uint64{4, 5, 6}},
				{"forwards from revision 8 past the end", fwd(esdb.Revision(8)), 10, []uint64{8, 9}},
				{"forwards from beyond the end", fwd(esdb.Revision(20)), 5, nil},
				{"backwards from end, count 3", bwd(esdb.End{}), 3, []uint64{9, 8, 7}},
				{"backwards from end, all", bwd(esdb.End{}), 100, []uint64{9, 8, 7, 6, 5, 4, 3, 2, 1, 0}},
				{"backwards from revision 5, count 3", bwd(esdb.Revision(5)), 3, []uint64{5, 4, 3}},
				{"backwards from revision 1 past the start", bwd(esdb.Revision(1)), 10, []uint64{1, 0}},
			}
			for _, c := range cases {
				got := s.mustReadStream(t, stream, c.opts, c.count)
				requireRevisions(t, c.name, stream, got, e, c.want...)
			}
		}},
		{"EndOfStreamIsEOF", func(t *testing.T) {
			stream, _ := setup(t)
			rs, err := s.client.ReadStream(ctxFor(t), stream, esdb.ReadStreamOptions{}, 100)
			if err != nil {
				t.Fatalf("read: %v", err)
			}
			defer rs.Close()
			if events, err := drain(rs); err != nil || len(events) != 10 {
				t.Fatalf("read: got %d events, err %v; want 10 events", len(events), err)
			}
			if _, err := rs.Recv(); !errors.Is(err, io.EOF) {
				t.Fatalf("Recv after the end: got %v, want io.EOF", err)
			}
		}},
		{"MissingStreamIsNotFound", func(t *testing.T) {
			s.requireNotFound(t, streamName("missing"))
		}},
		{"SystemMetadataAndContentTypes", func(t *testing.T) {
			before := time.Now()
			stream, e := setup(t)
			after := time.Now()
			got := s.mustReadStream(t, stream, esdb.ReadStreamOptions{}, 100)
			requireRevisions(t, "read", stream, got, e, 0, 1, 2, 3, 4, 5, 6, 7, 8, 9)
			for i, ev := range got {
				rec := ev.OriginalEvent()
				for _, key := range []string{"type", "content-type", "created"} {
					if _, ok := rec.SystemMetadata[key]; !ok {
						t.Fatalf("event %d: system metadata %v lacks %q", i, rec.SystemMetadata, key)
					}
				}
				wantType := "application/octet-stream"
				if e[i].ContentType == esdb.ContentTypeJson {
					wantType = "application/json"
				}
				if rec.ContentType != wantType {
					t.Fatalf("event %d: content type %q, want %q", i, rec.ContentType, wantType)
				}
				// created is in .NET ticks since the Unix epoch; allow for
				// clock skew against a remote server, not for garbage.
				if rec.CreatedDate.Before(before.Add(-5*time.Minute)) || rec.CreatedDate.After(after.Add(5*time.Minute)) {
					t.Fatalf("event %d: created %v, appended between %v and %v", i, rec.CreatedDate, before, after)
				}
			}
		}},
		{"StreamMetadataMaxCount", func(t *testing.T) {
			// The client's own metadata test: what is set reads back equal,
			// and reads honour $maxCount.
			stream, e := setup(t)
			var meta esdb.StreamMetadata
			meta.SetMaxCount(3)
			if _, err := s.client.SetStreamMetadata(ctxFor(t), stream, esdb.AppendToStreamOptions{ExpectedRevision: esdb.NoStream{}}, meta); err != nil {
				t.Fatalf("set metadata: %v", err)
			}
			got, err := s.client.GetStreamMetadata(ctxFor(t), stream, esdb.ReadStreamOptions{})
			if err != nil {
				t.Fatalf("get metadata: %v", err)
			}
			if mc := got.MaxCount(); mc == nil || *mc != 3 {
				t.Fatalf("get metadata: max count %v, want 3", mc)
			}
			requireRevisions(t, "read with $maxCount 3", stream, s.mustReadStream(t, stream, esdb.ReadStreamOptions{}, 100), e, 7, 8, 9)
		}},
		{"CustomMetadataRoundTrips", func(t *testing.T) {
			stream := streamName("meta")
			e := newEvents(3, "MetaTested")
			e[0].Metadata = []byte(`{"correlationId":"c-1","causationId":"c-0"}`)
			e[1].Metadata = bytes.Repeat([]byte{0x00, 0xff, 0x7f}, 1000)
			e[2].Metadata = nil
			s.mustAppend(t, stream, esdb.NoStream{}, e...)
			s.requireStream(t, stream, 0, e)
		}},
	}
}

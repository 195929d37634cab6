package esdbtest

import (
	"testing"

	"github.com/EventStore/EventStore-Client-Go/v4/esdb"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

func (s *suite) deleteTests() []namedTest {
	return []namedTest{
		{"SoftDeleteThenRecreate", func(t *testing.T) {
			stream := streamName("softdel")
			e := newEvents(3, "SoftDeleteTested")
			s.mustAppend(t, stream, esdb.NoStream{}, e...)
			res, err := s.client.DeleteStream(ctxFor(t), stream, esdb.DeleteStreamOptions{ExpectedRevision: esdb.Revision(2)})
			if err != nil {
				t.Fatalf("soft delete: %v", err)
			}
			if res.Position.Commit == 0 || res.Position.Prepare == 0 {
				t.Fatalf("soft delete: position %+v, want non-zero", res.Position)
			}
			s.requireNotFound(t, stream)

			// Appending recreates the stream; revisions carry on from 3 and
			// the deleted events stay hidden.
			again := newEvent("SoftDeleteTested")
			requireNext(t, s.mustAppend(t, stream, esdb.Any{}, again), 3)
			s.requireStream(t, stream, 3, []esdb.EventData{again})
			got := s.mustReadStream(t, stream, esdb.ReadStreamOptions{Direction: esdb.Backwards, From: esdb.End{}}, 10)
			if len(got) != 1 {
				t.Fatalf("backwards read after recreate: got %d events, want 1", len(got))
			}
			requireEvent(t, got[0].OriginalEvent(), stream, 3, again)
		}},
		{"TombstoneIsPermanent", func(t *testing.T) {
			stream := streamName("tomb")
			s.mustAppend(t, stream, esdb.NoStream{}, newEvents(2, "TombstoneTested")...)
			res, err := s.client.TombstoneStream(ctxFor(t), stream, esdb.TombstoneStreamOptions{ExpectedRevision: esdb.Revision(1)})
			if err != nil {
				t.Fatalf("tombstone: %v", err)
			}
			if res.Position.Commit == 0 || res.Position.Prepare == 0 {
				t.Fatalf("tombstone: position %+v, want non-zero", res.Position)
			}

			for _, dir := range []esdb.Direction{esdb.Forwards, esdb.Backwards} {
				var from esdb.StreamPosition = esdb.Start{}
				if dir == esdb.Backwards {
					from = esdb.End{}
				}
				events, err := s.readStream(t, stream, esdb.ReadStreamOptions{Direction: dir, From: from}, 10)
				if len(events) != 0 {
					t.Fatalf("read tombstoned stream: got %d events", len(events))
				}
				requireCode(t, err, esdb.ErrorCodeStreamDeleted, "read tombstoned stream")
			}
			for _, expected := range []esdb.ExpectedRevision{esdb.Any{}, esdb.NoStream{}, esdb.Revision(1)} {
				_, err := s.client.AppendToStream(ctxFor(t), stream, esdb.AppendToStreamOptions{ExpectedRevision: expected}, newEvent("TombstoneTested"))
				requireCode(t, err, esdb.ErrorCodeStreamDeleted, "append to tombstoned stream expecting "+describeExpected(expected))
			}
			_, err = s.client.DeleteStream(ctxFor(t), stream, esdb.DeleteStreamOptions{})
			requireCode(t, err, esdb.ErrorCodeStreamDeleted, "soft delete of tombstoned stream")
			_, err = s.client.TombstoneStream(ctxFor(t), stream, esdb.TombstoneStreamOptions{})
			requireCode(t, err, esdb.ErrorCodeStreamDeleted, "tombstone of tombstoned stream")

			// EventStoreDB confirms the subscription and then ends it with
			// FailedPrecondition; rejecting it up front is equally clear.
			sub, err := s.client.SubscribeToStream(ctxFor(t), stream, esdb.SubscribeToStreamOptions{From: esdb.Start{}})
			if err != nil {
				requireCode(t, err, esdb.ErrorCodeStreamDeleted, "subscribe to tombstoned stream")
			} else {
				ev := readSub(t, sub).next(t, eventTimeout)
				if ev.SubscriptionDropped == nil {
					t.Fatalf("subscription to tombstoned stream: first message %+v, want a drop", ev)
				}
				if c := grpcCode(ev.SubscriptionDropped.Error); c != codes.FailedPrecondition {
					t.Fatalf("subscription to tombstoned stream dropped with %v (code %v), want FailedPrecondition", ev.SubscriptionDropped.Error, c)
				}
			}

			// On the wire the stream-deleted trailer is what clients map.
			msgs, trailer, err := s.rawRead(promptCtx(t), streamSubscriptionRequest(stream))
			if status.Code(err) != codes.FailedPrecondition {
				t.Fatalf("raw subscription to tombstoned stream: got %v, want FailedPrecondition", err)
			}
			if got := trailer.Get("exception"); len(got) != 1 || got[0] != "stream-deleted" {
				t.Fatalf("raw subscription to tombstoned stream: exception trailer %v, want [stream-deleted]", got)
			}
			if got := trailer.Get("stream-name"); len(got) != 1 || got[0] != stream {
				t.Fatalf("raw subscription to tombstoned stream: stream-name trailer %v, want [%s]", got, stream)
			}
			for _, m := range msgs {
				if m.GetEvent() != nil {
					t.Fatalf("raw subscription to tombstoned stream delivered an event")
				}
			}
		}},
		{"MetadataAfterTombstone", s.testMetadataAfterTombstone},
	}
}

// testMetadataAfterTombstone: KurrentDB's IndexWriter.CheckCommit takes the
// last revision of $$X from its cache of streams written since the node
// started, before the index that reports a tombstoned stream's metastream
// as deleted. So metadata set again after the tombstone, with expected
// revision any, is accepted when $$X was written before it (in the same run
// of the server), while reading the metadata reports the stream deleted.
// Without earlier metadata the write is refused with stream-deleted.
func (s *suite) testMetadataAfterTombstone(t *testing.T) {
	var meta esdb.StreamMetadata
	meta.SetMaxCount(5)

	stream := streamName("tombmeta")
	s.mustAppend(t, stream, esdb.NoStream{}, newEvents(2, "TombstoneTested")...)
	if _, err := s.client.SetStreamMetadata(ctxFor(t), stream, esdb.AppendToStreamOptions{ExpectedRevision: esdb.Any{}}, meta); err != nil {
		t.Fatalf("set metadata: %v", err)
	}
	if _, err := s.client.TombstoneStream(ctxFor(t), stream, esdb.TombstoneStreamOptions{}); err != nil {
		t.Fatalf("tombstone: %v", err)
	}
	meta.SetMaxCount(7)
	res, err := s.client.SetStreamMetadata(ctxFor(t), stream, esdb.AppendToStreamOptions{ExpectedRevision: esdb.Any{}}, meta)
	if err != nil {
		t.Fatalf("set metadata again after the tombstone: %v", err)
	}
	if res.NextExpectedVersion != 1 {
		t.Fatalf("set metadata again after the tombstone: revision %d, want 1", res.NextExpectedVersion)
	}
	_, err = s.client.GetStreamMetadata(ctxFor(t), stream, esdb.ReadStreamOptions{})
	requireCode(t, err, esdb.ErrorCodeStreamDeleted, "read metadata of a tombstoned stream")
	_, err = s.readStream(t, stream, esdb.ReadStreamOptions{}, 10)
	requireCode(t, err, esdb.ErrorCodeStreamDeleted, "read tombstoned stream after its metadata was set")

	bare := streamName("tombmetabare")
	s.mustAppend(t, bare, esdb.NoStream{}, newEvent("TombstoneTested"))
	if _, err := s.client.TombstoneStream(ctxFor(t), bare, esdb.TombstoneStreamOptions{}); err != nil {
		t.Fatalf("tombstone: %v", err)
	}
	_, err = s.client.SetStreamMetadata(ctxFor(t), bare, esdb.AppendToStreamOptions{ExpectedRevision: esdb.Any{}}, meta)
	requireCode(t, err, esdb.ErrorCodeStreamDeleted, "first metadata of a tombstoned stream")
}

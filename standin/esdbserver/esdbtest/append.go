package esdbtest

import (
	"testing"

	"github.com/EventStore/EventStore-Client-Go/v4/esdb"
)

// appendExpectingWEV asserts that the append fails with WrongExpectedVersion
// and leaves the stream as it was (want, starting at revision first).
func (s *suite) appendExpectingWEV(t *testing.T, stream string, expected esdb.ExpectedRevision, first uint64, want []esdb.EventData, events ...esdb.EventData) {
	t.Helper()
	_, err := s.client.AppendToStream(ctxFor(t), stream, esdb.AppendToStreamOptions{ExpectedRevision: expected}, events...)
	requireCode(t, err, esdb.ErrorCodeWrongExpectedVersion, "append expecting "+describeExpected(expected))
	if len(want) == 0 {
		s.requireNotFound(t, stream)
		return
	}
	s.requireStream(t, stream, first, want)
}

func requireNext(t *testing.T, res *esdb.WriteResult, want uint64) {
	t.Helper()
	if res.NextExpectedVersion != want {
		t.Fatalf("append result: got revision %d, want %d", res.NextExpectedVersion, want)
	}
}

func (s *suite) expectedRevisionTests() []namedTest {
	return []namedTest{
		{"AnyOnNewAndExistingStream", func(t *testing.T) {
			stream := streamName("any")
			e := newEvents(3, "AnyTested")
			requireNext(t, s.mustAppend(t, stream, esdb.Any{}, e[0]), 0)
			requireNext(t, s.mustAppend(t, stream, esdb.Any{}, e[1:]...), 2)
			s.requireStream(t, stream, 0, e)
		}},
		{"NoStream", func(t *testing.T) {
			stream := streamName("nostream")
			e := newEvents(3, "NoStreamTested")
			requireNext(t, s.mustAppend(t, stream, esdb.NoStream{}, e[:2]...), 1)
			s.appendExpectingWEV(t, stream, esdb.NoStream{}, 0, e[:2], e[2])
		}},
		{"StreamExists", func(t *testing.T) {
			stream := streamName("exists")
			e := newEvents(3, "StreamExistsTested")
			s.appendExpectingWEV(t, stream, esdb.StreamExists{}, 0, nil, e[0])
			requireNext(t, s.mustAppend(t, stream, esdb.NoStream{}, e[0]), 0)
			requireNext(t, s.mustAppend(t, stream, esdb.StreamExists{}, e[1:]...), 2)
			s.requireStream(t, stream, 0, e)
		}},
		{"ExactRevision", func(t *testing.T) {
			stream := streamName("exact")
			e := newEvents(3, "ExactTested")
			s.appendExpectingWEV(t, stream, esdb.Revision(0), 0, nil, e[0])
			requireNext(t, s.mustAppend(t, stream, esdb.NoStream{}, e[0]), 0)
			requireNext(t, s.mustAppend(t, stream, esdb.Revision(0), e[1]), 1)
			// Behind the stream, with events the stream does not hold.
			s.appendExpectingWEV(t, stream, esdb.Revision(0), 0, e[:2], newEvent("ExactTested"))
			// Ahead of the stream.
			s.appendExpectingWEV(t, stream, esdb.Revision(2), 0, e[:2], newEvent("ExactTested"))
			s.appendExpectingWEV(t, stream, esdb.Revision(5), 0, e[:2], newEvent("ExactTested"))
			requireNext(t, s.mustAppend(t, stream, esdb.Revision(1), e[2]), 2)
			s.requireStream(t, stream, 0, e)
		}},
	}
}

func requireSameResult(t *testing.T, what string, got, want *esdb.WriteResult) {
	t.Helper()
	if *got != *want {
		t.Fatalf("%s: got result %+v, want the original %+v", what, *got, *want)
	}
}

func (s *suite) idempotencyTests() []namedTest {
	// setup writes e[0..2] with no_stream and e[3] at revision 2.
	setup := func(t *testing.T) (string, []esdb.EventData, *esdb.WriteResult, *esdb.WriteResult) {
		stream := streamName("idem")
		e := newEvents(4, "IdempotencyTested")
		first := s.mustAppend(t, stream, esdb.NoStream{}, e[:3]...)
		requireNext(t, first, 2)
		second := s.mustAppend(t, stream, esdb.Revision(2), e[3])
		requireNext(t, second, 3)
		return stream, e, first, second
	}
	return []namedTest{
		{"SameIdsSameExpectedRevision", func(t *testing.T) {
			stream, e, first, second := setup(t)
			res := s.mustAppend(t, stream, esdb.NoStream{}, e[:3]...)
			requireSameResult(t, "retry of the no_stream append", res, first)
			res = s.mustAppend(t, stream, esdb.Revision(2), e[3])
			requireSameResult(t, "retry of the revision 2 append", res, second)
			// A retry matching events in the middle of the stream.
			requireNext(t, s.mustAppend(t, stream, esdb.Revision(0), e[1]), 1)
			s.requireStream(t, stream, 0, e)
		}},
		{"AnyWithIdsAlreadyInStream", func(t *testing.T) {
			stream, e, first, second := setup(t)
			res := s.mustAppend(t, stream, esdb.Any{}, e[:3]...)
			requireSameResult(t, "any retry of the first append", res, first)
			res = s.mustAppend(t, stream, esdb.Any{}, e[3])
			requireSameResult(t, "any retry of the second append", res, second)
			res = s.mustAppend(t, stream, esdb.StreamExists{}, e[3])
			requireSameResult(t, "stream_exists retry of the second append", res, second)
			s.requireStream(t, stream, 0, e)
		}},
		{"PartialMatchIsWrongExpectedVersion", func(t *testing.T) {
			stream, e, _, _ := setup(t)
			// e[2] sits at revision 2 but the second event differs from e[3].
			s.appendExpectingWEV(t, stream, esdb.Revision(1), 0, e, e[2], newEvent("IdempotencyTested"))
			// A different first event at an old revision is a plain conflict.
			s.appendExpectingWEV(t, stream, esdb.Revision(0), 0, e, newEvent("IdempotencyTested"))
		}},
		{"AnyPartialMatchIsWrongExpectedVersion", func(t *testing.T) {
			stream, e, _, _ := setup(t)
			s.appendExpectingWEV(t, stream, esdb.Any{}, 0, e, e[0], newEvent("IdempotencyTested"))
		}},
	}
}

package esdbtest

import (
	"bytes"
	"context"
	"strconv"
	"testing"

	"github.com/EventStore/EventStore-Client-Go/v4/esdb"
	api "github.com/EventStore/EventStore-Client-Go/v4/protos/streams"
	"github.com/google/uuid"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

func payload(n int) []byte {
	return bytes.Repeat([]byte("rxflow-esdbtest-"), n/16+1)[:n]
}

var binaryMeta = map[string]string{"type": "LimitTested", "content-type": "application/octet-stream"}

func (s *suite) limitTests() []namedTest {
	maxSize := s.features.maxAppendSize()
	return []namedTest{
		{"OversizedAppendIsRejected", func(t *testing.T) {
			// EventStoreDB answers InvalidArgument with trailers
			// exception=maximum-append-size-exceeded and maximum-append-size.
			// Client v4.2.0 has no dedicated code: it reports an
			// *esdb.Error wrapping that status.
			single := newEvent("LimitTested")
			single.Data = payload(maxSize + 1024)
			pair := newEvents(2, "LimitTested")
			pair[0].Data, pair[1].Data = payload(maxSize*6/10), payload(maxSize*6/10)
			for name, events := range map[string][]esdb.EventData{"one event": {single}, "two events": pair} {
				stream := streamName("oversize")
				_, err := s.client.AppendToStream(ctxFor(t), stream, esdb.AppendToStreamOptions{}, events...)
				if err == nil {
					t.Fatalf("%s over %d bytes: append succeeded", name, maxSize)
				}
				if _, ok := esdbCode(err); !ok || grpcCode(err) != codes.InvalidArgument {
					t.Fatalf("%s over %d bytes: got %v, want an esdb.Error carrying InvalidArgument", name, maxSize, err)
				}
				s.requireNotFound(t, stream)
			}

			stream := streamName("oversize")
			_, trailer, err := s.rawAppend(ctxFor(t), appendHeader(stream), proposed(uuid.New(), binaryMeta, payload(maxSize+1024)))
			if status.Code(err) != codes.InvalidArgument {
				t.Fatalf("raw oversized append: got %v, want InvalidArgument", err)
			}
			if got := trailer.Get("exception"); len(got) != 1 || got[0] != "maximum-append-size-exceeded" {
				t.Fatalf("raw oversized append: exception trailer %v, want [maximum-append-size-exceeded]", got)
			}
			if got := trailer.Get("maximum-append-size"); len(got) != 1 || got[0] != strconv.Itoa(maxSize) {
				t.Fatalf("raw oversized append: maximum-append-size trailer %v, want [%d]", got, maxSize)
			}
			s.requireNotFound(t, stream)
		}},
		{"LargeEventRoundTrips", func(t *testing.T) {
			stream := streamName("large")
			ev := newEvent("LimitTested")
			ev.Data = payload(maxSize * 9 / 10)
			s.mustAppend(t, stream, esdb.NoStream{}, ev)
			s.requireStream(t, stream, 0, []esdb.EventData{ev})
		}},
		{"MalformedRequestsFailAndServerKeepsServing", s.testMalformed},
	}
}

// promptCtx bounds a call that must fail, so a hang is not taken for an error.
func promptCtx(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), eventTimeout)
	t.Cleanup(cancel)
	return ctx
}

func requirePromptError(t *testing.T, err error, what string) {
	t.Helper()
	if err == nil {
		t.Fatalf("%s succeeded", what)
	}
	if c := status.Code(err); c == codes.DeadlineExceeded || c == codes.Canceled {
		t.Fatalf("%s: got %v, want the server to reject it promptly", what, err)
	}
}

func (s *suite) testMalformed(t *testing.T) {
	t.Run("EmptyStreamName", func(t *testing.T) {
		if _, err := s.client.AppendToStream(ctxFor(t), "", esdb.AppendToStreamOptions{}, newEvent("LimitTested")); err == nil {
			t.Fatalf("append to an empty stream name succeeded")
		}
	})
	t.Run("EmptyEventType", func(t *testing.T) {
		stream := streamName("notype")
		if _, err := s.client.AppendToStream(ctxFor(t), stream, esdb.AppendToStreamOptions{}, newEvent("")); err == nil {
			t.Fatalf("append of an event with an empty type succeeded")
		}
		s.requireNotFound(t, stream)
	})

	rawAppends := []struct {
		name string
		msgs func(stream string) []*api.AppendReq
		code codes.Code // codes.OK: any error will do
	}{
		{"NoOptionsHeader", func(string) []*api.AppendReq {
			return []*api.AppendReq{proposed(uuid.New(), binaryMeta, []byte("x"))}
		}, codes.OK},
		{"NoExpectedRevision", func(stream string) []*api.AppendReq {
			h := appendHeader(stream)
			h.GetOptions().ExpectedStreamRevision = nil
			return []*api.AppendReq{h, proposed(uuid.New(), binaryMeta, []byte("x"))}
		}, codes.OK},
		{"MissingTypeMetadata", func(stream string) []*api.AppendReq {
			return []*api.AppendReq{appendHeader(stream), proposed(uuid.New(), map[string]string{"content-type": "application/octet-stream"}, []byte("x"))}
		}, codes.InvalidArgument},
		{"MissingContentTypeMetadata", func(stream string) []*api.AppendReq {
			return []*api.AppendReq{appendHeader(stream), proposed(uuid.New(), map[string]string{"type": "LimitTested"}, []byte("x"))}
		}, codes.InvalidArgument},
		{"MissingEventID", func(stream string) []*api.AppendReq {
			m := proposed(uuid.New(), binaryMeta, []byte("x"))
			m.GetProposedMessage().Id = nil
			return []*api.AppendReq{appendHeader(stream), m}
		}, codes.OK},
	}
	for _, ra := range rawAppends {
		t.Run(ra.name, func(t *testing.T) {
			stream := streamName("malformed")
			_, _, err := s.rawAppend(promptCtx(t), ra.msgs(stream)...)
			requirePromptError(t, err, "malformed append")
			if ra.code != codes.OK && status.Code(err) != ra.code {
				t.Fatalf("malformed append: got %v, want %v", err, ra.code)
			}
			s.requireNotFound(t, stream)
		})
	}
	t.Run("ReadWithoutOptions", func(t *testing.T) {
		_, _, err := s.rawRead(promptCtx(t), &api.ReadReq{})
		requirePromptError(t, err, "read without options")
	})
	t.Run("ReadWithoutStreamOption", func(t *testing.T) {
		req := streamSubscriptionRequest(streamName("malformed"))
		req.Options.StreamOption = nil
		req.Options.CountOption = &api.ReadReq_Options_Count{Count: 1}
		_, _, err := s.rawRead(promptCtx(t), req)
		requirePromptError(t, err, "read without a stream option")
	})
	t.Run("StillServing", func(t *testing.T) {
		stream := streamName("afterbad")
		e := newEvents(2, "LimitTested")
		s.mustAppend(t, stream, esdb.NoStream{}, e...)
		s.requireStream(t, stream, 0, e)
		sub := s.subscribeStream(t, stream, esdb.Start{})
		expectStream(t, sub, stream, 0, e...)
	})
}

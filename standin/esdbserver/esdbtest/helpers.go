package esdbtest

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"testing"
	"time"

	"github.com/EventStore/EventStore-Client-Go/v4/esdb"
	"github.com/google/uuid"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// streamName returns a stream name no other test (or suite run) uses.
func streamName(label string) string {
	return "esdbtest-" + label + "-" + uuid.NewString()
}

// newEvent returns a binary event with distinct data and user metadata.
func newEvent(eventType string) esdb.EventData {
	id := uuid.New()
	return esdb.EventData{
		EventID:     id,
		EventType:   eventType,
		ContentType: esdb.ContentTypeBinary,
		Data:        []byte("data-" + id.String()),
		Metadata:    []byte("meta-" + id.String()),
	}
}

func newEvents(n int, eventType string) []esdb.EventData {
	events := make([]esdb.EventData, n)
	for i := range events {
		events[i] = newEvent(eventType)
	}
	return events
}

func ctxFor(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), opTimeout)
	t.Cleanup(cancel)
	return ctx
}

// mustAppend appends and fails the test on error.
func (s *suite) mustAppend(t *testing.T, stream string, expected esdb.ExpectedRevision, events ...esdb.EventData) *esdb.WriteResult {
	t.Helper()
	res, err := s.client.AppendToStream(ctxFor(t), stream, esdb.AppendToStreamOptions{ExpectedRevision: expected}, events...)
	if err != nil {
		t.Fatalf("append %d event(s) to %s (expected %s): %v", len(events), stream, describeExpected(expected), err)
	}
	return res
}

func describeExpected(e esdb.ExpectedRevision) string {
	switch v := e.(type) {
	case esdb.Any:
		return "any"
	case esdb.NoStream:
		return "no_stream"
	case esdb.StreamExists:
		return "stream_exists"
	case esdb.StreamRevision:
		return fmt.Sprintf("revision %d", v.Value)
	}
	return fmt.Sprintf("%T", e)
}

// esdbCode extracts the client's error code, unwrapping the client's own
// fmt.Errorf wrappers (esdb.FromError only looks at the top level).
func esdbCode(err error) (esdb.ErrorCode, bool) {
	var e *esdb.Error
	if errors.As(err, &e) {
		return e.Code(), true
	}
	return 0, false
}

func requireCode(t *testing.T, err error, want esdb.ErrorCode, what string) {
	t.Helper()
	if err == nil {
		t.Fatalf("%s: got success, want error code %d", what, want)
	}
	got, ok := esdbCode(err)
	if !ok {
		t.Fatalf("%s: got non-client error %v, want error code %d", what, err, want)
	}
	if got != want {
		t.Fatalf("%s: got error code %d (%v), want %d", what, got, err, want)
	}
}

// grpcCode digs the gRPC status code out of a (possibly wrapped) error.
func grpcCode(err error) codes.Code {
	for e := err; e != nil; e = errors.Unwrap(e) {
		if st, ok := status.FromError(e); ok {
			return st.Code()
		}
	}
	return codes.Unknown
}

// readStream reads with the given options and returns the events or the
// error the stream ended with (io.EOF is success).
func (s *suite) readStream(t *testing.T, stream string, opts esdb.ReadStreamOptions, count uint64) ([]*esdb.ResolvedEvent, error) {
	t.Helper()
	rs, err := s.client.ReadStream(ctxFor(t), stream, opts, count)
	if err != nil {
		return nil, err
	}
	defer rs.Close()
	return drain(rs)
}

func (s *suite) mustReadStream(t *testing.T, stream string, opts esdb.ReadStreamOptions, count uint64) []*esdb.ResolvedEvent {
	t.Helper()
	events, err := s.readStream(t, stream, opts, count)
	if err != nil {
		t.Fatalf("read %s: %v", stream, err)
	}
	return events
}

func drain(rs *esdb.ReadStream) ([]*esdb.ResolvedEvent, error) {
	var events []*esdb.ResolvedEvent
	for {
		ev, err := rs.Recv()
		if errors.Is(err, io.EOF) {
			return events, nil
		}
		if err != nil {
			return events, err
		}
		events = append(events, ev)
	}
}

// requireNotFound asserts that reading stream reports ResourceNotFound.
func (s *suite) requireNotFound(t *testing.T, stream string) {
	t.Helper()
	for _, dir := range []esdb.Direction{esdb.Forwards, esdb.Backwards} {
		var from esdb.StreamPosition = esdb.Start{}
		if dir == esdb.Backwards {
			from = esdb.End{}
		}
		events, err := s.readStream(t, stream, esdb.ReadStreamOptions{Direction: dir, From: from}, 10)
		if len(events) != 0 {
			t.Fatalf("read %s (direction %d): got %d events, want stream not found", stream, dir, len(events))
		}
		requireCode(t, err, esdb.ErrorCodeResourceNotFound, fmt.Sprintf("read %s (direction %d)", stream, dir))
	}
}

// requireStream asserts the stream holds exactly want, at revisions first..,
// compared on id, type, data and user metadata.
func (s *suite) requireStream(t *testing.T, stream string, first uint64, want []esdb.EventData) {
	t.Helper()
	got := s.mustReadStream(t, stream, esdb.ReadStreamOptions{}, uint64(len(want))+100)
	if len(got) != len(want) {
		t.Fatalf("stream %s: got %d events, want %d", stream, len(got), len(want))
	}
	for i, ev := range got {
		requireEvent(t, ev.OriginalEvent(), stream, first+uint64(i), want[i])
	}
}

func requireEvent(t *testing.T, got *esdb.RecordedEvent, stream string, revision uint64, want esdb.EventData) {
	t.Helper()
	if got.StreamID != stream || got.EventNumber != revision {
		t.Fatalf("event %s: got %s@%d, want %s@%d", want.EventID, got.StreamID, got.EventNumber, stream, revision)
	}
	if got.EventID != want.EventID {
		t.Fatalf("%s@%d: got event id %s, want %s", stream, revision, got.EventID, want.EventID)
	}
	if got.EventType != want.EventType {
		t.Fatalf("%s@%d: got type %q, want %q", stream, revision, got.EventType, want.EventType)
	}
	if !bytes.Equal(got.Data, want.Data) {
		t.Fatalf("%s@%d: data differs (got %d bytes, want %d)", stream, revision, len(got.Data), len(want.Data))
	}
	if !bytes.Equal(got.UserMetadata, want.Metadata) {
		t.Fatalf("%s@%d: user metadata got %q, want %q", stream, revision, got.UserMetadata, want.Metadata)
	}
}

// lastAllPosition returns the position of the newest event in $all.
func (s *suite) lastAllPosition(t *testing.T) esdb.Position {
	t.Helper()
	rs, err := s.client.ReadAll(ctxFor(t), esdb.ReadAllOptions{Direction: esdb.Backwards, From: esdb.End{}}, 1)
	if err != nil {
		t.Fatalf("read $all backwards: %v", err)
	}
	defer rs.Close()
	events, err := drain(rs)
	if err != nil {
		t.Fatalf("read $all backwards: %v", err)
	}
	if len(events) != 1 {
		t.Fatalf("read $all backwards from end: got %d events, want 1", len(events))
	}
	return events[0].OriginalEvent().Position
}

// subReader pumps a subscription into a channel so tests can wait with a
// timeout. It stops when the subscription drops or the test ends.
type subReader struct {
	ch chan *esdb.SubscriptionEvent
}

func readSub(t *testing.T, sub *esdb.Subscription) *subReader {
	r := &subReader{ch: make(chan *esdb.SubscriptionEvent, 1024)}
	done := make(chan struct{})
	stopped := make(chan struct{})
	go func() {
		defer close(stopped)
		defer close(r.ch)
		for {
			ev := sub.Recv()
			select {
			case r.ch <- ev:
			case <-done:
				return
			}
			if ev.SubscriptionDropped != nil {
				return
			}
		}
	}()
	t.Cleanup(func() {
		_ = sub.Close()
		close(done)
		<-stopped
	})
	return r
}

// next returns the next subscription message, failing after timeout.
func (r *subReader) next(t *testing.T, timeout time.Duration) *esdb.SubscriptionEvent {
	t.Helper()
	select {
	case ev, ok := <-r.ch:
		if !ok {
			t.Fatalf("subscription reader stopped")
		}
		return ev
	case <-time.After(timeout):
		t.Fatalf("no subscription message within %v", timeout)
	}
	return nil
}

// nextEvent returns the next event, skipping checkpoints and caught-up or
// fell-behind notices; a drop fails the test.
func (r *subReader) nextEvent(t *testing.T) *esdb.RecordedEvent {
	t.Helper()
	return r.nextMatching(t, func(*esdb.RecordedEvent) bool { return true })
}

// nextMatching returns the next event accepted by keep, skipping others.
func (r *subReader) nextMatching(t *testing.T, keep func(*esdb.RecordedEvent) bool) *esdb.RecordedEvent {
	t.Helper()
	deadline := time.Now().Add(eventTimeout)
	for {
		ev := r.next(t, time.Until(deadline))
		if ev.SubscriptionDropped != nil {
			t.Fatalf("subscription dropped: %v", ev.SubscriptionDropped.Error)
		}
		if ev.EventAppeared != nil && keep(ev.EventAppeared.OriginalEvent()) {
			return ev.EventAppeared.OriginalEvent()
		}
	}
}

package esdbtest

import (
	"testing"
	"time"

	"github.com/EventStore/EventStore-Client-Go/v4/esdb"
)

func (s *suite) shutdownTests() []namedTest {
	return []namedTest{
		{"EndsLiveSubscriptionWithError", s.testShutdown},
	}
}

// testShutdown stops a dedicated server under a live subscription: the
// subscription must drop with an error, the shutdown must not hang on the
// open stream, and later calls must fail.
func (s *suite) testShutdown(t *testing.T) {
	if s.features.Isolated == nil {
		t.Skip("not applicable: Features.Isolated is nil, and a shared server must not be stopped by the suite")
	}
	connString, shutdown := s.features.Isolated(t)
	client := Connect(t, connString)
	stream := streamName("shutdown")
	sub, err := client.SubscribeToStream(ctxFor(t), stream, esdb.SubscribeToStreamOptions{From: esdb.Start{}})
	if err != nil {
		t.Fatalf("subscribe: %v", err)
	}
	r := readSub(t, sub)
	ev := newEvent("ShutdownTested")
	if _, err := client.AppendToStream(ctxFor(t), stream, esdb.AppendToStreamOptions{}, ev); err != nil {
		t.Fatalf("append: %v", err)
	}
	requireEvent(t, r.nextEvent(t), stream, 0, ev)

	done := make(chan error, 1)
	go func() { done <- shutdown() }()

	deadline := time.Now().Add(eventTimeout)
	for {
		msg := r.next(t, time.Until(deadline))
		if msg.EventAppeared != nil {
			t.Fatalf("unexpected event %s after shutdown", msg.EventAppeared.OriginalEvent().EventID)
		}
		if msg.SubscriptionDropped != nil {
			if msg.SubscriptionDropped.Error == nil {
				t.Fatalf("subscription dropped without an error")
			}
			break
		}
	}
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("shutdown: %v", err)
		}
	case <-time.After(opTimeout):
		t.Fatalf("shutdown did not return within %v with a subscription open", opTimeout)
	}
	if _, err := client.AppendToStream(ctxFor(t), stream, esdb.AppendToStreamOptions{}, newEvent("ShutdownTested")); err == nil {
		t.Fatalf("append after shutdown succeeded")
	}
}

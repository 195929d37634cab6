package eventstore

import (
	"context"
	"errors"
	"fmt"
	"runtime"
	"sync"
	"time"

	"github.com/EventStore/EventStore-Client-Go/v4/esdb"

	"rxflow/events"
	"rxflow/projections"
)

// Subscribe implements projections.Feed: a catch-up subscription to $all,
// filtered on the server to the prescription streams, with checkpoints so
// that a projector moves past unrelated events too. Refused commands arrive
// as events (domain.Refused) like the others: they change no prescription,
// but a reactor must see the refusal of its own follow-up command.
func (s *Store) Subscribe(ctx context.Context, after uint64) (projections.Subscription, error) {
	var from esdb.AllPosition = esdb.Start{}
	if after > 0 {
		from = esdb.Position{Commit: after, Prepare: after}
	}
	opts := esdb.SubscribeToAllOptions{
		From:               from,
		Filter:             &esdb.SubscriptionFilter{Type: esdb.StreamFilterType, Prefixes: []string{events.StreamPrefix}},
		CheckpointInterval: 1,
	}
	// The subscription lives on ctx; only waiting for it is bounded.
	type result struct {
		sub *esdb.Subscription
		err error
	}
	if err := s.start(); err != nil {
		return nil, err
	}
	done := make(chan result, 1)
	go func() {
		defer s.inflight.Done()
		sub, err := s.client.SubscribeToAll(ctx, opts)
		done <- result{sub, err}
	}()
	select {
	case r := <-done:
		if r.err != nil {
			return nil, mapError(r.err)
		}
		return newSubscription(r.sub), nil
	case <-time.After(s.timeout):
	case <-ctx.Done():
	}
	go func() { // close what comes too late
		if r := <-done; r.sub != nil {
			r.sub.Close()
		}
	}()
	return nil, fmt.Errorf("eventstore: subscribe: no connection within %v%s", s.timeout, s.noConnection())
}

// subscription reads ahead in stages: one goroutine receives the client's
// events (gRPC and protobuf decoding), decoders turn them into records
// (JSON) in parallel, and Recv hands them out in the order received, so
// that a catch-up uses every core.
type subscription struct {
	sub     *esdb.Subscription
	ordered chan *pending // in the order received; closed after a drop or Close
	work    chan *pending // to the decoders
	stop    chan struct{}
	once    sync.Once
}

// pending is one client event on its way through the stages; done is
// closed once msg is set.
type pending struct {
	ev   *esdb.SubscriptionEvent
	msg  projections.Message
	err  error
	done chan struct{}
}

// readAhead is how many client events may be received before Recv takes
// them.
const readAhead = 256

func newSubscription(sub *esdb.Subscription) *subscription {
	s := &subscription{sub: sub, ordered: make(chan *pending, readAhead), work: make(chan *pending, readAhead), stop: make(chan struct{})}
	go s.read()
	for range runtime.GOMAXPROCS(0) {
		go s.decode()
	}
	return s
}

func (s *subscription) read() {
	defer close(s.ordered)
	defer close(s.work)
	for {
		p := &pending{ev: s.sub.Recv(), done: make(chan struct{})}
		select {
		case s.ordered <- p:
		case <-s.stop:
			return
		}
		// Recv waits for p.done, and a decoder closes it: this cannot block
		// for long, as the decoders always take work.
		s.work <- p
		if p.ev.SubscriptionDropped != nil {
			return
		}
	}
}

func (s *subscription) decode() {
	for p := range s.work {
		p.msg, p.err = message(p.ev)
		close(p.done)
	}
}

// message turns one client event into a projections.Message, or errSkip
// for an event the feed does not pass on.
func message(ev *esdb.SubscriptionEvent) (projections.Message, error) {
	switch {
	case ev.EventAppeared != nil:
		rec, err := Decode(ev.EventAppeared)
		if err != nil {
			return projections.Message{Event: &rec, DecodeErr: err}, nil
		}
		return projections.Message{Event: &rec}, nil
	case ev.CheckPointReached != nil:
		return projections.Message{Checkpoint: ev.CheckPointReached.Commit}, nil
	case ev.CaughtUp != nil:
		return projections.Message{CaughtUp: true}, nil
	case ev.FellBehind != nil:
		return projections.Message{FellBehind: true}, nil
	case ev.SubscriptionDropped != nil:
		err := ev.SubscriptionDropped.Error
		if err == nil {
			err = errors.New("subscription dropped")
		}
		return projections.Message{}, mapError(err)
	}
	return projections.Message{}, errSkip
}

// errSkip marks a client event that Recv passes over.
var errSkip = errors.New("not passed on")

func (s *subscription) Recv() (projections.Message, error) {
	for {
		p, ok := <-s.ordered
		if !ok {
			return projections.Message{}, mapError(errors.New("subscription dropped"))
		}
		<-p.done
		if errors.Is(p.err, errSkip) {
			continue
		}
		return p.msg, p.err
	}
}

// Close ends the subscription; its goroutines stop with it.
func (s *subscription) Close() error {
	s.once.Do(func() { close(s.stop) })
	return s.sub.Close()
}

package eventstore

import (
	"context"
	"errors"
	"fmt"
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

// subscription reads ahead: a goroutine receives the client's events (gRPC
// and protobuf decoding) while Recv decodes the JSON of the previous ones,
// so that a catch-up uses two cores.
type subscription struct {
	sub  *esdb.Subscription
	evs  chan *esdb.SubscriptionEvent // closed after a drop or Close
	stop chan struct{}
	once sync.Once
}

// readAhead is how many client events wait for Recv.
const readAhead = 256

func newSubscription(sub *esdb.Subscription) *subscription {
	s := &subscription{sub: sub, evs: make(chan *esdb.SubscriptionEvent, readAhead), stop: make(chan struct{})}
	go s.read()
	return s
}

func (s *subscription) read() {
	defer close(s.evs)
	for {
		ev := s.sub.Recv()
		select {
		case s.evs <- ev:
		case <-s.stop:
			return
		}
		if ev.SubscriptionDropped != nil {
			return
		}
	}
}

func (s *subscription) Recv() (projections.Message, error) {
	for {
		ev, ok := <-s.evs
		if !ok {
			return projections.Message{}, mapError(errors.New("subscription dropped"))
		}
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
	}
}

// Close ends the subscription; its read-ahead goroutine stops with it.
func (s *subscription) Close() error {
	s.once.Do(func() { close(s.stop) })
	return s.sub.Close()
}

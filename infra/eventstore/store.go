// Package eventstore is the one adapter to EventStoreDB: the official client
// (EventStore-Client-Go v4), used by the command handler to load and append
// prescription streams and by the projectors to follow $all and read history.
package eventstore

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"io"
	"log/slog"
	"math"
	"strings"
	"sync"
	"time"

	"github.com/EventStore/EventStore-Client-Go/v4/esdb"
	"github.com/google/uuid"

	"rxflow/commands"
	"rxflow/events"
)

// Config says where EventStoreDB is.
type Config struct {
	// ConnectionString is an esdb:// URL, e.g. esdb://127.0.0.1:2113?tls=false.
	ConnectionString string
	// Logger receives the client's own logs; default slog.Default().
	Logger *slog.Logger
	// Timeout bounds each read or append, waiting for a connection included;
	// default 10s.
	Timeout time.Duration
}

// Validate reports every problem with the config.
func (c Config) Validate() error {
	if c.ConnectionString == "" {
		return errors.New("eventstore: connection string is required")
	}
	if _, err := esdb.ParseConnectionString(c.ConnectionString); err != nil {
		return fmt.Errorf("eventstore: connection string: %w", err)
	}
	return nil
}

// Store reads and writes prescription streams.
type Store struct {
	client  *esdb.Client
	timeout time.Duration

	mu       sync.Mutex
	closed   bool
	inflight sync.WaitGroup // client calls not yet returned, abandoned ones included
}

// ErrClosed is returned by calls made after Close.
var ErrClosed = errors.New("eventstore: store is closed")

// closeGrace is how long Close waits for client calls still running.
const closeGrace = 2 * time.Second

// Open connects to EventStoreDB. The client connects lazily: an unreachable
// server surfaces on the first call, as a transient error.
func Open(cfg Config) (*Store, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	settings, err := esdb.ParseConnectionString(cfg.ConnectionString)
	if err != nil {
		return nil, err
	}
	settings.Logger = clientLogger(cmp.Or(cfg.Logger, slog.Default()))
	// After MaxDiscoverAttempts failed discoveries the v4 client closes for
	// good, and calls already waiting for its connection never return. So it
	// keeps rediscovering, and every call is bounded by await instead.
	settings.MaxDiscoverAttempts = math.MaxInt32
	client, err := esdb.NewClient(settings)
	if err != nil {
		return nil, fmt.Errorf("eventstore: %w", err)
	}
	return &Store{client: client, timeout: cmp.Or(cfg.Timeout, 10*time.Second)}, nil
}

// Close refuses new calls and releases the connection once the calls still
// running have returned. The v4 client panics if it is closed while a call
// waits for its connection, so if some call is still waiting after
// closeGrace (the server is unreachable), the connection is left to the
// process's exit and Close says so.
func (s *Store) Close() error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return nil
	}
	s.closed = true
	s.mu.Unlock()
	returned := make(chan struct{})
	go func() {
		s.inflight.Wait()
		close(returned)
	}()
	select {
	case <-returned:
		return s.client.Close()
	case <-time.After(closeGrace):
		return errors.New("eventstore: calls still waiting for a connection; connection left open")
	}
}

// start counts a client call in flight, unless the store is closed.
func (s *Store) start() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return ErrClosed
	}
	s.inflight.Add(1)
	return nil
}

// await runs a client call under the store's timeout and returns when it
// is done or ctx ends, whichever comes first: the v4 client waits for its
// connection without watching the context. An abandoned call finds its
// context cancelled once it gets a connection, so it changes nothing.
func await[T any](ctx context.Context, s *Store, call func(ctx context.Context) (T, error)) (T, error) {
	var zero T
	if err := s.start(); err != nil {
		return zero, err
	}
	ctx, cancel := context.WithTimeout(ctx, s.timeout)
	defer cancel()
	type result struct {
		v   T
		err error
	}
	done := make(chan result, 1)
	go func() {
		defer s.inflight.Done()
		v, err := call(ctx)
		done <- result{v, err}
	}()
	select {
	case r := <-done:
		return r.v, r.err
	case <-ctx.Done():
		return zero, fmt.Errorf("eventstore: %w: %w", commands.ErrUnavailable, ctx.Err())
	}
}

// Load returns every event of urn's stream, oldest first.
func (s *Store) Load(ctx context.Context, urn string) ([]events.Recorded, error) {
	return await(ctx, s, func(ctx context.Context) ([]events.Recorded, error) {
		stream, err := s.client.ReadStream(ctx, events.StreamName(urn), esdb.ReadStreamOptions{From: esdb.Start{}}, ^uint64(0))
		if err != nil {
			return nil, mapError(err)
		}
		defer stream.Close()
		var out []events.Recorded
		for {
			ev, err := stream.Recv()
			if errors.Is(err, io.EOF) {
				return out, nil
			}
			if esErr, ok := esdb.FromError(err); !ok && esErr.Code() == esdb.ErrorCodeResourceNotFound {
				return nil, nil
			}
			if err != nil {
				return nil, mapError(err)
			}
			rec, err := Decode(ev)
			if err != nil {
				return nil, fmt.Errorf("%w: %v", commands.ErrPermanent, err)
			}
			out = append(out, rec)
		}
	})
}

// Append writes evs to urn's stream at the expected revision and returns the
// $all position of the last one.
func (s *Store) Append(ctx context.Context, urn string, expected int64, evs []events.Pending) (uint64, error) {
	data := make([]esdb.EventData, len(evs))
	for i, e := range evs {
		id, err := uuid.Parse(e.Meta.EventID)
		if err != nil {
			return 0, fmt.Errorf("event id %q: %w", e.Meta.EventID, err)
		}
		meta, err := json.Marshal(e.Meta)
		if err != nil {
			return 0, err
		}
		data[i] = esdb.EventData{EventID: id, EventType: e.Name, ContentType: esdb.ContentTypeJson, Data: e.Data, Metadata: meta}
	}
	var rev esdb.ExpectedRevision = esdb.NoStream{}
	if expected >= 0 {
		rev = esdb.Revision(uint64(expected))
	}
	return await(ctx, s, func(ctx context.Context) (uint64, error) {
		res, err := s.client.AppendToStream(ctx, events.StreamName(urn), esdb.AppendToStreamOptions{ExpectedRevision: rev}, data...)
		if err != nil {
			return 0, mapError(err)
		}
		return res.CommitPosition, nil
	})
}

// Decode turns a stored event into its domain form.
func Decode(ev *esdb.ResolvedEvent) (events.Recorded, error) {
	e := ev.OriginalEvent()
	rec := events.Recorded{Name: e.EventType, Data: e.Data, Revision: e.EventNumber, Position: e.Position.Commit, Created: e.CreatedDate}
	var ok bool
	if rec.URN, ok = events.URNFromStream(e.StreamID); !ok {
		return rec, fmt.Errorf("stream %q is not a prescription stream", e.StreamID)
	}
	if err := json.Unmarshal(e.UserMetadata, &rec.Meta); err != nil {
		return rec, fmt.Errorf("%s@%d: metadata: %w", e.StreamID, e.EventNumber, err)
	}
	var err error
	if rec.Event, err = events.Decode(e.EventType, rec.Meta.SchemaVersion, e.Data); err != nil {
		return rec, fmt.Errorf("%s@%d: %w", e.StreamID, e.EventNumber, err)
	}
	return rec, nil
}

// clientLogger routes the client's logs to slog; its chatter (discovery,
// reconnection attempts) goes to debug.
func clientLogger(log *slog.Logger) esdb.LoggingFunc {
	return func(level esdb.LogLevel, format string, args ...any) {
		// The client passes its arguments as one slice.
		if len(args) == 1 {
			if inner, ok := args[0].([]any); ok {
				args = inner
			}
		}
		msg := fmt.Sprintf(format, args...)
		l := slog.LevelDebug
		switch {
		case strings.Contains(msg, context.Canceled.Error()):
			// our own shutdown or a finished call: not a problem
		case level == esdb.LogWarn:
			l = slog.LevelWarn
		case level == esdb.LogError:
			l = slog.LevelError
		}
		log.Log(context.Background(), l, "esdb client: "+msg)
	}
}

// mapError turns client errors into the ports' sentinel errors.
func mapError(err error) error {
	esErr, _ := esdb.FromError(err)
	switch esErr.Code() {
	case esdb.ErrorCodeWrongExpectedVersion:
		return fmt.Errorf("%w: %v", commands.ErrConcurrency, err)
	case esdb.ErrorCodeStreamDeleted:
		return fmt.Errorf("%w: %v", commands.ErrPermanent, err)
	case esdb.ErrorCodeDeadlineExceeded, esdb.ErrorCodeConnectionClosed, esdb.ErrorCodeNotLeader:
		return fmt.Errorf("eventstore: %w: %w", commands.ErrUnavailable, err)
	}
	if c := status.Code(err); c == codes.Unavailable || c == codes.DeadlineExceeded || c == codes.Canceled {
		return fmt.Errorf("eventstore: %w: %w", commands.ErrUnavailable, err)
	}
	return fmt.Errorf("eventstore: %w", err)
}

// Ping checks that the server answers.
func (s *Store) Ping(ctx context.Context) error {
	_, err := await(ctx, s, func(ctx context.Context) (struct{}, error) {
		stream, err := s.client.ReadAll(ctx, esdb.ReadAllOptions{Direction: esdb.Backwards, From: esdb.End{}}, 1)
		if err != nil {
			return struct{}{}, mapError(err)
		}
		defer stream.Close()
		if _, err := stream.Recv(); err != nil && !errors.Is(err, io.EOF) {
			return struct{}{}, mapError(err)
		}
		return struct{}{}, nil
	})
	return err
}

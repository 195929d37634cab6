// Package eventstore is the one adapter to EventStoreDB: the official client
// (EventStore-Client-Go v4), used by the command handler to load and append
// prescription streams and by the projectors to follow $all and read history.
//
// It bounds every call by Config.Timeout and maps the client's errors to
// commands.ErrConcurrency, ErrUnavailable and ErrPermanent; it retries
// nothing. The retry layers around it: docs/failure-policy.md.
package eventstore

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"io"
	"log/slog"
	"math"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/EventStore/EventStore-Client-Go/v4/esdb"
	json "github.com/go-json-experiment/json/v1" // encoding/json's behaviour on the faster v2 engine
	"github.com/google/uuid"
	"go.opentelemetry.io/otel"
	otelcodes "go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/trace"

	"rxflow/commands"
	"rxflow/events"
	"rxflow/infra/telemetry"
	"rxflow/infra/warm"
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

// Validate reports every problem with the config. Its errors never repeat
// the connection string's password.
func (c Config) Validate() error {
	if c.ConnectionString == "" {
		return errors.New("eventstore: connection string is required")
	}
	if _, err := esdb.ParseConnectionString(c.ConnectionString); err != nil {
		msg := err.Error()
		if pw := password(c.ConnectionString); pw != "" {
			msg = strings.ReplaceAll(msg, pw, "xxxxx")
		}
		return fmt.Errorf("eventstore: connection string: %s", msg)
	}
	return nil
}

// password returns the password in the user info of a connection string
// (esdb://user:password@host...), read without parsing it as a URL, since
// it may be malformed; "" if there is none.
func password(cs string) string {
	_, rest, ok := strings.Cut(cs, "://")
	if !ok {
		return ""
	}
	if i := strings.IndexAny(rest, "/?#"); i >= 0 {
		rest = rest[:i]
	}
	at := strings.LastIndex(rest, "@")
	if at < 0 {
		return ""
	}
	_, pw, _ := strings.Cut(rest[:at], ":")
	return pw
}

// Store reads and writes prescription streams.
type Store struct {
	client  *esdb.Client
	timeout time.Duration

	mu       sync.Mutex
	closed   bool
	inflight sync.WaitGroup // client calls not yet returned, abandoned ones included
	callers  warm.Pool      // goroutines that make the client calls, stacks already grown

	servers string                 // where the server is, without credentials
	connErr atomic.Pointer[string] // the client's last failed attempt to connect, until one succeeds
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
	s := &Store{timeout: cmp.Or(cfg.Timeout, 10*time.Second), servers: servers(settings)}
	settings.Logger = clientLogger(cmp.Or(cfg.Logger, slog.Default()), s.noteConnect)
	// After MaxDiscoverAttempts failed discoveries the v4 client closes for
	// good, and calls already waiting for its connection never return. So it
	// keeps rediscovering, and every call is bounded by await instead.
	settings.MaxDiscoverAttempts = math.MaxInt32
	if s.client, err = esdb.NewClient(settings); err != nil {
		return nil, fmt.Errorf("eventstore: %w", err)
	}
	return s, nil
}

// servers names the nodes of a connection string, without credentials.
func servers(c *esdb.Configuration) string {
	if len(c.GossipSeeds) == 0 {
		return c.Address
	}
	seeds := make([]string, len(c.GossipSeeds))
	for i, e := range c.GossipSeeds {
		seeds[i] = e.String()
	}
	return strings.Join(seeds, ",")
}

// Servers names the server the store connects to (host:port, or the
// gossip seeds), without credentials: for logs.
func (s *Store) Servers() string { return s.servers }

// noteConnect records the outcome of one of the client's attempts to
// connect: failed with this message, or succeeded ("").
func (s *Store) noteConnect(failure string) {
	if failure == "" {
		s.connErr.Store(nil)
		return
	}
	s.connErr.Store(&failure)
}

// connectFailure is the client's last failed attempt to connect, or "" if
// there is none since the last success.
func (s *Store) connectFailure() string {
	if p := s.connErr.Load(); p != nil {
		return *p
	}
	return ""
}

// noConnection is the suffix of an error for a call that got no
// connection: why, if the client's last attempt to connect failed.
func (s *Store) noConnection() string {
	if f := s.connectFailure(); f != "" {
		return " (connecting to " + s.servers + ": " + f + ")"
	}
	return ""
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
	s.callers.Stop()
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
	s.callers.Go(func() {
		defer s.inflight.Done()
		v, err := call(ctx)
		done <- result{v, err}
	})
	select {
	case r := <-done:
		return r.v, r.err
	case <-ctx.Done():
		return zero, fmt.Errorf("eventstore: %w: %w%s", commands.ErrUnavailable, ctx.Err(), s.noConnection())
	}
}

// tracer makes the client spans of the store's calls: EventStore-Client-Go
// v4 takes no gRPC dial option or interceptor, so otelgrpc cannot be
// attached to it.
var tracer = otel.Tracer("rxflow/infra/eventstore")

// clientSpan starts the client span of one call to the server, named as the
// KurrentDB clients name theirs (streams.append, streams.read).
func (s *Store) clientSpan(ctx context.Context, op, stream string) (context.Context, trace.Span) {
	ctx, span := tracer.Start(ctx, op, trace.WithSpanKind(trace.SpanKindClient))
	if span.IsRecording() {
		span.SetAttributes(telemetry.DBSystem, telemetry.DBOperation(op), telemetry.DBStream(stream))
	}
	return ctx, span
}

// endSpan ends span, recording err if there is one.
func endSpan(span trace.Span, err error) {
	if err != nil {
		span.RecordError(err)
		span.SetStatus(otelcodes.Error, err.Error())
	}
	span.End()
}

// Load returns every event of urn's stream, oldest first.
func (s *Store) Load(ctx context.Context, urn string) (recs []events.Recorded, err error) {
	ctx, span := s.clientSpan(ctx, "streams.read", events.StreamName(urn))
	defer func() { endSpan(span, err) }()
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
			switch {
			case errors.Is(err, events.ErrNewerVersion):
				return nil, fmt.Errorf("%w: %w", commands.ErrNewerEvent, err)
			case err != nil:
				return nil, fmt.Errorf("%w: %v", commands.ErrPermanent, err)
			}
			out = append(out, rec)
		}
	})
}

// Append writes evs to urn's stream at the expected revision and returns the
// $all position of the last one. The call's client span (streams.append) is
// stamped in each event's metadata ($traceId, $spanId), so that a projector
// handling the event continues the trace.
func (s *Store) Append(ctx context.Context, urn string, expected int64, evs []events.Pending) (_ uint64, err error) {
	ctx, span := s.clientSpan(ctx, "streams.append", events.StreamName(urn))
	defer func() { endSpan(span, err) }()
	data := make([]esdb.EventData, len(evs))
	for i, e := range evs {
		telemetry.StampEvent(ctx, &e.Meta)
		id, err := uuid.Parse(e.Meta.EventID)
		if err != nil {
			return 0, fmt.Errorf("event id %q: %w", e.Meta.EventID, err)
		}
		data[i] = esdb.EventData{EventID: id, EventType: e.Name, ContentType: esdb.ContentTypeJson, Data: e.Data, Metadata: e.Meta.AppendJSON(nil)}
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

// Decode turns a stored event into its domain form, at the current version
// of its event (events.Read upcasts older ones): the processor's load, the
// projectors' feed, the history and rebuild all read through it.
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
	if rec.Event, rec.Data, err = events.Read(e.EventType, rec.Meta.SchemaVersion, e.Data); err != nil {
		return rec, fmt.Errorf("%s@%d: %w", e.StreamID, e.EventNumber, err)
	}
	return rec, nil
}

// The client's discovery loop (EventStore-Client-Go v4.2.0, impl.go) logs
// each failed attempt to connect as a warning, ten times a second while the
// server is unreachable, and a successful one at debug level. These are the
// beginnings of those messages' formats.
var (
	connectFailed = []string{
		"error when creating a grpc connection for candidate",
		"error when reading gossip from candidate",
		"error when picking best candidate",
		"error when creating gRPC connection for the selected candidate",
		"error when reading server features from the best candidate",
	}
	connected = []string{
		"retrieved supported features on node",
		"selected node '%s' doesn't support a supported features endpoint",
	}
)

// clientLogger routes the client's logs to slog; its chatter (discovery,
// reconnection attempts) goes to debug. Failed and successful attempts to
// connect go to note as well ("" for a success): the errors of calls that
// time out without a connection, and WaitForServer's log lines, give the
// reason, in place of a warning ten times a second.
func clientLogger(log *slog.Logger, note func(failure string)) esdb.LoggingFunc {
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
		case hasAnyPrefix(format, connectFailed):
			note(msg)
		case hasAnyPrefix(format, connected):
			note("")
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

func hasAnyPrefix(s string, prefixes []string) bool {
	return slices.ContainsFunc(prefixes, func(p string) bool { return strings.HasPrefix(s, p) })
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
		return struct{}{}, s.ping(ctx)
	})
	return err
}

// ping reads the last event of $all.
func (s *Store) ping(ctx context.Context) error {
	stream, err := s.client.ReadAll(ctx, esdb.ReadAllOptions{Direction: esdb.Backwards, From: esdb.End{}}, 1)
	if err != nil {
		return mapError(err)
	}
	defer stream.Close()
	if _, err := stream.Recv(); err != nil && !errors.Is(err, io.EOF) {
		return mapError(err)
	}
	return nil
}

// How WaitForServer waits: the first warning after waitQuiet, then one every
// waitRepeat; waitRetry between a failed answer and the next try.
const (
	waitQuiet  = time.Second
	waitRepeat = time.Minute
	waitRetry  = time.Second
)

// WaitForServer returns once the server answers a read, or with ctx's error
// if ctx ends first: a service starting before EventStoreDB waits for it
// here rather than failing. If the server has not answered after a second,
// it logs a warning naming the server and why there is no answer, then
// another every minute, and once it answers, an info line. One read at a
// time waits for the connection, without the store's timeout, so a long
// wait leaves no abandoned calls behind.
func (s *Store) WaitForServer(ctx context.Context, log *slog.Logger) error {
	start := time.Now()
	try := func() <-chan error {
		done := make(chan error, 1)
		if err := s.start(); err != nil {
			done <- err
			return done
		}
		go func() {
			defer s.inflight.Done()
			done <- s.ping(ctx)
		}()
		return done
	}
	warn := time.NewTimer(waitQuiet)
	defer warn.Stop()
	done, retry, warned := try(), (<-chan time.Time)(nil), false
	var answer error // the server's last answer, if it gave an error
	for {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-warn.C:
			reason := cmp.Or(s.connectFailure(), errorText(answer), "no answer yet")
			log.Warn("waiting for EventStoreDB; retrying until it answers", "esdb", s.servers,
				"waited", time.Since(start).Round(time.Second), "reason", reason)
			warned = true
			warn.Reset(waitRepeat)
		case err := <-done:
			if errors.Is(err, ErrClosed) {
				return err
			}
			if err == nil {
				if warned {
					log.Info("EventStoreDB answers", "esdb", s.servers, "waited", time.Since(start).Round(time.Second))
				}
				return nil
			}
			answer, done, retry = err, nil, time.After(waitRetry)
		case <-retry:
			done, retry = try(), nil
		}
	}
}

func errorText(err error) string {
	if err == nil {
		return ""
	}
	return err.Error()
}

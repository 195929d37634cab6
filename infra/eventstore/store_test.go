package eventstore_test

import (
	"bytes"
	"context"
	"errors"
	"io"
	"log/slog"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"rxflow/infra/eventstore"
	"rxflow/standin/esdbserver"
)

func quiet() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

func TestCloseAfterCallsReturn(t *testing.T) {
	srv, err := esdbserver.Start(esdbserver.Config{Addr: "127.0.0.1:0", Logger: quiet()})
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Close()
	store, err := eventstore.Open(eventstore.Config{ConnectionString: srv.ConnectionString(), Logger: quiet()})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := store.Load(context.Background(), "urn:rx:close"); err != nil {
		t.Fatal(err)
	}
	if err := store.Close(); err != nil {
		t.Fatalf("close: %v", err)
	}
	if _, err := store.Load(context.Background(), "urn:rx:close"); !errors.Is(err, eventstore.ErrClosed) {
		t.Fatalf("load after close: %v, want ErrClosed", err)
	}
	if _, err := store.Subscribe(context.Background(), 0); !errors.Is(err, eventstore.ErrClosed) {
		t.Fatalf("subscribe after close: %v, want ErrClosed", err)
	}
}

// Calls abandoned while the server is unreachable are still inside the
// client when the store closes. The v4 client panics ("send on closed
// channel") if it is closed under them, so Close must leave it open.
func TestCloseWithCallsWaitingForConnection(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close() // nothing listens there now
	store, err := eventstore.Open(eventstore.Config{ConnectionString: "esdb://" + addr + "?tls=false", Logger: quiet()})
	if err != nil {
		t.Fatal(err)
	}
	for range 3 {
		ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
		_, err := store.Load(ctx, "urn:rx:unreachable")
		cancel()
		if !errors.Is(err, context.DeadlineExceeded) {
			t.Fatalf("load with no server: %v, want a deadline error", err)
		}
	}
	if err := store.Close(); err == nil {
		t.Fatal("close reported success with calls still waiting for a connection")
	}
	if _, err := store.Load(context.Background(), "urn:rx:unreachable"); !errors.Is(err, eventstore.ErrClosed) {
		t.Fatalf("load after close: %v, want ErrClosed", err)
	}
	time.Sleep(500 * time.Millisecond) // a panic in the client's goroutines would end the test binary here
}

// syncBuffer is a log destination safe for concurrent writers.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// A service that starts before EventStoreDB waits for it: WaitForServer
// logs one warning naming the server and the reason (not the client's ten
// warnings a second), keeps trying, and returns once the server is up.
func TestWaitForServer(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close() // nothing listens there until the server starts below
	var logs syncBuffer
	log := slog.New(slog.NewTextHandler(&logs, nil)) // info and above
	store, err := eventstore.Open(eventstore.Config{ConnectionString: "esdb://" + addr + "?tls=false", Logger: log})
	if err != nil {
		t.Fatal(err)
	}
	if store.Servers() != addr {
		t.Errorf("Servers() = %q, want %q", store.Servers(), addr)
	}
	done := make(chan error, 1)
	go func() { done <- store.WaitForServer(context.Background(), log) }()

	deadline := time.Now().Add(30 * time.Second) // a liveness bound, not a performance one
	for !strings.Contains(logs.String(), "waiting for EventStoreDB") {
		select {
		case err := <-done:
			t.Fatalf("WaitForServer returned %v with no server", err)
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("no waiting line within 30s; logs:\n%s", logs.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
	var waiting []string
	for line := range strings.SplitSeq(logs.String(), "\n") {
		if strings.Contains(line, "level=WARN") || strings.Contains(line, "level=ERROR") {
			waiting = append(waiting, line)
		}
	}
	if len(waiting) != 1 || !strings.Contains(waiting[0], addr) || !strings.Contains(waiting[0], "connection refused") {
		t.Errorf("want one warning naming %s and the refused connection, got %q", addr, waiting)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	err = store.Ping(ctx)
	cancel()
	if err == nil || !errors.Is(err, context.DeadlineExceeded) || !strings.Contains(err.Error(), "connection refused") {
		t.Errorf("ping with no server: %v, want a deadline error giving the reason", err)
	}

	srv, err := esdbserver.Start(esdbserver.Config{Addr: addr, Logger: quiet()})
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Close()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("WaitForServer: %v", err)
		}
	case <-time.After(30 * time.Second):
		t.Fatalf("WaitForServer still waiting 30s after the server started; logs:\n%s", logs.String())
	}
	if !strings.Contains(logs.String(), "EventStoreDB answers") {
		t.Errorf("no line saying the server answers; logs:\n%s", logs.String())
	}
	if err := store.Close(); err != nil {
		t.Errorf("close: %v", err)
	}
}

// WaitForServer gives up when its context ends.
func TestWaitForServerContext(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	store, err := eventstore.Open(eventstore.Config{ConnectionString: "esdb://" + addr + "?tls=false", Logger: quiet()})
	if err != nil {
		t.Fatal(err)
	}
	defer store.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	if err := store.WaitForServer(ctx, quiet()); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("WaitForServer = %v, want the context's error", err)
	}
}

// A malformed connection string is reported without its password.
func TestValidateHidesPassword(t *testing.T) {
	for _, cs := range []string{
		"esdb://admin:s3cret@db:notaport?tls=false",
		"esdb://admin:s3cret@db1:2113,db2:x/?tls=maybe",
	} {
		err := eventstore.Config{ConnectionString: cs}.Validate()
		if err == nil {
			t.Errorf("%s: accepted", cs)
			continue
		}
		if strings.Contains(err.Error(), "s3cret") {
			t.Errorf("error shows the password: %v", err)
		}
	}
}

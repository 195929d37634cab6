package eventstore_test

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"net"
	"testing"
	"time"

	"rxflow/infra/esdbserver"
	"rxflow/infra/eventstore"
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

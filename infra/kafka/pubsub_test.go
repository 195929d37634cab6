package kafka

import (
	"bytes"
	"log/slog"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ThreeDotsLabs/watermill"
)

// closedAddr returns a 127.0.0.1 address nothing listens on: a port that
// was free a moment ago.
func closedAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	if err := ln.Close(); err != nil {
		t.Fatal(err)
	}
	return addr
}

// With no broker reachable, NewPublisher fails with an error naming the
// brokers and a nil interface, not a nil *Publisher inside one: a caller
// that cleans up with "if pub != nil { pub.Close() }" must not panic.
func TestNewPublisherUnreachableReturnsNilInterface(t *testing.T) {
	addr := closedAddr(t)
	pub, err := NewPublisher(Config{Brokers: []string{addr}}, nil)
	if err == nil {
		t.Fatalf("NewPublisher on %s (nothing listening) succeeded", addr)
	}
	if pub != nil {
		t.Fatalf("NewPublisher failed (%v) but returned a non-nil %T", err, pub)
	}
	if !strings.Contains(err.Error(), addr) {
		t.Errorf("error %q does not name the broker %s", err, addr)
	}
}

// Invalid settings give a nil interface too, from both constructors.
func TestConstructorsReturnNilInterfaceOnError(t *testing.T) {
	bad := Config{Brokers: []string{"no-port"}, ConsumerGroup: "g"}
	if pub, err := NewPublisher(bad, nil); err == nil || pub != nil {
		t.Errorf("NewPublisher(invalid) = %T %v, %v; want nil, an error", pub, pub, err)
	}
	if sub, err := NewSubscriber(bad, nil); err == nil || sub != nil {
		t.Errorf("NewSubscriber(invalid) = %T %v, %v; want nil, an error", sub, sub, err)
	}
	if sub, err := NewSubscriber(Config{Brokers: []string{"127.0.0.1:9092"}}, nil); err == nil || sub != nil {
		t.Errorf("NewSubscriber(no group) = %T %v, %v; want nil, an error", sub, sub, err)
	}
}

// A subscriber does not connect until Subscribe: constructing one for an
// unreachable broker succeeds, and closing it does not panic.
func TestNewSubscriberUnreachableClosesCleanly(t *testing.T) {
	sub, err := NewSubscriber(Config{Brokers: []string{closedAddr(t)}, ConsumerGroup: "g"}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := sub.Close(); err != nil {
		t.Errorf("Close: %v", err)
	}
}

// A broker that accepts connections but never answers keeps NewPublisher
// connecting for sarama's timeouts: it says so after slowConnect, so the
// start-up is never silent. It still fails once the broker goes away.
func TestNewPublisherSaysItIsStillConnecting(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	var conns []net.Conn
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			conns = append(conns, c) // held open, never answered
			mu.Unlock()
		}
	}()
	defer func(d time.Duration) { slowConnect = d }(slowConnect)
	slowConnect = 50 * time.Millisecond
	var logs syncBuffer
	done := make(chan error, 1)
	go func() {
		pub, err := NewPublisher(Config{Brokers: []string{ln.Addr().String()}}, watermill.NewSlogLogger(slog.New(slog.NewTextHandler(&logs, nil))))
		if pub != nil {
			_ = pub.Close()
		}
		done <- err
	}()
	deadline := time.Now().Add(30 * time.Second) // a liveness bound
	for !strings.Contains(logs.String(), "still connecting") {
		select {
		case err := <-done:
			t.Fatalf("NewPublisher returned (%v) before saying it was still connecting", err)
		default:
		}
		if time.Now().After(deadline) {
			t.Fatal("no line saying it is still connecting")
		}
		time.Sleep(10 * time.Millisecond)
	}
	if !strings.Contains(logs.String(), "brokers="+ln.Addr().String()) {
		t.Errorf("logged %q, want a line naming the broker", logs.String())
	}
	ln.Close()
	mu.Lock()
	for _, c := range conns {
		c.Close()
	}
	mu.Unlock()
	select {
	case err := <-done:
		if err == nil {
			t.Error("NewPublisher succeeded without a broker")
		}
	case <-time.After(60 * time.Second):
		t.Fatal("NewPublisher still connecting 60s after the broker went away")
	}
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

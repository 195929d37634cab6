package kafka

import (
	"net"
	"strings"
	"testing"
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

package projector_test

import (
	"io"
	"log/slog"
	"net"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"rxflow/infra/eventstore"
	"rxflow/infra/httpapi"
	"rxflow/infra/kafka"
	"rxflow/service/projector"
)

// With Kafka unreachable, New fails with an error naming the broker, its
// clean-up does not panic, and it releases the data directory: a second
// attempt fails the same way, not on the ledger's lock.
func TestNewKafkaUnreachable(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	broker := ln.Addr().String()
	ln.Close()
	quiet := slog.New(slog.NewTextHandler(io.Discard, nil))
	cfg := projector.Config{
		Kafka:      kafka.Config{Brokers: []string{broker}},
		EventStore: eventstore.Config{ConnectionString: "esdb://" + broker + "?tls=false", Logger: quiet},
		DataDir:    filepath.Join(t.TempDir(), "projector"),
		HTTPAddr:   "127.0.0.1:0", Auth: httpapi.AuthConfig{StaticToken: "t"}, Logger: quiet,
	}
	for range 2 {
		svc, err := projector.New(cfg)
		if err == nil {
			t.Fatal("New succeeded without a broker")
		}
		if svc != nil {
			t.Errorf("New failed but returned a service")
		}
		if !strings.Contains(err.Error(), broker) {
			t.Errorf("error %q does not name the broker %s", err, broker)
		}
	}
}

// A deadline setting the workflow table does not know, or a non-positive
// duration, stops the start-up with a message naming it.
func TestConfigRefusesUnknownDeadlines(t *testing.T) {
	cfg := projector.Config{Kafka: kafka.Config{Brokers: []string{"127.0.0.1:1"}}, EventStore: eventstore.Config{ConnectionString: "esdb://127.0.0.1:1?tls=false"},
		Auth: httpapi.AuthConfig{StaticToken: "t"}, Partitions: 1}
	if err := cfg.Validate(); err != nil {
		t.Fatalf("valid config: %v", err)
	}
	for want, after := range map[string]map[string]time.Duration{
		`no deadline is named "pickup-overdu"`: {"pickup-overdu": time.Hour},
		"not a positive duration":              {"pickup-overdue": 0},
	} {
		cfg.Deadlines.After = after
		if err := cfg.Validate(); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("deadline %s: Validate = %v, want %q", after, err, want)
		}
	}
}

// A projector whose query API could authenticate no one, or whose JWT
// settings are incomplete, does not start, and says why.
func TestNewRefusesCallersItCannotAuthenticate(t *testing.T) {
	base := projector.Config{
		Kafka:      kafka.Config{Brokers: []string{"127.0.0.1:1"}},
		EventStore: eventstore.Config{ConnectionString: "esdb://127.0.0.1:1?tls=false"},
		DataDir:    filepath.Join(t.TempDir(), "projector"),
	}
	for name, c := range map[string]struct {
		auth httpapi.AuthConfig
		want []string
	}{
		"neither JWT nor static token": {httpapi.AuthConfig{}, []string{"no way to authenticate callers"}},
		"JWT without issuer and audience": {httpapi.AuthConfig{JWT: &httpapi.JWTConfig{JWKSFile: "jwks.json"}},
			[]string{"the issuer is required", "the audience is required"}},
		"JWT with HS256": {httpapi.AuthConfig{JWT: &httpapi.JWTConfig{JWKSURL: "https://idp/jwks", Issuer: "i", Audience: "a", Algorithms: []string{"HS256"}}},
			[]string{`algorithm "HS256" is not allowed`}},
	} {
		cfg := base
		cfg.Auth = c.auth
		svc, err := projector.New(cfg)
		if err == nil || svc != nil {
			t.Fatalf("%s: New succeeded", name)
		}
		for _, w := range c.want {
			if !strings.Contains(err.Error(), w) {
				t.Errorf("%s: error %q does not say %q", name, err, w)
			}
		}
	}
}

// Segment settings out of range stop the start-up before anything is
// opened, saying which and why.
func TestNewRefusesSegmentSettingsOutOfRange(t *testing.T) {
	base := projector.Config{
		Kafka:      kafka.Config{Brokers: []string{"127.0.0.1:1"}},
		EventStore: eventstore.Config{ConnectionString: "esdb://127.0.0.1:1?tls=false"},
		Auth:       httpapi.AuthConfig{StaticToken: "t"},
	}
	for want, segments := range map[string]projector.Segments{
		"segments must be within 1..1024, got -1":     {Database: "postgres://127.0.0.1:1/db", Count: -1},
		"segments must be within 1..1024, got 1025":   {Database: "postgres://127.0.0.1:1/db", Count: 1025},
		"lease time must be at least 100ms, got 10ms": {Database: "postgres://127.0.0.1:1/db", LeaseTTL: 10 * time.Millisecond},
	} {
		cfg := base
		cfg.Segments = segments
		svc, err := projector.New(cfg)
		if err == nil || svc != nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%+v: New = %v, want %q", segments, err, want)
		}
	}
}

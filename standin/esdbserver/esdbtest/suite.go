// Package esdbtest is a conformance suite for servers that speak EventStoreDB's
// gRPC contract. It drives the server through the official Go client (plus a
// raw gRPC connection for wire details the client hides), so the same suite
// runs against the embedded rxflow server and against a real
// EventStoreDB/KurrentDB node.
//
// Every test writes to streams whose names carry a fresh UUID and only
// asserts on its own events, so the suite is safe on a shared server.
package esdbtest

import (
	"crypto/tls"
	"testing"
	"time"

	"github.com/EventStore/EventStore-Client-Go/v4/esdb"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
)

// DefaultMaxAppendSize is EventStoreDB's default MaxAppendSize (1 MiB).
const DefaultMaxAppendSize = 1 << 20

// Features describes the server under test beyond the common contract.
type Features struct {
	// MaxAppendSize is the server's append size limit in bytes;
	// 0 means DefaultMaxAppendSize.
	MaxAppendSize int

	// Isolated starts a dedicated server that the suite may stop, and returns
	// its connection string and a function that shuts it down. Tests that
	// need to stop a server (shutdown behaviour) skip when it is nil, which
	// is the right setting for a shared real server.
	Isolated func(t *testing.T) (connectionString string, shutdown func() error)
}

func (f Features) maxAppendSize() int {
	if f.MaxAppendSize > 0 {
		return f.MaxAppendSize
	}
	return DefaultMaxAppendSize
}

// suite carries what every test needs.
type suite struct {
	features Features
	client   *esdb.Client
	raw      *grpc.ClientConn
}

// RunSuite runs the whole conformance suite as subtests of t against the
// server reachable at connectionString (e.g. "esdb://127.0.0.1:2113?tls=false").
func RunSuite(t *testing.T, connectionString string, features Features) {
	s := &suite{
		features: features,
		client:   Connect(t, connectionString),
		raw:      dialRaw(t, connectionString),
	}

	groups := []struct {
		name  string
		tests []namedTest
	}{
		{"ExpectedRevision", s.expectedRevisionTests()},
		{"Idempotency", s.idempotencyTests()},
		{"ReadStream", s.readStreamTests()},
		{"All", s.allTests()},
		{"Delete", s.deleteTests()},
		{"Subscription", s.subscriptionTests()},
		{"FilterRegex", s.regexTests()},
		{"Links", s.linkTests()},
		{"SubscriptionNotices", s.noticeTests()},
		{"Concurrency", s.concurrencyTests()},
		{"Limits", s.limitTests()},
		{"Shutdown", s.shutdownTests()},
	}
	for _, g := range groups {
		t.Run(g.name, func(t *testing.T) {
			for _, tc := range g.tests {
				t.Run(tc.name, tc.run)
			}
		})
	}
}

type namedTest struct {
	name string
	run  func(t *testing.T)
}

// Connect returns a client for connectionString that is closed when t ends.
func Connect(tb testing.TB, connectionString string) *esdb.Client {
	tb.Helper()
	cfg, err := esdb.ParseConnectionString(connectionString)
	if err != nil {
		tb.Fatalf("parse connection string %q: %v", connectionString, err)
	}
	cfg.Logger = esdb.NoopLogging()
	client, err := esdb.NewClient(cfg)
	if err != nil {
		tb.Fatalf("new client: %v", err)
	}
	tb.Cleanup(func() { _ = client.Close() })
	return client
}

// dialRaw opens a plain gRPC connection with the transport and credentials
// the connection string asks for.
func dialRaw(tb testing.TB, connectionString string) *grpc.ClientConn {
	tb.Helper()
	cfg, err := esdb.ParseConnectionString(connectionString)
	if err != nil {
		tb.Fatalf("parse connection string %q: %v", connectionString, err)
	}
	opts := []grpc.DialOption{grpc.WithDefaultCallOptions(grpc.MaxCallRecvMsgSize(17 << 20))}
	if cfg.DisableTLS {
		opts = append(opts, grpc.WithTransportCredentials(insecure.NewCredentials()))
	} else {
		tlsCfg := &tls.Config{InsecureSkipVerify: cfg.SkipCertificateVerification, RootCAs: cfg.RootCAs}
		if cfg.UserCertFile != "" {
			cert, err := tls.LoadX509KeyPair(cfg.UserCertFile, cfg.UserKeyFile)
			if err != nil {
				tb.Fatalf("load user certificate: %v", err)
			}
			tlsCfg.Certificates = []tls.Certificate{cert}
		}
		opts = append(opts, grpc.WithTransportCredentials(credentials.NewTLS(tlsCfg)))
		if cfg.Username != "" {
			opts = append(opts, grpc.WithPerRPCCredentials(basicAuth{cfg.Username, cfg.Password}))
		}
	}
	conn, err := grpc.NewClient(cfg.Address, opts...)
	if err != nil {
		tb.Fatalf("dial %s: %v", cfg.Address, err)
	}
	tb.Cleanup(func() { _ = conn.Close() })
	return conn
}

// Timeouts shared by the tests. They bound waiting, never measure speed.
const (
	opTimeout    = 30 * time.Second
	eventTimeout = 10 * time.Second
)

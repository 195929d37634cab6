package esdbserver_test

import (
	"io"
	"log/slog"
	"os"
	"strings"
	"testing"

	"rxflow/standin/esdbserver"
	"rxflow/standin/esdbserver/esdbtest"
)

// startServer starts an embedded server on a free loopback port, closed
// when tb ends.
func startServer(tb testing.TB, dataDir string) *esdbserver.Server {
	tb.Helper()
	return startServerWith(tb, esdbserver.Config{DataDir: dataDir})
}

// startServerWith is startServer with cfg's data directory and TLS files.
func startServerWith(tb testing.TB, cfg esdbserver.Config) *esdbserver.Server {
	tb.Helper()
	cfg.Addr, cfg.Logger = "127.0.0.1:0", slog.New(slog.NewTextHandler(io.Discard, nil))
	srv, err := esdbserver.Start(cfg)
	if err != nil {
		tb.Fatalf("start server: %v", err)
	}
	tb.Cleanup(func() { _ = srv.Close() })
	return srv
}

// isolated gives the shutdown test a server of its own.
func isolated(dataDir func(t *testing.T) string) func(t *testing.T) (string, func() error) {
	return func(t *testing.T) (string, func() error) {
		srv := startServer(t, dataDir(t))
		return srv.ConnectionString(), srv.Close
	}
}

func TestConformance(t *testing.T) {
	t.Run("Memory", func(t *testing.T) {
		memory := func(*testing.T) string { return "" }
		srv := startServer(t, memory(t))
		esdbtest.RunSuite(t, srv.ConnectionString(), esdbtest.Features{Isolated: isolated(memory)})
	})
	t.Run("Disk", func(t *testing.T) {
		disk := func(t *testing.T) string { return t.TempDir() }
		srv := startServer(t, disk(t))
		esdbtest.RunSuite(t, srv.ConnectionString(), esdbtest.Features{Isolated: isolated(disk)})
	})
	// Over TLS: the client connects with tls=true and the test CA as
	// tlsCAFile, verifying the server's certificate and name.
	t.Run("TLS", func(t *testing.T) {
		files := esdbtest.NewTLSFiles(t)
		start := func(t *testing.T) *esdbserver.Server {
			return startServerWith(t, esdbserver.Config{TLSCertFile: files.CertFile, TLSKeyFile: files.KeyFile})
		}
		srv := start(t)
		conn := srv.TLSConnectionString(files.CAFile)
		if !strings.Contains(conn, "tls=true&tlsCAFile=") {
			t.Fatalf("connection string %q does not ask for TLS with the CA file", conn)
		}
		esdbtest.RunSuite(t, conn, esdbtest.Features{Isolated: func(t *testing.T) (string, func() error) {
			srv := start(t)
			return srv.TLSConnectionString(files.CAFile), srv.Close
		}})
	})
	t.Run("RealEventStoreDB", func(t *testing.T) {
		conn := os.Getenv("ESDB_TEST_CONNECTION_STRING")
		if conn == "" {
			t.Skip("ESDB_TEST_CONNECTION_STRING is not set: no real EventStoreDB/KurrentDB to check against (e.g. esdb://localhost:2113?tls=false)")
		}
		esdbtest.RunSuite(t, conn, esdbtest.Features{})
	})
}

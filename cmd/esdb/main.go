// Command esdb runs the embedded EventStoreDB server standalone.
//
// A failed start-up (bad flag, port in use, unusable data directory) is one
// line on stderr and exit status 1; see docs/deploy.md, "Start-up failures".
package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"os"
	"os/signal"
	"syscall"

	"rxflow/infra/config"
	"rxflow/standin/esdbserver"
)

func main() {
	err := run(os.Args[1:])
	if err != nil && !errors.Is(err, config.ErrHelp) {
		fmt.Fprintln(os.Stderr, config.Line("esdb", err))
		os.Exit(1)
	}
}

func run(args []string) error {
	f := config.NewFlags("esdb")
	addr := f.String("addr", "ESDB_ADDR", esdbserver.DefaultAddr, "listen address")
	data := f.String("data", "ESDB_DATA_DIR", "./data/esdb", `data directory, "" for in memory`)
	maxAppend := f.IntRange("max-append-size", "ESDB_MAX_APPEND_SIZE", esdbserver.DefaultMaxAppendSize, 1, math.MaxInt, "maximum append size in bytes")
	certFile := f.String("tls-cert-file", "ESDB_TLS_CERT_FILE", "", "PEM server certificate (chain); with -tls-key-file the listener speaks TLS only")
	keyFile := f.String("tls-key-file", "ESDB_TLS_KEY_FILE", "", "PEM private key of -tls-cert-file")
	if err := f.Parse(args); err != nil {
		return err
	}

	log := slog.New(slog.NewTextHandler(os.Stderr, nil))
	srv, err := esdbserver.Start(esdbserver.Config{Addr: *addr, DataDir: *data, MaxAppendSize: *maxAppend, Logger: log,
		TLSCertFile: *certFile, TLSKeyFile: *keyFile})
	if err != nil {
		return err
	}
	// With TLS, a client adds &tlsCAFile=<the CA that signed the certificate>
	// unless its system roots hold that CA.
	fmt.Println(srv.ConnectionString())

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	<-ctx.Done()
	if err := srv.Close(); err != nil {
		return fmt.Errorf("close: %w", err)
	}
	return nil
}

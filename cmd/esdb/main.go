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
	if err := f.Parse(args); err != nil {
		return err
	}

	log := slog.New(slog.NewTextHandler(os.Stderr, nil))
	srv, err := esdbserver.Start(esdbserver.Config{Addr: *addr, DataDir: *data, MaxAppendSize: *maxAppend, Logger: log})
	if err != nil {
		return err
	}
	fmt.Println(srv.ConnectionString())

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	<-ctx.Done()
	if err := srv.Close(); err != nil {
		return fmt.Errorf("close: %w", err)
	}
	return nil
}

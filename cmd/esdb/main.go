// Command esdb runs the embedded EventStoreDB server standalone.
package main

import (
	"context"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"syscall"

	"rxflow/infra/esdbserver"
)

func main() {
	addr := flag.String("addr", env("ESDB_ADDR", esdbserver.DefaultAddr), "listen address (env ESDB_ADDR)")
	data := flag.String("data", env("ESDB_DATA_DIR", "./data/esdb"), `data directory, "" for in memory (env ESDB_DATA_DIR)`)
	maxAppend := flag.Int("max-append-size", esdbserver.DefaultMaxAppendSize, "maximum append size in bytes")
	flag.Parse()

	log := slog.New(slog.NewTextHandler(os.Stderr, nil))
	srv, err := esdbserver.Start(esdbserver.Config{Addr: *addr, DataDir: *data, MaxAppendSize: *maxAppend, Logger: log})
	if err != nil {
		log.Error("start", "err", err)
		os.Exit(1)
	}
	fmt.Println(srv.ConnectionString())

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	<-ctx.Done()
	if err := srv.Close(); err != nil {
		log.Error("close", "err", err)
		os.Exit(1)
	}
}

// env returns the environment variable if set (even to ""), else def.
func env(key, def string) string {
	if v, ok := os.LookupEnv(key); ok {
		return v
	}
	return def
}

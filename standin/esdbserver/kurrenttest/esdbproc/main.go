// Command esdbproc runs the embedded server in memory on a free loopback
// port for the kurrenttest tests, which cannot link it: KurrentDB-Client-Go
// and EventStore-Client-Go register the same protobuf names. It prints the
// connection string on its first line and stops when stdin closes.
package main

import (
	"fmt"
	"io"
	"log/slog"
	"os"

	"rxflow/standin/esdbserver"
)

func main() {
	srv, err := esdbserver.Start(esdbserver.Config{
		Addr:   "127.0.0.1:0",
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil)),
	})
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	fmt.Println(srv.ConnectionString())
	_, _ = io.Copy(io.Discard, os.Stdin)
	if err := srv.Close(); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
}

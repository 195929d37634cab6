// Command partnersim runs the partner SIMULATORS (stand-ins for insurance,
// pharmacy, patient notifications and support alerting — not the real
// partners) until SIGINT or SIGTERM.
//
//	partnersim [-addr 127.0.0.1:8090]   (or PARTNERSIM_ADDR)
//
// A failed start-up (bad flag, port in use) is one line on stderr and exit
// status 1; see docs/deploy.md, "Start-up failures".
package main

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"syscall"

	"rxflow/infra/config"
	"rxflow/standin/partnersim"
)

func main() {
	err := run(os.Args[1:])
	if err != nil && !errors.Is(err, config.ErrHelp) {
		fmt.Fprintln(os.Stderr, config.Line("partnersim", err))
		os.Exit(1)
	}
}

func run(args []string) error {
	f := config.NewFlags("partnersim")
	addr := f.String("addr", "PARTNERSIM_ADDR", "", "listen address (default 127.0.0.1:8090)")
	if err := f.Parse(args); err != nil {
		return err
	}
	logger := slog.New(slog.NewTextHandler(os.Stderr, nil))

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()

	sim, err := partnersim.Start(partnersim.Config{Addr: cmp.Or(*addr, "127.0.0.1:8090"), Logger: logger})
	if err != nil {
		return err
	}
	fmt.Println("Partner SIMULATORS (stand-ins, not the real partners); client base URLs:")
	for _, p := range partnersim.Partners() {
		fmt.Printf("  %-13s %s\n", p, sim.URL(p))
	}
	fmt.Printf("Controls: http://%s/_sim/{calls,fail,down,latency,retryafter,reset}\n", sim.Addr())

	<-ctx.Done()
	logger.Info("partnersim: shutting down")
	return sim.Close()
}

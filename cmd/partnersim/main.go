// Command partnersim runs the partner SIMULATORS (stand-ins for insurance,
// pharmacy, patient notifications and support alerting — not the real
// partners) until SIGINT or SIGTERM.
//
//	partnersim [-addr 127.0.0.1:8090]   (or PARTNERSIM_ADDR)
package main

import (
	"context"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"syscall"

	"rxflow/infra/partnersim"
)

func main() {
	def := os.Getenv("PARTNERSIM_ADDR")
	if def == "" {
		def = "127.0.0.1:8090"
	}
	addr := flag.String("addr", def, "listen address (env PARTNERSIM_ADDR)")
	flag.Parse()

	logger := slog.New(slog.NewTextHandler(os.Stderr, nil))
	if err := run(*addr, logger); err != nil {
		logger.Error("partnersim failed", "err", err)
		os.Exit(1)
	}
}

func run(addr string, logger *slog.Logger) error {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()

	sim, err := partnersim.Start(partnersim.Config{Addr: addr, Logger: logger})
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

// Package ops serves the operational endpoints every service has:
// /healthz (the process is up), /readyz (it can do its work) and
// /metrics (Prometheus), and runs an HTTP server until its context ends.
package ops

import (
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"net"
	"net/http"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// NewRegistry returns a Prometheus registry with the Go and process
// collectors: each service owns one, nothing is registered globally.
func NewRegistry() *prometheus.Registry {
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return reg
}

// Handle adds /healthz, /readyz and /metrics to mux. ready reports whether
// the service can do its work; nil means ready.
func Handle(mux *http.ServeMux, reg *prometheus.Registry, ready func(ctx context.Context) error) {
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) {
		WriteJSON(w, http.StatusOK, map[string]string{"status": "ok"})
	})
	mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, r *http.Request) {
		ctx, cancel := context.WithTimeout(r.Context(), 2*time.Second)
		defer cancel()
		if err := ready(ctx); err != nil {
			WriteJSON(w, http.StatusServiceUnavailable, map[string]string{"status": "not ready", "error": err.Error()})
			return
		}
		WriteJSON(w, http.StatusOK, map[string]string{"status": "ready"})
	})
	mux.Handle("GET /metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{Registry: reg}))
}

// Beside serves /healthz, /readyz and /metrics (exact paths, as Handle
// does) and hands every other request to app unchanged: no mux stands in
// between to clean or redirect app's paths.
func Beside(app http.Handler, reg *prometheus.Registry, ready func(ctx context.Context) error) http.Handler {
	mux := http.NewServeMux()
	Handle(mux, reg, ready)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/healthz", "/readyz", "/metrics":
			mux.ServeHTTP(w, r)
		default:
			app.ServeHTTP(w, r)
		}
	})
}

// WriteJSON writes v as a JSON response with the given status.
func WriteJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v) // the client went away: nothing to do
}

// Server is an HTTP server bound to its address.
type Server struct {
	srv     *http.Server
	ln      net.Listener
	serving atomic.Bool
}

// Listen binds addr (host:port; port 0 picks one).
func Listen(addr string, h http.Handler) (*Server, error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, err
	}
	// DisableGeneralOptionsHandler: "OPTIONS *" reaches h, which answers it.
	return &Server{ln: ln, srv: &http.Server{Handler: h, ReadHeaderTimeout: 10 * time.Second, DisableGeneralOptionsHandler: true}}, nil
}

// Addr is the bound address.
func (s *Server) Addr() string { return s.ln.Addr().String() }

// Close releases the address of a server that is not serving: one whose
// service failed to start. After Serve it does nothing.
func (s *Server) Close() error {
	if s.serving.Load() {
		return nil // Serve shuts down when its context ends
	}
	if err := s.ln.Close(); err != nil && !errors.Is(err, net.ErrClosed) {
		return err
	}
	return nil
}

// Serve serves until ctx ends, then shuts down gracefully.
func (s *Server) Serve(ctx context.Context, log *slog.Logger) error {
	s.serving.Store(true)
	done := make(chan error, 1)
	go func() { done <- s.srv.Serve(s.ln) }()
	select {
	case err := <-done:
		return err
	case <-ctx.Done():
	}
	shutdown, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := s.srv.Shutdown(shutdown); err != nil {
		log.Warn("http shutdown", "err", err)
	}
	if err := <-done; !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return nil
}

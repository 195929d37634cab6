package esdbserver

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"net"
	"net/url"
	"sync"
	"time"

	features "github.com/EventStore/EventStore-Client-Go/v4/protos/serverfeatures"
	"github.com/EventStore/EventStore-Client-Go/v4/protos/shared"
	api "github.com/EventStore/EventStore-Client-Go/v4/protos/streams"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/keepalive"
)

// serverVersion is the KurrentDB release whose behaviour this server
// follows (subscription notices included); clients parse it as purely
// numeric "major.minor.patch".
const serverVersion = "25.0.1"

// Server is a running embedded EventStoreDB.
type Server struct {
	log     *slog.Logger
	lis     net.Listener
	gs      *grpc.Server
	ix      *index
	st      *storage
	w       *writer
	maxSize int
	tls     bool

	closing   chan struct{} // closed when Close starts: live subscriptions end
	closeOnce sync.Once
	closeErr  error
	served    chan struct{}
}

// Start opens the storage (replaying it into the in-memory index), listens
// on cfg.Addr and serves in the background.
func Start(cfg Config) (*Server, error) {
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("esdbserver: invalid config: %w", err)
	}
	cfg = cfg.withDefaults()
	var creds []grpc.ServerOption
	if cfg.TLSCertFile != "" {
		cert, err := tls.LoadX509KeyPair(cfg.TLSCertFile, cfg.TLSKeyFile)
		if err != nil {
			return nil, fmt.Errorf("esdbserver: TLS certificate %s and key %s: %w", cfg.TLSCertFile, cfg.TLSKeyFile, err)
		}
		creds = append(creds, grpc.Creds(credentials.NewTLS(&tls.Config{MinVersion: tls.VersionTLS12, Certificates: []tls.Certificate{cert}})))
	}

	st, err := openStorage(cfg.DataDir, cfg.Logger)
	if err != nil {
		return nil, fmt.Errorf("esdbserver: %w", err)
	}
	ix := newIndex()
	next, err := st.load(ix.replay)
	if err != nil {
		_ = st.close()
		return nil, fmt.Errorf("esdbserver: load: %w", err)
	}
	lis, err := net.Listen("tcp", cfg.Addr)
	if err != nil {
		_ = st.close()
		return nil, fmt.Errorf("esdbserver: listen: %w", err)
	}

	s := &Server{
		log:     cfg.Logger,
		lis:     lis,
		ix:      ix,
		st:      st,
		w:       newWriter(ix, st, cfg.Logger, next),
		maxSize: cfg.MaxAppendSize,
		tls:     len(creds) > 0,
		closing: make(chan struct{}),
		served:  make(chan struct{}),
	}
	// Like EventStoreDB, accept requests of up to 16 MiB so an oversized
	// append gets EventStoreDB's error rather than a transport one.
	recv := max(16<<20, cfg.MaxAppendSize+1<<20)
	s.gs = grpc.NewServer(append(creds,
		grpc.MaxRecvMsgSize(recv),
		grpc.MaxSendMsgSize(math.MaxInt32),
		grpc.ForceServerCodec(codec{}),
		// Streams run on long-lived workers whose stacks are already grown:
		// a fresh goroutine per append spent 5% of the CPU growing its stack.
		grpc.NumStreamWorkers(16),
		// Fixed flow-control windows turn off the BDP estimator, whose pings
		// on every burst of data cost a round trip's worth of CPU per append.
		grpc.InitialWindowSize(4<<20),
		grpc.InitialConnWindowSize(16<<20),
		// The client pings every 10 s even without calls.
		grpc.KeepaliveEnforcementPolicy(keepalive.EnforcementPolicy{MinTime: time.Second, PermitWithoutStream: true}),
		grpc.ChainUnaryInterceptor(unaryInterceptor(s.log)),
		grpc.ChainStreamInterceptor(streamInterceptor(s.log)),
	)...)
	api.RegisterStreamsServer(s.gs, &streamsAPI{s: s})
	features.RegisterServerFeaturesServer(s.gs, featuresAPI{})

	go s.w.run()
	go func() {
		defer close(s.served)
		// ErrServerStopped: Close came before Serve (a start-up that failed
		// after this one), which is no error.
		if err := s.gs.Serve(lis); err != nil && !errors.Is(err, grpc.ErrServerStopped) {
			s.log.Error("esdbserver: serve", "err", err)
		}
	}()
	s.log.Info("esdbserver: started", "addr", s.Addr(), "tls", s.tls, "data_dir", cfg.DataDir, "events", len(ix.log))
	return s, nil
}

// Addr is the bound host:port.
func (s *Server) Addr() string { return s.lis.Addr().String() }

// ConnectionString is what esdb.ParseConnectionString needs to reach s:
// "esdb://<addr>?tls=false", or with TLS "esdb://<addr>?tls=true", to
// which a client whose system roots do not hold the certificate's CA adds
// "&tlsCAFile=<CA file>" (TLSConnectionString).
func (s *Server) ConnectionString() string {
	if s.tls {
		return "esdb://" + s.Addr() + "?tls=true"
	}
	return "esdb://" + s.Addr() + "?tls=false"
}

// TLSConnectionString is ConnectionString with the certificate verified
// against the PEM CA certificates in caFile (tlsCAFile). It is
// ConnectionString unchanged when s speaks plaintext.
func (s *Server) TLSConnectionString(caFile string) string {
	if !s.tls {
		return s.ConnectionString()
	}
	return s.ConnectionString() + "&tlsCAFile=" + url.QueryEscape(caFile)
}

// Close stops serving: live subscriptions end with Unavailable, in-flight
// appends finish, then the storage is flushed and closed.
func (s *Server) Close() error {
	s.closeOnce.Do(func() {
		close(s.closing)
		stopped := make(chan struct{})
		go func() {
			s.gs.GracefulStop()
			close(stopped)
		}()
		select {
		case <-stopped:
		case <-time.After(5 * time.Second):
			s.gs.Stop()
			<-stopped
		}
		<-s.served
		s.w.close()
		s.closeErr = s.st.close()
		s.log.Info("esdbserver: stopped", "addr", s.Addr())
	})
	return s.closeErr
}

// replay applies a stored record during load, refusing a log whose
// revisions do not follow each other.
func (ix *index) replay(r *record, data []byte) error {
	s := ix.streams[r.stream]
	if s != nil && s.tombstone != nil {
		return fmt.Errorf("stream %q has events after its tombstone", r.stream)
	}
	if r.rev != deletedStream && r.rev != uint64(s.last()+1) {
		return fmt.Errorf("stream %q: revision %d follows %d", r.stream, r.rev, s.last())
	}
	ix.apply(r, data)
	return nil
}

type featuresAPI struct {
	features.UnimplementedServerFeaturesServer
}

// GetSupportedMethods lists the methods served, named the way EventStoreDB
// does (lower-cased service and method names, see ServerFeatures.cs).
func (featuresAPI) GetSupportedMethods(context.Context, *shared.Empty) (*features.SupportedMethods, error) {
	const streams = "event_store.client.streams.streams"
	return &features.SupportedMethods{
		EventStoreServerVersion: serverVersion,
		Methods: []*features.SupportedMethod{
			{ServiceName: streams, MethodName: "read", Features: []string{"position", "events"}},
			{ServiceName: streams, MethodName: "append"},
			{ServiceName: streams, MethodName: "delete"},
			{ServiceName: streams, MethodName: "tombstone"},
			{ServiceName: streams, MethodName: "batchappend", Features: []string{"deadline_duration"}},
			{ServiceName: "event_store.client.server_features.serverfeatures", MethodName: "getsupportedmethods"},
		},
	}, nil
}

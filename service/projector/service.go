// Package projector runs the projections as a service: one runner per
// projector (read model, partner reactors, outbound Kafka events), each from
// its own checkpoint on one shared catch-up subscription of $all
// (projections.SharedFeed), plus the HTTP query API with /healthz, /readyz
// and /metrics. cmd/projector and cmd/stack wire it.
//
// The query API's callers authenticate with JWTs or the static token
// (Config.Auth), and every request is recorded in the access log, a SQLite
// file of its own in the data directory (readmodel.AccessLogFile), which a
// rebuild of the read model leaves alone.
//
// A failing projector is resubscribed with backoff, a failing partner call
// is parked or fails its prescription: docs/failure-policy.md.
package projector

import (
	"cmp"
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/ThreeDotsLabs/watermill"
	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/prometheus/client_golang/prometheus"

	"rxflow/commands"
	"rxflow/domain"
	"rxflow/events"
	"rxflow/infra/console"
	"rxflow/infra/eventstore"
	"rxflow/infra/httpapi"
	"rxflow/infra/kafka"
	"rxflow/infra/operator"
	"rxflow/infra/ops"
	"rxflow/infra/partners"
	"rxflow/projections"
)

// Config of the projector service. Zero values take the defaults.
type Config struct {
	Kafka        kafka.Config // only publishes: no consumer group needed
	CommandTopic string       // where the pharmacy's failure command goes; default commands.TopicCommands
	// DeadLetterTopic and RejectionTopic are consumed into the operations
	// store (dead letters, refusals) by ConsumerGroup; defaults
	// commands.TopicDeadLetters, commands.TopicRejections and
	// "rxflow-projector-operations".
	DeadLetterTopic, RejectionTopic, ConsumerGroup string
	Outbound                                       projections.OutboundTopics
	Partitions                                     int32 // partitions of the topics it creates; default 8
	EventStore                                     eventstore.Config
	DataDir                                        string             // read model file and ledger directory; default ./data/projector
	Partners                                       partners.Endpoints // one entry per partner of projections.Reactions, by name
	HTTPAddr                                       string             // query API and ops endpoints; default 127.0.0.1:8080
	Auth                                           httpapi.AuthConfig // the query API's callers: JWTs, the static token, or both; required
	Logger                                         *slog.Logger
	Deadlines                                      Deadlines
	Segments                                       Segments
}

// Segments configures the PostgreSQL mode, where several instances share
// the work: each holds leases on some of the segments of the event space
// (projections.Coordinator). Without a Database, the embedded stores in
// DataDir serve one instance, which handles everything (projections.Whole).
type Segments struct {
	// Database is a PostgreSQL connection URL: the read model, the ledger,
	// the checkpoints, the operations store, the access log and the leases
	// live there. Empty: the embedded stores.
	Database string
	// Count is the number of segments; default 8. It is fixed at the
	// database's first start: another count is refused.
	Count int
	// InstanceID names this instance among those sharing the database;
	// default the host name and a random suffix. It must be unique.
	InstanceID string
	// LeaseTTL is how long a segment's lease lasts without renewal; renewed
	// and claimed every LeaseTTL/3; default 10s.
	LeaseTTL time.Duration
}

// Deadlines configures the deadline scheduler. Zero values take the
// defaults: the workflow table's durations, a pass every 30 s, a command
// sent again after 10 min without its event.
type Deadlines struct {
	After       map[string]time.Duration // by deadline name (domain.Prescriptions.Deadlines), replacing the table's default
	Every       time.Duration            // pause between passes
	ResendAfter time.Duration
	Clock       projections.Clock // the time port; default time.Now
}

func (c *Config) setDefaults() {
	c.CommandTopic = cmp.Or(c.CommandTopic, commands.TopicCommands)
	c.DeadLetterTopic = cmp.Or(c.DeadLetterTopic, commands.TopicDeadLetters)
	c.RejectionTopic = cmp.Or(c.RejectionTopic, commands.TopicRejections)
	c.ConsumerGroup = cmp.Or(c.ConsumerGroup, "rxflow-projector-operations")
	c.Outbound = c.Outbound.WithDefaults()
	c.Partitions = cmp.Or(c.Partitions, 8)
	c.DataDir = cmp.Or(c.DataDir, filepath.Join("data", "projector"))
	c.HTTPAddr = cmp.Or(c.HTTPAddr, "127.0.0.1:8080")
	if c.Segments.Database != "" {
		c.Segments.Count = cmp.Or(c.Segments.Count, 8)
		c.Segments.LeaseTTL = cmp.Or(c.Segments.LeaseTTL, 10*time.Second)
		if c.Segments.InstanceID == "" {
			host, _ := os.Hostname()
			c.Segments.InstanceID = cmp.Or(host, "projector") + "-" + strings.ToLower(rand.Text()[:8])
		}
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
}

// Validate reports every problem at once.
func (c Config) Validate() error {
	errs := []error{c.Kafka.Validate(), c.EventStore.Validate()}
	if _, err := domain.Prescriptions.WithDeadlines(c.Deadlines.After); err != nil {
		errs = append(errs, fmt.Errorf("projector: deadlines: %w", err))
	}
	if err := c.Auth.Validate(); err != nil {
		errs = append(errs, fmt.Errorf("projector: query API: %w", err))
	}
	if c.Segments.Database != "" && (c.Segments.Count < 1 || c.Segments.Count > MaxSegments) {
		errs = append(errs, fmt.Errorf("projector: segments must be within 1..%d, got %d", MaxSegments, c.Segments.Count))
	}
	if c.Segments.Database != "" && c.Segments.LeaseTTL < MinLeaseTTL {
		errs = append(errs, fmt.Errorf("projector: lease time must be at least %v, got %v", MinLeaseTTL, c.Segments.LeaseTTL))
	}
	if c.Partitions < 1 {
		errs = append(errs, fmt.Errorf("projector: partitions must be positive, got %d", c.Partitions))
	}
	return errors.Join(errs...)
}

// Bounds of Segments.
const (
	MaxSegments = 1024
	MinLeaseTTL = 100 * time.Millisecond
)

// Service is a running projector.
type Service struct {
	cfg       Config
	log       *slog.Logger
	store     *eventstore.Store
	feed      *projections.SharedFeed // $all, read once for every runner
	stores    stores
	sub       message.Subscriber
	auth      *httpapi.Authenticator
	pub       message.Publisher
	runners   []*projections.Runner          // embedded mode: one per projector, on the Whole lease
	readers   *projections.Runner            // embedded mode: the read-model projector's runner, which the scheduler waits for
	coord     *projections.Coordinator       // PostgreSQL mode: the runners of the segments held
	scheduler *projections.DeadlineScheduler // embedded mode; on PostgreSQL one runs with segment 0
	lag       *projections.LagTracker
	http      *ops.Server
}

// queries is the read model's query side: the query API's, the console's
// and the deadline scheduler's.
type queries interface {
	httpapi.ReadModel
	console.ReadModel
	projections.DueDeadlines
}

// accessLog is the query API's access log.
type accessLog interface {
	httpapi.AccessLog
	Close() error
}

// stores are the projector's stores, embedded or on PostgreSQL.
type stores struct {
	queries   queries
	ledger    projections.Ledger // for queries, operator retries and the deadline scheduler
	ops       operationsStore
	accessLog accessLog
	// bound are the read model and ledger whose writes are fenced by lease.
	bound  func(lease projections.Lease) (projections.ReadModel, projections.Ledger)
	leases projections.Leases // nil: embedded, one instance on projections.Whole
	// lowestCheckpoint is, with leases, the lowest checkpoint of the named
	// projectors over every segment.
	lowestCheckpoint func(ctx context.Context, projectors []string) (uint64, error)
	close            func() error
}

// operationsStore is the operations store as the service uses it: consumed
// into, acted on, read by the API and the console. readmodel.Operations
// (SQLite, in the data directory) or postgres.Operations.
type operationsStore interface {
	operator.Inbox
	operator.Store
	httpapi.Operations
	console.Operations
}

// validateTables checks the workflow table, which the projections fold
// events with, and the upcaster table, which they read events through.
func validateTables() error {
	if err := domain.Prescriptions.Validate(); err != nil {
		return fmt.Errorf("workflow table: %w", err)
	}
	if err := events.Upcasters.Validate(); err != nil {
		return fmt.Errorf("upcaster table: %w", err)
	}
	return nil
}

// New opens everything the projector needs; Run starts it.
func New(cfg Config) (*Service, error) {
	cfg.setDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if err := validateTables(); err != nil {
		return nil, err
	}
	s := &Service{cfg: cfg, log: cfg.Logger}
	ok := false
	defer func() {
		if !ok {
			s.close()
		}
	}()
	var err error
	if cfg.Segments.Database == "" {
		s.stores, err = openEmbedded(cfg.DataDir)
	} else {
		s.stores, err = openPostgres(cfg.Segments)
	}
	if err != nil {
		return nil, err
	}
	if s.store, err = eventstore.Open(cfg.EventStore); err != nil {
		return nil, err
	}
	s.feed = projections.NewSharedFeed(s.store, 0)
	if s.pub, err = kafka.NewPublisher(cfg.Kafka, watermill.NewSlogLogger(cfg.Logger)); err != nil {
		return nil, err
	}
	subCfg := cfg.Kafka
	subCfg.ConsumerGroup = cfg.ConsumerGroup
	if s.sub, err = kafka.NewSubscriber(subCfg, watermill.NewSlogLogger(cfg.Logger)); err != nil {
		return nil, err
	}
	partnerSet, err := partners.NewSet(projections.PartnersOf(projections.Reactions), cfg.Partners, nil)
	if err != nil {
		return nil, err
	}

	deps := projections.ReactorDeps{Ledger: s.stores.ledger, History: s.store, Partners: partnerSet, Publisher: publisher{s.pub},
		CommandTopic: cfg.CommandTopic, Logger: cfg.Logger}
	projectorsOf := func(lease projections.Lease) []projections.Projector {
		rm, led := s.stores.bound(lease)
		deps := deps
		deps.Ledger = led
		ps := []projections.Projector{
			withTracing(projections.NewReadModelProjector(rm)),
			traced{projections.NewOutboundProjector(led, s.store, publisher{s.pub}, cfg.Outbound)},
		}
		for _, r := range projections.Reactions {
			ps = append(ps, traced{projections.NewReactor(r, deps)})
		}
		return ps
	}
	workflow, _ := domain.Prescriptions.WithDeadlines(cfg.Deadlines.After) // checked by Validate
	newScheduler := func(ledger projections.Ledger, ready func() bool) (*projections.DeadlineScheduler, error) {
		return projections.NewDeadlineScheduler(s.stores.queries, ledger, publisher{s.pub}, projections.SchedulerConfig{
			Workflow: workflow, CommandTopic: cfg.CommandTopic, Every: cfg.Deadlines.Every, ResendAfter: cfg.Deadlines.ResendAfter,
			Clock: cfg.Deadlines.Clock, Logger: cfg.Logger, Ready: ready,
		})
	}
	if s.scheduler, err = newScheduler(s.stores.ledger, s.readModelCaughtUp); err != nil {
		return nil, err
	}
	if s.stores.leases == nil {
		projectors := projectorsOf(projections.Whole)
		checkpoints := map[string]uint64{}
		for _, p := range projectors {
			if checkpoints[p.Name()], err = p.Checkpoint(context.Background()); err != nil {
				return nil, fmt.Errorf("checkpoint of %s: %w", p.Name(), err)
			}
		}
		s.lag = projections.NewLagTracker(checkpoints, time.Now)
		for _, p := range projectors {
			s.runners = append(s.runners, projections.NewRunner(s.feed, p, projections.RunnerConfig{Logger: cfg.Logger, Lag: s.lag}))
		}
		s.readers = s.runners[0]
	} else {
		// The scheduler is a singleton: it runs with segment 0, its memory
		// of sent commands in the ledger under that segment's lease.
		s.scheduler = nil
		segmentZeroTasks := func(lease projections.Lease) []func(context.Context) error {
			if lease.Segment != 0 {
				return nil
			}
			_, led := s.stores.bound(lease)
			sch, err := newScheduler(led, s.holdsSegmentZero)
			if err != nil { // the same settings were accepted above
				return []func(context.Context) error{func(context.Context) error { return err }}
			}
			return []func(context.Context) error{sch.Run}
		}
		var names []string
		for _, p := range projectorsOf(projections.Whole) {
			names = append(names, p.Name())
		}
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		from, err := s.stores.lowestCheckpoint(ctx, names)
		cancel()
		if err != nil {
			return nil, fmt.Errorf("lowest checkpoint of %v: %w", names, err)
		}
		s.lag = projections.NewLagTrackerAfter(from, time.Now)
		if s.coord, err = projections.NewCoordinator(projections.CoordinatorConfig{Leases: s.stores.leases, Feed: s.feed,
			Build: projectorsOf, Tasks: segmentZeroTasks, TTL: cfg.Segments.LeaseTTL, Lag: s.lag, Logger: cfg.Logger,
			Runner: projections.RunnerConfig{Logger: cfg.Logger}}); err != nil {
			return nil, err
		}
	}

	reg := ops.NewRegistry()
	s.registerMetrics(reg)
	if s.coord != nil {
		s.registerSegmentMetrics(reg)
	}
	authCfg := cfg.Auth
	authCfg.Logger = cmp.Or(authCfg.Logger, cfg.Logger)
	if s.auth, err = httpapi.NewAuthenticator(authCfg); err != nil {
		return nil, fmt.Errorf("projector: query API: %w", err)
	}
	actions := operator.New(operator.Config{Store: s.stores.ops, Reactors: deps, Publisher: publisher{s.pub}, CommandTopic: cfg.CommandTopic, Logger: cfg.Logger})
	api, err := httpapi.NewHandler(httpapi.Config{Auth: s.auth, AccessLog: s.stores.accessLog, Logger: cfg.Logger, Operator: actions,
		Operations: s.stores.ops}, s.stores.queries, s.store, s.stores.ledger)
	if err != nil {
		return nil, err
	}
	ui, err := console.NewHandler(console.Config{Verify: consoleVerifier(s.auth), ReadModel: s.stores.queries, History: s.store,
		Ledger: s.stores.ledger, Operator: actions, Operations: s.stores.ops, Outbound: cfg.Outbound, Lag: s.lagReport, Logger: cfg.Logger})
	if err != nil {
		return nil, err
	}
	if s.http, err = ops.Listen(cfg.HTTPAddr, ops.Beside(withConsole(ui, api), reg, s.ready)); err != nil {
		return nil, fmt.Errorf("projector: http: %w", err)
	}
	ok = true
	return s, nil
}

// HTTPAddr is where the query API and the ops endpoints are served.
func (s *Service) HTTPAddr() string { return s.http.Addr() }

// Run creates the outbound topics if needed and runs every projector until
// ctx ends. The query API serves the read model at once; the projectors
// start once EventStoreDB answers: until then Run waits, logging that it
// does (see eventstore.Store.WaitForServer), and /readyz fails.
func (s *Service) Run(ctx context.Context) error {
	defer s.close()
	topics := []string{s.cfg.CommandTopic, s.cfg.Outbound.Dispensed, s.cfg.Outbound.Failed, s.cfg.Outbound.StatusChanged,
		s.cfg.DeadLetterTopic, s.cfg.RejectionTopic}
	if err := kafka.EnsureTopics(ctx, s.cfg.Kafka, s.cfg.Partitions, topics...); err != nil {
		if ctx.Err() != nil {
			return nil // stopped while starting: not a failure
		}
		return err
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var wg sync.WaitGroup
	errc := make(chan error, len(s.runners)+3)
	run := func(f func(context.Context) error) {
		wg.Go(func() {
			if err := f(ctx); err != nil {
				errc <- err
				cancel()
			}
		})
	}
	run(func(ctx context.Context) error { return s.http.Serve(ctx, s.log) })
	run(func(ctx context.Context) error {
		return operator.Consume(ctx, s.sub, s.cfg.DeadLetterTopic, s.cfg.RejectionTopic, s.stores.ops, s.log)
	})
	run(func(ctx context.Context) error {
		if err := s.store.WaitForServer(ctx, s.log); err != nil {
			if ctx.Err() != nil {
				return nil
			}
			return err
		}
		for _, r := range s.runners {
			run(r.Run)
		}
		if s.coord != nil {
			run(s.coord.Run)
		}
		run(projections.NewRunner(s.feed, s.lag, projections.RunnerConfig{Logger: s.log}).Run)
		if s.scheduler != nil {
			run(s.scheduler.Run)
		}
		if s.coord != nil {
			s.log.Info("projector running", "http", s.HTTPAddr(), "instance", s.cfg.Segments.InstanceID, "segments", s.cfg.Segments.Count)
		} else {
			s.log.Info("projector running", "http", s.HTTPAddr(), "projectors", len(s.runners))
		}
		return nil
	})
	wg.Wait()
	close(errc)
	return errors.Join(collect(errc)...)
}

func collect(errc <-chan error) []error {
	var errs []error
	for err := range errc {
		errs = append(errs, err)
	}
	return errs
}

// readModelCaughtUp reports whether the read model holds every stored
// event, so that the deadlines it lists as waiting are current.
func (s *Service) readModelCaughtUp() bool {
	up, _ := s.readers.CaughtUp()
	return up
}

// holdsSegmentZero: on PostgreSQL the deadline scheduler runs only on the
// instance holding segment 0, once that segment's read model is live (its
// commands have deterministic ids: a second pass after a takeover is
// harmless).
func (s *Service) holdsSegmentZero() bool {
	rs := s.coord.Runners(0)
	if len(rs) == 0 {
		return false
	}
	up, _ := rs[0].CaughtUp()
	return up
}

// activeRunners are the runners at work: every projector's (embedded), or
// those of the segments held.
func (s *Service) activeRunners() []*projections.Runner {
	if s.coord == nil {
		return s.runners
	}
	var out []*projections.Runner
	for _, l := range s.coord.Held() {
		out = append(out, s.coord.Runners(l.Segment)...)
	}
	return out
}

// ready: the event store answers, no projector is stuck on an error and,
// on PostgreSQL, the instance is in touch with the lease table
// (projections.Coordinator.Ready; docs/deploy.md#readiness).
func (s *Service) ready(ctx context.Context) error {
	errs := []error{s.store.Ping(ctx)}
	if s.coord != nil {
		errs = append(errs, s.coord.Ready())
	}
	for _, r := range s.activeRunners() {
		if _, err := r.CaughtUp(); err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", r.Name(), err))
		}
	}
	return errors.Join(errs...)
}

func (s *Service) registerMetrics(reg prometheus.Registerer) {
	for _, r := range s.runners {
		labels := prometheus.Labels{"projector": r.Name()}
		reg.MustRegister(
			prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "rxflow_projector_lag_events", ConstLabels: labels,
				Help: "Prescription events stored but not yet handled by the projector."},
				func() float64 { n, _ := s.lag.Lag(r.Name()); return float64(n) }),
			prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "rxflow_projector_lag_seconds", ConstLabels: labels,
				Help: "Age of the oldest event the projector has not handled yet."},
				func() float64 { _, age := s.lag.Lag(r.Name()); return age.Seconds() }),
			prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "rxflow_projector_caught_up", ConstLabels: labels,
				Help: "1 once the projector has handled every stored event and is live."},
				func() float64 {
					if up, _ := r.CaughtUp(); up {
						return 1
					}
					return 0
				}),
		)
	}
}

func (s *Service) close() {
	var errs []error
	if s.http != nil {
		errs = append(errs, s.http.Close())
	}
	if s.pub != nil {
		errs = append(errs, s.pub.Close())
	}
	if s.sub != nil {
		errs = append(errs, s.sub.Close())
	}
	if s.store != nil {
		errs = append(errs, s.store.Close())
	}
	if s.auth != nil {
		s.auth.Close()
	}
	if s.stores.close != nil {
		errs = append(errs, s.stores.close())
	}
	if err := errors.Join(errs...); err != nil {
		s.log.Warn("projector: close", "err", err)
	}
}

// consoleVerifier is the console's sign-in check: the credential must be one
// the query API accepts (auth, a JWT or the static token) from a caller who
// reads every prescription (auditor, operator); it names the caller's
// subject, and whether it may act (operator).
func consoleVerifier(auth *httpapi.Authenticator) func(ctx context.Context, credential string) (string, bool, error) {
	return func(ctx context.Context, credential string) (string, bool, error) {
		r, _ := http.NewRequestWithContext(ctx, http.MethodGet, "/console/", nil)
		r.Header.Set("Authorization", "Bearer "+credential)
		caller, err := auth.Authenticate(r)
		if err != nil {
			return "", false, err
		}
		if !caller.ReadsAll() {
			return "", false, errors.New("the console is for auditors and operators")
		}
		return caller.Subject, caller.MayAct(), nil
	}
}

// withConsole serves the console under console.Prefix (and sends /console
// there), and everything else to the query API.
func withConsole(ui, api http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch {
		case r.URL.Path == "/console":
			http.Redirect(w, r, console.Prefix, http.StatusSeeOther)
		case strings.HasPrefix(r.URL.Path, console.Prefix):
			ui.ServeHTTP(w, r)
		default:
			api.ServeHTTP(w, r)
		}
	})
}

// lagReport is every projector's lag, for the console.
func (s *Service) lagReport() []console.Lag {
	runners := s.activeRunners()
	out := make([]console.Lag, 0, len(runners))
	for _, r := range runners {
		l := console.Lag{Projector: r.Name()}
		l.Behind, l.Age = s.lag.Lag(r.Name())
		up, err := r.CaughtUp()
		l.CaughtUp = up
		if err != nil {
			l.Err = err.Error()
		}
		out = append(out, l)
	}
	return out
}

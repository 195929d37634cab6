// Package stack runs the whole system in one process on embedded defaults:
// the embedded Kafka broker and EventStoreDB server, the partner simulators,
// the processor and the projector. cmd/stack serves it locally, and the
// system tests drive it. The processor and projector are the same services
// that cmd/processor and cmd/projector run.
package stack

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"path/filepath"
	"sync"
	"time"

	"rxflow/commands"
	"rxflow/infra/eventstore"
	"rxflow/infra/httpapi"
	"rxflow/infra/kafka"
	"rxflow/infra/partners"
	"rxflow/projections"
	"rxflow/service/processor"
	"rxflow/service/projector"
	"rxflow/standin/esdbserver"
	"rxflow/standin/kafkabroker"
	"rxflow/standin/partnersim"
)

// Config of the local stack. Addresses default to the documented local
// ports; tests pass 127.0.0.1:0 everywhere.
type Config struct {
	DataDir       string   // required: Kafka, EventStoreDB and projector files live below it
	Brokers       []string // use this Kafka instead of starting the embedded one
	KafkaAddr     string   // default 127.0.0.1:9092
	ESDBAddr      string   // default 127.0.0.1:2113
	PartnersAddr  string   // default 127.0.0.1:8090
	APIAddr       string   // default 127.0.0.1:8080
	ProcessorAddr string   // processor's ops endpoints; default 127.0.0.1:9101
	Token         string   // the query API's static token (operator role), enabled: a local run; required
	Topics        Topics
	Partner       partners.Config // retry settings for every partner client; BaseURL is ignored
	Deadlines     projector.Deadlines
	// Database is a PostgreSQL URL for the projector's read side
	// (projector.Segments); empty: the embedded stores under DataDir.
	Database string
	// ProcessorClock is the processor's clock (processor.Config.Clock);
	// default time.Now. Tests move it with Deadlines.Clock.
	ProcessorClock func() time.Time
	Logger         *slog.Logger

	// KafkaSecurity is TLS and SASL towards Brokers; the embedded broker
	// is PLAINTEXT.
	KafkaSecurity kafka.Security
}

// Topics are the Kafka topics; zero values take the documented names.
type Topics struct {
	Commands, Rejections, DeadLetters string
	Outbound                          projections.OutboundTopics
	ConsumerGroup                     string // the processor's; default rxflow-processor
	// OperationsGroup is the projector's consumer group for the dead-letter
	// and refusals topics; default rxflow-projector-operations.
	OperationsGroup string
}

// Stack is a running system.
type Stack struct {
	Brokers   []string
	ESDB      *esdbserver.Server
	Sim       *partnersim.Sim
	Processor *processor.Service
	Projector *projector.Service
	Topics    Topics

	broker        *kafkabroker.Broker
	stopProjector func()
	cfg           Config
	ctx           context.Context // ends on Close
	cancel        context.CancelFunc
	wg            sync.WaitGroup
	mu            sync.Mutex
	runErrs       []error
}

// Start starts every part and returns once they are serving.
func Start(cfg Config) (*Stack, error) {
	if cfg.DataDir == "" || cfg.Token == "" {
		return nil, errors.New("stack: DataDir and Token are required")
	}
	if len(cfg.Brokers) == 0 && cfg.KafkaSecurity != (kafka.Security{}) {
		return nil, errors.New("stack: KafkaSecurity needs Brokers: the embedded broker is PLAINTEXT")
	}
	cfg.Topics.Commands = cmp.Or(cfg.Topics.Commands, commands.TopicCommands)
	cfg.Topics.Rejections = cmp.Or(cfg.Topics.Rejections, commands.TopicRejections)
	cfg.Topics.DeadLetters = cmp.Or(cfg.Topics.DeadLetters, commands.TopicDeadLetters)
	cfg.Topics.ConsumerGroup = cmp.Or(cfg.Topics.ConsumerGroup, "rxflow-processor")
	cfg.Topics.OperationsGroup = cmp.Or(cfg.Topics.OperationsGroup, "rxflow-projector-operations")
	cfg.Topics.Outbound = cfg.Topics.Outbound.WithDefaults()
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	s := &Stack{cfg: cfg, Topics: cfg.Topics, Brokers: cfg.Brokers}
	if err := s.startInfra(); err != nil {
		s.Close()
		return nil, err
	}
	s.ctx, s.cancel = context.WithCancel(context.Background())
	if err := s.StartProcessor(); err != nil {
		s.Close()
		return nil, err
	}
	if err := s.StartProjector(); err != nil {
		s.Close()
		return nil, err
	}
	return s, nil
}

// startInfra starts EventStoreDB first: its Pebble store locks the data
// directory, so a second stack on the same directory stops there, before
// its Kafka broker (which takes no lock) writes to the first one's files.
func (s *Stack) startInfra() error {
	var err error
	s.ESDB, err = esdbserver.Start(esdbserver.Config{Addr: cmp.Or(s.cfg.ESDBAddr, esdbserver.DefaultAddr), DataDir: filepath.Join(s.cfg.DataDir, "esdb"), Logger: s.cfg.Logger})
	if err != nil {
		return fmt.Errorf("embedded eventstoredb: %w", err)
	}
	if len(s.Brokers) == 0 {
		s.broker, err = kafkabroker.Start(kafkabroker.Config{Addr: cmp.Or(s.cfg.KafkaAddr, "127.0.0.1:9092"), DataDir: filepath.Join(s.cfg.DataDir, "kafka")})
		if err != nil {
			return err // "embedded kafka ..." already
		}
		s.Brokers = s.broker.Addrs()
	}
	s.Sim, err = partnersim.Start(partnersim.Config{Addr: cmp.Or(s.cfg.PartnersAddr, "127.0.0.1:8090"), Logger: s.cfg.Logger})
	if err != nil {
		return fmt.Errorf("partner simulators: %w", err)
	}
	return nil
}

// StartProcessor starts a processor; it runs until Close.
func (s *Stack) StartProcessor() error {
	svc, err := processor.New(processor.Config{
		Kafka:        kafka.Config{Brokers: s.Brokers, ConsumerGroup: s.Topics.ConsumerGroup, Security: s.cfg.KafkaSecurity},
		CommandTopic: s.Topics.Commands, RejectionTopic: s.Topics.Rejections, DeadLetterTopic: s.Topics.DeadLetters,
		EventStore: s.EventStoreConfig(), HTTPAddr: cmp.Or(s.cfg.ProcessorAddr, "127.0.0.1:9101"), Clock: s.cfg.ProcessorClock, Logger: s.cfg.Logger,
	})
	if err != nil {
		return err
	}
	s.Processor = svc
	s.run("processor", svc.Run)
	select {
	case <-svc.Running():
		return nil
	case <-time.After(time.Minute):
		return errors.New("stack: the processor did not start within a minute")
	}
}

// StartProjector starts a projector; it runs until StopProjector or Close.
func (s *Stack) StartProjector() error {
	endpoints := partners.Endpoints{}
	for _, p := range projections.PartnersOf(projections.Reactions) {
		c := s.cfg.Partner
		c.BaseURL, c.Logger = s.Sim.URL(partnersim.Partner(p.Name)), s.cfg.Logger
		endpoints[p.Name] = c
	}
	svc, err := projector.New(projector.Config{
		Kafka:        kafka.Config{Brokers: s.Brokers, Security: s.cfg.KafkaSecurity},
		CommandTopic: s.Topics.Commands, Outbound: s.Topics.Outbound,
		DeadLetterTopic: s.Topics.DeadLetters, RejectionTopic: s.Topics.Rejections, ConsumerGroup: s.Topics.OperationsGroup,
		EventStore: s.EventStoreConfig(), DataDir: s.ProjectorDir(),
		Partners: endpoints,
		HTTPAddr: cmp.Or(s.cfg.APIAddr, "127.0.0.1:8080"), Logger: s.cfg.Logger,
		Auth:      httpapi.AuthConfig{StaticToken: s.cfg.Token}, // a local run: the static token is enabled
		Deadlines: s.cfg.Deadlines,
		Segments:  projector.Segments{Database: s.cfg.Database},
	})
	if err != nil {
		return err
	}
	s.Projector = svc
	s.stopProjector = s.run("projector", svc.Run)
	return nil
}

// StopProjector stops the running projector and waits for it.
func (s *Stack) StopProjector() {
	if s.stopProjector != nil {
		s.stopProjector()
	}
}

// ProjectorDir is the projector's data directory.
func (s *Stack) ProjectorDir() string { return filepath.Join(s.cfg.DataDir, "projector") }

// EventStoreConfig connects to the stack's EventStoreDB.
func (s *Stack) EventStoreConfig() eventstore.Config {
	return eventstore.Config{ConnectionString: s.ESDB.ConnectionString(), Logger: s.cfg.Logger}
}

// run runs f until Close or until the returned stop is called.
func (s *Stack) run(name string, f func(context.Context) error) (stop func()) {
	ctx, cancel := context.WithCancel(s.ctx)
	done := make(chan struct{})
	s.wg.Go(func() {
		defer close(done)
		if err := f(ctx); err != nil {
			s.mu.Lock()
			s.runErrs = append(s.runErrs, fmt.Errorf("%s: %w", name, err))
			s.mu.Unlock()
			s.cfg.Logger.Error("service stopped", "service", name, "err", err)
		}
	})
	return func() {
		cancel()
		<-done
	}
}

// Close stops the services, then the embedded parts, and returns what went wrong.
func (s *Stack) Close() error {
	if s.cancel != nil {
		s.cancel()
	}
	s.wg.Wait()
	errs := s.runErrs
	if s.Sim != nil {
		errs = append(errs, s.Sim.Close())
	}
	if s.ESDB != nil {
		errs = append(errs, s.ESDB.Close())
	}
	if s.broker != nil {
		s.broker.Close()
	}
	return errors.Join(errs...)
}

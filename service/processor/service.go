// Package processor runs the command side as a service: a Watermill router
// feeds messages from the command topic to commands.Processor, outcomes go
// to the rejections (refusals) and dead-letter topics, and /healthz, /readyz and
// /metrics are served over HTTP. cmd/processor and cmd/stack wire it.
//
// Its router retries a failed message (RetryPolicy), then dead-letters it
// as processing_failed unless the failure is an outage, which waits:
// docs/failure-policy.md describes this with every other retry layer.
package processor

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"strconv"
	"time"

	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/ThreeDotsLabs/watermill/message/router/middleware"
	"github.com/prometheus/client_golang/prometheus"
	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/attribute"
	otelcodes "go.opentelemetry.io/otel/codes"
	semconv "go.opentelemetry.io/otel/semconv/v1.40.0"
	"go.opentelemetry.io/otel/trace"

	"rxflow/commands"
	"rxflow/domain"
	"rxflow/events"
	"rxflow/infra/eventstore"
	"rxflow/infra/kafka"
	"rxflow/infra/ops"
	"rxflow/infra/telemetry"
	"rxflow/infra/warm"
)

// Config of the processor service. Zero values take the defaults.
type Config struct {
	Kafka           kafka.Config    // ConsumerGroup defaults to "rxflow-processor"
	CommandTopic    string          // default commands.TopicCommands
	RejectionTopic  string          // default commands.TopicRejections
	DeadLetterTopic string          // default commands.TopicDeadLetters
	RetryTopic      string          // deferred keyless commands; default commands.TopicRetry
	DeferDelays     []time.Duration // waits before each delayed retry; default commands.DefaultDeferDelays
	Retry           RetryPolicy
	Partitions      int32 // partitions of the topics it creates; default 8
	EventStore      eventstore.Config
	HTTPAddr        string // default 127.0.0.1:9101; "" after defaults disables it
	MaxCommandBytes int    // default commands.DefaultMaxCommandBytes
	CacheSize       int    // prescriptions cached in memory; default 10000
	// Clock gives the time of decisions and the events' times, and what a
	// deadline's dueAt is checked against; default time.Now.
	Clock  func() time.Time
	Logger *slog.Logger
}

// RetryPolicy is the router's retry of a message whose handling failed. When
// the retries are spent, a message that failed while the store and the
// broker were healthy is dead-lettered (processing_failed); otherwise it is
// delivered again, without end, until they recover.
type RetryPolicy struct {
	MaxRetries      int           // default 8
	InitialInterval time.Duration // default 50 ms, doubled each time
	MaxInterval     time.Duration // default 5 s
}

func (c *Config) setDefaults() {
	if c.Kafka.ConsumerGroup == "" {
		c.Kafka.ConsumerGroup = "rxflow-processor"
	}
	c.Kafka.MaxMessageBytes = cmp.Or(c.Kafka.MaxMessageBytes, kafka.DefaultMaxMessageBytes)
	c.CommandTopic = cmp.Or(c.CommandTopic, commands.TopicCommands)
	c.RejectionTopic = cmp.Or(c.RejectionTopic, commands.TopicRejections)
	c.DeadLetterTopic = cmp.Or(c.DeadLetterTopic, commands.TopicDeadLetters)
	if c.DeferDelays == nil {
		c.DeferDelays = commands.DefaultDeferDelays
	}
	c.RetryTopic = cmp.Or(c.RetryTopic, commands.TopicRetry)
	c.Retry.MaxRetries = cmp.Or(c.Retry.MaxRetries, 8)
	c.Retry.InitialInterval = cmp.Or(c.Retry.InitialInterval, 50*time.Millisecond)
	c.Retry.MaxInterval = cmp.Or(c.Retry.MaxInterval, 5*time.Second)
	c.HTTPAddr = cmp.Or(c.HTTPAddr, "127.0.0.1:9101")
	c.Partitions = cmp.Or(c.Partitions, 8)
	c.MaxCommandBytes = cmp.Or(c.MaxCommandBytes, commands.DefaultMaxCommandBytes)
	c.CacheSize = cmp.Or(c.CacheSize, 10000)
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	c.Logger = telemetry.NewLogger(c.Logger) // trace_id and span_id on records logged with a traced context
}

// Validate reports every problem at once.
func (c Config) Validate() error {
	errs := []error{c.Kafka.Validate(), c.EventStore.Validate()}
	if c.Partitions < 1 {
		errs = append(errs, fmt.Errorf("processor: partitions must be positive, got %d", c.Partitions))
	}
	// A refusal embeds the command: it must fit a Kafka message with room
	// for the refusal's other fields.
	if limit := cmp.Or(c.Kafka.MaxMessageBytes, kafka.DefaultMaxMessageBytes) - headroom; c.MaxCommandBytes < 1 || c.MaxCommandBytes > limit {
		errs = append(errs, fmt.Errorf("processor: max command bytes %d must be in [1, %d], the Kafka message limit less %d bytes for a refusal's other fields", c.MaxCommandBytes, limit, headroom))
	}
	topics := map[string]bool{}
	for _, d := range c.DeferDelays {
		if d <= 0 {
			errs = append(errs, fmt.Errorf("processor: defer delays must be positive, got %v", d))
		}
	}
	for _, t := range []string{c.CommandTopic, c.RejectionTopic, c.DeadLetterTopic, c.RetryTopic} {
		if topics[t] {
			errs = append(errs, fmt.Errorf("processor: topic %q is used twice", t))
		}
		topics[t] = true
	}
	return errors.Join(errs...)
}

// Service is a running processor.
type Service struct {
	cfg   Config
	log   *slog.Logger
	store *eventstore.Store
	pub   message.Publisher
	sub   message.Subscriber
	// retrySub reads the retry topic in a consumer group of its own
	// (<group>.retry), so that it never rebalances the command topic's group.
	retrySub message.Subscriber
	router   *message.Router
	http     *ops.Server
	metrics  *metrics
	drain    *drain
	outbox   *outbox
	warm     warm.Pool  // runs each message's middleware and handler on a goroutine whose stack is already grown
	fenced   chan error // the broker fenced a subscriber: another replica has its group instance id
}

// New connects everything the processor needs; Run starts it.
func New(cfg Config) (*Service, error) {
	cfg.setDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if err := domain.Prescriptions.Validate(); err != nil {
		return nil, fmt.Errorf("workflow table: %w", err)
	}
	if err := events.Upcasters.Validate(); err != nil {
		return nil, fmt.Errorf("upcaster table: %w", err)
	}
	s := &Service{cfg: cfg, log: cfg.Logger, drain: newDrain(), fenced: make(chan error, 1)}
	cfg.Kafka.OnFenced = func(err error) {
		select {
		case s.fenced <- err:
		default: // Run stops on the first
		}
	}
	ok := false
	defer func() {
		if !ok {
			s.close()
		}
	}()
	var err error
	if s.store, err = eventstore.Open(cfg.EventStore); err != nil {
		return nil, err
	}
	wlog := kafka.NewLogger(cfg.Logger)
	if s.pub, err = kafka.NewPublisher(cfg.Kafka, wlog); err != nil {
		return nil, err
	}
	if s.sub, err = kafka.NewSubscriber(cfg.Kafka, wlog); err != nil {
		return nil, err
	}
	retryKafka := cfg.Kafka
	retryKafka.ConsumerGroup += ".retry"
	if s.retrySub, err = kafka.NewSubscriber(retryKafka, wlog); err != nil {
		return nil, err
	}
	handler := commands.NewHandler(s.store, commands.HandlerConfig{CacheSize: cfg.CacheSize, Clock: cfg.Clock})
	s.outbox = &outbox{pub: s.pub, rejectionTopic: cfg.RejectionTopic, deadLetterTopic: cfg.DeadLetterTopic, retryTopic: cfg.RetryTopic,
		maxBytes: cfg.Kafka.MaxMessageBytes, clock: time.Now}
	proc := commands.NewProcessor(handler, s.outbox, commands.ProcessorConfig{MaxBytes: cfg.MaxCommandBytes, DeferDelays: cfg.DeferDelays, Clock: cfg.Clock})

	reg := ops.NewRegistry()
	s.metrics = newMetrics(reg)
	// The address before the router: a router made but never run takes its
	// whole CloseTimeout to close.
	if cfg.HTTPAddr != "" {
		mux := http.NewServeMux()
		ops.Handle(mux, reg, s.ready)
		if s.http, err = ops.Listen(cfg.HTTPAddr, mux); err != nil {
			return nil, fmt.Errorf("processor: http: %w", err)
		}
	}

	if s.router, err = message.NewRouter(message.RouterConfig{CloseTimeout: 30 * time.Second}, wlog); err != nil {
		return nil, err
	}
	poison, err := middleware.PoisonQueueWithFilter(poisonPublisher{s}, cfg.DeadLetterTopic, s.isPoison)
	if err != nil {
		return nil, err
	}
	// Outermost first: the chain runs on a warm goroutine (the router starts
	// a fresh one per message, whose stack would grow through the chain
	// each time); a panic is recovered into an error, retried, and if the
	// retries are spent while the store and broker are healthy, the
	// message is dead-lettered instead of holding its partition.
	s.router.AddMiddleware(
		s.onWarm,
		poison,
		middleware.Retry{MaxRetries: cfg.Retry.MaxRetries, InitialInterval: cfg.Retry.InitialInterval, Multiplier: 2,
			MaxInterval: cfg.Retry.MaxInterval, Logger: wlog}.Middleware,
		middleware.Recoverer,
	)
	s.router.AddConsumerHandler("commands", cfg.CommandTopic, s.sub, s.handle(proc, commandRaw))
	s.router.AddConsumerHandler("deferred-commands", cfg.RetryTopic, s.retrySub, s.handle(proc, s.waitDeferred))
	ok = true
	return s, nil
}

// HTTPAddr is where /healthz, /readyz and /metrics are served.
func (s *Service) HTTPAddr() string {
	if s.http == nil {
		return ""
	}
	return s.http.Addr()
}

// Run creates the topics if needed and processes commands until ctx ends,
// or until the broker fences it because another replica joined with the
// same group instance id: then it stops as it does when ctx ends and
// returns an error wrapping kafka.ErrFencedInstanceID.
// Commands in hand then finish and their offsets are committed before it
// returns; the messages not yet started are delivered again after a restart.
//
// If EventStoreDB does not answer at start, Run still consumes: the commands
// it reads are held by the retries, never committed nor dead-lettered, until
// the store answers. It logs once that it waits for EventStoreDB (see
// eventstore.Store.WaitForServer), and /readyz fails meanwhile.
func (s *Service) Run(ctx context.Context) error {
	defer s.close()
	topics := []string{s.cfg.CommandTopic, s.cfg.RejectionTopic, s.cfg.DeadLetterTopic, s.cfg.RetryTopic}
	if err := kafka.EnsureTopics(ctx, s.cfg.Kafka, s.cfg.Partitions, topics...); err != nil {
		if ctx.Err() != nil {
			return nil // stopped while starting: not a failure
		}
		return err
	}
	watchCtx, stopWatch := context.WithCancel(ctx)
	watched := make(chan struct{})
	go func() {
		defer close(watched)
		_ = s.store.WaitForServer(watchCtx, s.log) // it logs; the handlers retry meanwhile
	}()
	defer func() {
		stopWatch()
		<-watched
	}()
	routerCtx, stopRouter := context.WithCancel(context.WithoutCancel(ctx))
	defer stopRouter()
	errc := make(chan error, 2)
	go func() { errc <- s.router.Run(routerCtx) }()
	if s.http != nil {
		go func() { errc <- s.http.Serve(ctx, s.log) }()
	}
	s.log.Info("processor running", "topic", s.cfg.CommandTopic, "group", s.cfg.Kafka.ConsumerGroup, "http", s.HTTPAddr())
	var fenced error
	select {
	case err := <-errc:
		return err
	case fenced = <-s.fenced:
		s.log.Error("processor: stopping: another replica uses this group instance id; give each replica its own (docs/deploy.md)", "err", fenced)
	case <-ctx.Done():
	}
	// Finish the commands in hand, give their acks a moment to be marked,
	// then stop consuming; closing the subscriber commits the marked offsets.
	if !s.drain.stop(drainTimeout) {
		s.log.Warn("processor: commands still in hand at shutdown; they will be delivered again")
	}
	time.Sleep(ackGrace)
	stopRouter()
	<-errc
	return fenced
}

// Shutdown bounds: the longest wait for commands in hand, and the time an
// ack takes to be marked after its handler returns.
const (
	drainTimeout = 30 * time.Second
	ackGrace     = 100 * time.Millisecond
)

// Running is closed once the router is consuming.
func (s *Service) Running() chan struct{} { return s.router.Running() }

func (s *Service) ready(ctx context.Context) error {
	if !s.router.IsRunning() {
		return errors.New("router not running")
	}
	return s.store.Ping(ctx)
}

func (s *Service) close() {
	if s.router != nil {
		select {
		case <-s.router.Running():
			_ = s.router.Close()
		default: // never ran: Close would wait CloseTimeout for handlers that never started
		}
	}
	var errs []error
	if s.http != nil {
		errs = append(errs, s.http.Close())
	}
	if s.retrySub != nil {
		errs = append(errs, s.retrySub.Close())
	}
	if s.sub != nil {
		errs = append(errs, s.sub.Close())
	}
	if s.pub != nil {
		errs = append(errs, s.pub.Close())
	}
	if s.store != nil {
		errs = append(errs, s.store.Close())
	}
	s.warm.Stop()
	if err := errors.Join(errs...); err != nil {
		s.log.Warn("processor: close", "err", err)
	}
}

// tracer makes the consume span of each command; commands and the store
// make its children.
var tracer = otel.Tracer("rxflow/service/processor")

// consumeSpan starts the span of handling one record, the child of the
// trace context in its traceparent header, or the root of a new trace.
// Its attributes are made only when it records.
func consumeSpan(ctx context.Context, raw commands.Raw) (context.Context, trace.Span) {
	ctx = telemetry.Extract(ctx, raw.Headers)
	ctx, span := tracer.Start(ctx, "consume "+raw.Topic, trace.WithSpanKind(trace.SpanKindConsumer))
	if span.IsRecording() {
		span.SetAttributes(semconv.MessagingSystemKafka, semconv.MessagingOperationTypeProcess, semconv.MessagingDestinationName(raw.Topic),
			semconv.MessagingDestinationPartitionID(strconv.Itoa(int(raw.Partition))), semconv.MessagingKafkaOffset(int(raw.Offset)))
	}
	return ctx, span
}

// handle adapts a Kafka message to commands.Processor and records the
// outcome. rawOf turns the record into the command it carries, waiting
// first if the command is deferred; it fails only when the processor stops.
// onWarm is the outermost middleware: it runs the rest of the chain on a
// goroutine of s.warm. It also observes how long a command waited before
// (rxflow_command_wait_seconds), once per delivery; not for the deferred
// commands, whose wait is their deferral.
func (s *Service) onWarm(h message.HandlerFunc) message.HandlerFunc {
	return func(msg *message.Message) (out []*message.Message, err error) {
		if produced, ok := kafka.RecordTime(msg); ok && msg.Metadata.Get(kafka.MetadataTopic) == s.cfg.CommandTopic {
			s.metrics.wait.Observe(max(0, time.Since(produced).Seconds()))
		}
		s.warm.Run(func() { out, err = h(msg) })
		return out, err
	}
}

func (s *Service) handle(proc *commands.Processor, rawOf func(*message.Message) (commands.Raw, error)) message.NoPublishHandlerFunc {
	return func(msg *message.Message) (err error) {
		raw, err := rawOf(msg)
		if err != nil {
			return err
		}
		if !s.drain.admit() {
			<-msg.Context().Done() // the router is stopping: leave this one for the next run
			return errDraining
		}
		defer s.drain.done()
		ctx, span := consumeSpan(msg.Context(), raw)
		defer func() {
			if err != nil {
				span.RecordError(err)
				span.SetStatus(otelcodes.Error, err.Error())
			}
			span.End()
		}()
		start := time.Now()
		// A shutdown cancels the message's context; the command in hand still
		// finishes (each store call is bounded) so that its offset commits.
		var res commands.Result
		res, err = proc.Process(context.WithoutCancel(ctx), raw)
		if err != nil {
			s.metrics.transient.Inc()
			if errors.Is(err, commands.ErrNewerEvent) {
				s.metrics.newerEvent.Inc()
				s.log.WarnContext(ctx, "command waits for newer code: its stream holds an event newer than this processor reads (a newer replica wrote it); finish the deploy",
					"topic", raw.Topic, "partition", raw.Partition, "offset", raw.Offset, "err", err)
				return err
			}
			s.log.WarnContext(ctx, "command not processed, will retry", "topic", raw.Topic, "partition", raw.Partition, "offset", raw.Offset, "err", err)
			return err
		}
		outcome := string(res.Outcome.Kind)
		attrs := []any{"command_id", res.Envelope.ID, "urn", res.Envelope.Command.URN, "event", res.Envelope.Command.Type}
		switch {
		case res.DeadLetter != "":
			outcome = "dead_lettered"
			s.metrics.deadLetters.WithLabelValues(res.DeadLetter).Inc()
			s.log.WarnContext(ctx, "command dead-lettered", "code", res.DeadLetter, "topic", raw.Topic, "partition", raw.Partition, "offset", raw.Offset)
		case res.Outcome.Kind == commands.Refused:
			s.log.InfoContext(ctx, "command refused", append(attrs, "code", res.Outcome.Refusal.Code, "status", res.Outcome.Status, "retries", raw.Deferrals)...)
		case res.Outcome.Kind == commands.Deferred:
			s.log.InfoContext(ctx, "keyless command deferred: it may have arrived before its predecessor", append(attrs, "code", res.Outcome.Refusal.Code, "retry", raw.Deferrals+1)...)
		default:
			s.log.DebugContext(ctx, "command handled", append(attrs, "outcome", outcome, "status", res.Outcome.Status)...)
		}
		if span.IsRecording() {
			span.SetAttributes(attribute.String("rxflow.outcome", outcome), attribute.String("rxflow.command_id", res.Envelope.ID),
				attribute.String("rxflow.urn", res.Envelope.Command.URN), attribute.String("rxflow.command", string(res.Envelope.Command.Type)))
		}
		s.metrics.handled.WithLabelValues(outcome).Inc()
		s.metrics.latency.WithLabelValues(outcome).Observe(time.Since(start).Seconds())
		return nil
	}
}

// waitDeferred rebuilds a deferred command from the retry topic and waits
// until it is due, or fails with errDraining if the processor stops first.
func (s *Service) waitDeferred(msg *message.Message) (commands.Raw, error) {
	rec, _ := commandRaw(msg)
	raw, notBefore := deferredRaw(rec, s.cfg.CommandTopic, s.cfg.DeferDelays, time.Now())
	select {
	case <-time.After(time.Until(notBefore)):
		return raw, nil
	case <-s.drain.stopping:
		return raw, errDraining
	case <-msg.Context().Done():
		return raw, errDraining
	}
}

// isPoison decides, once the router's retries are spent, whether a failed
// message goes to the dead-letter topic: only when the failure is not an
// outage and the event store answers. During an outage messages wait.
func (s *Service) isPoison(err error) bool {
	if errors.Is(err, errDraining) || errors.Is(err, context.Canceled) || errors.Is(err, commands.ErrUnavailable) {
		return false
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if pingErr := s.store.Ping(ctx); pingErr != nil {
		s.log.Warn("command failed during an event store outage; it will wait", "err", err, "ping", pingErr)
		return false
	}
	return true
}

// poisonPublisher dead-letters a message the router gave up on, as
// processing_failed with the last error.
type poisonPublisher struct{ s *Service }

func (p poisonPublisher) Publish(_ string, msgs ...*message.Message) error {
	for _, msg := range msgs {
		reason := msg.Metadata.Get(middleware.ReasonForPoisonedKey)
		for _, k := range []string{middleware.ReasonForPoisonedKey, middleware.PoisonedTopicKey, middleware.PoisonedHandlerKey, middleware.PoisonedSubscriberKey} {
			delete(msg.Metadata, k)
		}
		raw, _ := commandRaw(msg)
		ctx, span := consumeSpan(context.Background(), raw)
		span.SetAttributes(attribute.String("rxflow.outcome", "dead_lettered"))
		err := p.s.outbox.DeadLetter(ctx, raw, commands.DeadLetterProcessingFailed, errors.New(reason))
		span.End()
		if err != nil {
			return err
		}
		p.s.metrics.handled.WithLabelValues("dead_lettered").Inc()
		p.s.metrics.deadLetters.WithLabelValues(commands.DeadLetterProcessingFailed).Inc()
		p.s.log.ErrorContext(ctx, "command kept failing while the store and broker were healthy: dead-lettered", "code", commands.DeadLetterProcessingFailed,
			"topic", raw.Topic, "partition", raw.Partition, "offset", raw.Offset, "err", reason)
	}
	return nil
}

func (poisonPublisher) Close() error { return nil }

// commandRaw turns a consumed message back into the record it came from.
func commandRaw(msg *message.Message) (commands.Raw, error) {
	raw := commands.Raw{Value: msg.Payload, Headers: map[string]string{}}
	for k, v := range msg.Metadata {
		switch k {
		case kafka.MetadataTopic:
			raw.Topic = v
		case kafka.MetadataPartition:
			p, _ := strconv.ParseInt(v, 10, 32) // written by our unmarshaler
			raw.Partition = int32(p)
		case kafka.MetadataOffset:
			raw.Offset, _ = strconv.ParseInt(v, 10, 64)
		case kafka.MetadataKey:
			raw.Key = []byte(v)
		case kafka.MetadataHeaderProblem:
			raw.HeaderProblem = v
		default:
			raw.Headers[k] = v
		}
	}
	return raw, nil
}

type metrics struct {
	handled     *prometheus.CounterVec
	deadLetters *prometheus.CounterVec
	latency     *prometheus.HistogramVec
	wait        prometheus.Histogram
	transient   prometheus.Counter
	newerEvent  prometheus.Counter
}

func newMetrics(reg prometheus.Registerer) *metrics {
	m := &metrics{
		handled: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "rxflow_commands_total",
			Help: "Commands handled, by outcome: appended, duplicate, refused, deferred, dead_lettered."}, []string{"outcome"}),
		deadLetters: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "rxflow_dead_letters_total",
			Help: "Messages sent to the dead-letter topic, by code."}, []string{"code"}),
		latency: prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: "rxflow_command_handling_seconds",
			Help: "Time from receiving a command to its durable outcome.", Buckets: prometheus.ExponentialBuckets(0.0005, 2, 14)}, []string{"outcome"}),
		wait: prometheus.NewHistogram(prometheus.HistogramOpts{Name: "rxflow_command_wait_seconds",
			Help:    "Time from a command record's Kafka timestamp (its producer's clock) to the start of its handling: its wait in the topic and in the subscriber's queue.",
			Buckets: prometheus.ExponentialBuckets(0.0005, 2, 14)}),
		transient: prometheus.NewCounter(prometheus.CounterOpts{Name: "rxflow_command_failures_total",
			Help: "Transient failures; the command is retried, never dropped."}),
		newerEvent: prometheus.NewCounter(prometheus.CounterOpts{Name: "rxflow_commands_waiting_for_newer_code_total",
			Help: "Attempts that found an event newer than this code in the command's stream; the command waits for newer code."}),
	}
	reg.MustRegister(m.handled, m.deadLetters, m.latency, m.wait, m.transient, m.newerEvent)
	return m
}

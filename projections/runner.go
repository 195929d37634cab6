package projections

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"sync/atomic"
	"time"

	"rxflow/events"
)

// Projector handles prescription events from its own durable checkpoint.
type Projector interface {
	Name() string
	// Checkpoint is the $all position of the last event fully handled.
	Checkpoint(ctx context.Context) (uint64, error)
	// Handle applies one event. It is called in $all order, may be called
	// again for an event after a crash, and must then have no new effect.
	// An error stops the subscription; it resumes from the checkpoint.
	Handle(ctx context.Context, rec events.Recorded) error
	// SaveCheckpoint records that every event up to position is handled.
	SaveCheckpoint(ctx context.Context, position uint64) error
}

// BatchHandler is a Projector that can take several events at once (the
// read model: one transaction for many events is what makes it fast). The
// runner hands it the events already received, never waiting for more, at
// most RunnerConfig.MaxBatch.
type BatchHandler interface {
	Projector
	// HandleBatch handles recs (at least one, in $all order) as Handle would
	// each. After an error it may have handled some of them; the runner
	// resubscribes from Checkpoint, and handling one again has no new effect.
	HandleBatch(ctx context.Context, recs []events.Recorded) error
}

// RunnerConfig tunes a Runner. Zero values take the defaults.
type RunnerConfig struct {
	MinBackoff      time.Duration // first wait before resubscribing; default 100ms
	MaxBackoff      time.Duration // default 10s
	CheckpointEvery int           // save the checkpoint after this many events; default 256
	CheckpointIdle  time.Duration // and when no event came for this long; default 200ms
	MaxBatch        int           // events per HandleBatch of a BatchHandler; default 256; 1 hands them one by one
	// FinishWithin bounds how long an event under way may still take once
	// the runner is stopped; default 10s. It is finished rather than
	// cancelled: a partner call cut between the call and its record would
	// be made again by the segment's next holder.
	FinishWithin time.Duration
	Logger       *slog.Logger
	Lag          *LagTracker // optional: reports how far behind the projector is
}

// Runner runs one projector on a Feed: it subscribes from the checkpoint,
// handles every event in order and, when the subscription drops or the
// projector fails, resubscribes from the checkpoint with backoff. An event is
// never skipped: the checkpoint moves only past handled events. Its place
// among the retry layers: docs/failure-policy.md.
type Runner struct {
	feed    Feed
	p       Projector
	cfg     RunnerConfig
	running atomic.Bool
	status  atomic.Value // runnerStatus
}

type runnerStatus struct {
	caughtUp bool
	lastErr  error
}

// NewRunner returns a runner of p on feed.
func NewRunner(feed Feed, p Projector, cfg RunnerConfig) *Runner {
	cfg.MinBackoff = cmp.Or(cfg.MinBackoff, 100*time.Millisecond)
	cfg.MaxBackoff = cmp.Or(cfg.MaxBackoff, 10*time.Second)
	cfg.CheckpointEvery = cmp.Or(cfg.CheckpointEvery, 256)
	cfg.CheckpointIdle = cmp.Or(cfg.CheckpointIdle, 200*time.Millisecond)
	cfg.MaxBatch = cmp.Or(cfg.MaxBatch, 256)
	cfg.FinishWithin = cmp.Or(cfg.FinishWithin, 10*time.Second)
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	r := &Runner{feed: feed, p: p, cfg: cfg}
	r.status.Store(runnerStatus{})
	return r
}

// ErrAlreadyRunning is returned by Run when the projector already runs.
var ErrAlreadyRunning = errors.New("projector already running")

// Run handles events until ctx ends. Only one Run of a runner is allowed at
// a time. A store write refused with ErrLeaseLost ends it with that error:
// another instance holds the segment now, and nothing is retried.
func (r *Runner) Run(ctx context.Context) error {
	if !r.running.CompareAndSwap(false, true) {
		return fmt.Errorf("%s: %w", r.p.Name(), ErrAlreadyRunning)
	}
	defer r.running.Store(false)
	log := r.cfg.Logger.With("projector", r.p.Name())
	backoff := r.cfg.MinBackoff
	for {
		progressed, err := r.runOnce(ctx)
		if ctx.Err() != nil {
			return nil
		}
		r.status.Store(runnerStatus{lastErr: err})
		if errors.Is(err, ErrLeaseLost) {
			log.Warn("segment lease lost: stopping", "err", err)
			return fmt.Errorf("%s: %w", r.p.Name(), err)
		}
		if progressed {
			backoff = r.cfg.MinBackoff
		}
		log.Warn("subscription ended, resubscribing", "err", err, "backoff", backoff)
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(backoff):
		}
		backoff = min(2*backoff, r.cfg.MaxBackoff)
	}
}

// CaughtUp reports whether the projector has handled everything stored,
// and the error that last stopped it, if any.
func (r *Runner) CaughtUp() (bool, error) {
	s := r.status.Load().(runnerStatus)
	return s.caughtUp, s.lastErr
}

// Name is the projector's name.
func (r *Runner) Name() string { return r.p.Name() }

// runOnce runs one subscription until it fails: subscribe after the
// checkpoint, receive its messages, and follow them with a cursor.
// progressed says whether any event was handled.
func (r *Runner) runOnce(ctx context.Context) (progressed bool, err error) {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	sub, from, err := r.subscribe(ctx)
	if err != nil {
		return false, err
	}
	defer sub.Close()
	c := &cursor{r: r, batch: r.batchHandler(), saved: from, handled: from}
	queue := 0
	if c.batch != nil {
		queue = r.cfg.MaxBatch // read ahead, so that a batch finds events waiting
	}
	msgs, dropped := receive(ctx, sub, queue)
	err = c.follow(ctx, msgs, dropped)
	return c.progressed, err
}

// batchHandler is the projector as a BatchHandler, or nil if it is not one
// or MaxBatch is 1.
func (r *Runner) batchHandler() BatchHandler {
	if b, ok := r.p.(BatchHandler); ok && r.cfg.MaxBatch > 1 {
		return b
	}
	return nil
}

// subscribe opens a subscription after the projector's checkpoint, which it
// returns.
func (r *Runner) subscribe(ctx context.Context) (Subscription, uint64, error) {
	from, err := r.p.Checkpoint(ctx)
	if err != nil {
		return nil, 0, fmt.Errorf("read checkpoint: %w", err)
	}
	sub, err := r.feed.Subscribe(ctx, from)
	if err != nil {
		return nil, 0, fmt.Errorf("subscribe after %d: %w", from, err)
	}
	return sub, from, nil
}

// receive passes sub's messages on until ctx ends, up to queue of them
// ahead of the reader; the error that drops the subscription arrives on
// the second channel.
func receive(ctx context.Context, sub Subscription, queue int) (<-chan Message, <-chan error) {
	msgs := make(chan Message, queue)
	dropped := make(chan error, 1)
	go func() {
		for {
			m, err := sub.Recv()
			if err != nil {
				dropped <- err
				return
			}
			select {
			case msgs <- m:
			case <-ctx.Done():
				return
			}
		}
	}()
	return msgs, dropped
}

// cursor is one subscription's place in $all: the position handled, and
// the one the checkpoint holds, which trails it by at most CheckpointEvery
// events or CheckpointIdle.
type cursor struct {
	r          *Runner
	batch      BatchHandler // nil: events are handled one by one
	saved      uint64       // the stored checkpoint
	handled    uint64       // the last position handled: an event, or a checkpoint without one
	unsaved    int          // events handled since the checkpoint was saved
	progressed bool         // an event was handled
}

// follow applies messages until the subscription drops, a step fails or ctx
// ends, and saves the checkpoint when no message came for CheckpointIdle.
func (c *cursor) follow(ctx context.Context, msgs <-chan Message, dropped <-chan error) error {
	idle := time.NewTimer(c.r.cfg.CheckpointIdle)
	defer idle.Stop()
	for {
		var err error
		select {
		case <-ctx.Done():
			return c.stop(ctx)
		case err := <-dropped:
			return errors.Join(fmt.Errorf("subscription dropped: %w", err), c.save(ctx))
		case <-idle.C:
			err = c.save(ctx)
		case m := <-msgs:
			idle.Reset(c.r.cfg.CheckpointIdle)
			err = c.take(ctx, m, msgs)
		}
		if err != nil {
			return err
		}
	}
}

// take applies m and, for a BatchHandler, the events already waiting
// behind it, in batches of at most MaxBatch; the first message that is not
// a decoded event ends a batch and is applied after it.
func (c *cursor) take(ctx context.Context, m Message, msgs <-chan Message) error {
	for {
		if c.batch == nil || m.Event == nil || m.DecodeErr != nil {
			return c.apply(ctx, m)
		}
		recs := []events.Recorded{*m.Event}
		var next *Message
	collect:
		for len(recs) < c.r.cfg.MaxBatch {
			select {
			case n := <-msgs:
				if n.Event == nil || n.DecodeErr != nil {
					next = &n
					break collect
				}
				recs = append(recs, *n.Event)
			default: // nothing waiting: never wait to fill a batch
				break collect
			}
		}
		if err := c.handleBatch(ctx, recs); err != nil || next == nil {
			return err
		}
		m = *next
	}
}

// handleBatch is handle for several events, through HandleBatch.
func (c *cursor) handleBatch(ctx context.Context, recs []events.Recorded) error {
	recs = slices.DeleteFunc(recs, func(rec events.Recorded) bool { return rec.Position <= c.handled })
	if len(recs) == 0 {
		return nil
	}
	last := recs[len(recs)-1]
	hctx, done := finishing(ctx, c.r.cfg.FinishWithin)
	defer done()
	if err := c.batch.HandleBatch(hctx, recs); err != nil {
		return errors.Join(fmt.Errorf("handle %d events up to %s@%d: %w", len(recs), last.URN, last.Revision, err), c.save(ctx))
	}
	c.progressed = true
	c.moveTo(last.Position)
	if c.unsaved += len(recs); c.unsaved >= c.r.cfg.CheckpointEvery {
		return c.save(ctx)
	}
	return nil
}

// apply takes one message: an event is handled; a checkpoint or a skip
// moves the cursor; catching up or falling behind is reported. An error stops the
// subscription, after saving what is handled.
func (c *cursor) apply(ctx context.Context, m Message) error {
	switch {
	case m.DecodeErr != nil:
		// Stop here rather than skip: the event must be understood (a newer
		// schema needs newer code) before going past it.
		return errors.Join(fmt.Errorf("undecodable event at %d: %w", m.Event.Position, m.DecodeErr), c.save(ctx))
	case m.Event != nil:
		return c.handle(ctx, *m.Event)
	case max(m.Skipped, m.Checkpoint) > c.handled:
		// Saved with the events: every CheckpointEvery, or when idle. A
		// write per server checkpoint (one per 32 events filtered) costs a
		// transaction each on PostgreSQL, for every segment's runners.
		c.moveTo(max(m.Skipped, m.Checkpoint))
		return c.counted(ctx)
	case m.CaughtUp:
		c.r.status.Store(runnerStatus{caughtUp: true})
		return c.save(ctx)
	case m.FellBehind:
		c.r.status.Store(runnerStatus{})
	}
	return nil
}

// handle gives rec to the projector unless it is at or before the cursor
// (delivered again after a resubscription), and saves the checkpoint every
// CheckpointEvery events.
func (c *cursor) handle(ctx context.Context, rec events.Recorded) error {
	if rec.Position <= c.handled {
		return nil
	}
	hctx, done := finishing(ctx, c.r.cfg.FinishWithin)
	defer done()
	if err := c.r.p.Handle(hctx, rec); err != nil {
		return errors.Join(fmt.Errorf("handle %s@%d: %w", rec.URN, rec.Revision, err), c.save(ctx))
	}
	c.progressed = true
	c.moveTo(rec.Position)
	return c.counted(ctx)
}

// counted counts one more event passed since the checkpoint, and saves it
// every CheckpointEvery events.
func (c *cursor) counted(ctx context.Context) error {
	if c.unsaved++; c.unsaved >= c.r.cfg.CheckpointEvery {
		return c.save(ctx)
	}
	return nil
}

func (c *cursor) moveTo(position uint64) {
	c.handled = position
	c.r.reportLag(position)
}

// save stores the checkpoint at the cursor, if it moved.
func (c *cursor) save(ctx context.Context) error {
	if c.handled == c.saved {
		return nil
	}
	if err := c.r.p.SaveCheckpoint(ctx, c.handled); err != nil {
		return fmt.Errorf("save checkpoint %d: %w", c.handled, err)
	}
	c.saved, c.unsaved = c.handled, 0
	return nil
}

// stop ends the subscription as ctx ends, saving what is handled on a
// context that is not cancelled.
func (c *cursor) stop(ctx context.Context) error {
	var err error
	if c.handled != c.saved {
		err = c.r.p.SaveCheckpoint(context.WithoutCancel(ctx), c.handled)
	}
	return errors.Join(ctx.Err(), err)
}

func (r *Runner) reportLag(position uint64) {
	if r.cfg.Lag != nil {
		r.cfg.Lag.Handled(r.p.Name(), position)
	}
}

// finishing is the context an event is handled in: it ends grace after ctx
// ends, not with it, so that a stopped runner finishes the event under way.
// done releases it.
func finishing(ctx context.Context, grace time.Duration) (context.Context, context.CancelFunc) {
	hctx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	stop := context.AfterFunc(ctx, func() { time.AfterFunc(grace, cancel) })
	return hctx, func() { stop(); cancel() }
}

package projections

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
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

// RunnerConfig tunes a Runner. Zero values take the defaults.
type RunnerConfig struct {
	MinBackoff      time.Duration // first wait before resubscribing; default 100ms
	MaxBackoff      time.Duration // default 10s
	CheckpointEvery int           // save the checkpoint after this many events; default 256
	CheckpointIdle  time.Duration // and when no event came for this long; default 200ms
	Logger          *slog.Logger
	Lag             *LagTracker // optional: reports how far behind the projector is
}

// Runner runs one projector on a Feed: it subscribes from the checkpoint,
// handles every event in order and, when the subscription drops or the
// projector fails, resubscribes from the checkpoint with backoff. An event is
// never skipped: the checkpoint moves only past handled events.
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
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	r := &Runner{feed: feed, p: p, cfg: cfg}
	r.status.Store(runnerStatus{})
	return r
}

// ErrAlreadyRunning is returned by Run when the projector already runs.
var ErrAlreadyRunning = errors.New("projector already running")

// Run handles events until ctx ends. Only one Run of a runner is allowed at a time.
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

// runOnce runs one subscription until it fails. progressed says whether any
// event was handled.
func (r *Runner) runOnce(ctx context.Context) (progressed bool, err error) {
	from, err := r.p.Checkpoint(ctx)
	if err != nil {
		return false, fmt.Errorf("read checkpoint: %w", err)
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	sub, err := r.feed.Subscribe(ctx, from)
	if err != nil {
		return false, fmt.Errorf("subscribe after %d: %w", from, err)
	}
	defer sub.Close()

	msgs := make(chan Message)
	recvErr := make(chan error, 1)
	go func() {
		for {
			m, err := sub.Recv()
			if err != nil {
				recvErr <- err
				return
			}
			select {
			case msgs <- m:
			case <-ctx.Done():
				return
			}
		}
	}()

	saved, handled := from, from
	unsaved := 0
	save := func() error {
		if handled == saved {
			return nil
		}
		if err := r.p.SaveCheckpoint(ctx, handled); err != nil {
			return fmt.Errorf("save checkpoint %d: %w", handled, err)
		}
		saved, unsaved = handled, 0
		return nil
	}
	idle := time.NewTimer(r.cfg.CheckpointIdle)
	defer idle.Stop()
	for {
		select {
		case <-ctx.Done():
			if handled != saved {
				err = r.p.SaveCheckpoint(context.WithoutCancel(ctx), handled)
			}
			return progressed, errors.Join(ctx.Err(), err)
		case err := <-recvErr:
			return progressed, errors.Join(fmt.Errorf("subscription dropped: %w", err), save())
		case <-idle.C:
			if err := save(); err != nil {
				return progressed, err
			}
			continue
		case m := <-msgs:
			idle.Reset(r.cfg.CheckpointIdle)
			switch {
			case m.DecodeErr != nil:
				// Stop here rather than skip: the event must be understood
				// (a newer schema needs newer code) before going past it.
				return progressed, errors.Join(fmt.Errorf("undecodable event at %d: %w", m.Event.Position, m.DecodeErr), save())
			case m.Event != nil:
				if m.Event.Position <= handled {
					continue // delivered again after a resubscription
				}
				if err := r.p.Handle(ctx, *m.Event); err != nil {
					return progressed, errors.Join(fmt.Errorf("handle %s@%d: %w", m.Event.URN, m.Event.Revision, err), save())
				}
				progressed = true
				handled = m.Event.Position
				r.reportLag(handled)
				unsaved++
				if unsaved >= r.cfg.CheckpointEvery {
					if err := save(); err != nil {
						return progressed, err
					}
				}
			case m.Checkpoint > handled:
				handled = m.Checkpoint
				r.reportLag(handled)
				if err := save(); err != nil {
					return progressed, err
				}
			case m.CaughtUp:
				r.status.Store(runnerStatus{caughtUp: true})
				if err := save(); err != nil {
					return progressed, err
				}
			case m.FellBehind:
				r.status.Store(runnerStatus{})
			}
		}
	}
}

func (r *Runner) reportLag(position uint64) {
	if r.cfg.Lag != nil {
		r.cfg.Lag.Handled(r.p.Name(), position)
	}
}

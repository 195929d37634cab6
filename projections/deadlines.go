package projections

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"strings"
	"time"

	"rxflow/domain"
	"rxflow/events"
)

// Clock is the time port: the deadline scheduler reads the time from it
// and from nowhere else, so tests drive it with a fake clock.
type Clock func() time.Time

// Waiting is a deadline a prescription waits for: Deadline of the workflow
// table, started by the event at stream revision Since, which occurred at
// StartedAt. It falls due at StartedAt plus the deadline's configured
// duration.
type Waiting struct {
	URN       string
	Deadline  string
	Since     int
	StartedAt time.Time
}

// DeadlineChange is what one stored event does to its prescription's
// waiting deadlines: a status change cancels every waiting one (CancelAll)
// and starts those of the new state (Start); a DeadlinePassed ends its own
// (Passed).
type DeadlineChange struct {
	URN       string
	CancelAll bool
	Start     []Waiting
	Passed    *Waiting
}

// DeadlinesAfter returns what rec, which moved its prescription from
// status before to after, does to the waiting deadlines of w.
func DeadlinesAfter(w domain.Workflow, rec events.Recorded, before, after domain.Status) DeadlineChange {
	if e, ok := rec.Event.(domain.DeadlinePassed); ok {
		return DeadlineChange{URN: rec.URN, Passed: &Waiting{URN: rec.URN, Deadline: e.Deadline, Since: e.Since}}
	}
	if before == after {
		return DeadlineChange{URN: rec.URN}
	}
	c := DeadlineChange{URN: rec.URN, CancelAll: true}
	for _, d := range w.DeadlinesIn(after) {
		c.Start = append(c.Start, Waiting{URN: rec.URN, Deadline: d.Name, Since: int(rec.Revision), StartedAt: rec.Event.OccurredAt().UTC()})
	}
	return c
}

// DeadlineCommandID is the id of the command that records deadline name of
// the state entered at revision since: "deadline:<name>@<since>". Command
// ids are scoped to their prescription, so the stored event's id, the
// reactions' ledger entries and the partners' idempotency keys all derive
// from the stream and the revision that started the state: sending it
// again is a duplicate, never a second deadline.
func DeadlineCommandID(name string, since int) string {
	return deadlineIDPrefix + name + "@" + strconv.Itoa(since)
}

const deadlineIDPrefix = "deadline:"

// ParseDeadlineCommandID inverts DeadlineCommandID.
func ParseDeadlineCommandID(id string) (name string, since int, ok bool) {
	rest, ok := strings.CutPrefix(id, deadlineIDPrefix)
	if !ok {
		return "", 0, false
	}
	i := strings.LastIndexByte(rest, '@')
	if i <= 0 {
		return "", 0, false
	}
	since, err := strconv.Atoi(rest[i+1:])
	return rest[:i], since, err == nil && since >= 0
}

// DeadlineActor is the actor of the deadline commands.
const DeadlineActor = "projector:deadlines"

// DueDeadlines finds the deadlines that fell due: the read model keeps
// them, indexed by (deadline, started at).
type DueDeadlines interface {
	// Due returns at most limit deadlines named deadline that started at or
	// before cutoff, oldest first. It reads only those rows.
	Due(ctx context.Context, deadline string, cutoff time.Time, limit int) ([]Waiting, error)
}

// EffectCommandSent marks a deadline whose command the scheduler published.
const EffectCommandSent EffectStatus = "command_sent"

// SchedulerConfig tunes a DeadlineScheduler. Zero values take the defaults.
type SchedulerConfig struct {
	Workflow     domain.Workflow // its deadlines, with this deployment's durations; default domain.Prescriptions
	CommandTopic string          // where the commands go; required
	Batch        int             // due deadlines read per deadline and pass; default 500
	ResendAfter  time.Duration   // a sent command not yet recorded is sent again after this; default 10m
	Every        time.Duration   // Run's pause between passes; default 30s
	Clock        Clock           // default time.Now
	// Ready, if set, tells whether the due deadlines are current (the read
	// model has caught up); a pass is skipped until it is, so that a
	// restart does not fire deadlines a transition already cancelled.
	Ready  func() bool
	Logger *slog.Logger
}

// DeadlineScheduler fires the deadlines that fell due: for each, it
// publishes prescription.deadline (id DeadlineCommandID, key = urn) to the
// command topic, where the processor records DeadlinePassed with the
// expected revision, or refuses it as deadline_cancelled when a transition
// came first. The reactions that follow DeadlinePassed call the partners.
//
// It keeps no state of its own: a deadline waits in the read model until
// the event that ends it (DeadlinePassed, or the transition leaving its
// state) is projected, and the ledger remembers when its command was sent,
// so that a restart neither loses it nor sends it twice within ResendAfter
// (a command sent twice is a duplicate anyway).
type DeadlineScheduler struct {
	due    DueDeadlines
	ledger Ledger
	pub    Publisher
	cfg    SchedulerConfig
}

// NewDeadlineScheduler returns a scheduler over the due deadlines of due.
func NewDeadlineScheduler(due DueDeadlines, ledger Ledger, pub Publisher, cfg SchedulerConfig) (*DeadlineScheduler, error) {
	if cfg.Workflow.Transitions == nil {
		cfg.Workflow = domain.Prescriptions
	}
	if cfg.CommandTopic == "" {
		return nil, errors.New("deadline scheduler: a command topic is required")
	}
	if cfg.Batch <= 0 {
		cfg.Batch = 500
	}
	if cfg.ResendAfter <= 0 {
		cfg.ResendAfter = 10 * time.Minute
	}
	if cfg.Every <= 0 {
		cfg.Every = 30 * time.Second
	}
	if cfg.Clock == nil {
		cfg.Clock = time.Now
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	return &DeadlineScheduler{due: due, ledger: ledger, pub: pub, cfg: cfg}, nil
}

// Run makes a pass every cfg.Every until ctx ends. A failed pass is logged
// and tried again at the next one.
func (s *DeadlineScheduler) Run(ctx context.Context) error {
	t := time.NewTicker(s.cfg.Every)
	defer t.Stop()
	for {
		if _, err := s.Pass(ctx); err != nil && ctx.Err() == nil {
			s.cfg.Logger.Warn("deadline pass failed; trying again at the next one", "err", err, "every", s.cfg.Every)
		}
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
	}
}

// Pass sends the command of every deadline due at the clock's time whose
// command was not sent within ResendAfter, and returns how many it sent.
// It reads at most Batch due deadlines of each name; the next pass takes
// the rest.
func (s *DeadlineScheduler) Pass(ctx context.Context) (sent int, err error) {
	if s.cfg.Ready != nil && !s.cfg.Ready() {
		return 0, nil
	}
	now := s.cfg.Clock().UTC()
	for _, d := range s.cfg.Workflow.Deadlines {
		due, err := s.due.Due(ctx, d.Name, now.Add(-d.After), s.cfg.Batch)
		if err != nil {
			return sent, fmt.Errorf("due %s: %w", d.Name, err)
		}
		for _, w := range due {
			ok, err := s.fire(ctx, w, w.StartedAt.Add(d.After), now)
			if err != nil {
				return sent, err
			}
			if ok {
				sent++
			}
		}
	}
	return sent, nil
}

// fire publishes w's command unless the ledger shows it sent less than
// ResendAfter ago, then records it as sent.
func (s *DeadlineScheduler) fire(ctx context.Context, w Waiting, dueAt, now time.Time) (bool, error) {
	id := DeadlineCommandID(w.Deadline, w.Since)
	effectID := "deadlines/" + events.StreamName(w.URN) + "/" + id
	e, found, err := s.ledger.Effect(ctx, effectID)
	if err != nil {
		return false, err
	}
	if found && now.Sub(e.At) < s.cfg.ResendAfter {
		return false, nil
	}
	body, err := json.Marshal(map[string]any{
		"urn": w.URN, "event": domain.RecordDeadline, "commandId": id, "correlationId": id, "actor": DeadlineActor,
		"payload": map[string]any{"deadline": w.Deadline, "since": w.Since, "dueAt": dueAt.UTC()},
	})
	if err != nil {
		return false, err
	}
	if err := s.pub.Publish(ctx, Outbound{Topic: s.cfg.CommandTopic, Key: w.URN, ID: effectID, Type: string(domain.RecordDeadline),
		Time: now, Payload: body, Headers: map[string]string{HeaderCommandID: id}}); err != nil {
		return false, fmt.Errorf("publish %s of %s: %w", id, w.URN, err)
	}
	s.cfg.Logger.Info("deadline due: command sent", "urn", w.URN, "deadline", w.Deadline, "since", w.Since, "due_at", dueAt, "resent", found)
	return true, s.ledger.Record(ctx, Effect{ID: effectID, Projector: "deadlines", URN: w.URN, EventName: events.NameDeadlinePassed,
		Status: EffectCommandSent, At: now}, 0)
}

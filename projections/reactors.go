package projections

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"rxflow/domain"
	"rxflow/events"
)

// ReadyForPickup is the seed's patient notification on completion.
const ReadyForPickup = "Your prescription is ready for pickup."

// Change is an event with the prescription before and after it.
type Change struct {
	Event  events.Recorded
	Before domain.Prescription
	After  domain.Prescription
}

// loadChange rebuilds the prescription around rec from its stream.
func loadChange(ctx context.Context, h History, rec events.Recorded) (Change, error) {
	history, err := h.Load(ctx, rec.URN)
	if err != nil {
		return Change{}, fmt.Errorf("load %s: %w", rec.URN, err)
	}
	c := Change{Event: rec}
	for _, e := range history {
		if e.Revision >= rec.Revision {
			break
		}
		c.Before = domain.Evolve(c.Before, e.Event)
	}
	if uint64(c.Before.Revision) != rec.Revision {
		return Change{}, fmt.Errorf("stream %s has %d events before revision %d", rec.URN, c.Before.Revision, rec.Revision)
	}
	c.After = domain.Evolve(c.Before, rec.Event)
	return c, nil
}

// Trigger says which events a reaction follows: every event of a command
// type (the seed's OnEvent), or a status change (the seed's OnStatusChanged).
type Trigger struct {
	On       domain.CommandType
	From, To domain.Status
}

// mayMatch tells from the event alone whether the trigger could fire.
func (t Trigger) mayMatch(e domain.Event) bool {
	if t.On != "" {
		return e.Cause() == t.On
	}
	to, _ := domain.Prescriptions.Target(e.Cause())
	return to == t.To
}

func (t Trigger) matches(c Change) bool {
	if t.On != "" {
		return c.Event.Event.Cause() == t.On
	}
	return c.Before.Status == t.From && c.After.Status == t.To
}

// GiveUp says what to do when a partner call keeps failing.
type GiveUp int

// What a reactor does with a call that failed for good.
const (
	Park             GiveUp = iota // keep it for support, and alert them
	FailPrescription               // send prescription.fail: the seed's failOnError
)

// Reaction is one row of the reactor table.
type Reaction struct {
	Name     string // the projector's name and its effects' prefix
	When     Trigger
	Call     func(ctx context.Context, p Partners, key string, c Change) error
	OnGiveUp GiveUp
}

// Reactions are the seed's partner actions.
var Reactions = []Reaction{
	{Name: "insurance", When: Trigger{On: domain.Approve}, OnGiveUp: Park,
		Call: func(ctx context.Context, p Partners, key string, c Change) error {
			return p.NotifyInsurance(ctx, key, c.After)
		}},
	{Name: "pharmacy", When: Trigger{From: domain.StatusApproved, To: domain.StatusProcessing}, OnGiveUp: FailPrescription,
		Call: func(ctx context.Context, p Partners, key string, c Change) error {
			return p.SendToPharmacy(ctx, key, c.After)
		}},
	{Name: "patient-notification", When: Trigger{From: domain.StatusDispensed, To: domain.StatusCompleted}, OnGiveUp: Park,
		Call: func(ctx context.Context, p Partners, key string, c Change) error {
			return p.NotifyPatient(ctx, key, c.After, ReadyForPickup)
		}},
	{Name: "support-alert", When: Trigger{From: domain.StatusProcessing, To: domain.StatusFailed}, OnGiveUp: Park,
		Call: func(ctx context.Context, p Partners, key string, c Change) error {
			return p.AlertSupport(ctx, key, Alert{URN: c.After.URN, Summary: "Prescription processing failed.",
				Detail: c.After.FailureReason, Severity: "critical", At: c.After.FailedAt})
		}},
}

// ReactorDeps are what every reactor needs.
type ReactorDeps struct {
	Ledger       Ledger
	History      History
	Partners     Partners
	Publisher    Publisher // for the pharmacy's prescription.fail command
	CommandTopic string
	Clock        func() time.Time
	Logger       *slog.Logger
}

// Reactor runs one Reaction as a projector, with its ledger.
type Reactor struct {
	r    Reaction
	deps ReactorDeps
}

// NewReactor returns the projector for reaction r.
func NewReactor(r Reaction, deps ReactorDeps) *Reactor {
	if deps.Clock == nil {
		deps.Clock = time.Now
	}
	if deps.Logger == nil {
		deps.Logger = slog.Default()
	}
	return &Reactor{r: r, deps: deps}
}

// Name implements Projector.
func (x *Reactor) Name() string { return x.r.Name }

// Checkpoint implements Projector.
func (x *Reactor) Checkpoint(ctx context.Context) (uint64, error) {
	return x.deps.Ledger.Checkpoint(ctx, x.r.Name)
}

// SaveCheckpoint implements Projector.
func (x *Reactor) SaveCheckpoint(ctx context.Context, pos uint64) error {
	return x.deps.Ledger.SaveCheckpoint(ctx, x.r.Name, pos)
}

// Handle implements Projector: it calls the partner once per matching event.
func (x *Reactor) Handle(ctx context.Context, rec events.Recorded) error {
	if !x.r.When.mayMatch(rec.Event) {
		return nil
	}
	c, err := loadChange(ctx, x.deps.History, rec)
	if err != nil || !x.r.When.matches(c) {
		return err
	}
	id := x.r.Name + "/" + rec.Meta.EventID
	if _, done, err := x.deps.Ledger.Effect(ctx, id); err != nil || done {
		return err
	}
	effect := Effect{ID: id, Projector: x.r.Name, URN: rec.URN, EventID: rec.Meta.EventID, EventName: rec.Name, Status: EffectDone}
	err = x.r.Call(ctx, x.deps.Partners, rec.Meta.EventID, c)
	switch {
	case err == nil:
	case !errors.Is(err, ErrPartnerFailed):
		return err
	case x.r.OnGiveUp == FailPrescription:
		effect.Status, effect.Error = EffectFailedOver, err.Error()
		if err := x.failPrescription(ctx, c, err); err != nil {
			return err
		}
	default:
		effect.Status, effect.Error = EffectParked, err.Error()
		x.alertParked(ctx, effect, rec.Event.OccurredAt())
	}
	effect.At = x.deps.Clock().UTC()
	x.deps.Logger.Info("side effect recorded", "projector", x.r.Name, "urn", rec.URN, "event_id", rec.Meta.EventID, "status", effect.Status)
	return x.deps.Ledger.Record(ctx, effect, rec.Position)
}

// failPrescription sends the seed's failOnError command. Its id derives from
// the event, so sending it again is a duplicate, not a second command.
func (x *Reactor) failPrescription(ctx context.Context, c Change, cause error) error {
	id := "pharmacy-failure:" + c.Event.Meta.EventID
	body, err := json.Marshal(map[string]any{
		"urn": c.After.URN, "event": domain.Fail, "commandId": id, "correlationId": c.Event.Meta.CorrelationID,
		"actor": "projector:" + x.r.Name, "payload": map[string]string{"reason": "Pharmacy processing error: " + cause.Error()},
	})
	if err != nil {
		return err
	}
	return x.deps.Publisher.Publish(ctx, Outbound{Topic: x.deps.CommandTopic, Key: c.After.URN, ID: id, Type: string(domain.Fail),
		Time: x.deps.Clock().UTC(), Payload: body, Headers: map[string]string{"command-id": id}})
}

// alertParked tells support about a parked call. If alerting fails too, the
// parked record is still kept and listed by the API. The alert is built from
// the event alone, so that a retry is the same call.
func (x *Reactor) alertParked(ctx context.Context, e Effect, at time.Time) {
	err := x.deps.Partners.AlertSupport(ctx, "parked/"+e.ID, Alert{URN: e.URN, Severity: "warning",
		Summary: fmt.Sprintf("%s call parked after retries", e.Projector), Detail: "the " + e.Projector + " partner did not accept the call", At: at})
	if err != nil {
		x.deps.Logger.Error("support alert for parked call failed", "effect", e.ID, "err", err)
	}
}

package projections

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"time"

	"rxflow/domain"
	"rxflow/events"
)

// ReadyForPickup is the seed's patient notification on completion.
const ReadyForPickup = "Your prescription is ready for pickup."

// Trigger says which events a reaction follows: every event of a command
// type (the seed's OnEvent), a status change (the seed's OnStatusChanged),
// or a deadline of the workflow table that passed.
type Trigger struct {
	On       domain.CommandType
	From, To domain.Status
	Deadline string // a DeadlinePassed of this deadline
}

// mayMatch tells from the event alone whether the trigger could fire.
func (t Trigger) mayMatch(e domain.Event) bool {
	if t.Deadline != "" {
		d, ok := e.(domain.DeadlinePassed)
		return ok && d.Deadline == t.Deadline
	}
	if t.On != "" {
		return e.Cause() == t.On
	}
	to, _ := domain.Prescriptions.Target(e.Cause())
	return to == t.To
}

func (t Trigger) matches(c Change) bool {
	if t.Deadline != "" {
		// A deadline that already passed for this entry into its state (a
		// repeat stored before the aggregate refused them) is not followed.
		d, ok := c.Event.Event.(domain.DeadlinePassed)
		return ok && t.mayMatch(d) && !(d.Since == c.Before.StatusSince && c.Before.PassedDeadlines.Has(d.Deadline))
	}
	if t.On != "" {
		return c.Event.Event.Cause() == t.On
	}
	return c.Before.Status == t.From && c.After.Status == t.To
}

// FollowUpCommandID is the id of the command a reaction sends after
// handling the event eventID: "<reaction>-failure:<eventID>", for example
// "pharmacy-failure:0b6f…". It derives from the event, so sending it again
// is a duplicate, not a second command; the processor stores its outcome
// (an event, or PrescriptionCommandRefused) with this id as metadata
// CommandID. ParseFollowUpCommandID inverts it.
func FollowUpCommandID(reaction, eventID string) string {
	return reaction + followUpSep + eventID
}

const followUpSep = "-failure:"

// ParseFollowUpCommandID returns the reaction and the event of a
// FollowUpCommandID; ok is false for any other command id.
func ParseFollowUpCommandID(id string) (reaction, eventID string, ok bool) {
	reaction, eventID, ok = strings.Cut(id, followUpSep)
	return reaction, eventID, ok && reaction != "" && eventID != ""
}

// ReactorActor is the actor of the commands reaction sends: "projector:<reaction>".
func ReactorActor(reaction string) string { return "projector:" + reaction }

// Headers a follow-up command carries on the command topic; the same names
// as commands.HeaderCommandID and commands.HeaderDiagnostic.
const (
	HeaderCommandID = "command-id"
	// HeaderDiagnostic carries the internal error chain; the processor keeps
	// it in the stored event's metadata, never in a published payload.
	HeaderDiagnostic = "diagnostic"
)

// The pharmacy reaction's prescription.fail: the seed's human reason, and a
// stable code per failure class.
const (
	PharmacyFailureReason     = "Pharmacy processing error"
	ReasonPharmacyRejected    = "pharmacy_rejected"    // the pharmacy refused the prescription (ErrPartnerRefused)
	ReasonPharmacyUnavailable = "pharmacy_unavailable" // unreachable, or still failing after the retries
)

// FailWith is what a FailPrescription reaction's prescription.fail says:
// human text and a stable code by failure class. The error itself goes only
// in the command's diagnostic header.
type FailWith struct {
	Reason      string
	Refused     string // code when the partner refused the call
	Unavailable string // code for every other ErrPartnerFailed
}

func (f FailWith) code(err error) string {
	if errors.Is(err, ErrPartnerRefused) {
		return f.Refused
	}
	return f.Unavailable
}

// GiveUp says what to do when a partner call keeps failing, after the
// adapter's own retries (docs/failure-policy.md).
type GiveUp int

// What a reactor does with a call that failed for good.
const (
	Park             GiveUp = iota // keep it for support, and alert them
	FailPrescription               // send prescription.fail: the seed's failOnError
)

// Reaction is one row of the reactor table: a partner, the events that
// call it, the request it gets and what to do when it keeps failing.
// Adding a partner is one row here, plus its simulator route.
type Reaction struct {
	Name     string  // the projector's name and its effects' prefix
	Partner  Partner // whom it calls
	When     Trigger
	Body     func(Change) any // the request, as JSON; from the stored change alone, so that a retry is the same call
	OnGiveUp GiveUp
	FailWith FailWith // for FailPrescription
}

// Reactions are the seed's partner actions.
var Reactions = []Reaction{
	{Name: "insurance", Partner: Partner{Name: "insurance", Path: "/v1/approvals", About: "insurance provider"},
		When: Trigger{On: domain.Approve}, Body: approvalNotice, OnGiveUp: Park},
	{Name: "pharmacy", Partner: Partner{Name: "pharmacy", Path: "/v1/prescriptions", About: "pharmacy"},
		When: Trigger{From: domain.StatusApproved, To: domain.StatusProcessing}, Body: pharmacyOrder, OnGiveUp: FailPrescription,
		FailWith: FailWith{Reason: PharmacyFailureReason, Refused: ReasonPharmacyRejected, Unavailable: ReasonPharmacyUnavailable}},
	{Name: "patient-notification", Partner: Notifications,
		When: Trigger{From: domain.StatusDispensed, To: domain.StatusCompleted}, Body: readyForPickup, OnGiveUp: Park},
	{Name: "support-alert", Partner: Support,
		When: Trigger{From: domain.StatusProcessing, To: domain.StatusFailed}, Body: failureAlert, OnGiveUp: Park},
	// The deadlines of the workflow table (domain.Prescriptions.Deadlines).
	{Name: "prescriber-reminder", Partner: Notifications,
		When: Trigger{Deadline: "approval-overdue"}, Body: prescriberReminder, OnGiveUp: Park},
	{Name: "processing-overdue-alert", Partner: Support,
		When: Trigger{Deadline: "processing-overdue"}, Body: processingOverdueAlert, OnGiveUp: Park},
	{Name: "return-to-stock-pharmacy", Partner: Partner{Name: "pharmacy", Path: "/v1/returns", About: "pharmacy"},
		When: Trigger{Deadline: "pickup-overdue"}, Body: returnToStock, OnGiveUp: Park},
	{Name: "return-to-stock-patient", Partner: Notifications,
		When: Trigger{Deadline: "pickup-overdue"}, Body: returnedToStockNotice, OnGiveUp: Park},
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
	r       Reaction
	deps    ReactorDeps
	changes *changes
}

// NewReactor returns the projector for reaction r.
func NewReactor(r Reaction, deps ReactorDeps) *Reactor {
	if deps.Clock == nil {
		deps.Clock = time.Now
	}
	if deps.Logger == nil {
		deps.Logger = slog.Default()
	}
	return &Reactor{r: r, deps: deps, changes: newChanges(deps.History)}
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

// Handle implements Projector: it calls the partner once per matching
// event, and parks the effect whose follow-up command the stream records as
// refused.
func (x *Reactor) Handle(ctx context.Context, rec events.Recorded) error {
	r, refused := rec.Event.(domain.Refused)
	need := !refused && x.r.When.mayMatch(rec.Event)
	c, err := x.changes.follow(ctx, rec, need)
	switch {
	case err != nil:
		return err
	case refused:
		return x.parkRefused(ctx, rec, r)
	case !need || !x.r.When.matches(c):
		return nil
	}
	id := x.effectID(rec.Meta.EventID)
	if _, done, err := x.deps.Ledger.Effect(ctx, id); err != nil || done {
		return err
	}
	effect := Effect{ID: id, Projector: x.r.Name, URN: rec.URN, EventID: rec.Meta.EventID, EventName: rec.Name, Status: EffectDone}
	effect.Attempts, err = x.deps.Partners.Call(ctx, x.r.Partner, rec.Meta.EventID, x.r.Body(c))
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
		if err := x.alert(ctx, "parked/"+effect.ID, Alert{URN: effect.URN, Severity: "warning",
			Summary: fmt.Sprintf("%s call parked after retries", effect.Projector),
			Detail:  "the " + effect.Projector + " partner did not accept the call", At: rec.Event.OccurredAt()}); err != nil {
			return err
		}
	}
	effect.At = x.deps.Clock().UTC()
	x.deps.Logger.Info("side effect recorded", "projector", x.r.Name, "urn", rec.URN, "event_id", rec.Meta.EventID, "status", effect.Status, "err", err)
	return x.deps.Ledger.Record(ctx, effect, rec.Position)
}

func (x *Reactor) effectID(eventID string) string { return x.r.Name + "/" + eventID }

// parkRefused handles a refusal recorded in a stream. If the refused command
// is this reactor's follow-up, the effect that sent it is parked with the
// refusal, support is alerted, and both the parked record and the checkpoint
// are written in one ledger transaction. A replay finds the effect parked
// and does nothing; a crash before the record repeats the alert under the
// same idempotency key, which the partner answers once.
func (x *Reactor) parkRefused(ctx context.Context, rec events.Recorded, r domain.Refused) error {
	reaction, eventID, ok := ParseFollowUpCommandID(rec.Meta.CommandID)
	if !ok || reaction != x.r.Name {
		return nil
	}
	e, found, err := x.deps.Ledger.Effect(ctx, x.effectID(eventID))
	switch {
	case err != nil:
		return err
	case !found || e.URN != rec.URN:
		x.deps.Logger.Warn("refused follow-up command of no effect of ours", "projector", x.r.Name, "urn", rec.URN, "command_id", rec.Meta.CommandID)
		return nil
	case e.Status != EffectFailedOver:
		return nil // already parked
	}
	e.Status = EffectParked
	e.Refusal = &Refusal{CommandID: rec.Meta.CommandID, EventID: rec.Meta.EventID, Code: string(r.Code), Reason: r.Reason,
		Status: string(r.Status), At: r.At}
	detail := fmt.Sprintf("%s was refused (%s): %s. The %s call had failed: %s", r.Command, r.Code, r.Reason, x.r.Name, e.Error)
	if err := x.alert(ctx, "refused/"+rec.Meta.EventID, Alert{URN: rec.URN, Severity: "critical",
		Summary: fmt.Sprintf("%s follow-up command refused; effect parked", x.r.Name), Detail: detail, At: r.At}); err != nil {
		return err
	}
	e.At = x.deps.Clock().UTC()
	x.deps.Logger.Warn("follow-up command refused, effect parked", "projector", x.r.Name, "urn", rec.URN, "effect", e.ID,
		"command_id", rec.Meta.CommandID, "code", r.Code)
	return x.deps.Ledger.Record(ctx, e, rec.Position)
}

// failPrescription sends the seed's failOnError command, with the
// reaction's FailWith as reason and reasonCode; cause, the internal error
// chain, goes only in the diagnostic header. Its id is FollowUpCommandID,
// so sending it again is a duplicate, not a second command.
func (x *Reactor) failPrescription(ctx context.Context, c Change, cause error) error {
	id := FollowUpCommandID(x.r.Name, c.Event.Meta.EventID)
	body, err := json.Marshal(map[string]any{
		"urn": c.After.URN, "event": domain.Fail, "commandId": id, "correlationId": c.Event.Meta.CorrelationID,
		"actor": ReactorActor(x.r.Name), "payload": map[string]string{"reason": x.r.FailWith.Reason, "reasonCode": x.r.FailWith.code(cause)},
	})
	if err != nil {
		return err
	}
	return x.deps.Publisher.Publish(ctx, Outbound{Topic: x.deps.CommandTopic, Key: c.After.URN, ID: id, Type: string(domain.Fail),
		Time: x.deps.Clock().UTC(), Payload: body, Headers: map[string]string{HeaderCommandID: id, HeaderDiagnostic: cause.Error()}})
}

// alert tells support. A partner that refuses the alert or keeps failing is
// logged, not retried: the parked record stays listed by the API. Any other
// error (a cancelled ctx) is returned, so that the event is handled again.
// Alerts are built from stored facts alone, so that a retry is the same call.
func (x *Reactor) alert(ctx context.Context, key string, a Alert) error {
	_, err := x.deps.Partners.Call(ctx, Support, key, a)
	if errors.Is(err, ErrPartnerFailed) {
		x.deps.Logger.Error("support alert failed", "projector", x.r.Name, "urn", a.URN, "key", key, "err", err)
		return nil
	}
	return err
}

// Errors of RetryParked.
var (
	// ErrNoSuchEffect: no effect has that id.
	ErrNoSuchEffect = errors.New("no such effect")
	// ErrNotParked: the effect is not parked (already retried, or never parked).
	ErrNotParked = errors.New("effect is not parked")
)

// RetryParked calls the partner of the parked effect id ("<reaction>/<event
// id>") again, with the same request (rebuilt from the stored change) and
// the same idempotency key (the event id), so a partner that took the first
// call answers it once. On success the effect is recorded EffectDone, which
// takes it off the parked list, and returned; its Error stays as the record
// of what had failed, and Attempts counts this retry's requests too.
// Errors: ErrNoSuchEffect, ErrNotParked, an error wrapping ErrPartnerFailed
// (the effect stays parked, with this failure as its Error), or a store
// error.
func RetryParked(ctx context.Context, deps ReactorDeps, id string) (Effect, error) {
	e, found, err := deps.Ledger.Effect(ctx, id)
	switch {
	case err != nil:
		return Effect{}, err
	case !found:
		return Effect{}, fmt.Errorf("effect %q: %w", id, ErrNoSuchEffect)
	case e.Status != EffectParked:
		return e, fmt.Errorf("effect %q is %s: %w", id, e.Status, ErrNotParked)
	}
	i := slices.IndexFunc(Reactions, func(r Reaction) bool { return r.Name == e.Projector })
	if i < 0 {
		return e, fmt.Errorf("effect %q: no reaction %q", id, e.Projector)
	}
	r := Reactions[i]
	recs, err := load(ctx, deps.History, e.URN)
	if err != nil {
		return e, err
	}
	j := slices.IndexFunc(recs, func(rec events.Recorded) bool { return rec.Meta.EventID == e.EventID })
	if j < 0 {
		return e, fmt.Errorf("effect %q: event %s is not in %s's stream", id, e.EventID, e.URN)
	}
	c, err := loadChange(ctx, deps.History, recs[j])
	if err != nil {
		return e, err
	}
	n, err := deps.Partners.Call(ctx, r.Partner, e.EventID, r.Body(c))
	e.Attempts += n
	switch {
	case errors.Is(err, ErrPartnerFailed):
		e.Error = err.Error()
		if rerr := deps.Ledger.Record(ctx, e, 0); rerr != nil { // still parked: its latest failure and attempts
			return e, errors.Join(err, rerr)
		}
		return e, fmt.Errorf("retry %s: %w", id, err)
	case err != nil:
		return e, fmt.Errorf("retry %s: %w", id, err)
	}
	clock := deps.Clock
	if clock == nil {
		clock = time.Now
	}
	e.Status, e.At = EffectDone, clock().UTC()
	if err := deps.Ledger.Record(ctx, e, 0); err != nil {
		return e, err
	}
	return e, nil
}

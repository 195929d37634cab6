// Package operator is what operators may do about what went wrong, for the
// query API and the console alike: retry a parked partner call, redrive a
// dead letter to the command topic, and the record of every such action
// (who, what, when, result) in the operations store (Store:
// readmodel.Operations on SQLite, postgres.Operations on PostgreSQL). It
// also consumes the dead-letter and refusals topics into that store
// (Inbox), so that the projector can show them.
package operator

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"time"

	"rxflow/commands"
	"rxflow/infra/readmodel"
	"rxflow/projections"
)

// Actions and their results, as recorded.
const (
	ActionRetry   = "retry"
	ActionRedrive = "redrive"

	ResultDone            = "done"
	ResultFailed          = "failed"
	ResultAlreadyRedriven = "already_redriven"
	ResultNotParked       = "not_parked"
	ResultRefused         = "refused"
)

// Errors of Redrive besides those of the store: ErrNotRedrivable for a
// record that is not a dead letter, an edited value that is empty, or a
// value that was truncated and no edit is given (none of these uses up the
// dead letter's one redrive); readmodel.ErrAlreadyRedriven;
// readmodel.ErrNoSuchRecord.
var ErrNotRedrivable = errors.New("dead letter cannot be redriven as is")

// Store is the operations store as the actions use it.
type Store interface {
	// DeadLetter returns the dead letter id; readmodel.ErrNoSuchRecord if none.
	DeadLetter(ctx context.Context, id string) (readmodel.DeadLetterRow, error)
	// ClaimRedrive marks dead letter id as redriven by r, once: a later
	// claim, by any instance, gets the first one's Redrive and
	// readmodel.ErrAlreadyRedriven; readmodel.ErrNoSuchRecord for an
	// unknown id.
	ClaimRedrive(ctx context.Context, id string, r readmodel.Redrive) (readmodel.Redrive, error)
	// ReleaseRedrive undoes commandID's claim on dead letter id.
	ReleaseRedrive(ctx context.Context, id, commandID string) error
	// RecordAction appends a and returns it with its Seq.
	RecordAction(ctx context.Context, a readmodel.OperatorAction) (readmodel.OperatorAction, error)
}

var _ Store = (*readmodel.Operations)(nil)

// Config of Actions.
type Config struct {
	Store        Store
	Reactors     projections.ReactorDeps // ledger, history and partners, for retries
	Publisher    projections.Publisher   // to the command topic, for redrives
	CommandTopic string
	Clock        func() time.Time // default time.Now
	Logger       *slog.Logger     // default slog.Default()
}

// Actions carries out and records operator actions.
type Actions struct {
	cfg Config
}

// New returns the operator actions of cfg.
func New(cfg Config) *Actions {
	if cfg.Clock == nil {
		cfg.Clock = time.Now
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	return &Actions{cfg: cfg}
}

// Retry retries the parked effect id ("<reaction>/<event id>") on behalf of
// actor and records the action, whatever its result, unless no effect has
// that id (projections.ErrNoSuchEffect, nothing recorded). It returns the
// record and the effect; the error is that of projections.RetryParked, or
// of the store. Two retries at once may both call the partner: with the
// same idempotency key, which the partner answers once.
func (a *Actions) Retry(ctx context.Context, actor, id string) (readmodel.OperatorAction, projections.Effect, error) {
	e, err := projections.RetryParked(ctx, a.cfg.Reactors, id)
	act := readmodel.OperatorAction{At: a.cfg.Clock().UTC(), Actor: actor, Action: ActionRetry, Target: id, URN: e.URN, Result: ResultDone}
	switch {
	case err == nil:
		act.Detail = "the " + e.Projector + " call was accepted; the effect is done"
	case errors.Is(err, projections.ErrNoSuchEffect):
		return act, e, err // nothing to record against
	case errors.Is(err, projections.ErrNotParked):
		act.Result, act.Detail = ResultNotParked, err.Error()
	default:
		act.Result, act.Detail = ResultFailed, err.Error()
	}
	rec, rerr := a.cfg.Store.RecordAction(ctx, act)
	if rerr != nil {
		return act, e, errors.Join(err, rerr)
	}
	a.cfg.Logger.Info("operator action", "action", act.Action, "actor", actor, "target", id, "result", act.Result)
	return rec, e, err
}

// RedriveCommandID is the command id a redrive of dead letter id from
// topic carries: "redrive:<topic>/<id>", derived from the dead letter.
func RedriveCommandID(topic, id string) string { return "redrive:" + topic + "/" + id }

// Redrive publishes dead letter id to the command topic again, once, on
// behalf of actor: the original value, or edited when it is not nil; the
// original key; the original headers except the dead letter's own and
// Watermill's, with command-id set to RedriveCommandID. A commandId in the
// value itself takes precedence over that header, as for any command. A
// second Redrive of the same dead letter publishes nothing and returns
// readmodel.ErrAlreadyRedriven with the first one's record. Every attempt
// on a known dead letter is recorded.
func (a *Actions) Redrive(ctx context.Context, actor, id string, edited *string) (readmodel.OperatorAction, error) {
	d, err := a.cfg.Store.DeadLetter(ctx, id)
	if err != nil {
		return readmodel.OperatorAction{}, err
	}
	act := readmodel.OperatorAction{At: a.cfg.Clock().UTC(), Actor: actor, Action: ActionRedrive, Target: id, URN: d.Key}
	out, err := a.redrive(ctx, d, actor, edited, &act)
	if err != nil {
		act.Detail = err.Error()
		switch {
		case errors.Is(err, readmodel.ErrAlreadyRedriven):
			act.Result = ResultAlreadyRedriven
		case errors.Is(err, ErrNotRedrivable):
			act.Result = ResultRefused
		default:
			act.Result = ResultFailed
		}
	} else {
		act.Result, act.Detail = ResultDone, "published to "+out.Topic+" as command "+out.ID
	}
	rec, rerr := a.cfg.Store.RecordAction(ctx, act)
	if rerr != nil {
		return act, errors.Join(err, rerr)
	}
	a.cfg.Logger.Info("operator action", "action", act.Action, "actor", actor, "target", id, "result", act.Result)
	return rec, err
}

func (a *Actions) redrive(ctx context.Context, d readmodel.DeadLetterRow, actor string, edited *string, act *readmodel.OperatorAction) (projections.Outbound, error) {
	var dl commands.DeadLetter
	if err := json.Unmarshal(d.Raw, &dl); err != nil || dl.Code == "" {
		return projections.Outbound{}, fmt.Errorf("%w: the record is not a dead letter", ErrNotRedrivable)
	}
	value, err := base64.StdEncoding.DecodeString(dl.ValueBase64)
	switch {
	case edited != nil && strings.TrimSpace(*edited) == "":
		return projections.Outbound{}, fmt.Errorf("%w: the edited value is empty", ErrNotRedrivable)
	case edited != nil:
		value = []byte(*edited)
	case err != nil:
		return projections.Outbound{}, fmt.Errorf("%w: its value is not valid base64", ErrNotRedrivable)
	case dl.TruncatedFrom > 0:
		return projections.Outbound{}, fmt.Errorf("%w: it holds only the first %d of %d bytes; edit it, or replay from %s/%d/%d",
			ErrNotRedrivable, len(value), dl.TruncatedFrom, dl.Source.Topic, dl.Source.Partition, dl.Source.Offset)
	}
	key := ""
	if dl.Key != nil {
		key = *dl.Key
	} else if k, err := base64.StdEncoding.DecodeString(dl.KeyBase64); err == nil {
		key = string(k)
	}
	if urn := urnOf(value); urn != "" {
		act.URN = urn
	}
	cmdID := RedriveCommandID(d.Topic, d.ID)
	headers := map[string]string{}
	for k, v := range dl.Headers {
		if !strings.HasPrefix(k, "dlq-") && !strings.HasPrefix(k, "_watermill") && k != "dedupe-key" {
			headers[k] = v
		}
	}
	headers[commands.HeaderCommandID] = cmdID
	headers[HeaderRedriveOf] = d.Topic + "/" + d.ID
	out := projections.Outbound{Topic: a.cfg.CommandTopic, Key: key, ID: cmdID, Type: "rxflow.operator.redrive",
		Time: a.cfg.Clock().UTC(), Payload: value, Headers: headers}
	if _, err := a.cfg.Store.ClaimRedrive(ctx, d.ID, readmodel.Redrive{CommandID: cmdID, At: out.Time, By: actor}); err != nil {
		return out, err
	}
	if err := a.cfg.Publisher.Publish(ctx, out); err != nil {
		if rerr := a.cfg.Store.ReleaseRedrive(context.WithoutCancel(ctx), d.ID, cmdID); rerr != nil {
			err = errors.Join(err, rerr)
		}
		return out, fmt.Errorf("publish to %s: %w", out.Topic, err)
	}
	return out, nil
}

// HeaderRedriveOf names, on a redriven command, the dead letter it came
// from: "<dead-letter topic>/<id>".
const HeaderRedriveOf = "redrive-of"

// urnOf is the urn field of a JSON command, if it has one.
func urnOf(value []byte) string {
	var c struct {
		URN string `json:"urn"`
	}
	if json.Unmarshal(value, &c) != nil {
		return ""
	}
	return c.URN
}

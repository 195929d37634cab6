package projections

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"rxflow/domain"
	"rxflow/events"
)

// PrescriptionView is the JSON form of a prescription, shared by every
// query answer. Optional fields and unset times are left out.
type PrescriptionView struct {
	URN             string            `json:"urn"`
	Status          domain.Status     `json:"status"`
	PatientID       string            `json:"patientId"`
	PrescriberID    string            `json:"prescriberId"`
	PharmacyID      string            `json:"pharmacyId,omitempty"`
	Medication      domain.Medication `json:"medication"`
	ApprovedBy      string            `json:"approvedBy,omitempty"`
	RejectedBy      string            `json:"rejectedBy,omitempty"`
	RejectionReason string            `json:"rejectionReason,omitempty"`
	FailureReason   string            `json:"failureReason,omitempty"`
	Dispensing      domain.Dispensing `json:"dispensing,omitzero"`
	RequestedAt     time.Time         `json:"requestedAt,omitzero"`
	ApprovedAt      time.Time         `json:"approvedAt,omitzero"`
	RejectedAt      time.Time         `json:"rejectedAt,omitzero"`
	ProcessingAt    time.Time         `json:"processingAt,omitzero"`
	DispensedAt     time.Time         `json:"dispensedAt,omitzero"`
	CompletedAt     time.Time         `json:"completedAt,omitzero"`
	FailedAt        time.Time         `json:"failedAt,omitzero"`
}

// ViewOf returns the JSON view of p.
func ViewOf(p domain.Prescription) PrescriptionView {
	return PrescriptionView{
		URN: p.URN, Status: p.Status, PatientID: p.PatientID, PrescriberID: p.PrescriberID, PharmacyID: p.PharmacyID,
		Medication: p.Medication, ApprovedBy: p.ApprovedBy, RejectedBy: p.RejectedBy, RejectionReason: p.RejectionReason,
		FailureReason: p.FailureReason, Dispensing: p.Dispensing,
		RequestedAt: p.RequestedAt, ApprovedAt: p.ApprovedAt, RejectedAt: p.RejectedAt, ProcessingAt: p.ProcessingAt,
		DispensedAt: p.DispensedAt, CompletedAt: p.CompletedAt, FailedAt: p.FailedAt,
	}
}

// RowView is the JSON form of a read-model row: the prescription and where
// the read model's copy of it stands.
type RowView struct {
	PrescriptionView
	LastRevision uint64    `json:"lastRevision"`
	LastPosition uint64    `json:"lastPosition"`
	UpdatedAt    time.Time `json:"updatedAt"`
}

// RowViewOf returns the JSON view of r.
func RowViewOf(r Row) RowView {
	return RowView{PrescriptionView: ViewOf(r.Prescription), LastRevision: r.LastRevision, LastPosition: r.LastPosition, UpdatedAt: r.UpdatedAt}
}

// HistoryEntry is one stored event of a prescription, for audit.
type HistoryEntry struct {
	EventID       string          `json:"eventId"`
	EventType     string          `json:"eventType"` // stable stored name, e.g. PrescriptionApproved
	Event         string          `json:"event"`     // the seed's command, e.g. prescription.approve
	Revision      uint64          `json:"revision"`
	Position      uint64          `json:"position"`
	Time          time.Time       `json:"time"`     // when the decision was taken
	Recorded      time.Time       `json:"recorded"` // when the store wrote it
	Actor         string          `json:"actor,omitempty"`
	CommandID     string          `json:"commandId"`
	CorrelationID string          `json:"correlationId,omitempty"`
	CausationID   string          `json:"causationId,omitempty"`
	SchemaVersion int             `json:"schemaVersion"` // the version the payload was stored at
	Payload       json.RawMessage `json:"payload"`       // the payload at its event's current version, upcast from SchemaVersion when older
}

// HistoryOf returns urn's events, oldest first, read from its stream.
// It returns ErrNotFound if the stream is empty.
func HistoryOf(ctx context.Context, h History, urn string) ([]HistoryEntry, error) {
	recs, err := load(ctx, h, urn)
	if err != nil {
		return nil, err
	}
	out := make([]HistoryEntry, len(recs))
	for i, rec := range recs {
		out[i] = HistoryEntry{
			EventID: rec.Meta.EventID, EventType: rec.Name, Event: string(rec.Event.Cause()),
			Revision: rec.Revision, Position: rec.Position, Time: rec.Meta.OccurredAt, Recorded: rec.Created,
			Actor: rec.Meta.Actor, CommandID: rec.Meta.CommandID, CorrelationID: rec.Meta.CorrelationID,
			CausationID: rec.Meta.CausationID, SchemaVersion: rec.Meta.SchemaVersion, Payload: json.RawMessage(rec.Data),
		}
	}
	return out, nil
}

// AsOf picks a past state: set exactly one of its fields.
type AsOf struct {
	Time     time.Time // the state at this moment
	Revision *uint64   // the state right after this revision
}

// Snapshot is a prescription's state at some point of its history.
type Snapshot struct {
	URN          string           `json:"urn"`
	Status       domain.Status    `json:"status"`
	Revision     uint64           `json:"revision"` // the last event folded in
	AsOf         time.Time        `json:"asOf"`     // the requested time, or when Revision occurred
	Prescription PrescriptionView `json:"prescription"`
}

var errAsOf = errors.New("projections: AsOf needs exactly one of Time and Revision")

// BeforeFirstEventError is StateAsOf's answer to a time before the
// stream's first event: the prescription exists, but did not yet at AsOf.
// It matches ErrNotFound.
type BeforeFirstEventError struct {
	URN                string
	AsOf, FirstEventAt time.Time
}

func (e *BeforeFirstEventError) Error() string {
	return fmt.Sprintf("prescription %q did not exist yet at %s: its first event occurred at %s",
		e.URN, e.AsOf.UTC().Format(time.RFC3339Nano), e.FirstEventAt.UTC().Format(time.RFC3339Nano))
}

// Is makes errors.Is(err, ErrNotFound) true.
func (e *BeforeFirstEventError) Is(target error) bool { return target == ErrNotFound }

// StateAsOf folds urn's events up to at: those that occurred at or before
// at.Time, or those up to revision *at.Revision. Folding stops at the first
// event past the bound, so the state is always a prefix of the stream.
// It returns ErrNotFound if the stream is empty, and a *BeforeFirstEventError
// if at.Time is before its first event.
func StateAsOf(ctx context.Context, h History, urn string, at AsOf) (Snapshot, error) {
	if at.Time.IsZero() == (at.Revision == nil) {
		return Snapshot{}, errAsOf
	}
	recs, err := load(ctx, h, urn)
	if err != nil {
		return Snapshot{}, err
	}
	var p domain.Prescription
	var last *events.Recorded
	for i := range recs {
		rec := &recs[i]
		past := rec.Meta.OccurredAt.After(at.Time)
		if at.Revision != nil {
			past = rec.Revision > *at.Revision
		}
		if past {
			break
		}
		p, last = domain.Evolve(p, rec.Event), rec
	}
	if last == nil {
		return Snapshot{}, &BeforeFirstEventError{URN: urn, AsOf: at.Time, FirstEventAt: recs[0].Meta.OccurredAt}
	}
	asOf := at.Time
	if at.Revision != nil {
		asOf = last.Meta.OccurredAt
	}
	return Snapshot{URN: urn, Status: p.Status, Revision: last.Revision, AsOf: asOf, Prescription: ViewOf(p)}, nil
}

// load reads urn's stream: ErrNotFound if it is empty.
func load(ctx context.Context, h History, urn string) ([]events.Recorded, error) {
	recs, err := h.Load(ctx, urn)
	if err != nil {
		return nil, fmt.Errorf("load %q: %w", urn, err)
	}
	if len(recs) == 0 {
		return nil, fmt.Errorf("prescription %q: %w", urn, ErrNotFound)
	}
	for _, rec := range recs {
		if rec.Event == nil {
			return nil, fmt.Errorf("load %q: event at revision %d is not decoded", urn, rec.Revision)
		}
	}
	return recs, nil
}

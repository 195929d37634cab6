package projections

import (
	"cmp"
	"context"
	"encoding/json"
	"time"

	"rxflow/domain"
	"rxflow/events"
)

// The outbound topics as the contract (asyncapi.yaml) names them: the
// defaults of OutboundTopics.
const (
	TopicDispensed     = "prescription.dispensed"
	TopicFailed        = "prescription.failed"
	TopicStatusChanged = "prescription.status-changed"
)

// OutboundTopics names the topics the outbound projector publishes to.
type OutboundTopics struct {
	Dispensed     string // default TopicDispensed
	Failed        string // default TopicFailed
	StatusChanged string // default TopicStatusChanged
}

// WithDefaults returns t with each empty name set to its default.
func (t OutboundTopics) WithDefaults() OutboundTopics {
	t.Dispensed = cmp.Or(t.Dispensed, TopicDispensed)
	t.Failed = cmp.Or(t.Failed, TopicFailed)
	t.StatusChanged = cmp.Or(t.StatusChanged, TopicStatusChanged)
	return t
}

// CloudEvents types of the outbound messages: stable, whatever the topic names.
const (
	TypeDispensed     = "prescription.dispensed"
	TypeFailed        = "prescription.failed"
	TypeStatusChanged = "prescription.status-changed"
)

// Dispensed is the seed's prescription.dispensed payload.
type Dispensed struct {
	URN        string    `json:"urn"`
	PatientID  string    `json:"patientId"`
	PharmacyID string    `json:"pharmacyId"`
	Timestamp  time.Time `json:"timestamp"`
}

// Failed is the seed's prescription.failed payload, plus a stable reason
// code. Reason is the human text of the fail command (for a pharmacy
// failure, PharmacyFailureReason); internal detail never appears here.
type Failed struct {
	URN        string    `json:"urn"`
	Reason     string    `json:"reason"`
	ReasonCode string    `json:"reasonCode"` // e.g. "pharmacy_unavailable"; "reported" when the command gave none
	Timestamp  time.Time `json:"timestamp"`
}

// failedPayload is the prescription.failed payload of event rec.
func failedPayload(rec events.Recorded) Failed {
	f, _ := rec.Event.(domain.Failed)
	// Events stored before reason codes have none.
	return Failed{URN: rec.URN, Reason: f.Reason, ReasonCode: cmp.Or(f.ReasonCode, domain.FailureReported), Timestamp: f.At}
}

// StatusChanged is published for every transition.
type StatusChanged struct {
	URN           string        `json:"urn"`
	EventID       string        `json:"eventId"`
	EventType     string        `json:"eventType"` // the stored event name, e.g. PrescriptionApproved
	Event         string        `json:"event"`     // the seed's event, e.g. prescription.approve
	From          domain.Status `json:"from"`      // "" for a new prescription
	To            domain.Status `json:"to"`
	Revision      uint64        `json:"revision"`
	Position      uint64        `json:"position"`
	CorrelationID string        `json:"correlationId,omitempty"`
	Timestamp     time.Time     `json:"timestamp"`
}

// OutboundProjector publishes the seed's Kafka events and every status
// change. Messages are keyed by urn and carry the event id as dedupe key:
// after a crash a message may be published again, never lost.
type OutboundProjector struct {
	ledger    Ledger
	changes   *changes
	publisher Publisher
	topics    OutboundTopics
}

// NewOutboundProjector returns the outbound projector; its checkpoint is kept in ledger.
func NewOutboundProjector(ledger Ledger, history History, publisher Publisher, topics OutboundTopics) *OutboundProjector {
	return &OutboundProjector{ledger: ledger, changes: newChanges(history), publisher: publisher, topics: topics.WithDefaults()}
}

// Name implements Projector.
func (o *OutboundProjector) Name() string { return "kafka-outbound" }

// Checkpoint implements Projector.
func (o *OutboundProjector) Checkpoint(ctx context.Context) (uint64, error) {
	return o.ledger.Checkpoint(ctx, o.Name())
}

// SaveCheckpoint implements Projector.
func (o *OutboundProjector) SaveCheckpoint(ctx context.Context, pos uint64) error {
	return o.ledger.SaveCheckpoint(ctx, o.Name(), pos)
}

// Handle implements Projector. A refusal publishes nothing: it changes no
// status, and the processor has published it as a refusal. Nor does a
// passed deadline, which changes no status either.
func (o *OutboundProjector) Handle(ctx context.Context, rec events.Recorded) error {
	var need bool
	switch rec.Event.(type) {
	case domain.Refused, domain.DeadlinePassed:
	default:
		need = true
	}
	c, err := o.changes.follow(ctx, rec, need)
	if err != nil || !need {
		return err
	}
	return o.publisher.Publish(ctx, outboundOf(c, o.topics)...)
}

// outboundOf is what the outbound projector publishes for change c.
func outboundOf(c Change, topics OutboundTopics) []Outbound {
	rec := c.Event
	at := rec.Event.OccurredAt()
	msgs := []Outbound{message(topics.StatusChanged, TypeStatusChanged, c, StatusChanged{
		URN: rec.URN, EventID: rec.Meta.EventID, EventType: rec.Name, Event: string(rec.Event.Cause()),
		From: c.Before.Status, To: c.After.Status, Revision: rec.Revision, Position: rec.Position,
		CorrelationID: rec.Meta.CorrelationID, Timestamp: at,
	})}
	seedEvents := []struct {
		when        Trigger
		topic, kind string
		payload     any
	}{
		{Trigger{From: domain.StatusProcessing, To: domain.StatusDispensed}, topics.Dispensed, TypeDispensed,
			Dispensed{URN: rec.URN, PatientID: c.After.PatientID, PharmacyID: c.After.PharmacyID, Timestamp: at}},
		{Trigger{From: domain.StatusProcessing, To: domain.StatusFailed}, topics.Failed, TypeFailed,
			failedPayload(rec)},
	}
	for _, e := range seedEvents {
		if e.when.matches(c) {
			msgs = append(msgs, message(e.topic, e.kind, c, e.payload))
		}
	}
	return msgs
}

func message(topic, kind string, c Change, payload any) Outbound {
	body, _ := json.Marshal(payload) // plain structs of strings, numbers and times
	return Outbound{Topic: topic, Key: c.Event.URN, ID: c.Event.Meta.EventID, Type: kind, Time: c.Event.Event.OccurredAt(), Payload: body,
		Headers: map[string]string{"correlation-id": c.Event.Meta.CorrelationID}}
}

// OutboundOf returns what the outbound projector publishes for urn's
// stored events, oldest first, to topics (empty names take the defaults):
// each message's ID is its dedupe key. ErrNotFound if the stream is empty.
func OutboundOf(ctx context.Context, h History, topics OutboundTopics, urn string) ([]Outbound, error) {
	recs, err := load(ctx, h, urn)
	if err != nil {
		return nil, err
	}
	var out []Outbound
	var before domain.Prescription
	for _, rec := range recs {
		after := domain.Evolve(before, rec.Event)
		if _, refused := rec.Event.(domain.Refused); !refused {
			out = append(out, outboundOf(Change{Event: rec, Before: before, After: after}, topics.WithDefaults())...)
		}
		before = after
	}
	return out, nil
}

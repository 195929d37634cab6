package projections

import (
	"context"
	"fmt"
	"maps"
	"slices"
	"strings"

	"rxflow/domain"
	"rxflow/events"
)

// ReadModelProjector keeps the read model: each event and its checkpoint
// are applied in one transaction by the store.
type ReadModelProjector struct {
	rm ReadModel
}

// NewReadModelProjector returns the projector of rm.
func NewReadModelProjector(rm ReadModel) *ReadModelProjector { return &ReadModelProjector{rm: rm} }

// Name implements Projector.
func (p *ReadModelProjector) Name() string { return "readmodel" }

// Checkpoint implements Projector.
func (p *ReadModelProjector) Checkpoint(ctx context.Context) (uint64, error) {
	return p.rm.Checkpoint(ctx)
}

// Handle implements Projector. A refusal changes no row: only the
// checkpoint moves past it.
func (p *ReadModelProjector) Handle(ctx context.Context, rec events.Recorded) error {
	if _, refused := rec.Event.(domain.Refused); refused {
		return p.rm.SaveCheckpoint(ctx, rec.Position)
	}
	return p.rm.Apply(ctx, rec)
}

// HandleBatch implements BatchHandler: in one transaction when the store
// is a ReadModelBatch, else event by event.
func (p *ReadModelProjector) HandleBatch(ctx context.Context, recs []events.Recorded) error {
	if b, ok := p.rm.(ReadModelBatch); ok {
		return b.ApplyBatch(ctx, recs)
	}
	for _, rec := range recs {
		if err := p.Handle(ctx, rec); err != nil {
			return err
		}
	}
	return nil
}

// SaveCheckpoint implements Projector.
func (p *ReadModelProjector) SaveCheckpoint(ctx context.Context, pos uint64) error {
	return p.rm.SaveCheckpoint(ctx, pos)
}

// Replayed is the read model an audit rebuild folds from $all: one row per
// prescription, sorted by urn, the deadlines they wait for, and the $all
// position it reached.
type Replayed struct {
	Rows       []Row
	Waiting    []Waiting
	Checkpoint uint64
}

// Replay folds every prescription event stored so far into read-model rows
// and waiting deadlines, for an audit rebuild. progress, if set, is called
// every 10,000 events. It stops at an event it cannot decode rather than
// build a wrong model.
func Replay(ctx context.Context, feed Feed, progress func(events int, position uint64)) (Replayed, error) {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	sub, err := feed.Subscribe(ctx, 0)
	if err != nil {
		return Replayed{}, err
	}
	defer sub.Close()
	byURN := map[string]*Row{}
	waiting := map[string][]Waiting{}
	var checkpoint uint64
	n := 0
	for {
		m, err := sub.Recv()
		if err != nil {
			return Replayed{}, fmt.Errorf("replay after %d events: %w", n, err)
		}
		switch {
		case m.DecodeErr != nil:
			return Replayed{}, fmt.Errorf("replay: undecodable event at %d: %w", m.Event.Position, m.DecodeErr)
		case m.Event != nil:
			rec := m.Event
			if _, refused := rec.Event.(domain.Refused); refused {
				checkpoint = max(checkpoint, rec.Position) // as the live projector: no row changes
				continue
			}
			row := byURN[rec.URN]
			if row == nil {
				row = &Row{}
				byURN[rec.URN] = row
			}
			before := row.Status
			FoldRow(row, *rec)
			waiting[rec.URN] = DeadlinesAfter(domain.Prescriptions, *rec, before, row.Status).Apply(waiting[rec.URN])
			checkpoint = max(checkpoint, rec.Position)
			if n++; progress != nil && n%10000 == 0 {
				progress(n, checkpoint)
			}
		case m.Checkpoint > 0:
			checkpoint = max(checkpoint, m.Checkpoint)
		case m.CaughtUp:
			if progress != nil {
				progress(n, checkpoint)
			}
			out := Replayed{Rows: make([]Row, 0, len(byURN)), Checkpoint: checkpoint}
			for _, r := range byURN {
				out.Rows = append(out.Rows, *r)
			}
			slices.SortFunc(out.Rows, func(a, b Row) int { return strings.Compare(a.URN, b.URN) })
			for _, urn := range slices.Sorted(maps.Keys(waiting)) {
				out.Waiting = append(out.Waiting, waiting[urn]...)
			}
			return out, nil
		}
	}
}

// FoldRow folds rec, a prescription event other than a refusal, into its
// row: the read model skips refusals, so the row's StatusSince is set from
// the event's stream revision rather than from the events folded.
func FoldRow(row *Row, rec events.Recorded) {
	before := row.Status
	row.Prescription = domain.Evolve(row.Prescription, rec.Event)
	if row.Status != before {
		row.StatusSince = int(rec.Revision)
	}
	row.URN = rec.URN
	row.LastRevision, row.LastPosition, row.UpdatedAt = rec.Revision, rec.Position, rec.Event.OccurredAt()
}

// Apply returns the waiting deadlines of one prescription after c.
func (c DeadlineChange) Apply(waiting []Waiting) []Waiting {
	if c.CancelAll {
		waiting = nil
	}
	if c.Passed != nil {
		waiting = slices.DeleteFunc(waiting, func(w Waiting) bool { return w.Deadline == c.Passed.Deadline && w.Since == c.Passed.Since })
	}
	return append(waiting, c.Start...)
}

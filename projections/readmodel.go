package projections

import (
	"context"
	"fmt"
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

// SaveCheckpoint implements Projector.
func (p *ReadModelProjector) SaveCheckpoint(ctx context.Context, pos uint64) error {
	return p.rm.SaveCheckpoint(ctx, pos)
}

// Replay folds every prescription event stored so far into read-model rows,
// for an audit rebuild. progress, if set, is called every 10,000 events. It
// stops at an event it cannot decode rather than build a wrong model.
func Replay(ctx context.Context, feed Feed, progress func(events int, position uint64)) (rows []Row, checkpoint uint64, err error) {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	sub, err := feed.Subscribe(ctx, 0)
	if err != nil {
		return nil, 0, err
	}
	defer sub.Close()
	byURN := map[string]*Row{}
	n := 0
	for {
		m, err := sub.Recv()
		if err != nil {
			return nil, 0, fmt.Errorf("replay after %d events: %w", n, err)
		}
		switch {
		case m.DecodeErr != nil:
			return nil, 0, fmt.Errorf("replay: undecodable event at %d: %w", m.Event.Position, m.DecodeErr)
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
			row.Prescription = domain.Evolve(row.Prescription, rec.Event)
			row.LastRevision, row.LastPosition, row.UpdatedAt = rec.Revision, rec.Position, rec.Event.OccurredAt()
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
			rows = make([]Row, 0, len(byURN))
			for _, r := range byURN {
				rows = append(rows, *r)
			}
			slices.SortFunc(rows, func(a, b Row) int { return strings.Compare(a.URN, b.URN) })
			return rows, checkpoint, nil
		}
	}
}

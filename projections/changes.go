package projections

import (
	"context"
	"fmt"

	lru "github.com/hashicorp/golang-lru/v2"

	"rxflow/domain"
	"rxflow/events"
)

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

// changeCacheSize is how many prescriptions a projector following changes
// keeps folded (per projector and segment).
const changeCacheSize = 512

// changes follows the prescriptions a projector is handed, folding each
// event into the prescription before it, so that the change around an
// event comes from memory instead of a read of its whole stream
// (History.Load) per event. A kept prescription is used only when the
// event follows on from it (its revision); otherwise (a start mid-stream,
// events handed again after a resubscription, one dropped from the
// cache) the stream is read as before. At most changeCacheSize are kept,
// the least recently used dropped first, and none in a final state.
type changes struct {
	history History
	kept    *lru.Cache[string, domain.Prescription]
}

func newChanges(h History) *changes {
	kept, _ := lru.New[string, domain.Prescription](changeCacheSize) // fails only for a size <= 0
	return &changes{history: h, kept: kept}
}

// follow takes rec, handed to the projector in $all order, and returns
// its change. When need is not set it reads no stream and never fails;
// the change is then zero unless rec follows on from what is kept.
func (c *changes) follow(ctx context.Context, rec events.Recorded, need bool) (Change, error) {
	before, ok := c.kept.Get(rec.URN)
	switch {
	case ok && uint64(before.Revision) == rec.Revision:
	case rec.Revision == 0:
		before = domain.Prescription{}
	case !need:
		c.kept.Remove(rec.URN)
		return Change{}, nil
	default:
		ch, err := loadChange(ctx, c.history, rec)
		if err != nil {
			c.kept.Remove(rec.URN)
			return Change{}, err
		}
		c.keep(rec.URN, ch.After)
		return ch, nil
	}
	ch := Change{Event: rec, Before: before, After: domain.Evolve(before, rec.Event)}
	c.keep(rec.URN, ch.After)
	return ch, nil
}

func (c *changes) keep(urn string, p domain.Prescription) {
	if domain.Prescriptions.IsFinal(p.Status) {
		c.kept.Remove(urn)
		return
	}
	c.kept.Add(urn, p)
}

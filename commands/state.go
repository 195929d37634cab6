package commands

import (
	"maps"

	lru "github.com/hashicorp/golang-lru/v2"

	"rxflow/domain"
	"rxflow/events"
)

// state is a prescription as the handler needs it: the folded aggregate,
// the stream's last revision and the commands already applied.
type state struct {
	p        domain.Prescription
	last     int64 // last stream revision; NoStream when empty
	commands map[string]seenCommand
}

// seenCommand is a command already in the stream.
type seenCommand struct {
	hash    Fingerprint
	refusal *domain.Refused // set if the command was refused
}

func seen(hash Fingerprint, e domain.Event) seenCommand {
	if r, ok := e.(domain.Refused); ok {
		return seenCommand{hash: hash, refusal: &r}
	}
	return seenCommand{hash: hash}
}

func stateOf(recs []events.Recorded) state {
	st := state{last: NoStream, commands: make(map[string]seenCommand, len(recs))}
	for _, r := range recs {
		st.p = domain.Evolve(st.p, r.Event)
		st.last = int64(r.Revision)
		st.commands[r.Meta.CommandID] = seen(Fingerprint(r.Meta.CommandHash), r.Event)
	}
	return st
}

// with returns the state after env's events; st itself is left unchanged.
func (st state) with(env Envelope, evs []domain.Event) state {
	next := state{p: st.p, last: st.last + int64(len(evs)), commands: maps.Clone(st.commands)}
	for _, e := range evs {
		next.p = domain.Evolve(next.p, e)
		next.commands[env.ID] = seen(env.Hash, e)
	}
	return next
}

// stateCache is a bounded cache of prescription states. Every use is guarded
// by the expected revision on append, so a stale entry costs a retry, never a
// wrong event.
type stateCache struct {
	lru *lru.Cache[string, state]
}

func newStateCache(size int) *stateCache {
	if size <= 0 {
		return &stateCache{}
	}
	c, _ := lru.New[string, state](size) // fails only for size <= 0
	return &stateCache{lru: c}
}

func (c *stateCache) get(urn string) (state, bool) {
	if c.lru == nil {
		return state{}, false
	}
	return c.lru.Get(urn)
}

func (c *stateCache) put(urn string, st state) {
	if c.lru != nil {
		c.lru.Add(urn, st)
	}
}

func (c *stateCache) drop(urn string) {
	if c.lru != nil {
		c.lru.Remove(urn)
	}
}

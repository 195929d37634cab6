package projections

import (
	"cmp"
	"context"
	"errors"
	"sort"
	"sync"
)

// SharedFeed serves every subscription of one instance from as few
// subscriptions of the underlying Feed as their speeds allow, so that each
// event of $all is received and decoded about once per instance, not once
// per runner (nine projectors on each of eight segments would otherwise read
// every event 72 times over).
//
// A reading of the underlying Feed (a lane) keeps its last Ring messages.
// A subscription joins the lane furthest on that still holds, or has yet to
// read, every message after its position; failing that it opens a lane at
// its position. A lane reads
// ahead of its fastest subscription by at most half its ring, so it never
// holds its fastest up to wait for a slower one; a subscription that falls
// off the end of the ring (a projector slower than the others, or stuck
// retrying a partner) joins or opens a lane further back, and whenever a
// lane ahead of its own holds its position again it moves there. Lanes thus
// number about the distinct speeds of the projectors, and close with their
// last subscription. Either way each subscription delivers what a
// subscription of the underlying Feed would: every event after its
// position, in order, once.
//
// A subscription of a segment (SegmentFeed of a SharedFeed) receives only
// its segment's events; the others are reported as one Message.Skipped per
// run of them, which moves its runner's cursor.
type SharedFeed struct {
	feed Feed
	ring int

	mu     sync.Mutex
	lanes  map[*lane]struct{} // the lanes subscriptions may join
	nextID int
}

// DefaultSharedRing is the messages a lane of a SharedFeed keeps.
const DefaultSharedRing = 8192

// skipRun is how many events of other segments a segment's subscription
// passes over before it is told (one Message.Skipped); fewer when its
// lane has nothing more yet.
const skipRun = 64

// batch is how many messages a subscription takes from its lane at once.
const batch = 64

// NewSharedFeed shares feed; ring is DefaultSharedRing when 0.
func NewSharedFeed(feed Feed, ring int) *SharedFeed {
	return &SharedFeed{feed: feed, ring: cmp.Or(ring, DefaultSharedRing), lanes: map[*lane]struct{}{}}
}

// Subscribe implements Feed.
func (h *SharedFeed) Subscribe(ctx context.Context, after uint64) (Subscription, error) {
	return h.subscribe(ctx, after, nil)
}

type sharedSegment struct {
	h     *SharedFeed
	lease Lease
}

func (s sharedSegment) Subscribe(ctx context.Context, after uint64) (Subscription, error) {
	return s.h.subscribe(ctx, after, &s.lease)
}

func (h *SharedFeed) subscribe(ctx context.Context, after uint64, lease *Lease) (Subscription, error) {
	m := &member{h: h, ctx: ctx, lease: lease, at: after, delivered: after, done: make(chan struct{})}
	h.mu.Lock()
	defer h.mu.Unlock()
	if err := m.place(); err != nil {
		return nil, err
	}
	return m, nil
}

// lane is one subscription of the underlying feed and its ring.
type lane struct {
	h           *SharedFeed
	id          int
	stop        context.CancelFunc
	ring        []entry
	first, next uint64 // the ring holds messages first..next-1 (by count)
	base        uint64 // position of the last message before ring[first]
	last        uint64 // position of the newest message
	live        bool   // the newest message is at or after a CaughtUp
	err         error  // the reading dropped; given to each member at the end of the ring
	members     map[*member]struct{}
	changed     chan struct{} // closed when a message is added or the reading drops
	room        *sync.Cond    // on h.mu: a member moved on, or left
}

type entry struct {
	msg          Message
	at           uint64 // position of msg, or of the message before when msg has none
	count, shard int    // SegmentOf(msg.Event.URN, count), kept for the next member of the same count
}

// covers reports whether l still holds, or will read, every message after
// position at.
func (l *lane) covers(at uint64) bool {
	return l.err == nil && l.base <= at
}

// before reports whether l is further on than o, or as far and older: the
// lane a member on o moves to.
func (l *lane) before(o *lane) bool {
	return l.last > o.last || (l.last == o.last && l.id < o.id)
}

// seqAfter is the first message of l after position at.
func (l *lane) seqAfter(at uint64) uint64 {
	n := int(l.next - l.first)
	i := sort.Search(n, func(i int) bool { return l.ring[(l.first+uint64(i))%uint64(len(l.ring))].at > at })
	return l.first + uint64(i)
}

// open starts a lane reading the feed after position at; h.mu is held.
func (h *SharedFeed) open(ctx context.Context, at uint64) (*lane, error) {
	ctx, stop := context.WithCancel(context.WithoutCancel(ctx))
	sub, err := h.feed.Subscribe(ctx, at)
	if err != nil {
		stop()
		return nil, err
	}
	h.nextID++
	l := &lane{h: h, id: h.nextID, stop: stop, ring: make([]entry, h.ring), base: at, last: at,
		members: map[*member]struct{}{}, changed: make(chan struct{})}
	l.room = sync.NewCond(&h.mu)
	h.lanes[l] = struct{}{}
	go l.read(ctx, sub)
	return l, nil
}

// read adds the subscription's messages to the ring, waiting while the
// fastest member is half a ring behind; when the subscription drops, each
// member gets the error once it has taken what the ring holds.
func (l *lane) read(ctx context.Context, sub Subscription) {
	defer sub.Close()
	in := make(chan Message, 256)
	dropped := make(chan error, 1)
	go func() {
		defer close(in)
		for {
			msg, err := sub.Recv()
			if err != nil {
				dropped <- err
				return
			}
			select {
			case in <- msg:
			case <-ctx.Done():
				return
			}
		}
	}()
	h := l.h
	for msg := range in {
		h.mu.Lock()
		for len(l.members) > 0 && l.next-l.fastest() >= uint64(len(l.ring)/2) {
			l.room.Wait()
		}
		if len(l.members) == 0 {
			h.mu.Unlock()
			return
		}
		l.add(msg)
		h.mu.Unlock()
	}
	err := errors.New("shared subscription ended")
	select {
	case err = <-dropped:
	default:
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	l.err = err
	delete(h.lanes, l)
	l.wake()
}

// fastest is the furthest position in the ring a member has taken; h.mu is held.
func (l *lane) fastest() uint64 {
	var seq uint64
	for m := range l.members {
		seq = max(seq, m.seq)
	}
	return seq
}

// add appends msg to the ring, dropping its oldest message when full.
func (l *lane) add(msg Message) {
	at := l.last
	switch {
	case msg.Event != nil:
		at = max(at, msg.Event.Position)
	case msg.Checkpoint > 0:
		at = max(at, msg.Checkpoint)
	case msg.CaughtUp:
		l.live = true
	case msg.FellBehind:
		l.live = false
	}
	size := uint64(len(l.ring))
	if l.next-l.first == size {
		l.base = l.ring[l.first%size].at
		l.ring[l.first%size] = entry{}
		l.first++
	}
	l.ring[l.next%size] = entry{msg: msg, at: at}
	l.next++
	l.last = at
	l.wake()
}

// wake tells the members waiting on l that it has changed.
func (l *lane) wake() {
	close(l.changed)
	l.changed = make(chan struct{})
}

// member is one subscription of a SharedFeed. Its fields but delivered and
// pending are guarded by h.mu.
type member struct {
	h     *SharedFeed
	ctx   context.Context
	lease *Lease // nil: every event
	done  chan struct{}

	lane     *lane
	seq      uint64 // the next message of lane to take
	at       uint64 // position of the last message taken
	caughtUp bool   // the last of CaughtUp and FellBehind taken was CaughtUp
	skipped  uint64 // the last event of another segment not yet reported
	skips    int
	closed   bool

	delivered uint64    // position of the last event, checkpoint or skip delivered
	pending   []Message // taken; delivered up to pending[next]
	next      int
}

// place puts m on the lane furthest ahead that holds its position, or on
// a new lane; h.mu is held.
func (m *member) place() error {
	var best *lane
	for l := range m.h.lanes {
		if l.covers(m.at) && (best == nil || l.before(best)) {
			best = l
		}
	}
	if best == nil || best != m.lane {
		m.leave()
		if best == nil {
			l, err := m.h.open(m.ctx, m.at)
			if err != nil {
				return err
			}
			best = l
		}
		m.lane, m.caughtUp = best, false
		best.members[m] = struct{}{}
	}
	m.seq = best.seqAfter(m.at)
	return nil
}

// leave takes m off its lane, which stops when it has no members left;
// h.mu is held.
func (m *member) leave() {
	l := m.lane
	if l == nil {
		return
	}
	m.lane = nil
	delete(l.members, m)
	l.room.Broadcast()
	if len(l.members) == 0 {
		delete(m.h.lanes, l)
		l.stop()
	}
}

// Recv implements Subscription.
func (m *member) Recv() (Message, error) {
	for {
		for m.next < len(m.pending) {
			msg := m.pending[m.next]
			m.next++
			if m.fresh(msg) {
				return msg, nil
			}
		}
		clear(m.pending)
		m.pending, m.next = m.pending[:0], 0
		if err := m.take(); err != nil {
			return Message{}, err
		}
	}
}

// take fills m.pending from its lane, waiting for the lane to move on.
func (m *member) take() error {
	h := m.h
	h.mu.Lock()
	defer h.mu.Unlock()
	for {
		if m.closed {
			return errors.New("subscription closed")
		}
		if m.lane == nil || m.seq < m.lane.first || m.aheadOf(m.lane) {
			if err := m.place(); err != nil {
				return err
			}
		}
		l := m.lane
		size := uint64(len(l.ring))
		for ; m.seq < l.next && len(m.pending) < batch; m.seq++ {
			m.pass(&l.ring[m.seq%size])
		}
		l.room.Broadcast()
		if m.seq == l.next {
			m.flushSkip()
			if l.live && !m.caughtUp {
				m.caughtUp = true
				m.pending = append(m.pending, Message{CaughtUp: true})
			}
			if l.err != nil && len(m.pending) == 0 {
				err := l.err
				m.leave()
				return err
			}
		}
		if len(m.pending) > 0 {
			return nil
		}
		changed := l.changed
		h.mu.Unlock()
		select {
		case <-changed:
		case <-m.done:
		}
		h.mu.Lock()
	}
}

// aheadOf reports whether a lane before l holds m's position; h.mu is held.
func (m *member) aheadOf(l *lane) bool {
	for o := range m.h.lanes {
		if o != l && o.covers(m.at) && o.before(l) {
			return true
		}
	}
	return false
}

// pass takes e for m: its segment's events and the other messages queue,
// other segments' events count as skipped; h.mu is held.
func (m *member) pass(e *entry) {
	msg := e.msg
	if e.at < m.at || (e.at == m.at && (msg.Event != nil || msg.Checkpoint > 0)) {
		return // a lane behind m reading what m has taken
	}
	m.at = e.at
	if msg.Event != nil && m.lease != nil {
		if e.count != m.lease.Count {
			e.count, e.shard = m.lease.Count, SegmentOf(msg.Event.URN, m.lease.Count)
		}
		if e.shard != m.lease.Segment {
			m.skipped = e.at
			if m.skips++; m.skips >= skipRun {
				m.flushSkip()
			}
			return
		}
	}
	m.flushSkip()
	switch {
	case msg.CaughtUp:
		m.caughtUp = true
	case msg.FellBehind:
		m.caughtUp = false
	}
	m.pending = append(m.pending, msg)
}

func (m *member) flushSkip() {
	if m.skips == 0 {
		return
	}
	m.skips = 0
	m.pending = append(m.pending, Message{Skipped: m.skipped})
}

// fresh records msg's position as delivered and reports whether msg is
// new: an event or position at or before the last delivered is not.
func (m *member) fresh(msg Message) bool {
	var at uint64
	switch {
	case msg.Event != nil:
		at = msg.Event.Position
	case msg.Checkpoint > 0:
		at = msg.Checkpoint
	case msg.Skipped > 0:
		at = msg.Skipped
	default:
		return true
	}
	if at <= m.delivered {
		return false
	}
	m.delivered = at
	return true
}

// Close implements Subscription; a lane stops with its last subscription.
func (m *member) Close() error {
	h := m.h
	h.mu.Lock()
	defer h.mu.Unlock()
	if m.closed {
		return nil
	}
	m.closed = true
	close(m.done)
	m.leave()
	return nil
}

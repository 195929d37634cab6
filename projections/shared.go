package projections

import (
	"cmp"
	"context"
	"errors"
	"sync"
)

// SharedFeed serves every subscription of one instance from a single
// subscription of the underlying Feed, so that each event of $all is
// received and decoded once per instance, not once per runner (nine
// projectors on each of eight segments would otherwise read every event 72
// times over).
//
// A subscription joins the shared one when it starts at or past the shared
// position; one that starts behind it reads from the underlying Feed on its
// own until it has caught up, then joins. One that falls more than Buffer
// messages behind (a projector slower than the others) is dropped from the
// shared reading and goes on on its own from where it was, so that a slow
// projector never holds up the others; it joins again once it catches up.
// Either way each subscription delivers what a subscription of the
// underlying Feed would: every event after its position, in order, once.
//
// A subscription of a segment (SegmentFeed of a SharedFeed) receives only its segment's events; the others are reported as one
// Message.Skipped per run of them, which moves its runner's cursor.
type SharedFeed struct {
	feed   Feed
	buffer int

	mu      sync.Mutex
	open    int                  // subscriptions not closed, shared or on their own
	members map[*member]struct{} // the subscriptions on the shared reading
	running bool                 // the shared reading is open
	gen     int                  // counts the shared readings opened
	stop    context.CancelFunc   // ends the shared reading
	last    uint64               // the shared reading has delivered everything up to here
	live    bool                 // the shared reading has caught up (and not fallen behind since)
}

// DefaultSharedBuffer is the messages a subscription of a SharedFeed may
// fall behind the shared reading before it reads on its own.
const DefaultSharedBuffer = 1024

// skipRun is how many events of other segments a segment's subscription
// passes over before it is told (one Message.Skipped); fewer when the
// shared reading has nothing waiting.
const skipRun = 64

// NewSharedFeed shares feed; buffer is DefaultSharedBuffer when 0.
func NewSharedFeed(feed Feed, buffer int) *SharedFeed {
	return &SharedFeed{feed: feed, buffer: cmp.Or(buffer, DefaultSharedBuffer), members: map[*member]struct{}{}}
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
	m := &member{h: h, ctx: ctx, lease: lease, delivered: after, done: make(chan struct{})}
	h.mu.Lock()
	h.open++
	h.mu.Unlock()
	if err := m.join(); err != nil {
		m.Close()
		return nil, err
	}
	if m.ch == nil { // behind the shared reading: catch up on its own
		if err := m.alone(); err != nil {
			m.Close()
			return nil, err
		}
	}
	return m, nil
}

// own is the underlying feed as m's subscription on its own reads it.
func (m *member) own() Feed {
	if m.lease != nil {
		return segmentFeed{m.h.feed, *m.lease}
	}
	return m.h.feed
}

// join puts m on the shared reading, opening it at m's position if it is
// not open, when m is at or past what it has delivered (and it is live, or
// exactly there); otherwise m stays on its own.
func (m *member) join() error {
	h := m.h
	h.mu.Lock()
	defer h.mu.Unlock()
	m.mu.Lock()
	closed := m.closed
	m.mu.Unlock()
	if closed {
		return nil
	}
	if !h.running {
		ctx, stop := context.WithCancel(context.WithoutCancel(m.ctx))
		sub, err := h.feed.Subscribe(ctx, m.delivered)
		if err != nil {
			stop()
			return err
		}
		h.gen++
		h.running, h.stop, h.last, h.live = true, stop, m.delivered, false
		go h.read(ctx, h.gen, sub)
	} else if m.delivered < h.last || (m.delivered > h.last && !h.live) {
		return nil
	}
	m.ch, m.gone = make(chan Message, h.buffer), false
	if h.live {
		m.ch <- Message{CaughtUp: true}
	}
	h.members[m] = struct{}{}
	return nil
}

// read receives the shared subscription's messages and hands them out;
// when it drops, every member on it gets the error. gen is the reading's
// number: once it is no longer h.gen, the reading has been stopped.
func (h *SharedFeed) read(ctx context.Context, gen int, sub Subscription) {
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
	current := func() bool { return h.running && h.gen == gen }
	for msg := range in {
		h.mu.Lock()
		if !current() {
			h.mu.Unlock()
			return
		}
		h.hand(msg)
		if len(in) == 0 {
			for m := range h.members {
				m.flushSkip()
			}
		}
		h.mu.Unlock()
	}
	err := errors.New("shared subscription ended")
	select {
	case err = <-dropped:
	default:
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	if !current() {
		return
	}
	h.running = false
	h.stop()
	for m := range h.members {
		m.leave(err)
	}
}

// hand gives msg to every member; h.mu is held.
func (h *SharedFeed) hand(msg Message) {
	switch {
	case msg.Event != nil:
		h.last = max(h.last, msg.Event.Position)
	case msg.Checkpoint > 0:
		h.last = max(h.last, msg.Checkpoint)
	case msg.CaughtUp:
		h.live = true
	case msg.FellBehind:
		h.live = false
	}
	segment, count := -1, 0
	for m := range h.members {
		if msg.Event != nil && m.lease != nil {
			if m.lease.Count != count {
				segment, count = SegmentOf(msg.Event.URN, m.lease.Count), m.lease.Count
			}
			if segment != m.lease.Segment {
				m.skip(msg.Event.Position)
				continue
			}
		}
		m.flushSkip()
		m.send(msg)
	}
}

// member is one subscription of a SharedFeed.
type member struct {
	h     *SharedFeed
	ctx   context.Context
	lease *Lease // nil: every event

	// Held by the shared reading (under h.mu) while m is a member.
	ch      chan Message // nil while on its own; closed when dropped
	gone    bool         // ch is closed
	dropErr error        // why ch was closed: nil if m fell behind
	skipped uint64       // the last event of another segment not yet reported
	skips   int

	// Used only by Recv.
	delivered uint64 // position of the last event, checkpoint or skip delivered

	mu      sync.Mutex
	private Subscription // while on its own
	closed  bool
	done    chan struct{}
}

// send queues msg for m, or drops m from the shared reading if it is
// Buffer behind; h.mu is held.
func (m *member) send(msg Message) {
	if m.ch == nil || m.gone {
		return
	}
	select {
	case m.ch <- msg:
	default:
		m.leave(nil)
	}
}

func (m *member) skip(position uint64) {
	m.skipped = position
	if m.skips++; m.skips >= skipRun {
		m.flushSkip()
	}
}

func (m *member) flushSkip() {
	if m.skips == 0 {
		return
	}
	m.skips = 0
	m.send(Message{Skipped: m.skipped})
}

// leave takes m off the shared reading: with err when the reading
// dropped, nil when m fell behind; h.mu is held.
func (m *member) leave(err error) {
	if m.ch == nil || m.gone {
		return
	}
	delete(m.h.members, m)
	m.dropErr, m.gone, m.skips = err, true, 0
	close(m.ch)
}

// Recv implements Subscription.
func (m *member) Recv() (Message, error) {
	for {
		m.mu.Lock()
		own := m.private
		m.mu.Unlock()
		if own != nil {
			msg, err := own.Recv()
			if err != nil {
				return Message{}, err
			}
			if !m.fresh(msg) {
				continue
			}
			if err := m.rejoin(); err != nil {
				return Message{}, err
			}
			return msg, nil
		}
		var msg Message
		var ok bool
		select {
		case msg, ok = <-m.ch:
		case <-m.done:
			return Message{}, errors.New("subscription closed")
		}
		if !ok {
			m.h.mu.Lock()
			err := m.dropErr
			m.ch = nil
			m.h.mu.Unlock()
			if err != nil {
				return Message{}, err
			}
			if err := m.alone(); err != nil { // fell behind: go on alone
				return Message{}, err
			}
			continue
		}
		if m.fresh(msg) {
			return msg, nil
		}
	}
}

// fresh records msg's position as delivered and reports whether msg is
// new: an event or position at or before the last delivered is not (the
// shared reading repeats what m read on its own before joining).
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

// alone opens m's own subscription after what it has delivered.
func (m *member) alone() error {
	sub, err := m.own().Subscribe(m.ctx, m.delivered)
	if err != nil {
		return err
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.closed {
		sub.Close()
		return errors.New("subscription closed")
	}
	m.private = sub
	return nil
}

// rejoin moves m from its own subscription to the shared reading once it
// has caught up with it.
func (m *member) rejoin() error {
	if err := m.join(); err != nil {
		return err
	}
	if m.ch == nil {
		return nil
	}
	m.mu.Lock()
	own := m.private
	m.private = nil
	m.mu.Unlock()
	return own.Close()
}

// Close implements Subscription; the shared reading ends with its last
// subscription.
func (m *member) Close() error {
	m.mu.Lock()
	if m.closed {
		m.mu.Unlock()
		return nil
	}
	m.closed = true
	close(m.done)
	own := m.private
	m.private = nil
	m.mu.Unlock()
	h := m.h
	h.mu.Lock()
	delete(h.members, m)
	h.open--
	if h.open == 0 && h.running {
		h.running = false
		h.stop()
	}
	h.mu.Unlock()
	if own != nil {
		return own.Close()
	}
	return nil
}

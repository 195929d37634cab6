package esdbserver

import (
	"encoding/json"
	"math"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/google/uuid"
)

const (
	// deletedStream is EventNumber.DeletedStream: the revision of a tombstone.
	deletedStream = math.MaxInt64
	// Event types EventStoreDB writes for deletes.
	typeMetadata      = "$metadata"
	typeStreamDeleted = "$streamDeleted"
	// liveBuffer bounds how many events a live subscriber may lag behind
	// before it is dropped back to catching up from storage.
	liveBuffer = 256
)

// record is one written event. It is immutable once published. enc is
// its wire form (a RecordedEvent message) in memory mode; in disk mode it
// is nil and the same bytes are read back from the store.
type record struct {
	pos     uint64 // commit == prepare position in $all
	stream  string
	rev     uint64 // deletedStream for a tombstone
	id      uuid.UUID
	typ     string
	created int64 // 100 ns ticks since the Unix epoch
	enc     []byte
}

// streamMeta is the part of a stream's metadata ($$stream) that changes
// which events reads return.
type streamMeta struct {
	tb       int64 // $tb (truncate before); -1 if unset, deletedStream when soft-deleted
	maxCount int64 // $maxCount; 0 if unset
	maxAge   time.Duration
	raw      []byte // the JSON as written, for soft undelete
}

var noMeta = streamMeta{tb: -1}

// parseMeta reads stream metadata JSON; like EventStoreDB, anything that
// does not parse counts as empty metadata.
func parseMeta(data []byte) streamMeta {
	m := noMeta
	m.raw = data
	var props map[string]json.RawMessage
	if json.Unmarshal(data, &props) != nil {
		return m
	}
	num := func(key string) (int64, bool) {
		v, ok := props[key]
		if !ok {
			return 0, false
		}
		n, err := strconv.ParseInt(string(v), 10, 64)
		return n, err == nil
	}
	if n, ok := num("$tb"); ok && n >= 0 {
		m.tb = n
	}
	if n, ok := num("$maxCount"); ok && n > 0 {
		m.maxCount = n
	}
	if n, ok := num("$maxAge"); ok && n > 0 {
		m.maxAge = time.Duration(n) * time.Second
	}
	return m
}

func (m streamMeta) softDeleted() bool { return m.tb == deletedStream }

// metastream metadata: EventStoreDB keeps only the latest metadata event.
var metastreamMeta = streamMeta{tb: -1, maxCount: 1}

func isMetastream(name string) bool { return strings.HasPrefix(name, "$$") }

func metastreamOf(name string) string { return "$$" + name }

// stream is the committed state of one stream.
type stream struct {
	name      string
	events    []*record // index == revision; never truncated
	tombstone *record
	meta      streamMeta
	// written: the writer appended to it since the server started (only
	// the writer's set keeps this; see batch.check).
	written bool
}

// last is the stream's last event number as EventStoreDB reports it:
// -1 for no events, deletedStream once tombstoned.
func (s *stream) last() int64 {
	if s == nil {
		return -1
	}
	if s.tombstone != nil {
		return deletedStream
	}
	return int64(len(s.events)) - 1
}

func (s *stream) metadata() streamMeta {
	if s == nil {
		return noMeta
	}
	if isMetastream(s.name) {
		return metastreamMeta
	}
	return s.meta
}

// streamSet is the state of every stream. There are two: the index's,
// which readers see and which holds only durable events, and the writer's,
// which also holds the events whose fsync is still under way.
type streamSet map[string]*stream

func (ss streamSet) get(name string) *stream {
	s := ss[name]
	if s == nil {
		s = &stream{name: name, meta: noMeta}
		ss[name] = s
	}
	return s
}

// apply adds a record; data is its payload (needed for metadata events
// even when the record itself does not keep it).
func (ss streamSet) apply(r *record, data []byte) {
	s := ss.get(r.stream)
	if r.rev == deletedStream {
		s.tombstone = r
	} else {
		s.events = append(s.events, r)
	}
	if isMetastream(r.stream) && r.typ == typeMetadata {
		ss.get(r.stream[2:]).meta = parseMeta(data)
	}
}

// clone copies the set; the records themselves are shared (immutable).
func (ss streamSet) clone() streamSet {
	out := make(streamSet, len(ss))
	for name, s := range ss {
		c := *s
		c.events = slices.Clone(s.events)
		out[name] = &c
	}
	return out
}

// tombstoned reports whether reads and writes of the stream fail with
// stream-deleted: it was tombstoned, or it is the metastream of one that was.
func (ss streamSet) tombstoned(name string) bool {
	if s := ss[name]; s != nil && s.tombstone != nil {
		return true
	}
	return isMetastream(name) && ss.tombstoned(name[2:])
}

// index is the durable, readable state. Only the writer's landing
// goroutine mutates it, holding mu; readers hold mu.RLock.
type index struct {
	mu      sync.RWMutex
	log     []*record // ordered by pos
	streams streamSet

	subsMu sync.Mutex
	subs   map[*liveSub]struct{}
}

func newIndex() *index {
	return &index{streams: streamSet{}, subs: map[*liveSub]struct{}{}}
}

// apply adds a durable record.
func (ix *index) apply(r *record, data []byte) {
	ix.streams.apply(r, data)
	ix.log = append(ix.log, r)
}

// lastPos is the position of the last record, 0 if the log is empty.
func (ix *index) lastPos() uint64 {
	if len(ix.log) == 0 {
		return 0
	}
	return ix.log[len(ix.log)-1].pos
}

// firstAtOrAfter is the log index of the first record with pos >= p.
func (ix *index) firstAtOrAfter(p uint64) int {
	return sort.Search(len(ix.log), func(i int) bool { return ix.log[i].pos >= p })
}

// publish hands freshly committed records to live subscribers without ever
// blocking: a subscriber whose buffer is full is dropped from the live set
// and told to catch up from storage. Callers hold mu.
func (ix *index) publish(recs []*record) {
	ix.subsMu.Lock()
	defer ix.subsMu.Unlock()
	for sub := range ix.subs {
		for _, r := range recs {
			if sub.stream != "" && sub.stream != r.stream {
				continue
			}
			if !sub.offer(r) {
				delete(ix.subs, sub)
				close(sub.overflow)
				break
			}
		}
	}
}

// liveSub is a subscriber registered for live events.
type liveSub struct {
	stream   string // "" for $all
	ch       chan *record
	overflow chan struct{}
}

func newLiveSub(stream string) *liveSub {
	return &liveSub{stream: stream, ch: make(chan *record, liveBuffer), overflow: make(chan struct{})}
}

func (l *liveSub) offer(r *record) bool {
	select {
	case l.ch <- r:
		return true
	default:
		return false
	}
}

// register adds l to the live set; callers hold mu.RLock so no commit can
// slip between their last catch-up read and the registration.
func (ix *index) register(l *liveSub) {
	ix.subsMu.Lock()
	ix.subs[l] = struct{}{}
	ix.subsMu.Unlock()
}

func (ix *index) unregister(l *liveSub) {
	ix.subsMu.Lock()
	delete(ix.subs, l)
	ix.subsMu.Unlock()
}

// visibleRange is the revision range [lo, hi] a read of s may return, with
// found=false when EventStoreDB would answer StreamNotFound. Callers hold
// mu.RLock and have checked for a tombstone.
func (s *stream) visibleRange() (lo, hi int64, found bool) {
	last := s.last()
	m := s.metadata()
	if last < 0 || m.softDeleted() {
		return 0, 0, false
	}
	if m.maxCount > 0 && last-m.maxCount+1 > lo {
		lo = last - m.maxCount + 1
	}
	if m.tb > lo {
		lo = m.tb
	}
	return lo, last, true
}

// expired reports whether $maxAge hides r.
func (m streamMeta) expired(r *record, now time.Time) bool {
	return m.maxAge > 0 && r.created < now.Add(-m.maxAge).UnixNano()/100
}

package esdbserver

import (
	"encoding/json"
	"log/slog"
	"math"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/google/uuid"
	"google.golang.org/grpc/codes"
)

// expectation is an expected stream revision.
type expectation struct {
	kind expKind
	rev  uint64 // for expRevision
}

type expKind int

const (
	expAny expKind = iota
	expNoStream
	expExists
	expRevision
)

// int64 is EventStoreDB's ExpectedVersion encoding (Any -2, NoStream -1,
// StreamExists -4), used in error trailers.
func (e expectation) int64() int64 {
	switch e.kind {
	case expAny:
		return -2
	case expNoStream:
		return -1
	case expExists:
		return -4
	}
	if e.rev > math.MaxInt64 {
		return math.MaxInt64
	}
	return int64(e.rev)
}

type opKind int

const (
	opAppend opKind = iota
	opDelete
	opTombstone
)

// proposal is one event of an append.
type proposal struct {
	id     uuid.UUID
	typ    string
	isJSON bool
	data   []byte
	meta   []byte
}

type writeReq struct {
	op     opKind
	stream string
	exp    expectation
	events []proposal
	done   chan writeResult
}

// writeResult is the outcome of a writeReq. For appends a wrong expected
// version is a result, not an error (AppendResp.WrongExpectedVersion).
type writeResult struct {
	err     error
	wrong   bool
	current int64  // with wrong: the stream's revision, -1 for no stream
	last    int64  // on success: the stream's revision, -1 for no stream
	pos     uint64 // on success: position of the last written event
	hasPos  bool
}

// newRecord is a record on its way to storage, with its data (for
// metadata events) and its wire form.
type newRecord struct {
	rec  *record
	data []byte
	enc  []byte
}

// maxBatch caps how many requests share one batch; maxInFlight caps how
// many batches may wait for their fsync at once.
const (
	maxBatch    = 1024
	maxInFlight = 64
)

// writer validates and writes every change, in two stages:
//   - one goroutine takes every request waiting, checks each against the
//     state including the requests before it (those still in flight too),
//     and hands the batch to the storage's write-ahead log without waiting
//     for the fsync;
//   - a second one waits for each batch's fsync, in order, then makes its
//     events readable, publishes them and answers its requests.
//
// While one batch is being synced the next is built and written, and the
// storage syncs every batch written meanwhile at once (group commit): one
// fsync for many appends, and the disk and the CPU both stay busy.
type writer struct {
	ix      *index // the readers' view: only durable events
	st      *storage
	log     *slog.Logger
	reqs    chan *writeReq
	flights chan *flight
	done    chan struct{}
	fault   atomic.Pointer[error] // set once a batch fails to sync
	// persist is the storage's write; tests hold back its fsyncs.
	persist func([]newRecord) (wait func() error, err error)

	mu     sync.RWMutex // guards closed against sends on reqs
	closed bool

	// Owned by the first stage: the state including writes in flight.
	streams streamSet
	ids     map[uuid.UUID]*record // event id -> latest record with it
	nextPos uint64
	lastPos uint64 // position of the latest record, 0 if none
}

// flight is a batch written to the log and waiting for its fsync.
type flight struct {
	reqs    []*writeReq
	results []writeResult
	recs    []newRecord
	wait    func() error // nil when there is nothing to sync
}

// newWriter starts from the durable state in ix; nextPos is the position
// the next record gets.
func newWriter(ix *index, st *storage, log *slog.Logger, nextPos uint64) *writer {
	w := &writer{
		ix:      ix,
		st:      st,
		log:     log,
		reqs:    make(chan *writeReq, maxBatch),
		flights: make(chan *flight, maxInFlight),
		done:    make(chan struct{}),
		streams: ix.streams.clone(),
		ids:     make(map[uuid.UUID]*record, len(ix.log)),
		nextPos: nextPos,
		lastPos: ix.lastPos(),
		persist: st.write,
	}
	for _, r := range ix.log {
		w.ids[r.id] = r
	}
	return w
}

// submit runs a write and waits until it is durable or rejected.
func (w *writer) submit(req *writeReq) writeResult {
	req.done = make(chan writeResult, 1)
	w.mu.RLock()
	if w.closed {
		w.mu.RUnlock()
		return writeResult{err: errShuttingDown}
	}
	w.reqs <- req
	w.mu.RUnlock()
	return <-req.done
}

// close stops accepting writes, finishes the queued ones and waits.
func (w *writer) close() {
	w.mu.Lock()
	if !w.closed {
		w.closed = true
		close(w.reqs)
	}
	w.mu.Unlock()
	<-w.done
}

func (w *writer) run() {
	go w.land()
	defer close(w.flights)
	for req := range w.reqs {
		batch := []*writeReq{req}
		for len(batch) < maxBatch && len(w.reqs) > 0 {
			batch = append(batch, <-w.reqs)
		}
		w.flights <- w.write(batch)
	}
}

// write checks a batch and hands its records to the storage.
func (w *writer) write(reqs []*writeReq) *flight {
	f := &flight{reqs: reqs, results: make([]writeResult, len(reqs))}
	if w.failed(f) {
		return f
	}
	b := &batch{w: w, streams: map[string]*pendingStream{}, pos: w.nextPos, lastPos: w.lastPos, savedIDs: map[uuid.UUID]*record{}}
	for i, req := range reqs {
		f.results[i] = b.handle(req)
	}
	var err error
	f.wait, err = w.persist(b.recs)
	if err != nil {
		w.log.Error("esdbserver: write failed", "err", err, "requests", len(reqs))
		for id, r := range b.savedIDs {
			if r == nil {
				delete(w.ids, id)
			} else {
				w.ids[id] = r
			}
		}
		for i := range f.results {
			f.results[i] = writeResult{err: &rpcError{code: codes.Unavailable, msg: "write failed: " + err.Error()}}
		}
		return f
	}
	for _, n := range b.recs {
		w.streams.apply(n.rec, n.data)
		w.streams[n.rec.stream].written = true
	}
	w.nextPos, w.lastPos = b.pos, b.lastPos
	f.recs = b.recs
	return f
}

// land waits for each batch's fsync in order, then makes it readable and
// answers its requests. A batch that fails to sync leaves the writer's
// state ahead of the disk, so every later write fails too: the server must
// be restarted, and reopening reads back exactly what is durable.
func (w *writer) land() {
	defer close(w.done)
	for f := range w.flights {
		if f.wait != nil {
			if err := f.wait(); err != nil && w.fault.Load() == nil {
				w.log.Error("esdbserver: fsync failed; refusing all writes until restarted", "err", err)
				w.fault.Store(&err)
			}
		}
		if !w.failed(f) && f.recs != nil {
			recs := make([]*record, len(f.recs))
			w.ix.mu.Lock()
			for i, n := range f.recs {
				w.ix.apply(n.rec, n.data)
				recs[i] = n.rec
			}
			w.ix.publish(recs)
			w.ix.mu.Unlock()
		}
		for i, req := range f.reqs {
			req.done <- f.results[i]
		}
	}
}

// failed answers every request of f with the storage fault, if there is one.
func (w *writer) failed(f *flight) bool {
	fault := w.fault.Load()
	if fault == nil {
		return false
	}
	for i := range f.results {
		f.results[i] = writeResult{err: &rpcError{code: codes.Unavailable, msg: "storage failed, restart the server: " + (*fault).Error()}}
	}
	return true
}

// pendingStream is a stream as seen while building a batch: the state
// written before the batch plus what earlier requests in it wrote.
type pendingStream struct {
	name  string
	base  *stream // written before this batch; nil if none
	added []*record
	tomb  bool
	meta  *streamMeta // set when the batch changed the metadata
}

func (p *pendingStream) last() int64 {
	if p.tomb || (p.base != nil && p.base.tombstone != nil) {
		return deletedStream
	}
	n := len(p.added)
	if p.base != nil {
		n += len(p.base.events)
	}
	return int64(n) - 1
}

// written reports whether the stream was appended to since the server
// started. KurrentDB's IndexWriter.CheckCommit takes a stream's last
// revision from a cache of the streams written since it started before it
// asks the index, which reports the metastream of a tombstoned stream as
// deleted. So a metadata write to $$X after X's tombstone is accepted when
// $$X was written since the start, and refused otherwise (IndexWriter.cs,
// IndexReader.GetStreamLastEventNumberCached in 25.0.1).
func (p *pendingStream) written() bool {
	return len(p.added) > 0 || p.base != nil && p.base.written
}

func (p *pendingStream) at(rev int64) *record {
	if rev < 0 {
		return nil
	}
	var committed int64
	if p.base != nil {
		committed = int64(len(p.base.events))
		if rev < committed {
			return p.base.events[rev]
		}
	}
	if i := rev - committed; i < int64(len(p.added)) {
		return p.added[i]
	}
	return nil
}

func (p *pendingStream) metadata() streamMeta {
	switch {
	case isMetastream(p.name):
		return metastreamMeta
	case p.meta != nil:
		return *p.meta
	}
	return p.base.metadata()
}

type batch struct {
	w        *writer
	streams  map[string]*pendingStream
	recs     []newRecord
	pos      uint64 // next position
	lastPos  uint64 // position of the latest record, 0 if none
	savedIDs map[uuid.UUID]*record
}

func (b *batch) get(name string) *pendingStream {
	p := b.streams[name]
	if p == nil {
		p = &pendingStream{name: name, base: b.w.streams[name]}
		b.streams[name] = p
	}
	return p
}

func (b *batch) add(name string, rev uint64, typ string, isJSON bool, id uuid.UUID, data, meta []byte, now int64) *record {
	r := &record{pos: b.pos, stream: name, rev: rev, id: id, typ: typ, created: now}
	enc := recordMsg(r, isJSON, data, meta)
	if b.w.st.inMemory() {
		r.enc = enc
	}
	b.lastPos = b.pos
	b.pos += recordSize(name, typ, data, meta)
	p := b.get(name)
	if rev == deletedStream {
		p.tomb = true
	} else {
		p.added = append(p.added, r)
	}
	if isMetastream(name) && typ == typeMetadata {
		m := parseMeta(data)
		b.get(name[2:]).meta = &m
	}
	if _, saved := b.savedIDs[id]; !saved {
		b.savedIDs[id] = b.w.ids[id]
	}
	b.w.ids[id] = r
	b.recs = append(b.recs, newRecord{rec: r, data: data, enc: enc})
	return r
}

type decision int

const (
	decOK decision = iota
	decIdempotent
	decWrong
	decDeleted
)

type commitCheck struct {
	decision decision
	current  int64
	soft     bool    // the stream is soft-deleted and this write recreates it
	end      *record // with decIdempotent: the last already-written event
}

// check is EventStoreDB's IndexWriter.CheckCommit: the expected revision
// check, including idempotent retries and soft-deleted streams.
func (b *batch) check(p *pendingStream, exp expectation, ids []uuid.UUID) commitCheck {
	cur := p.last()
	if cur == deletedStream || isMetastream(p.name) && b.get(p.name[2:]).last() == deletedStream && !p.written() {
		return commitCheck{decision: decDeleted, current: cur}
	}
	soft := p.metadata().softDeleted()
	wrong := commitCheck{decision: decWrong, current: cur}
	if exp.kind == expExists {
		if soft {
			return commitCheck{decision: decDeleted, current: cur}
		}
		if cur < 0 && b.get(metastreamOf(p.name)).last() < 0 {
			return wrong
		}
	}
	if exp.kind == expAny || exp.kind == expExists {
		var end *record
		for i, id := range ids {
			r := b.w.ids[id]
			if r == nil || r.stream != p.name {
				if i == 0 {
					return commitCheck{decision: decOK, current: cur, soft: soft}
				}
				return wrong
			}
			end = r
		}
		if end == nil {
			return commitCheck{decision: decOK, current: cur, soft: soft}
		}
		return commitCheck{decision: decIdempotent, current: cur, end: end}
	}
	if exp.kind == expRevision && exp.rev >= math.MaxInt64 {
		return wrong
	}
	e := exp.int64()
	if e < cur {
		var end *record
		for i, id := range ids {
			r := p.at(e + 1 + int64(i))
			if r != nil && r.id == id {
				end = r
				continue
			}
			if i == 0 && exp.kind == expNoStream && soft {
				return commitCheck{decision: decOK, current: cur, soft: true}
			}
			return wrong
		}
		if end == nil {
			return wrong
		}
		return commitCheck{decision: decIdempotent, current: cur, end: end}
	}
	if e > cur {
		return wrong
	}
	return commitCheck{decision: decOK, current: cur, soft: soft}
}

func (b *batch) handle(req *writeReq) writeResult {
	now := time.Now().UnixNano() / 100
	p := b.get(req.stream)
	ids := make([]uuid.UUID, 0, len(req.events))
	for _, e := range req.events {
		ids = append(ids, e.id)
	}
	if req.op != opAppend {
		ids = append(ids, uuid.New())
	}
	c := b.check(p, req.exp, ids)
	switch c.decision {
	case decDeleted:
		return writeResult{err: streamDeletedError(req.stream)}
	case decWrong:
		if req.op == opAppend {
			return writeResult{wrong: true, current: c.current}
		}
		return writeResult{err: wrongExpectedVersionError("Delete", req.stream, req.exp.int64(), c.current)}
	case decIdempotent:
		return writeResult{last: int64(c.end.rev), pos: c.end.pos, hasPos: true}
	}

	switch req.op {
	case opDelete:
		// Soft delete: metadata with $tb = DeletedStream in $$stream.
		meta := b.get(metastreamOf(req.stream))
		if p.last() < 0 && meta.last() < 0 {
			return writeResult{err: wrongExpectedVersionError("Delete", req.stream, req.exp.int64(), -1)}
		}
		if meta.last() == deletedStream {
			return writeResult{err: streamDeletedError(req.stream)}
		}
		data := []byte(`{"$tb":` + strconv.FormatInt(deletedStream, 10) + `}`)
		r := b.add(meta.name, uint64(meta.last()+1), typeMetadata, true, uuid.New(), data, nil, now)
		return writeResult{last: p.last(), pos: r.pos, hasPos: true}
	case opTombstone:
		r := b.add(req.stream, deletedStream, typeStreamDeleted, false, ids[0], nil, nil, now)
		return writeResult{last: deletedStream, pos: r.pos, hasPos: true}
	}

	origSoft := isMetastream(req.stream) && b.get(req.stream[2:]).metadata().softDeleted()
	first := p.last() + 1
	for i, e := range req.events {
		b.add(req.stream, uint64(first+int64(i)), e.typ, e.isJSON, e.id, e.data, e.meta, now)
	}
	res := writeResult{last: p.last(), pos: b.lastPos, hasPos: b.lastPos != 0}
	if c.soft {
		b.softUndelete(req.stream, first, now)
	}
	if origSoft {
		orig := req.stream[2:]
		b.softUndelete(orig, b.get(orig).last()+1, now)
	}
	return res
}

// softUndelete recreates a soft-deleted stream the way EventStoreDB does:
// it rewrites the metadata with $tb set to the first new revision.
func (b *batch) softUndelete(name string, from int64, now int64) {
	var props map[string]json.RawMessage
	if json.Unmarshal(b.get(name).metadata().raw, &props) != nil || props == nil {
		return
	}
	props["$tb"] = json.RawMessage(strconv.FormatInt(from, 10))
	data, err := json.Marshal(props)
	if err != nil {
		return
	}
	meta := b.get(metastreamOf(name))
	if meta.last() == deletedStream {
		return
	}
	b.add(meta.name, uint64(meta.last()+1), typeMetadata, true, uuid.New(), data, nil, now)
}

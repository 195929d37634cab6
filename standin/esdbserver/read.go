package esdbserver

import (
	"errors"
	"strconv"
	"strings"
	"time"

	"github.com/EventStore/EventStore-Client-Go/v4/protos/shared"
	api "github.com/EventStore/EventStore-Client-Go/v4/protos/streams"
	"github.com/dlclark/regexp2/v2"
	"github.com/google/uuid"
	"google.golang.org/grpc/codes"
	"google.golang.org/protobuf/proto"
)

// pageSize is how many records a read copies out of the index at a time.
const pageSize = 512

// defaultWindow is EventStoreDB's ReadBatchSize, the filter search window
// when the client asks for "count" instead of a max.
const defaultWindow = 32

type fromKind int

const (
	fromStart fromKind = iota
	fromEnd
	fromPoint // a stream revision or an $all position
)

type readFrom struct {
	kind fromKind
	at   uint64
}

// eventFilter is a server-side $all filter (EventFilter.cs). One request
// uses it, from one goroutine.
type eventFilter struct {
	onType   bool
	prefixes []string
	re       *regexp2.Regexp
	seen     map[string]bool // regex results by stream name or event type
	interval int             // considered events between checkpoints
}

const (
	// filterMatchTimeout bounds one regex match. EventStoreDB sets none and
	// would spin on a pathological pattern; here the read fails instead.
	filterMatchTimeout = time.Second
	// filterCacheSize bounds how many regex results a filter remembers:
	// stream names and event types repeat, so most events cost a map lookup.
	filterCacheSize = 4096
)

// hiddenFromAll is EventStoreDB's DefaultAllFilter: streams $all never shows.
func hiddenFromAll(stream string) bool {
	if !strings.HasPrefix(stream, "$") {
		return false
	}
	return stream == "$epoch-information" ||
		strings.HasPrefix(stream, "$persistentsubscription-$all::") &&
			(strings.HasSuffix(stream, "-checkpoint") || strings.HasSuffix(stream, "-parked"))
}

// allows reports whether r passes the filter; the error is a regex match
// that ran past filterMatchTimeout.
func (f *eventFilter) allows(r *record) (bool, error) {
	if hiddenFromAll(r.stream) {
		return false, nil
	}
	if f == nil {
		return true, nil
	}
	s := r.stream
	if f.onType {
		s = r.typ
	}
	if f.re != nil {
		if ok, hit := f.seen[s]; hit {
			return ok, nil
		}
		ok, err := f.re.MatchString(s)
		if err != nil {
			return false, invalidArgument("filter regex %q on %q: %v", f.re.String(), s, err)
		}
		if len(f.seen) >= filterCacheSize {
			clear(f.seen)
		}
		f.seen[s] = ok
		return ok, nil
	}
	for _, p := range f.prefixes {
		if strings.HasPrefix(s, p) {
			return true, nil
		}
	}
	return false, nil
}

// compileFilterRegex compiles a filter pattern the way EventStoreDB does,
// with .NET's Regex and no options (so lookarounds, named groups and inline
// flags such as (?i) work); regexp2 is a port of that engine.
func compileFilterRegex(expr string) (*regexp2.Regexp, error) {
	re, err := regexp2.Compile(expr, regexp2.None)
	if err != nil {
		return nil, invalidArgument("filter regex %q: %v", expr, err)
	}
	re.MatchTimeout = filterMatchTimeout
	return re, nil
}

func parseFilter(o *api.ReadReq_Options) (*eventFilter, error) {
	switch v := o.GetFilterOption().(type) {
	case *api.ReadReq_Options_NoFilter:
		return nil, nil
	case *api.ReadReq_Options_Filter:
		fo := v.Filter
		f := &eventFilter{}
		var expr *api.ReadReq_Options_FilterOptions_Expression
		switch e := fo.GetFilter().(type) {
		case *api.ReadReq_Options_FilterOptions_StreamIdentifier:
			expr = e.StreamIdentifier
		case *api.ReadReq_Options_FilterOptions_EventType:
			expr, f.onType = e.EventType, true
		default:
			return nil, invalidArgument("filter needs a stream identifier or event type expression")
		}
		if rx := expr.GetRegex(); rx != "" {
			re, err := compileFilterRegex(rx)
			if err != nil {
				return nil, err
			}
			f.re, f.seen = re, map[string]bool{}
		} else {
			f.prefixes = expr.GetPrefix()
		}
		window := defaultWindow
		switch w := fo.GetWindow().(type) {
		case *api.ReadReq_Options_FilterOptions_Max:
			window = int(w.Max)
		case *api.ReadReq_Options_FilterOptions_Count:
		default:
			return nil, invalidArgument("filter window is required")
		}
		f.interval = max(1, int(fo.GetCheckpointIntervalMultiplier())*window)
		return f, nil
	}
	return nil, invalidArgument("filter option is required")
}

func (a *streamsAPI) Read(req *api.ReadReq, srv api.Streams_ReadServer) error {
	o := req.GetOptions()
	if o == nil {
		return invalidArgument("read options are required")
	}
	if o.GetUuidOption() == nil {
		return invalidArgument("uuid option is required")
	}
	_, uuidString := o.GetUuidOption().GetContent().(*api.ReadReq_Options_UUIDOption_String_)
	backwards := false
	switch o.GetReadDirection() {
	case api.ReadReq_Options_Forwards:
	case api.ReadReq_Options_Backwards:
		backwards = true
	default:
		return invalidArgument("unknown read direction %d", o.GetReadDirection())
	}
	filter, err := parseFilter(o)
	if err != nil {
		return err
	}
	var (
		count     uint64
		subscribe bool
	)
	switch c := o.GetCountOption().(type) {
	case *api.ReadReq_Options_Count:
		count = c.Count
	case *api.ReadReq_Options_Subscription:
		subscribe = true
	default:
		return invalidArgument("count or subscription is required")
	}
	if subscribe && backwards {
		return invalidArgument("the combination of a backwards read and a subscription is invalid")
	}
	r := &reader{s: a.s, srv: srv, uuidString: uuidString, resolve: o.GetResolveLinks()}

	switch so := o.GetStreamOption().(type) {
	case *api.ReadReq_Options_Stream:
		name, err := streamName(so.Stream.GetStreamIdentifier().GetStreamName())
		if err != nil {
			return err
		}
		if filter != nil {
			return invalidArgument("filters apply to $all only")
		}
		var from readFrom
		switch v := so.Stream.GetRevisionOption().(type) {
		case *api.ReadReq_Options_StreamOptions_Start:
			from.kind = fromStart
		case *api.ReadReq_Options_StreamOptions_End:
			from.kind = fromEnd
		case *api.ReadReq_Options_StreamOptions_Revision:
			from = readFrom{kind: fromPoint, at: v.Revision}
		default:
			return invalidArgument("stream revision option is required")
		}
		if subscribe {
			return r.subscribeStream(name, from)
		}
		return r.readStream(name, from, backwards, count)
	case *api.ReadReq_Options_All:
		var from readFrom
		switch v := so.All.GetAllOption().(type) {
		case *api.ReadReq_Options_AllOptions_Start:
			from.kind = fromStart
		case *api.ReadReq_Options_AllOptions_End:
			from.kind = fromEnd
		case *api.ReadReq_Options_AllOptions_Position:
			if v.Position.GetPreparePosition() > v.Position.GetCommitPosition() {
				return invalidArgument("prepare position is after commit position")
			}
			from = readFrom{kind: fromPoint, at: v.Position.GetCommitPosition()}
		default:
			return invalidArgument("$all position option is required")
		}
		if subscribe {
			return r.subscribeAll(from, filter)
		}
		return r.readAll(from, backwards, count, filter)
	}
	return invalidArgument("stream or $all option is required")
}

// reader serves one Read call.
type reader struct {
	s          *Server
	srv        api.Streams_ReadServer
	uuidString bool
	resolve    bool // resolve_links: send the targets of "$>" link events
}

// send loads the payloads of recs and sends them as events. With resolve
// set, a link event comes as its target plus the link (see resolveLinks).
func (r *reader) send(recs []*record) error {
	if len(recs) == 0 {
		return nil
	}
	encs := make([][]byte, len(recs))
	var convErr error
	err := r.s.st.each(recs, func(i int, enc []byte) {
		encs[i] = r.wire(enc, recs[i], &convErr)
	})
	var targets []*record
	var tencs [][]byte
	if err == nil && convErr == nil && r.resolve {
		targets = r.resolveLinks(recs, encs)
		var found []*record
		for _, t := range targets {
			if t != nil && t != noTarget {
				found = append(found, t)
			}
		}
		tencs = make([][]byte, 0, len(found))
		err = r.s.st.each(found, func(i int, enc []byte) {
			tencs = append(tencs, r.wire(enc, found[i], &convErr))
		})
	}
	if err = errors.Join(err, convErr); err != nil {
		r.s.log.Error("esdbserver: read payloads", "err", err)
		return &rpcError{code: codes.Internal, msg: "read failed"}
	}
	for i, rec := range recs {
		event, link := encs[i], []byte(nil)
		if targets != nil {
			switch t := targets[i]; {
			case t == noTarget:
				event, link = nil, encs[i]
			case t != nil:
				event, link, tencs = tencs[0], encs[i], tencs[1:]
			}
		}
		if err := r.srv.SendMsg(readEventMsg(event, link, rec.pos)); err != nil {
			return err
		}
	}
	return nil
}

// wire copies a stored RecordedEvent (enc is only valid during each's
// callback), with its id as a string if the client asked for that.
func (r *reader) wire(enc []byte, rec *record, convErr *error) []byte {
	if r.uuidString && *convErr == nil {
		var err error
		if enc, err = withStringID(enc, rec.id); err != nil {
			*convErr = err
		}
		return enc
	}
	if r.s.st.inMemory() {
		return enc // the record's own bytes, immutable
	}
	return append([]byte(nil), enc...)
}

// typeLink is the event type of a link; its data is "<revision>@<stream>".
const typeLink = "$>"

// noTarget marks a link whose target cannot be read.
var noTarget = &record{}

// resolveLinks follows EventStoreDB's ResolveLinkToEvent
// (StorageReaderWorker.cs) for each record: nil when it stays a plain event
// (not a link, or a revision that does not parse as an integer), the target
// record, or noTarget when the target is deleted, truncated, expired or
// missing (the client then gets the link without an event).
func (r *reader) resolveLinks(recs []*record, encs [][]byte) []*record {
	out := make([]*record, len(recs))
	ix := r.s.ix
	now := time.Now()
	ix.mu.RLock()
	defer ix.mu.RUnlock()
	for i, rec := range recs {
		if rec.typ == typeLink {
			out[i] = ix.linkTarget(string(recordData(encs[i])), now)
		}
	}
	return out
}

// linkTarget reads the event a link's data "<revision>@<stream>" points
// to, as EventStoreDB's ReadEvent does: revision -1 is the last event, and
// stream metadata ($tb, $maxCount, $maxAge, deletes) applies. Callers hold
// mu.RLock.
func (ix *index) linkTarget(data string, now time.Time) *record {
	num, name, found := strings.Cut(data, "@")
	n, err := strconv.ParseInt(strings.TrimSpace(num), 10, 64)
	switch {
	case err != nil:
		return nil
	case !found || name == "" || n < -1 || ix.streams.tombstoned(name):
		return noTarget
	}
	s := ix.streams[name]
	if s == nil {
		return noTarget
	}
	lo, hi, ok := s.visibleRange()
	if n == -1 {
		n = hi
	}
	if !ok || n < lo || n > hi || s.metadata().expired(s.events[n], now) {
		return noTarget
	}
	return s.events[n]
}

// withStringID re-encodes a RecordedEvent with its id in string form, for
// clients that ask for it.
func withStringID(enc []byte, id uuid.UUID) ([]byte, error) {
	ev := &api.ReadResp_ReadEvent_RecordedEvent{}
	if err := proto.Unmarshal(enc, ev); err != nil {
		return nil, err
	}
	ev.Id = wireUUID(id, true)
	return proto.Marshal(ev)
}

func (r *reader) sendNotFound(name string) error {
	return r.srv.Send(&api.ReadResp{Content: &api.ReadResp_StreamNotFound_{StreamNotFound: &api.ReadResp_StreamNotFound{
		StreamIdentifier: &shared.StreamIdentifier{StreamName: []byte(name)},
	}}})
}

// readStream is a plain stream read: only events, or StreamNotFound.
func (r *reader) readStream(name string, from readFrom, backwards bool, count uint64) error {
	ix := r.s.ix
	ix.mu.RLock()
	s := ix.streams[name]
	if ix.streams.tombstoned(name) {
		ix.mu.RUnlock()
		return streamDeletedError(name)
	}
	var (
		lo, hi int64
		found  bool
		events []*record
		meta   streamMeta
	)
	if s != nil {
		lo, hi, found = s.visibleRange()
		events, meta = s.events, s.metadata()
	}
	ix.mu.RUnlock()
	if !found {
		return r.sendNotFound(name)
	}

	now := time.Now()
	page := make([]*record, 0, min(count, pageSize))
	step, i := int64(1), lo
	switch {
	case backwards:
		step, i = -1, hi
		if from.kind == fromStart {
			i = 0
		} else if from.kind == fromPoint && from.at < uint64(hi) {
			i = int64(from.at)
		}
	case from.kind == fromEnd:
		i = hi + 1
	case from.kind == fromPoint:
		if from.at > uint64(hi) {
			i = hi + 1
		} else {
			i = max(lo, int64(from.at))
		}
	}
	for ; count > 0 && i >= lo && i <= hi; i += step {
		if meta.expired(events[i], now) {
			continue
		}
		page = append(page, events[i])
		count--
		if len(page) == pageSize {
			if err := r.send(page); err != nil {
				return err
			}
			page = page[:0]
		}
	}
	return r.send(page)
}

// readAll is a plain $all read. Forwards from P includes P; backwards
// from P starts just before it.
func (r *reader) readAll(from readFrom, backwards bool, count uint64, filter *eventFilter) error {
	ix := r.s.ix
	ix.mu.RLock()
	log := ix.log
	var i int
	switch {
	case from.kind == fromPoint:
		i = ix.firstAtOrAfter(from.at)
	case from.kind == fromEnd:
		i = len(log)
	}
	ix.mu.RUnlock()

	step := 1
	if backwards {
		step = -1
		i--
		if from.kind == fromStart {
			i = -1
		}
	}
	page := make([]*record, 0, min(count, pageSize))
	for ; count > 0 && i >= 0 && i < len(log); i += step {
		ok, err := filter.allows(log[i])
		if err != nil {
			return err
		}
		if !ok {
			continue
		}
		page = append(page, log[i])
		count--
		if len(page) == pageSize {
			if err := r.send(page); err != nil {
				return err
			}
			page = page[:0]
		}
	}
	return r.send(page)
}

func (r *reader) confirm() error {
	return r.srv.Send(&api.ReadResp{Content: &api.ReadResp_Confirmation{Confirmation: &api.ReadResp_SubscriptionConfirmation{
		SubscriptionId: uuid.NewString(),
	}}})
}

// caughtUp tells the subscriber it is live, with the checkpoint to resume
// from: the stream revision (rev, -1 for none) or $all position (pos, 0 for
// none) of the last event or checkpoint sent, as KurrentDB 25.0.1 does.
func (r *reader) caughtUp(rev int64, pos uint64) error {
	return r.srv.SendMsg(caughtUpMsg(time.Now(), rev, pos))
}

// live waits for the next batch of live records (at most pageSize). It
// returns nil records when the subscriber overflowed its buffer.
func (r *reader) live(l *liveSub) ([]*record, error) {
	var first *record
	select {
	case first = <-l.ch:
	case <-l.overflow:
		return nil, nil
	case <-r.srv.Context().Done():
		return nil, r.srv.Context().Err()
	case <-r.s.closing:
		return nil, errShuttingDown
	}
	recs := []*record{first}
	for len(recs) < pageSize {
		select {
		case rec := <-l.ch:
			recs = append(recs, rec)
		default:
			return recs, nil
		}
	}
	return recs, nil
}

// subscribeStream is a catch-up subscription to one stream: confirmation,
// the events after `from`, CaughtUp, then live events. A subscriber that
// overflows its live buffer catches up from storage and gets CaughtUp again;
// like KurrentDB it is not told FellBehind.
func (r *reader) subscribeStream(name string, from readFrom) error {
	ix := r.s.ix
	after := int64(-1) // the last revision delivered or skipped
	if from.kind == fromPoint {
		after = int64(min(from.at, deletedStream-1))
	}
	var l *liveSub
	ix.mu.RLock()
	tombstoned := ix.streams.tombstoned(name)
	if from.kind == fromEnd && !tombstoned {
		after = ix.streams[name].last()
		l = newLiveSub(name)
		ix.register(l)
	}
	ix.mu.RUnlock()
	defer func() {
		if l != nil {
			ix.unregister(l)
		}
	}()
	if tombstoned {
		return streamDeletedError(name)
	}
	if err := r.confirm(); err != nil {
		return err
	}
	cp := after // the checkpoint: the start, then the last revision sent
	for {
		if l == nil {
			var err error
			if l, after, cp, err = r.catchUpStream(name, after, cp); err != nil {
				return err
			}
		}
		if err := r.caughtUp(cp, 0); err != nil {
			return err
		}
		for {
			recs, err := r.live(l)
			if err != nil {
				return err
			}
			if recs == nil {
				l = nil
				break
			}
			var send []*record
			var tombstone bool
			for _, rec := range recs {
				if rec.rev == deletedStream {
					send, tombstone = append(send, rec), true
					break
				}
				if int64(rec.rev) > after {
					send = append(send, rec)
					after, cp = int64(rec.rev), int64(rec.rev)
				}
			}
			if err := r.send(send); err != nil {
				return err
			}
			if tombstone {
				return streamDeletedError(name)
			}
		}
	}
}

// catchUpStream sends the stored events after `after` and registers for
// live events once there are none left, under the same read lock. It
// returns the new `after` and checkpoint cp (the last revision sent).
func (r *reader) catchUpStream(name string, after, cp int64) (*liveSub, int64, int64, error) {
	ix := r.s.ix
	for {
		ix.mu.RLock()
		s := ix.streams[name]
		if ix.streams.tombstoned(name) {
			ix.mu.RUnlock()
			return nil, after, cp, streamDeletedError(name)
		}
		var page []*record
		var meta streamMeta
		if s != nil {
			if lo, hi, found := s.visibleRange(); found {
				start := max(after+1, lo)
				if start <= hi {
					page = append(page, s.events[start:min(hi+1, start+pageSize)]...)
				}
			}
			meta = s.metadata()
		}
		if len(page) == 0 {
			l := newLiveSub(name)
			ix.register(l)
			ix.mu.RUnlock()
			return l, after, cp, nil
		}
		ix.mu.RUnlock()
		now := time.Now()
		send := page[:0:0]
		for _, rec := range page {
			if !meta.expired(rec, now) {
				send = append(send, rec)
			}
		}
		if err := r.send(send); err != nil {
			return nil, after, cp, err
		}
		if len(send) > 0 {
			cp = int64(send[len(send)-1].rev)
		}
		after = int64(page[len(page)-1].rev)
	}
}

// allSub is the state of a subscription to $all.
type allSub struct {
	r          *reader
	filter     *eventFilter
	after      uint64 // position of the last record considered
	considered int    // since the last checkpoint
	lastCP     uint64
	cp         uint64 // position of the last event or checkpoint sent, or the start
}

// deliver sends the records after a.after that pass the filter, with a
// checkpoint every filter.interval considered records.
func (a *allSub) deliver(recs []*record) error {
	var run []*record
	for _, rec := range recs {
		if rec.pos <= a.after {
			continue
		}
		a.after = rec.pos
		ok, err := a.filter.allows(rec)
		if err != nil {
			return err
		}
		if ok {
			run = append(run, rec)
		}
		if a.filter == nil {
			continue
		}
		if a.considered++; a.considered >= a.filter.interval {
			a.considered = 0
			if err := a.sendRun(run); err != nil {
				return err
			}
			run = run[:0]
			if err := a.checkpoint(); err != nil {
				return err
			}
		}
	}
	return a.sendRun(run)
}

func (a *allSub) sendRun(run []*record) error {
	if len(run) == 0 {
		return nil
	}
	a.cp = run[len(run)-1].pos
	return a.r.send(run)
}

// checkpoint tells a filtered subscriber it may resume from a.after.
func (a *allSub) checkpoint() error {
	if a.filter == nil || a.after == 0 || a.after <= a.lastCP {
		return nil
	}
	a.lastCP, a.cp = a.after, a.after
	return a.r.srv.SendMsg(checkpointMsg(time.Now(), a.after))
}

// subscribeAll is a catch-up subscription to $all, optionally filtered.
// Like subscribeStream, falling behind is not announced; a filtered
// subscriber gets a checkpoint before it catches up again.
func (r *reader) subscribeAll(from readFrom, filter *eventFilter) error {
	a := &allSub{r: r, filter: filter}
	ix := r.s.ix
	var l *liveSub
	switch from.kind {
	case fromPoint:
		a.after = from.at
	case fromEnd:
		ix.mu.RLock()
		a.after = ix.lastPos()
		l = newLiveSub("")
		ix.register(l)
		ix.mu.RUnlock()
	}
	a.cp = a.after
	defer func() {
		if l != nil {
			ix.unregister(l)
		}
	}()
	if err := r.confirm(); err != nil {
		return err
	}
	for {
		if l == nil {
			var err error
			if l, err = a.catchUp(); err != nil {
				return err
			}
			// EventStoreDB checkpoints when a filtered catch-up ends.
			if err := a.checkpoint(); err != nil {
				return err
			}
		}
		if err := r.caughtUp(-1, a.cp); err != nil {
			return err
		}
		for {
			recs, err := r.live(l)
			if err != nil {
				return err
			}
			if recs == nil {
				l = nil
				if err := a.checkpoint(); err != nil {
					return err
				}
				break
			}
			if err := a.deliver(recs); err != nil {
				return err
			}
		}
	}
}

// catchUp delivers stored records after a.after and registers for live
// records once there are none left, under the same read lock.
func (a *allSub) catchUp() (*liveSub, error) {
	ix := a.r.s.ix
	for {
		ix.mu.RLock()
		i := ix.firstAtOrAfter(a.after + 1)
		if i == len(ix.log) {
			l := newLiveSub("")
			ix.register(l)
			ix.mu.RUnlock()
			return l, nil
		}
		page := append([]*record(nil), ix.log[i:min(len(ix.log), i+pageSize)]...)
		ix.mu.RUnlock()
		if err := a.deliver(page); err != nil {
			return nil, err
		}
	}
}

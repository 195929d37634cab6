package esdbserver

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/EventStore/EventStore-Client-Go/v4/esdb"
	"github.com/EventStore/EventStore-Client-Go/v4/protos/shared"
	api "github.com/EventStore/EventStore-Client-Go/v4/protos/streams"
	"github.com/google/uuid"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
)

func rawConn(t *testing.T, s *Server, opts ...grpc.DialOption) api.StreamsClient {
	t.Helper()
	conn, err := grpc.NewClient(s.Addr(), append(opts, grpc.WithTransportCredentials(insecure.NewCredentials()))...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = conn.Close() })
	return api.NewStreamsClient(conn)
}

func mustAppend(t *testing.T, c *esdb.Client, stream string, exp esdb.ExpectedRevision, events ...esdb.EventData) *esdb.WriteResult {
	t.Helper()
	r, err := c.AppendToStream(ctx(t), stream, esdb.AppendToStreamOptions{ExpectedRevision: exp}, events...)
	if err != nil {
		t.Fatalf("append %s: %v", stream, err)
	}
	return r
}

func readStream(t *testing.T, c *esdb.Client, stream string) ([]*esdb.ResolvedEvent, error) {
	t.Helper()
	rs, err := c.ReadStream(ctx(t), stream, esdb.ReadStreamOptions{}, 1000)
	return readAll(t, rs, err)
}

func esdbCode(err error) esdb.ErrorCode {
	var e *esdb.Error
	if errors.As(err, &e) {
		return e.Code()
	}
	return -1
}

// TestReopen closes a disk-backed server and starts a new one on the same
// directory: streams, revisions, positions, soft deletes and tombstones
// come back, and new writes continue where the old ones stopped.
func TestReopen(t *testing.T) {
	dir := t.TempDir()
	s1, err := Start(Config{Addr: "127.0.0.1:0", DataDir: dir, Logger: quietLogger()})
	if err != nil {
		t.Fatal(err)
	}
	c1 := connect(t, s1)
	mustAppend(t, c1, "a", esdb.NoStream{}, ev("A1"), ev("A2"))
	mustAppend(t, c1, "soft", esdb.NoStream{}, ev("S1"), ev("S2"))
	if _, err := c1.DeleteStream(ctx(t), "soft", esdb.DeleteStreamOptions{ExpectedRevision: esdb.StreamRevision{Value: 1}}); err != nil {
		t.Fatal(err)
	}
	mustAppend(t, c1, "gone", esdb.NoStream{}, ev("G1"))
	if _, err := c1.TombstoneStream(ctx(t), "gone", esdb.TombstoneStreamOptions{ExpectedRevision: esdb.Any{}}); err != nil {
		t.Fatal(err)
	}
	last := mustAppend(t, c1, "a", esdb.StreamRevision{Value: 1}, ev("A3"))
	rs, err := c1.ReadAll(ctx(t), esdb.ReadAllOptions{}, 1000)
	before, err := readAll(t, rs, err)
	if err != nil {
		t.Fatal(err)
	}
	if err := s1.Close(); err != nil {
		t.Fatal(err)
	}

	s2 := start(t, dir)
	c2 := connect(t, s2)
	rs, err = c2.ReadAll(ctx(t), esdb.ReadAllOptions{}, 1000)
	after, err := readAll(t, rs, err)
	if err != nil {
		t.Fatal(err)
	}
	if len(after) != len(before) {
		t.Fatalf("%d events after reopen, %d before", len(after), len(before))
	}
	for i := range before {
		b, a := before[i].Event, after[i].Event
		if a.EventID != b.EventID || a.Position != b.Position || a.EventNumber != b.EventNumber ||
			a.StreamID != b.StreamID || !a.CreatedDate.Equal(b.CreatedDate) || string(a.Data) != string(b.Data) {
			t.Fatalf("event %d differs: %+v vs %+v", i, a, b)
		}
	}
	if _, err := readStream(t, c2, "soft"); esdbCode(err) != esdb.ErrorCodeResourceNotFound {
		t.Fatalf("soft-deleted stream: %v", err)
	}
	if _, err := readStream(t, c2, "gone"); esdbCode(err) != esdb.ErrorCodeStreamDeleted {
		t.Fatalf("tombstoned stream: %v", err)
	}
	next := mustAppend(t, c2, "a", esdb.StreamRevision{Value: 2}, ev("A4"))
	if next.NextExpectedVersion != 3 || next.CommitPosition <= last.CommitPosition {
		t.Fatalf("append after reopen: %+v (last before %+v)", next, last)
	}
	re := mustAppend(t, c2, "soft", esdb.NoStream{}, ev("S3"))
	if re.NextExpectedVersion != 2 {
		t.Fatalf("recreated soft-deleted stream at %d, want revision 2", re.NextExpectedVersion)
	}
	got, err := readStream(t, c2, "soft")
	if err != nil || len(got) != 1 || got[0].Event.EventNumber != 2 {
		t.Fatalf("recreated stream: %v %v", err, got)
	}
	// A retry of an append acknowledged before the restart is idempotent.
	retry, err := c2.AppendToStream(ctx(t), "a", esdb.AppendToStreamOptions{ExpectedRevision: esdb.StreamRevision{Value: 1}}, esdb.EventData{
		EventID: before[len(before)-1].Event.EventID, EventType: "A3", ContentType: esdb.ContentTypeJson, Data: []byte(`{"a":1}`),
	})
	if err != nil || retry.NextExpectedVersion != 2 || retry.CommitPosition != last.CommitPosition {
		t.Fatalf("idempotent retry after reopen: %+v %v", retry, err)
	}
}

// TestSlowSubscriberFallsBehind stalls a subscriber while writers append
// far more than its live buffer: writers must not block, and once it reads
// again it gets every event exactly once in order and then CaughtUp again
// (a second one: it fell behind and caught up from storage). Like KurrentDB
// 25.0.1 the server never sends FellBehind.
func TestSlowSubscriberFallsBehind(t *testing.T) {
	s := start(t, "")
	c := connect(t, s)
	raw := rawConn(t, s, grpc.WithInitialWindowSize(1<<16), grpc.WithInitialConnWindowSize(1<<16))
	sub, err := raw.Read(ctx(t), &api.ReadReq{Options: &api.ReadReq_Options{
		StreamOption: &api.ReadReq_Options_All{All: &api.ReadReq_Options_AllOptions{AllOption: &api.ReadReq_Options_AllOptions_Start{Start: &shared.Empty{}}}},
		CountOption:  &api.ReadReq_Options_Subscription{Subscription: &api.ReadReq_Options_SubscriptionOptions{}},
		FilterOption: &api.ReadReq_Options_NoFilter{NoFilter: &shared.Empty{}},
		UuidOption:   &api.ReadReq_Options_UUIDOption{Content: &api.ReadReq_Options_UUIDOption_Structured{Structured: &shared.Empty{}}},
	}})
	if err != nil {
		t.Fatal(err)
	}
	msg, err := sub.Recv()
	if err != nil || msg.GetConfirmation() == nil {
		t.Fatalf("want confirmation, got %v %v", msg, err)
	}
	if msg, err = sub.Recv(); err != nil || msg.GetCaughtUp() == nil {
		t.Fatalf("want caught up, got %v %v", msg, err)
	}

	const total = 2000
	payload := make([]byte, 1024)
	done := make(chan error, 1)
	go func() {
		for i := 0; i < total; i += 50 {
			batch := make([]esdb.EventData, 50)
			for j := range batch {
				batch[j] = esdb.EventData{EventID: uuid.New(), EventType: "Slow", ContentType: esdb.ContentTypeBinary, Data: payload}
			}
			if _, err := c.AppendToStream(ctx(t), "slow", esdb.AppendToStreamOptions{}, batch...); err != nil {
				done <- err
				return
			}
		}
		done <- nil
	}()
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("writers blocked by a stalled subscriber")
	}

	var caughtUp bool
	caughtUps := 1 // the one before the writes
	next := uint64(0)
	for next < total || !caughtUp {
		msg, err := sub.Recv()
		if err != nil {
			t.Fatalf("after %d events: %v", next, err)
		}
		switch {
		case msg.GetFellBehind() != nil:
			t.Fatalf("after %d events: got FellBehind, which KurrentDB never sends", next)
		case msg.GetCaughtUp() != nil:
			caughtUps++
			caughtUp = next == total
		case msg.GetEvent() != nil:
			if rev := msg.GetEvent().GetEvent().GetStreamRevision(); rev != next {
				t.Fatalf("got revision %d, want %d", rev, next)
			}
			next++
		}
	}
	if caughtUps < 2 {
		t.Fatal("subscriber never fell behind: no second CaughtUp")
	}
}

// TestMalformedRequests sends requests the official client never would:
// each must fail with InvalidArgument, and the server must keep serving.
func TestMalformedRequests(t *testing.T) {
	s := start(t, "")
	raw := rawConn(t, s)
	name := &shared.StreamIdentifier{StreamName: []byte("m")}
	good := &api.AppendReq_ProposedMessage{
		Id:       &shared.UUID{Value: &shared.UUID_String_{String_: uuid.NewString()}},
		Metadata: map[string]string{"type": "T", "content-type": "application/json"},
	}
	appends := map[string][]*api.AppendReq{
		"empty":               {},
		"nil options":         {{Content: &api.AppendReq_Options_{}}},
		"message first":       {{Content: &api.AppendReq_ProposedMessage_{ProposedMessage: good}}},
		"no stream":           {{Content: &api.AppendReq_Options_{Options: &api.AppendReq_Options{ExpectedStreamRevision: &api.AppendReq_Options_Any{}}}}},
		"no expected":         {{Content: &api.AppendReq_Options_{Options: &api.AppendReq_Options{StreamIdentifier: name}}}},
		"bad uuid":            {anyHeader(name), proposedWith(&shared.UUID{Value: &shared.UUID_String_{String_: "nope"}})},
		"nil uuid":            {anyHeader(name), proposedWith(nil)},
		"empty structured id": {anyHeader(name), proposedWith(&shared.UUID{Value: &shared.UUID_Structured_{}})},
		"nil content":         {anyHeader(name), {}},
		"two headers":         {anyHeader(name), anyHeader(name)},
	}
	for what, msgs := range appends {
		call, err := raw.Append(ctx(t))
		if err != nil {
			t.Fatal(err)
		}
		for _, m := range msgs {
			if call.Send(m) != nil {
				break
			}
		}
		if _, err := call.CloseAndRecv(); status.Code(err) != codes.InvalidArgument {
			t.Errorf("append %s: got %v, want InvalidArgument", what, err)
		}
	}

	uuidOpt := &api.ReadReq_Options_UUIDOption{Content: &api.ReadReq_Options_UUIDOption_Structured{}}
	count := &api.ReadReq_Options_Count{Count: 10}
	noFilter := &api.ReadReq_Options_NoFilter{}
	all := &api.ReadReq_Options_All{All: &api.ReadReq_Options_AllOptions{AllOption: &api.ReadReq_Options_AllOptions_Start{}}}
	reads := map[string]*api.ReadReq{
		"nil options":    {},
		"no uuid option": {Options: &api.ReadReq_Options{StreamOption: all, CountOption: count, FilterOption: noFilter}},
		"nil stream":     {Options: &api.ReadReq_Options{StreamOption: &api.ReadReq_Options_Stream{}, CountOption: count, FilterOption: noFilter, UuidOption: uuidOpt}},
		"nil all":        {Options: &api.ReadReq_Options{StreamOption: &api.ReadReq_Options_All{}, CountOption: count, FilterOption: noFilter, UuidOption: uuidOpt}},
		"no count":       {Options: &api.ReadReq_Options{StreamOption: all, FilterOption: noFilter, UuidOption: uuidOpt}},
		"no filter":      {Options: &api.ReadReq_Options{StreamOption: all, CountOption: count, UuidOption: uuidOpt}},
		"nil filter":     {Options: &api.ReadReq_Options{StreamOption: all, CountOption: count, FilterOption: &api.ReadReq_Options_Filter{}, UuidOption: uuidOpt}},
		"bad direction":  {Options: &api.ReadReq_Options{StreamOption: all, CountOption: count, FilterOption: noFilter, UuidOption: uuidOpt, ReadDirection: 7}},
		"bad regex": {Options: &api.ReadReq_Options{StreamOption: all, CountOption: count, UuidOption: uuidOpt, FilterOption: &api.ReadReq_Options_Filter{Filter: &api.ReadReq_Options_FilterOptions{
			Filter: &api.ReadReq_Options_FilterOptions_EventType{EventType: &api.ReadReq_Options_FilterOptions_Expression{Regex: "("}},
			Window: &api.ReadReq_Options_FilterOptions_Count{},
		}}}},
		"backwards subscription": {Options: &api.ReadReq_Options{StreamOption: all, FilterOption: noFilter, UuidOption: uuidOpt,
			ReadDirection: api.ReadReq_Options_Backwards, CountOption: &api.ReadReq_Options_Subscription{}}},
		"prepare after commit": {Options: &api.ReadReq_Options{CountOption: count, FilterOption: noFilter, UuidOption: uuidOpt,
			StreamOption: &api.ReadReq_Options_All{All: &api.ReadReq_Options_AllOptions{AllOption: &api.ReadReq_Options_AllOptions_Position{Position: &api.ReadReq_Options_Position{PreparePosition: 2}}}}}},
	}
	for what, req := range reads {
		call, err := raw.Read(ctx(t), req)
		if err == nil {
			_, err = call.Recv()
		}
		if status.Code(err) != codes.InvalidArgument {
			t.Errorf("read %s: got %v, want InvalidArgument", what, err)
		}
	}
	if _, err := raw.Delete(ctx(t), &api.DeleteReq{}); status.Code(err) != codes.InvalidArgument {
		t.Errorf("delete without options: %v", err)
	}
	if _, err := raw.Tombstone(ctx(t), &api.TombstoneReq{Options: &api.TombstoneReq_Options{StreamIdentifier: name}}); status.Code(err) != codes.InvalidArgument {
		t.Errorf("tombstone without expected revision: %v", err)
	}

	// BatchAppend reports bad requests per correlation id.
	batch, err := raw.BatchAppend(ctx(t))
	if err != nil {
		t.Fatal(err)
	}
	corr := &shared.UUID{Value: &shared.UUID_String_{String_: uuid.NewString()}}
	for _, req := range []*api.BatchAppendReq{
		{CorrelationId: &shared.UUID{}},
		{CorrelationId: corr, Options: &api.BatchAppendReq_Options{}, IsFinal: true},
	} {
		if err := batch.Send(req); err != nil {
			t.Fatal(err)
		}
		resp, err := batch.Recv()
		if err != nil || resp.GetError().GetCode() != int32(codes.InvalidArgument) {
			t.Errorf("batch append %v: got %v %v", req, resp, err)
		}
	}
	_ = batch.CloseSend()
	if _, err := batch.Recv(); !errors.Is(err, io.EOF) {
		t.Errorf("batch append end: %v", err)
	}

	// Still serving.
	mustAppend(t, connect(t, s), "m", esdb.NoStream{}, ev("Fine"))
}

func anyHeader(name *shared.StreamIdentifier) *api.AppendReq {
	return &api.AppendReq{Content: &api.AppendReq_Options_{Options: &api.AppendReq_Options{
		StreamIdentifier: name, ExpectedStreamRevision: &api.AppendReq_Options_Any{Any: &shared.Empty{}},
	}}}
}

func proposedWith(id *shared.UUID) *api.AppendReq {
	return &api.AppendReq{Content: &api.AppendReq_ProposedMessage_{ProposedMessage: &api.AppendReq_ProposedMessage{
		Id: id, Metadata: map[string]string{"type": "T", "content-type": "application/json"},
	}}}
}

// TestBatchAppend writes through BatchAppend: a write split over two
// requests, and a wrong expected version reported for its correlation id.
func TestBatchAppend(t *testing.T) {
	s := start(t, "")
	raw := rawConn(t, s)
	call, err := raw.BatchAppend(ctx(t))
	if err != nil {
		t.Fatal(err)
	}
	msg := func() *api.BatchAppendReq_ProposedMessage {
		return &api.BatchAppendReq_ProposedMessage{
			Id:       &shared.UUID{Value: &shared.UUID_String_{String_: uuid.NewString()}},
			Metadata: map[string]string{"type": "B", "content-type": "application/json"},
			Data:     []byte(`{}`),
		}
	}
	c1 := &shared.UUID{Value: &shared.UUID_String_{String_: uuid.NewString()}}
	c2 := &shared.UUID{Value: &shared.UUID_String_{String_: uuid.NewString()}}
	opts := &api.BatchAppendReq_Options{
		StreamIdentifier:       &shared.StreamIdentifier{StreamName: []byte("b")},
		ExpectedStreamPosition: &api.BatchAppendReq_Options_NoStream{},
	}
	for _, req := range []*api.BatchAppendReq{
		{CorrelationId: c1, Options: opts, ProposedMessages: []*api.BatchAppendReq_ProposedMessage{msg()}},
		{CorrelationId: c1, ProposedMessages: []*api.BatchAppendReq_ProposedMessage{msg()}, IsFinal: true},
	} {
		if err := call.Send(req); err != nil {
			t.Fatal(err)
		}
	}
	resp, err := call.Recv()
	if err != nil || resp.GetSuccess().GetCurrentRevision() != 1 || resp.GetCorrelationId().GetString_() != c1.GetString_() {
		t.Fatalf("first write: %v %v", resp, err)
	}
	if err := call.Send(&api.BatchAppendReq{CorrelationId: c2, Options: opts, ProposedMessages: []*api.BatchAppendReq_ProposedMessage{msg()}, IsFinal: true}); err != nil {
		t.Fatal(err)
	}
	resp, err = call.Recv()
	if err != nil || resp.GetError().GetCode() != int32(codes.AlreadyExists) || resp.GetCorrelationId().GetString_() != c2.GetString_() {
		t.Fatalf("second write: %v %v", resp, err)
	}
	wev := &shared.WrongExpectedVersion{}
	if err := resp.GetError().GetDetails()[0].UnmarshalTo(wev); err != nil || wev.GetCurrentStreamRevision() != 1 || wev.GetExpectedNoStream() == nil {
		t.Fatalf("wrong expected version details: %v %v", wev, err)
	}
	_ = call.CloseSend()
	if _, err := call.Recv(); !errors.Is(err, io.EOF) {
		t.Fatalf("end: %v", err)
	}
}

// TestShutdownEndsSubscriptions checks Close ends a live subscription with
// an error the client reports, and that Close is idempotent.
func TestShutdownEndsSubscriptions(t *testing.T) {
	s := start(t, t.TempDir())
	c := connect(t, s)
	sub, err := c.SubscribeToAll(context.Background(), esdb.SubscribeToAllOptions{From: esdb.Start{}})
	if err != nil {
		t.Fatal(err)
	}
	defer sub.Close()
	if e := sub.Recv(); e.CaughtUp == nil {
		t.Fatalf("want caught up, got %+v", e)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	e := sub.Recv()
	if e.SubscriptionDropped == nil || status.Code(e.SubscriptionDropped.Error) != codes.Unavailable {
		t.Fatalf("want drop with Unavailable, got %+v", e)
	}
	if err := s.Close(); err != nil {
		t.Fatalf("second close: %v", err)
	}
}

// TestDeleteSemantics pins EventStoreDB's delete behaviour: soft delete is
// a $tb metadata event, recreation rewrites it, a tombstone is a
// $streamDeleted event at revision MaxInt64, and all of them stay in $all.
func TestDeleteSemantics(t *testing.T) {
	s := start(t, "")
	c := connect(t, s)
	if _, err := c.DeleteStream(ctx(t), "never", esdb.DeleteStreamOptions{ExpectedRevision: esdb.Any{}}); err == nil {
		t.Fatal("deleting a stream that never existed succeeded")
	}

	mustAppend(t, c, "x", esdb.NoStream{}, ev("X1"), ev("X2"))
	del, err := c.DeleteStream(ctx(t), "x", esdb.DeleteStreamOptions{ExpectedRevision: esdb.StreamExists{}})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.AppendToStream(ctx(t), "x", esdb.AppendToStreamOptions{ExpectedRevision: esdb.StreamExists{}}, ev("X3")); esdbCode(err) != esdb.ErrorCodeStreamDeleted {
		t.Fatalf("StreamExists on a soft-deleted stream: %v", err)
	}
	re := mustAppend(t, c, "x", esdb.StreamRevision{Value: 1}, ev("X3"))
	if re.NextExpectedVersion != 2 || re.CommitPosition <= del.Position.Commit {
		t.Fatalf("recreate: %+v after delete at %v", re, del.Position)
	}
	meta, err := c.GetStreamMetadata(ctx(t), "x", esdb.ReadStreamOptions{})
	if err != nil || meta.TruncateBefore() == nil || *meta.TruncateBefore() != 2 {
		t.Fatalf("metadata after recreate: %+v %v", meta, err)
	}

	sub, err := c.SubscribeToStream(ctx(t), "x", esdb.SubscribeToStreamOptions{From: esdb.Start{}})
	if err != nil {
		t.Fatal(err)
	}
	defer sub.Close()
	if e := sub.Recv(); e.EventAppeared == nil || e.EventAppeared.Event.EventNumber != 2 {
		t.Fatalf("subscription after recreate: %+v", e)
	}
	if e := sub.Recv(); e.CaughtUp == nil {
		t.Fatalf("want caught up, got %+v", e)
	}
	tomb, err := c.TombstoneStream(ctx(t), "x", esdb.TombstoneStreamOptions{ExpectedRevision: esdb.StreamRevision{Value: 2}})
	if err != nil {
		t.Fatal(err)
	}
	if e := sub.Recv(); e.EventAppeared == nil || e.EventAppeared.Event.EventType != "$streamDeleted" {
		t.Fatalf("live tombstone: %+v", e)
	}
	if e := sub.Recv(); e.SubscriptionDropped == nil {
		t.Fatalf("want drop after tombstone, got %+v", e)
	}
	if _, err := c.SubscribeToStream(ctx(t), "x", esdb.SubscribeToStreamOptions{From: esdb.Start{}}); esdbCode(err) != esdb.ErrorCodeStreamDeleted {
		t.Fatalf("subscribe to tombstoned stream: %v", err)
	}
	if _, err := readStream(t, c, "$$x"); esdbCode(err) != esdb.ErrorCodeStreamDeleted {
		t.Fatalf("metastream of tombstoned stream: %v", err)
	}
	if _, err := c.DeleteStream(ctx(t), "x", esdb.DeleteStreamOptions{ExpectedRevision: esdb.Any{}}); esdbCode(err) != esdb.ErrorCodeStreamDeleted {
		t.Fatalf("delete after tombstone: %v", err)
	}

	rs, err := c.ReadAll(ctx(t), esdb.ReadAllOptions{}, 100)
	all, err := readAll(t, rs, err)
	if err != nil {
		t.Fatal(err)
	}
	var kinds []string
	for _, e := range all {
		kinds = append(kinds, fmt.Sprintf("%s@%d:%s", e.Event.StreamID, e.Event.EventNumber, e.Event.EventType))
	}
	want := fmt.Sprint([]string{"x@0:X1", "x@1:X2", "$$x@0:$metadata", "x@2:X3", "$$x@1:$metadata", "x@9223372036854775807:$streamDeleted"})
	if fmt.Sprint(kinds) != want {
		t.Fatalf("$all: %v\nwant %v", kinds, want)
	}
	if all[2].Event.Position != del.Position || all[5].Event.Position != tomb.Position {
		t.Fatalf("delete positions %v %v do not match $all", del.Position, tomb.Position)
	}
}

// TestPipelinedWrites holds back fsyncs: a write that depends on one still
// being synced is checked and written at once, nothing is readable or
// acknowledged before its fsync, batches land in order, and a failed fsync
// fails its writes and every later one.
func TestPipelinedWrites(t *testing.T) {
	ix := newIndex()
	w := newWriter(ix, &storage{}, quietLogger(), firstPos)
	syncs := make(chan error)
	var written atomic.Int32
	w.persist = func([]newRecord) (func() error, error) {
		written.Add(1)
		return func() error { return <-syncs }, nil
	}
	go w.run()
	defer w.close()

	appendAt := func(exp expectation) <-chan writeResult {
		done := make(chan writeResult, 1)
		go func() {
			done <- w.submit(&writeReq{op: opAppend, stream: "s", exp: exp, events: []proposal{
				{id: uuid.New(), typ: "E", isJSON: true, data: []byte(`{}`)},
			}})
		}()
		return done
	}
	waitWritten := func(n int32) {
		t.Helper()
		for deadline := time.Now().Add(5 * time.Second); written.Load() < n; time.Sleep(time.Millisecond) {
			if time.Now().After(deadline) {
				t.Fatalf("%d batches written, want %d", written.Load(), n)
			}
		}
	}
	readable := func() int {
		ix.mu.RLock()
		defer ix.mu.RUnlock()
		return len(ix.log)
	}
	pending := func(name string, c <-chan writeResult) {
		t.Helper()
		select {
		case r := <-c:
			t.Fatalf("%s answered before its fsync: %+v", name, r)
		default:
		}
	}

	first := appendAt(expectation{kind: expNoStream})
	waitWritten(1)
	second := appendAt(expectation{kind: expRevision, rev: 0})
	waitWritten(2) // checked against the first while it is still in flight
	pending("first", first)
	pending("second", second)
	if n := readable(); n != 0 {
		t.Fatalf("%d events readable before any fsync", n)
	}

	syncs <- nil
	if r := <-first; r.err != nil || r.wrong || r.last != 0 {
		t.Fatalf("first: %+v", r)
	}
	if n := readable(); n != 1 {
		t.Fatalf("%d events readable after the first fsync, want 1", n)
	}
	pending("second", second)
	syncs <- nil
	if r := <-second; r.err != nil || r.wrong || r.last != 1 {
		t.Fatalf("second: %+v", r)
	}

	third := appendAt(expectation{kind: expRevision, rev: 1})
	waitWritten(3)
	syncs <- errors.New("disk gone")
	if r := <-third; !unavailable(r.err) {
		t.Fatalf("write whose fsync failed: %+v", r)
	}
	if r := <-appendAt(expectation{kind: expRevision, rev: 1}); !unavailable(r.err) {
		t.Fatalf("write after a failed fsync: %+v", r)
	}
	if n, m := written.Load(), readable(); n != 3 || m != 2 {
		t.Fatalf("after the failed fsync: %d batches written (want 3), %d events readable (want 2)", n, m)
	}
}

func unavailable(err error) bool {
	var e *rpcError
	return errors.As(err, &e) && e.code == codes.Unavailable
}

// TestRecordMsg checks the hand-written encoding against proto.Marshal's.
func TestRecordMsg(t *testing.T) {
	id := uuid.MustParse("0190a5c2-7d1e-7c3a-9f00-8a1b2c3d4e5f")
	cases := map[string]struct {
		r          record
		isJSON     bool
		data, meta []byte
	}{
		"json event":      {record{pos: 1, stream: "prescription-1", rev: 0, id: id, typ: "PrescriptionRequested", created: 17000000000000000}, true, []byte(`{"a":1}`), []byte(`{"m":2}`)},
		"binary, no data": {record{pos: 1 << 40, stream: "s", rev: 7, id: uuid.New(), typ: "E", created: 1}, false, nil, nil},
		"tombstone":       {record{pos: 99, stream: "gone", rev: deletedStream, id: uuid.New(), typ: typeStreamDeleted}, false, nil, nil},
		"zero-half id":    {record{pos: 5, stream: "ü-stream", rev: 1, id: uuid.UUID{15: 1}, typ: "Ünïcode"}, true, []byte("{}"), nil},
	}
	for name, c := range cases {
		t.Run(name, func(t *testing.T) {
			ct := "application/octet-stream"
			if c.isJSON {
				ct = "application/json"
			}
			want := &api.ReadResp_ReadEvent_RecordedEvent{
				Id:               wireUUID(c.r.id, false),
				StreamIdentifier: &shared.StreamIdentifier{StreamName: []byte(c.r.stream)},
				StreamRevision:   c.r.rev,
				PreparePosition:  c.r.pos,
				CommitPosition:   c.r.pos,
				Metadata:         map[string]string{"type": c.r.typ, "content-type": ct, "created": fmt.Sprint(c.r.created)},
				CustomMetadata:   c.meta,
				Data:             c.data,
			}
			enc := recordMsg(&c.r, c.isJSON, c.data, c.meta)
			got := &api.ReadResp_ReadEvent_RecordedEvent{}
			if err := proto.Unmarshal(enc, got); err != nil {
				t.Fatal(err)
			}
			if !proto.Equal(got, want) {
				t.Fatalf("decoded %v, want %v", got, want)
			}
			if marshalled, _ := proto.Marshal(want); len(marshalled) != len(enc) {
				t.Fatalf("%d bytes, proto.Marshal gives %d", len(enc), len(marshalled))
			}
		})
	}
}

// TestReadStringIDs reads with the string UUID option, in memory and on
// disk: every event carries its id as a string, the rest unchanged.
func TestReadStringIDs(t *testing.T) {
	for mode, dir := range map[string]string{"memory": "", "disk": t.TempDir()} {
		t.Run(mode, func(t *testing.T) {
			s := start(t, dir)
			ids := []uuid.UUID{uuid.New(), uuid.New()}
			mustAppend(t, connect(t, s), "str", esdb.NoStream{},
				esdb.EventData{EventID: ids[0], EventType: "A", ContentType: esdb.ContentTypeJson, Data: []byte(`{"n":0}`)},
				esdb.EventData{EventID: ids[1], EventType: "B", ContentType: esdb.ContentTypeJson, Data: []byte(`{"n":1}`)})
			call, err := rawConn(t, s).Read(ctx(t), &api.ReadReq{Options: &api.ReadReq_Options{
				StreamOption: &api.ReadReq_Options_Stream{Stream: &api.ReadReq_Options_StreamOptions{
					StreamIdentifier: &shared.StreamIdentifier{StreamName: []byte("str")},
					RevisionOption:   &api.ReadReq_Options_StreamOptions_Start{},
				}},
				CountOption:  &api.ReadReq_Options_Count{Count: 10},
				FilterOption: &api.ReadReq_Options_NoFilter{},
				UuidOption:   &api.ReadReq_Options_UUIDOption{Content: &api.ReadReq_Options_UUIDOption_String_{}},
			}})
			if err != nil {
				t.Fatal(err)
			}
			for i := 0; ; i++ {
				resp, err := call.Recv()
				if errors.Is(err, io.EOF) {
					if i != len(ids) {
						t.Fatalf("%d events, want %d", i, len(ids))
					}
					return
				}
				if err != nil {
					t.Fatal(err)
				}
				ev := resp.GetEvent().GetEvent()
				if got := ev.GetId().GetString_(); got != ids[i].String() {
					t.Fatalf("event %d: id %q, want %q", i, got, ids[i])
				}
				if ev.GetStreamRevision() != uint64(i) || string(ev.GetData()) != fmt.Sprintf(`{"n":%d}`, i) {
					t.Fatalf("event %d: %v", i, ev)
				}
			}
		})
	}
}

// TestRefusesLegacyStore: a data dir holding the bbolt file of earlier
// versions is refused with a message naming it, not opened as empty.
func TestRefusesLegacyStore(t *testing.T) {
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, legacyFile), []byte("bbolt"), 0o600); err != nil {
		t.Fatal(err)
	}
	_, err := Start(Config{Addr: "127.0.0.1:0", DataDir: dir, Logger: quietLogger()})
	if err == nil || !strings.Contains(err.Error(), legacyFile) {
		t.Fatalf("start on a legacy data dir: %v", err)
	}
}

// TestDeleteExpectations: Delete and Tombstone read every kind of expected
// revision from their own oneofs.
func TestDeleteExpectations(t *testing.T) {
	c := connect(t, start(t, ""))
	mustAppend(t, c, "d", esdb.NoStream{}, ev("D1"))
	if _, err := c.DeleteStream(ctx(t), "d", esdb.DeleteStreamOptions{ExpectedRevision: esdb.NoStream{}}); !wrongExpected(err) {
		t.Fatalf("delete expecting no stream: %v", err)
	}
	if _, err := c.DeleteStream(ctx(t), "d", esdb.DeleteStreamOptions{ExpectedRevision: esdb.Revision(1)}); !wrongExpected(err) {
		t.Fatalf("delete expecting revision 1: %v", err)
	}
	if _, err := c.DeleteStream(ctx(t), "d", esdb.DeleteStreamOptions{ExpectedRevision: esdb.Revision(0)}); err != nil {
		t.Fatalf("delete expecting revision 0: %v", err)
	}
	if _, err := c.TombstoneStream(ctx(t), "t", esdb.TombstoneStreamOptions{ExpectedRevision: esdb.StreamExists{}}); !wrongExpected(err) {
		t.Fatalf("tombstone of a missing stream expecting it to exist: %v", err)
	}
	if _, err := c.TombstoneStream(ctx(t), "t", esdb.TombstoneStreamOptions{ExpectedRevision: esdb.NoStream{}}); err != nil {
		t.Fatalf("tombstone of a missing stream expecting none: %v", err)
	}
	if _, err := readStream(t, c, "t"); esdbCode(err) != esdb.ErrorCodeStreamDeleted {
		t.Fatalf("read after tombstone: %v", err)
	}
}

// wrongExpected: client v4.2.0 reports a delete's wrong expected version as
// an *esdb.Error wrapping the FailedPrecondition status.
func wrongExpected(err error) bool {
	for e := err; e != nil; e = errors.Unwrap(e) {
		if st, ok := status.FromError(e); ok {
			return st.Code() == codes.FailedPrecondition && strings.Contains(st.Message(), "WrongExpectedVersion")
		}
	}
	return false
}

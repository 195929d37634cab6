package esdbserver

import (
	"context"
	"errors"
	"io"
	"sync"
	"time"
	"unicode/utf16"
	"unicode/utf8"

	"github.com/EventStore/EventStore-Client-Go/v4/protos/shared"
	api "github.com/EventStore/EventStore-Client-Go/v4/protos/streams"
	"github.com/google/uuid"
	"google.golang.org/genproto/googleapis/rpc/code"
	rpcstatus "google.golang.org/genproto/googleapis/rpc/status"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/anypb"
	"google.golang.org/protobuf/types/known/emptypb"
)

type streamsAPI struct {
	api.UnimplementedStreamsServer
	s *Server
}

func streamName(name []byte) (string, error) {
	if len(name) == 0 {
		return "", invalidArgument("stream name is required")
	}
	if !utf8.Valid(name) {
		return "", invalidArgument("stream name is not valid UTF-8")
	}
	return string(name), nil
}

// proposedEvent validates one proposed event like Streams.Append.cs does and
// returns it with the size EventStoreDB counts against MaxAppendSize:
// data + custom metadata + the event type in UTF-16 bytes.
func proposedEvent(pm proposedMsg) (proposal, int, error) {
	if !pm.hasTyp {
		return proposal{}, 0, missingMetadataError("type")
	}
	if !pm.hasCT {
		return proposal{}, 0, missingMetadataError("content-type")
	}
	if pm.typ == "" {
		return proposal{}, 0, invalidArgument("event type is empty")
	}
	if pm.idErr != nil {
		return proposal{}, 0, invalidArgument("event id: %v", pm.idErr)
	}
	if pm.id == uuid.Nil {
		return proposal{}, 0, invalidArgument("event id is empty")
	}
	size := len(pm.data) + len(pm.meta) + 2*len(utf16.Encode([]rune(pm.typ)))
	return proposal{id: pm.id, typ: pm.typ, isJSON: pm.ct == "application/json", data: pm.data, meta: pm.meta}, size, nil
}

func (a *streamsAPI) Append(srv api.Streams_AppendServer) error {
	var first appendReq
	if err := srv.RecvMsg(&first); err != nil {
		if errors.Is(err, io.EOF) {
			return invalidArgument("append without options")
		}
		return err
	}
	opts := first.options
	if opts == nil {
		return invalidArgument("the first append message must carry options")
	}
	name, err := streamName(opts.stream)
	if err != nil {
		return err
	}
	if !opts.hasExp {
		return invalidArgument("expected stream revision is required")
	}
	exp := opts.exp

	var events []proposal
	size := 0
	for {
		var msg appendReq
		err := srv.RecvMsg(&msg)
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return err
		}
		if msg.proposed == nil {
			return invalidArgument("expected a proposed message")
		}
		ev, n, err := proposedEvent(*msg.proposed)
		if err != nil {
			return err
		}
		if size += n; size > a.s.maxSize {
			return maxAppendSizeError(a.s.maxSize)
		}
		events = append(events, ev)
	}

	res := a.s.w.submit(&writeReq{op: opAppend, stream: name, exp: exp, events: events})
	if res.err != nil {
		return res.err
	}
	if res.wrong {
		return srv.SendAndClose(&api.AppendResp{Result: &api.AppendResp_WrongExpectedVersion_{
			WrongExpectedVersion: wrongExpectedVersion(exp, res.current),
		}})
	}
	ok := &api.AppendResp_Success{}
	if res.last < 0 {
		ok.CurrentRevisionOption = &api.AppendResp_Success_NoStream{NoStream: &shared.Empty{}}
	} else {
		ok.CurrentRevisionOption = &api.AppendResp_Success_CurrentRevision{CurrentRevision: uint64(res.last)}
	}
	if res.hasPos {
		ok.PositionOption = &api.AppendResp_Success_Position{Position: &api.AppendResp_Position{
			CommitPosition: res.pos, PreparePosition: res.pos,
		}}
	} else {
		ok.PositionOption = &api.AppendResp_Success_NoPosition{NoPosition: &shared.Empty{}}
	}
	return srv.SendAndClose(&api.AppendResp{Result: &api.AppendResp_Success_{Success: ok}})
}

// wrongExpectedVersion fills both the current and the 20.6.0 fields, as
// EventStoreDB does.
func wrongExpectedVersion(exp expectation, current int64) *api.AppendResp_WrongExpectedVersion {
	w := &api.AppendResp_WrongExpectedVersion{}
	empty := &shared.Empty{}
	switch exp.kind {
	case expAny:
		w.ExpectedRevisionOption = &api.AppendResp_WrongExpectedVersion_ExpectedAny{ExpectedAny: empty}
		w.ExpectedRevisionOption_20_6_0 = &api.AppendResp_WrongExpectedVersion_Any_20_6_0{Any_20_6_0: empty}
	case expExists:
		w.ExpectedRevisionOption = &api.AppendResp_WrongExpectedVersion_ExpectedStreamExists{ExpectedStreamExists: empty}
		w.ExpectedRevisionOption_20_6_0 = &api.AppendResp_WrongExpectedVersion_StreamExists_20_6_0{StreamExists_20_6_0: empty}
	case expNoStream:
		w.ExpectedRevisionOption = &api.AppendResp_WrongExpectedVersion_ExpectedNoStream{ExpectedNoStream: empty}
		w.ExpectedRevisionOption_20_6_0 = &api.AppendResp_WrongExpectedVersion_ExpectedRevision_20_6_0{ExpectedRevision_20_6_0: ^uint64(0)}
	case expRevision:
		w.ExpectedRevisionOption = &api.AppendResp_WrongExpectedVersion_ExpectedRevision{ExpectedRevision: exp.rev}
		w.ExpectedRevisionOption_20_6_0 = &api.AppendResp_WrongExpectedVersion_ExpectedRevision_20_6_0{ExpectedRevision_20_6_0: exp.rev}
	}
	if current < 0 {
		w.CurrentRevisionOption = &api.AppendResp_WrongExpectedVersion_CurrentNoStream{CurrentNoStream: empty}
		w.CurrentRevisionOption_20_6_0 = &api.AppendResp_WrongExpectedVersion_NoStream_20_6_0{NoStream_20_6_0: empty}
	} else {
		w.CurrentRevisionOption = &api.AppendResp_WrongExpectedVersion_CurrentRevision{CurrentRevision: uint64(current)}
		w.CurrentRevisionOption_20_6_0 = &api.AppendResp_WrongExpectedVersion_CurrentRevision_20_6_0{CurrentRevision_20_6_0: uint64(current)}
	}
	return w
}

// revisionOptions are the Append, Delete and Tombstone options, whose
// expected_stream_revision oneofs have the same fields.
type revisionOptions interface {
	GetStreamIdentifier() *shared.StreamIdentifier
	GetRevision() uint64
	GetNoStream() *shared.Empty
	GetAny() *shared.Empty
	GetStreamExists() *shared.Empty
}

// expectationOf reads the expected revision; set says whether the oneof is
// set at all (a revision of 0 cannot be told from none otherwise).
func expectationOf(o revisionOptions, set bool) (expectation, bool) {
	switch {
	case o.GetNoStream() != nil:
		return expectation{kind: expNoStream}, true
	case o.GetAny() != nil:
		return expectation{kind: expAny}, true
	case o.GetStreamExists() != nil:
		return expectation{kind: expExists}, true
	case set:
		return expectation{kind: expRevision, rev: o.GetRevision()}, true
	}
	return expectation{}, false
}

func (a *streamsAPI) Delete(_ context.Context, req *api.DeleteReq) (*api.DeleteResp, error) {
	opts := req.GetOptions()
	pos, err := a.remove(opDelete, opts, opts.GetExpectedStreamRevision() != nil)
	if err != nil {
		return nil, err
	}
	return &api.DeleteResp{PositionOption: &api.DeleteResp_Position_{Position: &api.DeleteResp_Position{
		CommitPosition: pos, PreparePosition: pos,
	}}}, nil
}

func (a *streamsAPI) Tombstone(_ context.Context, req *api.TombstoneReq) (*api.TombstoneResp, error) {
	opts := req.GetOptions()
	pos, err := a.remove(opTombstone, opts, opts.GetExpectedStreamRevision() != nil)
	if err != nil {
		return nil, err
	}
	return &api.TombstoneResp{PositionOption: &api.TombstoneResp_Position_{Position: &api.TombstoneResp_Position{
		CommitPosition: pos, PreparePosition: pos,
	}}}, nil
}

// remove runs a soft delete or a tombstone and returns its position.
func (a *streamsAPI) remove(op opKind, opts revisionOptions, expSet bool) (uint64, error) {
	name, err := streamName(opts.GetStreamIdentifier().GetStreamName())
	if err != nil {
		return 0, err
	}
	exp, ok := expectationOf(opts, expSet)
	if !ok {
		return 0, invalidArgument("expected stream revision is required")
	}
	res := a.s.w.submit(&writeReq{op: op, stream: name, exp: exp})
	return res.pos, res.err
}

// batchWrite is a BatchAppend write being assembled from its requests.
type batchWrite struct {
	stream string
	exp    expectation
	events []proposal
	size   int
}

// BatchAppend follows Streams.BatchAppend.cs: requests are grouped by
// correlation id until is_final, each write gets one response carrying
// its correlation id, and failures are google.rpc.Status results.
func (a *streamsAPI) BatchAppend(srv api.Streams_BatchAppendServer) error {
	var (
		sendMu  sync.Mutex
		sendErr error
		wg      sync.WaitGroup
	)
	send := func(resp *api.BatchAppendResp) {
		sendMu.Lock()
		defer sendMu.Unlock()
		if sendErr == nil {
			sendErr = srv.Send(resp)
		}
	}
	pending := map[uuid.UUID]*batchWrite{}
	for {
		req, err := srv.Recv()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			wg.Wait()
			return err
		}
		reply := &api.BatchAppendResp{CorrelationId: req.GetCorrelationId()}
		corr, err := parseUUID(req.GetCorrelationId())
		if err != nil {
			reply.Result = &api.BatchAppendResp_Error{Error: batchStatus(code.Code_INVALID_ARGUMENT, "BadRequest", &shared.BadRequest{Message: "correlation id: " + err.Error()})}
			send(reply)
			continue
		}
		if opts := req.GetOptions(); opts != nil {
			reply.StreamIdentifier = opts.GetStreamIdentifier()
			w, failure := newBatchWrite(opts)
			if failure != nil {
				reply.Result = &api.BatchAppendResp_Error{Error: failure}
				send(reply)
				continue
			}
			if pending[corr] == nil {
				pending[corr] = w
			}
		}
		w := pending[corr]
		if w == nil {
			continue
		}
		reply.StreamIdentifier = &shared.StreamIdentifier{StreamName: []byte(w.stream)}
		if failure := w.add(req.GetProposedMessages(), a.s.maxSize); failure != nil {
			delete(pending, corr)
			reply.Result = &api.BatchAppendResp_Error{Error: failure}
			send(reply)
			continue
		}
		if !req.GetIsFinal() {
			continue
		}
		delete(pending, corr)
		wg.Add(1)
		go func() {
			defer wg.Done()
			res := a.s.w.submit(&writeReq{op: opAppend, stream: w.stream, exp: w.exp, events: w.events})
			batchResult(reply, w, res)
			send(reply)
		}()
	}
	wg.Wait()
	sendMu.Lock()
	defer sendMu.Unlock()
	return sendErr
}

func newBatchWrite(opts *api.BatchAppendReq_Options) (*batchWrite, *rpcstatus.Status) {
	name, err := streamName(opts.GetStreamIdentifier().GetStreamName())
	if err != nil {
		return nil, batchStatus(code.Code_INVALID_ARGUMENT, "BadRequest", &shared.BadRequest{Message: err.Error()})
	}
	w := &batchWrite{stream: name}
	switch v := opts.GetExpectedStreamPosition().(type) {
	case *api.BatchAppendReq_Options_StreamPosition:
		w.exp = expectation{kind: expRevision, rev: v.StreamPosition}
	case *api.BatchAppendReq_Options_NoStream:
		w.exp = expectation{kind: expNoStream}
	case *api.BatchAppendReq_Options_Any:
		w.exp = expectation{kind: expAny}
	case *api.BatchAppendReq_Options_StreamExists:
		w.exp = expectation{kind: expExists}
	default:
		return nil, batchStatus(code.Code_INVALID_ARGUMENT, "BadRequest", &shared.BadRequest{Message: "expected stream position is required"})
	}
	var timeout time.Duration = 1<<63 - 1
	switch v := opts.GetDeadlineOption().(type) {
	case *api.BatchAppendReq_Options_Deadline:
		timeout = v.Deadline.AsDuration()
	case *api.BatchAppendReq_Options_Deadline_21_10_0:
		timeout = time.Until(v.Deadline_21_10_0.AsTime())
	}
	if timeout <= 0 {
		return nil, batchStatus(code.Code_DEADLINE_EXCEEDED, "Timeout", &shared.Timeout{})
	}
	return w, nil
}

func (w *batchWrite) add(msgs []*api.BatchAppendReq_ProposedMessage, maxSize int) *rpcstatus.Status {
	for _, pm := range msgs {
		ev, n, err := proposedEvent(fromProposed(pm.GetId(), pm.GetMetadata(), pm.GetData(), pm.GetCustomMetadata()))
		if err != nil {
			return batchStatus(code.Code_INVALID_ARGUMENT, "BadRequest", &shared.BadRequest{Message: err.Error()})
		}
		w.size += n
		w.events = append(w.events, ev)
	}
	if w.size > maxSize {
		return batchStatus(code.Code_INVALID_ARGUMENT, "MaximumAppendSizeExceeded", &shared.MaximumAppendSizeExceeded{MaxAppendSize: uint32(maxSize)})
	}
	return nil
}

// batchResult sets the outcome of a finished write on its response.
func batchResult(reply *api.BatchAppendResp, w *batchWrite, res writeResult) {
	switch {
	case res.err != nil:
		var re *rpcError
		if errors.As(res.err, &re) && re.trailers.Get("exception") != nil && re.trailers.Get("exception")[0] == "stream-deleted" {
			reply.Result = &api.BatchAppendResp_Error{Error: batchStatus(code.Code_NOT_FOUND, "StreamDeleted",
				&shared.StreamDeleted{StreamIdentifier: &shared.StreamIdentifier{StreamName: []byte(w.stream)}})}
			return
		}
		reply.Result = &api.BatchAppendResp_Error{Error: batchStatus(code.Code_UNAVAILABLE, res.err.Error(), &emptypb.Empty{})}
		return
	case res.wrong:
		wev := &shared.WrongExpectedVersion{}
		if res.current < 0 {
			wev.CurrentStreamRevisionOption = &shared.WrongExpectedVersion_CurrentNoStream{CurrentNoStream: &emptypb.Empty{}}
		} else {
			wev.CurrentStreamRevisionOption = &shared.WrongExpectedVersion_CurrentStreamRevision{CurrentStreamRevision: uint64(res.current)}
		}
		switch w.exp.kind {
		case expAny:
			wev.ExpectedStreamPositionOption = &shared.WrongExpectedVersion_ExpectedAny{ExpectedAny: &emptypb.Empty{}}
		case expNoStream:
			wev.ExpectedStreamPositionOption = &shared.WrongExpectedVersion_ExpectedNoStream{ExpectedNoStream: &emptypb.Empty{}}
		case expExists:
			wev.ExpectedStreamPositionOption = &shared.WrongExpectedVersion_ExpectedStreamExists{ExpectedStreamExists: &emptypb.Empty{}}
		case expRevision:
			wev.ExpectedStreamPositionOption = &shared.WrongExpectedVersion_ExpectedStreamPosition{ExpectedStreamPosition: w.exp.rev}
		}
		reply.Result = &api.BatchAppendResp_Error{Error: batchStatus(code.Code_ALREADY_EXISTS, "WrongExpectedVersion", wev)}
		return
	}
	ok := &api.BatchAppendResp_Success{}
	if res.last < 0 {
		ok.CurrentRevisionOption = &api.BatchAppendResp_Success_NoStream{NoStream: &emptypb.Empty{}}
	} else {
		ok.CurrentRevisionOption = &api.BatchAppendResp_Success_CurrentRevision{CurrentRevision: uint64(res.last)}
	}
	if res.hasPos {
		ok.PositionOption = &api.BatchAppendResp_Success_Position{Position: &shared.AllStreamPosition{CommitPosition: res.pos, PreparePosition: res.pos}}
	} else {
		ok.PositionOption = &api.BatchAppendResp_Success_NoPosition{NoPosition: &emptypb.Empty{}}
	}
	reply.Result = &api.BatchAppendResp_Success_{Success: ok}
}

// batchStatus is a google.rpc.Status as Status.cs in EventStoreDB builds it.
func batchStatus(c code.Code, msg string, detail proto.Message) *rpcstatus.Status {
	st := &rpcstatus.Status{Code: int32(c), Message: msg}
	if d, err := anypb.New(detail); err == nil {
		st.Details = []*anypb.Any{d}
	}
	return st
}

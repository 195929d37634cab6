package esdbserver

import (
	"encoding/binary"
	"fmt"
	"strconv"
	"time"

	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"
)

// rawMsg is an already encoded message. Events are stored in their wire
// form, so reads send them without decoding and re-encoding.
type rawMsg []byte

// readEventMsg encodes ReadResp{event: ReadEvent{event, link,
// commit_position: pos}} around stored RecordedEvents. event or link may be
// nil: a plain event has no link, and a link whose target is gone has no
// event (EventStoreDB's ForFailedResolvedLink). pos is the position of the
// record that was read: the link when there is one.
func readEventMsg(event, link []byte, pos uint64) rawMsg {
	inner := 1 + protowire.SizeVarint(pos)
	if event != nil {
		inner += 1 + protowire.SizeBytes(len(event))
	}
	if link != nil {
		inner += 1 + protowire.SizeBytes(len(link))
	}
	b := make([]byte, 0, 1+protowire.SizeBytes(inner))
	b = protowire.AppendTag(b, 1, protowire.BytesType) // ReadResp.event
	b = protowire.AppendVarint(b, uint64(inner))
	if event != nil {
		b = protowire.AppendTag(b, 1, protowire.BytesType) // ReadEvent.event
		b = protowire.AppendBytes(b, event)
	}
	if link != nil {
		b = protowire.AppendTag(b, 2, protowire.BytesType) // ReadEvent.link
		b = protowire.AppendBytes(b, link)
	}
	b = protowire.AppendTag(b, 3, protowire.VarintType) // ReadEvent.commit_position
	b = protowire.AppendVarint(b, pos)
	return b
}

// recordData returns the data field (8) of an encoded RecordedEvent, nil
// if it has none or does not parse.
func recordData(enc []byte) []byte {
	for len(enc) > 0 {
		num, typ, n := protowire.ConsumeTag(enc)
		if n < 0 {
			return nil
		}
		enc = enc[n:]
		if num == 8 && typ == protowire.BytesType {
			v, _ := protowire.ConsumeBytes(enc)
			return v
		}
		if n = protowire.ConsumeFieldValue(num, typ, enc); n < 0 {
			return nil
		}
		enc = enc[n:]
	}
	return nil
}

// Subscription notices as KurrentDB 25.0.1 sends them (streams.proto
// there): CaughtUp and Checkpoint carry the server time, and CaughtUp the
// checkpoint to resume from. The client's v4.2.0 protos predate these
// fields, so they are encoded here; older clients skip them as unknown.

// timestampMsg is a google.protobuf.Timestamp.
func timestampMsg(t time.Time) []byte {
	b := appendInt64Field(nil, 1, t.Unix())
	return appendInt64Field(b, 2, int64(t.Nanosecond()))
}

// positionMsg is ReadResp.Position (and Checkpoint's first two fields).
func positionMsg(pos uint64) []byte {
	b := protowire.AppendTag(nil, 1, protowire.VarintType)
	b = protowire.AppendVarint(b, pos)
	b = protowire.AppendTag(b, 2, protowire.VarintType)
	return protowire.AppendVarint(b, pos)
}

// caughtUpMsg is ReadResp{caught_up: {timestamp, stream_revision or
// position}}. rev < 0 leaves stream_revision out (a $all subscription, or
// a stream one before any event); pos == 0 leaves position out (a stream
// subscription, or a $all one before any event).
func caughtUpMsg(now time.Time, rev int64, pos uint64) rawMsg {
	var in []byte
	in = protowire.AppendTag(in, 1, protowire.BytesType)
	in = protowire.AppendBytes(in, timestampMsg(now))
	if rev >= 0 {
		in = protowire.AppendTag(in, 2, protowire.VarintType)
		in = protowire.AppendVarint(in, uint64(rev))
	}
	if pos != 0 {
		in = protowire.AppendTag(in, 3, protowire.BytesType)
		in = protowire.AppendBytes(in, positionMsg(pos))
	}
	b := protowire.AppendTag(nil, 8, protowire.BytesType) // ReadResp.caught_up
	return protowire.AppendBytes(b, in)
}

// checkpointMsg is ReadResp{checkpoint: {commit_position, prepare_position,
// timestamp}}.
func checkpointMsg(now time.Time, pos uint64) rawMsg {
	in := positionMsg(pos)
	in = protowire.AppendTag(in, 3, protowire.BytesType)
	in = protowire.AppendBytes(in, timestampMsg(now))
	b := protowire.AppendTag(nil, 3, protowire.BytesType) // ReadResp.checkpoint
	return protowire.AppendBytes(b, in)
}

// recordMsg encodes a record as the RecordedEvent message (streams.proto)
// it is stored and sent as, with the system metadata EventStoreDB always
// sends (type, content-type, created). The bytes are what proto.Marshal
// gives (map entries in a fixed order), without its reflection: the writer
// encodes every appended event.
func recordMsg(r *record, isJSON bool, data, meta []byte) []byte {
	ct := "application/octet-stream"
	if isJSON {
		ct = "application/json"
	}
	var created [20]byte
	md := [3][2][]byte{
		{[]byte("type"), []byte(r.typ)},
		{[]byte("content-type"), []byte(ct)},
		{[]byte("created"), strconv.AppendInt(created[:0], r.created, 10)},
	}
	var uid [22]byte // UUID{structured: {most, least}}
	structured := appendInt64Field(appendInt64Field(uid[2:2], 1, int64(binary.BigEndian.Uint64(r.id[:8]))), 2, int64(binary.BigEndian.Uint64(r.id[8:])))
	id := protowire.AppendBytes(protowire.AppendTag(uid[:0:0], 1, protowire.BytesType), structured)

	b := make([]byte, 0, 96+len(id)+len(r.stream)+len(r.typ)+len(data)+len(meta))
	b = protowire.AppendTag(b, 1, protowire.BytesType)
	b = protowire.AppendBytes(b, id)
	b = protowire.AppendTag(b, 2, protowire.BytesType) // StreamIdentifier{stream_name: 3}
	b = protowire.AppendVarint(b, uint64(1+protowire.SizeBytes(len(r.stream))))
	b = protowire.AppendTag(b, 3, protowire.BytesType)
	b = protowire.AppendString(b, r.stream)
	if r.rev != 0 {
		b = protowire.AppendTag(b, 3, protowire.VarintType)
		b = protowire.AppendVarint(b, r.rev)
	}
	for _, field := range []protowire.Number{4, 5} { // prepare, commit position
		b = protowire.AppendTag(b, field, protowire.VarintType)
		b = protowire.AppendVarint(b, r.pos)
	}
	for _, kv := range md {
		b = protowire.AppendTag(b, 6, protowire.BytesType)
		b = protowire.AppendVarint(b, uint64(2+protowire.SizeBytes(len(kv[0]))+protowire.SizeBytes(len(kv[1]))))
		b = protowire.AppendTag(b, 1, protowire.BytesType)
		b = protowire.AppendBytes(b, kv[0])
		b = protowire.AppendTag(b, 2, protowire.BytesType)
		b = protowire.AppendBytes(b, kv[1])
	}
	if len(meta) > 0 {
		b = protowire.AppendTag(b, 7, protowire.BytesType)
		b = protowire.AppendBytes(b, meta)
	}
	if len(data) > 0 {
		b = protowire.AppendTag(b, 8, protowire.BytesType)
		b = protowire.AppendBytes(b, data)
	}
	return b
}

// appendInt64Field appends a proto3 int64 field, omitted when zero.
func appendInt64Field(b []byte, field protowire.Number, v int64) []byte {
	if v == 0 {
		return b
	}
	return protowire.AppendVarint(protowire.AppendTag(b, field, protowire.VarintType), uint64(v))
}

// codec is gRPC's proto codec that also passes rawMsg through.
type codec struct{}

func (codec) Name() string { return "proto" }

func (codec) Marshal(v any) ([]byte, error) {
	switch m := v.(type) {
	case rawMsg:
		return m, nil
	case proto.Message:
		return proto.Marshal(m)
	}
	return nil, fmt.Errorf("esdbserver: cannot encode %T", v)
}

func (codec) Unmarshal(data []byte, v any) error {
	if m, ok := v.(*appendReq); ok {
		return unmarshalAppendReq(data, m)
	}
	m, ok := v.(proto.Message)
	if !ok {
		return fmt.Errorf("esdbserver: cannot decode into %T", v)
	}
	return proto.Unmarshal(data, m)
}

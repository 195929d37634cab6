package esdbserver

import (
	"fmt"

	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"
)

// rawMsg is an already encoded message. Events are stored in their wire
// form, so reads send them without decoding and re-encoding.
type rawMsg []byte

// readEventMsg encodes ReadResp{event: ReadEvent{event: <enc>,
// commit_position: pos}} around a stored RecordedEvent.
func readEventMsg(enc []byte, pos uint64) rawMsg {
	inner := 1 + protowire.SizeBytes(len(enc)) + 1 + protowire.SizeVarint(pos)
	b := make([]byte, 0, 1+protowire.SizeBytes(inner))
	b = protowire.AppendTag(b, 1, protowire.BytesType) // ReadResp.event
	b = protowire.AppendVarint(b, uint64(inner))
	b = protowire.AppendTag(b, 1, protowire.BytesType) // ReadEvent.event
	b = protowire.AppendBytes(b, enc)
	b = protowire.AppendTag(b, 3, protowire.VarintType) // ReadEvent.commit_position
	b = protowire.AppendVarint(b, pos)
	return b
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
	m, ok := v.(proto.Message)
	if !ok {
		return fmt.Errorf("esdbserver: cannot decode into %T", v)
	}
	return proto.Unmarshal(data, m)
}

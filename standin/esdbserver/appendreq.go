package esdbserver

import (
	"encoding/binary"
	"errors"
	"unicode/utf8"

	"github.com/EventStore/EventStore-Client-Go/v4/protos/shared"
	api "github.com/EventStore/EventStore-Client-Go/v4/protos/streams"
	"github.com/google/uuid"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"
)

// appendReq is one AppendReq message as Append needs it: the options (the
// first message) or one proposed event (each later one). The codec decodes
// the shape protobuf encoders produce, one occurrence of each field, without
// reflection; anything else goes through proto.Unmarshal, so both paths
// give the same result for every input.
type appendReq struct {
	options  *appendOptions
	proposed *proposedMsg
}

type appendOptions struct {
	stream []byte
	exp    expectation
	hasExp bool
}

// proposedMsg is a proposed event as received, before proposedEvent checks it.
type proposedMsg struct {
	id            uuid.UUID
	idErr         error // why the id is unusable
	typ, ct       string
	hasTyp, hasCT bool
	data, meta    []byte
}

var errUUIDNotSet = errors.New("uuid not set")

// fromProposed takes what proposedEvent checks from a generated message.
func fromProposed(id *shared.UUID, md map[string]string, data, meta []byte) proposedMsg {
	pm := proposedMsg{data: data, meta: meta}
	pm.id, pm.idErr = parseUUID(id)
	pm.typ, pm.hasTyp = md["type"]
	pm.ct, pm.hasCT = md["content-type"]
	return pm
}

func unmarshalAppendReq(b []byte, m *appendReq) error {
	if decodeAppendReq(b, m) {
		return nil
	}
	req := &api.AppendReq{}
	if err := proto.Unmarshal(b, req); err != nil {
		return err
	}
	*m = appendReq{}
	if o := req.GetOptions(); o != nil {
		m.options = &appendOptions{stream: o.GetStreamIdentifier().GetStreamName()}
		m.options.exp, m.options.hasExp = expectationOf(o, o.GetExpectedStreamRevision() != nil)
	}
	if pm := req.GetProposedMessage(); pm != nil {
		p := fromProposed(pm.GetId(), pm.GetMetadata(), pm.GetData(), pm.GetCustomMetadata())
		m.proposed = &p
	}
	return nil
}

// decodeAppendReq is the fast path; false means "use proto.Unmarshal".
func decodeAppendReq(b []byte, m *appendReq) bool {
	num, body, ok := onlyField(b)
	switch {
	case !ok:
		return false
	case num == 1:
		m.options = &appendOptions{}
		return decodeOptions(body, m.options)
	case num == 2:
		m.proposed = &proposedMsg{idErr: errUUIDNotSet}
		return decodeProposed(body, m.proposed)
	}
	return false
}

// onlyField returns the single length-delimited field that b consists of.
func onlyField(b []byte) (protowire.Number, []byte, bool) {
	num, typ, n := protowire.ConsumeTag(b)
	if n < 0 || typ != protowire.BytesType {
		return 0, nil, false
	}
	v, m := protowire.ConsumeBytes(b[n:])
	return num, v, m >= 0 && n+m == len(b)
}

// fields calls fn for each field of a message body, with a length-delimited
// field's bytes or a varint's value. It fails on other wire types, malformed
// input, a field other than repeated seen twice, or when fn fails.
func fields(b []byte, repeated protowire.Number, fn func(num protowire.Number, v []byte, x uint64, isVarint bool) bool) bool {
	var seen uint64
	for len(b) > 0 {
		num, typ, n := protowire.ConsumeTag(b)
		if n < 0 || num >= 64 || num != repeated && seen&(1<<num) != 0 {
			return false
		}
		seen |= 1 << num
		b = b[n:]
		var v []byte
		var x uint64
		switch typ {
		case protowire.BytesType:
			v, n = protowire.ConsumeBytes(b)
		case protowire.VarintType:
			x, n = protowire.ConsumeVarint(b)
		default:
			return false
		}
		if n < 0 || !fn(num, v, x, typ == protowire.VarintType) {
			return false
		}
		b = b[n:]
	}
	return true
}

func decodeOptions(b []byte, o *appendOptions) bool {
	return fields(b, 0, func(num protowire.Number, v []byte, x uint64, isVarint bool) bool {
		switch {
		case num == 1 && !isVarint: // stream_identifier
			return fields(v, 0, func(num protowire.Number, v []byte, _ uint64, isVarint bool) bool {
				if num != 3 || isVarint {
					return false
				}
				o.stream = v
				return true
			})
		case o.hasExp: // a second expected revision
			return false
		case num == 2 && isVarint:
			o.exp = expectation{kind: expRevision, rev: x}
		case num >= 3 && num <= 5 && !isVarint && len(v) == 0: // no_stream, any, stream_exists
			o.exp = expectation{kind: [...]expKind{expNoStream, expAny, expExists}[num-3]}
		default:
			return false
		}
		o.hasExp = true
		return true
	})
}

func decodeProposed(b []byte, p *proposedMsg) bool {
	return fields(b, 2, func(num protowire.Number, v []byte, _ uint64, isVarint bool) bool {
		if isVarint {
			return false
		}
		switch num {
		case 1:
			return decodeUUID(v, p)
		case 2:
			return decodeMetadata(v, p)
		case 3:
			p.meta = v
		case 4:
			p.data = v
		default:
			return false
		}
		return true
	})
}

// decodeMetadata reads one entry of the metadata map, keeping type and
// content-type. Strings must be valid UTF-8, as proto3 requires.
func decodeMetadata(b []byte, p *proposedMsg) bool {
	var key, value []byte
	ok := fields(b, 0, func(num protowire.Number, v []byte, _ uint64, isVarint bool) bool {
		switch {
		case isVarint || !utf8.Valid(v):
			return false
		case num == 1:
			key = v
		case num == 2:
			value = v
		default:
			return false
		}
		return true
	})
	switch {
	case !ok:
		return false
	case string(key) == "type":
		if p.hasTyp { // a repeated key: proto's last-one-wins is the slow path's job
			return false
		}
		p.typ, p.hasTyp = string(value), true
	case string(key) == "content-type":
		if p.hasCT {
			return false
		}
		p.ct, p.hasCT = string(value), true
	}
	return true
}

func decodeUUID(b []byte, p *proposedMsg) bool {
	return fields(b, 0, func(num protowire.Number, v []byte, _ uint64, isVarint bool) bool {
		if isVarint || p.idErr != errUUIDNotSet {
			return false // one of the oneof's two fields, once
		}
		switch num {
		case 1: // structured
			var id uuid.UUID
			ok := fields(v, 0, func(num protowire.Number, _ []byte, x uint64, isVarint bool) bool {
				if !isVarint || num < 1 || num > 2 {
					return false
				}
				binary.BigEndian.PutUint64(id[8*(num-1):], x)
				return true
			})
			p.id, p.idErr = id, nil
			return ok
		case 2: // string
			if !utf8.Valid(v) {
				return false
			}
			p.id, p.idErr = parseUUIDString(string(v))
			return true
		}
		return false
	})
}

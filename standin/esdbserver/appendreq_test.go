package esdbserver

import (
	"bytes"
	"fmt"
	"math"
	"testing"

	"github.com/EventStore/EventStore-Client-Go/v4/protos/shared"
	api "github.com/EventStore/EventStore-Client-Go/v4/protos/streams"
	"github.com/google/uuid"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"
)

// appendReqSamples are AppendReq messages in every shape the handler
// distinguishes, encoded by proto.Marshal as a client would.
func appendReqSamples() [][]byte {
	id := uuid.MustParse("0190a5c2-7d1e-7c3a-9f00-8a1b2c3d4e5f")
	structured := &shared.UUID{Value: &shared.UUID_Structured_{Structured: &shared.UUID_Structured{
		MostSignificantBits: int64(-8123456789), LeastSignificantBits: math.MaxInt64,
	}}}
	options := func(exp any) *api.AppendReq {
		o := &api.AppendReq_Options{StreamIdentifier: &shared.StreamIdentifier{StreamName: []byte("prescription-ü")}}
		switch e := exp.(type) {
		case uint64:
			o.ExpectedStreamRevision = &api.AppendReq_Options_Revision{Revision: e}
		case string:
			switch e {
			case "no_stream":
				o.ExpectedStreamRevision = &api.AppendReq_Options_NoStream{NoStream: &shared.Empty{}}
			case "any":
				o.ExpectedStreamRevision = &api.AppendReq_Options_Any{Any: &shared.Empty{}}
			case "stream_exists":
				o.ExpectedStreamRevision = &api.AppendReq_Options_StreamExists{StreamExists: &shared.Empty{}}
			}
		}
		return &api.AppendReq{Content: &api.AppendReq_Options_{Options: o}}
	}
	proposed := func(id *shared.UUID, md map[string]string, data, meta []byte) *api.AppendReq {
		return &api.AppendReq{Content: &api.AppendReq_ProposedMessage_{ProposedMessage: &api.AppendReq_ProposedMessage{
			Id: id, Metadata: md, Data: data, CustomMetadata: meta,
		}}}
	}
	json := map[string]string{"type": "PrescriptionRequested", "content-type": "application/json"}
	msgs := []*api.AppendReq{
		options(uint64(0)), options(uint64(41)), options(uint64(math.MaxUint64)),
		options("no_stream"), options("any"), options("stream_exists"), options(nil),
		{Content: &api.AppendReq_Options_{Options: &api.AppendReq_Options{}}},
		proposed(&shared.UUID{Value: &shared.UUID_String_{String_: id.String()}}, json, []byte(`{"a":1}`), []byte(`{"m":1}`)),
		proposed(structured, json, nil, nil),
		proposed(&shared.UUID{Value: &shared.UUID_Structured_{Structured: &shared.UUID_Structured{}}}, json, []byte{1}, nil),
		proposed(&shared.UUID{Value: &shared.UUID_String_{String_: "not-a-uuid"}}, json, nil, nil),
		proposed(&shared.UUID{}, json, nil, nil),
		proposed(nil, json, nil, nil),
		proposed(structured, map[string]string{"type": "", "content-type": "application/octet-stream", "extra": "x"}, nil, nil),
		proposed(structured, map[string]string{"content-type": "application/json"}, nil, nil),
		proposed(structured, nil, nil, nil),
		{},
	}
	out := make([][]byte, len(msgs))
	for i, m := range msgs {
		b, err := proto.Marshal(m)
		if err != nil {
			panic(err)
		}
		out[i] = b
	}
	return out
}

// viaProto decodes b the slow way: proto.Unmarshal, then the fallback's
// conversion, forced by an unknown field the fast path refuses.
func viaProto(b []byte) (appendReq, error) {
	var m appendReq
	if err := proto.Unmarshal(b, &api.AppendReq{}); err != nil {
		return m, err
	}
	unknown := protowire.AppendVarint(protowire.AppendTag(nil, 1023, protowire.VarintType), 1)
	if decodeAppendReq(append(bytes.Clone(b), unknown...), &appendReq{}) {
		return m, fmt.Errorf("the fast path took an unknown field")
	}
	err := unmarshalAppendReq(append(bytes.Clone(b), unknown...), &m)
	return m, err
}

func sameAppendReq(a, b appendReq) error {
	switch {
	case (a.options == nil) != (b.options == nil) || (a.proposed == nil) != (b.proposed == nil):
		return fmt.Errorf("options %v/%v, proposed %v/%v", a.options != nil, b.options != nil, a.proposed != nil, b.proposed != nil)
	case a.options != nil && (!bytes.Equal(a.options.stream, b.options.stream) || a.options.exp != b.options.exp || a.options.hasExp != b.options.hasExp):
		return fmt.Errorf("options %+v, want %+v", *a.options, *b.options)
	case a.proposed != nil:
		p, q := a.proposed, b.proposed
		if p.id != q.id || fmt.Sprint(p.idErr) != fmt.Sprint(q.idErr) || p.typ != q.typ || p.ct != q.ct ||
			p.hasTyp != q.hasTyp || p.hasCT != q.hasCT || !bytes.Equal(p.data, q.data) || !bytes.Equal(p.meta, q.meta) {
			return fmt.Errorf("proposed %+v, want %+v", *p, *q)
		}
	}
	return nil
}

// TestDecodeAppendReq: every message a client encodes takes the fast path
// and decodes exactly as through proto.Unmarshal.
func TestDecodeAppendReq(t *testing.T) {
	for i, b := range appendReqSamples() {
		var fast appendReq
		if !decodeAppendReq(b, &fast) && len(b) > 0 {
			t.Errorf("sample %d (%x): not taken by the fast path", i, b)
			continue
		}
		slow, err := viaProto(b)
		if err != nil {
			t.Fatalf("sample %d: %v", i, err)
		}
		if err := sameAppendReq(fast, slow); err != nil {
			t.Errorf("sample %d: %v", i, err)
		}
	}
}

// TestDecodeAppendReqFallsBack: inputs outside the fast path's shape
// (repeated fields, unknown fields, bad UTF-8, truncation) still decode, or
// fail, exactly as proto.Unmarshal does.
func TestDecodeAppendReqFallsBack(t *testing.T) {
	samples := appendReqSamples()
	opts, prop := samples[0], samples[8]
	twice := append(append([]byte(nil), opts...), samples[3]...) // options twice: merged
	_, body, _ := onlyField(prop)
	dupKey := protowire.AppendTag(bytes.Clone(body), 2, protowire.BytesType)
	entry := protowire.AppendString(protowire.AppendTag(nil, 1, protowire.BytesType), "type")
	entry = protowire.AppendString(protowire.AppendTag(entry, 2, protowire.BytesType), "Second")
	dupKey = protowire.AppendBytes(dupKey, entry)
	dupKey = protowire.AppendBytes(protowire.AppendTag(nil, 2, protowire.BytesType), dupKey)
	badUTF8 := bytes.Replace(append([]byte(nil), prop...), []byte("PrescriptionRequested"), []byte("Prescription\xffequested"), 1)
	for name, b := range map[string][]byte{
		"options twice":    twice,
		"duplicate key":    dupKey,
		"invalid UTF-8":    badUTF8,
		"truncated":        prop[:len(prop)-3],
		"unknown field":    append(append([]byte(nil), opts...), 0x18, 1),
		"group wire type":  {0x0b, 0x0c},
		"options as int":   {0x08, 0x01},
		"proposed unknown": protowire.AppendBytes(protowire.AppendTag(nil, 2, protowire.BytesType), []byte{0x28, 7}),
	} {
		if decodeAppendReq(b, &appendReq{}) {
			t.Errorf("%s: taken by the fast path", name)
		}
		var got appendReq
		gotErr := unmarshalAppendReq(b, &got)
		want, wantErr := viaProto(b)
		if (gotErr == nil) != (wantErr == nil) {
			t.Errorf("%s: error %v, proto says %v", name, gotErr, wantErr)
			continue
		}
		if gotErr == nil {
			if err := sameAppendReq(got, want); err != nil {
				t.Errorf("%s: %v", name, err)
			}
		}
	}
}

// FuzzDecodeAppendReq: whatever the bytes, the fast path either declines or
// agrees with proto.Unmarshal.
func FuzzDecodeAppendReq(f *testing.F) {
	for _, b := range appendReqSamples() {
		f.Add(b)
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		var fast appendReq
		if !decodeAppendReq(b, &fast) {
			return
		}
		slow, err := viaProto(b)
		if err != nil {
			t.Fatalf("fast path took %x, proto refuses it: %v", b, err)
		}
		if err := sameAppendReq(fast, slow); err != nil {
			t.Fatalf("%x: %v", b, err)
		}
	})
}

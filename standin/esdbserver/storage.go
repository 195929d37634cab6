package esdbserver

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strconv"

	"github.com/EventStore/EventStore-Client-Go/v4/protos/shared"
	api "github.com/EventStore/EventStore-Client-Go/v4/protos/streams"
	"github.com/cockroachdb/pebble/v2"

	"github.com/google/uuid"
	"google.golang.org/protobuf/proto"
	"rxflow/infra/pebbledb"
)

// The data directory is a Pebble store: key = $all position (8 bytes big
// endian), value = the event as EventStoreDB's own RecordedEvent protobuf
// message (streams.proto), so no file format is invented here.

// legacyFile is the single-file store of earlier versions (bbolt).
const legacyFile = "esdb.bolt"

// firstPos is the position of the first event; no event sits at 0, so a
// read or subscription from Position{0,0} covers everything.
const firstPos = 1

// recordSize is the room a record takes in the virtual log: positions grow
// by it, so they are increasing but, as in EventStoreDB, not contiguous.
func recordSize(stream, typ string, data, meta []byte) uint64 {
	return uint64(64 + len(stream) + len(typ) + len(data) + len(meta))
}

// storage is the durable side: Pebble when a data dir is set, nothing (the
// records keep their payload) in memory mode.
type storage struct {
	db *pebble.DB
}

func openStorage(dir string, log *slog.Logger) (*storage, error) {
	if dir == "" {
		return &storage{}, nil
	}
	if _, err := os.Stat(filepath.Join(dir, legacyFile)); err == nil {
		return nil, fmt.Errorf("%s holds %s, a store written by an earlier version; move it away or use another data dir", dir, legacyFile)
	}
	db, err := pebbledb.Open(dir, "esdbserver", log)
	if err != nil {
		return nil, fmt.Errorf("open %s (is another server using it?): %w", dir, err)
	}
	return &storage{db: db}, nil
}

func (st *storage) inMemory() bool { return st.db == nil }

func posKey(pos uint64) []byte {
	var k [8]byte
	binary.BigEndian.PutUint64(k[:], pos)
	return k[:]
}

// load replays every stored record in position order and returns the
// position the next record gets.
func (st *storage) load(apply func(r *record, data []byte) error) (uint64, error) {
	next := uint64(firstPos)
	if st.inMemory() {
		return next, nil
	}
	it, err := st.db.NewIter(nil)
	if err != nil {
		return 0, err
	}
	defer it.Close()
	for it.First(); it.Valid(); it.Next() {
		k := it.Key()
		if len(k) != 8 {
			return 0, fmt.Errorf("bad key %x", k)
		}
		pos := binary.BigEndian.Uint64(k)
		v, err := it.ValueAndErr()
		if err != nil {
			return 0, fmt.Errorf("record at %d: %w", pos, err)
		}
		r, data, meta, err := decodeRecord(v) // copies: v is only valid until Next
		if err != nil {
			return 0, fmt.Errorf("record at %d: %w", pos, err)
		}
		if r.pos != pos || r.pos < next {
			return 0, fmt.Errorf("record at %d: position %d out of order", pos, r.pos)
		}
		next = r.pos + recordSize(r.stream, r.typ, data, meta)
		if err := apply(r, data); err != nil {
			return 0, err
		}
	}
	return next, it.Error()
}

// write hands the records to Pebble's write-ahead log and returns at once;
// wait returns when they are fsync'd. Pebble syncs the log for every batch
// handed to it meanwhile at once, so concurrent appends share an fsync
// while the next batch is being written.
func (st *storage) write(recs []newRecord) (wait func() error, err error) {
	if st.inMemory() || len(recs) == 0 {
		return nil, nil
	}
	b := st.db.NewBatch()
	for _, n := range recs {
		if err := b.Set(posKey(n.rec.pos), n.enc, nil); err != nil {
			_ = b.Close()
			return nil, err
		}
	}
	if err := st.db.ApplyNoSyncWait(b, pebble.Sync); err != nil {
		_ = b.Close()
		return nil, err
	}
	return func() error {
		defer b.Close()
		return b.SyncWait()
	}, nil
}

// each calls fn with the wire form (RecordedEvent) of each durable record,
// in the order given; enc is only valid during the call.
func (st *storage) each(recs []*record, fn func(i int, enc []byte)) error {
	if st.inMemory() {
		for i, r := range recs {
			fn(i, r.enc)
		}
		return nil
	}
	if len(recs) == 0 {
		return nil
	}
	// One iterator: a page of $all is a run of consecutive keys, so after
	// the first seek each record is the next key.
	lo, hi := recs[0].pos, recs[0].pos
	for _, r := range recs {
		lo, hi = min(lo, r.pos), max(hi, r.pos)
	}
	it, err := st.db.NewIter(&pebble.IterOptions{LowerBound: posKey(lo), UpperBound: posKey(hi + 1)})
	if err != nil {
		return err
	}
	defer it.Close()
	for i, r := range recs {
		k := posKey(r.pos)
		next := i > 0 && r.pos > recs[i-1].pos && it.Next() && bytes.Equal(it.Key(), k)
		if !next && !(it.SeekGE(k) && bytes.Equal(it.Key(), k)) {
			return errors.Join(fmt.Errorf("record at %d missing", r.pos), it.Error())
		}
		v, err := it.ValueAndErr()
		if err != nil {
			return fmt.Errorf("record at %d: %w", r.pos, err)
		}
		fn(i, v)
	}
	return nil
}

func (st *storage) close() error {
	if st.inMemory() {
		return nil
	}
	return st.db.Close()
}

func wireUUID(id uuid.UUID, asString bool) *shared.UUID {
	if asString {
		return &shared.UUID{Value: &shared.UUID_String_{String_: id.String()}}
	}
	return &shared.UUID{Value: &shared.UUID_Structured_{Structured: &shared.UUID_Structured{
		MostSignificantBits:  int64(binary.BigEndian.Uint64(id[:8])),
		LeastSignificantBits: int64(binary.BigEndian.Uint64(id[8:])),
	}}}
}

func decodeRecord(v []byte) (*record, []byte, []byte, error) {
	ev := &api.ReadResp_ReadEvent_RecordedEvent{}
	if err := proto.Unmarshal(v, ev); err != nil {
		return nil, nil, nil, err
	}
	id, err := parseUUID(ev.GetId())
	if err != nil {
		return nil, nil, nil, err
	}
	md := ev.GetMetadata()
	created, err := strconv.ParseInt(md["created"], 10, 64)
	if err != nil {
		return nil, nil, nil, fmt.Errorf("created: %w", err)
	}
	if ev.GetCommitPosition() != ev.GetPreparePosition() {
		return nil, nil, nil, errors.New("commit and prepare positions differ")
	}
	r := &record{
		pos:     ev.GetCommitPosition(),
		stream:  string(ev.GetStreamIdentifier().GetStreamName()),
		rev:     ev.GetStreamRevision(),
		id:      id,
		typ:     md["type"],
		created: created,
	}
	return r, ev.GetData(), ev.GetCustomMetadata(), nil
}

// parseUUID accepts both wire forms of an event id.
func parseUUID(u *shared.UUID) (uuid.UUID, error) {
	switch v := u.GetValue().(type) {
	case *shared.UUID_Structured_:
		var id uuid.UUID
		binary.BigEndian.PutUint64(id[:8], uint64(v.Structured.GetMostSignificantBits()))
		binary.BigEndian.PutUint64(id[8:], uint64(v.Structured.GetLeastSignificantBits()))
		return id, nil
	case *shared.UUID_String_:
		return parseUUIDString(v.String_)
	default:
		return uuid.Nil, errUUIDNotSet
	}
}

func parseUUIDString(s string) (uuid.UUID, error) {
	id, err := uuid.Parse(s)
	if err != nil {
		return uuid.Nil, fmt.Errorf("bad uuid %q: %w", s, err)
	}
	return id, nil
}

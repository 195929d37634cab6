package esdbserver

import (
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"time"

	"github.com/EventStore/EventStore-Client-Go/v4/protos/shared"
	api "github.com/EventStore/EventStore-Client-Go/v4/protos/streams"
	"github.com/google/uuid"
	bolt "go.etcd.io/bbolt"
	"google.golang.org/protobuf/proto"
)

// The bbolt file holds one bucket, "log": key = $all position (8 bytes big
// endian), value = the event as EventStoreDB's own RecordedEvent protobuf
// message (streams.proto), so no file format is invented here.
const dbFile = "esdb.bolt"

var bucketLog = []byte("log")

// firstPos is the position of the first event; no event sits at 0, so a
// read or subscription from Position{0,0} covers everything.
const firstPos = 1

// recordSize is the room a record takes in the virtual log: positions grow
// by it, so they are increasing but, as in EventStoreDB, not contiguous.
func recordSize(stream, typ string, data, meta []byte) uint64 {
	return uint64(64 + len(stream) + len(typ) + len(data) + len(meta))
}

// storage is the durable side: bbolt when a data dir is set, nothing (the
// records keep their payload) in memory mode.
type storage struct {
	db *bolt.DB
}

func openStorage(dir string) (*storage, error) {
	if dir == "" {
		return &storage{}, nil
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("create data dir: %w", err)
	}
	db, err := bolt.Open(filepath.Join(dir, dbFile), 0o600, &bolt.Options{
		Timeout:        time.Second,
		NoFreelistSync: true,
		FreelistType:   bolt.FreelistMapType,
	})
	if err != nil {
		return nil, fmt.Errorf("open %s: %w", filepath.Join(dir, dbFile), err)
	}
	if err := db.Update(func(tx *bolt.Tx) error {
		_, err := tx.CreateBucketIfNotExists(bucketLog)
		return err
	}); err != nil {
		_ = db.Close()
		return nil, fmt.Errorf("init bucket: %w", err)
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
	err := st.db.View(func(tx *bolt.Tx) error {
		return tx.Bucket(bucketLog).ForEach(func(k, v []byte) error {
			if len(k) != 8 {
				return fmt.Errorf("bad key %x", k)
			}
			r, data, meta, err := decodeRecord(v)
			if err != nil {
				return fmt.Errorf("record at %d: %w", binary.BigEndian.Uint64(k), err)
			}
			if r.pos != binary.BigEndian.Uint64(k) || r.pos < next {
				return fmt.Errorf("record at %d: position %d out of order", binary.BigEndian.Uint64(k), r.pos)
			}
			next = r.pos + recordSize(r.stream, r.typ, data, meta)
			return apply(r, data)
		})
	})
	return next, err
}

// commit makes the records durable in one fsync'd transaction.
func (st *storage) commit(recs []newRecord) error {
	if st.inMemory() || len(recs) == 0 {
		return nil
	}
	return st.db.Update(func(tx *bolt.Tx) error {
		b := tx.Bucket(bucketLog)
		b.FillPercent = 1 // keys only ever grow
		for _, n := range recs {
			if err := b.Put(posKey(n.rec.pos), n.enc); err != nil {
				return err
			}
		}
		return nil
	})
}

// events returns the wire form (RecordedEvent) of committed records; with
// uuidString the event id is re-encoded as a string.
func (st *storage) events(recs []*record, uuidString bool) ([][]byte, error) {
	out := make([][]byte, len(recs))
	if st.inMemory() {
		for i, r := range recs {
			out[i] = r.enc
		}
	} else if err := st.db.View(func(tx *bolt.Tx) error {
		b := tx.Bucket(bucketLog)
		for i, r := range recs {
			v := b.Get(posKey(r.pos))
			if v == nil {
				return fmt.Errorf("record at %d missing", r.pos)
			}
			out[i] = append([]byte(nil), v...)
		}
		return nil
	}); err != nil {
		return nil, err
	}
	if !uuidString {
		return out, nil
	}
	for i, v := range out {
		ev := &api.ReadResp_ReadEvent_RecordedEvent{}
		if err := proto.Unmarshal(v, ev); err != nil {
			return nil, fmt.Errorf("record at %d: %w", recs[i].pos, err)
		}
		ev.Id = wireUUID(recs[i].id, true)
		enc, err := proto.Marshal(ev)
		if err != nil {
			return nil, err
		}
		out[i] = enc
	}
	return out, nil
}

func (st *storage) close() error {
	if st.inMemory() {
		return nil
	}
	return st.db.Close()
}

// encodeRecord builds the wire form, with the system metadata EventStoreDB
// always sends (type, content-type, created).
func encodeRecord(r *record, isJSON bool, data, meta []byte) ([]byte, error) {
	ct := "application/octet-stream"
	if isJSON {
		ct = "application/json"
	}
	return proto.Marshal(&api.ReadResp_ReadEvent_RecordedEvent{
		Id:               wireUUID(r.id, false),
		StreamIdentifier: &shared.StreamIdentifier{StreamName: []byte(r.stream)},
		StreamRevision:   r.rev,
		PreparePosition:  r.pos,
		CommitPosition:   r.pos,
		Metadata: map[string]string{
			"type":         r.typ,
			"content-type": ct,
			"created":      strconv.FormatInt(r.created, 10),
		},
		CustomMetadata: meta,
		Data:           data,
	})
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
		id, err := uuid.Parse(v.String_)
		if err != nil {
			return uuid.Nil, fmt.Errorf("bad uuid %q: %w", v.String_, err)
		}
		return id, nil
	default:
		return uuid.Nil, errors.New("uuid not set")
	}
}

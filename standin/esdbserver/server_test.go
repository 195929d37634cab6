package esdbserver

import (
	"context"
	"errors"
	"fmt"
	dto "github.com/prometheus/client_model/go"
	"io"
	"log/slog"
	"sync"
	"testing"
	"time"

	"github.com/EventStore/EventStore-Client-Go/v4/esdb"
	"github.com/google/uuid"
)

func quietLogger() *slog.Logger {
	return slog.New(slog.NewTextHandler(io.Discard, nil))
}

func start(t *testing.T, dir string) *Server {
	t.Helper()
	s, err := Start(Config{Addr: "127.0.0.1:0", DataDir: dir, Logger: quietLogger()})
	if err != nil {
		t.Fatalf("start: %v", err)
	}
	t.Cleanup(func() { _ = s.Close() })
	return s
}

func connect(t *testing.T, s *Server) *esdb.Client {
	t.Helper()
	cfg, err := esdb.ParseConnectionString(s.ConnectionString())
	if err != nil {
		t.Fatalf("parse: %v", err)
	}
	c, err := esdb.NewClient(cfg)
	if err != nil {
		t.Fatalf("client: %v", err)
	}
	t.Cleanup(func() { _ = c.Close() })
	return c
}

func ev(typ string) esdb.EventData {
	return esdb.EventData{EventID: uuid.New(), EventType: typ, ContentType: esdb.ContentTypeJson, Data: []byte(`{"a":1}`), Metadata: []byte("m")}
}

func readAll(t *testing.T, rs *esdb.ReadStream, err error) ([]*esdb.ResolvedEvent, error) {
	t.Helper()
	if err != nil {
		return nil, err
	}
	defer rs.Close()
	var out []*esdb.ResolvedEvent
	for {
		e, err := rs.Recv()
		if errors.Is(err, io.EOF) {
			return out, nil
		}
		if err != nil {
			return out, err
		}
		out = append(out, e)
	}
}

func ctx(t *testing.T) context.Context {
	c, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	return c
}

func TestAppendRead(t *testing.T) {
	c := connect(t, start(t, ""))
	r1, err := c.AppendToStream(ctx(t), "s-1", esdb.AppendToStreamOptions{ExpectedRevision: esdb.NoStream{}}, ev("A"), ev("B"))
	if err != nil {
		t.Fatal(err)
	}
	if r1.NextExpectedVersion != 1 || r1.CommitPosition == 0 {
		t.Fatalf("result %+v", r1)
	}
	rs, err := c.ReadStream(ctx(t), "s-1", esdb.ReadStreamOptions{}, 10)
	got, err := readAll(t, rs, err)
	if err != nil || len(got) != 2 {
		t.Fatalf("read: %v %d", err, len(got))
	}
	if got[1].Event.Position.Commit != r1.CommitPosition || got[0].Event.EventType != "A" || string(got[0].Event.UserMetadata) != "m" {
		t.Fatalf("event %+v", got[1].Event)
	}
	_, err = c.AppendToStream(ctx(t), "s-1", esdb.AppendToStreamOptions{ExpectedRevision: esdb.NoStream{}}, ev("C"))
	var e *esdb.Error
	if !errors.As(err, &e) || e.Code() != esdb.ErrorCodeWrongExpectedVersion {
		t.Fatalf("want WEV, got %v", err)
	}
	rs, err = c.ReadStream(ctx(t), "nope", esdb.ReadStreamOptions{}, 10)
	if _, err = readAll(t, rs, err); !errors.As(err, &e) || e.Code() != esdb.ErrorCodeResourceNotFound {
		t.Fatalf("want not found, got %v", err)
	}
}

// TestGroupCommit appends from many goroutines at once, some racing on the
// same stream with exact expected revisions: every acknowledged append must
// be in the log exactly once, revisions contiguous, positions increasing.
func TestGroupCommit(t *testing.T) {
	s := start(t, t.TempDir())
	c := connect(t, s)
	const writers, perWriter = 16, 40
	var wg sync.WaitGroup
	var mu sync.Mutex
	acked := map[string]int{}
	for w := range writers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			own := fmt.Sprintf("own-%d", w)
			for i := range perWriter {
				var exp esdb.ExpectedRevision = esdb.StreamRevision{Value: uint64(i) - 1}
				if i == 0 {
					exp = esdb.NoStream{}
				}
				if _, err := c.AppendToStream(ctx(t), own, esdb.AppendToStreamOptions{ExpectedRevision: exp}, ev("E")); err != nil {
					t.Errorf("append %s/%d: %v", own, i, err)
					return
				}
				// All writers race for the next revision of "shared".
				for {
					rs, err := c.ReadStream(ctx(t), "shared", esdb.ReadStreamOptions{Direction: esdb.Backwards, From: esdb.End{}}, 1)
					last, err := readAll(t, rs, err)
					var exp esdb.ExpectedRevision = esdb.NoStream{}
					if err == nil && len(last) == 1 {
						exp = esdb.StreamRevision{Value: last[0].Event.EventNumber}
					}
					_, err = c.AppendToStream(ctx(t), "shared", esdb.AppendToStreamOptions{ExpectedRevision: exp}, ev("S"))
					if err == nil {
						mu.Lock()
						acked["shared"]++
						mu.Unlock()
						break
					}
					var e *esdb.Error
					if !errors.As(err, &e) || e.Code() != esdb.ErrorCodeWrongExpectedVersion {
						t.Errorf("shared: %v", err)
						return
					}
				}
			}
		}()
	}
	wg.Wait()
	if t.Failed() {
		return
	}
	rs, err := c.ReadAll(ctx(t), esdb.ReadAllOptions{}, 1<<20)
	all, err := readAll(t, rs, err)
	if err != nil {
		t.Fatal(err)
	}
	revs := map[string]uint64{}
	var prev uint64
	for _, e := range all {
		if e.Event.Position.Commit <= prev || e.Event.Position.Commit != e.Event.Position.Prepare {
			t.Fatalf("position %v after %d", e.Event.Position, prev)
		}
		prev = e.Event.Position.Commit
		if e.Event.EventNumber != revs[e.Event.StreamID] {
			t.Fatalf("%s: revision %d, want %d", e.Event.StreamID, e.Event.EventNumber, revs[e.Event.StreamID])
		}
		revs[e.Event.StreamID]++
	}
	if revs["shared"] != uint64(acked["shared"]) || acked["shared"] != writers*perWriter {
		t.Fatalf("shared has %d events, %d acked", revs["shared"], acked["shared"])
	}
}

// TestAppendsShareFsyncs: 16 writers appending at once, one event per
// append, need far fewer log fsyncs than appends (group commit).
func TestAppendsShareFsyncs(t *testing.T) {
	s := start(t, t.TempDir())
	c := connect(t, s)
	const writers, perWriter = 16, 50
	var wg sync.WaitGroup
	for w := range writers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range perWriter {
				if _, err := c.AppendToStream(ctx(t), fmt.Sprintf("fsync-%d", w), esdb.AppendToStreamOptions{}, ev("E")); err != nil {
					t.Errorf("append: %v", err)
					return
				}
			}
		}()
	}
	wg.Wait()
	m := &dto.Metric{}
	if err := s.st.db.Metrics().LogWriter.FsyncLatency.Write(m); err != nil {
		t.Fatal(err)
	}
	syncs := m.GetHistogram().GetSampleCount()
	t.Logf("%d log fsyncs for %d appends", syncs, writers*perWriter)
	if syncs == 0 || 2*syncs > writers*perWriter {
		t.Fatalf("%d log fsyncs for %d appends: want at least two appends per fsync", syncs, writers*perWriter)
	}
}

package esdbtest

import (
	"context"
	"errors"
	"io"
	"testing"

	"github.com/EventStore/EventStore-Client-Go/v4/esdb"
	"github.com/google/uuid"
)

// currentRevision returns the stream's last revision, or -1 if it does not exist.
func currentRevision(ctx context.Context, client *esdb.Client, stream string) (int64, error) {
	rs, err := client.ReadStream(ctx, stream, esdb.ReadStreamOptions{Direction: esdb.Backwards, From: esdb.End{}}, 1)
	if err != nil {
		return 0, err
	}
	defer rs.Close()
	ev, err := rs.Recv()
	if code, ok := esdbCode(err); ok && code == esdb.ErrorCodeResourceNotFound {
		return -1, nil
	}
	if errors.Is(err, io.EOF) {
		return -1, nil
	}
	if err != nil {
		return 0, err
	}
	return int64(ev.OriginalEvent().EventNumber), nil
}

func (s *suite) concurrencyTests() []namedTest {
	return []namedTest{
		{"SixteenWritersExactRevisions", s.testSixteenWriters},
	}
}

// testSixteenWriters races 16 writers that each read the stream's current
// revision and append one event expecting it. Exactly one writer may win each
// revision, every win must land right after its expectation, and the stream
// must end up contiguous with exactly the winners' events.
func (s *suite) testSixteenWriters(t *testing.T) {
	const writers, revisions = 16, 160
	stream := streamName("race")
	ctx, cancel := context.WithTimeout(context.Background(), 4*opTimeout)
	defer cancel()

	type win struct {
		expected int64
		revision uint64
		id       uuid.UUID
	}
	wins := make(chan win, revisions)
	errs := make(chan error, writers)
	for w := 0; w < writers; w++ {
		go func() {
			for {
				cur, err := currentRevision(ctx, s.client, stream)
				if err != nil {
					errs <- err
					return
				}
				if cur >= revisions-1 {
					errs <- nil
					return
				}
				var expected esdb.ExpectedRevision = esdb.NoStream{}
				if cur >= 0 {
					expected = esdb.Revision(uint64(cur))
				}
				ev := newEvent("RaceTested")
				res, err := s.client.AppendToStream(ctx, stream, esdb.AppendToStreamOptions{ExpectedRevision: expected}, ev)
				if code, ok := esdbCode(err); ok && code == esdb.ErrorCodeWrongExpectedVersion {
					continue
				}
				if err != nil {
					errs <- err
					return
				}
				select {
				case wins <- win{cur, res.NextExpectedVersion, ev.EventID}:
				default:
					errs <- errors.New("more successful appends than revisions")
					return
				}
			}
		}()
	}
	for w := 0; w < writers; w++ {
		if err := <-errs; err != nil {
			t.Fatalf("writer: %v", err)
		}
	}
	close(wins)

	winners := make([]uuid.UUID, revisions)
	for wn := range wins {
		if int64(wn.revision) != wn.expected+1 {
			t.Fatalf("append expecting %d landed at revision %d", wn.expected, wn.revision)
		}
		if wn.revision >= revisions || winners[wn.revision] != uuid.Nil {
			t.Fatalf("revision %d won twice or out of range", wn.revision)
		}
		winners[wn.revision] = wn.id
	}
	got := s.mustReadStream(t, stream, esdb.ReadStreamOptions{}, revisions+10)
	if len(got) != revisions {
		t.Fatalf("stream holds %d events, want %d", len(got), revisions)
	}
	for i, ev := range got {
		rec := ev.OriginalEvent()
		if rec.EventNumber != uint64(i) || rec.EventID != winners[i] {
			t.Fatalf("position %d: got %s@%d, want winner %s@%d", i, rec.EventID, rec.EventNumber, winners[i], i)
		}
	}
}

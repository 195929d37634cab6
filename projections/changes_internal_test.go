package projections

import (
	"context"
	"reflect"
	"testing"
	"time"

	"rxflow/domain"
	"rxflow/events"
)

// streams is a History over fixed streams that counts its reads.
type streams struct {
	recs  []events.Recorded
	loads int
}

func (s *streams) Load(_ context.Context, urn string) ([]events.Recorded, error) {
	s.loads++
	var out []events.Recorded
	for _, r := range s.recs {
		if r.URN == urn {
			out = append(out, r)
		}
	}
	return out, nil
}

func stream(urn string, evs ...domain.Event) []events.Recorded {
	out := make([]events.Recorded, len(evs))
	for i, e := range evs {
		out[i] = events.Recorded{URN: urn, Revision: uint64(i), Position: uint64(100 + i), Event: e}
	}
	return out
}

// The change around each event, followed from the stream's start, is the
// one read from the stream, without reading it; an event that does not
// follow on from what is kept (handed again, or first seen mid-stream) is
// read from the stream; a final state is not kept.
func TestChangesFoldWhatTheyAreHanded(t *testing.T) {
	at := time.Date(2026, 12, 2, 9, 0, 0, 0, time.UTC)
	recs := stream("urn:rx:1",
		domain.Requested{URN: "urn:rx:1", PatientID: "p", PrescriberID: "d", At: at},
		domain.Refused{Command: domain.Dispense, Code: domain.ReasonFinalState, Status: domain.StatusRequested, At: at},
		domain.Approved{ApprovedBy: "d", At: at},
		domain.ProcessingStarted{PharmacyID: "ph", At: at},
	)
	want := func(rec events.Recorded) Change {
		t.Helper()
		c, err := loadChange(context.Background(), &streams{recs: recs}, rec)
		if err != nil {
			t.Fatal(err)
		}
		return c
	}
	h := &streams{recs: recs}
	c := newChanges(h)
	for _, rec := range recs {
		got, err := c.follow(context.Background(), rec, true)
		if err != nil || !reflect.DeepEqual(got, want(rec)) {
			t.Fatalf("change at revision %d: %+v (%v), want %+v", rec.Revision, got, err, want(rec))
		}
	}
	if h.loads != 0 {
		t.Fatalf("followed from its start, the stream was read %d times", h.loads)
	}

	// Handed again after a resubscription: read, and right.
	if got, err := c.follow(context.Background(), recs[2], true); err != nil || !reflect.DeepEqual(got, want(recs[2])) || h.loads != 1 {
		t.Fatalf("an event handed again: %+v (%v), %d reads; want %+v from one read", got, err, h.loads, want(recs[2]))
	}
	// First seen mid-stream: an event not needed reads nothing and keeps
	// nothing; the next needed one is read.
	mid := newChanges(h)
	if got, err := mid.follow(context.Background(), recs[1], false); err != nil || !reflect.DeepEqual(got, Change{}) || h.loads != 1 {
		t.Fatalf("an event not needed, mid-stream: %+v (%v), %d reads", got, err, h.loads)
	}
	if got, err := mid.follow(context.Background(), recs[2], true); err != nil || !reflect.DeepEqual(got, want(recs[2])) || h.loads != 2 {
		t.Fatalf("the first needed event mid-stream: %+v (%v), %d reads; want %+v from one read", got, err, h.loads, want(recs[2]))
	}
	if got, err := mid.follow(context.Background(), recs[3], true); err != nil || !reflect.DeepEqual(got, want(recs[3])) || h.loads != 2 {
		t.Fatalf("the next event: %+v (%v), %d reads; want %+v without a read", got, err, h.loads, want(recs[3]))
	}

	rejected := stream("urn:rx:2",
		domain.Requested{URN: "urn:rx:2", PatientID: "p", PrescriberID: "d", At: at},
		domain.Rejected{RejectedBy: "d", Reason: "no", At: at})
	for _, rec := range rejected {
		if _, err := c.follow(context.Background(), rec, false); err != nil {
			t.Fatal(err)
		}
	}
	if _, kept := c.kept.Get("urn:rx:2"); kept {
		t.Fatal("a prescription in a final state is kept")
	}
}

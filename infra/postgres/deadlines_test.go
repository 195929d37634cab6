package postgres_test

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"sync"
	"testing"
	"time"

	"rxflow/domain"
	"rxflow/events"
	"rxflow/projections"
)

// sent keeps what the scheduler publishes, in memory.
type sent struct {
	mu   sync.Mutex
	msgs []projections.Outbound
}

func (s *sent) Publish(_ context.Context, msgs ...projections.Outbound) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.msgs = append(s.msgs, msgs...)
	return nil
}

// The deadline scheduler runs on PostgreSQL: the due deadlines from the
// read model's index, its memory of sent commands in the ledger under
// segment 0's lease. A scheduler whose lease was claimed since records
// nothing (its command is a duplicate for the processor).
func TestDeadlineSchedulerOnPostgres(t *testing.T) {
	db := openDB(t)
	ctx := context.Background()
	lease := claim(t, db, 0, 1)
	at := time.Date(2026, 11, 29, 10, 0, 0, 0, time.UTC)
	requested := domain.Requested{URN: "urn:rx:due", PatientID: "p", PrescriberID: "d", Medication: domain.Medication{Name: "m", Quantity: 1}, At: at}
	if err := db.ReadModel(lease).Apply(ctx, events.Recorded{URN: requested.URN, Event: requested, Position: 10}); err != nil {
		t.Fatal(err)
	}
	now := at.Add(49 * time.Hour) // approval-overdue is due after 48h
	clock := func() time.Time { return now }
	pub := &sent{}
	quiet := slog.New(slog.NewTextHandler(io.Discard, nil))
	newScheduler := func(l projections.Lease) *projections.DeadlineScheduler {
		s, err := projections.NewDeadlineScheduler(db.Queries(), db.Ledger(l), pub,
			projections.SchedulerConfig{CommandTopic: "commands", Clock: clock, ResendAfter: time.Hour, Logger: quiet})
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	s := newScheduler(lease)
	for i, want := range []int{1, 0} { // the second pass finds it sent
		if n, err := s.Pass(ctx); err != nil || n != want {
			t.Fatalf("pass %d sent %d, %v; want %d", i+1, n, err, want)
		}
	}
	if len(pub.msgs) != 1 || pub.msgs[0].Key != requested.URN {
		t.Fatalf("published %+v", pub.msgs)
	}

	now = now.Add(2 * time.Hour) // past ResendAfter
	claim(t, db, 0, 1)
	if _, err := s.Pass(ctx); !errors.Is(err, projections.ErrLeaseLost) {
		t.Fatalf("a pass under a lost lease = %v, want ErrLeaseLost", err)
	}
	if n, err := newScheduler(claim(t, db, 0, 1)).Pass(ctx); err != nil || n != 1 {
		t.Fatalf("the new holder's pass sent %d, %v; want the resend", n, err)
	}
}

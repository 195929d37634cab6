package projections_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"sync"
	"testing"
	"time"

	"rxflow/commands"
	"rxflow/events"
	"rxflow/infra/eventstore"
	"rxflow/projections"
	"rxflow/standin/esdbserver"
)

// recorder is a projector that remembers what it handled, in memory.
type recorder struct {
	mu         sync.Mutex
	handled    []uint64
	checkpoint uint64
}

func (r *recorder) Name() string { return "recorder" }
func (r *recorder) Checkpoint(context.Context) (uint64, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.checkpoint, nil
}
func (r *recorder) Handle(_ context.Context, rec events.Recorded) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.handled = append(r.handled, rec.Position)
	return nil
}
func (r *recorder) SaveCheckpoint(_ context.Context, pos uint64) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.checkpoint = pos
	return nil
}
func (r *recorder) positions() []uint64 {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]uint64(nil), r.handled...)
}

func quiet() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

func request(t *testing.T, h *commands.Handler, urn string) uint64 {
	t.Helper()
	env, err := commands.Decode(commands.Raw{Value: []byte(fmt.Sprintf(
		`{"urn":%q,"event":"prescription.request","commandId":%q,"payload":{"patientId":"p","prescriberId":"d","medication":{"name":"m","quantity":1}}}`, urn, urn))}, 0)
	if err != nil {
		t.Fatal(err)
	}
	// Right after a server restart the client may still report the outage:
	// retry as the processor does (the command id makes a retry idempotent).
	deadline := time.Now().Add(30 * time.Second)
	for {
		out, err := h.Handle(context.Background(), env)
		if err == nil {
			return out.Position
		}
		if errors.Is(err, commands.ErrPermanent) || time.Now().After(deadline) {
			t.Fatal(err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// The runner survives the store going away: it resubscribes from its
// checkpoint and handles every event once, in order, with no gap.
func TestRunnerResubscribesWithoutSkipping(t *testing.T) {
	dir := t.TempDir()
	srv, err := esdbserver.Start(esdbserver.Config{Addr: "127.0.0.1:0", DataDir: dir, Logger: quiet()})
	if err != nil {
		t.Fatal(err)
	}
	addr := srv.Addr()
	store, err := eventstore.Open(eventstore.Config{ConnectionString: srv.ConnectionString(), Logger: quiet()})
	if err != nil {
		t.Fatal(err)
	}
	defer store.Close()
	h := commands.NewHandler(store, commands.HandlerConfig{})

	var want []uint64
	for i := range 20 {
		want = append(want, request(t, h, fmt.Sprintf("urn:rx:run-%d", i)))
	}
	rec := &recorder{}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	runner := projections.NewRunner(store, rec, projections.RunnerConfig{MinBackoff: 20 * time.Millisecond, MaxBackoff: 100 * time.Millisecond, Logger: quiet()})
	go func() { done <- runner.Run(ctx) }()
	stop := sync.OnceValue(func() error { cancel(); return <-done })
	defer stop() // the runner stops before the store closes, even on failure
	waitFor(t, func() bool { return len(rec.positions()) == len(want) })
	if err := runner.Run(ctx); err == nil {
		t.Fatal("a second Run of the same runner must be refused")
	}

	if err := srv.Close(); err != nil { // drops the subscription
		t.Fatal(err)
	}
	if srv, err = esdbserver.Start(esdbserver.Config{Addr: addr, DataDir: dir, Logger: quiet()}); err != nil {
		t.Fatal(err)
	}
	defer srv.Close()
	for i := 20; i < 40; i++ {
		want = append(want, request(t, h, fmt.Sprintf("urn:rx:run-%d", i)))
	}
	waitFor(t, func() bool { return len(rec.positions()) >= len(want) })
	if err := stop(); err != nil {
		t.Fatal(err)
	}
	got := rec.positions()
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("handled %v\nwant    %v", got, want)
	}
	if cp, _ := rec.Checkpoint(context.Background()); cp != want[len(want)-1] {
		t.Fatalf("checkpoint %d, want %d", cp, want[len(want)-1])
	}
}

func waitFor(t *testing.T, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatal("timed out")
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func TestLagTracker(t *testing.T) {
	now := time.Date(2026, 1, 1, 0, 0, 10, 0, time.UTC)
	lt := projections.NewLagTracker(map[string]uint64{"a": 0, "b": 0}, func() time.Time { return now })
	for i, pos := range []uint64{10, 20, 30} {
		created := now.Add(time.Duration(i-3) * time.Second)
		if err := lt.Handle(context.Background(), events.Recorded{Position: pos, Created: created}); err != nil {
			t.Fatal(err)
		}
	}
	if n, age := lt.Lag("a"); n != 3 || age != 3*time.Second {
		t.Fatalf("a: %d events, %v behind; want 3, 3s", n, age)
	}
	lt.Handled("a", 20)
	if n, age := lt.Lag("a"); n != 1 || age != time.Second {
		t.Fatalf("a after 20: %d, %v", n, age)
	}
	if n, _ := lt.Lag("b"); n != 3 {
		t.Fatalf("b: %d, want 3: a's progress must not hide b's lag", n)
	}
	lt.Handled("b", 30)
	lt.Handled("a", 30)
	if n, age := lt.Lag("a"); n != 0 || age != 0 {
		t.Fatalf("caught up: %d, %v", n, age)
	}
}

// BenchmarkLagTrackerBacklog is the cost of one event handled by every
// projector while a slow one trails by backlog events: it must not grow
// with the backlog (go test -run - -bench LagTrackerBacklog ./projections).
func BenchmarkLagTrackerBacklog(b *testing.B) {
	for _, backlog := range []int{1_000, 100_000} {
		b.Run(fmt.Sprint(backlog), func(b *testing.B) {
			ctx, created := context.Background(), time.Now()
			lt := projections.NewLagTracker(map[string]uint64{"fast": 0, "slow": 0}, time.Now)
			head := uint64(0)
			for range backlog {
				head++
				if err := lt.Handle(ctx, events.Recorded{Position: head, Created: created}); err != nil {
					b.Fatal(err)
				}
			}
			slow := uint64(0)
			for b.Loop() {
				head++
				if err := lt.Handle(ctx, events.Recorded{Position: head, Created: created}); err != nil {
					b.Fatal(err)
				}
				lt.Handled("fast", head)
				slow++
				lt.Handled("slow", slow)
			}
			if n, _ := lt.Lag("slow"); n != backlog {
				b.Fatalf("slow is %d events behind, want %d", n, backlog)
			}
		})
	}
}

// A tracker started after a position reads $all from there, and counts
// for the projectors that report later only the events it observed.
func TestLagTrackerAfter(t *testing.T) {
	now := time.Date(2026, 1, 1, 0, 0, 10, 0, time.UTC)
	lt := projections.NewLagTrackerAfter(100, func() time.Time { return now })
	if from, err := lt.Checkpoint(context.Background()); err != nil || from != 100 {
		t.Fatalf("checkpoint %d, %v; want 100: its runner must subscribe after the lowest stored checkpoint", from, err)
	}
	lt.Handled("a", 100)
	for _, pos := range []uint64{90, 100, 110, 120} {
		if err := lt.Handle(context.Background(), events.Recorded{Position: pos, Created: now.Add(-time.Second)}); err != nil {
			t.Fatal(err)
		}
	}
	if n, age := lt.Lag("a"); n != 2 || age != time.Second {
		t.Fatalf("a: %d events, %v behind; want 2 (110 and 120), 1s", n, age)
	}
}

// Refusals reach every projector as events: a reactor must see the refusal
// of its own follow-up command. They change no read-model row, live or
// replayed, and only move the checkpoint.
func TestRefusalsAreDeliveredAsEvents(t *testing.T) {
	store := memoryStore(t)
	h := commands.NewHandler(store, commands.HandlerConfig{})
	requested := request(t, h, "urn:rx:refusal")
	env, err := commands.Decode(commands.Raw{Value: []byte(`{"urn":"urn:rx:refusal","event":"prescription.complete","commandId":"c2"}`)}, 0)
	if err != nil {
		t.Fatal(err)
	}
	out, err := h.Handle(context.Background(), env)
	if err != nil || out.Kind != commands.Refused {
		t.Fatalf("complete from requested: %+v %v", out, err)
	}

	rec := &recorder{}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- projections.NewRunner(store, rec, projections.RunnerConfig{Logger: quiet()}).Run(ctx) }()
	waitFor(t, func() bool { return len(rec.positions()) == 2 })
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if got := rec.positions(); got[0] != requested || got[1] != out.Position {
		t.Fatalf("handled %v, want the request at %d and the refusal at %d", got, requested, out.Position)
	}

	replayed, err := projections.Replay(context.Background(), store, nil)
	rows, checkpoint := replayed.Rows, replayed.Checkpoint
	if err != nil {
		t.Fatal(err)
	}
	if len(rows) != 1 || rows[0].Status != "requested" || rows[0].LastPosition != requested || checkpoint != out.Position {
		t.Fatalf("replay: rows %+v, checkpoint %d; want the request's row and the refusal's checkpoint %d", rows, checkpoint, out.Position)
	}
}

// memoryStore starts an embedded EventStoreDB in memory and connects the
// real adapter; both stop when the test ends.
func memoryStore(t *testing.T) *eventstore.Store {
	t.Helper()
	srv, err := esdbserver.Start(esdbserver.Config{Addr: "127.0.0.1:0", Logger: quiet()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = srv.Close() })
	store, err := eventstore.Open(eventstore.Config{ConnectionString: srv.ConnectionString(), Logger: quiet()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = store.Close() })
	return store
}

// slowRecorder's Handle waits for release or for its context to end, and
// reports whether its context was cancelled.
type slowRecorder struct {
	recorder
	started   chan struct{}
	release   chan struct{}
	cancelled chan bool
}

func (r *slowRecorder) Handle(ctx context.Context, rec events.Recorded) error {
	close(r.started)
	select {
	case <-r.release:
	case <-ctx.Done():
	}
	r.cancelled <- ctx.Err() != nil
	if ctx.Err() != nil {
		return ctx.Err()
	}
	return r.recorder.Handle(ctx, rec)
}

// A runner stopped while an event is under way (its segment released, the
// service shutting down) finishes that event and saves its checkpoint: a
// partner call cancelled between the call and its record would be made
// again by the next holder. An event that outlasts FinishWithin is cut.
func TestStoppedRunnerFinishesTheEventUnderWay(t *testing.T) {
	for _, tc := range []struct {
		name       string
		grace      time.Duration
		wantCancel bool
	}{
		{"finished within the grace", time.Minute, false},
		{"cut after the grace", time.Millisecond, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			store := memoryStore(t)
			pos := request(t, commands.NewHandler(store, commands.HandlerConfig{}), "urn:rx:slow")
			rec := &slowRecorder{started: make(chan struct{}), release: make(chan struct{}), cancelled: make(chan bool, 1)}
			ctx, cancel := context.WithCancel(context.Background())
			runner := projections.NewRunner(store, rec, projections.RunnerConfig{FinishWithin: tc.grace, Logger: quiet()})
			done := make(chan error, 1)
			go func() { done <- runner.Run(ctx) }()
			<-rec.started
			cancel()
			if !tc.wantCancel {
				close(rec.release)
			}
			if err := <-done; err != nil {
				t.Fatal(err)
			}
			if got := <-rec.cancelled; got != tc.wantCancel {
				t.Fatalf("handled with a cancelled context: %v, want %v", got, tc.wantCancel)
			}
			cp, _ := rec.Checkpoint(context.Background())
			if want := map[bool]uint64{false: pos, true: 0}[tc.wantCancel]; cp != want {
				t.Fatalf("checkpoint %d, want %d", cp, want)
			}
		})
	}
}

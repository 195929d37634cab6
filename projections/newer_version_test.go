package projections_test

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"rxflow/commands"
	"rxflow/events"
	"rxflow/projections"
)

// resubscriptions counts the runner's "subscription ended" warnings and
// keeps their errors.
type resubscriptions struct {
	mu   sync.Mutex
	errs []string
}

func (r *resubscriptions) Enabled(context.Context, slog.Level) bool { return true }
func (r *resubscriptions) WithAttrs([]slog.Attr) slog.Handler       { return r }
func (r *resubscriptions) WithGroup(string) slog.Handler            { return r }
func (r *resubscriptions) Handle(_ context.Context, rec slog.Record) error {
	if rec.Level < slog.LevelWarn {
		return nil
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	rec.Attrs(func(a slog.Attr) bool {
		if a.Key == "err" {
			r.errs = append(r.errs, a.Value.String())
		}
		return true
	})
	return nil
}
func (r *resubscriptions) seen() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]string(nil), r.errs...)
}

// An event stored at a schema version newer than this code knows stops the
// projector there, with a message that says so, however often it
// resubscribes: it is never skipped, and the events after it wait.
func TestRunnerStopsOnANewerSchemaVersion(t *testing.T) {
	store := memoryStore(t)
	h := commands.NewHandler(store, commands.HandlerConfig{})

	first := request(t, h, "urn:rx:newer")
	// Written by a newer release: PrescriptionApproved v2, which this code
	// does not know.
	future := events.Pending{Name: events.NameApproved, Data: []byte(`{"approvedBy":"d","approvedAt":"2027-01-01T00:00:00Z","cosigner":"d2"}`),
		Meta: events.Metadata{EventID: events.EventID("urn:rx:future", "future", 0).String(), CommandID: "future", OccurredAt: time.Now().UTC(), SchemaVersion: 2}}
	if _, err := store.Append(context.Background(), "urn:rx:newer", 0, []events.Pending{future}); err != nil {
		t.Fatal(err)
	}
	request(t, h, "urn:rx:after")

	rec := &recorder{}
	logs := &resubscriptions{}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	runner := projections.NewRunner(store, rec, projections.RunnerConfig{MinBackoff: 5 * time.Millisecond, MaxBackoff: 10 * time.Millisecond, Logger: slog.New(logs)})
	go func() { done <- runner.Run(ctx) }()
	defer func() { cancel(); <-done }()

	waitFor(t, func() bool { return len(logs.seen()) >= 3 }) // stopped three times on it
	if got := rec.positions(); fmt.Sprint(got) != fmt.Sprint([]uint64{first}) {
		t.Fatalf("handled %v, want only the event before the newer one (%d)", got, first)
	}
	if cp, _ := rec.Checkpoint(context.Background()); cp != first {
		t.Fatalf("checkpoint %d, want %d", cp, first)
	}
	_, lastErr := runner.CaughtUp()
	if !errors.Is(lastErr, events.ErrUnsupportedVersion) {
		t.Fatalf("last error %v, want %v", lastErr, events.ErrUnsupportedVersion)
	}
	for _, msg := range logs.seen() {
		for _, want := range []string{"undecodable event", "prescription-urn:rx:newer@1", "PrescriptionApproved v2 is newer than this code, which reads up to v1"} {
			if !strings.Contains(msg, want) {
				t.Fatalf("stop message %q does not say %q", msg, want)
			}
		}
	}
}

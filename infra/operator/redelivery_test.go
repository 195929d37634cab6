package operator_test

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ThreeDotsLabs/watermill"

	"rxflow/commands"
	"rxflow/infra/kafka"
	"rxflow/infra/kafka/kafkatest"
	"rxflow/infra/operator"
	"rxflow/infra/postgres"
	"rxflow/infra/postgres/postgrestest"
	"rxflow/infra/readmodel"
)

// inboxStore is the operations store as Consume fills it and the test reads it.
type inboxStore interface {
	operator.Inbox
	DeadLetters(ctx context.Context, limit int) ([]readmodel.DeadLetterRow, error)
	CountSince(ctx context.Context, since time.Time) (deadLetters, refusals int, err error)
}

var (
	_ inboxStore = (*readmodel.Operations)(nil)
	_ inboxStore = (*postgres.Operations)(nil)
)

// storages open instances on one operations storage per test: SQLite's
// file, or a PostgreSQL database (with RXFLOW_TEST_POSTGRES).
var storages = map[string]func(t *testing.T) (open func() inboxStore){
	"sqlite": func(t *testing.T) func() inboxStore {
		path := filepath.Join(t.TempDir(), "operations.db")
		return func() inboxStore {
			o, err := readmodel.OpenOperations(path)
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { o.Close() })
			return o
		}
	},
	"postgres": func(t *testing.T) func() inboxStore {
		url := postgrestest.URL(t)
		return func() inboxStore {
			db, err := postgres.Open(context.Background(), url)
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(db.Close)
			return db.Operations()
		}
	},
}

// watched is an instance's inbox: it stores into the shared store and
// notes the ids it was given; when hold is set, it stores the second record
// of topic hold and then does not return (so the record is never
// acknowledged) until the instance stops.
type watched struct {
	inboxStore
	mu   sync.Mutex
	seen []string
	hold string
	held chan string // receives the held record's id
}

func (w *watched) note(ctx context.Context, id string) error {
	w.mu.Lock()
	w.seen = append(w.seen, id)
	n := 0
	for _, s := range w.seen {
		if strings.HasPrefix(s, w.hold+"/") {
			n++
		}
	}
	w.mu.Unlock()
	if w.hold != "" && strings.HasPrefix(id, w.hold+"/") && n == 2 {
		w.held <- id
		<-ctx.Done()
		return ctx.Err()
	}
	return nil
}

func (w *watched) AddDeadLetter(ctx context.Context, d readmodel.DeadLetterRow) error {
	if err := w.inboxStore.AddDeadLetter(ctx, d); err != nil {
		return err
	}
	return w.note(ctx, "dlq/"+d.ID)
}

func (w *watched) AddRefusal(ctx context.Context, r readmodel.RefusalRow) error {
	if err := w.inboxStore.AddRefusal(ctx, r); err != nil {
		return err
	}
	return w.note(ctx, "refusals/"+r.ID)
}

func (w *watched) ids() []string {
	w.mu.Lock()
	defer w.mu.Unlock()
	return append([]string(nil), w.seen...)
}

// Two instances of one consumer group: the first stores a record and stops
// before acknowledging it; the second, now holding every partition, is
// given that record again (and any other the first had not committed).
// Each record is stored once: a dead letter, or a refusal.
func TestConsumeRedeliveryStoresOnce(t *testing.T) {
	for name, storage := range storages {
		for _, hold := range []string{"dlq", "refusals"} {
			t.Run(name+"/"+hold, func(t *testing.T) { redelivery(t, storage, hold) })
		}
	}
}

func redelivery(t *testing.T, storage func(t *testing.T) func() inboxStore, hold string) {
	{
		{
			open := storage(t)
			brokers := kafkatest.Brokers(t)
			cfg := kafka.Config{Brokers: brokers, ConsumerGroup: "rxflow-projector-operations"}
			dlq, refusals := "dlq", "refusals" // the names hold refers to
			if err := kafka.EnsureTopics(t.Context(), cfg, 2, dlq, refusals); err != nil {
				t.Fatal(err)
			}
			const each = 10
			var dls, refs []kafkatest.Record
			for n := range each {
				urn := fmt.Sprintf("urn:rx:%d", n)
				dl, _ := json.Marshal(commands.DeadLetter{Code: "malformed_json", Error: "bad", ValueBase64: "e30=", DeadLetteredAt: time.Now().UTC()})
				ref, _ := json.Marshal(map[string]any{"urn": urn, "event": "prescription.approve", "commandId": "c", "code": "final_state",
					"rejectedAt": time.Now().UTC()})
				dls = append(dls, kafkatest.Record{Key: []byte(urn), Value: dl})
				refs = append(refs, kafkatest.Record{Key: []byte(urn), Value: ref})
			}
			kafkatest.Produce(t, brokers, dlq, dls...)
			kafkatest.Produce(t, brokers, refusals, refs...)
			log := slog.New(slog.DiscardHandler)

			run := func(inbox *watched) (stop func()) {
				sub, err := kafka.NewSubscriber(cfg, watermill.NopLogger{})
				if err != nil {
					t.Fatal(err)
				}
				ctx, cancel := context.WithCancel(context.Background())
				done := make(chan error, 1)
				go func() { done <- operator.Consume(ctx, sub, dlq, refusals, inbox, log) }()
				return func() {
					cancel()
					if err := <-done; err != nil {
						t.Error(err)
					}
					if err := sub.Close(); err != nil {
						t.Error(err)
					}
				}
			}
			first := &watched{inboxStore: open(), hold: hold, held: make(chan string, 1)}
			stopFirst := run(first)
			var held string
			select {
			case held = <-first.held:
			case <-time.After(60 * time.Second):
				t.Fatalf("the first instance stored no second record of %s", hold)
			}
			stopFirst()

			second := &watched{inboxStore: open()}
			stopSecond := run(second)
			defer stopSecond()
			store := open()
			gotHeld := func() bool { return slices.Contains(second.ids(), held) }
			deadline := time.Now().Add(60 * time.Second)
			for {
				d, r, err := store.CountSince(t.Context(), time.Time{})
				if err != nil {
					t.Fatal(err)
				}
				if d == each && r == each && gotHeld() {
					break
				}
				if d > each || r > each || time.Now().After(deadline) {
					t.Fatalf("%d dead letters and %d refusals stored, want %d of each; the held record %s given to the second instance: %v (first %v, second %v)",
						d, r, each, held, gotHeld(), first.ids(), second.ids())
				}
				time.Sleep(50 * time.Millisecond)
			}
			rows, err := store.DeadLetters(t.Context(), readmodel.MaxLimit)
			if err != nil {
				t.Fatal(err)
			}
			ids := map[string]bool{}
			for _, d := range rows {
				ids[d.ID] = true
			}
			if len(rows) != each || len(ids) != each {
				t.Errorf("%d dead-letter rows, %d distinct ids; want %d", len(rows), len(ids), each)
			}
			t.Logf("held %s; the first instance stored %v", held, first.ids())
		}
	}
}

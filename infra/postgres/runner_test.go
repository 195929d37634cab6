package postgres_test

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"reflect"
	"testing"
	"time"

	"rxflow/commands"
	"rxflow/infra/eventstore"
	"rxflow/projections"
	"rxflow/standin/esdbserver"
)

// The read-model projector on PostgreSQL, run by the runner (which hands
// it the waiting events in batches) on the embedded EventStoreDB, ends
// with the rows an audit replay folds from the streams, refusals included,
// and its checkpoint serves read-your-writes.
func TestRunnerProjectsIntoPostgres(t *testing.T) {
	db := openDB(t)
	quiet := slog.New(slog.NewTextHandler(io.Discard, nil))
	srv, err := esdbserver.Start(esdbserver.Config{Addr: "127.0.0.1:0", Logger: quiet})
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Close()
	store, err := eventstore.Open(eventstore.Config{ConnectionString: srv.ConnectionString(), Logger: quiet})
	if err != nil {
		t.Fatal(err)
	}
	defer store.Close()
	h := commands.NewHandler(store, commands.HandlerConfig{})
	send := func(js string) uint64 {
		t.Helper()
		env, err := commands.Decode(commands.Raw{Value: []byte(js)}, 0)
		if err != nil {
			t.Fatal(err)
		}
		out, err := h.Handle(context.Background(), env)
		if err != nil {
			t.Fatal(err)
		}
		return out.Position
	}
	var last uint64
	for i := range 300 {
		urn := fmt.Sprintf("urn:rx:batch-%03d", i)
		last = send(fmt.Sprintf(`{"urn":%q,"event":"prescription.request","commandId":"r","payload":{"patientId":"p%d","prescriberId":"d","medication":{"name":"m","quantity":1}}}`, urn, i%7))
		if i%10 == 0 { // refused: complete from requested
			last = send(fmt.Sprintf(`{"urn":%q,"event":"prescription.complete","commandId":"c"}`, urn))
		}
	}

	lease := claim(t, db, 0, 1)
	runner := projections.NewRunner(store, projections.NewReadModelProjector(db.ReadModel(lease)), projections.RunnerConfig{Logger: quiet})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- runner.Run(ctx) }()
	defer func() { cancel(); <-done }()

	waitCtx, stop := context.WithTimeout(context.Background(), time.Minute)
	defer stop()
	q := db.Queries()
	if err := q.WaitFor(waitCtx, last); err != nil {
		t.Fatalf("WaitFor(%d): %v", last, err)
	}
	replayed, err := projections.Replay(context.Background(), store, nil)
	if err != nil {
		t.Fatal(err)
	}
	var got []projections.Row
	for f := (projections.Filter{Limit: 100}); ; {
		page, err := q.List(context.Background(), f)
		if err != nil {
			t.Fatal(err)
		}
		got = append(got, page.Rows...)
		if f.Cursor = page.NextCursor; f.Cursor == "" {
			break
		}
	}
	if len(got) != 300 || !reflect.DeepEqual(got, replayed.Rows) {
		t.Fatalf("projected %d rows; they differ from the %d replayed", len(got), len(replayed.Rows))
	}
	if cp, err := db.ReadModel(lease).Checkpoint(context.Background()); err != nil || cp < last {
		t.Fatalf("checkpoint %d, %v; want at least %d", cp, err, last)
	}
}

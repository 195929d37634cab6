package projector_test

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"testing"

	"rxflow/commands"
	"rxflow/domain"
	"rxflow/infra/eventstore"
	"rxflow/infra/postgres"
	"rxflow/infra/postgres/postgrestest"
	"rxflow/projections"
	"rxflow/service/projector"
	"rxflow/standin/esdbserver"
)

// projector rebuild on PostgreSQL replays the streams into the read model
// of every segment and sets each segment's checkpoint to the last event.
func TestRebuildPostgres(t *testing.T) {
	url := postgrestest.URL(t)
	quiet := slog.New(slog.NewTextHandler(io.Discard, nil))
	srv, err := esdbserver.Start(esdbserver.Config{Addr: "127.0.0.1:0", Logger: quiet})
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Close()
	esdb := eventstore.Config{ConnectionString: srv.ConnectionString(), Logger: quiet}
	store, err := eventstore.Open(esdb)
	if err != nil {
		t.Fatal(err)
	}
	defer store.Close()
	h := commands.NewHandler(store, commands.HandlerConfig{})
	var last uint64
	for i := range 20 {
		env, err := commands.Decode(commands.Raw{Value: []byte(fmt.Sprintf(
			`{"urn":"urn:rx:rebuild-%d","event":"prescription.request","commandId":"r","payload":{"patientId":"p","prescriberId":"d","medication":{"name":"m","quantity":1}}}`, i))}, 0)
		if err != nil {
			t.Fatal(err)
		}
		out, err := h.Handle(context.Background(), env)
		if err != nil {
			t.Fatal(err)
		}
		last = out.Position
	}

	res, err := projector.RebuildPostgres(context.Background(), projector.PostgresRebuildConfig{EventStore: esdb, Database: url, Segments: 4}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if res.Events != 20 || res.Rows != 20 || res.Checkpoint != last {
		t.Fatalf("rebuild = %+v; want 20 events, 20 rows, checkpoint %d", res, last)
	}
	db, err := postgres.Open(context.Background(), url)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	stats, err := db.Queries().Stats(context.Background(), "")
	if err != nil || stats[domain.StatusRequested] != 20 {
		t.Fatalf("stats %v, %v; want 20 requested", stats, err)
	}
	for seg := range 4 {
		if cp, err := db.ReadModel(projections.Lease{Segment: seg, Count: 4}).Checkpoint(context.Background()); err != nil || cp != last {
			t.Fatalf("segment %d checkpoint %d, %v; want %d", seg, cp, err, last)
		}
	}
}

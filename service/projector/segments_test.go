package projector

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"rxflow/commands"
	"rxflow/domain"
	"rxflow/infra/eventstore"
	"rxflow/infra/httpapi"
	"rxflow/infra/kafka"
	"rxflow/infra/kafka/kafkatest"
	"rxflow/infra/partners"
	"rxflow/infra/postgres/postgrestest"
	"rxflow/projections"
	"rxflow/standin/esdbserver"
	"rxflow/standin/partnersim"
)

// cluster is projector instances sharing one PostgreSQL database, on the
// embedded EventStoreDB, Kafka and partner simulators.
type cluster struct {
	t       *testing.T
	cfg     Config
	handler *commands.Handler
	sim     *partnersim.Sim
}

func newCluster(t *testing.T, segments int, ttl time.Duration) *cluster {
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	database := postgrestest.URL(t)
	brokers := kafkatest.Brokers(t)
	srv, err := esdbserver.Start(esdbserver.Config{Addr: "127.0.0.1:0", Logger: log})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = srv.Close() })
	store, err := eventstore.Open(eventstore.Config{ConnectionString: srv.ConnectionString(), Logger: log})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = store.Close() })
	sim, err := partnersim.Start(partnersim.Config{Logger: log})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = sim.Close() })
	endpoints := partners.Endpoints{}
	for _, p := range projections.PartnersOf(projections.Reactions) {
		endpoints[p.Name] = partners.Config{BaseURL: sim.URL(partnersim.Partner(p.Name)), Logger: log}
	}
	return &cluster{t: t, handler: commands.NewHandler(store, commands.HandlerConfig{}), sim: sim, cfg: Config{
		Kafka: kafka.Config{Brokers: brokers}, Partitions: 1,
		CommandTopic: kafkatest.UniqueTopic(t, "cmd"), DeadLetterTopic: kafkatest.UniqueTopic(t, "dlq"), RejectionTopic: kafkatest.UniqueTopic(t, "rej"),
		EventStore: eventstore.Config{ConnectionString: srv.ConnectionString(), Logger: log},
		Partners:   endpoints, HTTPAddr: "127.0.0.1:0", Auth: httpapi.AuthConfig{StaticToken: "t"}, Logger: log,
		Segments: Segments{Database: database, Count: segments, LeaseTTL: ttl},
	}}
}

type running struct {
	*Service
	stop func()
}

func (c *cluster) start(id string) *running {
	c.t.Helper()
	cfg := c.cfg
	cfg.Segments.InstanceID = id
	svc, err := New(cfg)
	if err != nil {
		c.t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- svc.Run(ctx) }()
	stop := sync.OnceFunc(func() {
		cancel()
		if err := <-done; err != nil {
			c.t.Errorf("instance %s: %v", id, err)
		}
	})
	c.t.Cleanup(stop)
	return &running{svc, stop}
}

var lifecycle = []domain.CommandType{domain.Request, domain.Approve, domain.Process, domain.Dispense, domain.Complete}

// prescribe takes n prescriptions through their whole lifecycle.
func (c *cluster) prescribe(prefix string, n int) {
	c.t.Helper()
	for i := range n {
		urn := fmt.Sprintf("urn:rx:%s-%d", prefix, i)
		for j, cmd := range lifecycle {
			env, err := commands.Decode(commands.Raw{Key: []byte(urn), Value: fmt.Appendf(nil,
				`{"urn":%q,"event":%q,"commandId":"%s/%d","actor":"client","payload":%s}`, urn, cmd, urn, j, payloads[cmd])}, 0)
			if err != nil {
				c.t.Fatal(err)
			}
			if _, err := c.handler.Handle(context.Background(), env); err != nil {
				c.t.Fatal(err)
			}
		}
	}
}

func (r *running) completed(t *testing.T) int {
	stats, err := r.stores.queries.Stats(context.Background(), "")
	if err != nil {
		t.Fatal(err)
	}
	return stats[domain.StatusCompleted]
}

func get(t *testing.T, url string) (int, string) {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(body)
}

func waitUntil(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting until %s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// Two projector instances on one PostgreSQL database share the segments,
// each is ready and exports its segments; every prescription reaches the
// shared read model, every partner call is made once per idempotency key;
// when one stops, the other takes its segments and carries on.
func TestInstancesShareThePostgreSQLReadSide(t *testing.T) {
	c := newCluster(t, 4, 900*time.Millisecond)
	a := c.start("a")
	c.prescribe("one", 8)
	waitUntil(t, "a alone holds every segment and the read model is complete", func() bool {
		return len(a.coord.Held()) == 4 && a.completed(t) == 8
	})
	b := c.start("b")
	waitUntil(t, "the instances hold two segments each", func() bool { return len(a.coord.Held()) == 2 && len(b.coord.Held()) == 2 })
	c.prescribe("two", 8)
	waitUntil(t, "16 completed, seen from b", func() bool { return b.completed(t) == 16 })
	for _, r := range []*running{a, b} {
		if code, body := get(t, "http://"+r.HTTPAddr()+"/readyz"); code != http.StatusOK {
			t.Errorf("readyz of a sharing instance: %d %s", code, body)
		}
		_, metrics := get(t, "http://"+r.HTTPAddr()+"/metrics")
		for _, want := range []string{`rxflow_segment_owned{segment="3"}`, "rxflow_segment_lease_renewals_total", `rxflow_segment_lag_events{segment=`} {
			if !strings.Contains(metrics, want) {
				t.Errorf("metrics lack %s", want)
			}
		}
	}

	a.stop()
	waitUntil(t, "b holds every segment", func() bool { return len(b.coord.Held()) == 4 })
	c.prescribe("three", 4)
	waitUntil(t, "20 completed", func() bool { return b.completed(t) == 20 })
	for _, p := range []partnersim.Partner{partnersim.Insurance, partnersim.Pharmacy} {
		keys := map[string]int{}
		// The reactors follow the events on their own: wait for every call.
		waitUntil(t, fmt.Sprintf("%s accepted a call per prescription (20)", p), func() bool {
			clear(keys)
			for _, call := range c.sim.Accepted(p) {
				if !call.Replay {
					keys[call.IdempotencyKey]++
				}
			}
			return len(keys) >= 20
		})
		if len(keys) != 20 {
			t.Errorf("%s: %d idempotency keys accepted, want one per prescription (20)", p, len(keys))
		}
		for k, n := range keys {
			if n != 1 {
				t.Errorf("%s: key %s accepted %d times", p, k, n)
			}
		}
	}
}

// A database's segment count is fixed: an instance asking for another is
// refused at start with a message naming both.
func TestAnotherSegmentCountIsRefused(t *testing.T) {
	c := newCluster(t, 4, time.Second)
	c.start("a")
	cfg := c.cfg
	cfg.Segments.Count, cfg.Segments.InstanceID = 8, "b"
	svc, err := New(cfg)
	if err == nil {
		svc.close()
		t.Fatal("an instance with another segment count started")
	}
	if !strings.Contains(err.Error(), "split into 4 segments, not 8") {
		t.Errorf("error %q does not name both counts", err)
	}
}

// projector rebuild on PostgreSQL runs beside live instances: the rebuilt
// tables are switched in, the instances are fenced off, claim their
// segments again and carry on from the rebuilt checkpoint.
func TestRebuildOnPostgreSQLBesideRunningInstances(t *testing.T) {
	c := newCluster(t, 2, 600*time.Millisecond)
	a := c.start("a")
	c.prescribe("before", 6)
	waitUntil(t, "6 completed", func() bool { return a.completed(t) == 6 })
	res, err := RebuildPostgres(context.Background(), PostgresRebuildConfig{EventStore: c.cfg.EventStore, Database: c.cfg.Segments.Database, Segments: 2}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if res.Rows != 6 || res.Events != 30 {
		t.Errorf("rebuild: %+v, want 6 rows from 30 events", res)
	}
	c.prescribe("after", 3)
	waitUntil(t, "9 completed, the instance holding both segments again", func() bool {
		return a.completed(t) == 9 && len(a.coord.Held()) == 2
	})
	if _, err := RebuildPostgres(context.Background(), PostgresRebuildConfig{EventStore: c.cfg.EventStore, Database: c.cfg.Segments.Database, Segments: 3}, nil); err == nil ||
		!strings.Contains(err.Error(), "2 segment leases, not 3") {
		t.Errorf("rebuild with another segment count: %v", err)
	}
}

// An instance starting on a database projected before follows $all for
// the lag from the lowest checkpoint stored for any projector of any
// segment, not from the start of $all, which every restart would
// otherwise read whole.
func TestLagTrackerStartsAtTheLowestStoredCheckpoint(t *testing.T) {
	c := newCluster(t, 2, 900*time.Millisecond)
	a := c.start("a")
	c.prescribe("lag", 4)
	conn, err := pgx.Connect(context.Background(), c.cfg.Segments.Database)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(context.Background())
	want := 2 * (2 + len(projections.Reactions)) // read model, outbound and reactors, per segment
	var rows int
	var low uint64
	waitUntil(t, "every projector of both segments has saved a checkpoint past the first event", func() bool {
		if err := conn.QueryRow(context.Background(), `SELECT count(*), COALESCE(min(position), 0) FROM checkpoints`).Scan(&rows, &low); err != nil {
			t.Fatal(err)
		}
		return rows == want && low > 0
	})
	a.stop()
	if err := conn.QueryRow(context.Background(), `SELECT min(position) FROM checkpoints`).Scan(&low); err != nil {
		t.Fatal(err)
	}

	cfg := c.cfg
	cfg.Segments.InstanceID = "b"
	b, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer b.close()
	if from, err := b.lag.Checkpoint(context.Background()); err != nil || from != low {
		t.Fatalf("lag tracker starts after %d (%v), want the lowest stored checkpoint %d", from, err, low)
	}
}

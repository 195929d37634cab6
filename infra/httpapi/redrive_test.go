package httpapi_test

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"path/filepath"
	"sync"
	"testing"

	"rxflow/commands"
	"rxflow/infra/httpapi"
	"rxflow/infra/operator"
	"rxflow/infra/postgres"
	"rxflow/infra/postgres/postgrestest"
	"rxflow/infra/readmodel"
	"rxflow/projections"
)

// operationsStore is an operations store as a projector instance holds it.
type operationsStore interface {
	operator.Store
	httpapi.Operations
	AddDeadLetter(ctx context.Context, d readmodel.DeadLetterRow) error
}

var (
	_ operationsStore = (*readmodel.Operations)(nil)
	_ operationsStore = (*postgres.Operations)(nil)
)

// operationsStorages open instances on one operations storage per test:
// SQLite's file, or a PostgreSQL database (with RXFLOW_TEST_POSTGRES).
var operationsStorages = map[string]func(t *testing.T) (open func() operationsStore){
	"sqlite": func(t *testing.T) func() operationsStore {
		path := filepath.Join(t.TempDir(), "operations.db")
		return func() operationsStore {
			o, err := readmodel.OpenOperations(path)
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { o.Close() })
			return o
		}
	},
	"postgres": func(t *testing.T) func() operationsStore {
		url := postgrestest.URL(t)
		return func() operationsStore {
			db, err := postgres.Open(context.Background(), url)
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(db.Close)
			return db.Operations()
		}
	},
}

// topic records what is published to it: the command topic.
type topic struct {
	mu   sync.Mutex
	msgs []projections.Outbound
}

func (p *topic) Publish(_ context.Context, msgs ...projections.Outbound) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.msgs = append(p.msgs, msgs...)
	return nil
}

// Two instances of the API, as two projector processes, each with its own
// connection to one operations store, redrive the same dead letters at
// once, several times each: per dead letter, one redrive is published and
// answered 200, every other one 409 with the winner's claim, and every
// attempt is recorded.
func TestRedriveOnceAcrossInstances(t *testing.T) {
	for name, storage := range operationsStorages {
		t.Run(name, func(t *testing.T) {
			open := storage(t)
			commandTopic := &topic{}
			f := newFixture(t)
			var instances []*client
			for range 2 {
				store := open()
				actions := operator.New(operator.Config{Store: store, Publisher: commandTopic, CommandTopic: "commands",
					Logger: slog.New(slog.DiscardHandler)})
				instances = append(instances, f.serve(httpapi.Config{Operator: actions, Operations: store}))
			}
			const deadLetters, attempts = 5, 3 // attempts per instance and dead letter
			seed := open()
			for n := range deadLetters {
				value := fmt.Sprintf(`{"urn":"urn:rx:%d","event":`, n)
				raw, _ := json.Marshal(commands.DeadLetter{Code: "malformed_json", Error: "unexpected end", ValueBase64: base64.StdEncoding.EncodeToString([]byte(value)), DeadLetteredAt: t0})
				if err := seed.AddDeadLetter(t.Context(), readmodel.DeadLetterRow{ID: readmodel.DeadLetterID(0, int64(n)), Topic: "dlq", Offset: int64(n),
					Key: fmt.Sprintf("urn:rx:%d", n), Code: "malformed_json", Raw: raw, At: t0, Received: t0}); err != nil {
					t.Fatal(err)
				}
			}
			type answer struct {
				status int
				action readmodel.OperatorAction
			}
			answers := make([][]answer, deadLetters)
			var mu sync.Mutex
			var wg sync.WaitGroup
			for n := range deadLetters {
				for _, c := range instances {
					for range attempts {
						wg.Go(func() {
							req, _ := http.NewRequest(http.MethodPost, c.url+"/dead-letters/"+readmodel.DeadLetterID(0, int64(n))+"/redrive", nil)
							req.Header.Set("Authorization", "Bearer "+token)
							resp, err := httpClient.Do(req)
							if err != nil {
								t.Error(err)
								return
							}
							defer resp.Body.Close()
							b, _ := io.ReadAll(resp.Body)
							var body struct{ Action readmodel.OperatorAction }
							if err := json.Unmarshal(b, &body); err != nil {
								t.Errorf("redrive %d: %d %s", n, resp.StatusCode, b)
							}
							mu.Lock()
							answers[n] = append(answers[n], answer{resp.StatusCode, body.Action})
							mu.Unlock()
						})
					}
				}
			}
			wg.Wait()
			for n, as := range answers {
				won := 0
				for _, a := range as {
					switch {
					case a.status == http.StatusOK && a.action.Result == operator.ResultDone:
						won++
					case a.status == http.StatusConflict && a.action.Result == operator.ResultAlreadyRedriven:
					default:
						t.Errorf("dead letter %d: %d %+v, want 200 done or 409 already_redriven", n, a.status, a.action)
					}
				}
				if won != 1 || len(as) != 2*attempts {
					t.Errorf("dead letter %d: %d redrives won of %d answers, want 1 of %d", n, won, len(as), 2*attempts)
				}
			}
			published := map[string]int{}
			for _, m := range commandTopic.msgs {
				published[m.ID]++
			}
			for n := range deadLetters {
				if id := operator.RedriveCommandID("dlq", readmodel.DeadLetterID(0, int64(n))); published[id] != 1 {
					t.Errorf("command %s published %d times, want once", id, published[id])
				}
			}
			if len(commandTopic.msgs) != deadLetters {
				t.Errorf("%d commands published, want %d", len(commandTopic.msgs), deadLetters)
			}
			var recorded struct{ Items []readmodel.OperatorAction }
			instances[1].getJSON("/operator-actions?urn=urn:rx:0", http.StatusOK, &recorded)
			results := map[string]int{}
			for _, a := range recorded.Items {
				results[a.Result]++
			}
			if results[operator.ResultDone] != 1 || results[operator.ResultAlreadyRedriven] != 2*attempts-1 || len(recorded.Items) != 2*attempts {
				t.Errorf("recorded redrives of urn:rx:0: %v, want 1 done and %d already_redriven", results, 2*attempts-1)
			}
		})
	}
}

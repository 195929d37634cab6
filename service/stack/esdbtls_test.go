package stack_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"path/filepath"
	"testing"
	"time"

	"rxflow/domain"
	"rxflow/infra/eventstore"
	"rxflow/infra/httpapi"
	"rxflow/infra/kafka"
	"rxflow/infra/kafka/kafkatest"
	"rxflow/infra/partners"
	"rxflow/projections"
	"rxflow/service/processor"
	"rxflow/service/projector"
	"rxflow/standin/esdbserver"
	"rxflow/standin/esdbserver/esdbtest"
	"rxflow/standin/partnersim"
)

// The seed's happy path through the processor and the projector with the
// event store reached over TLS only (esdb://…?tls=true&tlsCAFile=…): the
// processor appends, the projector's $all subscription reacts (partner
// calls, dispensed event, read model) over the same TLS connection string.
func TestHappyPathWithStoreOverTLS(t *testing.T) {
	kafkatest.ForEachCluster(t, func(t *testing.T, brokers []string) {
		log := slog.New(slog.NewTextHandler(io.Discard, nil))
		files := esdbtest.NewTLSFiles(t)
		srv, err := esdbserver.Start(esdbserver.Config{Addr: "127.0.0.1:0", TLSCertFile: files.CertFile, TLSKeyFile: files.KeyFile, Logger: log})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = srv.Close() })
		store := eventstore.Config{ConnectionString: srv.TLSConnectionString(files.CAFile), Logger: log}
		sim, err := partnersim.Start(partnersim.Config{Addr: "127.0.0.1:0", Logger: log})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = sim.Close() })

		commandTopic := kafkatest.UniqueTopic(t, "cmd")
		outbound := projections.OutboundTopics{Dispensed: kafkatest.UniqueTopic(t, "dispensed"), Failed: kafkatest.UniqueTopic(t, "failed"),
			StatusChanged: kafkatest.UniqueTopic(t, "changed")}
		proc, err := processor.New(processor.Config{
			Kafka:        kafka.Config{Brokers: brokers, ConsumerGroup: kafkatest.UniqueGroup(t, "proc")},
			CommandTopic: commandTopic, RejectionTopic: kafkatest.UniqueTopic(t, "rej"), DeadLetterTopic: kafkatest.UniqueTopic(t, "dlq"),
			RetryTopic: kafkatest.UniqueTopic(t, "retry"), EventStore: store, HTTPAddr: "127.0.0.1:0", Logger: log,
		})
		if err != nil {
			t.Fatal(err)
		}
		runService(t, "processor", proc.Run)
		select {
		case <-proc.Running():
		case <-time.After(time.Minute):
			t.Fatal("the processor did not start")
		}
		endpoints := partners.Endpoints{}
		for _, p := range projections.PartnersOf(projections.Reactions) {
			endpoints[p.Name] = partners.Config{BaseURL: sim.URL(partnersim.Partner(p.Name)), Timeout: 2 * time.Second, MaxAttempts: 3,
				BaseBackoff: 5 * time.Millisecond, MaxBackoff: 20 * time.Millisecond, Logger: log}
		}
		proj, err := projector.New(projector.Config{
			Kafka: kafka.Config{Brokers: brokers}, CommandTopic: commandTopic, Outbound: outbound, EventStore: store,
			DataDir: filepath.Join(t.TempDir(), "projector"), Partners: endpoints, HTTPAddr: "127.0.0.1:0", Auth: httpapi.AuthConfig{StaticToken: token}, Logger: log,
		})
		if err != nil {
			t.Fatal(err)
		}
		runService(t, "projector", proj.Run)

		urn := "urn:rx:tls-" + kafkatest.UniqueGroup(t, "happy")
		payloads := map[domain.CommandType]string{
			domain.Request:  `{"patientId":"patient-42","prescriberId":"dr-1","pharmacyId":"pharmacy-7","medication":{"name":"Amoxicillin","quantity":21}}`,
			domain.Approve:  `{"approvedBy":"dr-1"}`,
			domain.Process:  `{}`,
			domain.Dispense: `{"dispensedBy":"pharmacist-1","quantity":21,"lotNumber":"L1"}`,
			domain.Complete: `{}`,
		}
		for i, c := range []domain.CommandType{domain.Request, domain.Approve, domain.Process, domain.Dispense, domain.Complete} {
			kafkatest.Produce(t, brokers, commandTopic, kafkatest.Record{Key: []byte(urn),
				Value: fmt.Appendf(nil, `{"urn":%q,"event":%q,"commandId":"%s/%d","payload":%s}`, urn, c, urn, i, payloads[c])})
		}

		deadline := time.Now().Add(60 * time.Second) // a liveness bound, not a performance one
		var row struct{ Status string }
		for row.Status != string(domain.StatusCompleted) {
			if time.Now().After(deadline) {
				t.Fatalf("read model status %q after 60s, want completed", row.Status)
			}
			time.Sleep(100 * time.Millisecond)
			req, _ := http.NewRequestWithContext(context.Background(), http.MethodGet, "http://"+proj.HTTPAddr()+"/prescriptions/"+urn, nil)
			req.Header.Set("Authorization", "Bearer "+token)
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			if resp.StatusCode == http.StatusOK {
				if err := json.NewDecoder(resp.Body).Decode(&row); err != nil {
					t.Fatal(err)
				}
			}
			resp.Body.Close()
		}
		for deadline := time.Now().Add(30 * time.Second); ; {
			recs := kafkatest.ConsumeAll(t, brokers, outbound.Dispensed)
			if len(recs) == 1 && string(recs[0].Key) == urn {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("dispensed topic holds %d records, want the one for %s", len(recs), urn)
			}
			time.Sleep(100 * time.Millisecond)
		}
		if len(sim.Calls(partnersim.Pharmacy)) == 0 {
			t.Error("the projector did not call the pharmacy")
		}
	})
}

// runService runs f until the test ends, then wants it to stop cleanly.
func runService(t *testing.T, name string, f func(context.Context) error) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- f(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("%s: %v", name, err)
		}
	})
}

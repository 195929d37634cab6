package stack_test

import (
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"strings"
	"testing"
	"time"

	"rxflow/infra/kafka/kafkatest"
	"rxflow/infra/partners"
	"rxflow/projections"
	"rxflow/service/stack"
)

const token = "test-token"

// startStack runs the whole system on free ports, on brokers when given.
func startStack(t *testing.T, brokers []string) *stack.Stack {
	t.Helper()
	return startStackWith(t, brokers, nil)
}

// startStackWith is startStack with the config changed by tune.
func startStackWith(t *testing.T, brokers []string, tune func(*stack.Config)) *stack.Stack {
	t.Helper()
	cfg := stack.Config{
		DataDir: t.TempDir(), Brokers: brokers, Token: token,
		KafkaAddr: "127.0.0.1:0", ESDBAddr: "127.0.0.1:0", PartnersAddr: "127.0.0.1:0", APIAddr: "127.0.0.1:0", ProcessorAddr: "127.0.0.1:0",
		Topics: stack.Topics{
			Commands: kafkatest.UniqueTopic(t, "cmd"), Rejections: kafkatest.UniqueTopic(t, "rej"), DeadLetters: kafkatest.UniqueTopic(t, "dlq"),
			ConsumerGroup: kafkatest.UniqueGroup(t, "proc"), OperationsGroup: kafkatest.UniqueGroup(t, "ops"),
			Outbound: projections.OutboundTopics{Dispensed: kafkatest.UniqueTopic(t, "dispensed"), Failed: kafkatest.UniqueTopic(t, "failed"),
				StatusChanged: kafkatest.UniqueTopic(t, "changed")},
		},
		Partner: partners.Config{Timeout: 2 * time.Second, MaxAttempts: 3, BaseBackoff: 5 * time.Millisecond, MaxBackoff: 20 * time.Millisecond},
		Logger:  slog.New(slog.NewTextHandler(io.Discard, nil)),
	}
	if tune != nil {
		tune(&cfg)
	}
	s, err := stack.Start(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := s.Close(); err != nil {
			t.Errorf("stack: %v", err)
		}
	})
	return s
}

// api GETs path from the query API and decodes the JSON answer into out.
func api(t *testing.T, s *stack.Stack, path string, out any) int {
	t.Helper()
	req, _ := http.NewRequest(http.MethodGet, "http://"+s.Projector.HTTPAddr()+path, nil)
	req.Header.Set("Authorization", "Bearer "+token)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if out != nil && resp.StatusCode == http.StatusOK {
		if err := json.NewDecoder(resp.Body).Decode(out); err != nil {
			t.Fatalf("GET %s: %v", path, err)
		}
	}
	return resp.StatusCode
}

func status(t *testing.T, s *stack.Stack, urn string) string {
	var row struct{ Status string }
	api(t, s, "/prescriptions/"+urn, &row)
	return row.Status
}

// lag sums the projector lag gauges from /metrics.
func lag(t *testing.T, s *stack.Stack) int {
	resp, err := http.Get("http://" + s.Projector.HTTPAddr() + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	total, seen := 0, 0
	for line := range strings.SplitSeq(string(body), "\n") {
		if strings.HasPrefix(line, "rxflow_projector_lag_events{") {
			var n int
			fmt.Sscan(line[strings.LastIndex(line, " ")+1:], &n)
			total += n
			seen++
		}
	}
	if seen == 0 {
		t.Fatal("no lag metrics")
	}
	return total
}

func eventually(t *testing.T, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", timeout, what)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

var payloads = map[string]string{
	"prescription.request":  `{"patientId":"pat-1","prescriberId":"dr-1","pharmacyId":"ph-1","medication":{"name":"Amoxicillin","code":"J01CA04","strength":"500mg","quantity":20,"refills":1}}`,
	"prescription.approve":  `{"approvedBy":"dr-1"}`,
	"prescription.reject":   `{"reason":"interaction with current medication"}`,
	"prescription.process":  `{}`,
	"prescription.dispense": `{"dispensedBy":"pharmacist-1","quantity":20}`,
	"prescription.complete": `{}`,
	"prescription.fail":     `{"reason":"out of stock"}`,
}

// send produces seed-format commands for urn, in order.
func send(t *testing.T, s *stack.Stack, urn string, events ...string) {
	t.Helper()
	var recs []kafkatest.Record
	for _, e := range events {
		recs = append(recs, kafkatest.Record{Key: []byte(urn), Value: []byte(fmt.Sprintf(`{"urn":%q,"event":%q,"payload":%s}`, urn, e, payloads[e]))})
	}
	kafkatest.Produce(t, s.Brokers, s.Topics.Commands, recs...)
}

var (
	happyPath    = []string{"prescription.request", "prescription.approve", "prescription.process", "prescription.dispense", "prescription.complete"}
	rejectedPath = []string{"prescription.request", "prescription.reject"}
	pharmacyPath = []string{"prescription.request", "prescription.approve", "prescription.process"}
)

package processor_test

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"rxflow/commands"
	"rxflow/domain"
	"rxflow/events"
	"rxflow/infra/eventstore"
	"rxflow/infra/kafka/kafkatest"
	"rxflow/service/processor"
)

// validPayload passes every guard of the command.
var validPayload = map[domain.CommandType]string{
	domain.Request:  `{"patientId":"pat-1","prescriberId":"dr-1","medication":{"name":"Amoxicillin","strength":"500mg","quantity":20,"refills":1}}`,
	domain.Approve:  `{"approvedBy":"dr-1"}`,
	domain.Reject:   `{"reason":"interaction with current medication"}`,
	domain.Process:  `{"pharmacyId":"ph-1"}`,
	domain.Dispense: `{"dispensedBy":"pharmacist-1","quantity":20,"lotNumber":"L42"}`,
	domain.Complete: ``,
	domain.Fail:     `{"reason":"out of stock"}`,
}

// pathTo lists the commands that bring a new prescription to status s.
var pathTo = map[domain.Status][]domain.CommandType{
	domain.StatusNone:       nil,
	domain.StatusRequested:  {domain.Request},
	domain.StatusApproved:   {domain.Request, domain.Approve},
	domain.StatusRejected:   {domain.Request, domain.Reject},
	domain.StatusProcessing: {domain.Request, domain.Approve, domain.Process},
	domain.StatusDispensed:  {domain.Request, domain.Approve, domain.Process, domain.Dispense},
	domain.StatusCompleted:  {domain.Request, domain.Approve, domain.Process, domain.Dispense, domain.Complete},
	domain.StatusFailed:     {domain.Request, domain.Approve, domain.Process, domain.Fail},
}

func names(t *testing.T, st *eventstore.Store, urn string) []string {
	t.Helper()
	recs, err := st.Load(context.Background(), urn)
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, r := range recs {
		out = append(out, r.Name)
	}
	return out
}

func TestSeedPathsThroughKafka(t *testing.T) {
	kafkatest.ForEachCluster(t, func(t *testing.T, brokers []string) {
		tp := newTopics(t)
		srv := startESDB(t, "127.0.0.1:0")
		startProcessor(t, brokers, tp, srv.ConnectionString())
		st := openStore(t, srv.ConnectionString())

		want := map[domain.Status][]string{
			domain.StatusCompleted: {events.NameRequested, events.NameApproved, events.NameProcessingStarted, events.NameDispensed, events.NameCompleted},
			domain.StatusRejected:  {events.NameRequested, events.NameRejected},
			domain.StatusFailed:    {events.NameRequested, events.NameApproved, events.NameProcessingStarted, events.NameFailed},
		}
		for status := range want {
			urn := "urn:rx:" + string(status) + "-" + tp.group
			for i, c := range pathTo[status] {
				kafkatest.Produce(t, brokers, tp.commands, command(urn, fmt.Sprintf("%s-%d", urn, i), string(c), validPayload[c]))
			}
		}
		for status, wantNames := range want {
			urn := "urn:rx:" + string(status) + "-" + tp.group
			eventually(t, 30*time.Second, "stream "+urn, func() bool { return slices.Equal(names(t, st, urn), wantNames) })
		}
		if got := kafkatest.ConsumeAll(t, brokers, tp.rejections); len(got) != 0 {
			t.Fatalf("valid paths produced rejections: %s", got[0].Value)
		}
	})
}

func TestEveryRefusalReachesTheRejectionTopic(t *testing.T) {
	kafkatest.ForEachCluster(t, func(t *testing.T, brokers []string) {
		tp := newTopics(t)
		srv := startESDB(t, "127.0.0.1:0")
		startProcessor(t, brokers, tp, srv.ConnectionString())

		wantCode := map[string]string{} // command id -> reason code
		statuses := append([]domain.Status{domain.StatusNone}, domain.Statuses...)
		for _, s := range statuses {
			urn := fmt.Sprintf("urn:rx:refuse-%s-%s", cmpOr(string(s), "none"), tp.group)
			var recs []kafkatest.Record
			for i, c := range pathTo[s] {
				recs = append(recs, command(urn, fmt.Sprintf("%s/path-%d", urn, i), string(c), validPayload[c]))
			}
			for _, c := range domain.CommandTypes {
				if _, ok := domain.Prescriptions.Lookup(s, c); ok {
					continue
				}
				id := fmt.Sprintf("%s/invalid-%s", urn, c)
				recs = append(recs, command(urn, id, string(c), validPayload[c]))
				switch {
				case s == domain.StatusNone:
					wantCode[id] = string(domain.ReasonUnknownPrescription)
				case c == domain.Request:
					wantCode[id] = string(domain.ReasonDuplicateRequest)
				case domain.Prescriptions.IsFinal(s):
					wantCode[id] = string(domain.ReasonFinalState)
				default:
					wantCode[id] = string(domain.ReasonInvalidTransition)
				}
			}
			kafkatest.Produce(t, brokers, tp.commands, recs...)
		}
		// A failed guard and a command id reused for other content.
		urn := "urn:rx:guards-" + tp.group
		kafkatest.Produce(t, brokers, tp.commands,
			command(urn, urn+"/req", "prescription.request", `{"patientId":"p"}`),
			command(urn, urn+"/req-ok", "prescription.request", validPayload[domain.Request]),
			command(urn, urn+"/req-ok", "prescription.reject", validPayload[domain.Reject]),
		)
		wantCode[urn+"/req"] = string(domain.ReasonGuardFailed)
		wantCode[urn+"/req-ok"] = string(commands.ReasonCommandIDReused)

		got := map[string]commands.RefusalMessage{}
		eventually(t, 30*time.Second, fmt.Sprintf("%d rejections", len(wantCode)), func() bool {
			for _, r := range kafkatest.ConsumeAll(t, brokers, tp.rejections) {
				var m commands.RefusalMessage
				if err := json.Unmarshal(r.Value, &m); err != nil {
					t.Fatalf("rejection is not JSON: %s", r.Value)
				}
				if string(r.Key) != m.URN || r.Headers["dedupe-key"] != m.URN+" "+m.CommandID+" "+m.Code {
					t.Fatalf("rejection key %q / dedupe %q for %+v", r.Key, r.Headers["dedupe-key"], m)
				}
				got[m.CommandID] = m
			}
			return len(got) >= len(wantCode)
		})
		for id, code := range wantCode {
			m, ok := got[id]
			if !ok || m.Code != code || m.Reason == "" || len(m.Command) == 0 {
				t.Errorf("command %s: rejection %+v, want code %s", id, m, code)
			}
		}
		if len(got) != len(wantCode) {
			t.Errorf("%d rejections, want %d", len(got), len(wantCode))
		}
		if g := got[urn+"/req"]; g.Guard != "prescriber_required" && g.Guard != "medication_required" {
			t.Errorf("guard failure names guard %q", g.Guard)
		}
	})
}

func cmpOr(s, def string) string {
	if s == "" {
		return def
	}
	return s
}

func TestDuplicatesAreRecognised(t *testing.T) {
	kafkatest.ForEachCluster(t, func(t *testing.T, brokers []string) {
		tp := newTopics(t)
		srv := startESDB(t, "127.0.0.1:0")
		svc := startProcessor(t, brokers, tp, srv.ConnectionString())
		st := openStore(t, srv.ConnectionString())
		urn := "urn:rx:dup-" + tp.group
		req := command(urn, urn+"/req", "prescription.request", validPayload[domain.Request])
		rej := command(urn, urn+"/bad", "prescription.complete", "")
		kafkatest.Produce(t, brokers, tp.commands, req, rej, req, rej)

		eventually(t, 30*time.Second, "4 commands handled", func() bool {
			return metric(t, svc, `rxflow_commands_total{outcome="duplicate"}`) == "1" &&
				metric(t, svc, `rxflow_commands_total{outcome="refused"}`) == "2"
		})
		if got := names(t, st, urn); !slices.Equal(got, []string{events.NameRequested, events.NameCommandRefused}) {
			t.Fatalf("stream %v: a redelivery must append nothing", got)
		}
		rejs := kafkatest.ConsumeAll(t, brokers, tp.rejections)
		if len(rejs) != 2 || string(rejs[0].Value) != string(rejs[1].Value) {
			t.Fatalf("a redelivered refusal must repeat the same rejection: %d messages", len(rejs))
		}
	})
}

// The wait of each command before its handling starts is observed once, from
// its record's timestamp.
func TestCommandWaitIsObserved(t *testing.T) {
	kafkatest.ForEachCluster(t, func(t *testing.T, brokers []string) {
		tp := newTopics(t)
		srv := startESDB(t, "127.0.0.1:0")
		svc := startProcessor(t, brokers, tp, srv.ConnectionString())
		urn := "urn:rx:wait-" + tp.group
		old := command(urn, urn+"/req", "prescription.request", validPayload[domain.Request])
		old.Timestamp = time.Now().Add(-time.Hour)
		kafkatest.Produce(t, brokers, tp.commands, old, command(urn, urn+"/bad", "prescription.complete", ""))

		eventually(t, 30*time.Second, "2 commands handled", func() bool {
			return metric(t, svc, `rxflow_commands_total{outcome="refused"}`) == "1"
		})
		if n := metric(t, svc, "rxflow_command_wait_seconds_count"); n != "2" {
			t.Errorf("%s waits observed, want 2", n)
		}
		if sum, _ := strconv.ParseFloat(metric(t, svc, "rxflow_command_wait_seconds_sum"), 64); sum < time.Hour.Seconds() {
			t.Errorf("waits sum to %.0f s, want at least the hour the first record is old", sum)
		}
	})
}

func TestUndecodableMessagesAreDeadLettered(t *testing.T) {
	kafkatest.ForEachCluster(t, func(t *testing.T, brokers []string) {
		tp := newTopics(t)
		srv := startESDB(t, "127.0.0.1:0")
		startProcessor(t, brokers, tp, srv.ConnectionString())

		cases := map[string]kafkatest.Record{
			string(commands.DecodeMalformed):    {Key: []byte("urn:rx:k1"), Value: []byte(`{"urn":"urn:rx:k1","event":"prescription.approve","payload":{"approvedBy":"d1"}}}`), Headers: map[string]string{"trace": "t1"}},
			string(commands.DecodeUnknownEvent): {Key: []byte("urn:rx:k2"), Value: []byte(`{"urn":"urn:rx:k2","event":"prescription.teleport"}`)},
			string(commands.DecodeMissingURN):   {Value: []byte(`{"event":"prescription.approve","payload":{}}`)},
			string(commands.DecodeWrongType):    {Key: []byte("urn:rx:k4"), Value: []byte(`{"urn":"urn:rx:k4","event":"prescription.request","payload":{"medication":{"quantity":"many"}}}`)},
			string(commands.DecodeTooLarge): {Key: []byte("urn:rx:k5"), Value: []byte(`{"urn":"urn:rx:k5","event":"prescription.reject","payload":{"reason":"` +
				strings.Repeat("x", commands.DefaultMaxCommandBytes) + `"}}`)},
			string(commands.DecodeInvalidUTF8): {Key: []byte("urn:rx:k6"), Value: []byte("{\"urn\":\"urn:rx:k6\",\"event\":\"prescription.approve\",\"payload\":{\"approvedBy\":\"\xff\xfe\"}}")},
			string(commands.DecodeInvalidURN):  {Value: []byte(`{"urn":"urn:rx:a\u00a0b","event":"prescription.complete"}`)},
			string(commands.DecodeInvalidText): {Key: []byte("urn:rx:k8"), Value: []byte(`{"urn":"urn:rx:k8","event":"prescription.complete","commandId":"c 1"}`)},
		}
		for _, r := range cases {
			kafkatest.Produce(t, brokers, tp.commands, r)
		}
		var dead []kafkatest.Record
		eventually(t, 30*time.Second, "dead letters", func() bool {
			dead = kafkatest.ConsumeAll(t, brokers, tp.dlq)
			return len(dead) >= len(cases)
		})
		if len(dead) != len(cases) {
			t.Fatalf("%d dead letters, want %d", len(dead), len(cases))
		}
		for _, d := range dead {
			code := d.Headers[processor.HeaderDLQCode]
			want, ok := cases[code]
			if !ok {
				t.Fatalf("dead letter with code %q", code)
			}
			body := deadLetterOf(t, d)
			if body.Code != code || body.Error == "" || body.Source.Topic != tp.commands || string(d.Key) != string(want.Key) ||
				d.Headers[processor.HeaderDLQError] == "" || d.Headers[processor.HeaderDLQTopic] != tp.commands || d.Headers[processor.HeaderDLQOffset] == "" {
				t.Errorf("dead letter %s: key %q headers %v body %+v", code, d.Key, d.Headers, body)
			}
			if raw := deadLetterValue(t, body); string(raw) != string(want.Value) {
				t.Errorf("dead letter %s: value %d bytes, want the original %d bytes", code, len(raw), len(want.Value))
			}
			for k, v := range want.Headers {
				if body.Headers[k] != v {
					t.Errorf("dead letter %s lost header %s", code, k)
				}
			}
		}
		if got := kafkatest.ConsumeAll(t, brokers, tp.rejections); len(got) != 0 {
			t.Fatalf("undecodable messages must not be rejections: %s", got[0].Value)
		}
	})
}

// deadLetterOf decodes a dead letter, which must be valid UTF-8 JSON.
func deadLetterOf(t *testing.T, rec kafkatest.Record) commands.DeadLetter {
	t.Helper()
	if !utf8.Valid(rec.Value) || !json.Valid(rec.Value) {
		t.Fatalf("dead letter is not valid UTF-8 JSON: %q", rec.Value)
	}
	var d commands.DeadLetter
	if err := json.Unmarshal(rec.Value, &d); err != nil {
		t.Fatal(err)
	}
	return d
}

func deadLetterValue(t *testing.T, d commands.DeadLetter) []byte {
	t.Helper()
	b, err := base64.StdEncoding.DecodeString(d.ValueBase64)
	if err != nil {
		t.Fatal(err)
	}
	if d.Value != nil && *d.Value != string(b) {
		t.Fatalf("dead letter value %q differs from its base64 %q", *d.Value, b)
	}
	return b
}

// A store outage holds the command: not committed, not dropped, then processed.
func TestStoreOutageHoldsCommands(t *testing.T) {
	kafkatest.ForEachCluster(t, func(t *testing.T, brokers []string) {
		tp := newTopics(t)
		srv := startESDB(t, "127.0.0.1:0")
		addr := srv.Addr()
		if err := srv.Close(); err != nil {
			t.Fatal(err)
		}
		startProcessor(t, brokers, tp, "esdb://"+addr+"?tls=false")
		urn := "urn:rx:outage-" + tp.group
		sent := kafkatest.Produce(t, brokers, tp.commands, command(urn, urn+"/req", "prescription.request", validPayload[domain.Request]))

		time.Sleep(2 * time.Second) // several retries and a few auto-commit intervals
		if off, ok := kafkatest.CommittedOffsets(t, brokers, tp.group, tp.commands)[sent[0].Partition]; ok && off > sent[0].Offset {
			t.Fatalf("offset %d committed while the store was down", off)
		}
		if n := len(kafkatest.ConsumeAll(t, brokers, tp.dlq)) + len(kafkatest.ConsumeAll(t, brokers, tp.rejections)); n != 0 {
			t.Fatalf("%d outcomes published while the store was down", n)
		}

		srv = startESDB(t, addr)
		st := openStore(t, srv.ConnectionString())
		eventually(t, 60*time.Second, "the held command to be appended", func() bool {
			return slices.Equal(names(t, st, urn), []string{events.NameRequested})
		})
		eventually(t, 30*time.Second, "its offset to be committed", func() bool {
			return kafkatest.CommittedOffsets(t, brokers, tp.group, tp.commands)[sent[0].Partition] == sent[0].Offset+1
		})
	})
}

package stack

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"time"

	"github.com/ThreeDotsLabs/watermill"
	"github.com/ThreeDotsLabs/watermill/message"

	"rxflow/domain"
	"rxflow/infra/kafka"
	"rxflow/projections"
	"rxflow/standin/partnersim"
)

// scenario is one of the seed's stories, played through Kafka.
type scenario struct {
	name     string
	urn      string
	commands []domain.CommandType // seed events, in order; dup repeats the previous command
	want     string               // the status it must end in
	events   int                  // the events its stream must hold, refusals included
	before   func(*Stack)
	note     string // printed before the scenario is played
}

// dup in a scenario delivers the previous command again.
const dup domain.CommandType = "dup"

var demoPayloads = map[domain.CommandType]string{
	domain.Request:  `{"patientId":"patient-42","prescriberId":"dr-house","pharmacyId":"pharmacy-7","medication":{"name":"Amoxicillin","code":"J01CA04","strength":"500mg","quantity":21,"refills":0}}`,
	domain.Approve:  `{"approvedBy":"dr-house"}`,
	domain.Reject:   `{"reason":"Interaction with current medication"}`,
	domain.Process:  `{}`,
	domain.Dispense: `{"dispensedBy":"pharmacist-1","quantity":21,"lotNumber":"LOT-2026-11"}`,
	domain.Complete: `{}`,
}

// Demo plays the seed's scenarios through Kafka: the happy path, a
// rejection, a pharmacy failure, an invalid transition and a duplicate. It
// prints each prescription's timeline read back through the query API, and
// fails if one does not end as the workflow says it must.
func (s *Stack) Demo(ctx context.Context, out io.Writer) error {
	run := time.Now().UTC().Format("20060102-150405")
	scenarios := []scenario{
		{name: "happy path", urn: "urn:rx:demo-happy-" + run, want: "completed", events: 5,
			commands: []domain.CommandType{domain.Request, domain.Approve, domain.Process, domain.Dispense, domain.Complete}},
		{name: "rejection", urn: "urn:rx:demo-rejected-" + run, want: "rejected", events: 2,
			commands: []domain.CommandType{domain.Request, domain.Reject}},
		{name: "pharmacy failure (simulator down)", urn: "urn:rx:demo-pharmacy-down-" + run, want: "failed", events: 4,
			commands: []domain.CommandType{domain.Request, domain.Approve, domain.Process},
			before:   func(s *Stack) { s.Sim.SetDown(partnersim.Pharmacy, true) },
			note: "The pharmacy simulator is down for this scenario: the projector's WARN lines\n" +
				"\"partner call failed … simulated outage\" that follow are expected."},
		{name: "invalid transition (dispense before approval)", urn: "urn:rx:demo-invalid-" + run, want: "requested", events: 2,
			commands: []domain.CommandType{domain.Request, domain.Dispense}},
		{name: "duplicate (the same command delivered twice)", urn: "urn:rx:demo-duplicate-" + run, want: "approved", events: 2,
			commands: []domain.CommandType{domain.Request, domain.Approve, dup}},
	}
	pub, err := kafka.NewPublisher(kafka.Config{Brokers: s.Brokers, Security: s.cfg.KafkaSecurity}, watermill.NopLogger{})
	if err != nil {
		return err
	}
	defer pub.Close()
	var failed []string
	for _, sc := range scenarios {
		fmt.Fprintf(out, "\n▶ %s — %s\n", sc.name, sc.urn)
		if sc.note != "" {
			fmt.Fprintln(out, sc.note)
		}
		if sc.before != nil {
			sc.before(s)
		}
		if err := s.play(pub, sc); err != nil {
			return err
		}
		status, err := s.waitFor(ctx, sc)
		s.Sim.SetDown(partnersim.Pharmacy, false)
		if err != nil {
			return err
		}
		if status != sc.want {
			failed = append(failed, fmt.Sprintf("%s ended %q, want %q", sc.name, status, sc.want))
		}
		if err := s.printTimeline(ctx, out, sc.urn); err != nil {
			return err
		}
	}
	if len(failed) > 0 {
		return fmt.Errorf("demo: %s", strings.Join(failed, "; "))
	}
	fmt.Fprintln(out, "\nAll scenarios ended as the workflow says.")
	return nil
}

func (s *Stack) play(pub message.Publisher, sc scenario) error {
	var last *message.Message
	for i, c := range sc.commands {
		msg := last
		if c != dup {
			body := fmt.Sprintf(`{"urn":%q,"event":%q,"commandId":"%s/%d","actor":"demo","payload":%s}`, sc.urn, c, sc.urn, i, demoPayloads[c])
			msg = message.NewMessage(watermill.NewUUID(), []byte(body))
			msg.Metadata.Set(kafka.MetadataKey, sc.urn)
		}
		if err := pub.Publish(s.Topics.Commands, msg.Copy()); err != nil {
			return err
		}
		last = msg
	}
	return nil
}

// waitFor polls the query API until the scenario's stream holds its events
// and the read model shows the wanted status, or 30 seconds pass. It
// returns the status the read model shows.
func (s *Stack) waitFor(ctx context.Context, sc scenario) (string, error) {
	deadline := time.Now().Add(30 * time.Second)
	for {
		var row projections.RowView
		var history struct{ Events []projections.HistoryEntry }
		if _, err := s.query(ctx, "/prescriptions/"+sc.urn, &row); err != nil {
			return "", err
		}
		if _, err := s.query(ctx, "/prescriptions/"+sc.urn+"/history", &history); err != nil {
			return "", err
		}
		if len(history.Events) >= sc.events && string(row.Status) == sc.want || time.Now().After(deadline) {
			return string(row.Status), nil
		}
		select {
		case <-ctx.Done():
			return "", ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
	}
}

func (s *Stack) printTimeline(ctx context.Context, out io.Writer, urn string) error {
	var history struct{ Events []projections.HistoryEntry }
	if _, err := s.query(ctx, "/prescriptions/"+urn+"/history", &history); err != nil {
		return err
	}
	for _, e := range history.Events {
		detail := ""
		if e.EventType == "PrescriptionCommandRefused" {
			var r struct{ Command, Code, Reason string }
			_ = json.Unmarshal(e.Payload, &r)
			detail = fmt.Sprintf("  %s refused: %s (%s)", r.Command, r.Reason, r.Code)
		}
		fmt.Fprintf(out, "  #%d %s  %-30s by %-20s%s\n", e.Revision, e.Time.Format(time.TimeOnly), e.EventType, e.Actor, detail)
	}
	var row projections.RowView
	if _, err := s.query(ctx, "/prescriptions/"+urn, &row); err != nil {
		return err
	}
	fmt.Fprintf(out, "  → status %s (read model at position %d)\n", row.Status, row.LastPosition)
	return nil
}

// query GETs a query API path and decodes a 200 answer into v.
func (s *Stack) query(ctx context.Context, path string, v any) (int, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+s.Projector.HTTPAddr()+path, nil)
	if err != nil {
		return 0, err
	}
	req.Header.Set("Authorization", "Bearer "+s.cfg.Token)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	switch resp.StatusCode {
	case http.StatusOK:
		return resp.StatusCode, json.NewDecoder(resp.Body).Decode(v)
	case http.StatusNotFound:
		return resp.StatusCode, nil
	}
	return resp.StatusCode, fmt.Errorf("GET %s: %s", path, resp.Status)
}

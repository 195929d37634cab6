package main

import (
	"fmt"

	"github.com/twmb/franz-go/pkg/kgo"

	"rxflow/domain"
)

// step is one command of a lifecycle, with a payload that passes its guards.
type step struct {
	typ     domain.CommandType
	payload string
}

var (
	request  = step{domain.Request, `{"patientId":"pat-1","prescriberId":"dr-1","medication":{"name":"Amoxicillin","strength":"500mg","quantity":20,"refills":1}}`}
	approve  = step{domain.Approve, `{"approvedBy":"dr-1"}`}
	reject   = step{domain.Reject, `{"reason":"interaction with current medication"}`}
	process  = step{domain.Process, `{"pharmacyId":"ph-1"}`}
	dispense = step{domain.Dispense, `{"dispensedBy":"pharmacist-1","quantity":20,"lotNumber":"L42"}`}
	complete = step{domain.Complete, `{}`}
	fail     = step{domain.Fail, `{"reason":"out of stock"}`}
)

// Full lifecycles: eight in ten prescriptions complete, one is rejected and
// one fails in the pharmacy. Every command is accepted and appends one event.
var (
	completed = []step{request, approve, process, dispense, complete}
	rejected  = []step{request, reject}
	failed    = []step{request, approve, process, fail}
)

func lifecycle(generation int) []step {
	switch generation % 10 {
	case 3:
		return rejected
	case 7:
		return failed
	}
	return completed
}

// command is one seed-format command message.
type command struct {
	id    string
	urn   string
	value []byte
}

func (c command) record(topic string) *kgo.Record {
	return &kgo.Record{Topic: topic, Key: []byte(c.urn), Value: c.value}
}

// workload returns n commands over `active` prescription slots, taken round
// robin: each slot runs one full lifecycle after another, so the keys spread
// over the partitions and each prescription's commands stay in order. Only
// the lifecycles still running when n is reached are cut short.
func workload(prefix string, n, active int) []command {
	type slot struct {
		gen, next int
		urn       string
	}
	slots := make([]slot, active)
	for i := range slots {
		slots[i] = slot{gen: i, urn: fmt.Sprintf("urn:rx:%s-%d", prefix, i)}
	}
	out := make([]command, 0, n)
	for len(out) < n {
		for i := range slots {
			if len(out) == n {
				break
			}
			s := &slots[i]
			steps := lifecycle(s.gen)
			if s.next == len(steps) {
				s.gen += active
				s.next = 0
				s.urn = fmt.Sprintf("urn:rx:%s-%d", prefix, s.gen)
				steps = lifecycle(s.gen)
			}
			st := steps[s.next]
			s.next++
			id := fmt.Sprintf("%s/%d", s.urn, s.next)
			value := fmt.Sprintf(`{"urn":%q,"event":%q,"commandId":%q,"payload":%s}`, s.urn, st.typ, id, st.payload)
			out = append(out, command{id: id, urn: s.urn, value: []byte(value)})
		}
	}
	return out
}

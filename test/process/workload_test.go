package process_test

import (
	"encoding/json"
	"fmt"
	"maps"
	"slices"
	"testing"

	"rxflow/domain"
	"rxflow/events"
	"rxflow/infra/kafka/kafkatest"
	"rxflow/projections"
	"rxflow/service/projector"
	"rxflow/standin/partnersim"
)

// command is one seed-format command with its own command id.
type command struct{ id, event string }

// rx is a prescription of the workload: its commands in order and the
// status they must lead to. The pharmacy refuses the order of a refused
// prescription (pharmacy closedPharmacy), so the projector fails it: its
// stream ends with that follow-up command's event.
type rx struct {
	urn     string
	cmds    []command
	final   domain.Status
	refused bool
}

// closedPharmacy is the pharmacy id whose orders the simulated pharmacy
// refuses in the tests that make it (partnersim.Refuse).
const closedPharmacy = "ph-closed"

func (r rx) pharmacy() string {
	if r.refused {
		return closedPharmacy
	}
	return "ph-1"
}

var lifecycles = map[domain.Status][]string{
	domain.StatusCompleted: {"prescription.request", "prescription.approve", "prescription.process", "prescription.dispense", "prescription.complete"},
	domain.StatusRejected:  {"prescription.request", "prescription.reject"},
	domain.StatusFailed:    {"prescription.request", "prescription.approve", "prescription.process", "prescription.fail"},
}

// plan returns n prescriptions: one in ten is rejected, one in ten fails in
// processing, the rest complete. n = 60 gives 276 commands.
func plan(n int) []rx {
	out := make([]rx, n)
	for i := range out {
		final := domain.StatusCompleted
		switch i % 10 {
		case 3:
			final = domain.StatusRejected
		case 7:
			final = domain.StatusFailed
		}
		r := rx{urn: fmt.Sprintf("urn:rx:proc-%03d", i), final: final}
		for j, e := range lifecycles[final] {
			r.cmds = append(r.cmds, command{id: fmt.Sprintf("cmd-%03d-%d", i, j), event: e})
		}
		out[i] = r
	}
	return out
}

func countCommands(rxs []rx, rounds ...int) int {
	n := 0
	for _, r := range rxs {
		for _, k := range rounds {
			if k < len(r.cmds) {
				n++
			}
		}
	}
	return n
}

func payload(i int, pharmacy, event string) string {
	switch event {
	case "prescription.request":
		return fmt.Sprintf(`{"patientId":"pat-%03d","prescriberId":"dr-1","pharmacyId":%q,"medication":{"name":"Amoxicillin","code":"J01CA04","strength":"500mg","quantity":20,"refills":1}}`, i, pharmacy)
	case "prescription.approve":
		return `{"approvedBy":"dr-1"}`
	case "prescription.reject":
		return `{"reason":"interaction with current medication"}`
	case "prescription.dispense":
		return `{"dispensedBy":"pharmacist-1","quantity":20}`
	case "prescription.fail":
		return `{"reason":"out of stock"}`
	}
	return `{}`
}

// sentCommand is where a command was written on the command topic.
type sentCommand struct {
	id        string
	partition int32
	offset    int64
}

// produce sends the commands of the given rounds (round k is every
// prescription's k-th command), round by round, keyed by urn, and returns
// how many it sent.
func (s *system) produce(t *testing.T, rxs []rx, rounds ...int) int {
	t.Helper()
	var recs []kafkatest.Record
	var ids []string
	for _, k := range rounds {
		for i, r := range rxs {
			if k >= len(r.cmds) {
				continue
			}
			c := r.cmds[k]
			recs = append(recs, kafkatest.Record{Key: []byte(r.urn),
				Value: fmt.Appendf(nil, `{"urn":%q,"event":%q,"commandId":%q,"payload":%s}`, r.urn, c.event, c.id, payload(i, r.pharmacy(), c.event))})
			ids = append(ids, c.id)
		}
	}
	for i, rec := range kafkatest.Produce(t, s.brokers, s.topics.commands, recs...) {
		s.sent = append(s.sent, sentCommand{id: ids[i], partition: rec.Partition, offset: rec.Offset})
	}
	return len(recs)
}

// checkCommitted compares the processor group's committed offsets with the
// commands stored in the streams: a committed command must be stored (the
// processor never commits before the append is acknowledged). It returns
// how many commands are committed, stored, and stored but not committed
// (these are delivered again: at least once).
func (s *system) checkCommitted(t *testing.T, rxs []rx) (committed, stored, redeliver int) {
	t.Helper()
	// Offsets first: whatever they cover must already be in the streams.
	offsets := kafkatest.CommittedOffsets(t, s.brokers, s.topics.group, s.topics.commands)
	applied := map[string]bool{}
	for _, h := range s.histories(t, rxs) {
		for _, e := range h {
			applied[e.CommandID] = true
		}
	}
	for _, c := range s.sent {
		isCommitted := c.offset < offsets[c.partition]
		switch {
		case isCommitted && !applied[c.id]:
			t.Errorf("command %s (partition %d, offset %d) is committed but not stored", c.id, c.partition, c.offset)
		case !isCommitted && applied[c.id]:
			redeliver++
		}
		if isCommitted {
			committed++
		}
		if applied[c.id] {
			stored++
		}
	}
	return committed, stored, redeliver
}

// partnerOf maps the command that causes each partner call.
var partnerOf = map[string]partnersim.Partner{
	"prescription.approve":  partnersim.Insurance,
	"prescription.process":  partnersim.Pharmacy,
	"prescription.complete": partnersim.Notifications,
	"prescription.fail":     partnersim.Alerting,
}

// expectedCalls counts the partner calls the workload causes.
func expectedCalls(rxs []rx) map[partnersim.Partner]int {
	n := map[partnersim.Partner]int{}
	for _, r := range rxs {
		for _, c := range r.cmds {
			if p, ok := partnerOf[c.event]; ok {
				n[p]++
			}
		}
	}
	return n
}

// waitSettled waits until the read model shows every prescription in its
// final status, every expected partner call was accepted and the projectors
// have no lag.
func (s *system) waitSettled(t *testing.T, rxs []rx) {
	t.Helper()
	want := expectedCalls(rxs)
	s.eventuallyf(t, settleTimeout, "every prescription final, every partner call accepted, no projector lag", func() (bool, string) {
		var page struct{ Items []projections.RowView }
		if code := getJSON(t, "http://"+s.projAddr+"/prescriptions?limit=500", true, &page); code != 200 {
			return false, fmt.Sprintf("query API answered %d", code)
		}
		final := map[string]domain.Status{}
		for _, r := range page.Items {
			final[r.URN] = r.Status
		}
		var pending []string
		for _, r := range rxs {
			if final[r.urn] != r.final {
				pending = append(pending, fmt.Sprintf("%s is %q", r.urn, final[r.urn]))
			}
		}
		accepted := map[partnersim.Partner]int{}
		for p, r := range s.simCalls(t) {
			accepted[p] = len(r.Accepted)
		}
		lag := s.projectorLag()
		state := fmt.Sprintf("%d of %d prescriptions not final %v; partner calls accepted %v of %v; projector lag %v; processor handled %v, transient failures %v",
			len(pending), len(rxs), pending[:min(3, len(pending))], accepted, want, lag, s.handled(), metric(s.procAddr, "rxflow_command_failures_total"))
		if len(pending) > 0 || lag != 0 {
			return false, state
		}
		for p, n := range want {
			if accepted[p] < n {
				return false, state
			}
		}
		return true, state
	})
}

// histories reads every prescription's stream through the query API.
func (s *system) histories(t *testing.T, rxs []rx) map[string][]projections.HistoryEntry {
	t.Helper()
	out := map[string][]projections.HistoryEntry{}
	for _, r := range rxs {
		out[r.urn] = s.history(t, r.urn)
	}
	return out
}

// checkStreams: each stream holds exactly one event per command, in the
// order sent, with the event id derived from the command id — no command
// lost, none applied twice, none refused. A refused prescription's stream
// ends with the pharmacy reaction's prescription.fail, once.
func checkStreams(t *testing.T, rxs []rx, hist map[string][]projections.HistoryEntry) {
	t.Helper()
	for _, r := range rxs {
		h := hist[r.urn]
		got := make([]string, len(h))
		for i, e := range h {
			got[i] = e.CommandID + " " + e.Event + " " + e.EventType
		}
		cmds := r.cmds
		if r.refused && len(h) == len(cmds)+1 {
			process := h[len(cmds)-1].EventID
			cmds = append(slices.Clone(cmds), command{id: projections.FollowUpCommandID("pharmacy", process), event: "prescription.fail"})
		}
		ok := len(h) == len(cmds)
		for i := 0; ok && i < len(h); i++ {
			e, c := h[i], cmds[i]
			ok = e.CommandID == c.id && e.Event == c.event && e.EventType != events.NameCommandRefused &&
				e.Revision == uint64(i) && e.EventID == events.EventID(r.urn, c.id, 0).String()
		}
		if !ok {
			t.Errorf("%s: stream holds %q, want one event per command %v (refused by the pharmacy: %v)", r.urn, got, r.cmds, r.refused)
		}
	}
}

// checkReadModel: the read model has every prescription, final, at the
// stream's last revision and position.
func (s *system) checkReadModel(t *testing.T, rxs []rx, hist map[string][]projections.HistoryEntry) {
	t.Helper()
	rows := s.rows(t)
	if len(rows) != len(rxs) {
		t.Errorf("read model has %d prescriptions, want %d", len(rows), len(rxs))
	}
	for i, r := range rxs {
		row, ok := rows[r.urn]
		h := hist[r.urn]
		switch {
		case !ok:
			t.Errorf("%s: missing from the read model", r.urn)
		case row.Status != r.final || row.PatientID != fmt.Sprintf("pat-%03d", i):
			t.Errorf("%s: read model has status %s, patient %s; want %s", r.urn, row.Status, row.PatientID, r.final)
		case len(h) == 0 || row.LastRevision != h[len(h)-1].Revision || row.LastPosition != h[len(h)-1].Position:
			t.Errorf("%s: read model at revision %d, position %d; the stream ends elsewhere", r.urn, row.LastRevision, row.LastPosition)
		}
	}
}

// checkNoRejections: valid commands, redelivered or not, are never refused
// or dead-lettered.
func (s *system) checkNoRejections(t *testing.T) {
	t.Helper()
	for _, topic := range []string{s.topics.rejections, s.topics.dlq} {
		if recs := kafkatest.ConsumeAll(t, s.brokers, topic); len(recs) > 0 {
			t.Errorf("%d messages on %s, want none; first: %s", len(recs), topic, recs[0].Value)
		}
	}
}

// checkPartners: each partner accepted exactly the expected idempotency
// keys (the causing events' ids), refused no request, and performed no side
// effect twice. Replays of accepted keys are logged.
func (s *system) checkPartners(t *testing.T, rxs []rx, hist map[string][]projections.HistoryEntry) {
	t.Helper()
	want := map[partnersim.Partner][]string{}
	refusedKeys := map[string]bool{} // the pharmacy orders refused on purpose
	for _, r := range rxs {
		for _, e := range hist[r.urn] {
			p, ok := partnerOf[e.Event]
			switch {
			case !ok:
			case r.refused && p == partnersim.Pharmacy:
				refusedKeys[e.EventID] = true
			default:
				want[p] = append(want[p], e.EventID)
			}
		}
	}
	calls := s.simCalls(t)
	for _, p := range partnersim.Partners() {
		rep := calls[p]
		var accepted []string
		for _, c := range rep.Accepted {
			accepted = append(accepted, c.IdempotencyKey)
		}
		slices.Sort(accepted)
		exp := slices.Sorted(slices.Values(want[p]))
		if !slices.Equal(accepted, exp) {
			missing, extra := diff(exp, accepted)
			t.Errorf("%s accepted %d keys, want %d; missing %v, unexpected %v", p, len(accepted), len(exp), missing, extra)
		}
		effects, replays, refusals := map[string]int{}, 0, 0
		for _, c := range rep.Calls {
			switch {
			case p == partnersim.Pharmacy && refusedKeys[c.IdempotencyKey] && c.Status == refusalStatus:
				refusals++
			case c.Status < 200 || c.Status > 299:
				t.Errorf("%s answered %d to key %s (attempt %d): %s", p, c.Status, c.IdempotencyKey, c.Attempt, c.Reason)
			case c.Replay:
				replays++
			default:
				effects[c.IdempotencyKey]++
			}
		}
		for k, n := range effects {
			if n > 1 {
				t.Errorf("%s performed the side effect of key %s %d times", p, k, n)
			}
		}
		if replays > 0 || refusals > 0 {
			t.Logf("%s: %d calls in all, %d idempotent replays of accepted keys, %d refusals of %d orders refused on purpose",
				p, len(rep.Calls), replays, refusals, len(refusedKeys))
		}
		checkOneKeyPerEffect(t, p, rep.Accepted)
	}
}

// checkOutbound: every outbound topic holds a message for every event it
// must carry, keyed by urn and deduplicated by event id, and nothing else.
// Duplicates are allowed by the at-least-once contract and are logged.
func (s *system) checkOutbound(t *testing.T, rxs []rx, hist map[string][]projections.HistoryEntry) {
	t.Helper()
	want := map[string]map[string]string{s.topics.changed: {}, s.topics.dispensed: {}, s.topics.failed: {}} // topic → event id → urn
	for _, r := range rxs {
		for _, e := range hist[r.urn] {
			want[s.topics.changed][e.EventID] = r.urn
			switch e.Event {
			case "prescription.dispense":
				want[s.topics.dispensed][e.EventID] = r.urn
			case "prescription.fail":
				want[s.topics.failed][e.EventID] = r.urn
			}
		}
	}
	for _, topic := range slices.Sorted(maps.Keys(want)) {
		exp := want[topic]
		seen := map[string]int{}
		for _, rec := range kafkatest.ConsumeAll(t, s.brokers, topic) {
			id := rec.Headers[projector.HeaderDedupeKey]
			urn, ok := exp[id]
			switch {
			case !ok:
				t.Errorf("%s: unexpected message with dedupe key %q: %s", topic, id, rec.Value)
			case string(rec.Key) != urn:
				t.Errorf("%s: message %s keyed %q, want %q", topic, id, rec.Key, urn)
			}
			seen[id]++
		}
		var missing []string
		dups := 0
		for id := range exp {
			if seen[id] == 0 {
				missing = append(missing, id)
			}
			dups += max(seen[id]-1, 0)
		}
		if len(missing) > 0 {
			t.Errorf("%s: %d of %d expected messages missing, e.g. %v", topic, len(missing), len(exp), missing[:min(5, len(missing))])
		}
		if dups > 0 {
			t.Logf("%s: %d duplicate messages (allowed: at least once)", topic, dups)
		}
	}
}

// refusalStatus is what the simulated pharmacy answers to an order for
// closedPharmacy.
const refusalStatus = 422

// checkOneKeyPerEffect: no side effect was made under two idempotency keys,
// that is, no partner accepted two calls of the same kind (path, and the
// alert's or notice's text) for one prescription.
func checkOneKeyPerEffect(t *testing.T, p partnersim.Partner, accepted []partnersim.Call) {
	t.Helper()
	keys := map[string][]string{}
	for _, c := range accepted {
		var body struct{ URN, Message, Summary string }
		if err := json.Unmarshal(c.Body, &body); err != nil {
			t.Errorf("%s: accepted call %s has no JSON body: %v", p, c.IdempotencyKey, err)
			continue
		}
		effect := body.URN + " " + body.Message + body.Summary
		keys[effect] = append(keys[effect], c.IdempotencyKey)
	}
	for effect, ks := range keys {
		if len(ks) > 1 {
			t.Errorf("%s: the effect %q was made under %d keys: %v", p, effect, len(ks), ks)
		}
	}
}

// diff returns what want has and got lacks, and the reverse; both sorted.
func diff(want, got []string) (missing, extra []string) {
	for _, w := range want {
		if _, ok := slices.BinarySearch(got, w); !ok {
			missing = append(missing, w)
		}
	}
	for _, g := range got {
		if _, ok := slices.BinarySearch(want, g); !ok {
			extra = append(extra, g)
		}
	}
	return missing, extra
}

// checkAll runs every check on a settled system.
func (s *system) checkAll(t *testing.T, rxs []rx) {
	t.Helper()
	hist := s.histories(t, rxs)
	checkStreams(t, rxs, hist)
	s.checkReadModel(t, rxs, hist)
	s.checkNoRejections(t)
	s.checkPartners(t, rxs, hist)
	s.checkOutbound(t, rxs, hist)
}

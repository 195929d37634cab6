package processor_test

import (
	"context"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"strconv"
	"testing"
	"time"

	"rxflow/commands"
	"rxflow/domain"
	"rxflow/infra/kafka/kafkatest"
	"rxflow/service/processor"
)

// Two processors in one consumer group (the second joins mid-stream, forcing
// a rebalance) handle 1,000 prescriptions driven by random command sequences
// with redelivered duplicates. Every stream must be a valid path of the
// workflow table, and every command must have exactly one outcome.
func TestTwoProcessorsRandomCommands(t *testing.T) {
	kafkatest.ForEachCluster(t, func(t *testing.T, brokers []string) {
		const prescriptions = 1000
		seed := uint64(time.Now().UnixNano())
		t.Logf("seed %d", seed)
		rng := rand.New(rand.NewPCG(seed, 42))

		tp := newTopics(t)
		srv := startESDB(t, "127.0.0.1:0")
		st := openStore(t, srv.ConnectionString())
		first := startProcessor(t, brokers, tp, srv.ConnectionString())

		sent := map[string]map[string]bool{} // urn -> command ids
		var records []kafkatest.Record
		for i := range prescriptions {
			urn := fmt.Sprintf("urn:rx:c%04d-%s", i, tp.group)
			sent[urn] = map[string]bool{}
			var mine []kafkatest.Record
			n := 2 + rng.IntN(7)
			for j := range n {
				c := domain.Request
				if j > 0 {
					c = domain.CommandTypes[rng.IntN(len(domain.CommandTypes))]
				}
				id := urn + "/" + strconv.Itoa(j)
				sent[urn][id] = true
				mine = append(mine, command(urn, id, string(c), validPayload[c]))
				if rng.IntN(5) == 0 { // a redelivery of an earlier command
					mine = append(mine, mine[rng.IntN(len(mine))])
				}
			}
			records = append(records, mine...)
		}
		start := time.Now()
		half := len(records) / 2
		kafkatest.Produce(t, brokers, tp.commands, records[:half]...)
		second := startProcessor(t, brokers, tp, srv.ConnectionString())
		kafkatest.Produce(t, brokers, tp.commands, records[half:]...)

		handled := func() int {
			total := 0
			for _, svc := range []*processor.Service{first, second} {
				for _, o := range []string{"appended", "duplicate", "refused", "dead_lettered"} {
					v, _ := strconv.Atoi(metric(t, svc, `rxflow_commands_total{outcome="`+o+`"}`))
					total += v
				}
			}
			return total
		}
		eventually(t, 3*time.Minute, fmt.Sprintf("%d messages handled", len(records)), func() bool { return handled() >= len(records) })
		t.Logf("%d messages (%d prescriptions) handled in %v: %.0f commands/s",
			len(records), prescriptions, time.Since(start).Round(time.Millisecond), float64(len(records))/time.Since(start).Seconds())

		rejections := map[string]commands.RefusalMessage{}
		for _, r := range kafkatest.ConsumeAll(t, brokers, tp.rejections) {
			var m commands.RefusalMessage
			if err := json.Unmarshal(r.Value, &m); err != nil {
				t.Fatal(err)
			}
			rejections[m.CommandID] = m
		}
		for urn, ids := range sent {
			recs, err := st.Load(context.Background(), urn)
			if err != nil {
				t.Fatal(err)
			}
			var p domain.Prescription
			outcomes := map[string]int{}
			for _, r := range recs {
				outcomes[r.Meta.CommandID]++
				if refused, ok := r.Event.(domain.Refused); ok {
					if m, ok := rejections[r.Meta.CommandID]; !ok || m.Code != string(refused.Code) {
						t.Fatalf("%s: refusal of %s has rejection message %+v", urn, r.Meta.CommandID, m)
					}
				} else {
					if _, ok := domain.Prescriptions.Lookup(p.Status, r.Event.Cause()); !ok {
						t.Fatalf("%s: %s from %q is not in the workflow table", urn, r.Name, p.Status)
					}
					if _, ok := rejections[r.Meta.CommandID]; ok {
						t.Fatalf("%s: command %s was both appended and rejected", urn, r.Meta.CommandID)
					}
				}
				p = domain.Evolve(p, r.Event)
			}
			for id := range ids {
				if outcomes[id] != 1 {
					t.Fatalf("%s: command %s has %d outcomes in the stream, want 1", urn, id, outcomes[id])
				}
			}
			if len(outcomes) != len(ids) {
				t.Fatalf("%s: stream holds %d commands, %d were sent", urn, len(outcomes), len(ids))
			}
		}
	})
}

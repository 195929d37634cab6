package process_test

import (
	"testing"
	"time"

	"rxflow/infra/kafka/kafkatest"
	"rxflow/projections"
	"rxflow/standin/partnersim"
)

// The processor is SIGKILLed while it handles commands and restarted:
// every command takes effect exactly once (at-least-once delivery plus
// idempotent appends), and a redelivered command is a duplicate, never a
// rejection.
func TestProcessorSIGKILL(t *testing.T) {
	kafkatest.ForEachCluster(t, func(t *testing.T, brokers []string) {
		s := newSystem(t, brokers)
		rxs := plan(60)
		sent := s.produce(t, rxs, 0, 1, 2)
		var atKill float64
		s.eventually(t, settleTimeout, "the processor to handle 60 commands", func() bool {
			atKill = s.handled()
			return atKill >= 60
		})
		s.proc.kill(t)
		committed, stored, redeliver := s.checkCommitted(t, rxs)
		t.Logf("SIGKILL after %v of %d commands handled: %d stored, %d committed, %d to be delivered again", atKill, sent, stored, committed, redeliver)

		s.produce(t, rxs, 3, 4) // while the processor is down
		s.startProcessor(t)
		s.waitSettled(t, rxs)
		t.Logf("restarted processor handled %v commands, %v of them duplicates", s.handled(),
			metric(s.procAddr, `rxflow_commands_total{outcome="duplicate"}`))
		s.checkAll(t, rxs)
	})
}

// The projector is SIGKILLed twice while it works and restarted on the same
// data directory: every partner side effect happens exactly once, none is
// missing, the read model is right and every outbound message is there.
func TestProjectorSIGKILL(t *testing.T) {
	kafkatest.ForEachCluster(t, func(t *testing.T, brokers []string) {
		s := newSystem(t, brokers)
		rxs := plan(60)
		s.produce(t, rxs, 0, 1, 2, 3, 4)
		want := expectedCalls(rxs)
		for _, kill := range []struct {
			partner partnersim.Partner
			n       int
		}{{partnersim.Insurance, 10}, {partnersim.Notifications, 10}} {
			var accepted map[partnersim.Partner]int
			s.eventually(t, settleTimeout, "partner calls before the kill", func() bool {
				accepted = map[partnersim.Partner]int{}
				for p, r := range s.simCalls(t) {
					accepted[p] = len(r.Accepted)
				}
				return accepted[kill.partner] >= kill.n
			})
			s.proj.kill(t)
			t.Logf("SIGKILL with partner calls accepted %v of %v", accepted, want)
			s.startProjector(t)
		}
		s.waitSettled(t, rxs)
		s.checkAll(t, rxs)
	})
}

// EventStoreDB is SIGKILLed during traffic and restarted on the same port
// and data directory: nothing it acknowledged is lost or rewritten, the
// processor retries while it is down rather than drop or skip a command,
// and every prescription still completes.
func TestESDBSIGKILL(t *testing.T) {
	kafkatest.ForEachCluster(t, func(t *testing.T, brokers []string) {
		s := newSystem(t, brokers)
		rxs := plan(60)
		s.produce(t, rxs, 0, 1)
		s.eventually(t, settleTimeout, "the processor to handle 40 commands", func() bool { return s.handled() >= 40 })
		before := s.histories(t, rxs) // acknowledged: the projector read it back
		s.esdb.kill(t)

		s.produce(t, rxs, 2, 3, 4)
		s.eventually(t, settleTimeout, "the processor to fail on the missing store and report not ready", func() bool {
			return metric(s.procAddr, "rxflow_command_failures_total") > 0
		})
		time.Sleep(outage) // stay down while the processor retries
		s.startESDB(t)
		s.waitSettled(t, rxs)
		t.Logf("processor: %v transient failures while the store was down", metric(s.procAddr, "rxflow_command_failures_total"))

		after := s.histories(t, rxs)
		kept := 0
		for _, r := range rxs {
			for i, e := range before[r.urn] {
				if i >= len(after[r.urn]) || !sameEntry(e, after[r.urn][i]) {
					t.Errorf("%s: event %d (%s, position %d) acknowledged before the crash is lost or rewritten", r.urn, i, e.EventID, e.Position)
					continue
				}
				kept++
			}
		}
		t.Logf("%d events acknowledged before the crash, all kept", kept)
		s.checkAll(t, rxs)
	})
}

// outage is how long EventStoreDB stays down once the processor has
// noticed: several of the client's discovery rounds and retry backoffs.
const outage = 5 * time.Second

func sameEntry(a, b projections.HistoryEntry) bool {
	return a.EventID == b.EventID && a.Revision == b.Revision && a.Position == b.Position &&
		a.Time.Equal(b.Time) && a.Recorded.Equal(b.Recorded) && a.CommandID == b.CommandID
}

// The processor gets SIGTERM while it handles commands: it exits 0 without
// committing anything it has not stored, and after a restart no command is
// lost and none has two outcomes.
func TestProcessorSIGTERM(t *testing.T) {
	kafkatest.ForEachCluster(t, func(t *testing.T, brokers []string) {
		s := newSystem(t, brokers)
		rxs := plan(60)
		sent := s.produce(t, rxs, 0, 1, 2)
		var atStop float64
		s.eventually(t, settleTimeout, "the processor to handle 60 commands", func() bool {
			atStop = s.handled()
			return atStop >= 60
		})
		code, took := s.proc.terminate(t, 40*time.Second) // the router allows handlers 30s to finish
		if code != 0 {
			t.Fatalf("processor exited %d after SIGTERM, want 0", code)
		}
		committed, stored, redeliver := s.checkCommitted(t, rxs)
		t.Logf("SIGTERM after %v of %d commands handled: exited 0 in %v; %d stored, %d committed, %d to be delivered again",
			atStop, sent, took.Round(time.Millisecond), stored, committed, redeliver)

		s.produce(t, rxs, 3, 4)
		s.startProcessor(t)
		s.waitSettled(t, rxs)
		t.Logf("restarted processor handled %v commands, %v of them duplicates", s.handled(),
			metric(s.procAddr, `rxflow_commands_total{outcome="duplicate"}`))
		s.checkAll(t, rxs)
	})
}

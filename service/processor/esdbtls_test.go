package processor_test

import (
	"fmt"
	"slices"
	"testing"
	"time"

	"rxflow/domain"
	"rxflow/events"
	"rxflow/infra/kafka/kafkatest"
	"rxflow/standin/esdbserver"
	"rxflow/standin/esdbserver/esdbtest"
)

// The seed's happy path with the event store reached over TLS, as a
// secure-mode KurrentDB is: the processor and the reading store connect
// with esdb://…?tls=true&tlsCAFile=…, to a server that speaks nothing else.
func TestHappyPathWithStoreOverTLS(t *testing.T) {
	kafkatest.ForEachCluster(t, func(t *testing.T, brokers []string) {
		files := esdbtest.NewTLSFiles(t)
		srv, err := esdbserver.Start(esdbserver.Config{Addr: "127.0.0.1:0", TLSCertFile: files.CertFile, TLSKeyFile: files.KeyFile, Logger: quiet()})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = srv.Close() })
		conn := "esdb://" + srv.Addr() + "?tls=true&tlsCAFile=" + files.CAFile
		tp := newTopics(t)
		startProcessor(t, brokers, tp, conn)
		st := openStore(t, conn)

		urn := "urn:rx:tls-" + tp.group
		for i, c := range pathTo[domain.StatusCompleted] {
			kafkatest.Produce(t, brokers, tp.commands, command(urn, fmt.Sprintf("%s-%d", urn, i), string(c), validPayload[c]))
		}
		want := []string{events.NameRequested, events.NameApproved, events.NameProcessingStarted, events.NameDispensed, events.NameCompleted}
		eventually(t, 30*time.Second, "stream "+urn, func() bool { return slices.Equal(names(t, st, urn), want) })
		if got := kafkatest.ConsumeAll(t, brokers, tp.rejections); len(got) != 0 {
			t.Fatalf("the happy path produced a rejection: %s", got[0].Value)
		}
	})
}

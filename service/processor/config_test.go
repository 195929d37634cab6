package processor_test

import (
	"strings"
	"testing"

	"rxflow/infra/eventstore"
	"rxflow/infra/kafka"
	"rxflow/service/processor"
)

// Every configuration problem is reported at once.
func TestConfigReportsEveryProblem(t *testing.T) {
	_, err := processor.New(processor.Config{
		Kafka:        kafka.Config{Brokers: []string{"no-port"}},
		EventStore:   eventstore.Config{ConnectionString: "http://not-esdb"},
		CommandTopic: "same", RejectionTopic: "same",
		MaxCommandBytes: 2 << 20,
	})
	if err == nil {
		t.Fatal("an invalid config was accepted")
	}
	for _, want := range []string{"no-port", "connection string", `topic "same" is used twice`, "max command bytes"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error does not mention %q:\n%v", want, err)
		}
	}
}

package kafka_test

import (
	"testing"

	"rxflow/infra/kafka/bustest"
	"rxflow/infra/kafka/kafkatest"
)

func TestBus(t *testing.T) {
	kafkatest.ForEachCluster(t, bustest.Run)
}

package kafkatest_test

import (
	"regexp"
	"slices"
	"strings"
	"testing"

	"rxflow/infra/kafka/kafkatest"
)

func TestRealBrokers(t *testing.T) {
	t.Setenv(kafkatest.BrokersEnv, " a:1, ,b:2 ")
	if got := kafkatest.RealBrokers(); !slices.Equal(got, []string{"a:1", "b:2"}) {
		t.Errorf("got %v", got)
	}
	t.Setenv(kafkatest.BrokersEnv, "")
	if got := kafkatest.RealBrokers(); got != nil {
		t.Errorf("unset: got %v", got)
	}
}

func TestForEachCluster(t *testing.T) {
	var ran []string
	record := func(t *testing.T, brokers []string) {
		ran = append(ran, t.Name())
		if len(brokers) == 0 {
			t.Error("no brokers")
		}
	}

	t.Setenv(kafkatest.BrokersEnv, "")
	kafkatest.ForEachCluster(t, record)
	if want := []string{t.Name() + "/kfake"}; !slices.Equal(ran, want) {
		t.Errorf("without %s ran %v, want %v", kafkatest.BrokersEnv, ran, want)
	}

	ran = nil
	t.Setenv(kafkatest.BrokersEnv, "127.0.0.1:1")
	kafkatest.ForEachCluster(t, func(t *testing.T, brokers []string) {
		record(t, brokers)
		if strings.HasSuffix(t.Name(), "/kafka") && !slices.Equal(brokers, []string{"127.0.0.1:1"}) {
			t.Errorf("kafka subtest got brokers %v", brokers)
		}
	})
	if want := []string{t.Name() + "/kfake#01", t.Name() + "/kafka"}; !slices.Equal(ran, want) {
		t.Errorf("with %s ran %v, want %v", kafkatest.BrokersEnv, ran, want)
	}
}

func TestUniqueNames(t *testing.T) {
	a, b := kafkatest.UniqueTopic(t, "orders"), kafkatest.UniqueTopic(t, "orders")
	valid := regexp.MustCompile(`^orders-[a-zA-Z0-9-]+$`)
	if a == b || !valid.MatchString(a) || len(a) > 249 {
		t.Errorf("topics %q and %q: want distinct valid names", a, b)
	}
}

func TestProduceConsumeAll(t *testing.T) {
	kafkatest.ForEachCluster(t, func(t *testing.T, brokers []string) {
		topic := kafkatest.UniqueTopic(t, "raw")
		sent := kafkatest.Produce(t, brokers, topic,
			kafkatest.Record{Key: []byte("k"), Value: []byte("1"), Headers: map[string]string{"h": "x"}},
			kafkatest.Record{Key: []byte("k"), Value: []byte("2")},
			kafkatest.Record{Value: []byte("keyless")},
		)
		if sent[0].Partition != sent[1].Partition || sent[1].Offset != sent[0].Offset+1 {
			t.Errorf("records of one key at %d/%d and %d/%d", sent[0].Partition, sent[0].Offset, sent[1].Partition, sent[1].Offset)
		}
		got := kafkatest.ConsumeAll(t, brokers, topic)
		if len(got) != len(sent) {
			t.Fatalf("consumed %d records, want %d", len(got), len(sent))
		}
		for _, s := range sent {
			i := slices.IndexFunc(got, func(r kafkatest.Record) bool {
				return r.Partition == s.Partition && r.Offset == s.Offset
			})
			if i < 0 || string(got[i].Value) != string(s.Value) || string(got[i].Key) != string(s.Key) || got[i].Headers["h"] != s.Headers["h"] {
				t.Errorf("record %q at %d/%d not read back", s.Value, s.Partition, s.Offset)
			}
		}
	})
}

package process_test

import (
	"net/http"
	"path/filepath"
	"strings"
	"testing"

	"rxflow/infra/kafka"
	"rxflow/infra/kafka/kafkatest"
)

// realSASLSSLEnv is a processor's or projector's settings for a real
// Kafka's SASL_SSL listener with mechanism, and a running EventStoreDB;
// later entries win.
func realSASLSSLEnv(t *testing.T, l kafkatest.SASLSSL, mechanism string, extra ...string) []string {
	t.Helper()
	esdbAddr := freeAddr(t)
	launch(t, bin.esdb, []string{"-addr", esdbAddr, "-data", ""}, nil)
	return append([]string{"KAFKA_BROKERS=" + strings.Join(l.Brokers, ","), "ESDB_CONNECTION_STRING=esdb://" + esdbAddr + "?tls=false",
		kafka.EnvTLSCAFile + "=" + l.CAFile, kafka.EnvSASLMechanism + "=" + mechanism,
		kafka.EnvSASLUser + "=" + l.User, kafka.EnvSASLPassword + "=" + l.Password.Reveal(),
		"PROJECTOR_DATA_DIR=" + filepath.Join(t.TempDir(), "projector"), "QUERY_API_TOKEN=" + token, "QUERY_API_STATIC_TOKEN_ENABLED=true"}, extra...)
}

// The processor and projector binaries, configured through the environment
// only, reach a real Apache Kafka's SASL_SSL listener (KAFKA_SASL_SSL_*)
// with each mechanism it accepts, and become ready.
func TestServicesOnRealBrokerSASLSSL(t *testing.T) {
	l := kafkatest.RequireSASLSSL(t)
	for _, mechanism := range l.Mechanisms {
		for _, c := range []struct{ name, bin, addrEnv string }{
			{name: "processor", bin: bin.processor, addrEnv: "PROCESSOR_HTTP_ADDR"},
			{name: "projector", bin: bin.projector, addrEnv: "PROJECTOR_HTTP_ADDR"},
		} {
			t.Run(mechanism+"/"+c.name, func(t *testing.T) {
				addr := freeAddr(t)
				p := launch(t, c.bin, nil, realSASLSSLEnv(t, l, mechanism, c.addrEnv+"="+addr, "PROCESSOR_GROUP="+kafkatest.UniqueGroup(t, "proc")))
				p.waitFor(t, "/readyz 200", func() bool {
					resp, err := client.Get("http://" + addr + "/readyz")
					if err != nil {
						return false
					}
					resp.Body.Close()
					return resp.StatusCode == http.StatusOK
				})
				p.stop(t)
				p.noCrash(t)
				for _, out := range []string{p.stderr.tail(1 << 20), p.stdout.tail(1 << 20)} {
					if strings.Contains(out, l.Password.Reveal()) {
						t.Errorf("%s output shows the password:\n%s", c.name, out)
					}
				}
			})
		}
	}
}

// A wrong password and an untrusted CA stop the binaries' start-up against
// the real listener with one line naming the broker and Kafka's or x509's
// reason, never the password.
func TestStartupFailuresRealBrokerSASLSSL(t *testing.T) {
	l := kafkatest.RequireSASLSSL(t)
	other := kafkatest.NewPKI(t)
	brokers := strings.Join(l.Brokers, ",")
	m := l.Mechanisms[0]
	notSecret := []string{l.Password.Reveal()}
	var cases []failure
	for _, c := range []struct{ name, bin, addrEnv string }{
		{name: "processor", bin: bin.processor, addrEnv: "PROCESSOR_HTTP_ADDR"},
		{name: "projector", bin: bin.projector, addrEnv: "PROJECTOR_HTTP_ADDR"},
	} {
		addr := c.addrEnv + "=127.0.0.1:0"
		cases = append(cases,
			failure{name: c.name + ": wrong password", bin: c.bin, env: realSASLSSLEnv(t, l, m, addr, kafka.EnvSASLPassword+"=wrong-"+l.Password.Reveal()),
				want: []string{brokers, "SASL_SSL, " + m + " as " + l.User, "SASL Authentication failed"}, notWant: notSecret},
			failure{name: c.name + ": untrusted CA", bin: c.bin, env: realSASLSSLEnv(t, l, m, addr, kafka.EnvTLSCAFile+"="+other.CAFile),
				want: []string{brokers, "certificate signed by unknown authority"}, notWant: notSecret},
		)
	}
	runFailures(t, cases)
}

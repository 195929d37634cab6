package process_test

import (
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"rxflow/infra/kafka"
	"rxflow/infra/kafka/kafkatest"
	"rxflow/standin/kafkabroker"
)

// The Kafka security variables are the binaries' settings too: the start-up
// tests drop them from their own environment.
func init() { configEnv = append(configEnv, kafka.SecurityEnv...) }

// secret is the SASL password of these tests; no output may show it.
const secret = "process-s3cret-pw"

// secureFixture is a broker that speaks only TLS with SCRAM-SHA-256, the
// files a client needs for it, and a running EventStoreDB.
type secureFixture struct {
	pki     *kafkatest.PKI
	brokers string
	pwFile  string
	esdbURL string
}

func newSecureFixture(t *testing.T) *secureFixture {
	t.Helper()
	f := &secureFixture{pki: kafkatest.NewPKI(t)}
	f.brokers = kafkatest.SecureBrokers(t, f.pki.ServerTLS(), kafkabroker.User{Mechanism: kafka.MechanismSCRAMSHA256, Name: "rxflow", Password: secret})[0]
	f.pwFile = filepath.Join(t.TempDir(), "kafka-password")
	if err := os.WriteFile(f.pwFile, []byte(secret+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	esdbAddr := freeAddr(t)
	launch(t, bin.esdb, []string{"-addr", esdbAddr, "-data", ""}, nil)
	f.esdbURL = "esdb://" + esdbAddr + "?tls=false"
	return f
}

// env is a processor's or projector's Kafka and EventStoreDB settings for
// the fixture; later entries win.
func (f *secureFixture) env(extra ...string) []string {
	return append([]string{"KAFKA_BROKERS=" + f.brokers, "ESDB_CONNECTION_STRING=" + f.esdbURL,
		kafka.EnvTLSCAFile + "=" + f.pki.CAFile, kafka.EnvSASLMechanism + "=SCRAM-SHA-256",
		kafka.EnvSASLUser + "=rxflow", kafka.EnvSASLPasswordFile + "=" + f.pwFile}, extra...)
}

// The processor and the projector, configured through the environment only,
// reach a TLS and SCRAM broker and become ready; SIGTERM stops them cleanly.
func TestServicesOverTLSAndSCRAM(t *testing.T) {
	f := newSecureFixture(t)
	for _, c := range []struct {
		name, bin string
		env       []string
		addrEnv   string
	}{
		{name: "processor", bin: bin.processor, addrEnv: "PROCESSOR_HTTP_ADDR"},
		{name: "projector", bin: bin.projector, addrEnv: "PROJECTOR_HTTP_ADDR",
			env: []string{"PROJECTOR_DATA_DIR=" + filepath.Join(t.TempDir(), "projector"), "QUERY_API_TOKEN=" + token, "QUERY_API_STATIC_TOKEN_ENABLED=true", "QUERY_API_STATIC_TOKEN_ENABLED=true"}},
	} {
		t.Run(c.name, func(t *testing.T) {
			addr := freeAddr(t)
			p := launch(t, c.bin, nil, f.env(append(c.env, c.addrEnv+"="+addr)...))
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
				if strings.Contains(out, secret) {
					t.Errorf("%s output shows the password:\n%s", c.name, out)
				}
			}
		})
	}
}

// Wrong or unsafe Kafka security settings stop a start-up with one line
// that names the problem and never the password.
func TestStartupFailuresKafkaSecurity(t *testing.T) {
	f := newSecureFixture(t)
	other := kafkatest.NewPKI(t)
	missing := filepath.Join(t.TempDir(), "missing-ca.pem")
	proc := func(extra ...string) []string {
		return f.env(append([]string{"PROCESSOR_HTTP_ADDR=127.0.0.1:0"}, extra...)...)
	}
	proj := func(extra ...string) []string {
		return f.env(append([]string{"PROJECTOR_HTTP_ADDR=127.0.0.1:0", "QUERY_API_TOKEN=" + token, "QUERY_API_STATIC_TOKEN_ENABLED=true",
			"PROJECTOR_DATA_DIR=" + filepath.Join(t.TempDir(), "projector")}, extra...)...)
	}
	plainSASL := []string{kafka.EnvTLSCAFile + "=", kafka.EnvSASLMechanism + "=PLAIN", kafka.EnvSASLPasswordFile + "=", kafka.EnvSASLPassword + "=" + secret}
	notSecret := []string{secret}
	runFailures(t, []failure{
		{name: "processor: SASL PLAIN without TLS", bin: bin.processor, env: proc(plainSASL...),
			want: []string{"SASL PLAIN without TLS is refused"}, notWant: notSecret},
		{name: "projector: SASL PLAIN without TLS", bin: bin.projector, env: proj(plainSASL...),
			want: []string{"SASL PLAIN without TLS is refused"}, notWant: notSecret},
		{name: "processor: wrong password", bin: bin.processor, env: proc(kafka.EnvSASLPasswordFile+"=", kafka.EnvSASLPassword+"=wrong-"+secret),
			want: []string{f.brokers, "SASL_SSL, SCRAM-SHA-256 as rxflow"}, notWant: notSecret},
		{name: "projector: wrong password", bin: bin.projector, env: proj(kafka.EnvSASLPasswordFile+"=", kafka.EnvSASLPassword+"=wrong-"+secret),
			want: []string{f.brokers, "SASL_SSL, SCRAM-SHA-256 as rxflow"}, notWant: notSecret},
		{name: "processor: untrusted CA", bin: bin.processor, env: proc(kafka.EnvTLSCAFile + "=" + other.CAFile),
			want: []string{f.brokers, "certificate signed by unknown authority"}, notWant: notSecret},
		{name: "processor: wrong server name", bin: bin.processor, env: proc(kafka.EnvTLSServerName + "=kafka.example.com"),
			want: []string{"not kafka.example.com"}, notWant: notSecret},
		{name: "processor: CA file missing and certificate without key", bin: bin.processor,
			env:  proc(kafka.EnvTLSCAFile+"="+missing, kafka.EnvTLSCertFile+"="+f.pki.ClientCertFile),
			want: []string{missing, "has no key file", "; "}, notWant: notSecret},
		{name: "processor: password twice", bin: bin.processor, env: proc(kafka.EnvSASLPassword + "=" + secret),
			want: []string{"KAFKA_SASL_PASSWORD", "KAFKA_SASL_PASSWORD_FILE", "both set"}, notWant: notSecret},
		{name: "processor: unknown mechanism", bin: bin.processor, env: proc(kafka.EnvSASLMechanism + "=GSSAPI"),
			want: []string{`unknown SASL mechanism "GSSAPI"`}, notWant: notSecret},
	})
}

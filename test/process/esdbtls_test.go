package process_test

import (
	"net/http"
	"path/filepath"
	"strings"
	"testing"

	"rxflow/standin/esdbserver/esdbtest"
)

// The esdb TLS variables are a binary's settings too: the start-up tests
// drop them from their own environment.
func init() { configEnv = append(configEnv, "ESDB_TLS_CERT_FILE", "ESDB_TLS_KEY_FILE") }

// The esdb binary with -tls-cert-file and -tls-key-file, and the processor
// and the projector reaching it with ESDB_CONNECTION_STRING
// esdb://…?tls=true&tlsCAFile=…: both become ready, which needs an answer
// from EventStoreDB over TLS.
func TestServicesOverESDBTLS(t *testing.T) {
	f := newFixture(t)
	files := esdbtest.NewTLSFiles(t)
	esdbAddr := freeAddr(t)
	esdb := launch(t, bin.esdb, []string{"-addr", esdbAddr, "-data", "", "-tls-cert-file", files.CertFile, "-tls-key-file", files.KeyFile}, nil)
	esdb.waitFor(t, "the TLS connection string on stdout", func() bool {
		return strings.Contains(esdb.stdout.tail(1<<10), "esdb://"+esdbAddr+"?tls=true")
	})
	conn := "ESDB_CONNECTION_STRING=esdb://" + esdbAddr + "?tls=true&tlsCAFile=" + files.CAFile
	for _, c := range []struct {
		name, bin, addrEnv string
		env                func(...string) []string
	}{
		{name: "processor", bin: bin.processor, addrEnv: "PROCESSOR_HTTP_ADDR", env: f.processorEnv},
		{name: "projector", bin: bin.projector, addrEnv: "PROJECTOR_HTTP_ADDR", env: f.projectorEnv},
	} {
		t.Run(c.name, func(t *testing.T) {
			addr := freeAddr(t)
			p := launch(t, c.bin, nil, c.env(conn, c.addrEnv+"="+addr))
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
		})
	}
	esdb.stop(t)
	esdb.noCrash(t)
}

// TLS files the esdb binary cannot use stop its start-up with one line
// naming them.
func TestStartupFailuresESDBTLS(t *testing.T) {
	files := esdbtest.NewTLSFiles(t)
	missing := filepath.Join(t.TempDir(), "missing.crt")
	p := bin.esdb
	runFailures(t, []failure{
		{name: "certificate without key", bin: p, args: []string{"-addr", "127.0.0.1:0", "-data", "", "-tls-cert-file", files.CertFile},
			want: []string{files.CertFile, "give both or neither"}},
		{name: "certificate file missing", bin: p, args: []string{"-addr", "127.0.0.1:0", "-data", "", "-tls-cert-file", missing, "-tls-key-file", files.KeyFile},
			want: []string{missing, "no such file"}},
		{name: "key of another certificate", bin: p, env: []string{"ESDB_TLS_CERT_FILE=" + files.CertFile, "ESDB_TLS_KEY_FILE=" + esdbtest.NewTLSFiles(t).KeyFile},
			args: []string{"-addr", "127.0.0.1:0", "-data", ""}, want: []string{"private key does not match public key"}},
	})
}

package esdbserver_test

import (
	"path/filepath"
	"strings"
	"testing"

	"rxflow/standin/esdbserver"
	"rxflow/standin/esdbserver/esdbtest"
)

// TLS settings that cannot work are refused by Start, naming the files.
func TestTLSSettingsRefused(t *testing.T) {
	files, other := esdbtest.NewTLSFiles(t), esdbtest.NewTLSFiles(t)
	missing := filepath.Join(t.TempDir(), "missing.crt")
	for _, c := range []struct {
		name      string
		cert, key string
		want      []string
	}{
		{"certificate without key", files.CertFile, "", []string{files.CertFile, "give both or neither"}},
		{"key without certificate", "", files.KeyFile, []string{files.KeyFile, "give both or neither"}},
		{"certificate file missing", missing, files.KeyFile, []string{missing, "no such file"}},
		{"key of another certificate", files.CertFile, other.KeyFile, []string{files.CertFile, "private key does not match public key"}},
		{"CA file as key", files.CertFile, files.CAFile, []string{files.CAFile}},
	} {
		t.Run(c.name, func(t *testing.T) {
			srv, err := esdbserver.Start(esdbserver.Config{Addr: "127.0.0.1:0", TLSCertFile: c.cert, TLSKeyFile: c.key})
			if err == nil {
				srv.Close()
				t.Fatal("started")
			}
			for _, w := range c.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not say %q", err, w)
				}
			}
		})
	}
}

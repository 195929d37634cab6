package kafkatest

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"rxflow/infra/kafka"
	"rxflow/standin/kafkabroker"
)

// PKI is a throwaway certificate authority made for one test, with a broker
// certificate for 127.0.0.1, ::1 and localhost and a client certificate,
// all signed by it, as PEM files in the test's temporary directory.
type PKI struct {
	Dir    string
	CAFile string // the CA certificate
	// ServerCertFile and ServerKeyFile are the broker's certificate and key.
	ServerCertFile, ServerKeyFile string
	// ClientCertFile and ClientKeyFile are a client certificate (CN
	// ClientName) and its key, for mTLS.
	ClientCertFile, ClientKeyFile string

	ca     *x509.Certificate
	server tls.Certificate
}

// ClientName is the common name of PKI's client certificate.
const ClientName = "rxflow-test-client"

// NewPKI makes a CA and its broker and client certificates, valid from an
// hour ago for a day.
func NewPKI(t testing.TB) *PKI {
	t.Helper()
	dir := t.TempDir()
	p := &PKI{Dir: dir, CAFile: filepath.Join(dir, "ca.crt"),
		ServerCertFile: filepath.Join(dir, "broker.crt"), ServerKeyFile: filepath.Join(dir, "broker.key"),
		ClientCertFile: filepath.Join(dir, "client.crt"), ClientKeyFile: filepath.Join(dir, "client.key")}

	caKey := newKey(t)
	caTmpl := template(t, "rxflow test CA "+strings.ReplaceAll(t.Name(), "/", " "))
	caTmpl.IsCA, caTmpl.BasicConstraintsValid = true, true
	caTmpl.KeyUsage = x509.KeyUsageCertSign | x509.KeyUsageCRLSign
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, caKey.Public(), caKey)
	if err != nil {
		t.Fatalf("kafkatest: CA certificate: %v", err)
	}
	if p.ca, err = x509.ParseCertificate(caDER); err != nil {
		t.Fatal(err)
	}
	writePEM(t, p.CAFile, "CERTIFICATE", caDER)

	issue := func(cn string, usage x509.ExtKeyUsage, certFile, keyFile string, hosts bool) {
		key := newKey(t)
		tmpl := template(t, cn)
		tmpl.KeyUsage = x509.KeyUsageDigitalSignature
		tmpl.ExtKeyUsage = []x509.ExtKeyUsage{usage}
		if hosts {
			tmpl.DNSNames = []string{"localhost"}
			tmpl.IPAddresses = []net.IP{net.IPv4(127, 0, 0, 1), net.IPv6loopback}
		}
		der, err := x509.CreateCertificate(rand.Reader, tmpl, p.ca, key.Public(), caKey)
		if err != nil {
			t.Fatalf("kafkatest: certificate %s: %v", cn, err)
		}
		keyDER, err := x509.MarshalPKCS8PrivateKey(key)
		if err != nil {
			t.Fatal(err)
		}
		writePEM(t, certFile, "CERTIFICATE", der)
		writePEM(t, keyFile, "PRIVATE KEY", keyDER)
	}
	issue("localhost", x509.ExtKeyUsageServerAuth, p.ServerCertFile, p.ServerKeyFile, true)
	issue(ClientName, x509.ExtKeyUsageClientAuth, p.ClientCertFile, p.ClientKeyFile, false)
	if p.server, err = tls.LoadX509KeyPair(p.ServerCertFile, p.ServerKeyFile); err != nil {
		t.Fatal(err)
	}
	return p
}

// ServerTLS is the broker's TLS configuration: its certificate, no client
// certificate asked for.
func (p *PKI) ServerTLS() *tls.Config {
	return &tls.Config{MinVersion: tls.VersionTLS12, Certificates: []tls.Certificate{p.server}}
}

// ServerMTLS is ServerTLS requiring a client certificate signed by the CA.
func (p *PKI) ServerMTLS() *tls.Config {
	c := p.ServerTLS()
	c.ClientAuth = tls.RequireAndVerifyClientCert
	c.ClientCAs = x509.NewCertPool()
	c.ClientCAs.AddCert(p.ca)
	return c
}

// ClientTLS is the client side: the CA, and with mtls the client
// certificate too.
func (p *PKI) ClientTLS(mtls bool) kafka.TLS {
	c := kafka.TLS{CAFile: p.CAFile}
	if mtls {
		c.CertFile, c.KeyFile = p.ClientCertFile, p.ClientKeyFile
	}
	return c
}

// SecureBrokers starts an in-memory embedded broker for the test, listening
// with server TLS (nil: plaintext) and, with any users, requiring SASL, and
// returns its addresses; the broker stops when the test ends.
func SecureBrokers(t testing.TB, server *tls.Config, users ...kafkabroker.User) []string {
	t.Helper()
	b, err := kafkabroker.Start(kafkabroker.Config{Addr: "127.0.0.1:0", TLS: server, Users: users})
	if err != nil {
		t.Fatalf("start embedded kafka: %v", err)
	}
	t.Cleanup(b.Close)
	return b.Addrs()
}

func newKey(t testing.TB) *ecdsa.PrivateKey {
	t.Helper()
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func template(t testing.TB, cn string) *x509.Certificate {
	t.Helper()
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 120))
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	return &x509.Certificate{SerialNumber: serial, Subject: pkix.Name{CommonName: cn, Organization: []string{"rxflow tests"}},
		NotBefore: now.Add(-time.Hour), NotAfter: now.Add(24 * time.Hour)}
}

func writePEM(t testing.TB, path, kind string, der []byte) {
	t.Helper()
	if err := os.WriteFile(path, pem.EncodeToMemory(&pem.Block{Type: kind, Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
}

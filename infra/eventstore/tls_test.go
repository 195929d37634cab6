package eventstore_test

import (
	"context"
	"errors"
	"log/slog"
	"strings"
	"testing"
	"time"

	"rxflow/domain"
	"rxflow/events"
	"rxflow/infra/eventstore"
	"rxflow/standin/esdbserver"
	"rxflow/standin/esdbserver/esdbtest"
)

// startTLSServer starts the embedded server with a certificate from a fresh
// test CA; the server speaks TLS only.
func startTLSServer(t *testing.T) (*esdbserver.Server, esdbtest.TLSFiles) {
	t.Helper()
	files := esdbtest.NewTLSFiles(t)
	srv, err := esdbserver.Start(esdbserver.Config{Addr: "127.0.0.1:0", TLSCertFile: files.CertFile, TLSKeyFile: files.KeyFile, Logger: quiet()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = srv.Close() })
	return srv, files
}

// The adapter over esdb://host:port?tls=true&tlsCAFile=…, as a secure-mode
// KurrentDB is reached in production: an event appended is loaded back
// decoded and reaches a $all subscription.
func TestStoreOverTLS(t *testing.T) {
	srv, files := startTLSServer(t)
	conn := "esdb://" + srv.Addr() + "?tls=true&tlsCAFile=" + files.CAFile
	store, err := eventstore.Open(eventstore.Config{ConnectionString: conn, Logger: quiet()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = store.Close() })
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()

	const urn = "urn:rx:tls-1"
	requested := domain.Requested{URN: urn, PatientID: "p1", PrescriberID: "d1", PharmacyID: "ph1",
		Medication: domain.Medication{Name: "Amoxicillin", Quantity: 20}, At: time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)}
	pending, err := events.New(requested, events.Metadata{EventID: events.EventID(urn, "c1", 0).String(), CommandID: "c1"})
	if err != nil {
		t.Fatal(err)
	}
	pos, err := store.Append(ctx, urn, -1, []events.Pending{pending})
	if err != nil {
		t.Fatalf("append over TLS: %v", err)
	}
	got, err := store.Load(ctx, urn)
	if err != nil {
		t.Fatalf("load over TLS: %v", err)
	}
	if len(got) != 1 || got[0].Name != pending.Name || got[0].Meta.CommandID != "c1" {
		t.Fatalf("loaded %+v, want the one %s appended", got, pending.Name)
	}
	if r, ok := got[0].Event.(domain.Requested); !ok || r.PatientID != "p1" || !r.At.Equal(requested.At) {
		t.Errorf("loaded event %#v, want %#v", got[0].Event, requested)
	}

	sub, err := store.Subscribe(ctx, 0)
	if err != nil {
		t.Fatalf("subscribe over TLS: %v", err)
	}
	defer sub.Close()
	for {
		m, err := sub.Recv()
		if err != nil {
			t.Fatalf("subscription over TLS: %v", err)
		}
		if m.CaughtUp {
			t.Fatal("caught up without the appended event")
		}
		if m.Event != nil && m.Event.URN == urn {
			if m.Event.Position != pos {
				t.Errorf("subscription delivered position %d, append returned %d", m.Event.Position, pos)
			}
			break
		}
	}
}

// A client that does not trust the server's CA, or speaks plaintext to the
// TLS listener, gets no answer, and says why: WaitForServer's warning names
// the TLS failure, and a bounded Ping fails with it.
func TestStoreOverTLSRefused(t *testing.T) {
	srv, _ := startTLSServer(t)
	other := esdbtest.NewTLSFiles(t) // an unrelated CA
	for _, c := range []struct{ name, conn, want string }{
		{"untrusted CA", "esdb://" + srv.Addr() + "?tls=true&tlsCAFile=" + other.CAFile, "certificate signed by unknown authority"},
		{"plaintext client", "esdb://" + srv.Addr() + "?tls=false", "error reading server preface"},
	} {
		t.Run(c.name, func(t *testing.T) {
			var logs syncBuffer
			log := slog.New(slog.NewTextHandler(&logs, nil))
			store, err := eventstore.Open(eventstore.Config{ConnectionString: c.conn, Logger: log})
			if err != nil {
				t.Fatal(err)
			}
			defer store.Close()
			ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
			err = store.WaitForServer(ctx, log)
			cancel()
			if !errors.Is(err, context.DeadlineExceeded) {
				t.Fatalf("WaitForServer = %v, want no answer until the deadline", err)
			}
			warning := ""
			for line := range strings.SplitSeq(logs.String(), "\n") {
				if strings.Contains(line, "waiting for EventStoreDB") {
					warning = line
				}
			}
			t.Log(warning)
			if !strings.Contains(warning, srv.Addr()) || !strings.Contains(warning, c.want) {
				t.Errorf("warning %q does not name %s and %q; logs:\n%s", warning, srv.Addr(), c.want, logs.String())
			}
		})
	}
}

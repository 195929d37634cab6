// Package kurrenttest checks the embedded server with the newer official
// client, github.com/kurrent-io/KurrentDB-Client-Go, kept in this nested
// module so the main module does not depend on it. That client surfaces
// CaughtUp only when it carries a timestamp (KurrentDB 25.0.1 and later),
// and reads its checkpoint. The server runs as a child process (esdbproc):
// the two official Go clients register the same protobuf names and cannot
// share a binary.
package kurrenttest

import (
	"bufio"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/kurrent-io/KurrentDB-Client-Go/kurrentdb"
)

// startServer builds and starts esdbproc and returns a client for it.
func startServer(t *testing.T) *kurrentdb.Client {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "esdbproc")
	if out, err := exec.Command("go", "build", "-o", bin, "./esdbproc").CombinedOutput(); err != nil {
		t.Fatalf("build esdbproc: %v\n%s", err, out)
	}
	cmd := exec.Command(bin)
	cmd.Stderr = os.Stderr
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatalf("start esdbproc: %v", err)
	}
	t.Cleanup(func() {
		_ = stdin.Close()
		if err := cmd.Wait(); err != nil {
			t.Errorf("esdbproc: %v", err)
		}
	})
	line, err := bufio.NewReader(stdout).ReadString('\n')
	if err != nil {
		t.Fatalf("esdbproc connection string: %v", err)
	}
	cfg, err := kurrentdb.ParseConnectionString(strings.TrimSpace(line))
	if err != nil {
		t.Fatalf("parse %q: %v", line, err)
	}
	cfg.Logger = kurrentdb.NoopLogging()
	c, err := kurrentdb.NewClient(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Close() })
	return c
}

func ctx(t *testing.T) context.Context {
	c, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	return c
}

func events(n int) []kurrentdb.EventData {
	out := make([]kurrentdb.EventData, n)
	for i := range out {
		out[i] = kurrentdb.EventData{EventID: uuid.New(), EventType: "KurrentTested", ContentType: kurrentdb.ContentTypeJson, Data: []byte(`{"n":1}`)}
	}
	return out
}

// caughtUp reads sub until CaughtUp and returns it with the number of
// events before it; a drop, a FellBehind or an empty notice fails.
func caughtUp(t *testing.T, sub *kurrentdb.Subscription) (*kurrentdb.CaughtUp, int) {
	t.Helper()
	got := make(chan *kurrentdb.SubscriptionEvent)
	go func() {
		for {
			ev := sub.Recv()
			got <- ev
			if ev.SubscriptionDropped != nil || ev.CaughtUp != nil || ev.EventAppeared == nil {
				return
			}
		}
	}()
	n := 0
	for {
		select {
		case ev := <-got:
			switch {
			case ev.SubscriptionDropped != nil:
				t.Fatalf("subscription dropped: %v", ev.SubscriptionDropped.Error)
			case ev.FellBehind != nil:
				t.Fatalf("got FellBehind, which KurrentDB never sends")
			case ev.CaughtUp != nil:
				if d := time.Since(ev.CaughtUp.Date); d < 0 || d > time.Minute {
					t.Fatalf("CaughtUp date %v is not now", ev.CaughtUp.Date)
				}
				return ev.CaughtUp, n
			case ev.EventAppeared != nil:
				n++
			default:
				// The client hands out an empty event for a CaughtUp
				// without a timestamp (what servers before 25.0.1 send).
				t.Fatalf("empty subscription event: a CaughtUp without a timestamp?")
			}
		case <-time.After(10 * time.Second):
			t.Fatalf("no CaughtUp within 10s")
		}
	}
}

func TestStreamCaughtUp(t *testing.T) {
	c := startServer(t)
	stream := "kurrent-" + uuid.NewString()
	if _, err := c.AppendToStream(ctx(t), stream, kurrentdb.AppendToStreamOptions{StreamState: kurrentdb.NoStream{}}, events(3)...); err != nil {
		t.Fatal(err)
	}
	for _, from := range []kurrentdb.StreamPosition{kurrentdb.Start{}, kurrentdb.End{}} {
		sub, err := c.SubscribeToStream(ctx(t), stream, kurrentdb.SubscribeToStreamOptions{From: from})
		if err != nil {
			t.Fatal(err)
		}
		cu, n := caughtUp(t, sub)
		_ = sub.Close()
		if cu.StreamRevision == nil || *cu.StreamRevision != 2 || cu.Position != nil {
			t.Fatalf("from %T: CaughtUp after %d events: revision %v position %v, want revision 2", from, n, cu.StreamRevision, cu.Position)
		}
	}

	empty := "kurrent-empty-" + uuid.NewString()
	sub, err := c.SubscribeToStream(ctx(t), empty, kurrentdb.SubscribeToStreamOptions{From: kurrentdb.Start{}})
	if err != nil {
		t.Fatal(err)
	}
	defer sub.Close()
	if cu, _ := caughtUp(t, sub); cu.StreamRevision != nil || cu.Position != nil {
		t.Fatalf("empty stream: CaughtUp revision %v position %v, want neither", cu.StreamRevision, cu.Position)
	}
}

func TestAllCaughtUp(t *testing.T) {
	c := startServer(t)
	res, err := c.AppendToStream(ctx(t), "kurrent-"+uuid.NewString(), kurrentdb.AppendToStreamOptions{}, events(3)...)
	if err != nil {
		t.Fatal(err)
	}
	for _, from := range []kurrentdb.AllPosition{kurrentdb.Start{}, kurrentdb.End{}} {
		sub, err := c.SubscribeToAll(ctx(t), kurrentdb.SubscribeToAllOptions{From: from})
		if err != nil {
			t.Fatal(err)
		}
		cu, _ := caughtUp(t, sub)
		_ = sub.Close()
		if cu.Position == nil || cu.StreamRevision != nil || cu.Position.Commit < res.CommitPosition {
			t.Fatalf("$all from %T: CaughtUp position %v revision %v, want a position at or after %d", from, cu.Position, cu.StreamRevision, res.CommitPosition)
		}
	}
}

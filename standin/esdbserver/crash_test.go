//go:build unix

package esdbserver_test

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/EventStore/EventStore-Client-Go/v4/esdb"
	"github.com/google/uuid"

	"rxflow/standin/esdbserver/esdbtest"
)

// crashChildEnv switches TestCrashRecovery into the child role: it names the
// data directory the child serves from.
const crashChildEnv = "ESDBSERVER_CRASH_CHILD_DIR"

const (
	crashWriters   = 6
	crashShared    = "crash-shared"
	crashKillAfter = 1500 // acknowledged events before the SIGKILL
	crashEventType = "CrashTested"
)

func crashStream(w int) string { return "crash-w" + strconv.Itoa(w) }

// crashPayload derives an event's data from its id, so the parent can check
// every byte without the child sending it: 16 to 8176 bytes.
func crashPayload(id uuid.UUID) []byte {
	size := 16 + int(id[0])<<5
	out := make([]byte, 0, size+sha256.Size)
	block := sha256.Sum256(id[:])
	for len(out) < size {
		out = append(out, block[:]...)
		block = sha256.Sum256(block[:])
	}
	return out[:size]
}

func crashEvent() esdb.EventData {
	id := uuid.New()
	return esdb.EventData{
		EventID:     id,
		EventType:   crashEventType,
		ContentType: esdb.ContentTypeBinary,
		Data:        crashPayload(id),
		Metadata:    []byte(id.String()),
	}
}

// TestCrashRecovery runs a child process that appends under load to an
// on-disk server and prints every acknowledged event, SIGKILLs it mid-load,
// reopens the data directory and checks that every acknowledged event
// survived intact, with contiguous revisions and an ordered $all.
func TestCrashRecovery(t *testing.T) {
	if dir := os.Getenv(crashChildEnv); dir != "" {
		runCrashChild(t, dir)
		return
	}
	dir := t.TempDir()
	acks, stderr := runAndKillChild(t, dir)
	t.Logf("child acknowledged %d events before SIGKILL", countAcks(acks))

	srv := startServer(t, dir)
	client := esdbtest.Connect(t, srv.ConnectionString())
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()

	streams := []string{crashShared}
	for w := 0; w < crashWriters; w++ {
		streams = append(streams, crashStream(w))
	}
	stored := map[string][]*esdb.RecordedEvent{}
	seen := map[uuid.UUID]bool{}
	for _, stream := range streams {
		events := readAllOf(t, ctx, client, stream)
		for i, ev := range events {
			if ev.EventNumber != uint64(i) {
				t.Fatalf("%s: event %d has revision %d: revisions not contiguous", stream, i, ev.EventNumber)
			}
			if ev.EventType != crashEventType || !bytes.Equal(ev.Data, crashPayload(ev.EventID)) || string(ev.UserMetadata) != ev.EventID.String() {
				t.Fatalf("%s@%d: torn or foreign event %s (type %q, %d data bytes)", stream, i, ev.EventID, ev.EventType, len(ev.Data))
			}
			if seen[ev.EventID] {
				t.Fatalf("%s@%d: event %s stored twice", stream, i, ev.EventID)
			}
			seen[ev.EventID] = true
		}
		for rev, id := range acks[stream] {
			if rev >= uint64(len(events)) {
				t.Fatalf("%s@%d: acknowledged event %s lost (stream has %d events)\nchild stderr:\n%s", stream, rev, id, len(events), stderr)
			}
			if events[rev].EventID != id {
				t.Fatalf("%s@%d: acknowledged %s, stored %s", stream, rev, id, events[rev].EventID)
			}
		}
		stored[stream] = events
	}

	// $all holds each stored event once, in strictly increasing positions.
	rs, err := client.ReadAll(ctx, esdb.ReadAllOptions{From: esdb.Start{}}, 10_000_000)
	if err != nil {
		t.Fatalf("read $all: %v", err)
	}
	defer rs.Close()
	var prev esdb.Position
	inAll := 0
	for {
		ev, err := rs.Recv()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatalf("read $all: %v", err)
		}
		rec := ev.OriginalEvent()
		p := rec.Position
		if p.Commit != p.Prepare || p.Commit <= prev.Commit {
			t.Fatalf("$all: position %+v after %+v", p, prev)
		}
		prev = p
		events, ok := stored[rec.StreamID]
		if !ok {
			continue
		}
		if rec.EventNumber >= uint64(len(events)) || events[rec.EventNumber].EventID != rec.EventID {
			t.Fatalf("$all: %s@%d (%s) does not match the stream", rec.StreamID, rec.EventNumber, rec.EventID)
		}
		inAll++
	}
	if inAll != len(seen) {
		t.Fatalf("$all holds %d of our events, streams hold %d", inAll, len(seen))
	}

	// The recovered server takes the next write at the next revision.
	last := uint64(len(stored[crashStream(0)])) - 1
	if _, err := client.AppendToStream(ctx, crashStream(0), esdb.AppendToStreamOptions{ExpectedRevision: esdb.Revision(last)}, crashEvent()); err != nil {
		t.Fatalf("append after recovery expecting revision %d: %v", last, err)
	}
}

func readAllOf(t *testing.T, ctx context.Context, client *esdb.Client, stream string) []*esdb.RecordedEvent {
	t.Helper()
	rs, err := client.ReadStream(ctx, stream, esdb.ReadStreamOptions{}, 10_000_000)
	if err != nil {
		t.Fatalf("read %s: %v", stream, err)
	}
	defer rs.Close()
	var out []*esdb.RecordedEvent
	for {
		ev, err := rs.Recv()
		if errors.Is(err, io.EOF) {
			return out
		}
		if err != nil {
			t.Fatalf("read %s after %d events: %v", stream, len(out), err)
		}
		out = append(out, ev.OriginalEvent())
	}
}

func countAcks(acks map[string]map[uint64]uuid.UUID) int {
	n := 0
	for _, m := range acks {
		n += len(m)
	}
	return n
}

// runAndKillChild starts the child, collects its acknowledgements, kills it
// once crashKillAfter events are acknowledged and returns every
// acknowledgement it printed before dying, plus its stderr.
func runAndKillChild(t *testing.T, dir string) (map[string]map[uint64]uuid.UUID, string) {
	cmd := exec.Command(os.Args[0], "-test.run=^TestCrashRecovery$", "-test.count=1", "-test.timeout=5m")
	cmd.Env = append(os.Environ(), crashChildEnv+"="+dir)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}

	acks := map[string]map[uint64]uuid.UUID{}
	lines := make(chan string, 1024)
	go func() {
		defer close(lines)
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			lines <- sc.Text()
		}
	}()
	record := func(line string) {
		f := strings.Fields(line)
		if len(f) != 4 || f[0] != "ACK" {
			return
		}
		rev, err1 := strconv.ParseUint(f[2], 10, 64)
		id, err2 := uuid.Parse(f[3])
		if err1 != nil || err2 != nil {
			t.Fatalf("bad ack line %q", line)
		}
		if acks[f[1]] == nil {
			acks[f[1]] = map[uint64]uuid.UUID{}
		}
		if prev, dup := acks[f[1]][rev]; dup && prev != id {
			t.Fatalf("%s@%d acknowledged twice: %s and %s", f[1], rev, prev, id)
		}
		acks[f[1]][rev] = id
	}

	timeout := time.After(2 * time.Minute)
	for countAcks(acks) < crashKillAfter {
		select {
		case line, ok := <-lines:
			if !ok {
				_ = cmd.Wait()
				t.Fatalf("child exited after %d acks\nstderr:\n%s", countAcks(acks), stderr.String())
			}
			record(line)
		case <-timeout:
			_ = cmd.Process.Kill()
			t.Fatalf("child acknowledged only %d events in 2m\nstderr:\n%s", countAcks(acks), stderr.String())
		}
	}
	if err := cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatalf("kill child: %v", err)
	}
	for line := range lines {
		record(line)
	}
	err = cmd.Wait()
	var exitErr *exec.ExitError
	if !errors.As(err, &exitErr) || exitErr.Sys().(syscall.WaitStatus).Signal() != syscall.SIGKILL {
		t.Fatalf("child did not die of SIGKILL: %v\nstderr:\n%s", err, stderr.String())
	}
	return acks, stderr.String()
}

// runCrashChild serves dir and appends until killed (or a bound is hit):
// each writer alternates between its own stream, with exact expected
// revisions, and a stream shared by all writers, with expected any.
func runCrashChild(t *testing.T, dir string) {
	srv := startServer(t, dir)
	client := esdbtest.Connect(t, srv.ConnectionString())
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()

	var mu sync.Mutex
	ack := func(stream string, first uint64, batch []esdb.EventData) {
		var b strings.Builder
		for i, ev := range batch {
			fmt.Fprintf(&b, "ACK %s %d %s\n", stream, first+uint64(i), ev.EventID)
		}
		mu.Lock()
		defer mu.Unlock()
		if _, err := os.Stdout.WriteString(b.String()); err != nil {
			os.Exit(3)
		}
	}
	var wg sync.WaitGroup
	for w := 0; w < crashWriters; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			own := crashStream(w)
			next := uint64(0)
			for i := 0; ctx.Err() == nil && i < 100_000; i++ {
				batch := make([]esdb.EventData, 1+i%4)
				for j := range batch {
					batch[j] = crashEvent()
				}
				if i%2 == 0 {
					var expected esdb.ExpectedRevision = esdb.NoStream{}
					if next > 0 {
						expected = esdb.Revision(next - 1)
					}
					res, err := client.AppendToStream(ctx, own, esdb.AppendToStreamOptions{ExpectedRevision: expected}, batch...)
					if err != nil {
						t.Errorf("append to %s: %v", own, err)
						return
					}
					if res.NextExpectedVersion != next+uint64(len(batch))-1 {
						t.Errorf("append to %s: landed at %d, want %d", own, res.NextExpectedVersion, next+uint64(len(batch))-1)
						return
					}
					ack(own, next, batch)
					next += uint64(len(batch))
					continue
				}
				res, err := client.AppendToStream(ctx, crashShared, esdb.AppendToStreamOptions{}, batch...)
				if err != nil {
					t.Errorf("append to %s: %v", crashShared, err)
					return
				}
				ack(crashShared, res.NextExpectedVersion+1-uint64(len(batch)), batch)
			}
		}()
	}
	wg.Wait()
}

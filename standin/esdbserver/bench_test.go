package esdbserver_test

import (
	"context"
	"errors"
	"io"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/EventStore/EventStore-Client-Go/v4/esdb"
	"github.com/google/uuid"

	"rxflow/standin/esdbserver/esdbtest"
)

// Benchmarks go through the official client over loopback to the durable
// (on-disk) server, with 256-byte JSON events.

var benchData = []byte(`{"prescriptionId":"rx-000000000000","patientId":"p-000000000000","drug":"amoxicillin 500mg","qty":21,"prescriber":"dr-000000","status":"approved","note":"benchmark payload padded to a typical prescription event size ........."}`)

func benchEvent() esdb.EventData {
	return esdb.EventData{EventID: uuid.New(), EventType: "BenchTested", ContentType: esdb.ContentTypeJson, Data: benchData}
}

func benchClient(b *testing.B) *esdb.Client {
	b.Helper()
	srv := startServer(b, b.TempDir())
	return esdbtest.Connect(b, srv.ConnectionString())
}

func reportEventsPerSec(b *testing.B, events int) {
	b.ReportMetric(float64(events)/b.Elapsed().Seconds(), "events/s")
}

// BenchmarkAppendSequential: one writer, one event per append.
func BenchmarkAppendSequential(b *testing.B) {
	client := benchClient(b)
	ctx := context.Background()
	stream := "bench-seq-" + uuid.NewString()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if _, err := client.AppendToStream(ctx, stream, esdb.AppendToStreamOptions{}, benchEvent()); err != nil {
			b.Fatalf("append: %v", err)
		}
	}
	reportEventsPerSec(b, b.N)
}

// BenchmarkAppend16Writers: 16 goroutines, each appending one event at a
// time to its own stream; b.N events in total.
func BenchmarkAppend16Writers(b *testing.B) { benchWriters(b, 16, 0) }

// BenchmarkAppend16WritersSteadyState: the same on a store that already
// holds 100,000 events, so that Pebble writes its log into recycled files,
// as a long-running store does: a write-ahead log file that does not grow
// is fsynced without an ext4 journal commit.
func BenchmarkAppend16WritersSteadyState(b *testing.B) { benchWriters(b, 16, 100_000) }

// BenchmarkAppend64Writers: the same with 64 writers, to show what the
// store takes when more appends are in flight.
func BenchmarkAppend64Writers(b *testing.B) { benchWriters(b, 64, 0) }

// benchWriters first stores prefill events in batches of 500, untimed.
func benchWriters(b *testing.B, writers, prefill int) {
	client := benchClient(b)
	ctx := context.Background()
	for n := 0; n < prefill; n += 500 {
		events := make([]esdb.EventData, 500)
		for i := range events {
			events[i] = benchEvent()
		}
		if _, err := client.AppendToStream(ctx, "bench-prefill-"+uuid.NewString(), esdb.AppendToStreamOptions{}, events...); err != nil {
			b.Fatalf("prefill: %v", err)
		}
	}
	var next atomic.Int64
	var wg sync.WaitGroup
	errs := make(chan error, writers)
	b.ResetTimer()
	for range writers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			stream := "bench-w-" + uuid.NewString()
			for next.Add(1) <= int64(b.N) {
				if _, err := client.AppendToStream(ctx, stream, esdb.AppendToStreamOptions{}, benchEvent()); err != nil {
					errs <- err
					return
				}
			}
		}()
	}
	wg.Wait()
	b.StopTimer()
	close(errs)
	if err := <-errs; err != nil {
		b.Fatalf("append: %v", err)
	}
	reportEventsPerSec(b, b.N)
}

// BenchmarkReadAll reads the whole of $all (20,000 events) forwards per
// iteration.
func BenchmarkReadAll(b *testing.B) {
	const total, batch = 20_000, 100
	client := benchClient(b)
	ctx := context.Background()
	for n := 0; n < total; n += batch {
		events := make([]esdb.EventData, batch)
		for i := range events {
			events[i] = benchEvent()
		}
		stream := "bench-read-" + uuid.NewString()
		if _, err := client.AppendToStream(ctx, stream, esdb.AppendToStreamOptions{}, events...); err != nil {
			b.Fatalf("populate: %v", err)
		}
	}
	b.ResetTimer()
	read := 0
	for i := 0; i < b.N; i++ {
		rs, err := client.ReadAll(ctx, esdb.ReadAllOptions{From: esdb.Start{}}, total*2)
		if err != nil {
			b.Fatalf("read $all: %v", err)
		}
		n := 0
		for {
			_, err := rs.Recv()
			if errors.Is(err, io.EOF) {
				break
			}
			if err != nil {
				b.Fatalf("read $all: %v", err)
			}
			n++
		}
		rs.Close()
		if n < total {
			b.Fatalf("read %d events from $all, want at least %d", n, total)
		}
		read += n
	}
	reportEventsPerSec(b, read)
}

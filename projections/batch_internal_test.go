package projections

import (
	"context"
	"errors"
	"fmt"
	"reflect"
	"testing"

	"rxflow/domain"
	"rxflow/events"
)

// batcher is a BatchHandler that records each call, in memory; failAt, if
// set, makes the batch holding that position fail after handling the
// events before it.
type batcher struct {
	batches [][]uint64 // positions of each HandleBatch
	single  []uint64   // positions of each Handle
	handled []uint64   // every position handled, in order
	saved   []uint64   // each SaveCheckpoint
	failAt  uint64
}

func (b *batcher) Name() string                               { return "batcher" }
func (b *batcher) Checkpoint(context.Context) (uint64, error) { return 0, nil }
func (b *batcher) SaveCheckpoint(_ context.Context, p uint64) error {
	b.saved = append(b.saved, p)
	return nil
}
func (b *batcher) Handle(_ context.Context, rec events.Recorded) error {
	b.single = append(b.single, rec.Position)
	b.handled = append(b.handled, rec.Position)
	return nil
}
func (b *batcher) HandleBatch(_ context.Context, recs []events.Recorded) error {
	var ps []uint64
	for _, rec := range recs {
		if rec.Position == b.failAt {
			b.batches = append(b.batches, ps)
			return errors.New("injected")
		}
		ps = append(ps, rec.Position)
		b.handled = append(b.handled, rec.Position)
	}
	b.batches = append(b.batches, ps)
	return nil
}

func eventMsg(pos uint64) Message {
	return Message{Event: &events.Recorded{URN: fmt.Sprint("urn:rx:", pos), Event: domain.Requested{}, Position: pos}}
}

// queued returns the messages as a channel holding them all, as the
// runner's read-ahead queue does when they arrived faster than handled.
func queued(ms ...Message) <-chan Message {
	ch := make(chan Message, len(ms))
	for _, m := range ms {
		ch <- m
	}
	return ch
}

func newBatchCursor(b *batcher, cfg RunnerConfig, handled uint64) *cursor {
	r := NewRunner(nil, b, cfg)
	return &cursor{r: r, batch: b, saved: handled, handled: handled}
}

// A batch takes the events already waiting, up to MaxBatch, never one
// already handled; a message that is not an event ends it and is applied
// in its turn; the cursor moves past every event handled.
func TestRunnerBatchesWaitingEvents(t *testing.T) {
	b := &batcher{}
	c := newBatchCursor(b, RunnerConfig{MaxBatch: 3, CheckpointEvery: 1000}, 10)
	msgs := queued(eventMsg(9), eventMsg(11), eventMsg(12), eventMsg(13), eventMsg(14),
		Message{Checkpoint: 20}, eventMsg(21))
	if err := c.take(t.Context(), eventMsg(10), msgs); err != nil {
		t.Fatal(err)
	}
	// 10 and 9 are at or before the cursor (10): redeliveries.
	if want := [][]uint64{{11}}; !reflect.DeepEqual(b.batches, want) {
		t.Fatalf("batches %v, want %v", b.batches, want)
	}
	for len(msgs) > 0 { // as follow does: one message at a time from the queue
		if err := c.take(t.Context(), <-msgs, msgs); err != nil {
			t.Fatal(err)
		}
	}
	if want := [][]uint64{{11}, {12, 13, 14}, {21}}; !reflect.DeepEqual(b.batches, want) {
		t.Fatalf("batches %v, want %v", b.batches, want)
	}
	if len(b.single) != 0 {
		t.Fatalf("events handled one by one: %v", b.single)
	}
	if c.handled != 21 || len(b.saved) != 0 {
		t.Fatalf("cursor at %d, checkpoints saved %v; want 21 and none (a checkpoint message moves the cursor; it is saved with the events)", c.handled, b.saved)
	}
}

// A batch never waits for events that have not arrived.
func TestRunnerBatchDoesNotWait(t *testing.T) {
	b := &batcher{}
	c := newBatchCursor(b, RunnerConfig{MaxBatch: 100}, 0)
	if err := c.take(t.Context(), eventMsg(1), make(chan Message)); err != nil { // nothing will ever come
		t.Fatal(err)
	}
	if want := [][]uint64{{1}}; !reflect.DeepEqual(b.batches, want) {
		t.Fatalf("batches %v, want %v", b.batches, want)
	}
}

// A failed batch stops the subscription; the checkpoint saved is the one
// before the batch, never past an event the batch may not have handled.
func TestRunnerFailedBatchCheckpointsOnlyHandled(t *testing.T) {
	b := &batcher{failAt: 5}
	c := newBatchCursor(b, RunnerConfig{MaxBatch: 10, CheckpointEvery: 1000}, 0)
	if err := c.take(t.Context(), eventMsg(1), queued(eventMsg(2))); err != nil {
		t.Fatal(err)
	}
	err := c.take(t.Context(), eventMsg(3), queued(eventMsg(4), eventMsg(5), eventMsg(6)))
	if err == nil {
		t.Fatal("a failed batch was not reported")
	}
	if c.handled != 2 || !reflect.DeepEqual(b.saved, []uint64{2}) {
		t.Fatalf("cursor at %d, saved %v; want 2 and [2]: not past the failed batch", c.handled, b.saved)
	}
}

// The checkpoint is saved every CheckpointEvery events, batches counted
// by their events.
func TestRunnerBatchCountsEventsForCheckpoints(t *testing.T) {
	b := &batcher{}
	c := newBatchCursor(b, RunnerConfig{MaxBatch: 4, CheckpointEvery: 6}, 0)
	msgs := queued(eventMsg(2), eventMsg(3), eventMsg(4), eventMsg(5), eventMsg(6), eventMsg(7))
	if err := c.take(t.Context(), eventMsg(1), msgs); err != nil {
		t.Fatal(err)
	}
	for len(msgs) > 0 {
		if err := c.take(t.Context(), <-msgs, msgs); err != nil {
			t.Fatal(err)
		}
	}
	if want := [][]uint64{{1, 2, 3, 4}, {5, 6, 7}}; !reflect.DeepEqual(b.batches, want) {
		t.Fatalf("batches %v, want %v", b.batches, want)
	}
	if !reflect.DeepEqual(b.saved, []uint64{7}) {
		t.Fatalf("saved %v, want [7]: after 7 events, past CheckpointEvery 6", b.saved)
	}
}

// MaxBatch 1 hands events one by one, through Handle.
func TestRunnerMaxBatchOneHandlesSingly(t *testing.T) {
	b := &batcher{}
	r := NewRunner(nil, b, RunnerConfig{MaxBatch: 1})
	if NewRunner(nil, b, RunnerConfig{}).batchHandler() == nil {
		t.Fatal("a BatchHandler is not batched by default")
	}
	c := &cursor{r: r, batch: r.batchHandler()}
	if err := c.take(t.Context(), eventMsg(1), queued(eventMsg(2))); err != nil {
		t.Fatal(err)
	}
	if len(b.batches) != 0 || !reflect.DeepEqual(b.single, []uint64{1}) {
		t.Fatalf("batches %v, singles %v; want Handle of 1 only", b.batches, b.single)
	}
}

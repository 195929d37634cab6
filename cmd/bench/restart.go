package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"sync/atomic"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"

	"rxflow/infra/kafka"
)

// restartResults are the times from a processor's crash, or from the end
// of a broker outage, to the first command it handles afterwards.
type restartResults struct {
	static, dynamic time.Duration // kill -9 → new child → first command handled
	outage          time.Duration // broker back → first command handled; 0 if not measured
	// coordinator is the part of outage the broker itself takes: from its
	// return until the group's coordinator answers an offset fetch without
	// an error (until then joins get COORDINATOR_LOAD_IN_PROGRESS).
	coordinator time.Duration
}

// restart measures, for a processor that is a static member of its group
// (a group instance id) and for one that is not: kill -9, start a new
// child at once, and the time until it handles a command produced just
// after the kill (by one producer client for the whole phase). Then, if -broker-stop and -broker-start are given, it
// stops the broker under a running static member, starts it again, and
// measures from the broker's return to the first command handled.
func (b *bench) restart(ctx context.Context, conn string) (r restartResults, err error) {
	// Back from an outage, it should deliver as soon as the broker takes
	// records: metadata refreshed and retries made every 50 ms, not after
	// franz-go's default 5 s and up to 1 s.
	fast := func(int) time.Duration { return 50 * time.Millisecond }
	if b.upstream, err = newProducer(b.kafka(), kgo.MetadataMinAge(50*time.Millisecond), kgo.RetryBackoffFn(fast)); err != nil {
		return r, err
	}
	defer b.upstream.Close()
	for _, static := range []bool{true, false} {
		d, err := b.killAndRestart(ctx, conn, static)
		if err != nil {
			return r, err
		}
		if static {
			r.static = d
		} else {
			r.dynamic = d
		}
	}
	if b.opts.brokerStop == "" || b.opts.brokerStart == "" {
		progress("restart: no -broker-stop and -broker-start: the outage is not measured")
		return r, nil
	}
	r.outage, r.coordinator, err = b.outage(ctx, conn)
	return r, err
}

// restartChild starts a processor child on topic in group, as static
// member instance if that is not empty.
func (b *bench) restartChild(ctx context.Context, conn, topic, group, instance string) (*child, error) {
	args := b.childArgs(conn, topic, group, roleProcessor)
	if instance != "" {
		args = append(args, "-instance-id", instance)
	}
	return startChild(ctx, roleProcessor, b.opts.security.Environ(), args...)
}

// handleOne produces one new prescription's request and waits until c
// has handled n commands in all.
func (b *bench) handleOne(ctx context.Context, c *child, topic, prefix string, n int) error {
	cmd := workload(fmt.Sprintf("%s-%d", prefix, n), 1, 1)
	start := time.Now()
	if err := b.produceUpstream(ctx, topic, cmd, time.Minute); err != nil {
		return err
	}
	progress("restart: command produced in %s", time.Since(start).Round(time.Millisecond))
	ctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
	defer cancel()
	return c.waitCount(ctx, n)
}

func (b *bench) killAndRestart(ctx context.Context, conn string, static bool) (time.Duration, error) {
	topic, group, prefix := b.next("restart")
	instance, kind := "", "dynamic member"
	if static {
		instance, kind = "bench-"+prefix, "static member"
	}
	if err := kafka.EnsureTopics(ctx, b.kafka(), int32(b.opts.partitions), topic); err != nil {
		return 0, err
	}
	first, err := b.restartChild(ctx, conn, topic, group, instance)
	if err != nil {
		return 0, err
	}
	if err := b.handleOne(ctx, first, topic, prefix, 1); err != nil {
		first.stop()
		return 0, fmt.Errorf("before the kill: %w", err)
	}
	// Let the first child commit its offset (auto-commit, every second),
	// so that the second starts after the command already handled.
	time.Sleep(2 * time.Second)
	killed := time.Now()
	if err := first.cmd.Process.Kill(); err != nil {
		return 0, err
	}
	_ = first.cmd.Wait()
	second, err := b.restartChild(ctx, conn, topic, group, instance)
	if err != nil {
		return 0, err
	}
	defer second.stop()
	if err := b.handleOne(ctx, second, topic, prefix+"-after", 1); err != nil {
		return 0, fmt.Errorf("after the kill: %w", err)
	}
	took := time.Since(killed)
	progress("restart, %s: kill -9 → new process → first command handled in %s", kind, took.Round(time.Millisecond))
	return took, nil
}

// outage stops and restarts the broker under a running static member and
// measures from the broker's return to the first command handled, and to
// the group's coordinator answering.
func (b *bench) outage(ctx context.Context, conn string) (took, coordinator time.Duration, err error) {
	topic, group, prefix := b.next("outage")
	if err := kafka.EnsureTopics(ctx, b.kafka(), int32(b.opts.partitions), topic); err != nil {
		return 0, 0, err
	}
	c, err := b.restartChild(ctx, conn, topic, group, "bench-"+prefix)
	if err != nil {
		return 0, 0, err
	}
	defer c.stop()
	if err := b.handleOne(ctx, c, topic, prefix, 1); err != nil {
		return 0, 0, fmt.Errorf("before the outage: %w", err)
	}
	time.Sleep(2 * time.Second) // the offset commits
	progress("outage: stopping the broker")
	if err := shell(ctx, b.opts.brokerStop); err != nil {
		return 0, 0, fmt.Errorf("-broker-stop: %w", err)
	}
	// The upstream producer keeps running through the outage: the command
	// is handed to it now, and it delivers it once the broker takes records
	// again.
	produced := make(chan error, 1)
	go func() { produced <- b.produceUpstream(ctx, topic, workload(prefix+"-after", 1, 1), 5*time.Minute) }()
	time.Sleep(3 * time.Second)
	progress("outage: starting the broker")
	if err := shell(ctx, b.opts.brokerStart); err != nil {
		return 0, 0, fmt.Errorf("-broker-start: %w", err)
	}
	back := time.Now()
	coordinated := make(chan time.Duration, 1)
	go func() { coordinated <- coordinatorAnswers(ctx, b.kafka(), group, back) }()
	var delivered atomic.Int64 // nanoseconds after back; 0 until then
	go func() {
		if err := <-produced; err != nil {
			progress("outage: produce: %v", err)
			return
		}
		delivered.Store(int64(time.Since(back)))
	}()
	waitCtx, cancel := context.WithTimeout(ctx, 2*time.Minute)
	defer cancel()
	if err := c.waitCount(waitCtx, 2); err != nil {
		return 0, 0, fmt.Errorf("after the outage: %w", err)
	}
	took = time.Since(back)
	coordinator = <-coordinated
	progress("outage: broker back → group coordinator answers in %s, command delivered to the broker in %s → first command handled in %s",
		coordinator.Round(time.Millisecond), time.Duration(delivered.Load()).Round(time.Millisecond), took.Round(time.Millisecond))
	return took, coordinator, nil
}

// coordinatorAnswers polls group's offsets every 20 ms until the group's
// coordinator answers without an error, and returns the time since from.
func coordinatorAnswers(ctx context.Context, cfg kafka.Config, group string, from time.Time) time.Duration {
	cl, err := newProducer(cfg, kgo.RetryBackoffFn(func(int) time.Duration { return 20 * time.Millisecond }))
	if err != nil {
		return 0
	}
	defer cl.Close()
	for ctx.Err() == nil {
		req := kmsg.NewPtrOffsetFetchRequest()
		req.Group = group
		rg := kmsg.NewOffsetFetchRequestGroup()
		rg.Group = group
		req.Groups = append(req.Groups, rg)
		resp, err := req.RequestWith(ctx, cl)
		if err == nil {
			code := resp.ErrorCode
			if len(resp.Groups) > 0 {
				code = resp.Groups[0].ErrorCode
			}
			if kerr.ErrorForCode(code) == nil {
				return time.Since(from)
			}
		}
		time.Sleep(20 * time.Millisecond)
	}
	return 0
}

// produceUpstream produces cmds with b.upstream, which retries while the
// broker is away, for up to within.
func (b *bench) produceUpstream(ctx context.Context, topic string, cmds []command, within time.Duration) error {
	ctx, cancel := context.WithTimeout(ctx, within)
	defer cancel()
	recs := make([]*kgo.Record, len(cmds))
	for i, c := range cmds {
		recs[i] = c.record(topic)
	}
	return b.upstream.ProduceSync(ctx, recs...).FirstErr()
}

// shell runs a command line with sh -c, its output on stderr.
func shell(ctx context.Context, line string) error {
	cmd := exec.CommandContext(ctx, "sh", "-c", line)
	cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
	if err := cmd.Run(); err != nil {
		return errors.Join(fmt.Errorf("%q", line), err)
	}
	return nil
}

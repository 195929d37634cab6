package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"maps"
	"net/http"
	"os"
	"os/exec"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// child is a running consumer process.
type child struct {
	cmd    *exec.Cmd
	addr   string // its /metrics endpoint is http://addr/metrics
	metric string // the counter of handled messages
	http   *http.Client
}

// startChild re-executes this binary as a consumer and waits until it
// consumes. env is added to this process's environment (later entries win).
func startChild(ctx context.Context, role string, env []string, args ...string) (*child, error) {
	self, err := os.Executable()
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(self, append([]string{childArg, "-role", role}, args...)...)
	cmd.Env = append(os.Environ(), env...)
	cmd.Stderr = os.Stderr
	out, err := cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	c := &child{cmd: cmd, metric: metricProcessed, http: &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{DisableCompression: true}}}
	if role == roleRaw {
		c.metric = metricRaw
	}
	ready := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			if addr, ok := strings.CutPrefix(sc.Text(), "ready "); ok {
				ready <- addr
			}
		}
		close(ready)
	}()
	select {
	case addr, ok := <-ready:
		if !ok {
			_ = cmd.Wait()
			return nil, fmt.Errorf("%s child exited before it was ready", role)
		}
		c.addr = addr
		return c, nil
	case <-time.After(time.Minute):
	case <-ctx.Done():
	}
	c.stop()
	return nil, fmt.Errorf("%s child not ready", role)
}

// handled sums the child's counter of handled messages.
func (c *child) handled(ctx context.Context) (int, error) {
	samples, err := c.scrape(ctx, c.metric)
	if err != nil {
		return 0, err
	}
	total := 0.0
	for _, v := range samples {
		total += v
	}
	return int(total), nil
}

// scrape returns the samples of one metric, by their labels ("" for none).
func (c *child) scrape(ctx context.Context, metric string) (map[string]float64, error) {
	return scrape(ctx, c.http, c.addr, metric)
}

// scrape returns the samples of one metric at http://addr/metrics, by
// their labels ("" for none).
func scrape(ctx context.Context, client *http.Client, addr, metric string) (map[string]float64, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+addr+"/metrics", nil)
	if err != nil {
		return nil, err
	}
	resp, err := client.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("%s/metrics: status %d", addr, resp.StatusCode)
	}
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		return nil, err
	}
	out := map[string]float64{}
	for line := range strings.SplitSeq(string(body), "\n") {
		rest, ok := strings.CutPrefix(line, metric)
		if !ok || rest == "" || rest[0] != ' ' && rest[0] != '{' {
			continue
		}
		sp := strings.LastIndexByte(rest, ' ')
		v, err := strconv.ParseFloat(rest[sp+1:], 64)
		if err != nil {
			return nil, fmt.Errorf("metric line %q: %w", line, err)
		}
		out[strings.TrimSpace(rest[:sp])] = v
	}
	return out, nil
}

// handlingBuckets returns the cumulative buckets of the processor's
// handling-time histogram for appended commands, by upper bound.
func (c *child) handlingBuckets(ctx context.Context) (map[float64]float64, error) {
	return c.buckets(ctx, "rxflow_command_handling_seconds_bucket", `outcome="appended"`)
}

// waitBuckets returns the cumulative buckets of the processor's histogram
// of the commands' wait before handling (record timestamp → handling).
func (c *child) waitBuckets(ctx context.Context) (map[float64]float64, error) {
	return c.buckets(ctx, "rxflow_command_wait_seconds_bucket", "")
}

// buckets returns the cumulative buckets of a histogram, by upper bound,
// from the samples whose labels contain label.
func (c *child) buckets(ctx context.Context, metric, label string) (map[float64]float64, error) {
	samples, err := c.scrape(ctx, metric)
	if err != nil {
		return nil, err
	}
	out := map[float64]float64{}
	for labels, v := range samples {
		if !strings.Contains(labels, label) {
			continue
		}
		_, le, _ := strings.Cut(labels, `le="`)
		le, _, _ = strings.Cut(le, `"`)
		bound, err := strconv.ParseFloat(le, 64)
		if err != nil {
			return nil, fmt.Errorf("bucket %q: %w", labels, err)
		}
		out[bound] = v
	}
	return out, nil
}

// quantile is the upper bound of the bucket holding quantile q of the
// observations between two snapshots of cumulative buckets.
func quantile(before, after map[float64]float64, q float64) float64 {
	bounds := slices.Sorted(maps.Keys(after))
	total := after[bounds[len(bounds)-1]] - before[bounds[len(bounds)-1]]
	for _, b := range bounds {
		if after[b]-before[b] >= q*total {
			return b
		}
	}
	return bounds[len(bounds)-1]
}

// throughput is a consumer's rate and the CPU it took, measured between
// the first poll that saw progress and the one that saw every message, so
// that start-up and the group join are left out.
type throughput struct {
	rate                float64 // messages per second
	childCPU, parentCPU time.Duration
	messages            int
}

// waitHandled polls until the child has handled n messages: slowly, as a
// scrape costs the child CPU, then often near the end, which it times.
func (c *child) waitHandled(ctx context.Context, n int, label string) (throughput, error) {
	var first time.Time
	var childCPU0, parentCPU0 time.Duration
	firstCount, last := 0, time.Now()
	for {
		got, err := c.handled(ctx)
		if err != nil {
			return throughput{}, err
		}
		now := time.Now()
		if got > 0 && first.IsZero() {
			first, firstCount = now, got
			childCPU0, parentCPU0 = cpuTime(c.cmd.Process.Pid), cpuTime(os.Getpid())
		}
		if got >= n {
			if got == firstCount {
				return throughput{}, fmt.Errorf("%s: everything was handled before the first poll; use a larger -n", label)
			}
			return throughput{
				rate:      float64(got-firstCount) / now.Sub(first).Seconds(),
				childCPU:  cpuTime(c.cmd.Process.Pid) - childCPU0,
				parentCPU: cpuTime(os.Getpid()) - parentCPU0,
				messages:  got - firstCount,
			}, nil
		}
		if now.Sub(last) >= time.Second {
			progress("%s: %d/%d", label, got, n)
			last = now
		}
		poll := 250 * time.Millisecond
		if got >= n*95/100 {
			poll = 10 * time.Millisecond
		}
		select {
		case <-ctx.Done():
			return throughput{}, ctx.Err()
		case <-time.After(poll):
		}
	}
}

// waitCount polls until the child has handled n messages.
func (c *child) waitCount(ctx context.Context, n int) error {
	for {
		got, err := c.handled(ctx)
		if err != nil || got >= n {
			return err
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// cpuTime is the user and system CPU time of a process so far, or 0 if it
// cannot be read.
func cpuTime(pid int) time.Duration {
	stat, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0
	}
	// The fields after the command name, which is in parentheses: utime and
	// stime are the 12th and 13th, in clock ticks of 10 ms.
	_, rest, _ := strings.Cut(string(stat), ") ")
	f := strings.Fields(rest)
	if len(f) < 13 {
		return 0
	}
	utime, _ := strconv.ParseInt(f[11], 10, 64)
	stime, _ := strconv.ParseInt(f[12], 10, 64)
	return time.Duration(utime+stime) * 10 * time.Millisecond
}

// peakRSS is the child's peak resident set (VmHWM), in bytes.
func (c *child) peakRSS() (int64, error) {
	return peakRSS(c.cmd.Process.Pid)
}

func peakRSS(pid int) (int64, error) {
	status, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, err
	}
	for line := range strings.SplitSeq(string(status), "\n") {
		if v, ok := strings.CutPrefix(line, "VmHWM:"); ok {
			kb, err := strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")), 10, 64)
			return kb << 10, err
		}
	}
	return 0, errors.New("no VmHWM in /proc status")
}

// stop sends SIGTERM and waits for the child to finish.
func (c *child) stop() {
	_ = c.cmd.Process.Signal(syscall.SIGTERM)
	done := make(chan struct{})
	go func() {
		_ = c.cmd.Wait()
		close(done)
	}()
	select {
	case <-done:
	case <-time.After(time.Minute):
		_ = c.cmd.Process.Kill()
		<-done
	}
}

func progress(format string, args ...any) {
	fmt.Fprintf(os.Stderr, time.Now().Format("15:04:05 ")+format+"\n", args...)
}

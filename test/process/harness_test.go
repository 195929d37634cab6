package process_test

import (
	"bytes"
	"cmp"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"rxflow/infra/kafka/kafkatest"
	"rxflow/projections"
	"rxflow/standin/partnersim"
)

const token = "process-test-token"

// startTimeout bounds a child's start until it is ready; settleTimeout
// bounds waiting for the system to finish the traffic. Both are liveness
// bounds, not performance assertions.
const (
	startTimeout  = 60 * time.Second
	settleTimeout = 60 * time.Second
)

// logBuf collects a child's stdout and stderr across its restarts.
type logBuf struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *logBuf) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

// tail returns the last n bytes written.
func (b *logBuf) tail(n int) string {
	b.mu.Lock()
	defer b.mu.Unlock()
	s := b.buf.String()
	if len(s) > n {
		s = "…" + s[len(s)-n:]
	}
	return s
}

// child is one binary run as a child process, possibly several times.
type child struct {
	name string
	path string
	args []string
	env  []string
	out  logBuf
	runs int

	mu       sync.Mutex
	cmd      *exec.Cmd
	done     chan struct{} // closed when the current run has exited
	state    *os.ProcessState
	stopping bool  // the test stops the current run on purpose
	died     error // the current run exited without being asked to
}

// newChild registers a child; its output goes to the test log if the test
// fails, and a run still going at the end is killed.
func newChild(t *testing.T, name, path string, args, env []string) *child {
	c := &child{name: name, path: path, args: args, env: env}
	t.Cleanup(func() {
		if c.running() {
			c.signal(t, syscall.SIGKILL)
			<-c.done
		}
		if t.Failed() {
			t.Logf("---- %s output (%d runs) ----\n%s", c.name, c.runs, c.out.tail(48<<10))
		}
	})
	return c
}

func (c *child) start(t *testing.T) {
	t.Helper()
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.cmd != nil && c.state == nil {
		t.Fatalf("%s: already running", c.name)
	}
	c.runs++
	fmt.Fprintf(&c.out, "==== %s run %d, %s ====\n", c.name, c.runs, time.Now().Format(time.TimeOnly))
	cmd := exec.Command(c.path, c.args...)
	// Later entries win: the test's settings override the environment's.
	cmd.Env = append(os.Environ(), c.env...)
	cmd.Stdout, cmd.Stderr = &c.out, &c.out
	cmd.SysProcAttr = sysProcAttr()
	if err := cmd.Start(); err != nil {
		t.Fatalf("start %s: %v", c.name, err)
	}
	c.cmd, c.state, c.stopping, c.died = cmd, nil, false, nil
	done := make(chan struct{})
	c.done = done
	go func() {
		_ = cmd.Wait()
		c.mu.Lock()
		c.state = cmd.ProcessState
		if !c.stopping {
			c.died = fmt.Errorf("%s exited unexpectedly: %v", c.name, cmd.ProcessState)
		}
		c.mu.Unlock()
		close(done)
	}()
}

func (c *child) running() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.cmd != nil && c.state == nil
}

// signal sends sig to the current run and marks it as stopped on purpose.
func (c *child) signal(t *testing.T, sig syscall.Signal) {
	t.Helper()
	c.mu.Lock()
	c.stopping = true
	cmd := c.cmd
	c.mu.Unlock()
	fmt.Fprintf(&c.out, "==== test sends %v to %s, %s ====\n", sig, c.name, time.Now().Format(time.TimeOnly))
	if err := cmd.Process.Signal(sig); err != nil && !errors.Is(err, os.ErrProcessDone) {
		t.Fatalf("signal %s: %v", c.name, err)
	}
}

// kill SIGKILLs the current run and waits for it to be gone.
func (c *child) kill(t *testing.T) {
	t.Helper()
	c.signal(t, syscall.SIGKILL)
	<-c.done
}

// terminate SIGTERMs the current run and returns its exit code, or fails
// the test if it has not exited within limit.
func (c *child) terminate(t *testing.T, limit time.Duration) (code int, took time.Duration) {
	t.Helper()
	start := time.Now()
	c.signal(t, syscall.SIGTERM)
	select {
	case <-c.done:
	case <-time.After(limit):
		t.Fatalf("%s did not exit within %v of SIGTERM", c.name, limit)
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.state.ExitCode(), time.Since(start)
}

// check fails the test if the current run died without being asked to.
func (c *child) check(t *testing.T) {
	t.Helper()
	c.mu.Lock()
	err := c.died
	c.mu.Unlock()
	if err != nil {
		t.Fatal(err)
	}
}

// freeAddr returns a 127.0.0.1 address with a port that was free just now.
func freeAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

// topics are unique per test, so that a shared real cluster works.
type topics struct {
	commands, rejections, dlq, dispensed, failed, changed, group string
}

// system is the four binaries around one Kafka cluster.
type system struct {
	brokers []string
	topics  topics
	esdbDir string
	projDir string
	esdbURL string

	esdbAddr, simAddr, procAddr, projAddr string

	esdb, sim, proc, proj *child
	projs                 []*child // further projector instances (several on one PostgreSQL)

	sent []sentCommand // every command produced, in order

	poll time.Duration // how often eventually polls; 20 ms if zero
}

// newSystem starts EventStoreDB, the partner simulators, the processor and
// the projector as child processes on brokers, and waits until each is ready.
func newSystem(t *testing.T, brokers []string) *system {
	t.Helper()
	s := newCore(t, brokers)
	s.proj = newChild(t, "projector", bin.projector, nil, append(s.projectorEnv(),
		"PROJECTOR_DATA_DIR="+s.projDir, "PROJECTOR_HTTP_ADDR="+s.projAddr))
	s.startProjector(t)
	return s
}

// newCore starts EventStoreDB, the partner simulators and the processor as
// child processes on brokers, and waits until each is ready; the caller
// adds the projector or projectors.
func newCore(t *testing.T, brokers []string) *system {
	t.Helper()
	s := &system{
		brokers: brokers,
		topics: topics{
			commands: kafkatest.UniqueTopic(t, "cmd"), rejections: kafkatest.UniqueTopic(t, "rej"), dlq: kafkatest.UniqueTopic(t, "dlq"),
			dispensed: kafkatest.UniqueTopic(t, "dispensed"), failed: kafkatest.UniqueTopic(t, "failed"), changed: kafkatest.UniqueTopic(t, "changed"),
			group: kafkatest.UniqueGroup(t, "proc"),
		},
		esdbDir:  filepath.Join(t.TempDir(), "esdb"),
		projDir:  filepath.Join(t.TempDir(), "projector"),
		esdbAddr: freeAddr(t), simAddr: freeAddr(t), procAddr: freeAddr(t), projAddr: freeAddr(t),
	}
	s.esdbURL = "esdb://" + s.esdbAddr + "?tls=false"
	kafkaEnv := []string{"KAFKA_BROKERS=" + strings.Join(brokers, ","), "COMMAND_TOPIC=" + s.topics.commands,
		"ESDB_CONNECTION_STRING=" + s.esdbURL, "LOG_LEVEL=info"}

	s.esdb = newChild(t, "esdb", bin.esdb, []string{"-addr", s.esdbAddr, "-data", s.esdbDir}, nil)
	s.sim = newChild(t, "partnersim", bin.partnersim, []string{"-addr", s.simAddr}, nil)
	s.proc = newChild(t, "processor", bin.processor, nil, append(slices.Clone(kafkaEnv),
		"PROCESSOR_GROUP="+s.topics.group, "REJECTION_TOPIC="+s.topics.rejections, "DLQ_TOPIC="+s.topics.dlq,
		"PROCESSOR_HTTP_ADDR="+s.procAddr))

	s.startESDB(t)
	s.sim.start(t)
	s.waitHTTP(t, s.sim, "http://"+s.simAddr+"/_sim/calls")
	s.startProcessor(t)
	return s
}

// projectorEnv is a projector's environment on this system, without its
// data directory, database and HTTP address.
func (s *system) projectorEnv() []string {
	partnerURL := func(p partnersim.Partner) string { return "http://" + s.simAddr + "/" + string(p) }
	return []string{"KAFKA_BROKERS=" + strings.Join(s.brokers, ","), "COMMAND_TOPIC=" + s.topics.commands,
		"ESDB_CONNECTION_STRING=" + s.esdbURL, "LOG_LEVEL=info",
		"DISPENSED_TOPIC=" + s.topics.dispensed, "FAILED_TOPIC=" + s.topics.failed, "STATUS_CHANGED_TOPIC=" + s.topics.changed,
		"QUERY_API_TOKEN=" + token, "QUERY_API_STATIC_TOKEN_ENABLED=true",
		"INSURANCE_URL=" + partnerURL(partnersim.Insurance), "PHARMACY_URL=" + partnerURL(partnersim.Pharmacy),
		"NOTIFICATIONS_URL=" + partnerURL(partnersim.Notifications), "ALERTING_URL=" + partnerURL(partnersim.Alerting)}
}

func (s *system) children() []*child {
	cs := []*child{s.esdb, s.sim, s.proc}
	if s.proj != nil {
		cs = append(cs, s.proj)
	}
	return append(cs, s.projs...)
}

// check fails the test if a child died without being asked to.
func (s *system) check(t *testing.T) {
	t.Helper()
	for _, c := range s.children() {
		c.check(t)
	}
}

func (s *system) startESDB(t *testing.T) {
	t.Helper()
	s.esdb.start(t)
	s.eventually(t, startTimeout, "esdb listening on "+s.esdbAddr, func() bool {
		conn, err := net.DialTimeout("tcp", s.esdbAddr, time.Second)
		if err == nil {
			conn.Close()
		}
		return err == nil
	})
}

func (s *system) startProcessor(t *testing.T) {
	t.Helper()
	s.proc.start(t)
	s.waitHTTP(t, s.proc, "http://"+s.procAddr+"/readyz")
}

func (s *system) startProjector(t *testing.T) {
	t.Helper()
	s.proj.start(t)
	s.waitHTTP(t, s.proj, "http://"+s.projAddr+"/readyz")
}

// waitHTTP waits until url answers 200.
func (s *system) waitHTTP(t *testing.T, c *child, url string) {
	t.Helper()
	s.eventually(t, startTimeout, c.name+" ready at "+url, func() bool {
		resp, err := client.Get(url)
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == http.StatusOK
	})
}

// eventually polls cond until it holds, failing the test on timeout or when
// a child dies unexpectedly meanwhile.
func (s *system) eventually(t *testing.T, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	s.eventuallyf(t, timeout, what, func() (bool, string) { return cond(), "" })
}

// eventuallyf is eventually with a report of the last state on timeout.
func (s *system) eventuallyf(t *testing.T, timeout time.Duration, what string, cond func() (bool, string)) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		s.check(t)
		ok, state := cond()
		if ok {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s; %s", timeout, what, state)
		}
		time.Sleep(cmp.Or(s.poll, 20*time.Millisecond))
	}
}

// client bounds every request the test makes: a child that hangs fails the
// test instead of stalling it.
var client = &http.Client{Timeout: 30 * time.Second}

// getJSON GETs url and decodes a 200 answer into out; it returns the status.
func getJSON(t *testing.T, url string, auth bool, out any) int {
	t.Helper()
	req, err := http.NewRequest(http.MethodGet, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	if auth {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := client.Do(req)
	if err, ok := errors.AsType[net.Error](err); ok && err.Timeout() {
		t.Fatalf("GET %s: no answer within %v", url, client.Timeout)
	}
	if err != nil {
		return 0
	}
	defer resp.Body.Close()
	if resp.StatusCode == http.StatusOK && out != nil {
		if err := json.NewDecoder(resp.Body).Decode(out); err != nil {
			t.Fatalf("GET %s: decode: %v", url, err)
		}
	} else {
		_, _ = io.Copy(io.Discard, resp.Body)
	}
	return resp.StatusCode
}

// api GETs path from the projector's query API, failing on anything but 200.
func (s *system) api(t *testing.T, path string, out any) {
	t.Helper()
	if code := getJSON(t, "http://"+s.projAddr+path, true, out); code != http.StatusOK {
		t.Fatalf("GET %s: status %d", path, code)
	}
}

// history returns urn's stored events through the query API; none if the
// stream does not exist.
func (s *system) history(t *testing.T, urn string) []projections.HistoryEntry {
	t.Helper()
	var h struct{ Events []projections.HistoryEntry }
	path := "/prescriptions/" + urn + "/history"
	switch code := getJSON(t, "http://"+s.projAddr+path, true, &h); code {
	case http.StatusOK, http.StatusNotFound:
		return h.Events
	default:
		t.Fatalf("GET %s: status %d", path, code)
		return nil
	}
}

// rows returns the whole read model, page by page.
func (s *system) rows(t *testing.T) map[string]projections.RowView {
	t.Helper()
	out := map[string]projections.RowView{}
	cursor := ""
	for {
		var page struct {
			Items      []projections.RowView
			NextCursor string
		}
		path := "/prescriptions?limit=500"
		if cursor != "" {
			path += "&cursor=" + url.QueryEscape(cursor)
		}
		s.api(t, path, &page)
		for _, r := range page.Items {
			out[r.URN] = r
		}
		if cursor = page.NextCursor; cursor == "" {
			return out
		}
	}
}

// simCalls returns what each simulated partner received.
func (s *system) simCalls(t *testing.T) map[partnersim.Partner]partnersim.Report {
	t.Helper()
	var out map[partnersim.Partner]partnersim.Report
	if code := getJSON(t, "http://"+s.simAddr+"/_sim/calls", false, &out); code != http.StatusOK {
		t.Fatalf("GET /_sim/calls: status %d", code)
	}
	return out
}

// metric sums the samples of a Prometheus counter or gauge on a child's
// /metrics whose name and labels start with prefix; -1 if unreachable.
func metric(addr, prefix string) float64 {
	resp, err := client.Get("http://" + addr + "/metrics")
	if err != nil {
		return -1
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil || resp.StatusCode != http.StatusOK {
		return -1
	}
	total := 0.0
	for line := range strings.SplitSeq(string(body), "\n") {
		if strings.HasPrefix(line, prefix) {
			var v float64
			if _, err := fmt.Sscan(line[strings.LastIndexByte(line, ' ')+1:], &v); err == nil {
				total += v
			}
		}
	}
	return total
}

// handled is the number of commands the current processor run has handled.
func (s *system) handled() float64 { return metric(s.procAddr, "rxflow_commands_total{") }

// projectorLag is the sum of the projectors' lag gauges; -1 if unknown.
func (s *system) projectorLag() float64 { return metric(s.projAddr, "rxflow_projector_lag_events{") }

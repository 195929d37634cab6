package process_test

import (
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"rxflow/infra/kafka/kafkatest"
)

// Start-up failures (docs/deploy.md, "Start-up failures"): every binary,
// given a bad setting, either exits with status 1 after exactly one line on
// stderr that names the problem, or, for EventStoreDB unreachable, keeps
// running, says once that it waits, and goes on once the server is up.
// Never a panic, a goroutine dump, an exit 0 or a silent hang.

// exitLimit bounds a failing start-up; waitLimit bounds waiting for a
// running child to log or answer. Liveness bounds, not performance ones.
const (
	exitLimit = 60 * time.Second
	waitLimit = 30 * time.Second
)

// configEnv lists the environment variables the binaries read; the tests
// drop them from their own environment, so that only a case's settings count.
var configEnv = []string{
	"KAFKA_BROKERS", "KAFKA_PARTITIONS", "PROCESSOR_GROUP", "COMMAND_TOPIC", "REJECTION_TOPIC", "DLQ_TOPIC",
	"DISPENSED_TOPIC", "FAILED_TOPIC", "STATUS_CHANGED_TOPIC", "ESDB_CONNECTION_STRING", "PROCESSOR_HTTP_ADDR",
	"PROJECTOR_HTTP_ADDR", "PROJECTOR_DATA_DIR", "MAX_COMMAND_BYTES", "LOG_LEVEL",
	"INSURANCE_URL", "PHARMACY_URL", "NOTIFICATIONS_URL", "ALERTING_URL", "PARTNER_API_TOKEN",
	"PARTNERSIM_ADDR", "ESDB_ADDR", "ESDB_DATA_DIR", "ESDB_MAX_APPEND_SIZE", "RXFLOW_DATA_DIR",
	"STACK_KAFKA_ADDR", "STACK_ESDB_ADDR", "STACK_PARTNERS_ADDR", "STACK_API_ADDR", "STACK_PROCESSOR_ADDR",
	"DEADLINE_APPROVAL_OVERDUE", "DEADLINE_PROCESSING_OVERDUE", "DEADLINE_PICKUP_OVERDUE", "DEADLINE_EVERY", "DEADLINE_RESEND",
}

// proc is one run of a binary, with its stdout and stderr kept apart.
type proc struct {
	name           string
	cmd            *exec.Cmd
	stdout, stderr logBuf
	done           chan struct{}
}

// launch starts path with args and, over the test's environment without
// configEnv, env (later entries win). A run still going when the test ends
// is killed.
func launch(t *testing.T, path string, args, env []string) *proc {
	t.Helper()
	p := &proc{name: filepath.Base(path), done: make(chan struct{})}
	p.cmd = exec.Command(path, args...)
	for _, kv := range os.Environ() {
		if k, _, _ := strings.Cut(kv, "="); !slices.Contains(configEnv, k) {
			p.cmd.Env = append(p.cmd.Env, kv)
		}
	}
	p.cmd.Env = append(p.cmd.Env, env...)
	p.cmd.Stdout, p.cmd.Stderr = &p.stdout, &p.stderr
	p.cmd.SysProcAttr = sysProcAttr()
	if err := p.cmd.Start(); err != nil {
		t.Fatalf("start %s: %v", p.name, err)
	}
	go func() {
		_ = p.cmd.Wait()
		close(p.done)
	}()
	t.Cleanup(func() {
		if !p.exited() {
			_ = p.cmd.Process.Kill()
			<-p.done
		}
	})
	return p
}

func (p *proc) exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// wait returns the exit code once the run ends, failing the test if it has
// not ended within limit.
func (p *proc) wait(t *testing.T, limit time.Duration) int {
	t.Helper()
	select {
	case <-p.done:
		return p.cmd.ProcessState.ExitCode()
	case <-time.After(limit):
		t.Fatalf("%s still running after %v; stderr:\n%s", p.name, limit, p.stderr.tail(8<<10))
		return -1
	}
}

// waitFor waits until cond holds, failing the test if the run ends first
// or limit passes.
func (p *proc) waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(waitLimit)
	for !cond() {
		if p.exited() {
			t.Fatalf("%s exited (%v) while the test waited for %s; stderr:\n%s", p.name, p.cmd.ProcessState, what, p.stderr.tail(8<<10))
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: no %s within %v; stderr:\n%s", p.name, what, waitLimit, p.stderr.tail(8<<10))
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// stop sends SIGTERM and expects exit status 0.
func (p *proc) stop(t *testing.T) {
	t.Helper()
	if err := p.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatalf("SIGTERM %s: %v", p.name, err)
	}
	if code := p.wait(t, exitLimit); code != 0 {
		t.Errorf("%s exited %d after SIGTERM, want 0; stderr:\n%s", p.name, code, p.stderr.tail(8<<10))
	}
}

// logged reports whether stderr has a line holding every one of parts.
func (p *proc) logged(parts ...string) bool {
	for line := range strings.SplitSeq(p.stderr.tail(1<<20), "\n") {
		if !slices.ContainsFunc(parts, func(s string) bool { return !strings.Contains(line, s) }) {
			return true
		}
	}
	return false
}

// noCrash fails the test if the output shows a panic or a goroutine dump.
func (p *proc) noCrash(t *testing.T) {
	t.Helper()
	for _, out := range []string{p.stderr.tail(1 << 20), p.stdout.tail(1 << 20)} {
		if strings.Contains(out, "panic") || strings.Contains(out, "goroutine ") {
			t.Errorf("%s crashed:\n%s", p.name, out)
		}
	}
}

// failure is a start-up that must fail: exit status 1, nothing on stdout,
// one line on stderr that starts with the binary's name and holds want,
// and none of notWant.
type failure struct {
	name    string
	bin     string
	args    []string
	env     []string
	want    []string
	notWant []string
	skip    string // why the case cannot run here, if it cannot
}

func (f failure) run(t *testing.T) {
	t.Helper()
	if f.skip != "" {
		t.Skip(f.skip)
	}
	p := launch(t, f.bin, f.args, f.env)
	code := p.wait(t, exitLimit)
	stderr := p.stderr.tail(1 << 20)
	p.noCrash(t)
	if code != 1 {
		t.Errorf("exit status %d, want 1; stderr:\n%s", code, stderr)
	}
	if out := p.stdout.tail(1 << 20); out != "" {
		t.Errorf("stdout not empty:\n%s", out)
	}
	var lines []string
	for line := range strings.SplitSeq(stderr, "\n") {
		if strings.TrimSpace(line) != "" {
			lines = append(lines, line)
		}
	}
	if len(lines) != 1 {
		t.Fatalf("stderr has %d non-empty lines, want 1:\n%s", len(lines), stderr)
	}
	line := lines[0]
	if !strings.HasPrefix(line, p.name+": ") {
		t.Errorf("error line does not start with %q: %s", p.name+": ", line)
	}
	for _, w := range f.want {
		if !strings.Contains(line, w) {
			t.Errorf("error line does not name %q: %s", w, line)
		}
	}
	for _, w := range f.notWant {
		if strings.Contains(line, w) {
			t.Errorf("error line shows %q: %s", w, line)
		}
	}
}

// fixture holds what the cases share: a Kafka broker, an address nothing
// listens on, one that is taken, a file, and per-case directories.
type fixture struct {
	brokers string // a running broker
	closed  string // a 127.0.0.1 address with nothing listening
	taken   string // a 127.0.0.1 address bound by the test
	file    string // a regular file
	t       *testing.T
}

func newFixture(t *testing.T) *fixture {
	f := &fixture{t: t, brokers: strings.Join(kafkatest.Brokers(t), ","), closed: freeAddr(t)}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	f.taken = ln.Addr().String()
	f.file = filepath.Join(t.TempDir(), "a-file")
	if err := os.WriteFile(f.file, []byte("not a directory\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	return f
}

// readOnlyDir returns a directory the binaries cannot create anything in,
// and why a case using it cannot run here ("" if it can).
func (f *fixture) readOnlyDir() (string, string) {
	dir := filepath.Join(f.t.TempDir(), "read-only")
	if err := os.Mkdir(dir, 0o555); err != nil {
		f.t.Fatal(err)
	}
	if os.Geteuid() == 0 {
		return dir, "running as root, which ignores directory permissions"
	}
	return dir, ""
}

func (f *fixture) esdbURL() string { return "esdb://" + f.closed + "?tls=false" }

// processorEnv is a valid processor configuration whose EventStoreDB is
// unreachable: a case that does not fail before would wait for it.
func (f *fixture) processorEnv(extra ...string) []string {
	return append([]string{"KAFKA_BROKERS=" + f.brokers, "ESDB_CONNECTION_STRING=" + f.esdbURL(),
		"PROCESSOR_HTTP_ADDR=127.0.0.1:0"}, extra...)
}

func (f *fixture) projectorEnv(extra ...string) []string {
	return append([]string{"KAFKA_BROKERS=" + f.brokers, "ESDB_CONNECTION_STRING=" + f.esdbURL(),
		"PROJECTOR_HTTP_ADDR=127.0.0.1:0", "PROJECTOR_DATA_DIR=" + filepath.Join(f.t.TempDir(), "projector"),
		"QUERY_API_TOKEN=" + token, "QUERY_API_STATIC_TOKEN_ENABLED=true"}, extra...)
}

// stackArgs is a stack on free ports in a fresh directory; later flags win.
func (f *fixture) stackArgs(extra ...string) []string {
	return append([]string{"-data", filepath.Join(f.t.TempDir(), "stack"), "-kafka-addr", "127.0.0.1:0",
		"-esdb-addr", "127.0.0.1:0", "-partners-addr", "127.0.0.1:0", "-api-addr", "127.0.0.1:0",
		"-processor-addr", "127.0.0.1:0"}, extra...)
}

func runFailures(t *testing.T, cases []failure) {
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			c.run(t)
		})
	}
}

func TestStartupFailuresProcessor(t *testing.T) {
	f := newFixture(t)
	p := bin.processor
	runFailures(t, []failure{
		{name: "kafka unreachable", bin: p, env: f.processorEnv("KAFKA_BROKERS=" + f.closed), want: []string{"kafka", f.closed}},
		{name: "port in use", bin: p, env: f.processorEnv("PROCESSOR_HTTP_ADDR=" + f.taken), want: []string{f.taken, "address already in use"}},
		{name: "port malformed", bin: p, env: f.processorEnv("PROCESSOR_HTTP_ADDR=nowhere"), want: []string{"nowhere"}},
		{name: "env not an integer", bin: p, env: f.processorEnv("KAFKA_PARTITIONS=abc"), want: []string{`KAFKA_PARTITIONS="abc"`}},
		{name: "zero partitions", bin: p, env: f.processorEnv("KAFKA_PARTITIONS=0"), want: []string{"KAFKA_PARTITIONS", "got 0"}},
		{name: "zero max command bytes", bin: p, env: f.processorEnv("MAX_COMMAND_BYTES=0"), want: []string{"MAX_COMMAND_BYTES", "got 0"}},
		{name: "max command bytes over the Kafka limit", bin: p, env: f.processorEnv("MAX_COMMAND_BYTES=99999999"), want: []string{"max command bytes 99999999"}},
		{name: "bad log level", bin: p, env: f.processorEnv("LOG_LEVEL=loud"), want: []string{`log level "loud"`}},
		{name: "unknown trace exporter", bin: p, env: f.processorEnv("OTEL_TRACES_EXPORTER=zipkin"), want: []string{`OTEL_TRACES_EXPORTER="zipkin"`, "only otlp and none"}},
		{name: "bad connection string", bin: p, env: f.processorEnv("ESDB_CONNECTION_STRING=esdb://admin:s3cret@db:notaport"),
			want: []string{"connection string"}, notWant: []string{"s3cret"}},
		{name: "bad broker", bin: p, env: f.processorEnv("KAFKA_BROKERS=no-port"), want: []string{`"no-port"`}},
		{name: "bad flag value", bin: p, args: []string{"-partitions=many"}, env: f.processorEnv(), want: []string{"-partitions"}},
		{name: "unknown flag", bin: p, args: []string{"-nope"}, env: f.processorEnv(), want: []string{"-nope"}},
		{name: "stray argument", bin: p, args: []string{"extra"}, env: f.processorEnv(), want: []string{`"extra"`}},
		{name: "several malformed values", bin: p, env: f.processorEnv("KAFKA_PARTITIONS=abc", "MAX_COMMAND_BYTES=x", "LOG_LEVEL=loud"),
			want: []string{"KAFKA_PARTITIONS", "MAX_COMMAND_BYTES", `"loud"`, "; "}},
		{name: "several invalid settings", bin: p, env: f.processorEnv("KAFKA_BROKERS=no-port", "ESDB_CONNECTION_STRING=bogus://x",
			"COMMAND_TOPIC=same", "REJECTION_TOPIC=same"),
			want: []string{`"no-port"`, "connection string", `topic "same" is used twice`, "; "}},
	})
}

func TestStartupFailuresProjector(t *testing.T) {
	f := newFixture(t)
	p := bin.projector
	readOnly, skip := f.readOnlyDir()
	runFailures(t, []failure{
		{name: "kafka unreachable", bin: p, env: f.projectorEnv("KAFKA_BROKERS=" + f.closed), want: []string{"kafka", f.closed}},
		{name: "port in use", bin: p, env: f.projectorEnv("PROJECTOR_HTTP_ADDR=" + f.taken), want: []string{f.taken, "address already in use"}},
		{name: "static token enabled but empty", bin: p, env: f.projectorEnv("QUERY_API_TOKEN="), want: []string{"QUERY_API_TOKEN is empty"}},
		{name: "static token only white space", bin: p, env: f.projectorEnv("QUERY_API_TOKEN= \t"), want: []string{"QUERY_API_TOKEN is empty or white space"}},
		{name: "static token with white space", bin: p, env: f.projectorEnv("QUERY_API_TOKEN=two words"),
			want: []string{"static token holds white space or control characters"}, notWant: []string{"two words"}},
		{name: "JWKS file with a symmetric key only", bin: p, env: f.projectorEnv("QUERY_API_JWKS_FILE="+octJWKS(t),
			"QUERY_API_JWT_ISSUER=https://idp.example", "QUERY_API_JWT_AUDIENCE=rxflow"), want: []string{"JWKS file", "no usable key"}},
		{name: "static token not enabled", bin: p, env: f.projectorEnv("QUERY_API_STATIC_TOKEN_ENABLED=false"),
			want: []string{"QUERY_API_TOKEN is set but the static token is not enabled"}, notWant: []string{token}},
		{name: "no way to authenticate callers", bin: p, env: f.projectorEnv("QUERY_API_STATIC_TOKEN_ENABLED=false", "QUERY_API_TOKEN="),
			want: []string{"no way to authenticate callers", "QUERY_API_JWKS_URL"}},
		{name: "JWKS without issuer and audience", bin: p, env: f.projectorEnv("QUERY_API_JWKS_URL=https://idp.example/jwks"),
			want: []string{"the issuer is required", "the audience is required"}},
		{name: "JWKS file unreadable", bin: p, env: f.projectorEnv("QUERY_API_JWKS_FILE="+filepath.Join(f.t.TempDir(), "none.json"),
			"QUERY_API_JWT_ISSUER=https://idp.example", "QUERY_API_JWT_AUDIENCE=rxflow"), want: []string{"JWKS file", "no such file"}},
		{name: "zero partitions", bin: p, env: f.projectorEnv("KAFKA_PARTITIONS=0"), want: []string{"KAFKA_PARTITIONS", "got 0"}},
		{name: "bad log level", bin: p, env: f.projectorEnv("LOG_LEVEL=loud"), want: []string{`log level "loud"`}},
		{name: "unknown OTLP protocol", bin: p, env: f.projectorEnv("OTEL_EXPORTER_OTLP_ENDPOINT=http://127.0.0.1:4318", "OTEL_EXPORTER_OTLP_PROTOCOL=http/json"),
			want: []string{"OTEL_EXPORTER_OTLP_PROTOCOL=http/json", "only grpc and http/protobuf"}},
		{name: "bad connection string", bin: p, env: f.projectorEnv("ESDB_CONNECTION_STRING=esdb://admin:s3cret@db:notaport"),
			want: []string{"connection string"}, notWant: []string{"s3cret"}},
		{name: "data dir is a file", bin: p, env: f.projectorEnv("PROJECTOR_DATA_DIR=" + f.file), want: []string{f.file, "not a directory"}},
		{name: "data dir under a file", bin: p, env: f.projectorEnv("PROJECTOR_DATA_DIR=" + filepath.Join(f.file, "projector")),
			want: []string{f.file, "not a directory"}},
		{name: "data dir read-only", bin: p, env: f.projectorEnv("PROJECTOR_DATA_DIR=" + filepath.Join(readOnly, "projector")),
			want: []string{readOnly, "permission denied"}, skip: skip},
		{name: "bad flag value", bin: p, args: []string{"-partitions=many"}, env: f.projectorEnv(), want: []string{"-partitions"}},
		{name: "bad deadline", bin: p, env: f.projectorEnv("DEADLINE_PICKUP_OVERDUE=soon", "DEADLINE_EVERY=0s"),
			want: []string{"-deadline-pickup-overdue", `"soon"`, "-deadline-every", "; "}},
		{name: "deadline overflow and tiny passes", bin: p, env: f.projectorEnv("DEADLINE_PICKUP_OVERDUE=213504d", "DEADLINE_EVERY=1ns", "DEADLINE_RESEND=1ns"),
			want: []string{"-deadline-pickup-overdue", `"213504d"`, "-deadline-every", `"1ns"`, "-deadline-resend", "; "}},
		{name: "several problems", bin: p, env: f.projectorEnv("QUERY_API_JWKS_URL=https://idp.example/jwks", "KAFKA_BROKERS=no-port",
			"ESDB_CONNECTION_STRING=bogus://x"), want: []string{"the issuer is required", `"no-port"`, "connection string", "; "}},
		{name: "segments without a database", bin: p, env: f.projectorEnv("PROJECTOR_SEGMENTS=3"), want: []string{"-segments", "need -database"}},
		{name: "lease time without a database", bin: p, args: []string{"-lease-ttl=1s"}, env: f.projectorEnv(), want: []string{"-lease-ttl", "need -database"}},
		{name: "rebuild data dir is a file", bin: p, args: []string{"rebuild", "-data", f.file, "-esdb", f.esdbURL()},
			want: []string{f.file, "not a directory"}},
	})
}

// octJWKS writes a JWKS file holding only a symmetric key, which no
// allowed algorithm can use.
func octJWKS(t *testing.T) string {
	path := filepath.Join(t.TempDir(), "oct.json")
	if err := os.WriteFile(path, []byte(`{"keys":[{"kty":"oct","kid":"s1","alg":"HS256","k":"c2VjcmV0LXNlY3JldC1zZWNyZXQtc2VjcmV0LTMyYg"}]}`), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

func TestStartupFailuresESDB(t *testing.T) {
	f := newFixture(t)
	p := bin.esdb
	readOnly, skip := f.readOnlyDir()
	runFailures(t, []failure{
		{name: "port in use", bin: p, args: []string{"-addr", f.taken, "-data", ""}, want: []string{f.taken, "address already in use"}},
		{name: "data dir is a file", bin: p, args: []string{"-addr", "127.0.0.1:0", "-data", f.file}, want: []string{f.file, "not a directory"}},
		{name: "data dir under a file", bin: p, args: []string{"-addr", "127.0.0.1:0", "-data", filepath.Join(f.file, "esdb")},
			want: []string{f.file, "not a directory"}},
		{name: "data dir read-only", bin: p, args: []string{"-addr", "127.0.0.1:0", "-data", filepath.Join(readOnly, "esdb")},
			want: []string{readOnly, "permission denied"}, skip: skip},
		{name: "zero max append size", bin: p, args: []string{"-addr", "127.0.0.1:0", "-max-append-size", "0"}, want: []string{"-max-append-size", "got 0"}},
		{name: "env not an integer", bin: p, args: []string{"-addr", "127.0.0.1:0"}, env: []string{"ESDB_MAX_APPEND_SIZE=big"},
			want: []string{`ESDB_MAX_APPEND_SIZE="big"`}},
		{name: "unknown flag", bin: p, args: []string{"-nope"}, want: []string{"-nope"}},
		{name: "several problems", bin: p, args: []string{"-addr", "nowhere", "-data", f.file, "-max-append-size", "99999999"},
			want: []string{`"nowhere"`, "not a directory", "99999999", "; "}},
	})
}

func TestStartupFailuresPartnersim(t *testing.T) {
	f := newFixture(t)
	p := bin.partnersim
	runFailures(t, []failure{
		{name: "port in use", bin: p, args: []string{"-addr", f.taken}, want: []string{f.taken, "address already in use"}},
		{name: "port in use from env", bin: p, env: []string{"PARTNERSIM_ADDR=" + f.taken}, want: []string{f.taken, "address already in use"}},
		{name: "address malformed", bin: p, args: []string{"-addr", "nowhere"}, want: []string{"nowhere"}},
		{name: "unknown flag", bin: p, args: []string{"-nope"}, want: []string{"-nope"}},
	})
}

func TestStartupFailuresStack(t *testing.T) {
	f := newFixture(t)
	p := bin.stack
	readOnly, skip := f.readOnlyDir()
	runFailures(t, []failure{
		{name: "kafka port in use", bin: p, args: f.stackArgs("-kafka-addr", f.taken), want: []string{f.taken, "address already in use"}},
		{name: "esdb port in use", bin: p, args: f.stackArgs("-esdb-addr", f.taken), want: []string{f.taken, "address already in use"}},
		{name: "partners port in use", bin: p, args: f.stackArgs("-partners-addr", f.taken), want: []string{f.taken, "address already in use"}},
		{name: "api port in use", bin: p, args: f.stackArgs("-api-addr", f.taken), want: []string{f.taken, "address already in use"}},
		{name: "processor port in use", bin: p, args: f.stackArgs("-processor-addr", f.taken), want: []string{f.taken, "address already in use"}},
		{name: "data dir is a file", bin: p, args: f.stackArgs("-data", f.file), want: []string{f.file, "not a directory"}},
		{name: "data dir read-only", bin: p, args: f.stackArgs("-data", filepath.Join(readOnly, "stack")),
			want: []string{readOnly, "permission denied"}, skip: skip},
		{name: "no token", bin: p, args: f.stackArgs("-token", ""), want: []string{"Token are required"}},
		{name: "bad log level", bin: p, args: f.stackArgs(), env: []string{"LOG_LEVEL=loud"}, want: []string{`log level "loud"`}},
		{name: "unknown flag", bin: p, args: f.stackArgs("-nope"), want: []string{"-nope"}},
	})
}

// A data directory already in use by another running process: the second
// process exits 1 naming the directory, and the first goes on.
func TestStartupDataDirInUse(t *testing.T) {
	f := newFixture(t)
	t.Run("projector", func(t *testing.T) {
		t.Parallel()
		dir := filepath.Join(t.TempDir(), "projector")
		first := launch(t, bin.projector, nil, f.projectorEnv("PROJECTOR_DATA_DIR="+dir))
		// It waits for EventStoreDB only once its data directory is open.
		first.waitFor(t, "line saying it waits for EventStoreDB", func() bool { return first.logged("waiting for EventStoreDB") })
		failure{bin: bin.projector, env: f.projectorEnv("PROJECTOR_DATA_DIR=" + dir), want: []string{dir, "is a projector using it?"}}.run(t)
		first.noCrash(t)
		first.stop(t)
	})
	t.Run("esdb", func(t *testing.T) {
		t.Parallel()
		dir := filepath.Join(t.TempDir(), "esdb")
		first := launch(t, bin.esdb, []string{"-addr", "127.0.0.1:0", "-data", dir}, nil)
		first.waitFor(t, "connection string on stdout", func() bool { return strings.Contains(first.stdout.tail(1<<10), "esdb://") })
		failure{bin: bin.esdb, args: []string{"-addr", "127.0.0.1:0", "-data", dir}, want: []string{dir, "is another server using it?"}}.run(t)
		first.noCrash(t)
		first.stop(t)
	})
	t.Run("stack", func(t *testing.T) {
		t.Parallel()
		args := f.stackArgs()
		first := launch(t, bin.stack, args, nil)
		first.waitFor(t, `"Running." on stdout`, func() bool { return strings.Contains(first.stdout.tail(16<<10), "Running.") })
		failure{bin: bin.stack, args: args, want: []string{args[1], "is another server using it?"}}.run(t)
		first.noCrash(t)
		first.stop(t)
	})
}

// EventStoreDB unreachable at start: the processor and the projector start,
// serve /healthz, fail /readyz, say once that they wait for EventStoreDB
// (naming it and why), and become ready once it is up.
func TestStartupWaitsForEventStoreDB(t *testing.T) {
	f := newFixture(t)
	for _, c := range []struct {
		name string
		bin  string
		env  func(esdbAddr, httpAddr string) []string
	}{
		{"processor", bin.processor, func(esdbAddr, httpAddr string) []string {
			return f.processorEnv("ESDB_CONNECTION_STRING=esdb://"+esdbAddr+"?tls=false", "PROCESSOR_HTTP_ADDR="+httpAddr)
		}},
		{"projector", bin.projector, func(esdbAddr, httpAddr string) []string {
			return f.projectorEnv("ESDB_CONNECTION_STRING=esdb://"+esdbAddr+"?tls=false", "PROJECTOR_HTTP_ADDR="+httpAddr)
		}},
	} {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			esdbAddr, httpAddr := freeAddr(t), freeAddr(t)
			p := launch(t, c.bin, nil, c.env(esdbAddr, httpAddr))
			p.waitFor(t, "line saying it waits for EventStoreDB", func() bool {
				return p.logged("level=WARN", "waiting for EventStoreDB", esdbAddr, "connection refused")
			})
			if code := getJSON(t, "http://"+httpAddr+"/healthz", false, nil); code != http.StatusOK {
				t.Errorf("/healthz while waiting: %d, want 200", code)
			}
			if code := getJSON(t, "http://"+httpAddr+"/readyz", false, nil); code != http.StatusServiceUnavailable {
				t.Errorf("/readyz while waiting: %d, want 503", code)
			}

			esdb := launch(t, bin.esdb, []string{"-addr", esdbAddr, "-data", ""}, nil)
			p.waitFor(t, "/readyz 200 once EventStoreDB is up", func() bool {
				return getJSON(t, "http://"+httpAddr+"/readyz", false, nil) == http.StatusOK
			})
			p.waitFor(t, "line saying EventStoreDB answers", func() bool { return p.logged("EventStoreDB answers", esdbAddr) })
			warnings := 0
			for line := range strings.SplitSeq(p.stderr.tail(1<<20), "\n") {
				if strings.Contains(line, "level=WARN") || strings.Contains(line, "level=ERROR") {
					warnings++
				}
			}
			if warnings != 1 {
				t.Errorf("%d warnings and errors logged, want the one waiting line; stderr:\n%s", warnings, p.stderr.tail(8<<10))
			}
			p.noCrash(t)
			p.stop(t)
			esdb.stop(t)
		})
	}
}

// TestHelp: -h prints the usage on stderr and exits 0 for every binary; the
// projector's also names its rebuild form.
func TestHelp(t *testing.T) {
	for _, c := range []struct {
		path string
		args []string
		want []string
	}{
		{bin.processor, []string{"-h"}, []string{"-brokers", "(env KAFKA_BROKERS)"}},
		{bin.projector, []string{"-h"}, []string{"projector rebuild [flags]", "-token"}},
		{bin.projector, []string{"rebuild", "-h"}, []string{"projector rebuild [flags]", "-data"}},
		{bin.stack, []string{"-help"}, []string{"-demo"}},
		{bin.esdb, []string{"-h"}, []string{"-addr"}},
		{bin.partnersim, []string{"-h"}, []string{"-addr"}},
	} {
		name := filepath.Base(c.path) + " " + strings.Join(c.args, " ")
		t.Run(name, func(t *testing.T) {
			cmd := exec.Command(c.path, c.args...)
			var stderr strings.Builder
			cmd.Stderr = &stderr
			if err := cmd.Run(); err != nil {
				t.Fatalf("%s: %v, want exit 0; stderr:\n%s", name, err, stderr.String())
			}
			for _, w := range c.want {
				if !strings.Contains(stderr.String(), w) {
					t.Errorf("%s: usage lacks %q:\n%s", name, w, stderr.String())
				}
			}
		})
	}
}

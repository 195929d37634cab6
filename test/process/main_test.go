// Package process_test holds the process-level tests (layer 4 of
// ARCHITECTURE.md): the real binaries run as child processes, are killed
// with SIGKILL or stopped with SIGTERM, and are restarted, to check what
// survives.
package process_test

import (
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// bin holds the paths of the binaries built for this run.
var bin struct{ processor, projector, esdb, partnersim, stack string }

// TestMain builds the five binaries once, without -race even under
// go test -race, into a temporary directory removed at the end.
func TestMain(m *testing.M) {
	flag.Parse()
	os.Exit(run(m))
}

func run(m *testing.M) int {
	out, err := exec.Command("go", "env", "GOMOD").Output()
	gomod := strings.TrimSpace(string(out))
	if err != nil || gomod == "" || gomod == os.DevNull {
		fmt.Fprintf(os.Stderr, "process tests: no module root (go env GOMOD: %q, %v)\n", gomod, err)
		return 1
	}
	dir, err := os.MkdirTemp("", "rxflow-process-bin-")
	if err != nil {
		fmt.Fprintln(os.Stderr, "process tests:", err)
		return 1
	}
	defer os.RemoveAll(dir)
	build := exec.Command("go", "build", "-o", dir+string(filepath.Separator),
		"./cmd/processor", "./cmd/projector", "./cmd/esdb", "./cmd/partnersim", "./cmd/stack")
	build.Dir = filepath.Dir(gomod)
	if out, err := build.CombinedOutput(); err != nil {
		fmt.Fprintf(os.Stderr, "process tests: go build: %v\n%s", err, out)
		return 1
	}
	bin.processor = filepath.Join(dir, "processor")
	bin.projector = filepath.Join(dir, "projector")
	bin.esdb = filepath.Join(dir, "esdb")
	bin.partnersim = filepath.Join(dir, "partnersim")
	bin.stack = filepath.Join(dir, "stack")
	return m.Run()
}

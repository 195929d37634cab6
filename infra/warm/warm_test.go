package warm

import (
	"runtime"
	"strings"
	"sync"
	"testing"
)

// Sequential calls run on one goroutine: the pool reuses an idle worker.
func TestRunReusesAnIdleGoroutine(t *testing.T) {
	var p Pool
	defer p.Stop()
	ids := map[string]bool{}
	for range 5 {
		p.Run(func() { ids[goroutineID()] = true })
		waitIdle(&p, 1)
	}
	if len(ids) != 1 {
		t.Fatalf("5 sequential calls ran on %d goroutines, want 1", len(ids))
	}
}

// Concurrent calls each get a goroutine, and no more are kept than ran at once.
func TestConcurrentCallsEachGetAGoroutine(t *testing.T) {
	var p Pool
	defer p.Stop()
	release := make(chan struct{})
	var started, done sync.WaitGroup
	started.Add(3)
	done.Add(3)
	for range 3 {
		go func() {
			defer done.Done()
			p.Run(func() { started.Done(); <-release })
		}()
	}
	started.Wait() // three calls run at once: they cannot share a goroutine
	close(release)
	done.Wait()
	waitIdle(&p, 3)
}

// A panic in f reaches the caller of Run with its value and f's stack.
func TestRunRaisesThePanicInTheCaller(t *testing.T) {
	var p Pool
	defer p.Stop()
	defer func() {
		r := recover()
		s, _ := r.(string)
		if !strings.Contains(s, "boom") || !strings.Contains(s, "TestRunRaisesThePanicInTheCaller") {
			t.Fatalf("recovered %v, want the panic value and the stack of f", r)
		}
	}()
	p.Run(func() { panic("boom") })
	t.Fatal("Run returned after a panic")
}

// After Stop, calls still run, and no idle goroutine is kept.
func TestStopEndsIdleGoroutines(t *testing.T) {
	var p Pool
	p.Run(func() {})
	waitIdle(&p, 1)
	p.Stop()
	ran := false
	p.Run(func() { ran = true })
	if !ran {
		t.Fatal("Run after Stop did not run f")
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if len(p.idle) != 0 {
		t.Fatalf("%d idle goroutines after Stop, want 0", len(p.idle))
	}
}

// waitIdle waits until the pool holds n idle workers: a worker goes back to
// the pool just after its call returns.
func waitIdle(p *Pool, n int) {
	for {
		p.mu.Lock()
		k := len(p.idle)
		p.mu.Unlock()
		if k == n {
			return
		}
		runtime.Gosched()
	}
}

func goroutineID() string {
	buf := make([]byte, 64)
	buf = buf[:runtime.Stack(buf, false)]
	id, _, _ := strings.Cut(strings.TrimPrefix(string(buf), "goroutine "), " ")
	return id
}

// Package warm runs functions on long-lived goroutines whose stacks are
// already grown.
//
// A fresh goroutine starts with a small stack that is grown (copied) each
// time a call goes deeper than it: JSON decoding, the command handler and
// the gRPC client each do. Starting one goroutine per message or per store
// call costs the processor about a tenth of its CPU in stack copies
// (runtime.copystack, BENCHMARKS.md). A goroutine kept for the next call
// keeps its grown stack until the GC shrinks an idle one.
package warm

import (
	"fmt"
	"runtime/debug"
	"sync"
)

// Pool starts f on an idle goroutine, or on a new one if none is idle. It
// never holds more goroutines than ran at once. The zero Pool is ready.
type Pool struct {
	mu      sync.Mutex
	idle    []chan func() // each idle worker's inbox
	stopped bool
}

// Go runs f on a warm goroutine and returns at once, as the go statement
// does; a panic in f crashes the program as it would there.
func (p *Pool) Go(f func()) { p.inbox() <- f }

// Run calls f on a warm goroutine and returns once f has returned. A panic
// in f is raised again in the caller, with f's stack in its value, so that
// a recover in the caller sees it as before.
func (p *Pool) Run(f func()) {
	var panicked any
	var stack []byte
	done := make(chan struct{})
	p.Go(func() {
		defer close(done)
		defer func() {
			if r := recover(); r != nil {
				panicked, stack = r, debug.Stack()
			}
		}()
		f()
	})
	<-done
	if panicked != nil {
		panic(fmt.Sprintf("%v\n\non a warm goroutine:\n%s", panicked, stack))
	}
}

// Stop ends the idle goroutines, and every other one once its call
// returns. Go and Run still work afterwards, on goroutines that end with
// their call.
func (p *Pool) Stop() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.stopped = true
	for _, in := range p.idle {
		close(in)
	}
	p.idle = nil
}

func (p *Pool) inbox() chan func() {
	p.mu.Lock()
	if n := len(p.idle); n > 0 {
		in := p.idle[n-1]
		p.idle = p.idle[:n-1]
		p.mu.Unlock()
		return in
	}
	p.mu.Unlock()
	in := make(chan func())
	go p.work(in)
	return in
}

func (p *Pool) work(in chan func()) {
	for f := range in {
		f()
		p.mu.Lock()
		if p.stopped {
			p.mu.Unlock()
			return
		}
		p.idle = append(p.idle, in)
		p.mu.Unlock()
	}
}

package processor

import (
	"errors"
	"sync"
	"time"
)

// errDraining refuses a message that arrives while the processor stops; it
// was not handled, so it is delivered again after the restart.
var errDraining = errors.New("processor is stopping")

// drain lets a stopping processor finish the commands in hand while the
// Kafka session is still alive: watermill-kafka marks an acked offset only
// while its session lasts, so commands acked after the router is cancelled
// would be delivered again.
type drain struct {
	mu       sync.Mutex
	inflight int
	stopping chan struct{} // closed when the processor starts to stop
	drained  chan struct{}
}

func newDrain() *drain { return &drain{stopping: make(chan struct{}), drained: make(chan struct{})} }

func (d *drain) isStopping() bool {
	select {
	case <-d.stopping:
		return true
	default:
		return false
	}
}

// admit reports whether a new command may start; done must follow.
func (d *drain) admit() bool {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.isStopping() {
		return false
	}
	d.inflight++
	return true
}

func (d *drain) done() {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.inflight--; d.isStopping() && d.inflight == 0 {
		close(d.drained)
	}
}

// stop admits no more commands and waits, at most timeout, for those in hand.
func (d *drain) stop(timeout time.Duration) bool {
	d.mu.Lock()
	if !d.isStopping() {
		close(d.stopping)
		if d.inflight == 0 {
			close(d.drained)
		}
	}
	d.mu.Unlock()
	select {
	case <-d.drained:
		return true
	case <-time.After(timeout):
		return false
	}
}

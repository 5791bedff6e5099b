package tunnel

import (
	"sync"
	"time"
)

// deadline is a net.Conn deadline: a channel closed when it passes, which a
// blocked Read or Write selects on, so moving the deadline wakes them.
type deadline struct {
	mu    sync.Mutex // guards timer and ch
	timer *time.Timer
	ch    chan struct{} // closed once the deadline has passed
}

func newDeadline() *deadline { return &deadline{ch: make(chan struct{})} }

func isClosed(ch chan struct{}) bool {
	select {
	case <-ch:
		return true
	default:
		return false
	}
}

// set moves the deadline to t (zero: none).
func (d *deadline) set(t time.Time) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.timer != nil {
		d.timer.Stop()
		d.timer = nil
	}
	if isClosed(d.ch) {
		d.ch = make(chan struct{})
	}
	if t.IsZero() {
		return
	}
	wait := time.Until(t)
	if wait <= 0 {
		close(d.ch)
		return
	}
	ch := d.ch
	d.timer = time.AfterFunc(wait, func() {
		d.mu.Lock()
		defer d.mu.Unlock()
		// A set that raced with this timer made a new channel: leave it.
		if d.ch == ch && !isClosed(ch) {
			close(ch)
		}
	})
}

// wait returns the channel closed when the deadline passes.
func (d *deadline) wait() chan struct{} {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.ch
}

// passed reports whether the deadline has passed.
func (d *deadline) passed() bool { return isClosed(d.wait()) }

// stop releases the timer.
func (d *deadline) stop() {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.timer != nil {
		d.timer.Stop()
		d.timer = nil
	}
}

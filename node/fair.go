package node

import (
	"errors"
	"fmt"
	"sync"
	"time"
)

// CallerLimits bound what one verified caller (one key) may take of a
// node's command host, so that one caller cannot keep the node busy for
// everyone else. They apply after the caller's signature and tier were
// checked; refused commands never count.
type CallerLimits struct {
	// InFlight is how many of the caller's commands may run at once.
	InFlight int
	// Rate is how many commands per second the caller may start,
	// sustained (a token bucket refilled at Rate).
	Rate float64
	// Burst is the bucket's size: how many commands a quiet caller may
	// start at once.
	Burst int
}

// DefaultCallerLimits are every command host's per-caller limits: 32
// commands running at once, 50 started per second sustained with bursts of
// 100. An observer can then hold at most 32 of a node's 256 slots, and
// `robonet run` loops, batches and the dashboard stay far below the rate.
var DefaultCallerLimits = CallerLimits{InFlight: 32, Rate: 50, Burst: 100}

// Caller refusals: both are answered busy (code unavailable).
var (
	ErrCallerQuota = errors.New("caller quota")
	ErrCallerRate  = errors.New("caller rate")
)

// callerTable keeps each caller's running commands and token bucket. Its
// logic takes the time as an argument and does no I/O.
type callerTable struct {
	lim CallerLimits

	mu    sync.Mutex // guards m and swept
	m     map[string]*callerState
	swept time.Time // last sweep of idle callers
}

type callerState struct {
	running int
	tokens  float64
	at      time.Time // when tokens was last brought up to date
}

// maxIdleCallers is how many callers the table keeps before it forgets the
// idle ones (no command running, a full bucket): keys are verified
// identities, so the table is bounded by the swarm's users and nodes anyway.
const maxIdleCallers = 1024

func newCallerTable(lim CallerLimits) *callerTable {
	if lim.InFlight <= 0 {
		lim.InFlight = DefaultCallerLimits.InFlight
	}
	if lim.Rate <= 0 {
		lim.Rate = DefaultCallerLimits.Rate
	}
	if lim.Burst <= 0 {
		lim.Burst = DefaultCallerLimits.Burst
	}
	return &callerTable{lim: lim, m: map[string]*callerState{}}
}

// take admits one command of key at now, or says which of its limits it is
// over (ErrCallerQuota or ErrCallerRate, naming the limit). Every
// successful take is matched by one release.
func (t *callerTable) take(key string, now time.Time) error {
	t.mu.Lock()
	defer t.mu.Unlock()
	c := t.m[key]
	if c == nil {
		if len(t.m) >= maxIdleCallers && now.Sub(t.swept) >= time.Second {
			t.sweepLocked(now)
		}
		c = &callerState{tokens: float64(t.lim.Burst), at: now}
		t.m[key] = c
	}
	t.refillLocked(c, now)
	if c.running >= t.lim.InFlight {
		return fmt.Errorf("%w: %s has %d commands running here, its quota is %d at once", ErrCallerQuota, key, c.running, t.lim.InFlight)
	}
	if c.tokens < 1 {
		return fmt.Errorf("%w: %s is over its rate of %g commands/s (burst %d)", ErrCallerRate, key, t.lim.Rate, t.lim.Burst)
	}
	c.tokens--
	c.running++
	return nil
}

// release ends one command of key that take admitted.
func (t *callerTable) release(key string) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if c := t.m[key]; c != nil && c.running > 0 {
		c.running--
	}
}

// running is how many commands of key run now.
func (t *callerTable) running(key string) int {
	t.mu.Lock()
	defer t.mu.Unlock()
	if c := t.m[key]; c != nil {
		return c.running
	}
	return 0
}

func (t *callerTable) refillLocked(c *callerState, now time.Time) {
	if d := now.Sub(c.at); d > 0 {
		c.tokens = min(float64(t.lim.Burst), c.tokens+d.Seconds()*t.lim.Rate)
		c.at = now
	}
}

// sweepLocked forgets callers with nothing running and a full bucket:
// remembering them would change nothing.
func (t *callerTable) sweepLocked(now time.Time) {
	t.swept = now
	for k, c := range t.m {
		t.refillLocked(c, now)
		if c.running == 0 && c.tokens >= float64(t.lim.Burst) {
			delete(t.m, k)
		}
	}
}

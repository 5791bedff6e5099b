package node

import (
	"sync"
	"time"
)

// Audit values that are not a key or a wire status.
const (
	// AuditUnverified is Audit.From for a command refused before its
	// signature was verified; Audit.Claimed then holds the Rn-From it
	// carried.
	AuditUnverified = "unverified"
	// AuditDropped is Audit.Status for a command dropped without an
	// answer (Code AuditReplay: a replayed message).
	AuditDropped = "dropped"
	// AuditReplay is Audit.Code of a dropped replay.
	AuditReplay = "replay"
)

// auditWindow is how long the refusals of one kind from one sender are
// summed into one record.
const auditWindow = time.Second

// maxAuditKeys bounds the refusal kinds summed at once. Verified senders
// are bounded by the swarm's identities; unverified ones claim any key they
// like, so past this many, unverified refusals are summed without their
// claimed key (Claimed empty).
const maxAuditKeys = 1024

// auditLog publishes audit records: one per command that ran, and for
// refusals at most two per (sender, claimed key, status, code) per second:
// the first refusal at once, in full, and the rest of that second summed
// into one record (Count) when the second ends. A flood of refused commands
// so costs a bounded number of records, and every command is counted.
type auditLog struct {
	emit func(Audit) // publishes one record; called without mu held

	mu     sync.Mutex // guards m and closed
	m      map[auditKey]*auditAgg
	closed bool
}

type auditKey struct{ from, claimed, status, code string }

// auditAgg is one refusal kind's current window.
type auditAgg struct {
	start time.Time
	n     int    // refusals after the first in this window, not yet published
	verb  string // their verb, "" when they differ
	timer *time.Timer
}

func newAuditLog(emit func(Audit)) *auditLog {
	return &auditLog{emit: emit, m: map[auditKey]*auditAgg{}}
}

// ran records a command that ran.
func (l *auditLog) ran(a Audit) {
	a.Count = 1
	l.emit(a)
}

// refused records a refused command at now: published at once when it is
// the first of its kind in the window, else summed.
func (l *auditLog) refused(a Audit, now time.Time) {
	a.Count = 1
	l.mu.Lock()
	if l.closed {
		l.mu.Unlock()
		l.emit(a)
		return
	}
	k := auditKey{a.From, a.Claimed, a.Status, a.Code}
	e := l.m[k]
	if e == nil && len(l.m) >= maxAuditKeys {
		l.sweepLocked(now)
		if len(l.m) >= maxAuditKeys && a.From == AuditUnverified {
			a.Claimed = ""
			k.claimed = ""
			e = l.m[k]
		}
	}
	var late *auditAgg // an expired window whose summary is still due
	if e != nil && now.Sub(e.start) >= auditWindow {
		if e.n > 0 {
			// Its timer has not flushed it (it would have removed it from
			// m under mu); once e leaves m, a timer that fires anyway
			// publishes nothing.
			e.timer.Stop()
			late = e
		}
		delete(l.m, k)
		e = nil
	}
	if e == nil {
		l.m[k] = &auditAgg{start: now}
		l.mu.Unlock()
		if late != nil {
			l.emit(summary(k, late))
		}
		l.emit(a)
		return
	}
	if e.n == 0 {
		e.verb = a.Verb
		e.timer = time.AfterFunc(e.start.Add(auditWindow).Sub(now), func() { l.flush(k, e) })
	} else if e.verb != a.Verb {
		e.verb = ""
	}
	e.n++
	l.mu.Unlock()
}

// flush publishes e's summary when e is still k's window.
func (l *auditLog) flush(k auditKey, e *auditAgg) {
	l.mu.Lock()
	if l.m[k] != e {
		l.mu.Unlock()
		return // superseded or closed: whoever removed it published it
	}
	delete(l.m, k)
	l.mu.Unlock()
	l.emit(summary(k, e))
}

// sweepLocked forgets windows that ended with nothing left to publish.
func (l *auditLog) sweepLocked(now time.Time) {
	for k, e := range l.m {
		if e.n == 0 && now.Sub(e.start) >= auditWindow {
			delete(l.m, k)
		}
	}
}

// close publishes every pending summary at once; later refusals are
// published one by one.
func (l *auditLog) close() {
	l.mu.Lock()
	l.closed = true
	var due []Audit
	for k, e := range l.m {
		if e.n > 0 {
			e.timer.Stop()
			due = append(due, summary(k, e))
		}
		delete(l.m, k)
	}
	l.mu.Unlock()
	for _, a := range due {
		l.emit(a)
	}
}

func summary(k auditKey, e *auditAgg) Audit {
	return Audit{From: k.from, Claimed: k.claimed, Verb: e.verb, Status: k.status, Code: k.code, Count: e.n}
}

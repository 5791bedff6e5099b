package node

import (
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/robonet-mesh/robonet/wire"
)

// One caller's quota and rate never touch another's; a release gives the
// slot back; the bucket refills at the rate.
func TestCallerTableQuotaAndRatePerCaller(t *testing.T) {
	t0 := time.Unix(1000, 0)
	ct := newCallerTable(CallerLimits{InFlight: 2, Rate: 10, Burst: 3})
	steps := []struct {
		key     string
		at      time.Duration
		release bool
		want    error
		msg     string
	}{
		{key: "A"}, {key: "A"},
		{key: "A", want: ErrCallerQuota, msg: "A has 2 commands running here, its quota is 2 at once"},
		{key: "B"}, // another caller is unaffected
		{key: "A", release: true},
		{key: "A"}, // its third token
		{key: "A", release: true},
		{key: "A", want: ErrCallerRate, msg: "A is over its rate of 10 commands/s (burst 3)"},
		{key: "A", at: 50 * time.Millisecond, want: ErrCallerRate},
		{key: "A", at: 100 * time.Millisecond}, // one token back after 1/rate
		{key: "B", at: 100 * time.Millisecond},
		{key: "B", at: 100 * time.Millisecond, want: ErrCallerQuota},
	}
	for i, s := range steps {
		if s.release {
			ct.release(s.key)
			continue
		}
		err := ct.take(s.key, t0.Add(s.at))
		if !errors.Is(err, s.want) || s.want == nil && err != nil {
			t.Fatalf("step %d (%s at %v): %v, want %v", i, s.key, s.at, err, s.want)
		}
		if s.msg != "" && !strings.Contains(err.Error(), s.msg) {
			t.Fatalf("step %d: %q does not say %q", i, err, s.msg)
		}
	}
	if got := ct.running("A"); got != 2 {
		t.Fatalf("A runs %d, want 2", got)
	}
	if d := newCallerTable(CallerLimits{}).lim; d != DefaultCallerLimits || d.InFlight != 32 || d.Rate != 50 || d.Burst != 100 {
		t.Fatalf("defaults %+v", d)
	}
}

// Idle callers are forgotten once the table is large; busy ones are kept.
func TestCallerTableForgetsIdleCallers(t *testing.T) {
	t0 := time.Unix(1000, 0)
	ct := newCallerTable(DefaultCallerLimits)
	if err := ct.take("busy", t0); err != nil {
		t.Fatal(err)
	}
	for i := 0; i < maxIdleCallers; i++ {
		k := fmt.Sprint("k", i)
		if err := ct.take(k, t0); err != nil {
			t.Fatal(err)
		}
		ct.release(k)
	}
	if err := ct.take("new", t0.Add(time.Minute)); err != nil {
		t.Fatal(err)
	}
	if len(ct.m) != 2 || ct.running("busy") != 1 {
		t.Fatalf("%d callers kept, busy runs %d", len(ct.m), ct.running("busy"))
	}
}

type auditSink struct {
	mu  sync.Mutex
	got []Audit
}

func (s *auditSink) emit(a Audit) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.got = append(s.got, a)
}

func (s *auditSink) take() []Audit {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := s.got
	s.got = nil
	return out
}

func counts(as []Audit) (records, commands int) {
	for _, a := range as {
		records++
		commands += a.Count
	}
	return
}

// Refusals: the first of each (sender, claimed, status, code) at once, the
// rest of its second summed into one record when the second ends; every
// command counted; commands that ran, one record each.
func TestAuditLogSumsRefusalsPerSenderAndSecond(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		var sink auditSink
		l := newAuditLog(sink.emit)
		busy := func(from string) Audit {
			return Audit{ID: "x", From: from, Verb: "gauge", Status: wire.StatusError, Code: wire.CodeUnavailable}
		}
		for i := 0; i < 1000; i++ {
			l.refused(busy("UA"), time.Now())
		}
		for i := 0; i < 5; i++ {
			l.refused(busy("UB"), time.Now())
		}
		l.refused(Audit{From: "UA", Verb: "exec", Status: wire.StatusDenied, Code: wire.CodeDenied}, time.Now())
		l.ran(Audit{ID: "r", From: "UA", Verb: "ping", Status: wire.StatusOK})
		first := sink.take()
		if r, c := counts(first); r != 4 || c != 4 {
			t.Fatalf("at once: %d records for %d commands: %+v", r, c, first)
		}
		time.Sleep(auditWindow) // the bubble's fake clock: the window closes
		synctest.Wait()
		sums := sink.take()
		if r, c := counts(sums); r != 2 || c != 999+4 {
			t.Fatalf("summaries: %d records for %d commands: %+v", r, c, sums)
		}
		for _, a := range sums {
			if a.ID != "" || a.Verb != "gauge" || a.Code != wire.CodeUnavailable {
				t.Fatalf("summary %+v", a)
			}
		}
		// The next second starts again with a record at once.
		l.refused(busy("UA"), time.Now())
		l.refused(Audit{From: "UA", Verb: "status", Status: wire.StatusError, Code: wire.CodeUnavailable}, time.Now())
		l.refused(busy("UA"), time.Now())
		if r, c := counts(sink.take()); r != 1 || c != 1 {
			t.Fatalf("next second: %d records, %d commands", r, c)
		}
		// Close publishes what is due at once; mixed verbs are summed as "".
		l.close()
		due := sink.take()
		if len(due) != 1 || due[0].Count != 2 || due[0].Verb != "" {
			t.Fatalf("on close: %+v", due)
		}
		time.Sleep(2 * auditWindow) // the bubble's fake clock
		synctest.Wait()
		if late := sink.take(); len(late) != 0 {
			t.Fatalf("after close: %+v", late)
		}
	})
}

// Unverified senders claim any key they like: thousands of claimed keys in
// one second cost a bounded number of records, and every command is
// counted.
func TestAuditLogBoundsClaimedKeys(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		var sink auditSink
		l := newAuditLog(sink.emit)
		const n = 5000
		for i := 0; i < n; i++ {
			for j := 0; j < 2; j++ {
				l.refused(Audit{From: AuditUnverified, Claimed: fmt.Sprint("U", i), Verb: "ping", Status: wire.StatusDenied, Code: wire.CodeDenied}, time.Now())
			}
		}
		time.Sleep(auditWindow) // the bubble's fake clock: the window closes
		synctest.Wait()
		all := sink.take()
		r, c := counts(all)
		if c != 2*n || r > 2*maxAuditKeys+2 {
			t.Fatalf("%d records for %d commands (want every one of %d counted in at most %d records)", r, c, 2*n, 2*maxAuditKeys+2)
		}
		pooled := 0
		for _, a := range all {
			if a.Claimed == "" {
				pooled += a.Count
			}
		}
		if pooled != 2*(n-maxAuditKeys) {
			t.Fatalf("%d commands summed without their claimed key, want %d", pooled, 2*(n-maxAuditKeys))
		}
		l.close()
	})
}

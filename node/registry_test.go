package node

import (
	"testing"
	"time"

	"github.com/robonet-mesh/robonet/wire"
)

func TestRegistryStatesFromHeartbeatsRoutesAndLeaves(t *testing.T) {
	t0 := time.Unix(1000, 0)
	r := newRegistry(DefaultTiming(), true)
	r.onHeartbeat(wire.Heartbeat{Chevron: "2", Pubkey: "U2", Server: "rn-2", Seq: 1, Started: t0}, t0)
	r.onHeartbeat(wire.Heartbeat{Chevron: "3", Pubkey: "U3", Server: "rn-3", Seq: 1, Started: t0}, t0)
	r.setRoutes(map[string]bool{"rn-2": true, "rn-3": true}, t0)
	state := func(chev string, at time.Time) string {
		r.mu.Lock()
		defer r.mu.Unlock()
		return r.stateLocked(chev, at)
	}
	for _, tc := range []struct {
		after time.Duration
		want  string
	}{{0, wire.StateAlive}, {1500 * time.Millisecond, wire.StateAlive}, {2 * time.Second, wire.StateSuspect}, {3 * time.Second, wire.StateOffline}} {
		if got := state("2", t0.Add(tc.after)); got != tc.want {
			t.Errorf("after %v: %s, want %s", tc.after, got, tc.want)
		}
	}
	// A lost route makes a node offline at once, until a newer heartbeat.
	r.setRoutes(map[string]bool{"rn-2": true}, t0.Add(100*time.Millisecond))
	if got := state("3", t0.Add(200*time.Millisecond)); got != wire.StateOffline {
		t.Fatalf("route lost: %s", got)
	}
	r.onHeartbeat(wire.Heartbeat{Chevron: "3", Pubkey: "U3", Server: "rn-3", Seq: 2, Started: t0}, t0.Add(time.Second))
	if got := state("3", t0.Add(time.Second)); got != wire.StateAlive {
		t.Fatalf("heartbeat after route loss: %s", got)
	}
	// A late heartbeat (lower seq of the same run) is ignored.
	r.onHeartbeat(wire.Heartbeat{Chevron: "3", Pubkey: "U3", Server: "rn-3", Seq: 1, Started: t0}, t0.Add(5*time.Second))
	if got := state("3", t0.Add(5*time.Second)); got != wire.StateOffline {
		t.Fatalf("late heartbeat revived a node: %s", got)
	}
	// Another member's crash report for a member this node heard a moment
	// ago is ignored: its own evidence of life is fresher.
	fresh := DefaultTiming().SuspectAfter
	r.onHeartbeat(wire.Heartbeat{Chevron: "2", Pubkey: "U2", Server: "rn-2", Seq: 9, Started: t0}, t0.Add(400*time.Millisecond))
	if r.onLeave("2", t0.Add(500*time.Millisecond), true, fresh) {
		t.Fatal("a crash report overrode a heartbeat heard 100 ms before")
	}
	if got := state("2", t0.Add(600*time.Millisecond)); got != wire.StateAlive {
		t.Fatalf("after an ignored report: %s", got)
	}
	// A clean leave: offline at once, and not to be reported lost.
	if !r.onLeave("2", t0.Add(500*time.Millisecond), false, 0) {
		t.Fatal("a member's own leave was not applied")
	}
	if got := state("2", t0.Add(600*time.Millisecond)); got != wire.StateOffline || !r.leftCleanly("2") {
		t.Fatalf("after leave: %s", got)
	}
}

func TestObserveLeaseNeverRollsBack(t *testing.T) {
	r := newRegistry(DefaultTiming(), true)
	r.observeLease(wire.Lease{Chevron: "2", Token: 7}, true)
	r.observeLease(wire.Lease{Chevron: "1", Token: 5}, true) // a lagging watch
	if l, ok := r.currentLease(); !ok || l.Chevron != "2" {
		t.Fatalf("older lease won: %+v", l)
	}
	r.observeLease(wire.Lease{Chevron: "1", Token: 5}, false) // the end of an older lease
	if _, ok := r.currentLease(); !ok {
		t.Fatal("end of an older token cleared the current lease")
	}
	r.observeLease(wire.Lease{Chevron: "2", Token: 7}, false)
	if _, ok := r.currentLease(); ok {
		t.Fatal("end of the current token did not clear it")
	}
	r.observeLease(wire.Lease{Chevron: "3", Token: 9}, true)
	if l, ok := r.currentLease(); !ok || l.Chevron != "3" {
		t.Fatalf("new lease: %+v %v", l, ok)
	}
}

func TestReporterIsTheLowestLiveChevron(t *testing.T) {
	t0 := time.Unix(1000, 0)
	r := newRegistry(DefaultTiming(), false)
	r.onHeartbeat(wire.Heartbeat{Chevron: "2", Pubkey: "U2", Seq: 1}, t0)
	r.onHeartbeat(wire.Heartbeat{Chevron: "4", Pubkey: "U4", Seq: 1}, t0)
	if r.reporter(t0, "3") {
		t.Fatal("3 reports while 2 is live and lower")
	}
	if !r.reporter(t0, "1") {
		t.Fatal("1 is the lowest live: it reports")
	}
	// The lease does not matter: a leader that cannot renew must not
	// leave a crash unreported.
	r.observeLease(wire.Lease{Chevron: "4", Token: 3}, true)
	if !r.reporter(t0, "1") || r.reporter(t0, "4") {
		t.Fatal("the lease changed who reports")
	}
	// Once 2 is offline, 3 is the lowest live.
	if !r.reporter(t0.Add(5*time.Second), "3") {
		t.Fatal("3 does not report after 2 went offline")
	}
}

package federation

import (
	"context"
	"io"
	"log/slog"
	"testing"
	"time"
)

// The hub's leader kicks the aggregates when a child comes back: after the
// directory saw it partitioned, or when a leaf link of this node to it
// comes up after none was; never for a child seen for the first time, never
// for this node's own outbound link, and at most once per kickEvery.
func TestKickWhenAChildComesBack(t *testing.T) {
	var links []Link
	d := &Directory{o: DirectoryOptions{Logger: slog.New(slog.NewTextHandler(io.Discard, nil)), Links: func() []Link { return links }}}
	a := newAggregator(d)
	calls := 0
	a.kick = func(context.Context) (int, error) { calls++; return 2, nil }
	ctx := context.Background()
	step := func(at time.Duration, states ...string) {
		var cs []SwarmState
		for i, st := range states {
			cs = append(cs, SwarmState{Prefix: []string{"3.12.7", "3.12.8"}[i], Parent: "3.12.1", Link: st})
		}
		a.kickIfBack(ctx, cs, t0.Add(at))
	}
	want := func(c, rejoins int) {
		t.Helper()
		if calls != c || a.rejoins.Load() != uint64(rejoins) {
			t.Fatalf("kicks %d (want %d), rejoins %d (want %d)", calls, c, a.rejoins.Load(), rejoins)
		}
	}
	step(0, LinkUp)
	step(time.Second, LinkDown)
	want(0, 0)
	step(5*time.Second, LinkUp)
	want(1, 1)
	if a.kicks.Load() != 2 {
		t.Fatalf("kicks counted %d step-downs, want 2", a.kicks.Load())
	}
	// A blip on this node's own link to the child, the directory still up.
	step(10*time.Second, LinkUp)
	links = []Link{{Swarm: "3.12.7", Up: true}}
	step(11*time.Second, LinkUp)
	want(2, 2)
	// Our own link to our parent is not a child coming back.
	links = nil
	step(20*time.Second, LinkUp)
	links = []Link{{Swarm: "3.12.7", Up: true, Outbound: true}}
	step(21*time.Second, LinkUp)
	want(2, 2)
	// Two children back together: one kick; again within kickEvery: none.
	step(30*time.Second, LinkDown, LinkDown)
	step(31*time.Second, LinkUp, LinkUp)
	want(3, 4)
	step(32*time.Second, LinkDown, LinkUp)
	step(32500*time.Millisecond, LinkUp, LinkUp)
	want(3, 5)
	// A child first seen down, then up, is a rejoin too.
	a.prevUp = map[string]bool{}
	step(40*time.Second, LinkDown)
	step(45*time.Second, LinkUp)
	want(4, 6)
}

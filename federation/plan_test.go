package federation

import (
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/robonet-mesh/robonet/mesh"
	"github.com/robonet-mesh/robonet/subjects"
)

// The plan is decided from the directory at send time: swarms cut off
// (link down, or a summary older than PartitionAfter) are partitioned and
// not waited for; the local swarm is gathered in-swarm and excluded; a
// selector that is exactly another swarm's prefix makes it one logical node.
func TestPlanFor(t *testing.T) {
	now := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	up := func(p string) SwarmState {
		return SwarmState{Prefix: p, Link: LinkUp, LastHeard: now.Add(-time.Second)}
	}
	dir := []SwarmState{
		{Prefix: "3.12.7", Link: LinkSelf},
		up("3.12.1"), up("3.12.8"), up("3.14.2"),
		{Prefix: "3.12.9", Link: LinkDown, LastHeard: now.Add(-time.Minute)},
		{Prefix: "3.12.6", Link: LinkUp, LastHeard: now.Add(-PartitionAfter - time.Millisecond)}, // stale view
		up("3.12.8"),         // listed twice
		{Prefix: "bogus"},    // ignored
		{Prefix: "3.12.7.1"}, // not a swarm prefix: ignored
	}
	local, _ := subjects.ParseSwarmPrefix("3.12.7")
	for _, tc := range []struct {
		sel         string
		local       bool
		remote      string
		partitioned string
		logical     bool
		err         error
	}{
		{sel: "3.12", local: true, remote: "[3.12.1 3.12.8]", partitioned: "[3.12.9 3.12.6]"},
		{sel: "3", local: true, remote: "[3.12.1 3.12.8 3.14.2]", partitioned: "[3.12.9 3.12.6]"},
		{sel: "3,caps=gpu", local: true, remote: "[3.12.1 3.12.8 3.14.2]", partitioned: "[3.12.9 3.12.6]"},
		{sel: "3.12.8", remote: "[3.12.8]", partitioned: "[]", logical: true},
		{sel: "3.12.8,caps=gpu", remote: "[3.12.8]", partitioned: "[]"},
		{sel: "3.12.8.5", remote: "[3.12.8]", partitioned: "[]"},
		{sel: "3.12.9", remote: "[]", partitioned: "[3.12.9]", logical: true},
		{sel: "3.12.8|3.14.2", remote: "[3.12.1 3.12.8 3.14.2]", partitioned: "[3.12.9 3.12.6]", local: true},
		{sel: "3.12.7", err: ErrNotFederated},
		{sel: "3.12.7.1", err: ErrNotFederated},
		{sel: "all", err: ErrNotFederated},
		{sel: "caps=gpu", err: ErrNotFederated},
		{sel: "3.15", err: mesh.ErrNoMatch},
	} {
		sel, err := subjects.ParseSelector(tc.sel)
		if err != nil {
			t.Fatal(err)
		}
		p, err := PlanFor(sel, local, dir, now)
		if tc.err != nil {
			if !errors.Is(err, tc.err) {
				t.Errorf("%s: err %v, want %v", tc.sel, err, tc.err)
			}
			continue
		}
		if err != nil {
			t.Errorf("%s: %v", tc.sel, err)
			continue
		}
		var parts []string
		for _, s := range p.Partitioned {
			parts = append(parts, s.Prefix)
		}
		if p.Local != tc.local || fmt.Sprint(p.Remote) != tc.remote || fmt.Sprint(parts) != tc.partitioned || p.Logical != tc.logical {
			t.Errorf("%s: local %v remote %v partitioned %v logical %v; want %v %s %s %v",
				tc.sel, p.Local, p.Remote, parts, p.Logical, tc.local, tc.remote, tc.partitioned, tc.logical)
		}
	}
	if _, err := PlanFor(mustSel(t, "3.12"), subjects.Chevron{}, dir, now); err == nil {
		t.Error("a plan without a local swarm prefix")
	}
	if IsFederated(mustSel(t, "3.12.7.2"), local) || !IsFederated(mustSel(t, "3.12"), local) || IsFederated(mustSel(t, "3.12"), subjects.Chevron{}) {
		t.Error("IsFederated")
	}
}

func mustSel(t *testing.T, s string) subjects.Selector {
	t.Helper()
	sel, err := subjects.ParseSelector(s)
	if err != nil {
		t.Fatal(err)
	}
	return sel
}

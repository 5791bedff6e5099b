package leafnode

import (
	"slices"
	"testing"
)

// TestEdgePermissionsLetOnlyTheEdgesOwnBeatOut checks the lists the core
// registers for an edge: the edge may send its own heartbeat subject and
// no other edge's, never the system account, and the core sends it no
// heartbeat or tier view at any chevron depth.
func TestEdgePermissionsLetOnlyTheEdgesOwnBeatOut(t *testing.T) {
	p := EdgePermissions("rn-test", "rn-AAA")
	matches := func(list []string, subj string) bool {
		for _, pat := range list {
			if subjectMatches(pat, subj) {
				return true
			}
		}
		return false
	}
	for _, c := range []struct {
		subj     string
		out, in_ bool // edge may send it; core may send it to the edge
	}{
		{"_rn.ehb.rn-AAA", true, true},
		{"_rn.ehb.rn-BBB", false, true}, // only node processes subscribe _rn.ehb.*
		{"rn.4.evt.hb", false, false},
		{"rn.3.12.7.1.evt.hb", false, false},
		{"rn.2.evt.tiers", false, false},
		{"rn.4.evt.leave", true, true},
		{"rn.cmd.ping", true, true},
		{"rn.4.cmd.ping", true, true},
		{"rn.sys.nodes", true, true},
		{"_rn.inbox.UABC.x.y", true, true},
		{"$JS.rn-test.API.STREAM.INFO.KV_rn_nodes", true, true},
		{"$JS.API.STREAM.INFO.KV_rn_nodes", false, true},
		{"$SYS.REQ.SERVER.PING", false, false},
	} {
		out := matches(p.Publish.Allow, c.subj) && !matches(p.Publish.Deny, c.subj)
		in := matches(p.Subscribe.Allow, c.subj) && !matches(p.Subscribe.Deny, c.subj)
		if out != c.out || in != c.in_ {
			t.Errorf("%s: edge sends %v (want %v), core sends %v (want %v)", c.subj, out, c.out, in, c.in_)
		}
	}
	if !slices.Contains(EdgeAllows("d", "rn-AAA"), EdgeBeat("rn-AAA")) {
		t.Fatal("EdgeAllows lacks the edge's own beat")
	}
}

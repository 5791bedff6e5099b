package node_test

import (
	"context"
	"encoding/json"
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	"github.com/robonet-mesh/robonet/internal/testmesh"
	"github.com/robonet-mesh/robonet/mesh"
	"github.com/robonet-mesh/robonet/node"
	"github.com/robonet-mesh/robonet/sentinel"
	"github.com/robonet-mesh/robonet/wire"
)

// commandCount is Stats' count for verb and status (-1 when absent).
func commandCount(st node.Stats, verb, status string) int {
	for _, c := range st.Commands {
		if c.Verb == verb && c.Status == status {
			return int(c.Count)
		}
	}
	return -1
}

func failureCount(st node.Stats, reason string) int {
	for _, f := range st.HCTH.Failures {
		if f.Reason == reason {
			return int(f.Count)
		}
	}
	return -1
}

// Each kind of command outcome lands in its own verb and status: a ping
// that ran (ok, with a latency), an observer's exec (denied), an unsigned
// ping (denied, and an unsigned HCTH failure), a verb outside the
// catalogue (error, counted under "other", never under its own name), and
// a gauge past its deadline (timeout), and a replayed ping (dropped
// without an answer, an HCTH replay).
func TestStatsCountCommandsByVerbAndStatus(t *testing.T) {
	s := testmesh.Start(t, 1)
	nd := s.Node(0)
	admin := s.Client(0)
	obs := s.User(0, "olga", wire.RoleObserver)
	subj := func(verb string) string { return fmt.Sprintf("rn.%s.cmd.%s", nd.Chevron(), verb) }
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()

	before := nd.Stats()
	if n := commandCount(before, "ping", node.StatOK); n != 0 {
		t.Fatalf("ping ok before any command: %d", n)
	}
	res, err := admin.Gather(ctx, mesh.GatherRequest{Selector: "all", Verb: "ping", Timeout: 5 * time.Second}, nil)
	if err != nil || len(res.Results) != 1 || res.Results[0].Status != wire.StatusOK {
		t.Fatalf("ping: %+v %v", res, err)
	}
	exec, _ := json.Marshal(wire.Request{Verb: "exec", Args: json.RawMessage(`{"argv":["true"]}`), ID: "obs"})
	if r, _ := signed(t, admin.Conn(), obs.Signer(), subj("exec"), exec, 5*time.Second); r == nil || r.Status != wire.StatusDenied {
		t.Fatalf("observer exec: %+v", r)
	}
	ping, _ := json.Marshal(wire.Request{Verb: "ping", ID: "unsigned"})
	if r, _ := signed(t, admin.Conn(), nil, subj("ping"), ping, 5*time.Second); r == nil || r.Status != wire.StatusDenied {
		t.Fatalf("unsigned ping: %+v", r)
	}
	bogus, _ := json.Marshal(wire.Request{Verb: "no-such-verb", ID: "bogus"})
	if r, _ := signed(t, admin.Conn(), admin.Signer(), subj("no-such-verb"), bogus, 5*time.Second); r == nil || r.Status != wire.StatusError {
		t.Fatalf("unknown verb: %+v", r)
	}
	slow, _ := json.Marshal(wire.Request{Verb: "gauge", Args: json.RawMessage(`{"metric":"cpu","interval":"3s"}`), TimeoutMs: 100, ID: "slow"})
	if r, _ := signed(t, admin.Conn(), admin.Signer(), subj("gauge"), slow, 5*time.Second); r == nil || r.Error == nil || r.Error.Code != wire.CodeTimeout {
		t.Fatalf("gauge past its deadline: %+v", r)
	}
	again, _ := json.Marshal(wire.Request{Verb: "ping", ID: "again"})
	r, m := signed(t, admin.Conn(), admin.Signer(), subj("ping"), again, 5*time.Second)
	if r == nil || r.Status != wire.StatusOK {
		t.Fatalf("ping to replay: %+v", r)
	}
	if r := send(t, admin.Conn(), m, 300*time.Millisecond); r != nil {
		t.Fatalf("a replay was answered: %+v", r)
	}

	var st node.Stats
	testmesh.CheckFor(t, 5*time.Second, 20*time.Millisecond, func() error {
		st = nd.Stats()
		if n := commandCount(st, "ping", node.StatDropped); n != 1 {
			return fmt.Errorf("ping dropped: %d, want 1", n)
		}
		return nil
	})
	for _, c := range []struct {
		verb, status string
		want         int
	}{
		{"ping", node.StatOK, 2}, {"exec", node.StatDenied, 1}, {"ping", node.StatDenied, 1},
		{node.VerbOther, node.StatError, 1}, {"ping", node.StatDropped, 1}, {"exec", node.StatOK, 0},
		{"no-such-verb", node.StatError, -1}, {"gauge", node.StatTimeout, 1}, {"gauge", node.StatError, 0},
	} {
		if got := commandCount(st, c.verb, c.status); got != c.want {
			t.Errorf("commands %s/%s = %d, want %d", c.verb, c.status, got, c.want)
		}
	}
	for _, c := range []struct {
		reason string
		want   int
	}{{node.ReasonUnsigned, 1}, {node.ReasonReplay, 1}, {node.ReasonBadSignature, 0}} {
		if got := failureCount(st, c.reason) - failureCount(before, c.reason); got != c.want {
			t.Errorf("HCTH failures %s rose by %d, want %d", c.reason, got, c.want)
		}
	}
	var fails uint64
	for _, f := range st.HCTH.Failures {
		fails += f.Count
	}
	if st.HCTH.Verified < fails+3 || st.HCTH.Verified <= before.HCTH.Verified {
		t.Errorf("HCTH verified %d (before %d), failures %d", st.HCTH.Verified, before.HCTH.Verified, fails)
	}
	for _, h := range st.Latency {
		want := uint64(0)
		switch h.Verb {
		case "ping":
			want = 2
		case node.VerbOther, "gauge":
			want = 1
		}
		if h.Count != want || len(h.Counts) != len(h.Bounds) || h.Counts[len(h.Counts)-1] > h.Count {
			t.Errorf("latency %s: count %d (want %d), %d counts for %d bounds, last %d", h.Verb, h.Count, want, len(h.Counts), len(h.Bounds), h.Counts[len(h.Counts)-1])
		}
		for i := 1; i < len(h.Counts); i++ {
			if h.Counts[i] < h.Counts[i-1] {
				t.Errorf("latency %s: bucket %d below bucket %d: %v", h.Verb, i, i-1, h.Counts)
			}
		}
		if want > 0 && (h.Sum <= 0 || h.Sum > 10*time.Second) {
			t.Errorf("latency %s: sum %v", h.Verb, h.Sum)
		}
	}
}

// The node's view and the lease: a three-node swarm's members alive as
// cores, one lease holder among them, each member having seen at least
// one lease term, JetStream healthy; a killed member shows offline.
func TestStatsCountNodesByStateAndTheLease(t *testing.T) {
	s := testmesh.Start(t, 3)
	s.WaitAlive(20 * time.Second)
	s.WaitLeader(20 * time.Second)
	nodes := func(st node.Stats, state, role string) int {
		for _, c := range st.Nodes {
			if c.State == state && c.Role == role {
				return c.Count
			}
		}
		return -1
	}
	holders := 0
	for _, nd := range s.Live() {
		st := nd.Stats()
		if got := nodes(st, wire.StateAlive, wire.NodeRoleCore); got != 3 {
			t.Errorf("node %s: %d alive cores, want 3 (%+v)", nd.Chevron(), got, st.Nodes)
		}
		if got := nodes(st, wire.StateOffline, wire.NodeRoleEdge); got != 0 {
			t.Errorf("node %s: offline edges %d, want a zero row", nd.Chevron(), got)
		}
		if st.LeaseHolder {
			holders++
		}
		if st.LeaseChanges < 1 {
			t.Errorf("node %s saw no lease term", nd.Chevron())
		}
		if !st.JetStreamOK {
			t.Errorf("node %s: JetStream not healthy", nd.Chevron())
		}
		if len(st.Alerts) != len(node.SentinelLevels()) {
			t.Errorf("node %s: alerts %+v", nd.Chevron(), st.Alerts)
		}
	}
	if holders != 1 {
		t.Errorf("%d lease holders, want 1", holders)
	}
	s.Kill(2)
	testmesh.CheckFor(t, 20*time.Second, 50*time.Millisecond, func() error {
		st := s.Node(0).Stats()
		if a, o := nodes(st, wire.StateAlive, wire.NodeRoleCore), nodes(st, wire.StateOffline, wire.NodeRoleCore); a != 2 || o != 1 {
			return fmt.Errorf("%d alive, %d offline: %+v", a, o, st.Nodes)
		}
		return nil
	})
}

// BenchmarkStats prints what one Stats snapshot costs on a single node
// (the node's part of a /metrics scrape).
func BenchmarkStats(b *testing.B) {
	s := testmesh.Start(b, 1)
	nd := s.Node(0)
	b.ReportAllocs()
	for b.Loop() {
		_ = nd.Stats()
	}
}

// alertCount is Stats' count of Sentinel alerts at level.
func alertCount(st node.Stats, level string) uint64 {
	for _, a := range st.Alerts {
		if a.Level == level {
			return a.Count
		}
	}
	return 0
}

// A peer's pinned CPU makes this node's Sentinel raise alerts at level
// "alert" (health never escalates), and Stats counts them: none while the
// swarm is quiet, then at least as many as the node's current report
// shows.
func TestStatsCountSentinelAlertsByLevel(t *testing.T) {
	var pinned atomic.Bool
	s := testmesh.Start(t, 2, fastSentinel(&pinned, 1))
	s.WaitAlive(20 * time.Second)
	nd := s.Node(0)
	warm(t, nd, s.Node(1).Chevron().String())
	for _, lv := range node.SentinelLevels() {
		if n := alertCount(nd.Stats(), lv); n != 0 {
			t.Fatalf("%d %s alerts in a quiet swarm", n, lv)
		}
	}
	pinned.Store(true)
	testmesh.CheckFor(t, 30*time.Second, 50*time.Millisecond, func() error {
		st := nd.Stats()
		if n, shown := alertCount(st, string(sentinel.Alert)), len(nd.AlertsReport().Alerts); n == 0 || n < uint64(shown) {
			return fmt.Errorf("%d alerts counted, %d in the report", n, shown)
		}
		return nil
	})
	st := nd.Stats()
	if n := alertCount(st, string(sentinel.Quarantine)) + alertCount(st, string(sentinel.Disconnect)); n != 0 {
		t.Errorf("a pinned CPU counted %d quarantine or disconnect alerts", n)
	}
}

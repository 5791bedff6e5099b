package node_test

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/robonet-mesh/robonet/internal/testmesh"
	"github.com/robonet-mesh/robonet/mesh"
	"github.com/robonet-mesh/robonet/node"
	"github.com/robonet-mesh/robonet/wire"
)

// checkRoles waits until every core node lists every node with its role,
// alive.
func checkRoles(t *testing.T, s *testmesh.Swarm, timeout time.Duration) {
	t.Helper()
	testmesh.CheckFor(t, timeout, 50*time.Millisecond, func() error {
		want := map[string]string{}
		for _, nd := range s.Live() {
			want[nd.Chevron().String()] = nd.Role()
		}
		for _, nd := range s.Live() {
			got := map[string]wire.Member{}
			for _, m := range nd.Members() {
				got[m.Chevron] = m
			}
			for c, r := range want {
				if m := got[c]; m.State != wire.StateAlive || m.Role != r {
					return fmt.Errorf("node %s (%s) sees %s %s as %q, want alive %q", nd.Chevron(), nd.Role(), c, m.State, m.Role, r)
				}
			}
		}
		return nil
	})
}

func TestScaleCoreAndEdgesForm(t *testing.T) {
	s := testmesh.StartCore(t, 3)
	e1 := s.AddEdge()
	e2 := s.AddEdge()
	for _, nd := range s.Cores() {
		if nd.Role() != wire.NodeRoleCore {
			t.Fatalf("core node %s has role %s", nd.Chevron(), nd.Role())
		}
	}
	if e1.Role() != wire.NodeRoleEdge || e2.Role() != wire.NodeRoleEdge {
		t.Fatalf("edges have roles %s, %s", e1.Role(), e2.Role())
	}
	checkRoles(t, s, 20*time.Second)

	// `nodes` (rn.sys.nodes through a client of an edge) shows the roles.
	c := s.Client(s.Index(e1))
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	ms, err := c.Nodes(ctx)
	if err != nil {
		t.Fatal(err)
	}
	roles := map[string]int{}
	for _, m := range ms {
		roles[m.Role]++
	}
	if roles[wire.NodeRoleCore] != 3 || roles[wire.NodeRoleEdge] != 2 {
		t.Fatalf("nodes through an edge: roles %v, want 3 core and 2 edge", roles)
	}
	st := e1.Status()
	if st.Role != wire.NodeRoleEdge || st.CoreLink == "" || st.CoreSize != 3 || st.CoreLive != 3 || st.CoreBelow {
		t.Fatalf("edge status: role %s link %q core %d/%d below %v", st.Role, st.CoreLink, st.CoreLive, st.CoreSize, st.CoreBelow)
	}

	// A command to all reaches the edges through one leaf hop, every node accounted.
	res, err := c.Gather(ctx, mesh.GatherRequest{Selector: "all", Verb: "ping", Timeout: 5 * time.Second}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if res.Summary.Total != 5 || !res.OK() {
		t.Fatalf("run all ping from an edge: %+v", res.Summary)
	}
	res, err = s.Client(0).Gather(ctx, mesh.GatherRequest{Selector: "all", Verb: "ping", Timeout: 5 * time.Second}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if res.Summary.Total != 5 || !res.OK() {
		t.Fatalf("run all ping from a core node: %+v", res.Summary)
	}
}

// TestScaleEdgeHearsNoHeartbeats: a program on an edge subscribed to rn.>
// gets no other node's heartbeat or tier view, while the core hears the
// edge's own heartbeats (it stays alive past several of its intervals).
func TestScaleEdgeHearsNoHeartbeats(t *testing.T) {
	s := testmesh.StartCore(t, 3, fastEdgeBeat)
	e := s.AddEdge(fastEdgeBeat)
	checkRoles(t, s, 20*time.Second)
	c := s.Client(s.Index(e))
	var mu sync.Mutex
	heard := map[string]int{}
	sub, err := c.Conn().Subscribe("rn.>", func(m *nats.Msg) {
		mu.Lock()
		heard[m.Subject]++
		mu.Unlock()
	})
	if err != nil {
		t.Fatal(err)
	}
	defer sub.Unsubscribe()
	// Wait until the core has heard several more of the edge's beats: the
	// subscription has been in place for as long.
	first := seenBy(s.Node(0), e.Chevron().String())
	testmesh.CheckFor(t, 20*time.Second, 50*time.Millisecond, func() error {
		if last := seenBy(s.Node(0), e.Chevron().String()); !last.After(first.Add(3 * edgeBeat)) {
			return fmt.Errorf("core last heard the edge at %v (first %v)", last, first)
		}
		return nil
	})
	mu.Lock()
	defer mu.Unlock()
	for subj, n := range heard {
		if strings.HasSuffix(subj, ".evt.hb") || strings.HasSuffix(subj, ".evt.tiers") || strings.HasPrefix(subj, "_rn.ehb.") {
			t.Errorf("the edge delivered %d messages on %s to a local rn.> subscriber", n, subj)
		}
	}
	if st := testmesh.StateOf(s.Node(1), e.Chevron().String()); st != wire.StateAlive {
		t.Fatalf("core node 2 sees the edge %s", st)
	}
}

// edgeBeat is the edge heartbeat interval of the tests that wait for
// several of them (5 s by default).
const edgeBeat = time.Second

func fastEdgeBeat(_ int, o *node.Options) { o.Timing.EdgeHeartbeat = edgeBeat }

func seenBy(nd *node.Node, chev string) time.Time {
	for _, m := range nd.Members() {
		if m.Chevron == chev {
			return m.LastSeen
		}
	}
	return time.Time{}
}

// waitOffline waits until every live core node shows chev offline and
// returns how long that took from since.
func waitOffline(t *testing.T, s *testmesh.Swarm, chev string, since time.Time, deadline time.Duration) time.Duration {
	t.Helper()
	var took time.Duration
	testmesh.CheckFor(t, deadline, 20*time.Millisecond, func() error {
		for _, nd := range s.Cores() {
			if st := testmesh.StateOf(nd, chev); st != wire.StateOffline {
				return fmt.Errorf("core node %s sees edge %s %q", nd.Chevron(), chev, st)
			}
		}
		took = time.Since(since)
		return nil
	})
	return took
}

// TestScaleEdgeKilledShownOffline: a killed edge's leaf link closes; the
// core node it was linked to reports it left. README: ≤ 3 s.
func TestScaleEdgeKilledShownOffline(t *testing.T) {
	s := testmesh.StartCore(t, 3)
	e := s.AddEdge()
	s.AddEdge()
	checkRoles(t, s, 20*time.Second)
	chev := e.Chevron().String()
	at := time.Now()
	s.Kill(s.Index(e))
	took := waitOffline(t, s, chev, at, 3*time.Second)
	t.Logf("killed edge shown offline after %v", took)
}

// TestScaleEdgeCutOffShownOffline: an edge whose link goes silent (no FIN:
// a proxy that drops every byte) is dropped by the core's leaf pings and
// reported left. README: ≤ 6 s.
func TestScaleEdgeCutOffShownOffline(t *testing.T) {
	s := testmesh.StartCore(t, 3)
	// The edge dials core node 0 only, through the proxy (discovery off).
	leaf := s.Node(0).EdgeLeafAddr()
	p := testmesh.NewProxy(t, leaf)
	e := s.AddEdge(func(_ int, o *node.Options) { node.SetCoreLeafs(o, []string{p.Addr()}) })
	checkRoles(t, s, 20*time.Second)
	chev := e.Chevron().String()
	at := time.Now()
	p.Blackhole()
	took := waitOffline(t, s, chev, at, 6*time.Second)
	t.Logf("cut-off edge shown offline after %v", took)
}

// TestScaleCoreMemberKilledEdgesFailOver: edges linked to a core node that
// dies relink to another core member and are never shown offline.
func TestScaleCoreMemberKilledEdgesFailOver(t *testing.T) {
	s := testmesh.StartCore(t, 3)
	var edges []*node.Node
	for i := 0; i < 3; i++ {
		edges = append(edges, s.AddEdge())
	}
	checkRoles(t, s, 20*time.Second)
	// Kill the core node the first edge is linked to (not the founder's
	// data matters here: any member).
	victim := -1
	testmesh.CheckFor(t, 10*time.Second, 50*time.Millisecond, func() error {
		link := edges[0].Status().CoreLink
		for i := 0; i < 3; i++ {
			if nd := s.Node(i); nd != nil && nd.ServerName() == link {
				victim = i
				return nil
			}
		}
		return fmt.Errorf("edge linked to %q", link)
	})
	victimServer := s.Node(victim).ServerName()
	s.Kill(victim)
	// Sample the surviving core's view while the edges fail over, and for
	// a few seconds more: no edge is ever offline.
	until := time.Now().Add(8 * time.Second)
	relinked := false
	sample := time.NewTicker(50 * time.Millisecond) // a sampling rate, not a wait for the cluster
	defer sample.Stop()
	for ; time.Now().Before(until); <-sample.C {
		for _, nd := range s.Cores() {
			for _, e := range edges {
				if st := testmesh.StateOf(nd, e.Chevron().String()); st == wire.StateOffline {
					t.Fatalf("core node %s shows edge %s offline during failover", nd.Chevron(), e.Chevron())
				}
			}
		}
		relinked = true
		for _, e := range edges {
			if l := e.Status().CoreLink; l == "" || l == victimServer {
				relinked = false
			}
		}
	}
	if !relinked {
		t.Fatal("edges did not relink to a surviving core member")
	}
}

// TestScaleEdgeRestartsSameIdentity: an edge restarted keeps its key and
// chevron and is alive again.
func TestScaleEdgeRestartsSameIdentity(t *testing.T) {
	s := testmesh.StartCore(t, 3)
	e := s.AddEdge()
	checkRoles(t, s, 20*time.Second)
	pub, chev := e.Pubkey(), e.Chevron().String()
	e2 := s.Restart(s.Index(e))
	if e2.Pubkey() != pub || e2.Chevron().String() != chev || e2.Role() != wire.NodeRoleEdge {
		t.Fatalf("restarted edge: key %s chevron %s role %s, want %s %s edge", e2.Pubkey(), e2.Chevron(), e2.Role(), pub, chev)
	}
	checkRoles(t, s, 20*time.Second)
}

// TestScaleCandidateJoinsCoreOrEdge: a node with --cluster and --join asks
// the core; it becomes an edge when the core is full and a core member
// when it has room.
func TestScaleCandidateJoinsCoreOrEdge(t *testing.T) {
	t.Run("full", func(t *testing.T) {
		s := testmesh.StartCore(t, 3)
		c := s.AddCandidate()
		if c.Role() != wire.NodeRoleEdge {
			t.Fatalf("candidate with a full core became %s", c.Role())
		}
		checkRoles(t, s, 20*time.Second)
	})
	t.Run("room", func(t *testing.T) {
		s := testmesh.StartCore(t, 2, func(_ int, o *node.Options) { o.Core = 3 })
		if st := s.Node(0).CoreStatus(); !st.Below || st.Size != 3 {
			t.Fatalf("core of 2 with size 3: %+v", st)
		}
		c := s.AddCandidate()
		if c.Role() != wire.NodeRoleCore {
			t.Fatalf("candidate with room in the core became %s", c.Role())
		}
		testmesh.CheckFor(t, 20*time.Second, 50*time.Millisecond, func() error {
			if st := s.Node(0).CoreStatus(); st.Live() != 3 || st.Below {
				return fmt.Errorf("core status %+v", st)
			}
			return nil
		})
		checkRoles(t, s, 20*time.Second)
	})
}

// TestScaleRevokedEdgeRefusedOnLeaf: revoking an edge closes its leaf link
// and the core refuses it from then on.
func TestScaleRevokedEdgeRefusedOnLeaf(t *testing.T) {
	s := testmesh.StartCore(t, 3)
	e := s.AddEdge()
	checkRoles(t, s, 20*time.Second)
	ids, err := s.Client(0).Identities(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if err := ids.Revoke(context.Background(), e.Pubkey(), "", "test", "", time.Now()); err != nil {
		t.Fatal(err)
	}
	// Its link goes and stays gone: no core node holds a leaf from it for
	// a couple of seconds of its redials (every 500 ms).
	var clear time.Time
	testmesh.CheckFor(t, 15*time.Second, 50*time.Millisecond, func() error {
		for _, nd := range s.Cores() {
			if slices.Contains(nd.EdgeLinks(), e.ServerName()) {
				clear = time.Time{}
				return fmt.Errorf("core node %s still holds the revoked edge's leaf", nd.Chevron())
			}
		}
		if clear.IsZero() {
			clear = time.Now()
		}
		if time.Since(clear) < 2*time.Second {
			return errors.New("not refused for long enough yet")
		}
		return nil
	})
	if l := e.Status().CoreLink; l != "" {
		t.Fatalf("revoked edge still linked to %s", l)
	}
}

// TestScaleJetStreamThroughAnEdge: a client of an edge (which runs no
// JetStream) reads and writes the swarm's buckets through the core's
// domain, as `robonet macro`, `user` and `approve` do there.
func TestScaleJetStreamThroughAnEdge(t *testing.T) {
	s := testmesh.StartCore(t, 3)
	e := s.AddEdge()
	checkRoles(t, s, 20*time.Second)
	st := e.Status()
	if st.JSDomain == "" || st.Role != wire.NodeRoleEdge {
		t.Fatalf("edge status: role %q js_domain %q", st.Role, st.JSDomain)
	}
	c := s.Client(s.Index(e))
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	m, err := c.Macros(ctx)
	if err != nil {
		t.Fatalf("macros through the edge: %v", err)
	}
	if _, err := m.Set(ctx, "greet", "all:ping"); err != nil {
		t.Fatalf("set a macro through the edge: %v", err)
	}
	core := s.Client(0)
	mc, err := core.Macros(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if txt, err := mc.Text(ctx, "greet"); err != nil || txt != "all:ping" {
		t.Fatalf("the core reads the edge's macro: %q, %v", txt, err)
	}
}

// TestScaleEdgeLeavesARevokedCoreMember: when the core member an edge is
// linked to is revoked, the edge drops that link, refuses the member on
// its redials and links to another; it stays alive in the core's view and
// answers commands.
func TestScaleEdgeLeavesARevokedCoreMember(t *testing.T) {
	s := testmesh.StartCore(t, 3)
	e := s.AddEdge()
	checkRoles(t, s, 20*time.Second)
	var link string
	testmesh.CheckFor(t, 10*time.Second, 50*time.Millisecond, func() error {
		if link = e.Status().CoreLink; link == "" {
			return errors.New("the edge reports no link")
		}
		return nil
	})
	var victim *node.Node
	for _, nd := range s.Cores() {
		if nd.ServerName() == link {
			victim = nd
		}
	}
	if victim == nil {
		t.Fatalf("the edge's link %q names no core member", link)
	}
	other := 0
	for s.Node(other) == victim {
		other++
	}
	// Revoke once the core survives a loss: right after it forms, its
	// buckets are being raised to R3, and a write can wait out a stream's
	// leader change (the revoke timed out that way under CI's load).
	testmesh.CheckFor(t, 30*time.Second, 100*time.Millisecond, func() error {
		if st := s.Node(other).Status(); !st.SurvivesLoss {
			return errors.New(st.Resilience)
		}
		return nil
	})
	admin := s.User(other, "ada", wire.RoleAdmin) // on a member that stays
	ids, err := admin.Identities(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if err := ids.Revoke(context.Background(), victim.Pubkey(), "", "test", "", time.Now()); err != nil {
		t.Fatal(err)
	}
	testmesh.CheckFor(t, 20*time.Second, 50*time.Millisecond, func() error {
		if l := e.Status().CoreLink; l == "" || l == link {
			return fmt.Errorf("the edge is linked to %q (the revoked member is %s)", l, link)
		}
		if slices.Contains(victim.EdgeLinks(), e.ServerName()) {
			return errors.New("the revoked member still holds the edge's leaf")
		}
		return nil
	})
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	testmesh.CheckFor(t, 10*time.Second, 100*time.Millisecond, func() error {
		if st := testmesh.StateOf(s.Node(other), e.Chevron().String()); st != wire.StateAlive {
			return fmt.Errorf("the edge is %q in a surviving member's view", st)
		}
		return nil
	})
	// The revocation's reload closes every client once: retry across it.
	testmesh.CheckFor(t, 10*time.Second, 100*time.Millisecond, func() error {
		res, err := admin.Gather(ctx, mesh.GatherRequest{Selector: e.Chevron().String(), Verb: "ping", Timeout: 5 * time.Second}, nil)
		if err != nil || !res.OK() || res.Summary.Total != 1 {
			return fmt.Errorf("ping of the edge after the relink: %+v, %v", res.Summary, err)
		}
		return nil
	})
	if l := e.Status().CoreLink; l == link {
		t.Fatalf("the edge went back to the revoked member %s", l)
	}
}

// TestScaleCutOffMemberDropsItsEdgesOnce: a core member left without a
// majority of the core (here: the two others killed) drops its edges'
// links once, after cutOffShed, so that they can relink to a member with
// the majority; with none to reach, the edge comes back to it, and it is
// not dropped again in the same episode.
func TestScaleCutOffMemberDropsItsEdgesOnce(t *testing.T) {
	s := testmesh.StartCore(t, 3)
	e := s.AddEdge()
	checkRoles(t, s, 20*time.Second)
	var link string
	var since time.Time
	testmesh.CheckFor(t, 10*time.Second, 50*time.Millisecond, func() error {
		st := e.Status()
		if link, since = st.CoreLink, st.CoreLinkSince; link == "" {
			return errors.New("the edge reports no link")
		}
		return nil
	})
	for i := 0; i < s.Len(); i++ {
		if nd := s.Node(i); nd != nil && nd.Role() == wire.NodeRoleCore && nd.ServerName() != link {
			s.Kill(i)
		}
	}
	killed := time.Now()
	var again time.Time
	testmesh.CheckFor(t, 30*time.Second, 100*time.Millisecond, func() error {
		st := e.Status()
		if st.CoreLink != link || !st.CoreLinkSince.After(since) {
			return fmt.Errorf("the edge's link: %q since %s (was %q since %s)", st.CoreLink, st.CoreLinkSince, link, since)
		}
		again = st.CoreLinkSince
		return nil
	})
	if d := again.Sub(killed); d < node.CutOffShed {
		t.Errorf("the link was dropped %s after the others died, before the member was cut off for %s", d, node.CutOffShed)
	}
	// Once per episode: the link it came back on stays (observed for
	// longer than cutOffShed).
	deadline := time.Now().Add(node.CutOffShed + 2*time.Second)
	for time.Now().Before(deadline) {
		if st := e.Status(); st.CoreLink != link || !st.CoreLinkSince.Equal(again) {
			t.Fatalf("the link was dropped again: %q since %s (came back since %s)", st.CoreLink, st.CoreLinkSince, again)
		}
		time.Sleep(200 * time.Millisecond)
	}
	// A clean stop without a quorum waits out its deregistration: kill.
	for i := 0; i < s.Len(); i++ {
		s.Kill(i)
	}
}

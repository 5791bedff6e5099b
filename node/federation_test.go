package node_test

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/robonet-mesh/robonet/internal/testmesh"
	"github.com/robonet-mesh/robonet/node"
	"github.com/robonet-mesh/robonet/subjects"
	"github.com/robonet-mesh/robonet/trust"
)

func featureConn(t *testing.T, nd *node.Node) *nats.Conn {
	t.Helper()
	nc, err := nd.FeatureConn("fedtest")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	return nc
}

// TestFedHubAndChildSwarmsLink starts a hub swarm 3.12.1 and a child swarm
// 3.12.7 of two nodes each: every child node holds its own leaf link, each
// swarm keeps its own JetStream domain, and the federation accessors say
// so.
func TestFedHubAndChildSwarmsLink(t *testing.T) {
	hub := testmesh.StartSwarm(t, 2, "3.12.1", testmesh.AsHub())
	child := testmesh.StartChild(t, hub, 2, "3.12.7")

	// Every child node has its own outbound link, to a hub node.
	hubServers := map[string]bool{}
	for _, nd := range hub.Live() {
		hubServers[nd.ServerName()] = true
	}
	var childServers []string
	for _, nd := range child.Live() {
		childServers = append(childServers, nd.ServerName())
		var out []node.LeafLink
		for _, l := range nd.LeafLinks() {
			if l.Outbound && l.Up {
				out = append(out, l)
			}
		}
		if len(out) != 1 || out[0].Swarm != "3.12.1" || out[0].Domain != "rn-3-12-1" || !hubServers[out[0].Server] {
			t.Fatalf("node %s outbound links %+v, want one to a 3.12.1 node", nd.Chevron(), out)
		}
		if !nd.Federated() || nd.IsHub() || nd.Domain() != "rn-3-12-7" || nd.SwarmPrefix().String() != "3.12.7" || nd.ParentPrefix() != "3.12.1" {
			t.Fatalf("node %s: federated %v hub %v domain %q prefix %s parent %q", nd.Chevron(), nd.Federated(), nd.IsHub(), nd.Domain(), nd.SwarmPrefix(), nd.ParentPrefix())
		}
		if pins := nd.AuthorityPins(); len(pins) != 1 || pins[0] != hub.Node(0).Founder() {
			t.Fatalf("node %s authority pins %v, want the hub's founder %s", nd.Chevron(), pins, hub.Node(0).Founder())
		}
		if st := nd.Status(); st.Swarm != "rn-3-12-7" {
			t.Fatalf("node %s swarm %q", nd.Chevron(), st.Swarm)
		}
	}
	// The hub side sees exactly the child nodes, each once, as swarm 3.12.7.
	testmesh.CheckFor(t, 10*time.Second, 20*time.Millisecond, func() error {
		var in []string
		for _, nd := range hub.Live() {
			for _, l := range nd.LeafLinks() {
				if !l.Outbound && l.Up {
					if l.Swarm != "3.12.7" || l.Domain != "rn-3-12-7" {
						return fmt.Errorf("hub %s inbound link %+v", nd.Chevron(), l)
					}
					in = append(in, l.Server)
				}
			}
		}
		sort.Strings(in)
		sort.Strings(childServers)
		if !slices.Equal(in, childServers) {
			return fmt.Errorf("hub holds links from %v, want one from each of %v", in, childServers)
		}
		return nil
	})
	for _, nd := range hub.Live() {
		if !nd.IsHub() || nd.ParentPrefix() != "" || nd.AuthorityPins() != nil || nd.Domain() != "rn-3-12-1" {
			t.Fatalf("hub node %s: hub %v parent %q pins %v domain %q", nd.Chevron(), nd.IsHub(), nd.ParentPrefix(), nd.AuthorityPins(), nd.Domain())
		}
	}

	// Each swarm is its own JetStream domain with its own registry: no
	// meta merge. The child reaches the hub's domain by its prefix.
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	for _, tc := range []struct {
		sw     *testmesh.Swarm
		domain string
		keys   []string
	}{
		{hub, "rn-3-12-1", []string{"3.12.1.1", "3.12.1.2"}},
		{child, "rn-3-12-7", []string{"3.12.7.1", "3.12.7.2"}},
	} {
		js, err := jetstream.New(featureConn(t, tc.sw.Node(1)))
		if err != nil {
			t.Fatal(err)
		}
		ai, err := js.AccountInfo(ctx)
		if err != nil || ai.Domain != tc.domain {
			t.Fatalf("account info %+v, %v; want domain %s", ai, err, tc.domain)
		}
		kv, err := js.KeyValue(ctx, node.BucketNodes)
		if err != nil {
			t.Fatal(err)
		}
		keys, err := kv.Keys(ctx)
		sort.Strings(keys)
		if err != nil || !slices.Equal(keys, tc.keys) {
			t.Fatalf("domain %s registry %v, %v; want %v", tc.domain, keys, err, tc.keys)
		}
		if ml := tc.sw.Node(0).Status().MetaLeader; !slices.ContainsFunc(tc.sw.Live(), func(n *node.Node) bool { return n.ServerName() == ml }) {
			t.Fatalf("domain %s: meta leader %q is not one of its own nodes", tc.domain, ml)
		}
	}
	up, err := jetstream.NewWithDomain(featureConn(t, child.Node(0)), "rn-3-12-1")
	if err != nil {
		t.Fatal(err)
	}
	if ai, err := up.AccountInfo(ctx); err != nil || ai.Domain != "rn-3-12-1" {
		t.Fatalf("child reading the hub's domain: %+v, %v", ai, err)
	}
}

// TestFedWhatCrossesTheLeafLinks checks on a linked hub and child what
// crosses: federated subjects both ways and inbox replies, never in-swarm
// command subjects or heartbeats.
func TestFedWhatCrossesTheLeafLinks(t *testing.T) {
	hub := testmesh.StartSwarm(t, 2, "3.12.1", testmesh.AsHub())
	child := testmesh.StartChild(t, hub, 2, "3.12.7")
	fc, fh := featureConn(t, child.Node(0)), featureConn(t, hub.Node(0))

	for _, tc := range []struct {
		subj string
		up   bool
		want bool
	}{
		{"rn.fed.x", true, true},
		{"rn.fed.x", false, true},
		{"rn.fed.3.12.cmd.ping", true, true},
		{"rn.fed.3.12.7.cmd.ping", false, true},
		{"rn.dir.3.12.7.summary", true, true},
		{"rn.dir.3.12.1.summary", false, true},
		{"rn.3.12.7.1.evt.join", true, true},
		{"rn.cmd.ping", true, false},
		{"rn.cmd.ping", false, false},
		{"rn.3.12.7.cmd.ping", true, false},
		{"rn.3.12.7.cmd.ping", false, false},
		{"rn.3.12.7.1.cmd.ping", false, false},
		{"rn.3.12.cmd.ping", true, false},
		{"rn.3.12.1.1.cmd.ping", true, false},
		{"rn.sys.nodes", true, false},
		{"rn.sys.token", false, false},
	} {
		from, to, dir := fc, fh, "up"
		if !tc.up {
			from, to, dir = fh, fc, "down"
		}
		if got := testmesh.Crosses(t, from, to, tc.subj); got != tc.want {
			t.Errorf("%s %s: crossed=%v, want %v", dir, tc.subj, got, tc.want)
		}
	}

	// Inbox replies cross both ways.
	for _, dir := range []struct {
		name             string
		requester, reply *nats.Conn
	}{{"child asks hub", fc, fh}, {"hub asks child", fh, fc}} {
		subj := "rn.fed.echo." + strings.ReplaceAll(dir.name, " ", "-")
		sub, err := dir.reply.Subscribe(subj, func(m *nats.Msg) { _ = m.Respond(append([]byte("re:"), m.Data...)) })
		if err != nil {
			t.Fatal(err)
		}
		_ = dir.reply.Flush()
		var reply *nats.Msg
		testmesh.CheckFor(t, 10*time.Second, 50*time.Millisecond, func() error {
			reply, err = dir.requester.Request(subj, []byte("hi"), time.Second)
			return err
		})
		if string(reply.Data) != "re:hi" || !strings.HasPrefix(reply.Subject, subjects.InboxRoot+".") {
			t.Fatalf("%s: reply %q on %s", dir.name, reply.Data, reply.Subject)
		}
		_ = sub.Unsubscribe()
	}

	// Heartbeats: the hub listens for the child's; once the child's own
	// server has carried two beats of node 3.12.7.1 after the hub's
	// interest was in place, a probe sent behind them arrives alone.
	hbs := make(chan *nats.Msg, 64)
	hs, err := fh.ChanSubscribe("rn.3.12.7.*.evt.hb", hbs)
	if err != nil {
		t.Fatal(err)
	}
	defer hs.Unsubscribe()
	if testmesh.Crosses(t, fc, fh, "rn.fed.hb-sync") != true {
		t.Fatal("sync did not cross")
	}
	local := make(chan *nats.Msg, 64)
	ls, err := fc.ChanSubscribe("rn.3.12.7.1.evt.hb", local)
	if err != nil {
		t.Fatal(err)
	}
	defer ls.Unsubscribe()
	for i := 0; i < 2; i++ {
		select {
		case <-local:
		case <-time.After(10 * time.Second):
			t.Fatal("no heartbeat from 3.12.7.1 on its own server")
		}
	}
	if testmesh.Crosses(t, fc, fh, "rn.fed.hb-probe") != true {
		t.Fatal("probe did not cross")
	}
	if n := len(hbs); n != 0 {
		m := <-hbs
		t.Fatalf("%d heartbeats crossed to the hub, e.g. %s", n, m.Subject)
	}
}

// TestFedLeafLinkBlackholeNoticed puts a TCP proxy between a child node
// and its hub, then drops every byte without closing: both ends must see
// the link down (leaf pings), and it comes back once the proxy forwards
// again. The detection and heal times are logged, not asserted.
func TestFedLeafLinkBlackholeNoticed(t *testing.T) {
	hub := testmesh.StartSwarm(t, 1, "3.12.1", testmesh.AsHub())
	proxy := testmesh.NewProxy(t, hub.LeafAddrs()[0])
	tok := hub.FederationToken(time.Minute, "3.12.7")
	child := testmesh.StartSwarm(t, 1, "3.12.7", testmesh.WithFederate([]string{proxy.Addr()}, tok))
	child.WaitLinked(30 * time.Second)
	c, h := child.Node(0), hub.Node(0)
	inbound := func() int {
		k := 0
		for _, l := range h.LeafLinks() {
			if l.Up && !l.Outbound {
				k++
			}
		}
		return k
	}
	testmesh.CheckFor(t, 10*time.Second, 10*time.Millisecond, func() error {
		if inbound() != 1 {
			return fmt.Errorf("hub has %d inbound links", inbound())
		}
		return nil
	})

	proxy.Blackhole()
	began := time.Now()
	var childSaw, hubSaw time.Duration
	testmesh.CheckFor(t, 30*time.Second, 10*time.Millisecond, func() error {
		if childSaw == 0 && c.ParentPrefix() == "" {
			childSaw = time.Since(began)
		}
		if hubSaw == 0 && inbound() == 0 {
			hubSaw = time.Since(began)
		}
		if childSaw == 0 || hubSaw == 0 {
			return fmt.Errorf("link still up (child %v, hub %v)", childSaw, hubSaw)
		}
		return nil
	})
	t.Logf("silent leaf drop noticed: child side after %v, hub side after %v (ping %v × %d outstanding)", childSaw.Round(time.Millisecond),
		hubSaw.Round(time.Millisecond), time.Second, 3)
	var down *node.LeafLink
	for _, l := range c.LeafLinks() {
		if !l.Up && l.Outbound {
			down = &l
		}
	}
	if down == nil || down.Swarm != "3.12.1" || down.Since.Before(began) {
		t.Fatalf("child's links after the drop: %+v", c.LeafLinks())
	}

	proxy.Heal()
	healed := time.Now()
	child.WaitLinked(30 * time.Second)
	t.Logf("leaf link back %v after the heal", time.Since(healed).Round(time.Millisecond))
}

// TestFedRestartWithoutFlagsRelinks restarts a child node with no
// federation flags and no chevron: it reads them from its data dir
// (FederationFile, mode 0600) and links again.
func TestFedRestartWithoutFlagsRelinks(t *testing.T) {
	t.Cleanup(func() { testmesh.CheckNoLeaks(t) })
	hub := testmesh.StartSwarm(t, 1, "3.12.1", testmesh.AsHub())
	child := testmesh.StartChild(t, hub, 1, "3.12.7")
	dir := child.Node(0).DataDir()
	st, err := os.Stat(filepath.Join(dir, node.FederationFile))
	if err != nil || st.Mode().Perm() != 0o600 {
		t.Fatalf("%s: %v, mode %v; want 0600", node.FederationFile, err, st.Mode().Perm())
	}
	nd := child.RestartWith(0, func(o *node.Options) {
		o.Federate, o.FederateToken, o.Chevron = nil, "", ""
	})
	if !nd.Federated() || nd.Domain() != "rn-3-12-7" || nd.Chevron().String() != "3.12.7.1" {
		t.Fatalf("after restart: federated %v domain %q chevron %s", nd.Federated(), nd.Domain(), nd.Chevron())
	}
	child.WaitLinked(30 * time.Second)
}

// TestFedOptionsRefused lists federation settings a node refuses, before
// anything starts (New) or once it has read its data dir (Start), each
// with an error naming what was wrong.
func TestFedOptionsRefused(t *testing.T) {
	secret := make([]byte, trust.SecretSize)
	tok := func(hub, bound string) string {
		spec := trust.FedSpec{Hub: mustChev(t, hub)}
		if bound != "" {
			spec.Bound = mustChev(t, bound)
		}
		s, _, err := trust.IssueFedToken(secret, spec, time.Hour, time.Now())
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	join, _, err := trust.IssueToken(secret, time.Hour, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	parent := []string{"127.0.0.1:7422"}
	for _, tc := range []struct {
		name    string
		o       node.Options
		atStart bool
		says    string
	}{
		{"bad leaf listen", node.Options{Chevron: "3.12.1.1", LeafListen: "nohost"}, false, "--leaf-listen"},
		{"parent without port", node.Options{Chevron: "3.12.7.1", Federate: []string{"hub1"}, FederateToken: tok("3.12.1", "")}, false, "--federate"},
		{"join token", node.Options{Chevron: "3.12.7.1", Federate: parent, FederateToken: join}, false, "--federate-token"},
		{"3-token chevron", node.Options{Chevron: "3.12.7", LeafListen: "127.0.0.1:0"}, false, "4 tokens"},
		{"flat chevron", node.Options{Chevron: "2", Federate: parent, FederateToken: tok("3.12.1", "")}, false, "4 tokens"},
		{"swarm clash", node.Options{Chevron: "3.12.7.1", LeafListen: "127.0.0.1:0", Swarm: "lab"}, false, "rn-3-12-7"},
		{"no token", node.Options{Chevron: "3.12.7.1", Federate: parent}, true, "needs --federate-token"},
		{"token alone", node.Options{Chevron: "3.12.7.1", FederateToken: tok("3.12.1", "")}, true, "without --federate"},
		{"no chevron", node.Options{LeafListen: "127.0.0.1:0"}, true, "needs --chevron"},
		{"token of another zone", node.Options{Chevron: "4.12.7.1", Federate: parent, FederateToken: tok("3.12.1", "")}, true, "outside zone 4"},
		{"token of its own swarm", node.Options{Chevron: "3.12.1.2", Federate: parent, FederateToken: tok("3.12.1", "")}, true, "own swarm"},
		{"token for another swarm", node.Options{Chevron: "3.12.7.1", Federate: parent, FederateToken: tok("3.12.1", "3.12.8")}, true, "is for swarm 3.12.8"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tc.o.DataDir = t.TempDir()
			tc.o.Listen = "127.0.0.1:0"
			nd, err := node.New(tc.o)
			if !tc.atStart {
				if err == nil || !strings.Contains(err.Error(), tc.says) {
					t.Fatalf("New: %v; want an error saying %q", err, tc.says)
				}
				return
			}
			if err != nil {
				t.Fatalf("New: %v", err)
			}
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			err = nd.Start(ctx)
			nd.Kill()
			if err == nil || !strings.Contains(err.Error(), tc.says) {
				t.Fatalf("Start: %v; want an error saying %q", err, tc.says)
			}
		})
	}
}

func mustChev(t *testing.T, s string) subjects.Chevron {
	t.Helper()
	c, err := subjects.Parse(s)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// TestFedThreeLevelTree links a zone hub 3.1.1, a region hub 3.12.1 (a
// child of the zone and a hub itself) and a swarm 3.12.7 under the region,
// one node each: the region hub admits only its region, authority pins
// accumulate down the tree, and federated subjects cross both hops.
func TestFedThreeLevelTree(t *testing.T) {
	zone := testmesh.StartSwarm(t, 1, "3.1.1", testmesh.AsHub())
	region := testmesh.StartChild(t, zone, 1, "3.12.1", testmesh.AsHub())
	swarm := testmesh.StartChild(t, region, 1, "3.12.7")
	r, s := region.Node(0), swarm.Node(0)
	if !r.IsHub() || r.ParentPrefix() != "3.1.1" || s.ParentPrefix() != "3.12.1" {
		t.Fatalf("region hub %v parent %q; swarm parent %q", r.IsHub(), r.ParentPrefix(), s.ParentPrefix())
	}
	if pins, want := s.AuthorityPins(), []string{r.Founder(), zone.Node(0).Founder()}; !slices.Equal(pins, want) {
		t.Fatalf("swarm's authority pins %v, want the region's then the zone's founder %v", pins, want)
	}
	if got := testmesh.Crosses(t, featureConn(t, s), featureConn(t, zone.Node(0)), "rn.fed.3.cmd.ping"); !got {
		t.Fatal("rn.fed.3.cmd.ping did not cross swarm → region → zone")
	}
	if got := testmesh.Crosses(t, featureConn(t, zone.Node(0)), featureConn(t, s), "rn.fed.3.12.7.cmd.ping"); !got {
		t.Fatal("rn.fed.3.12.7.cmd.ping did not cross zone → region → swarm")
	}
	// A region hub admits swarms of its region only.
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	var tr node.TokenReply
	err := region.Client(0).Query(ctx, subjects.QueryToken, node.TokenRequest{TTLMs: time.Minute.Milliseconds(), Federate: true, Prefix: "3.14.2"}, &tr)
	if err == nil || !strings.Contains(err.Error(), "outside this hub's scope 3.12") {
		t.Fatalf("region hub issued a token for 3.14.2: %v", err)
	}
}

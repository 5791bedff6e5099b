//go:build e2e

package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/robonet-mesh/robonet/federation"
	"github.com/robonet-mesh/robonet/trust"
	"github.com/robonet-mesh/robonet/wire"
)

// leafPort is where hub swarms' nodes accept child swarms.
const leafPort = "7422"

// fedSwarm is one swarm of a federation lab: its prefix (zone.region.swarm)
// and its nodes, numbered 1… under it.
type fedSwarm struct {
	prefix string
	nodes  []*node
	hub    bool
}

// leafAddrs is every node's leaf address: what a child's --federate lists.
func (s *fedSwarm) leafAddrs() string {
	var a []string
	for _, n := range s.nodes {
		a = append(a, net.JoinHostPort(n.host.ip, leafPort))
	}
	return strings.Join(a, ",")
}

// fedToken asks the hub swarm's first node (its founder: the operator key in
// its data dir is an admin) for a one-time federation token.
func (s *fedSwarm) fedToken(t *testing.T) string {
	t.Helper()
	var tr struct {
		Token string `json:"token"`
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := s.nodes[0].cli(ctx, &tr, "token", "create", "--federate", "--ttl", "15m"); err != nil {
		t.Fatalf("federation token from %s: %v", s.prefix, err)
	}
	if !strings.HasPrefix(tr.Token, "rntok_") {
		t.Fatalf("federation token from %s: %q", s.prefix, tr.Token)
	}
	return tr.Token
}

// startFedSwarm starts a swarm on hosts under prefix: a hub when hub is
// set, a child of parent when parent is not nil (with a token minted by
// it), and waits until every node is up.
func startFedSwarm(t *testing.T, hosts []*host, prefix string, hub bool, parent *fedSwarm) *fedSwarm {
	t.Helper()
	s := &fedSwarm{prefix: prefix, hub: hub}
	secret, err := trust.GenerateSecret() // every swarm its own
	if err != nil {
		t.Fatal(err)
	}
	var join []string
	for _, h := range hosts {
		join = append(join, net.JoinHostPort(h.ip, clusterPort))
	}
	var extra []string
	if hub {
		extra = append(extra, "--leaf-listen", "0.0.0.0:"+leafPort)
	}
	if parent != nil {
		extra = append(extra, "--federate", parent.leafAddrs(), "--federate-token", parent.fedToken(t))
	}
	for i, h := range hosts {
		name := "s" + strings.ReplaceAll(prefix, ".", "-") + fmt.Sprintf("n%d", i+1)
		args := append([]string{"--chevron", fmt.Sprintf("%s.%d", prefix, i+1)}, extra...)
		if i == 0 {
			args = append(args, "--founder")
		}
		n := &node{t: t, host: h, name: name, data: h.lab.dir + "/" + name, join: strings.Join(join, ","), args: args,
			noSwarm: true, secret: secret, standalone: len(hosts) == 1}
		t.Cleanup(n.cleanup)
		n.start()
		s.nodes = append(s.nodes, n)
	}
	for _, n := range s.nodes {
		n.waitReady(upTimeout)
	}
	return s
}

// fedRun runs `robonet run <args> --json` on n and decodes the federated
// result whatever the exit status (2 when not every swarm and node was ok).
func fedRun(t *testing.T, n *node, args ...string) (federation.Result, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	full := append(append([]string{"run"}, args...), "--json", "--server", "nats://127.0.0.1:"+clientPort, "--data", n.data)
	out, err := n.host.exec(ctx, full...)
	var res federation.Result
	if jerr := json.Unmarshal(out, &res); jerr != nil {
		return res, fmt.Errorf("robonet run %s on %s: %v (output %q: %v)", strings.Join(args, " "), n.name, err, clip(out), jerr)
	}
	return res, nil
}

// swarmStatus is swarm p's status in res ("" when absent).
func swarmStatus(res federation.Result, p string) string {
	for _, s := range res.Swarms {
		if s.Swarm == p {
			return s.Status
		}
	}
	return ""
}

// allComplete checks that every swarm in want answered in full (the
// requester's own as local) and that n nodes were ok.
func allComplete(res federation.Result, want []string, n int) error {
	for _, p := range want {
		if st := swarmStatus(res, p); st != federation.SwarmComplete && st != federation.SwarmLocal {
			return fmt.Errorf("swarm %s is %q: %s", p, st, res.Summary.Line)
		}
	}
	if res.Summary.OK != n || res.Summary.Total != n {
		return fmt.Errorf("want %d of %d ok: %s", n, n, res.Summary.Line)
	}
	return nil
}

// dropLeaf silently drops the host's leaf traffic, both ways: the swarm's
// routes and its local clients keep working, only its link to the parent
// goes quiet (no FIN, no RST), as on a cut WAN link.
func (h *host) dropLeaf(on bool) {
	h.lab.t.Helper()
	op := "-I"
	if !on {
		op = "-D"
	}
	h.iptables(op, "OUTPUT", "-p", "tcp", "--dport", leafPort, "-j", "DROP")
	h.iptables(op, "INPUT", "-p", "tcp", "--sport", leafPort, "-j", "DROP")
}

// TestE2EFederation builds a federation of real processes in network
// namespaces — a zone hub (3.1.1), two region hubs (3.12.1 with two nodes,
// 3.14.1), four swarms of one or two nodes under them — and checks what the
// README promises: `run 3 ping` from the zone accounts for every node of
// every swarm, another swarm answers as one logical node, `nodes --all` and
// `federation status` show the whole tree, a swarm's own admin is denied in
// a sibling swarm, a silently cut leaf link shows `partitioned` while the
// cut swarm keeps working, and after the heal (no restarts) the link is back
// and the events made during the cut reach the hub, none lost or repeated.
func TestE2EFederation(t *testing.T) {
	l := newLab(t, 9)
	h := l.hosts
	began := time.Now()
	zone := startFedSwarm(t, h[0:1], "3.1.1", true, nil)
	ra := startFedSwarm(t, h[1:3], "3.12.1", true, zone)
	rb := startFedSwarm(t, h[3:4], "3.14.1", true, zone)
	s127 := startFedSwarm(t, h[4:6], "3.12.7", false, ra)
	s128 := startFedSwarm(t, h[6:7], "3.12.8", false, ra)
	s147 := startFedSwarm(t, h[7:8], "3.14.7", false, rb)
	_ = startFedSwarm(t, h[8:9], "3.14.8", false, rb)
	began = time.Now()
	swarms := []string{"3.1.1", "3.12.1", "3.14.1", "3.12.7", "3.12.8", "3.14.7", "3.14.8"}
	z := zone.nodes[0]

	// Reach: the zone's admin (its founder) is an admin in every swarm
	// below; one run accounts for all nine nodes, no discovery wait.
	var res federation.Result
	last := ""
	d := poll(t, settleTimeout, "run 3 ping from the zone reaches every node", func() error {
		err := func() error {
			var err error
			if res, err = fedRun(t, z, "3", "ping", "--timeout", "5s"); err != nil {
				return err
			}
			return allComplete(res, swarms, 9)
		}()
		if err != nil && err.Error() != last {
			last = err.Error()
			t.Logf("%s after the last start: %v", time.Since(began).Round(time.Millisecond), err)
		}
		return err
	})
	record(t, "federation: 7 swarms started → run 3 ping all ok", time.Since(began), "")
	t.Logf("run 3 ping from the zone: %s (ready %s after the last start)", res.Summary.Line, d.Round(time.Millisecond))
	for _, r := range res.Results {
		if !strings.HasPrefix(r.Chevron, r.Swarm+".") {
			t.Errorf("node %s reported under swarm %s", r.Chevron, r.Swarm)
		}
	}

	// Another swarm answers as one logical node.
	res, err := fedRun(t, z, "3.12.7", "status")
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Results) != 1 || res.Results[0].Chevron != "3.12.7" || res.Results[0].Status != wire.StatusOK {
		t.Fatalf("run 3.12.7 status: want one logical node 3.12.7 ok, got %+v", res.Results)
	}

	// The federated registry and the tree.
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	poll(t, 30*time.Second, "nodes --all on the zone lists all nine with their swarms", func() error {
		var rows []wire.FedMember
		if err := z.cli(ctx, &rows, "nodes", "--all"); err != nil {
			return err
		}
		got := map[string]string{}
		for _, r := range rows {
			got[r.Chevron] = r.Swarm
		}
		for _, sw := range []*fedSwarm{zone, ra, rb, s127, s128, s147} {
			for i := range sw.nodes {
				c := fmt.Sprintf("%s.%d", sw.prefix, i+1)
				if got[c] != sw.prefix {
					return fmt.Errorf("%s: swarm %q, want %s (rows %v)", c, got[c], sw.prefix, got)
				}
			}
		}
		if len(rows) != 9 {
			return fmt.Errorf("%d rows, want 9: %v", len(rows), got)
		}
		return nil
	})
	var view federation.View
	if err := z.cli(ctx, &view, "federation", "status"); err != nil {
		t.Fatal(err)
	}
	var seen []string
	for _, s := range view.Swarms {
		seen = append(seen, s.Prefix)
		if s.Partitioned() {
			t.Errorf("federation status on the zone: %s partitioned while every link is up", s.Prefix)
		}
	}
	for _, p := range swarms {
		if !slices.Contains(seen, p) {
			t.Errorf("federation status on the zone does not list %s (lists %v)", p, seen)
		}
	}

	// Authority flows down only: 3.12.8's own admin is refused by its
	// sibling and its parent, its own swarm answers.
	res, err = fedRun(t, s128.nodes[0], "3.12", "ping", "--timeout", "5s")
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range []string{"3.12.7", "3.12.1"} {
		if st := swarmStatus(res, p); st != federation.SwarmRefused {
			t.Errorf("3.12.8's admin in %s: %q, want refused (%s)", p, st, res.Summary.Line)
		}
	}
	if st := swarmStatus(res, "3.12.8"); st != federation.SwarmLocal || res.Summary.OK != 1 {
		t.Errorf("3.12.8's admin at home: %q, %s", st, res.Summary.Line)
	}

	// Partition: drop 3.14.7's leaf traffic silently.
	local, hub := s147.nodes[0], rb.nodes[0]
	agents := map[*node]*agent{}
	for _, n := range []*node{local, hub} {
		// Reads JetStream only (nothing signed), so sharing the key with
		// the CLI's commands is harmless.
		agents[n] = startAgent(t, n, "events-"+n.name, filepath.Join(n.data, "operator.nk"))
	}
	events := func(n *node, stream string) (int, int) {
		t.Helper()
		out := agents[n].must(t, agentOp{Op: "stream", Bucket: stream, Subject: "rn.3.14.7.>", TimeoutMs: 20000})
		return out.Count, out.Dups
	}
	cut := h[7]
	cut.dropLeaf(true)
	t0 := time.Now()
	d = poll(t, detectTimeout, "the zone sees 3.14.7 partitioned", func() error {
		r, err := fedRun(t, z, "3.14", "ping", "--timeout", "3s")
		if err != nil {
			return err
		}
		if st := swarmStatus(r, "3.14.7"); st != federation.SwarmPartitioned {
			return fmt.Errorf("3.14.7 is %q", st)
		}
		res = r
		return nil
	})
	record(t, "federation: leaf link silently cut → partitioned at the zone", d, "≤ 8 s")
	if st := swarmStatus(res, "3.14.8"); st != federation.SwarmComplete {
		t.Errorf("3.14.8 during 3.14.7's partition: %q", st)
	}
	// The cut swarm works on: local commands (each an audit event kept in
	// its rn_events, a JetStream write).
	for i := 0; i < 20; i++ {
		r, err := fedRun(t, local, "3.14.7", "ping")
		if err != nil {
			t.Fatal(err)
		}
		if r.Summary.OK != 1 {
			t.Fatalf("local run during the partition: %s", r.Summary.Line)
		}
	}
	during, _ := events(local, "rn_events")
	t.Logf("3.14.7 keeps %d events in rn_events during the cut", during)

	// Heal, without restarting anything.
	cut.dropLeaf(false)
	t1 := time.Now()
	d = poll(t, healTimeout, "the zone reaches 3.14.7 again", func() error {
		r, err := fedRun(t, z, "3.14", "ping", "--timeout", "3s")
		if err != nil {
			return err
		}
		return allComplete(r, []string{"3.14.1", "3.14.7", "3.14.8"}, 3)
	})
	record(t, "federation: heal → first cross-swarm run all ok", d, "≤ 2 s + 2 s")
	t.Logf("partition lasted %s", t1.Sub(t0).Round(time.Millisecond))
	d = poll(t, healTimeout, "3.14.7's events reach its hub's rn_fed_events, none lost or repeated", func() error {
		want, _ := events(local, "rn_events")
		got, dups := events(hub, "rn_fed_events")
		if dups > 0 {
			t.Fatalf("%d events repeated at the hub", dups)
		}
		if got != want || want < during {
			return fmt.Errorf("hub has %d of 3.14.7's events, 3.14.7 has %d", got, want)
		}
		return nil
	})
	record(t, "federation: heal → hub has every event of the cut swarm", d, "")
}

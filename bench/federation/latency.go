package main

import (
	"context"
	"fmt"
	"log/slog"
	"strings"
	"time"

	"github.com/robonet-mesh/robonet/bench/internal/scope"
	"github.com/robonet-mesh/robonet/federation"
	"github.com/robonet-mesh/robonet/internal/testmesh"
	"github.com/robonet-mesh/robonet/mesh"
	"github.com/robonet-mesh/robonet/subjects"
)

// Prefixes of the latency topology: the hub, the child swarm every gather
// targets, and the sibling the two-hop gathers start from.
const (
	hubPrefix     = "3.12.1"
	targetPrefix  = "3.12.7"
	siblingPrefix = "3.12.8"
)

// latency is one swarm size's gather figures.
type latency struct {
	nodes, full          int // nodes of the target swarm, of which full nodes
	inSwarm, oneHop, two []time.Duration
	// preHub and preSibling are the reads before a federated gather (the
	// directory, the federated registry, the registry) from each side.
	preHub, preSibling []time.Duration
	okIn, okOne, okTwo int           // gathers in which every node answered ok (and the swarm was complete)
	startup            time.Duration // from the first node's start to every node answering
	linkRTT            time.Duration // the median RTT nats-server measured on the hub's leaf links, at the end
}

// measureLatency starts a hub of one node, a child swarm of n nodes
// (targetPrefix: full nodes, the rest responders) and a sibling child
// of one node (siblingPrefix), every link through a delay proxy of rtt
// when rtt > 0, and gathers ping from the child's nodes: from inside the
// child (mesh GatherSet), from the hub (one leaf hop, through the child's
// ambassador) and from the sibling (two hops), rounds times each after
// warm rounds not counted. The three kinds take turns going first in a
// round, so the audit writes one gather leaves behind weigh on each kind
// alike.
func measureLatency(s *scope.Scope, n, full, rounds, warm int, rtt time.Duration, log *slog.Logger) latency {
	began := time.Now()
	full = min(full, n)
	hub := testmesh.StartSwarm(s, 1, hubPrefix, testmesh.AsHub())
	parents := leafTargets(s, hub, rtt)
	target := startChild(s, hub, parents, full, targetPrefix)
	sibling := startChild(s, hub, parents, 1, siblingPrefix)
	hubF := startFeatures(s, hub, log)
	targetF := startFeatures(s, target, log)
	siblingF := startFeatures(s, sibling, log)
	waitServing(s, targetF)
	waitHears(s, hubF[0], targetPrefix, siblingPrefix)
	waitHears(s, siblingF[0], targetPrefix)
	target.WaitAlive(60 * time.Second)
	startResponders(s, target, targetPrefix, full+1, n)
	// Requesters: the child's own founder inside it; two admins of the
	// hub's (inherited by the children), one on the hub, one on the
	// sibling. Each key has its own chain.
	inside := target.Client(0)
	fromHub := hubUser(s, hub, "bench-hub", hub.Node(0), target, sibling)
	fromSibling := hubUser(s, hub, "bench-sibling", sibling.Node(0), target, sibling)
	waitFedNodes(s, fromHub, targetPrefix, n)
	waitFedNodes(s, fromSibling, targetPrefix, n)
	l := latency{nodes: n, full: full}

	ctx := context.Background()
	hp, _ := subjects.ParseSwarmPrefix(hubPrefix)
	sp, _ := subjects.ParseSwarmPrefix(siblingPrefix)
	sel, _ := subjects.ParseSelector(targetPrefix)
	// Then until all three kinds answered in full once.
	check(s, 60*time.Second, func() error {
		_, ok := gatherInSwarm(ctx, s, inside, sel, n)
		_, _, ok1 := gatherFederated(ctx, s, fromHub, hp, n)
		_, _, ok2 := gatherFederated(ctx, s, fromSibling, sp, n)
		if !ok || !ok1 || !ok2 {
			return fmt.Errorf("not every node answered: in-swarm %v, from the hub %v, from the sibling %v", ok, ok1, ok2)
		}
		return nil
	})
	l.startup = time.Since(began)
	kinds := []func(){
		func() {
			d, ok := gatherInSwarm(ctx, s, inside, sel, n)
			l.inSwarm, l.okIn = append(l.inSwarm, d), l.okIn+b2i(ok)
		},
		func() {
			d, pre, ok := gatherFederated(ctx, s, fromHub, hp, n)
			l.oneHop, l.preHub, l.okOne = append(l.oneHop, d), append(l.preHub, pre), l.okOne+b2i(ok)
		},
		func() {
			d, pre, ok := gatherFederated(ctx, s, fromSibling, sp, n)
			l.two, l.preSibling, l.okTwo = append(l.two, d), append(l.preSibling, pre), l.okTwo+b2i(ok)
		},
	}
	for r := 0; r < warm+rounds; r++ {
		if r == warm {
			l = latency{nodes: l.nodes, full: l.full, startup: l.startup}
		}
		for k := range kinds {
			kinds[(r+k)%len(kinds)]()
		}
	}
	var rtts []time.Duration
	for _, lk := range hub.Node(0).LeafLinks() {
		if lk.Up {
			rtts = append(rtts, lk.RTT)
		}
	}
	l.linkRTT = pct(rtts, 0.5)
	return l
}

func b2i(b bool) int {
	if b {
		return 1
	}
	return 0
}

// gatherInSwarm is `robonet run 3.12.7 ping` from inside 3.12.7: the
// registry read first (not timed), then the gather (timed).
func gatherInSwarm(ctx context.Context, s *scope.Scope, c *mesh.Client, sel subjects.Selector, n int) (time.Duration, bool) {
	members, err := c.Nodes(ctx)
	if err != nil {
		s.Fatalf("in-swarm registry read: %v", err)
	}
	t0 := time.Now()
	res, err := c.GatherSet(ctx, mesh.GatherRequest{Selector: sel.String(), Verb: "ping", Timeout: 10 * time.Second}, sel, members, nil)
	d := time.Since(t0)
	if err != nil {
		s.Fatalf("in-swarm gather: %v", err)
	}
	return d, res.Summary.OK == n && res.Summary.Total == n
}

// gatherFederated is `robonet run 3.12.7 ping` from swarm local, built as
// the CLI builds it (cmd/robonet/fedrun.go): the directory, the federated
// registry's keys and the local registry read first (timed apart, pre),
// then federation.Gather (timed).
func gatherFederated(ctx context.Context, s *scope.Scope, c *mesh.Client, local subjects.Chevron, n int) (d, pre time.Duration, ok bool) {
	t0 := time.Now()
	req, err := cliRequest(ctx, c, local, targetPrefix, 10*time.Second)
	pre = time.Since(t0)
	if err != nil {
		s.Fatalf("federated gather from %s: %v", local, err)
	}
	t1 := time.Now()
	res, err := federation.Gather(ctx, c, req, nil)
	d = time.Since(t1)
	if err != nil {
		s.Fatalf("federated gather from %s: %v", local, err)
	}
	sw := swarmResult(res, targetPrefix)
	return d, pre, res.OK() && sw.Status == federation.SwarmComplete && sw.Answered == n
}

// cliRequest builds a federated request for selector as `robonet run`
// does: the directory view of the connected node, the federated registry's
// keys (when it answers) and the local registry.
func cliRequest(ctx context.Context, c *mesh.Client, local subjects.Chevron, selector string, timeout time.Duration) (federation.Request, error) {
	view, err := federation.ReadDirectory(ctx, c)
	if err != nil {
		return federation.Request{}, err
	}
	var nodeKey func(string) (string, bool)
	if fn, err := federation.ReadNodes(ctx, c); err == nil {
		nodeKey = fn.KeyOf()
	}
	members, err := c.Nodes(ctx)
	if err != nil {
		return federation.Request{}, err
	}
	return federation.Request{GatherRequest: mesh.GatherRequest{Selector: selector, Verb: "ping", Timeout: timeout},
		Local: local, Members: members, Swarms: view.Swarms, NodeKey: nodeKey}, nil
}

// waitFedNodes waits until the federated registry as c's node serves it
// lists n nodes under prefix. Until then `robonet run` from there drops the
// swarm's answers (keys it cannot check) and waits out its deadline.
func waitFedNodes(s *scope.Scope, c *mesh.Client, prefix string, n int) {
	check(s, 60*time.Second, func() error {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		fn, err := federation.ReadNodes(ctx, c)
		if err != nil {
			return err
		}
		k := 0
		for _, m := range fn.Nodes {
			if strings.HasPrefix(m.Chevron, prefix+".") && m.Pubkey != "" {
				k++
			}
		}
		if k != n {
			return fmt.Errorf("the federated registry lists %d of the %d nodes of %s", k, n, prefix)
		}
		return nil
	})
}

func swarmResult(res federation.Result, prefix string) federation.SwarmResult {
	for _, sw := range res.Swarms {
		if sw.Swarm == prefix {
			return sw
		}
	}
	return federation.SwarmResult{}
}

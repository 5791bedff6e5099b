package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/robonet-mesh/robonet/bench/internal/scope"
	"github.com/robonet-mesh/robonet/federation"
	"github.com/robonet-mesh/robonet/internal/testmesh"
	"github.com/robonet-mesh/robonet/mesh"
	"github.com/robonet-mesh/robonet/node"
	"github.com/robonet-mesh/robonet/subjects"
	"github.com/robonet-mesh/robonet/wire"
)

// Sizes of the partition topology.
const (
	partHub   = 3 // hub nodes: rn_fed_events is R3, so the catch-up kick has a leader to move to
	partChild = 3 // child nodes, each with its own leaf link, all through one proxy
)

// cycle is one partition and heal: the durations of the first group are
// from the blackhole, those of the second from the heal; 0 means not seen
// before the deadline.
type cycle struct {
	dirDown    time.Duration // the hub's directory shows the child partitioned
	gatherDown time.Duration // a federated gather from the hub returned partitioned for it
	gatherTook time.Duration // how long that gather took
	hubLink    time.Duration // the hub holds no link from the child
	childLink  time.Duration // no child node holds a link to the hub
	held       time.Duration // blackhole to heal

	firstLink time.Duration // the hub holds a link from the child again
	linksUp   time.Duration // every child node linked again, and the hub holds each link
	kickAt    time.Duration // the hub's leader stepped the aggregates' leaders down (0: it did not)
	dirUp     time.Duration // the hub's directory shows the child up
	firstOK   time.Duration // a federated gather from the hub came back complete, every node ok
	caughtUp  time.Duration // the hub's rn_fed_events holds every event the child had at the heal
	produced  int           // events the child's rn_events took during the partition
	atHeal    uint64        // the child's rn_events last sequence at the heal
	lost, dup int           // of the child's sequences 1..atHeal at the hub: missing, extra copies
	kicks     uint64        // catch-up kicks (stream leader step-downs) the hub's leader sent in this cycle
}

// partitionTopology is a hub of partHub nodes and a child of partChild
// whose every leaf link goes through one testmesh.Proxy (and, with rtt, a
// delay proxy behind it) to the hub's first node.
type partitionTopology struct {
	hub, child       *testmesh.Swarm
	hubF, childF     []*features
	proxy            *testmesh.Proxy
	fromHub, inChild *mesh.Client
	hubJS, childJS   jetstream.JetStream
	local            subjects.Chevron
}

func startPartitionTopology(s *scope.Scope, rtt time.Duration, log *slog.Logger) *partitionTopology {
	p := &partitionTopology{}
	p.hub = testmesh.StartSwarm(s, partHub, hubPrefix, testmesh.AsHub())
	target := p.hub.Node(0).LeafAddr()
	if rtt > 0 {
		target = startDelayProxy(s, target, rtt/2).addr()
	}
	p.proxy = testmesh.NewProxy(s, target)
	p.child = startChild(s, p.hub, []string{p.proxy.Addr()}, partChild, targetPrefix)
	p.hubF = startFeatures(s, p.hub, log)
	p.childF = startFeatures(s, p.child, log)
	waitServing(s, p.childF)
	waitHears(s, p.hubF[0], targetPrefix)
	p.child.WaitAlive(60 * time.Second)
	p.fromHub = hubUser(s, p.hub, "bench-hub", p.hub.Node(0), p.child)
	waitFedNodes(s, p.fromHub, targetPrefix, partChild)
	p.inChild = p.child.Client(0)
	p.local, _ = subjects.ParseSwarmPrefix(hubPrefix)
	p.hubJS = featureJS(s, p.hub.Node(0))
	p.childJS = featureJS(s, p.child.Node(0))
	// The hub's leader creates rn_fed_events once it hears the child, and
	// sources what the child has had since it started.
	check(s, 60*time.Second, func() error {
		last, err := lastSeq(p.childJS, federation.StreamEvents)
		if err != nil {
			return err
		}
		have, err := msgs(p.hubJS, federation.StreamFedEvents)
		if err != nil {
			return err
		}
		if have < last {
			return fmt.Errorf("the hub's %s has %d of the child's %d events", federation.StreamFedEvents, have, last)
		}
		return nil
	})
	return p
}

func featureJS(s *scope.Scope, nd *node.Node) jetstream.JetStream {
	nc, err := nd.FeatureConn("bench")
	if err != nil {
		s.Fatalf("feature connection to %s: %v", nd.Chevron(), err)
	}
	s.Cleanup(nc.Close)
	js, err := jetstream.New(nc)
	if err != nil {
		s.Fatalf("jetstream on %s: %v", nd.Chevron(), err)
	}
	return js
}

func streamState(js jetstream.JetStream, stream string) (jetstream.StreamState, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	st, err := js.Stream(ctx, stream)
	if err != nil {
		return jetstream.StreamState{}, fmt.Errorf("%s: %w", stream, err)
	}
	return st.CachedInfo().State, nil
}

func lastSeq(js jetstream.JetStream, stream string) (uint64, error) {
	st, err := streamState(js, stream)
	return st.LastSeq, err
}

func msgs(js jetstream.JetStream, stream string) (uint64, error) {
	st, err := streamState(js, stream)
	return st.Msgs, err
}

// linkState is what the poller watches: the hub's directory entry for the
// child and the leaf links at both ends.
type linkState struct {
	dirUp, hubLinks, childLinks int // hubLinks: the hub's links from the child; childLinks: child nodes linked
	kicks                       uint64
}

func (p *partitionTopology) state() linkState {
	var st linkState
	if sw, ok := p.hubF[0].dir.Swarm(targetPrefix); ok && sw.Link == federation.LinkUp {
		st.dirUp = 1
	}
	for _, nd := range p.hub.Live() {
		for _, l := range nd.LeafLinks() {
			if l.Up && !l.Outbound && l.Swarm == targetPrefix {
				st.hubLinks++
			}
		}
	}
	for _, nd := range p.child.Live() {
		if nd.ParentPrefix() != "" {
			st.childLinks++
		}
	}
	st.kicks = p.kicks()
	return st
}

// watch polls the link state every 10 ms from start and records, for each
// condition, the first time it held; stop ends it.
type watch struct {
	mu    sync.Mutex
	first map[string]time.Duration
	stop  chan struct{}
	done  chan struct{}
}

func (p *partitionTopology) watch(start time.Time, conds map[string]func(linkState) bool) *watch {
	w := &watch{first: map[string]time.Duration{}, stop: make(chan struct{}), done: make(chan struct{})}
	go func() {
		defer close(w.done)
		t := time.NewTicker(10 * time.Millisecond)
		defer t.Stop()
		for {
			st := p.state()
			at := time.Since(start)
			w.mu.Lock()
			for name, f := range conds {
				if _, seen := w.first[name]; !seen && f(st) {
					w.first[name] = at
				}
			}
			all := len(w.first) == len(conds)
			w.mu.Unlock()
			if all {
				return
			}
			select {
			case <-w.stop:
				return
			case <-t.C:
			}
		}
	}()
	return w
}

// wait waits until every condition was seen or timeout passed, and
// returns the first times seen.
func (w *watch) wait(timeout time.Duration) map[string]time.Duration {
	select {
	case <-w.done:
	case <-time.After(timeout):
		close(w.stop)
		<-w.done
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.first
}

// gatherUntil runs federated gathers of ping on the child from the hub,
// built as the CLI builds them, one after another with timeout each, until
// one satisfies ok or deadline passes; it returns the time from start to
// that gather's return and how long the gather itself took (0, 0 if
// none).
func (p *partitionTopology) gatherUntil(start time.Time, timeout, deadline time.Duration, ok func(federation.Result) bool) (at, took time.Duration) {
	ctx := context.Background()
	for time.Since(start) < deadline {
		req, err := cliRequest(ctx, p.fromHub, p.local, targetPrefix, timeout)
		if err != nil {
			time.Sleep(10 * time.Millisecond)
			continue
		}
		t0 := time.Now()
		res, err := federation.Gather(ctx, p.fromHub, req, nil)
		if err == nil && ok(res) {
			return time.Since(start), time.Since(t0)
		}
		time.Sleep(10 * time.Millisecond)
	}
	return 0, 0
}

func partitioned(res federation.Result) bool {
	return swarmResult(res, targetPrefix).Status == federation.SwarmPartitioned
}

func complete(res federation.Result) bool {
	sw := swarmResult(res, targetPrefix)
	return res.OK() && sw.Status == federation.SwarmComplete && sw.Answered == partChild
}

// produce runs local pings in the child until its rn_events took at least
// n more events (each ping to its nodes is one audit event per node).
func (p *partitionTopology) produce(s *scope.Scope, n int) int {
	ctx := context.Background()
	before := p.childLastSeq(s)
	var members []wire.Member
	check(s, 10*time.Second, func() (err error) {
		if members, err = p.inChild.Nodes(ctx); err != nil {
			return fmt.Errorf("the child's registry during the partition: %w", err)
		}
		return nil
	})
	sel, _ := subjects.ParseSelector(targetPrefix)
	for sent := 0; sent < n; sent += len(members) {
		if _, err := p.inChild.GatherSet(ctx, mesh.GatherRequest{Selector: targetPrefix, Verb: "ping", Timeout: 5 * time.Second}, sel, members, nil); err != nil {
			s.Fatalf("local ping in the child during the partition: %v", err)
		}
	}
	var now uint64
	check(s, 30*time.Second, func() (err error) {
		if now, err = lastSeq(p.childJS, federation.StreamEvents); err != nil {
			return fmt.Errorf("the child's events during the partition: %w", err)
		}
		if now < before+uint64(n) {
			return fmt.Errorf("the child's %s took %d of %d events", federation.StreamEvents, now-before, n)
		}
		return nil
	})
	return int(now - before)
}

// childLastSeq is the child's rn_events last sequence, asked again for up
// to 10 s (a JetStream request may meet a moment without an answer).
func (p *partitionTopology) childLastSeq(s *scope.Scope) uint64 {
	var last uint64
	check(s, 10*time.Second, func() (err error) {
		if last, err = lastSeq(p.childJS, federation.StreamEvents); err != nil {
			return fmt.Errorf("the child's events: %w", err)
		}
		return nil
	})
	return last
}

// runCycle partitions the child for at least hold, producing events
// inside it, heals, and measures.
func (p *partitionTopology) runCycle(s *scope.Scope, events int, hold time.Duration) cycle {
	var c cycle
	kicks := p.kicks()
	// Steady first: linked, heard, answering.
	check(s, 60*time.Second, func() error {
		if st := p.state(); st.dirUp != 1 || st.hubLinks != partChild || st.childLinks != partChild {
			return fmt.Errorf("not steady: %+v", st)
		}
		return nil
	})
	if at, _ := p.gatherUntil(time.Now(), 5*time.Second, 30*time.Second, complete); at == 0 {
		s.Fatal("no complete federated gather before the partition")
	}

	cut := time.Now()
	p.proxy.Blackhole()
	w := p.watch(cut, map[string]func(linkState) bool{
		"dir":   func(st linkState) bool { return st.dirUp == 0 },
		"hub":   func(st linkState) bool { return st.hubLinks == 0 },
		"child": func(st linkState) bool { return st.childLinks == 0 },
	})
	c.gatherDown, c.gatherTook = p.gatherUntil(cut, 500*time.Millisecond, 30*time.Second, partitioned)
	first := w.wait(30 * time.Second)
	c.dirDown, c.hubLink, c.childLink = first["dir"], first["hub"], first["child"]
	c.produced = p.produce(s, events)
	if left := hold - time.Since(cut); left > 0 {
		time.Sleep(left)
	}
	c.atHeal = p.childLastSeq(s)

	heal := time.Now()
	p.proxy.Heal()
	c.held = heal.Sub(cut)
	w = p.watch(heal, map[string]func(linkState) bool{
		"first": func(st linkState) bool { return st.hubLinks > 0 },
		"links": func(st linkState) bool { return st.hubLinks == partChild && st.childLinks == partChild },
		"dir":   func(st linkState) bool { return st.dirUp == 1 },
		"kick":  func(st linkState) bool { return st.kicks > kicks },
	})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		c.caughtUp = p.waitCaughtUp(heal, c.atHeal, 120*time.Second)
	}()
	c.firstOK, _ = p.gatherUntil(heal, time.Second, 60*time.Second, complete)
	wg.Wait()
	// By now the links are usually long up; what has not happened 10 s
	// after the catch-up (a kick, when none was needed) shows as "-".
	first = w.wait(10 * time.Second)
	c.firstLink, c.linksUp, c.dirUp, c.kickAt = first["first"], first["links"], first["dir"], first["kick"]
	var seen map[uint64]int
	check(s, 30*time.Second, func() (err error) {
		if seen, err = originSeqs(p.hubJS); err != nil {
			return fmt.Errorf("reading the hub's %s: %w", federation.StreamFedEvents, err)
		}
		return nil
	})
	for q := uint64(1); q <= c.atHeal; q++ {
		switch k := seen[q]; {
		case k == 0:
			c.lost++
		case k > 1:
			c.dup += k - 1
		}
	}
	c.kicks = p.kicks() - kicks
	return c
}

// waitCaughtUp polls the hub's rn_fed_events every 20 ms until it holds
// at least want messages (sourcing keeps the child's order, so that is
// sequences 1..want when none is lost or doubled, which the caller
// checks); it returns the time from start, 0 after timeout.
func (p *partitionTopology) waitCaughtUp(start time.Time, want uint64, timeout time.Duration) time.Duration {
	for time.Since(start) < timeout {
		if n, err := msgs(p.hubJS, federation.StreamFedEvents); err == nil && n >= want {
			return time.Since(start)
		}
		time.Sleep(20 * time.Millisecond)
	}
	return 0
}

// kicks sums the catch-up kicks the hub's nodes sent (only the leader
// sends).
func (p *partitionTopology) kicks() uint64 {
	var k uint64
	for _, f := range p.hubF {
		k += f.dir.Kicks()
	}
	return k
}

// originSeqs reads the hub's whole rn_fed_events and counts each origin
// sequence of the child's rn_events (from the Nats-Stream-Source header
// nats-server sets on a sourced message: "<source> <seq> …").
func originSeqs(js jetstream.JetStream) (map[uint64]int, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	st, err := js.Stream(ctx, federation.StreamFedEvents)
	if err != nil {
		return nil, err
	}
	total := st.CachedInfo().State.Msgs
	cons, err := st.OrderedConsumer(ctx, jetstream.OrderedConsumerConfig{})
	if err != nil {
		return nil, err
	}
	out := map[uint64]int{}
	for got := uint64(0); got < total; {
		batch, err := cons.Fetch(500, jetstream.FetchMaxWait(5*time.Second))
		if err != nil {
			return nil, err
		}
		n := 0
		for m := range batch.Messages() {
			n++
			got++
			f := strings.Fields(m.Headers().Get("Nats-Stream-Source"))
			if len(f) < 2 {
				return nil, fmt.Errorf("%s message on %s without a source sequence: %q", federation.StreamFedEvents, m.Subject(), m.Headers().Get("Nats-Stream-Source"))
			}
			q, err := strconv.ParseUint(f[1], 10, 64)
			if err != nil {
				return nil, fmt.Errorf("source header %q: %w", f, err)
			}
			out[q]++
		}
		if err := batch.Error(); err != nil && !errors.Is(err, context.DeadlineExceeded) {
			return nil, err
		}
		if n == 0 {
			return nil, fmt.Errorf("read %d of %d messages of %s", got, total, federation.StreamFedEvents)
		}
	}
	return out, nil
}

package federation_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/url"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/robonet-mesh/robonet/federation"
	"github.com/robonet-mesh/robonet/internal/testmesh"
	"github.com/robonet-mesh/robonet/subjects"
)

// linkProxy stands between a spoke's leaf connection and a hub's leaf
// port: cut closes every connection and refuses new ones (a clean cut, as
// a dropped link looks once detected), heal lets them through again, to
// target (a hub server's leaf address).
type linkProxy struct {
	ln net.Listener

	mu     sync.Mutex // guards the fields below
	target string
	open   bool
	conns  []net.Conn
	wg     sync.WaitGroup
}

func newLinkProxy(t *testing.T, target string) *linkProxy {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &linkProxy{ln: ln, target: target, open: true}
	p.wg.Add(1)
	go p.accept()
	t.Cleanup(p.close)
	return p
}

func (p *linkProxy) url(t *testing.T) *url.URL {
	u, err := url.Parse("nats-leaf://" + p.ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	return u
}

func (p *linkProxy) accept() {
	defer p.wg.Done()
	for {
		c, err := p.ln.Accept()
		if err != nil {
			return
		}
		p.mu.Lock()
		open, target := p.open, p.target
		p.mu.Unlock()
		if !open {
			c.Close()
			continue
		}
		u, err := net.DialTimeout("tcp", target, time.Second)
		if err != nil {
			c.Close()
			continue
		}
		p.mu.Lock()
		p.conns = append(p.conns, c, u)
		p.mu.Unlock()
		p.wg.Add(2)
		go func() { defer p.wg.Done(); _, _ = io.Copy(u, c); u.Close() }()
		go func() { defer p.wg.Done(); _, _ = io.Copy(c, u); c.Close() }()
	}
}

func (p *linkProxy) cut() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.open = false
	for _, c := range p.conns {
		c.Close()
	}
	p.conns = nil
}

func (p *linkProxy) heal(target string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if target != "" {
		p.target = target
	}
	p.open = true
}

func (p *linkProxy) close() {
	p.cut()
	p.ln.Close()
	p.wg.Wait()
}

// jsServer starts a standalone JetStream server in domain, with a leaf
// listener when listen is set and leaf remotes to remotes.
func jsServer(t *testing.T, name, domain string, listen bool, remotes ...*url.URL) *server.Server {
	t.Helper()
	o := &server.Options{ServerName: name, Host: "127.0.0.1", Port: -1, JetStream: true, JetStreamDomain: domain,
		StoreDir: t.TempDir(), NoLog: true, NoSigs: true, SyncAlways: true}
	if listen {
		o.LeafNode.Host, o.LeafNode.Port = "127.0.0.1", -1
	}
	if len(remotes) > 0 {
		o.LeafNode.ReconnectInterval = 100 * time.Millisecond
		o.LeafNode.Remotes = []*server.RemoteLeafOpts{{URLs: remotes, IgnoreDiscoveredServers: true}}
	}
	s, err := server.NewServer(o)
	if err != nil {
		t.Fatal(err)
	}
	s.Start()
	if !s.ReadyForConnections(10 * time.Second) {
		t.Fatalf("server %s not ready", name)
	}
	t.Cleanup(func() { s.Shutdown(); s.WaitForShutdown() })
	return s
}

// leafAddr is where s listens for leaf connections.
func leafAddr(t *testing.T, s *server.Server) string {
	t.Helper()
	v, err := s.Varz(nil)
	if err != nil {
		t.Fatal(err)
	}
	return fmt.Sprintf("127.0.0.1:%d", v.LeafNode.Port)
}

func connectJS(t *testing.T, s *server.Server) (*nats.Conn, jetstream.JetStream) {
	t.Helper()
	nc, err := nats.Connect(s.ClientURL())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	return nc, js
}

// eventIDs reads every message of stream and returns how many times each
// event id ("i" in the payload) is there.
func eventIDs(t *testing.T, ctx context.Context, js jetstream.JetStream, stream string) map[int]int {
	t.Helper()
	st, err := js.Stream(ctx, stream)
	if err != nil {
		t.Fatal(err)
	}
	info := st.CachedInfo()
	out := map[int]int{}
	for seq := info.State.FirstSeq; seq <= info.State.LastSeq && info.State.Msgs > 0; seq++ {
		m, err := st.GetMsg(ctx, seq)
		if err != nil {
			t.Fatalf("%s seq %d: %v", stream, seq, err)
		}
		var e struct {
			I int `json:"i"`
		}
		if err := json.Unmarshal(m.Data, &e); err != nil {
			t.Fatalf("%s seq %d: %v", stream, seq, err)
		}
		out[e.I]++
	}
	return out
}

// The configuration the hub's leader generates works across two JetStream
// domains joined by a leaf link: rn_fed_nodes is the union of the child's
// rn_nodes (only keys under the child's prefix) and rn_fed_events gets
// every event of the child's rn_events (only the child's own); after the
// link is cut and healed, twice, with events and registry changes made
// during each cut, the hub has every event exactly once and the registry's
// latest state.
func TestSourcingAcrossDomainsSurvivesACutLink(t *testing.T) {
	child := mustPrefix(t, "3.12.7")
	hub := jsServer(t, "hub", "rn-3-12-1", true)
	proxy := newLinkProxy(t, leafAddr(t, hub))
	spoke := jsServer(t, "spoke", "rn-3-12-7", false, proxy.url(t))
	testmesh.CheckFor(t, 10*time.Second, 20*time.Millisecond, func() error {
		if hub.NumLeafNodes() != 1 {
			return fmt.Errorf("%d leaf links", hub.NumLeafNodes())
		}
		return nil
	})
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()

	// The child's side: its registry and its events stream. A child that
	// also captures another swarm's events (or registers a node outside its
	// prefix) must not get them upward.
	_, sjs := connectJS(t, spoke)
	reg, err := sjs.CreateKeyValue(ctx, jetstream.KeyValueConfig{Bucket: "rn_nodes", History: 1, Storage: jetstream.FileStorage})
	if err != nil {
		t.Fatal(err)
	}
	evCfg, err := federation.EventsConfig(child, 1)
	if err != nil {
		t.Fatal(err)
	}
	evCfg.Subjects = append(evCfg.Subjects, "rn.3.12.1.*.evt.join")
	if _, err := sjs.CreateStream(ctx, evCfg); err != nil {
		t.Fatal(err)
	}
	put := func(k, v string) {
		t.Helper()
		if _, err := reg.PutString(ctx, k, v); err != nil {
			t.Fatal(err)
		}
	}
	put("3.12.7.1", "one")
	put("3.12.7.2", "two")
	put("3.12.1.9", "not the child's")
	next := 0
	emit := func(n int) {
		t.Helper()
		kinds := subjects.DurableEventKinds
		for range n {
			data, _ := json.Marshal(map[string]int{"i": next})
			subj := fmt.Sprintf("rn.3.12.7.%d.evt.%s", next%3+1, kinds[next%len(kinds)])
			if _, err := sjs.Publish(ctx, subj, data); err != nil {
				t.Fatalf("event %d: %v", next, err)
			}
			next++
		}
		// Heartbeats are not in rn_events at all; another swarm's event
		// is, here, but must not go upward.
		if _, err := sjs.Publish(ctx, "rn.3.12.7.1.evt.hb", []byte(`{"i":-1}`)); err == nil {
			t.Fatal("rn_events took a heartbeat")
		}
		if _, err := sjs.Publish(ctx, "rn.3.12.1.1.evt.join", []byte(`{"i":-2}`)); err != nil {
			t.Fatal(err)
		}
	}
	emit(50)

	// The hub's side, as the hub's leader configures it.
	hnc, hjs := connectJS(t, hub)
	nodeSrc, err := federation.FedNodesSources(child, false)
	if err != nil {
		t.Fatal(err)
	}
	evSrc, err := federation.FedEventsSources(child, false)
	if err != nil {
		t.Fatal(err)
	}
	union, err := hjs.CreateKeyValue(ctx, federation.FedNodesConfig(nodeSrc, 1))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := hjs.CreateStream(ctx, federation.FedEventsConfig(evSrc, 1)); err != nil {
		t.Fatal(err)
	}

	wantRegistry := map[string]string{"3.12.7.1": "one", "3.12.7.2": "two"}
	waitHub := func(what string) time.Duration {
		t.Helper()
		start := time.Now()
		testmesh.CheckFor(t, 60*time.Second, 10*time.Millisecond, func() error {
			st, err := hjs.Stream(ctx, federation.StreamFedEvents)
			if err != nil {
				return err
			}
			if got := st.CachedInfo().State.Msgs; got != uint64(next) {
				return fmt.Errorf("%s: hub has %d of %d events", what, got, next)
			}
			keys, err := union.ListKeys(ctx)
			if err != nil {
				return err
			}
			got := map[string]string{}
			for k := range keys.Keys() {
				e, err := union.Get(ctx, k)
				if err != nil {
					return err
				}
				got[k] = string(e.Value())
			}
			if fmt.Sprint(got) != fmt.Sprint(wantRegistry) {
				return fmt.Errorf("%s: hub registry union %v, want %v", what, got, wantRegistry)
			}
			return nil
		})
		return time.Since(start)
	}
	waitHub("first sync")
	_ = hnc

	for cycle := 1; cycle <= 2; cycle++ {
		proxy.cut()
		testmesh.CheckFor(t, 10*time.Second, 10*time.Millisecond, func() error {
			if hub.NumLeafNodes() != 0 {
				return fmt.Errorf("cycle %d: the link is still up", cycle)
			}
			return nil
		})
		// The child keeps working while cut off.
		emit(100)
		put("3.12.7.3", fmt.Sprintf("three-%d", cycle))
		put("3.12.7.1", fmt.Sprintf("one-%d", cycle))
		if err := reg.Delete(ctx, "3.12.7.2"); err != nil && cycle == 1 {
			t.Fatal(err)
		}
		wantRegistry = map[string]string{"3.12.7.1": fmt.Sprintf("one-%d", cycle), "3.12.7.3": fmt.Sprintf("three-%d", cycle)}
		proxy.heal("")
		took := waitHub(fmt.Sprintf("cycle %d", cycle))
		t.Logf("cycle %d: hub caught up %v after the heal (one hub server, holding the link)", cycle, took.Round(time.Millisecond))
	}
	ids := eventIDs(t, ctx, hjs, federation.StreamFedEvents)
	for i := range next {
		if ids[i] != 1 {
			t.Fatalf("event %d is at the hub %d times", i, ids[i])
		}
	}
	if len(ids) != next {
		t.Fatalf("the hub has events that are not the child's: %v", ids)
	}
}

func mustPrefix(t *testing.T, s string) subjects.Chevron {
	t.Helper()
	p, err := subjects.ParseSwarmPrefix(s)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// A zone hub sources a region hub's own registry and events and, through
// the region's aggregates, its children's: a leaf swarm's events and
// registrations reach the zone two domains up, once each.
func TestZoneSourcesARegionHubsAggregates(t *testing.T) {
	zone := jsServer(t, "zone", "rn-3-1-1", true)
	zoneURL, _ := url.Parse("nats-leaf://" + leafAddr(t, zone))
	region := jsServer(t, "region", "rn-3-12-1", true, zoneURL)
	regionURL, _ := url.Parse("nats-leaf://" + leafAddr(t, region))
	leaf := jsServer(t, "leaf", "rn-3-12-7", false, regionURL)
	testmesh.CheckFor(t, 10*time.Second, 20*time.Millisecond, func() error {
		if zone.NumLeafNodes() != 1 || region.NumLeafNodes() != 2 {
			return fmt.Errorf("leaf links: zone %d, region %d", zone.NumLeafNodes(), region.NumLeafNodes())
		}
		return nil
	})
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	// Each swarm's own registry and events.
	swarm := func(s *server.Server, p string) (jetstream.KeyValue, jetstream.JetStream) {
		_, js := connectJS(t, s)
		kv, err := js.CreateKeyValue(ctx, jetstream.KeyValueConfig{Bucket: "rn_nodes", History: 1})
		if err != nil {
			t.Fatal(err)
		}
		cfg, _ := federation.EventsConfig(mustPrefix(t, p), 1)
		if _, err := js.CreateStream(ctx, cfg); err != nil {
			t.Fatal(err)
		}
		return kv, js
	}
	leafReg, leafJS := swarm(leaf, "3.12.7")
	regionReg, regionJS := swarm(region, "3.12.1")
	_, zoneJS := connectJS(t, zone)
	// The region sources the leaf swarm; the zone sources the region, a hub.
	aggregate := func(js jetstream.JetStream, child string, hub bool) {
		ns, _ := federation.FedNodesSources(mustPrefix(t, child), hub)
		es, _ := federation.FedEventsSources(mustPrefix(t, child), hub)
		if _, err := js.CreateKeyValue(ctx, federation.FedNodesConfig(ns, 1)); err != nil {
			t.Fatal(err)
		}
		if _, err := js.CreateStream(ctx, federation.FedEventsConfig(es, 1)); err != nil {
			t.Fatal(err)
		}
	}
	aggregate(regionJS, "3.12.7", false)
	aggregate(zoneJS, "3.12.1", true)

	for _, r := range []struct {
		kv  jetstream.KeyValue
		key string
	}{{leafReg, "3.12.7.1"}, {leafReg, "3.12.7.2"}, {regionReg, "3.12.1.1"}} {
		if _, err := r.kv.PutString(ctx, r.key, "n"+r.key); err != nil {
			t.Fatal(err)
		}
	}
	for i := range 30 {
		js, subj := leafJS, "rn.3.12.7.1.evt.join"
		if i%3 == 0 {
			js, subj = regionJS, "rn.3.12.1.1.evt.leader"
		}
		data, _ := json.Marshal(map[string]int{"i": i})
		if _, err := js.Publish(ctx, subj, data); err != nil {
			t.Fatal(err)
		}
	}
	zoneNodes, err := zoneJS.KeyValue(ctx, federation.BucketFedNodes)
	if err != nil {
		t.Fatal(err)
	}
	testmesh.CheckFor(t, 20*time.Second, 20*time.Millisecond, func() error {
		st, err := zoneJS.Stream(ctx, federation.StreamFedEvents)
		if err != nil {
			return err
		}
		if n := st.CachedInfo().State.Msgs; n != 30 {
			return fmt.Errorf("the zone has %d of 30 events", n)
		}
		for _, k := range []string{"3.12.7.1", "3.12.7.2", "3.12.1.1"} {
			if e, err := zoneNodes.Get(ctx, k); err != nil || string(e.Value()) != "n"+k {
				return fmt.Errorf("the zone's union lacks %s: %v", k, err)
			}
		}
		return nil
	})
	ids := eventIDs(t, ctx, zoneJS, federation.StreamFedEvents)
	for i := range 30 {
		if ids[i] != 1 {
			t.Fatalf("event %d is at the zone %d times", i, ids[i])
		}
	}
}

package federation_test

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/robonet-mesh/robonet/federation"
	"github.com/robonet-mesh/robonet/internal/testmesh"
)

// hubCluster starts three clustered JetStream servers of domain
// rn-3-12-1, each listening for leaf connections.
func hubCluster(t *testing.T) []*server.Server {
	t.Helper()
	routes := testmesh.ReservePorts(t, 3)
	var urls []string
	for _, r := range routes {
		urls = append(urls, "nats-route://"+r)
	}
	var out []*server.Server
	for i, r := range routes {
		host, port, _ := strings.Cut(r, ":")
		var p int
		fmt.Sscan(port, &p)
		o := &server.Options{ServerName: fmt.Sprintf("hub%d", i), Host: "127.0.0.1", Port: -1,
			JetStream: true, JetStreamDomain: "rn-3-12-1", StoreDir: t.TempDir(), NoLog: true, NoSigs: true, SyncAlways: true,
			Cluster: server.ClusterOpts{Name: "rn-3-12-1", Host: host, Port: p},
			Routes:  server.RoutesFromStr(strings.Join(urls, ","))}
		o.LeafNode.Host, o.LeafNode.Port = "127.0.0.1", -1
		s, err := server.NewServer(o)
		if err != nil {
			t.Fatal(err)
		}
		s.Start()
		t.Cleanup(func() { s.Shutdown(); s.WaitForShutdown() })
		out = append(out, s)
	}
	for _, s := range out {
		if !s.ReadyForConnections(10 * time.Second) {
			t.Fatal("hub server not ready")
		}
	}
	testmesh.CheckFor(t, 30*time.Second, 50*time.Millisecond, func() error {
		for _, s := range out {
			if !s.JetStreamIsCurrent() {
				return fmt.Errorf("%s: JetStream not current", s.Name())
			}
		}
		return nil
	})
	return out
}

// TestCatchUpFigures prints how long a clustered hub's rn_fed_events takes
// to catch up with a child's events after a partition heals, with and
// without the catch-up kick (KickAggregates at link-up), when the link
// comes back to a hub server that does not lead the stream. It only runs
// with ROBONET_FED_FIGURES set to the partition lengths to try, e.g.
// "20s,45s"; figures are printed, not asserted (besides nothing lost or
// duplicated).
func TestCatchUpFigures(t *testing.T) {
	spec := os.Getenv("ROBONET_FED_FIGURES")
	if spec == "" {
		t.Skip("set ROBONET_FED_FIGURES=20s,45s to measure catch-up with and without the kick")
	}
	var parts []time.Duration
	for _, f := range strings.Split(spec, ",") {
		d, err := time.ParseDuration(strings.TrimSpace(f))
		if err != nil || d <= 0 {
			t.Fatalf("ROBONET_FED_FIGURES %q: %v", f, err)
		}
		parts = append(parts, d)
	}
	hubs := hubCluster(t)
	proxy := newLinkProxy(t, leafAddr(t, hubs[0]))
	spoke := jsServer(t, "spoke", "rn-3-12-7", false, proxy.url(t))
	leafs := func() int {
		n := 0
		for _, h := range hubs {
			n += h.NumLeafNodes()
		}
		return n
	}
	testmesh.CheckFor(t, 10*time.Second, 20*time.Millisecond, func() error {
		if leafs() != 1 {
			return fmt.Errorf("%d leaf links", leafs())
		}
		return nil
	})
	ctx := context.Background()
	_, sjs := connectJS(t, spoke)
	evCfg, err := federation.EventsConfig(mustPrefix(t, "3.12.7"), 1)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := sjs.CreateStream(ctx, evCfg); err != nil {
		t.Fatal(err)
	}
	hnc, hjs := connectJS(t, hubs[0])
	evSrc, _ := federation.FedEventsSources(mustPrefix(t, "3.12.7"), false)
	nodeSrc, _ := federation.FedNodesSources(mustPrefix(t, "3.12.7"), false)
	if _, err := hjs.CreateStream(ctx, federation.FedEventsConfig(evSrc, 3)); err != nil {
		t.Fatal(err)
	}
	if _, err := hjs.CreateKeyValue(ctx, federation.FedNodesConfig(nodeSrc, 3)); err != nil {
		t.Fatal(err)
	}
	next := 0
	emit := func(n int) {
		for range n {
			data, _ := json.Marshal(map[string]int{"i": next})
			if _, err := sjs.Publish(ctx, "rn.3.12.7.1.evt.audit", data); err != nil {
				t.Fatalf("event %d: %v", next, err)
			}
			next++
		}
	}
	caughtUp := func(limit time.Duration) (time.Duration, error) {
		start := time.Now()
		for time.Since(start) < limit {
			cctx, cancel := context.WithTimeout(ctx, time.Second)
			st, err := hjs.Stream(cctx, federation.StreamFedEvents)
			cancel()
			if err == nil && st.CachedInfo().State.Msgs == uint64(next) {
				return time.Since(start), nil
			}
			time.Sleep(10 * time.Millisecond) // polling the figure being measured
		}
		return 0, fmt.Errorf("not caught up within %v", limit)
	}
	emit(20)
	if _, err := caughtUp(30 * time.Second); err != nil {
		t.Fatal(err)
	}
	for _, part := range parts {
		for _, kick := range []bool{false, true} {
			// The link comes back to a server that does not lead the stream.
			leader := ""
			testmesh.CheckFor(t, 20*time.Second, 50*time.Millisecond, func() error {
				st, err := hjs.Stream(ctx, federation.StreamFedEvents)
				if err != nil {
					return err
				}
				if ci := st.CachedInfo().Cluster; ci == nil || ci.Leader == "" {
					return fmt.Errorf("no leader")
				} else {
					leader = ci.Leader
				}
				return nil
			})
			target := hubs[0]
			for _, h := range hubs {
				if h.Name() != leader {
					target = h
					break
				}
			}
			proxy.cut()
			testmesh.CheckFor(t, 10*time.Second, 10*time.Millisecond, func() error {
				if leafs() != 0 {
					return fmt.Errorf("link still up")
				}
				return nil
			})
			emit(200)
			select { // the partition's length is the experiment
			case <-time.After(part):
			case <-ctx.Done():
			}
			healed := time.Now()
			proxy.heal(leafAddr(t, target))
			testmesh.CheckFor(t, 10*time.Second, 5*time.Millisecond, func() error {
				if target.NumLeafNodes() != 1 {
					return fmt.Errorf("link not back")
				}
				return nil
			})
			linkBack := time.Since(healed)
			if kick {
				if n, err := federation.KickAggregates(ctx, hnc, hjs); err != nil || n != 2 {
					t.Fatalf("kick: %d stepped down: %v", n, err)
				}
			}
			took, err := caughtUp(3 * time.Minute)
			if err != nil {
				t.Fatal(err)
			}
			t.Logf("FIGURE partition %-5v kick %-5v: link back %v, hub caught up %v after link-up (leader was %s, link to %s)",
				part, kick, linkBack.Round(time.Millisecond), took.Round(time.Millisecond), leader, target.Name())
		}
	}
	ids := eventIDs(t, ctx, hjs, federation.StreamFedEvents)
	for i := range next {
		if ids[i] != 1 {
			t.Fatalf("event %d is at the hub %d times", i, ids[i])
		}
	}
	_ = jetstream.FileStorage
}

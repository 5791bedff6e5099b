package federation_test

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nuid"

	"github.com/robonet-mesh/robonet/federation"
	"github.com/robonet-mesh/robonet/internal/testmesh"
	"github.com/robonet-mesh/robonet/node"
	"github.com/robonet-mesh/robonet/subjects"
	"github.com/robonet-mesh/robonet/wire"
)

// TestFedChildSwarmsEdge: an edge joins a federated child swarm with no
// swarm name, chevron or federation settings of its own and adopts them
// from the core (domain, prefix, authority pins, a chevron under the
// prefix); the hub's admin commands it across the link through the child
// core's ambassador, one leaf hop further; it restarts with nothing given
// again; and --edge with --federate is refused.
func TestFedChildSwarmsEdge(t *testing.T) {
	hub := testmesh.StartSwarm(t, 1, "3.12.1", testmesh.AsHub())
	child := testmesh.StartChild(t, hub, 2, "3.12.7", func(_ int, o *node.Options) { o.Core = 2 })
	asIs := func(_ int, o *node.Options) { o.Swarm = node.DefaultSwarm }
	e := child.AddEdge(asIs)

	if e.Role() != wire.NodeRoleEdge || e.Chevron().String() != "3.12.7.3" {
		t.Fatalf("edge: role %s chevron %s, want edge 3.12.7.3 (auto-numbered under the prefix)", e.Role(), e.Chevron())
	}
	if e.Domain() != "rn-3-12-7" || e.SwarmPrefix().String() != "3.12.7" || e.Federated() {
		t.Fatalf("edge: domain %q prefix %s federated %v", e.Domain(), e.SwarmPrefix(), e.Federated())
	}
	if st := e.Status(); st.JSDomain != "rn-3-12-7" {
		t.Fatalf("edge status: js_domain %q", st.JSDomain)
	}
	pins := child.Node(0).AuthorityPins()
	if len(pins) == 0 || !slices.Equal(e.AuthorityPins(), pins) {
		t.Fatalf("edge pins %v, core's %v", e.AuthorityPins(), pins)
	}

	// The hub hands its identities down; the edge takes them on its pins.
	a, err := federation.NewAuthority(federation.AuthorityOptions{Node: hub.Node(0), Every: 500 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	if err := a.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	defer a.Shutdown(context.Background())
	hubAdmin := hub.Client(0)
	testmesh.CheckFor(t, 20*time.Second, 50*time.Millisecond, func() error {
		if r, ok := e.InheritedRole(hubAdmin.Signer().PublicKey()); !ok || r != wire.RoleAdmin {
			return fmt.Errorf("the edge gives the hub's founder role %q (%v)", r, ok)
		}
		return nil
	})

	// Ambassadors run on the child's core only: the edge is reached
	// through it.
	startAmbassadorsOn(t, child.Cores()...)
	id := nuid.Next()
	st := fedRequest(t, hubAdmin, "rn.fed.3.12.7.cmd.ping", nil, wire.Request{Verb: "ping", ID: id, TimeoutMs: 5000}, 15*time.Second, 300*time.Millisecond)
	if len(st.dones) != 1 || st.dones[0].Answered != 3 {
		t.Fatalf("federated ping of the child swarm: dones %+v, %d results", st.dones, len(st.results))
	}
	res := checkResults(t, st, id)
	if r := res["3.12.7.3"]; r.Status != wire.StatusOK {
		t.Fatalf("the edge's result: %+v", r)
	}

	// Restarted with nothing given, it is the same edge of the same swarm.
	i := child.Index(e)
	e = child.Restart(i)
	if e.Chevron().String() != "3.12.7.3" || e.Domain() != "rn-3-12-7" || e.Role() != wire.NodeRoleEdge {
		t.Fatalf("restarted edge: %s %s %s", e.Chevron(), e.Domain(), e.Role())
	}

	// Restarted with --cluster and without --edge it stays an edge (its
	// saved role); it cannot be promoted without federation settings, which
	// every core member of a federated swarm needs.
	e = child.RestartWith(i, func(o *node.Options) { o.Edge, o.Cluster = false, "127.0.0.1:0" })
	if e.Role() != wire.NodeRoleEdge || e.Domain() != "rn-3-12-7" {
		t.Fatalf("restarted with --cluster: %s %s", e.Role(), e.Domain())
	}
	// Asked again while the restarted edge's subscription is still on its
	// way to the core ("no responders").
	testmesh.CheckFor(t, 15*time.Second, 100*time.Millisecond, func() error {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		var out node.CoreChange
		err := child.Client(0).QueryMember(ctx, subjects.QueryCoreAdd, e.ServerName(), []string{e.Pubkey()}, node.CoreAddRequest{Pubkey: e.Pubkey(), Force: true}, &out)
		if err == nil {
			t.Fatalf("core add of a federated swarm's edge without settings: %+v", out)
		}
		if !strings.Contains(err.Error(), "no federation settings of its own") {
			return err
		}
		return nil
	})

	t.Run("a chevron outside the swarm's prefix is refused", func(t *testing.T) {
		o := child.Options(i)
		o.DataDir, o.Edge, o.Cluster, o.Chevron = t.TempDir(), true, "", "3.12.8.5"
		nd, err := node.New(o)
		if err == nil {
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			err = nd.Start(ctx)
			nd.Shutdown(context.Background())
		}
		if !errors.Is(err, node.ErrOptions) || !strings.Contains(err.Error(), "its nodes are 3.12.7.<n>") {
			t.Fatalf("--chevron 3.12.8.5 on an edge of 3.12.7: %v", err)
		}
	})
	t.Run("an edge with federation settings of its own is refused", func(t *testing.T) {
		o := child.Options(i)
		o.DataDir, o.Edge, o.Cluster = t.TempDir(), true, ""
		o.Federate = hub.LeafAddrs()
		o.FederateToken = child.Options(0).FederateToken
		o.Chevron = "3.12.7.9"
		nd, err := node.New(o)
		if err == nil {
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			err = nd.Start(ctx)
			nd.Shutdown(context.Background())
		}
		if !errors.Is(err, node.ErrOptions) || !strings.Contains(err.Error(), "--edge with --leaf-listen or --federate") {
			t.Fatalf("--edge --federate: %v", err)
		}
	})
}

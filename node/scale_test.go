package node_test

import (
	"context"
	"fmt"
	"testing"
	"time"

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
	_ = node.DefaultCore
}

package node_test

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/robonet-mesh/robonet/internal/testmesh"
	"github.com/robonet-mesh/robonet/mesh"
	"github.com/robonet-mesh/robonet/node"
	"github.com/robonet-mesh/robonet/subjects"
	"github.com/robonet-mesh/robonet/wire"
)

// coreAsk asks query name of the node nd (its own subject) with c and
// returns the answer.
func coreAsk(c *mesh.Client, nd *node.Node, name string, req any) (node.CoreChange, error) {
	var out node.CoreChange
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	err := c.QueryMember(ctx, name, nd.ServerName(), []string{nd.Pubkey()}, req, &out)
	return out, err
}

func wantCode(t *testing.T, err error, code, text string) {
	t.Helper()
	var we *wire.Error
	if !errors.As(err, &we) || we.Code != code || !strings.Contains(we.Msg, text) {
		t.Fatalf("error %v, want %s naming %q", err, code, text)
	}
}

// TestCoreControlIsForAdmins: the core control queries are refused to
// anyone but an admin, whatever connection carried them: a node's own
// operator (admin on its node only) asking another node is denied there,
// and an operator user cannot even publish them.
func TestCoreControlIsForAdmins(t *testing.T) {
	s := testmesh.Start(t, 3)
	s.WaitAlive(30 * time.Second)
	local := s.Client(1) // node 1's operator: admin on node 1, operator elsewhere
	for _, q := range []struct {
		name string
		req  any
	}{
		{subjects.QueryCoreSize, node.CoreSizeRequest{Size: 5}},
		{subjects.QueryCoreRemove, node.CoreRemoveRequest{Target: s.Node(2).Name()}},
		{subjects.QueryCoreAdd, node.CoreAddRequest{Pubkey: s.Node(2).Pubkey()}},
	} {
		_, err := coreAsk(local, s.Node(2), q.name, q.req)
		wantCode(t, err, wire.CodeDenied, "needs an admin")
	}
	op := s.User(0, "oscar", wire.RoleOperator)
	if _, err := coreAsk(op, s.Node(0), subjects.QueryCoreSize, node.CoreSizeRequest{Size: 5}); err == nil {
		t.Fatal("an operator set the core size")
	}
}

// TestCoreControlValidates: every input is checked and the error names
// what was wrong; a valid size is written and read back.
func TestCoreControlValidates(t *testing.T) {
	s := testmesh.Start(t, 3)
	s.WaitAlive(30 * time.Second)
	admin := s.Client(0)
	n0, n2 := s.Node(0), s.Node(2)
	for _, tc := range []struct {
		name string
		nd   *node.Node
		req  any
		want string
	}{
		{subjects.QueryCoreSize, n0, node.CoreSizeRequest{Size: 0}, "core size 0: want 1..7"},
		{subjects.QueryCoreSize, n0, node.CoreSizeRequest{Size: 8}, "core size 8: want 1..7"},
		{subjects.QueryCoreSize, n0, map[string]any{"size": 3, "colour": "red"}, `unknown field "colour"`},
		{subjects.QueryCoreRemove, n0, node.CoreRemoveRequest{Target: "rn99"}, `"rn99"`},
		{subjects.QueryCoreRemove, n0, node.CoreRemoveRequest{Target: ""}, "want a node's name, chevron or key"},
		{subjects.QueryCoreRemove, n0, node.CoreRemoveRequest{Target: "a b"}, `"a b"`},
		{subjects.QueryCoreRemove, n0, node.CoreRemoveRequest{Target: n2.Name()}, "is up: ask it itself"},
		{subjects.QueryCoreAdd, n2, node.CoreAddRequest{Pubkey: n0.Pubkey()}, "whose key is " + n2.Pubkey()},
		{subjects.QueryCoreAdd, n2, node.CoreAddRequest{Pubkey: n2.Pubkey()}, "is a core member already"},
	} {
		_, err := coreAsk(admin, tc.nd, tc.name, tc.req)
		wantCode(t, err, wire.CodeBadRequest, tc.want)
	}
	got, err := coreAsk(admin, n0, subjects.QueryCoreSize, node.CoreSizeRequest{Size: 5})
	if err != nil {
		t.Fatal(err)
	}
	if got.Size != 5 || got.Live != 3 || !strings.Contains(got.Note, "below its size (3 of 5 up)") {
		t.Fatalf("core size 5: %+v", got)
	}
	// Another node reads it back: a full core of 3 is below a size of 5, so
	// removing a member is judged against 5.
	got, err = coreAsk(admin, n2, subjects.QueryCoreSize, node.CoreSizeRequest{Size: 3})
	if err != nil || got.Size != 3 || got.Note != "" {
		t.Fatalf("core size 3: %+v, %v", got, err)
	}
}

// TestCoreRemoveDemotesTheMemberAsked: asked at its own subject, a core
// member lists itself removed, leaves JetStream's meta group and asks to
// restart as an edge; the answer comes first.
func TestCoreRemoveDemotesTheMemberAsked(t *testing.T) {
	s := testmesh.Start(t, 3)
	s.WaitAlive(30 * time.Second)
	admin := s.Client(0)
	victim := s.Node(2)
	testmesh.CheckFor(t, 30*time.Second, 100*time.Millisecond, func() error {
		for _, nd := range s.Live() {
			if p := nd.MetaPeers(); len(p) == 3 {
				return nil
			}
		}
		return errors.New("meta group not at 3 peers yet")
	})
	got, err := coreAsk(admin, victim, subjects.QueryCoreRemove, node.CoreRemoveRequest{Target: victim.Chevron().String()})
	if err != nil {
		t.Fatal(err)
	}
	if !got.Restarting || got.Role != wire.NodeRoleEdge || !got.JetStreamRemoved || got.Pubkey != victim.Pubkey() {
		t.Fatalf("remove: %+v", got)
	}
	select {
	case <-victim.RestartRequested():
	case <-time.After(10 * time.Second):
		t.Fatal("no restart requested 10 s after the answer")
	}
	testmesh.CheckFor(t, 30*time.Second, 100*time.Millisecond, func() error {
		for _, nd := range s.Live()[:2] {
			if p := nd.MetaPeers(); len(p) > 0 {
				if slices.Contains(p, victim.ServerName()) {
					return fmt.Errorf("meta peers %v still list %s", p, victim.ServerName())
				}
				return nil
			}
		}
		return errors.New("no meta leader among nodes 0 and 1")
	})
	nd := s.Restart(2) // as robonet up does: Shutdown, New, Start, same options
	if nd.Role() != wire.NodeRoleEdge {
		t.Fatalf("restarted as %s", nd.Role())
	}
	testmesh.CheckFor(t, 30*time.Second, 100*time.Millisecond, func() error {
		for i := 0; i < 2; i++ {
			found := false
			for _, m := range s.Node(i).Members() {
				if m.Pubkey == nd.Pubkey() {
					found = true
					if m.Role != wire.NodeRoleEdge || m.State != wire.StateAlive {
						return fmt.Errorf("node %d lists it %s, %s", i, m.Role, m.State)
					}
				}
			}
			if !found {
				return fmt.Errorf("node %d does not list it", i)
			}
		}
		return nil
	})
}

// TestCoreAddPromotesAnEdge: an edge with a cluster address, asked by an
// admin, becomes a core member: restarted with the same options it routes
// into the core, joins JetStream's meta group and is listed core.
func TestCoreAddPromotesAnEdge(t *testing.T) {
	s := testmesh.StartCore(t, 3)
	s.WaitAlive(30 * time.Second)
	edge := s.AddCandidate() // --cluster and --join: the core is full, so an edge
	if edge.Role() != wire.NodeRoleEdge {
		t.Fatalf("a candidate joining a full core is %s", edge.Role())
	}
	admin := s.Client(0)
	// The edge's subscription reaches the core over its leaf link.
	var err error
	testmesh.CheckFor(t, 10*time.Second, 50*time.Millisecond, func() error {
		_, err = coreAsk(admin, edge, subjects.QueryCoreAdd, node.CoreAddRequest{Pubkey: edge.Pubkey()})
		if errors.Is(err, mesh.ErrNoResponse) {
			return err
		}
		return nil
	})
	wantCode(t, err, wire.CodeBadRequest, "the core is full: 3 of 3 members up")
	got, err := coreAsk(admin, edge, subjects.QueryCoreAdd, node.CoreAddRequest{Pubkey: edge.Pubkey(), Force: true})
	if err != nil {
		t.Fatal(err)
	}
	if !got.Restarting || got.Role != wire.NodeRoleCore || got.Size != 3 || got.Live != 3 || !strings.Contains(got.Note, "above its size 3") {
		t.Fatalf("core add: %+v", got)
	}
	select {
	case <-edge.RestartRequested():
	case <-time.After(10 * time.Second):
		t.Fatal("no restart requested 10 s after the answer")
	}
	nd := s.Restart(s.Index(edge)) // as robonet up does: Shutdown, New, Start, same options
	if nd.Role() != wire.NodeRoleCore {
		t.Fatalf("restarted as %s", nd.Role())
	}
	testmesh.CheckFor(t, 30*time.Second, 100*time.Millisecond, func() error {
		for i := 0; i < 3; i++ {
			c := s.Node(i)
			if !slices.Contains(nd.RoutedServers(), c.ServerName()) {
				return fmt.Errorf("no route to %s yet (routes %v)", c.ServerName(), nd.RoutedServers())
			}
			if p := c.MetaPeers(); len(p) > 0 && !slices.Contains(p, nd.ServerName()) {
				return fmt.Errorf("meta peers %v lack %s", p, nd.ServerName())
			}
			for _, m := range c.Members() {
				if m.Pubkey == nd.Pubkey() && (m.Role != wire.NodeRoleCore || m.State != wire.StateAlive) {
					return fmt.Errorf("%s lists it %s, %s", c.Name(), m.Role, m.State)
				}
			}
		}
		return nil
	})
	if st := nd.CoreStatus(); st.Live() != 4 || !st.Above {
		t.Fatalf("core status after promotion: %+v", st)
	}

	// Lost for good: any core member takes it out of the core.
	s.Kill(s.Index(nd))
	// Every core member must see it offline: the queue group's answer may
	// come from any of them, and one that still sees it up refuses.
	testmesh.CheckFor(t, 30*time.Second, 100*time.Millisecond, func() error {
		for i := 0; i < 3; i++ {
			if st := testmesh.StateOf(s.Node(i), nd.Chevron().String()); st != wire.StateOffline {
				return fmt.Errorf("node %d sees the killed member %s", i, st)
			}
		}
		return nil
	})
	var out node.CoreChange
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	keys := []string{s.Node(0).Pubkey(), s.Node(1).Pubkey(), s.Node(2).Pubkey()}
	if err := admin.QueryMember(ctx, subjects.QueryCoreRemove, "", keys, node.CoreRemoveRequest{Target: nd.Name()}, &out); err != nil {
		t.Fatal(err)
	}
	if out.Restarting || !out.JetStreamRemoved || out.Pubkey != nd.Pubkey() || out.Role != wire.NodeRoleEdge {
		t.Fatalf("remove of a dead member: %+v", out)
	}
	testmesh.CheckFor(t, 30*time.Second, 100*time.Millisecond, func() error {
		for i := 0; i < 3; i++ {
			if p := s.Node(i).MetaPeers(); len(p) > 0 {
				if slices.Contains(p, nd.ServerName()) {
					return fmt.Errorf("meta peers %v still list %s", p, nd.ServerName())
				}
				return nil
			}
		}
		return errors.New("no meta leader among the core")
	})
}

package testmesh

import (
	"testing"

	"github.com/robonet-mesh/robonet/node"
	"github.com/robonet-mesh/robonet/wire"
)

// StartCore starts a core of n route-clustered members (n ≥ 2) with core
// size n; add edges with AddEdge.
func StartCore(t testing.TB, n int, options ...Option) *Swarm {
	t.Helper()
	size := func(_ int, o *node.Options) { o.Core = n }
	return Start(t, n, append([]Option{size}, options...)...)
}

// AddEdge starts an edge (--edge --join <every core address>) and waits
// until it knows the founder.
func (s *Swarm) AddEdge(options ...Option) *node.Node {
	s.t.Helper()
	edge := func(_ int, o *node.Options) {
		o.Edge, o.Cluster, o.ForceCore = true, "", false
	}
	return s.Add(append([]Option{edge}, options...)...)
}

// AddCandidate starts a node with --cluster and --join and no --edge:
// it asks the core whether it has room and becomes core or edge.
func (s *Swarm) AddCandidate(options ...Option) *node.Node {
	s.t.Helper()
	cand := func(_ int, o *node.Options) { o.ForceCore = false }
	return s.Add(append([]Option{cand}, options...)...)
}

// Index is the index of nd in the swarm, -1 if it is not there.
func (s *Swarm) Index(nd *node.Node) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	for i, x := range s.nodes {
		if x == nd {
			return i
		}
	}
	return -1
}

// Cores and Edges list the live nodes by role.
func (s *Swarm) Cores() []*node.Node { return s.byRole(wire.NodeRoleCore) }

// Edges lists the live edges.
func (s *Swarm) Edges() []*node.Node { return s.byRole(wire.NodeRoleEdge) }

func (s *Swarm) byRole(role string) []*node.Node {
	var out []*node.Node
	for _, nd := range s.Live() {
		if nd.Role() == role {
			out = append(out, nd)
		}
	}
	return out
}

// StateOf is chev's state in nd's view ("" when nd does not list it).
func StateOf(nd *node.Node, chev string) string {
	for _, m := range nd.Members() {
		if m.Chevron == chev {
			return m.State
		}
	}
	return ""
}

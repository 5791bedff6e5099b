package federation

import (
	"context"
	"encoding/json"
	"fmt"
	"sort"
	"strings"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/robonet-mesh/robonet/mesh"
	"github.com/robonet-mesh/robonet/subjects"
	"github.com/robonet-mesh/robonet/wire"
)

// View is the answer to rn.sys.fed: the directory as the answering node
// sees it (`robonet federation status`).
type View struct {
	Swarm  string `json:"swarm"`            // this node's swarm prefix
	Domain string `json:"domain"`           // its JetStream domain
	Parent string `json:"parent,omitempty"` // its parent swarm's prefix
	Hub    bool   `json:"hub"`              // it accepts child swarms
	Node   string `json:"node"`             // the answering node's chevron
	Leader bool   `json:"leader"`           // the answering node holds the lease (publishes the summary)
	// At is the answering node's clock when it answered: ages are
	// LastHeard against At, not against the reader's clock.
	At time.Time `json:"at"`
	// Links are the answering node's leaf connections.
	Links []Link `json:"links,omitempty"`
	// Swarms is every swarm in the directory, this one included (link
	// "self"), by prefix.
	Swarms   []SwarmState `json:"swarms"`
	Counters DirCounters  `json:"counters"`
	// Kicks counts the aggregate stream step-downs (catch-up kicks) this
	// node sent as its hub's leader, Rejoins the children it saw come back;
	// AggregateErr is the last failure to keep the durable streams.
	Kicks        uint64 `json:"kicks,omitempty"`
	Rejoins      uint64 `json:"rejoins,omitempty"`
	AggregateErr string `json:"aggregate_error,omitempty"`
}

// View is the directory now, for rn.sys.fed.
func (d *Directory) View() View {
	now := d.o.Now()
	v := View{Swarm: d.prefix.String(), Domain: d.domain, Parent: d.o.Parent(), Hub: d.o.Hub,
		Node: d.o.Local.Chevron().String(), Leader: d.o.Local.IsLeader(), At: now.UTC(),
		Swarms: d.Swarms(), Counters: d.Counters(), Kicks: d.Kicks(), Rejoins: d.Rejoins()}
	if d.o.Links != nil {
		v.Links = d.o.Links()
	}
	d.agg.mu.Lock()
	v.AggregateErr = d.agg.lastErr
	d.agg.mu.Unlock()
	return v
}

// TreeNode is one swarm of the directory placed in the federation's tree.
type TreeNode struct {
	SwarmState
	// Role is the swarm's place relative to the answering node's swarm:
	// self, parent, ancestor, child, descendant, sibling or other.
	Role     string      `json:"role"`
	Children []*TreeNode `json:"children,omitempty"`
}

// Tree arranges the view's swarms by their parents: the roots are swarms
// whose parent is not in the directory, children in prefix order.
func (v View) Tree() []*TreeNode {
	nodes := map[string]*TreeNode{}
	for _, s := range v.Swarms {
		nodes[s.Prefix] = &TreeNode{SwarmState: s}
	}
	// Roles: walk up from self for ancestors, down for descendants.
	up := map[string]int{} // prefix → generations above self
	cur, gen := v.Swarm, 0
	for n := nodes[cur]; n != nil && up[cur] == 0 && gen <= len(nodes); n = nodes[cur] {
		up[cur] = gen
		if n.Parent == "" {
			break
		}
		cur, gen = n.Parent, gen+1
	}
	var roots []*TreeNode
	for _, s := range v.Swarms {
		n := nodes[s.Prefix]
		if p := nodes[s.Parent]; p != nil && s.Parent != s.Prefix && !cyclic(nodes, s.Prefix) {
			p.Children = append(p.Children, n)
		} else {
			roots = append(roots, n)
		}
	}
	var assign func(n *TreeNode, below bool)
	assign = func(n *TreeNode, below bool) {
		switch g, isAnc := up[n.Prefix]; {
		case n.Prefix == v.Swarm:
			n.Role = "self"
		case isAnc && g == 1:
			n.Role = "parent"
		case isAnc:
			n.Role = "ancestor"
		case below && n.Parent == v.Swarm:
			n.Role = "child"
		case below:
			n.Role = "descendant"
		case n.Parent != "" && n.Parent == v.Parent:
			n.Role = "sibling"
		default:
			n.Role = "other"
		}
		sort.Slice(n.Children, func(i, j int) bool {
			return subjects.CompareText(n.Children[i].Prefix, n.Children[j].Prefix) < 0
		})
		for _, c := range n.Children {
			assign(c, below || n.Prefix == v.Swarm)
		}
	}
	sort.Slice(roots, func(i, j int) bool { return subjects.CompareText(roots[i].Prefix, roots[j].Prefix) < 0 })
	for _, r := range roots {
		assign(r, false)
	}
	return roots
}

// cyclic reports whether prefix's parent chain loops back to it (a
// malformed directory must not make the tree lose swarms).
func cyclic(nodes map[string]*TreeNode, prefix string) bool {
	cur := nodes[prefix].Parent
	for range len(nodes) + 1 {
		if cur == prefix {
			return true
		}
		n := nodes[cur]
		if n == nil {
			return false
		}
		cur = n.Parent
	}
	return true
}

// Answering queries. The directory answers rn.sys.fed and rn.sys.fednodes
// like the node's own queries (node/query.go): in the queue group "rn" and
// on rn.sys.<query>.<server>, signed with the node's signer. A query must
// carry a valid HCTH signature from a key the node admits (any role); the
// queries only read, and an answer goes to the asker's own inbox, so a
// replayed query is answered again rather than tracked in the node's
// ledger.
func (d *Directory) serveQueries() error {
	handlers := map[string]func(ctx context.Context) any{
		subjects.QueryFed:      func(context.Context) any { return d.View() },
		subjects.QueryFedNodes: func(ctx context.Context) any { return d.Nodes(ctx) },
	}
	for name, h := range handlers {
		cb := func(m *nats.Msg) { d.answer(m, name, h) }
		sub, err := d.o.Conn.QueueSubscribe(subjects.Query(name), subjects.QueryQueue, cb)
		if err != nil {
			return fmt.Errorf("directory: serve %s: %w", name, err)
		}
		d.addSub(sub)
		if sub, err = d.o.Conn.Subscribe(subjects.QueryAt(name, d.o.Local.ServerName()), cb); err != nil {
			return fmt.Errorf("directory: serve %s: %w", name, err)
		}
		d.addSub(sub)
	}
	return nil
}

// maxQuery is the largest query payload the directory reads (its queries
// take no arguments).
const maxQuery = 4 << 10

func (d *Directory) answer(m *nats.Msg, name string, h func(context.Context) any) {
	if m.Reply == "" || !strings.HasPrefix(m.Reply, subjects.InboxRoot+".") || subjects.ValidPublish(m.Reply) != nil {
		return
	}
	var reply wire.Reply
	if werr := d.admit(m); werr != nil {
		reply.Error = werr
	} else {
		ctx, cancel := context.WithTimeout(d.ctx, 4*time.Second)
		data, err := json.Marshal(h(ctx))
		cancel()
		if err != nil {
			reply.Error = &wire.Error{Code: wire.CodeInternal, Msg: err.Error()}
		} else {
			reply.Data = data
		}
	}
	out, _ := json.Marshal(reply)
	msg := &nats.Msg{Subject: m.Reply, Data: out}
	if err := d.o.Signer.SignMsg(msg); err != nil {
		d.o.Logger.Warn("sign a directory answer", "query", name, "err", err)
		return
	}
	_ = d.o.Conn.PublishMsg(msg)
}

// admit checks a query's signature and that its signer is a key the node
// admits; the refusal is the error to answer with (code denied).
func (d *Directory) admit(m *nats.Msg) *wire.Error {
	deny := func(format string, a ...any) *wire.Error {
		return &wire.Error{Code: wire.CodeDenied, Msg: fmt.Sprintf(format, a...)}
	}
	if len(m.Data) > maxQuery {
		return &wire.Error{Code: wire.CodeBadRequest, Msg: fmt.Sprintf("query of %d bytes (limit 4 KiB)", len(m.Data))}
	}
	h, err := mesh.ParseSigned(m)
	if err != nil {
		return deny("query on %s: %v (ask with robonet, or sign it: Rn-From, Rn-Seq, Rn-Prev, Rn-Sig)", clip(m.Subject), err)
	}
	if err := d.verifier.Verify(h, m.Subject, m.Data); err != nil {
		return deny("query on %s: %v", clip(m.Subject), err)
	}
	if _, ok := d.o.Local.RoleOf(h.From); !ok {
		return deny("key %s is not a user or node of this swarm (or was revoked)", h.From)
	}
	return nil
}

// ReadDirectory asks the node c is connected to for its directory
// (rn.sys.fed): the answer is signed by that node and checked like every
// query answer (mesh.Client.Query).
func ReadDirectory(ctx context.Context, c *mesh.Client) (View, error) {
	var v View
	if err := c.Query(ctx, subjects.QueryFed, nil, &v); err != nil {
		return View{}, fmt.Errorf("federation directory: %w", err)
	}
	return v, nil
}

// ReadNodes asks the node c is connected to for the federated registry
// (rn.sys.fednodes).
func ReadNodes(ctx context.Context, c *mesh.Client) (FedNodes, error) {
	var out FedNodes
	if err := c.Query(ctx, subjects.QueryFedNodes, nil, &out); err != nil {
		return FedNodes{}, fmt.Errorf("federated registry: %w", err)
	}
	return out, nil
}

package node

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/robonet-mesh/robonet/subjects"
	"github.com/robonet-mesh/robonet/wire"
)

// Core control (robonet core add|remove|size): admin-signed queries that
// change who is in the core. The core's size lives in rn_config core.size
// (coreSizeKey); a demoted member is listed under CoreRemovedKey so that,
// coming back with a saved core role, it knows to be an edge.

// coreRemovedPre prefixes the rn_config keys of removed core members.
const coreRemovedPre = "core.removed."

// CoreRemovedKey is the rn_config key that lists node key pub as removed
// from the core.
func CoreRemovedKey(pub string) string { return coreRemovedPre + pub }

// CoreAddRequest asks an edge to become a core member (robonet core add).
// It is asked of the edge itself (subjects.QueryAt).
type CoreAddRequest struct {
	// Pubkey is the edge's key: the node asked checks that it is itself.
	Pubkey string `json:"pubkey"`
	// Force grows the core beyond its size when it is full.
	Force bool `json:"force,omitempty"`
}

// CoreRemoveRequest asks the core to drop a member (robonet core remove).
type CoreRemoveRequest struct {
	// Target is the member's name, chevron or node key.
	Target string `json:"target"`
}

// CoreSizeRequest sets the core's size (robonet core size).
type CoreSizeRequest struct {
	Size int `json:"size"`
}

// CoreChange answers a core control query.
type CoreChange struct {
	Name    string `json:"name,omitempty"`
	Chevron string `json:"chevron,omitempty"`
	Pubkey  string `json:"pubkey,omitempty"`
	// Role is the node's role once the change is done (core or edge).
	Role string `json:"role,omitempty"`
	// Restarting: the node answering restarts now in Role.
	Restarting bool `json:"restarting,omitempty"`
	// JetStreamRemoved: the member's server is out of JetStream's meta
	// group (remove).
	JetStreamRemoved bool `json:"jetstream_removed,omitempty"`
	// Size is the core's size and Live its members up, as the answering
	// node sees them before the change takes effect.
	Size int `json:"size"`
	Live int `json:"live"`
	// Note says what the operator may want to do next.
	Note string `json:"note,omitempty"`
}

// ErrNoMember is wrapped by FindMember when no node matches.
var ErrNoMember = errors.New("no such node")

// FindMember finds the node target names in ms: by node key, chevron or
// name, in that order. A name that several nodes share is refused: give
// the chevron or the key.
func FindMember(ms []wire.Member, target string) (wire.Member, error) {
	t := strings.TrimSpace(target)
	if t == "" || len(t) > 128 || strings.ContainsFunc(t, func(r rune) bool { return r <= ' ' || r == 0x7f }) {
		return wire.Member{}, fmt.Errorf("node %q: want a node's name, chevron or key", clip(target, 64))
	}
	for _, m := range ms {
		if m.Pubkey == t {
			return m, nil
		}
	}
	for _, m := range ms {
		if m.Chevron == t {
			return m, nil
		}
	}
	var named []wire.Member
	for _, m := range ms {
		if m.Name == t {
			named = append(named, m)
		}
	}
	switch len(named) {
	case 0:
		return wire.Member{}, fmt.Errorf("%w named, numbered or keyed %q (robonet nodes lists them)", ErrNoMember, t)
	case 1:
		return named[0], nil
	}
	var cs []string
	for _, m := range named {
		cs = append(cs, m.Chevron)
	}
	return wire.Member{}, fmt.Errorf("name %q is shared by the nodes at chevrons %s: give the chevron or the key", t, strings.Join(cs, ", "))
}

// MemberRole is m's role; a node that says none (older than roles) is core.
func MemberRole(m wire.Member) string {
	if m.Role == "" {
		return wire.NodeRoleCore
	}
	return m.Role
}

// serveCoreControl answers the core control queries. Every node answers
// add and remove at its own subject (an edge asked to leave the core, or
// a core member asked to join it, says so); core nodes also answer remove
// and size in the queue group. A change of this node's role is saved and
// the restart signalled only once the answer is out.
func (n *Node) serveCoreControl() error {
	type handler struct {
		name  string
		queue bool // core nodes also serve the queue group
		h     func(ctx context.Context, pub string, data []byte) (CoreChange, string, error)
	}
	core := n.Role() != wire.NodeRoleEdge
	for _, h := range []handler{
		{subjects.QueryCoreAdd, false, n.coreAdd},
		{subjects.QueryCoreRemove, core, n.coreRemove},
		{subjects.QueryCoreSize, core, n.coreSetSize},
	} {
		cb := func(m *nats.Msg) {
			restart := ""
			n.answerQuery(m, h.name, wire.RoleAdmin, func(pub, _ string, data []byte) (any, error) {
				ctx, cancel := context.WithTimeout(n.ctx, 10*time.Second)
				defer cancel()
				v, role, err := h.h(ctx, pub, data)
				restart = role
				return v, err
			})
			if restart == "" {
				return
			}
			_ = n.nc.FlushTimeout(time.Second)
			if err := n.requestRestart(restart); err != nil {
				n.log.Error("core control: could not restart in the new role", "role", restart, "err", err)
				return
			}
			n.log.Warn("core control: restarting in a new role", "role", restart, "query", h.name)
		}
		if h.queue {
			if _, err := n.nc.QueueSubscribe(subjects.Query(h.name), subjects.QueryQueue, cb); err != nil {
				return err
			}
		}
		if h.name == subjects.QueryCoreSize && !core {
			continue // an edge neither reads nor sets the size for the core
		}
		if _, err := n.nc.Subscribe(subjects.QueryAt(h.name, n.ServerName()), cb); err != nil {
			return err
		}
	}
	return nil
}

// decodeStrict reads a query's JSON payload, refusing unknown fields.
func decodeStrict(name string, data []byte, v any) error {
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return fmt.Errorf("%s: bad request: %v", name, strings.TrimPrefix(err.Error(), "json: "))
	}
	return nil
}

func (n *Node) selfText() string { return fmt.Sprintf("%s (%s)", n.name, n.chev) }

// coreAdd runs on the edge asked: it becomes a core member.
func (n *Node) coreAdd(ctx context.Context, _ string, data []byte) (CoreChange, string, error) {
	var req CoreAddRequest
	if err := decodeStrict("core add", data, &req); err != nil {
		return CoreChange{}, "", err
	}
	if req.Pubkey != n.pub {
		return CoreChange{}, "", fmt.Errorf("core add for key %q reached %s, whose key is %s", clip(req.Pubkey, 64), n.selfText(), n.pub)
	}
	size, live, names, err := n.coreCount(ctx)
	if err != nil {
		return CoreChange{}, "", err
	}
	out := CoreChange{Name: n.name, Chevron: n.chev.String(), Pubkey: n.pub, Size: size, Live: live}
	if n.Role() != wire.NodeRoleEdge {
		return out, "", fmt.Errorf("%s is a core member already", n.selfText())
	}
	if n.opts.Edge {
		return out, "", fmt.Errorf("%s was started with --edge, which makes it an edge at every start: restart it without --edge (and with --cluster), then add it", n.selfText())
	}
	if n.opts.Cluster == "" {
		return out, "", fmt.Errorf("%s has no cluster address for routes: restart it with robonet up --cluster <host>:6222 (and its --join), then add it", n.selfText())
	}
	if p := n.SwarmPrefix(); !p.IsZero() {
		if sf, err := n.dd.loadFederation(); err != nil || (sf.LeafListen == "" && len(sf.Federate) == 0) {
			return out, "", fmt.Errorf("%s is an edge of federated swarm %s with no federation settings of its own: a core member holds the swarm's leaf links; restart it with --chevron %s.<n>, --cluster and the --federate (or --leaf-listen) the core members run, then add it", n.selfText(), p, p)
		}
	}
	if live >= size && !req.Force {
		return out, "", fmt.Errorf("the core is full: %d of %d members up (%s); pass --force to grow it to %d, or raise its size first (robonet core size %d)",
			live, size, strings.Join(names, ", "), live+1, min(live+1, MaxCore))
	}
	if live >= MaxCore {
		return out, "", fmt.Errorf("the core has %d members up, the most a core may have (%d)", live, MaxCore)
	}
	// A member once removed is listed so that it comes back as an edge;
	// promoted again, it must not.
	if cfg := n.kvs.config; cfg != nil {
		if _, err := cfg.Get(ctx, CoreRemovedKey(n.pub)); err == nil {
			if err := cfg.Delete(ctx, CoreRemovedKey(n.pub)); err != nil {
				return out, "", fmt.Errorf("clear %s %s: %w", BucketConfig, CoreRemovedKey(n.pub), err)
			}
		} else if !errors.Is(err, jetstream.ErrKeyNotFound) {
			return out, "", fmt.Errorf("read %s %s: %w", BucketConfig, CoreRemovedKey(n.pub), err)
		}
	}
	out.Role, out.Restarting = wire.NodeRoleCore, true
	if live >= size {
		out.Note = fmt.Sprintf("the core grows to %d members, above its size %d: robonet core size %d makes that its size", live+1, size, live+1)
	}
	return out, wire.NodeRoleCore, nil
}

// coreRemove runs on a core node: the target leaves JetStream's meta group
// and is listed removed; when the target is this node, it restarts as an
// edge once the answer is out.
func (n *Node) coreRemove(ctx context.Context, by string, data []byte) (CoreChange, string, error) {
	var req CoreRemoveRequest
	if err := decodeStrict("core remove", data, &req); err != nil {
		return CoreChange{}, "", err
	}
	if n.Role() == wire.NodeRoleEdge {
		return CoreChange{}, "", fmt.Errorf("%s is an edge, not a core member: nothing to remove", n.selfText())
	}
	ms := n.Members()
	m, err := FindMember(ms, req.Target)
	if err != nil {
		return CoreChange{}, "", err
	}
	size, live, _, err := n.coreCount(ctx)
	if err != nil {
		return CoreChange{}, "", err
	}
	out := CoreChange{Name: m.Name, Chevron: m.Chevron, Pubkey: m.Pubkey, Role: wire.NodeRoleEdge, Size: size, Live: live}
	what := fmt.Sprintf("%s (%s)", m.Name, m.Chevron)
	if MemberRole(m) != wire.NodeRoleCore {
		return out, "", fmt.Errorf("%s is an edge, not a core member", what)
	}
	up := m.State != wire.StateOffline
	// The core as this node sees it (routes included: a member that has
	// just restarted has routes before it has heard every heartbeat).
	others := 0
	for _, o := range n.CoreStatus().Members {
		if o.Up && o.Server != serverName(m.Pubkey) {
			others++
		}
	}
	if others == 0 {
		return out, "", fmt.Errorf("%s is the only core member up: promote an edge first (robonet core add <node>)", what)
	}
	if !n.Clustered() {
		return out, "", fmt.Errorf("%s runs standalone: there is no core to remove it from", n.selfText())
	}
	if up && m.Pubkey != n.pub {
		// Dropped from JetStream while it runs as core, it would disable
		// its JetStream and stay a broken core member until restarted.
		return out, "", fmt.Errorf("%s is up: ask it itself (%s), so that it restarts as an edge; robonet core remove does",
			what, subjects.QueryAt(subjects.QueryCoreRemove, m.Server))
	}
	if err := n.markRemoved(ctx, m.Pubkey, by); err != nil {
		return out, "", err
	}
	out.JetStreamRemoved = n.removePeerRetrying(ctx, serverName(m.Pubkey), m.Pubkey, "removed from the core")
	if !out.JetStreamRemoved {
		out.Note = "JetStream's meta group did not drop its server yet (see the core's logs); ask again to retry"
	}
	if up {
		out.Live--
	}
	if m.Pubkey == n.pub {
		out.Restarting = true
		return out, wire.NodeRoleEdge, nil
	}
	return out, "", nil
}

// removePeerRetrying asks JetStream to drop a server from its meta group
// until it is done or six seconds have passed: the request fails while the
// meta group elects a leader (the removed server may have been it), and
// the caller has already listed the member removed, so asking again later
// would find an edge and stop there.
func (n *Node) removePeerRetrying(ctx context.Context, name, pub, why string) bool {
	deadline := time.Now().Add(6 * time.Second) // inside a caller's 10 s
	wait := 250 * time.Millisecond
	for {
		if n.removePeer(name, pub, why) {
			return true
		}
		if time.Now().Add(wait).After(deadline) {
			return false
		}
		select {
		case <-ctx.Done():
			return false
		case <-n.ctx.Done():
			return false
		case <-time.After(wait):
		}
		wait = min(2*wait, 2*time.Second)
	}
}

// markRemoved lists pub removed from the core in rn_config.
func (n *Node) markRemoved(ctx context.Context, pub, by string) error {
	rec, _ := json.Marshal(struct {
		By   string    `json:"by"`
		Time time.Time `json:"time"`
	}{by, time.Now().UTC()})
	if _, err := n.kvs.config.Put(ctx, CoreRemovedKey(pub), rec); err != nil {
		return fmt.Errorf("write %s %s: %w", BucketConfig, CoreRemovedKey(pub), err)
	}
	return nil
}

// coreSetSize runs on a core node: it sets rn_config core.size.
func (n *Node) coreSetSize(ctx context.Context, _ string, data []byte) (CoreChange, string, error) {
	var req CoreSizeRequest
	if err := decodeStrict("core size", data, &req); err != nil {
		return CoreChange{}, "", err
	}
	if req.Size < 1 || req.Size > MaxCore {
		return CoreChange{}, "", fmt.Errorf("core size %d: want 1..%d", req.Size, MaxCore)
	}
	if n.kvs.config == nil {
		return CoreChange{}, "", fmt.Errorf("%s has no %s bucket", n.selfText(), BucketConfig)
	}
	if _, err := n.kvs.config.Put(ctx, coreSizeKey, []byte(strconv.Itoa(req.Size))); err != nil {
		return CoreChange{}, "", fmt.Errorf("write %s %s: %w", BucketConfig, coreSizeKey, err)
	}
	_, live, _, err := n.coreCount(ctx)
	if err != nil {
		return CoreChange{}, "", err
	}
	out := CoreChange{Size: req.Size, Live: live}
	switch {
	case live < req.Size:
		out.Note = fmt.Sprintf("the core is below its size (%d of %d up): promote edges with robonet core add <node>", live, req.Size)
	case live > req.Size:
		out.Note = fmt.Sprintf("the core is above its size (%d up, size %d): robonet core remove <node> demotes a member", live, req.Size)
	}
	return out, "", nil
}

// coreCount is the core's size and its members up, with their names, as
// this node sees the core (CoreStatus; an edge asks the core).
func (n *Node) coreCount(context.Context) (size, live int, names []string, err error) {
	st := n.coreStatus(true)
	if n.Role() == wire.NodeRoleEdge {
		// Not the cached answer: a size just set must count.
		if st, err = n.askCore(3 * time.Second); err != nil {
			return 0, 0, nil, fmt.Errorf("ask the core its size and members: %w", err)
		}
	}
	if st.Size == 0 {
		return 0, 0, nil, errors.New("no answer from the core about its size and members: try again")
	}
	for _, m := range st.Members {
		if m.Up {
			names = append(names, cmpOr(m.Name, m.Server))
		}
	}
	slices.Sort(names)
	return st.Size, len(names), names, nil
}

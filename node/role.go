package node

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/robonet-mesh/robonet/leafnode"
	"github.com/robonet-mesh/robonet/mesh"
	"github.com/robonet-mesh/robonet/subjects"
	"github.com/robonet-mesh/robonet/trust"
	"github.com/robonet-mesh/robonet/wire"
)

// Core and edges (issue 12): which role a node takes at Start, the edge's
// server (a leaf node of the core, no JetStream, no routes), the core's
// leaf listener for edges, the rn.sys.core query, edge liveness on the
// core (leaf polling), and the restart a role change needs.

// roleCandidate is the transient role of a node with --cluster and --join
// and no saved role: it asks the core whether it has room.
const roleCandidate = "candidate"

// coreSizeKey is the rn_config key holding the core's size.
const coreSizeKey = "core.size"

// linkLostGrace is how long a core node waits, after an edge's leaf
// connection to it went away, for a heartbeat of that edge through
// another core member before it reports the edge left ("link lost").
const linkLostGrace = 250 * time.Millisecond

// ErrNoCore is wrapped when an edge knows no core address to dial.
var ErrNoCore = errors.New("no core address")

// edgeState is what a node keeps about its role (role.go).
type edgeState struct {
	mu        sync.Mutex // guards the fields below
	leafs     []string   // core leaf addresses (edges)
	link      string     // connected core server (edges), "" when none
	since     time.Time  // when link was established
	members   []wire.Member
	membersAt time.Time
	core      wire.CoreStatus
	coreAt    time.Time
	warnedAt  time.Time // the leader's last core-size warning
	size      int       // the core's size as last read (coreSize), at sizeAt
	sizeAt    time.Time
	swarm     edgeSwarm // an edge's swarm, adopted from the core (fededge.go)

	// edgeNames are the server names of the edges this core member
	// admitted (admitEdge), by when: its leaf links that are edges'
	// (Leafz does not tell them from a child swarm's links).
	edgeNames map[string]time.Time

	restart     chan struct{} // closed by restartFor
	restartOnce sync.Once
	restartWhy  string // written before restart is closed
}

// initialRole decides the role from options and saved state; a candidate
// asks the core later (decideCandidate).
func (n *Node) initialRole(saved savedState) string {
	o := &n.opts
	switch {
	case o.Edge:
		return wire.NodeRoleEdge
	case saved.Role != "":
		return saved.Role
	case len(o.Join) == 0:
		if o.Cluster == "" && len(saved.CoreLeafs) > 0 {
			return wire.NodeRoleEdge
		}
		return wire.NodeRoleCore // a single node, or a founder
	case saved.Chevron != "":
		return wire.NodeRoleCore // a member from before roles
	case o.joinNoCluster:
		return wire.NodeRoleEdge
	case o.ForceCore:
		return wire.NodeRoleCore
	}
	return roleCandidate
}

// Role is the node's role, wire.NodeRoleCore or wire.NodeRoleEdge.
func (n *Node) Role() string {
	if n.edge {
		return wire.NodeRoleEdge
	}
	return wire.NodeRoleCore
}

// RestartRequested is closed when the node asks to be restarted with the
// same options (its saved role changed: `robonet core add/remove`). The
// caller shuts it down and starts a new Node.
func (n *Node) RestartRequested() <-chan struct{} { return n.es.restart }

// requestRestart saves role in the data dir and signals RestartRequested.
func (n *Node) requestRestart(role string) error {
	if role != wire.NodeRoleCore && role != wire.NodeRoleEdge {
		return fmt.Errorf("role %q: want core or edge", role)
	}
	st, err := n.dd.loadState()
	if err != nil {
		return err
	}
	st.Role = role
	if err := n.dd.saveState(st); err != nil {
		return err
	}
	n.restartFor(fmt.Sprintf("its role changed to %s", role))
	return nil
}

// restartFor signals RestartRequested once, saying why (RestartReason).
func (n *Node) restartFor(why string) {
	n.es.restartOnce.Do(func() {
		n.es.restartWhy = why
		close(n.es.restart)
	})
}

// RestartReason says why the node asked to be restarted ("" before it
// did); read it after RestartRequested is closed.
func (n *Node) RestartReason() string {
	select {
	case <-n.es.restart:
		return n.es.restartWhy
	default:
		return ""
	}
}

// edgeTLS is an edge's TLS towards the core: its route certificate (the
// swarm secret's proof or its one-time token, like a route), and the
// core's certificate checked like a route peer's.
func (n *Node) edgeTLS() *tls.Config {
	tc := n.routes.tlsConfig()
	tc.GetCertificate = nil
	return tc
}

// edgeServerOptions makes so an edge's: no JetStream, no routes, one leaf
// remote to every core address, leaf pings every second.
func (n *Node) edgeServerOptions(so *server.Options) error {
	so.JetStream = false
	so.PingInterval = leafnode.PingInterval
	so.MaxPingsOut = leafnode.MaxPingsOut
	so.LeafNode.ReconnectInterval = leafnode.ReconnectInterval
	n.es.mu.Lock()
	leafs := slices.Clone(n.es.leafs)
	n.es.mu.Unlock()
	if len(leafs) == 0 {
		return fmt.Errorf("%w: an edge needs --join (a core node's cluster address) the first time", ErrNoCore)
	}
	seed, err := n.kp.Seed()
	if err != nil {
		return err
	}
	r := &server.RemoteLeafOpts{
		LocalAccount: leafnode.LocalAccount,
		Nkey:         string(seed),
		TLS:          true,
		TLSTimeout:   leafnode.TLSTimeout,
		TLSConfig:    n.edgeTLS(),
		// The core's leaf INFO names its other members: failover.
		IgnoreDiscoveredServers: len(n.opts.coreLeafs) > 0,
	}
	for _, l := range leafs {
		r.URLs = append(r.URLs, &url.URL{Scheme: "nats-leaf", Host: l})
	}
	so.LeafNode.Remotes = []*server.RemoteLeafOpts{r}
	return nil
}

// edgeListen is the core node's leaf listener for edges ("" for a single
// node, or when the hub's federation listener serves them).
func (n *Node) edgeListen() string {
	o := n.opts
	if o.Cluster == "" || n.IsHub() {
		return ""
	}
	if o.EdgeListen != "" {
		return o.EdgeListen
	}
	host, port, _ := splitHostPort(o.Cluster)
	if port == 6222 {
		return net.JoinHostPort(host, strconv.Itoa(leafnode.DefaultPort))
	}
	return net.JoinHostPort(host, "0")
}

// coreServerOptions adds the leaf listener for edges to a core node's
// options, and the leaf pings that notice an edge silently gone.
func (n *Node) coreServerOptions(so *server.Options) error {
	if n.opts.Cluster == "" {
		return nil
	}
	so.PingInterval = leafnode.PingInterval
	so.MaxPingsOut = leafnode.MaxPingsOut
	if n.fed == nil {
		// Edges reach JetStream as $JS.<domain>.API (see Start).
		so.JetStreamDomain = n.coreDomain()
	}
	if n.IsHub() {
		// One listener serves child swarms and edges: advertised, so
		// edges learn every core address (spokes ignore discovered ones).
		so.LeafNode.NoAdvertise = false
		return nil
	}
	h := leafnode.Hub{Listen: n.edgeListen(), Certificate: func() (*tls.Certificate, error) {
		n.routes.mu.RLock()
		defer n.routes.mu.RUnlock()
		c := n.routes.plain
		return &c, nil
	}, Admit: n.admitLeafCert}
	if err := h.Apply(so); err != nil {
		return fmt.Errorf("%w: --edge-listen: %v", ErrOptions, err)
	}
	so.LeafNode.NoAdvertise = false // route INFO carries it to edges (probeJoin)
	return nil
}

// coreDomain is the core's JetStream domain: the federated swarm's, else
// "rn-<swarm>".
func (n *Node) coreDomain() string {
	if n.edge {
		if d := n.edgeSwarmNow().Domain; d != "" {
			return d
		}
	}
	if d := n.Domain(); d != "" {
		return d
	}
	return "rn-" + n.opts.Swarm
}

// connectInProcess connects to the node's own server, trying again a few
// times: core and edge servers ping every second (leaf links inherit the
// server's interval), and on a loaded host the server's first PING can
// arrive before the handshake's PONG, which nats.go reports as an error.
func connectInProcess(opts ...nats.Option) (*nats.Conn, error) {
	opts = append(opts, nats.Timeout(10*time.Second))
	var err error
	for attempt := 0; attempt < 3; attempt++ {
		var nc *nats.Conn
		if nc, err = nats.Connect("", opts...); err == nil {
			return nc, nil
		}
	}
	return nil, err
}

// isEdgeLeaf reports whether a leaf CONNECT is an edge's: no user, no
// password (child swarms show their prefix and federation token).
func isEdgeLeaf(c server.ClientAuthentication) bool {
	o := c.GetOpts()
	return o != nil && o.Username == "" && o.Password == ""
}

// admitEdge is the authenticator's LEAF branch for edges, on core nodes:
// the nonce signed by the node key, the server name that key's, the TLS
// certificate that key's and admitted by routeAuth exactly as a route
// (member, proof of the swarm secret, or one-time token), not revoked.
func (n *Node) admitEdge(c server.ClientAuthentication) bool {
	o := c.GetOpts()
	if n.edge || n.routes == nil {
		return false
	}
	pub, err := nonceKey(c)
	if err == nil {
		err = n.checkEdge(c, pub, time.Now())
	}
	if err != nil {
		n.leafRefusedLog(o.Name, pub, "", fmt.Errorf("edge refused: %w", err))
		return false
	}
	c.RegisterUser(&server.User{Username: pub, Permissions: leafnode.EdgePermissions(n.coreDomain(), o.Name)})
	n.es.mu.Lock()
	if n.es.edgeNames == nil {
		n.es.edgeNames = map[string]time.Time{}
	}
	n.es.edgeNames[o.Name] = time.Now()
	n.es.mu.Unlock()
	return true
}

func (n *Node) checkEdge(c server.ClientAuthentication, pub string, now time.Time) error {
	o := c.GetOpts()
	if o.Name != serverName(pub) {
		return fmt.Errorf("server name %q is not the name of key %s", clip(o.Name, 64), pub)
	}
	cs := c.GetTLSConnectionState()
	if cs == nil || len(cs.PeerCertificates) == 0 {
		return errors.New("no TLS client certificate")
	}
	pc, err := trust.CheckPeerCertificate([][]byte{cs.PeerCertificates[0].Raw}, now)
	if err != nil {
		return err
	}
	if pc.Pub != pub {
		return fmt.Errorf("TLS certificate of key %s, nonce signed by key %s", pc.Pub, pub)
	}
	if n.ids.isRevoked(pub) {
		return fmt.Errorf("key %s is revoked", pub)
	}
	if n.ids.isRevoked(n.pub) {
		return fmt.Errorf("this core member's own key %s is revoked: link to another member", n.pub)
	}
	return n.routes.admit(pc, now)
}

// serveCore answers rn.sys.core on core nodes, from server start: the
// queue group and this server's own subject. Anyone who can publish there
// was admitted to the swarm (a route, an edge's leaf, or a client whose
// role allows the query); the answer is signed.
func (n *Node) serveCore() error {
	cb := func(m *nats.Msg) {
		if m.Reply == "" {
			return
		}
		data, _ := json.Marshal(wire.Reply{Data: mustJSON(n.coreStatus(true))})
		_ = n.respond(m, data)
	}
	if _, err := n.nc.QueueSubscribe(subjects.Query(subjects.QueryCore), subjects.QueryQueue, cb); err != nil {
		return err
	}
	_, err := n.nc.Subscribe(subjects.QueryAt(subjects.QueryCore, n.ServerName()), cb)
	return err
}

func mustJSON(v any) json.RawMessage {
	data, _ := json.Marshal(v)
	return data
}

// coreSize is the core's size: rn_config core.size once readable, else
// the --core option; a copy up to 2 s old.
func (n *Node) coreSize() int { return n.coreSizeWithin(2 * time.Second) }

// freshSize is how old a size rn.sys.core answers may give: a burst of
// askers (edges starting together) shares one read of rn_config, and a
// `core size` is seen within it.
const freshSize = 100 * time.Millisecond

// coreSizeWithin is the core's size as read at most maxAge ago.
func (n *Node) coreSizeWithin(maxAge time.Duration) int {
	n.es.mu.Lock()
	if time.Since(n.es.sizeAt) < maxAge {
		size := n.es.size
		n.es.mu.Unlock()
		return size
	}
	n.es.mu.Unlock()
	size := n.readCoreSize()
	n.es.mu.Lock()
	n.es.size, n.es.sizeAt = size, time.Now()
	n.es.mu.Unlock()
	return size
}

// readCoreSize reads rn_config's core.size (--core until it is readable).
// A core member asks the bucket's stream leader: a KV get is a direct get,
// which any replica may answer before it has applied the last `core size`
// (a `core add` right after it was then refused as "full").
func (n *Node) readCoreSize() int {
	if n.kvs.config != nil && !n.edge {
		if v, ok := n.leaderCoreSize(); ok {
			return v
		}
	}
	if n.kvs.config != nil {
		ctx, cancel := context.WithTimeout(n.ctx, 500*time.Millisecond)
		e, err := n.kvs.config.Get(ctx, coreSizeKey)
		cancel()
		if err == nil {
			if v, err := strconv.Atoi(strings.TrimSpace(string(e.Value()))); err == nil && v >= 1 && v <= MaxCore {
				return v
			}
		}
	}
	return n.opts.Core
}

// leaderCoreSize reads core.size with the JetStream API's message get,
// which the stream's leader answers; false when there is none (yet) or the
// leader does not answer in time.
func (n *Node) leaderCoreSize() (int, bool) {
	req, _ := json.Marshal(map[string]string{"last_by_subj": "$KV." + BucketConfig + "." + coreSizeKey})
	ctx, cancel := context.WithTimeout(n.ctx, 500*time.Millisecond)
	defer cancel()
	m, err := n.nc.RequestWithContext(ctx, "$JS.API.STREAM.MSG.GET.KV_"+BucketConfig, req)
	if err != nil {
		return 0, false
	}
	var resp struct {
		Message *struct {
			Data []byte `json:"data"`
		} `json:"message"`
	}
	if json.Unmarshal(m.Data, &resp) != nil || resp.Message == nil {
		return 0, false
	}
	v, err := strconv.Atoi(strings.TrimSpace(string(resp.Message.Data)))
	if err != nil || v < 1 || v > MaxCore {
		return 0, false
	}
	return v, true
}

// CoreStatus is the core as this node sees it; on an edge, the core's
// answer (cached for a moment).
func (n *Node) CoreStatus() wire.CoreStatus { return n.coreStatus(false) }

// coreStatus is CoreStatus; fresh takes the core's size as read from
// rn_config within freshSize rather than the copy Status polls keep (up to
// 2 s old): rn.sys.core answers decide who may join or be promoted, right
// after `core size`.
func (n *Node) coreStatus(fresh bool) wire.CoreStatus {
	if n.edge {
		st, _ := n.askCoreCached()
		return st
	}
	size := n.coreSize()
	if fresh {
		size = n.coreSizeWithin(freshSize)
	}
	st := wire.CoreStatus{Size: size, Swarm: n.opts.Swarm, JSDomain: n.coreDomain(), Pins: n.AuthorityPins()}
	if p := n.SwarmPrefix(); !p.IsZero() {
		st.Prefix = p.String()
	}
	up := map[string]bool{n.ServerName(): true}
	for _, s := range n.RoutedServers() {
		up[s] = true
	}
	byServer := map[string]wire.Member{}
	if n.reg != nil {
		for _, m := range n.reg.coreMembers(time.Now()) {
			byServer[m.Server] = m
		}
		self := n.self()
		byServer[self.Server] = self
	}
	seen := map[string]bool{}
	for s := range up {
		m := byServer[s]
		st.Members = append(st.Members, wire.CoreMember{Name: m.Name, Chevron: m.Chevron, Server: s, Pubkey: m.Pubkey, Up: true})
		seen[s] = true
	}
	for s, m := range byServer {
		if !seen[s] && m.State != wire.StateOffline {
			// A core member heard alive but not routed to from here.
			st.Members = append(st.Members, wire.CoreMember{Name: m.Name, Chevron: m.Chevron, Server: s, Pubkey: m.Pubkey, Up: true})
		} else if !seen[s] {
			st.Members = append(st.Members, wire.CoreMember{Name: m.Name, Chevron: m.Chevron, Server: s, Pubkey: m.Pubkey})
		}
	}
	slices.SortFunc(st.Members, func(a, b wire.CoreMember) int { return subjects.CompareText(a.Chevron, b.Chevron) })
	live := st.Live()
	st.Below, st.Above = live < st.Size, live > st.Size
	return st
}

// askCore asks the core (rn.sys.core, queue group) for its status, the
// query signed with the node's chain; the answer must be signed by a node.
func (n *Node) askCore(timeout time.Duration) (wire.CoreStatus, error) {
	var st wire.CoreStatus
	err := n.askSigned(subjects.Query(subjects.QueryCore), timeout, &st)
	return st, err
}

// askSigned sends a signed query to subj and decodes the signed answer.
func (n *Node) askSigned(subj string, timeout time.Duration, out any) error {
	inbox := n.nc.NewInbox()
	sub, err := n.nc.SubscribeSync(inbox)
	if err != nil {
		return err
	}
	defer sub.Unsubscribe()
	if err := n.nc.FlushTimeout(timeout); err != nil {
		return err
	}
	m := &nats.Msg{Subject: subj, Reply: inbox, Data: []byte("{}")}
	if err := n.signer.SignMsg(m); err != nil {
		return err
	}
	if err := n.nc.PublishMsg(m); err != nil {
		return err
	}
	resp, err := sub.NextMsg(timeout)
	if err != nil {
		return fmt.Errorf("%s: %w", subj, err)
	}
	h, err := mesh.ParseSigned(resp)
	if err != nil {
		return fmt.Errorf("answer from the core: %w", err)
	}
	if err := n.hbVerify.Verify(h, resp.Subject, resp.Data); err != nil {
		return fmt.Errorf("answer from the core: %w", err)
	}
	if _, member := n.ids.nodeChevron(h.From); !member && !n.chev.IsZero() {
		return fmt.Errorf("answer from the core signed by %s, not a registered node", h.From)
	}
	if n.ids.isRevoked(h.From) {
		return fmt.Errorf("answer from the core signed by %s, a revoked key", h.From)
	}
	var r wire.Reply
	if err := json.Unmarshal(resp.Data, &r); err != nil {
		return err
	}
	if r.Error != nil {
		return fmt.Errorf("%s: %s", r.Error.Code, r.Error.Msg)
	}
	return json.Unmarshal(r.Data, out)
}

func (n *Node) askCoreCached() (wire.CoreStatus, bool) {
	n.es.mu.Lock()
	if time.Since(n.es.coreAt) < 500*time.Millisecond {
		st := n.es.core
		n.es.mu.Unlock()
		return st, true
	}
	n.es.mu.Unlock()
	st, err := n.askCore(2 * time.Second)
	if err != nil {
		n.es.mu.Lock()
		defer n.es.mu.Unlock()
		return n.es.core, false
	}
	n.es.mu.Lock()
	n.es.core, n.es.coreAt = st, time.Now()
	n.es.mu.Unlock()
	return st, true
}

// edgeMembers is an edge's view of the swarm: the core's registry
// (rn.sys.nodes, signed by a registered node), cached for 500 ms, with
// this node's own row from itself.
func (n *Node) edgeMembers() []wire.Member {
	n.es.mu.Lock()
	if time.Since(n.es.membersAt) < 500*time.Millisecond {
		out := slices.Clone(n.es.members)
		n.es.mu.Unlock()
		return n.withSelf(out)
	}
	n.es.mu.Unlock()
	var ms []wire.Member
	if err := n.askSigned(subjects.Query(subjects.QueryNodes), 2*time.Second, &ms); err != nil {
		n.log.Debug("members from the core", "err", err)
		n.es.mu.Lock()
		ms = slices.Clone(n.es.members)
		n.es.mu.Unlock()
		return n.withSelf(ms)
	}
	n.es.mu.Lock()
	n.es.members, n.es.membersAt = slices.Clone(ms), time.Now()
	n.es.mu.Unlock()
	return n.withSelf(ms)
}

func (n *Node) withSelf(ms []wire.Member) []wire.Member {
	self := n.self()
	for i := range ms {
		if ms[i].Chevron == self.Chevron {
			self.Tier = ms[i].Tier
			ms[i] = self
			return ms
		}
	}
	ms = append(ms, self)
	slices.SortFunc(ms, func(a, b wire.Member) int { return subjects.CompareText(a.Chevron, b.Chevron) })
	return ms
}

// decideCandidate starts the server as an edge, asks the core whether it
// has room, and stops the server again: core when the core has fewer live
// members than its size (or this node is one of them), or when no core
// answers within about 5 s (the core is still forming); edge otherwise.
func (n *Node) decideCandidate(ctx context.Context) (string, error) {
	n.edge = true
	defer func() { n.edge = false }()
	n.es.mu.Lock()
	noLeafs := len(n.es.leafs) == 0
	n.es.mu.Unlock()
	if noLeafs {
		return wire.NodeRoleCore, nil // no core member answered the probe
	}
	so, err := n.serverOptions()
	if err != nil {
		return "", err
	}
	srv, err := server.NewServer(so)
	if err != nil {
		return "", fmt.Errorf("nats server: %w", err)
	}
	srv.SetLoggerV2(natsLogger{l: n.log, fatal: &n.fatal}, true, false, false)
	srv.Start()
	defer func() {
		srv.Shutdown()
		srv.WaitForShutdown()
		n.srv, n.nc = nil, nil
	}()
	if !srv.ReadyForConnections(10 * time.Second) {
		return "", errors.New("nats server: not ready for connections after 10s")
	}
	n.srv = srv
	nc, err := connectInProcess(nats.InProcessServer(srv), nats.Name("robonet-node"),
		nats.CustomInboxPrefix(subjects.Inbox(n.pub)), nats.Nkey(n.pub, n.kp.Sign))
	if err != nil {
		return "", fmt.Errorf("connect to own server: %w", err)
	}
	defer nc.Close()
	n.nc = nc
	deadline := time.Now().Add(5 * time.Second)
	for time.Now().Before(deadline) {
		if srv.NumLeafNodes() > 0 {
			st, err := n.askCore(2 * time.Second)
			if err == nil {
				mine := slices.ContainsFunc(st.Members, func(m wire.CoreMember) bool { return m.Server == n.ServerName() })
				role := wire.NodeRoleEdge
				if mine || st.Live() < st.Size {
					role = wire.NodeRoleCore
				}
				n.log.Info("asked the core", "size", st.Size, "live", st.Live(), "role", role)
				return role, nil
			}
			n.log.Debug("core query", "err", err)
		}
		select {
		case <-ctx.Done():
			return "", ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
	}
	n.log.Info("no core answered: joining as a core member (the core is forming)")
	return wire.NodeRoleCore, nil
}

// edgeLinkLoop watches an edge's leaf connection: it heartbeats at once
// when the link (re)connects, so a leave reported while it was away is
// cleared, records which core server it is linked to, and drops a link to
// a core member whose key was revoked.
func (n *Node) edgeLinkLoop() {
	defer n.wg.Done()
	t := time.NewTicker(100 * time.Millisecond)
	defer t.Stop()
	var again time.Time
	for {
		select {
		case <-n.ctx.Done():
			return
		case <-t.C:
		}
		link := ""
		if lz, err := n.srv.Leafz(&server.LeafzOptions{}); err == nil {
			revoked := n.revokedServers()
			for _, l := range lz.Leafs {
				if revoked[l.Name] {
					// The core member this edge is linked to was revoked:
					// drop the link; the redial refuses that member
					// (routeAuth.verify) and takes another.
					if err := n.srv.DisconnectClientByID(l.ID); err == nil {
						n.log.Warn("left a revoked core member", "server", l.Name)
					}
					continue
				}
				link = l.Name
			}
		}
		n.es.mu.Lock()
		changed := link != n.es.link
		if changed {
			n.es.link, n.es.since = link, time.Now().UTC()
		}
		n.es.mu.Unlock()
		now := time.Now()
		if changed && link != "" {
			n.log.Info("linked to the core", "server", link)
			n.heartbeat()
			again = now.Add(500 * time.Millisecond) // once the core's interest has arrived
		}
		if !again.IsZero() && now.After(again) {
			again = time.Time{}
			n.heartbeat()
		}
	}
}

// revokedServers are the server names of the revoked node keys.
func (n *Node) revokedServers() map[string]bool {
	out := map[string]bool{}
	for _, pub := range n.ids.revokedKeys() {
		out[serverName(pub)] = true
	}
	return out
}

// coreLink is an edge's connected core server and since when.
func (n *Node) coreLink() (string, time.Time) {
	n.es.mu.Lock()
	defer n.es.mu.Unlock()
	return n.es.link, n.es.since
}

// watchEdges polls a core node's leaf connections (every 100 ms; Leafz is
// in-process and cheap): an edge whose link to
// this node went away and that no heartbeat has shown alive since (through
// another core member) within linkLostGrace is reported left, "link lost",
// under this node's chevron.
func (n *Node) watchEdges() {
	defer n.wg.Done()
	t := time.NewTicker(100 * time.Millisecond)
	defer t.Stop()
	linked := map[string]bool{}    // edge server names linked here
	gone := map[string]time.Time{} // server → when its link went away
	for {
		select {
		case <-n.ctx.Done():
			return
		case <-t.C:
		}
		lz, err := n.srv.Leafz(&server.LeafzOptions{})
		if err != nil {
			continue
		}
		now := time.Now()
		cur := map[string]bool{}
		revoked := n.revokedServers()
		for _, l := range lz.Leafs {
			if revoked[l.Name] {
				// Revoked after it linked: the link goes (and admitEdge
				// refuses it from now on).
				if err := n.srv.DisconnectClientByID(l.ID); err == nil {
					n.log.Warn("closed the leaf link of a revoked edge", "server", l.Name)
				}
				continue
			}
			if strings.HasPrefix(l.Name, "rn-") {
				cur[l.Name] = true
			}
		}
		for s := range linked {
			if !cur[s] {
				gone[s] = now
			}
		}
		for s := range cur {
			delete(gone, s)
		}
		linked = cur
		for s, at := range gone {
			if now.Sub(at) < linkLostGrace {
				continue
			}
			delete(gone, s)
			chev, name, pub, ok := n.reg.edgeByServer(s, at)
			if !ok {
				continue // heard since, or not an edge of this swarm
			}
			n.log.Info("edge link lost", "chevron", chev, "server", s)
			n.publishEvent(wire.Event{Kind: subjects.EvtLeave, Chevron: chev, Name: name, Pubkey: pub,
				By: n.chev.String(), Reason: "link lost"})
			n.reg.onLeave(chev, now, false, 0)
		}
	}
}

// cutOffShed is how long a core member stays cut off from a majority of
// the core before it drops its edges' links: longer than a route's redial
// after a blip, short enough that edges are back with the majority within
// seconds.
const cutOffShed = 5 * time.Second

// shedLoop drops the leaf links of this core member's edges when the
// member can no longer serve them: its own key revoked (every link, at
// once; admitEdge refuses new ones), or cut off from a majority of the
// core (metaSize) for cutOffShed after it had reached one (a partition,
// or its routes cut by the other members after a revocation this member
// never heard).
// An edge's leaf redials the next core address in its list, so it lands
// on a member with the majority, learns there what it missed (a
// revocation: it then refuses this member) and stays alive in the
// registry. Cut off, the member drops its links once per episode and
// keeps admitting edges: an edge that reaches no other member comes back
// rather than staying unlinked. (Its own loop: reading the core's size
// can wait on JetStream when the member is cut off.)
func (n *Node) shedLoop() {
	defer n.wg.Done()
	t := time.NewTicker(500 * time.Millisecond)
	defer t.Stop()
	var (
		hadMajority bool      // reached one since it started: a member still joining sheds nothing
		since       time.Time // cut off since; zero while it reaches a majority
		shed        bool      // this episode's links were dropped
		pruned      = time.Now()
	)
	for {
		select {
		case <-n.ctx.Done():
			return
		case <-t.C:
		}
		why := ""
		if n.ids.isRevoked(n.pub) {
			why = "this member's own key is revoked"
		} else if reach, size := len(n.RoutedServers())+1, n.metaSize(); reach > size/2 {
			hadMajority, since, shed = true, time.Time{}, false
		} else if hadMajority && since.IsZero() {
			since = time.Now()
			n.log.Warn("cut off from the core", "reach", reach, "size", size)
		} else if hadMajority && !shed && time.Since(since) >= cutOffShed {
			shed = true
			why = fmt.Sprintf("cut off from the core for %s (this member reaches %d of %d)", cutOffShed, reach, size)
		}
		if why == "" && time.Since(pruned) < time.Minute {
			continue
		}
		lz, err := n.srv.Leafz(&server.LeafzOptions{})
		if err != nil {
			continue
		}
		if why == "" {
			pruned = time.Now()
			n.pruneEdgeNames(lz.Leafs)
			continue
		}
		dropped := 0
		for _, l := range lz.Leafs {
			n.es.mu.Lock()
			_, edge := n.es.edgeNames[l.Name]
			n.es.mu.Unlock()
			if edge && n.srv.DisconnectClientByID(l.ID) == nil {
				dropped++
			}
		}
		if dropped > 0 {
			n.log.Warn("dropped the leaf links of this member's edges, so they link to another core member", "edges", dropped, "why", why)
		}
	}
}

// metaSize is the size of the JetStream meta group as this server knows
// it (the core's size when it has none: JetStream off, or a single node).
// It, not the configured core size, says whether a majority is reachable:
// a core of size 5 with three members survives the loss of one.
func (n *Node) metaSize() int {
	if jsz, err := n.srv.Jsz(&server.JSzOptions{}); err == nil && jsz.Meta != nil && jsz.Meta.Size > 0 {
		return jsz.Meta.Size
	}
	return n.coreSize()
}

// pruneEdgeNames forgets edges admitted over a minute ago that hold no
// link here now (a relink admits them again).
func (n *Node) pruneEdgeNames(leafs []*server.LeafInfo) {
	linked := make(map[string]bool, len(leafs))
	for _, l := range leafs {
		linked[l.Name] = true
	}
	n.es.mu.Lock()
	defer n.es.mu.Unlock()
	for name, at := range n.es.edgeNames {
		if !linked[name] && time.Since(at) > time.Minute {
			delete(n.es.edgeNames, name)
		}
	}
}

// writeCoreSize records --core in rn_config (core.size) when the swarm
// has no size yet: the founder's word; `robonet core size` changes it.
func (n *Node) writeCoreSize(ctx context.Context) {
	if n.kvs.config == nil || !n.Clustered() {
		return
	}
	cctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	if _, err := n.kvs.config.Create(cctx, coreSizeKey, []byte(strconv.Itoa(n.opts.Core))); err != nil && !errors.Is(err, jetstream.ErrKeyExists) {
		n.log.Warn("record the core size", "err", err)
	}
}

// evtCore is the event kind the leader publishes when the core is below
// (or above) its size.
const evtCore = "core"

// warnCoreBelow is the leader's check, from monitorLoop: when fewer core
// members are live than the core's size, it logs a warning and publishes
// an evt.core event, at most once a minute.
func (n *Node) warnCoreBelow(now time.Time) {
	if !n.Clustered() {
		return // a single node is its whole core, whatever --core says
	}
	n.es.mu.Lock()
	due := now.Sub(n.es.warnedAt) >= time.Minute
	n.es.mu.Unlock()
	if !due {
		return
	}
	st := n.CoreStatus()
	if !st.Below && !st.Above {
		return
	}
	n.es.mu.Lock()
	n.es.warnedAt = now
	n.es.mu.Unlock()
	reason := fmt.Sprintf("core below its size: %d of %d members live (promote an edge: robonet core add <node>)", st.Live(), st.Size)
	if st.Above {
		reason = fmt.Sprintf("core above its size: %d members live, size %d (robonet core remove <node>)", st.Live(), st.Size)
	}
	n.log.Warn(reason)
	n.publishEvent(wire.Event{Kind: evtCore, Chevron: n.chev.String(), Name: n.name, Pubkey: n.pub, Reason: reason})
}

// EdgeLeafAddr is the address a core node accepts edges' leaf connections
// on, host:port; "" on an edge or a single node.
func (n *Node) EdgeLeafAddr() string {
	if n.edge || n.srv == nil || !n.Clustered() {
		return ""
	}
	v, err := n.srv.Varz(nil)
	if err != nil || v.LeafNode.Port <= 0 {
		return ""
	}
	host := v.LeafNode.Host
	if host == "" || host == "0.0.0.0" || host == "::" {
		host = "127.0.0.1"
	}
	return net.JoinHostPort(host, strconv.Itoa(v.LeafNode.Port))
}

// EdgeLinks lists the server names of the leaf connections a core node
// holds now (edges, and child swarms' nodes on a hub).
func (n *Node) EdgeLinks() []string {
	if n.edge || n.srv == nil {
		return nil
	}
	lz, err := n.srv.Leafz(&server.LeafzOptions{})
	if err != nil {
		return nil
	}
	var out []string
	for _, l := range lz.Leafs {
		out = append(out, l.Name)
	}
	slices.Sort(out)
	return out
}

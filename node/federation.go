package node

import (
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"os"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats-server/v2/server"

	"github.com/robonet-mesh/robonet/leafnode"
	"github.com/robonet-mesh/robonet/subjects"
	"github.com/robonet-mesh/robonet/trust"
)

// FederationFile keeps a federated node's leaf settings in the data dir
// (mode 0600: it holds the federation token), so a restart needs no flags.
const FederationFile = "federation.json"

// savedFederation is FederationFile's content.
type savedFederation struct {
	LeafListen string   `json:"leaf_listen,omitempty"`
	Federate   []string `json:"federate,omitempty"`
	Token      string   `json:"federate_token,omitempty"`
}

// federation is a federated node's leaf-link state; nil on other nodes.
type federation struct {
	listen  string           // leaf listen address ("" : not a hub)
	parents []string         // the parent swarm's leaf addresses ("" : no parent)
	token   string           // the federation token this swarm joined its parent with
	claims  trust.FedClaims  // the token's claims, as inspected (not authenticated here)
	prefix  subjects.Chevron // this swarm's prefix
	domain  string           // leafnode.Domain(prefix)
	secret  []byte           // a single-node hub's own secret (a swarm's is in routeAuth)

	certMu  sync.Mutex       // guards cert, certFor
	cert    *tls.Certificate // this node's leaf certificate as a hub
	certFor string           // the link key cert proves ("" : none)

	obsMu    sync.Mutex            // serializes observeLeafs (a Leafz and its comparison); before mu
	mu       sync.Mutex            // guards the fields below
	inbound  map[uint64]leafPeer   // admitted leaf connections, by connection id
	seen     map[uint64]time.Time  // when the watcher first saw each connection
	down     map[string]LeafLink   // "in "/"out " + swarm prefix → the link as it went down
	bound    map[string]string     // token id → the child prefix it admitted and the token digest (JetStream unavailable)
	refusals map[string]time.Time  // refusal text → when last logged at warn
	last     map[uint64]leafUpInfo // connections up at the watcher's last look
}

// leafPeer is what the authenticator learnt of an admitted leaf connection.
type leafPeer struct {
	prefix subjects.Chevron
	pub    string
	server string
	at     time.Time // admitted
}

type leafUpInfo struct {
	swarm    string
	server   string
	outbound bool
}

// LeafLink is one leaf link as this node sees it: a live connection (Up),
// or a peer swarm whose last connection here went down (Up false, Since the
// moment it did; for a child node, its parent before any link came up).
type LeafLink struct {
	Server   string        `json:"server"`   // the remote server's name (rn-…), "" if never connected
	Swarm    string        `json:"swarm"`    // the remote swarm's prefix
	Domain   string        `json:"domain"`   // its JetStream domain
	Up       bool          `json:"up"`       // connected now
	Outbound bool          `json:"outbound"` // this node dialled it (a link to the parent)
	RTT      time.Duration `json:"rtt"`      // last measured round trip (Up only)
	Since    time.Time     `json:"since"`    // up since (Up) or down since
	InMsgs   int64         `json:"in_msgs"`
	OutMsgs  int64         `json:"out_msgs"`
}

// Federated reports whether the node is federated (LeafListen or Federate
// given or saved).
func (n *Node) Federated() bool { return n.fed != nil }

// SwarmPrefix is the node's swarm prefix (the first 3 tokens of its
// chevron); zero unless the swarm is federated (an edge's, from its core).
func (n *Node) SwarmPrefix() subjects.Chevron {
	if n.fed == nil {
		return n.edgeSwarmNow().prefix() // an edge of a federated swarm
	}
	return n.fed.prefix
}

// Domain is the swarm's JetStream domain and NATS cluster name,
// "rn-<zone>-<region>-<swarm>"; "" unless the swarm is federated.
func (n *Node) Domain() string {
	if n.fed == nil {
		if es := n.edgeSwarmNow(); es.Prefix != "" {
			return es.Domain // an edge of a federated swarm
		}
		return ""
	}
	return n.fed.domain
}

// IsHub reports whether the node accepts child swarms (LeafListen).
func (n *Node) IsHub() bool { return n.fed != nil && n.fed.listen != "" }

// ParentPrefix is the parent swarm's prefix once this node's link to it is
// up; "" without a parent or while the link is down.
func (n *Node) ParentPrefix() string {
	if n.fed == nil || len(n.fed.parents) == 0 {
		return ""
	}
	for _, l := range n.LeafLinks() {
		if l.Outbound && l.Up {
			return l.Swarm
		}
	}
	return ""
}

// AuthorityPins are the founder keys of the ancestor swarms, from the
// federation token this swarm joined its parent with (the parent's founder
// first; an edge has them from its core); nil for a swarm without a parent.
func (n *Node) AuthorityPins() []string {
	if n.fed == nil {
		return n.edgeSwarmNow().Pins // an edge of a federated child swarm
	}
	if len(n.fed.parents) == 0 {
		return nil
	}
	return slices.Clone(n.fed.claims.Pins)
}

// LeafAddr is the address the node accepts child swarms' leaf connections
// on, host:port; "" unless it is a hub.
func (n *Node) LeafAddr() string {
	if !n.IsHub() || n.srv == nil {
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

// LeafLinks lists the node's leaf links (Leafz), live ones first, then the
// peer swarms whose links went down.
func (n *Node) LeafLinks() []LeafLink {
	f := n.fed
	if f == nil || n.srv == nil {
		return nil
	}
	now := time.Now()
	lz := n.observeLeafs(now)
	if lz == nil {
		return nil
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []LeafLink
	up := map[string]bool{}
	for _, li := range lz.Leafs {
		l := LeafLink{Server: li.Name, Up: true, Outbound: li.IsSpoke, InMsgs: li.InMsgs, OutMsgs: li.OutMsgs, Since: now}
		l.RTT, _ = time.ParseDuration(li.RTT)
		l.Swarm = f.swarmOfLocked(li)
		l.Domain = domainOf(l.Swarm)
		if t, ok := f.seen[li.ID]; ok {
			l.Since = t
		}
		up[linkKey(l.Outbound, l.Swarm)] = true
		out = append(out, l)
	}
	sort.Slice(out, func(i, j int) bool {
		if out[i].Outbound != out[j].Outbound {
			return out[i].Outbound
		}
		return out[i].Swarm+out[i].Server < out[j].Swarm+out[j].Server
	})
	var downs []LeafLink
	for k, l := range f.down {
		if !up[k] {
			downs = append(downs, l)
		}
	}
	if hub := f.claims.Hub.String(); len(f.parents) > 0 && !up[linkKey(true, hub)] && f.down[linkKey(true, hub)].Swarm == "" {
		// Never connected yet.
		downs = append(downs, LeafLink{Swarm: hub, Domain: domainOf(hub), Outbound: true, Since: n.started})
	}
	sort.Slice(downs, func(i, j int) bool { return downs[i].Swarm < downs[j].Swarm })
	return append(out, downs...)
}

func linkKey(outbound bool, swarm string) string {
	if outbound {
		return "out " + swarm
	}
	return "in " + swarm
}

func domainOf(swarm string) string {
	c, err := subjects.Parse(swarm)
	if err != nil {
		return ""
	}
	return leafnode.Domain(c)
}

// swarmOfLocked names the swarm at the other end of a leaf connection: the
// parent (from the token) for an outbound one, the admitted child prefix
// for an inbound one. f.mu must be held.
func (f *federation) swarmOfLocked(li *server.LeafInfo) string {
	if li.IsSpoke {
		return f.claims.Hub.String()
	}
	if p, ok := f.inbound[li.ID]; ok {
		return p.prefix.String()
	}
	return ""
}

// noteInbound records an admitted leaf connection (the authenticator).
func (f *federation) noteInbound(cid uint64, p leafPeer) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.inbound[cid] = p
}

// leafLoop watches the node's leaf connections (observeLeafs) four times a
// second, so that links going up and down are logged and revoked keys cut
// off even when nobody asks for LeafLinks.
func (n *Node) leafLoop() {
	defer n.wg.Done()
	t := time.NewTicker(250 * time.Millisecond)
	defer t.Stop()
	for {
		n.observeLeafs(time.Now())
		select {
		case <-n.ctx.Done():
			return
		case <-t.C:
		}
	}
}

// observeLeafs compares the server's leaf connections with the last look:
// it logs links going up and down, keeps when each did (LeafLinks), and
// closes the leaf connections of keys the swarm revoked since they were
// admitted. It returns what Leafz said (nil on error).
func (n *Node) observeLeafs(now time.Time) *server.Leafz {
	f := n.fed
	f.obsMu.Lock()
	defer f.obsMu.Unlock()
	lz, err := n.srv.Leafz(nil)
	if err != nil {
		return nil
	}
	var revoked []uint64
	f.mu.Lock()
	cur := map[uint64]leafUpInfo{}
	for _, li := range lz.Leafs {
		info := leafUpInfo{swarm: f.swarmOfLocked(li), server: li.Name, outbound: li.IsSpoke}
		cur[li.ID] = info
		if _, ok := f.seen[li.ID]; !ok {
			f.seen[li.ID] = now
			delete(f.down, linkKey(info.outbound, info.swarm))
			n.log.Info("leaf link up", "swarm", info.swarm, "server", info.server, "outbound", info.outbound)
		}
		if p, ok := f.inbound[li.ID]; ok && !li.IsSpoke && n.ids.isRevoked(p.pub) {
			revoked = append(revoked, li.ID)
		}
	}
	stillUp := map[string]bool{}
	for _, info := range cur {
		stillUp[linkKey(info.outbound, info.swarm)] = true
	}
	for id, info := range f.last {
		if _, ok := cur[id]; ok {
			continue
		}
		delete(f.seen, id)
		delete(f.inbound, id)
		n.log.Warn("leaf link down", "swarm", info.swarm, "server", info.server, "outbound", info.outbound)
		if k := linkKey(info.outbound, info.swarm); !stillUp[k] && info.swarm != "" {
			f.down[k] = LeafLink{Server: info.server, Swarm: info.swarm, Domain: domainOf(info.swarm), Outbound: info.outbound, Since: now}
		}
	}
	for id, p := range f.inbound {
		if _, ok := cur[id]; !ok && now.Sub(p.at) > 10*time.Second {
			delete(f.inbound, id) // admitted, then closed before it was seen up
		}
	}
	f.last = cur
	f.mu.Unlock()
	for _, id := range revoked {
		if err := n.srv.DisconnectClientByID(id); err == nil {
			n.log.Warn("closed the leaf connection of a revoked key", "cid", id)
		}
	}
	return lz
}

// resolveFederation merges the federation flags with FederationFile, checks
// them against the chevron, saves them, and sets n.fed and the swarm name.
// It runs in Start once the data dir is open.
func (n *Node) resolveFederation(saved savedState) error {
	sf, err := n.dd.loadFederation()
	if err != nil {
		return err
	}
	o := &n.opts
	listen := cmpOr(o.LeafListen, sf.LeafListen)
	parents := o.Federate
	if len(parents) == 0 {
		parents = sf.Federate
	}
	token := cmpOr(o.FederateToken, sf.Token)
	if listen == "" && len(parents) == 0 {
		if token != "" {
			return fmt.Errorf("%w: --federate-token without --federate: give the parent swarm's leaf addresses", ErrOptions)
		}
		return nil
	}
	if len(parents) > 0 && token == "" {
		return fmt.Errorf("%w: --federate needs --federate-token: a token from `robonet token create --federate` on the parent swarm", ErrOptions)
	}
	if token != "" && len(parents) == 0 {
		return fmt.Errorf("%w: --federate-token without --federate: give the parent swarm's leaf addresses", ErrOptions)
	}
	chevText := cmpOr(o.Chevron, saved.Chevron)
	if chevText == "" {
		return fmt.Errorf("%w: a federated node (--leaf-listen or --federate) needs --chevron zone.region.swarm.node", ErrOptions)
	}
	chev, err := subjects.Parse(chevText)
	if err != nil {
		return fmt.Errorf("%w: --chevron: %v", ErrOptions, err)
	}
	prefix, err := leafnode.SwarmPrefix(chev)
	if err != nil {
		return fmt.Errorf("%w: %v", ErrOptions, err)
	}
	domain := leafnode.Domain(prefix)
	if o.Swarm != DefaultSwarm && o.Swarm != domain {
		return fmt.Errorf("%w: --swarm %q: a federated node's swarm is %s (from chevron %s); drop --swarm", ErrOptions, o.Swarm, domain, chev)
	}
	f := &federation{listen: listen, parents: parents, token: token, prefix: prefix, domain: domain,
		inbound: map[uint64]leafPeer{}, seen: map[uint64]time.Time{}, down: map[string]LeafLink{},
		bound: map[string]string{}, refusals: map[string]time.Time{}}
	if token != "" {
		if f.claims, err = trust.InspectFedToken(token); err != nil {
			return fmt.Errorf("%w: --federate-token: %v", ErrOptions, err)
		}
		if err := checkParentToken(f.claims, prefix); err != nil {
			return fmt.Errorf("%w: --federate-token: %v", ErrOptions, err)
		}
	}
	if saved.Swarm != "" && saved.Swarm != domain {
		n.log.Info("swarm renamed for federation", "was", saved.Swarm, "now", domain)
	}
	o.Swarm = domain
	want := savedFederation{LeafListen: listen, Federate: parents, Token: token}
	if !slices.Equal(want.Federate, sf.Federate) || want.LeafListen != sf.LeafListen || want.Token != sf.Token {
		if err := n.dd.saveFederation(want); err != nil {
			return err
		}
	}
	if listen != "" && o.Cluster == "" {
		// A single-node hub has no route credential: it keeps a secret of
		// its own to issue and check federation tokens with.
		if f.secret, err = n.dd.loadOrMakeSecret(); err != nil {
			return err
		}
	}
	n.fed = f
	return nil
}

// loadOrMakeSecret returns the secret saved in the data dir, generating and
// saving one if there is none (it becomes the swarm secret if the node
// later grows into a swarm).
func (d *dataDir) loadOrMakeSecret() ([]byte, error) {
	s, err := d.loadSecret()
	if err != nil || s != nil {
		return s, err
	}
	text, err := trust.GenerateSecret()
	if err != nil {
		return nil, err
	}
	s, _ = trust.ParseSecret(text)
	return s, d.saveSecret(s)
}

// checkParentToken checks what a child can check of its federation token
// without the parent's secret: a hub in its own zone that is not its own
// swarm, and a binding (if any) to its own prefix.
func checkParentToken(c trust.FedClaims, prefix subjects.Chevron) error {
	switch {
	case c.Hub == prefix:
		return fmt.Errorf("the token was issued by swarm %s, this node's own swarm", c.Hub)
	case c.Hub.Tokens()[0] != prefix.Tokens()[0]:
		return fmt.Errorf("the token was issued by hub swarm %s, outside zone %d of this node's swarm %s", c.Hub, prefix.Tokens()[0], prefix)
	}
	if err := c.CheckPrefix(prefix); err != nil {
		return err
	}
	return nil
}

// validateFederation checks the federation options that can be checked
// before the data dir is read (the chevron and token may be saved there).
func (o Options) validateFederation() (Options, error) {
	bad := func(format string, a ...any) (Options, error) {
		return o, fmt.Errorf("%w: "+format, append([]any{ErrOptions}, a...)...)
	}
	if strings.TrimSpace(o.LeafListen) != "" {
		a, err := leafnode.ParseAddress(o.LeafListen, false)
		if err != nil {
			return bad("--leaf-listen: %v", err)
		}
		o.LeafListen = a
	} else {
		o.LeafListen = ""
	}
	var parents []string
	for _, p := range o.Federate {
		if strings.TrimSpace(p) == "" {
			continue
		}
		a, err := leafnode.ParseAddress(p, true)
		if err != nil {
			return bad("--federate: %v", err)
		}
		if !slices.Contains(parents, a) {
			parents = append(parents, a)
		}
	}
	o.Federate = parents
	o.FederateToken = strings.TrimSpace(o.FederateToken)
	if o.FederateToken != "" {
		if _, err := trust.InspectFedToken(o.FederateToken); err != nil {
			return bad("--federate-token: %v (robonet token create --federate on the parent swarm makes one)", err)
		}
	}
	if o.LeafListen == "" && len(o.Federate) == 0 {
		return o, nil
	}
	if o.Chevron != "" {
		c, _ := subjects.Parse(o.Chevron)
		prefix, err := leafnode.SwarmPrefix(c)
		if err != nil {
			return bad("--chevron: %v", err)
		}
		if d := leafnode.Domain(prefix); o.Swarm != "" && o.Swarm != DefaultSwarm && o.Swarm != d {
			return bad("--swarm %q: a federated node's swarm is %s (from --chevron %s); drop --swarm", o.Swarm, d, o.Chevron)
		}
	}
	return o, nil
}

// fedServerOptions adds federation to the server options: domain, cluster
// name and timing for every federated node, the leaf listener of a hub and
// the remote of a child.
func (n *Node) fedServerOptions(so *server.Options) error {
	f := n.fed
	if f == nil {
		return nil
	}
	if err := leafnode.Configure(so, f.prefix); err != nil {
		return err
	}
	if f.listen != "" {
		h := leafnode.Hub{Listen: f.listen, Certificate: n.hubLeafCertificate, Admit: n.admitLeafCert}
		if err := h.Apply(so); err != nil {
			return fmt.Errorf("%w: %v", ErrOptions, err)
		}
	}
	if len(f.parents) > 0 {
		seed, err := n.kp.Seed()
		if err != nil {
			return err
		}
		cert, err := trust.NodeCertificate(n.kp, trust.RouteCredential{}, time.Now())
		if err != nil {
			return fmt.Errorf("leaf certificate: %w", err)
		}
		r, err := leafnode.Spoke{Parents: f.parents, Prefix: f.prefix, Token: f.token, Seed: seed, Certificate: cert}.Remote()
		if err != nil {
			return fmt.Errorf("%w: %v", ErrOptions, err)
		}
		so.LeafNode.Remotes = []*server.RemoteLeafOpts{r}
	}
	return nil
}

// swarmSecret is the secret federation tokens are issued and checked with:
// the swarm's (nil on a member admitted by a one-time token until a
// rotation reaches it), or a single-node hub's own.
func (n *Node) swarmSecret() []byte {
	if n.routes != nil {
		return n.routes.currentSecret()
	}
	if n.fed != nil {
		return n.fed.secret
	}
	return nil
}

// hubLeafCertificate is the certificate a hub node shows on its leaf port:
// its node certificate proving the link key of the swarm secret, which
// children find in their federation token. A node without the secret
// shows a plain one, which children refuse.
func (n *Node) hubLeafCertificate() (*tls.Certificate, error) {
	f := n.fed
	var link []byte
	if s := n.swarmSecret(); s != nil {
		link = trust.FedLinkKey(s)
	}
	f.certMu.Lock()
	defer f.certMu.Unlock()
	if f.cert != nil && f.certFor == string(link) {
		return f.cert, nil
	}
	var cred trust.RouteCredential
	if link != nil {
		cred.Proof = trust.RouteProof(link, n.pub)
	} else {
		n.log.Warn("this hub node holds no swarm secret: child swarms will not link to it (their tokens name the secret's link key)")
	}
	cert, err := trust.NodeCertificate(n.kp, cred, time.Now())
	if err != nil {
		return nil, err
	}
	f.cert, f.certFor = &cert, string(link)
	return f.cert, nil
}

// admitLeafCert is the hub's TLS check of a connecting leaf's certificate
// (already a well-formed node certificate): revoked keys are refused before
// they can say anything.
func (n *Node) admitLeafCert(pc trust.PeerCert) error {
	if n.ids.isRevoked(pc.Pub) {
		err := fmt.Errorf("%w: key %s is revoked", ErrLeafRefused, pc.Pub)
		n.leafRefusedLog(serverName(pc.Pub), pc.Pub, "", err)
		return err
	}
	return nil
}

func (d *dataDir) loadFederation() (savedFederation, error) {
	var s savedFederation
	data, err := os.ReadFile(d.file(FederationFile))
	if errors.Is(err, fs.ErrNotExist) {
		return s, nil
	}
	if err != nil {
		return s, fmt.Errorf("%w: %v", ErrDataDir, err)
	}
	if err := json.Unmarshal(data, &s); err != nil {
		return s, fmt.Errorf("%w: %s is corrupt (%v); move it away and start with the federation flags", ErrDataDir, d.file(FederationFile), err)
	}
	return s, nil
}

func (d *dataDir) saveFederation(s savedFederation) error {
	data, err := json.MarshalIndent(s, "", "  ")
	if err != nil {
		return err
	}
	return writeFileAtomic(d.file(FederationFile), append(data, '\n'), 0o600, false)
}

// Package leafnode owns the NATS leaf-node settings robonet federation runs
// on: the swarm prefix of a node's chevron and the JetStream domain and
// cluster name derived from it (rn-<zone>-<region>-<swarm>), the server-wide
// settings of a federated node (ping, reconnect, sync, no domain extension),
// the hub side (LeafNodeOpts: listen, TLS that admits node certificates),
// the spoke side (RemoteLeafOpts: every parent address, the child prefix
// and federation token as user and password, the node's nkey seed, TLS that
// accepts only nodes of the issuing hub swarm, local denies), the scope rule
// that says which child prefixes a hub admits, and the subject allow-lists a
// hub registers for a child swarm.
//
// It builds option values and checks certificates; it does not start
// servers, authenticate connections, record which token admitted which
// swarm or watch links: package node does, with the values this package
// returns. It never binds the system account to a leaf connection.
package leafnode

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/nats-io/nats-server/v2/server"

	"github.com/robonet-mesh/robonet/subjects"
	"github.com/robonet-mesh/robonet/trust"
)

// Settings every federated node's server gets (DESIGN.md, federation).
const (
	// PingInterval and MaxPingsOut are server-wide: leaf connections
	// inherit them (no cap, unlike routes), so a silently dropped leaf
	// link is noticed after about PingInterval × (MaxPingsOut + 1).
	PingInterval = time.Second
	MaxPingsOut  = 3
	// ReconnectInterval is how often a spoke redials its parents; the
	// server adds a jitter of up to one interval.
	ReconnectInterval = 500 * time.Millisecond
	// TLSTimeout and AuthTimeout are in seconds: admitting a child swarm
	// the first time writes a record through the hub's JetStream.
	TLSTimeout  = 5
	AuthTimeout = 5
	// ExtHint keeps a swarm's JetStream from ever extending another
	// domain (the meta groups would merge).
	ExtHint = "no_extend"
	// LocalAccount is the account a spoke binds its remote to: the global
	// one, never the system account.
	LocalAccount = server.DEFAULT_GLOBAL_ACCOUNT
	// DefaultPort is the leaf-node port of hubs.
	DefaultPort = 7422
)

// Errors, wrapped with the value that was wrong.
var (
	// ErrPrefix means a chevron is not a federated node's (4 tokens) or a
	// swarm prefix is not 3 tokens.
	ErrPrefix = errors.New("swarm prefix")
	// ErrScope means a child prefix is not one the hub may admit.
	ErrScope = errors.New("not a child swarm of this hub")
	// ErrHubCert means a parent's leaf certificate does not prove it is a
	// node of the swarm that issued the federation token.
	ErrHubCert = errors.New("parent refused")
	// ErrAddress means a leaf address is not host:port.
	ErrAddress = errors.New("leaf address")
)

// SwarmPrefix is the swarm of a federated node's chevron: its first three
// tokens (3.12.7 of 3.12.7.1). Federated nodes have 4-token chevrons.
func SwarmPrefix(chev subjects.Chevron) (subjects.Chevron, error) {
	if chev.Len() != subjects.MaxTokens {
		return subjects.Chevron{}, fmt.Errorf("%w: chevron %q: a federated node needs zone.region.swarm.node (4 tokens)", ErrPrefix, chev)
	}
	return subjects.New(chev.Tokens()[:3]...)
}

// Domain is the JetStream domain and NATS cluster name of a swarm prefix:
// "rn-3-12-7" for 3.12.7, "" for anything but 3 tokens.
func Domain(prefix subjects.Chevron) string {
	if prefix.Len() != 3 {
		return ""
	}
	t := prefix.Tokens()
	return fmt.Sprintf("rn-%d-%d-%d", t[0], t[1], t[2])
}

// ParseDomain is the inverse of Domain.
func ParseDomain(d string) (subjects.Chevron, error) {
	rest, ok := strings.CutPrefix(d, "rn-")
	if !ok {
		return subjects.Chevron{}, fmt.Errorf("%w: domain %q: want rn-<zone>-<region>-<swarm>", ErrPrefix, d)
	}
	p, err := subjects.Parse(strings.ReplaceAll(rest, "-", "."))
	if err != nil || p.Len() != 3 || Domain(p) != d {
		return subjects.Chevron{}, fmt.Errorf("%w: domain %q: want rn-<zone>-<region>-<swarm>", ErrPrefix, d)
	}
	return p, nil
}

// Scope is the prefix under which a hub swarm admits child swarms: its
// zone when it has no parent (a zone hub), its region when it has one (a
// region hub).
func Scope(hub subjects.Chevron, hasParent bool) subjects.Chevron {
	n := 1
	if hasParent {
		n = 2
	}
	if hub.Len() < n {
		return subjects.Chevron{}
	}
	s, _ := subjects.New(hub.Tokens()[:n]...)
	return s
}

// CheckChild decides whether hub (a swarm prefix) may admit child, a
// swarm prefix presented by a connecting leaf; parent is the hub's own
// parent swarm (zero: the hub has none). The child must be a swarm prefix
// inside the hub's scope, and neither the hub's own swarm nor its parent.
// Errors wrap ErrScope and name the clash.
func CheckChild(hub, parent, child subjects.Chevron) error {
	switch {
	case child.Len() != 3:
		return fmt.Errorf("%w: %q is not a swarm prefix (zone.region.swarm)", ErrScope, child)
	case child == hub:
		return fmt.Errorf("%w: %s is this hub's own swarm (its domain and cluster name %s would clash)", ErrScope, child, Domain(child))
	case !parent.IsZero() && child == parent:
		return fmt.Errorf("%w: %s is this hub's parent swarm: the tree has one parent per swarm", ErrScope, child)
	}
	scope := Scope(hub, !parent.IsZero())
	if !child.HasPrefix(scope) {
		kind := "zone"
		if !parent.IsZero() {
			kind = "region"
		}
		return fmt.Errorf("%w: %s is outside this hub's scope %s (a %s hub admits swarms under its %s)", ErrScope, child, scope, kind, kind)
	}
	return nil
}

// Configure sets the server-wide options of a node of swarm prefix: the
// JetStream domain and the cluster name (both Domain(prefix)), no domain
// extension, the ping settings leaf links inherit, the spokes' reconnect
// interval and synchronous writes. It applies to hubs and spokes alike, a
// single-node swarm included.
func Configure(so *server.Options, prefix subjects.Chevron) error {
	d := Domain(prefix)
	if d == "" {
		return fmt.Errorf("%w: %q: want zone.region.swarm", ErrPrefix, prefix)
	}
	so.JetStreamDomain = d
	so.Cluster.Name = d
	so.JetStreamExtHint = ExtHint
	so.PingInterval = PingInterval
	so.MaxPingsOut = MaxPingsOut
	so.LeafNode.ReconnectInterval = ReconnectInterval
	so.SyncAlways = true
	return nil
}

// ParseAddress checks a leaf address (host:port; a nats-leaf:// or tls://
// scheme is dropped) and returns it as host:port. wantHost requires a
// non-empty host and a non-zero port (an address to dial).
func ParseAddress(a string, wantHost bool) (string, error) {
	a = strings.TrimSpace(a)
	for _, s := range []string{"nats-leaf://", "tls://", "nats://"} {
		a = strings.TrimPrefix(a, s)
	}
	host, ps, err := net.SplitHostPort(a)
	if err != nil {
		return "", fmt.Errorf("%w %q: %v", ErrAddress, a, err)
	}
	p, err := strconv.Atoi(ps)
	if err != nil || p < 0 || p > 65535 {
		return "", fmt.Errorf("%w %q: port %q out of range 0..65535", ErrAddress, a, ps)
	}
	if wantHost && (host == "" || p == 0) {
		return "", fmt.Errorf("%w %q: want host:port of a hub node's leaf port (default %d)", ErrAddress, a, DefaultPort)
	}
	return net.JoinHostPort(host, ps), nil
}

// Hub is the accepting side of a hub node.
type Hub struct {
	// Listen is the leaf-node listen address, host:port (port 0 picks one).
	Listen string
	// Certificate returns the node's leaf certificate: its key-derived
	// node certificate carrying RouteProof(trust.FedLinkKey(secret), pub),
	// which the children check against the link key in their token.
	Certificate func() (*tls.Certificate, error)
	// Admit decides on a connecting leaf's certificate (already checked
	// to be a well-formed node certificate): e.g. refuse revoked keys.
	// Nil admits every node certificate; the authenticator decides then.
	Admit func(trust.PeerCert) error
	// Now is the clock certificates are checked at; nil is time.Now.
	Now func() time.Time
}

// Apply sets so.LeafNode's accepting side: listen address, no advertising
// of other hub nodes (spokes dial exactly their --federate list), TLS 1.3
// with node certificates both ways, and timeouts. Authentication is left
// to so.CustomClientAuthentication (no leaf users are configured, so the
// server hands leaf connections to it with kind LEAF).
func (h Hub) Apply(so *server.Options) error {
	if h.Certificate == nil {
		return fmt.Errorf("leaf hub: no certificate")
	}
	a, err := ParseAddress(h.Listen, false)
	if err != nil {
		return fmt.Errorf("--leaf-listen: %w", err)
	}
	host, ps, _ := net.SplitHostPort(a)
	port, _ := strconv.Atoi(ps)
	if port == 0 {
		port = server.RANDOM_PORT
	}
	so.LeafNode.Host = host
	so.LeafNode.Port = port
	so.LeafNode.NoAdvertise = true
	so.LeafNode.TLSTimeout = TLSTimeout
	so.LeafNode.AuthTimeout = AuthTimeout
	so.LeafNode.TLSConfig = h.tlsConfig()
	return nil
}

func (h Hub) tlsConfig() *tls.Config {
	now := h.Now
	if now == nil {
		now = time.Now
	}
	return &tls.Config{
		MinVersion: tls.VersionTLS13,
		GetCertificate: func(*tls.ClientHelloInfo) (*tls.Certificate, error) {
			return h.Certificate()
		},
		ClientAuth:         tls.RequireAnyClientCert,
		InsecureSkipVerify: true, // no CA: VerifyPeerCertificate decides
		VerifyPeerCertificate: func(raw [][]byte, _ [][]*x509.Certificate) error {
			pc, err := trust.CheckPeerCertificate(raw, now())
			if err != nil {
				return err
			}
			if h.Admit != nil {
				return h.Admit(pc)
			}
			return nil
		},
		// A resumed session skips VerifyPeerCertificate.
		SessionTicketsDisabled: true,
	}
}

// Spoke is the soliciting side of a child node: one remote to every node of
// the parent swarm.
type Spoke struct {
	// Parents are the parent swarm's leaf addresses, host:port each.
	Parents []string
	// Prefix is this node's swarm prefix, sent as the leaf user.
	Prefix subjects.Chevron
	// Token is the federation token, sent as the password.
	Token string
	// Seed is the node's nkey seed: the spoke signs the hub's nonce with it.
	Seed []byte
	// Certificate is the node's key-derived certificate (no credential):
	// the hub binds it to the nkey that signs the nonce.
	Certificate tls.Certificate
	// Now is the clock certificates are checked at; nil is time.Now.
	Now func() time.Time
}

// Remote returns the remote for so.LeafNode.Remotes: every parent URL with
// the prefix and token as user info, discovered servers ignored (the hub
// swarm's other addresses may be unroutable from here), the node's seed,
// TLS that accepts only a node certificate proving the token's link key,
// the global account, and local denies of what never crosses.
func (sp Spoke) Remote() (*server.RemoteLeafOpts, error) {
	if len(sp.Parents) == 0 {
		return nil, fmt.Errorf("--federate: no parent address")
	}
	if sp.Prefix.Len() != 3 {
		return nil, fmt.Errorf("%w: %q: want zone.region.swarm", ErrPrefix, sp.Prefix)
	}
	c, err := trust.InspectFedToken(sp.Token)
	if err != nil {
		return nil, fmt.Errorf("--federate-token: %w", err)
	}
	if len(sp.Seed) == 0 {
		return nil, fmt.Errorf("leaf remote: no node seed")
	}
	r := &server.RemoteLeafOpts{
		LocalAccount:            LocalAccount,
		Nkey:                    string(sp.Seed),
		TLS:                     true,
		TLSTimeout:              TLSTimeout,
		TLSConfig:               sp.tlsConfig(c.Link),
		IgnoreDiscoveredServers: true,
		DenyImports:             SpokeDenies(sp.Prefix),
		DenyExports:             SpokeDenies(sp.Prefix),
	}
	for _, p := range sp.Parents {
		a, err := ParseAddress(p, true)
		if err != nil {
			return nil, fmt.Errorf("--federate: %w", err)
		}
		r.URLs = append(r.URLs, &url.URL{Scheme: "nats-leaf", Host: a, User: url.UserPassword(sp.Prefix.String(), sp.Token)})
	}
	return r, nil
}

func (sp Spoke) tlsConfig(link []byte) *tls.Config {
	now := sp.Now
	if now == nil {
		now = time.Now
	}
	cert := sp.Certificate
	return &tls.Config{
		MinVersion: tls.VersionTLS13,
		GetClientCertificate: func(*tls.CertificateRequestInfo) (*tls.Certificate, error) {
			return &cert, nil
		},
		InsecureSkipVerify: true, // no CA: VerifyPeerCertificate decides
		VerifyPeerCertificate: func(raw [][]byte, _ [][]*x509.Certificate) error {
			return CheckHubCertificate(raw, link, now())
		},
		SessionTicketsDisabled: true,
	}
}

// CheckHubCertificate checks a parent's leaf certificate at now: a node
// certificate whose credential is RouteProof(link, its key), link being the
// link key of the federation token. Errors wrap ErrHubCert.
func CheckHubCertificate(raw [][]byte, link []byte, now time.Time) error {
	pc, err := trust.CheckPeerCertificate(raw, now)
	if err != nil {
		return fmt.Errorf("%w: %v", ErrHubCert, err)
	}
	if !trust.CheckLinkProof(link, pc.Pub, pc.Cred.Proof) {
		return fmt.Errorf("%w: node %s does not prove the link key of the federation token: not a node of the swarm that issued it", ErrHubCert, trust.AbbrevKey(pc.Pub))
	}
	return nil
}

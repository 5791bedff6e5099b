package node

import (
	"bufio"
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/url"
	"os"
	"regexp"
	"slices"
	"strings"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats-server/v2/server"

	"github.com/robonet-mesh/robonet/leafnode"
	"github.com/robonet-mesh/robonet/mesh"
	"github.com/robonet-mesh/robonet/trust"
)

// ErrJoin is wrapped when a --join address is not a member of this swarm.
var ErrJoin = errors.New("join")

// natsLogger bridges nats-server's logger into slog. Notices become Debug so
// `robonet up` stays a few lines; Fatalf records the message and never exits.
type natsLogger struct {
	l     *slog.Logger
	fatal *atomic.Pointer[string]
}

func (g natsLogger) Noticef(f string, v ...any) { g.l.Debug(fmt.Sprintf(f, v...), "src", "nats") }
func (g natsLogger) Warnf(f string, v ...any) {
	msg := fmt.Sprintf(f, v...)
	if strings.Contains(msg, "will not be verified") {
		// The routes' InsecureSkipVerify is deliberate: routeAuth verifies
		// peers against the swarm's keys, not against a CA.
		g.l.Debug(msg, "src", "nats")
		return
	}
	g.l.Warn(msg, "src", "nats")
}
func (g natsLogger) Errorf(f string, v ...any) { g.l.Error(fmt.Sprintf(f, v...), "src", "nats") }
func (g natsLogger) Debugf(f string, v ...any) { g.l.Debug(fmt.Sprintf(f, v...), "src", "nats") }
func (g natsLogger) Tracef(f string, v ...any) {}
func (g natsLogger) Fatalf(f string, v ...any) {
	msg := fmt.Sprintf(f, v...)
	g.fatal.CompareAndSwap(nil, &msg)
	g.l.Error(msg, "src", "nats", "fatal", true)
}

// serverName is the embedded server's name: stable for the node's lifetime
// because JetStream's Raft peer id is derived from it, so it comes from the
// key, never from the human name (which may change).
func serverName(pub string) string { return mesh.ServerName(pub) }

func (n *Node) serverOptions() (*server.Options, error) {
	o := n.opts
	host, port, _ := splitHostPort(o.Listen)
	so := &server.Options{
		ServerName:          serverName(n.pub),
		Host:                host,
		Port:                port,
		NoSigs:              true,
		JetStream:           true,
		StoreDir:            n.dd.file(storeSingle),
		LameDuckDuration:    o.Timing.LameDuck,
		LameDuckGracePeriod: o.Timing.LameDuck / 4,
		MaxPayload:          MaxPayload,
		// Clients authenticate through authenticator (auth.go): nkeys,
		// with permissions from the key's current role.
		CustomClientAuthentication: authenticator{n},
		AlwaysEnableNonce:          true,
		// Every write is synced before it is acknowledged: robonet's
		// durable facts are few, and the default lazy fsync (every 2 min)
		// loses acknowledged writes on power failure (Jepsen, NATS 2.12.1).
		SyncAlways: true,
	}
	if port == 0 {
		so.Port = server.RANDOM_PORT
	}
	if !loopbackHost(host) {
		// Anything but loopback crosses a network: TLS only (AllowNonTLS
		// stays false), with the node's key-derived certificate, which
		// robonet clients pin by key. The node's own in-process
		// connection is not a network connection and stays plain.
		cert, err := trust.ClientCertificate(n.kp, clientNames(host, o.ClientNames))
		if err != nil {
			return nil, fmt.Errorf("%w: --listen %s: the client port's certificate names: %v", ErrOptions, o.Listen, err)
		}
		so.TLSConfig = &tls.Config{
			MinVersion:   tls.VersionTLS13,
			Certificates: []tls.Certificate{cert},
			ClientAuth:   tls.NoClientCert, // clients prove their nkey in CONNECT
		}
		so.TLSTimeout = 5 // seconds
		so.AllowNonTLS = false
	}
	if n.edge {
		return so, n.edgeServerOptions(so)
	}
	if o.Cluster == "" {
		return so, n.fedServerOptions(so)
	}
	chost, cport, _ := splitHostPort(o.Cluster)
	so.StoreDir = n.dd.file(storeSwarm)
	so.Cluster.Name = o.Swarm
	so.Cluster.Host = chost
	so.Cluster.Port = cport
	if cport == 0 {
		so.Cluster.Port = server.RANDOM_PORT
	}
	// Routes are pinged every 2 s so a silently dead peer (no FIN, e.g. a
	// partition) is dropped and redialled within seconds, not the default minutes.
	so.Cluster.PingInterval = 2 * time.Second
	so.Cluster.MaxPingsOut = 3
	// Routes are mutual TLS with node certificates; routeAuth admits peers.
	so.Cluster.TLSConfig = n.routes.tlsConfig()
	so.Cluster.TLSTimeout = routeTLSTimeout.Seconds()
	// Gossiped (implicit) routes are retried this many times: a new member
	// may be refused by a peer that has not seen its registration yet.
	so.Cluster.ConnectRetries = 30
	// Clients talk to the node they were pointed at: other nodes' client
	// URLs (often 127.0.0.1) mean nothing on the client's machine, and a
	// client must not fail over to a node that was cut off.
	so.Cluster.NoAdvertise = true
	routes := o.Join
	if len(routes) == 0 {
		// A founder with no one to join still needs a configured route for
		// JetStream clustering; a route to itself is recognised and skipped.
		routes = []string{loopbackFor(o.Cluster)}
	}
	for _, r := range routes {
		u, err := url.Parse("nats-route://" + r)
		if err != nil {
			return nil, fmt.Errorf("%w: --join %q: %v", ErrOptions, r, err)
		}
		so.Routes = append(so.Routes, u)
	}
	if err := n.fedServerOptions(so); err != nil {
		return nil, err
	}
	return so, n.coreServerOptions(so)
}

// loopbackHost reports whether a listen host is only reachable from this
// machine: a loopback address or "localhost". "" and 0.0.0.0 are every
// interface, so not loopback.
func loopbackHost(host string) bool {
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// ClientTLS reports whether the node's client port serves TLS only (it
// listens on a non-loopback address).
func (n *Node) ClientTLS() bool {
	host, _, _ := splitHostPort(n.opts.Listen)
	return !loopbackHost(host)
}

// clientNames are the names the client-port certificate lists for clients
// that check one: the listen address (every interface's address when it is
// 0.0.0.0 or ::), "localhost", the machine's host name and extra, the
// operator's additions, first, within trust.MaxClientCertNames.
func clientNames(host string, extra []string) []string {
	names := append([]string(nil), extra...)
	names = append(names, "localhost")
	if h, err := os.Hostname(); err == nil && hostnameRE.MatchString(h) {
		names = append(names, h)
	}
	ip := net.ParseIP(host)
	switch {
	case host == "" || ip != nil && ip.IsUnspecified():
		addrs, _ := net.InterfaceAddrs()
		for _, a := range addrs {
			if in, ok := a.(*net.IPNet); ok && !in.IP.IsLinkLocalUnicast() && !in.IP.IsUnspecified() {
				names = append(names, in.IP.String())
			}
		}
	case ip != nil:
		names = append(names, ip.String())
	default:
		names = append(names, host)
	}
	seen := map[string]bool{}
	var out []string
	for _, nm := range names {
		if k := strings.ToLower(strings.TrimSuffix(nm, ".")); k != "" && !seen[k] && len(out) < trust.MaxClientCertNames {
			seen[k] = true
			out = append(out, nm)
		}
	}
	return out
}

var hostnameRE = regexp.MustCompile(`^[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?(\.[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*$`)

func loopbackFor(addr string) string {
	host, port, _ := net.SplitHostPort(addr)
	if host == "" || host == "0.0.0.0" || host == "::" {
		host = "127.0.0.1"
	}
	return net.JoinHostPort(host, port)
}

// checkListen fails early and clearly when an address is taken; nats-server
// would otherwise only log it and never become ready.
func checkListen(flag, addr string) error {
	_, port, _ := splitHostPort(addr)
	if port == 0 {
		return nil
	}
	l, err := net.Listen("tcp", addr)
	if err != nil {
		return fmt.Errorf("%s %s: %w", flag, addr, err)
	}
	return l.Close()
}

// probeJoin checks every reachable --join address: it must be the route
// port of a robonet node in this swarm that admits this node's certificate
// (tc is the routes' TLS). Unreachable addresses are not an error: in a
// swarm starting at once they come later. A connection that closes without
// a word is tried again a few times (a node binds its ports for a moment to
// check them before its server starts).
//
// It returns the core's leaf addresses (for edges) that the route INFOs
// advertise (leafnode_urls): the --join host with the advertised port, so
// an address the core listens on as 0.0.0.0 or behind a NAT still works,
// and the swarm's name: swarm, or the name of another swarm that adopt
// accepted (an edge joining a federated swarm takes its rn-<z>-<r>-<s>).
func probeJoin(ctx context.Context, swarm string, adopt func(cluster string) bool, addrs []string, tc *tls.Config) (leafs []string, cluster string, err error) {
	for _, a := range addrs {
		var err error
		var got []string
		for attempt := 0; attempt < 4; attempt++ {
			var silent bool
			if silent, got, cluster, err = probeOne(ctx, swarm, adopt, a, tc); err == nil || !silent {
				break
			}
			select {
			case <-ctx.Done():
				return nil, "", ctx.Err()
			case <-time.After(300 * time.Millisecond):
			}
		}
		if err != nil {
			return nil, "", err
		}
		if cluster != "" && cluster != swarm {
			// Adopted: every other address must be of that swarm.
			swarm, adopt = cluster, nil
		}
		host, _, _ := net.SplitHostPort(a)
		for _, u := range got {
			if _, port, err := net.SplitHostPort(u); err == nil && port != "0" {
				if l := net.JoinHostPort(host, port); !slices.Contains(leafs, l) {
					leafs = append(leafs, l)
				}
			}
		}
	}
	return leafs, swarm, nil
}

// probeOne probes one address; silent reports that it closed without a word.
// A route port of a robonet node says nothing until the client starts TLS;
// anything that greets in plain text is something else.
func probeOne(ctx context.Context, swarm string, adopt func(string) bool, a string, tc *tls.Config) (silent bool, leafs []string, cluster string, err error) {
	d := net.Dialer{Timeout: time.Second}
	c, err := d.DialContext(ctx, "tcp", a)
	if err != nil {
		return false, nil, "", nil
	}
	defer c.Close()
	_ = c.SetReadDeadline(time.Now().Add(300 * time.Millisecond))
	br := bufio.NewReaderSize(c, 64<<10)
	line, err := br.ReadString('\n')
	var ne net.Error
	if err != nil && line == "" && errors.As(err, &ne) && ne.Timeout() {
		return probeTLS(c, swarm, adopt, a, tc)
	}
	if err != nil && line == "" {
		return true, nil, "", fmt.Errorf("%w %s: not a robonet node (no NATS greeting: %v)", ErrJoin, a, err)
	}
	gi, err := parseInfo(line)
	if err != nil {
		return false, nil, "", fmt.Errorf("%w %s: %v", ErrJoin, a, err)
	}
	switch {
	case gi.ClientID != 0:
		return false, nil, "", fmt.Errorf("%w %s: that is a NATS client port; --join takes a node's cluster address (default port 6222)", ErrJoin, a)
	case !strings.HasPrefix(gi.Name, "rn-"):
		return false, nil, "", fmt.Errorf("%w %s: a NATS server (%q) but not a robonet node", ErrJoin, a, gi.Name)
	}
	return false, nil, "", fmt.Errorf("%w %s: a robonet node without route TLS (an older version?)", ErrJoin, a)
}

// probeTLS completes the probe over TLS: the peer's certificate must be a
// node's, and the peer must admit ours.
func probeTLS(c net.Conn, swarm string, adopt func(string) bool, a string, tc *tls.Config) (silent bool, leafs []string, cluster string, err error) {
	// The member may spend up to admitBudget recording a token's use.
	_ = c.SetDeadline(time.Now().Add(routeTLSTimeout + time.Second))
	tlc := tls.Client(c, tc)
	if err := tlc.Handshake(); err != nil {
		if errors.Is(err, io.EOF) {
			return true, nil, "", fmt.Errorf("%w %s: closed during TLS: %v", ErrJoin, a, err)
		}
		return false, nil, "", fmt.Errorf("%w %s: TLS with the route port failed (%v): is --token right for this swarm?", ErrJoin, a, err)
	}
	// With TLS 1.3 the server checks our certificate after the handshake
	// completes on our side: its verdict arrives as an alert or its INFO.
	line, err := bufio.NewReaderSize(tlc, 64<<10).ReadString('\n')
	if err != nil && line == "" {
		if errors.Is(err, io.EOF) {
			return true, nil, "", fmt.Errorf("%w %s: closed after TLS: %v", ErrJoin, a, err)
		}
		return false, nil, "", fmt.Errorf("%w %s: the node refused this node's credential (%v): is --token right, unexpired and unused?", ErrJoin, a, err)
	}
	gi, err := parseInfo(line)
	if err != nil {
		return false, nil, "", fmt.Errorf("%w %s: %v", ErrJoin, a, err)
	}
	if gi.Cluster != "" && gi.Cluster != swarm && (adopt == nil || !adopt(gi.Cluster)) {
		hint := "set --swarm"
		if _, err := leafnode.ParseDomain(gi.Cluster); err == nil {
			hint = "a federated swarm: its core members run --chevron and --federate or --leaf-listen like the others; join it as an edge with --edge"
		}
		return false, nil, "", fmt.Errorf("%w %s: that node belongs to swarm %q, not %q (%s)", ErrJoin, a, gi.Cluster, swarm, hint)
	}
	return false, gi.LeafURLs, gi.Cluster, nil
}

type greeting struct {
	Name     string `json:"server_name"`
	Cluster  string `json:"cluster"`
	ClientID uint64 `json:"client_id"`
	// LeafURLs is a route INFO's leaf accept address (core nodes' edge
	// listener), host:port.
	LeafURLs []string `json:"leafnode_urls"`
}

func parseInfo(line string) (greeting, error) {
	var gi greeting
	info, ok := strings.CutPrefix(strings.TrimSpace(line), "INFO ")
	if !ok {
		return gi, fmt.Errorf("not a robonet node (it said %q)", clip(line, 40))
	}
	if err := json.Unmarshal([]byte(info), &gi); err != nil {
		return gi, fmt.Errorf("not a robonet node (bad INFO: %v)", err)
	}
	return gi, nil
}

func clip(s string, n int) string {
	s = strings.TrimSpace(s)
	if len(s) > n {
		return s[:n] + "…"
	}
	return s
}

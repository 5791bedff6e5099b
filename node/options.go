package node

import (
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/robonet-mesh/robonet/sentinel"
	"github.com/robonet-mesh/robonet/subjects"
	"github.com/robonet-mesh/robonet/trust"
)

// Version is the robonet version a node reports.
const Version = "0.1.0"

// Defaults for Options' zero values.
const (
	DefaultListen  = "127.0.0.1:4222"
	DefaultCluster = "0.0.0.0:6222"
	DefaultSwarm   = "robonet"
)

// Timing is how fast the node beats and how it judges others. The zero value
// means DefaultTiming; tests may shorten it.
type Timing struct {
	Heartbeat    time.Duration // interval between heartbeats
	SuspectAfter time.Duration // no heartbeat for this long: suspect
	OfflineAfter time.Duration // no heartbeat for this long: offline
	LeaseTTL     time.Duration // rn_leader per-key TTL
	LeaseRenew   time.Duration // renew interval while holding
	LeaseGive    time.Duration // a holder that has not renewed for this long stops acting as leader
	LameDuck     time.Duration // nats-server lame-duck duration on clean shutdown
	// EdgeHeartbeat is an edge's heartbeat interval (it carries it, and
	// the core judges its staleness against it); the leaf connection is
	// the fast path for an edge's liveness.
	EdgeHeartbeat time.Duration
}

// DefaultTiming is tuned for the figures DESIGN.md gives: a SIGKILLed node is
// shown offline within 3 s (route loss makes it faster when the kernel closes
// the socket), and the lease moves within about 2 s of the holder's death.
func DefaultTiming() Timing {
	return Timing{
		Heartbeat:    time.Second,
		SuspectAfter: 1600 * time.Millisecond,
		OfflineAfter: 2600 * time.Millisecond,
		LeaseTTL:     2 * time.Second,
		LeaseRenew:   500 * time.Millisecond,
		LeaseGive:    1500 * time.Millisecond,
		LameDuck:     2 * time.Second,

		EdgeHeartbeat: 5 * time.Second,
	}
}

// Options configure a node. The zero value, with DataDir set, is a working
// single-node mesh: chevron 1, clients on 127.0.0.1:4222, no routes.
type Options struct {
	// Name is the node's human name; default "rn" + chevron ("rn1", "rn3.12.7.1").
	Name string
	// Chevron is the node's address. Empty means: reuse the one saved in the
	// data dir, or take the lowest free flat number (compare-and-set in rn_nodes).
	Chevron string
	// DataDir holds the seeds, the saved state and the JetStream store.
	DataDir string
	// Listen is the NATS client address, host:port (port 0 picks one). On
	// any address but loopback the port serves TLS only, with a
	// certificate derived from the node's key (trust.ClientCertificate).
	Listen string
	// ClientNames are host names or addresses, besides the listen address,
	// "localhost", the host name and (for 0.0.0.0) every interface's
	// address, that the client port's certificate lists, for clients that
	// check the name they dialled (the stock nats CLI): a DNS name, or an
	// address a NAT maps to this node.
	ClientNames []string
	// Cluster is the NATS route listen address. Empty and no Join: a single
	// node with JetStream standalone. Set, or Join set: a swarm member.
	Cluster string
	// Join lists route addresses (host:port) of other members. A list that
	// contains this node's own cluster address is fine (it is skipped).
	Join []string
	// Swarm is the swarm's name (the NATS cluster name); members must agree.
	Swarm string
	// Caps are declared capabilities (gpu, ai, …); Tags are key=value labels.
	Caps []string
	Tags map[string]string
	// ExecAllow lists programs exec may run as a mutate (tier 2) command; any
	// other exec is dangerous and refused until quorum approvals exist.
	ExecAllow []string
	// FileRoots are the directories the file verb may read (put) and write
	// (get) under, absolute; empty means <data>/files, created on start. A
	// root may not be or contain the data dir.
	FileRoots []string
	// Founder makes this node write the swarm's founder record (its
	// operator key becomes the first swarm admin) even though it joins
	// others: for swarms whose members all start together. A node with no
	// Join always founds. The first founder record written wins.
	Founder bool
	// FounderGrace is how long a node that does not found waits, once
	// ready, for a founder record before it writes one itself (first
	// write wins). 0 means DefaultFounderGrace; negative, never: the node
	// waits for a founder.
	FounderGrace time.Duration
	// Logger receives the node's logs, nats-server's bridged in. Nil discards.
	Logger *slog.Logger
	// Timing overrides heartbeat and lease timing; zero fields take defaults.
	Timing Timing
	// Token admits the node to a swarm: the swarm secret ("rnsec_…", from
	// `robonet token generate` or a founder's data dir), saved in the data
	// dir, or a one-time join token ("rntok_…", `robonet token create`).
	// Empty: the saved secret; a founder (no Join) generates one.
	Token string
	// Trust configures HCTH scoring: tier thresholds and the ledger's
	// bounds; zero fields take trust.DefaultConfig. A bad signature under a
	// subject every identity may publish on (commands) is an anomaly, not a
	// break (TolerateBadSignatures is forced on for the ledger); under a
	// node's own chevron (heartbeats, events) it is a break.
	Trust trust.Config
	// Sentinel configures the behavioural baselines (sentinel.Config);
	// zero fields take sentinel.DefaultConfig.
	Sentinel sentinel.Config
	// SentinelBlock is how long a Sentinel disconnect lasts on this node
	// (default DefaultSentinelBlock, an hour).
	SentinelBlock time.Duration
	// Gauges, when set, replaces the node's measurement of its busy CPU,
	// used memory and used disk (fractions 0..1) sent in heartbeats: for
	// programs that measure differently, and tests.
	Gauges func() (cpu, mem, disk float64)
	// BeatDelay, when set, delays each heartbeat by what it returns (at
	// most one heartbeat interval): to spread beats, and for tests that
	// inject erratic timing.
	BeatDelay func() time.Duration
	// NoSigs leaves signal handling to the caller (always true in a library).
	NoSigs bool

	// Federation (DESIGN.md, "Core, edges and federation"). A node with
	// LeafListen or Federate is federated: it needs a 4-token chevron, and
	// its swarm name, NATS cluster name and JetStream domain are all
	// rn-<zone>-<region>-<swarm> of that chevron. Every node of a
	// federated swarm gets the same three settings; they are saved in the
	// data dir (FederationFile), so a restart needs none of them.

	// LeafListen makes the node's swarm a hub: child swarms' nodes connect
	// here as NATS leaf nodes (host:port, TLS only; default port 7422).
	LeafListen string
	// Federate lists the parent swarm's leaf addresses (host:port, every
	// node of the parent that listens): the node holds its own leaf
	// connection to one of them.
	Federate []string
	// FederateToken admits the swarm to its parent: a federation token
	// ("rntok_…", robonet token create --federate on the parent).
	FederateToken string

	// Core and edges (DESIGN.md, "Core, edges and federation"; issue 12).
	// A swarm is a small route-clustered core and edges, whose servers
	// connect to the core as leaf nodes. The role is decided at Start
	// (role.go) and saved in the data dir.

	// Edge makes the node an edge whatever else is set.
	Edge bool
	// Core is the core's size: 0 means DefaultCore, at most MaxCore. The
	// founder writes it to rn_config (core.size); a joining node with
	// --cluster becomes a core member while the core has fewer live
	// members, an edge otherwise.
	Core int
	// EdgeListen is the core node's leaf listener for edges (host:port,
	// TLS only). Default: the --cluster host with port 7422 when the
	// cluster port is the default 6222, any free port otherwise (edges
	// learn it from the route INFO). A hub's LeafListen serves edges too:
	// EdgeListen must then be empty or the same.
	EdgeListen string
	// ForceCore makes a node with --cluster and --join a core member
	// without asking the core whether it has room (tests, and swarms whose
	// members all start at once; the core may then be above its size).
	ForceCore bool

	// joinNoCluster: Join was given without Cluster (validate defaulted
	// Cluster): such a node is an edge unless it was a core member before.
	joinNoCluster bool
	// coreLeafs, set by tests (export_test.go), replaces the discovered
	// core leaf addresses of an edge, and discovery through the leaf link
	// is off: to put a proxy between an edge and the core.
	coreLeafs []string
}

// Core sizes.
const (
	DefaultCore = 3
	MaxCore     = 7
)

var (
	nameRE = regexp.MustCompile(`^[A-Za-z][A-Za-z0-9_.-]{0,63}$`)
	capRE  = regexp.MustCompile(`^[a-z][a-z0-9_-]{0,31}$`)
	tagRE  = regexp.MustCompile(`^[A-Za-z][A-Za-z0-9_.-]{0,63}$`)
	tagVRE = regexp.MustCompile(`^[A-Za-z0-9_.:/-]{0,128}$`)
)

// ErrOptions is wrapped by every Options validation error.
var ErrOptions = errors.New("invalid option")

// validate checks and completes a copy of o.
func (o Options) validate() (Options, error) {
	bad := func(format string, a ...any) (Options, error) {
		return o, fmt.Errorf("%w: "+format, append([]any{ErrOptions}, a...)...)
	}
	if o.DataDir == "" {
		return bad("--data: empty data directory")
	}
	abs, err := filepath.Abs(o.DataDir)
	if err != nil {
		return bad("--data %q: %v", o.DataDir, err)
	}
	o.DataDir = abs
	var roots []string
	for _, r := range o.FileRoots {
		if r = strings.TrimSpace(r); r == "" {
			continue
		}
		if !filepath.IsAbs(r) {
			return bad("--file-root %q: want an absolute directory", r)
		}
		r = filepath.Clean(r)
		if r == abs || strings.HasPrefix(abs, r+string(filepath.Separator)) || r == "/" {
			return bad("--file-root %s contains the data dir %s (its keys, secret and store): choose directories that do not", r, abs)
		}
		roots = append(roots, r)
	}
	o.FileRoots = roots
	if o.Chevron != "" {
		if _, err := subjects.Parse(o.Chevron); err != nil {
			return bad("--chevron: %v", err)
		}
	}
	if o.Name != "" && !nameRE.MatchString(o.Name) {
		return bad("--name %q: want a letter then letters, digits, '.', '_' or '-', at most 64", o.Name)
	}
	if o.Name == "all" {
		return bad("--name %q: reserved", o.Name)
	}
	if o.Listen == "" {
		o.Listen = DefaultListen
	}
	if _, _, err := splitHostPort(o.Listen); err != nil {
		return bad("--listen %q: %v", o.Listen, err)
	}
	if o.Swarm == "" {
		o.Swarm = DefaultSwarm
	}
	if err := subjects.ValidToken(o.Swarm); err != nil {
		return bad("--swarm: %v", err)
	}
	if len(o.Join) > 0 && o.Cluster == "" {
		o.Cluster = DefaultCluster
		o.joinNoCluster = true
	}
	if o.Core == 0 {
		o.Core = DefaultCore
	}
	if o.Core < 1 || o.Core > MaxCore {
		return bad("--core %d: want 1..%d", o.Core, MaxCore)
	}
	if o.EdgeListen != "" {
		if _, _, err := splitHostPort(o.EdgeListen); err != nil {
			return bad("--edge-listen %q: %v", o.EdgeListen, err)
		}
		if o.LeafListen != "" && o.LeafListen != o.EdgeListen {
			return bad("--edge-listen %s: this hub's --leaf-listen %s serves edges too (leave --edge-listen empty)", o.EdgeListen, o.LeafListen)
		}
	}
	if o.Cluster != "" {
		if _, _, err := splitHostPort(o.Cluster); err != nil {
			return bad("--cluster %q: %v", o.Cluster, err)
		}
	}
	var join []string
	for _, j := range o.Join {
		j = strings.TrimSpace(j)
		if j == "" {
			continue
		}
		j = strings.TrimPrefix(j, "nats-route://")
		j = strings.TrimPrefix(j, "nats://")
		host, port, err := splitHostPort(j)
		if err != nil || host == "" || port == 0 {
			return bad("--join %q: want host:port of another node's cluster address", j)
		}
		join = append(join, j)
	}
	o.Join = join
	if o, err = o.validateFederation(); err != nil {
		return o, err
	}
	caps := map[string]bool{}
	for _, c := range o.Caps {
		c = strings.TrimSpace(c)
		if c == "" {
			continue
		}
		if !capRE.MatchString(c) {
			return bad("--caps %q: want lower-case [a-z][a-z0-9_-]*, at most 32", c)
		}
		caps[c] = true
	}
	o.Caps = make([]string, 0, len(caps))
	for c := range caps {
		o.Caps = append(o.Caps, c)
	}
	sort.Strings(o.Caps)
	tags := map[string]string{}
	for k, v := range o.Tags {
		if !tagRE.MatchString(k) {
			return bad("--tags key %q: want a letter then letters, digits, '.', '_' or '-'", k)
		}
		if !tagVRE.MatchString(v) {
			return bad("--tags %s=%q: value may hold letters, digits and . _ : / - (at most 128)", k, v)
		}
		tags[k] = v
	}
	o.Tags = tags
	if len(o.Caps) > 64 || len(o.Tags) > 64 {
		return bad("at most 64 caps and 64 tags")
	}
	o.Timing = o.Timing.withDefaults()
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	return o, nil
}

func (t Timing) withDefaults() Timing {
	d := DefaultTiming()
	set := func(v *time.Duration, def time.Duration) {
		if *v <= 0 {
			*v = def
		}
	}
	set(&t.Heartbeat, d.Heartbeat)
	set(&t.SuspectAfter, d.SuspectAfter)
	set(&t.OfflineAfter, d.OfflineAfter)
	set(&t.LeaseTTL, d.LeaseTTL)
	set(&t.LeaseRenew, d.LeaseRenew)
	set(&t.LeaseGive, d.LeaseGive)
	set(&t.LameDuck, d.LameDuck)
	set(&t.EdgeHeartbeat, d.EdgeHeartbeat)
	return t
}

// ParseTags reads "k=v,k2=v2" (a bare "k" means an empty value).
func ParseTags(s string) (map[string]string, error) {
	out := map[string]string{}
	for _, kv := range strings.Split(s, ",") {
		kv = strings.TrimSpace(kv)
		if kv == "" {
			continue
		}
		k, v, _ := strings.Cut(kv, "=")
		k = strings.TrimSpace(k)
		if !tagRE.MatchString(k) {
			return nil, fmt.Errorf("%w: tag %q: want key=value", ErrOptions, kv)
		}
		out[k] = strings.TrimSpace(v)
	}
	return out, nil
}

func splitHostPort(addr string) (string, int, error) {
	host, ps, err := net.SplitHostPort(addr)
	if err != nil {
		return "", 0, err
	}
	p, err := strconv.Atoi(ps)
	if err != nil || p < 0 || p > 65535 {
		return "", 0, fmt.Errorf("port %q out of range 0..65535", ps)
	}
	return host, p, nil
}

// DefaultDataDir is where a node keeps its state when --data is not given:
// $ROBONET_DATA is read by the CLI; this is the fallback, ~/.local/share/robonet
// for users and /var/lib/robonet for root.
func DefaultDataDir() string {
	if os.Geteuid() == 0 {
		return "/var/lib/robonet"
	}
	if d := os.Getenv("XDG_DATA_HOME"); d != "" {
		return filepath.Join(d, "robonet")
	}
	if h, err := os.UserHomeDir(); err == nil {
		return filepath.Join(h, ".local", "share", "robonet")
	}
	return "robonet-data"
}

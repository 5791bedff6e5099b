package node

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"runtime"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/nats-io/nkeys"

	"github.com/robonet-mesh/robonet/command"
	"github.com/robonet-mesh/robonet/leafnode"
	"github.com/robonet-mesh/robonet/mesh"
	"github.com/robonet-mesh/robonet/sentinel"
	"github.com/robonet-mesh/robonet/subjects"
	"github.com/robonet-mesh/robonet/trust"
	"github.com/robonet-mesh/robonet/wire"
)

// ErrStopped is returned by Start on a node that was shut down.
var ErrStopped = errors.New("node stopped")

// Node is one robonet daemon. Create it with New, then Start; Shutdown (or
// Kill, in tests) ends it. Its accessors are safe for concurrent use.
type Node struct {
	opts Options
	log  *slog.Logger

	dd    *dataDir
	kp    nkeys.KeyPair // the node's identity
	pub   string
	opPub string

	srv  *server.Server
	ev   evictor // JetStream peer removal of revoked nodes (evict.go)
	nc   *nats.Conn
	js   jetstream.JetStream
	kvs  buckets
	reg  *registry
	ls   *lease
	info wire.NodeInfo // set once claimed, then read-only

	cat    *command.Catalogue
	cmds   *CommandHost
	files  command.FileStore
	config command.ConfigStore

	started time.Time
	chev    subjects.Chevron
	name    string

	// Trust (auth.go, routeauth.go): the identities the server accepts,
	// the route admission, and what the server was started with.
	ids         *identities
	authKick    chan struct{}
	so          *server.Options
	routes      *routeAuth  // nil for a single node
	fed         *federation // leaf links (federation.go); nil unless federated, set in Start
	tokensKV    atomic.Pointer[jetstream.KeyValue]
	leaderRead  *mesh.LeaderKV
	xkp         nkeys.KeyPair // curve key: rotated secrets are sealed to it
	signer      *mesh.Signer  // HCTH: signs what this node sends
	ledger      *trust.Ledger // HCTH: judges what it receives
	tc          trustCounters
	st          nodeStats // ledger verdicts, Sentinel alerts (stats.go)
	approvals   *approvalGate
	sent        *sentinel.Sentinel // behavioural baselines of every peer
	sst         *sentinelState
	hbVerify    *trust.Verifier                   // heartbeats of quarantined peers still count for liveness
	catP        atomic.Pointer[command.Catalogue] // n.cat, for the authenticator
	selfC       atomic.Pointer[subjects.Chevron]  // n.chev, for subscription handlers that run during claim
	staleMu     sync.Mutex                        // guards stale
	stale       map[string][]time.Time            // node key → recent stale messages (hcth.go)
	blocks      blockTable                        // Sentinel disconnects (sentinelblock.go)
	secretEpoch atomic.Int64                      // epoch of the rotated swarm secret held (rotate.go)
	usersRev    atomic.Uint64                     // highest rn_users revision applied (onUserEntry)
	deferMu     sync.Mutex                        // guards deferred
	deferred    map[string]string                 // chevron → key: registration deletes held back (records.go)
	unregMu     sync.Mutex                        // guards unreg
	unreg       map[string]time.Time              // unregistered chevron → last signed heartbeat (records.go)
	knownText   string                            // KnownMembersFile as last written; the auth loop's alone
	inh         fedAuth                           // identities inherited from ancestor swarms (fedauth.go)
	edge        bool                              // the node is an edge (role.go); set in Start before anything runs
	es          edgeState                         // core leaf addresses, the core link, cached core answers (role.go)

	fatal   atomic.Pointer[string]
	ctx     context.Context // canceled by Shutdown/Kill; loops run under it
	cancel  context.CancelFunc
	wg      sync.WaitGroup
	ready   atomic.Bool
	stopped atomic.Bool
	reclaim atomic.Int64 // when another writer replaced this node's registration (unix ns; 0: no): write it back (monitorLoop)
	// jsOffSince is when this core member found its JetStream disabled
	// (unix ns; 0: never): jsrecover.go.
	jsOffSince atomic.Int64
	// quietRestart: the restart asked for keeps the registration (no leave).
	quietRestart atomic.Bool
	stop         sync.Once
	hbSeq        atomic.Uint64
	rewatch      chan struct{} // restart the KV watches (see watchNodes)
	// heardGrace is set once auto-numbering has waited to hear the
	// heartbeats of nodes that know their chevron (claim runs in Start only).
	heardGrace bool
}

// New validates opts; it starts nothing.
func New(opts Options) (*Node, error) {
	o, err := opts.validate()
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithCancel(context.Background())
	return &Node{opts: o, log: o.Logger, ctx: ctx, cancel: cancel, rewatch: make(chan struct{}, 1),
		ids: newIdentities(), authKick: make(chan struct{}, 1), es: edgeState{restart: make(chan struct{})}}, nil
}

// Start brings the node up and returns once it has claimed its chevron,
// registered itself and begun heartbeating. In a swarm it waits for
// JetStream, which needs two members: ctx bounds that wait. On error
// everything started is stopped again and nothing in the data dir is lost.
func (n *Node) Start(ctx context.Context) (err error) {
	if n.stopped.Load() {
		return ErrStopped
	}
	defer func() {
		if err != nil {
			n.teardown(false)
		}
	}()
	n.started = time.Now().UTC().Truncate(time.Millisecond)
	if n.dd, err = openDataDir(n.opts.DataDir); err != nil {
		return err
	}
	if n.kp, err = n.dd.seed(NodeSeedFile); err != nil {
		return err
	}
	opKP, err := n.dd.seed(OperatorSeedFile)
	if err != nil {
		return err
	}
	if err := n.loadFounderPin(); err != nil {
		return err
	}
	n.secretEpoch.Store(n.dd.secretEpoch())
	n.pub, _ = n.kp.PublicKey()
	n.opPub, _ = opKP.PublicKey()
	if n.xkp, err = n.dd.xkey(); err != nil {
		return err
	}
	if n.signer, err = mesh.NewSigner(n.kp, n.dd.file(ChainFile), mesh.NodeChainBlock); err != nil {
		return err
	}
	tcfg := n.opts.Trust
	tcfg.TolerateBadSignatures = true // see Options.Trust
	if n.ledger, err = trust.NewLedger(tcfg); err != nil {
		return fmt.Errorf("%w: trust: %v", ErrOptions, err)
	}
	if n.sent, err = sentinel.New(n.opts.Sentinel); err != nil {
		return fmt.Errorf("%w: sentinel: %v", ErrOptions, err)
	}
	n.hbVerify = trust.NewVerifier(0)
	saved, err := n.dd.loadState()
	if err != nil {
		return err
	}
	if err := n.resolveFederation(saved); err != nil {
		return err
	}
	if es := saved.EdgeSwarm; es != nil && es.Prefix != "" && saved.Role == wire.NodeRoleEdge && n.adoptsSwarmName(saved.Swarm) {
		n.opts.Swarm = saved.Swarm // an edge of a federated swarm, restarted
	}
	if saved.Swarm != "" && saved.Swarm != n.opts.Swarm && !n.Federated() {
		return fmt.Errorf("%w: %s belongs to swarm %q, not %q (pass --swarm %s or another --data)",
			ErrOptions, n.opts.DataDir, saved.Swarm, n.opts.Swarm, saved.Swarm)
	}

	if err := checkListen("--listen", n.opts.Listen); err != nil {
		return err
	}
	if n.IsHub() {
		if err := checkListen("--leaf-listen", n.fed.listen); err != nil {
			return err
		}
	}
	role := n.initialRole(saved)
	n.edge = role == wire.NodeRoleEdge
	if n.edge && n.opts.joinNoCluster {
		n.opts.Cluster = "" // no --cluster: this edge cannot be promoted
	}
	n.es.leafs = saved.CoreLeafs
	if n.opts.Cluster != "" || n.edge {
		if n.routes, err = n.credential(); err != nil {
			return err
		}
		var adopt func(string) bool
		if n.edge {
			adopt = n.adoptsSwarmName
		}
		leafs, swarm, err := probeJoin(ctx, n.opts.Swarm, adopt, n.opts.Join, n.routes.tlsConfig())
		if err != nil {
			return err
		}
		if swarm != n.opts.Swarm {
			n.log.Info("joining a federated swarm as an edge", "swarm", swarm)
			n.opts.Swarm = swarm
		}
		if len(leafs) > 0 {
			n.es.leafs = leafs
		}
	}
	if len(n.opts.coreLeafs) > 0 {
		n.es.leafs = n.opts.coreLeafs
	}
	if role == roleCandidate {
		if role, err = n.decideCandidate(ctx); err != nil {
			return err
		}
		n.edge = role == wire.NodeRoleEdge
	}
	if !n.edge && n.fed == nil && n.opts.Cluster != "" {
		if _, err := leafnode.ParseDomain(n.opts.Swarm); err == nil {
			return fmt.Errorf("%w: swarm %s is a federated swarm: its core members run --chevron and --federate or --leaf-listen like the others; join it as an edge with --edge", ErrOptions, n.opts.Swarm)
		}
	}
	if n.edge && n.fed != nil {
		if n.opts.Edge && (n.opts.LeafListen != "" || len(n.opts.Federate) > 0) {
			return fmt.Errorf("%w: --edge with --leaf-listen or --federate: an edge holds no leaf link of its own (its core links the swarm to its parent and serves child swarms); drop them, or run this node as a core member", ErrOptions)
		}
		// A candidate of a federated swarm that found the core full, or a
		// member turned edge: its swarm's facts come from its federation
		// settings (kept on disk for a promotion); the link is the core's.
		n.es.mu.Lock()
		n.es.swarm = edgeSwarm{Domain: n.fed.domain, Prefix: n.fed.prefix.String(), Pins: slices.Clone(n.fed.claims.Pins)}
		n.es.mu.Unlock()
		n.fed = nil
	}
	if n.opts.Cluster != "" && !n.edge {
		if err := checkListen("--cluster", n.opts.Cluster); err != nil {
			return err
		}
		if l := n.edgeListen(); l != "" {
			if err := checkListen("--edge-listen", l); err != nil {
				return err
			}
		}
	}
	so, err := n.serverOptions()
	if err != nil {
		return err
	}
	if n.srv, err = server.NewServer(so); err != nil {
		return fmt.Errorf("nats server: %w", err)
	}
	n.srv.SetLoggerV2(natsLogger{l: n.log, fatal: &n.fatal}, true, false, false)
	n.srv.Start()
	if !n.srv.ReadyForConnections(10 * time.Second) {
		if f := n.fatal.Load(); f != nil {
			return fmt.Errorf("nats server: %s", *f)
		}
		return errors.New("nats server: not ready for connections after 10s")
	}
	n.so = so
	connectOwn := func() (err error) {
		n.nc, err = connectInProcess(nats.InProcessServer(n.srv), nats.Name("robonet-node"),
			nats.CustomInboxPrefix(subjects.Inbox(n.pub)),
			nats.ErrorHandler(func(_ *nats.Conn, _ *nats.Subscription, err error) {
				n.log.Warn("own connection", "err", err)
			}),
			nats.Nkey(n.pub, n.kp.Sign), nats.MaxReconnects(-1), nats.NoCallbacksAfterClientClose())
		if err != nil {
			return fmt.Errorf("connect to own server: %w", err)
		}
		return nil
	}
	if err := connectOwn(); err != nil {
		return err
	}
	if n.edge {
		domain := n.coreDomain()
		if err := n.adoptEdgeSwarm(ctx, saved); err != nil {
			return err
		}
		if n.coreDomain() != domain {
			// Its permissions (nodePermissions) name the domain: connect
			// again under the adopted one.
			n.nc.Close()
			if err := connectOwn(); err != nil {
				return err
			}
		}
		// nats-server denies $JS.API, $KV and $OBJ on every leaf link of
		// a non-system account: an edge reaches the core's JetStream
		// through the core's domain prefix, which the core maps back.
		n.js, err = jetstream.NewWithDomain(n.nc, n.coreDomain())
	} else {
		n.js, err = jetstream.New(n.nc)
	}
	if err != nil {
		return fmt.Errorf("jetstream: %w", err)
	}
	n.reg = newRegistry(n.opts.Timing, n.Clustered())
	if !n.edge {
		if err := n.serveCore(); err != nil {
			return err
		}
	}
	if err := n.subscribeMembership(); err != nil {
		return err
	}
	n.wg.Add(1)
	go n.watchRoutes()

	if n.Clustered() {
		n.log.Info("waiting for JetStream (a swarm needs two members)", "join", n.opts.Join)
	}
	stopEarly := make(chan struct{})
	if want := cmp.Or(n.opts.Chevron, saved.Chevron); want != "" && n.Clustered() {
		c, _ := subjects.Parse(want)
		n.wg.Add(1)
		go n.beatBeforeClaim(c, cmp.Or(n.opts.Name, saved.Name, "rn"+want), stopEarly)
	}
	n.kvs, err = n.ensureBuckets(ctx)
	if err == nil {
		n.leaderRead = mesh.NewLeaderKV(n.js, BucketConfig) // Last reads any bucket
		// Route admission (server goroutines) reads leaderRead only after
		// loading tokensKV: the atomic store publishes both.
		n.tokensKV.Store(&n.kvs.tokens)
		err = n.claim(ctx, saved)
	}
	close(stopEarly)
	if err != nil {
		return err
	}
	n.es.mu.Lock()
	leafs := slices.Clone(n.es.leafs)
	n.es.mu.Unlock()
	st := savedState{Chevron: n.chev.String(), Name: n.name, Swarm: n.opts.Swarm, Role: n.Role(), CoreLeafs: leafs}
	if n.edge {
		es := n.edgeSwarmNow()
		st.EdgeSwarm = &es
	}
	if err := n.dd.saveState(st); err != nil {
		return err
	}
	if n.founds() {
		if err := n.writeFounder(ctx, opKP); err != nil {
			return err
		}
		n.writeCoreSize(ctx)
	} else {
		n.wg.Add(1)
		go n.foundIfNone(opKP)
	}
	n.ls = newLease(n)
	if err := n.watchNodes(ctx); err != nil {
		return err
	}
	if err := n.observeOwnSummaries(); err != nil {
		return err
	}
	if err := n.serveQueries(); err != nil {
		return err
	}
	if err := n.serveTrustQueries(); err != nil {
		return err
	}
	if err := n.serveFedAuthority(); err != nil {
		return err
	}
	if err := n.startSentinel(); err != nil {
		return err
	}
	n.approvals = newApprovalGate(n.js, n.roleOf, quorumFromConfig(n.js))
	n.files = fileStore{obs: n.kvs.files, read: n.leaderRead}
	n.config = configStore{kv: n.kvs.config, read: n.leaderRead}
	if err := n.serveCommands(); err != nil {
		return err
	}
	// The node may publish under its chevron only once the server's
	// permissions name it: reload before the first heartbeat.
	if err := n.applyAuth(); err != nil {
		return fmt.Errorf("authorization: %w", err)
	}
	n.wg.Add(1)
	go n.authLoop()
	if n.fed != nil {
		n.wg.Add(1)
		go n.leafLoop()
	}
	n.heartbeat()
	n.wg.Add(2)
	go n.beatLoop()
	go n.monitorLoop()
	if n.edge {
		n.wg.Add(1)
		go n.edgeLinkLoop()
	} else {
		n.wg.Add(3)
		go n.ls.run(n.ctx)
		go n.watchEdges()
		go n.shedLoop()
	}
	if err := n.serveCoreControl(); err != nil {
		return err
	}
	n.publishEvent(wire.Event{Kind: subjects.EvtJoin, Chevron: n.chev.String(), Name: n.name, Pubkey: n.pub})
	n.ready.Store(true)
	return nil
}

// Shutdown leaves the swarm cleanly: a leave event first (so members drop the
// node at once), the lease released, the registry entry removed, then the
// server's lame-duck shutdown. It is idempotent and waits for every goroutine.
func (n *Node) Shutdown(ctx context.Context) error {
	n.teardown(true)
	return nil
}

// Kill stops the node the way a crash would look to the others: no leave
// event, no lease release, no registry removal; connections just drop. It is
// for tests; the embedded server still steps down its Raft leaders on
// shutdown, so real SIGKILL figures come from separate processes (bench/).
func (n *Node) Kill() { n.teardown(false) }

func (n *Node) teardown(graceful bool) {
	n.stop.Do(func() {
		n.stopped.Store(true)
		wasReady := n.ready.Swap(false)
		// A node restarting in-process to bring its JetStream back
		// (jsrecover.go) is back in seconds: it keeps its registration and
		// says no leave, so members see a short absence, not a departure.
		leaving := graceful && wasReady && !n.quietRestart.Load()
		if leaving {
			n.publishEvent(wire.Event{Kind: subjects.EvtLeave, Chevron: n.chev.String(), Name: n.name,
				Pubkey: n.pub, Reason: "shutdown"})
			_ = n.nc.FlushTimeout(time.Second)
		}
		if !graceful && n.nc != nil {
			// A crash says nothing more: no replies, no events.
			n.nc.Close()
		}
		n.cancel() // running commands see their context end and answer "canceled"
		if n.cmds != nil {
			n.cmds.Stop()
		}

		n.wg.Wait()
		if graceful && wasReady {
			ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
			n.ls.release(ctx)
			cancel()
		}
		if leaving {
			ctx, cancel := context.WithTimeout(context.Background(), 12*time.Second)
			n.deregister(ctx)
			cancel()
		}
		if n.nc != nil {
			n.nc.Close()
		}
		n.closeEvictor()
		if n.srv != nil {
			if graceful {
				n.srv.LameDuckShutdown()
			}
			n.srv.Shutdown()
			n.srv.WaitForShutdown()
		}
		if n.dd != nil {
			n.dd.close()
		}
	})
}

// Done is closed when the node has been stopped.
func (n *Node) Done() <-chan struct{} { return n.ctx.Done() }

// selfChev is the claimed chevron, zero before the claim; safe from any
// goroutine.
func (n *Node) selfChev() subjects.Chevron {
	if c := n.selfC.Load(); c != nil {
		return *c
	}
	return subjects.Chevron{}
}

// Chevron is the node's claimed address (zero before Start returns).
func (n *Node) Chevron() subjects.Chevron { return n.chev }

// Name is the node's human name.
func (n *Node) Name() string { return n.name }

// Pubkey is the node's nkey public key.
func (n *Node) Pubkey() string { return n.pub }

// ServerName is the embedded nats-server's name.
func (n *Node) ServerName() string { return serverName(n.pub) }

// ClientURL is where NATS clients connect.
func (n *Node) ClientURL() string { return n.srv.ClientURL() }

// ClusterAddr is the route listen address, "" for a single node.
func (n *Node) ClusterAddr() string {
	if a := n.srv.ClusterAddr(); a != nil {
		return a.String()
	}
	return ""
}

// DataDir is the node's absolute data directory.
func (n *Node) DataDir() string { return n.opts.DataDir }

// OperatorSeedPath is the local operator's credentials file.
func (n *Node) OperatorSeedPath() string { return n.dd.file(OperatorSeedFile) }

// OperatorKey is the public key of the node's local operator.
func (n *Node) OperatorKey() string { return n.opPub }

// Clustered reports whether the node runs JetStream clustered (a swarm
// member) rather than standalone (a single node).
func (n *Node) Clustered() bool { return n.opts.Cluster != "" && !n.edge }

// IsLeader reports whether this node holds the swarm-leader lease now.
func (n *Node) IsLeader() bool { return n.ls != nil && n.ls.isLeader(time.Now()) }

// LeaderToken is the fencing token of the lease this node holds, 0 if none.
func (n *Node) LeaderToken() uint64 {
	if n.ls == nil {
		return 0
	}
	return n.ls.tokenIfLeader(time.Now())
}

// Members is the node's live view of the swarm.
func (n *Node) Members() []wire.Member {
	if n.edge {
		return n.edgeMembers()
	}
	return n.reg.members(time.Now(), n.self())
}

// Status is the swarm as this node sees it.
func (n *Node) Status() wire.Status {
	st := wire.Status{
		Swarm: n.opts.Swarm, Chevron: n.chev.String(), Name: n.name, State: wire.StateAlive,
		Version: Version, Started: n.started, Clustered: n.Clustered(), Founder: n.ids.founderKey(),
	}
	if !n.ready.Load() {
		st.State = wire.StateLeaving
	}
	st.Role = n.Role()
	if n.edge || n.Clustered() {
		st.JSDomain = n.coreDomain()
	}
	members := n.Members()
	st.Known = len(members)
	for _, m := range members {
		if m.State == wire.StateAlive || m.State == wire.StateSuspect {
			st.Members++
		}
		if m.Leader {
			st.Leader, st.LeaderName = m.Chevron, m.Name
		}
	}
	if l, ok := n.reg.currentLease(); ok {
		st.Token = l.Token
	}
	cs := n.CoreStatus()
	st.CoreSize, st.CoreLive, st.CoreBelow = cs.Size, cs.Live(), cs.Below
	st.JetStreamOK, st.Replicas, st.Behind = n.jetStreamHealth()
	st.SurvivesLoss, st.Resilience = n.Resilience()
	if n.edge {
		st.CoreLink, st.CoreLinkSince = n.coreLink()
		return st
	}
	if jsz, err := n.srv.Jsz(&server.JSzOptions{}); err == nil {
		if jsz.Meta != nil {
			st.MetaLeader = jsz.Meta.Leader
		} else if !n.Clustered() {
			st.MetaLeader = n.ServerName()
		}
	}
	return st
}

// Resilience says whether the swarm, as this core member last read it,
// survives the loss of any one node, and why or what is missing
// (Status.SurvivesLoss and Resilience).
func (n *Node) Resilience() (bool, string) {
	switch {
	case n.edge:
		return false, "an edge: the core's resilience shows in a core member's status"
	case !n.Clustered():
		return false, "a single node: nothing to fail over to (start more with --join)"
	}
	if why := n.jetStreamDisabled(); why != "" {
		return false, "CANNOT survive the loss of a node: " + why
	}
	ok, why := n.kvs.rep.resilience()
	if ok && !n.srv.JetStreamIsCurrent() {
		return false, "CANNOT tell: this node's JetStream is not current (no quorum?)"
	}
	return ok, why
}

// self is the node's own row, built from what it knows directly.
func (n *Node) self() wire.Member {
	var load float64
	if hb := n.reg.selfBeat(); hb != nil {
		load = hb.Load
	}
	return wire.Member{
		Chevron: n.chev.String(), Name: n.name, Pubkey: n.pub, Server: n.ServerName(),
		State: wire.StateAlive, Leader: n.IsLeader(), Caps: n.info.Caps, Tags: n.info.Tags,
		Load: load, Version: Version, Started: n.started, LastSeen: time.Now().UTC(),
		OS: runtime.GOOS, Arch: runtime.GOARCH, Client: n.info.Endpoints.Client,
		SecretEpoch: n.secretEpoch.Load(), UsersRev: n.usersRev.Load(), Role: n.Role(),
	}
}

func (n *Node) publishEvent(e wire.Event) {
	if n.chev.IsZero() {
		return
	}
	e.Time = time.Now().UTC()
	data, err := json.Marshal(e)
	if err != nil {
		return
	}
	if err := n.publish(subjects.Event(n.chev, e.Kind), data); err != nil {
		n.log.Warn("publish event", "kind", e.Kind, "err", err)
	}
}

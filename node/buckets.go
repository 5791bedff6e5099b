package node

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go/jetstream"
)

// MaxTokenTTL is the longest a one-time join token may live.
const MaxTokenTTL = 24 * time.Hour

// Bucket names (DESIGN.md, "State in JetStream").
const (
	BucketNodes  = "rn_nodes"
	BucketLeader = "rn_leader"
	BucketMacros = "rn_macros"
	BucketConfig = "rn_config"
	BucketFiles  = "rn_files"
	// Trust (issue 5). DESIGN.md names rn_approvals; rn_users, rn_tokens and
	// rn_revoked are additions: the identities the servers authenticate, the
	// one-time join tokens used, and the keys revoked.
	BucketApprovals = "rn_approvals"
	BucketUsers     = "rn_users"
	BucketTokens    = "rn_tokens"
	BucketRevoked   = "rn_revoked"
	// BucketSecrets holds each member's rotated swarm secret, sealed to its
	// xkey and signed by the admin who rotated it (issue 9).
	BucketSecrets = "rn_secrets"
	leaseKey      = "lease"
)

type buckets struct {
	nodes     jetstream.KeyValue
	leader    jetstream.KeyValue
	macros    jetstream.KeyValue
	config    jetstream.KeyValue
	approvals jetstream.KeyValue
	users     jetstream.KeyValue
	tokens    jetstream.KeyValue
	revoked   jetstream.KeyValue
	secrets   jetstream.KeyValue
	files     jetstream.ObjectStore
	rep       *replication // every bucket's replica count, as last read
}

func (n *Node) bucketConfigs(replicas int) []jetstream.KeyValueConfig {
	return []jetstream.KeyValueConfig{
		{Bucket: BucketNodes, Description: "robonet: one key per node (chevron), durable declarations",
			History: 1, Storage: jetstream.FileStorage, Replicas: replicas},
		// Per-key TTLs need the stream to allow message TTLs, which
		// LimitMarkerTTL turns on; the markers also tell watchers the lease
		// expired, so a follower can take it at once.
		{Bucket: BucketLeader, Description: "robonet: swarm-leader lease (TTL, revision = fencing token)",
			History: 1, Storage: jetstream.FileStorage, Replicas: replicas,
			LimitMarkerTTL: n.opts.Timing.LeaseTTL * 2},
		{Bucket: BucketMacros, Description: "robonet: named command compositions",
			History: 5, Storage: jetstream.FileStorage, Replicas: replicas},
		{Bucket: BucketConfig, Description: "robonet: propagated configuration",
			History: 5, Storage: jetstream.FileStorage, Replicas: replicas},
		{Bucket: BucketApprovals, Description: "robonet: quorum approvals for dangerous commands",
			History: 1, Storage: jetstream.FileStorage, Replicas: replicas, TTL: 7 * 24 * time.Hour},
		{Bucket: BucketUsers, Description: "robonet: users (name -> role, nkey)",
			History: 1, Storage: jetstream.FileStorage, Replicas: replicas},
		// A token lives at most MaxTokenTTL, so its used id need not outlive it by much.
		{Bucket: BucketTokens, Description: "robonet: one-time join tokens used (id -> node key)",
			History: 1, Storage: jetstream.FileStorage, Replicas: replicas, TTL: 2 * MaxTokenTTL},
		{Bucket: BucketRevoked, Description: "robonet: revoked keys (public key -> reason)",
			History: 1, Storage: jetstream.FileStorage, Replicas: replicas},
		{Bucket: BucketSecrets, Description: "robonet: rotated swarm secrets (member key -> sealed secret, admin-signed)",
			History: 1, Storage: jetstream.FileStorage, Replicas: replicas},
	}
}

func filesConfig(replicas int) jetstream.ObjectStoreConfig {
	return jetstream.ObjectStoreConfig{Bucket: BucketFiles, Description: "robonet: file transfer",
		Storage: jetstream.FileStorage, Replicas: replicas}
}

// ensureBuckets creates or binds the swarm's buckets, retrying until
// JetStream answers (in a swarm that is when a second member has joined).
func (n *Node) ensureBuckets(ctx context.Context) (buckets, error) {
	b := buckets{rep: &replication{}}
	wait := 100 * time.Millisecond
	lastLog := time.Now()
	// nats-server does not answer JetStream API requests while the meta group
	// has no leader, so a request sent then only waits out its timeout: the
	// first attempts use short timeouts that grow. (Waiting for the local
	// server to know a meta leader instead looked cheaper but made nodes that
	// join together form a meta group of their own: never gate on it.)
	attempt := 500 * time.Millisecond
	for {
		replicas := n.jsPeers()
		if replicas >= 3 {
			replicas = 3
		} else {
			replicas = 1
		}
		var kvs []jetstream.KeyValue
		var err error
		for _, cfg := range n.bucketConfigs(replicas) {
			var kv jetstream.KeyValue
			if kv, err = n.bindBucket(ctx, cfg, attempt); err != nil {
				break
			}
			kvs = append(kvs, kv)
		}
		var obs jetstream.ObjectStore
		if err == nil {
			obs, err = n.bindObjects(ctx, filesConfig(replicas), attempt)
		}
		attempt = min(attempt*2, 4*time.Second)
		if err == nil {
			b.nodes, b.leader, b.macros, b.config, b.files = kvs[0], kvs[1], kvs[2], kvs[3], obs
			b.approvals, b.users, b.tokens, b.revoked, b.secrets = kvs[4], kvs[5], kvs[6], kvs[7], kvs[8]
			rctx, cancel := context.WithTimeout(ctx, 2*time.Second)
			n.readReplication(rctx, b.rep)
			cancel()
			return b, nil
		}
		if time.Since(lastLog) > 5*time.Second {
			n.log.Info("still waiting for JetStream", "err", err)
			lastLog = time.Now()
		}
		select {
		case <-ctx.Done():
			return b, n.waitErr(ctx, err)
		case <-time.After(wait):
		}
		wait = min(wait*2, time.Second)
	}
}

// waitErr explains why waiting for JetStream ended.
func (n *Node) waitErr(ctx context.Context, last error) error {
	if errors.Is(ctx.Err(), context.Canceled) {
		return fmt.Errorf("interrupted while waiting for the swarm's JetStream: %w", ctx.Err())
	}
	return fmt.Errorf("JetStream not available (a swarm needs two members; is --join right?): %w", errors.Join(ctx.Err(), last))
}

func (n *Node) bindBucket(ctx context.Context, cfg jetstream.KeyValueConfig, timeout time.Duration) (jetstream.KeyValue, error) {
	cctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	kv, err := n.js.KeyValue(cctx, cfg.Bucket)
	if err == nil {
		return kv, nil
	}
	if n.edge { // edges bind; the core creates and scales
		return nil, fmt.Errorf("bucket %s: %w", cfg.Bucket, err)
	}
	kv, err = n.js.CreateKeyValue(cctx, cfg)
	if errors.Is(err, jetstream.ErrBucketExists) {
		return n.js.KeyValue(cctx, cfg.Bucket)
	}
	if err != nil {
		return nil, fmt.Errorf("bucket %s: %w", cfg.Bucket, err)
	}
	return kv, nil
}

func (n *Node) bindObjects(ctx context.Context, cfg jetstream.ObjectStoreConfig, timeout time.Duration) (jetstream.ObjectStore, error) {
	cctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	obs, err := n.js.ObjectStore(cctx, cfg.Bucket)
	if err == nil {
		return obs, nil
	}
	if n.edge {
		return nil, fmt.Errorf("bucket %s: %w", cfg.Bucket, err)
	}
	obs, err = n.js.CreateObjectStore(cctx, cfg)
	if errors.Is(err, jetstream.ErrBucketExists) {
		return n.js.ObjectStore(cctx, cfg.Bucket)
	}
	if err != nil {
		return nil, fmt.Errorf("bucket %s: %w", cfg.Bucket, err)
	}
	return obs, nil
}

// jsPeers counts the JetStream servers of the meta group that this node does
// not know to be offline, itself included; 1 for a single node. ("Current"
// is only reported by the meta leader, so it is not used.)
func (n *Node) jsPeers() int {
	if !n.Clustered() {
		return 1
	}
	jsz, err := n.srv.Jsz(&server.JSzOptions{})
	if err != nil || jsz.Meta == nil {
		return 1
	}
	peers := 1
	for _, r := range jsz.Meta.Replicas {
		if !r.Offline {
			peers++
		}
	}
	return peers
}

// replication is what the node last read of its buckets' streams: each
// bucket's configured replica count. Every node refreshes it (status
// answers from it, whichever node is asked); the leader raises what is
// behind. Each bucket is checked on its own: a raise that fails partway
// leaves the later buckets behind, and that must show.
type replication struct {
	mu    sync.Mutex     // guards the fields below; never held across I/O
	have  map[string]int // bucket -> configured replicas; absent: not read yet
	peers int            // JetStream servers up at the last read
	// lagging maps a bucket whose stream, at the last read, had no leader
	// or a replica offline or not current to what it lacked.
	lagging  map[string]string
	lastWarn map[string]time.Time
	busy     atomic.Bool // a check is running (membership.go checkReplication)
}

// bucketNames lists every bucket of the swarm, KV and object store.
func (n *Node) bucketNames() []string {
	var out []string
	for _, cfg := range n.bucketConfigs(1) {
		out = append(out, cfg.Bucket)
	}
	return append(out, BucketFiles)
}

// streamOf is the JetStream stream behind a bucket.
func streamOf(bucket string) string {
	if bucket == BucketFiles {
		return "OBJ_" + bucket
	}
	return "KV_" + bucket
}

// readReplication lists the account's streams (one JetStream API request:
// the meta leader answers for every stream) and records each bucket's
// configured replicas in rep. A bucket missing from the answer (its stream
// leader did not answer in time) keeps what was read before.
func (n *Node) readReplication(ctx context.Context, rep *replication) {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	want := map[string]string{} // stream -> bucket
	for _, b := range n.bucketNames() {
		want[streamOf(b)] = b
	}
	got := map[string]int{}
	lag := map[string]string{} // bucket -> what it lacks; "" when all current
	list := n.js.ListStreams(ctx)
	for si := range list.Info() {
		if si == nil {
			continue
		}
		if b, ok := want[si.Config.Name]; ok {
			got[b] = max(si.Config.Replicas, 1)
			lag[b] = streamLag(si)
		}
	}
	if err := list.Err(); err != nil && len(got) == 0 {
		n.log.Debug("read bucket replication", "err", err)
	}
	peers := n.jsPeers()
	rep.mu.Lock()
	defer rep.mu.Unlock()
	if rep.have == nil {
		rep.have = map[string]int{}
	}
	maps.Copy(rep.have, got)
	if rep.lagging == nil {
		rep.lagging = map[string]string{}
	}
	for b, why := range lag {
		if why == "" {
			delete(rep.lagging, b)
		} else {
			rep.lagging[b] = why
		}
	}
	rep.peers = peers
}

// streamLag says what keeps a replicated stream from surviving the loss of
// one server: no leader, a replica offline, or one not caught up ("" when
// none, or when the stream is not replicated).
func streamLag(si *jetstream.StreamInfo) string {
	if si.Config.Replicas < 2 || si.Cluster == nil {
		return ""
	}
	if si.Cluster.Leader == "" {
		return "no leader"
	}
	for _, p := range si.Cluster.Replicas {
		switch {
		case p == nil:
		case p.Offline:
			return "replica " + p.Name + " offline"
		case !p.Current:
			return "replica " + p.Name + " catching up"
		}
	}
	if len(si.Cluster.Replicas)+1 < si.Config.Replicas {
		return fmt.Sprintf("%d of %d replicas placed", len(si.Cluster.Replicas)+1, si.Config.Replicas)
	}
	return ""
}

// resilience says whether the swarm survives the loss of any one node, as
// last read: at least three JetStream servers up (the meta group keeps its
// quorum), and every bucket read, R3 or more, with a leader and every
// replica current (a replica still catching up cannot take over). why is
// the sentence status shows either way.
func (r *replication) resilience() (ok bool, why string) {
	if r == nil {
		return false, "buckets not created yet"
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if len(r.have) == 0 {
		return false, "buckets not read yet"
	}
	if r.peers < 3 {
		return false, fmt.Sprintf("CANNOT survive the loss of a node: %d JetStream server(s) up, and the meta group needs 3 to lose one", r.peers)
	}
	var low, lag []string
	for b, c := range r.have {
		if c < 3 {
			low = append(low, fmt.Sprintf("%s R%d", b, c))
		} else if why := r.lagging[b]; why != "" {
			lag = append(lag, b+": "+why)
		}
	}
	sort.Strings(low)
	sort.Strings(lag)
	switch {
	case len(low) > 0:
		return false, "CANNOT survive the loss of a node: buckets below R3 (" + strings.Join(low, ", ") + "; the leader raises them)"
	case len(lag) > 0:
		return false, "CANNOT survive the loss of a node yet: " + strings.Join(lag, "; ")
	}
	return true, fmt.Sprintf("survives the loss of one node (%d JetStream servers up, every bucket R3 and current)", r.peers)
}

// refreshReplicas reads every bucket's replication again.
func (n *Node) refreshReplicas() {
	if n.kvs.rep != nil {
		n.readReplication(n.ctx, n.kvs.rep)
	}
}

// replicaTarget is how many replicas every bucket should have: 3 once the
// swarm has three JetStream servers up, or once any bucket was raised to 3
// (a bucket left at R1 then is behind even while a server is down: the
// buckets never scale down on their own); else 1.
func replicaTarget(have map[string]int, peers int) int {
	if peers >= 3 {
		return 3
	}
	for _, r := range have {
		if r >= 3 {
			return 3
		}
	}
	return 1
}

// summary is what status reports: the lowest replica count over every
// bucket read (0 before the first read) and the buckets below the target,
// sorted. Safe on a nil replication (before the buckets exist).
func (r *replication) summary() (lowest int, behind []string) {
	if r == nil {
		return 0, nil
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	target := replicaTarget(r.have, r.peers)
	for b, c := range r.have {
		if lowest == 0 || c < lowest {
			lowest = c
		}
		if c < target {
			behind = append(behind, b)
		}
	}
	sort.Strings(behind)
	return lowest, behind
}

// below lists the buckets among names not known to have at least want
// replicas (never read counts as below: raising is idempotent).
func (r *replication) below(names []string, want int) []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []string
	for _, b := range names {
		if c, ok := r.have[b]; !ok || c < want {
			out = append(out, b)
		}
	}
	return out
}

// warnOnce reports whether a failure to raise bucket should be logged:
// once a minute per bucket, since the leader retries every few seconds.
func (r *replication) warnOnce(bucket string, now time.Time) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.lastWarn == nil {
		r.lastWarn = map[string]time.Time{}
	}
	if now.Sub(r.lastWarn[bucket]) < time.Minute {
		return false
	}
	r.lastWarn[bucket] = now
	return true
}

// scaleBuckets raises every bucket below R3 once three JetStream peers are
// up, each on its own: one that fails is retried on the next call (the
// leader calls it every few seconds) and does not stop the others. Only the
// leader does it; it never scales down on its own, because losing a node is
// usually temporary and R3 keeps working with one down.
func (n *Node) scaleBuckets(ctx context.Context) {
	if n.kvs.rep == nil || n.jsPeers() < 3 {
		return
	}
	behind := n.kvs.rep.below(n.bucketNames(), 3)
	if len(behind) == 0 {
		return
	}
	cfgs := map[string]jetstream.KeyValueConfig{}
	for _, cfg := range n.bucketConfigs(3) {
		cfgs[cfg.Bucket] = cfg
	}
	raised := 0
	for _, b := range behind {
		cctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		var err error
		if b == BucketFiles {
			_, err = n.js.UpdateObjectStore(cctx, filesConfig(3))
		} else {
			_, err = n.js.UpdateKeyValue(cctx, cfgs[b])
		}
		cancel()
		if err != nil {
			if n.kvs.rep.warnOnce(b, time.Now()) {
				n.log.Warn("scale bucket to R3 (retrying)", "bucket", b, "err", err)
			}
			continue
		}
		raised++
	}
	n.readReplication(ctx, n.kvs.rep)
	if raised > 0 {
		if _, still := n.kvs.rep.summary(); len(still) == 0 {
			n.log.Info("buckets now replicated on 3 nodes")
		}
	}
}

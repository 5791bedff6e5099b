package node

import (
	"context"
	"errors"
	"fmt"
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
	replicas  *atomic.Int64 // current replicas of the swarm's buckets
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
	b := buckets{replicas: new(atomic.Int64)}
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
			if st, err := b.nodes.Status(ctx); err == nil {
				if si, ok := st.(interface{ StreamInfo() *jetstream.StreamInfo }); ok {
					b.replicas.Store(int64(si.StreamInfo().Config.Replicas))
				}
			}
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
	if kv, err := n.js.KeyValue(cctx, cfg.Bucket); err == nil {
		return kv, nil
	}
	kv, err := n.js.CreateKeyValue(cctx, cfg)
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
	if obs, err := n.js.ObjectStore(cctx, cfg.Bucket); err == nil {
		return obs, nil
	}
	obs, err := n.js.CreateObjectStore(cctx, cfg)
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

// scaleBuckets raises the buckets to R3 once three JetStream peers are
// current. Only the leader does it; it never scales down on its own, because
// losing a node is usually temporary and R3 keeps working with one down.
func (n *Node) scaleBuckets(ctx context.Context) {
	if n.kvs.replicas.Load() >= 3 || n.jsPeers() < 3 {
		return
	}
	for _, cfg := range n.bucketConfigs(3) {
		cctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		_, err := n.js.UpdateKeyValue(cctx, cfg)
		cancel()
		if err != nil {
			n.log.Warn("scale bucket to R3", "bucket", cfg.Bucket, "err", err)
			return
		}
	}
	cctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	_, err := n.js.UpdateObjectStore(cctx, filesConfig(3))
	cancel()
	if err != nil {
		n.log.Warn("scale bucket to R3", "bucket", BucketFiles, "err", err)
		return
	}
	n.kvs.replicas.Store(3)
	n.log.Info("buckets now replicated on 3 nodes")
}

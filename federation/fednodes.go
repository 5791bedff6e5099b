package federation

import (
	"context"
	"fmt"
	"log/slog"
	"sort"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/robonet-mesh/robonet/mesh"
	"github.com/robonet-mesh/robonet/subjects"
	"github.com/robonet-mesh/robonet/wire"
)

// unionCache is a hub's copy of its rn_fed_nodes: every registration the
// children's registries hold, verified (each record is signed by the node
// it names, as in rn_nodes). It backs nodes --all and the key check of
// summaries from the swarms below.
type unionCache struct {
	js  jetstream.JetStream
	log *slog.Logger

	mu    sync.Mutex // guards infos and ready
	infos map[string]wire.NodeInfo
	ready bool
	bad   atomic.Uint64 // records that did not verify
}

func newUnionCache(js jetstream.JetStream, log *slog.Logger) *unionCache {
	return &unionCache{js: js, log: log, infos: map[string]wire.NodeInfo{}}
}

// keyOf is the key rn_fed_nodes registers chevron with.
func (u *unionCache) keyOf(chevron string) (string, bool) {
	u.mu.Lock()
	defer u.mu.Unlock()
	in, ok := u.infos[chevron]
	return in.Pubkey, ok && in.Pubkey != ""
}

func (u *unionCache) list() []wire.NodeInfo {
	u.mu.Lock()
	defer u.mu.Unlock()
	out := make([]wire.NodeInfo, 0, len(u.infos))
	for _, in := range u.infos {
		out = append(out, in)
	}
	return out
}

// run watches rn_fed_nodes (once the hub's leader has created it) until
// ctx ends, watching again whenever the watch stops.
func (u *unionCache) run(ctx context.Context, wg *sync.WaitGroup) {
	defer wg.Done()
	for ctx.Err() == nil {
		if err := u.watch(ctx); err != nil && ctx.Err() == nil {
			u.log.Debug("watch rn_fed_nodes (retrying)", "err", err)
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(2 * time.Second):
		}
	}
}

func (u *unionCache) watch(ctx context.Context) error {
	cctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	kv, err := u.js.KeyValue(cctx, BucketFedNodes)
	cancel()
	if err != nil {
		return err
	}
	w, err := kv.WatchAll(ctx)
	if err != nil {
		return err
	}
	defer func() { _ = w.Stop() }()
	for {
		select {
		case <-ctx.Done():
			return nil
		case e, ok := <-w.Updates():
			if !ok {
				return fmt.Errorf("watch of %s closed", BucketFedNodes)
			}
			u.apply(e)
		}
	}
}

func (u *unionCache) apply(e jetstream.KeyValueEntry) {
	u.mu.Lock()
	defer u.mu.Unlock()
	if e == nil {
		u.ready = true
		return
	}
	if e.Operation() != jetstream.KeyValuePut {
		delete(u.infos, e.Key())
		return
	}
	info, err := mesh.OpenNodeRecord(e.Key(), e.Value())
	if err != nil {
		u.bad.Add(1)
		u.log.Warn("ignoring a sourced registration that does not verify", "bucket", BucketFedNodes, "key", clip(e.Key()), "err", err)
		delete(u.infos, e.Key())
		return
	}
	u.infos[e.Key()] = info
}

// readRegistry reads every registration of bucket (rn_nodes or
// rn_fed_nodes) in JetStream domain domain, verified; records that do not
// verify are skipped and counted in bad.
func readRegistry(ctx context.Context, js jetstream.JetStream, bucket string) (out []wire.NodeInfo, bad int, err error) {
	kv, err := js.KeyValue(ctx, bucket)
	if err != nil {
		return nil, 0, err
	}
	w, err := kv.WatchAll(ctx, jetstream.IgnoreDeletes())
	if err != nil {
		return nil, 0, err
	}
	defer func() { _ = w.Stop() }()
	for {
		select {
		case <-ctx.Done():
			return out, bad, ctx.Err()
		case e, ok := <-w.Updates():
			if !ok {
				return out, bad, fmt.Errorf("watch of %s closed", bucket)
			}
			if e == nil {
				return out, bad, nil
			}
			info, err := mesh.OpenNodeRecord(e.Key(), e.Value())
			if err != nil {
				bad++
				continue
			}
			out = append(out, info)
		}
	}
}

// FedNodes is the answer to rn.sys.fednodes: the federated registry as
// this node can read it, and what it could not read.
type FedNodes struct {
	Nodes []wire.FedMember `json:"nodes"`
	// Sources says where the rows came from: "registry" (this swarm's
	// live view), "rn_fed_nodes" (this hub's union), and "<domain>
	// rn_nodes" / "<domain> rn_fed_nodes" for the ancestors' buckets.
	Sources []string `json:"sources"`
	// Unread lists the ancestors' buckets that could not be read now
	// (a partitioned parent), with why.
	Unread []string `json:"unread,omitempty"`
	// Unverified counts registrations dropped because their signature did
	// not verify.
	Unverified int `json:"unverified,omitempty"`
}

// KeyOf is the federated registry's word on node keys, for
// Request.NodeKey: the key each listed chevron registered.
func (f FedNodes) KeyOf() func(chevron string) (pubkey string, ok bool) {
	keys := make(map[string]string, len(f.Nodes))
	for _, m := range f.Nodes {
		if m.Pubkey != "" {
			keys[m.Chevron] = m.Pubkey
		}
	}
	return func(chev string) (string, bool) { k, ok := keys[chev]; return k, ok }
}

// ancestorRead bounds each read of an ancestor's bucket.
const ancestorRead = 2 * time.Second

// Nodes builds the federated registry: this swarm's members from the
// node's live registry; the hub's rn_fed_nodes; then each ancestor's
// rn_nodes and rn_fed_nodes read across its domain (best effort, each read
// bounded). A chevron keeps the first row found, so this swarm's own view
// wins. Rows of other swarms take their state from the directory.
func (d *Directory) Nodes(ctx context.Context) FedNodes {
	now := d.o.Now()
	out := FedNodes{Sources: []string{"registry"}}
	seen := map[string]bool{}
	self := d.prefix.String()
	for _, m := range d.o.Local.Members() {
		seen[m.Chevron] = true
		out.Nodes = append(out.Nodes, wire.FedMember{Member: m, Swarm: self})
	}
	add := func(infos []wire.NodeInfo) {
		for _, in := range infos {
			if seen[in.Chevron] {
				continue
			}
			c, err := subjects.Parse(in.Chevron)
			sw, ok := subjects.SwarmOf(c)
			if err != nil || !ok || sw == d.prefix {
				continue // this swarm's rows come from its live registry only
			}
			seen[in.Chevron] = true
			m := wire.Member{Chevron: in.Chevron, Name: in.Name, Pubkey: in.Pubkey, Server: in.Server, Caps: in.Caps,
				Tags: in.Tags, Version: in.Version, Started: in.Started, OS: in.OS, Arch: in.Arch, Client: in.Endpoints.Client}
			m.State, m.Leader, _ = d.book.liveness(sw.String(), in.Chevron, now)
			out.Nodes = append(out.Nodes, wire.FedMember{Member: m, Swarm: sw.String()})
		}
	}
	if d.o.Hub {
		add(d.union.list())
		out.Sources = append(out.Sources, BucketFedNodes)
		out.Unverified += int(d.union.bad.Load())
	}
	for _, anc := range d.ancestors(now) {
		js, err := jetstream.NewWithDomain(d.o.Conn, anc.Domain)
		if err != nil {
			out.Unread = append(out.Unread, fmt.Sprintf("%s: %v", anc.Domain, err))
			continue
		}
		for _, bucket := range []string{mesh.NodesBucket, BucketFedNodes} {
			if anc.Link != LinkUp {
				out.Unread = append(out.Unread, fmt.Sprintf("%s %s: swarm %s partitioned", anc.Domain, bucket, anc.Prefix))
				continue
			}
			rctx, cancel := context.WithTimeout(ctx, ancestorRead)
			infos, bad, err := readRegistry(rctx, js, bucket)
			cancel()
			out.Unverified += bad
			if err != nil {
				out.Unread = append(out.Unread, fmt.Sprintf("%s %s: %v", anc.Domain, bucket, err))
			} else {
				out.Sources = append(out.Sources, anc.Domain+" "+bucket)
			}
			add(infos)
		}
	}
	sort.Slice(out.Nodes, func(i, j int) bool { return subjects.CompareText(out.Nodes[i].Chevron, out.Nodes[j].Chevron) < 0 })
	return out
}

// ancestors are this swarm's parent, its parent, … as the directory knows
// them, nearest first.
func (d *Directory) ancestors(now time.Time) []SwarmState {
	byPrefix := map[string]SwarmState{}
	for _, s := range d.book.snapshot(now) {
		byPrefix[s.Prefix] = s
	}
	var out []SwarmState
	seen := map[string]bool{d.prefix.String(): true}
	cur := d.o.Parent()
	for cur != "" && !seen[cur] {
		seen[cur] = true
		s, ok := byPrefix[cur]
		if !ok {
			dom := ""
			if p, err := subjects.ParseSwarmPrefix(cur); err == nil {
				dom, _ = subjects.SwarmDomain(p)
			}
			if dom == "" {
				break
			}
			s = SwarmState{Prefix: cur, Domain: dom, Link: LinkDown}
		}
		out = append(out, s)
		cur = s.Parent
	}
	return out
}

package node

import (
	"context"
	"maps"
	"os"
	"sort"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nkeys"

	"github.com/robonet-mesh/robonet/mesh"
	"github.com/robonet-mesh/robonet/subjects"

	"github.com/robonet-mesh/robonet/wire"
)

// liveKey is the key heartbeating as chev now, if that chevron is not
// offline.
func (r *registry) liveKey(chev string, now time.Time) (string, bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	e := r.live[chev]
	if e == nil || r.stateLocked(chev, now) == wire.StateOffline {
		return "", false
	}
	return e.hb.Pubkey, true
}

// KnownMembersFile lists the member node keys this node knew when it last
// ran (one per line): on a restart it admits them by key before it has read
// the registry, as members admit it.
const KnownMembersFile = "members.known"

// loadKnownMembers reads KnownMembersFile; a missing or bad file is empty.
func (d *dataDir) loadKnownMembers() map[string]bool {
	out := map[string]bool{}
	b, err := os.ReadFile(d.file(KnownMembersFile))
	if err != nil || len(b) > 8<<20 {
		return out
	}
	for _, line := range strings.Split(string(b), "\n") {
		if k := strings.TrimSpace(line); nkeys.IsValidPublicUserKey(k) {
			out[k] = true
		}
	}
	return out
}

func (ra *routeAuth) knownMember(pub string) bool {
	if ra == nil {
		return false
	}
	ra.mu.RLock()
	defer ra.mu.RUnlock()
	return ra.known[pub]
}

// saveKnownMembers writes the registered, unrevoked member keys when they
// changed since the last write. Revoked keys leave the file, and the
// in-memory set is replaced: it stands in only until the registry is read.
func (n *Node) saveKnownMembers() {
	n.ids.mu.Lock()
	keys := make([]string, 0, len(n.ids.keyChev))
	for k := range n.ids.keyChev {
		if _, bad := n.ids.revoked[k]; !bad && k != n.pub {
			keys = append(keys, k)
		}
	}
	n.ids.mu.Unlock()
	sort.Strings(keys)
	text := strings.Join(keys, "\n")
	if text == n.knownText {
		return
	}
	if err := writeFileAtomic(n.dd.file(KnownMembersFile), []byte(text+"\n"), 0o600, false); err != nil {
		n.log.Warn("save known members", "err", err)
		return
	}
	n.knownText = text
	if n.routes != nil {
		known := map[string]bool{}
		for _, k := range keys {
			known[k] = true
		}
		n.routes.mu.Lock()
		n.routes.known = known
		n.routes.mu.Unlock()
	}
}

// sweepEvery is how often a node forgets the keys that left the swarm.
const sweepEvery = 30 * time.Second

// sweepDeparted forgets, in the ledger and the Sentinel, every key this
// node no longer admits: users removed, nodes deregistered, keys revoked.
// Together with verifyNodeMsg (only registered keys enter) it keeps both
// tables to the swarm's real members, however many keys come and go.
func (n *Node) sweepDeparted() {
	gone := 0
	for _, p := range n.ledger.Peers() {
		if !n.known(p.Key) && n.ledger.Evict(p.Key) {
			gone++
		}
	}
	for _, peer := range n.sent.Peers() {
		if pub, _ := n.peerKey(peer); pub == "" || !n.known(pub) {
			n.sent.Forget(peer)
			gone++
		}
	}
	if gone > 0 {
		n.log.Debug("forgot departed keys", "count", gone)
	}
	ctx, cancel := context.WithTimeout(n.ctx, 5*time.Second)
	defer cancel()
	n.applyDeferredDeletes(ctx)
}

// known reports whether pub is a user or node of the swarm now (the
// Sentinel's local blocks do not count as leaving).
func (n *Node) known(pub string) bool {
	if pub == n.pub || pub == n.opPub {
		return true
	}
	_, ok := n.roleWithInherited(pub)
	return ok
}

// deferDelete remembers a registration deleted while its node was live and
// unrevoked (refused then: nodes announce leaving, admins revoke first —
// though a revocation can arrive after the delete): the sweep applies the
// delete once the key is revoked or the node is no longer live, unless the
// registration came back meanwhile.
func (n *Node) deferDelete(chev, pub string) {
	n.deferMu.Lock()
	defer n.deferMu.Unlock()
	if n.deferred == nil {
		n.deferred = map[string]string{}
	}
	if len(n.deferred) < 4096 {
		n.deferred[chev] = pub
	}
}

// applyDeferredDeletes runs in the sweep.
func (n *Node) applyDeferredDeletes(ctx context.Context) {
	n.deferMu.Lock()
	pending := maps.Clone(n.deferred)
	n.deferMu.Unlock()
	for chev, pub := range pending {
		live, ok := n.reg.liveKey(chev, time.Now())
		if ok && live == pub && !n.ids.isRevoked(pub) {
			continue
		}
		n.deferMu.Lock()
		delete(n.deferred, chev)
		n.deferMu.Unlock()
		if _, found, err := n.leaderRead.Last(ctx, "KV_"+BucketNodes, "$KV."+BucketNodes+"."+chev); err != nil || found {
			continue // unreadable now, or registered again: the watch has it
		}
		n.reg.setInfo(chev, nil)
		n.ids.setNode(chev, nil)
		n.authChanged()
	}
}

// maxUnregistered bounds the chevrons heard heartbeating without a
// registration that a node remembers.
const maxUnregistered = 4096

// heardUnregistered notes a validly signed heartbeat on a chevron nobody
// registered (a node that knows its chevron heartbeats before it can
// claim it, while the swarm's JetStream is not up): auto-numbering skips
// such numbers. It is kept outside the ledger and the Sentinel, bounded,
// and used for nothing else: a flood of throwaway keys costs at most some
// numbers for a few seconds.
func (n *Node) heardUnregistered(m *nats.Msg, chev subjects.Chevron, claimed string) {
	h, err := mesh.ParseSigned(m)
	if err != nil || h.From != claimed || n.hbVerify.Verify(h, m.Subject, m.Data) != nil {
		return
	}
	now := time.Now()
	n.unregMu.Lock()
	defer n.unregMu.Unlock()
	if n.unreg == nil || len(n.unreg) >= maxUnregistered {
		n.unreg = map[string]time.Time{}
	}
	n.unreg[chev.String()] = now
}

// unregisteredHeard lists the unregistered chevrons heard within the
// offline time.
func (n *Node) unregisteredHeard(now time.Time) map[string]bool {
	n.unregMu.Lock()
	defer n.unregMu.Unlock()
	out := map[string]bool{}
	for c, at := range n.unreg {
		if now.Sub(at) <= n.opts.Timing.OfflineAfter {
			out[c] = true
		} else {
			delete(n.unreg, c)
		}
	}
	return out
}

package node

import (
	"strings"
	"sync"
	"time"
)

// DefaultSentinelBlock is how long a Sentinel disconnect lasts unless an
// admin makes it permanent (robonet trust revoke) or lifts it (robonet trust
// release).
const DefaultSentinelBlock = time.Hour

// maxBlocks bounds the block table; when full, the block that ends soonest
// makes room.
const maxBlocks = 4096

// sentinelReason prefixes every quarantine the Sentinel places, so that a
// Sentinel release lifts only its own.
const sentinelReason = "sentinel: "

// blockTable holds this node's Sentinel disconnects: local, expiring
// decisions that refuse a key's commands and connections here. They are
// never written to the swarm: one node's judgement of behaviour is not
// proof (only an admin's revocation or a fork proof is).
type blockTable struct {
	mu    sync.Mutex
	until map[string]blockEntry
}

type blockEntry struct {
	until  time.Time
	reason string
}

// sentinelBlock disconnects pub here until now+the block duration.
func (n *Node) sentinelBlock(pub, reason string, now time.Time) {
	d := n.opts.SentinelBlock
	if d <= 0 {
		d = DefaultSentinelBlock
	}
	b := &n.blocks
	b.mu.Lock()
	if b.until == nil {
		b.until = map[string]blockEntry{}
	}
	if _, ok := b.until[pub]; !ok && len(b.until) >= maxBlocks {
		var soonest string
		for k, e := range b.until {
			if soonest == "" || e.until.Before(b.until[soonest].until) {
				soonest = k
			}
		}
		delete(b.until, soonest)
	}
	b.until[pub] = blockEntry{until: now.Add(d), reason: reason}
	b.mu.Unlock()
	n.log.Warn("sentinel: key disconnected on this node", "key", pub, "for", d, "reason", reason)
	n.disconnect(pub)
	n.authChanged()
}

// sentinelBlocked reports whether this node's Sentinel has disconnected pub
// for now; an expired block is dropped.
func (n *Node) sentinelBlocked(pub string) bool {
	b := &n.blocks
	b.mu.Lock()
	defer b.mu.Unlock()
	e, ok := b.until[pub]
	if !ok {
		return false
	}
	if time.Now().After(e.until) {
		delete(b.until, pub)
		return false
	}
	return true
}

// sentinelUnblock lifts a block (robonet trust release); it reports
// whether there was one.
func (n *Node) sentinelUnblock(pub string) bool {
	b := &n.blocks
	b.mu.Lock()
	_, ok := b.until[pub]
	delete(b.until, pub)
	b.mu.Unlock()
	if ok {
		n.authChanged()
	}
	return ok
}

// SentinelBlocks lists the keys this node's Sentinel has disconnected and
// until when.
func (n *Node) SentinelBlocks() map[string]time.Time {
	b := &n.blocks
	b.mu.Lock()
	defer b.mu.Unlock()
	out := make(map[string]time.Time, len(b.until))
	now := time.Now()
	for k, e := range b.until {
		if now.Before(e.until) {
			out[k] = e.until
		}
	}
	return out
}

// sentinelQuarantined reports whether the ledger's quarantine of pub is the
// Sentinel's own (and so the Sentinel's to lift).
func (n *Node) sentinelQuarantined(pub string) bool {
	p, ok := n.ledger.Peer(pub)
	return ok && p.State == "quarantined" && strings.HasPrefix(p.Reason, sentinelReason)
}

// sentinelForget drops what this node's Sentinel holds about pub (as a
// user key and as a node's chevron) and what it did about it: an
// operator's release ends the episode, so the same flood does not block
// the key again a window later. The baseline is learnt afresh.
func (n *Node) sentinelForget(pub string) {
	peers := []string{pub}
	if c, ok := n.ids.nodeChevron(pub); ok {
		peers = append(peers, c.String())
	}
	for _, p := range peers {
		n.sent.Forget(p)
		if n.sst != nil {
			n.sst.mu.Lock()
			delete(n.sst.acted, p)
			n.sst.mu.Unlock()
		}
	}
}

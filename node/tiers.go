package node

import (
	"encoding/json"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/robonet-mesh/robonet/subjects"
	"github.com/robonet-mesh/robonet/trust"
	"github.com/robonet-mesh/robonet/wire"
)

// Tiers as the swarm judges them (issue 9, point 14). A node's own ledger
// scores every peer key from the chain it hears, but the registry must not
// take one node's word for a tier, and nobody's word for its own: so every
// member publishes what its ledger says of the others (wire.TierView on
// rn.<chevron>.evt.tiers, every 2 s from monitorLoop), and the node that
// answers rn.sys.nodes combines its own ledger's word with the live
// members' latest views (registry tierOf: a lower median, 0 for a key it
// quarantined or revoked). Heartbeats stay as they are: a view is a few
// dozen bytes per member every other second, on a core of at most 7.

// evtTiers is the event kind of a TierView. (It belongs with the other
// kinds in package subjects; kept here until that package is touched.)
const evtTiers = "tiers"

// maxViewKeys bounds the keys one TierView may carry: far more than a core
// (7 members) plus its edges, far less than a message that costs anything.
const maxViewKeys = 4096

// judgeKey is this node's own word on a node key, for Member.Tier: the tier
// its ledger gives the key (what the command gate uses, roleTier), banned
// when the key is quarantined here (a chain break, a proven fork reported by
// any member, an operator's or the Sentinel's quarantine) or revoked.
func (n *Node) judgeKey(pub string) judgement {
	if pub == n.pub {
		return judgement{banned: n.ids.isRevoked(pub)}
	}
	if n.ids.isRevoked(pub) {
		return judgement{banned: true}
	}
	if p, ok := n.ledger.Peer(pub); ok && p.State == trust.Quarantined {
		return judgement{banned: true}
	}
	return judgement{tier: n.roleTier(wire.RoleNode, pub, time.Now()), vote: true}
}

// nodeKeys lists the registered node keys other than this node's.
func (n *Node) nodeKeys() []string {
	n.ids.mu.Lock()
	defer n.ids.mu.Unlock()
	var out []string
	for _, in := range n.ids.infos {
		if in.Pubkey != "" && in.Pubkey != n.pub {
			out = append(out, in.Pubkey)
		}
	}
	return out
}

// publishTierView tells the other members what this node's ledger says of
// every registered node key but its own (0 for a banned one).
func (n *Node) publishTierView() {
	if !n.Clustered() || n.chev.IsZero() {
		return
	}
	keys := n.nodeKeys()
	if len(keys) > maxViewKeys && distinct(keys) > maxViewKeys {
		return // too many to say (checked before judging each: 10,000 edges)
	}
	v := wire.TierView{Chevron: n.chev.String(), Pubkey: n.pub, Tiers: make(map[string]int, len(keys)), Sent: time.Now().UTC()}
	for _, pub := range keys {
		j := n.judgeKey(pub)
		if j.banned {
			v.Tiers[pub] = 0
		} else {
			v.Tiers[pub] = j.tier
		}
	}
	if len(v.Tiers) == 0 || len(v.Tiers) > maxViewKeys {
		return
	}
	data, err := json.Marshal(v)
	if err != nil {
		return
	}
	if err := n.publish(subjects.Event(n.chev, evtTiers), data); err != nil {
		n.log.Debug("publish tier view", "err", err)
	}
}

// distinct counts the different strings in ss.
func distinct(ss []string) int {
	set := make(map[string]struct{}, len(ss))
	for _, s := range ss {
		set[s] = struct{}{}
	}
	return len(set)
}

// onTierView takes another member's view, signed by the key that holds the
// chevron it is published under.
func (n *Node) onTierView(m *nats.Msg) {
	from, _, ok := subjects.ParseEvent(m.Subject)
	if !ok || from == n.selfChev() {
		return
	}
	var v wire.TierView
	if err := wire.Decode(m.Data, &v); err != nil || v.Chevron != from.String() || v.Pubkey == "" || len(v.Tiers) > maxViewKeys {
		return
	}
	for _, t := range v.Tiers {
		if t < 0 || t > 3 {
			return
		}
	}
	signer, ok := n.verifyNodeMsg(m, from)
	if !ok || signer != v.Pubkey {
		return
	}
	n.reg.onTierView(from.String(), signer, v.Tiers, time.Now())
}

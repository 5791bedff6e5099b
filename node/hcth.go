package node

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/robonet-mesh/robonet/command"
	"github.com/robonet-mesh/robonet/mesh"
	"github.com/robonet-mesh/robonet/subjects"
	"github.com/robonet-mesh/robonet/trust"
	"github.com/robonet-mesh/robonet/wire"
)

// ChainFile keeps the node's HCTH chain position in its data dir.
const ChainFile = "hcth.chain"

// TrustCounters count what the trust layer refused or dropped on this node.
type TrustCounters struct {
	Unsigned   uint64 `json:"unsigned"`      // commands without HCTH headers
	BadHeaders uint64 `json:"bad_headers"`   // malformed or oversized headers
	BadSig     uint64 `json:"bad_signature"` // signatures over other bytes
	UnknownKey uint64 `json:"unknown_key"`   // signed by no identity this swarm knows
	Replays    uint64 `json:"replays"`       // dropped silently
	Denied     uint64 `json:"denied"`        // every command refused (the counts above included)
	Breaks     uint64 `json:"breaks"`        // chain breaks seen (peer quarantined)
	Heartbeats uint64 `json:"heartbeats_dropped"`
}

type trustCounters struct {
	unsigned, badHeaders, badSig, unknownKey, replays, denied, breaks, heartbeats atomic.Uint64
}

func (c *trustCounters) snapshot() TrustCounters {
	return TrustCounters{Unsigned: c.unsigned.Load(), BadHeaders: c.badHeaders.Load(), BadSig: c.badSig.Load(),
		UnknownKey: c.unknownKey.Load(), Replays: c.replays.Load(), Denied: c.denied.Load(),
		Breaks: c.breaks.Load(), Heartbeats: c.heartbeats.Load()}
}

// publish signs and publishes what the node says.
func (n *Node) publish(subj string, data []byte) error {
	m := &nats.Msg{Subject: subj, Data: data}
	if err := n.signer.SignMsg(m); err != nil {
		return err
	}
	return n.nc.PublishMsg(m)
}

// roleTier is the highest tier a role may act at: users by role; nodes by
// what their chain has earned in this node's ledger.
func (n *Node) roleTier(role, pub string, now time.Time) int {
	switch role {
	case wire.RoleAdmin:
		return command.TierCritical
	case wire.RoleOperator:
		return command.TierOperate
	case wire.RoleObserver:
		return command.TierObserve
	case wire.RoleNode:
		return n.ledger.Tier(n.ledger.Score(pub, now))
	}
	return 0
}

// observe runs a signed message through the ledger. ok is true for an
// accepted message; a replay is dropped without an answer (drop); anything
// else comes back as the error to answer with.
func (n *Node) observe(h trust.Headers, subject string, data []byte, now time.Time) (drop bool, err error) {
	v, err := n.ledger.Observe(h, subject, data, now)
	switch v {
	case trust.Accept:
		return false, nil
	case trust.Replay:
		n.tc.replays.Add(1)
		return true, nil
	case trust.Break:
		n.tc.breaks.Add(1)
		n.onBreak(h.From, err)
		return false, fmt.Errorf("chain break from %s: %v: the key is quarantined", h.From, err)
	}
	if errors.Is(err, trust.ErrBadSignature) {
		n.tc.badSig.Add(1)
	}
	return false, err
}

// hostGuard is the node's trust layer in front of its command host.
type hostGuard struct{ n *Node }

func (g hostGuard) Sign(m *nats.Msg) error { return g.n.signer.SignMsg(m) }

func (g hostGuard) Admit(ctx context.Context, m *nats.Msg, req *wire.Request, need int, dangerous bool) (bool, *wire.Error) {
	n := g.n
	deny := func(code, format string, a ...any) (bool, *wire.Error) {
		n.tc.denied.Add(1)
		return false, &wire.Error{Code: code, Msg: fmt.Sprintf(format, a...)}
	}
	h, err := mesh.ParseSigned(m)
	if errors.Is(err, mesh.ErrUnsigned) {
		n.tc.unsigned.Add(1)
		return deny(wire.CodeDenied, "unsigned command: this swarm runs HCTH; send it with robonet or sign it (Rn-From, Rn-Seq, Rn-Prev, Rn-Sig)")
	}
	if err != nil {
		n.tc.badHeaders.Add(1)
		return deny(wire.CodeBadRequest, "%v", err)
	}
	role, ok := n.roleOf(h.From)
	if !ok {
		n.tc.unknownKey.Add(1)
		return deny(wire.CodeDenied, "key %s is not a user or node of this swarm (or was revoked)", h.From)
	}
	now := time.Now()
	drop, err := n.observe(h, m.Subject, m.Data, now)
	if drop {
		return true, nil
	}
	if err != nil {
		return deny(wire.CodeDenied, "%v", err)
	}
	req.From = h.From
	peer := n.peerID(h.From, role)
	n.sent.Message(peer, now)
	n.sent.Command(peer, req.Verb, now)
	tier := n.roleTier(role, h.From, now)
	if dangerous {
		if role != wire.RoleAdmin && role != wire.RoleOperator {
			return deny(wire.CodeDenied, "%s is dangerous: only operators and admins may ask for it (%s is %s)", req.Verb, h.From, role)
		}
		id := m.Header.Get(wire.HdrApproval)
		if id == "" {
			n.tc.denied.Add(1)
			return false, &wire.Error{Code: wire.CodeApprovalRequired,
				Msg: fmt.Sprintf("%s is dangerous here and needs a quorum approval", req.Verb)}
		}
		if err := n.approvals.Check(ctx, id, *req, h.From, now); err != nil {
			return deny(wire.CodeDenied, "%v", err)
		}
		return false, nil
	}
	if tier < need {
		return deny(wire.CodeDenied, "%s needs trust tier %d; %s (%s) has tier %d", req.Verb, need, h.From, role, tier)
	}
	return false, nil
}

// verifyNodeMsg checks a message a node publishes under its own chevron
// (heartbeats, events): signed, accepted by the ledger, and by the key that
// holds the chevron, or by claimed when the chevron is not registered yet.
func (n *Node) verifyNodeMsg(m *nats.Msg, chev subjects.Chevron, claimed string) (string, bool) {
	h, err := mesh.ParseSigned(m)
	if err != nil || n.ids.isRevoked(h.From) {
		return "", false
	}
	if owner, ok := n.ids.ownerOf(chev); ok {
		if owner != h.From {
			return "", false
		}
	} else if h.From != claimed || n.ids.isRevoked(h.From) {
		return "", false
	}
	drop, err := n.observe(h, m.Subject, m.Data, time.Now())
	if errors.Is(err, trust.ErrQuarantined) && n.hbVerify.Verify(h, m.Subject, m.Data) == nil {
		// A quarantined node is refused commands, not liveness: its signed
		// messages still show it is there (the Sentinel watches it too).
		return h.From, true
	}
	if drop || err != nil {
		if errors.Is(err, trust.ErrStale) && n.ids.isOwner(chev, h.From) && n.staleFrom(h.From) {
			// One sender never falls a whole window behind its own chain
			// again and again: a second process signs with this key ahead
			// of the first (a copied data dir), which the ledger cannot
			// see as a fork because the two never reuse a seq.
			if qerr := n.ledger.Quarantine(h.From, "two senders share this key (messages far behind its chain head)", time.Now()); qerr == nil {
				n.tc.breaks.Add(1)
				n.onBreak(h.From, fmt.Errorf("two senders share key %s: %w", h.From, err))
			}
		}
		if errors.Is(err, trust.ErrBadSignature) && n.ids.isOwner(chev, h.From) {
			// Only the holder of a chevron can publish under it (nodes
			// publish only under their own chevron; users cannot publish
			// events), so a bad signature there is proof, not noise.
			if qerr := n.ledger.Quarantine(h.From, "bad signature on "+m.Subject, time.Now()); qerr == nil {
				n.tc.breaks.Add(1)
				n.onBreak(h.From, err)
			}
		}
		return "", false
	}
	return h.From, true
}

// staleLimit is how many stale messages from one node key within
// staleWindow make it a clone.
const (
	staleLimit  = 3
	staleWindow = time.Minute
)

// staleFrom counts a stale message from pub and reports whether it reached
// staleLimit within staleWindow.
func (n *Node) staleFrom(pub string) bool {
	n.staleMu.Lock()
	defer n.staleMu.Unlock()
	now := time.Now()
	if n.stale == nil {
		n.stale = map[string][]time.Time{}
	}
	ts := n.stale[pub][:0:0]
	for _, t := range n.stale[pub] {
		if now.Sub(t) < staleWindow {
			ts = append(ts, t)
		}
	}
	ts = append(ts, now)
	if len(n.stale) > 4096 {
		clear(n.stale) // bounded: a flood of keys resets the counts
	}
	n.stale[pub] = ts
	return len(ts) >= staleLimit
}

// onBreak reports a chain break: an evt.trust event from this node, and, on
// the leader, a revocation of the key swarm-wide.
func (n *Node) onBreak(pub string, cause error) {
	chev, _ := n.ids.nodeChevron(pub)
	reason := "chain break"
	if cause != nil {
		reason = cause.Error()
	}
	n.log.Warn("HCTH chain break: peer quarantined", "key", pub, "chevron", chev, "reason", reason)
	// Published on this node's subject; Chevron names the peer (empty for
	// a user key), By the reporting node.
	e := wire.Event{Kind: subjects.EvtTrust, Pubkey: pub, By: n.chev.String(), Reason: reason, Break: true}
	if !chev.IsZero() {
		e.Chevron = chev.String()
	}
	n.publishEvent(e)
	// The leader revokes; when the broken key is the leader's own, the
	// leader cannot be trusted to, so the member that saw the break does.
	l, held := n.reg.currentLease()
	if n.IsLeader() || (held && l.Pubkey == pub) {
		n.wg.Add(1)
		go func() {
			defer n.wg.Done()
			n.revoke(pub, chev, "HCTH break: "+reason, nil)
		}()
	}
}

// onTrustEvent: the leader revokes a key another member saw break its
// chain. The report must come signed from a registered node.
func (n *Node) onTrustEvent(m *nats.Msg) {
	from, _, ok := subjects.ParseEvent(m.Subject)
	if !ok || from == n.selfChev() || !n.IsLeader() {
		return
	}
	var e wire.Event
	if err := wire.Decode(m.Data, &e); err != nil || !e.Break || e.Pubkey == "" || e.Pubkey == n.pub {
		return
	}
	reporter, ok := n.verifyNodeMsg(m, from, "")
	if !ok || reporter == e.Pubkey {
		return
	}
	if n.ids.isRevoked(e.Pubkey) {
		return
	}
	chev, _ := n.ids.nodeChevron(e.Pubkey)
	n.revoke(e.Pubkey, chev, fmt.Sprintf("HCTH break reported by %s: %s", from, e.Reason), nil)
}

// revoke records pub in rn_revoked; every node then refuses it and cuts its
// connections and routes. A node may revoke only with a proof (a fork);
// other revocations are an admin's.
func (n *Node) revoke(pub string, chev subjects.Chevron, reason string, proof *wire.ForkProof) {
	r := wire.Revocation{Pubkey: pub, Reason: reason, At: time.Now().UTC(), By: n.pub, Proof: proof}
	if !chev.IsZero() {
		r.Chevron = chev.String()
	}
	data, err := json.Marshal(r)
	if err != nil {
		return
	}
	ctx, cancel := context.WithTimeout(n.ctx, 10*time.Second)
	defer cancel()
	for {
		if _, err = n.kvs.revoked.Put(ctx, pub, data); err == nil {
			n.log.Warn("revoked key", "key", pub, "chevron", r.Chevron, "reason", reason)
			return
		}
		select {
		case <-ctx.Done():
			n.log.Error("could not revoke key", "key", pub, "err", err)
			return
		case <-time.After(250 * time.Millisecond):
		}
	}
}

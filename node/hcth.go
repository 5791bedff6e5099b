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
	BadRecords uint64 `json:"bad_records"` // rn_users/rn_revoked/rn_tokens records that failed their check
}

type trustCounters struct {
	unsigned, badHeaders, badSig, unknownKey, replays, denied, breaks, heartbeats, badRecords atomic.Uint64
}

func (c *trustCounters) snapshot() TrustCounters {
	return TrustCounters{Unsigned: c.unsigned.Load(), BadHeaders: c.badHeaders.Load(), BadSig: c.badSig.Load(),
		UnknownKey: c.unknownKey.Load(), Replays: c.replays.Load(), Denied: c.denied.Load(),
		Breaks: c.breaks.Load(), Heartbeats: c.heartbeats.Load(), BadRecords: c.badRecords.Load()}
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
	n.st.ledgerVerdict(v, err)
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

// Admit checks, in this order and without I/O: HCTH headers, that the key
// is a user or node of the swarm (an unknown key is answered denied at
// once), the message's place in the key's chain (the signature is verified
// there), and the tier: a dangerous command needs tier 3 (command.
// TierCritical) and the admin role, then an approval (Approve). From is set
// only once the signature verified. A federated command forwarded by this
// swarm's ambassador (Rn-Fed-Subject) is first checked as a forward
// (admitForwarded), then judged the same way over the fed subject.
func (g hostGuard) Admit(m *nats.Msg, req *wire.Request, need int, dangerous bool) Admission {
	n := g.n
	claimed := clip(m.Header.Get(wire.HdrFrom), 64)
	deny := func(from, code, format string, a ...any) Admission {
		n.tc.denied.Add(1)
		ad := Admission{From: from, Deny: &wire.Error{Code: code, Msg: fmt.Sprintf(format, a...)}}
		if from == "" {
			ad.Claimed = claimed
		}
		return ad
	}
	h, err := mesh.ParseSigned(m)
	if errors.Is(err, mesh.ErrUnsigned) {
		n.tc.unsigned.Add(1)
		return deny("", wire.CodeDenied, "unsigned command: this swarm runs HCTH; send it with robonet or sign it (Rn-From, Rn-Seq, Rn-Prev, Rn-Sig)")
	}
	if err != nil {
		n.tc.badHeaders.Add(1)
		return deny("", wire.CodeBadRequest, "%v", err)
	}
	claimed = h.From
	// A federated command forwarded by this swarm's ambassador is signed
	// over its rn.fed subject (fedcmd.go).
	signed, werr := n.signedSubject(m)
	if werr != nil {
		return deny("", werr.Code, "%s", werr.Msg)
	}
	who, reason, ok := n.senderOf(m, h.From)
	if !ok {
		n.tc.unknownKey.Add(1)
		return deny("", wire.CodeDenied, "%s", reason)
	}
	role := who.role
	now := time.Now()
	drop, err := n.observe(h, signed, m.Data, now)
	if drop {
		// A replay: its signature verified, and it is said nothing.
		return Admission{From: h.From, Drop: true}
	}
	if err != nil {
		// Stale: the signature verified, the chain position is too old.
		// Every other refusal here (bad signature, quarantined key, a
		// break) is audited as unverified.
		from := ""
		if errors.Is(err, trust.ErrStale) {
			from = h.From
		}
		return deny(from, wire.CodeDenied, "%v", err)
	}
	peer := n.peerID(h.From, role)
	n.sent.Message(peer, now)
	n.sent.Command(peer, req.Verb, now)
	tier := n.roleTier(role, h.From, now)
	if dangerous {
		// The catalogue's word: dangerous is tier 3. Users reach it as
		// admins; a node key never asks for a dangerous command, whatever
		// its chain earned.
		need = max(need, command.TierCritical)
		if who.user != "" {
			// A dangerous command needs a quorum approval, which the
			// requester signs with its own key: never a session's.
			return deny(h.From, wire.CodeDenied, "%s is dangerous here: it needs a quorum approval, which a delegated key (a gateway session of %s) cannot ask for; run it with robonet run",
				req.Verb, who.user)
		}
		if role != wire.RoleAdmin || tier < need {
			return deny(h.From, wire.CodeDenied, "%s is dangerous here: it needs trust tier %d (an admin) and a quorum approval; %s (%s) has tier %d",
				req.Verb, need, h.From, role, tier)
		}
		if m.Header.Get(wire.HdrApproval) == "" {
			return deny(h.From, wire.CodeApprovalRequired, "%s is dangerous here and needs a quorum approval", req.Verb)
		}
		return Admission{From: h.From}
	}
	if tier < need {
		return deny(h.From, wire.CodeDenied, "%s needs trust tier %d; %s (%s) has tier %d", req.Verb, need, h.From, role, tier)
	}
	return Admission{From: h.From}
}

// Approve checks a dangerous command's approval (Rn-Approval) in
// rn_approvals for from, the signer Admit verified.
func (g hostGuard) Approve(ctx context.Context, m *nats.Msg, req wire.Request, from string) *wire.Error {
	if err := g.n.approvals.Check(ctx, m.Header.Get(wire.HdrApproval), req, from, time.Now()); err != nil {
		g.n.tc.denied.Add(1)
		return &wire.Error{Code: wire.CodeDenied, Msg: err.Error()}
	}
	return nil
}

// verifyNodeMsg checks a message a node publishes under its own chevron
// (heartbeats, events): signed by the key registered for the chevron and
// accepted by the ledger. A chevron not registered (yet) is dropped before
// the ledger: only registered keys ever take a place in the ledger or the
// Sentinel, so throwaway keys cannot fill them. A new node is heard from
// its first heartbeat after its registration arrived.
func (n *Node) verifyNodeMsg(m *nats.Msg, chev subjects.Chevron) (string, bool) {
	owner, ok := n.ids.ownerOf(chev)
	if !ok {
		return "", false
	}
	return n.verifyOwnerMsg(m, chev, owner)
}

// verifyOwnerMsg is verifyNodeMsg once the caller looked up owner, the key
// registered for chev.
func (n *Node) verifyOwnerMsg(m *nats.Msg, chev subjects.Chevron, owner string) (string, bool) {
	h, err := mesh.ParseSigned(m)
	if err != nil || h.From != owner || n.ids.isRevoked(h.From) {
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

// onBreak reports a chain break this node saw: an evt.trust event, and,
// when the break comes with a fork proof, a revocation record any node can
// check. A break without proof (a bad signature, a clone seen only through
// stale messages) stays this node's own quarantine: one member's word must
// not cut a key off the swarm.
func (n *Node) onBreak(pub string, cause error) {
	chev, _ := n.ids.nodeChevron(pub)
	reason := "chain break"
	if cause != nil {
		reason = cause.Error()
	}
	var proof *wire.ForkProof
	if fe := (*trust.ForkError)(nil); errors.As(cause, &fe) && fe.Proof != nil && trust.VerifyForkProof(fe.Proof) == nil {
		proof = fe.Proof
	}
	n.log.Warn("HCTH chain break: peer quarantined", "key", pub, "chevron", chev, "reason", reason, "proof", proof != nil)
	// Published on this node's subject; Chevron names the peer (empty for
	// a user key), By the reporting node.
	e := wire.Event{Kind: subjects.EvtTrust, Pubkey: pub, By: n.chev.String(), Reason: reason, Break: true, Proof: proof}
	if !chev.IsZero() {
		e.Chevron = chev.String()
	}
	n.publishEvent(e)
	if proof != nil && pub != n.pub {
		n.wg.Add(1)
		go func() {
			defer n.wg.Done()
			n.revoke(pub, chev, "HCTH fork: "+reason, proof)
		}()
	}
}

// onTrustEvent takes another member's break report: with a fork proof that
// verifies, this node quarantines the key at once (the revocation record
// follows through rn_revoked); without one it is only logged.
func (n *Node) onTrustEvent(m *nats.Msg) {
	from, _, ok := subjects.ParseEvent(m.Subject)
	if !ok || from == n.selfChev() {
		return
	}
	var e wire.Event
	if err := wire.Decode(m.Data, &e); err != nil || !e.Break || e.Pubkey == "" || e.Pubkey == n.pub {
		return
	}
	reporter, ok := n.verifyNodeMsg(m, from)
	if !ok || reporter == e.Pubkey {
		return
	}
	if e.Proof == nil || e.Proof.Key != e.Pubkey {
		n.log.Info("break reported without proof: not acted on", "key", e.Pubkey, "by", from, "reason", clip(e.Reason, 200))
		return
	}
	if err := trust.VerifyForkProof(e.Proof); err != nil {
		n.log.Warn("break report with a proof that does not hold", "key", e.Pubkey, "by", from, "err", err)
		return
	}
	if err := n.ledger.Quarantine(e.Pubkey, "fork proven by "+from.String(), time.Now()); err == nil {
		n.authChanged()
	}
}

// revoke records a node's proven revocation of pub in rn_revoked; every
// node that verifies the proof then refuses the key and cuts its
// connections and routes. Other revocations are an admin's (mesh.Revoke).
func (n *Node) revoke(pub string, chev subjects.Chevron, reason string, proof *wire.ForkProof) {
	r := wire.Revocation{Pubkey: pub, Reason: reason, At: time.Now().UTC(), By: n.pub, Proof: proof}
	if !chev.IsZero() {
		r.Chevron = chev.String()
	}
	rec, err := json.Marshal(r)
	if err != nil {
		return
	}
	// A node's report lives under its own key in rn_revoked (the only keys
	// its permissions let it write), signed by it; receivers act on it only
	// when its proof checks out.
	key := pub + "." + n.pub
	data, err := trust.SignRecord(n.kp, BucketRevoked, key, rec)
	if err != nil {
		return
	}
	ctx, cancel := context.WithTimeout(n.ctx, 10*time.Second)
	defer cancel()
	for {
		if _, err = n.kvs.revoked.Put(ctx, key, data); err == nil {
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

package trust

import (
	"crypto/sha256"
	"fmt"
	"math"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/robonet-mesh/robonet/wire"
)

// Verdict is what Observe decided about a message. The zero value is Reject,
// so a forgotten assignment fails closed.
type Verdict uint8

// Verdicts. Only Accept lets a message through.
const (
	// Reject: drop the message; the error says why (ErrHeader, ErrStale,
	// ErrQuarantined, ErrTooManyPeers, or ErrBadSignature from a key the
	// ledger does not know or with TolerateBadSignatures). No break.
	Reject Verdict = iota
	// Accept: a new, validly signed message consistent with everything the
	// ledger remembers of the sender's chain (next in chain, after a gap, or
	// late into a gap).
	Accept
	// Replay: the same message (same seq, same chain hash) was accepted
	// before; drop it silently. Counted in Peer.Replays.
	Replay
	// Break: proof of a compromised or cloned key (a fork or a bad
	// signature). The peer is now quarantined with trust 0; the caller
	// publishes an evt.trust event. Returned once per quarantine: later
	// messages from the peer are Reject with ErrQuarantined.
	Break
)

// String returns the verdict's lower-case name, as logs and events show it.
func (v Verdict) String() string {
	switch v {
	case Reject:
		return "reject"
	case Accept:
		return "accept"
	case Replay:
		return "replay"
	case Break:
		return "break"
	}
	return fmt.Sprintf("verdict(%d)", uint8(v))
}

// PeerState is whether a peer's messages are admitted.
type PeerState string

// Peer states.
const (
	Trusted     PeerState = "trusted"     // messages are judged on their merits
	Quarantined PeerState = "quarantined" // trust 0; every message is rejected
)

// Peer is a snapshot of the ledger's record of one sender key.
type Peer struct {
	Key    string    `json:"key"`
	State  PeerState `json:"state"`
	Reason string    `json:"reason,omitempty"` // why quarantined

	Length    uint64    `json:"length"`              // distinct messages accepted (chain length seen)
	Seq       uint64    `json:"seq"`                 // highest seq accepted
	Head      Hash      `json:"head"`                // chain hash at Seq
	FirstSeen time.Time `json:"first_seen,omitzero"` // first accepted message (since the last Release)
	LastSeen  time.Time `json:"last_seen,omitzero"`  // last accepted message

	Gaps    uint64 `json:"gaps"`    // accepted messages (not the first) whose predecessor the ledger has not seen
	Missing uint64 `json:"missing"` // seqs between the lowest and highest accepted that were not seen
	Late    uint64 `json:"late"`    // messages accepted below Seq (out of order)

	Replays   uint64 `json:"replays"`   // messages dropped as Replay
	Stale     uint64 `json:"stale"`     // messages dropped as older than the window
	Anomalies uint64 `json:"anomalies"` // suspicious but not proof: stale messages, tolerated bad signatures
	Breaks    uint64 `json:"breaks"`    // forks and bad signatures that quarantined the peer

	QuarantinedAt time.Time `json:"quarantined_at,omitzero"`
	ReleasedAt    time.Time `json:"released_at,omitzero"` // last Release

	cfg Config // scoring parameters of the ledger the snapshot came from
}

// Score returns the peer's trust in [0,1] at now: 0 when quarantined or new,
// else the formula in the package doc over Length, Gaps and now-FirstSeen.
func (p Peer) Score(now time.Time) float64 {
	if p.State == Quarantined || p.FirstSeen.IsZero() {
		return 0
	}
	return p.cfg.score(p.Length, p.Gaps, now.Sub(p.FirstSeen))
}

// evidenceRing is how many recent accepted messages per peer a ledger keeps
// in full (about 150 bytes each), to prove a fork against them.
const evidenceRing = 64

type peerRec struct {
	rec Peer
	low uint64     // lowest seq accepted since the last Release
	win *window    // allocated on first accept
	ev  []evidence // evidenceRing entries, slot seq%evidenceRing
}

// evidenceAt returns the kept evidence of seq s, or nil.
func (p *peerRec) evidenceAt(s uint64) *evidence {
	if p.ev == nil {
		return nil
	}
	if e := &p.ev[s%evidenceRing]; e.seq == s {
		return e
	}
	return nil
}

// proof builds a fork proof from two pieces of evidence; nil when the
// ledger no longer holds the earlier one.
func (p *peerRec) proof(a, b *evidence) *wire.ForkProof {
	if a == nil || b == nil {
		return nil
	}
	return &wire.ForkProof{Key: p.rec.Key, A: a.wire(), B: b.wire()}
}

// Ledger is a receiver's record of every peer's chain: it judges each
// incoming message (Observe) and scores peers. It is safe for concurrent use;
// signatures are checked outside its lock.
type Ledger struct {
	cfg      Config
	window   uint64
	verifier *Verifier

	mu    sync.Mutex // guards peers and everything they point to
	peers map[string]*peerRec
}

// NewLedger returns an empty ledger; zero fields of cfg take their defaults.
func NewLedger(cfg Config) (*Ledger, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	cfg = cfg.withDefaults()
	return &Ledger{
		cfg:      cfg,
		window:   uint64(cfg.Window),
		verifier: NewVerifier(cfg.MaxPeers),
		peers:    make(map[string]*peerRec),
	}, nil
}

// Config returns the ledger's configuration with defaults filled in.
func (l *Ledger) Config() Config { return l.cfg }

// Tier maps a score to a tier with the ledger's thresholds.
func (l *Ledger) Tier(score float64) int { return l.cfg.Tier(score) }

// Observe judges a received message with its parsed headers and updates the
// sender's record. See the package doc for exactly what it detects. The
// error is nil for Accept and Replay and explains Reject and Break.
func (l *Ledger) Observe(h Headers, subject string, payload []byte, now time.Time) (Verdict, error) {
	// A quarantined peer costs a map lookup, not a signature check.
	l.mu.Lock()
	if p := l.peers[h.From]; p != nil && p.rec.State == Quarantined {
		l.mu.Unlock()
		return Reject, fmt.Errorf("%w: %s", ErrQuarantined, h.From)
	}
	l.mu.Unlock()

	digest := Hash(sha256.Sum256(payload))
	hash, err := l.verifier.verify(h, subject, digest)
	badSig := err != nil && isBadSignature(err)
	if err != nil && !badSig {
		return Reject, err
	}

	l.mu.Lock()
	defer l.mu.Unlock()
	p := l.peers[h.From]
	if p == nil {
		if badSig {
			// Anyone can write a key into Rn-From: a bad signature from a key
			// with no history proves nothing about its holder, and recording
			// it would let garbage fill the ledger.
			return Reject, err
		}
		if len(l.peers) >= l.cfg.MaxPeers {
			return Reject, fmt.Errorf("%w: %d peers, refusing %s", ErrTooManyPeers, len(l.peers), h.From)
		}
		p = &peerRec{rec: Peer{Key: h.From, State: Trusted}}
		l.peers[h.From] = p
	}
	if p.rec.State == Quarantined { // quarantined while we verified
		return Reject, fmt.Errorf("%w: %s", ErrQuarantined, h.From)
	}
	if badSig {
		if l.cfg.TolerateBadSignatures {
			p.rec.Anomalies++
			return Reject, err
		}
		p.breakChain(now, "bad signature on seq %d (%s)", h.Seq, shorten(subject))
		return Break, fmt.Errorf("%w: %w", ErrBreak, err)
	}
	ev := newEvidence(h, subject, digest)
	return p.apply(h, hash, &ev, now, l.window)
}

// apply runs the chain rules for a validly signed message. Lock held.
func (p *peerRec) apply(h Headers, hash Hash, ev *evidence, now time.Time, w uint64) (Verdict, error) {
	r := &p.rec
	s, prev := h.Seq, Hash(h.Prev)
	if p.win == nil {
		p.win = newWindow(w)
	}
	win := p.win
	top := r.Seq // the window holds seqs top-w+1..top

	// Rule 1: what the ledger knows about seq s itself.
	kind, fp := win.at(s, top)
	switch {
	case kind == slotSeen && fp == fingerprint(hash):
		r.Replays++
		return Replay, nil
	case kind == slotSeen:
		return p.fork(now, p.proof(p.evidenceAt(s), ev), "seq %d: two different messages (chain hashes %016x… and %s)", s, fp, hash)
	case kind == slotClaimed && fp != fingerprint(hash): // claimed by s+1
		return p.fork(now, p.proof(ev, p.evidenceAt(s+1)), "seq %d has chain hash %s, but seq %d named %016x… as its predecessor", s, hash, s+1, fp)
	case kind == slotEmpty && r.Length > 0 && top >= w && s <= top-w:
		r.Stale++
		r.Anomalies++
		return Reject, fmt.Errorf("%w: seq %d from %s, window is %d..%d", ErrStale, s, r.Key, top-w+1, top)
	}

	// Rule 2: what the ledger knows about seq s-1.
	linked := false
	if s > 1 {
		if pk, pfp := win.at(s-1, top); pk != slotEmpty {
			if pfp != fingerprint(prev) {
				return p.fork(now, p.proof(p.evidenceAt(s-1), ev), "seq %d names predecessor %s, but seq %d has chain hash %016x…", s, prev, s-1, pfp)
			}
			linked = pk == slotSeen
		}
	}

	// Accept.
	first := r.Length == 0
	if first {
		r.FirstSeen = now
		p.low = s
	} else if s < r.Seq {
		r.Late++
	}
	if s > top {
		if !first { // a first message's window is new
			win.advance(top, s)
		}
		top = s
	}
	gap := s > 1 && !linked && !first
	win.set(s, slotSeen, fingerprint(hash), gap)
	if p.ev == nil {
		p.ev = make([]evidence, evidenceRing)
	}
	if pe := &p.ev[(s-1)%evidenceRing]; pe.seq == s-1 && pe.subject == ev.subject {
		ev.subject = pe.subject // one copy of a subject a peer repeats (its heartbeats')
	}
	p.ev[s%evidenceRing] = *ev
	if gap {
		r.Gaps++
	}
	// Remember the predecessor s claims, to check it if it arrives late.
	if s > 1 && !linked && (top < w || s-1 > top-w) {
		if pk, _ := win.at(s-1, top); pk == slotEmpty {
			win.set(s-1, slotClaimed, fingerprint(prev), false)
		}
	}
	// A late message may close the gap in front of its successor.
	if s < math.MaxUint64 && win.closeGap(s+1, top) {
		r.Gaps--
	}
	r.Length++
	if s >= r.Seq {
		r.Seq, r.Head = s, hash
	}
	p.low = min(p.low, s)
	r.Missing = (r.Seq - p.low) - (r.Length - 1)
	r.LastSeen = now
	return Accept, nil
}

func (p *peerRec) fork(now time.Time, proof *wire.ForkProof, format string, args ...any) (Verdict, error) {
	p.breakChain(now, format, args...)
	return Break, &ForkError{Key: p.rec.Key, Reason: p.rec.Reason, Proof: proof}
}

func (p *peerRec) breakChain(now time.Time, format string, args ...any) {
	p.rec.Breaks++
	p.quarantine(now, fmt.Sprintf(format, args...))
}

func (p *peerRec) quarantine(now time.Time, reason string) {
	p.rec.State = Quarantined
	p.rec.Reason = reason
	p.rec.QuarantinedAt = now
}

// Quarantine puts a peer in quarantine (trust 0, every message rejected),
// creating its record if the ledger has none. It is the operator's action;
// Observe quarantines on a break by itself. Quarantining again only updates
// the reason.
func (l *Ledger) Quarantine(pub, reason string, now time.Time) error {
	if err := CheckKey(pub); err != nil {
		return err
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	p := l.peers[pub]
	if p == nil {
		p = &peerRec{rec: Peer{Key: pub}}
		l.peers[pub] = p
	}
	if strings.TrimSpace(reason) == "" {
		reason = "quarantined by operator"
	}
	if p.rec.State == Quarantined {
		p.rec.Reason = reason
		return nil
	}
	p.quarantine(now, reason)
	return nil
}

// Release lifts a quarantine. The peer starts earning trust again from zero:
// its chain history (window, length, gaps, first seen) is cleared, because
// whatever it held may be the clone's; the counters of replays, stale
// messages, anomalies and breaks are kept. Releasing a trusted peer is a no-op.
func (l *Ledger) Release(pub string, now time.Time) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	p := l.peers[pub]
	if p == nil {
		return fmt.Errorf("release %s: %w", shorten(pub), ErrUnknownPeer)
	}
	if p.rec.State != Quarantined {
		return nil
	}
	old := p.rec
	*p = peerRec{rec: Peer{
		Key:        old.Key,
		State:      Trusted,
		Replays:    old.Replays,
		Stale:      old.Stale,
		Anomalies:  old.Anomalies,
		Breaks:     old.Breaks,
		ReleasedAt: now,
	}}
	return nil
}

// Forget removes a peer's record, e.g. after the node left the swarm for
// good; if it comes back it starts from zero. A quarantined peer must be
// released first, so forgetting never lifts a quarantine by accident.
func (l *Ledger) Forget(pub string) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	p := l.peers[pub]
	if p == nil {
		return fmt.Errorf("forget %s: %w", shorten(pub), ErrUnknownPeer)
	}
	if p.rec.State == Quarantined {
		return fmt.Errorf("forget %s: %w: release it first", pub, ErrQuarantined)
	}
	delete(l.peers, pub)
	return nil
}

// Evict removes pub's record whatever its state, and reports whether there
// was one: for keys that left the swarm (removed, revoked, no longer
// registered), which are refused before they reach the ledger, so their
// quarantine no longer matters and their place must not stay taken.
func (l *Ledger) Evict(pub string) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	_, ok := l.peers[pub]
	delete(l.peers, pub)
	return ok
}

// Peer returns a snapshot of the record for pub.
func (l *Ledger) Peer(pub string) (Peer, bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	p := l.peers[pub]
	if p == nil {
		return Peer{}, false
	}
	return l.snapshot(p), true
}

// Peers returns snapshots of every record, ordered by key.
func (l *Ledger) Peers() []Peer {
	l.mu.Lock()
	out := make([]Peer, 0, len(l.peers))
	for _, p := range l.peers {
		out = append(out, l.snapshot(p))
	}
	l.mu.Unlock()
	slices.SortFunc(out, func(a, b Peer) int { return strings.Compare(a.Key, b.Key) })
	return out
}

func (l *Ledger) snapshot(p *peerRec) Peer {
	s := p.rec
	s.cfg = l.cfg
	return s
}

// Score returns pub's trust at now, 0 for an unknown or quarantined peer.
func (l *Ledger) Score(pub string, now time.Time) float64 {
	p, ok := l.Peer(pub)
	if !ok {
		return 0
	}
	return p.Score(now)
}

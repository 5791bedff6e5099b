package federation

import (
	"errors"
	"fmt"
	"slices"
	"sort"
	"sync"
	"time"

	"github.com/nats-io/nkeys"

	"github.com/robonet-mesh/robonet/subjects"
	"github.com/robonet-mesh/robonet/wire"
)

// Why a summary was ignored. Every refusal is counted (DirCounters) and
// none changes the directory.
var (
	ErrSummaryMalformed = errors.New("malformed summary")
	ErrSummarySignature = errors.New("summary signature does not verify")
	ErrSummarySigner    = errors.New("summary not signed by the leader it names")
	ErrSummaryPrefix    = errors.New("summary's leader is not under its prefix")
	ErrSummaryKey       = errors.New("summary's leader key is not the key its chevron is registered with")
	ErrSummaryStale     = errors.New("summary older than the one in view")
)

// maxSwarms bounds the swarms a directory keeps: beyond it the one heard
// longest ago is forgotten first.
const maxSwarms = 4096

// keyPinFor is how long a chevron keeps the leader key first heard for it
// (when no registry says otherwise) after it was last heard: a node
// reinstalled with a new key under the same chevron is believed once the
// durable registry names the new key, or once the old one has been silent
// this long.
const keyPinFor = 5 * time.Minute

// DirCounters count what the directory did with the summaries it received.
type DirCounters struct {
	Accepted     uint64 `json:"accepted"`
	Malformed    uint64 `json:"malformed"`     // undecodable, or a field out of bounds
	BadSignature uint64 `json:"bad_signature"` // unsigned, or the signature does not verify
	WrongSigner  uint64 `json:"wrong_signer"`  // signed by a key other than the leader key it names
	NotUnder     uint64 `json:"not_under"`     // the leader's chevron is not under the summary's prefix
	KeyMismatch  uint64 `json:"key_mismatch"`  // the registry (or an earlier summary) binds the chevron to another key
	Stale        uint64 `json:"stale"`         // older than the summary in view (lower lease token, or sent earlier)
}

func (c *DirCounters) count(err error) {
	switch {
	case err == nil:
		c.Accepted++
	case errors.Is(err, ErrSummarySignature):
		c.BadSignature++
	case errors.Is(err, ErrSummarySigner):
		c.WrongSigner++
	case errors.Is(err, ErrSummaryPrefix):
		c.NotUnder++
	case errors.Is(err, ErrSummaryKey):
		c.KeyMismatch++
	case errors.Is(err, ErrSummaryStale):
		c.Stale++
	default:
		c.Malformed++
	}
}

// Refused is the total of summaries ignored.
func (c DirCounters) Refused() uint64 {
	return c.Malformed + c.BadSignature + c.WrongSigner + c.NotUnder + c.KeyMismatch + c.Stale
}

// swarmRec is one swarm in the book: its latest summary (direct) or the
// entry a summary relayed (via set).
type swarmRec struct {
	st      SwarmState // Link is decided at snapshot time
	hub     bool
	offline []string
	token   uint64    // lease fencing token of the summary in view (direct)
	sent    time.Time // its send time (direct)
	heard   time.Time // when it arrived here (relayed: when the relayer heard it)
	via     string    // "" when heard directly; else the relaying swarm's prefix
	viaDown bool      // the relayer saw it down
}

type keyPin struct {
	key  string
	seen time.Time
}

// book is the directory's state: pure bookkeeping, the time passed in.
type book struct {
	self           subjects.Chevron
	partitionAfter time.Duration
	interval       time.Duration

	mu     sync.Mutex // guards the fields below; never held across I/O
	swarms map[string]*swarmRec
	pins   map[string]keyPin // leader chevron → key first heard (other swarms)
	counts DirCounters
}

func newBook(self subjects.Chevron, partitionAfter, interval time.Duration) *book {
	return &book{self: self, partitionAfter: partitionAfter, interval: interval,
		swarms: map[string]*swarmRec{}, pins: map[string]keyPin{}}
}

// keyCheck says which key chevron is registered with: ok false when the
// checker does not know the chevron.
type keyCheck func(chevron string) (key string, ok bool)

// refuse counts a summary refused before it reached accept (its
// signature, its size).
func (b *book) refuse(err error) {
	b.mu.Lock()
	b.counts.count(err)
	b.mu.Unlock()
}

func (b *book) counters() DirCounters {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.counts
}

// accept takes summary s for swarm prefix p, signed by key signer (the
// signature already verified), arrived at now. The rule for whose summary
// counts for p:
//
//   - s names p as its prefix and p's domain, and its leader is a node
//     chevron under p;
//   - signer is the leader key s names;
//   - for this node's own swarm, the leader is a member this node knows with
//     that key (own); for another swarm, when the durable registry knows the
//     leader's chevron (registry: rn_fed_nodes on a hub), its key is signer;
//     when it does not, the key first heard for that chevron is kept
//     (keyPinFor) and another key is refused;
//   - a summary with a lower lease token than the one in view, or the same
//     token and an earlier send time, is stale while the one in view is
//     fresh.
//
// Leaf permissions add the network's word: a child swarm may publish only
// rn.dir.<its prefix>.>, so a summary for p arrives over p's own link.
func (b *book) accept(p subjects.Chevron, s wire.DirSummary, signer string, own, registry keyCheck, now time.Time) error {
	err := b.accept1(p, s, signer, own, registry, now)
	b.mu.Lock()
	b.counts.count(err)
	b.mu.Unlock()
	return err
}

func (b *book) accept1(p subjects.Chevron, s wire.DirSummary, signer string, own, registry keyCheck, now time.Time) error {
	if err := checkSummary(p, s); err != nil {
		return err
	}
	if signer != s.LeaderKey {
		return fmt.Errorf("%w: %s signed a summary naming %s", ErrSummarySigner, signer, s.LeaderKey)
	}
	leader, _ := subjects.Parse(s.Leader)
	if sw, ok := subjects.SwarmOf(leader); !ok || sw != p {
		return fmt.Errorf("%w: leader %s, prefix %s", ErrSummaryPrefix, s.Leader, p)
	}
	if p == b.self {
		if own == nil {
			return fmt.Errorf("%w: no member list to check %s against", ErrSummaryKey, s.Leader)
		}
		if k, ok := own(s.Leader); !ok || k != signer {
			return fmt.Errorf("%w: %s is not a member of this swarm with key %s", ErrSummaryKey, s.Leader, signer)
		}
	} else if registry != nil {
		if k, ok := registry(s.Leader); ok && k != signer {
			return fmt.Errorf("%w: %s is registered with %s, the summary is signed by %s", ErrSummaryKey, s.Leader, k, signer)
		}
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	if p != b.self {
		if pin, ok := b.pins[s.Leader]; ok && pin.key != signer && now.Sub(pin.seen) < keyPinFor {
			if registry == nil {
				return fmt.Errorf("%w: %s was heard with key %s, now %s", ErrSummaryKey, s.Leader, pin.key, signer)
			}
			if k, ok := registry(s.Leader); !ok || k != signer {
				return fmt.Errorf("%w: %s was heard with key %s, now %s", ErrSummaryKey, s.Leader, pin.key, signer)
			}
		}
		b.pins[s.Leader] = keyPin{key: signer, seen: now}
	}
	key := p.String()
	if old := b.swarms[key]; old != nil && old.via == "" && now.Sub(old.heard) <= b.partitionAfter {
		if s.Token < old.token || (s.Token == old.token && !s.Sent.After(old.sent)) {
			return fmt.Errorf("%w: token %d sent %s, in view token %d sent %s", ErrSummaryStale,
				s.Token, s.Sent.Format(time.RFC3339Nano), old.token, old.sent.Format(time.RFC3339Nano))
		}
	}
	b.put(key, &swarmRec{
		st: SwarmState{Prefix: key, Domain: s.Domain, Parent: s.Parent, Leader: s.Leader, LeaderKey: s.LeaderKey,
			Nodes: s.Nodes, Live: s.Live, Caps: s.Caps, RegistryRev: s.RegistryRev, LastHeard: now,
			LagMs: lagMs(now, s.Sent)},
		hub: s.Hub, offline: s.Offline, token: s.Token, sent: s.Sent, heard: now,
	}, now)
	if p != b.self {
		b.relayLocked(p, s, now)
	}
	return nil
}

// put stores rec under key, forgetting the swarm heard longest ago when the
// book is full. b.mu must be held.
func (b *book) put(key string, rec *swarmRec, now time.Time) {
	if _, ok := b.swarms[key]; !ok && len(b.swarms) >= maxSwarms {
		var oldest string
		for k, r := range b.swarms {
			if oldest == "" || r.heard.Before(b.swarms[oldest].heard) {
				oldest = k
			}
		}
		delete(b.swarms, oldest)
	}
	b.swarms[key] = rec
	for chev, pin := range b.pins {
		if now.Sub(pin.seen) > keyPinFor {
			delete(b.pins, chev)
		}
	}
}

// relayLocked takes the swarms below p that p's summary relays: each must
// be a descendant of p (its parent chain reaches p inside the summary), in
// p's zone, neither this swarm nor p; a swarm heard directly and fresh
// keeps its own word. Entries p relayed before and dropped now are
// forgotten. b.mu must be held.
func (b *book) relayLocked(p subjects.Chevron, s wire.DirSummary, now time.Time) {
	via := p.String()
	parents := map[string]string{}
	for _, e := range s.Swarms {
		parents[e.Prefix] = e.Parent
	}
	keep := map[string]bool{}
	for _, e := range s.Swarms {
		ep, err := subjects.ParseSwarmPrefix(e.Prefix)
		if err != nil || ep == b.self || ep == p || ep.Tokens()[0] != p.Tokens()[0] || checkEntry(ep, e) != nil {
			continue
		}
		if !descends(e.Prefix, via, parents) {
			continue
		}
		if old := b.swarms[e.Prefix]; old != nil && old.via == "" && now.Sub(old.heard) <= b.partitionAfter {
			continue
		}
		heard := now.Add(-time.Duration(min(max(e.HeardMs, 0), int64(time.Hour/time.Millisecond))) * time.Millisecond)
		keep[e.Prefix] = true
		b.put(e.Prefix, &swarmRec{
			st: SwarmState{Prefix: e.Prefix, Domain: e.Domain, Parent: e.Parent, Leader: e.Leader, LeaderKey: e.LeaderKey,
				Nodes: e.Nodes, Live: e.Live, Caps: e.Caps, RegistryRev: e.RegistryRev, LastHeard: heard, LagMs: e.LagMs, Via: via},
			hub: e.Hub, offline: e.Offline, heard: heard, via: via, viaDown: e.Link == LinkDown,
		}, now)
	}
	for k, r := range b.swarms {
		if r.via == via && !keep[k] {
			delete(b.swarms, k)
		}
	}
}

// descends reports whether prefix's parent chain in parents reaches root.
func descends(prefix, root string, parents map[string]string) bool {
	cur := prefix
	for range len(parents) + 1 {
		par, ok := parents[cur]
		if !ok {
			return false
		}
		if par == root {
			return true
		}
		cur = par
	}
	return false
}

// linkOf decides rec's link at now: a direct swarm is up while its last
// summary is at most partitionAfter old; a relayed one while its relayer is
// up, saw it up, and heard it within partitionAfter plus one relay
// interval. b.mu must be held.
func (b *book) linkOfLocked(rec *swarmRec, now time.Time) string {
	age := now.Sub(rec.heard)
	if rec.via == "" {
		if age <= b.partitionAfter {
			return LinkUp
		}
		return LinkDown
	}
	relay := b.swarms[rec.via]
	if relay == nil || rec.viaDown || b.linkOfLocked(relay, now) != LinkUp || age > b.partitionAfter+b.interval {
		return LinkDown
	}
	return LinkUp
}

// snapshot lists every swarm but this node's own, by prefix, with its
// link as of now.
func (b *book) snapshot(now time.Time) []SwarmState {
	b.mu.Lock()
	defer b.mu.Unlock()
	out := make([]SwarmState, 0, len(b.swarms))
	for k, r := range b.swarms {
		if k == b.self.String() {
			continue
		}
		st := r.st
		st.Link = b.linkOfLocked(r, now)
		st.Hub = r.hub
		st.Caps = slices.Clone(st.Caps)
		out = append(out, st)
	}
	sort.Slice(out, func(i, j int) bool { return subjects.CompareText(out[i].Prefix, out[j].Prefix) < 0 })
	return out
}

// own is the latest summary of this node's own swarm and when it arrived.
func (b *book) own() (*swarmRec, bool) {
	b.mu.Lock()
	defer b.mu.Unlock()
	r, ok := b.swarms[b.self.String()]
	if !ok {
		return nil, false
	}
	c := *r
	return &c, true
}

// liveness says how a node of swarm prefix stands: state from the swarm's
// link and offline list, and whether it leads; ok false for a swarm not in
// the book.
func (b *book) liveness(prefix, chevron string, now time.Time) (state string, leader, ok bool) {
	b.mu.Lock()
	defer b.mu.Unlock()
	r := b.swarms[prefix]
	if r == nil {
		return wire.StateUnknown, false, false
	}
	if b.linkOfLocked(r, now) != LinkUp {
		return wire.StatePartitioned, false, true
	}
	if slices.Contains(r.offline, chevron) {
		return wire.StateOffline, false, true
	}
	return wire.StateAlive, r.st.Leader == chevron, true
}

// descendants lists the swarms below this one as this book knows them, for
// the summary this swarm's leader relays upward: every swarm whose parent
// chain reaches this swarm, in prefix order, at most wire.MaxDirSwarms.
func (b *book) descendants(now time.Time) []wire.DirEntry {
	b.mu.Lock()
	defer b.mu.Unlock()
	self := b.self.String()
	parents := map[string]string{}
	for k, r := range b.swarms {
		if k != self {
			parents[k] = r.st.Parent
		}
	}
	var out []wire.DirEntry
	for k, r := range b.swarms {
		if k == self || !descends(k, self, parents) {
			continue
		}
		out = append(out, wire.DirEntry{
			Prefix: k, Domain: r.st.Domain, Parent: r.st.Parent, Hub: r.hub, Leader: r.st.Leader, LeaderKey: r.st.LeaderKey,
			Nodes: r.st.Nodes, Live: r.st.Live, Offline: r.offline, Caps: r.st.Caps, RegistryRev: r.st.RegistryRev,
			Link: b.linkOfLocked(r, now), HeardMs: max(now.Sub(r.heard), 0).Milliseconds(), LagMs: r.st.LagMs,
		})
	}
	sort.Slice(out, func(i, j int) bool { return subjects.CompareText(out[i].Prefix, out[j].Prefix) < 0 })
	if len(out) > wire.MaxDirSwarms {
		out = out[:wire.MaxDirSwarms]
	}
	return out
}

// lagMs is how old a summary sent at sent was at now, in milliseconds; 0
// when the sender's clock is ahead.
func lagMs(now, sent time.Time) float64 {
	return float64(max(now.Sub(sent), 0).Microseconds()) / 1000
}

// checkSummary validates a summary for prefix p: every field in bounds.
func checkSummary(p subjects.Chevron, s wire.DirSummary) error {
	bad := func(format string, a ...any) error {
		return fmt.Errorf("%w for %s: %s", ErrSummaryMalformed, p, fmt.Sprintf(format, a...))
	}
	if s.Prefix != p.String() {
		return bad("prefix %q on the subject of %s", clip(s.Prefix), p)
	}
	if _, err := subjects.Parse(s.Leader); err != nil {
		return bad("leader: %v", err)
	}
	if s.Token == 0 {
		return bad("lease token 0")
	}
	if s.Sent.IsZero() {
		return bad("no send time")
	}
	if len(s.Swarms) > wire.MaxDirSwarms {
		return bad("%d relayed swarms (limit %d)", len(s.Swarms), wire.MaxDirSwarms)
	}
	if err := checkNodeKey(s.LeaderKey); err != nil {
		return bad("leader key: %v", err)
	}
	// Whether the leader is under p is the rule's (ErrSummaryPrefix), not
	// the shape's.
	return checkEntry(p, wire.DirEntry{Prefix: s.Prefix, Domain: s.Domain, Parent: s.Parent,
		Nodes: s.Nodes, Live: s.Live, Offline: s.Offline, Caps: s.Caps, Link: LinkUp})
}

// checkEntry validates what a summary says of swarm p (its own fields, or a
// relayed entry's).
func checkEntry(p subjects.Chevron, e wire.DirEntry) error {
	bad := func(format string, a ...any) error {
		return fmt.Errorf("%w for %s: %s", ErrSummaryMalformed, p, fmt.Sprintf(format, a...))
	}
	if dom, _ := subjects.SwarmDomain(p); e.Domain != dom {
		return bad("domain %q, want %s", clip(e.Domain), dom)
	}
	if e.Parent != "" {
		pp, err := subjects.ParseSwarmPrefix(e.Parent)
		if err != nil || pp == p {
			return bad("parent %q", clip(e.Parent))
		}
	}
	if e.Leader != "" {
		c, err := subjects.Parse(e.Leader)
		if sw, ok := subjects.SwarmOf(c); err != nil || !ok || sw != p {
			return bad("leader %q is not a node under %s", clip(e.Leader), p)
		}
		if err := checkNodeKey(e.LeaderKey); err != nil {
			return bad("leader key: %v", err)
		}
	}
	if e.Nodes < 0 || e.Live < 0 || e.Live > e.Nodes || e.Nodes > 1<<20 {
		return bad("counts live %d of %d", e.Live, e.Nodes)
	}
	if len(e.Offline) > wire.MaxDirOffline || len(e.Offline) > e.Nodes {
		return bad("%d offline of %d", len(e.Offline), e.Nodes)
	}
	for _, o := range e.Offline {
		c, err := subjects.Parse(o)
		if sw, ok := subjects.SwarmOf(c); err != nil || !ok || sw != p {
			return bad("offline %q is not a node under %s", clip(o), p)
		}
	}
	if len(e.Caps) > wire.MaxDirCaps {
		return bad("%d caps (limit %d)", len(e.Caps), wire.MaxDirCaps)
	}
	for _, c := range e.Caps {
		if err := subjects.ValidToken(c); err != nil {
			return bad("cap: %v", err)
		}
	}
	if e.Link != LinkUp && e.Link != LinkDown {
		return bad("link %q", clip(e.Link))
	}
	if e.LagMs < 0 || e.LagMs > 1e9 {
		return bad("lag %v", e.LagMs)
	}
	return nil
}

// checkNodeKey checks a node's public key (robonet node keys are nkey
// user keys).
func checkNodeKey(k string) error {
	if !nkeys.IsValidPublicUserKey(k) {
		return fmt.Errorf("%q is not a node key", clip(k))
	}
	return nil
}

package node

import (
	"sort"
	"sync"
	"time"

	"github.com/robonet-mesh/robonet/subjects"
	"github.com/robonet-mesh/robonet/wire"
)

// registry is the node's in-memory view of the swarm: declarations from the
// rn_nodes watch, liveness from heartbeats, leaves and the server's routes.
// It is pure bookkeeping: callers pass the time in.
type registry struct {
	timing    Timing
	clustered bool

	mu sync.Mutex // guards the fields below; never held across I/O
	// infos are the declarations, by chevron.
	infos map[string]wire.NodeInfo
	// live is the last heartbeat from each chevron and when it arrived.
	live map[string]*liveEntry
	// routed is the set of servers this node has a route to; lostAt records
	// when a route went away.
	routed map[string]bool
	lostAt map[string]time.Time
	// lease is the newest lease seen (by token), from the rn_leader watch or
	// from leader events; leaseOK is false once it was released or lost.
	lease   wire.Lease
	leaseOK bool
	// leaseTerms counts the times the token rose: new terms seen (Stats).
	leaseTerms uint64
	self       *wire.Heartbeat
	// views are the other members' latest judgements of the node keys, by
	// the reporting chevron (see tierOf).
	views map[string]tierView
	// judge is this node's own word on a key; nil gives every member tier 0.
	judge func(pub string) judgement
}

type tierView struct {
	pub   string         // the reporter's key, as verified
	tiers map[string]int // node key -> tier
	recv  time.Time
}

// judgement is what this node's own ledger says of a key.
type judgement struct {
	tier   int  // the tier its chain has earned here
	vote   bool // false for this node's own key: nobody judges itself
	banned bool // quarantined or revoked here: tier 0, whatever others say
}

type liveEntry struct {
	hb     wire.Heartbeat
	recv   time.Time
	leftAt time.Time // a leave event after the last heartbeat
}

func newRegistry(t Timing, clustered bool) *registry {
	return &registry{
		timing: t, clustered: clustered,
		infos: map[string]wire.NodeInfo{}, live: map[string]*liveEntry{},
		routed: map[string]bool{}, lostAt: map[string]time.Time{},
		views: map[string]tierView{},
	}
}

// setJudge installs this node's judgement of keys, used for Member.Tier.
func (r *registry) setJudge(f func(pub string) judgement) {
	r.mu.Lock()
	r.judge = f
	r.mu.Unlock()
}

// onTierView records a member's judgement of the others (already verified
// as signed by pub, the key holding chev).
func (r *registry) onTierView(chev, pub string, tiers map[string]int, now time.Time) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.views[chev] = tierView{pub: pub, tiers: tiers, recv: now}
}

func (r *registry) onHeartbeat(hb wire.Heartbeat, now time.Time) {
	r.mu.Lock()
	defer r.mu.Unlock()
	e := r.live[hb.Chevron]
	if e != nil && e.hb.Pubkey == hb.Pubkey && e.hb.Started.Equal(hb.Started) && hb.Seq <= e.hb.Seq {
		return // late or duplicate
	}
	if e != nil {
		*e = liveEntry{hb: hb, recv: now} // entries never leave r.mu: reuse it
		return
	}
	r.live[hb.Chevron] = &liveEntry{hb: hb, recv: now}
}

func (r *registry) setSelf(hb wire.Heartbeat) {
	r.mu.Lock()
	r.self = &hb
	r.mu.Unlock()
}

func (r *registry) selfBeat() *wire.Heartbeat {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.self
}

// onLeave records a leave of chev at now. A leave reported by another
// member (a crash it saw) is ignored while this node heard chev itself
// within fresh: its own evidence of life outranks a report that may be
// old, or come from a member that was cut off and judged everyone else
// gone (the chaos suite saw a healed member's reports knock live members
// offline for half a second). It reports whether the leave was applied.
func (r *registry) onLeave(chev string, now time.Time, reported bool, fresh time.Duration) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	e := r.live[chev]
	if e == nil {
		return false
	}
	if reported && now.Sub(e.recv) < fresh {
		return false
	}
	e.leftAt = now
	return true
}

func (r *registry) setInfo(chev string, info *wire.NodeInfo) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if info == nil {
		delete(r.infos, chev)
		return
	}
	r.infos[chev] = *info
}

// routedUnregistered reports whether a server this node routes to has no
// registration yet.
func (r *registry) routedUnregistered() bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	have := make(map[string]bool, len(r.infos))
	for _, in := range r.infos {
		have[serverName(in.Pubkey)] = true
	}
	for s := range r.routed {
		if !have[s] {
			return true
		}
	}
	return false
}

func (r *registry) setRoutes(servers map[string]bool, now time.Time) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for s := range r.routed {
		if !servers[s] {
			r.lostAt[s] = now
		}
	}
	for s := range servers {
		delete(r.lostAt, s)
	}
	r.routed = servers
}

// observeLease records news of the lease. Tokens only grow, so older news
// (a lagging watch after a faster event, or the reverse) is ignored: a holder
// with a higher token replaces the view, and an end (ok false) clears it only
// if it ends the token in view. An end with token 0 (a deletion seen on the
// watch) ends whatever is in view.
func (r *registry) observeLease(l wire.Lease, ok bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	switch {
	case ok && l.Token >= r.lease.Token:
		if l.Token > r.lease.Token {
			r.leaseTerms++
		}
		r.lease, r.leaseOK = l, true
	case !ok && (l.Token == 0 || l.Token == r.lease.Token):
		r.leaseOK = false
	}
}

func (r *registry) currentLease() (wire.Lease, bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.lease, r.leaseOK
}

// stateLocked judges a member other than self.
func (r *registry) stateLocked(chev string, now time.Time) string {
	return r.entryState(r.live[chev], now)
}

// entryState is stateLocked of a member's live entry (nil: none), for
// loops over r.live that hold it already.
func (r *registry) entryState(e *liveEntry, now time.Time) string {
	if e == nil {
		return wire.StateOffline
	}
	if !e.leftAt.IsZero() {
		return wire.StateOffline
	}
	// Route loss is the fast path: a crashed process's sockets are closed by
	// its kernel, and a peer we have no route to cannot hear us anyway.
	if lost, ok := r.lostAt[e.hb.Server]; ok && r.clustered && !e.recv.After(lost) {
		return wire.StateOffline
	}
	age := now.Sub(e.recv)
	suspect, offline := r.timing.SuspectAfter, r.timing.OfflineAfter
	if every := time.Duration(e.hb.EveryMs) * time.Millisecond; every > r.timing.Heartbeat {
		// A sender that beats less often (an edge) is judged against its
		// own interval: 1.6× suspect, 2.6× offline, as DefaultTiming is.
		suspect, offline = every*16/10, every*26/10
	}
	switch {
	case age > offline:
		return wire.StateOffline
	case age > suspect:
		return wire.StateSuspect
	}
	return wire.StateAlive
}

// edgeByServer finds the edge whose server is s, if no heartbeat of it
// arrived after since and it has not left yet.
func (r *registry) edgeByServer(s string, since time.Time) (chev, name, pub string, ok bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for c, e := range r.live {
		if e.hb.Server == s && e.hb.Role == wire.NodeRoleEdge && e.leftAt.IsZero() && !e.recv.After(since) {
			return c, e.hb.Name, e.hb.Pubkey, true
		}
	}
	return "", "", "", false
}

// coreMembers lists the core nodes known by declaration or by heartbeat
// (role core, a server name), each with its state; unordered, without the
// tiers members judges: CoreStatus asks it on every status query, and a
// registry of thousands of edges should not cost that query a judgement of
// each.
func (r *registry) coreMembers(now time.Time) []wire.Member {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []wire.Member
	add := func(chev string, m wire.Member) {
		if m.Role == wire.NodeRoleEdge || m.Server == "" {
			return
		}
		m.Chevron, m.State = chev, r.stateLocked(chev, now)
		out = append(out, m)
	}
	for chev, info := range r.infos {
		m := wire.Member{Name: info.Name, Pubkey: info.Pubkey, Server: info.Server, Role: info.Role}
		if e := r.live[chev]; e != nil && e.hb.Pubkey == info.Pubkey && e.hb.Role != "" {
			m.Role, m.Server = e.hb.Role, e.hb.Server
		}
		add(chev, m)
	}
	for chev, e := range r.live {
		if _, declared := r.infos[chev]; !declared {
			add(chev, wire.Member{Name: e.hb.Name, Pubkey: e.hb.Pubkey, Server: e.hb.Server, Role: e.hb.Role})
		}
	}
	return out
}

// members lists every node known by declaration or by heartbeat, self
// included, in chevron order, each with its tier (tierOf).
func (r *registry) members(now time.Time, self wire.Member) []wire.Member {
	out, views, judge := r.membersAndViews(now, self)
	if judge == nil {
		return out
	}
	// The judge reads the ledger and the identities: called without r.mu.
	words := map[string]judgement{}
	word := func(pub string) judgement {
		j, ok := words[pub]
		if !ok {
			j = judge(pub)
			words[pub] = j
		}
		return j
	}
	for i := range out {
		out[i].Tier = tierOf(out[i].Pubkey, word, views)
	}
	return out
}

// viewMaxAge is how old a member's TierView may be and still count: three
// of the 2 s publications (monitorLoop) and some slack.
const viewMaxAge = 7 * time.Second

// tierOf is the tier the swarm gives node key pub (Member.Tier):
//
//   - 0 when this node has pub quarantined or revoked: a proven fork
//     quarantines a key on every member that verifies the proof (onTrustEvent),
//     so a broken chain shows as tier 0 at once, whoever answers;
//   - else the lower median of the votes: this node's own ledger's tier for
//     pub (not when pub is this node's own key) and each live member's latest
//     view of pub (not pub's view of itself, not a view from a key this node
//     banned); one member alone can neither raise nor sink a key when three or
//     more judge it, and with two the lower word counts;
//   - 0 when nobody has judged pub yet (a new key starts at 0).
//
// views holds only live, fresh views (membersAndViews).
func tierOf(pub string, word func(string) judgement, views []tierView) int {
	if pub == "" {
		return 0
	}
	own := word(pub)
	if own.banned {
		return 0
	}
	var votes []int
	if own.vote {
		votes = append(votes, own.tier)
	}
	for _, v := range views {
		t, ok := v.tiers[pub]
		if !ok || v.pub == pub || word(v.pub).banned {
			continue
		}
		votes = append(votes, min(max(t, 0), 3))
	}
	if len(votes) == 0 {
		return 0
	}
	sort.Ints(votes)
	return votes[(len(votes)-1)/2]
}

// membersAndViews is members without tiers, the views that count now
// (from members not offline, at most viewMaxAge old), and the judge.
func (r *registry) membersAndViews(now time.Time, self wire.Member) ([]wire.Member, []tierView, func(string) judgement) {
	r.mu.Lock()
	defer r.mu.Unlock()
	var views []tierView
	for chev, v := range r.views {
		if now.Sub(v.recv) <= viewMaxAge && chev != self.Chevron && r.stateLocked(chev, now) != wire.StateOffline {
			views = append(views, v)
		}
	}
	seen := map[string]bool{self.Chevron: true}
	out := []wire.Member{self}
	add := func(chev string) {
		if seen[chev] {
			return
		}
		seen[chev] = true
		m := wire.Member{Chevron: chev, State: r.stateLocked(chev, now)}
		if info, ok := r.infos[chev]; ok {
			m.Name, m.Pubkey, m.Server = info.Name, info.Pubkey, info.Server
			m.Caps, m.Tags, m.Version, m.Started = info.Caps, info.Tags, info.Version, info.Started
			m.OS, m.Arch, m.Client = info.OS, info.Arch, info.Endpoints.Client
			m.Role = info.Role
		}
		if e := r.live[chev]; e != nil {
			m.Load, m.LastSeen, m.SecretEpoch, m.UsersRev = e.hb.Load, e.hb.Sent, e.hb.SecretEpoch, e.hb.UsersRev
			// The heartbeat is fresher than a declaration read through a KV
			// watch (which lags for seconds when its consumer's server dies).
			if m.Name == "" || m.Pubkey == e.hb.Pubkey {
				m.Name, m.Pubkey, m.Server, m.Version, m.Started = e.hb.Name, e.hb.Pubkey, e.hb.Server, e.hb.Version, e.hb.Started
				if e.hb.Role != "" {
					m.Role = e.hb.Role
				}
			}
		}
		m.Leader = r.leaseOK && r.lease.Chevron == chev && m.State != wire.StateOffline
		out = append(out, m)
	}
	for chev := range r.infos {
		add(chev)
	}
	for chev, e := range r.live {
		// A node that left cleanly and removed its declaration is gone.
		if _, declared := r.infos[chev]; !declared && r.entryState(e, now) == wire.StateOffline && !e.leftAt.IsZero() {
			continue
		}
		add(chev)
	}
	sort.Slice(out, func(i, j int) bool { return subjects.CompareText(out[i].Chevron, out[j].Chevron) < 0 })
	return out, views, r.judge
}

// states snapshots every other member's state, for transition detection.
func (r *registry) states(now time.Time, self string) map[string]string {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := make(map[string]string, len(r.live))
	for chev, e := range r.live {
		if chev != self {
			out[chev] = r.entryState(e, now)
		}
	}
	return out
}

// heardAlive is the set of chevrons other keys are heartbeating now.
func (r *registry) heardAlive(now time.Time, self string) map[string]bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := map[string]bool{}
	for chev, e := range r.live {
		if e.hb.Pubkey != self && r.entryState(e, now) != wire.StateOffline {
			out[chev] = true
		}
	}
	return out
}

// aliveServers is the set of server names of members alive now.
func (r *registry) aliveServers(now time.Time) map[string]bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := map[string]bool{}
	for _, e := range r.live {
		if r.entryState(e, now) == wire.StateAlive {
			out[e.hb.Server] = true
		}
	}
	return out
}

// leftCleanly reports whether chev announced its own leave after its last
// heartbeat (so nobody needs to report it lost).
func (r *registry) leftCleanly(chev string) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	e := r.live[chev]
	return e != nil && !e.leftAt.IsZero()
}

// reporter reports whether self should announce members lost: the lowest
// live chevron in its view. It depends on heartbeats only, not on the lease:
// a leader that cannot renew (its lease stream electing a leader for seconds)
// must not leave a crash unreported. Views can differ for a moment, so a
// loss may be announced twice; leave events are idempotent.
func (r *registry) reporter(now time.Time, self string) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	for chev, e := range r.live {
		if chev != self && e.hb.Role != wire.NodeRoleEdge && r.entryState(e, now) == wire.StateAlive && subjects.CompareText(chev, self) < 0 {
			return false
		}
	}
	return true
}

// forget drops liveness for nodes gone long enough that nobody needs their
// last heartbeat; declarations stay until deleted from rn_nodes.
func (r *registry) forget(now time.Time, after time.Duration) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for chev, e := range r.live {
		if now.Sub(e.recv) > after {
			if _, declared := r.infos[chev]; !declared {
				delete(r.live, chev)
			}
		}
	}
	for s, at := range r.lostAt {
		if now.Sub(at) > after {
			delete(r.lostAt, s)
		}
	}
	for chev, v := range r.views {
		if now.Sub(v.recv) > viewMaxAge {
			delete(r.views, chev)
		}
	}
}

package node

import (
	"errors"
	"sort"
	"sync/atomic"
	"time"

	"github.com/robonet-mesh/robonet/command"
	"github.com/robonet-mesh/robonet/sentinel"
	"github.com/robonet-mesh/robonet/trust"
	"github.com/robonet-mesh/robonet/wire"
)

// Stats is a snapshot of what a node counted since it started and what it
// sees now, for monitoring (the gateway's /metrics). Counters only grow;
// a restart starts them again at zero. Every label value in it comes from
// a fixed set (catalogue verbs, statuses, reasons, levels, states, roles),
// never from what a peer or caller sent, so a scrape stays bounded.
type Stats struct {
	// Nodes counts the members of this node's live view (itself included)
	// by state and role: every StatsStates × StatsRoles pair, zeros
	// included, plus "unknown" for a state or role outside them.
	Nodes []NodeCount
	// Commands counts the commands this node's host answered or dropped,
	// by verb and status: every catalogue verb (and VerbOther) with every
	// CommandStatuses status, zeros included.
	Commands []CommandCount
	// Latency holds, per verb (the same verbs as Commands), how long the
	// commands that ran took: from the start of their admission to their
	// reply sent, an approval's check included. Refused and dropped
	// commands are not in it.
	Latency []LatencyHistogram
	// HCTH counts the signed messages this node checked.
	HCTH HCTHStats
	// Trust is the trust layer's refusal counters (what `robonet trust`
	// shows).
	Trust TrustCounters
	// Alerts counts the Sentinel alerts this node raised (published on
	// evt.alert), by level: every SentinelLevels level, zeros included.
	Alerts []LevelCount
	// LeaseChanges counts the new swarm-leader lease terms this node saw:
	// the fencing token rose, so a node acquired the lease (the first
	// lease seen after start counts).
	LeaseChanges uint64
	// LeaseHolder is true while this node holds the lease.
	LeaseHolder bool
	// JetStreamOK, Replicas and Behind are Status's: JetStream current
	// (on an edge: its core link up), the lowest replica count over the
	// swarm's buckets, the buckets replicated below target.
	JetStreamOK bool
	Replicas    int
	Behind      []string
}

// NodeCount is how many members are in one state with one role.
type NodeCount struct {
	State string
	Role  string
	Count int
}

// CommandCount is how many commands of one verb ended with one status.
type CommandCount struct {
	Verb   string
	Status string
	Count  uint64
}

// LatencyHistogram is a cumulative histogram of one verb's command
// durations: Counts[i] is how many took at most Bounds[i]; Count is every
// observation (those above the last bound included), Sum their total.
type LatencyHistogram struct {
	Verb   string
	Bounds []time.Duration
	Counts []uint64
	Count  uint64
	Sum    time.Duration
}

// HCTHStats counts HCTH checks. Verified is every signed message the
// ledger judged (commands, queries, heartbeats, events) plus the
// refusals before it (unsigned, bad headers, unknown key); Failures is
// the refused ones by reason (HCTHReasons), so their sum is at most
// Verified.
type HCTHStats struct {
	Verified uint64
	Failures []ReasonCount
}

// ReasonCount is a count for one reason.
type ReasonCount struct {
	Reason string
	Count  uint64
}

// LevelCount is a count for one Sentinel level.
type LevelCount struct {
	Level string
	Count uint64
}

// VerbOther is the verb label of a command whose verb is not in the
// catalogue: callers choose verbs, so they never become labels.
const VerbOther = "other"

// Command statuses in Stats. Ok, error and denied are the reply's status;
// timeout is an error with code timeout, busy a command refused because
// its caller or the node had no free slot, dropped a replay not answered.
const (
	StatOK      = "ok"
	StatError   = "error"
	StatDenied  = "denied"
	StatTimeout = "timeout"
	StatBusy    = "busy"
	StatDropped = "dropped"
)

// CommandStatuses lists the statuses Stats counts commands by.
func CommandStatuses() []string {
	return []string{StatOK, StatError, StatDenied, StatTimeout, StatBusy, StatDropped}
}

const numStatuses = 6

func statIndex(s string) int {
	switch s {
	case StatOK:
		return 0
	case StatDenied:
		return 2
	case StatTimeout:
		return 3
	case StatBusy:
		return 4
	case StatDropped:
		return 5
	}
	return 1
}

// commandStat is the Stats status of a result; refused is true when the
// host answered without running the verb.
func commandStat(res wire.Result, refused bool) string {
	switch {
	case res.Status == wire.StatusOK:
		return StatOK
	case res.Status == wire.StatusDenied:
		return StatDenied
	case res.Error != nil && res.Error.Code == wire.CodeTimeout:
		return StatTimeout
	case refused && res.Error != nil && res.Error.Code == wire.CodeUnavailable:
		return StatBusy // only takeSlots refuses with unavailable
	}
	return StatError
}

// latencyBounds are the command-latency histogram's upper bounds: from a
// ping (about a millisecond) to a long exec.
func latencyBounds() [numBounds]time.Duration {
	return [numBounds]time.Duration{
		time.Millisecond, 2500 * time.Microsecond, 5 * time.Millisecond, 10 * time.Millisecond,
		25 * time.Millisecond, 50 * time.Millisecond, 100 * time.Millisecond, 250 * time.Millisecond,
		500 * time.Millisecond, time.Second, 2500 * time.Millisecond, 5 * time.Second,
		10 * time.Second, 30 * time.Second, time.Minute, 5 * time.Minute,
	}
}

const numBounds = 16

// cmdStats counts a command host's commands. verbs and names are fixed
// at construction (the catalogue does not change), so only the atomics
// are written afterwards.
type cmdStats struct {
	verbs  map[string]int // verb → index; VerbOther is len(verbs)
	names  []string       // index → verb
	counts [][numStatuses]atomic.Uint64
	lat    []latencyCounts
}

type latencyCounts struct {
	buckets [numBounds + 1]atomic.Uint64 // per bound, not cumulative; the last is above every bound
	sumNs   atomic.Int64
}

func newCmdStats(cat *command.Catalogue) *cmdStats {
	s := &cmdStats{verbs: map[string]int{}}
	if cat != nil {
		for _, sp := range cat.List() {
			if sp.Name == VerbOther {
				continue
			}
			s.verbs[sp.Name] = len(s.names)
			s.names = append(s.names, sp.Name)
		}
	}
	s.names = append(s.names, VerbOther)
	s.counts = make([][numStatuses]atomic.Uint64, len(s.names))
	s.lat = make([]latencyCounts, len(s.names))
	return s
}

func (s *cmdStats) verb(v string) int {
	if i, ok := s.verbs[v]; ok {
		return i
	}
	return len(s.names) - 1
}

// count counts one command of verb that ended with status (a Stat*).
func (s *cmdStats) count(verb, status string) {
	s.counts[s.verb(verb)][statIndex(status)].Add(1)
}

// ran counts a command that ran and took d.
func (s *cmdStats) ran(verb string, res wire.Result, d time.Duration) {
	i := s.verb(verb)
	s.counts[i][statIndex(commandStat(res, false))].Add(1)
	b, bounds := 0, latencyBounds()
	for b < numBounds && d > bounds[b] {
		b++
	}
	s.lat[i].buckets[b].Add(1)
	s.lat[i].sumNs.Add(int64(max(d, 0)))
}

func (s *cmdStats) snapshot() ([]CommandCount, []LatencyHistogram) {
	statuses := CommandStatuses()
	bounds := latencyBounds()
	var cc []CommandCount
	var lh []LatencyHistogram
	for i, v := range s.names {
		for _, st := range statuses {
			cc = append(cc, CommandCount{Verb: v, Status: st, Count: s.counts[i][statIndex(st)].Load()})
		}
		h := LatencyHistogram{Verb: v, Bounds: bounds[:], Counts: make([]uint64, numBounds)}
		// Count is the sum of the buckets read, so the cumulative counts
		// never exceed it even while commands finish during the read.
		for b := range numBounds + 1 {
			h.Count += s.lat[i].buckets[b].Load()
			if b < numBounds {
				h.Counts[b] = h.Count
			}
		}
		h.Sum = time.Duration(s.lat[i].sumNs.Load())
		lh = append(lh, h)
	}
	return cc, lh
}

// HCTH failure reasons. The first three are refusals before the ledger;
// the rest are the ledger's verdicts.
const (
	ReasonUnsigned     = "unsigned"      // a command or query without HCTH headers
	ReasonBadHeaders   = "bad_headers"   // malformed or oversized headers
	ReasonUnknownKey   = "unknown_key"   // a key the swarm does not know, revoked, or with a delegation that does not hold
	ReasonBadSignature = "bad_signature" // a signature over other bytes
	ReasonReplay       = "replay"        // a message already accepted, dropped
	ReasonChainBreak   = "chain_break"   // a fork or a break: the key is quarantined
	ReasonStale        = "stale"         // a sequence too far behind the key's chain head
	ReasonQuarantined  = "quarantined"   // from a key quarantined here
	ReasonOther        = "other"         // any other refusal (a malformed chain position)
)

// HCTHReasons lists the reasons Stats counts HCTH failures by.
func HCTHReasons() []string {
	return []string{ReasonUnsigned, ReasonBadHeaders, ReasonUnknownKey, ReasonBadSignature, ReasonReplay,
		ReasonChainBreak, ReasonStale, ReasonQuarantined, ReasonOther}
}

// numLevels is len(SentinelLevels()).
const numLevels = 4

// SentinelLevels lists the levels Stats counts Sentinel alerts by.
func SentinelLevels() []string {
	return []string{string(sentinel.OK), string(sentinel.Alert), string(sentinel.Quarantine), string(sentinel.Disconnect)}
}

// nodeStats are the node's own counters beside trustCounters (hcth.go).
type nodeStats struct {
	accepted, badSig, replay, breaks, stale, quarantined, other atomic.Uint64            // ledger verdicts
	alerts                                                      [numLevels]atomic.Uint64 // by SentinelLevels
}

// ledgerVerdict counts one message the ledger judged.
func (s *nodeStats) ledgerVerdict(v trust.Verdict, err error) {
	switch {
	case v == trust.Accept:
		s.accepted.Add(1)
	case v == trust.Replay:
		s.replay.Add(1)
	case v == trust.Break:
		s.breaks.Add(1)
	case errors.Is(err, trust.ErrBadSignature):
		s.badSig.Add(1)
	case errors.Is(err, trust.ErrStale):
		s.stale.Add(1)
	case errors.Is(err, trust.ErrQuarantined):
		s.quarantined.Add(1)
	default:
		s.other.Add(1)
	}
}

// alert counts one alert this node's Sentinel raised at level.
func (s *nodeStats) alert(level string) {
	for i, l := range SentinelLevels() {
		if l == level {
			s.alerts[i].Add(1)
			return
		}
	}
}

// hcth is the HCTH part of Stats, the trust counters' refusals before the
// ledger included.
func (s *nodeStats) hcth(tc TrustCounters) HCTHStats {
	fail := []ReasonCount{
		{ReasonUnsigned, tc.Unsigned}, {ReasonBadHeaders, tc.BadHeaders}, {ReasonUnknownKey, tc.UnknownKey},
		{ReasonBadSignature, s.badSig.Load()}, {ReasonReplay, s.replay.Load()}, {ReasonChainBreak, s.breaks.Load()},
		{ReasonStale, s.stale.Load()}, {ReasonQuarantined, s.quarantined.Load()}, {ReasonOther, s.other.Load()},
	}
	h := HCTHStats{Verified: s.accepted.Load(), Failures: fail}
	for _, f := range fail {
		h.Verified += f.Count
	}
	return h
}

// Stats returns a snapshot of the node's counters and of what it sees now
// (members, lease, JetStream). It does no I/O on a core member; on an edge
// the member list comes from the core, cached for half a second. Call it
// once Start has returned.
func (n *Node) Stats() Stats {
	tc := n.tc.snapshot()
	st := Stats{Trust: tc, HCTH: n.st.hcth(tc), LeaseChanges: n.reg.leaseChanges(), LeaseHolder: n.IsLeader()}
	if n.cmds != nil {
		st.Commands, st.Latency = n.cmds.stats.snapshot()
	}
	for i, l := range SentinelLevels() {
		st.Alerts = append(st.Alerts, LevelCount{Level: l, Count: n.st.alerts[i].Load()})
	}
	st.JetStreamOK, st.Replicas, st.Behind = n.jetStreamHealth()
	var ms []wire.Member
	if n.edge {
		ms = n.edgeMembers()
	} else {
		// Without the tier judging Members adds: states and roles only.
		ms, _, _ = n.reg.membersAndViews(time.Now(), n.self())
	}
	st.Nodes = countNodes(ms)
	return st
}

// StatsStates and StatsRoles are the member states and roles Stats
// counts nodes by.
func StatsStates() []string {
	return []string{wire.StateAlive, wire.StateSuspect, wire.StateOffline, wire.StateLeaving}
}

// StatsRoles: see StatsStates.
func StatsRoles() []string { return []string{wire.NodeRoleCore, wire.NodeRoleEdge} }

const statsUnknown = "unknown"

func countNodes(ms []wire.Member) []NodeCount {
	type key struct{ state, role string }
	counts := map[key]int{}
	for _, s := range StatsStates() {
		for _, r := range StatsRoles() {
			counts[key{s, r}] = 0
		}
	}
	known := func(v string, set []string) string {
		for _, s := range set {
			if v == s {
				return v
			}
		}
		return statsUnknown
	}
	for _, m := range ms {
		counts[key{known(m.State, StatsStates()), known(m.Role, StatsRoles())}]++
	}
	out := make([]NodeCount, 0, len(counts))
	for k, c := range counts {
		out = append(out, NodeCount{State: k.state, Role: k.role, Count: c})
	}
	sort.Slice(out, func(i, j int) bool {
		if out[i].State != out[j].State {
			return out[i].State < out[j].State
		}
		return out[i].Role < out[j].Role
	})
	return out
}

// jetStreamHealth is Status's JetStream part: current (on an edge, its
// core link up), the lowest bucket replica count, the buckets behind.
func (n *Node) jetStreamHealth() (ok bool, replicas int, behind []string) {
	if n.edge {
		link, _ := n.coreLink()
		ok = link != ""
	} else {
		ok = n.srv.JetStreamIsCurrent() || !n.Clustered()
	}
	replicas, behind = n.kvs.rep.summary()
	return ok, replicas, behind
}

// leaseChanges is how many new lease terms the registry saw.
func (r *registry) leaseChanges() uint64 {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.leaseTerms
}

package sentinel

import (
	"fmt"
	"math"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// Sentinel keeps per-peer behavioural baselines, scores each closed window
// against them and escalates peers. It is safe for concurrent use, and its
// memory is bounded by Config.MaxPeers. Observation methods are cheap enough
// to call for every received message: in steady state they allocate
// nothing; only a new peer, a peer's new verb and a signal's first value do.
type Sentinel struct {
	cfg     Config
	winMs   int64
	sliceMs int64 // a tenth of winMs: rates drop the two busiest slices
	hbMs    float64
	quietMs int64
	agreeMs int64
	agreeN  int // reporters remembered per peer
	floors  [numSignals]float64

	// Lock order: mu, then a peer's mu. mu guards the map, not the records;
	// nothing takes mu while holding a peer's mu.
	mu    sync.RWMutex
	peers map[string]*peer

	refused atomic.Uint64
	invalid atomic.Uint64

	observers atomic.Int64    // nodes watching a peer, this one included (SetObservers)
	busy      [4]atomic.Int64 // window index+1 of recent windows in which this node was busy, slot k%4
}

// peer is one peer's record. Times are Unix milliseconds.
type peer struct {
	mu sync.Mutex // guards every field below

	name string
	gone bool // forgotten; a holder of a stale pointer must not use it

	// The current window.
	win       int64 // index: floor(ms / Window)
	active    bool  // something was observed in it
	msgs      counter
	cmds      counter
	verbCount [numBuckets]uint32
	lat       samples    // reply latencies, ms (across windows)
	hb        samples    // |heartbeat interval − Heartbeat|, ms (across windows)
	gauge     [3]samples // cpu, mem, disk (across windows)
	lastHB    int64
	hasHB     bool
	closed    uint64 // windows closed

	// The verb-mix baseline: bucket i is verbs[i], bucket other the rest.
	verbs       []string
	base        [numBuckets]float32
	baseSum     float64
	mixTop      int     // bucket that moved the latest mix most
	mixTopShare float64 // its share of that window's commands
	mixTopBase  float64 // its share of the baseline then

	sig [numSignals]series

	// Escalation.
	level      level
	levelSince int64
	evaluated  bool
	lastEval   int64 // index of the latest evaluated (closed, active) window
	streak     int   // consecutive evaluated windows anomalous in a behaviour signal
	hasHot     bool
	lastHot    int64 // end of the latest anomalous window
	lastBehav  int64 // end of the latest window anomalous in a behaviour signal
	hotSig     int   // its highest-scoring signal
	agree      []agreement
}

type agreement struct {
	reporter string
	at       int64
}

// New returns an empty Sentinel; zero fields of cfg take their defaults.
func New(cfg Config) (*Sentinel, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	cfg = cfg.withDefaults()
	s := &Sentinel{
		cfg:     cfg,
		winMs:   cfg.Window.Milliseconds(),
		sliceMs: cfg.Window.Milliseconds() / numSlices,
		hbMs:    float64(cfg.Heartbeat) / float64(time.Millisecond),
		quietMs: cfg.Quiet.Milliseconds(),
		agreeMs: cfg.AgreeWindow.Milliseconds(),
		agreeN:  max(8, 2*cfg.Quorum, 10),
		peers:   make(map[string]*peer),
	}
	for i := range numSignals {
		s.floors[i] = cfg.floor(i)
	}
	return s, nil
}

// Config returns the sentinel's configuration with defaults filled in.
func (s *Sentinel) Config() Config { return s.cfg }

// Self records how busy this node is itself (a fraction 0..1: busy CPU,
// or load average per core). A window in which it reached Config.SelfBusy
// scores and learns no reply_latency or hb_jitter of any peer: a loaded
// observer sees everyone late.
func (s *Sentinel) Self(cpu float64, now time.Time) {
	if !(cpu >= s.cfg.SelfBusy) || cpu > 1 {
		return
	}
	k := floorDiv(millis(now), s.winMs)
	s.busy[k%int64(len(s.busy))].Store(k + 1)
}

// selfBusy reports whether this node was busy in window k.
func (s *Sentinel) selfBusy(k int64) bool {
	return s.busy[k%int64(len(s.busy))].Load() == k+1
}

// SetObservers tells the Sentinel how many nodes watch a peer, this one
// included (the live members but the peer): with Config.Quorum 0 the
// disconnect quorum is a majority of them.
func (s *Sentinel) SetObservers(n int) { s.observers.Store(int64(n)) }

// quorum is how many other reporters a disconnect needs now.
func (s *Sentinel) quorum() int {
	if s.cfg.Quorum > 0 {
		return s.cfg.Quorum
	}
	n := s.observers.Load()
	if n <= 0 {
		return 2
	}
	return int(min(max(n/2+1, 2), 5)) - 1
}

// Message records that peer sent a message of any kind (command, reply,
// heartbeat, event): call it for every message received from the peer, in
// addition to Command, Reply or Heartbeat.
func (s *Sentinel) Message(peer string, now time.Time) {
	ms := millis(now)
	p := s.lock(peer)
	if p == nil {
		return
	}
	s.roll(p, ms)
	p.msgs.add(floorDiv(ms, s.sliceMs))
	p.active = true
	p.mu.Unlock()
}

// Command records that peer sent a command with verb. Verbs past the 32
// distinct ones a peer is remembered with, empty verbs and verbs longer than
// 64 bytes share one bucket.
func (s *Sentinel) Command(peer, verb string, now time.Time) {
	ms := millis(now)
	p := s.lock(peer)
	if p == nil {
		return
	}
	s.roll(p, ms)
	p.cmds.add(floorDiv(ms, s.sliceMs))
	if c := &p.verbCount[p.bucket(verb)]; *c < math.MaxUint32 {
		*c++
	}
	p.active = true
	p.mu.Unlock()
}

// Reply records that peer answered a command after latency. A negative
// latency is ignored and counted in Stats.Invalid.
func (s *Sentinel) Reply(peer string, latency time.Duration, now time.Time) {
	if latency < 0 {
		s.invalid.Add(1)
		return
	}
	ms := millis(now)
	p := s.lock(peer)
	if p == nil {
		return
	}
	s.roll(p, ms)
	p.lat.add(float64(latency) / float64(time.Millisecond))
	p.active = true
	p.mu.Unlock()
}

// Heartbeat records that a heartbeat from peer arrived. hb_jitter measures
// |interval − Config.Heartbeat| between consecutive heartbeats; an interval
// longer than a Window is a gap (liveness, not jitter) and is not measured,
// nor is one that goes backwards.
func (s *Sentinel) Heartbeat(peer string, now time.Time) {
	ms := millis(now)
	p := s.lock(peer)
	if p == nil {
		return
	}
	s.roll(p, ms)
	s.heartbeat(p, ms)
	p.mu.Unlock()
}

// heartbeat is Heartbeat with p rolled to ms and locked.
func (s *Sentinel) heartbeat(p *peer, ms int64) {
	if p.hasHB {
		if d := ms - p.lastHB; d >= 0 && d <= s.winMs {
			p.hb.add(math.Abs(float64(d) - s.hbMs))
		}
	}
	if !p.hasHB || ms > p.lastHB {
		p.lastHB, p.hasHB = ms, true
	}
	p.active = true
}

// Beat is what one heartbeat from a peer tells the Sentinel.
type Beat struct {
	// Latency is its delivery latency, recorded as a reply latency;
	// negative: none.
	Latency time.Duration
	// CPU, Mem and Disk are its gauges (as for Gauges); none above zero:
	// the sender measures none.
	CPU, Mem, Disk float64
}

// Beat records a heartbeat from peer exactly as Message, Heartbeat, Reply
// (when b.Latency >= 0) and Gauges (when a gauge is above zero) would, under
// one lookup and one lock: a core member calls it for every edge's
// heartbeat. A heartbeat refused for a full table counts once in
// Stats.Refused.
func (s *Sentinel) Beat(peer string, b Beat, now time.Time) {
	var vals [3]float64
	var ok [3]bool
	some := false
	if b.CPU > 0 || b.Mem > 0 || b.Disk > 0 {
		vals, ok, some = s.checkGauges(b.CPU, b.Mem, b.Disk)
	}
	ms := millis(now)
	p := s.lock(peer)
	if p == nil {
		return
	}
	s.roll(p, ms)
	p.msgs.add(floorDiv(ms, s.sliceMs))
	s.heartbeat(p, ms)
	if b.Latency >= 0 {
		p.lat.add(float64(b.Latency) / float64(time.Millisecond))
	}
	if some {
		p.addGauges(vals, ok)
	}
	p.mu.Unlock()
}

// Gauges records peer's resource gauges as fractions in [0,1] (cpu busy,
// memory used, disk used; divide percentages by 100). A value outside
// [0,1] or NaN is ignored and counted in Stats.Invalid; the others count.
func (s *Sentinel) Gauges(peer string, cpu, mem, disk float64, now time.Time) {
	vals, ok, some := s.checkGauges(cpu, mem, disk)
	if !some {
		return
	}
	ms := millis(now)
	p := s.lock(peer)
	if p == nil {
		return
	}
	s.roll(p, ms)
	p.addGauges(vals, ok)
	p.mu.Unlock()
}

// checkGauges counts the invalid gauges and reports which are valid.
func (s *Sentinel) checkGauges(cpu, mem, disk float64) (vals [3]float64, ok [3]bool, some bool) {
	vals = [3]float64{cpu, mem, disk}
	for i, v := range vals {
		if ok[i] = v >= 0 && v <= 1; ok[i] {
			some = true
		} else {
			s.invalid.Add(1)
		}
	}
	return vals, ok, some
}

// addGauges records the valid gauges; p is locked and rolled.
func (p *peer) addGauges(vals [3]float64, ok [3]bool) {
	for i, v := range vals {
		if ok[i] {
			p.gauge[i].add(v)
		}
	}
	p.active = true
}

// Forget removes peer's record (when the node left the swarm for good); if
// it comes back, it starts from nothing, at level ok. Forgetting an unknown
// peer does nothing.
func (s *Sentinel) Forget(peer string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	p := s.peers[peer]
	if p == nil {
		return
	}
	delete(s.peers, peer)
	p.mu.Lock()
	p.gone = true
	p.mu.Unlock()
}

// Peers lists the peers the Sentinel keeps a record of.
func (s *Sentinel) Peers() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]string, 0, len(s.peers))
	for k := range s.peers {
		out = append(out, k)
	}
	return out
}

// Agree records that reporter, another node, published an alert about peer
// at now. It reports whether the report was recorded: reports about a peer
// this sentinel has no record of, from an empty reporter or from the peer
// itself are not (so that reports cannot fill the table). Each reporter
// counts once, with its latest report; a quarantined peer whose latest
// anomalous window is within AgreeWindow goes to disconnect when Quorum
// reporters agreed within AgreeWindow. The caller passes only other nodes'
// alerts, never this node's own.
func (s *Sentinel) Agree(peer, reporter string, now time.Time) bool {
	if reporter == "" || reporter == peer {
		return false
	}
	p := s.lockKnown(peer)
	if p == nil {
		return false
	}
	defer p.mu.Unlock()
	ms := millis(now)
	oldest := -1
	for i := range p.agree {
		a := &p.agree[i]
		if a.reporter == reporter {
			a.at = max(a.at, ms)
			s.settle(p, ms)
			return true
		}
		if oldest < 0 || a.at < p.agree[oldest].at {
			oldest = i
		}
	}
	if len(p.agree) < s.agreeN {
		p.agree = append(p.agree, agreement{strings.Clone(reporter), ms})
	} else {
		p.agree[oldest] = agreement{strings.Clone(reporter), ms}
	}
	s.settle(p, ms)
	return true
}

// Evaluate closes every window that ended by now, scores it, advances each
// peer's escalation and returns the findings about every peer above ok,
// ordered by peer and signal: for each, its signals that scored at least
// AlertScore in its latest window, or, while it cools down, the signal that
// last did. Call it periodically (every second or every Window); windows
// also close on a peer's next observation, so a late call loses nothing.
func (s *Sentinel) Evaluate(now time.Time) []Finding {
	ms := millis(now)
	s.mu.RLock()
	ps := make([]*peer, 0, len(s.peers))
	for _, p := range s.peers {
		ps = append(ps, p)
	}
	s.mu.RUnlock()
	var out []Finding
	for _, p := range ps {
		p.mu.Lock()
		if !p.gone {
			s.settle(p, ms)
			out = s.appendAlerts(out, p)
		}
		p.mu.Unlock()
	}
	slices.SortFunc(out, func(a, b Finding) int {
		if c := strings.Compare(a.Peer, b.Peer); c != 0 {
			return c
		}
		return rank(a.Signal) - rank(b.Signal)
	})
	return out
}

// Findings returns one finding per signal that peer has a value for, in
// signal order, whatever their scores (for the scan command); nil for an
// unknown peer. Like Evaluate, it closes the peer's due window first.
func (s *Sentinel) Findings(peer string, now time.Time) []Finding {
	p := s.lockKnown(peer)
	if p == nil {
		return nil
	}
	defer p.mu.Unlock()
	s.settle(p, millis(now))
	var out []Finding
	for i := range numSignals {
		if p.sig[i].has {
			out = append(out, s.finding(p, i))
		}
	}
	return out
}

// Level returns peer's current level at now, OK for an unknown peer.
func (s *Sentinel) Level(peer string, now time.Time) Level {
	p := s.lockKnown(peer)
	if p == nil {
		return OK
	}
	defer p.mu.Unlock()
	s.settle(p, millis(now))
	return p.level.Level()
}

// Stats returns the number of peer records and the counts of refused and
// invalid observations.
func (s *Sentinel) Stats() Stats {
	s.mu.RLock()
	n := len(s.peers)
	s.mu.RUnlock()
	return Stats{Peers: n, Refused: s.refused.Load(), Invalid: s.invalid.Load()}
}

// lock returns name's record with its mu held, creating it if there is
// room; nil (counted) when name is empty or the table is full.
func (s *Sentinel) lock(name string) *peer {
	if name == "" {
		s.invalid.Add(1)
		return nil
	}
	s.mu.RLock()
	if p := s.peers[name]; p != nil {
		p.mu.Lock()
		s.mu.RUnlock()
		return p
	}
	s.mu.RUnlock()
	s.mu.Lock()
	defer s.mu.Unlock()
	p := s.peers[name]
	if p == nil {
		if len(s.peers) >= s.cfg.MaxPeers {
			s.refused.Add(1)
			return nil
		}
		p = &peer{name: strings.Clone(name), win: math.MinInt64}
		p.msgs.slice, p.cmds.slice = math.MinInt64, math.MinInt64
		s.peers[p.name] = p
	}
	p.mu.Lock()
	return p
}

// lockKnown returns name's record with its mu held, nil if there is none.
func (s *Sentinel) lockKnown(name string) *peer {
	s.mu.RLock()
	defer s.mu.RUnlock()
	p := s.peers[name]
	if p != nil {
		p.mu.Lock()
	}
	return p
}

// bucket returns verb's bucket, remembering a new verb while there is room.
func (p *peer) bucket(verb string) int {
	for i, v := range p.verbs {
		if v == verb {
			return i
		}
	}
	if verb == "" || len(verb) > maxVerbLen || len(p.verbs) == maxVerbs {
		return other
	}
	if p.verbs == nil {
		p.verbs = make([]string, 0, maxVerbs)
	}
	p.verbs = append(p.verbs, strings.Clone(verb))
	return len(p.verbs) - 1
}

// roll moves p to the window containing ms, closing the current one if it
// ended and had activity. A time in an earlier window (a clock step back,
// or callers racing) counts in the current one.
func (s *Sentinel) roll(p *peer, ms int64) {
	k := floorDiv(ms, s.winMs)
	if k <= p.win {
		return
	}
	if p.active {
		s.close(p)
	}
	p.win, p.active = k, false
	p.msgs, p.cmds = counter{slice: math.MinInt64}, counter{slice: math.MinInt64}
	clear(p.verbCount[:])
	p.lat.fresh, p.hb.fresh = false, false
	for g := range p.gauge {
		p.gauge[g].fresh = false
	}
}

// settle rolls p to ms and applies the time-driven transitions: disconnect
// on a quorum, decay after quiet. A decay step takes effect when it was due,
// whenever settle runs, so the outcome does not depend on how often it does.
func (s *Sentinel) settle(p *peer, ms int64) {
	s.roll(p, ms)
	for p.level > lvOK {
		if p.level == lvQuarantine && ms-p.lastBehav <= s.agreeMs && s.agreeing(p, ms) >= s.quorum() {
			p.level, p.levelSince = lvDisconnect, ms
			return
		}
		hot := p.lastHot
		if p.level > lvAlert {
			hot = p.lastBehav // health alone keeps a peer at alert, never above
		}
		due := max(hot, p.levelSince) + s.quietMs
		if ms < due {
			return
		}
		p.level--
		p.levelSince = due
	}
}

// agreeing counts the distinct reporters whose latest report is within
// AgreeWindow of ms.
func (s *Sentinel) agreeing(p *peer, ms int64) int {
	n := 0
	for _, a := range p.agree {
		if ms-a.at <= s.agreeMs {
			n++
		}
	}
	return n
}

// close turns p's current window into one value per observed signal, scores
// each against its history, updates the histories and escalates.
func (s *Sentinel) close(p *peer) {
	k := p.win
	start := k * s.winMs
	end := start + s.winMs
	p.closed++
	if p.closed == 1 {
		return // a record's first window started before its first observation
	}
	secs := float64(s.winMs-2*s.sliceMs) / 1000 // what the trimmed counts span
	var v [numSignals]float64
	var has [numSignals]bool
	v[sigMsgRate], has[sigMsgRate] = float64(p.msgs.trimmed())/secs, true
	v[sigCmdRate], has[sigCmdRate] = float64(p.cmds.trimmed())/secs, true
	cmds := p.cmds.total
	if cmds > 0 && p.baseSum > 0 {
		v[sigCmdMix], p.mixTop = mixDivergence(&p.verbCount, cmds, &p.base, p.baseSum)
		p.mixTopShare = float64(p.verbCount[p.mixTop]) / float64(cmds)
		p.mixTopBase = float64(p.base[p.mixTop]) / p.baseSum
		has[sigCmdMix] = true
	}
	v[sigReplyLatency], has[sigReplyLatency] = p.lat.take()
	v[sigHBJitter], has[sigHBJitter] = p.hb.take()
	if s.selfBusy(k) {
		// What this node measures of the peer's timing is its own load.
		has[sigReplyLatency], has[sigHBJitter] = false, false
	}
	for g := range p.gauge {
		v[sigCPU+g], has[sigCPU+g] = p.gauge[g].take()
	}

	hi, hiSig, hb := -1.0, 0, -1.0
	var absorbed [numSignals]bool
	for i := range numSignals {
		if !has[i] {
			continue
		}
		var sc float64
		sc, absorbed[i] = s.observe(&p.sig[i], i, v[i], k, start)
		if sc > hi {
			hi, hiSig = sc, i
		}
		if isBehaviour(i) {
			hb = max(hb, sc)
		}
	}
	if cmds > 0 {
		absorb := absorbed[sigCmdRate]
		if has[sigCmdMix] {
			absorb = absorbed[sigCmdMix]
		}
		if absorb {
			p.absorbMix(s.cfg.History)
		}
	}
	s.escalate(p, k, end, hi, hiSig, hb)
}

// observe scores v, the value of signal i in window k (starting at start),
// against se's history, then adds it to the history: in full when it
// scored below AlertScore, else one in absorbEvery, clipped to the alert
// boundary. It returns the signal's persisted score and whether v (or its
// clipped stand-in) entered the history.
func (s *Sentinel) observe(se *series, i int, v float64, k, start int64) (float64, bool) {
	cfg := &s.cfg
	n := len(se.sorted)
	m := median(se.sorted)
	floor := s.floors[i]
	if i == sigMsgRate || i == sigCmdRate || i == sigReplyLatency {
		floor = max(floor, cfg.RelFloor*math.Abs(m))
	}
	spread := max(madScale*mad(se.sorted, m), floor)
	warm := n >= cfg.WarmUp
	raw := 0.0
	if warm {
		raw = robustScore(v, m, spread, cfg.TwoSided)
	}
	se.recent[se.nrec%uint64(cfg.Persist)] = float32(raw)
	se.nrec++
	score := math.Inf(1)
	for _, r := range se.recent[:cfg.Persist] {
		score = min(score, float64(r))
	}

	hot := raw >= cfg.AlertScore
	switch {
	case hot && !se.inRun:
		se.inRun, se.runStart = true, start
	case !hot:
		se.inRun = false
	}
	absorbed := false
	if !hot {
		se.push(float32(v), cfg.History)
		absorbed = true
	} else if se.skipped++; se.skipped >= absorbEvery {
		se.skipped = 0
		c := m + cfg.AlertScore*spread
		if v < m {
			c = m - cfg.AlertScore*spread
		}
		se.push(float32(c), cfg.History)
		absorbed = true
	}
	se.has, se.win, se.value, se.base, se.spread = true, k, v, m, spread
	se.raw, se.score, se.warm, se.size = raw, score, warm, n
	return score, absorbed
}

// absorbMix adds the current window's verb mix, normalised so that every
// window weighs one, to the baseline mix, whose old weight decays by
// 1 − 1/History per absorbed window.
func (p *peer) absorbMix(history int) {
	keep := 1 - 1/float64(history)
	n := float64(p.cmds.total)
	sum := 0.0
	for i := range p.base {
		b := float64(p.base[i])*keep + float64(p.verbCount[i])/n
		p.base[i] = float32(b)
		sum += float64(p.base[i])
	}
	p.baseSum = sum
}

// escalate advances p's level after evaluated window k (ending at end), whose
// highest persisted score was hi, on signal hiSig (hi < 0: no signal), and
// whose highest behaviour score was hb. Health signals raise alerts only.
func (s *Sentinel) escalate(p *peer, k, end int64, hi float64, hiSig int, hb float64) {
	if p.evaluated && k != p.lastEval+1 {
		p.streak = 0 // an idle window in between: not consecutive
	}
	p.evaluated, p.lastEval = true, k
	if hb < s.cfg.AlertScore {
		p.streak = 0
	}
	if hi < s.cfg.AlertScore {
		return
	}
	p.hasHot, p.lastHot, p.hotSig = true, end, hiSig
	target := lvAlert
	if hb >= s.cfg.AlertScore {
		p.streak++
		p.lastBehav = end
		if hb >= s.cfg.QuarantineScore || p.streak >= s.cfg.QuarantineAfter {
			target = lvQuarantine
		}
	}
	if p.level < target {
		p.level++
		p.levelSince = end
	}
}

// appendAlerts appends the findings Evaluate reports about p.
func (s *Sentinel) appendAlerts(out []Finding, p *peer) []Finding {
	if p.level == lvOK {
		return out
	}
	n := len(out)
	for i := range numSignals {
		se := &p.sig[i]
		if se.has && se.win == p.lastEval && se.score >= s.cfg.AlertScore {
			out = append(out, s.finding(p, i))
		}
	}
	if len(out) == n && p.hasHot {
		f := s.finding(p, p.hotSig)
		f.Detail += fmt.Sprintf("; no anomalous window since %s, one level down per %v of quiet",
			time.UnixMilli(p.lastHot).UTC().Format(time.RFC3339), s.cfg.Quiet)
		out = append(out, f)
	}
	return out
}

// finding describes signal i of p.
func (s *Sentinel) finding(p *peer, i int) Finding {
	se := &p.sig[i]
	f := Finding{
		Peer:     p.name,
		Signal:   signalAt(i),
		Value:    round6(se.value),
		Baseline: round6(se.base),
		Spread:   round6(se.spread),
		Score:    round6(se.score),
		Level:    p.level.Level(),
	}
	if se.score >= s.cfg.AlertScore && se.inRun {
		f.Since = time.UnixMilli(se.runStart).UTC()
	}
	switch {
	case !se.warm:
		f.Detail = fmt.Sprintf("warming up: %d of %d windows", se.size, s.cfg.WarmUp)
	case i == sigCmdMix:
		verb := "(other verbs)"
		if p.mixTop < len(p.verbs) {
			verb = p.verbs[p.mixTop]
		}
		f.Detail = fmt.Sprintf("verb mix diverges %.3g nats from its baseline (median %.3g ± %.3g): %q is %.0f%% of the window's commands, %.0f%% of the baseline's; window score %.1f",
			se.value, se.base, se.spread, verb, 100*p.mixTopShare, 100*p.mixTopBase, se.raw)
	default:
		u := unit(i)
		f.Detail = fmt.Sprintf("%.4g%s against a baseline of %.4g ± %.3g%s; window score %.1f",
			se.value, u, se.base, se.spread, u, se.raw)
	}
	return f
}

// round6 rounds x to 6 significant digits: findings are read by people and
// JSON, and the float32 histories would otherwise show as 5.400000095367432.
func round6(x float64) float64 {
	a := math.Abs(x)
	if a == 0 || a > 1e300 || a < 1e-300 || math.IsNaN(x) {
		return x
	}
	p := math.Pow(10, 5-math.Floor(math.Log10(a)))
	if r := math.Round(x*p) / p; !math.IsInf(r, 0) && !math.IsNaN(r) {
		return r
	}
	return x
}

// rank is a signal's position in findings.
func rank(sig Signal) int {
	for i := range numSignals {
		if signalAt(i) == sig {
			return i
		}
	}
	return numSignals
}

// millis returns t in Unix milliseconds, clamped to about ±139,000 years so
// that sums and differences of times cannot overflow.
func millis(t time.Time) int64 {
	const lim = 1 << 42 // seconds
	sec := t.Unix()
	switch {
	case sec > lim:
		return lim * 1000
	case sec < -lim:
		return -lim * 1000
	}
	return sec*1000 + int64(t.Nanosecond())/int64(time.Millisecond)
}

// floorDiv is a/b rounded towards −∞ (b > 0).
func floorDiv(a, b int64) int64 {
	q := a / b
	if a%b != 0 && a < 0 {
		q--
	}
	return q
}

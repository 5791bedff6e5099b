package sentinel

import (
	"math"
	"math/rand/v2"
	"slices"
	"testing"
	"time"
)

// t0 is the start of every simulated clock: a window boundary.
var t0 = time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)

func newSentinel(t testing.TB, cfg Config) *Sentinel {
	t.Helper()
	s, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// kind of one observation.
type kind uint8

const (
	kMsg kind = iota
	kCmd
	kReply
	kHB
	kGauge
)

// obs is one observation a simulated peer causes.
type obs struct {
	at   time.Time
	kind kind
	verb string
	lat  time.Duration
	g    [3]float64
}

// profile is how a simulated peer behaves in normal times: rates are per
// second, with ±20% jitter drawn every second.
type profile struct {
	msgs      float64            // messages besides heartbeats, commands and replies
	cmds      float64            // commands sent
	verbs     map[string]float64 // verb → weight
	replies   float64            // replies sent
	latency   time.Duration      // median reply latency (log-normal, σ 0.3)
	gaugeEach int                // seconds between gauge samples; 0: every heartbeat
	cpu       [2]float64         // uniform range of cpu
	noHB      bool
}

// behaviour changes a second of observations (an attack, a fault).
type behaviour func(rng *rand.Rand, sec time.Time, in []obs) []obs

// peerSim drives one peer.
type peerSim struct {
	name string
	prof profile
	rng  *rand.Rand
	nSec int
	// spikes: probabilities per second of a one-second burst of 50× the
	// message rate, a cpu sample of 0.95, a heartbeat 300 ms late, and per
	// reply of a 500 ms reply.
	pBurst, pCPU, pHBLate, pSlow float64
}

func newPeerSim(name string, seed uint64, prof profile) *peerSim {
	return &peerSim{name: name, prof: prof, rng: rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15))}
}

func poisson(rng *rand.Rand, lambda float64) int {
	if lambda <= 0 {
		return 0
	}
	l, k, p := math.Exp(-lambda), 0, 1.0
	for {
		p *= rng.Float64()
		if p <= l {
			return k
		}
		k++
	}
}

func jitter(rng *rand.Rand, rate float64) float64 { return rate * (1 + 0.2*(2*rng.Float64()-1)) }

func (ps *peerSim) within(sec time.Time) time.Time {
	return sec.Add(time.Duration(ps.rng.Int64N(int64(time.Second))))
}

func (ps *peerSim) pickVerb() string {
	total := 0.0
	keys := make([]string, 0, len(ps.prof.verbs))
	for k, w := range ps.prof.verbs {
		keys = append(keys, k)
		total += w
	}
	slices.Sort(keys) // deterministic
	x := ps.rng.Float64() * total
	for _, k := range keys {
		if x -= ps.prof.verbs[k]; x < 0 {
			return k
		}
	}
	return keys[len(keys)-1]
}

// second returns the observations of the second starting at sec, in time order.
func (ps *peerSim) second(sec time.Time, b behaviour) []obs {
	rng, p := ps.rng, ps.prof
	var out []obs
	if !p.noHB {
		at := sec.Add(time.Duration(rng.IntN(41)-20) * time.Millisecond)
		if rng.Float64() < ps.pHBLate {
			at = at.Add(300 * time.Millisecond)
		}
		out = append(out, obs{at: at, kind: kHB})
		if p.gaugeEach == 0 || ps.nSec%p.gaugeEach == 0 {
			cpuLo, cpuHi := p.cpu[0], p.cpu[1]
			if cpuHi == 0 {
				cpuLo, cpuHi = 0.1, 0.4
			}
			cpu := cpuLo + (cpuHi-cpuLo)*rng.Float64()
			if rng.Float64() < ps.pCPU {
				cpu = 0.95
			}
			out = append(out, obs{at: at, kind: kGauge, g: [3]float64{cpu, 0.5 + 0.02*(2*rng.Float64()-1), 0.3 + 1e-6*float64(ps.nSec)}})
		}
	}
	for range poisson(rng, jitter(rng, p.msgs)) {
		out = append(out, obs{at: ps.within(sec), kind: kMsg})
	}
	if rng.Float64() < ps.pBurst { // one second of 50×, from anywhere in this second
		from := ps.within(sec)
		for range poisson(rng, 50*max(p.msgs, 1)) {
			out = append(out, obs{at: from.Add(time.Duration(rng.Int64N(int64(time.Second)))), kind: kMsg})
		}
	}
	for range poisson(rng, jitter(rng, p.cmds)) {
		out = append(out, obs{at: ps.within(sec), kind: kCmd, verb: ps.pickVerb()})
	}
	for range poisson(rng, jitter(rng, p.replies)) {
		lat := time.Duration(float64(p.latency) * math.Exp(0.3*rng.NormFloat64()))
		if rng.Float64() < ps.pSlow {
			lat = 500 * time.Millisecond
		}
		out = append(out, obs{at: ps.within(sec), kind: kReply, lat: lat})
	}
	if b != nil {
		out = b(rng, sec, out)
	}
	slices.SortStableFunc(out, func(a, b obs) int { return a.at.Compare(b.at) })
	ps.nSec++
	return out
}

// feed hands observations to s as a node would: Message for every message,
// plus the typed call.
func feed(s *Sentinel, peer string, in []obs) {
	for _, o := range in {
		switch o.kind {
		case kMsg:
			s.Message(peer, o.at)
		case kCmd:
			s.Message(peer, o.at)
			s.Command(peer, o.verb, o.at)
		case kReply:
			s.Message(peer, o.at)
			s.Reply(peer, o.lat, o.at)
		case kHB:
			s.Message(peer, o.at)
			s.Heartbeat(peer, o.at)
		case kGauge:
			s.Gauges(peer, o.g[0], o.g[1], o.g[2], o.at)
		}
	}
}

// trace records what Evaluate said, second by second.
type trace struct {
	levels   map[string][]Level     // compressed: each entry differs from the previous
	changed  map[string][]time.Time // when each entry of levels began
	findings [][]Finding
	at       []time.Time
}

func newTrace() *trace {
	return &trace{levels: map[string][]Level{}, changed: map[string][]time.Time{}}
}

func (tr *trace) record(s *Sentinel, peers []string, now time.Time, f []Finding) {
	tr.findings = append(tr.findings, f)
	tr.at = append(tr.at, now)
	for _, p := range peers {
		l := s.Level(p, now)
		if ls := tr.levels[p]; len(ls) == 0 || ls[len(ls)-1] != l {
			tr.levels[p] = append(ls, l)
			tr.changed[p] = append(tr.changed[p], now)
		}
	}
}

// run simulates [from, from+d) second by second: each peer's second, then
// Evaluate at the end of the second.
func run(s *Sentinel, tr *trace, from time.Time, d time.Duration, peers []*peerSim, b map[string]behaviour) time.Time {
	names := make([]string, len(peers))
	for i, p := range peers {
		names[i] = p.name
	}
	end := from.Add(d)
	for sec := from; sec.Before(end); sec = sec.Add(time.Second) {
		for _, p := range peers {
			feed(s, p.name, p.second(sec, b[p.name]))
		}
		now := sec.Add(time.Second)
		f := s.Evaluate(now)
		if tr != nil {
			tr.record(s, names, now, f)
		}
	}
	return end
}

// checkFinite fails if any number in fs is not finite or a score is negative.
func checkFinite(t testing.TB, fs []Finding) {
	t.Helper()
	for _, f := range fs {
		for _, v := range []float64{f.Value, f.Baseline, f.Spread, f.Score} {
			if math.IsNaN(v) || math.IsInf(v, 0) {
				t.Fatalf("non-finite number in %+v", f)
			}
		}
		if f.Score < 0 || f.Score > maxScore || !(f.Spread > 0) {
			t.Fatalf("score or spread out of range in %+v", f)
		}
		switch f.Level {
		case OK, Alert, Quarantine, Disconnect:
		default:
			t.Fatalf("unknown level in %+v", f)
		}
	}
}

// checkInvariants verifies every record's internal consistency.
func checkInvariants(t testing.TB, s *Sentinel) {
	t.Helper()
	s.mu.RLock()
	defer s.mu.RUnlock()
	if len(s.peers) > s.cfg.MaxPeers {
		t.Fatalf("%d peers, MaxPeers %d", len(s.peers), s.cfg.MaxPeers)
	}
	for name, p := range s.peers {
		p.mu.Lock()
		for i := range p.sig {
			se := &p.sig[i]
			if len(se.ring) != len(se.sorted) || len(se.ring) > s.cfg.History {
				t.Fatalf("%s %s: ring %d, sorted %d, history %d", name, signalAt(i), len(se.ring), len(se.sorted), s.cfg.History)
			}
			if !slices.IsSorted(se.sorted) {
				t.Fatalf("%s %s: history not sorted: %v", name, signalAt(i), se.sorted)
			}
			r := slices.Clone(se.ring)
			slices.Sort(r)
			if !slices.Equal(r, se.sorted) {
				t.Fatalf("%s %s: sorted %v is not the ring %v", name, signalAt(i), se.sorted, se.ring)
			}
			for _, v := range se.ring {
				if math.IsNaN(float64(v)) || math.IsInf(float64(v), 0) {
					t.Fatalf("%s %s: history holds %v", name, signalAt(i), v)
				}
			}
		}
		if len(p.agree) > s.agreeN || len(p.verbs) > maxVerbs {
			t.Fatalf("%s: %d agreements, %d verbs", name, len(p.agree), len(p.verbs))
		}
		p.mu.Unlock()
	}
}

// normalNode returns the profile of an ordinary node.
func normalNode() profile { return profile{msgs: 3, replies: 1, latency: 20 * time.Millisecond} }

package sentinel

import (
	"math/rand/v2"
	"slices"
	"testing"
	"time"
)

const victim = "3.12.7.1"

// onlyFindings fails unless every finding in tr from index i on is about
// one of signals.
func onlyFindings(t *testing.T, tr *trace, from int, signals ...Signal) {
	t.Helper()
	for _, fs := range tr.findings[from:] {
		for _, f := range fs {
			if !slices.Contains(signals, f.Signal) {
				t.Fatalf("unexpected finding %+v", f)
			}
		}
	}
}

// firstAt returns the index of the first Evaluate from index from on whose
// findings include sig with Level lv.
func firstAt(tr *trace, from int, sig Signal, lv Level) int {
	for i := from; i < len(tr.findings); i++ {
		for _, f := range tr.findings[i] {
			if f.Signal == sig && f.Level == lv {
				return i
			}
		}
	}
	return -1
}

func TestCommandFloodIsDetectedAndEscalatedThenDecays(t *testing.T) {
	t.Parallel()
	s := newSentinel(t, Config{})
	prof := normalNode()
	prof.cmds, prof.verbs = 0.5, map[string]float64{"ping": 1}
	peer := newPeerSim(victim, 1, prof)
	tr := newTrace()

	now := run(s, tr, t0, 40*time.Minute, []*peerSim{peer}, nil)
	if n := countFindings(tr, 0); n != 0 {
		t.Fatalf("%d findings before the attack: %v", n, firstFindings(tr))
	}
	attackIdx, attackAt := len(tr.findings), now
	flood := func(rng *rand.Rand, sec time.Time, in []obs) []obs {
		for range 50 {
			in = append(in, obs{at: sec.Add(time.Duration(rng.Int64N(int64(time.Second)))), kind: kCmd, verb: "exec"})
		}
		return in
	}
	now = run(s, tr, now, 10*time.Minute, []*peerSim{peer}, map[string]behaviour{victim: flood})

	alertAt := firstAt(tr, attackIdx, CmdRate, Alert)
	quarAt := firstAt(tr, attackIdx, CmdRate, Quarantine)
	if alertAt < 0 || quarAt < 0 {
		t.Fatalf("flood not escalated: levels %v", tr.levels[victim])
	}
	// Persist 2: alert at the end of the second attack window, quarantine
	// one window later (score far above QuarantineScore).
	if d := tr.at[alertAt].Sub(attackAt); d != 20*time.Second {
		t.Errorf("alert %v after the flood began; want 20s", d)
	}
	if d := tr.at[quarAt].Sub(attackAt); d != 30*time.Second {
		t.Errorf("quarantine %v after the flood began; want 30s", d)
	}
	var sawMix bool
	for _, f := range tr.findings[alertAt] {
		if f.Signal == CmdMix {
			sawMix = true
			if f.Score < s.cfg.AlertScore {
				t.Errorf("cmd_mix %+v below the alert score", f)
			}
		}
		if f.Signal == CmdRate && !f.Since.Equal(attackAt) {
			t.Errorf("cmd_rate since %v; want the flood's start %v", f.Since, attackAt)
		}
	}
	if !sawMix {
		t.Errorf("no cmd_mix finding at the alert: %+v", tr.findings[alertAt])
	}
	// A ten-minute flood never becomes normal.
	for i := alertAt; i < len(tr.findings); i++ {
		if !hasScore(tr.findings[i], CmdRate, s.cfg.AlertScore) || !hasScore(tr.findings[i], CmdMix, s.cfg.AlertScore) {
			t.Fatalf("%v into the flood, cmd_rate or cmd_mix is no longer anomalous: %+v", tr.at[i].Sub(attackAt), tr.findings[i])
		}
	}
	onlyFindings(t, tr, attackIdx, CmdRate, CmdMix, MsgRate)
	t.Logf("at the alert: %+v", tr.findings[alertAt])

	// The flood stops: one level down per 5 minutes of quiet.
	stopAt := now
	run(s, tr, now, 20*time.Minute, []*peerSim{peer}, nil)
	if got, want := tr.levels[victim], []Level{OK, Alert, Quarantine, Alert, OK}; !slices.Equal(got, want) {
		t.Fatalf("levels %v; want %v", got, want)
	}
	ch := tr.changed[victim]
	if d := ch[3].Sub(stopAt); d < 5*time.Minute || d > 5*time.Minute+time.Second {
		t.Errorf("quarantine → alert %v after the flood stopped; want 5m", d)
	}
	if d := ch[4].Sub(ch[3]); d < 5*time.Minute || d > 5*time.Minute+time.Second {
		t.Errorf("alert → ok %v after quarantine → alert; want 5m", d)
	}
}

func TestErraticHeartbeatsAreDetected(t *testing.T) {
	t.Parallel()
	s := newSentinel(t, Config{})
	peer := newPeerSim(victim, 2, normalNode())
	tr := newTrace()
	now := run(s, tr, t0, 30*time.Minute, []*peerSim{peer}, nil)
	if n := countFindings(tr, 0); n != 0 {
		t.Fatalf("%d findings before the fault: %v", n, firstFindings(tr))
	}
	from, faultAt := len(tr.findings), now
	// Intervals uniform in 0.2..1.8 s: the same rate on average, no rhythm.
	next := now
	erratic := func(rng *rand.Rand, sec time.Time, in []obs) []obs {
		in = slices.DeleteFunc(in, func(o obs) bool { return o.kind == kHB })
		for next.Before(sec.Add(time.Second)) {
			in = append(in, obs{at: next, kind: kHB})
			next = next.Add(200*time.Millisecond + time.Duration(rng.Int64N(int64(1600*time.Millisecond))))
		}
		return in
	}
	run(s, tr, now, 5*time.Minute, []*peerSim{peer}, map[string]behaviour{victim: erratic})
	// A health signal: it alerts, and never goes further however long it lasts.
	if got, want := tr.levels[victim], []Level{OK, Alert}; !slices.Equal(got, want) {
		t.Fatalf("levels %v; want %v", got, want)
	}
	alertAt := firstAt(tr, from, HBJitter, Alert)
	if alertAt < 0 || tr.at[alertAt].Sub(faultAt) > 30*time.Second {
		t.Fatalf("hb_jitter alert at index %d (%v after the fault)", alertAt, tr.at[max(alertAt, 0)].Sub(faultAt))
	}
	onlyFindings(t, tr, from, HBJitter)
	t.Logf("at the alert: %+v", tr.findings[alertAt])
}

func TestPinnedCPUIsDetectedAndDecays(t *testing.T) {
	t.Parallel()
	s := newSentinel(t, Config{})
	peer := newPeerSim(victim, 3, normalNode())
	tr := newTrace()
	now := run(s, tr, t0, 30*time.Minute, []*peerSim{peer}, nil)
	if n := countFindings(tr, 0); n != 0 {
		t.Fatalf("%d findings before the fault: %v", n, firstFindings(tr))
	}
	from, faultAt := len(tr.findings), now
	pinned := func(_ *rand.Rand, _ time.Time, in []obs) []obs {
		for i := range in {
			if in[i].kind == kGauge {
				in[i].g[0] = 1
			}
		}
		return in
	}
	now = run(s, tr, now, 5*time.Minute, []*peerSim{peer}, map[string]behaviour{victim: pinned})
	alertAt := firstAt(tr, from, CPU, Alert)
	if alertAt < 0 {
		t.Fatalf("pinned cpu not detected: levels %v", tr.levels[victim])
	}
	if d := tr.at[alertAt].Sub(faultAt); d != 20*time.Second {
		t.Errorf("alert %v after the cpu pinned; want 20s", d)
	}
	onlyFindings(t, tr, from, CPU)
	t.Logf("at the alert: %+v", tr.findings[alertAt])
	run(s, tr, now, 15*time.Minute, []*peerSim{peer}, nil)
	// cpu is health, not behaviour: an alert that decays, never a quarantine.
	if got, want := tr.levels[victim], []Level{OK, Alert, OK}; !slices.Equal(got, want) {
		t.Fatalf("levels %v; want %v", got, want)
	}
}

func TestModerateHealthAnomalyStaysAnAlert(t *testing.T) {
	t.Parallel()
	s := newSentinel(t, Config{})
	prof := normalNode()
	prof.replies = 2
	peer := newPeerSim(victim, 4, prof)
	tr := newTrace()
	now := run(s, tr, t0, 30*time.Minute, []*peerSim{peer}, nil)
	from, faultAt := len(tr.findings), now
	// Replies steadily at 60 ms instead of about 20: scores about 8,
	// between the thresholds, for far longer than QuarantineAfter windows.
	slow := func(_ *rand.Rand, _ time.Time, in []obs) []obs {
		for i := range in {
			if in[i].kind == kReply {
				in[i].lat = 60 * time.Millisecond
			}
		}
		return in
	}
	run(s, tr, now, 6*time.Minute, []*peerSim{peer}, map[string]behaviour{victim: slow})
	alertAt := firstAt(tr, from, ReplyLatency, Alert)
	if alertAt < 0 {
		t.Fatalf("slow replies not detected: levels %v", tr.levels[victim])
	}
	// The first anomalous window is the second of the fault (Persist 2).
	if got, want := tr.at[alertAt].Sub(faultAt), 2*s.cfg.Window; got != want {
		t.Errorf("alert %v after the fault; want %v", got, want)
	}
	if got, want := tr.levels[victim], []Level{OK, Alert}; !slices.Equal(got, want) {
		t.Fatalf("levels %v; want %v (latency is health: it never quarantines)", got, want)
	}
	onlyFindings(t, tr, from, ReplyLatency)
}

func TestModerateBehaviourAnomalyIsQuarantinedAfterQuarantineAfterWindows(t *testing.T) {
	t.Parallel()
	s := newSentinel(t, Config{})
	prof := normalNode()
	prof.cmds, prof.verbs = 0.5, map[string]float64{"ping": 1}
	peer := newPeerSim(victim, 6, prof)
	tr := newTrace()
	now := run(s, tr, t0, 30*time.Minute, []*peerSim{peer}, nil)
	from, faultAt := len(tr.findings), now
	// Two pings a second instead of one every two: a moderate rise of one
	// behaviour signal, sustained.
	busy := func(rng *rand.Rand, sec time.Time, in []obs) []obs {
		for range 2 {
			in = append(in, obs{at: sec.Add(time.Duration(rng.Int64N(int64(time.Second)))), kind: kCmd, verb: "ping"})
		}
		return in
	}
	run(s, tr, now, 6*time.Minute, []*peerSim{peer}, map[string]behaviour{victim: busy})
	quarAt := -1
	for i := from; i < len(tr.findings) && quarAt < 0; i++ {
		for _, f := range tr.findings[i] {
			if f.Level == Quarantine {
				quarAt = i
				break
			}
		}
	}
	if quarAt < 0 {
		t.Fatalf("a sustained command rise never quarantined: levels %v", tr.levels[victim])
	}
	if got, want := tr.levels[victim], []Level{OK, Alert, Quarantine}; !slices.Equal(got, want) {
		t.Fatalf("levels %v; want %v", got, want)
	}
	t.Logf("quarantined %v after the rise began: %+v", tr.at[quarAt].Sub(faultAt), tr.findings[quarAt])
}

// quarantined returns a sentinel with victim quarantined at the returned
// time (by a command flood that goes on) and a function that keeps the
// simulation running.
func quarantined(t *testing.T, cfg Config) (*Sentinel, time.Time, func(d time.Duration) time.Time) {
	t.Helper()
	s := newSentinel(t, cfg)
	peer := newPeerSim(victim, 5, normalNode())
	now := run(s, nil, t0, 10*time.Minute, []*peerSim{peer}, nil)
	pinned := map[string]behaviour{victim: func(rng *rand.Rand, sec time.Time, in []obs) []obs {
		for range 50 {
			in = append(in, obs{at: sec.Add(time.Duration(rng.Int64N(int64(time.Second)))), kind: kCmd, verb: "exec"})
		}
		return in
	}}
	for s.Level(victim, now) != Quarantine {
		now = run(s, nil, now, time.Second, []*peerSim{peer}, pinned)
		if now.Sub(t0) > time.Hour {
			t.Fatal("victim never quarantined")
		}
	}
	return s, now, func(d time.Duration) time.Time {
		now = run(s, nil, now, d, []*peerSim{peer}, pinned)
		return now
	}
}

func TestDisconnectNeedsAQuorumOfDistinctReporters(t *testing.T) {
	t.Parallel()
	type report struct {
		reporter string
		after    time.Duration // since quarantine
		recorded bool
	}
	tests := []struct {
		name    string
		quorum  int
		reports []report
		want    Level
	}{
		{"none", 0, nil, Quarantine},
		{"one", 0, []report{{"A", 0, true}}, Quarantine},
		{"same reporter twice", 0, []report{{"A", 0, true}, {"A", time.Second, true}}, Quarantine},
		{"two distinct", 0, []report{{"A", 0, true}, {"B", time.Second, true}}, Disconnect},
		{"the peer itself does not count", 0, []report{{"A", 0, true}, {victim, time.Second, false}}, Quarantine},
		{"an empty reporter does not count", 0, []report{{"A", 0, true}, {"", time.Second, false}}, Quarantine},
		{"too far apart", 0, []report{{"A", 0, true}, {"B", 3 * time.Minute, true}}, Quarantine},
		{"refreshed in time", 0, []report{{"A", 0, true}, {"A", 3 * time.Minute, true}, {"B", 3*time.Minute + time.Second, true}}, Disconnect},
		{"quorum 3, two", 3, []report{{"A", 0, true}, {"B", 0, true}, {"B", 0, true}}, Quarantine},
		{"quorum 3, three", 3, []report{{"A", 0, true}, {"B", 0, true}, {"C", 0, true}}, Disconnect},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			s, qAt, keep := quarantined(t, Config{Quorum: tc.quorum})
			now := qAt
			for _, r := range tc.reports {
				if at := qAt.Add(r.after); at.After(now) {
					now = keep(at.Sub(now))
				}
				if got := s.Agree(victim, r.reporter, now); got != r.recorded {
					t.Fatalf("Agree(%q) = %v; want %v", r.reporter, got, r.recorded)
				}
			}
			s.Evaluate(now)
			if got := s.Level(victim, now); got != tc.want {
				t.Fatalf("level %v; want %v", got, tc.want)
			}
			if tc.want == Disconnect {
				for _, f := range s.Findings(victim, now) {
					if f.Level != Disconnect {
						t.Fatalf("finding %+v does not carry the level", f)
					}
				}
			}
		})
	}
}

func TestAgreementAloneNeverEscalates(t *testing.T) {
	t.Parallel()
	s := newSentinel(t, Config{})
	peer := newPeerSim(victim, 6, normalNode())
	now := run(s, nil, t0, 10*time.Minute, []*peerSim{peer}, nil)
	for _, r := range []string{"A", "B", "C", "D"} {
		if !s.Agree(victim, r, now) {
			t.Fatalf("Agree(%q) not recorded", r)
		}
	}
	now = run(s, nil, now, time.Minute, []*peerSim{peer}, nil)
	if got := s.Level(victim, now); got != OK {
		t.Fatalf("level %v after reports about a normal peer; want ok", got)
	}
	if s.Agree("9.9.9.9", "A", now) {
		t.Fatal("Agree recorded a report about an unknown peer")
	}
	if got := s.Stats().Peers; got != 1 {
		t.Fatalf("%d peers; reports must not create records", got)
	}
}

func TestDisconnectDecays(t *testing.T) {
	t.Parallel()
	s, now, _ := quarantined(t, Config{})
	s.Agree(victim, "A", now)
	s.Agree(victim, "B", now)
	if got := s.Level(victim, now); got != Disconnect {
		t.Fatalf("level %v; want disconnect", got)
	}
	// Disconnected, the peer is heard no more: each Quiet takes a level off.
	for i, want := range []Level{Disconnect, Quarantine, Alert, OK, OK} {
		at := now.Add(time.Duration(i)*s.cfg.Quiet + time.Second)
		if got := s.Level(victim, at); got != want {
			t.Fatalf("after %v: level %v; want %v", at.Sub(now), got, want)
		}
	}
}

func countFindings(tr *trace, from int) int {
	n := 0
	for _, fs := range tr.findings[from:] {
		n += len(fs)
	}
	return n
}

func firstFindings(tr *trace) []Finding {
	for _, fs := range tr.findings {
		if len(fs) > 0 {
			return fs
		}
	}
	return nil
}

func hasScore(fs []Finding, sig Signal, min float64) bool {
	for _, f := range fs {
		if f.Signal == sig && f.Score >= min {
			return true
		}
	}
	return false
}

func TestObserversOwnLoadSuppressesTimingScores(t *testing.T) {
	t.Parallel()
	s := newSentinel(t, Config{})
	prof := normalNode()
	prof.replies = 2
	peer := newPeerSim(victim, 7, prof)
	tr := newTrace()
	now := run(s, tr, t0, 30*time.Minute, []*peerSim{peer}, nil)
	from := len(tr.findings)
	// This node is pinned itself: every reply it times comes in late.
	slowAndBusy := func(_ *rand.Rand, sec time.Time, in []obs) []obs {
		s.Self(0.95, sec)
		for i := range in {
			if in[i].kind == kReply {
				in[i].lat = 60 * time.Millisecond
			}
		}
		return in
	}
	run(s, tr, now, 6*time.Minute, []*peerSim{peer}, map[string]behaviour{victim: slowAndBusy})
	if n := countFindings(tr, from); n != 0 {
		t.Fatalf("%d findings while the observer itself was busy: %v", n, tr.findings[from:])
	}
}

func TestDefaultQuorumIsAMajorityOfObservers(t *testing.T) {
	s := newSentinel(t, Config{})
	for _, c := range []struct{ observers, others int }{{0, 2}, {1, 1}, {2, 1}, {3, 1}, {4, 2}, {6, 3}, {8, 4}, {100, 4}} {
		s.SetObservers(c.observers)
		if got := s.quorum(); got != c.others {
			t.Errorf("%d observers: quorum of %d other nodes; want %d", c.observers, got, c.others)
		}
	}
	s2 := newSentinel(t, Config{Quorum: 3})
	s2.SetObservers(2)
	if s2.quorum() != 3 {
		t.Errorf("an explicit Quorum is kept: %d", s2.quorum())
	}
}

package sentinel

import (
	"encoding/json"
	"fmt"
	"math"
	"slices"
	"sync"
	"testing"
	"time"
)

func TestMaxPeersRefusesNewPeersNeverEvictsKnownOnes(t *testing.T) {
	t.Parallel()
	s := newSentinel(t, Config{MaxPeers: 3})
	for i := range 3 {
		s.Message(fmt.Sprint(i+1), t0)
	}
	s.Message("4", t0)
	s.Command("5", "ping", t0)
	s.Heartbeat("6", t0)
	s.Reply("7", time.Millisecond, t0)
	s.Gauges("8", 0.1, 0.1, 0.1, t0)
	if got, want := s.Stats(), (Stats{Peers: 3, Refused: 5}); got != want {
		t.Fatalf("stats %+v; want %+v", got, want)
	}
	// Close two windows so that peer 1 has values.
	s.Message("1", t0.Add(10*time.Second))
	s.Evaluate(t0.Add(20 * time.Second))
	if s.Findings("1", t0.Add(20*time.Second)) == nil {
		t.Fatal("known peer 1 lost its record")
	}
	if s.Findings("4", t0.Add(20*time.Second)) != nil {
		t.Fatal("refused peer 4 has a record")
	}
	s.Forget("2")
	s.Message("4", t0.Add(20*time.Second))
	if got := s.Stats(); got.Peers != 3 || got.Refused != 5 {
		t.Fatalf("after Forget: stats %+v; want 3 peers, 5 refused", got)
	}
	s.Forget("unknown") // no-op
	if got := s.Stats().Peers; got != 3 {
		t.Fatalf("%d peers after forgetting an unknown peer", got)
	}
}

func TestInvalidInputsAreCountedAndNeverLearnt(t *testing.T) {
	t.Parallel()
	s := newSentinel(t, Config{})
	peer := newPeerSim(victim, 7, normalNode())
	now := run(s, nil, t0, 10*time.Minute, []*peerSim{peer}, nil)
	before := s.Findings(victim, now)

	bad := []float64{math.NaN(), math.Inf(1), math.Inf(-1), -0.5, 45, 1.0000001, -math.MaxFloat64, math.MaxFloat64}
	for i := range 10 * 60 {
		at := now.Add(time.Duration(i) * time.Second)
		v := bad[i%len(bad)]
		s.Gauges(victim, v, v, v, at)
		s.Reply(victim, -time.Duration(i+1), at)
		s.Message("", at)
		s.Message(victim, at) // keep the windows active
	}
	now = now.Add(10 * time.Minute)
	if got, want := s.Stats().Invalid, uint64(600*(3+1+1)); got != want {
		t.Errorf("invalid %d; want %d", got, want)
	}
	after := s.Findings(victim, now)
	for _, f := range after {
		i := slices.IndexFunc(before, func(b Finding) bool { return b.Signal == f.Signal })
		switch f.Signal {
		case CPU, Mem, Disk, ReplyLatency:
			// No value since: the latest stays what it was.
			if i < 0 || f.Value != before[i].Value || f.Baseline != before[i].Baseline {
				t.Errorf("%s changed from %+v to %+v on invalid input", f.Signal, before[i], f)
			}
		}
		checkFinite(t, []Finding{f})
	}
	checkInvariants(t, s)
}

func TestTimeGoingBackwardsCountsInTheCurrentWindow(t *testing.T) {
	t.Parallel()
	s := newSentinel(t, Config{})
	total := func() uint64 {
		p := s.peers[victim]
		p.mu.Lock()
		defer p.mu.Unlock()
		return p.msgs.total
	}
	s.Message(victim, t0.Add(25*time.Second)) // window 2
	s.Message(victim, t0.Add(15*time.Second)) // window 1: counts in window 2
	s.Message(victim, t0.Add(-time.Hour))     // far back: window 2 too
	if got := total(); got != 3 {
		t.Fatalf("window 2 counted %d messages; want 3", got)
	}
	s.Heartbeat(victim, t0.Add(25*time.Second))
	s.Heartbeat(victim, t0.Add(24*time.Second)) // backwards: no interval
	s.Evaluate(t0.Add(30 * time.Second))        // closes window 2, the record's first (not scored)
	s.Evaluate(t0.Add(20 * time.Second))        // backwards: nothing to do
	for i := range 10 {
		s.Message(victim, t0.Add(time.Duration(30+i)*time.Second))
	}
	s.Heartbeat(victim, t0.Add(26*time.Second)) // interval 1 s to the latest
	if got := total(); got != 10 {
		t.Fatalf("window 3 counted %d messages; want 10", got)
	}
	fs := s.Findings(victim, t0.Add(40*time.Second))
	want := map[Signal]float64{MsgRate: 1, CmdRate: 0, HBJitter: 0}
	if len(fs) != len(want) {
		t.Fatalf("findings %+v; want signals %v", fs, want)
	}
	for _, f := range fs {
		if v, ok := want[f.Signal]; !ok || f.Value != v {
			t.Errorf("%s = %v; want %v", f.Signal, f.Value, v)
		}
	}
	if l := s.Level(victim, t0.Add(-24*time.Hour)); l != OK {
		t.Errorf("level %v asked in the past", l)
	}
}

func TestIdleWindowsAreNotLearnt(t *testing.T) {
	t.Parallel()
	s := newSentinel(t, Config{})
	peer := newPeerSim(victim, 8, normalNode())
	now := run(s, nil, t0, 10*time.Minute, []*peerSim{peer}, nil)
	before := s.Findings(victim, now)
	// Away for two hours, then back with the same behaviour: no alert.
	now = now.Add(2 * time.Hour)
	s.Evaluate(now)
	tr := newTrace()
	run(s, tr, now, 10*time.Minute, []*peerSim{peer}, nil)
	if n := countFindings(tr, 0); n != 0 {
		t.Fatalf("%d findings after an absence: %+v", n, firstFindings(tr))
	}
	after := s.Findings(victim, now)
	if len(after) != len(before) {
		t.Fatalf("signals %v, then %v", before, after)
	}
}

func TestFindingJSONContract(t *testing.T) {
	t.Parallel()
	f := Finding{Peer: "3.12.7.1", Signal: CmdMix, Value: 1, Baseline: 0.5, Spread: 0.1, Score: 5, Level: Quarantine, Detail: "x"}
	b, err := json.Marshal(f)
	if err != nil {
		t.Fatal(err)
	}
	const want = `{"peer":"3.12.7.1","signal":"cmd_mix","value":1,"baseline":0.5,"spread":0.1,"score":5,"level":"quarantine","detail":"x"}`
	if string(b) != want {
		t.Errorf("JSON %s; want %s", b, want)
	}
	f.Since = t0
	b, _ = json.Marshal(f)
	var m map[string]any
	if err := json.Unmarshal(b, &m); err != nil || m["since"] != "2026-03-01T12:00:00Z" {
		t.Errorf("since in %s", b)
	}
	names := []string{}
	for _, sig := range Signals() {
		names = append(names, string(sig))
	}
	if want := []string{"msg_rate", "cmd_rate", "cmd_mix", "reply_latency", "hb_jitter", "cpu", "mem", "disk"}; !slices.Equal(names, want) {
		t.Errorf("signals %v; want %v", names, want)
	}
	for _, l := range []struct {
		l    Level
		want string
	}{{OK, "ok"}, {Alert, "alert"}, {Quarantine, "quarantine"}, {Disconnect, "disconnect"}} {
		if string(l.l) != l.want {
			t.Errorf("level %q; want %q", l.l, l.want)
		}
	}
}

func TestFindingsDuringWarmUp(t *testing.T) {
	t.Parallel()
	s := newSentinel(t, Config{})
	peer := newPeerSim(victim, 9, normalNode())
	now := run(s, nil, t0, time.Minute, []*peerSim{peer}, nil)
	fs := s.Findings(victim, now)
	if len(fs) == 0 {
		t.Fatal("no findings")
	}
	for _, f := range fs {
		if f.Score != 0 || f.Level != OK || f.Detail == "" || !f.Since.IsZero() {
			t.Errorf("warming-up finding %+v", f)
		}
	}
	if s.Findings("nobody", now) != nil || s.Level("nobody", now) != OK {
		t.Error("unknown peer has findings or a level")
	}
}

func TestVerbTableIsBounded(t *testing.T) {
	t.Parallel()
	s := newSentinel(t, Config{})
	for i := range 1000 {
		s.Command(victim, fmt.Sprintf("verb%d", i), t0.Add(time.Duration(i)*time.Second))
	}
	s.Command(victim, "", t0.Add(1000*time.Second))
	s.Command(victim, string(make([]byte, 100)), t0.Add(1000*time.Second))
	checkInvariants(t, s)
	fs := s.Findings(victim, t0.Add(2000*time.Second))
	checkFinite(t, fs)
}

func TestConcurrentUse(t *testing.T) {
	t.Parallel()
	s := newSentinel(t, Config{Window: time.Second, Heartbeat: 100 * time.Millisecond, History: 20, WarmUp: 5, MaxPeers: 6, Quiet: 3 * time.Second})
	peers := []string{"1", "2", "3", "4", "5", "6", "7", "8"}
	var wg sync.WaitGroup
	for g := range 8 {
		wg.Go(func() {
			for i := range 3000 {
				now := t0.Add(time.Duration(i) * 10 * time.Millisecond)
				p := peers[(g+i)%len(peers)]
				switch i % 9 {
				case 0:
					s.Message(p, now)
				case 1:
					s.Command(p, []string{"ping", "exec", "status"}[i%3], now)
				case 2:
					s.Reply(p, time.Duration(i%50)*time.Millisecond, now)
				case 3:
					s.Heartbeat(p, now)
				case 4:
					s.Gauges(p, float64(i%10)/10, 0.5, 0.3, now)
				case 5:
					checkFinite(t, s.Evaluate(now))
				case 6:
					checkFinite(t, s.Findings(p, now))
				case 7:
					s.Agree(p, peers[g], now)
				case 8:
					if i%90 == 8 {
						s.Forget(p)
					}
					_ = s.Level(p, now)
					_ = s.Stats()
				}
			}
		})
	}
	wg.Wait()
	checkInvariants(t, s)
}

package trust

import (
	"errors"
	"fmt"
	"math"
	"sync"
	"testing"
	"time"
)

type step struct {
	m    msg
	want Verdict
	err  error // wrapped by Observe's error; nil: no error
}

func TestLedgerRules(t *testing.T) {
	t.Parallel()
	accept := func(ms ...msg) []step {
		out := make([]step, len(ms))
		for i, m := range ms {
			out[i] = step{m, Accept, nil}
		}
		return out
	}
	steps := func(groups ...[]step) []step {
		var out []step
		for _, g := range groups {
			out = append(out, g...)
		}
		return out
	}
	type scenario struct {
		name  string
		cfg   Config
		build func(t *testing.T) []step
		check func(t *testing.T, p Peer)
	}
	tests := []scenario{
		{
			name: "in order",
			build: func(t *testing.T) []step {
				return accept(signN(t, newChain(t, userKey(t, 1), ChainState{}), 3)...)
			},
			check: func(t *testing.T, p Peer) {
				if p.Length != 3 || p.Seq != 3 || p.Gaps != 0 || p.Missing != 0 || p.State != Trusted {
					t.Fatalf("peer %+v", p)
				}
			},
		},
		{
			name: "replayed message dropped silently",
			build: func(t *testing.T) []step {
				ms := signN(t, newChain(t, userKey(t, 1), ChainState{}), 3)
				return steps(accept(ms...), []step{{ms[1], Replay, nil}, {ms[0], Replay, nil}, {ms[2], Replay, nil}})
			},
			check: func(t *testing.T, p Peer) {
				if p.Replays != 3 || p.Length != 3 || p.State != Trusted || p.Breaks != 0 {
					t.Fatalf("peer %+v", p)
				}
			},
		},
		{
			name: "gap then continue, then the missing message late",
			build: func(t *testing.T) []step {
				ms := signN(t, newChain(t, userKey(t, 1), ChainState{}), 5)
				return accept(ms[0], ms[2], ms[3], ms[4], ms[1])
			},
			check: func(t *testing.T, p Peer) {
				if p.Length != 5 || p.Gaps != 0 || p.Missing != 0 || p.Late != 1 || p.Seq != 5 {
					t.Fatalf("peer %+v", p)
				}
			},
		},
		{
			name: "gaps counted and missing seqs",
			build: func(t *testing.T) []step {
				ms := signN(t, newChain(t, userKey(t, 1), ChainState{}), 10)
				return accept(ms[0], ms[3], ms[4], ms[9])
			},
			check: func(t *testing.T, p Peer) {
				if p.Length != 4 || p.Gaps != 2 || p.Missing != 6 {
					t.Fatalf("peer %+v", p)
				}
			},
		},
		{
			name: "first message seen mid-chain is not a gap",
			build: func(t *testing.T) []step {
				ms := signN(t, newChain(t, userKey(t, 1), ChainState{}), 10)
				return accept(ms[6], ms[7], ms[8])
			},
			check: func(t *testing.T, p Peer) {
				if p.Gaps != 0 || p.Length != 3 {
					t.Fatalf("peer %+v", p)
				}
			},
		},
		{
			name: "out of order within the window",
			build: func(t *testing.T) []step {
				ms := signN(t, newChain(t, userKey(t, 1), ChainState{}), 4)
				return accept(ms[0], ms[2], ms[1], ms[3])
			},
			check: func(t *testing.T, p Peer) {
				if p.Gaps != 0 || p.Late != 1 || p.Length != 4 {
					t.Fatalf("peer %+v", p)
				}
			},
		},
		{
			name: "fork: cloned key signs another message for a seen seq",
			build: func(t *testing.T) []step {
				genuine := newChain(t, userKey(t, 1), ChainState{})
				ms := signN(t, genuine, 2)
				clone := newChain(t, userKey(t, 1), ChainState{Seq: 1, Head: ChainHash(Hash{}, 1, ms[0].subject, ms[0].payload)})
				forged := sign(t, clone, "rn.3.cmd.exec", "evil")
				after := sign(t, genuine, "rn.1.evt.hb", "later")
				return steps(accept(ms...), []step{{forged, Break, ErrFork}, {after, Reject, ErrQuarantined}, {ms[0], Reject, ErrQuarantined}})
			},
			check: func(t *testing.T, p Peer) {
				if p.State != Quarantined || p.Breaks != 1 || p.Score(t0.Add(24*time.Hour)) != 0 {
					t.Fatalf("peer %+v", p)
				}
			},
		},
		{
			name: "fork: clone's message does not follow the seen predecessor",
			build: func(t *testing.T) []step {
				ms := signN(t, newChain(t, userKey(t, 1), ChainState{}), 1)
				clone := newChain(t, userKey(t, 1), ChainState{})
				sign(t, clone, "rn.9.evt.hb", "clone 1") // not seen by this receiver
				return steps(accept(ms...), []step{{sign(t, clone, "rn.9.evt.hb", "clone 2"), Break, ErrFork}})
			},
		},
		{
			name: "fork: late message contradicts its successor's claim",
			build: func(t *testing.T) []step {
				genuine := newChain(t, userKey(t, 1), ChainState{})
				ms := signN(t, genuine, 3)
				clone := newChain(t, userKey(t, 1), ChainState{Seq: 1, Head: ChainHash(Hash{}, 1, ms[0].subject, ms[0].payload)})
				return steps(accept(ms[2]), []step{{sign(t, clone, "rn.9.evt.hb", "clone 2"), Break, ErrFork}})
			},
		},
		{
			name: "seq going backwards with a different hash is a break",
			build: func(t *testing.T) []step {
				ms := signN(t, newChain(t, userKey(t, 1), ChainState{}), 5)
				clone := newChain(t, userKey(t, 1), ChainState{Seq: 2, Head: Hash{0xee}})
				return steps(accept(ms...), []step{{sign(t, clone, "rn.1.evt.hb", "rewind"), Break, ErrFork}})
			},
		},
		{
			name: "chain restarted from zero with the same key is a break",
			build: func(t *testing.T) []step {
				ms := signN(t, newChain(t, userKey(t, 1), ChainState{}), 3)
				reset := newChain(t, userKey(t, 1), ChainState{})
				return steps(accept(ms...), []step{{sign(t, reset, "rn.1.evt.join", "hello again"), Break, ErrFork}})
			},
		},
		{
			name: "backwards below the window is stale, not a break",
			cfg:  Config{Window: 16},
			build: func(t *testing.T) []step {
				ms := signN(t, newChain(t, userKey(t, 1), ChainState{}), 40)
				return steps(accept(ms...), []step{{ms[4], Reject, ErrStale}, {ms[23], Reject, ErrStale}, {ms[24], Replay, nil}})
			},
			check: func(t *testing.T, p Peer) {
				if p.State != Trusted || p.Stale != 2 || p.Anomalies != 2 || p.Replays != 1 {
					t.Fatalf("peer %+v", p)
				}
			},
		},
		{
			name: "the oldest seq of the window: a replay dropped, a fork a break",
			cfg:  Config{Window: 16},
			build: func(t *testing.T) []step {
				ms := signN(t, newChain(t, userKey(t, 1), ChainState{}), 20)
				clone := newChain(t, userKey(t, 1), ChainState{Seq: 4, Head: ChainHash(ms[3].h.Prev, 4, ms[3].subject, ms[3].payload)})
				return steps(accept(ms...), []step{{ms[4], Replay, nil}, {sign(t, clone, "rn.1.evt.hb", "other"), Break, ErrFork}})
			},
		},
		{
			name: "a jump past the window forgets what it held",
			cfg:  Config{Window: 16},
			build: func(t *testing.T) []step {
				ms := signN(t, newChain(t, userKey(t, 1), ChainState{}), 60)
				return steps(accept(ms[0], ms[1], ms[2], ms[40]), []step{{ms[1], Reject, ErrStale}, {ms[40], Replay, nil}},
					accept(ms[38], ms[39], ms[41]), []step{{ms[39], Replay, nil}})
			},
			check: func(t *testing.T, p Peer) {
				// Seq 41's gap is closed by 40; 39 is one (38 unseen).
				if p.Length != 7 || p.Gaps != 1 || p.Stale != 1 || p.Replays != 2 || p.State != Trusted {
					t.Fatalf("peer %+v", p)
				}
			},
		},
		{
			name: "a late message whose successor named another hash, deep in the window",
			cfg:  Config{Window: 16},
			build: func(t *testing.T) []step {
				genuine := newChain(t, userKey(t, 1), ChainState{})
				ms := signN(t, genuine, 20)
				clone := newChain(t, userKey(t, 1), ChainState{Seq: 5, Head: ChainHash(ms[4].h.Prev, 5, ms[4].subject, ms[4].payload)})
				return steps(accept(ms[6], ms[19]), []step{{sign(t, clone, "rn.9.evt.hb", "not seq 6"), Break, ErrFork}})
			},
		},
		{
			name: "bad signature from a known peer is a break",
			build: func(t *testing.T) []step {
				ms := signN(t, newChain(t, userKey(t, 1), ChainState{}), 3)
				bad := withSig(ms[2], make([]byte, SigSize))
				return steps(accept(ms[:2]...), []step{{bad, Break, ErrBadSignature}, {ms[2], Reject, ErrQuarantined}})
			},
			check: func(t *testing.T, p Peer) {
				if p.State != Quarantined || p.Breaks != 1 || p.Reason == "" {
					t.Fatalf("peer %+v", p)
				}
			},
		},
		{
			name: "signature over different bytes is a break",
			build: func(t *testing.T) []step {
				ms := signN(t, newChain(t, userKey(t, 1), ChainState{}), 2)
				moved := ms[1]
				moved.payload = []byte("not what was signed")
				return steps(accept(ms[0]), []step{{moved, Break, ErrBadSignature}})
			},
		},
		{
			name: "bad signatures tolerated when configured",
			cfg:  Config{TolerateBadSignatures: true},
			build: func(t *testing.T) []step {
				ms := signN(t, newChain(t, userKey(t, 1), ChainState{}), 3)
				return steps(accept(ms[0]), []step{{withSig(ms[1], make([]byte, SigSize)), Reject, ErrBadSignature}}, accept(ms[1], ms[2]))
			},
			check: func(t *testing.T, p Peer) {
				if p.State != Trusted || p.Anomalies != 1 || p.Length != 3 || p.Gaps != 0 {
					t.Fatalf("peer %+v", p)
				}
			},
		},
		{
			name: "malformed headers change nothing",
			build: func(t *testing.T) []step {
				ms := signN(t, newChain(t, userKey(t, 1), ChainState{}), 2)
				v2 := ms[1]
				v2.h.Ver = "rn/2"
				short := withSig(ms[1], ms[1].h.Sig[:10])
				return steps(accept(ms[0]), []step{{v2, Reject, ErrVersion}, {short, Reject, ErrHeader}}, accept(ms[1]))
			},
			check: func(t *testing.T, p Peer) {
				if p.State != Trusted || p.Length != 2 || p.Anomalies != 0 {
					t.Fatalf("peer %+v", p)
				}
			},
		},
		{
			name: "a message past the end of a jump is accepted after a gap",
			cfg:  Config{Window: 16},
			build: func(t *testing.T) []step {
				c := newChain(t, userKey(t, 1), ChainState{})
				ms := signN(t, c, 100)
				return accept(ms[0], ms[1], ms[99])
			},
			check: func(t *testing.T, p Peer) {
				if p.Gaps != 1 || p.Missing != 97 || p.Seq != 100 {
					t.Fatalf("peer %+v", p)
				}
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			l := newLedger(t, tt.cfg)
			var from string
			for i, s := range tt.build(t) {
				from = s.m.h.From
				v, err := l.Observe(s.m.h, s.m.subject, s.m.payload, t0.Add(time.Duration(i)*time.Second))
				if v != s.want {
					t.Fatalf("step %d (seq %d): verdict %v (%v), want %v", i, s.m.h.Seq, v, err, s.want)
				}
				checkErr(t, fmt.Sprintf("step %d", i), err, s.err)
				if v == Break && !errors.Is(err, ErrBreak) {
					t.Fatalf("step %d: Break without ErrBreak: %v", i, err)
				}
			}
			p, ok := l.Peer(from)
			if !ok {
				t.Fatal("no peer record")
			}
			if tt.check != nil {
				tt.check(t, p)
			}
		})
	}
}

func TestLedgerUnknownKeyWithBadSignatureGetsNoRecord(t *testing.T) {
	t.Parallel()
	l := newLedger(t, Config{})
	m := signN(t, newChain(t, userKey(t, 1), ChainState{}), 1)[0]
	v, err := l.Observe(m.h, m.subject, []byte("tampered"), t0)
	if v != Reject || !errors.Is(err, ErrBadSignature) || errors.Is(err, ErrBreak) {
		t.Fatalf("verdict %v %v", v, err)
	}
	if _, ok := l.Peer(m.h.From); ok {
		t.Fatal("record created for a key that never signed validly")
	}
	if v, err := l.Observe(m.h, m.subject, m.payload, t0); v != Accept {
		t.Fatalf("genuine message after: %v %v", v, err)
	}
}

func TestLedgerMaxPeers(t *testing.T) {
	t.Parallel()
	l := newLedger(t, Config{MaxPeers: 1})
	a := signN(t, newChain(t, userKey(t, 1), ChainState{}), 1)[0]
	b := signN(t, newChain(t, userKey(t, 2), ChainState{}), 1)[0]
	if v, err := l.Observe(a.h, a.subject, a.payload, t0); v != Accept {
		t.Fatal(v, err)
	}
	if v, err := l.Observe(b.h, b.subject, b.payload, t0); v != Reject || !errors.Is(err, ErrTooManyPeers) {
		t.Fatalf("second peer: %v %v", v, err)
	}
	if err := l.Forget(a.h.From); err != nil {
		t.Fatal(err)
	}
	if v, err := l.Observe(b.h, b.subject, b.payload, t0); v != Accept {
		t.Fatalf("after Forget: %v %v", v, err)
	}
}

func TestLedgerQuarantineAndRelease(t *testing.T) {
	t.Parallel()
	l := newLedger(t, Config{})
	kp := userKey(t, 1)
	pub := pubOf(t, kp)
	c := newChain(t, kp, ChainState{})
	ms := signN(t, c, 6)
	for _, m := range ms[:3] {
		if v, err := l.Observe(m.h, m.subject, m.payload, t0); v != Accept {
			t.Fatal(v, err)
		}
	}
	if err := l.Quarantine(pub, "", t0.Add(time.Minute)); err != nil {
		t.Fatal(err)
	}
	if v, err := l.Observe(ms[3].h, ms[3].subject, ms[3].payload, t0); v != Reject || !errors.Is(err, ErrQuarantined) {
		t.Fatalf("quarantined: %v %v", v, err)
	}
	p, _ := l.Peer(pub)
	if p.State != Quarantined || p.Reason != "quarantined by operator" || !p.QuarantinedAt.Equal(t0.Add(time.Minute)) || p.Breaks != 0 {
		t.Fatalf("quarantined peer %+v", p)
	}
	if err := l.Forget(pub); !errors.Is(err, ErrQuarantined) {
		t.Fatalf("Forget of a quarantined peer: %v", err)
	}
	if err := l.Release(pub, t0.Add(2*time.Minute)); err != nil {
		t.Fatal(err)
	}
	p, _ = l.Peer(pub)
	if p.State != Trusted || p.Length != 0 || p.Score(t0.Add(time.Hour)) != 0 || !p.ReleasedAt.Equal(t0.Add(2*time.Minute)) {
		t.Fatalf("released peer %+v", p)
	}
	// Trust is earned again from zero; the chain goes on where it is.
	if v, err := l.Observe(ms[4].h, ms[4].subject, ms[4].payload, t0.Add(3*time.Minute)); v != Accept {
		t.Fatalf("after release: %v %v", v, err)
	}
	p, _ = l.Peer(pub)
	if p.Length != 1 || p.Gaps != 0 || !p.FirstSeen.Equal(t0.Add(3*time.Minute)) {
		t.Fatalf("peer after release and one message %+v", p)
	}
	// Operators may quarantine keys never seen; bad keys are refused.
	stranger := pubOf(t, userKey(t, 50))
	if err := l.Quarantine(stranger, "stolen laptop", t0); err != nil {
		t.Fatal(err)
	}
	if p, ok := l.Peer(stranger); !ok || p.State != Quarantined || p.Reason != "stolen laptop" {
		t.Fatalf("pre-quarantined peer %+v", p)
	}
	if err := l.Quarantine("UNOTAKEY", "x", t0); !errors.Is(err, ErrKey) {
		t.Fatalf("Quarantine(bad key) = %v", err)
	}
	if err := l.Release(pubOf(t, userKey(t, 51)), t0); !errors.Is(err, ErrUnknownPeer) {
		t.Fatalf("Release(unknown) = %v", err)
	}
	if got := len(l.Peers()); got != 2 {
		t.Fatalf("Peers() has %d entries", got)
	}
}

func TestLedgerBreakIsReportedOnce(t *testing.T) {
	t.Parallel()
	l := newLedger(t, Config{})
	ms := signN(t, newChain(t, userKey(t, 1), ChainState{}), 2)
	l.Observe(ms[0].h, ms[0].subject, ms[0].payload, t0)
	bad := withSig(ms[1], make([]byte, SigSize))
	breaks := 0
	for i := 0; i < 5; i++ {
		if v, _ := l.Observe(bad.h, bad.subject, bad.payload, t0); v == Break {
			breaks++
		}
	}
	if breaks != 1 {
		t.Fatalf("%d Break verdicts, want 1", breaks)
	}
}

// TestLedgerConcurrentObserve feeds every message of three peers from several
// goroutines, each message twice: each must be accepted exactly once.
func TestLedgerConcurrentObserve(t *testing.T) {
	t.Parallel()
	l := newLedger(t, Config{})
	var all []msg
	for k := byte(1); k <= 3; k++ {
		all = append(all, signN(t, newChain(t, userKey(t, k), ChainState{}), 30)...)
	}
	var (
		wg      sync.WaitGroup
		mu      sync.Mutex
		accepts = map[string]int{}
	)
	for w := 0; w < 6; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := w % 2; i < len(all); i += 2 {
				for _, m := range []msg{all[i], all[(i+1)%len(all)]} {
					v, err := l.Observe(m.h, m.subject, m.payload, t0)
					if v != Accept && v != Replay {
						t.Errorf("seq %d: %v %v", m.h.Seq, v, err)
					}
					if v == Accept {
						mu.Lock()
						accepts[fmt.Sprint(m.h.From, m.h.Seq)]++
						mu.Unlock()
					}
				}
			}
		}()
	}
	wg.Wait()
	if len(accepts) != len(all) {
		t.Fatalf("%d distinct messages accepted, want %d", len(accepts), len(all))
	}
	for k, n := range accepts {
		if n != 1 {
			t.Fatalf("%s accepted %d times", k, n)
		}
	}
	for _, p := range l.Peers() {
		if p.Length != 30 || p.Gaps != 0 || p.State != Trusted {
			t.Fatalf("peer %+v", p)
		}
	}
}

func TestScoreFormula(t *testing.T) {
	t.Parallel()
	cfg := DefaultConfig()
	want := func(n, gaps float64, age time.Duration) float64 {
		g := 0.0
		if n > 1 {
			g = gaps / (n - 1)
		}
		return (1 - math.Exp(-n/600)) * (1 - math.Exp(-age.Hours())) * (1 - 0.25*g)
	}
	tests := []struct {
		n, gaps uint64
		age     time.Duration
	}{
		{1, 0, time.Minute}, {60, 0, time.Minute}, {600, 0, time.Hour}, {3600, 0, time.Hour},
		{7200, 0, 2 * time.Hour}, {3600, 3599, time.Hour}, {3600, 1800, 3 * time.Hour}, {1e6, 0, 1000 * time.Hour},
	}
	for _, tt := range tests {
		got := cfg.score(tt.n, tt.gaps, tt.age)
		if w := want(float64(tt.n), float64(tt.gaps), tt.age); math.Abs(got-w) > 1e-12 {
			t.Errorf("score(n=%d, gaps=%d, age=%v) = %v, want %v", tt.n, tt.gaps, tt.age, got, w)
		}
		if got < 0 || got > 1 {
			t.Errorf("score out of [0,1]: %v", got)
		}
	}
	for _, tt := range []struct {
		n, gaps uint64
		age     time.Duration
	}{{0, 0, time.Hour}, {10, 0, 0}, {10, 0, -time.Hour}} {
		if got := cfg.score(tt.n, tt.gaps, tt.age); got != 0 {
			t.Errorf("score(%d, %d, %v) = %v, want 0", tt.n, tt.gaps, tt.age, got)
		}
	}
	// Gaps lower the score but a fully gapped peer keeps 1-GapWeight of it.
	full, gapped := cfg.score(3600, 0, 10*time.Hour), cfg.score(3600, 3599, 10*time.Hour)
	if !(gapped < full) || math.Abs(gapped/full-0.75) > 1e-9 {
		t.Errorf("gapped %v vs %v", gapped, full)
	}
}

func TestScoreOfObservedPeer(t *testing.T) {
	t.Parallel()
	l := newLedger(t, Config{ChainScale: 5, AgeScale: time.Minute})
	ms := signN(t, newChain(t, userKey(t, 1), ChainState{}), 20)
	pub := ms[0].h.From
	if s := l.Score(pub, t0); s != 0 {
		t.Fatalf("unknown peer scores %v", s)
	}
	var last float64
	for i, m := range ms {
		now := t0.Add(time.Duration(i) * 10 * time.Second)
		l.Observe(m.h, m.subject, m.payload, now)
		s := l.Score(pub, now)
		if s < last || s < 0 || s > 1 {
			t.Fatalf("message %d: score %v after %v", i, s, last)
		}
		last = s
	}
	if tier := l.Tier(last); tier != 3 {
		t.Fatalf("after 20 linked messages over 3 minutes with small scales: score %v tier %d", last, tier)
	}
}

func TestTier(t *testing.T) {
	t.Parallel()
	def := DefaultConfig()
	custom := Config{Tier1: 0.1, Tier2: 0.2, Tier3: 0.3}
	tests := []struct {
		cfg   Config
		score float64
		want  int
	}{
		{def, 0, 0}, {def, 0.0499, 0}, {def, 0.05, 1}, {def, 0.4999, 1}, {def, 0.5, 2},
		{def, 0.8499, 2}, {def, 0.85, 3}, {def, 1, 3}, {def, math.NaN(), 0}, {def, -1, 0},
		{Config{}, 0.5, 2}, {custom, 0.15, 1}, {custom, 0.25, 2}, {custom, 0.3, 3},
	}
	for _, tt := range tests {
		if got := tt.cfg.Tier(tt.score); got != tt.want {
			t.Errorf("%+v.Tier(%v) = %d, want %d", tt.cfg, tt.score, got, tt.want)
		}
	}
}

func TestConfigValidate(t *testing.T) {
	t.Parallel()
	if err := (Config{}).Validate(); err != nil {
		t.Fatalf("zero config: %v", err)
	}
	if got := newLedger(t, Config{}).Config(); got != DefaultConfig() {
		t.Fatalf("zero config became %+v", got)
	}
	for _, bad := range []Config{
		{Tier1: 0.6, Tier2: 0.5},
		{Tier3: 1.5},
		{Tier1: -0.1},
		{Tier2: math.NaN()},
		{ChainScale: -1},
		{ChainScale: math.Inf(1)},
		{AgeScale: -time.Second},
		{GapWeight: 2},
		{Window: 8},
		{MaxPeers: -1},
	} {
		if _, err := NewLedger(bad); !errors.Is(err, ErrConfig) {
			t.Errorf("NewLedger(%+v) = %v, want ErrConfig", bad, err)
		}
	}
}

func TestVerdictString(t *testing.T) {
	t.Parallel()
	for v, s := range map[Verdict]string{Reject: "reject", Accept: "accept", Replay: "replay", Break: "break", 9: "verdict(9)"} {
		if v.String() != s {
			t.Errorf("%d.String() = %q", v, v.String())
		}
	}
}

package trust

import (
	"crypto/sha256"
	"encoding/json"
	"errors"
	"testing"

	"github.com/robonet-mesh/robonet/wire"
)

// forkOf signs two messages at one seq with a cloned chain and returns the
// ledger's proof of the fork.
func forkOf(t *testing.T) *wire.ForkProof {
	t.Helper()
	kp := userKey(t, 7)
	a, b := newChain(t, kp, ChainState{}), newChain(t, kp, ChainState{})
	l := newLedger(t, Config{})
	ma, mb := sign(t, a, "rn.1.evt.hb", "one"), sign(t, b, "rn.1.evt.hb", "two")
	if v, err := l.Observe(ma.h, ma.subject, ma.payload, t0); v != Accept {
		t.Fatalf("first: %v %v", v, err)
	}
	v, err := l.Observe(mb.h, mb.subject, mb.payload, t0)
	var fe *ForkError
	if v != Break || !errors.As(err, &fe) || !errors.Is(err, ErrFork) || !errors.Is(err, ErrBreak) {
		t.Fatalf("clone: %v %v", v, err)
	}
	if fe.Proof == nil {
		t.Fatal("a fork within the evidence ring carries no proof")
	}
	return fe.Proof
}

func TestLedgerForkCarriesAProof(t *testing.T) {
	p := forkOf(t)
	if err := VerifyForkProof(p); err != nil {
		t.Fatalf("the ledger's own proof does not verify: %v", err)
	}
	// It survives JSON, as it travels in rn_revoked.
	raw, _ := json.Marshal(p)
	var back wire.ForkProof
	if err := json.Unmarshal(raw, &back); err != nil || VerifyForkProof(&back) != nil {
		t.Fatalf("proof after JSON: %v %v", err, VerifyForkProof(&back))
	}
}

func TestLedgerPredecessorForkCarriesAProof(t *testing.T) {
	kp := userKey(t, 8)
	a := newChain(t, kp, ChainState{})
	m1 := sign(t, a, "rn.1.evt.hb", "one")
	b := newChain(t, kp, ChainState{}) // a clone that signs a different seq 1
	sign(t, b, "rn.1.evt.hb", "other")
	m2 := sign(t, b, "rn.1.evt.hb", "two") // seq 2 naming the clone's seq 1
	l := newLedger(t, Config{})
	if v, _ := l.Observe(m1.h, m1.subject, m1.payload, t0); v != Accept {
		t.Fatal("seq 1 refused")
	}
	v, err := l.Observe(m2.h, m2.subject, m2.payload, t0)
	var fe *ForkError
	if v != Break || !errors.As(err, &fe) || fe.Proof == nil {
		t.Fatalf("predecessor fork: %v %v", v, err)
	}
	if err := VerifyForkProof(fe.Proof); err != nil {
		t.Fatal(err)
	}
}

func TestForkProofRejectsWhatIsNotAFork(t *testing.T) {
	good := forkOf(t)
	kp := userKey(t, 9)
	c := newChain(t, kp, ChainState{})
	m1, m2, m3 := sign(t, c, "rn.1.x", "1"), sign(t, c, "rn.1.x", "2"), sign(t, c, "rn.1.x", "3")
	ev := func(m msg) wire.Evidence {
		e := newEvidence(m.h, m.subject, Hash(sha256.Sum256(m.payload)))
		return e.wire()
	}
	pub := pubOf(t, kp)
	cases := map[string]*wire.ForkProof{
		"nil":              nil,
		"same message":     {Key: pub, A: ev(m1), B: ev(m1)},
		"one honest chain": {Key: pub, A: ev(m1), B: ev(m2)},
		"seqs apart":       {Key: pub, A: ev(m1), B: ev(m3)},
		"other key":        {Key: pubOf(t, userKey(t, 10)), A: good.A, B: good.B},
		"bad key":          {Key: "Uxyz", A: good.A, B: good.B},
		"forged b": func() *wire.ForkProof {
			p := *good
			p.B.Digest = p.A.Digest[:63] + "0"
			if p.B.Digest == p.A.Digest {
				p.B.Digest = p.A.Digest[:63] + "1"
			}
			return &p
		}(),
		"padded sig": func() *wire.ForkProof { p := *good; p.A.Sig += "=="; return &p }(),
		"bad ver":    func() *wire.ForkProof { p := *good; p.A.Ver = "x"; return &p }(),
		"upper prev": func() *wire.ForkProof { p := *good; p.A.Prev = "AB"; return &p }(),
	}
	for name, p := range cases {
		if err := VerifyForkProof(p); !errors.Is(err, ErrProof) {
			t.Errorf("%s: %v, want ErrProof", name, err)
		}
	}
}

func FuzzVerifyForkProof(f *testing.F) {
	f.Add([]byte(`{"key":"U","a":{"ver":"1","seq":1},"b":{}}`))
	f.Add([]byte(`{}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		var p wire.ForkProof
		if json.Unmarshal(data, &p) != nil {
			return
		}
		if err := VerifyForkProof(&p); err != nil && !errors.Is(err, ErrProof) {
			t.Fatalf("error outside ErrProof: %v", err)
		}
	})
}

package trust

import (
	"crypto/ed25519"
	"crypto/sha256"
	"sync/atomic"
	"testing"
	"time"

	"github.com/robonet-mesh/robonet/wire"
)

var benchPayload = make([]byte, 256)

const benchSubject = "rn.3.12.7.1.evt.hb"

// BenchmarkEd25519Sign and BenchmarkEd25519Verify are the floor the HCTH
// figures are compared with: the raw primitives on the same message size.
func BenchmarkEd25519Sign(b *testing.B) {
	priv := ed25519.NewKeyFromSeed(make([]byte, 32))
	msg := signedBytes(wire.Version, 1, Hash{}, benchSubject, sha256.Sum256(benchPayload))
	for b.Loop() {
		ed25519.Sign(priv, msg)
	}
}

func BenchmarkEd25519Verify(b *testing.B) {
	priv := ed25519.NewKeyFromSeed(make([]byte, 32))
	msg := signedBytes(wire.Version, 1, Hash{}, benchSubject, sha256.Sum256(benchPayload))
	sig := ed25519.Sign(priv, msg)
	pub := priv.Public().(ed25519.PublicKey)
	for b.Loop() {
		if !ed25519.Verify(pub, msg, sig) {
			b.Fatal("verify")
		}
	}
}

func BenchmarkSign(b *testing.B) {
	c := newChain(b, userKey(b, 1), ChainState{})
	b.ReportAllocs()
	for b.Loop() {
		if _, err := c.Sign(benchSubject, benchPayload); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkVerify(b *testing.B) {
	c := newChain(b, userKey(b, 1), ChainState{})
	h, _ := c.Sign(benchSubject, benchPayload)
	v := NewVerifier(0)
	b.ReportAllocs()
	for b.Loop() {
		if err := v.Verify(h, benchSubject, benchPayload); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkVerifyParallel(b *testing.B) {
	var hs []Headers
	for k := byte(1); k <= 8; k++ {
		h, _ := newChain(b, userKey(b, k), ChainState{}).Sign(benchSubject, benchPayload)
		hs = append(hs, h)
	}
	v := NewVerifier(0)
	var next atomic.Uint32
	b.ReportAllocs()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		h := hs[next.Add(1)%uint32(len(hs))]
		for pb.Next() {
			if err := v.Verify(h, benchSubject, benchPayload); err != nil {
				b.Error(err)
				return
			}
		}
	})
}

func BenchmarkParseHeaders(b *testing.B) {
	h, _ := newChain(b, userKey(b, 1), ChainState{}).Sign(benchSubject, benchPayload)
	enc := h.Encode()
	get := func(k string) string { return enc[k] }
	b.ReportAllocs()
	for b.Loop() {
		if _, err := ParseHeaders(get); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkObserve is the receiver's whole per-message cost after parsing:
// signature check plus chain rules, for a peer sending in order.
func BenchmarkObserve(b *testing.B) {
	c := newChain(b, userKey(b, 1), ChainState{})
	const n = 4096
	msgs := make([]Headers, n)
	for i := range msgs {
		msgs[i], _ = c.Sign(benchSubject, benchPayload)
	}
	l := newLedger(b, Config{})
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		if i == n { // start over on a fresh ledger: every observation is a new message
			b.StopTimer()
			l, i = newLedger(b, Config{}), 0
			b.StartTimer()
		}
		if v, err := l.Observe(msgs[i], benchSubject, benchPayload, time.Time{}); v != Accept {
			b.Fatal(v, err)
		}
		i++
	}
}

// BenchmarkObserveReplay measures dropping a replay (the signature is still
// checked first).
func BenchmarkObserveReplay(b *testing.B) {
	c := newChain(b, userKey(b, 1), ChainState{})
	h, _ := c.Sign(benchSubject, benchPayload)
	l := newLedger(b, Config{})
	l.Observe(h, benchSubject, benchPayload, t0)
	b.ReportAllocs()
	for b.Loop() {
		if v, _ := l.Observe(h, benchSubject, benchPayload, t0); v != Replay {
			b.Fatal(v)
		}
	}
}

// BenchmarkCheckPeerCertificate is the route acceptor's cost per connection
// for a certificate carrying a proof, before its admission rule.
func BenchmarkCheckPeerCertificate(b *testing.B) {
	kp := serverKey(b, 1)
	c := nodeCert(b, kp, RouteCredential{Proof: RouteProof(fixedSecret(1), pubOf(b, kp))}, t0)
	b.ReportAllocs()
	for b.Loop() {
		if _, err := CheckPeerCertificate(c.Certificate, t0); err != nil {
			b.Fatal(err)
		}
	}
}

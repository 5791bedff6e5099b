package trust

import (
	"bytes"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nkeys"
)

// t0 is the fixed "now" of the tests.
var t0 = time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)

// testKey returns a deterministic key pair of the given type: the same seed
// byte always gives the same key, so two calls clone a key.
func testKey(t testing.TB, prefix nkeys.PrefixByte, seed byte) nkeys.KeyPair {
	t.Helper()
	kp, err := nkeys.CreatePairWithRand(prefix, bytes.NewReader(bytes.Repeat([]byte{seed}, 32)))
	if err != nil {
		t.Fatal(err)
	}
	return kp
}

func userKey(t testing.TB, seed byte) nkeys.KeyPair { return testKey(t, nkeys.PrefixByteUser, seed) }

func pubOf(t testing.TB, kp nkeys.KeyPair) string {
	t.Helper()
	p, err := kp.PublicKey()
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func newChain(t testing.TB, kp nkeys.KeyPair, st ChainState) *Chain {
	t.Helper()
	c, err := NewChain(kp, st)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// msg is one signed message as a receiver gets it.
type msg struct {
	h       Headers
	subject string
	payload []byte
}

func sign(t testing.TB, c *Chain, subject, payload string) msg {
	t.Helper()
	h, err := c.Sign(subject, []byte(payload))
	if err != nil {
		t.Fatal(err)
	}
	return msg{h: h, subject: subject, payload: []byte(payload)}
}

// signN signs n heartbeat-like messages.
func signN(t testing.TB, c *Chain, n int) []msg {
	t.Helper()
	out := make([]msg, n)
	for i := range out {
		out[i] = sign(t, c, "rn.1.evt.hb", strings.Repeat("x", i%7))
	}
	return out
}

func newLedger(t testing.TB, cfg Config) *Ledger {
	t.Helper()
	l, err := NewLedger(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return l
}

// checkErr fails unless err matches want (nil meaning no error).
func checkErr(t testing.TB, what string, err, want error) {
	t.Helper()
	switch {
	case want == nil && err != nil:
		t.Fatalf("%s: unexpected error %v", what, err)
	case want != nil && !errors.Is(err, want):
		t.Fatalf("%s: error %v, want %v", what, err, want)
	}
}

func withSig(m msg, sig []byte) msg {
	m.h.Sig = sig
	return m
}

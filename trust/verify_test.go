package trust

import (
	"bytes"
	"crypto/sha256"
	"errors"
	"fmt"
	"testing"

	"github.com/robonet-mesh/robonet/wire"
)

func TestVerify(t *testing.T) {
	t.Parallel()
	kp, other := userKey(t, 1), userKey(t, 2)
	c := newChain(t, kp, ChainState{})
	m1 := sign(t, c, "rn.1.evt.hb", "one")
	m2 := sign(t, c, "rn.3.12.cmd.exec", `{"cmd":"uptime"}`)
	otherSig, _ := other.Sign(signedBytes(wire.Version, m2.h.Seq, m2.h.Prev, m2.subject, sha256.Sum256(m2.payload)))

	mut := func(f func(*msg)) msg {
		m := m2
		m.h.Sig = bytes.Clone(m2.h.Sig)
		f(&m)
		return m
	}
	tests := []struct {
		name string
		m    msg
		want error
	}{
		{"valid", m2, nil},
		{"valid first", m1, nil},
		{"forged signature", mut(func(m *msg) { m.h.Sig = bytes.Repeat([]byte{7}, SigSize) }), ErrBadSignature},
		{"flipped signature bit", mut(func(m *msg) { m.h.Sig[10] ^= 1 }), ErrBadSignature},
		{"other key's signature", mut(func(m *msg) { m.h.Sig = otherSig }), ErrBadSignature},
		{"claims other sender", mut(func(m *msg) { m.h.From = pubOf(t, other) }), ErrBadSignature},
		{"different subject", mut(func(m *msg) { m.subject = "rn.3.12.cmd.reboot" }), ErrBadSignature},
		{"different payload", mut(func(m *msg) { m.payload = []byte(`{"cmd":"rm -rf /"}`) }), ErrBadSignature},
		{"different seq", mut(func(m *msg) { m.h.Seq = 3 }), ErrBadSignature},
		{"different prev", mut(func(m *msg) { m.h.Prev[0] ^= 1 }), ErrBadSignature},
		{"signature of another message", mut(func(m *msg) { m.h.Sig = m1.h.Sig }), ErrBadSignature},
		{"wrong version", mut(func(m *msg) { m.h.Ver = "rn/2" }), ErrVersion},
		{"empty version", mut(func(m *msg) { m.h.Ver = "" }), ErrVersion},
		{"short signature", mut(func(m *msg) { m.h.Sig = m.h.Sig[:63] }), ErrHeader},
		{"seq 0", mut(func(m *msg) { m.h.Seq = 0 }), ErrHeader},
		{"zero prev for seq 2", mut(func(m *msg) { m.h.Prev = Hash{} }), ErrHeader},
		{"bad key", mut(func(m *msg) { m.h.From = "U" + m.h.From[2:] + "A" }), ErrKey},
		{"wildcard subject", mut(func(m *msg) { m.subject = "rn.3.12.cmd.*" }), ErrHeader},
	}
	v := NewVerifier(0)
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			checkErr(t, "Verify", v.Verify(tt.m.h, tt.m.subject, tt.m.payload), tt.want)
			if tt.want != nil && tt.want != ErrBadSignature && errors.Is(v.Verify(tt.m.h, tt.m.subject, tt.m.payload), ErrBadSignature) {
				t.Fatal("malformed input reported as a bad signature")
			}
		})
	}
}

func TestVerifierCacheStaysBounded(t *testing.T) {
	t.Parallel()
	v := NewVerifier(2)
	for i := 0; i < 6; i++ {
		c := newChain(t, userKey(t, byte(10+i)), ChainState{})
		for j := 0; j < 2; j++ {
			m := sign(t, c, "rn.1.evt.hb", fmt.Sprint(j))
			if err := v.Verify(m.h, m.subject, m.payload); err != nil {
				t.Fatal(err)
			}
		}
	}
	if n := len(v.keys); n > 2 {
		t.Fatalf("cache holds %d keys, limit 2", n)
	}
	// A key that only ever produced bad signatures is not cached.
	c := newChain(t, userKey(t, 99), ChainState{})
	m := sign(t, c, "rn.1.evt.hb", "x")
	m.h.Sig = make([]byte, SigSize)
	_ = v.Verify(m.h, m.subject, m.payload)
	if _, ok := v.keys[m.h.From]; ok {
		t.Fatal("cached a key with no valid signature")
	}
}

package trust

import (
	"errors"
	"maps"
	"strings"
	"testing"

	"github.com/nats-io/nkeys"
	"github.com/robonet-mesh/robonet/wire"
)

func TestHeadersRoundTrip(t *testing.T) {
	t.Parallel()
	c := newChain(t, userKey(t, 1), ChainState{})
	for i := 0; i < 3; i++ {
		m := sign(t, c, "rn.3.12.cmd.ping", "{}")
		enc := m.h.Encode()
		got, err := ParseHeaders(func(k string) string { return enc[k] })
		if err != nil {
			t.Fatalf("ParseHeaders(Encode()): %v", err)
		}
		if !maps.Equal(got.Encode(), enc) || got.Seq != m.h.Seq || got.Prev != m.h.Prev || got.From != m.h.From {
			t.Fatalf("round trip changed headers: %+v vs %+v", got, m.h)
		}
		hdr := map[string][]string{"Other": {"kept"}}
		m.h.SetInto(hdr)
		got2, err := ParseHeaderMap(hdr)
		if err != nil || !maps.Equal(got2.Encode(), enc) || hdr["Other"][0] != "kept" {
			t.Fatalf("ParseHeaderMap(SetInto): %+v %v", got2, err)
		}
	}
}

func TestParseHeadersAcceptsServerKeys(t *testing.T) {
	t.Parallel()
	c := newChain(t, testKey(t, nkeys.PrefixByteServer, 2), ChainState{})
	m := sign(t, c, "rn.1.evt.hb", "x")
	enc := m.h.Encode()
	if _, err := ParseHeaders(func(k string) string { return enc[k] }); err != nil {
		t.Fatal(err)
	}
	if enc[wire.HdrFrom][0] != 'N' {
		t.Fatalf("server key %q", enc[wire.HdrFrom])
	}
}

func TestParseHeadersRejects(t *testing.T) {
	t.Parallel()
	c := newChain(t, userKey(t, 1), ChainState{})
	first := sign(t, c, "rn.1.evt.hb", "a").h.Encode()
	second := sign(t, c, "rn.1.evt.hb", "b").h.Encode()
	pubOfPrefix := func(p nkeys.PrefixByte) string { return pubOf(t, testKey(t, p, 3)) }
	seed, _ := userKey(t, 3).Seed()
	good := second
	user := good[wire.HdrFrom]
	sig := good[wire.HdrSig]
	const b32 = "ABCDEFGHIJKLMNOPQRSTUVWXYZ234567"
	badCRC := user[:KeyTextLen-1] + string(b32[(strings.IndexByte(b32, user[KeyTextLen-1])+1)%32])
	if badCRC == user {
		t.Fatal("test bug: checksum not altered")
	}
	// Non-canonical base64: the last character carries 2 unused bits; set them.
	last := strings.IndexByte("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_", sig[len(sig)-1])
	nonCanonSig := sig[:len(sig)-1] + string("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"[last|1])
	if last&1 == 1 {
		nonCanonSig = sig[:len(sig)-1] + string("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"[last|2])
	}

	tests := []struct {
		name   string
		base   map[string]string
		header string
		value  string // "" deletes the header
		want   error
	}{
		{"missing version", good, wire.HdrVer, "", ErrHeader},
		{"missing from", good, wire.HdrFrom, "", ErrHeader},
		{"missing seq", good, wire.HdrSeq, "", ErrHeader},
		{"missing prev", good, wire.HdrPrev, "", ErrHeader},
		{"missing sig", good, wire.HdrSig, "", ErrHeader},
		{"wrong version", good, wire.HdrVer, "rn/2", ErrVersion},
		{"version case", good, wire.HdrVer, "RN/1", ErrVersion},
		{"version space", good, wire.HdrVer, " rn/1", ErrVersion},
		{"oversized version", good, wire.HdrVer, strings.Repeat("v", MaxHeaderValue+1), ErrHeader},
		{"oversized from", good, wire.HdrFrom, strings.Repeat("U", MaxHeaderValue+1), ErrHeader},
		{"oversized seq", good, wire.HdrSeq, strings.Repeat("9", MaxHeaderValue+1), ErrHeader},
		{"oversized prev", good, wire.HdrPrev, strings.Repeat("0", MaxHeaderValue+1), ErrHeader},
		{"oversized sig", good, wire.HdrSig, strings.Repeat("A", MaxHeaderValue+1), ErrHeader},
		{"seq zero", good, wire.HdrSeq, "0", ErrHeader},
		{"seq leading zero", good, wire.HdrSeq, "02", ErrHeader},
		{"seq plus", good, wire.HdrSeq, "+2", ErrHeader},
		{"seq minus", good, wire.HdrSeq, "-2", ErrHeader},
		{"seq space", good, wire.HdrSeq, "2 ", ErrHeader},
		{"seq hex", good, wire.HdrSeq, "0x2", ErrHeader},
		{"seq exponent", good, wire.HdrSeq, "2e0", ErrHeader},
		{"seq overflow", good, wire.HdrSeq, "18446744073709551616", ErrHeader},
		{"seq 21 digits", good, wire.HdrSeq, "100000000000000000000", ErrHeader},
		{"seq unicode digit", good, wire.HdrSeq, "２", ErrHeader},
		{"prev upper case", good, wire.HdrPrev, strings.ToUpper(good[wire.HdrPrev]), ErrHeader},
		{"prev short", good, wire.HdrPrev, good[wire.HdrPrev][:63], ErrHeader},
		{"prev long", good, wire.HdrPrev, good[wire.HdrPrev] + "0", ErrHeader},
		{"prev not hex", good, wire.HdrPrev, "g" + good[wire.HdrPrev][1:], ErrHeader},
		{"prev zero for seq 2", good, wire.HdrPrev, strings.Repeat("0", 64), ErrHeader},
		{"prev non-zero for seq 1", first, wire.HdrPrev, good[wire.HdrPrev], ErrHeader},
		{"sig padded", good, wire.HdrSig, sig + "==", ErrHeader},
		{"sig short", good, wire.HdrSig, sig[:85], ErrHeader},
		{"sig std alphabet", good, wire.HdrSig, "+" + sig[1:], ErrHeader},
		{"sig with newline", good, wire.HdrSig, sig[:40] + "\n" + sig[41:], ErrHeader},
		{"sig non-canonical bits", good, wire.HdrSig, nonCanonSig, ErrHeader},
		{"from seed", good, wire.HdrFrom, string(seed), ErrKey},
		{"from account key", good, wire.HdrFrom, pubOfPrefix(nkeys.PrefixByteAccount), ErrKey},
		{"from operator key", good, wire.HdrFrom, pubOfPrefix(nkeys.PrefixByteOperator), ErrKey},
		{"from cluster key", good, wire.HdrFrom, pubOfPrefix(nkeys.PrefixByteCluster), ErrKey},
		{"from bad checksum", good, wire.HdrFrom, badCRC, ErrKey},
		{"from lower case", good, wire.HdrFrom, strings.ToLower(user), ErrKey},
		{"from short", good, wire.HdrFrom, user[:55], ErrKey},
		{"from newline", good, wire.HdrFrom, user[:20] + "\n" + user[20:55], ErrKey},
		{"from garbage", good, wire.HdrFrom, "U" + strings.Repeat("A", 55), ErrKey},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m := maps.Clone(tt.base)
			if tt.value == "" {
				delete(m, tt.header)
			} else {
				m[tt.header] = tt.value
			}
			_, err := ParseHeaders(func(k string) string { return m[k] })
			if !errors.Is(err, tt.want) || !errors.Is(err, ErrHeader) {
				t.Fatalf("error %v, want %v", err, tt.want)
			}
			var he *HeaderError
			if !errors.As(err, &he) || he.Name != tt.header {
				t.Fatalf("error %v does not name header %s", err, tt.header)
			}
			if !strings.Contains(err.Error(), tt.header) {
				t.Fatalf("message %q does not name %s", err, tt.header)
			}
			if tt.value != "" && len(tt.value) <= 64 && !strings.Contains(err.Error(), strings.ReplaceAll(tt.value, "\n", `\n`)) {
				t.Fatalf("message %q does not quote the value %q", err, tt.value)
			}
		})
	}
}

func TestParseHeaderMapRefusesDuplicates(t *testing.T) {
	t.Parallel()
	c := newChain(t, userKey(t, 1), ChainState{})
	h := map[string][]string{}
	sign(t, c, "rn.1.evt.hb", "a").h.SetInto(h)
	h[wire.HdrSeq] = append(h[wire.HdrSeq], "7")
	if _, err := ParseHeaderMap(h); !errors.Is(err, ErrHeader) || !strings.Contains(err.Error(), wire.HdrSeq) {
		t.Fatalf("duplicate Rn-Seq: %v", err)
	}
}

func TestHeaderErrorShortensLongValues(t *testing.T) {
	t.Parallel()
	_, err := ParseHeaders(func(k string) string {
		if k == wire.HdrVer {
			return strings.Repeat("v", 10_000)
		}
		return "x"
	})
	if err == nil || len(err.Error()) > 200 {
		t.Fatalf("error for a 10 kB value: %d bytes: %v", len(err.Error()), err)
	}
}

func TestCheckKey(t *testing.T) {
	t.Parallel()
	if err := CheckKey(pubOf(t, userKey(t, 1))); err != nil {
		t.Fatal(err)
	}
	if err := CheckKey(pubOf(t, testKey(t, nkeys.PrefixByteAccount, 1))); !errors.Is(err, ErrKey) {
		t.Fatalf("account key: %v", err)
	}
}

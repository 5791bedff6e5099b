package trust

import (
	"bytes"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/hex"
	"errors"
	"maps"
	"regexp"
	"strconv"
	"testing"
	"time"

	"github.com/nats-io/nkeys"

	"github.com/robonet-mesh/robonet/wire"
)

func FuzzParseHeaders(f *testing.F) {
	c := newChain(f, userKey(f, 1), ChainState{})
	for i := 0; i < 2; i++ {
		h, _ := c.Sign("rn.1.evt.hb", []byte{byte(i)})
		e := h.Encode()
		f.Add(e[wire.HdrVer], e[wire.HdrFrom], e[wire.HdrSeq], e[wire.HdrPrev], e[wire.HdrSig])
		f.Add(e[wire.HdrVer], e[wire.HdrFrom], "01", e[wire.HdrPrev], e[wire.HdrSig]+"==")
		f.Add("rn/2", e[wire.HdrFrom][:55]+"\n", "18446744073709551616", e[wire.HdrPrev][:63]+"G", e[wire.HdrSig][1:])
	}
	f.Fuzz(func(t *testing.T, ver, from, seq, prev, sig string) {
		in := map[string]string{wire.HdrVer: ver, wire.HdrFrom: from, wire.HdrSeq: seq, wire.HdrPrev: prev, wire.HdrSig: sig}
		h, err := ParseHeaders(func(k string) string { return in[k] })
		if err != nil {
			var he *HeaderError
			if !errors.Is(err, ErrHeader) || !errors.As(err, &he) {
				t.Fatalf("error %v is not a HeaderError", err)
			}
			if len(err.Error()) > 400 {
				t.Fatalf("error message of %d bytes", len(err.Error()))
			}
			return
		}
		// Whatever parses is canonical: encoding it gives back the input.
		if out := h.Encode(); !maps.Equal(out, in) {
			t.Fatalf("not canonical: in %q, out %q", in, out)
		}
		if h.Seq == 0 || len(h.Sig) != SigSize || (h.Seq == 1) != Hash(h.Prev).IsZero() {
			t.Fatalf("invariant broken: %+v", h)
		}
	})
}

func FuzzParseToken(f *testing.F) {
	secret := bytes.Repeat([]byte{0x5a}, SecretSize)
	id := [tokenIDSize]byte{1, 2, 3}
	bound := pubOf(f, userKey(f, 7))
	valid := mustEncodeToken(f, secret, id, TokenClaims{Issued: t0, Expires: t0.Add(time.Hour)})
	validBound := mustEncodeToken(f, secret, id, TokenClaims{Issued: t0, Expires: t0.Add(time.Hour), BoundTo: bound})
	f.Add(valid, int64(0))
	f.Add(valid, int64(2*time.Hour))
	f.Add(valid[:len(valid)-1]+"B", int64(0))
	f.Add(mustEncodeToken(f, bytes.Repeat([]byte{1}, SecretSize), id, TokenClaims{Issued: t0, Expires: t0.Add(time.Minute)}), int64(0))
	f.Add(validBound, int64(0))
	f.Add(validBound, int64(2*time.Hour))
	f.Add(validBound[:len(validBound)-1]+"B", int64(0))
	// A version 2 body in a version 1 length and the reverse.
	f.Add(TokenPrefix+b64.EncodeToString(append([]byte{boundTokenVersion}, make([]byte, tokenSize-1)...)), int64(0))
	f.Add(TokenPrefix+b64.EncodeToString(append([]byte{tokenVersion}, make([]byte, boundTokenSize-1)...)), int64(0))
	f.Add(TokenPrefix, int64(0))
	f.Add("rntok_\n", int64(-1))
	hexID := regexp.MustCompile(`^[0-9a-f]{32}$`)
	f.Fuzz(func(t *testing.T, s string, offset int64) {
		now := t0.Add(time.Duration(offset))
		peek, perr := InspectToken(s)
		c, err := ParseToken(s, secret, now)
		if err != nil {
			if !errors.Is(err, ErrTokenMalformed) && !errors.Is(err, ErrTokenMAC) && !errors.Is(err, ErrTokenExpired) {
				t.Fatalf("error %v wraps no token sentinel", err)
			}
			// InspectToken reads what ParseToken finds well-formed (which
			// ParseToken checks only after the MAC).
			if perr == nil && errors.Is(err, ErrTokenMalformed) {
				t.Fatalf("ParseToken: %v but InspectToken: %v", err, perr)
			}
			return
		}
		if perr != nil || peek != c {
			t.Fatalf("InspectToken = %+v, %v; ParseToken = %+v", peek, perr, c)
		}
		if !hexID.MatchString(c.ID) || !now.Before(c.Expires) || !c.Issued.Before(c.Expires) {
			t.Fatalf("claims %+v at %v", c, now)
		}
		if (c.BoundTo != "") != (len(s) == BoundTokenTextLen) || (c.BoundTo != "" && !nkeys.IsValidPublicUserKey(c.BoundTo)) {
			t.Fatalf("binding %q in a token of %d characters", c.BoundTo, len(s))
		}
		if !c.Admits(c.BoundTo) || (c.BoundTo != "" && c.Admits(bound+"x")) {
			t.Fatalf("claims %+v admit the wrong keys", c)
		}
		var raw [tokenIDSize]byte
		copy(raw[:], mustHex(t, c.ID))
		if again := mustEncodeToken(t, secret, raw, c); again != s {
			t.Fatalf("accepted a non-canonical token %q (canonical %q)", s, again)
		}
	})
}

func mustEncodeToken(t testing.TB, secret []byte, id [tokenIDSize]byte, c TokenClaims) string {
	t.Helper()
	s, err := encodeToken(secret, id, c)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func FuzzParseSecret(f *testing.F) {
	f.Add(SecretPrefix + "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA")
	f.Add(SecretPrefix + "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAB")
	f.Fuzz(func(t *testing.T, s string) {
		b, err := ParseSecret(s)
		if err != nil {
			if !errors.Is(err, ErrSecret) {
				t.Fatal(err)
			}
			return
		}
		if len(b) != SecretSize || SecretPrefix+b64.EncodeToString(b) != s {
			t.Fatalf("accepted non-canonical secret %q", s)
		}
	})
}

func mustHex(t *testing.T, s string) []byte {
	b, err := hex.DecodeString(s)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// FuzzObserve drives a ledger with a sequence of messages from a genuine
// sender, a clone of its key, and a second sender, interleaved with replays,
// held-back (late) messages and mutations. Invariants: no panic; a message
// whose signature does not verify is never accepted; one (key, seq) is
// accepted at most once; after a break, nothing from that key is accepted;
// scores stay in [0,1].
func FuzzObserve(f *testing.F) {
	keyA, keyB := userKey(f, 1), userKey(f, 2)
	f.Add([]byte{0, 0, 0, 3, 0, 0})
	f.Add([]byte{0, 8, 0, 0, 3, 1})
	f.Add([]byte{0, 1, 0, 2, 2, 4, 0, 5, 1, 6, 2, 7, 3})
	f.Add(bytes.Repeat([]byte{0}, 40))
	f.Add([]byte{0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 3, 0, 4, 1, 9, 2})
	f.Fuzz(func(t *testing.T, ops []byte) {
		if len(ops) > 64 {
			ops = ops[:64]
		}
		l, err := NewLedger(Config{Window: 16, ChainScale: 3, AgeScale: time.Minute})
		if err != nil {
			t.Fatal(err)
		}
		chains := []*Chain{newChain(t, keyA, ChainState{}), newChain(t, keyA, ChainState{}), newChain(t, keyB, ChainState{})}
		var (
			sent     []msg
			accepted = map[string]bool{} // from/seq
			broken   = map[string]bool{}
			ref      = NewVerifier(0)
			now      = t0
		)
		pick := func(i int) (msg, bool) {
			if len(sent) == 0 {
				return msg{}, false
			}
			m := sent[int(ops[i%len(ops)])%len(sent)]
			m.h.Sig = bytes.Clone(m.h.Sig)
			m.payload = bytes.Clone(m.payload)
			return m, true
		}
		for i, op := range ops {
			now = now.Add(time.Duration(op) * time.Second)
			var m msg
			switch op % 8 {
			case 0, 1, 2:
				c := chains[op%8]
				h, err := c.Sign("rn."+strconv.Itoa(int(op%8)+1)+".evt.hb", []byte{op, byte(i)})
				if err != nil {
					t.Fatal(err)
				}
				m = msg{h, "rn." + strconv.Itoa(int(op%8)+1) + ".evt.hb", []byte{op, byte(i)}}
				sent = append(sent, m)
				if op&8 != 0 {
					continue // held back: delivered later by a replay op, or never
				}
			case 3:
				var ok bool
				if m, ok = pick(i + 1); !ok {
					continue
				}
			case 4:
				var ok bool
				if m, ok = pick(i + 1); !ok {
					continue
				}
				m.h.Sig[int(op)%SigSize] ^= 1 << (op % 7)
			case 5:
				var ok bool
				if m, ok = pick(i + 1); !ok {
					continue
				}
				m.payload = append(m.payload, op)
			case 6:
				var ok bool
				if m, ok = pick(i + 1); !ok {
					continue
				}
				m.h.Seq += uint64(op>>4) + 1
			case 7:
				var ok bool
				if m, ok = pick(i + 1); !ok {
					continue
				}
				if op&16 != 0 {
					m.subject += ".x"
				} else {
					m.h.Prev[op%32] ^= op | 1
				}
			}
			v, err := l.Observe(m.h, m.subject, m.payload, now)
			key := m.h.From + "/" + strconv.FormatUint(m.h.Seq, 10)
			switch v {
			case Accept:
				if err != nil {
					t.Fatalf("op %d: Accept with error %v", i, err)
				}
				if verr := ref.Verify(m.h, m.subject, m.payload); verr != nil {
					t.Fatalf("op %d: accepted a message that does not verify: %v", i, verr)
				}
				if accepted[key] {
					t.Fatalf("op %d: %s accepted twice", i, key)
				}
				if broken[m.h.From] {
					t.Fatalf("op %d: accepted from a broken key", i)
				}
				accepted[key] = true
			case Break:
				if !errors.Is(err, ErrBreak) {
					t.Fatalf("op %d: Break with %v", i, err)
				}
				if broken[m.h.From] {
					t.Fatalf("op %d: second Break for one quarantine", i)
				}
				broken[m.h.From] = true
			case Replay, Reject:
				if v == Reject && err == nil {
					t.Fatalf("op %d: Reject without a reason", i)
				}
			default:
				t.Fatalf("op %d: verdict %v", i, v)
			}
		}
		for _, p := range l.Peers() {
			s := p.Score(now)
			if s < 0 || s > 1 || (p.State == Quarantined && s != 0) || p.Missing > p.Seq {
				t.Fatalf("peer %+v score %v", p, s)
			}
			if tier := l.Tier(s); tier < 0 || tier > 3 {
				t.Fatalf("tier %d", tier)
			}
		}
	})
}

// FuzzCheckPeerCertificate feeds CheckPeerCertificate arbitrary certificate
// bytes (raw, n copies of it, at t0+offset), and arbitrary route credential
// extension bytes (ext) in a properly signed node certificate, so the
// credential parser is reached past the signature. Invariants: no panic;
// every error wraps ErrPeerCert; an accepted certificate names a valid user
// or server nkey that is its own key, and carries at most one well-formed
// credential; an accepted extension is the one canonical encoding.
func FuzzCheckPeerCertificate(f *testing.F) {
	kp := serverKey(f, 1)
	pub := pubOf(f, kp)
	secret := fixedSecret(1)
	valid := nodeCert(f, kp, RouteCredential{}, t0).Certificate[0]
	withProof := nodeCert(f, kp, RouteCredential{Proof: RouteProof(secret, pub)}, t0).Certificate[0]
	withToken := nodeCert(f, userKey(f, 2), RouteCredential{Token: testToken(f, secret)}, t0).Certificate[0]
	proofExt, _ := encodeRouteCredential(RouteCredential{Proof: RouteProof(secret, pub)})
	tokenExt, _ := encodeRouteCredential(RouteCredential{Token: testToken(f, secret)})
	impostor := signCert(f, template(f, pubOf(f, serverKey(f, 2)), t0), nil, edKey(f, kp))
	badSig := bytes.Clone(withProof)
	badSig[len(badSig)-1] ^= 0x80

	f.Add(valid, uint8(1), int64(0), []byte(nil))
	f.Add(withProof, uint8(1), int64(0), proofExt)
	f.Add(withToken, uint8(1), int64(-time.Hour), tokenExt)
	boundTok := testBoundToken(f, secret, pubOf(f, userKey(f, 2)))
	boundExt, _ := encodeRouteCredential(RouteCredential{Token: boundTok})
	f.Add(nodeCert(f, userKey(f, 2), RouteCredential{Token: boundTok}, t0).Certificate[0], uint8(1), int64(0), boundExt)
	f.Add(valid, uint8(1), int64(0), boundExt[:len(boundExt)-1])
	f.Add(valid, uint8(2), int64(0), proofExt[:len(proofExt)-1])
	f.Add(valid, uint8(1), int64(21*365*24*time.Hour), append(bytes.Clone(tokenExt), 0))
	f.Add(impostor, uint8(1), int64(0), []byte{4, 2, 1, 3})
	f.Add(badSig, uint8(1), int64(0), []byte{4, 0x82, 1, 1})
	f.Add(valid[:len(valid)/2], uint8(1), int64(0), []byte{})
	f.Add(bytes.Repeat([]byte{0x30, 0x82}, 16), uint8(0), int64(0), []byte{0x04})
	f.Fuzz(func(t *testing.T, raw []byte, n uint8, offset int64, ext []byte) {
		raws := make([][]byte, n%3)
		for i := range raws {
			raws[i] = raw
		}
		checkPeerCertInvariants(t, raws, t0.Add(time.Duration(offset)))

		if len(ext) == 0 || len(ext) > 256 {
			return
		}
		tmpl := template(t, pub, t0)
		tmpl.ExtraExtensions = []pkix.Extension{{Id: oidRouteCredential, Value: ext}}
		der := signCert(t, tmpl, nil, edKey(t, kp))
		pc := checkPeerCertInvariants(t, [][]byte{der}, t0)
		if pc.Pub == "" {
			return
		}
		if pc.Pub != pub {
			t.Fatalf("accepted %s, want %s", pc.Pub, pub)
		}
		if again, err := encodeRouteCredential(pc.Cred); err != nil || !bytes.Equal(again, ext) {
			t.Fatalf("accepted a non-canonical extension %x (canonical %x, %v)", ext, again, err)
		}
	})
}

// checkPeerCertInvariants returns what CheckPeerCertificate accepted, or a
// zero PeerCert after checking its error.
func checkPeerCertInvariants(t *testing.T, raw [][]byte, now time.Time) PeerCert {
	t.Helper()
	pc, err := CheckPeerCertificate(raw, now)
	if err != nil {
		if !errors.Is(err, ErrPeerCert) {
			t.Fatalf("error %v does not wrap ErrPeerCert", err)
		}
		if pc.Pub != "" || !pc.Cred.IsZero() {
			t.Fatalf("PeerCert %+v with error %v", pc, err)
		}
		return PeerCert{}
	}
	if err := CheckKey(pc.Pub); err != nil {
		t.Fatalf("accepted an invalid key: %v", err)
	}
	if len(pc.Cred.Proof) > 0 && pc.Cred.Token != "" {
		t.Fatalf("accepted two credentials: %+v", pc.Cred)
	}
	if (pc.Cred.Proof != nil && len(pc.Cred.Proof) != RouteProofSize) || (pc.Cred.Token != "" && checkTokenText(pc.Cred.Token) != nil) {
		t.Fatalf("accepted a malformed credential: %+v", pc.Cred)
	}
	cert, err := x509.ParseCertificate(raw[0])
	if err != nil {
		t.Fatal(err)
	}
	key, err := keyBytes(pc.Pub)
	if err != nil || !key.Equal(cert.PublicKey) || cert.Subject.CommonName != pc.Pub || now.Before(cert.NotBefore) || now.After(cert.NotAfter) {
		t.Fatalf("accepted %+v from a certificate of key %x, CN %q, valid %v..%v at %v", pc, cert.PublicKey, cert.Subject.CommonName, cert.NotBefore, cert.NotAfter, now)
	}
	return pc
}

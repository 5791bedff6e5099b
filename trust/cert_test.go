package trust

import (
	"bytes"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"errors"
	"fmt"
	"io"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/nats-io/nkeys"
)

func serverKey(t testing.TB, seed byte) nkeys.KeyPair {
	return testKey(t, nkeys.PrefixByteServer, seed)
}

// edKey is the Ed25519 private key behind an nkey seed.
func edKey(t testing.TB, kp nkeys.KeyPair) ed25519.PrivateKey {
	t.Helper()
	seed, err := kp.Seed()
	if err != nil {
		t.Fatal(err)
	}
	_, raw, err := nkeys.DecodeSeed(seed)
	if err != nil {
		t.Fatal(err)
	}
	return ed25519.NewKeyFromSeed(raw)
}

func nodeCert(t testing.TB, kp nkeys.KeyPair, cred RouteCredential, now time.Time) tls.Certificate {
	t.Helper()
	c, err := NodeCertificate(kp, cred, now)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// template returns NodeCertificate's template for pub at now, for tests that
// change one field of it.
func template(t testing.TB, pub string, now time.Time) *x509.Certificate {
	t.Helper()
	tmpl, err := nodeTemplate(pub, now)
	if err != nil {
		t.Fatal(err)
	}
	return tmpl
}

// signCert returns the DER of tmpl issued by parent (tmpl itself when nil)
// and signed with key.
func signCert(t testing.TB, tmpl, parent *x509.Certificate, key crypto.Signer) []byte {
	t.Helper()
	if parent == nil {
		parent = tmpl
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, parent, key.Public(), key)
	if err != nil {
		t.Fatal(err)
	}
	return der
}

// withCredExt returns a certificate of kp at now whose route credential
// extension value is v, signed properly.
func withCredExt(t testing.TB, kp nkeys.KeyPair, v []byte, critical bool) []byte {
	t.Helper()
	tmpl := template(t, pubOf(t, kp), t0)
	tmpl.ExtraExtensions = []pkix.Extension{{Id: oidRouteCredential, Critical: critical, Value: v}}
	return signCert(t, tmpl, nil, edKey(t, kp))
}

func fixedSecret(b byte) []byte { return bytes.Repeat([]byte{b}, SecretSize) }

func testBoundToken(t testing.TB, secret []byte, pub string) string {
	t.Helper()
	tok, _, err := IssueBoundToken(secret, time.Hour, t0, pub)
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

func testToken(t testing.TB, secret []byte) string {
	t.Helper()
	tok, _, err := IssueToken(secret, time.Hour, t0)
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

func TestRouteProof(t *testing.T) {
	t.Parallel()
	secret, other := fixedSecret(1), fixedSecret(2)
	a, b := pubOf(t, serverKey(t, 1)), pubOf(t, serverKey(t, 2))
	p := RouteProof(secret, a)
	if len(p) != RouteProofSize {
		t.Fatalf("proof of %d bytes", len(p))
	}
	for _, tc := range []struct {
		name   string
		secret []byte
		pub    string
		proof  []byte
		want   bool
	}{
		{"right secret and key", secret, a, p, true},
		{"other secret", other, a, p, false},
		{"other key", secret, b, p, false},
		{"proof of the other key", secret, a, RouteProof(secret, b), false},
		{"join proof is not a route proof", secret, a, Prove(secret, nil, a), false},
		{"truncated", secret, a, p[:31], false},
		{"empty proof", secret, a, nil, false},
		{"short secret", secret[:16], a, RouteProof(secret[:16], a), false},
		{"empty secret", nil, a, RouteProof(nil, a), false},
	} {
		if got := CheckRouteProof(tc.secret, tc.pub, tc.proof); got != tc.want {
			t.Errorf("%s: CheckRouteProof = %v, want %v", tc.name, got, tc.want)
		}
	}
}

func TestNodeCertificateRoundTrip(t *testing.T) {
	t.Parallel()
	secret := fixedSecret(7)
	for _, kp := range []nkeys.KeyPair{serverKey(t, 1), userKey(t, 2)} {
		pub := pubOf(t, kp)
		for _, cred := range []RouteCredential{
			{},
			{Proof: RouteProof(secret, pub)},
			{Token: testToken(t, secret)},
			{Token: testBoundToken(t, secret, pubOf(t, userKey(t, 2)))},
		} {
			name := fmt.Sprintf("%c/proof=%v/token=%d", pub[0], cred.Proof != nil, len(cred.Token))
			t.Run(name, func(t *testing.T) {
				t.Parallel()
				c := nodeCert(t, kp, cred, t0)
				if len(c.Certificate) != 1 || c.Leaf == nil {
					t.Fatalf("%d certificates, leaf %v", len(c.Certificate), c.Leaf)
				}
				if _, ok := c.PrivateKey.(ed25519.PrivateKey); !ok {
					t.Fatalf("private key %T", c.PrivateKey)
				}
				checkLeaf(t, c.Leaf, pub, !cred.IsZero())

				got, err := CheckPeerCertificate(c.Certificate, t0)
				if err != nil {
					t.Fatal(err)
				}
				want := PeerCert{Pub: pub, Cred: cred}
				if diff := cmp.Diff(want, got); diff != "" {
					t.Fatalf("PeerCert (-want +got):\n%s", diff)
				}
				if cred.Proof != nil && (!CheckRouteProof(secret, got.Pub, got.Cred.Proof) || CheckRouteProof(fixedSecret(8), got.Pub, got.Cred.Proof)) {
					t.Fatal("carried proof does not check against exactly its secret")
				}
				if cred.Token != "" {
					if _, err := ParseToken(got.Cred.Token, secret, t0); err != nil {
						t.Fatal(err)
					}
				}
			})
		}
	}
}

// checkLeaf checks the fields NodeCertificate promises.
func checkLeaf(t *testing.T, leaf *x509.Certificate, pub string, hasCred bool) {
	t.Helper()
	switch {
	case leaf.Subject.CommonName != pub || leaf.Issuer.CommonName != pub:
		t.Errorf("subject %q issuer %q, want CN=%s", leaf.Subject, leaf.Issuer, pub)
	case !leaf.NotBefore.Equal(t0.Add(-time.Hour)) || !leaf.NotAfter.Equal(t0.AddDate(20, 0, 0)):
		t.Errorf("valid %v .. %v", leaf.NotBefore, leaf.NotAfter)
	case leaf.KeyUsage != x509.KeyUsageDigitalSignature:
		t.Errorf("key usage %v", leaf.KeyUsage)
	case !cmp.Equal(leaf.ExtKeyUsage, []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth}):
		t.Errorf("ext key usage %v", leaf.ExtKeyUsage)
	case len(leaf.DNSNames)+len(leaf.IPAddresses)+len(leaf.URIs)+len(leaf.EmailAddresses) != 0:
		t.Errorf("names %v %v %v %v", leaf.DNSNames, leaf.IPAddresses, leaf.URIs, leaf.EmailAddresses)
	case leaf.IsCA || leaf.SerialNumber.Sign() <= 0:
		t.Errorf("IsCA %v serial %v", leaf.IsCA, leaf.SerialNumber)
	}
	n := 0
	for _, e := range leaf.Extensions {
		if e.Id.Equal(oidRouteCredential) {
			n++
			if e.Critical {
				t.Error("route credential extension is critical")
			}
		}
	}
	if want := map[bool]int{false: 0, true: 1}[hasCred]; n != want {
		t.Errorf("%d route credential extensions, want %d", n, want)
	}
}

func TestNodeCertificateSerialIsRandom(t *testing.T) {
	t.Parallel()
	kp := serverKey(t, 1)
	a, b := nodeCert(t, kp, RouteCredential{}, t0), nodeCert(t, kp, RouteCredential{}, t0)
	if a.Leaf.SerialNumber.Cmp(b.Leaf.SerialNumber) == 0 {
		t.Fatalf("two certificates with serial %v", a.Leaf.SerialNumber)
	}
}

func TestNodeCertificateRefuses(t *testing.T) {
	t.Parallel()
	kp := serverKey(t, 1)
	pub := pubOf(t, kp)
	pubOnly, err := nkeys.FromPublicKey(pub)
	if err != nil {
		t.Fatal(err)
	}
	curve, err := nkeys.CreateCurveKeys()
	if err != nil {
		t.Fatal(err)
	}
	secret := fixedSecret(3)
	for _, tc := range []struct {
		name string
		kp   nkeys.KeyPair
		cred RouteCredential
		want error  // nil: any error
		msg  string // in the message
	}{
		{"nil key pair", nil, RouteCredential{}, ErrKey, "nil key pair"},
		{"public-only key pair", pubOnly, RouteCredential{}, ErrKey, "no seed"},
		{"account key", testKey(t, nkeys.PrefixByteAccount, 1), RouteCredential{}, ErrKey, "prefix 'A'"},
		{"operator key", testKey(t, nkeys.PrefixByteOperator, 1), RouteCredential{}, ErrKey, "prefix 'O'"},
		{"curve key", curve, RouteCredential{}, ErrKey, "prefix 'X'"},
		{"proof and token", kp, RouteCredential{Proof: RouteProof(secret, pub), Token: testToken(t, secret)}, nil, "both a proof and a token"},
		{"short proof", kp, RouteCredential{Proof: make([]byte, 16)}, nil, "route proof of 16 bytes"},
		{"malformed token", kp, RouteCredential{Token: "rntok_abc"}, ErrTokenMalformed, "characters"},
		{"secret as token", kp, RouteCredential{Token: SecretPrefix + b64.EncodeToString(secret)}, ErrTokenMalformed, "does not start with"},
	} {
		_, err := NodeCertificate(tc.kp, tc.cred, t0)
		if err == nil || (tc.want != nil && !errors.Is(err, tc.want)) || !strings.Contains(err.Error(), tc.msg) {
			t.Errorf("%s: error %v, want %v with %q", tc.name, err, tc.want, tc.msg)
		}
	}
}

func TestCheckPeerCertificateRejects(t *testing.T) {
	t.Parallel()
	kp, other := serverKey(t, 1), serverKey(t, 2)
	pub, priv := pubOf(t, kp), edKey(t, kp)
	good := nodeCert(t, kp, RouteCredential{}, t0).Certificate[0]

	ec, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	rsaKey, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	modify := func(f func(*x509.Certificate)) []byte {
		tmpl := template(t, pub, t0)
		f(tmpl)
		return signCert(t, tmpl, nil, priv)
	}
	badSig := bytes.Clone(good)
	badSig[len(badSig)-1] ^= 1
	account := testKey(t, nkeys.PrefixByteAccount, 1)
	otherIssuer := template(t, pubOf(t, other), t0)
	unknownCritical := pkix.Extension{Id: asn1.ObjectIdentifier{1, 2, 3, 4}, Critical: true, Value: []byte{5, 0}}
	validCred, err := encodeRouteCredential(RouteCredential{Proof: make([]byte, RouteProofSize)})
	if err != nil {
		t.Fatal(err)
	}

	for _, tc := range []struct {
		name string
		raw  [][]byte
		now  time.Time // zero: t0
		msg  string    // in the error
	}{
		{"no certificate", nil, time.Time{}, "0 certificates"},
		{"two certificates", [][]byte{good, good}, time.Time{}, "2 certificates"},
		{"too large", [][]byte{make([]byte, MaxPeerCertSize+1)}, time.Time{}, "8193 bytes"},
		{"not DER", [][]byte{[]byte("-----BEGIN CERTIFICATE-----")}, time.Time{}, "x509"},
		{"empty", [][]byte{nil}, time.Time{}, "x509"},
		{"trailing byte", [][]byte{append(bytes.Clone(good), 0)}, time.Time{}, "trailing data"},
		{"truncated", [][]byte{good[:len(good)-1]}, time.Time{}, "x509"},
		{"bad signature", [][]byte{badSig}, time.Time{}, "self-signature does not verify"},
		{"ECDSA key", [][]byte{signCert(t, template(t, pub, t0), nil, ec)}, time.Time{}, "ECDSA key, want Ed25519"},
		{"RSA key", [][]byte{signCert(t, template(t, pub, t0), nil, rsaKey)}, time.Time{}, "RSA key, want Ed25519"},
		{"CN names another key", [][]byte{signCert(t, template(t, pubOf(t, other), t0), nil, priv)}, time.Time{}, "certificate's key is another"},
		{"CN is an account key", [][]byte{signCert(t, template(t, pubOf(t, account), t0), nil, edKey(t, account))}, time.Time{}, "not a user or server nkey"},
		{"CN is not a key", [][]byte{signCert(t, template(t, "node-1", t0), nil, priv)}, time.Time{}, "not a user or server nkey"},
		{"CN with a space", [][]byte{signCert(t, template(t, pub+" ", t0), nil, priv)}, time.Time{}, "not a user or server nkey"},
		{"no CN", [][]byte{modify(func(c *x509.Certificate) { c.Subject = pkix.Name{} })}, time.Time{}, "single CN"},
		{"CN and O", [][]byte{modify(func(c *x509.Certificate) { c.Subject.Organization = []string{"robonet"} })}, time.Time{}, "single CN"},
		{"CN twice", [][]byte{modify(func(c *x509.Certificate) {
			c.Subject.ExtraNames = []pkix.AttributeTypeAndValue{{Type: oidCommonName, Value: pub}, {Type: oidCommonName, Value: pub}}
		})}, time.Time{}, "single CN"},
		{"issued by another name", [][]byte{signCert(t, template(t, pub, t0), otherIssuer, priv)}, time.Time{}, "not self-signed"},
		{"expired", [][]byte{good}, t0.AddDate(20, 0, 0).Add(time.Nanosecond), "not at 2046"},
		{"not yet valid", [][]byte{good}, t0.Add(-time.Hour - time.Nanosecond), "valid from 2026-03-01T11:00:00Z"},
		{"unknown critical extension", [][]byte{modify(func(c *x509.Certificate) { c.ExtraExtensions = []pkix.Extension{unknownCritical} })}, time.Time{}, "unknown critical extension 1.2.3.4"},
		{"critical credential", [][]byte{withCredExt(t, kp, validCred, true)}, time.Time{}, "marked critical"},
		{"duplicate credential", [][]byte{modify(func(c *x509.Certificate) {
			e := pkix.Extension{Id: oidRouteCredential, Value: validCred}
			c.ExtraExtensions = []pkix.Extension{e, e}
		})}, time.Time{}, "duplicate extension"},
		{"malformed credential", [][]byte{withCredExt(t, kp, validCred[:10], false)}, time.Time{}, "route credential extension: not a DER OCTET STRING"},
	} {
		now := tc.now
		if now.IsZero() {
			now = t0
		}
		pc, err := CheckPeerCertificate(tc.raw, now)
		if !errors.Is(err, ErrPeerCert) || !strings.Contains(err.Error(), tc.msg) {
			t.Errorf("%s: got %+v, error %v; want ErrPeerCert with %q", tc.name, pc, err, tc.msg)
		}
		if !cmp.Equal(pc, PeerCert{}) {
			t.Errorf("%s: PeerCert %+v returned with an error", tc.name, pc)
		}
	}
}

func TestCheckPeerCertificateValidityIsInclusive(t *testing.T) {
	t.Parallel()
	c := nodeCert(t, serverKey(t, 1), RouteCredential{}, t0)
	for _, now := range []time.Time{c.Leaf.NotBefore, t0, c.Leaf.NotAfter} {
		if _, err := CheckPeerCertificate(c.Certificate, now); err != nil {
			t.Errorf("at %v: %v", now, err)
		}
	}
}

func TestRouteCredentialEncoding(t *testing.T) {
	t.Parallel()
	secret := fixedSecret(9)
	tok := testToken(t, secret)
	boundTok, _, err := IssueBoundToken(secret, time.Hour, t0, pubOf(t, userKey(t, 3)))
	if err != nil {
		t.Fatal(err)
	}
	proof := RouteProof(secret, pubOf(t, serverKey(t, 1)))
	ext := func(parts ...[]byte) []byte { return bytes.Join(parts, nil) }
	hdr := func(n int, kind byte) []byte { return []byte{asn1.TagOctetString, byte(2 + n), credVersion, kind} }

	// The two valid spellings, byte for byte.
	for _, tc := range []struct {
		cred RouteCredential
		want []byte
	}{
		{RouteCredential{Proof: proof}, ext(hdr(32, 1), proof)},
		{RouteCredential{Token: tok}, ext(hdr(TokenTextLen, 2), []byte(tok))},
		{RouteCredential{Token: boundTok}, ext([]byte{asn1.TagOctetString, 0x81, byte(2 + BoundTokenTextLen), credVersion, 2}, []byte(boundTok))},
	} {
		v, err := encodeRouteCredential(tc.cred)
		if err != nil || !bytes.Equal(v, tc.want) {
			t.Fatalf("encode %+v = %x, %v; want %x", tc.cred, v, err, tc.want)
		}
		got, err := parseRouteCredential(v)
		if err != nil || !cmp.Equal(got, tc.cred) {
			t.Fatalf("parse %x = %+v, %v", v, got, err)
		}
	}

	tokenBytes := func(s string) []byte { return []byte(s) }
	badVersion := TokenPrefix + b64.EncodeToString(append([]byte{2}, make([]byte, tokenSize-1)...))
	lastBits := tok[:len(tok)-1] + "D" // 87 base64 characters carry 2 spare bits, which must be zero
	for _, tc := range []struct {
		name string
		v    []byte
		msg  string
	}{
		{"empty", nil, "OCTET STRING"},
		{"tag only", []byte{asn1.TagOctetString}, "OCTET STRING"},
		{"empty OCTET STRING", []byte{asn1.TagOctetString, 0}, "OCTET STRING"},
		{"version only", []byte{asn1.TagOctetString, 1, credVersion}, "OCTET STRING"},
		{"UTF8String instead", ext([]byte{asn1.TagUTF8String, 34, 1, 1}, proof), "OCTET STRING"},
		{"constructed OCTET STRING", ext([]byte{0x24, 34, 1, 1}, proof), "OCTET STRING"},
		{"long-form length", ext([]byte{asn1.TagOctetString, 0x81, 34, 1, 1}, proof), "OCTET STRING"},
		{"length byte of the long form", ext([]byte{asn1.TagOctetString, 0x82, 1, 1}, make([]byte, 0x80)), "OCTET STRING"},
		{"length too long", ext([]byte{asn1.TagOctetString, 35, 1, 1}, proof), "OCTET STRING"},
		{"length too short", ext([]byte{asn1.TagOctetString, 33, 1, 1}, proof), "OCTET STRING"},
		{"trailing byte", ext(hdr(32, 1), proof, []byte{0}), "OCTET STRING"},
		{"version 0", ext([]byte{asn1.TagOctetString, 34, 0, 1}, proof), "version 0"},
		{"version 2", ext([]byte{asn1.TagOctetString, 34, 2, 1}, proof), "version 2"},
		{"kind 0", ext(hdr(32, 0), proof), "unknown kind 0"},
		{"kind 3", ext(hdr(32, 3), proof), "unknown kind 3"},
		{"empty proof", hdr(0, 1), "route proof of 0 bytes"},
		{"short proof", ext(hdr(31, 1), proof[:31]), "route proof of 31 bytes"},
		{"long proof", ext(hdr(33, 1), proof, []byte{0}), "route proof of 33 bytes"},
		{"proof kind with a token", ext(hdr(TokenTextLen, 1), tokenBytes(tok)), "route proof of 93 bytes"},
		{"token kind with a proof", ext(hdr(32, 2), proof), "malformed join token"},
		{"short token", ext(hdr(TokenTextLen-1, 2), tokenBytes(tok[:len(tok)-1])), "92 characters"},
		{"long token", ext(hdr(TokenTextLen+1, 2), tokenBytes(tok+"A")), "94 characters"},
		{"secret prefix", ext(hdr(TokenTextLen, 2), tokenBytes(SecretPrefix+tok[len(TokenPrefix):])), "does not start with"},
		{"padding", ext(hdr(TokenTextLen, 2), tokenBytes(tok[:len(tok)-1]+"=")), "not base64url"},
		{"standard base64", ext(hdr(TokenTextLen, 2), tokenBytes(tok[:10]+"+"+tok[11:])), "not base64url"},
		{"line feed", ext(hdr(TokenTextLen, 2), tokenBytes(tok[:10]+"\n"+tok[11:])), "not base64url"},
		{"spare bits set", ext(hdr(TokenTextLen, 2), tokenBytes(lastBits)), "not base64url"},
		{"token version 2 of version 1 length", ext(hdr(TokenTextLen, 2), tokenBytes(badVersion)), "version 2 in 65 bytes"},
		{"token version 3", ext(hdr(TokenTextLen, 2), tokenBytes(TokenPrefix+b64.EncodeToString(append([]byte{3}, make([]byte, tokenSize-1)...)))), "version 3, want 1 or 2"},
		{"bound token in the short length form", ext([]byte{asn1.TagOctetString, byte(2 + BoundTokenTextLen), credVersion, 2}, tokenBytes(boundTok)), "OCTET STRING"},
		{"bound token with a non-minimal length", ext([]byte{asn1.TagOctetString, 0x82, 0, byte(2 + BoundTokenTextLen), credVersion, 2}, tokenBytes(boundTok)), "OCTET STRING"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			c, err := parseRouteCredential(tc.v)
			if err == nil || !strings.Contains(err.Error(), tc.msg) {
				t.Fatalf("parse %x = %+v, %v; want an error with %q", tc.v, c, err, tc.msg)
			}
			// The same bytes in a properly signed certificate.
			_, err = CheckPeerCertificate([][]byte{withCredExt(t, serverKey(t, 1), tc.v, false)}, t0)
			if !errors.Is(err, ErrPeerCert) || !strings.Contains(err.Error(), tc.msg) {
				t.Fatalf("certificate with extension %x: %v; want ErrPeerCert with %q", tc.v, err, tc.msg)
			}
		})
	}
}

// routeConfig is the route TLS configuration the node builds: TLS 1.3 only,
// the peer's certificate checked by CheckPeerCertificate and admit instead of
// chain verification, and no session resumption (a resumed session skips
// VerifyPeerCertificate). One config serves both sides: InsecureSkipVerify
// only affects the dialer, ClientAuth only the acceptor.
func routeConfig(cert tls.Certificate, now time.Time, admit func(PeerCert) error) *tls.Config {
	return &tls.Config{
		MinVersion:             tls.VersionTLS13,
		Certificates:           []tls.Certificate{cert},
		InsecureSkipVerify:     true,
		ClientAuth:             tls.RequireAnyClientCert,
		SessionTicketsDisabled: true,
		VerifyPeerCertificate: func(raw [][]byte, _ [][]*x509.Certificate) error {
			pc, err := CheckPeerCertificate(raw, now)
			if err != nil {
				return err
			}
			return admit(pc)
		},
	}
}

var errNotAdmitted = errors.New("not admitted")

// admission is a node's accept rule: a member key, or a proof under the
// swarm secret, or an unused join token. It records what it admitted.
type admission struct {
	members map[string]bool
	secret  []byte // nil: the node has no secret and admits members only

	mu       sync.Mutex // guards used, admitted
	used     map[string]bool
	admitted []PeerCert
}

func newAdmission(secret []byte, members ...string) *admission {
	a := &admission{members: map[string]bool{}, secret: secret, used: map[string]bool{}}
	for _, m := range members {
		a.members[m] = true
	}
	return a
}

func (a *admission) admit(pc PeerCert) error {
	a.mu.Lock()
	defer a.mu.Unlock()
	switch {
	case a.members[pc.Pub]:
	case pc.Cred.Proof != nil && CheckRouteProof(a.secret, pc.Pub, pc.Cred.Proof):
	case pc.Cred.Token != "" && a.secret != nil:
		c, err := ParseToken(pc.Cred.Token, a.secret, t0)
		if err != nil {
			return fmt.Errorf("%s: %w", pc.Pub, err)
		}
		if a.used[c.ID] {
			return fmt.Errorf("%s: %w: token %s already used", pc.Pub, errNotAdmitted, c.ID)
		}
		a.used[c.ID] = true
	default:
		return fmt.Errorf("%s: %w", pc.Pub, errNotAdmitted)
	}
	a.admitted = append(a.admitted, pc)
	return nil
}

func (a *admission) last() PeerCert {
	a.mu.Lock()
	defer a.mu.Unlock()
	if len(a.admitted) == 0 {
		return PeerCert{}
	}
	return a.admitted[len(a.admitted)-1]
}

// handshake runs a TLS handshake over loopback TCP and then has the acceptor
// send one byte, so a client certificate the acceptor refuses (after the
// dialer's TLS 1.3 handshake already returned) fails the dialer too.
func handshake(t *testing.T, client, server *tls.Config) (clientErr, serverErr error) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	deadline := time.Now().Add(10 * time.Second)
	done := make(chan error, 1)
	go func() {
		c, err := ln.Accept()
		if err != nil {
			done <- err
			return
		}
		defer c.Close()
		c.SetDeadline(deadline)
		tc := tls.Server(c, server)
		if err = tc.Handshake(); err == nil {
			if tc.ConnectionState().Version != tls.VersionTLS13 {
				err = fmt.Errorf("version %x", tc.ConnectionState().Version)
			} else {
				_, err = tc.Write([]byte{'x'})
			}
		}
		done <- err
	}()
	c, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	c.SetDeadline(deadline)
	tc := tls.Client(c, client)
	if clientErr = tc.Handshake(); clientErr == nil {
		var b [1]byte
		_, clientErr = io.ReadFull(tc, b[:])
	}
	c.Close()
	return clientErr, <-done
}

func TestRouteHandshake(t *testing.T) {
	t.Parallel()
	secret, otherSecret := fixedSecret(4), fixedSecret(5)
	member, joiner := serverKey(t, 1), serverKey(t, 2)
	memberPub, joinerPub := pubOf(t, member), pubOf(t, joiner)
	memberCert := nodeCert(t, member, RouteCredential{Proof: RouteProof(secret, memberPub)}, t0)

	// Certificates a node would never make.
	ec, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	ecCert := tls.Certificate{Certificate: [][]byte{signCert(t, template(t, joinerPub, t0), nil, ec)}, PrivateKey: ec}
	// The joiner's key, named as the member: it holds the key it presents,
	// so only the CN check stops it.
	impostor := tls.Certificate{Certificate: [][]byte{signCert(t, template(t, memberPub, t0), nil, edKey(t, joiner))}, PrivateKey: edKey(t, joiner)}
	expired := nodeCert(t, joiner, RouteCredential{Proof: RouteProof(secret, joinerPub)}, t0.AddDate(-21, 0, 0))

	const (
		ok = iota
		serverRefuses
		clientRefuses
	)
	for _, tc := range []struct {
		name           string
		client, server tls.Certificate
		clientRule     *admission // the joiner's
		serverRule     *admission // the member's
		want           int
		why            error // the refusing side's reason
	}{
		{"members", nodeCert(t, joiner, RouteCredential{}, t0), memberCert,
			newAdmission(nil, memberPub), newAdmission(nil, memberPub, joinerPub), ok, nil},
		{"proof", nodeCert(t, joiner, RouteCredential{Proof: RouteProof(secret, joinerPub)}, t0), memberCert,
			newAdmission(secret), newAdmission(secret, memberPub), ok, nil},
		{"token", nodeCert(t, joiner, RouteCredential{Token: testToken(t, secret)}, t0), memberCert,
			newAdmission(nil, memberPub), newAdmission(secret, memberPub), ok, nil},
		{"proof under another secret", nodeCert(t, joiner, RouteCredential{Proof: RouteProof(otherSecret, joinerPub)}, t0), memberCert,
			newAdmission(nil, memberPub), newAdmission(secret, memberPub), serverRefuses, errNotAdmitted},
		{"member's proof carried by another key", nodeCert(t, joiner, RouteCredential{Proof: RouteProof(secret, memberPub)}, t0), memberCert,
			newAdmission(nil, memberPub), newAdmission(secret), serverRefuses, errNotAdmitted},
		{"token from another swarm", nodeCert(t, joiner, RouteCredential{Token: testToken(t, otherSecret)}, t0), memberCert,
			newAdmission(nil, memberPub), newAdmission(secret, memberPub), serverRefuses, ErrTokenMAC},
		{"unknown key without credential", nodeCert(t, joiner, RouteCredential{}, t0), memberCert,
			newAdmission(nil, memberPub), newAdmission(secret, memberPub), serverRefuses, errNotAdmitted},
		{"dialer refuses the acceptor", nodeCert(t, joiner, RouteCredential{}, t0), memberCert,
			newAdmission(nil), newAdmission(nil, joinerPub), clientRefuses, errNotAdmitted},
		{"CN names another key", impostor, memberCert,
			newAdmission(nil, memberPub), newAdmission(secret, memberPub), serverRefuses, ErrPeerCert},
		{"ECDSA certificate", ecCert, memberCert,
			newAdmission(nil, memberPub), newAdmission(secret, memberPub, joinerPub), serverRefuses, ErrPeerCert},
		{"acceptor with an ECDSA certificate", nodeCert(t, joiner, RouteCredential{}, t0), ecCert,
			newAdmission(nil, memberPub, joinerPub), newAdmission(nil, joinerPub), clientRefuses, ErrPeerCert},
		{"expired certificate", expired, memberCert,
			newAdmission(nil, memberPub), newAdmission(secret, memberPub, joinerPub), serverRefuses, ErrPeerCert},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			cerr, serr := handshake(t,
				routeConfig(tc.client, t0, tc.clientRule.admit),
				routeConfig(tc.server, t0, tc.serverRule.admit))
			switch tc.want {
			case ok:
				if cerr != nil || serr != nil {
					t.Fatalf("dialer: %v; acceptor: %v", cerr, serr)
				}
				if got := tc.serverRule.last(); got.Pub != joinerPub {
					t.Errorf("acceptor admitted %+v, want %s", got, joinerPub)
				}
				if got := tc.clientRule.last(); got.Pub != memberPub {
					t.Errorf("dialer admitted %+v, want %s", got, memberPub)
				}
			case serverRefuses:
				if !errors.Is(serr, tc.why) || cerr == nil {
					t.Fatalf("dialer: %v; acceptor: %v, want %v", cerr, serr, tc.why)
				}
			case clientRefuses:
				if !errors.Is(cerr, tc.why) || serr == nil {
					t.Fatalf("dialer: %v, want %v; acceptor: %v", cerr, tc.why, serr)
				}
			}
		})
	}
}

// TestRouteHandshakeTokenIsSingleUse: the acceptor's rule records the token,
// so a second route with the same token (even from another key) is refused.
func TestRouteHandshakeTokenIsSingleUse(t *testing.T) {
	t.Parallel()
	secret := fixedSecret(6)
	member := serverKey(t, 1)
	memberPub := pubOf(t, member)
	memberCert := nodeCert(t, member, RouteCredential{}, t0)
	rule := newAdmission(secret, memberPub)
	tok := testToken(t, secret)
	for i, kp := range []nkeys.KeyPair{serverKey(t, 2), serverKey(t, 3)} {
		cerr, serr := handshake(t,
			routeConfig(nodeCert(t, kp, RouteCredential{Token: tok}, t0), t0, newAdmission(nil, memberPub).admit),
			routeConfig(memberCert, t0, rule.admit))
		if i == 0 && (cerr != nil || serr != nil) {
			t.Fatalf("first use: dialer %v, acceptor %v", cerr, serr)
		}
		if i == 1 && (!errors.Is(serr, errNotAdmitted) || cerr == nil) {
			t.Fatalf("second use: dialer %v, acceptor %v", cerr, serr)
		}
	}
}

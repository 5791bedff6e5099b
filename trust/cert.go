package trust

import (
	"bytes"
	"crypto/ed25519"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"math/big"
	"net"
	"sort"
	"strings"
	"time"

	"github.com/nats-io/nkeys"
)

// ErrPeerCert means a peer's route certificate is unacceptable: not exactly
// one certificate, too large, not a self-signed Ed25519 certificate of the
// nkey its subject names, outside its validity window, or carrying a
// malformed route credential. It says nothing about whether the key is
// allowed in: that is the caller's rule, applied to the PeerCert.
var ErrPeerCert = errors.New("unacceptable peer certificate")

// MaxPeerCertSize is the largest peer certificate CheckPeerCertificate
// parses, in DER bytes. A NodeCertificate is about 400 bytes.
const MaxPeerCertSize = 8 << 10

// RouteProofSize is the size of a RouteProof (HMAC-SHA256).
const RouteProofSize = sha256.Size

// tagRouteProof keeps a route proof from being valid as any other MAC of the
// swarm secret (see the tags in hash.go).
const tagRouteProof = "robonet/route-proof\x00"

// oidRouteCredential names the certificate extension that carries a
// RouteCredential. It sits under a private-enterprise arc that robonet has not
// registered with IANA; only robonet nodes read it.
var oidRouteCredential = asn1.ObjectIdentifier{1, 3, 6, 1, 4, 1, 999999, 1, 1}

// Route credential extension value (the extnValue), a DER OCTET STRING of
//
//	0x01 (version) ‖ kind ‖ body
//
// kind 0x01: body is a RouteProof, exactly 32 bytes;
// kind 0x02: body is a join token's text, exactly TokenTextLen bytes.
// Each kind's body has a fixed size, so the whole value has one spelling; a
// certificate without a credential has no extension at all.
const (
	credVersion   = 1
	credKindProof = 1
	credKindToken = 2
)

// RouteCredential is what a node's route certificate carries besides its
// key, for a peer that does not know the key yet: at most one of the two.
type RouteCredential struct {
	Proof []byte // RouteProof(secret, pub): the owner knows the swarm secret
	Token string // a one-time join token's text ("rntok_…"), for a node that has no secret
}

// IsZero reports whether c carries nothing.
func (c RouteCredential) IsZero() bool { return len(c.Proof) == 0 && c.Token == "" }

// RouteProof returns the proof that the owner of the nkey pub knows the swarm
// secret, for its route certificate:
//
//	HMAC-SHA256(secret, "robonet/route-proof\x00" ‖ be16(len(pub)) ‖ pub)
//
// It is bound to pub, and a TLS handshake proves possession of pub's private
// key, so a proof copied from a certificate is of no use with another key.
// Public keys are KeyTextLen characters; a length above 65535 is truncated to
// 16 bits here and refused by CheckRouteProof.
func RouteProof(secret []byte, pub string) []byte {
	m := hmac.New(sha256.New, secret)
	var n [2]byte
	m.Write([]byte(tagRouteProof))
	binary.BigEndian.PutUint16(n[:], uint16(len(pub)))
	m.Write(n[:])
	m.Write([]byte(pub))
	return m.Sum(nil)
}

// CheckRouteProof reports, in constant time, whether proof is
// RouteProof(secret, pub). It is false for a secret that is not SecretSize
// bytes (an empty key would be public).
func CheckRouteProof(secret []byte, pub string, proof []byte) bool {
	if len(secret) != SecretSize || len(pub) > math.MaxUint16 {
		return false
	}
	return hmac.Equal(RouteProof(secret, pub), proof)
}

// NodeCertificate returns the route TLS certificate of the node whose nkey is
// kp (a user 'U' or server 'N' key pair with its seed): self-signed, its
// Ed25519 key derived from the nkey seed, subject CN the nkey public key,
// valid from now−1h to now+20 years, for both TLS server and client use, with
// no DNS names (peers check the key, never a name). A non-empty cred is
// carried in a non-critical extension (see the package doc). The serial
// number is random.
func NodeCertificate(kp nkeys.KeyPair, cred RouteCredential, now time.Time) (tls.Certificate, error) {
	priv, pub, err := nodeKey(kp)
	if err != nil {
		return tls.Certificate{}, fmt.Errorf("node certificate: %w", err)
	}
	tmpl, err := nodeTemplate(pub, now)
	if err != nil {
		return tls.Certificate{}, fmt.Errorf("node certificate for %s: %w", pub, err)
	}
	if !cred.IsZero() {
		v, err := encodeRouteCredential(cred)
		if err != nil {
			return tls.Certificate{}, fmt.Errorf("node certificate for %s: %w", pub, err)
		}
		tmpl.ExtraExtensions = []pkix.Extension{{Id: oidRouteCredential, Value: v}}
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, priv.Public(), priv)
	if err != nil {
		return tls.Certificate{}, fmt.Errorf("node certificate for %s: %w", pub, err)
	}
	leaf, err := x509.ParseCertificate(der)
	if err != nil {
		return tls.Certificate{}, fmt.Errorf("node certificate for %s: %w", pub, err)
	}
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: priv, Leaf: leaf}, nil
}

// nodeKey returns kp's Ed25519 private key and its public key text, refusing
// key types robonet does not use and key pairs without a seed.
func nodeKey(kp nkeys.KeyPair) (ed25519.PrivateKey, string, error) {
	if kp == nil {
		return nil, "", fmt.Errorf("%w: nil key pair", ErrKey)
	}
	pub, err := kp.PublicKey()
	if err != nil {
		return nil, "", fmt.Errorf("%w: %v", ErrKey, err)
	}
	if err := CheckKey(pub); err != nil {
		return nil, "", err
	}
	seed, err := kp.Seed()
	if err != nil {
		return nil, "", fmt.Errorf("%w %s: no seed (a public-only key pair cannot sign a certificate): %v", ErrKey, pub, err)
	}
	prefix, raw, err := nkeys.DecodeSeed(seed)
	if err != nil || len(raw) != ed25519.SeedSize {
		return nil, "", fmt.Errorf("%w %s: seed does not decode", ErrKey, pub)
	}
	want, err := keyBytes(pub)
	if err != nil {
		return nil, "", fmt.Errorf("%w %s: %v", ErrKey, pub, err)
	}
	priv := ed25519.NewKeyFromSeed(raw)
	if prefix != nkeys.Prefix(pub) || !bytes.Equal(priv.Public().(ed25519.PublicKey), want) {
		return nil, "", fmt.Errorf("%w %s: seed is not the seed of this public key", ErrKey, pub)
	}
	return priv, pub, nil
}

// keyBytes returns the Ed25519 public key inside a valid nkey public key text.
func keyBytes(pub string) (ed25519.PublicKey, error) {
	raw, err := nkeys.Decode(nkeys.Prefix(pub), []byte(pub))
	if err != nil || len(raw) != ed25519.PublicKeySize {
		return nil, fmt.Errorf("not an ed25519 nkey")
	}
	return raw, nil
}

func nodeTemplate(pub string, now time.Time) (*x509.Certificate, error) {
	// 127 random bits: positive, and at most 16 bytes (RFC 5280 allows 20).
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
	if err != nil {
		return nil, fmt.Errorf("serial number: %w", err)
	}
	serial.SetBit(serial, 0, 1) // never zero
	return &x509.Certificate{
		SerialNumber: serial,
		Subject:      pkix.Name{CommonName: pub},
		NotBefore:    now.Add(-time.Hour),
		NotAfter:     now.AddDate(20, 0, 0),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
	}, nil
}

// encodeRouteCredential returns the extension value for a non-empty cred.
func encodeRouteCredential(cred RouteCredential) ([]byte, error) {
	var kind byte
	var body []byte
	switch {
	case len(cred.Proof) > 0 && cred.Token != "":
		return nil, errors.New("route credential has both a proof and a token; carry one")
	case len(cred.Proof) > 0:
		if len(cred.Proof) != RouteProofSize {
			return nil, fmt.Errorf("route proof of %d bytes, want %d", len(cred.Proof), RouteProofSize)
		}
		kind, body = credKindProof, cred.Proof
	default:
		if err := checkTokenText(cred.Token); err != nil {
			return nil, fmt.Errorf("route credential: %w", err)
		}
		kind, body = credKindToken, []byte(cred.Token)
	}
	v := make([]byte, 0, 5+len(body))
	v = append(v, asn1.TagOctetString)
	if n := 2 + len(body); n < 0x80 {
		v = append(v, byte(n))
	} else {
		v = append(v, 0x81, byte(n)) // DER's long form; a bound token needs it
	}
	v = append(v, credVersion, kind)
	return append(v, body...), nil
}

// parseRouteCredential is the strict inverse of encodeRouteCredential.
func parseRouteCredential(v []byte) (RouteCredential, error) {
	// DER: the short length form below 0x80, else the one-byte long form
	// (0x81 n, n >= 0x80: the shortest encoding), which a bound token needs.
	const notDER = "not a DER OCTET STRING of 2 to 255 bytes"
	if len(v) < 4 || v[0] != asn1.TagOctetString {
		return RouteCredential{}, errors.New(notDER)
	}
	switch {
	case v[1] < 0x80 && int(v[1]) == len(v)-2:
		v = v[2:]
	case v[1] == 0x81 && len(v) >= 3 && v[2] >= 0x80 && int(v[2]) == len(v)-3:
		v = v[3:]
	default:
		return RouteCredential{}, errors.New(notDER)
	}
	if len(v) < 2 {
		return RouteCredential{}, errors.New(notDER)
	}
	if v[0] != credVersion {
		return RouteCredential{}, fmt.Errorf("version %d, want %d", v[0], credVersion)
	}
	body := v[2:]
	switch v[1] {
	case credKindProof:
		if len(body) != RouteProofSize {
			return RouteCredential{}, fmt.Errorf("route proof of %d bytes, want %d", len(body), RouteProofSize)
		}
		return RouteCredential{Proof: bytes.Clone(body)}, nil
	case credKindToken:
		if err := checkTokenText(string(body)); err != nil {
			return RouteCredential{}, err
		}
		return RouteCredential{Token: string(body)}, nil
	default:
		return RouteCredential{}, fmt.Errorf("unknown kind %d", v[1])
	}
}

// checkTokenText checks a join token's form without the swarm secret: the
// prefix, the length and canonical base64url of a version 1 or 2 token.
// ParseToken checks the MAC and the expiry.
func checkTokenText(s string) error {
	_, err := decodeTokenText(s)
	return err
}

// PeerCert is what CheckPeerCertificate learned from a peer's certificate.
type PeerCert struct {
	Pub  string          // the peer's nkey public key, the certificate's CN ('N…' or 'U…')
	Cred RouteCredential // as carried: NOT yet checked against any secret
}

// CheckPeerCertificate checks the certificate a route peer presented, as
// tls.Config.VerifyPeerCertificate receives it (rawCerts), at now. It
// requires exactly one certificate (robonet nodes send no chain; anything
// more is refused rather than ignored) of at most MaxPeerCertSize bytes: an
// X.509 v3 certificate with an Ed25519 key, self-signed (issuer = subject,
// signature valid under its own key), whose subject is a single CN holding a
// user or server nkey public key that encodes the same Ed25519 key, valid at
// now (bounds inclusive), without critical extensions other than those the
// x509 package handles, and whose route credential extension, if any, is well
// formed and not critical. Errors wrap ErrPeerCert.
//
// It decides nothing about admission: the caller accepts the PeerCert when
// Pub is a member, or Cred.Proof passes CheckRouteProof, or Cred.Token passes
// ParseToken and was not used before.
func CheckPeerCertificate(rawCerts [][]byte, now time.Time) (PeerCert, error) {
	if len(rawCerts) != 1 {
		return PeerCert{}, fmt.Errorf("%w: %d certificates, want exactly 1", ErrPeerCert, len(rawCerts))
	}
	raw := rawCerts[0]
	if len(raw) > MaxPeerCertSize {
		return PeerCert{}, fmt.Errorf("%w: %d bytes, at most %d", ErrPeerCert, len(raw), MaxPeerCertSize)
	}
	cert, err := x509.ParseCertificate(raw)
	if err != nil {
		return PeerCert{}, fmt.Errorf("%w: %v", ErrPeerCert, err)
	}
	if cert.Version != 3 {
		return PeerCert{}, fmt.Errorf("%w: X.509 version %d, want 3", ErrPeerCert, cert.Version)
	}
	key, ok := cert.PublicKey.(ed25519.PublicKey)
	if cert.PublicKeyAlgorithm != x509.Ed25519 || !ok || len(key) != ed25519.PublicKeySize {
		return PeerCert{}, fmt.Errorf("%w: %v key, want Ed25519", ErrPeerCert, cert.PublicKeyAlgorithm)
	}
	if cert.SignatureAlgorithm != x509.PureEd25519 {
		return PeerCert{}, fmt.Errorf("%w: signature algorithm %v, want Ed25519", ErrPeerCert, cert.SignatureAlgorithm)
	}
	// Not CheckSignatureFrom(cert): that also requires the key to be a CA's
	// (basic constraints, keyCertSign), which a node certificate is not.
	if !bytes.Equal(cert.RawIssuer, cert.RawSubject) {
		return PeerCert{}, fmt.Errorf("%w: not self-signed: issuer %q, subject %q", ErrPeerCert, shorten(cert.Issuer.String()), shorten(cert.Subject.String()))
	}
	if err := cert.CheckSignature(cert.SignatureAlgorithm, cert.RawTBSCertificate, cert.Signature); err != nil {
		return PeerCert{}, fmt.Errorf("%w: self-signature does not verify: %v", ErrPeerCert, err)
	}
	pub, err := subjectKey(cert)
	if err != nil {
		return PeerCert{}, fmt.Errorf("%w: subject %q: %v", ErrPeerCert, shorten(cert.Subject.String()), err)
	}
	named, err := keyBytes(pub)
	if err != nil || !bytes.Equal(named, key) {
		return PeerCert{}, fmt.Errorf("%w: subject names %s but the certificate's key is another", ErrPeerCert, pub)
	}
	if now.Before(cert.NotBefore) || now.After(cert.NotAfter) {
		return PeerCert{}, fmt.Errorf("%w: %s: valid from %s to %s, not at %s", ErrPeerCert, pub,
			cert.NotBefore.UTC().Format(time.RFC3339), cert.NotAfter.UTC().Format(time.RFC3339), now.UTC().Format(time.RFC3339))
	}
	pc := PeerCert{Pub: pub}
	for _, ext := range cert.Extensions {
		if !ext.Id.Equal(oidRouteCredential) {
			continue
		}
		if ext.Critical {
			return PeerCert{}, fmt.Errorf("%w: %s: route credential extension marked critical", ErrPeerCert, pub)
		}
		if !pc.Cred.IsZero() {
			return PeerCert{}, fmt.Errorf("%w: %s: two route credential extensions", ErrPeerCert, pub)
		}
		if pc.Cred, err = parseRouteCredential(ext.Value); err != nil {
			return PeerCert{}, fmt.Errorf("%w: %s: route credential extension: %v", ErrPeerCert, pub, err)
		}
	}
	if len(cert.UnhandledCriticalExtensions) > 0 {
		return PeerCert{}, fmt.Errorf("%w: %s: unknown critical extension %v", ErrPeerCert, pub, cert.UnhandledCriticalExtensions[0])
	}
	return pc, nil
}

// subjectKey returns the nkey a node certificate's subject names: its only
// attribute, a CN that CheckKey accepts.
func subjectKey(cert *x509.Certificate) (string, error) {
	names := cert.Subject.Names
	if len(names) != 1 || !names[0].Type.Equal(oidCommonName) {
		return "", errors.New("want a single CN attribute")
	}
	cn, ok := names[0].Value.(string)
	if !ok {
		return "", errors.New("CN is not a string")
	}
	if err := checkKeyText(cn); err != nil {
		return "", fmt.Errorf("CN is not a user or server nkey: %v", err)
	}
	return cn, nil
}

var oidCommonName = asn1.ObjectIdentifier{2, 5, 4, 3}

// tagClientCert keeps a client-port certificate's serial number from
// colliding with any other hash of the same key (see the tags in hash.go).
const tagClientCert = "robonet/client-cert\x00"

// Client-port certificates carry a fixed validity window, so that the same
// key and names always give the same certificate: clients that keep it as
// their CA file (the stock nats CLI's context "ca") need no update when the
// node restarts. It starts at the Unix epoch, so a machine that boots
// without a clock (a board without an RTC, before NTP) still accepts it;
// NotAfter is RFC 5280's "no well-defined expiration date".
var (
	clientCertNotBefore = time.Unix(0, 0).UTC()
	clientCertNotAfter  = time.Date(9999, 12, 31, 23, 59, 59, 0, time.UTC)
)

// MaxClientCertNames is how many names a client-port certificate lists.
const MaxClientCertNames = 64

// ClientCertificate returns the TLS certificate of a node's client port:
// self-signed by the Ed25519 key of its nkey kp, subject CN the nkey public
// key (so CheckPeerCertificate accepts it and returns that key, which is how
// robonet clients pin it), and names, IP addresses or DNS names, as subject
// alternative names for clients that check a host name (the stock nats CLI,
// whose context names the certificate itself as its CA file).
//
// It is deterministic: the same key and names (in any order, duplicates
// ignored) give the same DER bytes (Ed25519 signatures are deterministic,
// the serial number is a hash of key and names, the validity window is
// fixed), so a copy a client keeps stays valid across restarts. It is also
// a CA certificate (path length 0) for its own key, so a copy made before
// the node's names changed still verifies the new certificate: the new one
// chains to the old by subject and key. Nothing but this key can sign under
// that subject.
func ClientCertificate(kp nkeys.KeyPair, names []string) (tls.Certificate, error) {
	priv, pub, err := nodeKey(kp)
	if err != nil {
		return tls.Certificate{}, fmt.Errorf("client certificate: %w", err)
	}
	ips, dns, err := clientCertNames(names)
	if err != nil {
		return tls.Certificate{}, fmt.Errorf("client certificate for %s: %w", pub, err)
	}
	h := sha256.New()
	h.Write([]byte(tagClientCert))
	h.Write([]byte(pub))
	for _, ip := range ips {
		h.Write([]byte{0})
		h.Write([]byte(ip.String()))
	}
	for _, d := range dns {
		h.Write([]byte{1})
		h.Write([]byte(d))
	}
	sum := h.Sum(nil)
	sum[0] &= 0x7f // positive, at most 16 bytes
	serial := new(big.Int).SetBytes(sum[:16])
	serial.SetBit(serial, 0, 1) // never zero
	tmpl := &x509.Certificate{
		SerialNumber:          serial,
		Subject:               pkix.Name{CommonName: pub},
		NotBefore:             clientCertNotBefore,
		NotAfter:              clientCertNotAfter,
		KeyUsage:              x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		BasicConstraintsValid: true,
		IsCA:                  true,
		MaxPathLenZero:        true,
		IPAddresses:           ips,
		DNSNames:              dns,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, priv.Public(), priv)
	if err != nil {
		return tls.Certificate{}, fmt.Errorf("client certificate for %s: %w", pub, err)
	}
	leaf, err := x509.ParseCertificate(der)
	if err != nil {
		return tls.Certificate{}, fmt.Errorf("client certificate for %s: %w", pub, err)
	}
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: priv, Leaf: leaf}, nil
}

// clientCertNames splits names into IP addresses and DNS names, sorted and
// without duplicates.
func clientCertNames(names []string) ([]net.IP, []string, error) {
	ipSet, dnsSet := map[string]net.IP{}, map[string]bool{}
	for _, n := range names {
		n = strings.TrimSpace(n)
		if n == "" {
			continue
		}
		if ip := net.ParseIP(strings.Trim(n, "[]")); ip != nil {
			if v4 := ip.To4(); v4 != nil {
				ip = v4
			}
			if ip.IsUnspecified() {
				return nil, nil, fmt.Errorf("name %q: an unspecified address names no host", n)
			}
			ipSet[ip.String()] = ip
			continue
		}
		d := strings.ToLower(strings.TrimSuffix(n, "."))
		if !validDNSName(d) {
			return nil, nil, fmt.Errorf("name %q: not an IP address or a DNS name", shorten(n))
		}
		dnsSet[d] = true
	}
	if len(ipSet)+len(dnsSet) > MaxClientCertNames {
		return nil, nil, fmt.Errorf("%d names, at most %d", len(ipSet)+len(dnsSet), MaxClientCertNames)
	}
	var ipKeys []string
	for k := range ipSet {
		ipKeys = append(ipKeys, k)
	}
	sort.Strings(ipKeys)
	ips := make([]net.IP, 0, len(ipKeys))
	for _, k := range ipKeys {
		ips = append(ips, ipSet[k])
	}
	dns := make([]string, 0, len(dnsSet))
	for d := range dnsSet {
		dns = append(dns, d)
	}
	sort.Strings(dns)
	return ips, dns, nil
}

// validDNSName accepts a lower-case host name: labels of letters, digits
// and '-' (not at either end), 1 to 63 bytes each, 253 bytes in all.
func validDNSName(s string) bool {
	if s == "" || len(s) > 253 {
		return false
	}
	for _, l := range strings.Split(s, ".") {
		if l == "" || len(l) > 63 || l[0] == '-' || l[len(l)-1] == '-' {
			return false
		}
		for i := 0; i < len(l); i++ {
			c := l[i]
			if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-') {
				return false
			}
		}
	}
	return true
}

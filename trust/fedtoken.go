package trust

import (
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/nats-io/nkeys"

	"github.com/robonet-mesh/robonet/subjects"
)

// Federation tokens admit a child swarm to a hub swarm over leaf nodes. Like
// a join token they are "rntok_…" text with a MAC under the hub's swarm
// secret, but with their own version byte and MAC tag, so neither kind is
// ever accepted as the other. Layout before base64url:
//
//	0x03 ‖ id[16] ‖ be64(issued UnixNano) ‖ be64(expires UnixNano) ‖
//	hub[3×be16] ‖ bound[3×be16] ‖ link[32] ‖ u8(n) ‖ pins[n×32] ‖ mac[32]
//
// mac = HMAC-SHA256(secret, "robonet/fed-token\x00" ‖ every byte before it).
// hub is the issuing swarm's prefix (zone.region.swarm); bound is the child
// prefix the token is limited to, all zeros when any child in the hub's
// scope may use it. link is FedLinkKey(secret): the key hub nodes prove
// with in their leaf certificates, so a child sends its token only to a
// node of the swarm that issued it. pins are the authority pins: the
// Ed25519 keys of the founders of the hub swarm and of its ancestors, at
// most MaxFedPins, no duplicates.
const (
	fedTokenVersion = 3
	fedPrefixSize   = 3 * 2
	fedLinkSize     = sha256.Size
	fedFixedBody    = 1 + tokenIDSize + 8 + 8 + 2*fedPrefixSize + fedLinkSize + 1
	// MaxFedPins is how many authority pins a federation token carries at
	// most: a tree has zones, regions and swarms, so two ancestors and the
	// hub itself, with room for one more level.
	MaxFedPins = 4
	fedMaxSize = fedFixedBody + MaxFedPins*tokenKeySize + sha256.Size
)

const (
	tagFedToken = "robonet/fed-token\x00"
	tagFedLink  = "robonet/fed-link\x00"
)

// Federation token errors. A MAC mismatch wraps ErrTokenMAC, as for join
// tokens.
var (
	// ErrFedToken means the text is not a well-formed federation token.
	ErrFedToken = errors.New("invalid federation token")
	// ErrFedExpired means a token's first use came after its expiry.
	ErrFedExpired = errors.New("federation token expired")
	// ErrFedBound means a token bound to one child prefix was presented
	// for another.
	ErrFedBound = errors.New("federation token bound to another swarm")
)

// FedClaims are what a federation token says.
type FedClaims struct {
	ID      string           // 32 lower-case hex digits; the hub records which prefix used it
	Issued  time.Time        // when IssueFedToken ran
	Expires time.Time        // first instant the token admits no new swarm
	Hub     subjects.Chevron // the issuing swarm's prefix (3 tokens)
	Bound   subjects.Chevron // the only child prefix it admits; zero: any in the hub's scope
	Link    []byte           // FedLinkKey of the hub's secret (32 bytes)
	Pins    []string         // authority pins: founder keys ('U…'), the hub's first
}

// FedSpec is what IssueFedToken puts in a token besides its id and times.
type FedSpec struct {
	Hub   subjects.Chevron // the issuing swarm's prefix: 3 tokens
	Bound subjects.Chevron // zero, or a 3-token child prefix
	Pins  []string         // founder keys (user nkey public keys), at most MaxFedPins
}

// FedLinkKey derives from a swarm secret the key its nodes prove with on
// their leaf port (RouteProof(FedLinkKey(secret), pub) in the leaf
// certificate). It is one-way: holding it (every child node does, from its
// token) tells nothing about the secret.
func FedLinkKey(secret []byte) []byte {
	m := hmac.New(sha256.New, secret)
	m.Write([]byte(tagFedLink))
	return m.Sum(nil)
}

// IssueFedToken returns a federation token valid for first use during ttl
// from now, and its claims.
func IssueFedToken(secret []byte, spec FedSpec, ttl time.Duration, now time.Time) (string, FedClaims, error) {
	bad := func(format string, a ...any) (string, FedClaims, error) {
		return "", FedClaims{}, fmt.Errorf("issue federation token: "+format, a...)
	}
	if len(secret) != SecretSize {
		return bad("%w: %d bytes, want %d", ErrSecret, len(secret), SecretSize)
	}
	if ttl <= 0 {
		return bad("ttl %v must be positive", ttl)
	}
	exp := now.Add(ttl)
	if !inNanoRange(now) || !inNanoRange(exp) {
		return bad("time %v + %v out of range", now, ttl)
	}
	if spec.Hub.Len() != 3 {
		return bad("%w: hub prefix %q: want zone.region.swarm", ErrFedToken, spec.Hub)
	}
	if !spec.Bound.IsZero() && spec.Bound.Len() != 3 {
		return bad("%w: child prefix %q: want zone.region.swarm", ErrFedToken, spec.Bound)
	}
	if len(spec.Pins) > MaxFedPins {
		return bad("%w: %d authority pins, at most %d", ErrFedToken, len(spec.Pins), MaxFedPins)
	}
	var raw [tokenIDSize]byte
	if _, err := rand.Read(raw[:]); err != nil {
		return bad("%v", err)
	}
	c := FedClaims{ID: hex.EncodeToString(raw[:]), Issued: now, Expires: exp, Hub: spec.Hub, Bound: spec.Bound,
		Link: FedLinkKey(secret), Pins: append([]string(nil), spec.Pins...)}
	b := make([]byte, 0, fedMaxSize)
	b = append(b, fedTokenVersion)
	b = append(b, raw[:]...)
	b = binary.BigEndian.AppendUint64(b, uint64(now.UnixNano()))
	b = binary.BigEndian.AppendUint64(b, uint64(exp.UnixNano()))
	b = appendPrefix(b, spec.Hub)
	b = appendPrefix(b, spec.Bound)
	b = append(b, c.Link...)
	b = append(b, byte(len(spec.Pins)))
	seen := map[string]bool{}
	for _, p := range spec.Pins {
		key, err := userKeyBytes(p)
		if err != nil {
			return bad("authority pin: %w", err)
		}
		if seen[p] {
			return bad("%w: authority pin %s given twice", ErrFedToken, AbbrevKey(p))
		}
		seen[p] = true
		b = append(b, key...)
	}
	b = append(b, fedMAC(secret, b)...)
	c.Issued, c.Expires = c.Issued.UTC(), c.Expires.UTC()
	return TokenPrefix + b64.EncodeToString(b), c, nil
}

func appendPrefix(b []byte, p subjects.Chevron) []byte {
	toks := p.Tokens()
	for i := 0; i < 3; i++ {
		var v uint16
		if i < len(toks) {
			v = toks[i]
		}
		b = binary.BigEndian.AppendUint16(b, v)
	}
	return b
}

func fedMAC(secret, body []byte) []byte {
	m := hmac.New(sha256.New, secret)
	m.Write([]byte(tagFedToken))
	m.Write(body)
	return m.Sum(nil)
}

// IsFedToken reports whether s has the form of a federation token (a
// quick test to tell it from a join token; InspectFedToken checks it).
func IsFedToken(s string) bool {
	if !strings.HasPrefix(s, TokenPrefix) || len(s) < len(TokenPrefix)+4 {
		return false
	}
	b, err := decodeB64(s[len(TokenPrefix) : len(TokenPrefix)+4])
	return err == nil && len(b) == 3 && b[0] == fedTokenVersion
}

// decodeFedText checks a federation token's form without the secret and
// returns its bytes.
func decodeFedText(s string) ([]byte, error) {
	if !strings.HasPrefix(s, TokenPrefix) {
		return nil, fmt.Errorf("%w: does not start with %q", ErrFedToken, TokenPrefix)
	}
	maxText := len(TokenPrefix) + (fedMaxSize*8+5)/6
	if len(s) > maxText {
		return nil, fmt.Errorf("%w: %d characters, at most %d", ErrFedToken, len(s), maxText)
	}
	b, err := decodeB64(s[len(TokenPrefix):])
	if err != nil {
		return nil, fmt.Errorf("%w: not base64url: %v", ErrFedToken, err)
	}
	if len(b) == 0 || b[0] != fedTokenVersion {
		v := -1
		if len(b) > 0 {
			v = int(b[0])
		}
		return nil, fmt.Errorf("%w: version %d, want %d (a join token is not a federation token)", ErrFedToken, v, fedTokenVersion)
	}
	if len(b) < fedFixedBody+sha256.Size {
		return nil, fmt.Errorf("%w: %d bytes, at least %d", ErrFedToken, len(b), fedFixedBody+sha256.Size)
	}
	n := int(b[fedFixedBody-1])
	if n > MaxFedPins {
		return nil, fmt.Errorf("%w: %d authority pins, at most %d", ErrFedToken, n, MaxFedPins)
	}
	if want := fedFixedBody + n*tokenKeySize + sha256.Size; len(b) != want {
		return nil, fmt.Errorf("%w: %d bytes with %d pins, want %d", ErrFedToken, len(b), n, want)
	}
	return b, nil
}

// fedClaims decodes the claims of a well-formed token's bytes.
func fedClaims(b []byte) (FedClaims, error) {
	issued := int64(binary.BigEndian.Uint64(b[1+tokenIDSize:]))
	expires := int64(binary.BigEndian.Uint64(b[1+tokenIDSize+8:]))
	if expires <= issued {
		return FedClaims{}, fmt.Errorf("%w: expires before it was issued", ErrFedToken)
	}
	off := 1 + tokenIDSize + 16
	hub, err := readPrefix(b[off:], false)
	if err != nil {
		return FedClaims{}, fmt.Errorf("%w: hub prefix: %v", ErrFedToken, err)
	}
	bound, err := readPrefix(b[off+fedPrefixSize:], true)
	if err != nil {
		return FedClaims{}, fmt.Errorf("%w: child prefix: %v", ErrFedToken, err)
	}
	off += 2 * fedPrefixSize
	c := FedClaims{
		ID:      hex.EncodeToString(b[1 : 1+tokenIDSize]),
		Issued:  time.Unix(0, issued).UTC(),
		Expires: time.Unix(0, expires).UTC(),
		Hub:     hub,
		Bound:   bound,
		Link:    append([]byte(nil), b[off:off+fedLinkSize]...),
	}
	off += fedLinkSize + 1
	seen := map[string]bool{}
	for i := 0; i < int(b[off-1]); i++ {
		raw := b[off+i*tokenKeySize : off+(i+1)*tokenKeySize]
		pub, err := nkeys.Encode(nkeys.PrefixByteUser, raw)
		if err != nil {
			return FedClaims{}, fmt.Errorf("%w: authority pin %d: %v", ErrFedToken, i+1, err)
		}
		if seen[string(pub)] {
			return FedClaims{}, fmt.Errorf("%w: authority pin %s twice", ErrFedToken, AbbrevKey(string(pub)))
		}
		seen[string(pub)] = true
		c.Pins = append(c.Pins, string(pub))
	}
	return c, nil
}

// readPrefix reads 3 big-endian tokens: a 3-token chevron, or (when
// zeroOK) all zeros for none.
func readPrefix(b []byte, zeroOK bool) (subjects.Chevron, error) {
	t := []uint16{binary.BigEndian.Uint16(b), binary.BigEndian.Uint16(b[2:]), binary.BigEndian.Uint16(b[4:])}
	if zeroOK && t[0] == 0 && t[1] == 0 && t[2] == 0 {
		return subjects.Chevron{}, nil
	}
	return subjects.New(t...)
}

// InspectFedToken reads a federation token's claims WITHOUT checking its
// MAC or expiry: nothing it returns is authenticated. A child node uses it
// to learn the hub's prefix, link key and authority pins from the token it
// was given; a hub deciding admission uses ParseFedToken.
func InspectFedToken(s string) (FedClaims, error) {
	b, err := decodeFedText(s)
	if err != nil {
		return FedClaims{}, err
	}
	return fedClaims(b)
}

// ParseFedToken checks a federation token's form (ErrFedToken) and its MAC
// under the swarm secret (ErrTokenMAC, in constant time). It does not check
// the expiry: a token admits a new child swarm only before it expires
// (FedClaims.CheckFirstUse), but the swarm it admitted reconnects with it
// for as long as the hub keeps it.
func ParseFedToken(s string, secret []byte) (FedClaims, error) {
	if len(secret) != SecretSize {
		return FedClaims{}, fmt.Errorf("parse federation token: %w: %d bytes, want %d", ErrSecret, len(secret), SecretSize)
	}
	b, err := decodeFedText(s)
	if err != nil {
		return FedClaims{}, err
	}
	body := len(b) - sha256.Size
	if !hmac.Equal(fedMAC(secret, b[:body]), b[body:]) {
		return FedClaims{}, fmt.Errorf("%w: federation token not issued under this swarm's secret, or altered", ErrTokenMAC)
	}
	return fedClaims(b)
}

// CheckFirstUse reports why the token may not admit child prefix p for the
// first time at now: it expired (ErrFedExpired), or it is bound to
// another prefix (ErrFedBound).
func (c FedClaims) CheckFirstUse(p subjects.Chevron, now time.Time) error {
	if err := c.CheckPrefix(p); err != nil {
		return err
	}
	if !now.Before(c.Expires) {
		return fmt.Errorf("%w: token %s expired at %s, before its first use", ErrFedExpired, c.ID, c.Expires.Format(time.RFC3339))
	}
	return nil
}

// CheckPrefix reports an error (wrapping ErrFedBound) when the token is
// bound to a child prefix other than p.
func (c FedClaims) CheckPrefix(p subjects.Chevron) error {
	if !c.Bound.IsZero() && c.Bound != p {
		return fmt.Errorf("%w: token %s is for swarm %s, presented for swarm %s", ErrFedBound, c.ID, c.Bound, p)
	}
	return nil
}

// CheckLinkProof reports whether a hub node's leaf certificate credential
// proves the secret behind link for key pub.
func CheckLinkProof(link []byte, pub string, proof []byte) bool {
	return CheckRouteProof(link, pub, proof)
}

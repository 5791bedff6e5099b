package trust

import (
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"math"
	"strings"
	"time"

	"github.com/nats-io/nkeys"
)

// SecretSize is the size of a swarm secret in bytes.
const SecretSize = 32

// Text prefixes of secrets and tokens, so a leaked one is recognisable
// (e.g. by secret scanners) and one is never mistaken for the other.
const (
	SecretPrefix = "rnsec_"
	TokenPrefix  = "rntok_"
)

// MinChallenge is the shortest challenge CheckProof accepts.
const MinChallenge = 16

var b64 = base64.RawURLEncoding.Strict()

// GenerateSecret returns a new random swarm secret in its text form:
// "rnsec_" followed by the base64url (no padding) of 32 random bytes.
func GenerateSecret() (string, error) {
	var b [SecretSize]byte
	if _, err := rand.Read(b[:]); err != nil {
		return "", fmt.Errorf("generate secret: %w", err)
	}
	return SecretPrefix + b64.EncodeToString(b[:]), nil
}

// FormatSecret is the text form of a 32-byte secret (the inverse of
// ParseSecret).
func FormatSecret(secret []byte) string { return SecretPrefix + b64.EncodeToString(secret) }

// ParseSecret decodes a secret's text form (as GenerateSecret prints it,
// without surrounding white space) into its 32 bytes.
func ParseSecret(s string) ([]byte, error) {
	const textLen = len(SecretPrefix) + (SecretSize*8+5)/6
	if t := strings.TrimSpace(s); t != s {
		return nil, fmt.Errorf("%w: surrounding white space", ErrSecret)
	}
	if !strings.HasPrefix(s, SecretPrefix) {
		return nil, fmt.Errorf("%w: does not start with %q", ErrSecret, SecretPrefix)
	}
	if len(s) != textLen {
		return nil, fmt.Errorf("%w: %d characters, want %d", ErrSecret, len(s), textLen)
	}
	b, err := decodeB64(s[len(SecretPrefix):])
	if err != nil || len(b) != SecretSize {
		return nil, fmt.Errorf("%w: not base64url of %d bytes", ErrSecret, SecretSize)
	}
	return b, nil
}

// decodeB64 decodes canonical base64url without padding, refusing the CR and
// LF the decoder would otherwise skip.
func decodeB64(s string) ([]byte, error) {
	for i := 0; i < len(s); i++ {
		c := s[i]
		if (c < 'A' || c > 'Z') && (c < 'a' || c > 'z') && (c < '0' || c > '9') && c != '-' && c != '_' {
			return nil, fmt.Errorf("byte %d %q is not base64url", i, c)
		}
	}
	return b64.DecodeString(s)
}

// Prove answers a join challenge: HMAC-SHA256 under the swarm secret of
//
//	"robonet/join-proof\x00" ‖ be32(len(challenge)) ‖ challenge ‖ be16(len(pubkey)) ‖ pubkey
//
// binding the answer to the challenger's nonce and to the joining key, so a
// proof cannot be replayed for another nonce or another key.
func Prove(secret, challenge []byte, pubkey string) []byte {
	m := hmac.New(sha256.New, secret)
	var n [4]byte
	m.Write([]byte(tagProof))
	binary.BigEndian.PutUint32(n[:], uint32(len(challenge)))
	m.Write(n[:])
	m.Write(challenge)
	binary.BigEndian.PutUint16(n[:2], uint16(len(pubkey)))
	m.Write(n[:2])
	m.Write([]byte(pubkey))
	return m.Sum(nil)
}

// CheckProof reports, in constant time, whether proof is Prove(secret,
// challenge, pubkey). It is false for a secret that is not SecretSize bytes
// (an empty key would be public) and for a challenge shorter than MinChallenge
// (the challenger must send a fresh random nonce).
func CheckProof(secret, challenge []byte, pubkey string, proof []byte) bool {
	if len(secret) != SecretSize || len(challenge) < MinChallenge || len(pubkey) > math.MaxUint16 || uint64(len(challenge)) > math.MaxUint32 {
		return false
	}
	return hmac.Equal(Prove(secret, challenge, pubkey), proof)
}

// Join token layouts, before base64url:
//
//	version 1: 0x01 ‖ id[16] ‖ be64(issued UnixNano) ‖ be64(expires UnixNano) ‖ mac[32]
//	version 2: 0x02 ‖ id[16] ‖ be64(issued UnixNano) ‖ be64(expires UnixNano) ‖ key[32] ‖ mac[32]
//
// mac = HMAC-SHA256(secret, "robonet/join-token\x00" ‖ every byte before it),
// so the version byte separates the two. key is the Ed25519 public key of the
// user nkey (a node key) a version 2 token is bound to: the key itself rather
// than a hash of it (same size), so a refusal can name the key it expected.
const (
	tokenVersion      = 1
	boundTokenVersion = 2
	tokenIDSize       = 16
	tokenKeySize      = 32
	tokenBody         = 1 + tokenIDSize + 8 + 8
	tokenSize         = tokenBody + sha256.Size
	boundTokenBody    = tokenBody + tokenKeySize
	boundTokenSize    = boundTokenBody + sha256.Size
)

// TokenTextLen is the length of an unbound (version 1) join token's text form.
const TokenTextLen = len(TokenPrefix) + (tokenSize*8+5)/6

// BoundTokenTextLen is the length of a bound (version 2) join token's text
// form.
const BoundTokenTextLen = len(TokenPrefix) + (boundTokenSize*8+5)/6

// TokenClaims are what a valid join token says.
type TokenClaims struct {
	ID      string    // 32 lower-case hex digits; the node records it to allow one use
	Issued  time.Time // when IssueToken ran
	Expires time.Time // first instant the token is no longer valid
	// BoundTo is the node key (a user nkey public key, 'U…') the token is
	// bound to: only that key may join with it. Empty for an unbound token.
	BoundTo string
}

// Admits reports whether a node with public key pub may join with the
// token: any key for an unbound token, only BoundTo for a bound one.
func (c TokenClaims) Admits(pub string) bool {
	return c.BoundTo == "" || c.BoundTo == pub
}

// CheckKey is Admits as an error for a refusal: it wraps ErrTokenKey and
// names both keys (abbreviated) and the token.
func (c TokenClaims) CheckKey(pub string) error {
	if c.Admits(pub) {
		return nil
	}
	return fmt.Errorf("%w: token %s is bound to key %s, presented by key %s", ErrTokenKey, c.ID, AbbrevKey(c.BoundTo), AbbrevKey(pub))
}

// AbbrevKey shortens a public key for people: its first 8 and last 4
// characters ("UABCDEFG…WXYZ"), enough to tell keys apart in a message.
func AbbrevKey(pub string) string {
	if len(pub) <= 16 {
		return pub
	}
	return pub[:8] + "…" + pub[len(pub)-4:]
}

// IssueToken returns a one-time join token valid for ttl from now, and its
// id. The token is self-contained: a node holding the swarm secret checks it
// with ParseToken without any shared state, except the record of used ids
// that makes it single-use.
func IssueToken(secret []byte, ttl time.Duration, now time.Time) (token, id string, err error) {
	return issueToken(secret, ttl, now, "")
}

// IssueBoundToken is IssueToken for a token only the node key pub (a user
// nkey public key) may join with. The binding is inside the MAC: changing
// it breaks the token.
func IssueBoundToken(secret []byte, ttl time.Duration, now time.Time, pub string) (token, id string, err error) {
	if _, err := userKeyBytes(pub); err != nil {
		return "", "", fmt.Errorf("issue token: %w", err)
	}
	return issueToken(secret, ttl, now, pub)
}

// userKeyBytes returns the Ed25519 key inside a user nkey public key text,
// which must be canonical (nkeys.Decode accepts trailing characters).
func userKeyBytes(pub string) ([]byte, error) {
	key, err := nkeys.Decode(nkeys.PrefixByteUser, []byte(pub))
	if err == nil && len(key) == tokenKeySize {
		if again, err := nkeys.Encode(nkeys.PrefixByteUser, key); err == nil && string(again) == pub {
			return key, nil
		}
	}
	return nil, fmt.Errorf("%w: bind to %q: not a user nkey public key (a node key)", ErrKey, clipKey(pub))
}

func issueToken(secret []byte, ttl time.Duration, now time.Time, pub string) (token, id string, err error) {
	if len(secret) != SecretSize {
		return "", "", fmt.Errorf("issue token: %w: %d bytes, want %d", ErrSecret, len(secret), SecretSize)
	}
	if ttl <= 0 {
		return "", "", fmt.Errorf("issue token: ttl %v must be positive", ttl)
	}
	exp := now.Add(ttl)
	if !inNanoRange(now) || !inNanoRange(exp) {
		return "", "", fmt.Errorf("issue token: time %v + %v out of range", now, ttl)
	}
	var raw [tokenIDSize]byte
	if _, err := rand.Read(raw[:]); err != nil {
		return "", "", fmt.Errorf("issue token: %w", err)
	}
	c := TokenClaims{ID: hex.EncodeToString(raw[:]), Issued: now, Expires: exp, BoundTo: pub}
	tok, err := encodeToken(secret, raw, c)
	if err != nil {
		return "", "", fmt.Errorf("issue token: %w", err)
	}
	return tok, c.ID, nil
}

// inNanoRange reports whether t's UnixNano is defined (years 1678..2262).
func inNanoRange(t time.Time) bool {
	return t.Equal(time.Unix(0, t.UnixNano()))
}

func encodeToken(secret []byte, id [tokenIDSize]byte, c TokenClaims) (string, error) {
	b := make([]byte, 0, boundTokenSize)
	b = append(b, tokenVersion)
	b = append(b, id[:]...)
	b = binary.BigEndian.AppendUint64(b, uint64(c.Issued.UnixNano()))
	b = binary.BigEndian.AppendUint64(b, uint64(c.Expires.UnixNano()))
	if c.BoundTo != "" {
		key, err := userKeyBytes(c.BoundTo)
		if err != nil {
			return "", err
		}
		b[0] = boundTokenVersion
		b = append(b, key...)
	}
	b = append(b, tokenMAC(secret, b)...)
	return TokenPrefix + b64.EncodeToString(b), nil
}

func tokenMAC(secret, body []byte) []byte {
	m := hmac.New(sha256.New, secret)
	m.Write([]byte(tagToken))
	m.Write(body)
	return m.Sum(nil)
}

// decodeTokenText checks a join token's form without the swarm secret (the
// prefix, the length for its version, canonical base64url, a known version)
// and returns its bytes.
func decodeTokenText(s string) ([]byte, error) {
	if !strings.HasPrefix(s, TokenPrefix) {
		return nil, fmt.Errorf("%w: does not start with %q", ErrTokenMalformed, TokenPrefix)
	}
	if len(s) != TokenTextLen && len(s) != BoundTokenTextLen {
		return nil, fmt.Errorf("%w: %d characters, want %d (unbound) or %d (bound to a key)", ErrTokenMalformed, len(s), TokenTextLen, BoundTokenTextLen)
	}
	b, err := decodeB64(s[len(TokenPrefix):])
	if err != nil || (len(b) != tokenSize && len(b) != boundTokenSize) {
		return nil, fmt.Errorf("%w: not base64url of %d or %d bytes", ErrTokenMalformed, tokenSize, boundTokenSize)
	}
	switch {
	case b[0] == tokenVersion && len(b) == tokenSize, b[0] == boundTokenVersion && len(b) == boundTokenSize:
		return b, nil
	case b[0] == tokenVersion || b[0] == boundTokenVersion:
		return nil, fmt.Errorf("%w: version %d in %d bytes", ErrTokenMalformed, b[0], len(b))
	}
	return nil, fmt.Errorf("%w: version %d, want %d or %d", ErrTokenMalformed, b[0], tokenVersion, boundTokenVersion)
}

// InspectToken reads a join token's claims WITHOUT checking its MAC or its
// expiry: nothing it returns is authenticated. It is for the holder of a
// token (which key is it bound to? when does it expire?); a node deciding
// admission uses ParseToken.
func InspectToken(s string) (TokenClaims, error) {
	b, err := decodeTokenText(s)
	if err != nil {
		return TokenClaims{}, err
	}
	return tokenClaims(b)
}

// tokenClaims decodes the claims of a well-formed token's bytes.
func tokenClaims(b []byte) (TokenClaims, error) {
	issued := int64(binary.BigEndian.Uint64(b[1+tokenIDSize:]))
	expires := int64(binary.BigEndian.Uint64(b[1+tokenIDSize+8:]))
	if expires <= issued {
		return TokenClaims{}, fmt.Errorf("%w: expires before it was issued", ErrTokenMalformed)
	}
	c := TokenClaims{
		ID:      hex.EncodeToString(b[1 : 1+tokenIDSize]),
		Issued:  time.Unix(0, issued).UTC(),
		Expires: time.Unix(0, expires).UTC(),
	}
	if b[0] == boundTokenVersion {
		pub, err := nkeys.Encode(nkeys.PrefixByteUser, b[tokenBody:boundTokenBody])
		if err != nil {
			return TokenClaims{}, fmt.Errorf("%w: bound key: %v", ErrTokenMalformed, err)
		}
		c.BoundTo = string(pub)
	}
	return c, nil
}

// ParseToken checks a join token (version 1, or version 2 bound to a key)
// against the swarm secret at now: its format (ErrTokenMalformed), its MAC
// (ErrTokenMAC, compared in constant time; a token from another swarm or an
// altered one) and then its expiry (ErrTokenExpired). Checking single use is
// the caller's job, with ID, and so is checking the binding, with Admits.
func ParseToken(s string, secret []byte, now time.Time) (TokenClaims, error) {
	if len(secret) != SecretSize {
		return TokenClaims{}, fmt.Errorf("parse token: %w: %d bytes, want %d", ErrSecret, len(secret), SecretSize)
	}
	b, err := decodeTokenText(s)
	if err != nil {
		return TokenClaims{}, err
	}
	body := len(b) - sha256.Size
	if !hmac.Equal(tokenMAC(secret, b[:body]), b[body:]) {
		return TokenClaims{}, fmt.Errorf("%w: not issued under this swarm secret, or altered", ErrTokenMAC)
	}
	c, err := tokenClaims(b)
	if err != nil {
		return TokenClaims{}, err
	}
	if !now.Before(c.Expires) {
		return TokenClaims{}, fmt.Errorf("%w: token %s expired at %s", ErrTokenExpired, c.ID, c.Expires.Format(time.RFC3339))
	}
	return c, nil
}

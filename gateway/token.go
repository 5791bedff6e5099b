package gateway

import (
	"encoding/base64"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/nats-io/nkeys"

	"github.com/robonet-mesh/robonet/trust"
)

// TokenPrefix starts every bearer token.
const TokenPrefix = "rngw_"

// Token layout (after the prefix, base64url without padding): a version
// byte, the session key's nkey seed (58 bytes), then the delegation header
// value the user signed. The gateway stores nothing: each use checks the
// delegation and derives the key from the seed, so tokens survive a
// restart and a node's disk holds none.
const (
	tokenVersion = 1
	seedLen      = 58
	// MaxTokenLen bounds a token's text; longer ones are refused unread.
	MaxTokenLen = 8 << 10
)

// ErrToken is wrapped by every token refusal.
var ErrToken = errors.New("bad token")

// FormatToken is the bearer token for a session key kp and the delegation
// header hdr a user signed for it.
func FormatToken(kp nkeys.KeyPair, hdr string) (string, error) {
	seed, err := kp.Seed()
	if err != nil {
		return "", fmt.Errorf("token: %w", err)
	}
	if len(seed) != seedLen || hdr == "" {
		return "", fmt.Errorf("%w: seed of %d bytes or empty delegation", ErrToken, len(seed))
	}
	raw := make([]byte, 0, 1+len(seed)+len(hdr))
	raw = append(raw, tokenVersion)
	raw = append(raw, seed...)
	raw = append(raw, hdr...)
	return TokenPrefix + base64.RawURLEncoding.EncodeToString(raw), nil
}

// CheckToken checks token tok at now as a gateway does before anything
// else (see parseToken) and returns the user it speaks for and its session
// key.
func CheckToken(tok string, now time.Time) (user, key string, err error) {
	c, err := parseToken(tok, now)
	if err != nil {
		return "", "", err
	}
	return c.d.User, c.d.Key, nil
}

// parseToken checks token tok at now: its shape, the delegation's signature
// and times, that the seed is the delegated key's, and the role. Which node
// it is for and whether the user is still known are the caller's checks.
func parseToken(tok string, now time.Time) (credential, error) {
	if len(tok) > MaxTokenLen {
		return credential{}, fmt.Errorf("%w: %d bytes, at most %d", ErrToken, len(tok), MaxTokenLen)
	}
	body, ok := strings.CutPrefix(tok, TokenPrefix)
	if !ok {
		return credential{}, fmt.Errorf("%w: does not start with %s", ErrToken, TokenPrefix)
	}
	raw, err := base64.RawURLEncoding.Strict().DecodeString(body)
	if err != nil {
		return credential{}, fmt.Errorf("%w: not base64url: %v", ErrToken, err)
	}
	if len(raw) < 1+seedLen+1 || raw[0] != tokenVersion {
		return credential{}, fmt.Errorf("%w: %d bytes or unknown version", ErrToken, len(raw))
	}
	seed, hdr := raw[1:1+seedLen], string(raw[1+seedLen:])
	if pre, _, err := nkeys.DecodeSeed(seed); err != nil || pre != nkeys.PrefixByteUser {
		return credential{}, fmt.Errorf("%w: the session key is not a user seed", ErrToken)
	}
	kp, err := nkeys.FromSeed(seed)
	if err != nil {
		return credential{}, fmt.Errorf("%w: session key: %v", ErrToken, err)
	}
	pub, err := kp.PublicKey()
	if err != nil {
		return credential{}, fmt.Errorf("%w: session key: %v", ErrToken, err)
	}
	d, err := trust.ParseDelegation(hdr, now)
	if err != nil {
		return credential{}, fmt.Errorf("%w: %v", ErrToken, err)
	}
	if d.Key != pub {
		return credential{}, fmt.Errorf("%w: the delegation is for key %s, the token holds %s", ErrToken, d.Key, pub)
	}
	if roleRank(d.Role) == 0 {
		return credential{}, fmt.Errorf("%w: role %q", ErrToken, d.Role)
	}
	return credential{kp: kp, hdr: hdr, d: d, role: d.Role}, nil
}

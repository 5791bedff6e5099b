package trust

import (
	"bytes"
	"encoding/base64"
	"errors"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nkeys"
)

func testSecret(t testing.TB) []byte {
	t.Helper()
	s, err := GenerateSecret()
	if err != nil {
		t.Fatal(err)
	}
	b, err := ParseSecret(s)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestSecretRoundTrip(t *testing.T) {
	t.Parallel()
	a, err := GenerateSecret()
	if err != nil {
		t.Fatal(err)
	}
	b, _ := GenerateSecret()
	if a == b || !strings.HasPrefix(a, SecretPrefix) || len(a) != 49 {
		t.Fatalf("secrets %q %q", a, b)
	}
	raw, err := ParseSecret(a)
	if err != nil || len(raw) != SecretSize || SecretPrefix+base64.RawURLEncoding.EncodeToString(raw) != a {
		t.Fatalf("ParseSecret(%q) = %x, %v", a, raw, err)
	}
}

func TestParseSecretRejects(t *testing.T) {
	t.Parallel()
	good, _ := GenerateSecret()
	body := good[len(SecretPrefix):]
	for name, s := range map[string]string{
		"empty":             "",
		"no prefix":         body,
		"token prefix":      TokenPrefix + body,
		"short":             good[:len(good)-1],
		"long":              good + "A",
		"trailing newline":  good + "\n",
		"leading space":     " " + good,
		"newline inside":    good[:20] + "\n" + good[21:],
		"std alphabet":      SecretPrefix + "+" + body[1:],
		"padding":           good[:len(good)-1] + "=",
		"non-canonical end": SecretPrefix + body[:len(body)-1] + "B", // 43rd char carries 2 unused bits
	} {
		if name == "non-canonical end" && strings.HasSuffix(body, "B") {
			continue
		}
		if _, err := ParseSecret(s); !errors.Is(err, ErrSecret) {
			t.Errorf("%s: ParseSecret(%q) = %v, want ErrSecret", name, s, err)
		}
	}
}

func TestProof(t *testing.T) {
	t.Parallel()
	secret, other := testSecret(t), testSecret(t)
	challenge := []byte("0123456789abcdef-nonce")
	pub := pubOf(t, userKey(t, 1))
	proof := Prove(secret, challenge, pub)
	if !CheckProof(secret, challenge, pub, proof) {
		t.Fatal("valid proof refused")
	}
	tests := []struct {
		name      string
		secret    []byte
		challenge []byte
		pub       string
		proof     []byte
	}{
		{"other secret", other, challenge, pub, proof},
		{"other challenge", secret, []byte("0123456789abcdef-other"), pub, proof},
		{"other key", secret, challenge, pubOf(t, userKey(t, 2)), proof},
		{"truncated proof", secret, challenge, pub, proof[:16]},
		{"empty proof", secret, challenge, pub, nil},
		{"flipped bit", secret, challenge, pub, append(bytes.Clone(proof[:31]), proof[31]^1)},
		{"empty secret", nil, challenge, pub, Prove(nil, challenge, pub)},
		{"short secret", secret[:16], challenge, pub, Prove(secret[:16], challenge, pub)},
		{"short challenge", secret, challenge[:8], pub, Prove(secret, challenge[:8], pub)},
	}
	for _, tt := range tests {
		if CheckProof(tt.secret, tt.challenge, tt.pub, tt.proof) {
			t.Errorf("%s: accepted", tt.name)
		}
	}
	// The length prefixes keep challenge and key apart.
	if bytes.Equal(Prove(secret, []byte("0123456789abcdefU"), "X"), Prove(secret, []byte("0123456789abcdef"), "UX")) {
		t.Fatal("ambiguous proof encoding")
	}
}

func TestTokenRoundTrip(t *testing.T) {
	t.Parallel()
	secret := testSecret(t)
	tok, id, err := IssueToken(secret, 10*time.Minute, t0)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(tok, TokenPrefix) || len(tok) != TokenTextLen || !regexp.MustCompile(`^[0-9a-f]{32}$`).MatchString(id) {
		t.Fatalf("token %q id %q", tok, id)
	}
	c, err := ParseToken(tok, secret, t0.Add(9*time.Minute))
	if err != nil {
		t.Fatal(err)
	}
	if c.ID != id || !c.Issued.Equal(t0) || !c.Expires.Equal(t0.Add(10*time.Minute)) {
		t.Fatalf("claims %+v", c)
	}
	tok2, id2, _ := IssueToken(secret, time.Minute, t0)
	if tok2 == tok || id2 == id {
		t.Fatal("two tokens share an id")
	}
}

// A bound token carries its key inside the MAC: it parses, names its key,
// admits only that key, and neither the key nor the version can be changed.
func TestBoundTokenAdmitsOnlyItsKey(t *testing.T) {
	t.Parallel()
	secret := testSecret(t)
	pub, other := pubOf(t, userKey(t, 1)), pubOf(t, userKey(t, 2))
	tok, id, err := IssueBoundToken(secret, 10*time.Minute, t0, pub)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(tok, TokenPrefix) || len(tok) != BoundTokenTextLen || BoundTokenTextLen == TokenTextLen {
		t.Fatalf("token %q: %d characters, want %d", tok, len(tok), BoundTokenTextLen)
	}
	c, err := ParseToken(tok, secret, t0.Add(time.Minute))
	if err != nil {
		t.Fatal(err)
	}
	if c.ID != id || c.BoundTo != pub || !c.Admits(pub) || c.Admits(other) || !c.Expires.Equal(t0.Add(10*time.Minute)) {
		t.Fatalf("claims %+v", c)
	}
	if err := c.CheckKey(pub); err != nil {
		t.Fatal(err)
	}
	err = c.CheckKey(other)
	if want := "bound to key " + pub[:8] + "…" + pub[52:] + ", presented by key " + other[:8] + "…" + other[52:]; !errors.Is(err, ErrTokenKey) || !strings.Contains(err.Error(), want) {
		t.Fatalf("CheckKey(other) = %v, want %v naming %q", err, ErrTokenKey, want)
	}
	if peek, err := InspectToken(tok); err != nil || peek != c {
		t.Fatalf("InspectToken = %+v, %v; want %+v", peek, err, c)
	}
	raw, _ := base64.RawURLEncoding.DecodeString(tok[len(TokenPrefix):])
	// Swap in the other key: the MAC no longer matches.
	otherRaw, _ := nkeys.Decode(nkeys.PrefixByteUser, []byte(other))
	swapped := bytes.Clone(raw)
	copy(swapped[tokenBody:], otherRaw)
	if _, err := ParseToken(TokenPrefix+base64.RawURLEncoding.EncodeToString(swapped), secret, t0); !errors.Is(err, ErrTokenMAC) {
		t.Fatalf("token with the key swapped: %v, want %v", err, ErrTokenMAC)
	}
	// Strip the key and call it version 1 with the version 2 MAC: refused.
	stripped := append([]byte{tokenVersion}, raw[1:tokenBody]...)
	stripped = append(stripped, raw[boundTokenBody:]...)
	if _, err := ParseToken(TokenPrefix+base64.RawURLEncoding.EncodeToString(stripped), secret, t0); !errors.Is(err, ErrTokenMAC) {
		t.Fatalf("token with the key stripped: %v, want %v", err, ErrTokenMAC)
	}
	// An unbound token admits anyone.
	v1, _, _ := IssueToken(secret, time.Minute, t0)
	if c, err := ParseToken(v1, secret, t0); err != nil || c.BoundTo != "" || !c.Admits(other) {
		t.Fatalf("version 1 token: %+v, %v", c, err)
	}
}

func TestIssueBoundTokenRefusesOtherKeys(t *testing.T) {
	t.Parallel()
	secret := testSecret(t)
	for _, pub := range []string{"", "U", pubOf(t, serverKey(t, 1)), pubOf(t, userKey(t, 1)) + "A", "SUAM" + strings.Repeat("A", 54)} {
		if tok, _, err := IssueBoundToken(secret, time.Minute, t0, pub); !errors.Is(err, ErrKey) {
			t.Errorf("IssueBoundToken(%q) = %q, %v; want %v", pub, tok, err, ErrKey)
		}
	}
}

func TestParseTokenRejects(t *testing.T) {
	t.Parallel()
	secret, other := testSecret(t), testSecret(t)
	tok, _, err := IssueToken(secret, time.Hour, t0)
	if err != nil {
		t.Fatal(err)
	}
	raw, _ := base64.RawURLEncoding.DecodeString(tok[len(TokenPrefix):])
	reencode := func(b []byte) string { return TokenPrefix + base64.RawURLEncoding.EncodeToString(b) }
	flip := func(i int) string {
		b := bytes.Clone(raw)
		b[i] ^= 0x80
		return reencode(b)
	}
	tests := []struct {
		name   string
		tok    string
		secret []byte
		now    time.Time
		want   error
	}{
		{"expired at expiry", tok, secret, t0.Add(time.Hour), ErrTokenExpired},
		{"expired after", tok, secret, t0.Add(48 * time.Hour), ErrTokenExpired},
		{"other swarm", tok, other, t0, ErrTokenMAC},
		{"tampered id", flip(3), secret, t0, ErrTokenMAC},
		{"tampered expiry", flip(1 + 16 + 8 + 5), secret, t0, ErrTokenMAC},
		{"tampered issued", flip(1 + 16 + 2), secret, t0, ErrTokenMAC},
		{"tampered mac", flip(len(raw) - 1), secret, t0, ErrTokenMAC},
		{"version", flip(0), secret, t0, ErrTokenMalformed},
		{"empty", "", secret, t0, ErrTokenMalformed},
		{"prefix only", TokenPrefix, secret, t0, ErrTokenMalformed},
		{"secret instead", SecretPrefix + strings.Repeat("A", 43), secret, t0, ErrTokenMalformed},
		{"no prefix", tok[len(TokenPrefix):], secret, t0, ErrTokenMalformed},
		{"truncated", tok[:len(tok)-1], secret, t0, ErrTokenMalformed},
		{"extended", tok + "A", secret, t0, ErrTokenMalformed},
		{"newline", tok[:30] + "\n" + tok[31:], secret, t0, ErrTokenMalformed},
		{"garbage", TokenPrefix + strings.Repeat("!", TokenTextLen-len(TokenPrefix)), secret, t0, ErrTokenMalformed},
		{"padded", tok[:len(tok)-1] + "=", secret, t0, ErrTokenMalformed},
		{"bad secret size", tok, secret[:31], t0, ErrSecret},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := ParseToken(tt.tok, tt.secret, tt.now)
			checkErr(t, "ParseToken", err, tt.want)
		})
	}
}

func TestIssueTokenRejects(t *testing.T) {
	t.Parallel()
	secret := testSecret(t)
	if _, _, err := IssueToken(secret[:10], time.Hour, t0); !errors.Is(err, ErrSecret) {
		t.Errorf("short secret: %v", err)
	}
	for _, ttl := range []time.Duration{0, -time.Second} {
		if _, _, err := IssueToken(secret, ttl, t0); err == nil {
			t.Errorf("ttl %v accepted", ttl)
		}
	}
	if _, _, err := IssueToken(secret, time.Hour, time.Date(2300, 1, 1, 0, 0, 0, 0, time.UTC)); err == nil {
		t.Error("year 2300 accepted")
	}
}

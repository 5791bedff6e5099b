package gateway_test

import (
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nkeys"

	"github.com/robonet-mesh/robonet/gateway"
	"github.com/robonet-mesh/robonet/trust"
	"github.com/robonet-mesh/robonet/wire"
)

// fixedKey is a key pair from a fixed seed (fuzz workers must rebuild the
// same token as the corpus holds).
func fixedKey(t testing.TB, pre nkeys.PrefixByte, b byte) nkeys.KeyPair {
	t.Helper()
	raw := make([]byte, 32)
	for i := range raw {
		raw[i] = b + byte(i)
	}
	kp, err := nkeys.FromRawSeed(pre, raw)
	if err != nil {
		t.Fatal(err)
	}
	return kp
}

// goodToken is a token a user made for a session key.
func goodToken(t testing.TB, now time.Time, n byte) (tok string, user, key nkeys.KeyPair) {
	t.Helper()
	user = fixedKey(t, nkeys.PrefixByteUser, 3*n)
	key = fixedKey(t, nkeys.PrefixByteUser, 3*n+1)
	node := fixedKey(t, nkeys.PrefixByteServer, 3*n+2)
	up, _ := user.PublicKey()
	kp, _ := key.PublicKey()
	np, _ := node.PublicKey()
	hdr, err := trust.SignDelegation(user, wire.Delegation{User: up, Key: kp, Role: wire.RoleObserver, Node: np, Issued: now, Expires: now.Add(time.Hour)})
	if err != nil {
		t.Fatal(err)
	}
	if tok, err = gateway.FormatToken(key, hdr); err != nil {
		t.Fatal(err)
	}
	return tok, user, key
}

func TestParseTokenRefusesWhatIsNotAToken(t *testing.T) {
	now := time.Now()
	tok, user, _ := goodToken(t, now, 1)
	up, _ := user.PublicKey()
	if u, _, err := gateway.CheckToken(tok, now); err != nil || u != up {
		t.Fatalf("good token: %s %v", u, err)
	}
	// A token whose seed is the user's own (not the delegated key's).
	other, _, _ := goodToken(t, now, 2)
	userSeed, _ := user.Seed()
	for name, bad := range map[string]string{
		"empty":      "",
		"prefix":     "rntok_" + strings.TrimPrefix(tok, gateway.TokenPrefix),
		"not base64": gateway.TokenPrefix + "!!!!",
		"short":      gateway.TokenPrefix + "AQ",
		"huge":       gateway.TokenPrefix + strings.Repeat("A", gateway.MaxTokenLen),
		"spliced":    tok[:len(tok)/2] + other[len(other)/2:],
		"user seed":  string(userSeed),
	} {
		if _, _, err := gateway.CheckToken(bad, now); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
	if _, _, err := gateway.CheckToken(tok, now.Add(2*time.Hour)); err == nil || !strings.Contains(err.Error(), "expired") {
		t.Errorf("expired: %v", err)
	}
}

// FuzzParseToken: no input panics or is accepted unless it is a token a
// user signed.
func FuzzParseToken(f *testing.F) {
	now := time.Date(2026, 12, 7, 10, 0, 0, 0, time.UTC)
	tok, user, key := goodToken(f, now, 1)
	up, _ := user.PublicKey()
	kp, _ := key.PublicKey()
	f.Add(tok)
	f.Add(gateway.TokenPrefix)
	f.Add(gateway.TokenPrefix + "AQ")
	f.Add(tok[:len(tok)-1])
	f.Fuzz(func(t *testing.T, s string) {
		u, k, err := gateway.CheckToken(s, now)
		if err == nil && (u != up || k != kp) {
			t.Fatalf("accepted %q as %s / %s", s, u, k)
		}
	})
}

package trust

import (
	"encoding/base64"
	"strings"
	"testing"

	"github.com/nats-io/nkeys"
)

func TestIdentityProofBindsKeyAndChallenge(t *testing.T) {
	kp, _ := nkeys.CreateUser()
	pub, _ := kp.PublicKey()
	other, _ := nkeys.CreateUser()
	otherPub, _ := other.PublicKey()
	ch := strings.Repeat("ab", 32)
	proof, err := ProveIdentity(kp, ch)
	if err != nil {
		t.Fatal(err)
	}
	if err := CheckIdentity(pub, ch, proof); err != nil {
		t.Errorf("genuine proof refused: %v", err)
	}
	if err := CheckIdentity(otherPub, ch, proof); err == nil {
		t.Error("proof accepted for another key")
	}
	if err := CheckIdentity(pub, strings.Repeat("cd", 32), proof); err == nil {
		t.Error("proof accepted for another challenge")
	}
	for _, bad := range []string{"", "zz", strings.Repeat("ab", 8), strings.Repeat("ab", 65)} {
		if _, err := ProveIdentity(kp, bad); err == nil {
			t.Errorf("challenge %q accepted", bad)
		}
	}
	// A signature of the raw challenge bytes (what a NATS nonce gets) is
	// not a proof, and a proof is not one of those.
	raw, _ := kp.Sign([]byte(strings.Repeat("\xab", 32)))
	if err := CheckIdentity(pub, ch, base64.RawURLEncoding.EncodeToString(raw)); err == nil {
		t.Error("a raw signature of the challenge accepted as a proof")
	}
	if CheckIdentity(pub, ch, "AAAA") == nil {
		t.Error("garbage proof accepted")
	}
}

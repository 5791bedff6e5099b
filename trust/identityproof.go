package trust

import (
	"encoding/base64"
	"encoding/hex"
	"fmt"

	"github.com/nats-io/nkeys"
)

// tagIdentity separates identity proofs from every other signature a node
// key makes: a proof is never a valid signature of a NATS nonce, a record
// or a message.
const tagIdentity = "robonet/identity-proof\x00"

// Identity challenges are hex strings of this many bytes' worth.
const (
	MinChallengeBytes = 16
	MaxChallengeBytes = 64
)

// identityMessage is what a node key signs to prove it is held where a
// challenge was answered.
func identityMessage(challengeHex string) ([]byte, error) {
	c, err := hex.DecodeString(challengeHex)
	if err != nil || len(c) < MinChallengeBytes || len(c) > MaxChallengeBytes {
		return nil, fmt.Errorf("identity challenge %q: want %d to %d bytes in hex", clipText(challengeHex), MinChallengeBytes, MaxChallengeBytes)
	}
	return append([]byte(tagIdentity), c...), nil
}

// ProveIdentity signs challengeHex with kp: the answer of a host that holds
// the key (robonet identity --prove, which colonize runs on its target).
func ProveIdentity(kp nkeys.KeyPair, challengeHex string) (string, error) {
	msg, err := identityMessage(challengeHex)
	if err != nil {
		return "", err
	}
	sig, err := kp.Sign(msg)
	if err != nil {
		return "", err
	}
	return base64.RawURLEncoding.EncodeToString(sig), nil
}

// CheckIdentity verifies that proof answers challengeHex with pub's key.
func CheckIdentity(pub, challengeHex, proof string) error {
	msg, err := identityMessage(challengeHex)
	if err != nil {
		return err
	}
	kp, err := nkeys.FromPublicKey(pub)
	if err != nil {
		return fmt.Errorf("identity proof: key %q: %v", clipText(pub), err)
	}
	sig, err := base64.RawURLEncoding.DecodeString(proof)
	if err != nil {
		return fmt.Errorf("identity proof: not base64url: %v", err)
	}
	if err := kp.Verify(msg, sig); err != nil {
		return fmt.Errorf("identity proof: the host does not hold the key %s", clipText(pub))
	}
	return nil
}

func clipText(s string) string {
	if len(s) > 72 {
		return s[:72] + "…"
	}
	return s
}

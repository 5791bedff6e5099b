package mesh

import (
	"os"
	"path/filepath"

	"github.com/nats-io/nkeys"
)

// TEMPORARY (gw branch only): stand-in for main's "trust: delegation"
// commit, removed when that is merged. It does not add Rn-Deleg.

// NewSessionSigner signs as kp carrying the delegation hdr.
func NewSessionSigner(kp nkeys.KeyPair, hdr string) (*Signer, error) {
	pub, err := kp.PublicKey()
	if err != nil {
		return nil, err
	}
	_ = hdr
	return NewSigner(kp, filepath.Join(os.TempDir(), "rn-session-"+pub+".chain"), 0)
}

package trust

import (
	"errors"

	"github.com/robonet-mesh/robonet/wire"
)

// ErrProof wraps every reason a fork proof does not hold.
var ErrProof = errors.New("trust: not a fork proof")

// VerifyForkProof checks that p proves p.Key forked its chain: both pieces
// of evidence carry valid signatures by p.Key and cannot lie on one chain.
func VerifyForkProof(p *wire.ForkProof) error {
	return ErrProof
}

package trust

import (
	"crypto/sha256"
	"errors"
	"fmt"
	"sync"

	"github.com/nats-io/nkeys"
	"github.com/robonet-mesh/robonet/subjects"
	"github.com/robonet-mesh/robonet/wire"
)

// DefaultKeyCache is the number of parsed public keys a Verifier keeps when
// NewVerifier is given no size.
const DefaultKeyCache = 1024

// Verifier checks message signatures. It caches parsed public keys (only keys
// that produced a valid signature, so garbage cannot flush the cache); when
// full it evicts an arbitrary entry. It is safe for concurrent use.
type Verifier struct {
	max int

	mu   sync.RWMutex // guards keys
	keys map[string]nkeys.KeyPair
}

// NewVerifier returns a Verifier caching up to size parsed keys; size <= 0
// means DefaultKeyCache.
func NewVerifier(size int) *Verifier {
	if size <= 0 {
		size = DefaultKeyCache
	}
	return &Verifier{max: size, keys: make(map[string]nkeys.KeyPair, min(size, 64))}
}

// Verify checks that h.Sig is h.From's signature over h and the message
// (version, seq, previous hash, subject, payload digest; see the package doc).
// Malformed headers wrap ErrHeader (or ErrVersion, ErrKey); a well-formed
// signature that does not verify wraps ErrBadSignature.
func (v *Verifier) Verify(h Headers, subject string, payload []byte) error {
	_, err := v.verify(h, subject, sha256.Sum256(payload))
	return err
}

// verify returns the chain hash of the message, which Observe needs too.
func (v *Verifier) verify(h Headers, subject string, digest Hash) (Hash, error) {
	if err := checkShape(h, subject); err != nil {
		return Hash{}, err
	}
	kp, cached, err := v.key(h.From)
	if err != nil {
		return Hash{}, err
	}
	msg := signedBytes(h.Ver, h.Seq, h.Prev, subject, digest)
	if err := kp.Verify(msg, h.Sig); err != nil {
		return Hash{}, fmt.Errorf("%w: message seq %d from %s on %q", ErrBadSignature, h.Seq, h.From, shorten(subject))
	}
	if !cached {
		v.remember(h.From, kp)
	}
	return chainHash(h.Prev, h.Seq, subject, digest), nil
}

// checkShape applies ParseHeaders' rules to a Headers value built by hand,
// except for the key, which key() checks (and caches).
func checkShape(h Headers, subject string) error {
	if h.Ver != wire.Version {
		return headerErr(wire.HdrVer, h.Ver, ErrVersion, "want %q", wire.Version)
	}
	if h.Seq == 0 {
		return headerErr(wire.HdrSeq, "0", ErrHeader, "zero (sequence numbers start at 1)")
	}
	if err := checkPrev(h.Seq, h.Prev); err != nil {
		return headerErr(wire.HdrPrev, Hash(h.Prev).String(), ErrHeader, "%v", err)
	}
	if len(h.Sig) != SigSize {
		return headerErr(wire.HdrSig, "", ErrHeader, "%d bytes, want %d", len(h.Sig), SigSize)
	}
	if err := subjects.ValidPublish(subject); err != nil {
		return fmt.Errorf("%w: %w", ErrHeader, err)
	}
	return nil
}

func (v *Verifier) key(pub string) (kp nkeys.KeyPair, cached bool, err error) {
	v.mu.RLock()
	kp, ok := v.keys[pub]
	v.mu.RUnlock()
	if ok {
		return kp, true, nil
	}
	kp, err = parseKey(pub)
	if err != nil {
		return nil, false, headerErr(wire.HdrFrom, pub, ErrKey, "%v", err)
	}
	return kp, false, nil
}

func (v *Verifier) remember(pub string, kp nkeys.KeyPair) {
	v.mu.Lock()
	defer v.mu.Unlock()
	if _, ok := v.keys[pub]; ok {
		return
	}
	if len(v.keys) >= v.max {
		for k := range v.keys {
			delete(v.keys, k)
			break
		}
	}
	v.keys[pub] = kp
}

// isBadSignature separates "the key holder's signature is wrong" from "the
// headers are malformed", which Observe treats differently.
func isBadSignature(err error) bool { return errors.Is(err, ErrBadSignature) }

package trust

import (
	"encoding/base64"
	"errors"
	"fmt"

	"github.com/robonet-mesh/robonet/wire"
)

// ErrProof wraps every reason a fork proof does not hold.
var ErrProof = errors.New("trust: not a fork proof")

// ForkError is the error Observe returns for a fork. Proof, when the ledger
// still held the earlier message's evidence, lets anyone else check the fork
// (VerifyForkProof); without it the break is this ledger's word only.
type ForkError struct {
	Key    string
	Reason string
	Proof  *wire.ForkProof
}

// Error names the key and the conflict.
func (e *ForkError) Error() string {
	return fmt.Sprintf("%v: %v: %s: %s", ErrBreak, ErrFork, e.Key, e.Reason)
}

// Unwrap returns ErrBreak and ErrFork.
func (e *ForkError) Unwrap() []error { return []error{ErrBreak, ErrFork} }

// evidence is what a ledger keeps of a recent accepted message so that it
// can prove a later fork against it.
type evidence struct {
	seq     uint64
	prev    Hash
	subject string
	digest  Hash
	sig     [SigSize]byte
}

func (e *evidence) wire() wire.Evidence {
	return wire.Evidence{Ver: wire.Version, Seq: e.seq, Prev: e.prev.String(), Subject: e.subject,
		Digest: e.digest.String(), Sig: base64.RawURLEncoding.EncodeToString(e.sig[:])}
}

func newEvidence(h Headers, subject string, digest Hash) evidence {
	e := evidence{seq: h.Seq, prev: h.Prev, subject: subject, digest: digest}
	copy(e.sig[:], h.Sig)
	return e
}

// VerifyEvidence checks that e is a message key signed and returns its chain
// hash. Every field is checked strictly, as ParseHeaders checks headers.
func VerifyEvidence(key string, e wire.Evidence) (Hash, error) {
	if err := CheckKey(key); err != nil {
		return Hash{}, fmt.Errorf("%w: key: %w", ErrProof, err)
	}
	prev, err := parseHash(e.Prev)
	if err != nil {
		return Hash{}, fmt.Errorf("%w: prev: %v", ErrProof, err)
	}
	digest, err := parseHash(e.Digest)
	if err != nil {
		return Hash{}, fmt.Errorf("%w: digest: %v", ErrProof, err)
	}
	if len(e.Sig) != SigTextLen {
		return Hash{}, fmt.Errorf("%w: sig of %d characters, want %d", ErrProof, len(e.Sig), SigTextLen)
	}
	sig, err := base64.RawURLEncoding.Strict().DecodeString(e.Sig)
	if err != nil || len(sig) != SigSize {
		return Hash{}, fmt.Errorf("%w: sig is not %d bytes of base64url", ErrProof, SigSize)
	}
	h := Headers{Ver: e.Ver, From: key, Seq: e.Seq, Prev: prev, Sig: sig}
	hash, err := NewVerifier(1).verify(h, e.Subject, digest)
	if err != nil {
		return Hash{}, fmt.Errorf("%w: seq %d: %w", ErrProof, e.Seq, err)
	}
	return hash, nil
}

// VerifyForkProof checks that p proves p.Key forked its chain: both pieces
// of evidence carry valid signatures by p.Key and cannot lie on one chain —
// the same seq with different contents, or one at the other's seq+1 naming
// a predecessor other than it.
func VerifyForkProof(p *wire.ForkProof) error {
	if p == nil {
		return fmt.Errorf("%w: none given", ErrProof)
	}
	ha, err := VerifyEvidence(p.Key, p.A)
	if err != nil {
		return fmt.Errorf("evidence a: %w", err)
	}
	hb, err := VerifyEvidence(p.Key, p.B)
	if err != nil {
		return fmt.Errorf("evidence b: %w", err)
	}
	a, b, hashA := p.A, p.B, ha
	if b.Seq < a.Seq {
		a, b, hashA = b, a, hb
	}
	switch {
	case a.Seq == b.Seq:
		if ha == hb {
			return fmt.Errorf("%w: both pieces are the same message (seq %d)", ErrProof, a.Seq)
		}
		return nil
	case a.Seq < b.Seq && b.Seq-a.Seq == 1:
		if b.Prev == hashA.String() {
			return fmt.Errorf("%w: seq %d follows seq %d: they are one chain", ErrProof, b.Seq, a.Seq)
		}
		return nil
	}
	return fmt.Errorf("%w: seqs %d and %d are neither equal nor consecutive", ErrProof, a.Seq, b.Seq)
}

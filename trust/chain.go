package trust

import (
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/binary"
	"fmt"
	"math"
	"sync"

	"github.com/nats-io/nkeys"
	"github.com/robonet-mesh/robonet/subjects"
	"github.com/robonet-mesh/robonet/wire"
)

// ChainState is where a sender's chain stands: the last sequence number it
// signed and the chain head after it. The zero value is a new chain. The node
// persists it so a restart continues the chain instead of forking it.
type ChainState struct {
	Seq  uint64 `json:"seq"`  // last seq signed; 0 before the first message
	Head Hash   `json:"head"` // h_Seq; all zeros when Seq is 0
}

// Validate reports whether s could have come from a chain: the head is all
// zeros exactly when no message was signed.
func (s ChainState) Validate() error {
	switch {
	case s.Seq == 0 && !s.Head.IsZero():
		return fmt.Errorf("%w: seq 0 with head %s (a new chain has a zero head)", ErrChainState, s.Head)
	case s.Seq > 0 && s.Head.IsZero():
		return fmt.Errorf("%w: seq %d with a zero head", ErrChainState, s.Seq)
	}
	return nil
}

// Skip returns the state to continue from when s may be behind the last
// message really sent, as after a crash between Sign and persisting State:
// reusing a sequence number would be a fork and get the sender quarantined.
// The result jumps n sequence numbers ahead with a fresh head derived from s
// (SHA-256("robonet/hcth/skip\x00" ‖ head ‖ be64(new seq))); receivers see a
// gap, which lowers the score a little but is not a break. n must exceed the
// number of messages that can be signed between two persists. Persist the
// result before signing with it, or a second crash would repeat the jump.
func (s ChainState) Skip(n uint64) (ChainState, error) {
	if err := s.Validate(); err != nil {
		return ChainState{}, err
	}
	if n == 0 {
		return ChainState{}, fmt.Errorf("%w: skip of 0", ErrChainState)
	}
	if n >= math.MaxUint64 || s.Seq > math.MaxUint64-1-n {
		return ChainState{}, fmt.Errorf("%w: seq %d + %d", ErrChainExhausted, s.Seq, n)
	}
	next := s.Seq + n
	buf := make([]byte, 0, len(tagSkip)+HashSize+8)
	buf = append(buf, tagSkip...)
	buf = append(buf, s.Head[:]...)
	buf = binary.BigEndian.AppendUint64(buf, next)
	return ChainState{Seq: next, Head: sha256.Sum256(buf)}, nil
}

// Chain signs a sender's outgoing messages, advancing its hash chain. It is
// safe for concurrent use: every Sign gets its own sequence number. Messages
// signed concurrently may be published out of order; receivers accept that
// (see Ledger), so the caller need not serialise Sign and publish.
type Chain struct {
	kp   nkeys.KeyPair
	pub  string
	priv ed25519.PrivateKey // decoded once: nkeys re-derives it from the seed on every Sign (2.5x slower); nil if kp has no seed

	mu    sync.Mutex // guards state
	state ChainState
}

// NewChain continues the chain at state with the key pair kp, which must be a
// user ('U') or server ('N') key able to sign.
func NewChain(kp nkeys.KeyPair, state ChainState) (*Chain, error) {
	if kp == nil {
		return nil, fmt.Errorf("%w: nil key pair", ErrKey)
	}
	if err := state.Validate(); err != nil {
		return nil, err
	}
	pub, err := kp.PublicKey()
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrKey, err)
	}
	if err := CheckKey(pub); err != nil {
		return nil, err
	}
	// A public-only or curve key fails here rather than on the first message.
	if _, err := kp.Sign([]byte(tagSig)); err != nil {
		return nil, fmt.Errorf("%w %s: cannot sign: %v", ErrKey, pub, err)
	}
	c := &Chain{kp: kp, pub: pub, state: state}
	if seed, err := kp.Seed(); err == nil {
		if _, raw, err := nkeys.DecodeSeed(seed); err == nil && len(raw) == ed25519.SeedSize {
			c.priv = ed25519.NewKeyFromSeed(raw)
		}
	}
	return c, nil
}

// PublicKey is the key the chain signs with, the Rn-From of its messages.
func (c *Chain) PublicKey() string { return c.pub }

// State returns the chain's position after the last Sign. Persist it; see
// ChainState.Skip for what to do when persisting may lag behind sending.
func (c *Chain) State() ChainState {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.state
}

// Sign takes the chain's next sequence number for a message on subject with
// payload and returns the headers to send with it. The subject must be one
// that can be published (subjects.ValidPublish). Once Sign has taken a
// sequence number it is never reused, even if signing then fails.
func (c *Chain) Sign(subject string, payload []byte) (Headers, error) {
	if err := subjects.ValidPublish(subject); err != nil {
		return Headers{}, fmt.Errorf("sign: %w", err)
	}
	digest := Hash(sha256.Sum256(payload))

	c.mu.Lock()
	if c.state.Seq == math.MaxUint64 {
		c.mu.Unlock()
		return Headers{}, fmt.Errorf("sign: %w", ErrChainExhausted)
	}
	seq := c.state.Seq + 1
	prev := c.state.Head
	c.state = ChainState{Seq: seq, Head: chainHash(prev, seq, subject, digest)}
	c.mu.Unlock()

	// The ed25519 signature is the slow part; it runs outside the lock.
	msg := signedBytes(wire.Version, seq, prev, subject, digest)
	var sig []byte
	var err error
	if c.priv != nil {
		sig = ed25519.Sign(c.priv, msg)
	} else {
		sig, err = c.kp.Sign(msg)
	}
	if err != nil {
		return Headers{}, fmt.Errorf("sign seq %d: %w", seq, err)
	}
	return Headers{Ver: wire.Version, From: c.pub, Seq: seq, Prev: prev, Sig: sig}, nil
}

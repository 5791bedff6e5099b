package mesh

import (
	"crypto/rand"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"sync"
	"syscall"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nkeys"

	"github.com/robonet-mesh/robonet/trust"
	"github.com/robonet-mesh/robonet/wire"
)

// Block sizes: how many sequence numbers a Signer reserves at a time. A
// node, one long-lived process signing fast, takes large blocks; a CLI
// takes small ones, so that two processes sharing a key stay within the
// receivers' window (trust.Config.Window, 1024) of each other and their
// messages count as late, not stale.
const (
	NodeChainBlock   = 1 << 16
	ClientChainBlock = 128
)

// Signer signs what one identity sends into its HCTH hash chain, and keeps
// the chain from ever reusing a sequence number, across restarts, crashes
// and concurrent processes that share the key (two `robonet run` at once):
// each process reserves a block of sequence numbers in the chain file under
// an exclusive lock and starts it with a fresh head (trust.ChainState.Skip),
// so receivers see a gap between processes, never a fork. A crash loses at
// most the rest of a block.
type Signer struct {
	kp    nkeys.KeyPair
	pub   string
	path  string // "" for a session signer: no chain file
	deleg string // wire.HdrDelegation value added to every message, or ""

	block int

	mu    sync.Mutex // guards chain, left, end and mtime; held across the file reservation
	chain *trust.Chain
	left  int       // signatures left in the reserved block
	end   uint64    // the file's Next.Seq after our reservation
	mtime time.Time // the chain file's modification time after our reservation (clients)
}

// chainFile is the JSON kept at Signer.path: the first seq not yet handed
// out to any process, and a head to derive the next block's from.
type chainFile struct {
	Key  string           `json:"key"`
	Next trust.ChainState `json:"next"`
}

// NewSigner opens (creating) the chain file at path for kp and reserves a
// first block of block sequence numbers (<= 0: ClientChainBlock).
func NewSigner(kp nkeys.KeyPair, path string, block int) (*Signer, error) {
	pub, err := kp.PublicKey()
	if err != nil {
		return nil, fmt.Errorf("signer: %w", err)
	}
	if block <= 1 {
		block = ClientChainBlock
	}
	s := &Signer{kp: kp, pub: pub, path: path, block: block}
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.reserveLocked(); err != nil {
		return nil, err
	}
	return s, nil
}

// PublicKey is the signing identity.
func (s *Signer) PublicKey() string { return s.pub }

// NewSessionSigner signs as a delegated key kp (a gateway session's) that
// carries the delegation header hdr (trust.SignDelegation) on every
// message. Its chain lives in memory only: it starts at the current time
// in microseconds, so a gateway that restarts and rebuilds the signer of a
// bearer token lands ahead of what receivers saw of the key (a gap, never a
// stale or forked message) as long as the clock does not go back.
func NewSessionSigner(kp nkeys.KeyPair, hdr string) (*Signer, error) {
	pub, err := kp.PublicKey()
	if err != nil {
		return nil, fmt.Errorf("session signer: %w", err)
	}
	start, err := trust.ChainState{}.Skip(uint64(max(time.Now().UnixMicro(), 1)))
	if err != nil {
		return nil, fmt.Errorf("session signer: %w", err)
	}
	c, err := trust.NewChain(kp, start)
	if err != nil {
		return nil, fmt.Errorf("session signer: %w", err)
	}
	return &Signer{kp: kp, pub: pub, deleg: hdr, block: NodeChainBlock, chain: c, left: math.MaxInt}, nil
}

// Fresh moves to a new block when another process sharing the key has
// reserved one since ours: call it before a burst of messages after a wait
// (a gather after waiting for an approval), so they are not far behind
// what receivers have seen of the key.
func (s *Signer) Fresh() error {
	if s.path == "" {
		return nil // a session signer: one process holds the chain
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.reserve(true)
}

// reserveLocked takes the next block from the file. s.mu must be held.
func (s *Signer) reserveLocked() error { return s.reserve(false) }

// reserve takes the next block; with fresh set, only when the file moved
// past our block. s.mu must be held.
func (s *Signer) reserve(fresh bool) error {
	if err := os.MkdirAll(filepath.Dir(s.path), 0o700); err != nil {
		return fmt.Errorf("chain file: %w", err)
	}
	f, err := os.OpenFile(s.path, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return fmt.Errorf("chain file: %w", err)
	}
	defer f.Close()
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX); err != nil {
		return fmt.Errorf("chain file %s: lock: %w", s.path, err)
	}
	defer syscall.Flock(int(f.Fd()), syscall.LOCK_UN)
	var cf chainFile
	st, err := f.Stat()
	if err != nil {
		return fmt.Errorf("chain file: %w", err)
	}
	if st.Size() > 0 {
		buf := make([]byte, min(st.Size(), 4096))
		k, err := f.ReadAt(buf, 0)
		if err != nil && k != len(buf) {
			return fmt.Errorf("chain file %s: %w", s.path, err)
		}
		if err := json.Unmarshal(buf[:k], &cf); err != nil {
			return fmt.Errorf("chain file %s: %w (remove it to start a new chain; peers will see a restart from seq 1 as a fork only if they remember the old one)", s.path, err)
		}
		if cf.Key != s.pub {
			return fmt.Errorf("chain file %s belongs to key %s, not %s", s.path, cf.Key, s.pub)
		}
		if err := cf.Next.Validate(); err != nil {
			return fmt.Errorf("chain file %s: %w", s.path, err)
		}
	}
	// The block starts after a skip, so its head is fresh even when the
	// previous block's last messages were never recorded.
	start := cf.Next
	if start.Seq == 0 {
		// A new chain starts at a random point: a key whose chain file was
		// lost, or that is used from a second place with a chain file of
		// its own, then lands far from its old sequence numbers (receivers
		// see stale or gapped messages, not a fork that quarantines it).
		var b [8]byte
		if _, err := rand.Read(b[:]); err != nil {
			return fmt.Errorf("chain file: %w", err)
		}
		if start, err = start.Skip(binary.BigEndian.Uint64(b[:])>>16 + 1); err != nil {
			return fmt.Errorf("chain file %s: %w", s.path, err)
		}
	} else if start, err = start.Skip(1); err != nil {
		return fmt.Errorf("chain file %s: %w", s.path, err)
	}
	if fresh && cf.Next.Seq == s.end {
		s.mtime = st.ModTime()
		return nil // nobody reserved after us: keep the block
	}
	next, err := start.Skip(uint64(s.block))
	if err != nil {
		return fmt.Errorf("chain file %s: %w", s.path, err)
	}
	data, _ := json.Marshal(chainFile{Key: s.pub, Next: next})
	if err := f.Truncate(0); err != nil {
		return fmt.Errorf("chain file: %w", err)
	}
	if _, err := f.WriteAt(data, 0); err != nil {
		return fmt.Errorf("chain file: %w", err)
	}
	if err := f.Sync(); err != nil {
		return fmt.Errorf("chain file: %w", err)
	}
	if st, err := f.Stat(); err == nil {
		s.mtime = st.ModTime()
	}
	c, err := trust.NewChain(s.kp, start)
	if err != nil {
		return err
	}
	// The block is start.Seq+1 .. next.Seq-1.
	s.chain, s.left, s.end = c, s.block-1, next.Seq
	return nil
}

// Sign signs a message on subject and returns its HCTH headers.
func (s *Signer) Sign(subject string, payload []byte) (trust.Headers, error) {
	s.mu.Lock()
	if s.left == 0 {
		if err := s.reserveLocked(); err != nil {
			s.mu.Unlock()
			return trust.Headers{}, err
		}
	} else if s.block <= ClientChainBlock && s.movedLocked() {
		// Another process (or client) with this key reserved a block
		// since ours: follow it, or ours falls a window behind what the
		// nodes have seen of the key and is refused as stale (a watch in
		// one terminal, commands in another).
		if err := s.reserve(true); err != nil {
			s.mu.Unlock()
			return trust.Headers{}, err
		}
	}
	s.left--
	c := s.chain
	s.mu.Unlock()
	return c.Sign(subject, payload)
}

// movedLocked reports whether the chain file changed since this signer
// last reserved (one stat). s.mu must be held.
func (s *Signer) movedLocked() bool {
	st, err := os.Stat(s.path)
	return err == nil && !st.ModTime().Equal(s.mtime)
}

// SignMsg sets m's HCTH headers (keeping any others).
func (s *Signer) SignMsg(m *nats.Msg) error {
	h, err := s.Sign(m.Subject, m.Data)
	if err != nil {
		return err
	}
	if m.Header == nil {
		m.Header = nats.Header{}
	}
	h.SetInto(m.Header)
	if s.deleg != "" {
		m.Header.Set(wire.HdrDelegation, s.deleg)
	}
	return nil
}

// ErrUnsigned is wrapped when a message that must be signed is not.
var ErrUnsigned = errors.New("unsigned")

// ParseSigned reads m's HCTH headers; ErrUnsigned when it has none.
func ParseSigned(m *nats.Msg) (trust.Headers, error) {
	if m.Header == nil || m.Header.Get(wire.HdrSig) == "" {
		return trust.Headers{}, fmt.Errorf("%w message on %s", ErrUnsigned, m.Subject)
	}
	return trust.ParseHeaderMap(m.Header)
}

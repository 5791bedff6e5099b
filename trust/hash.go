package trust

import (
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"fmt"
)

// HashSize is the size of a chain hash and of a payload digest (SHA-256).
const HashSize = sha256.Size

// Hash is a chain head h_n or a payload digest. Its text form (String, JSON)
// is 64 lower-case hex digits.
type Hash [HashSize]byte

// String returns the 64 lower-case hex digits of h.
func (h Hash) String() string { return hex.EncodeToString(h[:]) }

// IsZero reports whether h is all zeros, the "previous hash" of seq 1.
func (h Hash) IsZero() bool { return h == Hash{} }

// MarshalText encodes h as 64 lower-case hex digits.
func (h Hash) MarshalText() ([]byte, error) {
	out := make([]byte, 2*HashSize)
	hex.Encode(out, h[:])
	return out, nil
}

// UnmarshalText parses exactly 64 lower-case hex digits.
func (h *Hash) UnmarshalText(b []byte) error {
	v, err := parseHash(string(b))
	if err != nil {
		return fmt.Errorf("%w %q: %v", ErrHash, shorten(string(b)), err)
	}
	*h = v
	return nil
}

// parseHash accepts only the canonical form: 64 lower-case hex digits.
func parseHash(s string) (Hash, error) {
	var h Hash
	if len(s) != 2*HashSize {
		return h, fmt.Errorf("%d characters, want %d hex digits", len(s), 2*HashSize)
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if (c < '0' || c > '9') && (c < 'a' || c > 'f') {
			return h, fmt.Errorf("byte %d %q is not a lower-case hex digit", i, c)
		}
	}
	if _, err := hex.Decode(h[:], []byte(s)); err != nil {
		return h, err
	}
	return h, nil
}

// Domain tags put in front of everything the package signs or MACs, so a
// signature or MAC made for one purpose is never valid for another. Each ends
// in NUL, so no tag is a prefix of another.
const (
	tagSig      = "robonet/hcth/sig\x00"
	tagSkip     = "robonet/hcth/skip\x00"
	tagApproval = "robonet/approval\x00"
	tagProof    = "robonet/join-proof\x00"
	tagToken    = "robonet/join-token\x00"
)

// ChainHash computes the chain head after a message:
//
//	h_seq = SHA-256( prev[32] ‖ be64(seq) ‖ be16(len(subject)) ‖ subject ‖ SHA-256(payload)[32] )
//
// where prev is h_{seq-1} (all zeros for seq 1). Subjects are at most
// subjects.MaxSubjectLen (4096) bytes, so their length fits 16 bits; a longer
// subject is never signed or accepted, and here its length is truncated to
// 16 bits, which only matters to callers that skip validation.
func ChainHash(prev Hash, seq uint64, subject string, payload []byte) Hash {
	return chainHash(prev, seq, subject, sha256.Sum256(payload))
}

func chainHash(prev Hash, seq uint64, subject string, digest Hash) Hash {
	var stack [256]byte
	buf := stack[:0]
	if n := 2*HashSize + 10 + len(subject); n > len(stack) {
		buf = make([]byte, 0, n)
	}
	buf = append(buf, prev[:]...)
	buf = binary.BigEndian.AppendUint64(buf, seq)
	buf = binary.BigEndian.AppendUint16(buf, uint16(len(subject)))
	buf = append(buf, subject...)
	buf = append(buf, digest[:]...)
	return sha256.Sum256(buf)
}

// signedBytes is what Rn-Sig signs:
//
//	"robonet/hcth/sig\x00" ‖ u8(len(ver)) ‖ ver ‖ be64(seq) ‖ prev[32] ‖
//	be16(len(subject)) ‖ subject ‖ SHA-256(payload)[32]
//
// Callers have checked len(ver) < 256 and len(subject) <= MaxSubjectLen.
func signedBytes(ver string, seq uint64, prev Hash, subject string, digest Hash) []byte {
	buf := make([]byte, 0, len(tagSig)+1+len(ver)+8+HashSize+2+len(subject)+HashSize)
	buf = append(buf, tagSig...)
	buf = append(buf, byte(len(ver)))
	buf = append(buf, ver...)
	buf = binary.BigEndian.AppendUint64(buf, seq)
	buf = append(buf, prev[:]...)
	buf = binary.BigEndian.AppendUint16(buf, uint16(len(subject)))
	buf = append(buf, subject...)
	buf = append(buf, digest[:]...)
	return buf
}

package trust

import (
	"encoding/base64"
	"fmt"
	"strconv"

	"github.com/nats-io/nkeys"
	"github.com/robonet-mesh/robonet/wire"
)

// MaxHeaderValue is the longest value ParseHeaders reads for an Rn-* header.
// The longest legal value (a signature) is SigTextLen bytes; the limit keeps
// a hostile header from costing more than a glance.
const MaxHeaderValue = 256

// Sizes of the encoded header values.
const (
	SigSize    = 64 // ed25519 signature bytes
	SigTextLen = 86 // base64url without padding of SigSize bytes
	KeyTextLen = 56 // an nkeys public key
)

// Headers are the HCTH fields every robonet message carries.
type Headers struct {
	Ver  string   // Rn-Ver: wire.Version
	From string   // Rn-From: the sender's nkey public key ('U' user or 'N' server)
	Seq  uint64   // Rn-Seq: position in the sender's chain, from 1
	Prev [32]byte // Rn-Prev: h_{Seq-1}, all zeros for Seq 1
	Sig  []byte   // Rn-Sig: ed25519 signature over the signed bytes (see package doc)
}

// Encode returns the header values keyed by their wire names, in the only
// form ParseHeaders accepts: decimal Seq, 64 lower-case hex Prev, base64url
// (no padding) Sig.
func (h Headers) Encode() map[string]string {
	return map[string]string{
		wire.HdrVer:  h.Ver,
		wire.HdrFrom: h.From,
		wire.HdrSeq:  strconv.FormatUint(h.Seq, 10),
		wire.HdrPrev: Hash(h.Prev).String(),
		wire.HdrSig:  base64.RawURLEncoding.EncodeToString(h.Sig),
	}
}

// SetInto sets the headers into dst, replacing any earlier values; a
// nats.Header can be passed as is.
func (h Headers) SetInto(dst map[string][]string) {
	for k, v := range h.Encode() {
		dst[k] = []string{v}
	}
}

// HeaderError describes one invalid Rn-* header. It wraps ErrHeader and Err.
type HeaderError struct {
	Name   string // header name, e.g. wire.HdrSeq
	Value  string // the value received, shortened when long
	Err    error  // ErrHeader, or a more specific sentinel (ErrVersion, ErrKey)
	Reason string // what is wrong with it
}

// Error names the header, quotes the value and says what is wrong.
func (e *HeaderError) Error() string {
	if e.Value == "" {
		return fmt.Sprintf("header %s: %s", e.Name, e.Reason)
	}
	return fmt.Sprintf("header %s %q: %s", e.Name, e.Value, e.Reason)
}

// Unwrap returns ErrHeader and the specific sentinel, so errors.Is matches both.
func (e *HeaderError) Unwrap() []error {
	if e.Err == nil || e.Err == ErrHeader {
		return []error{ErrHeader}
	}
	return []error{ErrHeader, e.Err}
}

func headerErr(name, value string, sentinel error, format string, args ...any) error {
	return &HeaderError{Name: name, Value: shorten(value), Err: sentinel, Reason: fmt.Sprintf(format, args...)}
}

func shorten(s string) string {
	if len(s) > 64 {
		return s[:64] + "…"
	}
	return s
}

var hcthHeaders = [...]string{wire.HdrVer, wire.HdrFrom, wire.HdrSeq, wire.HdrPrev, wire.HdrSig}

// ParseHeaderMap is ParseHeaders over a header map such as nats.Header, and
// also refuses an Rn-* header that appears more than once.
func ParseHeaderMap(m map[string][]string) (Headers, error) {
	for _, name := range hcthHeaders {
		if n := len(m[name]); n > 1 {
			return Headers{}, headerErr(name, "", ErrHeader, "%d values, want exactly one", n)
		}
	}
	return ParseHeaders(func(name string) string {
		if v := m[name]; len(v) > 0 {
			return v[0]
		}
		return ""
	})
}

// ParseHeaders reads the Rn-* headers through get (nats.Header.Get fits) and
// validates each strictly: present, at most MaxHeaderValue bytes, Rn-Ver equal
// to wire.Version, Rn-From a user ('U') or server ('N') nkey with a valid
// checksum, Rn-Seq a canonical decimal in 1..2^64-1 (no sign, no leading
// zero), Rn-Prev 64 lower-case hex digits that are all zero exactly when
// Rn-Seq is 1, and Rn-Sig 86 base64url characters without padding that
// decode to 64 bytes. Every value ParseHeaders accepts is the one Encode
// produces. It does not check the signature (Verifier.Verify does).
func ParseHeaders(get func(string) string) (Headers, error) {
	var vals [len(hcthHeaders)]string
	for i, name := range hcthHeaders {
		v := get(name)
		if v == "" {
			return Headers{}, headerErr(name, "", ErrHeader, "missing")
		}
		if len(v) > MaxHeaderValue {
			return Headers{}, headerErr(name, v, ErrHeader, "%d bytes, limit %d", len(v), MaxHeaderValue)
		}
		vals[i] = v
	}
	var h Headers
	if vals[0] != wire.Version {
		return Headers{}, headerErr(wire.HdrVer, vals[0], ErrVersion, "want %q", wire.Version)
	}
	h.Ver = wire.Version
	if err := checkKeyText(vals[1]); err != nil {
		return Headers{}, headerErr(wire.HdrFrom, vals[1], ErrKey, "%v", err)
	}
	h.From = vals[1]
	seq, err := parseSeq(vals[2])
	if err != nil {
		return Headers{}, headerErr(wire.HdrSeq, vals[2], ErrHeader, "%v", err)
	}
	h.Seq = seq
	prev, err := parseHash(vals[3])
	if err != nil {
		return Headers{}, headerErr(wire.HdrPrev, vals[3], ErrHeader, "%v", err)
	}
	if err := checkPrev(seq, prev); err != nil {
		return Headers{}, headerErr(wire.HdrPrev, vals[3], ErrHeader, "%v", err)
	}
	h.Prev = prev
	sig, err := parseSig(vals[4])
	if err != nil {
		return Headers{}, headerErr(wire.HdrSig, vals[4], ErrHeader, "%v", err)
	}
	h.Sig = sig
	return h, nil
}

// parseSeq accepts the canonical decimal form of 1..2^64-1.
func parseSeq(s string) (uint64, error) {
	if len(s) > 20 {
		return 0, fmt.Errorf("%d digits, at most 20", len(s))
	}
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return 0, fmt.Errorf("byte %d %q is not a decimal digit", i, s[i])
		}
	}
	if s[0] == '0' {
		return 0, fmt.Errorf("zero or leading zero (sequence numbers start at 1)")
	}
	v, err := strconv.ParseUint(s, 10, 64)
	if err != nil {
		return 0, fmt.Errorf("out of range 1..%d", uint64(1<<64-1))
	}
	return v, nil
}

// checkPrev enforces that only seq 1 has the all-zero previous hash: no
// chain head is all zeros, so any other pairing is forged or broken.
func checkPrev(seq uint64, prev Hash) error {
	switch {
	case seq == 1 && !prev.IsZero():
		return fmt.Errorf("must be all zeros for seq 1")
	case seq > 1 && prev.IsZero():
		return fmt.Errorf("all zeros but seq is %d (only seq 1 has no predecessor)", seq)
	}
	return nil
}

// parseSig accepts exactly the base64url (no padding) encoding of 64 bytes.
// The length and alphabet checks matter: the decoder skips CR and LF, so
// without them two different strings would decode to one signature.
func parseSig(s string) ([]byte, error) {
	if len(s) != SigTextLen {
		return nil, fmt.Errorf("%d characters, want %d (base64url of %d bytes, no padding)", len(s), SigTextLen, SigSize)
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if (c < 'A' || c > 'Z') && (c < 'a' || c > 'z') && (c < '0' || c > '9') && c != '-' && c != '_' {
			return nil, fmt.Errorf("byte %d %q is not base64url", i, c)
		}
	}
	sig, err := base64.RawURLEncoding.Strict().DecodeString(s)
	if err != nil || len(sig) != SigSize {
		return nil, fmt.Errorf("not canonical base64url of %d bytes", SigSize)
	}
	return sig, nil
}

// checkKeyText validates a public key strictly: exactly KeyTextLen base32
// characters (so one key has one spelling: the decoder would skip CR/LF), a
// user or server prefix, and a valid nkeys checksum and curve point.
func checkKeyText(s string) error {
	_, err := parseKey(s)
	return err
}

func parseKey(s string) (nkeys.KeyPair, error) {
	if len(s) != KeyTextLen {
		return nil, fmt.Errorf("%d characters, want %d", len(s), KeyTextLen)
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if (c < 'A' || c > 'Z') && (c < '2' || c > '7') {
			return nil, fmt.Errorf("byte %d %q is not base32 (A-Z, 2-7)", i, c)
		}
	}
	if s[0] != 'U' && s[0] != 'N' {
		return nil, fmt.Errorf("prefix %q: want a user key (U) or a server key (N)", s[0])
	}
	kp, err := nkeys.FromPublicKey(s)
	if err != nil {
		return nil, fmt.Errorf("not an nkeys public key: %v", err)
	}
	return kp, nil
}

// CheckKey reports whether s is a public key robonet accepts as a sender or
// approver: a user ('U') or server ('N') nkey, in canonical form, with a valid
// checksum. The error wraps ErrKey.
func CheckKey(s string) error {
	if err := checkKeyText(s); err != nil {
		return fmt.Errorf("%w %q: %v", ErrKey, shorten(s), err)
	}
	return nil
}

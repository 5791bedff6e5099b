package trust

import (
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"time"

	"github.com/nats-io/nkeys"
	"github.com/robonet-mesh/robonet/subjects"
)

// Limits on Approval fields, so the signed encoding stays small.
const (
	MaxApprovalField = 256 // bytes in ID, ArgsDigest, Requester
	MaxApprovers     = 64  // largest Need
)

// Approval is a request to run a critical (tier 3) command that waits for
// Need distinct approvers. It is kept in the rn_approvals bucket as JSON; as
// anybody who can write there can add entries to Sigs, nothing trusts Sigs
// without verifying it: Satisfied and Count check every signature.
type Approval struct {
	ID         string            `json:"id"`
	Verb       string            `json:"verb"`
	ArgsDigest string            `json:"args_digest"` // DigestArgs of the command's arguments
	Requester  string            `json:"requester"`   // the requester's public key; it cannot approve
	Need       int               `json:"need"`
	Expires    time.Time         `json:"expires"`
	Sigs       map[string][]byte `json:"sigs,omitempty"` // approver public key → signature
}

// DigestArgs is the ArgsDigest of a command's arguments as sent: the
// lower-case hex SHA-256 of the bytes.
func DigestArgs(args []byte) string {
	d := sha256.Sum256(args)
	return hex.EncodeToString(d[:])
}

// Validate checks the fields an approval's signatures cover.
func (a *Approval) Validate() error {
	field := func(name, v string) error {
		if v == "" || len(v) > MaxApprovalField {
			return fmt.Errorf("%w %q: %s must be 1..%d bytes", ErrApproval, shorten(a.ID), name, MaxApprovalField)
		}
		return nil
	}
	if err := field("id", a.ID); err != nil {
		return err
	}
	if err := subjects.ValidToken(a.Verb); err != nil {
		return fmt.Errorf("%w %q: verb: %w", ErrApproval, a.ID, err)
	}
	if err := field("args digest", a.ArgsDigest); err != nil {
		return err
	}
	if err := field("requester", a.Requester); err != nil {
		return err
	}
	if a.Need < 1 || a.Need > MaxApprovers {
		return fmt.Errorf("%w %q: need %d, want 1..%d", ErrApproval, a.ID, a.Need, MaxApprovers)
	}
	if a.Expires.IsZero() {
		return fmt.Errorf("%w %q: no expiry", ErrApproval, a.ID)
	}
	return nil
}

// signedBytes is what an approver signs:
//
//	"robonet/approval\x00" ‖ str(ID) ‖ str(Verb) ‖ str(ArgsDigest) ‖ str(Requester) ‖
//	be32(Need) ‖ be64(Expires.Unix()) ‖ be32(Expires.Nanosecond())
//
// with str(s) = be32(len(s)) ‖ s. Sigs is not covered.
func (a *Approval) signedBytes() []byte {
	n := len(tagApproval) + 4*4 + len(a.ID) + len(a.Verb) + len(a.ArgsDigest) + len(a.Requester) + 4 + 8 + 4
	b := make([]byte, 0, n)
	b = append(b, tagApproval...)
	for _, s := range []string{a.ID, a.Verb, a.ArgsDigest, a.Requester} {
		b = binary.BigEndian.AppendUint32(b, uint32(len(s)))
		b = append(b, s...)
	}
	b = binary.BigEndian.AppendUint32(b, uint32(a.Need))
	b = binary.BigEndian.AppendUint64(b, uint64(a.Expires.Unix()))
	b = binary.BigEndian.AppendUint32(b, uint32(a.Expires.Nanosecond()))
	return b
}

// Sign returns kp's signature approving a. It neither adds it to Sigs nor
// checks expiry: pass it to AddSignature (on this or another copy).
func (a *Approval) Sign(kp nkeys.KeyPair) ([]byte, error) {
	if err := a.Validate(); err != nil {
		return nil, err
	}
	sig, err := kp.Sign(a.signedBytes())
	if err != nil {
		return nil, fmt.Errorf("approve %s: %w", a.ID, err)
	}
	return sig, nil
}

// AddSignature records pub's approval after checking that a has not expired
// at now, that pub is an acceptable key other than the requester's, and that
// sig verifies over a's canonical encoding. Approving again with a key already
// recorded changes nothing and returns nil: one identity counts once.
func (a *Approval) AddSignature(pub string, sig []byte, now time.Time) error {
	if err := a.Validate(); err != nil {
		return err
	}
	if !now.Before(a.Expires) {
		return fmt.Errorf("approve %s: %w at %s", a.ID, ErrApprovalExpired, a.Expires.Format(time.RFC3339))
	}
	if err := a.verify(pub, sig); err != nil {
		return fmt.Errorf("approve %s: %w", a.ID, err)
	}
	if _, ok := a.Sigs[pub]; ok && a.verify(pub, a.Sigs[pub]) == nil {
		return nil
	}
	if a.Sigs == nil {
		a.Sigs = make(map[string][]byte)
	}
	a.Sigs[pub] = append([]byte(nil), sig...)
	return nil
}

func (a *Approval) verify(pub string, sig []byte) error {
	if pub == a.Requester {
		return fmt.Errorf("%w: %s", ErrSelfApproval, pub)
	}
	kp, err := parseKey(pub)
	if err != nil {
		return fmt.Errorf("%w %q: %v", ErrKey, shorten(pub), err)
	}
	if len(sig) != SigSize || kp.Verify(a.signedBytes(), sig) != nil {
		return fmt.Errorf("%w: approval by %s", ErrBadSignature, pub)
	}
	return nil
}

// Count returns the number of distinct approvers whose signature in Sigs
// verifies; entries that do not (tampered, requester's, malformed keys) are
// ignored. It is 0 for an invalid approval.
func (a *Approval) Count() int {
	if a.Validate() != nil {
		return 0
	}
	n := 0
	for pub, sig := range a.Sigs {
		if a.verify(pub, sig) == nil {
			n++
		}
	}
	return n
}

// Satisfied reports whether at least Need distinct approvers signed. It does
// not look at the clock: use Check before acting on an approval.
func (a *Approval) Satisfied() bool { return a.Validate() == nil && a.Count() >= a.Need }

// Check returns nil when a can be acted on at now: valid, not expired and
// satisfied. Otherwise the error wraps ErrApproval, ErrApprovalExpired or
// ErrQuorum.
func (a *Approval) Check(now time.Time) error {
	if err := a.Validate(); err != nil {
		return err
	}
	if !now.Before(a.Expires) {
		return fmt.Errorf("approval %s: %w at %s", a.ID, ErrApprovalExpired, a.Expires.Format(time.RFC3339))
	}
	if n := a.Count(); n < a.Need {
		return fmt.Errorf("approval %s: %w: %d of %d approvers", a.ID, ErrQuorum, n, a.Need)
	}
	return nil
}

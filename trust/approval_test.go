package trust

import (
	"bytes"
	"encoding/json"
	"errors"
	"testing"
	"time"
)

func newApproval(t *testing.T, requester string) *Approval {
	t.Helper()
	return &Approval{
		ID:         "ap-1",
		Verb:       "reboot",
		ArgsDigest: DigestArgs([]byte(`{"delay":0}`)),
		Requester:  requester,
		Need:       2,
		Expires:    t0.Add(10*time.Minute + 123*time.Nanosecond),
	}
}

func approve(t *testing.T, a *Approval, seed byte, now time.Time) error {
	t.Helper()
	kp := userKey(t, seed)
	sig, err := a.Sign(kp)
	if err != nil {
		return err
	}
	return a.AddSignature(pubOf(t, kp), sig, now)
}

func TestApprovalQuorum(t *testing.T) {
	t.Parallel()
	a := newApproval(t, pubOf(t, userKey(t, 1)))
	if a.Satisfied() || a.Count() != 0 {
		t.Fatal("satisfied with no approvers")
	}
	if err := approve(t, a, 2, t0); err != nil {
		t.Fatal(err)
	}
	if err := approve(t, a, 2, t0.Add(time.Second)); err != nil {
		t.Fatalf("approving twice: %v", err)
	}
	if a.Count() != 1 || a.Satisfied() {
		t.Fatalf("double approval by one key counted %d", a.Count())
	}
	if err := a.Check(t0); !errors.Is(err, ErrQuorum) {
		t.Fatalf("Check with 1 of 2: %v", err)
	}
	if err := approve(t, a, 3, t0); err != nil {
		t.Fatal(err)
	}
	if a.Count() != 2 || !a.Satisfied() || a.Check(t0) != nil {
		t.Fatalf("two approvers: count %d, check %v", a.Count(), a.Check(t0))
	}
	if err := a.Check(a.Expires); !errors.Is(err, ErrApprovalExpired) {
		t.Fatalf("Check at expiry: %v", err)
	}
	// What is stored in rn_approvals round-trips and still counts.
	b, _ := json.Marshal(a)
	var back Approval
	if err := json.Unmarshal(b, &back); err != nil || back.Count() != 2 || !back.Satisfied() {
		t.Fatalf("JSON round trip: count %d, %v", back.Count(), err)
	}
}

func TestApprovalRefuses(t *testing.T) {
	t.Parallel()
	requester := userKey(t, 1)
	tests := []struct {
		name string
		run  func(a *Approval) error
		want error
	}{
		{"expired", func(a *Approval) error { return approve(t, a, 2, a.Expires) }, ErrApprovalExpired},
		{"self approval", func(a *Approval) error { return approve(t, a, 1, t0) }, ErrSelfApproval},
		{"signature by another key", func(a *Approval) error {
			sig, _ := a.Sign(userKey(t, 3))
			return a.AddSignature(pubOf(t, userKey(t, 2)), sig, t0)
		}, ErrBadSignature},
		{"signature over another verb", func(a *Approval) error {
			other := *a
			other.Verb = "ping"
			sig, _ := other.Sign(userKey(t, 2))
			return a.AddSignature(pubOf(t, userKey(t, 2)), sig, t0)
		}, ErrBadSignature},
		{"signature over other args", func(a *Approval) error {
			other := *a
			other.ArgsDigest = DigestArgs([]byte(`{"delay":60}`))
			sig, _ := other.Sign(userKey(t, 2))
			return a.AddSignature(pubOf(t, userKey(t, 2)), sig, t0)
		}, ErrBadSignature},
		{"signature over a lower quorum", func(a *Approval) error {
			other := *a
			other.Need = 1
			sig, _ := other.Sign(userKey(t, 2))
			return a.AddSignature(pubOf(t, userKey(t, 2)), sig, t0)
		}, ErrBadSignature},
		{"signature over a later expiry", func(a *Approval) error {
			other := *a
			other.Expires = a.Expires.Add(time.Nanosecond)
			sig, _ := other.Sign(userKey(t, 2))
			return a.AddSignature(pubOf(t, userKey(t, 2)), sig, t0)
		}, ErrBadSignature},
		{"truncated signature", func(a *Approval) error {
			sig, _ := a.Sign(userKey(t, 2))
			return a.AddSignature(pubOf(t, userKey(t, 2)), sig[:63], t0)
		}, ErrBadSignature},
		{"key spelled with a newline", func(a *Approval) error {
			sig, _ := a.Sign(userKey(t, 2))
			p := pubOf(t, userKey(t, 2))
			return a.AddSignature(p[:10]+"\n"+p[10:55], sig, t0)
		}, ErrKey},
		{"zero need", func(a *Approval) error { a.Need = 0; return approve(t, a, 2, t0) }, ErrApproval},
		{"bad verb", func(a *Approval) error { a.Verb = "Re boot"; return approve(t, a, 2, t0) }, ErrApproval},
		{"no expiry", func(a *Approval) error { a.Expires = time.Time{}; return approve(t, a, 2, t0) }, ErrApproval},
		{"no id", func(a *Approval) error { a.ID = ""; return approve(t, a, 2, t0) }, ErrApproval},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			a := newApproval(t, pubOf(t, requester))
			err := tt.run(a)
			if !errors.Is(err, tt.want) {
				t.Fatalf("error %v, want %v", err, tt.want)
			}
			if a.Count() != 0 {
				t.Fatalf("refused approval counted: %d", a.Count())
			}
		})
	}
}

// TestApprovalIgnoresForgedEntries: Sigs comes from a KV bucket others can
// write, so Count verifies every entry.
func TestApprovalIgnoresForgedEntries(t *testing.T) {
	t.Parallel()
	req := userKey(t, 1)
	a := newApproval(t, pubOf(t, req))
	a.Need = 1
	reqSig, _ := a.Sign(req)
	goodSig, _ := a.Sign(userKey(t, 2))
	a.Sigs = map[string][]byte{
		pubOf(t, req):                       reqSig,                      // the requester's own
		pubOf(t, userKey(t, 3)):             goodSig,                     // a real signature under another key
		pubOf(t, userKey(t, 4)):             bytes.Repeat([]byte{1}, 64), // garbage
		"UNOTAKEY":                          goodSig,
		pubOf(t, userKey(t, 5))[:55] + "\n": goodSig,
	}
	if a.Count() != 0 || a.Satisfied() {
		t.Fatalf("forged entries counted: %d", a.Count())
	}
	// A valid approval replaces a forged entry under the same key.
	sig4, _ := a.Sign(userKey(t, 4))
	if err := a.AddSignature(pubOf(t, userKey(t, 4)), sig4, t0); err != nil || a.Count() != 1 || !a.Satisfied() {
		t.Fatalf("after a real approval: count %d, %v", a.Count(), err)
	}
}

package wire

import "time"

// TEMPORARY (gw branch only): stand-in for main's "trust: delegation"
// commit, removed when that is merged.

// HdrDelegation carries a delegation.
const HdrDelegation = "Rn-Deleg"

// Delegation lets Key speak for User with Role until Expires, at Node.
type Delegation struct {
	User    string    `json:"user"`
	Key     string    `json:"key"`
	Role    string    `json:"role"`
	Node    string    `json:"node"`
	Issued  time.Time `json:"issued"`
	Expires time.Time `json:"expires"`
	Sig     string    `json:"sig,omitempty"`
}

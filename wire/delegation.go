package wire

import "time"

// HdrDelegation carries a Delegation (trust.SignDelegation's encoding) on
// every message signed by a delegated key: a gateway session signs as a key
// of its own, and the header says whose authority it carries.
const HdrDelegation = "Rn-Deleg"

// Delegation is a user's signed statement that Key may act for it with at
// most Role until Expires. The gateway holds Key for a browser session or
// a bearer token; nodes admit a message signed by Key as User with the
// lower of Role and the role User has when the message arrives, so a
// revoked or demoted user's sessions lose their power at once. Node is the
// gateway node the delegation was made for (its node key): a gateway
// accepts only delegations made for it.
type Delegation struct {
	User    string    `json:"user"`
	Key     string    `json:"key"`
	Role    string    `json:"role"`
	Node    string    `json:"node"`
	Issued  time.Time `json:"iat"`
	Expires time.Time `json:"exp"`
}

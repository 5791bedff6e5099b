package node

import (
	"fmt"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/robonet-mesh/robonet/trust"
	"github.com/robonet-mesh/robonet/wire"
)

// sender is who a signed message speaks for: the role its signing key has
// here, or, for a key a user delegated (a gateway session), the user's.
type sender struct {
	role string
	// user is the delegating user when the key is delegated, else "".
	user string
}

// senderOf is the role of signer from as this node sees it. A key that is
// not a user or node of the swarm is admitted only with a delegation
// (wire.HdrDelegation) made for it by a user this node admits: its role is
// the lower of the delegated one and the user's role now, so revoking or
// demoting the user takes every session of theirs down with them. reason
// says why a key was refused.
func (n *Node) senderOf(m *nats.Msg, from string) (s sender, reason string, ok bool) {
	if role, ok := n.roleOf(from); ok {
		return sender{role: role}, "", true
	}
	unknown := fmt.Sprintf("key %s is not a user or node of this swarm (or was revoked)", from)
	hdr := m.Header.Get(wire.HdrDelegation)
	if hdr == "" {
		return sender{}, unknown, false
	}
	d, err := trust.ParseDelegation(hdr, time.Now())
	switch {
	case err != nil:
		return sender{}, fmt.Sprintf("key %s: %v", from, err), false
	case d.Key != from:
		return sender{}, fmt.Sprintf("key %s: the delegation is for %s", from, d.Key), false
	case n.ids.isRevoked(from) || n.sentinelBlocked(from):
		return sender{}, unknown, false
	}
	urole, ok := n.roleOf(d.User)
	if !ok {
		return sender{}, fmt.Sprintf("key %s: delegated by %s, which is not a user of this swarm (or was revoked)", from, d.User), false
	}
	role := trust.LowerRole(urole, d.Role)
	if role == "" {
		return sender{}, fmt.Sprintf("key %s: delegated by %s, a %s, which cannot delegate", from, d.User, urole), false
	}
	return sender{role: role, user: d.User}, "", true
}

package trust

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/nats-io/nkeys"

	"github.com/robonet-mesh/robonet/wire"
)

// ErrDelegation wraps every reason a delegation is refused.
var ErrDelegation = errors.New("bad delegation")

// Delegation limits.
const (
	// MaxDelegation is the longest a delegation may run: long enough for a
	// scraper's token, short enough that a forgotten one dies.
	MaxDelegation = 90 * 24 * time.Hour
	// delegationSkew is how far in the future Issued may be (clocks differ).
	delegationSkew = 5 * time.Minute
	// maxDelegationHdr bounds the header before any decoding.
	maxDelegationHdr = 2048
)

// delegationTag separates delegation signatures from records and HCTH
// messages signed by the same key.
const delegationTag = "rn-deleg-v1\x00"

// SignDelegation signs d with kp, whose public key must be d.User, and
// returns the header value (wire.HdrDelegation): base64url(JSON) "."
// base64url(signature over the tag and those exact JSON bytes).
func SignDelegation(kp nkeys.KeyPair, d wire.Delegation) (string, error) {
	pub, err := kp.PublicKey()
	if err != nil {
		return "", fmt.Errorf("%w: %v", ErrDelegation, err)
	}
	if pub != d.User {
		return "", fmt.Errorf("%w: signed by %s for user %s", ErrDelegation, pub, d.User)
	}
	d.Issued, d.Expires = d.Issued.UTC(), d.Expires.UTC()
	if err := checkDelegation(d); err != nil {
		return "", err
	}
	body, err := json.Marshal(d)
	if err != nil {
		return "", fmt.Errorf("%w: %v", ErrDelegation, err)
	}
	sig, err := kp.Sign(append([]byte(delegationTag), body...))
	if err != nil {
		return "", fmt.Errorf("%w: sign: %v", ErrDelegation, err)
	}
	return base64.RawURLEncoding.EncodeToString(body) + "." + base64.RawURLEncoding.EncodeToString(sig), nil
}

// ParseDelegation decodes and checks a header made by SignDelegation: well
// formed, signed by the user it names, and current at now. Whether the user
// may delegate that role is the receiver's decision (its current role).
func ParseDelegation(hdr string, now time.Time) (wire.Delegation, error) {
	var d wire.Delegation
	if len(hdr) > maxDelegationHdr {
		return d, fmt.Errorf("%w: %d bytes (limit %d)", ErrDelegation, len(hdr), maxDelegationHdr)
	}
	b64body, b64sig, ok := strings.Cut(hdr, ".")
	if !ok {
		return d, fmt.Errorf("%w: want body.signature", ErrDelegation)
	}
	body, err := base64.RawURLEncoding.DecodeString(b64body)
	if err != nil {
		return d, fmt.Errorf("%w: body is not base64url: %v", ErrDelegation, err)
	}
	sig, err := base64.RawURLEncoding.DecodeString(b64sig)
	if err != nil {
		return d, fmt.Errorf("%w: signature is not base64url: %v", ErrDelegation, err)
	}
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&d); err != nil {
		return wire.Delegation{}, fmt.Errorf("%w: %v", ErrDelegation, err)
	}
	if err := checkDelegation(d); err != nil {
		return wire.Delegation{}, err
	}
	kp, err := nkeys.FromPublicKey(d.User)
	if err != nil {
		return wire.Delegation{}, fmt.Errorf("%w: user %s: %v", ErrDelegation, d.User, err)
	}
	if err := kp.Verify(append([]byte(delegationTag), body...), sig); err != nil {
		return wire.Delegation{}, fmt.Errorf("%w: signature by %s does not verify", ErrDelegation, d.User)
	}
	switch {
	case now.Before(d.Issued.Add(-delegationSkew)):
		return wire.Delegation{}, fmt.Errorf("%w: issued %s, in the future", ErrDelegation, d.Issued.Format(time.RFC3339))
	case !now.Before(d.Expires):
		return wire.Delegation{}, fmt.Errorf("%w: expired %s", ErrDelegation, d.Expires.Format(time.RFC3339))
	}
	return d, nil
}

// checkDelegation checks d's fields, not its signature or the time.
func checkDelegation(d wire.Delegation) error {
	switch {
	case !nkeys.IsValidPublicUserKey(d.User):
		return fmt.Errorf("%w: user %q is not a user key", ErrDelegation, clipKey(d.User))
	case !nkeys.IsValidPublicUserKey(d.Key):
		return fmt.Errorf("%w: key %q is not a user key", ErrDelegation, clipKey(d.Key))
	case d.Key == d.User:
		return fmt.Errorf("%w: a key cannot delegate to itself", ErrDelegation)
	case !nkeys.IsValidPublicUserKey(d.Node) && !nkeys.IsValidPublicServerKey(d.Node):
		return fmt.Errorf("%w: node %q is not a node key", ErrDelegation, clipKey(d.Node))
	case d.Role != wire.RoleAdmin && d.Role != wire.RoleOperator && d.Role != wire.RoleObserver:
		return fmt.Errorf("%w: role %q (want admin, operator or observer)", ErrDelegation, clipKey(d.Role))
	case d.Issued.IsZero() || !d.Expires.After(d.Issued):
		return fmt.Errorf("%w: expires %s is not after issued %s", ErrDelegation, d.Expires.Format(time.RFC3339), d.Issued.Format(time.RFC3339))
	case d.Expires.Sub(d.Issued) > MaxDelegation:
		return fmt.Errorf("%w: lasts %s (limit %s)", ErrDelegation, d.Expires.Sub(d.Issued).Round(time.Second), MaxDelegation)
	}
	return nil
}

// LowerRole is the less powerful of two user roles (admin > operator >
// observer); "" when either is not a user role.
func LowerRole(a, b string) string {
	rank := map[string]int{wire.RoleObserver: 1, wire.RoleOperator: 2, wire.RoleAdmin: 3}
	ra, rb := rank[a], rank[b]
	if ra == 0 || rb == 0 {
		return ""
	}
	if ra < rb {
		return a
	}
	return b
}

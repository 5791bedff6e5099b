package trust

import (
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/nats-io/nkeys"

	"github.com/robonet-mesh/robonet/wire"
)

// TEMPORARY (gw branch only): stand-in for main's "trust: delegation"
// commit, removed when that is merged.

// SignDelegation signs d with kp and returns the header value.
func SignDelegation(kp nkeys.KeyPair, d wire.Delegation) (string, error) {
	d.Sig = ""
	body, err := json.Marshal(d)
	if err != nil {
		return "", err
	}
	sig, err := kp.Sign(body)
	if err != nil {
		return "", err
	}
	d.Sig = base64.RawURLEncoding.EncodeToString(sig)
	out, err := json.Marshal(d)
	if err != nil {
		return "", err
	}
	return base64.RawURLEncoding.EncodeToString(out), nil
}

// ParseDelegation verifies hdr.
func ParseDelegation(hdr string, now time.Time) (wire.Delegation, error) {
	var d wire.Delegation
	raw, err := base64.RawURLEncoding.DecodeString(hdr)
	if err != nil || len(raw) > 4096 {
		return d, errors.New("delegation: not base64url or too long")
	}
	if err := json.Unmarshal(raw, &d); err != nil {
		return d, fmt.Errorf("delegation: %w", err)
	}
	sig, err := base64.RawURLEncoding.DecodeString(d.Sig)
	if err != nil {
		return d, errors.New("delegation: bad signature encoding")
	}
	kp, err := nkeys.FromPublicKey(d.User)
	if err != nil {
		return d, fmt.Errorf("delegation: user %q: %w", d.User, err)
	}
	c := d
	c.Sig = ""
	body, _ := json.Marshal(c)
	if kp.Verify(body, sig) != nil {
		return d, errors.New("delegation: bad signature")
	}
	if now.Before(d.Issued.Add(-time.Minute)) || !now.Before(d.Expires) {
		return d, errors.New("delegation: expired or not yet valid")
	}
	return d, nil
}

package node

import (
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/nats-io/nkeys"

	"github.com/robonet-mesh/robonet/leafnode"
	"github.com/robonet-mesh/robonet/subjects"
	"github.com/robonet-mesh/robonet/trust"
	"github.com/robonet-mesh/robonet/wire"
)

// ErrLeafRefused is wrapped by every reason a hub refuses a leaf connection.
var ErrLeafRefused = errors.New("child swarm refused")

// Keys of federation token uses in rn_tokens: which child prefix a token
// admitted, and which token admitted a child prefix. Both are
// wire.TokenUse records signed by the member node that admitted the
// swarm first.
const (
	fedUseKey   = "fed."      // + token id
	fedSwarmKey = "fedswarm." // + child prefix
)

// refusalLogEvery is how often one refusal (same server, same reason) is
// logged at warn; the child redials twice a second, the repeats go to debug.
const refusalLogEvery = 10 * time.Second

// nonceKey checks the nkey signature of the server's nonce in c's CONNECT
// and returns the key.
func nonceKey(c server.ClientAuthentication) (string, error) {
	o := c.GetOpts()
	if o == nil || o.Nkey == "" || len(o.Nkey) > 64 || o.Sig == "" || len(o.Sig) > 256 {
		return "", errors.New("no nkey signature")
	}
	kp, err := nkeys.FromPublicKey(o.Nkey)
	if err != nil {
		return "", fmt.Errorf("nkey %q: %v", clip(o.Nkey, 64), err)
	}
	sig, err := base64.RawURLEncoding.DecodeString(o.Sig)
	if err != nil {
		if sig, err = base64.StdEncoding.DecodeString(o.Sig); err != nil {
			return "", errors.New("signature is not base64")
		}
	}
	if nonce := c.GetNonce(); len(nonce) == 0 || kp.Verify(nonce, sig) != nil {
		return "", fmt.Errorf("nonce signature of key %s does not verify", o.Nkey)
	}
	return o.Nkey, nil
}

// admitLeaf is the authenticator's LEAF branch, on hubs: a node of a child
// swarm connects with user = its swarm prefix, password = a federation
// token, its nkey signature of the nonce and TLS with its node
// certificate. It is admitted when the signature verifies, the certificate
// is that key's, the key is not revoked, the token's MAC verifies under
// this swarm's secret and it was issued by this swarm, the prefix is a
// child this hub may admit, and the token either admitted this prefix
// before or is used for the first time, unexpired, for a prefix no other
// token admitted. The connection then gets leafnode.ChildPermissions.
func (n *Node) admitLeaf(c server.ClientAuthentication) bool {
	o := c.GetOpts()
	if n.fed == nil || n.fed.listen == "" || o == nil {
		return false
	}
	pub, err := nonceKey(c)
	var prefix subjects.Chevron
	if err == nil {
		prefix, err = n.checkLeaf(c, pub, time.Now())
	} else {
		err = fmt.Errorf("%w: %v", ErrLeafRefused, err)
	}
	if err != nil {
		n.leafRefusedLog(o.Name, pub, o.Username, err)
		return false
	}
	var up []string
	up = append(up, n.fed.domain)
	if len(n.fed.parents) > 0 {
		up = append(up, leafnode.Domain(n.fed.claims.Hub))
	}
	n.fed.noteInbound(c.GetID(), leafPeer{prefix: prefix, pub: pub, server: o.Name, at: time.Now()})
	c.RegisterUser(&server.User{Username: prefix.String(), Permissions: leafnode.ChildPermissions(prefix, up...)})
	return true
}

// checkLeaf decides everything but the nonce signature; errors wrap
// ErrLeafRefused and say why.
func (n *Node) checkLeaf(c server.ClientAuthentication, pub string, now time.Time) (subjects.Chevron, error) {
	f := n.fed
	o := c.GetOpts()
	refuse := func(format string, a ...any) (subjects.Chevron, error) {
		return subjects.Chevron{}, fmt.Errorf("%w: "+format, append([]any{ErrLeafRefused}, a...)...)
	}
	if o.Name != serverName(pub) {
		return refuse("server name %q is not the name of key %s (%s): not a robonet node", clip(o.Name, 64), pub, serverName(pub))
	}
	cs := c.GetTLSConnectionState()
	if cs == nil || len(cs.PeerCertificates) == 0 {
		return refuse("no TLS client certificate")
	}
	pc, err := trust.CheckPeerCertificate([][]byte{cs.PeerCertificates[0].Raw}, now)
	if err != nil {
		return refuse("%v", err)
	}
	if pc.Pub != pub {
		return refuse("TLS certificate of key %s, nonce signed by key %s", pc.Pub, pub)
	}
	if n.ids.isRevoked(pub) {
		return refuse("key %s is revoked", pub)
	}
	if chev, member := n.ids.nodeChevron(pub); member || pub == n.pub {
		return refuse("key %s is a node of this swarm (%s), not of a child swarm", pub, chev)
	}
	prefix, err := subjects.Parse(o.Username)
	if err != nil {
		return refuse("user %q is not a swarm prefix: %v", clip(o.Username, 32), err)
	}
	var parent subjects.Chevron
	if len(f.parents) > 0 {
		parent = f.claims.Hub
	}
	if err := leafnode.CheckChild(f.prefix, parent, prefix); err != nil {
		return refuse("%v", err)
	}
	tok := o.Password
	if tok == "" {
		return refuse("swarm %s shows no federation token (the leaf password): create one with `robonet token create --federate` on this swarm", prefix)
	}
	secret := n.swarmSecret()
	var claims trust.FedClaims
	if secret != nil {
		claims, err = trust.ParseFedToken(tok, secret)
	} else {
		claims, err = trust.InspectFedToken(tok)
	}
	switch {
	case errors.Is(err, trust.ErrTokenMAC):
		return refuse("swarm %s: federation token not issued by this swarm (its MAC does not verify: forged, altered or another swarm's)", prefix)
	case err != nil:
		return refuse("swarm %s: %v", prefix, err)
	case claims.Hub != f.prefix:
		return refuse("swarm %s: federation token %s names hub swarm %s, this is %s", prefix, claims.ID, claims.Hub, f.prefix)
	}
	if err := claims.CheckPrefix(prefix); err != nil {
		return refuse("%v", err)
	}
	if err := n.bindFedToken(claims, prefix, pub, tok, secret != nil, now); err != nil {
		return refuse("%v", err)
	}
	return prefix, nil
}

// bindFedToken admits prefix with the token: a token that admitted this
// prefix before admits it again (any node of that swarm, even after the
// token's expiry); a first use binds it (signed records under fed.<id> and
// fedswarm.<prefix>), unless it expired or another token admitted the
// prefix already.
func (n *Node) bindFedToken(c trust.FedClaims, prefix subjects.Chevron, pub, tok string, macChecked bool, now time.Time) error {
	f := n.fed
	kvp := n.tokensKV.Load()
	if kvp == nil || n.leaderRead == nil {
		return errors.New("this swarm's state is not available yet (JetStream starting)")
	}
	kv := *kvp
	ctx, cancel := context.WithTimeout(n.ctx, 2*time.Second)
	defer cancel()
	idKey := fedUseKey + c.ID
	u, found, err := n.readFedUse(ctx, idKey, c.ID)
	if err != nil {
		// The hub's JetStream may be down while its core routing works:
		// a binding learnt before still admits.
		f.mu.Lock()
		p := f.bound[c.ID]
		f.mu.Unlock()
		if p == boundEntry(prefix, tok) {
			return nil
		}
		return fmt.Errorf("cannot read federation token %s's record: %v", c.ID, err)
	}
	if found {
		if u.Prefix != prefix.String() {
			return fmt.Errorf("federation token %s already admitted swarm %s; swarm %s needs a token of its own", c.ID, u.Prefix, prefix)
		}
		if subtle.ConstantTimeCompare([]byte(u.Token), []byte(tok)) != 1 {
			// Only the token's id matched (ids show in logs): without the
			// secret to check a MAC, the token itself must be the one used.
			return fmt.Errorf("federation token %s: not the token that admitted swarm %s", c.ID, prefix)
		}
		f.remember(c.ID, prefix, tok)
		return nil
	}
	if !macChecked {
		return fmt.Errorf("federation token %s is unused and this node holds no swarm secret to check it: the child must reach a node that does first", c.ID)
	}
	if err := c.CheckFirstUse(prefix, now); err != nil {
		return err
	}
	if err := n.firstFedUse(ctx, kv, c, prefix, pub, tok, now); err != nil {
		return err
	}
	f.remember(c.ID, prefix, tok)
	return nil
}

// firstFedUse binds token c to prefix: it claims the prefix
// (fedswarm.<prefix>), then records the token's use (fed.<id>); either
// create fails if another hub node got there first, which is fine when it
// recorded the same pair.
func (n *Node) firstFedUse(ctx context.Context, kv jetstream.KeyValue, c trust.FedClaims, prefix subjects.Chevron, pub, tok string, now time.Time) error {
	idKey, swKey := fedUseKey+c.ID, fedSwarmKey+prefix.String()
	claimed := func(other wire.TokenUse) error {
		return fmt.Errorf("swarm %s was already admitted with another federation token (%s): a second swarm cannot claim its prefix", prefix, other.ID)
	}
	if other, found, err := n.readFedUse(ctx, swKey, ""); err != nil {
		return fmt.Errorf("cannot read swarm %s's admission record: %v", prefix, err)
	} else if found && other.ID != c.ID {
		return claimed(other)
	}
	rec, _ := json.Marshal(wire.TokenUse{ID: c.ID, Pubkey: pub, Token: tok, At: now.UTC(), Prefix: prefix.String()})
	bySwarm, err := trust.SignRecord(n.kp, BucketTokens, swKey, rec)
	if err != nil {
		return err
	}
	byID, err := trust.SignRecord(n.kp, BucketTokens, idKey, rec)
	if err != nil {
		return err
	}
	rev, err := kv.Create(ctx, swKey, bySwarm)
	switch {
	case errors.Is(err, jetstream.ErrKeyExists):
		rev = 0 // another node admitted this swarm at the same moment: check it used this token
		if other, found, err := n.readFedUse(ctx, swKey, ""); err != nil || !found {
			return fmt.Errorf("swarm %s's admission record is not readable yet: %v", prefix, err)
		} else if other.ID != c.ID {
			return claimed(other)
		}
	case err != nil:
		return fmt.Errorf("record swarm %s's admission: %v", prefix, err)
	}
	_, err = kv.Create(ctx, idKey, byID)
	switch {
	case errors.Is(err, jetstream.ErrKeyExists):
		u, found, rerr := n.readFedUse(ctx, idKey, c.ID)
		if rerr != nil || !found {
			return fmt.Errorf("federation token %s's record is not readable yet: %v", c.ID, rerr)
		}
		if u.Prefix != prefix.String() {
			if rev != 0 {
				_ = kv.Delete(ctx, swKey, jetstream.LastRevision(rev)) // our claim of the prefix: undo it
			}
			return fmt.Errorf("federation token %s already admitted swarm %s; swarm %s needs a token of its own", c.ID, u.Prefix, prefix)
		}
	case err != nil:
		return fmt.Errorf("record federation token %s's use: %v", c.ID, err)
	default:
		n.log.Info("federation token used: child swarm admitted", "token", c.ID, "swarm", prefix, "key", pub)
	}
	return nil
}

// remember caches that token id admitted prefix, for when JetStream is
// not readable; the entry holds a digest of the whole token, so a token
// forged around a known id does not match it.
func (f *federation) remember(id string, prefix subjects.Chevron, tok string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if len(f.bound) > 4096 {
		f.bound = map[string]string{}
	}
	f.bound[id] = boundEntry(prefix, tok)
}

// boundEntry is a bound cache entry: the prefix and the token's digest.
func boundEntry(prefix subjects.Chevron, tok string) string {
	d := sha256.Sum256([]byte(tok))
	return prefix.String() + " " + hex.EncodeToString(d[:])
}

// readFedUse reads and checks a federation use record: signed by this
// node or a member node, under the key it names, and (when this node holds
// the swarm secret) carrying a token valid under it. wantID, if set, must
// be the record's token id.
func (n *Node) readFedUse(ctx context.Context, key, wantID string) (wire.TokenUse, bool, error) {
	var u wire.TokenUse
	e, found, err := n.leaderRead.Last(ctx, "KV_"+BucketTokens, "$KV."+BucketTokens+"."+key)
	if err != nil || !found {
		return u, false, err
	}
	if len(e.Value) == 0 {
		return u, false, nil // deleted: the hub removed that swarm
	}
	bad := func(err error) (wire.TokenUse, bool, error) {
		n.badRecord(BucketTokens, key, err)
		return wire.TokenUse{}, false, nil
	}
	rec, by, err := trust.OpenRecord(BucketTokens, key, e.Value)
	if err != nil {
		return bad(err)
	}
	if _, member := n.ids.nodeChevron(by); !member && by != n.pub {
		return bad(fmt.Errorf("federation use record signed by %s, not a member node", by))
	}
	if err := wire.Decode(rec, &u); err != nil {
		return bad(err)
	}
	p, perr := subjects.Parse(u.Prefix)
	switch {
	case perr != nil || p.Len() != 3:
		return bad(fmt.Errorf("federation use record names prefix %q", clip(u.Prefix, 32)))
	case key != fedUseKey+u.ID && key != fedSwarmKey+u.Prefix:
		return bad(fmt.Errorf("federation use of %s by swarm %s stored under %s", u.ID, u.Prefix, key))
	case wantID != "" && u.ID != wantID:
		return bad(fmt.Errorf("federation use record for token %s read for token %s", u.ID, wantID))
	}
	if secret := n.swarmSecret(); secret != nil {
		c, err := trust.ParseFedToken(u.Token, secret)
		// A MAC under another secret is a token of an earlier one (rotated
		// since): the signer's word stands for it.
		if err != nil && !errors.Is(err, trust.ErrTokenMAC) {
			return bad(fmt.Errorf("federation use %s: %v", u.ID, err))
		}
		if err == nil && c.ID != u.ID {
			return bad(fmt.Errorf("federation use %s carries token %s", u.ID, c.ID))
		}
	}
	return u, true, nil
}

// leafRefusedLog logs a refused leaf connection, at warn once per
// refusalLogEvery for the same server and reason, else at debug.
func (n *Node) leafRefusedLog(srvName, pub, user string, err error) {
	f := n.fed
	key := srvName + "\x00" + err.Error()
	now := time.Now()
	warn := true
	if f != nil {
		f.mu.Lock()
		if t, ok := f.refusals[key]; ok && now.Sub(t) < refusalLogEvery {
			warn = false
		} else {
			if len(f.refusals) > 1024 {
				f.refusals = map[string]time.Time{}
			}
			f.refusals[key] = now
		}
		f.mu.Unlock()
	}
	args := []any{"server", clip(srvName, 64), "key", pub, "swarm", clip(user, 32), "reason", err}
	if warn {
		n.log.Warn("leaf connection refused", args...)
	} else {
		n.log.Debug("leaf connection refused", args...)
	}
}

// issueFedToken answers `robonet token create --federate` (admins, on a
// hub): a federation token under this swarm's secret carrying this swarm's
// prefix, its founder key and its own inherited authority pins, bound to
// req.Prefix when given.
func (n *Node) issueFedToken(req TokenRequest, ttl time.Duration, now time.Time) (any, error) {
	f := n.fed
	if req.Pubkey != "" {
		return nil, errors.New("a federation token is bound to a child swarm's prefix (--prefix), not to a node key")
	}
	if f == nil || f.listen == "" {
		return nil, fmt.Errorf("node %s does not accept child swarms: its swarm's nodes need --leaf-listen", n.name)
	}
	secret := n.swarmSecret()
	if secret == nil {
		return nil, fmt.Errorf("node %s holds no swarm secret (admitted by a one-time token): ask a node started with the secret", n.name)
	}
	var bound subjects.Chevron
	if req.Prefix != "" {
		var err error
		if bound, err = subjects.Parse(req.Prefix); err != nil {
			return nil, fmt.Errorf("prefix: %v", err)
		}
		var parent subjects.Chevron
		if len(f.parents) > 0 {
			parent = f.claims.Hub
		}
		if err := leafnode.CheckChild(f.prefix, parent, bound); err != nil {
			return nil, err
		}
		ctx, cancel := context.WithTimeout(n.ctx, 2*time.Second)
		defer cancel()
		if u, found, err := n.readFedUse(ctx, fedSwarmKey+bound.String(), ""); err == nil && found {
			return nil, fmt.Errorf("swarm %s is already admitted (federation token %s): its nodes reconnect with that token", bound, u.ID)
		}
	}
	founder := n.ids.founderKey()
	if founder == "" {
		return nil, errors.New("this swarm's founder is not known yet: try again in a moment")
	}
	pins := []string{founder}
	if len(f.parents) > 0 {
		for _, p := range f.claims.Pins {
			if !slices.Contains(pins, p) {
				pins = append(pins, p)
			}
		}
	}
	tok, c, err := trust.IssueFedToken(secret, trust.FedSpec{Hub: f.prefix, Bound: bound, Pins: pins}, ttl, now)
	if err != nil {
		return nil, err
	}
	n.log.Info("federation token issued", "id", c.ID, "expires", c.Expires, "prefix", c.Bound.String())
	r := TokenReply{Token: tok, ID: c.ID, Expires: c.Expires, Federate: true, Hub: c.Hub.String(), Pins: c.Pins}
	if !c.Bound.IsZero() {
		r.Prefix = c.Bound.String()
	}
	return r, nil
}

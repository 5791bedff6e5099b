package mesh

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"regexp"
	"sort"
	"strings"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/nats-io/nkeys"

	"github.com/robonet-mesh/robonet/subjects"
	"github.com/robonet-mesh/robonet/trust"
	"github.com/robonet-mesh/robonet/wire"
)

// Buckets the identity commands write (node.BucketUsers and friends; the
// names are repeated here because mesh sits below node).
const (
	UsersBucket   = "rn_users"
	RevokedBucket = "rn_revoked"
	NodesBucket   = "rn_nodes"
	SecretsBucket = "rn_secrets"
	// FounderUser is the user record of the swarm's founder (node.FounderUser).
	FounderUser = "founder"
)

// Errors of the identity commands.
var (
	ErrUser    = errors.New("user")
	ErrRevoked = errors.New("revoke")
)

var userNameRE = regexp.MustCompile(`^[A-Za-z][A-Za-z0-9_-]{0,63}$`)

// Identities manages the swarm's users and revocations. Writing needs an
// admin's credentials (the NATS permissions refuse anyone else).
type Identities struct {
	users, revoked, nodes, secrets jetstream.KeyValue
	read                           *LeaderKV
	kp                             nkeys.KeyPair // signs the records (nodes check the signer is an admin)
	c                              *Client       // asks the nodes whether they applied a record
}

// Identities binds the identity buckets through the client's connection.
func (c *Client) Identities(ctx context.Context) (*Identities, error) {
	ctx, cancel := withDefaultTimeout(ctx)
	defer cancel()
	js, err := c.jetStream(ctx)
	if err != nil {
		return nil, err
	}
	ids := Identities{kp: c.kp, c: c}
	if ids.kp == nil {
		return nil, fmt.Errorf("%w: the client has no key to sign records with", ErrUser)
	}
	for _, b := range []struct {
		name string
		kv   *jetstream.KeyValue
	}{{UsersBucket, &ids.users}, {RevokedBucket, &ids.revoked}, {NodesBucket, &ids.nodes}, {SecretsBucket, &ids.secrets}} {
		kv, err := js.KeyValue(ctx, b.name)
		if err != nil {
			return nil, fmt.Errorf("bucket %s: %w (are these admin credentials? is the node ready?)", b.name, err)
		}
		*b.kv = kv
	}
	ids.read = NewLeaderKV(js, UsersBucket)
	return &ids, nil
}

// NewUserKey makes a fresh user nkey; the caller keeps its seed.
func NewUserKey() (pub string, seed []byte, err error) {
	kp, err := nkeys.CreateUser()
	if err != nil {
		return "", nil, err
	}
	pub, _ = kp.PublicKey()
	seed, err = kp.Seed()
	return pub, seed, err
}

// AddUser records user name with role and public key pub, signed with the
// client's key, and returns once every live node has applied it (the user
// works everywhere at once); a *NotEverywhereError names the live nodes
// that had not when ctx ended. It refuses to replace an existing user
// (remove it first) and a revoked key.
func (ids *Identities) AddUser(ctx context.Context, name, role, pub, by string, now time.Time) (wire.User, error) {
	ctx, cancel := withDefaultTimeout(ctx)
	defer cancel()
	if !userNameRE.MatchString(name) {
		return wire.User{}, fmt.Errorf("%w name %q: want a letter then letters, digits, '_' or '-', at most 64", ErrUser, name)
	}
	switch role {
	case wire.RoleAdmin, wire.RoleOperator, wire.RoleObserver:
	default:
		return wire.User{}, fmt.Errorf("%w %s: role %q: want admin, operator or observer", ErrUser, name, role)
	}
	if !nkeys.IsValidPublicUserKey(pub) {
		return wire.User{}, fmt.Errorf("%w %s: %q is not a public user key (U…)", ErrUser, name, pub)
	}
	if _, found, err := ids.read.Last(ctx, "KV_"+RevokedBucket, "$KV."+RevokedBucket+"."+pub); err != nil {
		return wire.User{}, err
	} else if found {
		return wire.User{}, fmt.Errorf("%w %s: key %s is revoked; make a new key", ErrUser, name, pub)
	}
	if err := ids.RequireAdmin(ctx); err != nil {
		return wire.User{}, err
	}
	u := wire.User{Name: name, Role: role, Nkey: pub, Added: now.UTC(), By: by}
	rec, _ := json.Marshal(u)
	data, err := trust.SignRecord(ids.kp, UsersBucket, name, rec)
	if err != nil {
		return wire.User{}, fmt.Errorf("%w %s: %w", ErrUser, name, err)
	}
	rev, err := ids.users.Create(ctx, name, data)
	if err != nil {
		if errors.Is(err, jetstream.ErrKeyExists) {
			return wire.User{}, fmt.Errorf("%w %s exists (robonet user remove %s first)", ErrUser, name, name)
		}
		return wire.User{}, fmt.Errorf("%w %s: %w", ErrUser, name, err)
	}
	return u, ids.waitApplied(ctx, rev)
}

// NotEverywhereError says which live nodes had not applied a user record
// when the wait ended: the user works on the others.
type NotEverywhereError struct {
	Rev   uint64
	Nodes []string // "chevron (name)"
}

func (e *NotEverywhereError) Error() string {
	return fmt.Sprintf("%v: written, but %d live nodes had not applied it yet: %s", ErrUser, len(e.Nodes), strings.Join(e.Nodes, ", "))
}

func (e *NotEverywhereError) Unwrap() error { return ErrUser }

// waitApplied waits until every live member reports (in its heartbeat)
// that it applied rn_users up to rev, or ctx ends: then the new user works
// on every node at once. Offline members apply it when they are back.
func (ids *Identities) waitApplied(ctx context.Context, rev uint64) error {
	var behind []string
	for {
		ms, err := ids.c.Nodes(ctx)
		if err == nil {
			behind = behind[:0]
			for _, m := range ms {
				if m.State != wire.StateOffline && m.UsersRev < rev {
					behind = append(behind, fmt.Sprintf("%s (%s)", m.Chevron, m.Name))
				}
			}
			if len(behind) == 0 {
				return nil
			}
		}
		select {
		case <-ctx.Done():
			if len(behind) == 0 && err != nil {
				return fmt.Errorf("%w: written, but could not ask the nodes whether they applied it: %v", ErrUser, err)
			}
			return &NotEverywhereError{Rev: rev, Nodes: behind}
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// Users lists the users, by name. Records that do not decode are skipped.
func (ids *Identities) Users(ctx context.Context) ([]wire.User, error) {
	recs, err := ids.userRecords(ctx)
	if err != nil {
		return nil, err
	}
	out := make([]wire.User, 0, len(recs))
	for _, r := range recs {
		out = append(out, r.User)
	}
	return out, nil
}

// userRecords reads rn_users, by name; records that do not verify are
// skipped.
func (ids *Identities) userRecords(ctx context.Context) ([]trust.UserRecord, error) {
	ctx, cancel := withDefaultTimeout(ctx)
	defer cancel()
	keys, err := ids.users.ListKeys(ctx)
	if err != nil {
		return nil, err
	}
	var out []trust.UserRecord
	for k := range keys.Keys() {
		e, found, err := ids.read.Get(ctx, k)
		if err != nil {
			return nil, err
		}
		var u wire.User
		if !found {
			continue
		}
		rec, by, err := trust.OpenRecord(UsersBucket, k, e.Value)
		if err != nil || wire.Decode(rec, &u) != nil || u.Name != k {
			continue
		}
		out = append(out, trust.UserRecord{User: u, By: by})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].User.Name < out[j].User.Name })
	return out, nil
}

// ErrNotAdmin is returned when the client's key is not a swarm admin.
var ErrNotAdmin = errors.New("not a swarm admin")

// RequireAdmin checks, as the nodes will, that the client's key is one of
// the swarm's admins — the founder, or an admin user whose record an admin
// signed — and not revoked, before it writes a record nodes would ignore.
// A node's local operator key administers that node only.
func (ids *Identities) RequireAdmin(ctx context.Context) error {
	me, _ := ids.kp.PublicKey()
	admins, revoked, err := ids.swarmAdmins(ctx)
	if err != nil {
		return err
	}
	switch {
	case revoked[me]:
		return fmt.Errorf("%w: key %s is revoked", ErrNotAdmin, me)
	case !admins[me]:
		return fmt.Errorf("%w: key %s is not the founder's or an admin user's (a node's local operator key administers only its own node); nodes would ignore what it signs", ErrNotAdmin, me)
	}
	return nil
}

// swarmAdmins computes, from the records, the swarm's admins (the
// self-signed founder and admin users an admin signed, revoked or not) and
// the keys revoked by an admin or a fork proof — as every node does.
func (ids *Identities) swarmAdmins(ctx context.Context) (admins, revoked map[string]bool, err error) {
	recs, err := ids.userRecords(ctx)
	if err != nil {
		return nil, nil, err
	}
	// The root is the founder the connected node pinned (its answer is
	// verified against its key), not whatever the founder record says now:
	// a route peer can overwrite the record, and nodes ignore a new one.
	st, err := ids.c.Status(ctx)
	if err != nil {
		return nil, nil, err
	}
	admins = trust.Admins(st.Founder, recs)
	revoked, err = ids.revokedKeys(ctx, admins)
	return admins, revoked, err
}

// RemoveUser deletes user name and revokes its key, so every node drops
// its connections at once and the key cannot come back by mistake.
func (ids *Identities) RemoveUser(ctx context.Context, name, by string, now time.Time) (wire.User, error) {
	ctx, cancel := withDefaultTimeout(ctx)
	defer cancel()
	e, found, err := ids.read.Get(ctx, name)
	if err != nil {
		return wire.User{}, err
	}
	var u wire.User
	if !found {
		return wire.User{}, fmt.Errorf("%w %q: no such user", ErrUser, name)
	}
	rec, _, err := trust.OpenRecord(UsersBucket, name, e.Value)
	if err != nil || wire.Decode(rec, &u) != nil {
		return wire.User{}, fmt.Errorf("%w %q: no such user (its record does not verify)", ErrUser, name)
	}
	if err := ids.Revoke(ctx, u.Nkey, "", "user "+name+" removed", by, now); err != nil {
		return u, err
	}
	if name == FounderUser {
		// The founder record roots the admin chain for nodes that join
		// later: it stays, its key is revoked.
		return u, nil
	}
	if err := ids.users.Delete(ctx, name); err != nil {
		return u, fmt.Errorf("%w %s: %v", ErrUser, name, err)
	}
	return u, nil
}

// Revoke records pub (a user or node key) in rn_revoked: every node
// refuses it from then on, disconnects its clients and cuts its routes.
func (ids *Identities) Revoke(ctx context.Context, pub, chevron, reason, by string, now time.Time) error {
	ctx, cancel := withDefaultTimeout(ctx)
	defer cancel()
	if !nkeys.IsValidPublicUserKey(pub) && !nkeys.IsValidPublicServerKey(pub) {
		return fmt.Errorf("%w: %q is not a public user or server key", ErrRevoked, pub)
	}
	if err := ids.RequireAdmin(ctx); err != nil {
		return err
	}
	rec, _ := json.Marshal(wire.Revocation{Pubkey: pub, Reason: reason, At: now.UTC(), By: by, Chevron: chevron})
	data, err := trust.SignRecord(ids.kp, RevokedBucket, pub, rec)
	if err != nil {
		return fmt.Errorf("%w %s: %v", ErrRevoked, pub, err)
	}
	return ids.putRevocation(ctx, pub, data)
}

// putRevocation writes a revocation record and makes sure it is stored.
// Revoking a node key makes every node reload its route pins, which
// closes every client connection once (DESIGN "Identity and trust"),
// this one too, sometimes after the write committed and before its
// acknowledgement arrived: an attempt that fails reads the key back
// (through the stream's leader) and is done if the record is there, else
// writes it again, until ctx ends. Writing the same record twice is
// harmless: every node applies it once.
func (ids *Identities) putRevocation(ctx context.Context, pub string, data []byte) error {
	for {
		actx, cancel := context.WithTimeout(ctx, 3*time.Second)
		_, err := ids.revoked.Put(actx, pub, data)
		cancel()
		if err == nil {
			return nil
		}
		var api *jetstream.APIError
		if errors.As(err, &api) {
			return fmt.Errorf("%w %s: %v", ErrRevoked, pub, err) // the server's answer: final
		}
		if e, found, rerr := ids.read.Last(ctx, "KV_"+RevokedBucket, "$KV."+RevokedBucket+"."+pub); rerr == nil && found && bytes.Equal(e.Value, data) {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("%w %s: %v", ErrRevoked, pub, err)
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// RemoveNode revokes the key of the node at chev and its local operator's,
// and deletes its registration, freeing the chevron.
func (ids *Identities) RemoveNode(ctx context.Context, m wire.Member, reason, by string, now time.Time) error {
	ctx, cancel := withDefaultTimeout(ctx)
	defer cancel()
	if _, err := subjects.Parse(m.Chevron); err != nil {
		return fmt.Errorf("%w: %v", ErrRevoked, err)
	}
	if err := ids.Revoke(ctx, m.Pubkey, m.Chevron, reason, by, now); err != nil {
		return err
	}
	// A node taken out is treated as compromised: its local operator key
	// (an operator everywhere) goes with it.
	if e, found, err := ids.read.Last(ctx, "KV_"+NodesBucket, "$KV."+NodesBucket+"."+m.Chevron); err == nil && found {
		if info, err := OpenNodeRecord(m.Chevron, e.Value); err == nil && info.Pubkey == m.Pubkey && info.Operator != "" {
			if err := ids.Revoke(ctx, info.Operator, m.Chevron, reason+" (the node's local operator key)", by, now); err != nil {
				return err
			}
		}
	}
	if err := ids.nodes.Delete(ctx, m.Chevron); err != nil {
		return fmt.Errorf("%w: node %s revoked, but its registration stays: %v", ErrRevoked, m.Chevron, err)
	}
	return nil
}

// IsRevoked reports whether pub is revoked as the nodes judge it (by an
// admin's record or a fork proof).
func (ids *Identities) IsRevoked(ctx context.Context, pub string) (bool, error) {
	_, revoked, err := ids.swarmAdmins(ctx)
	if err != nil {
		return false, err
	}
	return revoked[pub], nil
}

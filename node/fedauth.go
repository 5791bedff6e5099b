package node

import (
	"crypto/sha256"
	"maps"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/robonet-mesh/robonet/subjects"
	"github.com/robonet-mesh/robonet/trust"
	"github.com/robonet-mesh/robonet/wire"
)

// Inherited authority (issue 11, SPEC "Authority across swarms"). Authority
// flows down the federation tree, never up or sideways: a swarm's
// identities are its own users plus the users of its ancestor swarms. Each
// hub swarm's leader publishes its effective user records on
// rn.dir.<swarm prefix>.users (wire.FedUsers: its own records and every set
// it inherited, grouped by the founder key they chain to); every node below
// keeps a set only when its founder is one of the authority pins the
// federation token carried (AuthorityPins: the founder keys of the parent
// swarm and of the parent's own ancestors), and a record only when its
// signature verifies and chains to that founder through admin records
// (trust.Admins), whoever carried the message. A newer message from any
// carrier replaces a founder's set; an ancestor's revocation of a user key
// sticks for the node's life.
//
// What an ancestor's users may do below (decided):
//   - an admin is an admin for commands and queries: every tier, dangerous
//     verbs with the receiving swarm's quorum approvals (it counts as an
//     approver there), join tokens and quarantines; connected directly to a
//     node below it gets an admin's permissions;
//   - an operator is an operator and an observer an observer, likewise;
//   - none of them signs records below: users, revocations and secret
//     rotations of a swarm are checked against that swarm's own founder
//     chain only, so identities stay each swarm's own to administer (an
//     ancestor's revocation of a user key does apply below);
//   - a swarm's own users never reach up or sideways: a child's admin, a
//     sibling's admin or any other key is unknown to the swarms that did
//     not pin its founder, and denied there like a forged one.
//
// Inherited sets live in memory: a node that restarts learns them again
// from the next publication (every few seconds while its link is up).
type fedAuth struct {
	mu       sync.Mutex
	testPins []string                // pins set by tests before H1's federation token exists
	sets     map[string]inheritedSet // founder key → the set that verified, as last received
	roles    map[string]string       // user key → role (derived from sets)
	revoked  map[string]bool         // user keys an ancestor admin revoked (sticky)
	own      map[string][]byte       // this swarm's rn_users key → stored record (to publish)
	ownRev   map[string][]byte       // this swarm's rn_revoked key → stored record (to publish)
	version  atomic.Uint64           // grows whenever what AuthorityRecords returns may have changed
	// opened caches records whose signature verified, by bucket, key and
	// the SHA-256 of the stored bytes: a hub republishes every few
	// seconds, and each record is checked once.
	opened map[openedKey]openedRec
}

// openedKey names one stored record.
type openedKey struct {
	bucket, key string
	sum         [32]byte
}

// openedRec is what trust.OpenRecord returned for it.
type openedRec struct {
	rec []byte
	by  string
}

// maxOpened bounds the cache of verified records.
const maxOpened = 8192

// inheritedSet is one ancestor swarm's identities, as verified.
type inheritedSet struct {
	users   map[string][]byte // rn_users key → stored record, only those that chain to the founder
	revoked map[string][]byte // revoked key → stored record, only admin-signed ones
	roles   map[string]string // user key → role
	from    string            // the swarm whose message carried it last
	at      time.Time
}

// maxStickyRevoked bounds the ancestor revocations a node remembers.
const maxStickyRevoked = 4096

// authorityPins are the founder keys of this swarm's ancestors.
func (n *Node) authorityPins() map[string]bool {
	out := map[string]bool{}
	for _, k := range n.AuthorityPins() {
		out[k] = true
	}
	n.inh.mu.Lock()
	for _, k := range n.inh.testPins {
		out[k] = true
	}
	n.inh.mu.Unlock()
	return out
}

// serveFedAuthority subscribes to every swarm's user publications: which
// ones count is decided by the pins, not by who sent them.
func (n *Node) serveFedAuthority() error {
	_, err := n.nc.Subscribe(subjects.FedUsersAll, n.onFedUsers)
	return err
}

func (n *Node) onFedUsers(m *nats.Msg) {
	from, ok := subjects.ParseFedUsers(m.Subject)
	if !ok {
		return
	}
	var fu wire.FedUsers
	if err := wire.Decode(m.Data, &fu); err != nil {
		n.badRecord("rn.dir users", from.String(), err)
		return
	}
	if err := fu.Check(); err != nil {
		n.badRecord("rn.dir users", from.String(), err)
		return
	}
	pins := n.authorityPins()
	if len(pins) == 0 {
		return
	}
	now := time.Now()
	changed := false
	for _, set := range fu.Sets {
		if !pins[set.Founder] {
			continue // a swarm this one does not descend from
		}
		in := n.verifySet(set)
		in.from, in.at = from.String(), now
		if n.inh.replace(set.Founder, in) {
			changed = true
		}
	}
	if changed {
		n.inh.version.Add(1)
		n.authChanged()
	}
}

// verifySet keeps the records of set that verify and chain to its founder.
func (n *Node) verifySet(set wire.FedUserSet) inheritedSet {
	in := inheritedSet{users: map[string][]byte{}, revoked: map[string][]byte{}, roles: map[string]string{}}
	var recs []trust.UserRecord
	raw := map[string][]byte{}
	for name, data := range set.Users {
		r, err := n.inh.openUser(name, data)
		if err != nil {
			n.badRecord("inherited "+BucketUsers, name, err)
			continue
		}
		recs = append(recs, r)
		raw[name] = data
	}
	admins := trust.Admins(set.Founder, recs)
	for _, r := range recs {
		if !admins[r.By] {
			continue // not (yet) chained to the founder: not this swarm's word
		}
		in.users[r.User.Name] = raw[r.User.Name]
		in.roles[r.User.Nkey] = r.User.Role
	}
	in.roles[set.Founder] = wire.RoleAdmin
	for key, data := range set.Revoked {
		rec, by, err := n.inh.openRecord(BucketRevoked, key, data)
		if err != nil || !admins[by] {
			continue
		}
		var r wire.Revocation
		if err := wire.Decode(rec, &r); err != nil || r.Pubkey != key {
			continue
		}
		in.revoked[key] = data
	}
	return in
}

// openRecord is trust.OpenRecord, once per distinct stored record.
func (f *fedAuth) openRecord(bucket, key string, data []byte) ([]byte, string, error) {
	k := openedKey{bucket: bucket, key: key, sum: sha256.Sum256(data)}
	f.mu.Lock()
	r, ok := f.opened[k]
	f.mu.Unlock()
	if ok {
		return r.rec, r.by, nil
	}
	rec, by, err := trust.OpenRecord(bucket, key, data)
	if err != nil {
		return nil, "", err
	}
	f.mu.Lock()
	if f.opened == nil || len(f.opened) >= maxOpened {
		f.opened = map[openedKey]openedRec{}
	}
	f.opened[k] = openedRec{rec: rec, by: by}
	f.mu.Unlock()
	return rec, by, nil
}

// openUser checks one stored rn_users record: signature and shape.
func (f *fedAuth) openUser(name string, data []byte) (trust.UserRecord, error) {
	rec, by, err := f.openRecord(BucketUsers, name, data)
	if err != nil {
		return trust.UserRecord{}, err
	}
	var u wire.User
	if err := wire.Decode(rec, &u); err != nil {
		return trust.UserRecord{}, err
	}
	if err := checkUser(name, u); err != nil {
		return trust.UserRecord{}, err
	}
	return trust.UserRecord{User: u, By: by}, nil
}

// replace installs founder's set and rebuilds the derived roles; it
// reports whether the roles or revocations changed.
func (f *fedAuth) replace(founder string, in inheritedSet) bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.sets == nil {
		f.sets = map[string]inheritedSet{}
	}
	old, had := f.sets[founder]
	f.sets[founder] = in
	grew := false
	for key := range in.revoked {
		if f.revoked == nil {
			f.revoked = map[string]bool{}
		}
		if !f.revoked[key] && len(f.revoked) < maxStickyRevoked {
			f.revoked[key], grew = true, true
		}
	}
	roles := map[string]string{}
	for _, s := range f.sets {
		for key, role := range s.roles {
			if rank(role) > rank(roles[key]) {
				roles[key] = role // a key with roles in two ancestors gets the higher
			}
		}
	}
	changed := grew || !maps.Equal(roles, f.roles) || !had || !maps.EqualFunc(old.users, in.users, slices.Equal)
	f.roles = roles
	return changed
}

func rank(role string) int {
	switch role {
	case wire.RoleAdmin:
		return 3
	case wire.RoleOperator:
		return 2
	case wire.RoleObserver:
		return 1
	}
	return 0
}

// role is pub's inherited role; false when it has none or an ancestor
// revoked it.
func (f *fedAuth) role(pub string) (string, bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.revoked[pub] {
		return "", false
	}
	r, ok := f.roles[pub]
	return r, ok
}

func (f *fedAuth) isRevoked(pub string) bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.revoked[pub]
}

// snapshot copies the inherited roles and the keys ancestors revoked.
func (f *fedAuth) snapshot() (roles map[string]string, revoked map[string]bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return maps.Clone(f.roles), maps.Clone(f.revoked)
}

// roleWithInherited is roleOf's last step: the swarm's own identities,
// then its ancestors' (a key of both keeps its own role). An ancestor's
// revocation of a user key holds here too; node keys are the swarm's own
// business.
func (n *Node) roleWithInherited(pub string) (string, bool) {
	if r, ok := n.ids.role(pub); ok {
		if r != wire.RoleNode && n.inh.isRevoked(pub) {
			return "", false
		}
		return r, true
	}
	return n.inh.role(pub)
}

// mergeInherited adds inherited roles to byKey (a snapshot of the swarm's
// own, for applyAuth) and takes out user keys an ancestor revoked, so that
// connections of a key whose inherited role changed are closed like any
// other's. roles and revoked come from fedAuth.snapshot.
func mergeInherited(byKey, roles map[string]string, revoked map[string]bool) {
	for k, r := range byKey {
		if r != wire.RoleNode && revoked[k] {
			delete(byKey, k)
		}
	}
	for k, r := range roles {
		if _, own := byKey[k]; !own && !revoked[k] {
			byKey[k] = r
		}
	}
}

// setOwnUser keeps this swarm's stored rn_users record for key (nil: gone)
// for AuthorityRecords; the caller verified its signature.
func (f *fedAuth) setOwnUser(key string, data []byte) {
	f.mu.Lock()
	if f.own == nil {
		f.own = map[string][]byte{}
	}
	if data == nil {
		delete(f.own, key)
	} else {
		f.own[key] = slices.Clone(data)
	}
	f.mu.Unlock()
	f.version.Add(1)
}

// setOwnRevoked keeps this swarm's admin revocation record of key.
func (f *fedAuth) setOwnRevoked(key string, data []byte) {
	f.mu.Lock()
	if f.ownRev == nil {
		f.ownRev = map[string][]byte{}
	}
	f.ownRev[key] = slices.Clone(data)
	f.mu.Unlock()
	f.version.Add(1)
}

// AuthorityRecords is what this node's swarm hands down to the swarms
// below it: its own user records and admin revocations (under its
// founder's key) and every set it inherited, verified, as stored. A hub's
// leader publishes it on rn.dir.<swarm prefix>.users (federation.Authority).
// The own set is left out until the founder is known; sets past the bounds
// of wire.FedUsers are cut to them (by name).
func (n *Node) AuthorityRecords() wire.FedUsers {
	out := wire.FedUsers{Swarm: n.SwarmPrefix().String(), Sent: time.Now().UTC()}
	founder := n.ids.founderKey()
	n.inh.mu.Lock()
	defer n.inh.mu.Unlock()
	if founder != "" {
		out.Sets = append(out.Sets, wire.FedUserSet{Founder: founder, Users: capRecords(n.inh.own, FounderUser), Revoked: capRecords(n.inh.ownRev, "")})
	}
	for _, f := range slices.Sorted(maps.Keys(n.inh.sets)) {
		if f == founder || len(out.Sets) >= wire.MaxFedUserSets {
			continue
		}
		s := n.inh.sets[f]
		out.Sets = append(out.Sets, wire.FedUserSet{Founder: f, Users: capRecords(s.users, ""), Revoked: capRecords(s.revoked, "")})
	}
	return out
}

// capRecords copies at most wire.MaxFedUsers records, skipping skip.
func capRecords(m map[string][]byte, skip string) map[string][]byte {
	out := map[string][]byte{}
	for _, k := range slices.Sorted(maps.Keys(m)) {
		if k == skip {
			continue
		}
		if len(out) == wire.MaxFedUsers {
			break
		}
		out[k] = m[k]
	}
	return out
}

// AuthorityVersion grows whenever AuthorityRecords may have changed, so a
// publisher can send on change without comparing.
func (n *Node) AuthorityVersion() uint64 { return n.inh.version.Load() }

// InheritedRole is pub's role inherited from an ancestor swarm, if any.
func (n *Node) InheritedRole(pub string) (string, bool) { return n.inh.role(pub) }

// setTestPins adds authority pins for tests (fedauth_export_test.go), as
// the federation token will.
func (f *fedAuth) setTestPins(pins []string) {
	f.mu.Lock()
	f.testPins = append([]string(nil), pins...)
	f.mu.Unlock()
}

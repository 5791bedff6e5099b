package node

import (
	"encoding/base64"
	"fmt"
	"maps"
	"regexp"
	"slices"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/nats-io/nkeys"

	"github.com/robonet-mesh/robonet/command"
	"github.com/robonet-mesh/robonet/leafnode"
	"github.com/robonet-mesh/robonet/subjects"
	"github.com/robonet-mesh/robonet/trust"
	"github.com/robonet-mesh/robonet/wire"
)

// UserNameRE is what a user's name must look like (it is its rn_users key).
var UserNameRE = regexp.MustCompile(`^[A-Za-z][A-Za-z0-9_-]{0,63}$`)

// identities is what the node's server authenticates and how far each key
// is trusted, rebuilt from rn_users, rn_nodes (node and operator keys) and
// rn_revoked. The node's own key and its local operator's are always there.
//
// Records are believed for who signed them, not for being in the KV: the
// swarm's admins are the founder's key (pinned on first sight) and every
// admin user whose record an admin signed; a user counts when an admin
// signed its record; a revocation when an admin signed it or it carries a
// fork proof that checks out. A key's revocation takes its own access away,
// not the records it signed while it was an admin (moving the admin key off
// the founder node revokes the founder without undoing the admins it made).
type identities struct {
	mu        sync.Mutex
	founder   string                      // the swarm founder's operator key, pinned; "" until seen
	users     map[string]wire.User        // by name: records whose signature verified
	userBy    map[string]string           // user name → key that signed its record
	infos     map[string]wire.NodeInfo    // by chevron
	claims    map[string]revocationClaim  // rn_revoked key → a signed or proven revocation
	revoked   map[string]wire.Revocation  // by public key (derived: the claims that hold)
	admins    map[string]bool             // keys whose signatures make records (derived)
	byKey     map[string]string           // public key → role (derived)
	keyChev   map[string]subjects.Chevron // node public key → chevron (derived)
	lastRoles map[string]string           // key → role as applyAuth last enforced it
}

// revocationClaim is one rn_revoked record that verified: its signer, and
// whether it carries a valid fork proof of its key (then no admin is needed).
type revocationClaim struct {
	r      wire.Revocation
	by     string
	proven bool
}

func newIdentities() *identities {
	return &identities{users: map[string]wire.User{}, userBy: map[string]string{}, infos: map[string]wire.NodeInfo{},
		claims: map[string]revocationClaim{}, revoked: map[string]wire.Revocation{}, admins: map[string]bool{},
		byKey: map[string]string{}, keyChev: map[string]subjects.Chevron{}}
}

// rebuildLocked derives admins, revoked, byKey and keyChev. ids.mu must be
// held.
func (ids *identities) rebuildLocked() {
	recs := make([]trust.UserRecord, 0, len(ids.users))
	for name, u := range ids.users {
		recs = append(recs, trust.UserRecord{User: u, By: ids.userBy[name]})
	}
	ids.admins = trust.Admins(ids.founder, recs)
	ids.revoked = map[string]wire.Revocation{}
	for _, c := range ids.claims {
		if c.proven || ids.admins[c.by] {
			ids.revoked[c.r.Pubkey] = c.r
		}
	}
	ids.byKey = map[string]string{}
	ids.keyChev = map[string]subjects.Chevron{}
	for _, in := range ids.infos {
		if in.Operator != "" {
			// A node's local operator administers its own node (roleOf);
			// elsewhere it is an operator, so a stolen node disk is not
			// the swarm.
			ids.byKey[in.Operator] = wire.RoleOperator
		}
	}
	// A node key stays a node key even when another registration names it
	// as its operator (a separate pass: map order must not decide).
	for chev, in := range ids.infos {
		if in.Pubkey != "" {
			ids.byKey[in.Pubkey] = wire.RoleNode
			// One key registered at two chevrons: the first in order, not
			// whichever map order gives.
			if c, err := subjects.Parse(chev); err == nil && !chevHeld(ids.keyChev, in.Pubkey, chev) {
				ids.keyChev[in.Pubkey] = c
			}
		}
	}
	for name, u := range ids.users {
		if ids.admins[ids.userBy[name]] {
			ids.byKey[u.Nkey] = u.Role
		}
	}
	if ids.founder != "" {
		ids.byKey[ids.founder] = wire.RoleAdmin
	}
	for pub := range ids.revoked {
		delete(ids.byKey, pub)
	}
}

// chevHeld reports whether m gives pub a chevron ordered before chev.
func chevHeld(m map[string]subjects.Chevron, pub, chev string) bool {
	c, ok := m[pub]
	return ok && c.String() < chev
}

// isAdmin reports whether pub's signature makes records (revoked or not).
func (ids *identities) isAdmin(pub string) bool {
	ids.mu.Lock()
	defer ids.mu.Unlock()
	return ids.admins[pub]
}

func (ids *identities) setNode(chev string, info *wire.NodeInfo) {
	ids.mu.Lock()
	defer ids.mu.Unlock()
	if info == nil {
		delete(ids.infos, chev)
		ids.rebuildLocked()
		return
	}
	old, had := ids.infos[chev]
	ids.infos[chev] = *info
	switch {
	case had && old.Pubkey == info.Pubkey && old.Operator == info.Operator:
		// A re-declaration (caps, tags, endpoints): nothing derived changes.
	case !had && ids.freshLocked(info.Pubkey) && ids.freshLocked(info.Operator) && info.Pubkey != info.Operator:
		// A new node with keys nobody else holds: what rebuildLocked would
		// derive for it, without walking every registration (O(n) per
		// entry made a 10,000-node registry quadratic to load).
		if info.Operator != "" {
			ids.byKey[info.Operator] = wire.RoleOperator
		}
		if info.Pubkey != "" {
			ids.byKey[info.Pubkey] = wire.RoleNode
			if c, err := subjects.Parse(chev); err == nil {
				ids.keyChev[info.Pubkey] = c
			}
		}
	default:
		ids.rebuildLocked()
	}
}

// freshLocked reports whether key plays no part in what rebuildLocked
// derives: no role, no chevron, not revoked, not the founder. "" is fresh.
// ids.mu must be held.
func (ids *identities) freshLocked(key string) bool {
	if key == "" {
		return true
	}
	_, role := ids.byKey[key]
	_, chev := ids.keyChev[key]
	_, rev := ids.revoked[key]
	return !role && !chev && !rev && key != ids.founder
}

func (ids *identities) setUser(name string, u *wire.User, by string) {
	ids.mu.Lock()
	defer ids.mu.Unlock()
	if u == nil {
		delete(ids.users, name)
		delete(ids.userBy, name)
	} else {
		ids.users[name] = *u
		ids.userBy[name] = by
	}
	ids.rebuildLocked()
}

// setFounder pins the founder's key the first time; it reports false when
// a different key was pinned before (the record is then ignored).
func (ids *identities) setFounder(pub string) bool {
	ids.mu.Lock()
	defer ids.mu.Unlock()
	if ids.founder != "" && ids.founder != pub {
		return false
	}
	ids.founder = pub
	ids.rebuildLocked()
	return true
}

func (ids *identities) setClaim(key string, c revocationClaim) {
	ids.mu.Lock()
	defer ids.mu.Unlock()
	ids.claims[key] = c
	ids.rebuildLocked()
}

// role returns the role of pub; ok is false for an unknown or revoked key.
func (ids *identities) role(pub string) (string, bool) {
	ids.mu.Lock()
	defer ids.mu.Unlock()
	r, ok := ids.byKey[pub]
	return r, ok
}

// revokedKeys lists the revoked keys.
func (ids *identities) revokedKeys() []string {
	ids.mu.Lock()
	defer ids.mu.Unlock()
	out := make([]string, 0, len(ids.revoked))
	for pub := range ids.revoked {
		out = append(out, pub)
	}
	return out
}

func (ids *identities) isRevoked(pub string) bool {
	ids.mu.Lock()
	defer ids.mu.Unlock()
	_, ok := ids.revoked[pub]
	return ok
}

// nodeChevron returns the chevron node key pub registered, if any.
func (ids *identities) nodeChevron(pub string) (subjects.Chevron, bool) {
	ids.mu.Lock()
	defer ids.mu.Unlock()
	c, ok := ids.keyChev[pub]
	return c, ok
}

// ownerOf returns the key registered for chev.
func (ids *identities) ownerOf(chev subjects.Chevron) (string, bool) {
	return ids.ownerOfText(chev.String())
}

// KeyOf is the node key registered for chevron c in this node's view of
// rn_nodes (false when none is): what a feature checks a reply signed by
// the node at c against, without asking the network.
func (n *Node) KeyOf(c subjects.Chevron) (string, bool) { return n.ids.ownerOf(c) }

// ownerOfText is ownerOf for a chevron in its text form.
func (ids *identities) ownerOfText(chev string) (string, bool) {
	ids.mu.Lock()
	pub := ids.infos[chev].Pubkey
	ids.mu.Unlock()
	return pub, pub != ""
}

// isOwner reports whether pub is the key registered for chev.
func (ids *identities) isOwner(chev subjects.Chevron, pub string) bool {
	o, ok := ids.ownerOf(chev)
	return ok && o == pub
}

// userList returns the users sorted by name.
func (ids *identities) userList() []wire.User {
	ids.mu.Lock()
	defer ids.mu.Unlock()
	out := slices.Collect(maps.Values(ids.users))
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out
}

// roleOf is the role of pub as this node sees it: its own key is a node,
// its local operator an admin, then what the buckets say.
func (n *Node) roleOf(pub string) (string, bool) {
	switch {
	case pub == "":
		return "", false
	case n.ids.isRevoked(pub):
		return "", false
	case pub == n.pub:
		return wire.RoleNode, true
	case pub == n.opPub:
		// Never blocked by the Sentinel: the node's own operator can
		// always reach it to release a block.
		return wire.RoleAdmin, true
	case n.sentinelBlocked(pub):
		return "", false
	}
	return n.roleWithInherited(pub)
}

// RoleOf is the role of pub as this node sees it now; false for a key it
// does not admit.
func (n *Node) RoleOf(pub string) (string, bool) { return n.roleOf(pub) }

// checkUser validates a rn_users record read from the network.
func checkUser(key string, u wire.User) error {
	if !UserNameRE.MatchString(key) || u.Name != key {
		return fmt.Errorf("name %q (key %q)", clip(u.Name, 64), clip(key, 64))
	}
	switch u.Role {
	case wire.RoleAdmin, wire.RoleOperator, wire.RoleObserver:
	default:
		return fmt.Errorf("user %s: role %q (want admin, operator or observer)", key, clip(u.Role, 32))
	}
	if !nkeys.IsValidPublicUserKey(u.Nkey) {
		return fmt.Errorf("user %s: nkey %q is not a public user key", key, clip(u.Nkey, 64))
	}
	return nil
}

func (n *Node) onUserEntry(e jetstream.KeyValueEntry) {
	if e == nil {
		return
	}
	// Applied once this returns, whatever it decides: heartbeats say so.
	defer func() {
		for r := n.usersRev.Load(); e.Revision() > r && !n.usersRev.CompareAndSwap(r, e.Revision()); r = n.usersRev.Load() {
		}
	}()
	if e.Operation() != jetstream.KeyValuePut {
		if e.Key() == FounderUser {
			return // the founder stays pinned; `user remove founder` revokes it
		}
		n.ids.setUser(e.Key(), nil, "")
		n.inh.setOwnUser(e.Key(), nil)
		n.authChanged()
		return
	}
	rec, by, err := trust.OpenRecord(BucketUsers, e.Key(), e.Value())
	if err != nil {
		n.badRecord(BucketUsers, e.Key(), err)
		return
	}
	var u wire.User
	if err := wire.Decode(rec, &u); err != nil {
		n.badRecord(BucketUsers, e.Key(), err)
		return
	}
	if err := checkUser(e.Key(), u); err != nil {
		n.badRecord(BucketUsers, e.Key(), err)
		return
	}
	if e.Key() == FounderUser {
		n.onFounder(u, by)
		return
	}
	if chev, isNode := n.ids.nodeChevron(by); isNode {
		// Node keys never administer: a node (or whoever holds its key)
		// wrote this straight into the KV.
		n.badRecord(BucketUsers, e.Key(), fmt.Errorf("user record signed by node %s's key", chev))
		n.ids.setUser(e.Key(), nil, "")
		n.inh.setOwnUser(e.Key(), nil)
		n.authChanged()
		return
	}
	n.ids.setUser(e.Key(), &u, by)
	n.inh.setOwnUser(e.Key(), e.Value()) // handed down to child swarms (fedauth.go)
	if !n.ids.isAdmin(by) {
		// Kept: the signer may become known as an admin later.
		n.log.Warn("user record not signed by an admin (yet): ignored", "user", e.Key(), "signer", by)
	}
	n.authChanged()
}

// onRevokedEntry takes a revocation that an admin signed, or that proves
// its key forked its chain. Keys are the revoked key ("U…", "N…"), or
// "<key>.<reporter>" for a node's proven report. Deletes are ignored: a
// revoked key stays revoked (make a new one).
func (n *Node) onRevokedEntry(e jetstream.KeyValueEntry) {
	if e == nil || e.Operation() != jetstream.KeyValuePut {
		return
	}
	pub, reporter, _ := strings.Cut(e.Key(), ".")
	rec, by, err := trust.OpenRecord(BucketRevoked, e.Key(), e.Value())
	if err != nil {
		n.badRecord(BucketRevoked, e.Key(), err)
		return
	}
	if reporter != "" && reporter != by && !n.ids.isAdmin(by) {
		n.badRecord(BucketRevoked, e.Key(), fmt.Errorf("a report under %s signed by %s", clip(reporter, 64), by))
		return
	}
	var r wire.Revocation
	if err := wire.Decode(rec, &r); err != nil || r.Pubkey != pub {
		n.badRecord(BucketRevoked, e.Key(), fmt.Errorf("record for %q does not decode to a revocation of that key: %v", clip(pub, 64), err))
		return
	}
	c := revocationClaim{r: r, by: by}
	if r.Proof != nil {
		if perr := trust.VerifyForkProof(r.Proof); perr == nil && r.Proof.Key == pub {
			c.proven = true
		} else if !n.ids.isAdmin(by) {
			n.badRecord(BucketRevoked, e.Key(), fmt.Errorf("proof does not hold: %v", perr))
			return
		}
	}
	n.ids.setClaim(e.Key(), c)
	if reporter == "" {
		n.inh.setOwnRevoked(e.Key(), e.Value()) // handed down to child swarms (fedauth.go)
	}
	if !c.proven && !n.ids.isAdmin(by) {
		n.log.Warn("revocation neither signed by an admin nor proven (yet): no effect", "key", pub, "signer", by)
	}
	n.authChanged()
	if pub == n.pub && n.ids.isRevoked(pub) {
		n.log.Error("this node's key was revoked by the swarm", "reason", r.Reason)
	}
}

// badRecord reports and counts a record that failed its check.
func (n *Node) badRecord(bucket, key string, err error) {
	n.tc.badRecords.Add(1)
	n.log.Warn("ignoring a record that does not verify", "bucket", bucket, "key", clip(key, 80), "err", err)
}

// authChanged asks the auth loop to bring the server's authorization (and
// the route pins) up to date; calls coalesce.
func (n *Node) authChanged() {
	select {
	case n.authKick <- struct{}{}:
	default:
	}
}

func (n *Node) authLoop() {
	defer n.wg.Done()
	for {
		select {
		case <-n.ctx.Done():
			return
		case <-n.authKick:
			if err := n.applyAuth(); err != nil {
				n.log.Warn("reload authorization", "err", err)
			}
		}
	}
}

// readVerbs are the verbs an observer may send: read-only for every
// argument.
func readVerbs(cat *command.Catalogue) []string {
	var out []string
	for _, s := range cat.List() {
		if s.Risk == command.Read && s.RiskFor == nil && s.Tier <= command.TierObserve {
			out = append(out, s.Name)
		}
	}
	return out
}

// queryPerms lists the query subjects a role may publish.
func queryPerms(names ...string) []string {
	var out []string
	for _, q := range names {
		out = append(out, subjects.Query(q), subjects.Query(q)+".*")
	}
	return out
}

// operatorStreams are the only streams an operator reads through
// JetStream: the buckets its own commands need (macros for do/macro,
// approvals for run and approve). Never rn_users, rn_tokens, rn_revoked,
// rn_secrets, rn_files or rn_config: files and configuration reach
// operators through the file and config verbs, which the nodes confine.
var operatorStreams = []string{"KV_" + BucketMacros, "KV_" + BucketApprovals}

// jsRead is the JetStream API an operator needs on streams: info, reads,
// watches and direct gets; no stream or consumer administration beyond its
// own consumers.
func jsRead(streams ...string) []string {
	out := []string{"$JS.API.INFO"}
	for _, s := range streams {
		out = append(out,
			"$JS.API.STREAM.INFO."+s, "$JS.API.STREAM.MSG.GET."+s, "$JS.API.DIRECT.GET."+s, "$JS.API.DIRECT.GET."+s+".>",
			"$JS.API.CONSUMER.CREATE."+s, "$JS.API.CONSUMER.CREATE."+s+".>", "$JS.API.CONSUMER.DELETE."+s+".>",
			"$JS.API.CONSUMER.INFO."+s+".>", "$JS.API.CONSUMER.MSG.NEXT."+s+".>", "$JS.ACK."+s+".>", "$JS.FC."+s+".>")
	}
	return out
}

// chevronPerms are the permission subjects rn.<chevron>.<suffix> for a
// chevron of any length (1 to subjects.MaxTokens tokens): the services
// features run on a node (the gateway's login, the mesh proxy's opens).
func chevronPerms(suffix string) []string {
	var out []string
	pre := subjects.Root
	for range subjects.MaxTokens {
		pre += ".*"
		out = append(out, pre+"."+suffix)
	}
	return out
}

// mediaPerms are a viewer's media requests (package media): listing a
// node's streams, WHEP offers and their sessions, relay leases. Viewing
// needs tier 1, which every user role has; the camera's node checks the
// signer again.
func mediaPerms() []string {
	var out []string
	for _, s := range []string{"media.list", "media.*.whep", "media.*.whep.*", "media.*.relay"} {
		out = append(out, chevronPerms(s)...)
	}
	return out
}

// Permissions returns what identity pub with role may publish and
// subscribe (the node's own key is unrestricted and not passed here). Every
// role subscribes only to rn.> and its own inbox (subjects.Inbox(pub)).
func Permissions(role, pub string, readVerbs []string) *server.Permissions {
	sub := &server.SubjectPermission{Allow: []string{subjects.Root + ".>", subjects.Inbox(pub) + ".>"}}
	var pubAllow []string
	switch role {
	case wire.RoleAdmin:
		pubAllow = []string{">"}
	case wire.RoleOperator:
		// not rotate, token or revoke: those are admins'.
		pubAllow = append(pubAllow, subjects.CmdPermissions("*")...)
		pubAllow = append(pubAllow, queryPerms(subjects.QueryNodes, subjects.QueryStatus, subjects.QueryTrust, subjects.QueryAlerts, subjects.QueryQuarantine, subjects.QueryRelease,
			subjects.QueryFed, subjects.QueryFedNodes, subjects.QueryCore)...)
		pubAllow = append(pubAllow, jsRead(operatorStreams...)...)
		pubAllow = append(pubAllow, "$KV."+BucketMacros+".>", "$KV."+BucketApprovals+".>")
		// A login link or a bearer token of its own (the gateway checks
		// the signer and grants no more than its role).
		pubAllow = append(pubAllow, chevronPerms("gateway.login")...)
		// The mesh proxy (robonet proxy): opening a tunnel, checked by the
		// target for role and port, and its data frames, sent only to the
		// target end's random subject under the target node's inbox.
		pubAllow = append(pubAllow, chevronPerms("http.*")...)
		pubAllow = append(pubAllow, subjects.InboxRoot+".*.proxy.tun.*")
		pubAllow = append(pubAllow, mediaPerms()...)
	default: // observer
		for _, v := range readVerbs {
			pubAllow = append(pubAllow, subjects.CmdPermissions(v)...)
		}
		pubAllow = append(pubAllow, queryPerms(subjects.QueryNodes, subjects.QueryStatus, subjects.QueryTrust, subjects.QueryAlerts,
			subjects.QueryFed, subjects.QueryFedNodes, subjects.QueryCore)...)
		pubAllow = append(pubAllow, chevronPerms("gateway.login")...)
		pubAllow = append(pubAllow, mediaPerms()...)
	}
	return &server.Permissions{Publish: &server.SubjectPermission{Allow: pubAllow}, Subscribe: sub}
}

// nodeJSAPI is the JetStream API a node's own connection uses: creating,
// scaling and reading the swarm's buckets, moving the lease stream's
// leadership, and its consumers. Not stream deletion, message deletion or
// purges (but rn_files', which replacing an object needs), restores or
// server removal.
var nodeJSAPI = []string{
	"$JS.API.INFO", "$JS.API.STREAM.CREATE.*", "$JS.API.STREAM.UPDATE.*", "$JS.API.STREAM.INFO.*",
	"$JS.API.STREAM.NAMES", "$JS.API.STREAM.LIST", "$JS.API.STREAM.MSG.GET.*", "$JS.API.DIRECT.GET.>",
	"$JS.API.STREAM.LEADER.STEPDOWN.*", "$JS.API.STREAM.PURGE.OBJ_" + BucketFiles,
	"$JS.API.CONSUMER.>", "$JS.ACK.>", "$JS.FC.>",
}

// nodePermissions are the node's own connection's: it publishes under its
// own chevron (when known at connect), answers requests (one reply each),
// and uses JetStream, writing only its own registry entry, the lease, its
// own proven revocation reports, used join tokens, and what the config and
// file verbs store; it subscribes to rn.> and its own inbox only. Records
// that matter (users, revocations, secrets) are checked by every node
// whoever writes them: these permissions are the second line.
func (n *Node) nodePermissions() *server.Permissions {
	pub := append([]string{}, nodeJSAPI...)
	pub = append(pub, "$KV."+BucketLeader+"."+leaseKey, "$KV."+BucketConfig+".>", "$KV."+BucketTokens+".>",
		"$KV."+BucketRevoked+".*."+n.pub, "$O."+BucketFiles+".>")
	if n.edge {
		// JetStream and heartbeats through the leaf link, and the core's
		// registry and roster (an edge's Members and CoreStatus ask it).
		pub = append(pub, "$JS."+n.coreDomain()+".API.>", leafnode.EdgeBeat(n.ServerName()))
		pub = append(pub, queryPerms(subjects.QueryNodes, subjects.QueryCore)...)
	}
	chev := n.chev
	if chev.IsZero() {
		saved, _ := n.dd.loadState()
		if c, err := subjects.Parse(cmpOr(n.opts.Chevron, saved.Chevron)); err == nil {
			chev = c
		}
	}
	if chev.IsZero() {
		// A first start that auto-numbers learns its chevron after it has
		// connected; until the next start its own publishes are bounded by
		// the receivers instead, which drop anything under a chevron not
		// signed by the key that holds it, and registry entries not signed
		// by the key they name.
		pub = append(pub, subjects.Root+".>", "$KV."+BucketNodes+".*")
	} else {
		pub = append(pub, subjects.Root+"."+chev.String()+".>", "$KV."+BucketNodes+"."+chev.String())
	}
	return &server.Permissions{
		Publish:   &server.SubjectPermission{Allow: pub},
		Subscribe: &server.SubjectPermission{Allow: []string{subjects.Root + ".>", subjects.Inbox(n.pub) + ".>", leafnode.EdgeBeatAll}},
		Response:  &server.ResponsePermission{MaxMsgs: 1, Expires: maxCmdTimeout + time.Minute},
	}
}

func cmpOr(a, b string) string {
	if a != "" {
		return a
	}
	return b
}

// authenticator is the server's client authentication: an nkey
// challenge (the client signs the server's nonce), then permissions from
// the key's current role. Identities change without a server reload
// (ReloadOptions races with JetStream direct gets inside nats-server
// v2.15.2: getDirectRequest reads s.opts unlocked), and a key whose role
// changes or that is removed or revoked has its connections closed.
type authenticator struct{ n *Node }

func (a authenticator) Check(c server.ClientAuthentication) bool {
	n := a.n
	if c.Kind() == server.LEAF {
		if isEdgeLeaf(c) {
			return n.admitEdge(c) // edges of this swarm's core (role.go)
		}
		return n.admitLeaf(c) // child swarms of a hub (leafauth.go)
	}
	if c.Kind() != server.CLIENT {
		return false
	}
	o := c.GetOpts()
	if o == nil || o.Nkey == "" || len(o.Nkey) > 64 || o.Sig == "" || len(o.Sig) > 256 {
		return false
	}
	kp, err := nkeys.FromPublicKey(o.Nkey)
	if err != nil {
		return false
	}
	sig, err := base64.RawURLEncoding.DecodeString(o.Sig)
	if err != nil {
		if sig, err = base64.StdEncoding.DecodeString(o.Sig); err != nil {
			return false
		}
	}
	if nonce := c.GetNonce(); len(nonce) == 0 || kp.Verify(nonce, sig) != nil {
		return false
	}
	if o.Name == sysConnName {
		// The system account only for the node's own key, and only in
		// process (net.Pipe): a network client never gets it, whatever key
		// it holds.
		ra := c.RemoteAddress()
		if o.Nkey != n.pub || ra == nil || ra.Network() != "pipe" || n.srv == nil {
			return false
		}
		c.RegisterUser(&server.User{Username: o.Nkey, Account: n.srv.SystemAccount(), Permissions: sysPermissions()})
		return true
	}
	if strings.HasPrefix(o.Name, featureConnPrefix) {
		// A feature beside the node (FeatureConn): the node's own key,
		// in process only.
		ra := c.RemoteAddress()
		if o.Nkey != n.pub || ra == nil || ra.Network() != "pipe" {
			return false
		}
		c.RegisterUser(&server.User{Username: o.Nkey, Permissions: n.featurePermissions()})
		return true
	}
	perms, ok := n.permissionsFor(o.Nkey)
	if !ok {
		return false
	}
	c.RegisterUser(&server.User{Username: o.Nkey, Permissions: perms})
	return true
}

// permissionsFor returns what key pub may do on this node's server; ok is
// false for a key that may not connect. Other nodes' keys never connect as
// clients here: nodes route.
func (n *Node) permissionsFor(pub string) (*server.Permissions, bool) {
	if pub == n.pub {
		return n.nodePermissions(), true
	}
	role, ok := n.roleOf(pub)
	if !ok || role == wire.RoleNode {
		return nil, false
	}
	p := Permissions(role, pub, readVerbs(n.catalogueForPerms()))
	if n.edge {
		p = inDomain(p, n.coreDomain())
	}
	return p, true
}

// inDomain adds to p's publish allow-list the JetStream domain form of its
// JetStream API and KV subjects: on an edge, programs reach the core's
// JetStream only as $JS.<domain>.API (a KV put as $JS.<domain>.API.$KV.…).
func inDomain(p *server.Permissions, domain string) *server.Permissions {
	if p == nil || p.Publish == nil || domain == "" {
		return p
	}
	allow := slices.Clone(p.Publish.Allow)
	for _, a := range p.Publish.Allow {
		switch {
		case strings.HasPrefix(a, "$JS.API."):
			allow = append(allow, "$JS."+domain+".API."+strings.TrimPrefix(a, "$JS.API."))
		case strings.HasPrefix(a, "$KV."):
			allow = append(allow, "$JS."+domain+".API."+a)
		}
	}
	p.Publish.Allow = allow
	return p
}

// catalogueForPerms is the catalogue that decides the read verbs; before
// the node serves commands, a default one.
func (n *Node) catalogueForPerms() *command.Catalogue {
	if cat := n.catP.Load(); cat != nil {
		return cat
	}
	cat, _ := command.New(command.Options{})
	return cat
}

// applyAuth brings connections in line with the identities: it closes the
// connections of every key that was removed, revoked or changed role since
// the last call, and the routes of revoked nodes.
func (n *Node) applyAuth() error {
	n.saveKnownMembers()
	inhRoles, inhRevoked := n.inh.snapshot()
	n.ids.mu.Lock()
	now := maps.Clone(n.ids.byKey)
	for pub := range n.ids.revoked {
		delete(now, pub)
	}
	mergeInherited(now, inhRoles, inhRevoked)
	prev := n.ids.lastRoles
	n.ids.lastRoles = now
	n.ids.mu.Unlock()
	for pub, role := range prev {
		if now[pub] != role {
			n.disconnect(pub)
		}
	}
	if n.routes != nil && n.revokedRouteUp() {
		// Pinning the members for one reload makes nats-server close
		// routes whose certificate is not among them (recheckPinnedCerts);
		// the next reload unpins so new nodes can be admitted.
		// The reload also closes every client connection: with custom
		// authentication nats-server keeps no nkey table, and its
		// clientHasMovedToDifferentAccount then treats every nkey client as
		// moved. Clients reconnect at once to the node they were given
		// (servers do not advertise other nodes' client URLs: NoAdvertise),
		// so a revocation costs connected clients one reconnect.
		// Each reload gets its own copy: the server keeps the one it is
		// given as its current options and reads it without a lock
		// (isClientAuthorized), while a reload writes into the new one
		// (reloadOptions copies the custom authenticators in); reusing
		// the first copy for the second reload was a data race with
		// every client connecting meanwhile (the race detector saw it).
		pinned, unpinned := *n.so, *n.so
		pinned.Cluster.TLSPinnedCerts = n.memberPins()
		if err := n.srv.ReloadOptions(&pinned); err != nil {
			return err
		}
		unpinned.Cluster.TLSPinnedCerts = nil
		if err := n.srv.ReloadOptions(&unpinned); err != nil {
			return err
		}
		n.log.Warn("closed routes to revoked keys")
	}
	return nil
}

// disconnect closes every client connection authenticated as pub.
func (n *Node) disconnect(pub string) {
	cz, err := n.srv.Connz(&server.ConnzOptions{User: pub, Username: true, Limit: 4096})
	if err != nil {
		return
	}
	for _, ci := range cz.Conns {
		if err := n.srv.DisconnectClientByID(ci.Cid); err == nil {
			n.log.Info("disconnected a client whose key was removed, revoked or changed role", "key", pub, "cid", ci.Cid)
		}
	}
}

// IsRevoked reports whether the swarm revoked pub (as this node has heard).
func (n *Node) IsRevoked(pub string) bool { return n.ids.isRevoked(pub) }

// RoutedServers lists the server names this node has routes to.
func (n *Node) RoutedServers() []string {
	if n.srv == nil {
		return nil
	}
	rz, err := n.srv.Routez(nil)
	if err != nil {
		return nil
	}
	var out []string
	for _, r := range rz.Routes {
		if r.RemoteName != "" && !slices.Contains(out, r.RemoteName) {
			out = append(out, r.RemoteName)
		}
	}
	sort.Strings(out)
	return out
}

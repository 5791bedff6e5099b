package node

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/nats-io/nkeys"

	"github.com/robonet-mesh/robonet/subjects"
	"github.com/robonet-mesh/robonet/trust"
	"github.com/robonet-mesh/robonet/wire"
)

// FounderUser is the rn_users record naming the swarm's founder: the
// operator key of the node that founded the swarm, self-signed. It is the
// root every admin record is checked from; each node pins its key in
// FounderFile on first sight and ignores a record that names another.
const FounderUser = "founder"

// FounderFile keeps the pinned founder key in the data dir.
const FounderFile = "founder.pub"

// founds reports whether this node writes the founder record at once:
// asked to (--founder), or started with no one to join (a new swarm, or a
// single node). Others write it only when no founder shows up
// (foundIfNone).
func (n *Node) founds() bool { return n.opts.Founder || len(n.opts.Join) == 0 && !n.edge }

// DefaultFounderGrace is how long a node that joins others waits for a
// founder record before it writes one itself: founders started together
// with --join and no --founder leave the founding to the first of them,
// and a node joining a formed swarm reads the founder within milliseconds.
const DefaultFounderGrace = 3 * time.Second

// founderWaitMax bounds how long, after the grace, a node waits for routed
// members to register before it founds the swarm itself.
const founderWaitMax = 20 * time.Second

// foundIfNone writes the founder record after Options.FounderGrace if this
// node has seen none and no member declares that it founds (first write
// wins: Create).
func (n *Node) foundIfNone(opKP nkeys.KeyPair) {
	defer n.wg.Done()
	grace := n.opts.FounderGrace
	if grace < 0 {
		return
	}
	if grace == 0 {
		grace = DefaultFounderGrace
	}
	select {
	case <-n.ctx.Done():
		return
	case <-time.After(grace):
	}
	// A member this node routes to that has not registered yet may be the
	// one started with --founder, slower to claim its chevron (auto-numbering
	// loses a race, a candidate asks the core first): wait for its
	// registration, within founderWaitMax.
	for end := time.Now().Add(founderWaitMax); time.Now().Before(end) && n.reg.routedUnregistered(); {
		select {
		case <-n.ctx.Done():
			return
		case <-time.After(250 * time.Millisecond):
		}
	}
	if n.ids.founderKey() != "" || n.ids.founding(n.pub) {
		return // founded, or a member that founds will write it
	}
	ctx, cancel := context.WithTimeout(n.ctx, 30*time.Second)
	defer cancel()
	if err := n.writeFounder(ctx, opKP); err != nil && n.ctx.Err() == nil {
		n.log.Warn("write the founder record", "err", err)
	}
}

// loadFounderPin reads the pinned founder key, if any.
func (n *Node) loadFounderPin() error {
	b, err := os.ReadFile(n.dd.file(FounderFile))
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	pub := strings.TrimSpace(string(b))
	if !nkeys.IsValidPublicUserKey(pub) {
		return fmt.Errorf("%s: %q is not a public user key", n.dd.file(FounderFile), clip(pub, 64))
	}
	n.ids.setFounder(pub)
	return nil
}

// onFounder pins the founder record's key the first time and refuses a
// changed one, loudly.
func (n *Node) onFounder(u wire.User, by string) {
	if u.Role != wire.RoleAdmin || u.Nkey != by {
		n.badRecord(BucketUsers, FounderUser, fmt.Errorf("founder record must be a self-signed admin (role %s, key %s, signed by %s)", u.Role, u.Nkey, by))
		return
	}
	if !n.ids.setFounder(u.Nkey) {
		n.tc.badRecords.Add(1)
		n.log.Error("the founder record names a different key than the one this node pinned: ignored",
			"pinned", n.ids.founderKey(), "record", u.Nkey, "pin", n.dd.file(FounderFile))
		return
	}
	path := n.dd.file(FounderFile)
	if _, err := os.Stat(path); errors.Is(err, os.ErrNotExist) {
		if err := os.WriteFile(path, []byte(u.Nkey+"\n"), 0o600); err != nil {
			n.log.Warn("pin founder key", "err", err)
		}
	}
	n.authChanged()
}

// writeFounder records this node's operator key as the founder unless a
// founder exists (first write wins). It writes as the operator: node keys
// may not write rn_users.
func (n *Node) writeFounder(ctx context.Context, opKP nkeys.KeyPair) error {
	u := wire.User{Name: FounderUser, Role: wire.RoleAdmin, Nkey: n.opPub, Added: time.Now().UTC(), By: n.opPub}
	rec, _ := json.Marshal(u)
	data, err := trust.SignRecord(opKP, BucketUsers, FounderUser, rec)
	if err != nil {
		return err
	}
	nc, err := connectInProcess(nats.InProcessServer(n.srv), nats.Name("robonet-founder"),
		nats.CustomInboxPrefix(subjects.Inbox(n.opPub)),
		nats.Nkey(n.opPub, opKP.Sign), nats.NoCallbacksAfterClientClose())
	if err != nil {
		return fmt.Errorf("founder record: connect: %w", err)
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		return err
	}
	for {
		kv, err := js.KeyValue(ctx, BucketUsers)
		if err == nil {
			_, err = kv.Create(ctx, FounderUser, data)
			if err == nil {
				n.log.Info("founded the swarm: this node's operator key is its first admin", "key", n.opPub)
			}
			if err == nil || errors.Is(err, jetstream.ErrKeyExists) {
				return nil
			}
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("founder record: %w", errors.Join(err, ctx.Err()))
		case <-time.After(250 * time.Millisecond):
		}
	}
}

func (ids *identities) founderKey() string {
	ids.mu.Lock()
	defer ids.mu.Unlock()
	return ids.founder
}

// Founder is the swarm founder's key as this node knows it ("" until seen).
func (n *Node) Founder() string { return n.ids.founderKey() }

// founding reports whether a registered member other than self declares
// that it founds the swarm.
func (ids *identities) founding(self string) bool {
	ids.mu.Lock()
	defer ids.mu.Unlock()
	for _, in := range ids.infos {
		if in.Founding && in.Pubkey != self {
			return true
		}
	}
	return false
}

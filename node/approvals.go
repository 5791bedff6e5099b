package node

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/robonet-mesh/robonet/mesh"
	"github.com/robonet-mesh/robonet/trust"
	"github.com/robonet-mesh/robonet/wire"
)

// ErrApproval is wrapped by every refusal of a dangerous command's approval
// (approvalGate.Check). Refusals about time and count also wrap
// trust.ErrApprovalExpired or trust.ErrQuorum.
var ErrApproval = errors.New("approval")

// approvalGate decides whether an rn_approvals record authorises one
// dangerous command on this node. It is safe for concurrent use.
type approvalGate struct {
	read   *mesh.LeaderKV // rn_approvals, through its stream leader
	roleOf func(pub string) (role string, ok bool)
	quorum func(ctx context.Context) int

	mu sync.Mutex
	// used holds the approval ids this node has run, each until its expiry,
	// so an approval runs a command at most once per node. It is memory
	// only: a node restarted before an approval expires would run it once
	// more if the requester sent it again. The requester alone can use an
	// approval (Check compares keys), so that costs one extra run of what
	// the quorum approved, by the one who asked for it.
	used map[string]time.Time
}

// newApprovalGate builds the gate over js's rn_approvals bucket. roleOf
// tells the role of a public key: "admin", "operator", "observer", "node",
// or ok=false when unknown; only operators and admins count as approvers.
// quorum returns the swarm's minimum number of approvers (rn_config
// trust.quorum: see quorumFromConfig); a value below 1, or a nil quorum,
// means the record's own Need is the minimum.
func newApprovalGate(js jetstream.JetStream, roleOf func(pub string) (role string, ok bool), quorum func(ctx context.Context) int) *approvalGate {
	if roleOf == nil {
		roleOf = func(string) (string, bool) { return "", false }
	}
	if quorum == nil {
		quorum = func(context.Context) int { return 0 }
	}
	return &approvalGate{read: mesh.NewLeaderKV(js, BucketApprovals), roleOf: roleOf, quorum: quorum, used: map[string]time.Time{}}
}

// quorumFromConfig returns a quorum function for newApprovalGate that reads
// rn_config's trust.quorum through the stream leader: mesh.DefaultQuorum
// when the key is not set. It fails closed: when the key cannot be read or
// its value is invalid, it returns mesh.MaxQuorum, so no dangerous command
// runs on a quorum lowered by a typo or a read error.
func quorumFromConfig(js jetstream.JetStream) func(ctx context.Context) int {
	read := mesh.NewLeaderKV(js, BucketConfig)
	return func(ctx context.Context) int {
		e, found, err := read.Get(ctx, mesh.QuorumKey)
		if err != nil {
			return mesh.MaxQuorum
		}
		if !found {
			return mesh.DefaultQuorum
		}
		m, err := mesh.ParseQuorum(e.Value)
		if err != nil {
			return mesh.MaxQuorum
		}
		return m
	}
}

// approverRole reports whether a role's signature counts towards a quorum.
func approverRole(role string) bool { return role == "operator" || role == "admin" }

// Check verifies that approval id authorises req (verb and args digest
// match) for requester, the verified sender's public key; that it has not
// expired at now; that it carries at least max(record.Need, quorum(ctx))
// valid signatures from distinct keys whose role is operator or admin, none
// of them the requester's; and that this node has not run this approval id
// before. On success the id counts as used on this node until it expires.
// It reads the record through the stream leader. Every refusal wraps
// ErrApproval and names the id and what was wrong.
func (g *approvalGate) Check(ctx context.Context, id string, req wire.Request, requester string, now time.Time) error {
	refuse := func(format string, args ...any) error {
		return fmt.Errorf("%w %s: %w", ErrApproval, id, fmt.Errorf(format, args...))
	}
	if err := mesh.ValidApprovalID(id); err != nil {
		return fmt.Errorf("%w: %w", ErrApproval, err)
	}
	if g.usedAt(id, now) {
		return refuse("already used on this node (an approval runs once per node)")
	}
	e, found, err := g.read.Get(ctx, id)
	if err != nil {
		return refuse("read %s: %w", BucketApprovals, err)
	}
	if !found {
		return refuse("not in %s", BucketApprovals)
	}
	rec, err := mesh.DecodeApproval(id, e.Value, now)
	if err != nil {
		return fmt.Errorf("%w: %w", ErrApproval, err)
	}
	if rec.Verb != req.Verb {
		return refuse("approves verb %s, not %.64q", rec.Verb, req.Verb)
	}
	if d := trust.DigestArgs(req.Args); d != rec.ArgsDigest {
		return refuse("approves other arguments (digest %.12s…, the command's %.12s…)", rec.ArgsDigest, d)
	}
	if requester == "" || rec.Requester != requester {
		return refuse("requested by %.12s…, but the command comes from %.12s…", rec.Requester, requester)
	}
	if !now.Before(rec.Expires) {
		return refuse("%w at %s", trust.ErrApprovalExpired, rec.Expires.UTC().Format(time.RFC3339))
	}
	// Only operators' and admins' signatures count; Count verifies each and
	// ignores the requester's.
	counted := rec.Approval
	counted.Sigs = map[string][]byte{}
	ignored := 0
	for pub, sig := range rec.Sigs {
		if role, ok := g.roleOf(pub); ok && approverRole(role) && pub != requester {
			counted.Sigs[pub] = sig
		} else {
			ignored++
		}
	}
	have := counted.Count()
	need := max(rec.Need, g.quorum(ctx), 1)
	if have < need {
		msg := fmt.Sprintf("%d of %d approvals from operators or admins", have, need)
		if ignored > 0 {
			msg += fmt.Sprintf("; %d signature(s) by the requester or by keys that are not operators or admins ignored", ignored)
		}
		if bad := len(counted.Sigs) - have; bad > 0 {
			msg += fmt.Sprintf("; %d signature(s) that do not verify ignored", bad)
		}
		return refuse("%w: %s", trust.ErrQuorum, msg)
	}
	if !g.markUsed(id, rec.Expires, now) {
		return refuse("already used on this node (an approval runs once per node)")
	}
	return nil
}

// usedAt reports whether id was used and has not expired at now.
func (g *approvalGate) usedAt(id string, now time.Time) bool {
	g.mu.Lock()
	defer g.mu.Unlock()
	exp, ok := g.used[id]
	return ok && now.Before(exp)
}

// markUsed records id as used until expires; false if it already was. It
// forgets ids expired at now, so the map holds only live approvals.
func (g *approvalGate) markUsed(id string, expires, now time.Time) bool {
	g.mu.Lock()
	defer g.mu.Unlock()
	for k, exp := range g.used {
		if !now.Before(exp) {
			delete(g.used, k)
		}
	}
	if _, ok := g.used[id]; ok {
		return false
	}
	g.used[id] = expires
	return true
}

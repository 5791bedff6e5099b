package node

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"runtime"
	"sort"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/robonet-mesh/robonet/mesh"
	"github.com/robonet-mesh/robonet/subjects"
	"github.com/robonet-mesh/robonet/trust"
	"github.com/robonet-mesh/robonet/wire"
)

// Claim errors: a node refuses to join with them.
var (
	ErrChevronTaken    = errors.New("chevron taken")
	ErrChevronConflict = errors.New("chevron conflicts")
)

type claimed struct {
	info wire.NodeInfo
	rev  uint64
}

// readClaims reads every entry of rn_nodes.
func (n *Node) readClaims(ctx context.Context) (map[subjects.Chevron]claimed, error) {
	out := map[subjects.Chevron]claimed{}
	w, err := n.kvs.nodes.WatchAll(ctx, jetstream.IgnoreDeletes())
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", BucketNodes, err)
	}
	defer w.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil, fmt.Errorf("read %s: %w", BucketNodes, ctx.Err())
		case e := <-w.Updates():
			if e == nil {
				return out, nil
			}
			c, err := subjects.Parse(e.Key())
			if err != nil {
				n.badRecord(BucketNodes, e.Key(), err)
				continue
			}
			info, err := mesh.OpenNodeRecord(e.Key(), e.Value())
			if err != nil {
				n.badRecord(BucketNodes, e.Key(), err)
				continue
			}
			out[c] = claimed{info: info, rev: e.Revision()}
		}
	}
}

// claim takes the node's chevron in rn_nodes with compare-and-set: the flag's,
// else the one saved in the data dir, else the lowest free number (flat,
// or under a federated swarm's prefix).
func (n *Node) claim(ctx context.Context, saved savedState) error {
	want := n.opts.Chevron
	if want == "" {
		want = saved.Chevron
	}
	for attempt := 0; ; attempt++ {
		cctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		err := n.tryClaim(cctx, want)
		cancel()
		if err == nil || errors.Is(err, ErrChevronTaken) || errors.Is(err, ErrChevronConflict) || ctx.Err() != nil {
			if err == nil && saved.Chevron != "" && saved.Chevron != n.chev.String() {
				_ = n.releaseClaim(ctx, saved.Chevron)
			}
			return err
		}
		if attempt >= 20 {
			return fmt.Errorf("claim chevron: %w", err)
		}
		n.log.Debug("claim chevron: retrying", "err", err)
		select {
		case <-ctx.Done():
			return fmt.Errorf("claim chevron: %w", ctx.Err())
		case <-time.After(250 * time.Millisecond):
		}
	}
}

func (n *Node) tryClaim(ctx context.Context, want string) error {
	claims, err := n.readClaims(ctx)
	if err != nil {
		return err
	}
	if want != "" {
		c, _ := subjects.Parse(want) // validated by Options or written by us
		return n.claimChevron(ctx, c, claims)
	}
	// A retry after a failure that followed a successful write finds its
	// own earlier claim: keep it rather than take another number.
	var mine []subjects.Chevron
	for c, cl := range claims {
		if cl.info.Pubkey == n.pub {
			mine = append(mine, c)
		}
	}
	if len(mine) > 0 {
		sort.Slice(mine, func(i, j int) bool { return mine[i].Compare(mine[j]) < 0 })
		return n.claimChevron(ctx, mine[0], claims)
	}
	// Nodes that know their chevron (given or saved) heartbeat it while they
	// wait for JetStream; routes are up now that JetStream answers, so one and
	// a half heartbeat intervals are enough to hear every one of them before
	// picking a number (a single node restarted to grow a swarm keeps its 1).
	if n.Clustered() && !n.heardGrace {
		n.heardGrace = true
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(n.opts.Timing.Heartbeat * 3 / 2):
		}
	}
	heard := n.reg.heardAlive(time.Now(), n.pub)
	for c := range n.unregisteredHeard(time.Now()) {
		heard[c] = true
	}
	for i := 1; i <= 65535; i++ {
		c := n.autoChevron(uint16(i))
		if conflictWith(c, claims, n.pub) != "" || heard[c.String()] {
			continue
		}
		err := n.claimChevron(ctx, c, claims)
		if errors.Is(err, ErrChevronTaken) || errors.Is(err, ErrChevronConflict) {
			continue // someone was faster: try the next number
		}
		return err
	}
	return fmt.Errorf("%w: no free flat number", ErrChevronTaken)
}

// autoChevron is the i-th chevron auto-numbering tries: the flat i, or
// in a federated swarm (an edge of one; its core members give --chevron)
// prefix.i.
func (n *Node) autoChevron(i uint16) subjects.Chevron {
	if p := n.SwarmPrefix(); !p.IsZero() {
		c, _ := subjects.New(append(p.Tokens(), i)...)
		return c
	}
	c, _ := subjects.Flat(i)
	return c
}

// conflictWith names an entry, held by another key, that c duplicates or
// prefixes (or that prefixes c); "" if none.
func conflictWith(c subjects.Chevron, claims map[subjects.Chevron]claimed, pub string) string {
	var names []string
	for oc, cl := range claims {
		if cl.info.Pubkey != pub && oc.Conflicts(c) {
			names = append(names, fmt.Sprintf("%s (%s)", oc, cl.info.Name))
		}
	}
	sort.Strings(names)
	if len(names) == 0 {
		return ""
	}
	return names[0]
}

func (n *Node) claimChevron(ctx context.Context, c subjects.Chevron, claims map[subjects.Chevron]claimed) error {
	if cl, ok := claims[c]; ok && cl.info.Pubkey != n.pub {
		return fmt.Errorf("%w: %s is held by node %q (key %s…)", ErrChevronTaken, c, cl.info.Name, cl.info.Pubkey[:8])
	}
	if other := conflictWith(c, claims, n.pub); other != "" {
		return fmt.Errorf("%w: %s and %s: one is a prefix of the other, so a prefix would stop meaning a group", ErrChevronConflict, c, other)
	}
	name := n.opts.Name
	if name == "" {
		name = "rn" + c.String()
	}
	info := wire.NodeInfo{
		Operator: n.opPub,
		XKey:     n.xkeyPub(),
		Joined:   n.routes.joined(),
		Founding: n.founds(),
		Role:     n.Role(),
		Chevron:  c.String(), Name: name, Pubkey: n.pub, Server: serverName(n.pub),
		Caps: n.opts.Caps, Tags: n.opts.Tags, Version: Version, OS: runtime.GOOS, Arch: runtime.GOARCH,
		Endpoints: wire.Endpoints{Client: n.srv.ClientURL(), Cluster: n.ClusterAddr()},
		Started:   n.started,
	}
	rec, err := json.Marshal(info)
	if err != nil {
		return err
	}
	// Signed by the key it names: no one else can write a registration
	// for a key, or change one (other nodes check it: openNodeInfo).
	data, err := trust.SignRecord(n.kp, BucketNodes, c.String(), rec)
	if err != nil {
		return err
	}
	var rev uint64
	for try := 0; ; try++ {
		if cl, ok := claims[c]; ok {
			// Ours from an earlier run (a crash left it): update in place.
			rev, err = n.kvs.nodes.Update(ctx, c.String(), data, cl.rev)
		} else {
			rev, err = n.kvs.nodes.Create(ctx, c.String(), data)
		}
		if !errors.Is(err, jetstream.ErrKeyExists) && !isWrongSeq(err) {
			break
		}
		// Someone wrote the entry since it was read. It may be this key's
		// own: a write of the run a SIGKILL cut short, committed after it
		// died (the chaos suite saw a node killed twice in ten seconds
		// give up here). Read again; only another key's claim is a loss.
		fresh, rerr := n.readClaims(ctx)
		if rerr != nil {
			return rerr
		}
		if cl, ok := fresh[c]; try >= 2 || (ok && cl.info.Pubkey != n.pub) {
			return fmt.Errorf("%w: %s was claimed by another node at the same moment", ErrChevronTaken, c)
		}
		claims = fresh
	}
	if err != nil {
		return fmt.Errorf("claim %s: %w", c, err)
	}
	// A prefix conflict cannot be ruled out by one compare-and-set: read
	// again, and if an older claim conflicts, the younger one (ours) yields.
	after, err := n.readClaims(ctx)
	if err != nil {
		return err
	}
	for oc, cl := range after {
		if cl.info.Pubkey != n.pub && oc.Conflicts(c) && cl.rev < rev {
			_ = n.kvs.nodes.Delete(ctx, c.String(), jetstream.LastRevision(rev))
			return fmt.Errorf("%w: %s and %s (%s), claimed first", ErrChevronConflict, c, oc, cl.info.Name)
		}
	}
	n.chev, n.name, n.info = c, name, info
	n.selfC.Store(&c)
	return nil
}

// writeBackClaim puts this node's registration back after another writer
// replaced or deleted it (onNodeEntry), so that nodes reading the registry
// later (a restart, a rewatch) find the true owner, not the forgery.
func (n *Node) writeBackClaim() {
	if n.stopped.Load() || n.chev.IsZero() || n.ids.isRevoked(n.pub) {
		return
	}
	rec, err := json.Marshal(n.info)
	if err == nil {
		var data []byte
		if data, err = trust.SignRecord(n.kp, BucketNodes, n.chev.String(), rec); err == nil {
			ctx, cancel := context.WithTimeout(n.ctx, 5*time.Second)
			_, err = n.kvs.nodes.Put(ctx, n.chev.String(), data)
			cancel()
		}
	}
	if err != nil {
		n.log.Warn("could not write this node's registration back; will retry", "err", err)
		n.reclaim.CompareAndSwap(0, time.Now().UnixNano())
	}
}

// releaseClaim deletes an entry if it is still ours.
func (n *Node) releaseClaim(ctx context.Context, chev string) error {
	e, found, err := n.leaderRead.Last(ctx, "KV_"+BucketNodes, "$KV."+BucketNodes+"."+chev)
	if err != nil || !found {
		return err
	}
	if info, err := mesh.OpenNodeRecord(chev, e.Value); err == nil && info.Pubkey == n.pub {
		return n.kvs.nodes.Delete(ctx, chev, jetstream.LastRevision(e.Revision))
	}
	return nil
}

// deregister removes the node's entry on clean shutdown, so it stops being
// an expected member; the data dir keeps the chevron for the next start.
// A stream whose leader just died is unwritable until JetStream elects
// another (4–9 s), so deregistering retries within ctx.
func (n *Node) deregister(ctx context.Context) {
	if n.chev.IsZero() {
		return
	}
	for {
		err := n.releaseClaim(ctx, n.chev.String())
		if err == nil {
			return
		}
		select {
		case <-ctx.Done():
			n.log.Warn("could not remove registry entry; members will show this node offline", "err", err)
			return
		case <-time.After(250 * time.Millisecond):
		}
	}
}

func isWrongSeq(err error) bool {
	var apiErr *jetstream.APIError
	return errors.As(err, &apiErr) && (apiErr.ErrorCode == jetstream.JSErrCodeStreamWrongLastSequence || apiErr.ErrorCode == jetstream.JSErrCodeStreamWrongLastSequenceConstant)
}

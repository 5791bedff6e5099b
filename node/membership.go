package node

import (
	"context"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"runtime"
	"strings"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/shirou/gopsutil/v4/load"

	"github.com/robonet-mesh/robonet/leafnode"
	"github.com/robonet-mesh/robonet/mesh"
	"github.com/robonet-mesh/robonet/sentinel"
	"github.com/robonet-mesh/robonet/subjects"
	"github.com/robonet-mesh/robonet/wire"
)

// subscribeMembership listens to every node's heartbeats, leave, leader and
// trust events, and tier views (tiers.go).
func (n *Node) subscribeMembership() error {
	n.reg.setJudge(n.judgeKey)
	if n.edge {
		// Edges hear no heartbeats or tier views (the core's leaf
		// permissions deny them too); lease and trust events they do.
		for _, subj := range subjects.EventWildcards(subjects.EvtLeader) {
			if _, err := n.nc.Subscribe(subj, n.onLeaderEvent); err != nil {
				return err
			}
		}
		for _, subj := range subjects.EventWildcards(subjects.EvtTrust) {
			if _, err := n.nc.Subscribe(subj, n.onTrustEvent); err != nil {
				return err
			}
		}
		return nil
	}
	for _, subj := range subjects.EventWildcards(evtTiers) {
		if _, err := n.nc.Subscribe(subj, n.onTierView); err != nil {
			return err
		}
	}
	for _, subj := range subjects.EventWildcards(subjects.EvtHeartbeat) {
		if _, err := n.nc.Subscribe(subj, n.onHeartbeat); err != nil {
			return err
		}
	}
	// Edges heartbeat on their own subject (leafnode.EdgeBeat, see
	// leafnode.EdgePermissions); core nodes alone hear them.
	if _, err := n.nc.Subscribe(leafnode.EdgeBeatAll, n.onHeartbeat); err != nil {
		return err
	}
	for _, subj := range subjects.EventWildcards(subjects.EvtLeave) {
		if _, err := n.nc.Subscribe(subj, n.onLeave); err != nil {
			return err
		}
	}
	for _, subj := range subjects.EventWildcards(subjects.EvtLeader) {
		if _, err := n.nc.Subscribe(subj, n.onLeaderEvent); err != nil {
			return err
		}
	}
	for _, subj := range subjects.EventWildcards(subjects.EvtTrust) {
		if _, err := n.nc.Subscribe(subj, n.onTrustEvent); err != nil {
			return err
		}
	}
	return nil
}

// onLeaderEvent learns of lease changes on core NATS, seconds before a
// KV watch whose consumer was on a dead server recovers.
func (n *Node) onLeaderEvent(m *nats.Msg) {
	from, _, ok := subjects.ParseEvent(m.Subject)
	if !ok {
		return
	}
	var e wire.Event
	if err := wire.Decode(m.Data, &e); err != nil || e.Chevron != from.String() || e.Token == 0 {
		return
	}
	if from != n.selfChev() {
		if _, ok := n.verifyNodeMsg(m, from); !ok {
			return
		}
	}
	l := wire.Lease{Chevron: e.Chevron, Name: e.Name, Pubkey: e.Pubkey, Token: e.Token}
	n.reg.observeLease(l, e.Reason == "acquired")
}

func (n *Node) onHeartbeat(m *nats.Msg) {
	var hb wire.Heartbeat
	if err := wire.Decode(m.Data, &hb); err != nil {
		n.log.Debug("dropping malformed heartbeat", "subject", m.Subject)
		return
	}
	var from subjects.Chevron
	ok := false
	if srv, edge := strings.CutPrefix(m.Subject, "_rn.ehb."); edge {
		// An edge's: its chevron is in the body, its server in the subject.
		if c, err := subjects.Parse(hb.Chevron); err == nil && srv == hb.Server && hb.Role == wire.NodeRoleEdge {
			from, ok = c, true
		}
	} else {
		from, _, ok = subjects.ParseEvent(m.Subject)
	}
	if !ok {
		return
	}
	if hb.Chevron != from.String() || hb.Pubkey == "" {
		n.log.Debug("dropping malformed heartbeat", "subject", m.Subject)
		return
	}
	if hb.Pubkey == n.pub {
		return
	}
	peer := hb.Chevron // from, as text
	owner, registered := n.ids.ownerOfText(peer)
	if !registered {
		n.tc.heartbeats.Add(1)
		n.heardUnregistered(m, from, hb.Pubkey)
		return
	}
	if _, ok := n.verifyOwnerMsg(m, from, owner); !ok {
		n.tc.heartbeats.Add(1)
		return
	}
	now := time.Now()
	n.reg.onHeartbeat(hb, now)
	// Delivery latency of the heartbeat stands in for the peer's reply
	// latency (nodes do not send each other commands): a constant clock
	// offset between the two is absorbed by the baseline's median.
	b := sentinel.Beat{Latency: -1, CPU: hb.CPU, Mem: hb.Mem, Disk: hb.Disk}
	if d := now.Sub(hb.Sent); d > -time.Minute && d < time.Minute {
		b.Latency = max(d, 0)
	}
	n.sent.Beat(peer, b, now)
}

func (n *Node) onLeave(m *nats.Msg) {
	from, _, ok := subjects.ParseEvent(m.Subject)
	if !ok || from == n.selfChev() {
		return
	}
	var e wire.Event
	if err := wire.Decode(m.Data, &e); err != nil || e.Chevron == "" || e.Pubkey == n.pub {
		return
	}
	// A member reports a crashed peer's leave under its own chevron: the
	// report must be signed by the key holding that chevron.
	if _, ok := n.verifyNodeMsg(m, from); !ok {
		return
	}
	if _, err := subjects.Parse(e.Chevron); err != nil {
		return
	}
	// Only a crash report ("lost", by another member's heartbeat timeout)
	// yields to fresher evidence; a leave said by the node itself, or an
	// edge's lost link reported by the member it was linked to, is news.
	reported := e.Reason == "lost" && from.String() != e.Chevron
	if !n.reg.onLeave(e.Chevron, time.Now(), reported, n.opts.Timing.SuspectAfter) {
		n.log.Debug("leave report ignored: heard from the member since", "chevron", e.Chevron, "by", from)
	}
}

// watchRoutes polls the embedded server's routes. Polling in-process costs
// microseconds and needs no system-account plumbing.
func (n *Node) watchRoutes() {
	defer n.wg.Done()
	if !n.Clustered() {
		return
	}
	t := time.NewTicker(200 * time.Millisecond)
	defer t.Stop()
	for {
		rz, err := n.srv.Routez(&server.RoutezOptions{})
		if err == nil {
			up := map[string]bool{}
			for _, r := range rz.Routes {
				if r.RemoteName != "" {
					up[r.RemoteName] = true
				}
			}
			n.reg.setRoutes(up, time.Now())
		}
		select {
		case <-n.ctx.Done():
			return
		case <-t.C:
		}
	}
}

// watchNodes mirrors rn_nodes into the registry, and the leader key too.
// The watches are nats.go ordered consumers living on one server each; when
// that server dies they need two missed 5 s heartbeats to notice, so the
// node restarts them whenever it sees a member go offline (rewatch).
//
// At start the watches are retried until ctx ends: many nodes starting at
// once (edges of a busy core) can wait past a request's timeout for their
// consumers.
func (n *Node) watchNodes(ctx context.Context) error {
	ws, err := n.openWatches()
	for wait := 250 * time.Millisecond; err != nil; wait = min(2*wait, 4*time.Second) {
		// Backing off with jitter: a herd retrying in step is what made
		// the JetStream requests time out.
		d := wait + rand.N(wait)
		n.log.Debug("watch the registry: retrying", "err", err, "in", d)
		select {
		case <-ctx.Done():
			return fmt.Errorf("watch the swarm's registry: %w", err)
		case <-time.After(d):
		}
		ws, err = n.openWatches()
	}
	n.wg.Add(1)
	go func() {
		defer n.wg.Done()
		defer func() { ws.stop() }()
		var pendingSecret jetstream.KeyValueEntry
		for {
			select {
			case <-n.ctx.Done():
				return
			case <-n.rewatch:
				nws, err := n.openWatches()
				if err != nil {
					n.log.Debug("rewatch", "err", err)
					continue
				}
				ws.stop()
				ws = nws
			case e, ok := <-ws.nodes.Updates():
				if !ok {
					n.askRewatch()
					ws.nodes = stoppedWatcher{}
					continue
				}
				n.onNodeEntry(e)
			case e, ok := <-ws.leader.Updates():
				if !ok {
					ws.leader = stoppedWatcher{}
					continue
				}
				n.onLeaseEntry(e)
			case e, ok := <-ws.users.Updates():
				if !ok {
					n.askRewatch()
					ws.users = stoppedWatcher{}
					continue
				}
				n.onUserEntry(e)
				if pendingSecret != nil && n.onSecretEntry(pendingSecret) {
					pendingSecret = nil
				}
			case e, ok := <-ws.revoked.Updates():
				if !ok {
					n.askRewatch()
					ws.revoked = stoppedWatcher{}
					continue
				}
				n.onRevokedEntry(e)
				if pendingSecret != nil && n.onSecretEntry(pendingSecret) {
					pendingSecret = nil
				}
			case e, ok := <-ws.secret.Updates():
				if !ok {
					n.askRewatch()
					ws.secret = stoppedWatcher{}
					continue
				}
				pendingSecret = nil
				if !n.onSecretEntry(e) {
					pendingSecret = e // once rn_users has named its signer
				}
			}
		}
	}()
	return nil
}

func (n *Node) askRewatch() {
	select {
	case n.rewatch <- struct{}{}:
	default:
	}
}

// watches are the KV watches the node keeps open.
type watches struct{ nodes, leader, users, revoked, secret jetstream.KeyWatcher }

func (ws watches) stop() {
	for _, w := range []jetstream.KeyWatcher{ws.nodes, ws.leader, ws.users, ws.revoked, ws.secret} {
		if w != nil {
			_ = w.Stop()
		}
	}
}

func (n *Node) openWatches() (watches, error) {
	var ws watches
	var err error
	if ws.nodes, err = n.kvs.nodes.WatchAll(n.ctx); err != nil {
		return ws, err
	}
	if ws.leader, err = n.kvs.leader.Watch(n.ctx, leaseKey); err != nil {
		ws.stop()
		return watches{}, err
	}
	if ws.users, err = n.kvs.users.WatchAll(n.ctx); err != nil {
		ws.stop()
		return watches{}, err
	}
	if ws.revoked, err = n.kvs.revoked.WatchAll(n.ctx); err != nil {
		ws.stop()
		return watches{}, err
	}
	if ws.secret, err = n.kvs.secrets.Watch(n.ctx, n.pub); err != nil {
		ws.stop()
		return watches{}, err
	}
	return ws, nil
}

// stoppedWatcher stands in for a watch whose channel closed until rewatch.
type stoppedWatcher struct{}

func (stoppedWatcher) Updates() <-chan jetstream.KeyValueEntry { return nil }
func (stoppedWatcher) Stop() error                             { return nil }

func (n *Node) onNodeEntry(e jetstream.KeyValueEntry) {
	if e == nil {
		return
	}
	if self := n.selfChev(); !self.IsZero() && e.Key() == self.String() && !n.stopped.Load() && !n.ids.isRevoked(n.pub) {
		// This node's own entry: only this node writes it (it signs only
		// its own key) and only this node deletes it (deregister, while
		// stopping), or an admin after revoking it. Anything else is
		// someone else's write. Taking it in
		// would hand this node's chevron, and its publish rights, to
		// another key; the node keeps its claim and writes it back.
		if e.Operation() != jetstream.KeyValuePut {
			n.badRecord(BucketNodes, e.Key(), fmt.Errorf("this node's registration %s deleted by another writer: written back", e.Key()))
			n.reclaim.CompareAndSwap(0, time.Now().UnixNano())
			return
		}
		if info, err := mesh.OpenNodeRecord(e.Key(), e.Value()); err != nil || info.Pubkey != n.pub {
			if err == nil {
				err = fmt.Errorf("this node's registration %s replaced by key %s: ignored and written back", e.Key(), info.Pubkey)
			}
			n.badRecord(BucketNodes, e.Key(), err)
			n.reclaim.CompareAndSwap(0, time.Now().UnixNano())
			return
		}
	}
	if e.Operation() != jetstream.KeyValuePut {
		if live, ok := n.reg.liveKey(e.Key(), time.Now()); ok && !n.ids.isRevoked(live) {
			// A node that leaves says so first (offline at once); an admin
			// revokes before removing. A live, unrevoked node's entry
			// deleted is someone else's write: the node stays.
			n.badRecord(BucketNodes, e.Key(), fmt.Errorf("registration of live node %s deleted: ignored while it is live and not revoked", e.Key()))
			n.deferDelete(e.Key(), live)
			return
		}
		n.reg.setInfo(e.Key(), nil)
		n.ids.setNode(e.Key(), nil)
		n.authChanged()
		return
	}
	if _, err := subjects.Parse(e.Key()); err != nil {
		n.badRecord(BucketNodes, e.Key(), err)
		return
	}
	info, err := mesh.OpenNodeRecord(e.Key(), e.Value())
	if err != nil {
		n.badRecord(BucketNodes, e.Key(), err)
		return
	}
	if live, ok := n.reg.liveKey(e.Key(), time.Now()); ok && live != info.Pubkey {
		// A live node's chevron taken over by another key: only a
		// writer other than the node can have done it (the node signs
		// only its own key). The live owner keeps its chevron.
		n.badRecord(BucketNodes, e.Key(), fmt.Errorf("registration of live node %s replaced by key %s: ignored", e.Key(), info.Pubkey))
		return
	}
	n.reg.setInfo(e.Key(), &info)
	n.ids.setNode(e.Key(), &info)
	n.authChanged()
}

func (n *Node) onLeaseEntry(e jetstream.KeyValueEntry) {
	if e == nil {
		return
	}
	var l wire.Lease
	if e.Operation() != jetstream.KeyValuePut || wire.Decode(e.Value(), &l) != nil {
		n.reg.observeLease(wire.Lease{}, false)
		n.ls.kick()
		return
	}
	if l.Token == 0 {
		l.Token = e.Revision()
	}
	n.reg.observeLease(l, true)
}

func (n *Node) heartbeat() { n.beat(n.chev, n.name, n.IsLeader()) }

func (n *Node) beat(chev subjects.Chevron, name string, leader bool) {
	hb := wire.Heartbeat{
		Chevron: chev.String(), Name: name, Pubkey: n.pub, Server: n.ServerName(),
		Seq: n.hbSeq.Add(1), Sent: time.Now().UTC(), Started: n.started,
		Load: loadPerCPU(), Leader: leader, Version: Version, Role: n.Role(),
	}
	if n.edge {
		hb.EveryMs = n.opts.Timing.EdgeHeartbeat.Milliseconds()
	}
	hb.CPU, hb.Mem, hb.Disk = n.gauges()
	hb.SecretEpoch, hb.UsersRev = n.secretEpoch.Load(), n.usersRev.Load()
	// A loaded host makes this node see its peers late: its Sentinel
	// discounts its own timing measurements meanwhile. The load average
	// counts too: other processes' runnable threads delay ours.
	n.sent.Self(min(max(hb.CPU, hb.Load), 1), time.Now())
	n.reg.setSelf(hb)
	data, err := json.Marshal(hb)
	if err != nil {
		return
	}
	subj := subjects.Event(chev, subjects.EvtHeartbeat)
	if n.edge {
		subj = leafnode.EdgeBeat(n.ServerName())
	}
	if err := n.publish(subj, data); err != nil {
		n.log.Debug("heartbeat", "err", err)
	}
}

// beatBeforeClaim heartbeats a chevron the node already knows (given or
// saved) while it waits for JetStream, until stop is closed: membership does
// not need JetStream, and a node auto-numbering at the same time skips a
// number it hears alive (a single node restarted to grow a swarm keeps its 1).
func (n *Node) beatBeforeClaim(chev subjects.Chevron, name string, stop <-chan struct{}) {
	defer n.wg.Done()
	t := time.NewTicker(n.opts.Timing.Heartbeat)
	defer t.Stop()
	for {
		n.beat(chev, name, false)
		select {
		case <-stop:
			return
		case <-n.ctx.Done():
			return
		case <-t.C:
		}
	}
}

func (n *Node) beatLoop() {
	defer n.wg.Done()
	every := n.opts.Timing.Heartbeat
	if n.edge {
		every = n.opts.Timing.EdgeHeartbeat
	}
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-n.ctx.Done():
			return
		case <-t.C:
			if n.opts.BeatDelay != nil {
				if d := n.opts.BeatDelay(); d > 0 {
					select {
					case <-n.ctx.Done():
						return
					case <-time.After(min(d, n.opts.Timing.Heartbeat)):
					}
				}
			}
			n.heartbeat()
		}
	}
}

// monitorLoop notices members going offline (the lowest live chevron reports
// crashes as leave events), and lets the leader keep the buckets' replicas and the
// lease stream's leadership where they belong.
func (n *Node) monitorLoop() {
	defer n.wg.Done()
	t := time.NewTicker(250 * time.Millisecond)
	defer t.Stop()
	prev := map[string]string{}
	lost := map[string]time.Time{} // crashed members not yet announced by us
	var lastSlow time.Time
	for {
		select {
		case <-n.ctx.Done():
			return
		case <-t.C:
		}
		// A second's grace: an admin's revocation of this node, written
		// before the deletion of its entry, may arrive on its own watch a
		// little after it.
		if at := n.reclaim.Load(); at != 0 && time.Since(time.Unix(0, at)) >= time.Second && n.reclaim.CompareAndSwap(at, 0) {
			n.writeBackClaim()
		}
		n.evictRevoked()
		now := time.Now()
		cur := n.reg.states(now, n.chev.String())
		leader := n.IsLeader()
		for chev, st := range cur {
			was := prev[chev]
			// states lists only members heard since this node started, so a
			// first sight as offline ("" before) is a loss too: the crash
			// fell between two ticks of this loop.
			if st == wire.StateOffline && was != wire.StateOffline {
				n.log.Info("member offline", "chevron", chev)
				select { // its server may have carried our watches
				case n.rewatch <- struct{}{}:
				default:
				}
				if !n.reg.leftCleanly(chev) {
					lost[chev] = now
				}
			}
			if st == wire.StateAlive && (was == "" || was == wire.StateOffline) {
				n.log.Info("member alive", "chevron", chev)
			}
		}
		prev = cur
		// A loss stays pending until whoever is the reporter now announces
		// it: the reporter at the moment of the crash may be leaving too.
		for chev, at := range lost {
			switch {
			case cur[chev] != wire.StateOffline || now.Sub(at) > time.Minute:
				delete(lost, chev)
			case n.reg.reporter(now, n.chev.String()):
				n.publishEvent(wire.Event{Kind: subjects.EvtLeave, Chevron: chev, By: n.chev.String(), Reason: "lost"})
				delete(lost, chev)
			}
		}
		if now.Sub(lastSlow) < 2*time.Second {
			continue
		}
		lastSlow = now
		n.reg.forget(now, time.Hour)
		n.publishTierView()
		if leader {
			n.warnCoreBelow(now)
		}
		n.checkReplication(leader)
		n.checkJetStream(now)
		if leader {
			n.ls.moveStreamLeader(n.ctx)
		}
	}
}

// checkReplication reads every bucket's replication and, on the leader,
// raises the buckets behind, off this loop: JetStream requests can take
// seconds while a stream elects a leader, and this loop reports crashes.
// One check runs at a time.
func (n *Node) checkReplication(leader bool) {
	rep := n.kvs.rep
	if rep == nil || !rep.busy.CompareAndSwap(false, true) {
		return
	}
	n.wg.Add(1)
	go func() {
		defer n.wg.Done()
		defer rep.busy.Store(false)
		n.refreshReplicas()
		if leader {
			n.scaleBuckets(n.ctx)
		}
	}()
}

// loadPerCPU is the 1-minute load average divided by the CPU count, 0 when
// the platform does not report one.
func loadPerCPU() float64 {
	avg, err := load.Avg()
	if err != nil {
		return 0
	}
	return avg.Load1 / float64(runtime.NumCPU())
}

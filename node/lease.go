package node

import (
	"context"
	"encoding/json"
	"errors"
	"sync"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/robonet-mesh/robonet/subjects"
	"github.com/robonet-mesh/robonet/wire"
)

// lease holds or follows the swarm-leader lease in rn_leader.
//
// The holder created the key with a TTL; its revision is the fencing token.
// It renews by publishing with the expected last subject sequence and the TTL,
// so a renewal can never resurrect a lease someone else took. Leadership is
// judged locally from the send time of the last acknowledged write: a holder
// acts as leader only while that is younger than LeaseGive (< TTL), so it
// stops before the server can expire the key and hand it to another node.
type lease struct {
	n    *Node
	kick func()
	wake chan struct{}

	mu      sync.Mutex // guards the fields below
	holding bool
	token   uint64    // revision of the creating write
	rev     uint64    // revision of the last acknowledged write
	acked   time.Time // send time of the last acknowledged write
}

func newLease(n *Node) *lease {
	l := &lease{n: n, wake: make(chan struct{}, 1)}
	l.kick = func() {
		select {
		case l.wake <- struct{}{}:
		default:
		}
	}
	return l
}

func (l *lease) isLeader(now time.Time) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.holding && now.Sub(l.acked) < l.n.opts.Timing.LeaseGive
}

func (l *lease) tokenIfLeader(now time.Time) uint64 {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.holding && now.Sub(l.acked) < l.n.opts.Timing.LeaseGive {
		return l.token
	}
	return 0
}

func (l *lease) run(ctx context.Context) {
	defer l.n.wg.Done()
	t := time.NewTicker(l.n.opts.Timing.LeaseRenew)
	defer t.Stop()
	for {
		l.step(ctx)
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		case <-l.wake:
		}
	}
}

func (l *lease) value(token uint64) []byte {
	n := l.n
	data, _ := json.Marshal(wire.Lease{Chevron: n.chev.String(), Name: n.name, Pubkey: n.pub,
		Server: n.ServerName(), Token: token, Renewed: time.Now().UTC()})
	return data
}

func (l *lease) step(ctx context.Context) {
	timing := l.n.opts.Timing
	l.mu.Lock()
	holding, token, rev, acked := l.holding, l.token, l.rev, l.acked
	l.mu.Unlock()
	cctx, cancel := context.WithTimeout(ctx, timing.LeaseGive)
	defer cancel()
	sent := time.Now()
	if holding {
		ack, err := l.n.js.Publish(cctx, "$KV."+BucketLeader+"."+leaseKey, l.value(token),
			jetstream.WithExpectLastSequencePerSubject(rev), jetstream.WithMsgTTL(timing.LeaseTTL))
		switch {
		case err == nil:
			l.mu.Lock()
			l.rev, l.acked = ack.Sequence, sent
			l.mu.Unlock()
		case isWrongSeq(err):
			// A renewal whose ack was lost (timeout) still moved the
			// revision on: if the stored lease is ours with our token, adopt it.
			// (The renewal's context may be spent: check with a fresh one.)
			gctx, gcancel := context.WithTimeout(ctx, timing.LeaseRenew)
			r, ok := l.ours(gctx, token)
			gcancel()
			if ok {
				l.mu.Lock()
				if r > l.rev {
					l.rev = r
				}
				l.mu.Unlock()
				return
			}
			l.stepDown("lost: another write to the lease")
		case time.Since(acked) >= timing.LeaseGive:
			l.stepDown("could not renew: " + err.Error())
		default:
			l.n.log.Debug("lease renew failed, retrying", "err", err)
		}
		return
	}
	newRev, err := l.n.kvs.leader.Create(cctx, leaseKey, l.value(0), jetstream.KeyTTL(timing.LeaseTTL))
	if err != nil {
		if !errors.Is(err, jetstream.ErrKeyExists) && ctx.Err() == nil {
			l.n.log.Debug("lease acquire failed", "err", err)
		}
		return
	}
	l.mu.Lock()
	l.holding, l.token, l.rev, l.acked = true, newRev, newRev, sent
	l.mu.Unlock()
	l.n.reg.observeLease(wire.Lease{Chevron: l.n.chev.String(), Name: l.n.name, Pubkey: l.n.pub,
		Server: l.n.ServerName(), Token: newRev}, true)
	l.n.log.Info("swarm leader", "token", newRev)
	l.n.publishEvent(wire.Event{Kind: subjects.EvtLeader, Chevron: l.n.chev.String(), Name: l.n.name,
		Pubkey: l.n.pub, Token: newRev, Reason: "acquired"})
	l.n.wg.Add(1) // inside the lease loop, itself counted: never racing Wait
	go func() {
		defer l.n.wg.Done()
		l.moveStreamLeader(ctx)
	}()
}

// ours returns the revision of the stored lease if it is this node's with
// the given token (an unexpired write of ours), so holding can continue.
func (l *lease) ours(ctx context.Context, token uint64) (uint64, bool) {
	e, found, err := l.n.leaderRead.Last(ctx, "KV_"+BucketLeader, "$KV."+BucketLeader+"."+leaseKey)
	if err != nil || !found {
		return 0, false
	}
	var v wire.Lease
	if json.Unmarshal(e.Value, &v) != nil || v.Pubkey != l.n.pub {
		return 0, false
	}
	if v.Token == token || (v.Token == 0 && e.Revision == token) {
		return e.Revision, true
	}
	return 0, false
}

func (l *lease) stepDown(reason string) {
	l.mu.Lock()
	was, token := l.holding, l.token
	l.holding = false
	l.mu.Unlock()
	if was {
		l.n.log.Warn("stepped down as swarm leader", "token", token, "reason", reason)
		l.n.publishEvent(wire.Event{Kind: subjects.EvtLeader, Chevron: l.n.chev.String(), Name: l.n.name,
			Pubkey: l.n.pub, Token: token, Reason: reason})
	}
}

// release deletes the lease if this node still holds it, so a follower can
// take it at once instead of waiting out the TTL.
func (l *lease) release(ctx context.Context) {
	l.mu.Lock()
	holding, rev, token := l.holding, l.rev, l.token
	l.holding = false
	l.mu.Unlock()
	if !holding {
		return
	}
	if err := l.n.kvs.leader.Delete(ctx, leaseKey, jetstream.LastRevision(rev)); err != nil {
		l.n.log.Warn("release lease", "err", err)
		return
	}
	l.n.publishEvent(wire.Event{Kind: subjects.EvtLeader, Chevron: l.n.chev.String(), Name: l.n.name,
		Pubkey: l.n.pub, Token: token, Reason: "released"})
}

// moveStreamLeader asks JetStream to move the lease stream's leadership to
// another replica when this holder leads it: if the holder and the stream
// leader die together, the stream must first elect a leader (4–9 s in
// nats-server) before the TTL can even expire; apart, the lease moves in ~2 s.
func (l *lease) moveStreamLeader(ctx context.Context) {
	if !l.isLeader(time.Now()) || !l.n.Clustered() {
		return
	}
	cctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	st, err := l.n.js.Stream(cctx, "KV_"+BucketLeader)
	if err != nil {
		return
	}
	ci := st.CachedInfo().Cluster
	if ci == nil || ci.Leader != l.n.ServerName() {
		return
	}
	// Only to a replica whose node is alive in the registry: JetStream may
	// still call a node current that is leaving (lame duck) or gone, and a
	// stream led by such a node has no leader for a Raft election (4–9 s).
	alive := l.n.reg.aliveServers(time.Now())
	var to string
	for _, p := range ci.Replicas {
		if p.Current && !p.Offline && alive[p.Name] {
			to = p.Name
			break
		}
	}
	if to == "" {
		return
	}
	req, _ := json.Marshal(map[string]any{"placement": map[string]string{"preferred": to}})
	resp, err := l.n.nc.RequestWithContext(cctx, "$JS.API.STREAM.LEADER.STEPDOWN.KV_"+BucketLeader, req)
	if err != nil {
		l.n.log.Debug("move lease stream leader", "err", err)
		return
	}
	var r struct {
		Success bool `json:"success"`
	}
	_ = json.Unmarshal(resp.Data, &r)
	l.n.log.Debug("moved lease stream leader", "to", to, "ok", r.Success)
}

package node

import (
	"context"
	"encoding/json"
	"sync"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"

	"github.com/robonet-mesh/robonet/mesh"
)

// sysConnName names the node's in-process connection to the system
// account: the only way to ask JetStream's meta leader to drop a peer.
const sysConnName = "robonet-sys"

// evictor keeps JetStream's meta group to the swarm's members. A node that
// is revoked (robonet revoke, uncolonize) stays a Raft peer of the meta
// group until it is removed, and every dead peer raises the quorum the live
// ones must reach: after two such removals from a three-node swarm grown by
// one, the meta group stalls and no stream can be created or placed. So the
// swarm leader asks the meta leader to remove the server of every revoked
// key (an offline peer too: nats-server lists only online ones, so the
// request is sent for each revoked key and "not a member" ends it).
type evictor struct {
	mu    sync.Mutex // guards nc, tried and done
	nc    *nats.Conn
	tried map[string]time.Time // server name → last request
	done  map[string]bool      // server name → removed, or never a peer
}

// evictRevoked runs on every node but acts only on the swarm leader.
func (n *Node) evictRevoked() {
	if n.srv == nil || !n.Clustered() || !n.IsLeader() {
		return
	}
	for _, pub := range n.ids.revokedKeys() {
		name := mesh.ServerName(pub)
		if name == "" || name == n.so.ServerName {
			continue
		}
		n.ev.mu.Lock()
		skip := n.ev.done[name] || time.Since(n.ev.tried[name]) < 10*time.Second
		if !skip {
			if n.ev.tried == nil {
				n.ev.tried, n.ev.done = map[string]time.Time{}, map[string]bool{}
			}
			n.ev.tried[name] = time.Now()
		}
		n.ev.mu.Unlock()
		if skip {
			continue
		}
		n.wg.Add(1)
		go func() {
			defer n.wg.Done()
			if n.removePeer(name, pub, "revoked") {
				n.ev.mu.Lock()
				n.ev.done[name] = true
				n.ev.mu.Unlock()
			}
		}()
	}
}

// removePeer asks the meta leader to drop server name (of node key pub)
// from the meta group, for the reason why (logged); it reports whether the
// server is out of it now.
func (n *Node) removePeer(name, pub, why string) bool {
	n.ev.mu.Lock()
	if n.ev.nc == nil || n.ev.nc.IsClosed() {
		nc, err := nats.Connect("", nats.InProcessServer(n.srv), nats.Name(sysConnName),
			nats.Nkey(n.pub, n.kp.Sign), nats.NoCallbacksAfterClientClose())
		if err != nil {
			n.ev.mu.Unlock()
			n.log.Warn("system connection for a JetStream peer removal", "err", err)
			return false
		}
		n.ev.nc = nc
	}
	nc := n.ev.nc
	n.ev.mu.Unlock()
	req, _ := json.Marshal(server.JSApiMetaServerRemoveRequest{Server: name})
	ctx, cancel := context.WithTimeout(n.ctx, 5*time.Second)
	defer cancel()
	msg, err := nc.RequestWithContext(ctx, server.JSApiRemoveServer, req)
	if err != nil {
		n.log.Warn("JetStream peer removal", "why", why, "server", name, "key", pub, "err", err)
		return false
	}
	var resp server.JSApiMetaServerRemoveResponse
	if err := json.Unmarshal(msg.Data, &resp); err != nil {
		n.log.Warn("JetStream peer removal: bad answer", "why", why, "server", name, "err", err)
		return false
	}
	if resp.Error != nil {
		if resp.Error.ErrCode == uint16(server.JSClusterServerNotMemberErr) {
			return true
		}
		n.log.Warn("JetStream peer removal refused", "why", why, "server", name, "key", pub, "err", resp.Error.Description)
		return false
	}
	n.log.Info("server removed from JetStream's meta group", "why", why, "server", name, "key", pub)
	return true
}

func (n *Node) closeEvictor() {
	n.ev.mu.Lock()
	defer n.ev.mu.Unlock()
	if n.ev.nc != nil {
		n.ev.nc.Close()
		n.ev.nc = nil
	}
}

// sysPermissions are the system connection's: the peer-removal request
// and its reply, nothing else of the system account.
func sysPermissions() *server.Permissions {
	return &server.Permissions{
		Publish:   &server.SubjectPermission{Allow: []string{server.JSApiRemoveServer}},
		Subscribe: &server.SubjectPermission{Allow: []string{"_INBOX.>"}},
	}
}

// MetaPeers lists the server names in JetStream's meta group when this
// node's server leads it, and nil otherwise.
func (n *Node) MetaPeers() []string {
	if n.srv == nil {
		return nil
	}
	return n.srv.JetStreamClusterPeers()
}

package node

import (
	"errors"
	"fmt"
	"sort"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nkeys"

	"github.com/robonet-mesh/robonet/subjects"
	"github.com/robonet-mesh/robonet/trust"
	"github.com/robonet-mesh/robonet/wire"
)

// TrustPeer is one row of `robonet trust`: a key this node's ledger knows.
type TrustPeer struct {
	Key     string  `json:"key"`
	Chevron string  `json:"chevron,omitempty"`
	Name    string  `json:"name,omitempty"`
	Role    string  `json:"role,omitempty"` // admin, operator, observer, node; empty: unknown or revoked
	Score   float64 `json:"score"`
	Tier    int     `json:"tier"`
	trust.Peer
}

// TrustReport is a node's answer to the trust query.
type TrustReport struct {
	Chevron  string        `json:"chevron"`
	Name     string        `json:"name"`
	Peers    []TrustPeer   `json:"peers"`
	Counters TrustCounters `json:"counters"`
	Tiers    [3]float64    `json:"tiers"` // the scores at which tiers 1, 2 and 3 start
}

// TrustAction asks every node to quarantine or release a key.
type TrustAction struct {
	Key    string `json:"key"`
	Reason string `json:"reason,omitempty"`
}

// TrustActionResult is one node's answer to a TrustAction.
type TrustActionResult struct {
	Chevron string `json:"chevron"`
	Name    string `json:"name"`
	OK      bool   `json:"ok"`
	Self    bool   `json:"self,omitempty"` // the key is this node's own: nothing to do
	Error   string `json:"error,omitempty"`
}

// TokenRequest asks the connected node for a one-time join token.
type TokenRequest struct {
	TTLMs int64 `json:"ttl_ms"`
	// Pubkey, when set, binds the token to that node key (a user nkey
	// public key): only a node with that key can join with it. Refused for
	// a revoked key and for a key the swarm already knows.
	Pubkey string `json:"pubkey,omitempty"`
	// Federate asks for a federation token instead (the node must be a
	// hub: --leaf-listen): it admits one child swarm, optionally bound to
	// Prefix (zone.region.swarm).
	Federate bool   `json:"federate,omitempty"`
	Prefix   string `json:"prefix,omitempty"`
}

// TokenReply is a one-time join token, or a federation token.
type TokenReply struct {
	Token   string    `json:"token"`
	ID      string    `json:"id"`
	Expires time.Time `json:"expires"`
	BoundTo string    `json:"bound_to,omitempty"` // the node key the token is bound to
	// Federation tokens: the issuing hub swarm, the child prefix the token
	// is bound to ("" : any in the hub's scope) and the authority pins.
	Federate bool     `json:"federate,omitempty"`
	Hub      string   `json:"hub,omitempty"`
	Prefix   string   `json:"prefix,omitempty"`
	Pins     []string `json:"pins,omitempty"`
}

// MinTokenTTL is the shortest a one-time join token may live.
const MinTokenTTL = 10 * time.Second

// serveTrustQueries answers trust (this node's ledger; any known key),
// quarantine and release (every node acts: no queue group; operators and
// admins) and token (the node asked; admins only). Each query's signature
// and signer's role are checked here (admitQuery), whatever the
// connection that carried it may publish.
func (n *Node) serveTrustQueries() error {
	type handler struct {
		need string
		h    func(data []byte) (any, error)
	}
	handlers := map[string]handler{
		subjects.QueryTrust:      {anyRole, func([]byte) (any, error) { return n.TrustReport(time.Now()), nil }},
		subjects.QueryQuarantine: {wire.RoleOperator, func(d []byte) (any, error) { return n.trustAction(d, true) }},
		subjects.QueryRelease:    {wire.RoleOperator, func(d []byte) (any, error) { return n.trustAction(d, false) }},
		subjects.QueryToken:      {wire.RoleAdmin, n.issueToken},
	}
	for name, h := range handlers {
		cb := func(m *nats.Msg) {
			n.answerQuery(m, name, h.need, func(_, _ string, data []byte) (any, error) { return h.h(data) })
		}
		var err error
		if name == subjects.QueryQuarantine || name == subjects.QueryRelease {
			_, err = n.nc.Subscribe(subjects.Query(name), cb)
		} else if !n.edge {
			_, err = n.nc.QueueSubscribe(subjects.Query(name), subjects.QueryQueue, cb)
		}
		if err != nil {
			return err
		}
		if _, err := n.nc.Subscribe(subjects.QueryAt(name, n.ServerName()), cb); err != nil {
			return err
		}
	}
	return nil
}

// respond sends a signed reply.
func (n *Node) respond(m *nats.Msg, data []byte) error {
	return n.publish(m.Reply, data)
}

// TrustReport is this node's view of every key it has heard.
func (n *Node) TrustReport(now time.Time) TrustReport {
	cfg := n.ledger.Config()
	r := TrustReport{Chevron: n.chev.String(), Name: n.name, Counters: n.tc.snapshot(),
		Tiers: [3]float64{cfg.Tier1, cfg.Tier2, cfg.Tier3}}
	names := map[string]wire.NodeInfo{}
	n.ids.mu.Lock()
	for _, in := range n.ids.infos {
		names[in.Pubkey] = in
	}
	users := map[string]string{}
	for _, u := range n.ids.users {
		users[u.Nkey] = u.Name
	}
	n.ids.mu.Unlock()
	for _, p := range n.ledger.Peers() {
		tp := TrustPeer{Key: p.Key, Peer: p, Score: p.Score(now)}
		tp.Tier = n.ledger.Tier(tp.Score)
		tp.Role, _ = n.roleOf(p.Key)
		if in, ok := names[p.Key]; ok {
			tp.Chevron, tp.Name = in.Chevron, in.Name
		} else if u, ok := users[p.Key]; ok {
			tp.Name = u
		} else if p.Key == n.opPub {
			tp.Name = "operator@" + n.name
		}
		if tp.Role != wire.RoleNode && tp.Role != "" {
			tp.Tier = n.roleTier(tp.Role, p.Key, now)
		}
		r.Peers = append(r.Peers, tp)
	}
	sort.Slice(r.Peers, func(i, j int) bool {
		a, b := r.Peers[i], r.Peers[j]
		if a.Chevron != b.Chevron {
			return subjects.CompareText(a.Chevron, b.Chevron) < 0
		}
		return a.Key < b.Key
	})
	return r
}

func (n *Node) trustAction(data []byte, quarantine bool) (TrustActionResult, error) {
	res := TrustActionResult{Chevron: n.chev.String(), Name: n.name}
	var a TrustAction
	if err := wire.Decode(data, &a); err != nil {
		return res, err
	}
	if !nkeys.IsValidPublicUserKey(a.Key) && !nkeys.IsValidPublicServerKey(a.Key) {
		return res, fmt.Errorf("key %q is not a public user or server key", clip(a.Key, 64))
	}
	if len(a.Reason) > 256 {
		return res, fmt.Errorf("reason of %d bytes (limit 256)", len(a.Reason))
	}
	if a.Key == n.pub {
		res.OK, res.Self = true, true // a node does not judge its own key
		return res, nil
	}
	now := time.Now()
	var err error
	if quarantine {
		err = n.ledger.Quarantine(a.Key, "operator: "+a.Reason, now)
	} else {
		unblocked := n.sentinelUnblock(a.Key)
		n.sentinelForget(a.Key)
		err = n.ledger.Release(a.Key, now)
		if unblocked && errors.Is(err, trust.ErrUnknownPeer) {
			err = nil
		}
	}
	if err != nil {
		res.Error = err.Error()
		return res, nil
	}
	res.OK = true
	verb := "released"
	if quarantine {
		verb = "quarantined"
		n.publishEvent(wire.Event{Kind: subjects.EvtTrust, Pubkey: a.Key, By: n.chev.String(), Reason: "quarantined by an operator: " + a.Reason})
	}
	n.log.Warn("peer "+verb+" by an operator", "key", a.Key, "reason", a.Reason)
	return res, nil
}

func (n *Node) issueToken(data []byte) (any, error) {
	var req TokenRequest
	if err := wire.Decode(data, &req); err != nil {
		return nil, err
	}
	ttl := time.Duration(req.TTLMs) * time.Millisecond
	if ttl < MinTokenTTL || ttl > MaxTokenTTL {
		return nil, fmt.Errorf("ttl %v: want %v to %v", ttl, MinTokenTTL, MaxTokenTTL)
	}
	if req.Federate {
		return n.issueFedToken(req, ttl, time.Now())
	}
	if req.Prefix != "" {
		return nil, fmt.Errorf("prefix %q: only a federation token is bound to a swarm prefix", clip(req.Prefix, 32))
	}
	secret := n.routes.currentSecret()
	if secret == nil {
		return nil, fmt.Errorf("node %s holds no swarm secret (a single node, or admitted by a token): ask a node started with the secret", n.name)
	}
	if err := n.checkTokenKey(req.Pubkey); err != nil {
		return nil, err
	}
	var tok, id string
	var err error
	if req.Pubkey == "" {
		tok, id, err = trust.IssueToken(secret, ttl, time.Now())
	} else {
		tok, id, err = trust.IssueBoundToken(secret, ttl, time.Now(), req.Pubkey)
	}
	if err != nil {
		return nil, err
	}
	c, err := trust.ParseToken(tok, secret, time.Now())
	if err != nil {
		return nil, err
	}
	n.log.Info("one-time join token issued", "id", id, "expires", c.Expires, "bound_to", c.BoundTo)
	return TokenReply{Token: tok, ID: id, Expires: c.Expires.UTC(), BoundTo: c.BoundTo}, nil
}

// checkTokenKey refuses to bind a token to pub unless it is a node key
// (a user nkey public key) that is neither revoked nor known to the swarm:
// a member comes back by its key, and a token for a user's key would give
// that user a route. "" (an unbound token) passes.
func (n *Node) checkTokenKey(pub string) error {
	switch {
	case pub == "":
		return nil
	case !nkeys.IsValidPublicUserKey(pub):
		return fmt.Errorf("pubkey %q: not a node key (a user nkey public key, U…)", clip(pub, 64))
	case n.ids.isRevoked(pub):
		return fmt.Errorf("pubkey %s is revoked", pub)
	}
	if chev, ok := n.ids.nodeChevron(pub); ok {
		return fmt.Errorf("pubkey %s is already the key of member %s: a member needs no token", pub, chev)
	}
	if role, ok := n.roleOf(pub); ok {
		return fmt.Errorf("pubkey %s is already known to the swarm (role %s): a node needs a key of its own", pub, role)
	}
	return nil
}

package node

import (
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/robonet-mesh/robonet/mesh"
	"github.com/robonet-mesh/robonet/subjects"
	"github.com/robonet-mesh/robonet/trust"
	"github.com/robonet-mesh/robonet/wire"
)

// Who may ask a query: admitQuery's need. Any role this node knows
// (users, nodes, its local operator) may read.
const (
	anyRole = ""
)

// maxQuery is the largest query payload a node reads.
const maxQuery = 64 << 10

// serveQueries answers rn.sys.nodes and rn.sys.status: in the queue group
// "rn" (any node will do; nats-server does not prefer a local queue member
// for a client's message, so this is not "the nearest") and on the subjects
// addressed to this node's server, which clients use for "the node I am
// connected to". Queries are signed and answered signed (answerQuery).
func (n *Node) serveQueries() error {
	handlers := map[string]func() any{
		subjects.QueryNodes:  func() any { return n.Members() },
		subjects.QueryStatus: func() any { return n.Status() },
	}
	for name, h := range handlers {
		cb := func(m *nats.Msg) {
			n.answerQuery(m, name, anyRole, func(string, string, []byte) (any, error) { return h(), nil })
		}
		if !n.edge { // edges answer only for themselves (QueryAt): the core serves the swarm
			if _, err := n.nc.QueueSubscribe(subjects.Query(name), subjects.QueryQueue, cb); err != nil {
				return err
			}
		}
		if _, err := n.nc.Subscribe(subjects.QueryAt(name, n.ServerName()), cb); err != nil {
			return err
		}
	}
	return nil
}

// answerQuery admits query m (admitQuery with need), runs h with the
// verified signer, its role and the payload, and answers signed: h's value
// as the reply's data, its error as bad_request; a refusal as the signed
// denied error. A replay gets no answer.
func (n *Node) answerQuery(m *nats.Msg, name, need string, h func(pub, role string, data []byte) (any, error)) {
	if m.Reply == "" {
		return
	}
	var reply wire.Reply
	if len(m.Data) > maxQuery {
		reply.Error = &wire.Error{Code: wire.CodeBadRequest, Msg: fmt.Sprintf("%s query of %d bytes (limit 64 KiB)", name, len(m.Data))}
	} else if pub, role, werr := n.admitQuery(m, need); werr != nil {
		reply.Error = werr
	} else if pub == "" {
		return // a replay: dropped and counted
	} else if v, err := h(pub, role, m.Data); err != nil {
		reply.Error = &wire.Error{Code: wire.CodeBadRequest, Msg: err.Error()}
	} else if reply.Data, err = json.Marshal(v); err != nil {
		reply.Error = &wire.Error{Code: wire.CodeInternal, Msg: err.Error()}
	}
	out, _ := json.Marshal(reply)
	_ = n.respond(m, out)
}

// admitQuery checks a query's HCTH signature and chain through this node's
// ledger, as commands are checked (hostGuard.Admit), and the verified
// signer's role against need: anyRole (any key this node knows),
// wire.RoleOperator (an operator or an admin) or wire.RoleAdmin. It
// returns the signer and its role, or the error to answer with (code
// denied); an unsigned, malformed, forged or unknown query is denied. A
// replayed query returns an empty pub and a nil error: drop it without an
// answer, as commands do.
//
// Handlers of privileged queries (token, rotate, quarantine, release) call
// it with the role they need, and act for the signer it returns, never for
// the connection that carried the message: a node's own operator key is an
// admin on that node only, and its connection there may publish anything.
func (n *Node) admitQuery(m *nats.Msg, need string) (pub, role string, werr *wire.Error) {
	deny := func(format string, a ...any) (string, string, *wire.Error) {
		n.tc.denied.Add(1)
		return "", "", &wire.Error{Code: wire.CodeDenied, Msg: fmt.Sprintf(format, a...)}
	}
	h, err := mesh.ParseSigned(m)
	if errors.Is(err, mesh.ErrUnsigned) {
		n.tc.unsigned.Add(1)
		return deny("unsigned query on %s: this swarm runs HCTH; ask with robonet, or sign it (Rn-From, Rn-Seq, Rn-Prev, Rn-Sig)", clip(m.Subject, 128))
	}
	if err != nil {
		n.tc.badHeaders.Add(1)
		return deny("query on %s: %v", clip(m.Subject, 128), err)
	}
	who, reason, ok := n.senderOf(m, h.From)
	if !ok {
		n.tc.unknownKey.Add(1)
		return deny("%s", reason)
	}
	role = who.role
	drop, err := n.observe(h, m.Subject, m.Data, time.Now())
	if drop {
		return "", "", nil
	}
	if errors.Is(err, trust.ErrQuarantined) && need == anyRole && n.hbVerify.Verify(h, m.Subject, m.Data) == nil {
		// A quarantined key is refused commands and privileged queries,
		// not reads: it may still see the registry (as it sees rn.> anyway),
		// so its commands reach the nodes and are refused there, visibly.
		err = nil
	}
	if err != nil {
		return deny("query from %s: %v", h.From, err)
	}
	if !roleMeets(role, need) {
		return deny("%s needs %s; %s is %s", queryName(m.Subject), needText(need), h.From, role)
	}
	return h.From, role, nil
}

// roleMeets reports whether role may do what need asks.
func roleMeets(role, need string) bool {
	switch need {
	case anyRole:
		return role != ""
	case wire.RoleOperator:
		return role == wire.RoleOperator || role == wire.RoleAdmin
	case wire.RoleAdmin:
		return role == wire.RoleAdmin
	}
	return false
}

func needText(need string) string {
	switch need {
	case wire.RoleOperator:
		return "an operator or an admin"
	case wire.RoleAdmin:
		return "an admin"
	}
	return "a known key"
}

// queryName is the query a subject rn.sys.<name>[.<server>] asks.
func queryName(subj string) string {
	const pre = subjects.Root + ".sys."
	if len(subj) <= len(pre) || subj[:len(pre)] != pre {
		return clip(subj, 64)
	}
	rest := subj[len(pre):]
	for i := 0; i < len(rest); i++ {
		if rest[i] == '.' {
			return "the " + rest[:i] + " query"
		}
	}
	return "the " + rest + " query"
}

// Authorize checks a signed request a feature serves on this node (a
// gateway login, a proxy tunnel, a media session) as queries are checked:
// its HCTH signature and chain through this node's ledger, and the
// verified signer's role against need ("" for any key this node admits,
// wire.RoleOperator, wire.RoleAdmin). It returns the signer and its role,
// or the error to answer with. An empty pub with a nil error is a replay:
// drop it without an answer. A feature acts for the signer it returns,
// never for the connection that carried the message.
func (n *Node) Authorize(m *nats.Msg, need string) (pub, role string, werr *wire.Error) {
	return n.admitQuery(m, need)
}

// Tier is the tier a signer with role (as Authorize returned it) may act
// at on this node: users by role, nodes by what their chain has earned in
// this node's ledger.
func (n *Node) Tier(role, pub string) int { return n.roleTier(role, pub, time.Now()) }

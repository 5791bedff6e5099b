package node

import (
	"fmt"

	"github.com/nats-io/nats.go"

	"github.com/robonet-mesh/robonet/subjects"
	"github.com/robonet-mesh/robonet/trust"
	"github.com/robonet-mesh/robonet/wire"
)

// Federated commands (issue 11) reach a node through its swarm's
// ambassador: the requester signed the command for rn.fed.<prefix>.cmd.<verb>,
// and the ambassador, a node of this swarm, forwarded it unchanged on an
// in-swarm command subject with Rn-Fed-Subject (what was signed) and
// Rn-Fed-Via (its own signature on the forward). From there the command is
// judged like any other (signature, chain and replay through the ledger,
// role, tier, approvals), with the signature checked over the fed subject.

// signedSubject returns the subject m's HCTH signature must cover: m's own,
// or, for a forwarded federated command, the fed subject after
// admitForwarded accepted the forward.
func (n *Node) signedSubject(m *nats.Msg) (string, *wire.Error) {
	fs := m.Header.Get(wire.HdrFedSubject)
	if fs == "" {
		return m.Subject, nil
	}
	if err := n.admitForwarded(m, fs); err != nil {
		return "", err
	}
	return fs, nil
}

// admitForwarded checks a forward of federated command fedSubject: that it
// is a fed command subject, that its prefix covers this node's chevron, that
// its verb is the in-swarm subject's (a forward cannot turn a ping into an
// exec), and that a node of this swarm forwarded it onto this very subject
// (Rn-Fed-Via). It does not check the requester: Admit does that next,
// over fedSubject.
func (n *Node) admitForwarded(m *nats.Msg, fedSubject string) *wire.Error {
	denied := func(format string, a ...any) *wire.Error {
		return &wire.Error{Code: wire.CodeDenied, Msg: fmt.Sprintf(format, a...)}
	}
	prefix, verb, err := subjects.ParseFedCmd(fedSubject)
	if err != nil {
		return &wire.Error{Code: wire.CodeBadRequest, Msg: fmt.Sprintf("%s: %v", wire.HdrFedSubject, err)}
	}
	if in := lastToken(m.Subject); in != verb {
		return denied("federated command signed for verb %q arrived as %q on %s", verb, clip(in, 64), clip(m.Subject, 128))
	}
	self := n.selfChev()
	if self.IsZero() || !self.HasPrefix(prefix) {
		return denied("federated command signed for %s, which does not cover node %s", clip(fedSubject, 128), self)
	}
	via := m.Header.Get(wire.HdrFedVia)
	if via == "" {
		return denied("federated command without %s: only an ambassador of this swarm forwards them", wire.HdrFedVia)
	}
	vm, err := wire.ParseFedVia(via)
	if err != nil {
		return &wire.Error{Code: wire.CodeBadRequest, Msg: err.Error()}
	}
	vh, err := trust.ParseHeaders(func(k string) string { return vm[k] })
	if err != nil {
		return &wire.Error{Code: wire.CodeBadRequest, Msg: fmt.Sprintf("%s: %v", wire.HdrFedVia, err)}
	}
	if vh.From != n.pub {
		if _, member := n.ids.nodeChevron(vh.From); !member || n.ids.isRevoked(vh.From) {
			return denied("federated command forwarded by %s, which is not a node of this swarm", vh.From)
		}
		if p, ok := n.ledger.Peer(vh.From); ok && p.State == trust.Quarantined {
			return denied("federated command forwarded by %s, which this node has quarantined", vh.From)
		}
	}
	if err := n.hbVerify.Verify(vh, m.Subject, wire.FedViaPayload(fedSubject, m.Header.Get(wire.HdrSig))); err != nil {
		return denied("federated command: the forwarder's signature (%s) does not cover %s: %v", wire.HdrFedVia, clip(m.Subject, 128), err)
	}
	return nil
}

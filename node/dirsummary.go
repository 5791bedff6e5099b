package node

import (
	"github.com/nats-io/nats.go"

	"github.com/robonet-mesh/robonet/mesh"
	"github.com/robonet-mesh/robonet/subjects"
)

// observeOwnSummaries takes the swarm leader's directory summaries
// (rn.dir.<swarm>.summary, issue 11) into the ledger. The federated
// directory beside the leader signs them with the leader's one node chain
// once a second; a member that did not see them would count a chain gap
// before nearly every heartbeat of the leader and lower its score for it
// (measured with two nodes: 10 gaps in 14 of the leader's messages over
// 10 s, a long-run ceiling of about 0.83, under tier 3). Only a node with a
// full federated chevron has a swarm prefix to listen on.
func (n *Node) observeOwnSummaries() error {
	sw, ok := subjects.SwarmOf(n.chev)
	if !ok {
		return nil
	}
	subj, err := subjects.DirSummary(sw)
	if err != nil {
		return err
	}
	_, err = n.nc.Subscribe(subj, n.onOwnSummary)
	return err
}

// onOwnSummary observes a summary whose signature verifies and whose
// signer is a node of this swarm. Anyone allowed to publish on rn.dir can
// put a leader's key on a forgery, so a bad signature here is not proof
// against that key (unlike under the node's own chevron): it is dropped,
// and the directory counts it.
func (n *Node) onOwnSummary(m *nats.Msg) {
	h, err := mesh.ParseSigned(m)
	if err != nil || h.From == n.pub || n.hbVerify.Verify(h, m.Subject, m.Data) != nil {
		return
	}
	chev, ok := n.ids.nodeChevron(h.From)
	own, _ := subjects.SwarmOf(n.chev)
	if sw, in := subjects.SwarmOf(chev); !ok || !in || sw != own {
		return
	}
	n.verifyNodeMsg(m, chev)
}

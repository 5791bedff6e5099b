package node

import (
	"encoding/json"

	"github.com/nats-io/nats.go"

	"github.com/robonet-mesh/robonet/subjects"
	"github.com/robonet-mesh/robonet/wire"
)

// serveQueries answers rn.sys.nodes and rn.sys.status: in the queue group
// "rn" (any node will do; nats-server does not prefer a local queue member
// for a client's message, so this is not "the nearest") and on the subjects
// addressed to this node's server, which clients use for "the node I am
// connected to".
func (n *Node) serveQueries() error {
	handlers := map[string]func() any{
		subjects.QueryNodes:  func() any { return n.Members() },
		subjects.QueryStatus: func() any { return n.Status() },
	}
	for name, h := range handlers {
		cb := func(m *nats.Msg) {
			if m.Reply == "" {
				return
			}
			var reply wire.Reply
			data, err := json.Marshal(h())
			if err != nil {
				reply.Error = &wire.Error{Code: wire.CodeInternal, Msg: err.Error()}
			} else {
				reply.Data = data
			}
			out, _ := json.Marshal(reply)
			_ = m.Respond(out)
		}
		if _, err := n.nc.QueueSubscribe(subjects.Query(name), subjects.QueryQueue, cb); err != nil {
			return err
		}
		if _, err := n.nc.Subscribe(subjects.QueryAt(name, n.ServerName()), cb); err != nil {
			return err
		}
	}
	return nil
}

package node

import (
	"fmt"
	"strings"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"

	"github.com/robonet-mesh/robonet/mesh"
	"github.com/robonet-mesh/robonet/subjects"
)

// featureConnPrefix starts the connection name of every in-process
// connection a layer-4 feature (ambassador, directory, gateway) opens on its
// node with FeatureConn.
const featureConnPrefix = "robonet-feature-"

// FeatureConn opens an in-process connection to the node's server for a
// feature that runs beside the node (DESIGN.md: cmd/robonet composes
// features onto the running node; node never imports them). It
// authenticates with the node's key and gets featurePermissions; only an
// in-process (net.Pipe) connection with the node's own key gets them. name
// is a token (letters, digits, '-', '_'), e.g. "ambassador". Messages the
// feature signs must be signed with Signer, never with a second chain. The
// caller closes the connection.
func (n *Node) FeatureConn(name string, opts ...nats.Option) (*nats.Conn, error) {
	if n.srv == nil {
		return nil, fmt.Errorf("feature %q: the node is not started", name)
	}
	if err := subjects.ValidToken(name); err != nil || strings.ContainsAny(name, ".") {
		return nil, fmt.Errorf("feature connection name %q: want a single token", name)
	}
	base := []nats.Option{
		nats.InProcessServer(n.srv), nats.Name(featureConnPrefix + name),
		nats.CustomInboxPrefix(subjects.Inbox(n.pub) + "." + name),
		nats.Nkey(n.pub, n.kp.Sign), nats.MaxReconnects(-1), nats.NoCallbacksAfterClientClose(),
	}
	return nats.Connect("", append(base, opts...)...)
}

// featurePermissions are a feature connection's: it speaks for the node
// inside the robonet namespace (commands it forwards into the swarm,
// federated subjects, the directory, events), streams replies to any
// requester's inbox (an ambassador's results), and reads JetStream here and
// in other domains; it subscribes to rn.> and the node's own inbox.
func (n *Node) featurePermissions() *server.Permissions {
	return &server.Permissions{
		Publish: &server.SubjectPermission{Allow: []string{
			subjects.Root + ".>", subjects.InboxRoot + ".>",
			"$JS.API.>", "$JS.*.API.>", "$JS.ACK.>", "$JS.FC.>", "$KV.>",
		}},
		Subscribe: &server.SubjectPermission{Allow: []string{subjects.Root + ".>", subjects.Inbox(n.pub) + ".>"}},
	}
}

// Signer is the node's HCTH signer. Features that sign as the node use it
// (one key, one chain: a second chain file for the same key would read as
// a clone to every peer).
func (n *Node) Signer() *mesh.Signer { return n.signer }

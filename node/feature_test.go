package node_test

import (
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/robonet-mesh/robonet/internal/testmesh"
)

// A feature connection speaks for the node in process: it may publish on
// federated subjects and to any requester's inbox, and only the node's own
// key in process gets it.
func TestFeatureConn(t *testing.T) {
	s := testmesh.Start(t, 1)
	n := s.Node(0)
	fc, err := n.FeatureConn("ambassador")
	if err != nil {
		t.Fatal(err)
	}
	defer fc.Close()
	obs := s.Client(0).Conn()
	sub, err := obs.SubscribeSync("rn.fed.>")
	if err != nil {
		t.Fatal(err)
	}
	if err := obs.Flush(); err != nil {
		t.Fatal(err)
	}
	if err := fc.Publish("rn.fed.3.12.cmd.ping", []byte("x")); err != nil {
		t.Fatal(err)
	}
	if _, err := sub.NextMsg(5 * time.Second); err != nil {
		t.Fatalf("a feature's publish on rn.fed.> did not arrive: %v", err)
	}
	if _, err := n.FeatureConn("bad.name"); err == nil {
		t.Fatal("a dotted feature name was accepted")
	}
	// The feature name over the network with another key is refused.
	if nc, err := nats.Connect(n.ClientURL(), nats.Name("robonet-feature-x"), nats.MaxReconnects(0)); err == nil {
		nc.Close()
		t.Fatal("a network connection without a key got a feature connection")
	}
}

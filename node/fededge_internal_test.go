package node

import (
	"strings"
	"testing"

	"github.com/nats-io/nkeys"

	"github.com/robonet-mesh/robonet/wire"
)

// checkEdgeSwarm takes what a core says of its swarm only when it is
// consistent: the name the edge joined under, a domain that is one subject
// token, a 3-token prefix whose domain is the swarm's, and a few distinct
// user keys as pins.
func TestCheckEdgeSwarm(t *testing.T) {
	kp, _ := nkeys.CreateUser()
	pin, _ := kp.PublicKey()
	srv, _ := nkeys.CreateServer()
	srvPub, _ := srv.PublicKey()
	fed := wire.CoreStatus{Swarm: "rn-3-12-7", JSDomain: "rn-3-12-7", Prefix: "3.12.7", Pins: []string{pin}}
	es, err := checkEdgeSwarm(fed, "rn-3-12-7")
	if err != nil || es.Domain != "rn-3-12-7" || es.prefix().String() != "3.12.7" || len(es.Pins) != 1 {
		t.Fatalf("a federated swarm: %+v, %v", es, err)
	}
	if es, err := checkEdgeSwarm(wire.CoreStatus{Size: 3}, "factory"); err != nil || es.Domain != "rn-factory" || !es.prefix().IsZero() {
		t.Fatalf("a core that says nothing: %+v, %v", es, err)
	}
	bad := map[string]struct {
		st    wire.CoreStatus
		swarm string
		want  string
	}{
		"another swarm":       {fed, "rn-3-12-8", "not \"rn-3-12-8\""},
		"domain with a dot":   {wire.CoreStatus{JSDomain: "rn.x"}, "x", "JetStream domain"},
		"domain with a space": {wire.CoreStatus{JSDomain: "rn x"}, "x", "JetStream domain"},
		"pins, no prefix":     {wire.CoreStatus{JSDomain: "rn-x", Pins: []string{pin}}, "x", "without a prefix"},
		"short prefix":        {wire.CoreStatus{JSDomain: "rn-3-12", Prefix: "3.12"}, "rn-3-12", "want zone.region.swarm"},
		"prefix of another":   {wire.CoreStatus{JSDomain: "rn-3-12-7", Prefix: "3.12.8"}, "rn-3-12-7", "has domain rn-3-12-8"},
		"server key as pin":   {wire.CoreStatus{JSDomain: "rn-3-12-7", Prefix: "3.12.7", Pins: []string{srvPub}}, "rn-3-12-7", "not a user public key"},
		"pin twice":           {wire.CoreStatus{JSDomain: "rn-3-12-7", Prefix: "3.12.7", Pins: []string{pin, pin}}, "rn-3-12-7", "named twice"},
		"too many pins":       {wire.CoreStatus{JSDomain: "rn-3-12-7", Prefix: "3.12.7", Pins: []string{pin, pin, pin, pin, pin}}, "rn-3-12-7", "at most"},
	}
	for name, c := range bad {
		if _, err := checkEdgeSwarm(c.st, c.swarm); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: %v, want an error naming %q", name, err, c.want)
		}
	}
}

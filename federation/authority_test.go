package federation_test

import (
	"context"
	"encoding/json"
	"testing"
	"time"

	"github.com/robonet-mesh/robonet/federation"
	"github.com/robonet-mesh/robonet/internal/testmesh"
	"github.com/robonet-mesh/robonet/node"
	"github.com/robonet-mesh/robonet/trust"
	"github.com/robonet-mesh/robonet/wire"
)

// A hub's leader publishes its swarm's user records on rn.dir.<swarm>.users
// as stored, so that each verifies on its own below, and again when a user
// is added.
func TestAuthorityPublishesTheHubsUsers(t *testing.T) {
	s := testmesh.StartSwarm(t, 1, "3.12.1", testmesh.AsHub())
	nd := s.Node(0)
	sub, err := s.Client(0).Conn().SubscribeSync("rn.dir.3.12.1.users")
	if err != nil {
		t.Fatal(err)
	}
	a, err := federation.NewAuthority(federation.AuthorityOptions{Node: nd, Every: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	if err := a.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	defer a.Shutdown(context.Background())
	s.User(0, "olga", wire.RoleOperator)
	deadline := time.Now().Add(20 * time.Second)
	for time.Now().Before(deadline) {
		m, err := sub.NextMsg(time.Until(deadline))
		if err != nil {
			t.Fatalf("no publication naming olga: %v", err)
		}
		if m.Header.Get(wire.HdrFrom) != nd.Pubkey() {
			t.Fatalf("publication signed by %s, not the hub's leader", m.Header.Get(wire.HdrFrom))
		}
		var fu wire.FedUsers
		if err := json.Unmarshal(m.Data, &fu); err != nil {
			t.Fatal(err)
		}
		if len(fu.Sets) == 0 || fu.Sets[0].Founder != nd.Founder() || fu.Swarm != "3.12.1" {
			t.Fatalf("publication: %+v", fu)
		}
		raw, ok := fu.Sets[0].Users["olga"]
		if !ok {
			continue // published before olga was added; the change brings another
		}
		if _, by, err := trust.OpenRecord(node.BucketUsers, "olga", raw); err != nil || by != nd.Founder() {
			t.Fatalf("olga's record handed down: signer %s, %v", by, err)
		}
		return
	}
	t.Fatal("no publication naming olga")
}

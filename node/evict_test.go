package node_test

import (
	"context"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/nats-io/nkeys"

	"github.com/robonet-mesh/robonet/internal/testmesh"
	"github.com/robonet-mesh/robonet/mesh"
)

// TestRevokedNodesLeaveJetStreamsMetaGroup: removing a node from the swarm
// (robonet revoke, uncolonize) takes its server out of JetStream's meta
// group, so the quorum is the live members'. Without it, a 3-node swarm
// that grew by one and lost it keeps 4 peers, and losing one more member
// leaves 2 of 4: no meta quorum, and the swarm's state stops taking writes.
func TestRevokedNodesLeaveJetStreamsMetaGroup(t *testing.T) {
	s := testmesh.Start(t, 3)
	s.WaitAlive(30 * time.Second)
	victim := s.Add()
	s.WaitAlive(30 * time.Second)
	metaPeers := func() []string {
		for _, n := range s.Live() {
			if p := n.MetaPeers(); len(p) > 0 {
				return p
			}
		}
		return nil
	}
	testmesh.CheckFor(t, 30*time.Second, 100*time.Millisecond, func() error {
		if p := metaPeers(); len(p) != 4 {
			return fmt.Errorf("meta peers %v, want 4", p)
		}
		return nil
	})
	c := s.Client(0)
	// Retried: a swarm that just raised its buckets to take the fourth
	// node can take longer than one attempt's 5 s on a loaded machine.
	testmesh.CheckFor(t, 60*time.Second, 500*time.Millisecond, func() error {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		ids, err := c.Identities(ctx)
		if err != nil {
			return err
		}
		members, err := c.Nodes(ctx)
		if err != nil {
			return err
		}
		for _, m := range members {
			if m.Pubkey == victim.Pubkey() {
				return ids.RemoveNode(ctx, m, "test", c.Signer().PublicKey(), time.Now())
			}
		}
		return fmt.Errorf("%s not listed", victim.Pubkey())
	})
	s.Kill(3)
	name := mesh.ServerName(victim.Pubkey())
	testmesh.CheckFor(t, 30*time.Second, 100*time.Millisecond, func() error {
		if p := metaPeers(); len(p) != 3 || slices.Contains(p, name) {
			return fmt.Errorf("meta peers %v, want 3 without %s", p, name)
		}
		return nil
	})
	writable(t, c, "after")
	// With one more member down, the two left are still a quorum of the
	// three: the swarm's state stays writable.
	s.Kill(2)
	writable(t, c, "last")
}

// writable waits until the swarm takes a write (a user record): JetStream
// moves the replicas a removed peer held to the members left, and a stream
// that had two replicas on removed nodes waits for that.
func writable(t *testing.T, c *mesh.Client, user string) {
	t.Helper()
	attempt := 0
	testmesh.CheckFor(t, 60*time.Second, 500*time.Millisecond, func() error {
		// A new name each attempt: an attempt that timed out on the client
		// may still have landed.
		attempt++
		user := fmt.Sprintf("%s%d", user, attempt)
		ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
		defer cancel()
		ids, err := c.Identities(ctx)
		if err != nil {
			return err
		}
		if _, err = ids.AddUser(ctx, user, "observer", userKey(t), c.Signer().PublicKey(), time.Now()); err != nil {
			return fmt.Errorf("add user %s: %w", user, err)
		}
		return nil
	})
}

func userKey(t *testing.T) string {
	kp, err := nkeys.CreateUser()
	if err != nil {
		t.Fatal(err)
	}
	pub, _ := kp.PublicKey()
	return pub
}

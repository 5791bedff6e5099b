package main

import (
	"context"
	"fmt"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/robonet-mesh/robonet/internal/testmesh"
	"github.com/robonet-mesh/robonet/mesh"
	"github.com/robonet-mesh/robonet/node"
)

// The README's recipe for moving the admin key off the founder node: the
// founder adds an admin whose seed lives elsewhere, that admin revokes the
// founder key, and keeps administering the swarm through any node; the
// founder key no longer connects anywhere.
func TestMoveTheAdminKeyOffTheFounderNode(t *testing.T) {
	s := testmesh.Start(t, 2)
	s.WaitAlive(20 * time.Second)
	founder := s.Node(0)
	asFounder := []string{"--server", founder.ClientURL(), "--nkey", founder.OperatorSeedPath(), "--data", founder.DataDir()}
	me := filepath.Join(t.TempDir(), "me.nk")
	if out, stderr, err := rncli(t, append([]string{"user", "add", "me", "--role", "admin", "--out", me}, asFounder...)...); err != nil {
		t.Fatalf("user add me: %v %s %s", err, out, stderr)
	}
	asMe := []string{"--server", s.Node(1).ClientURL(), "--nkey", me}
	if out, stderr, err := rncli(t, append([]string{"user", "remove", node.FounderUser}, asMe...)...); err != nil {
		t.Fatalf("user remove founder: %v %s %s", err, out, stderr)
	}
	testmesh.CheckFor(t, 20*time.Second, 100*time.Millisecond, func() error {
		for _, nd := range s.Live() {
			if !nd.IsRevoked(founderKey(t, founder)) {
				return fmt.Errorf("node %s still admits the founder key", nd.Chevron())
			}
		}
		return nil
	})
	// The admin made by the founder is still an admin: it adds a user that
	// works on every node.
	alice := filepath.Join(t.TempDir(), "alice.nk")
	if out, stderr, err := rncli(t, append([]string{"user", "add", "alice", "--role", "operator", "--out", alice}, asMe...)...); err != nil {
		t.Fatalf("user add alice after the founder's revocation: %v %s %s", err, out, stderr)
	}
	for _, nd := range s.Live() {
		if _, _, err := rncli(t, "run", "all", "ping", "--server", nd.ClientURL(), "--nkey", alice); err != nil {
			t.Fatalf("alice through node %s: %v", nd.Chevron(), err)
		}
	}
	// The founder key connects nowhere but to its own node, where it is
	// the local operator — and there it is revoked too.
	for _, nd := range s.Live() {
		if c, err := mesh.Connect(context.Background(), mesh.Options{Server: nd.ClientURL(), SeedFile: founder.OperatorSeedPath()}); err == nil {
			c.Close()
			t.Fatalf("the revoked founder key still connects to node %s", nd.Chevron())
		}
	}
}

func founderKey(t *testing.T, nd *node.Node) string {
	t.Helper()
	kp, err := mesh.ReadSeed(nd.OperatorSeedPath())
	if err != nil {
		t.Fatal(err)
	}
	pub, _ := kp.PublicKey()
	if !strings.HasPrefix(pub, "U") {
		t.Fatalf("founder key %q", pub)
	}
	return pub
}

package mesh_test

import (
	"context"
	"net"
	"net/url"
	"testing"
	"time"

	"github.com/robonet-mesh/robonet/internal/testmesh"
	"github.com/robonet-mesh/robonet/mesh"
	"github.com/robonet-mesh/robonet/node"
)

// BenchmarkQueryNodes measures `nodes` in a 3-node swarm: the signed query,
// the node's check (signature, ledger, role) and its signed reply, with the
// client verifying the reply against the node's key (verified) or not
// (unverified: the client's share is the difference), on a plain loopback
// port (node 1) and on a TLS port (node 0 listens on 0.0.0.0, dialled
// through 127.0.0.1).
//
//	go test -run '^$' -bench BenchmarkQueryNodes -benchtime 2000x -count 3 ./mesh
func BenchmarkQueryNodes(b *testing.B) {
	s := testmesh.Start(b, 3, func(i int, o *node.Options) {
		if i == 0 {
			o.Listen = "0.0.0.0:0"
		}
	})
	s.WaitAlive(30 * time.Second)
	plain := s.Client(1)
	unverified := mesh.NewClient(plain.Conn()).WithSigner(plain.Signer())
	u, err := url.Parse(s.Node(0).ClientURL())
	if err != nil {
		b.Fatal(err)
	}
	tlsc, err := mesh.Connect(context.Background(), mesh.Options{Server: "tls://" + net.JoinHostPort("127.0.0.1", u.Port()),
		SeedFile: s.Node(0).OperatorSeedPath(), NodeKeys: []string{s.Node(0).Pubkey()}})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(tlsc.Close)
	for _, bc := range []struct {
		name string
		c    *mesh.Client
	}{{"verified-plain", plain}, {"unverified-plain", unverified}, {"verified-tls", tlsc}} {
		b.Run(bc.name, func(b *testing.B) {
			ctx := context.Background()
			for b.Loop() {
				ms, err := bc.c.Nodes(ctx)
				if err != nil || len(ms) != 3 {
					b.Fatalf("nodes: %d members, %v", len(ms), err)
				}
			}
		})
	}
}

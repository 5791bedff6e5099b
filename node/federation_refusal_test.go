package node_test

import (
	"context"
	"crypto/rand"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nkeys"

	"github.com/robonet-mesh/robonet/internal/testmesh"
	"github.com/robonet-mesh/robonet/leafnode"
	"github.com/robonet-mesh/robonet/mesh"
	"github.com/robonet-mesh/robonet/node"
	"github.com/robonet-mesh/robonet/subjects"
	"github.com/robonet-mesh/robonet/trust"
)

// rawSpoke is a bare nats-server speaking the child side of the leaf
// protocol exactly as a robonet child node does (leafnode.Spoke: its own
// key, node certificate, prefix and token), but with no node behind it, so
// a test can present any prefix and token, or none.
type rawSpoke struct {
	srv  *server.Server
	name string
	pub  string
}

func startRawSpoke(t *testing.T, hubAddr, prefix, token string, noPassword bool) rawSpoke {
	t.Helper()
	kp, err := nkeys.CreateUser()
	if err != nil {
		t.Fatal(err)
	}
	pub, _ := kp.PublicKey()
	seed, _ := kp.Seed()
	cert, err := trust.NodeCertificate(kp, trust.RouteCredential{}, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	p, err := subjects.Parse(prefix)
	if err != nil {
		t.Fatal(err)
	}
	r, err := leafnode.Spoke{Parents: []string{hubAddr}, Prefix: p, Token: token, Seed: seed, Certificate: cert}.Remote()
	if err != nil {
		t.Fatal(err)
	}
	if noPassword {
		r.URLs[0].User = url.User(prefix)
	}
	name := mesh.ServerName(pub)
	o := &server.Options{ServerName: name, Host: "127.0.0.1", Port: server.RANDOM_PORT, NoSigs: true, NoLog: true,
		Cluster:  server.ClusterOpts{Name: "raw-" + strings.ReplaceAll(prefix, ".", "-")},
		LeafNode: server.LeafNodeOpts{ReconnectInterval: 100 * time.Millisecond, Remotes: []*server.RemoteLeafOpts{r}}}
	s, err := server.NewServer(o)
	if err != nil {
		t.Fatal(err)
	}
	s.Start()
	t.Cleanup(func() { s.Shutdown(); s.WaitForShutdown() })
	return rawSpoke{srv: s, name: name, pub: pub}
}

// inboundFrom reports whether hub node nd has a live leaf link from server.
func inboundFrom(nd *node.Node, server string) bool {
	for _, l := range nd.LeafLinks() {
		if l.Up && !l.Outbound && l.Server == server {
			return true
		}
	}
	return false
}

func hubSecret(t *testing.T, nd *node.Node) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(nd.DataDir(), node.SecretFile))
	if err != nil {
		t.Fatal(err)
	}
	s, err := trust.ParseSecret(strings.TrimSpace(string(b)))
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// TestFedHubRefusesUnadmittedChildren runs a single-node zone hub 3.12.1
// and children that must not get in: no token, an altered token, a prefix
// outside the hub's scope or the hub's own, a second swarm claiming a
// prefix already admitted, a token reused by another swarm, a token past
// its expiry at first use, a revoked key. Each refusal is logged on the
// hub with its reason. A token that admitted its swarm keeps admitting
// that swarm's nodes after it expired.
func TestFedHubRefusesUnadmittedChildren(t *testing.T) {
	tap := &testmesh.LogTap{}
	hub := testmesh.StartSwarm(t, 1, "3.12.1", testmesh.AsHub(), testmesh.WithLogTap(tap))
	h := hub.Node(0)
	addr := hub.LeafAddrs()[0]
	secret := hubSecret(t, h)

	// A real child swarm, admitted: it binds prefix 3.12.7.
	child := testmesh.StartChild(t, hub, 1, "3.12.7")
	unbound := hub.FederationToken(time.Minute, "")
	altered := []byte(hub.FederationToken(time.Minute, ""))
	if i := len(trust.TokenPrefix) + 5; altered[i] == 'A' { // inside the id: the MAC breaks, the link key stays
		altered[i] = 'B'
	} else {
		altered[i] = 'A'
	}
	expired, _, err := trust.IssueFedToken(secret, trust.FedSpec{Hub: h.SwarmPrefix()}, time.Minute, time.Now().Add(-time.Hour))
	if err != nil {
		t.Fatal(err)
	}

	for _, tc := range []struct {
		name, prefix, token string
		noPassword          bool
		reason              string
	}{
		{"no token", "3.12.8", unbound, true, "shows no federation token"},
		{"altered token", "3.12.8", string(altered), false, "not issued by this swarm"},
		{"outside the zone", "4.1.1", unbound, false, "outside this hub's scope 3"},
		{"the hub's own prefix", "3.12.1", unbound, false, "this hub's own swarm"},
		{"prefix already admitted", "3.12.7", unbound, false, "already admitted with another federation token"},
		{"expired at first use", "3.12.8", expired, false, "expired"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			rs := startRawSpoke(t, addr, tc.prefix, tc.token, tc.noPassword)
			got := tap.Wait(t, 20*time.Second, "leaf connection refused", "server="+rs.name, tc.reason)
			t.Logf("hub said: %s", got)
			if inboundFrom(h, rs.name) {
				t.Fatal("refused, yet linked")
			}
		})
	}

	// An unbound token binds to the first prefix that uses it.
	first := startRawSpoke(t, addr, "3.12.9", unbound, false)
	testmesh.CheckFor(t, 20*time.Second, 20*time.Millisecond, func() error {
		if !inboundFrom(h, first.name) {
			return fmt.Errorf("swarm 3.12.9 not linked")
		}
		return nil
	})
	reuse := startRawSpoke(t, addr, "3.12.10", unbound, false)
	tap.Wait(t, 20*time.Second, "leaf connection refused", "server="+reuse.name, "already admitted swarm 3.12.9")

	// A short-lived token admits its swarm before it expires, and that
	// swarm's nodes after.
	short, c, err := trust.IssueFedToken(secret, trust.FedSpec{Hub: h.SwarmPrefix()}, 2*time.Second, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	early := startRawSpoke(t, addr, "3.12.11", short, false)
	testmesh.CheckFor(t, 20*time.Second, 20*time.Millisecond, func() error {
		if !inboundFrom(h, early.name) {
			return fmt.Errorf("swarm 3.12.11 not linked")
		}
		return nil
	})
	testmesh.CheckFor(t, 10*time.Second, 50*time.Millisecond, func() error {
		if time.Now().Before(c.Expires) {
			return fmt.Errorf("token valid until %v", c.Expires)
		}
		return nil
	})
	late := startRawSpoke(t, addr, "3.12.11", short, false)
	testmesh.CheckFor(t, 20*time.Second, 20*time.Millisecond, func() error {
		if !inboundFrom(h, late.name) {
			return fmt.Errorf("a second node of swarm 3.12.11 not linked after the token expired")
		}
		return nil
	})

	// The hub's admin revokes the child node's key: its link is cut and
	// its reconnects refused.
	cn := child.Node(0)
	ids, err := hub.Client(0).Identities(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if err := ids.Revoke(context.Background(), cn.Pubkey(), "", "test", "", time.Now()); err != nil {
		t.Fatal(err)
	}
	tap.Wait(t, 20*time.Second, "revoked", cn.Pubkey())
	testmesh.CheckFor(t, 20*time.Second, 20*time.Millisecond, func() error {
		if inboundFrom(h, cn.ServerName()) || cn.ParentPrefix() != "" {
			return fmt.Errorf("revoked child node still linked")
		}
		return nil
	})
}

// TestFedChildRefusesAForeignHub gives a child node a token of another
// swarm (another secret): the child refuses the hub's certificate, which
// does not prove the token's link key, so its token never reaches that
// hub; the child logs why.
func TestFedChildRefusesAForeignHub(t *testing.T) {
	hub := testmesh.StartSwarm(t, 1, "3.12.1", testmesh.AsHub())
	other := make([]byte, trust.SecretSize)
	if _, err := rand.Read(other); err != nil {
		t.Fatal(err)
	}
	tok, _, err := trust.IssueFedToken(other, trust.FedSpec{Hub: hub.Node(0).SwarmPrefix()}, time.Minute, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	tap := &testmesh.LogTap{}
	child := testmesh.StartSwarm(t, 1, "3.12.7", testmesh.WithFederate(hub.LeafAddrs(), tok), testmesh.WithLogTap(tap))
	t.Logf("child said: %s", tap.Wait(t, 20*time.Second, "does not prove the link key"))
	if child.Node(0).ParentPrefix() != "" || len(hubInbound(hub.Node(0))) != 0 {
		t.Fatal("linked to a hub that does not prove the token's link key")
	}
}

func hubInbound(nd *node.Node) []node.LeafLink {
	var out []node.LeafLink
	for _, l := range nd.LeafLinks() {
		if l.Up && !l.Outbound {
			out = append(out, l)
		}
	}
	return out
}

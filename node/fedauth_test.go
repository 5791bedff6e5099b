package node_test

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nkeys"
	"github.com/nats-io/nuid"

	"github.com/robonet-mesh/robonet/internal/testmesh"
	"github.com/robonet-mesh/robonet/mesh"
	"github.com/robonet-mesh/robonet/node"
	"github.com/robonet-mesh/robonet/trust"
	"github.com/robonet-mesh/robonet/wire"
)

// ident is a key of another swarm: its key pair, public key and a seed file.
type ident struct {
	kp   nkeys.KeyPair
	pub  string
	seed string
}

func newIdent(t *testing.T) ident {
	t.Helper()
	kp, err := nkeys.CreateUser()
	if err != nil {
		t.Fatal(err)
	}
	pub, _ := kp.PublicKey()
	seed, _ := kp.Seed()
	path := filepath.Join(t.TempDir(), pub[:8]+".nk")
	if err := os.WriteFile(path, seed, 0o600); err != nil {
		t.Fatal(err)
	}
	return ident{kp: kp, pub: pub, seed: path}
}

// signer is an HCTH signer for id, sharing the chain file a client of
// the seed file uses (one key, one chain).
func (id ident) signer(t *testing.T) *mesh.Signer {
	t.Helper()
	s, err := mesh.NewSigner(id.kp, id.seed+".chain", 0)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// userRecord is the stored rn_users record of name with role for who,
// signed by by.
func userRecord(t *testing.T, by ident, name, role string, who ident) []byte {
	t.Helper()
	rec, _ := json.Marshal(wire.User{Name: name, Role: role, Nkey: who.pub, Added: time.Now().UTC(), By: by.pub})
	data, err := trust.SignRecord(by.kp, node.BucketUsers, name, rec)
	if err != nil {
		t.Fatal(err)
	}
	return data
}

func revocationRecord(t *testing.T, by ident, who ident) []byte {
	t.Helper()
	rec, _ := json.Marshal(wire.Revocation{Pubkey: who.pub, Reason: "test", At: time.Now().UTC(), By: by.pub})
	data, err := trust.SignRecord(by.kp, node.BucketRevoked, who.pub, rec)
	if err != nil {
		t.Fatal(err)
	}
	return data
}

func publishUsers(t *testing.T, nc *nats.Conn, swarm string, sets ...wire.FedUserSet) {
	t.Helper()
	data, _ := json.Marshal(wire.FedUsers{Swarm: swarm, Sets: sets, Sent: time.Now()})
	if err := nc.Publish("rn.dir."+swarm+".users", data); err != nil {
		t.Fatal(err)
	}
	if err := nc.Flush(); err != nil {
		t.Fatal(err)
	}
}

// forwardAs sends a federated ping signed by s, forwarded by nd as its
// ambassador would, and returns the node's answer.
func forwardAs(t *testing.T, carrier *mesh.Client, nd *node.Node, s *mesh.Signer, verb string) *wire.Result {
	t.Helper()
	f := fwd{fed: "rn.fed.3.12.cmd." + verb, in: "rn.3.12.7.cmd." + verb, verb: verb, forwarder: nd.Signer()}
	body, _ := json.Marshal(wire.Request{Verb: verb, ID: nuid.Next()})
	m := &nats.Msg{Subject: f.fed, Data: body}
	if err := s.SignMsg(m); err != nil {
		t.Fatal(err)
	}
	_, res := f.resend(t, carrier, m, 5*time.Second)
	if res == nil {
		t.Fatal("no answer")
	}
	return res
}

// A swarm inherits the identities of the ancestors whose founders it
// pinned: an admin record signed under a pinned founder makes an admin
// here (its commands run, forwarded or over a direct connection), an
// operator chained through that admin an operator; a record signed under
// an unpinned founder (a sibling swarm's admin) is refused, and so is one
// that does not chain to the founder. An ancestor's revocation sticks.
func TestInheritedAuthority(t *testing.T) {
	s := testmesh.Start(t, 1, testmesh.WithChevrons("3.12.7.1"))
	nd := s.Node(0)
	carrier := s.Client(0) // any connection allowed to publish: whoever carries records does not matter

	hubFounder, hubAdmin, hubOp, stray := newIdent(t), newIdent(t), newIdent(t), newIdent(t)
	sibFounder, sibAdmin := newIdent(t), newIdent(t)
	node.SetAuthorityPinsForTest(nd, hubFounder.pub)

	hub := wire.FedUserSet{Founder: hubFounder.pub, Users: map[string][]byte{
		"alice":   userRecord(t, hubFounder, "alice", wire.RoleAdmin, hubAdmin),
		"oscar":   userRecord(t, hubAdmin, "oscar", wire.RoleOperator, hubOp),
		"mallory": userRecord(t, stray, "mallory", wire.RoleAdmin, stray), // chains to nobody
	}}
	sib := wire.FedUserSet{Founder: sibFounder.pub, Users: map[string][]byte{
		"sam": userRecord(t, sibFounder, "sam", wire.RoleAdmin, sibAdmin),
	}}
	// The sibling's set comes first and inside the hub's message too: what
	// counts is the founder, not the carrier.
	publishUsers(t, carrier.Conn(), "3.12.8", sib)
	publishUsers(t, carrier.Conn(), "3.12.1", hub, sib)
	testmesh.CheckFor(t, 5*time.Second, 20*time.Millisecond, func() error {
		if r, ok := nd.RoleOf(hubOp.pub); !ok || r != wire.RoleOperator {
			return fmt.Errorf("hub operator: %q %v", r, ok)
		}
		return nil
	})
	for _, tc := range []struct {
		who  ident
		name string
		role string
	}{{hubFounder, "hub founder", wire.RoleAdmin}, {hubAdmin, "hub admin", wire.RoleAdmin},
		{stray, "record chained to nobody", ""}, {sibFounder, "sibling founder", ""}, {sibAdmin, "sibling admin", ""}} {
		if r, _ := nd.RoleOf(tc.who.pub); r != tc.role {
			t.Errorf("%s: role %q, want %q", tc.name, r, tc.role)
		}
	}

	// Forwarded commands: the hub admin's runs; the sibling's admin is denied.
	if res := forwardAs(t, carrier, nd, hubAdmin.signer(t), "ping"); res.Status != wire.StatusOK {
		t.Fatalf("hub admin's forwarded ping: %+v %+v", res, res.Error)
	}
	if res := forwardAs(t, carrier, nd, sibAdmin.signer(t), "ping"); res.Status != wire.StatusDenied {
		t.Fatalf("sibling admin's forwarded ping: %+v", res)
	}

	// A direct connection: the inherited admin connects and gathers.
	c, err := mesh.Connect(context.Background(), mesh.Options{Server: nd.ClientURL(), SeedFile: hubAdmin.seed})
	if err != nil {
		t.Fatalf("inherited admin connects: %v", err)
	}
	defer c.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	res, err := c.Gather(ctx, mesh.GatherRequest{Selector: "3.12.7.1", Verb: "info", Timeout: 5 * time.Second}, nil)
	if err != nil || !res.OK() {
		t.Fatalf("inherited admin's gather: %v %+v", err, res)
	}
	if _, err := mesh.Connect(context.Background(), mesh.Options{Server: nd.ClientURL(), SeedFile: sibAdmin.seed,
		Timeout: 2 * time.Second}); err == nil {
		t.Fatal("a sibling swarm's admin connected")
	}

	// The hub revokes its operator: gone below, and it stays gone when a
	// later message leaves the revocation out.
	hub.Revoked = map[string][]byte{hubOp.pub: revocationRecord(t, hubAdmin, hubOp)}
	publishUsers(t, carrier.Conn(), "3.12.1", hub)
	testmesh.CheckFor(t, 5*time.Second, 20*time.Millisecond, func() error {
		if r, ok := nd.RoleOf(hubOp.pub); ok {
			return fmt.Errorf("revoked hub operator still %q", r)
		}
		return nil
	})
	hub.Revoked = nil
	publishUsers(t, carrier.Conn(), "3.12.1", hub)
	// A user removed upstream disappears with the next message.
	delete(hub.Users, "alice")
	delete(hub.Users, "oscar")
	publishUsers(t, carrier.Conn(), "3.12.1", hub)
	testmesh.CheckFor(t, 5*time.Second, 20*time.Millisecond, func() error {
		if r, ok := nd.RoleOf(hubAdmin.pub); ok {
			return fmt.Errorf("removed hub admin still %q", r)
		}
		return nil
	})
	if r, ok := nd.RoleOf(hubOp.pub); ok {
		t.Fatalf("revoked operator came back as %q", r)
	}
}

// What a swarm hands down: its own founder's records, and what it
// inherited, each record as stored so that swarms below verify it.
func TestAuthorityRecordsHandDownOwnAndInherited(t *testing.T) {
	s := testmesh.StartSwarm(t, 1, "3.12.1", testmesh.AsHub())
	nd := s.Node(0)
	s.User(0, "olga", wire.RoleOperator)
	zoneFounder, zoneAdmin := newIdent(t), newIdent(t)
	node.SetAuthorityPinsForTest(nd, zoneFounder.pub)
	publishUsers(t, s.Client(0).Conn(), "3.1.1", wire.FedUserSet{Founder: zoneFounder.pub,
		Users: map[string][]byte{"zed": userRecord(t, zoneFounder, "zed", wire.RoleAdmin, zoneAdmin)}})
	testmesh.CheckFor(t, 5*time.Second, 20*time.Millisecond, func() error {
		if _, ok := nd.InheritedRole(zoneAdmin.pub); !ok {
			return fmt.Errorf("zone admin not inherited yet")
		}
		return nil
	})
	fu := nd.AuthorityRecords()
	if fu.Swarm != "3.12.1" || len(fu.Sets) != 2 || fu.Sets[0].Founder != nd.Founder() || fu.Sets[1].Founder != zoneFounder.pub {
		t.Fatalf("AuthorityRecords = %+v", fu)
	}
	for name, set := range map[string]wire.FedUserSet{"olga": fu.Sets[0], "zed": fu.Sets[1]} {
		rec, _, err := trust.OpenRecord(node.BucketUsers, name, set.Users[name])
		if err != nil || len(rec) == 0 {
			t.Fatalf("record %s handed down does not verify: %v", name, err)
		}
	}
	if err := fu.Check(); err != nil {
		t.Fatal(err)
	}
}

package main

import (
	"context"
	"encoding/json"
	"fmt"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nkeys"

	"github.com/robonet-mesh/robonet/federation"
	"github.com/robonet-mesh/robonet/internal/testmesh"
	"github.com/robonet-mesh/robonet/mesh"
	"github.com/robonet-mesh/robonet/subjects"
	"github.com/robonet-mesh/robonet/wire"
)

// announcer signs summaries for swarm p with parent as its leader p.1.
type announcer struct {
	p, parent, pub string
	sg             *mesh.Signer
}

func newAnnouncer(t *testing.T, p, parent string) announcer {
	t.Helper()
	kp, _ := nkeys.CreateUser()
	pub, _ := kp.PublicKey()
	sg, err := mesh.NewSigner(kp, filepath.Join(t.TempDir(), "chain"), 0)
	if err != nil {
		t.Fatal(err)
	}
	return announcer{p: p, parent: parent, pub: pub, sg: sg}
}

// announce publishes a summary over nc.
func (a announcer) announce(t *testing.T, nc *nats.Conn) {
	t.Helper()
	pp, _ := subjects.ParseSwarmPrefix(a.p)
	dom, _ := subjects.SwarmDomain(pp)
	subj, _ := subjects.DirSummary(pp)
	data, _ := json.Marshal(wire.DirSummary{Prefix: a.p, Domain: dom, Parent: a.parent, Leader: a.p + ".1", LeaderKey: a.pub,
		Token: 1, Nodes: 2, Live: 1, Offline: []string{a.p + ".2"}, RegistryRev: 3, Sent: time.Now().UTC()})
	m := &nats.Msg{Subject: subj, Data: data}
	if err := a.sg.SignMsg(m); err != nil {
		t.Fatal(err)
	}
	if err := nc.PublishMsg(m); err != nil {
		t.Fatal(err)
	}
}

// federation status prints the tree the directory knows (parent, self,
// sibling) and --json carries it; nodes --all lists the swarm's nodes with
// their swarm and says what it could not read. A node without the
// directory says so.
func TestFederationStatusAndNodesAll(t *testing.T) {
	s := testmesh.Start(t, 1, testmesh.WithChevrons("3.12.7.1"))
	s.WaitLeader(15 * time.Second)
	nd := s.Node(0)
	base := []string{"--server", nd.ClientURL(), "--nkey", nd.OperatorSeedPath(), "--data", nd.DataDir()}
	run := func(args ...string) (string, string, error) { return rncli(t, append(args, base...)...) }

	if _, _, err := run("federation", "status"); err == nil || !strings.Contains(err.Error(), "federated") {
		t.Fatalf("status without a directory: %v", err)
	}
	out, stderr, err := run("nodes", "--all", "--json")
	if err != nil || !strings.Contains(stderr, "not federated") || !strings.Contains(out, `"swarm": ""`) {
		t.Fatalf("nodes --all without a directory: %v\n%s\n%s", err, out, stderr)
	}

	fc, err := nd.FeatureConn("directory")
	if err != nil {
		t.Fatal(err)
	}
	defer fc.Close()
	d, err := federation.NewDirectory(federation.DirectoryOptions{Conn: fc, Signer: nd.Signer(), Local: nd, Prefix: "3.12.7",
		Parent: func() string { return "3.12.1" }})
	if err != nil {
		t.Fatal(err)
	}
	if err := d.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	defer d.Shutdown(context.Background())
	nc := s.Client(0).Conn()
	parent, sibling := newAnnouncer(t, "3.12.1", ""), newAnnouncer(t, "3.12.8", "3.12.1")
	testmesh.CheckFor(t, 10*time.Second, 50*time.Millisecond, func() error {
		parent.announce(t, nc)
		sibling.announce(t, nc)
		if len(d.Swarms()) != 3 {
			return fmt.Errorf("directory: %+v", d.Swarms())
		}
		return nil
	})

	out, stderr, err = run("federation", "status")
	if err != nil {
		t.Fatalf("%v: %s", err, stderr)
	}
	for _, want := range []string{"swarm 3.12.7 (domain rn-3-12-7), parent 3.12.1", "3.12.1  ", "├─ 3.12.7", "└─ 3.12.8", "parent", "self", "sibling", "1/2"} {
		if !strings.Contains(out, want) {
			t.Errorf("status lacks %q:\n%s", want, out)
		}
	}
	out, _, err = run("federation", "status", "--json")
	if err != nil {
		t.Fatal(err)
	}
	var v struct {
		federation.View
		Tree []*federation.TreeNode `json:"tree"`
	}
	if err := json.Unmarshal([]byte(out), &v); err != nil {
		t.Fatal(err)
	}
	if v.Swarm != "3.12.7" || len(v.Swarms) != 3 || len(v.Tree) != 1 || v.Tree[0].Prefix != "3.12.1" || len(v.Tree[0].Children) != 2 {
		t.Fatalf("status --json: %s", out)
	}

	out, stderr, err = run("nodes", "--all")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(out, "SWARM") || !strings.Contains(out, "3.12.7  3.12.7.1") || !strings.Contains(stderr, "not read: rn-3-12-1") {
		t.Fatalf("nodes --all:\n%s\n%s", out, stderr)
	}
	out, _, err = run("nodes", "--all", "--json")
	if err != nil {
		t.Fatal(err)
	}
	var rows []wire.FedMember
	if err := json.Unmarshal([]byte(out), &rows); err != nil {
		t.Fatal(err)
	}
	if len(rows) != 1 || rows[0].Swarm != "3.12.7" || rows[0].Chevron != "3.12.7.1" || rows[0].State != wire.StateAlive {
		t.Fatalf("nodes --all --json: %s", out)
	}
}

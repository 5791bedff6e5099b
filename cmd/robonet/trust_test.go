package main

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/robonet-mesh/robonet/internal/testmesh"
	"github.com/robonet-mesh/robonet/mesh"
	"github.com/robonet-mesh/robonet/node"
	"github.com/robonet-mesh/robonet/trust"
	"github.com/robonet-mesh/robonet/wire"
)

// rncli runs one robonet command in-process and returns stdout, stderr and
// the error.
func rncli(t *testing.T, args ...string) (string, string, error) {
	t.Helper()
	var stdout, stderr bytes.Buffer
	root := newRoot(&stdout, &stderr)
	root.SetArgs(args)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	err := root.ExecuteContext(ctx)
	return stdout.String(), stderr.String(), err
}

func TestTokenGenerateAndBadTTL(t *testing.T) {
	out, _, err := rncli(t, "token", "generate")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := trust.ParseSecret(strings.TrimSpace(out)); err != nil {
		t.Fatalf("token generate printed %q: %v", out, err)
	}
	if _, _, err := rncli(t, "token", "create", "--ttl", "1s", "--server", "nats://127.0.0.1:1"); err == nil || !strings.Contains(err.Error(), "--ttl") {
		t.Fatalf("--ttl 1s: %v", err)
	}
}

// user add/list/remove, trust, quarantine/release and nats-context --role
// against a real two-node swarm, as an admin would type them.
func TestTrustCommands(t *testing.T) {
	s := testmesh.Start(t, 2)
	s.WaitAlive(20 * time.Second)
	nd := s.Node(0)
	base := []string{"--server", nd.ClientURL(), "--nkey", nd.OperatorSeedPath(), "--data", nd.DataDir()}
	run := func(args ...string) (string, string, error) { return rncli(t, append(args, base...)...) }

	seedFile := filepath.Join(t.TempDir(), "alice.nk")
	if out, stderr, err := run("user", "add", "alice", "--role", "operator", "--out", seedFile); err != nil || !strings.Contains(out, "alice (operator) added") {
		t.Fatalf("user add: %v %s %s", err, out, stderr)
	}
	if _, _, err := run("user", "add", "alice", "--role", "operator"); err == nil || !strings.Contains(err.Error(), "exists") {
		t.Fatalf("user add twice: %v", err)
	}
	if _, _, err := run("user", "add", "bob", "--role", "root"); err == nil || !strings.Contains(err.Error(), "role") {
		t.Fatalf("bad role: %v", err)
	}
	out, _, err := run("user", "list", "--json")
	var users []wire.User
	// The founder (node 0's operator key, the swarm's first admin) and alice.
	if err != nil || json.Unmarshal([]byte(out), &users) != nil || len(users) != 2 || users[0].Name != "alice" || users[1].Name != node.FounderUser {
		t.Fatalf("user list: %v %s", err, out)
	}
	// alice's key works (through the other node: identities are swarm-wide).
	testmesh.CheckFor(t, 10*time.Second, 100*time.Millisecond, func() error {
		_, _, err := rncli(t, "run", "all", "ping", "--server", s.Node(1).ClientURL(), "--nkey", seedFile)
		return err
	})

	out, _, err = run("trust", "--json")
	var rep node.TrustReport
	if err != nil || json.Unmarshal([]byte(out), &rep) != nil || rep.Chevron == "" || len(rep.Peers) == 0 {
		t.Fatalf("trust: %v %s", err, out)
	}
	if out, _, err := run("trust"); err != nil || !strings.Contains(out, "SCORE") || !strings.Contains(out, "refused:") {
		t.Fatalf("trust table: %v %s", err, out)
	}
	other := s.Node(1).Name()
	if out, stderr, err := run("trust", "quarantine", other, "--reason", "drill"); err != nil || !strings.Contains(out, "quarantined on") {
		t.Fatalf("quarantine: %v %s %s", err, out, stderr)
	}
	if out, _, err := run("trust", "release", other); err != nil || !strings.Contains(out, "released on") {
		t.Fatalf("release: %v %s", err, out)
	}
	if _, _, err := run("trust", "quarantine", "nobody"); err == nil {
		t.Fatal("quarantine of an unknown node")
	}

	// A read-only context for the stock nats CLI.
	t.Setenv("XDG_CONFIG_HOME", t.TempDir())
	if out, _, err := run("nats-context", "--role", "observer", "--json"); err != nil {
		t.Fatalf("nats-context --role: %v %s", err, out)
	}
	ctxFile := filepath.Join(os.Getenv("XDG_CONFIG_HOME"), "nats", "context", "robonet.json")
	b, err := os.ReadFile(ctxFile)
	var nctx natsContext
	if err != nil || json.Unmarshal(b, &nctx) != nil || !strings.HasPrefix(nctx.InboxPrefix, "_rn.inbox.U") || !strings.Contains(nctx.NKey, "nats-observer") {
		t.Fatalf("context %s: %v", b, err)
	}
	kp, err := mesh.ReadSeed(nctx.NKey)
	if err != nil {
		t.Fatal(err)
	}
	pub, _ := kp.PublicKey()
	if !strings.HasSuffix(nctx.InboxPrefix, pub) {
		t.Fatalf("inbox prefix %q for key %s", nctx.InboxPrefix, pub)
	}

	if out, _, err := run("user", "remove", "alice"); err != nil || !strings.Contains(out, "revoked") {
		t.Fatalf("user remove: %v %s", err, out)
	}
	if _, _, err := rncli(t, "run", "all", "ping", "--server", nd.ClientURL(), "--nkey", seedFile); err == nil {
		t.Fatal("a removed user still runs commands")
	}
}

// identity makes the key on the new host; token create --for binds a token
// to it and says so in --json.
func TestIdentityAndTokenCreateFor(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "newhost")
	out, _, err := rncli(t, "identity", "--data", dir, "--json")
	if err != nil {
		t.Fatal(err)
	}
	var id IdentityReply
	if err := json.Unmarshal([]byte(out), &id); err != nil || !id.Created || id.Data != dir || !strings.HasPrefix(id.Pubkey, "U") {
		t.Fatalf("identity --json = %s (%v)", out, err)
	}
	if out, _, err := rncli(t, "identity", "--data", dir); err != nil || strings.TrimSpace(out) != id.Pubkey {
		t.Fatalf("identity again = %q, %v; want %s", out, err, id.Pubkey)
	}

	s := testmesh.Start(t, 2)
	s.WaitAlive(20 * time.Second)
	nd := s.Node(0)
	base := []string{"--server", nd.ClientURL(), "--nkey", nd.OperatorSeedPath(), "--data", nd.DataDir()}
	out, _, err = rncli(t, append([]string{"token", "create", "--ttl", "10m", "--for", id.Pubkey, "--json"}, base...)...)
	if err != nil {
		t.Fatal(err)
	}
	var tr struct {
		Token   string `json:"token"`
		BoundTo string `json:"bound_to"`
	}
	if err := json.Unmarshal([]byte(out), &tr); err != nil || tr.BoundTo != id.Pubkey {
		t.Fatalf("token create --for --json = %s (%v)", out, err)
	}
	if c, err := trust.InspectToken(tr.Token); err != nil || c.BoundTo != id.Pubkey {
		t.Fatalf("token claims %+v, %v", c, err)
	}
	if _, _, err := rncli(t, append([]string{"token", "create", "--for", nd.Pubkey()}, base...)...); err == nil || !strings.Contains(err.Error(), "member") {
		t.Fatalf("token create --for a member's key: %v", err)
	}
	if _, _, err := rncli(t, append([]string{"token", "create", "--for", "N" + id.Pubkey[1:]}, base...)...); err == nil || !strings.Contains(err.Error(), "not a node key") {
		t.Fatalf("token create --for a server key: %v", err)
	}
}

package main

import (
	"context"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"net"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nkeys"

	"github.com/robonet-mesh/robonet/internal/testmesh"
	"github.com/robonet-mesh/robonet/mesh"
	"github.com/robonet-mesh/robonet/node"
	"github.com/robonet-mesh/robonet/subjects"
)

// tlsNode starts one node on 0.0.0.0 (TLS only; dialled through
// 127.0.0.1, so no packet leaves the machine) and returns it with its
// client address on loopback.
func tlsNode(t *testing.T) (*node.Node, string) {
	t.Helper()
	s := testmesh.Start(t, 1, func(_ int, o *node.Options) { o.Listen = "0.0.0.0:0" })
	u, err := url.Parse(s.Node(0).ClientURL())
	if err != nil || u.Scheme != "tls" {
		t.Fatalf("client URL %s (%v): want tls://", s.Node(0).ClientURL(), err)
	}
	return s.Node(0), net.JoinHostPort("127.0.0.1", u.Port())
}

// The CLI pins a node's key on first use in <config>/robonet/known_nodes
// (0600) and refuses, loudly, a node whose key changed, naming both keys
// and the file to edit. A CLI given the node's own data dir trusts that
// node's key wherever it listens.
func TestCLIPinsTheNodeKeyOnFirstUse(t *testing.T) {
	nd, addr := tlsNode(t)
	xdg := t.TempDir()
	t.Setenv("XDG_CONFIG_HOME", xdg)
	elsewhere := t.TempDir() // a data dir without a node: nothing trusted but the pin
	args := []string{"nodes", "--json", "--server", "tls://" + addr, "--nkey", nd.OperatorSeedPath(), "--data", elsewhere}
	if out, _, err := rncli(t, args...); err != nil || !strings.Contains(out, nd.Pubkey()) {
		t.Fatalf("first use: %v %s", err, out)
	}
	known := filepath.Join(xdg, "robonet", "known_nodes")
	data, err := os.ReadFile(known)
	if err != nil || !strings.Contains(string(data), addr+" "+nd.Pubkey()+"\n") {
		t.Fatalf("known_nodes after first use: %q %v", data, err)
	}
	if st, _ := os.Stat(known); st.Mode().Perm() != 0o600 {
		t.Fatalf("known_nodes mode %v", st.Mode())
	}
	if _, _, err := rncli(t, args...); err != nil {
		t.Fatalf("second use: %v", err)
	}

	other, _ := nkeys.CreateUser()
	opub, _ := other.PublicKey()
	if err := os.WriteFile(known, []byte(addr+" "+opub+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	_, _, err = rncli(t, args...)
	if err == nil {
		t.Fatal("a node whose key is not the pinned one was used")
	}
	for _, want := range []string{"HAS CHANGED", addr, opub, nd.Pubkey(), known} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error lacks %q: %v", want, err)
		}
	}
	own := []string{"status", "--json", "--server", "tls://" + addr, "--data", nd.DataDir()}
	if _, _, err := rncli(t, own...); err != nil {
		t.Fatalf("with the node's own data dir: %v", err)
	}
}

// natsBinary finds the stock nats CLI: on PATH, or where `go install`
// puts it. Missing, the test skips, and fails in CI (scripts/test installs it).
func natsBinary(t *testing.T) string {
	t.Helper()
	if p, err := exec.LookPath("nats"); err == nil {
		return p
	}
	if out, err := exec.Command("go", "env", "GOPATH").Output(); err == nil {
		p := filepath.Join(strings.TrimSpace(string(out)), "bin", "nats")
		if _, err := os.Stat(p); err == nil {
			return p
		}
	}
	if os.Getenv("CI") == "true" {
		t.Fatal("the nats CLI is missing (go install github.com/nats-io/natscli/nats@v0.5.0)")
	}
	t.Skip("the nats CLI is not installed (go install github.com/nats-io/natscli/nats@v0.5.0)")
	return ""
}

// `robonet nats-context` against a TLS client port writes the node's
// certificate as the context's CA, and the stock nats CLI verifies the
// node with it and subscribes to rn.>; without it the nats CLI refuses the
// node's certificate.
func TestNatsContextOnATLSPortWorksWithTheNatsCLI(t *testing.T) {
	nats := natsBinary(t)
	nd, addr := tlsNode(t)
	xdg := t.TempDir()
	t.Setenv("XDG_CONFIG_HOME", xdg)
	out, _, err := rncli(t, "nats-context", "--json", "--server", "tls://"+addr, "--data", nd.DataDir())
	if err != nil {
		t.Fatalf("nats-context: %v %s", err, out)
	}
	b, err := os.ReadFile(filepath.Join(xdg, "nats", "context", "robonet.json"))
	var nctx natsContext
	if err != nil || json.Unmarshal(b, &nctx) != nil || nctx.CA == "" || nctx.URL != "tls://"+addr {
		t.Fatalf("context %s: %v", b, err)
	}
	pemData, err := os.ReadFile(nctx.CA)
	blk, _ := pem.Decode(pemData)
	if err != nil || blk == nil {
		t.Fatalf("CA file %s: %v", nctx.CA, err)
	}
	cert, err := x509.ParseCertificate(blk.Bytes)
	if err != nil || cert.Subject.CommonName != nd.Pubkey() {
		t.Fatalf("CA file holds %v (%v), want node %s's certificate", cert.Subject, err, nd.Pubkey())
	}

	run := func(args ...string) (string, error) {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		cmd := exec.CommandContext(ctx, nats, args...)
		cmd.Env = append(os.Environ(), "XDG_CONFIG_HOME="+xdg)
		out, err := cmd.CombinedOutput()
		return string(out), err
	}
	// Heartbeats arrive every second: one is enough.
	got, err := run("--context", "robonet", "sub", "rn.>", "--count", "1")
	if err != nil || !strings.Contains(got, "rn."+nd.Chevron().String()+".evt.") {
		t.Fatalf("nats --context robonet sub 'rn.>': %v\n%s", err, got)
	}
	kp, _ := mesh.ReadSeed(nd.OperatorSeedPath())
	pub, _ := kp.PublicKey()
	got, err = run("--no-context", "--server", "tls://"+addr, "--nkey", nd.OperatorSeedPath(),
		"--inbox-prefix", subjects.Inbox(pub), "--timeout", "3s", "sub", "rn.>", "--count", "1")
	if err == nil || !strings.Contains(got, "certificate") {
		t.Fatalf("nats without the node's certificate as CA: %v\n%s", err, got)
	}
}

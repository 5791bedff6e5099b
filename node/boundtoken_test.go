package node_test

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nkeys"

	"github.com/robonet-mesh/robonet/internal/testmesh"
	"github.com/robonet-mesh/robonet/mesh"
	"github.com/robonet-mesh/robonet/node"
	"github.com/robonet-mesh/robonet/subjects"
	"github.com/robonet-mesh/robonet/trust"
)

// logRecorder keeps the "err" attribute of every record a node logs, on
// top of its usual handler, so a test can read why a route was refused.
type logRecorder struct {
	slog.Handler
	mu   *sync.Mutex
	errs *[]string
}

func newLogRecorder(h slog.Handler) logRecorder {
	return logRecorder{Handler: h, mu: new(sync.Mutex), errs: new([]string)}
}

func (r logRecorder) Handle(ctx context.Context, rec slog.Record) error {
	rec.Attrs(func(a slog.Attr) bool {
		if a.Key == "err" {
			r.mu.Lock()
			*r.errs = append(*r.errs, a.Value.String())
			r.mu.Unlock()
		}
		return true
	})
	return r.Handler.Handle(ctx, rec)
}

func (r logRecorder) WithAttrs(as []slog.Attr) slog.Handler {
	return logRecorder{Handler: r.Handler.WithAttrs(as), mu: r.mu, errs: r.errs}
}
func (r logRecorder) WithGroup(g string) slog.Handler {
	return logRecorder{Handler: r.Handler.WithGroup(g), mu: r.mu, errs: r.errs}
}

func (r logRecorder) find(sub string) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, e := range *r.errs {
		if strings.Contains(e, sub) {
			return true
		}
	}
	return false
}

// startJoinerIn is startJoiner with the joiner's data dir (and so its key)
// chosen by the caller.
func startJoinerIn(t *testing.T, s *testmesh.Swarm, dir, token string, wait time.Duration) (*node.Node, error) {
	t.Helper()
	o := s.Options(0)
	o.DataDir, o.Cluster, o.Listen, o.Chevron, o.Name = dir, "127.0.0.1:0", "127.0.0.1:0", "", ""
	o.Join, o.Token = []string{s.Node(0).ClusterAddr()}, token
	// A node admitted by a token joins a formed swarm: it never founds
	// (colonize starts it without --founder). Node 0's Founder would make
	// Start write the founder record through this brand-new member.
	// ForceCore stays: the joiner is a core member, admitted on routes,
	// which is what the token tests are about.
	o.Founder = false
	n, err := node.New(o)
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithTimeout(context.Background(), wait)
	defer cancel()
	if err := n.Start(ctx); err != nil {
		return nil, err
	}
	t.Cleanup(n.Kill)
	return n, nil
}

func boundToken(c *mesh.Client, pub string) (node.TokenReply, error) {
	var tr node.TokenReply
	err := c.Query(context.Background(), subjects.QueryToken, node.TokenRequest{TTLMs: time.Minute.Milliseconds(), Pubkey: pub}, &tr)
	return tr, err
}

// A token bound to a node key (made on the joining host with
// EnsureIdentity: only the public key leaves it) admits that key and no
// other: a node with another key refuses to present it, and a stranger that
// presents it anyway is refused by the member, naming both keys, without
// using the token up. Tokens are not issued for keys the swarm knows.
func TestBoundTokenAdmitsOnlyItsKey(t *testing.T) {
	var rec logRecorder
	s := testmesh.Start(t, 2, func(i int, o *node.Options) {
		if i == 0 {
			rec = newLogRecorder(o.Logger.Handler())
			o.Logger = slog.New(rec)
		}
	})
	s.WaitAlive(20 * time.Second)
	c := s.Client(0)
	dir := t.TempDir()
	pub, created, err := node.EnsureIdentity(dir)
	if err != nil || !created {
		t.Fatalf("EnsureIdentity = %s, %v, %v", pub, created, err)
	}
	tr, err := boundToken(c, pub)
	if err != nil {
		t.Fatal(err)
	}
	if claims, err := trust.InspectToken(tr.Token); err != nil || tr.BoundTo != pub || claims.BoundTo != pub {
		t.Fatalf("reply %+v, token claims %+v, %v; want bound to %s", tr, claims, err, pub)
	}

	// A node with another key says so before it dials anyone.
	if _, err := startJoinerIn(t, s, t.TempDir(), tr.Token, 20*time.Second); err == nil || !strings.Contains(err.Error(), "bound to key "+trust.AbbrevKey(pub)) {
		t.Fatalf("joiner with another key: %v", err)
	}

	// A stranger presenting it anyway is refused by the member.
	kp, _ := nkeys.CreateUser()
	spub, _ := kp.PublicKey()
	cert, err := trust.NodeCertificate(kp, trust.RouteCredential{Token: tr.Token}, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	r, l := rogue(t, s.Node(0).ClusterAddr(), &tls.Config{MinVersion: tls.VersionTLS13, Certificates: []tls.Certificate{cert},
		ClientAuth: tls.RequireAnyClientCert, InsecureSkipVerify: true})
	want := fmt.Sprintf("bound to key %s, presented by key %s", trust.AbbrevKey(pub), trust.AbbrevKey(spub))
	testmesh.CheckFor(t, 20*time.Second, 50*time.Millisecond, func() error {
		if l.fails.Load() < 2 || !rec.find(want) {
			return fmt.Errorf("no refusal naming both keys (%q) yet", want)
		}
		return nil
	})
	if r.NumRoutes() != 0 {
		t.Fatalf("stranger with a token bound to another key routed in: %d routes", r.NumRoutes())
	}
	r.Shutdown()

	// The key it is bound to joins with it.
	n, err := startJoinerIn(t, s, dir, tr.Token, 60*time.Second)
	if err != nil {
		t.Fatalf("the bound key: %v", err)
	}
	if n.Pubkey() != pub {
		t.Fatalf("joiner key %s, want %s", n.Pubkey(), pub)
	}

	// No token for a member's key, a user's, or a key that is not a node key.
	testmesh.CheckFor(t, 20*time.Second, 50*time.Millisecond, func() error {
		if _, err := boundToken(c, pub); err == nil || !strings.Contains(err.Error(), "member") {
			return fmt.Errorf("token for a new member's key: %v", err)
		}
		return nil
	})
	for _, tc := range []struct{ pub, want string }{
		{s.Node(1).Pubkey(), "member"},
		{s.Node(0).OperatorKey(), "already known"},
		{"N" + pub[1:], "not a node key"},
		{pub + "A", "node key"},
	} {
		if tr, err := boundToken(c, tc.pub); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("token for %s: %+v, %v; want an error with %q", tc.pub, tr, err, tc.want)
		}
	}
	pingOK(t, c, 3)
}

// Revoking a key that never joined (rn_revoked takes a key with no
// registration) makes a token bound to it useless, and no new one is issued.
func TestRevokedKeyCannotJoinWithItsBoundToken(t *testing.T) {
	s := testmesh.Start(t, 2)
	s.WaitAlive(20 * time.Second)
	c := s.Client(0)
	dir := t.TempDir()
	pub, _, err := node.EnsureIdentity(dir)
	if err != nil {
		t.Fatal(err)
	}
	tr, err := boundToken(c, pub)
	if err != nil {
		t.Fatal(err)
	}
	ids, err := c.Identities(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if err := ids.Revoke(context.Background(), pub, "", "colonize aborted", c.Signer().PublicKey(), time.Now()); err != nil {
		t.Fatalf("revoke a key that is not a member: %v", err)
	}
	testmesh.CheckFor(t, 20*time.Second, 50*time.Millisecond, func() error {
		for _, nd := range s.Live() {
			if !nd.IsRevoked(pub) {
				return fmt.Errorf("node %s does not hold %s revoked yet", nd.Chevron(), pub)
			}
		}
		return nil
	})
	if _, err := startJoinerIn(t, s, dir, tr.Token, 20*time.Second); err == nil {
		t.Fatal("a revoked key joined with its bound token")
	}
	if _, err := boundToken(c, pub); err == nil || !strings.Contains(err.Error(), "revoked") {
		t.Fatalf("token for a revoked key: %v", err)
	}
	pingOK(t, c, 2)
}

// EnsureIdentity makes the node key a node would (0600 in a 0700 dir),
// returns the same key afterwards, reads the key of a node running on the
// dir without its lock, and leaves a corrupt seed alone.
func TestEnsureIdentity(t *testing.T) {
	t.Parallel()
	dir := filepath.Join(t.TempDir(), "new", "data")
	pub, created, err := node.EnsureIdentity(dir)
	if err != nil || !created || !nkeys.IsValidPublicUserKey(pub) {
		t.Fatalf("EnsureIdentity = %q, %v, %v", pub, created, err)
	}
	for path, want := range map[string]os.FileMode{dir: 0o700, filepath.Join(dir, node.NodeSeedFile): 0o600} {
		if st, err := os.Stat(path); err != nil || st.Mode().Perm() != want {
			t.Fatalf("%s: %v, %v; want mode %v", path, st.Mode(), err, want)
		}
	}
	if again, created, err := node.EnsureIdentity(dir); err != nil || created || again != pub {
		t.Fatalf("second EnsureIdentity = %q, %v, %v; want %q, false", again, created, err, pub)
	}

	// Beside a running node, whose data dir is locked.
	s := testmesh.Start(t, 1)
	running := s.Options(0).DataDir
	if got, created, err := node.EnsureIdentity(running); err != nil || created || got != s.Node(0).Pubkey() {
		t.Fatalf("EnsureIdentity(running node's dir) = %q, %v, %v; want %q", got, created, err, s.Node(0).Pubkey())
	}

	bad := t.TempDir()
	seed := filepath.Join(bad, node.NodeSeedFile)
	if err := os.WriteFile(seed, []byte("not a seed\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, _, err := node.EnsureIdentity(bad); err == nil {
		t.Fatal("a corrupt seed was accepted")
	}
	if b, _ := os.ReadFile(seed); string(b) != "not a seed\n" {
		t.Fatalf("corrupt seed replaced by %q", b)
	}
	file := filepath.Join(bad, "file")
	_ = os.WriteFile(file, nil, 0o600)
	if _, _, err := node.EnsureIdentity(file); !errors.Is(err, node.ErrDataDir) {
		t.Fatalf("EnsureIdentity(a file) = %v, want %v", err, node.ErrDataDir)
	}
}

// TestTokenJoinersAdmitEachOther: a node admitted by a token holds no
// secret, so it cannot check the next newcomer's token itself; the use the
// admitting member recorded admits the newcomer on its routes too. Two
// colonized hosts in a row need exactly this: every member sees both alive.
func TestTokenJoinersAdmitEachOther(t *testing.T) {
	s := testmesh.Start(t, 2)
	s.WaitAlive(20 * time.Second)
	c := s.Client(0)
	var joiners []*node.Node
	for range 2 {
		var tr node.TokenReply
		if err := c.Query(context.Background(), subjects.QueryToken, node.TokenRequest{TTLMs: time.Minute.Milliseconds()}, &tr); err != nil {
			t.Fatal(err)
		}
		j, err := startJoiner(t, s, tr.Token, 60*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		joiners = append(joiners, j)
	}
	testmesh.CheckFor(t, 30*time.Second, 50*time.Millisecond, func() error {
		for _, nd := range append(s.Live(), joiners...) {
			if got := alive(nd); got != 4 {
				return fmt.Errorf("node %s sees %d alive, want 4", nd.Chevron(), got)
			}
		}
		return nil
	})
}

package leafnode_test

import (
	"crypto/rand"
	"crypto/tls"
	"fmt"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nkeys"

	"github.com/robonet-mesh/robonet/internal/testmesh"
	"github.com/robonet-mesh/robonet/leafnode"
	"github.com/robonet-mesh/robonet/subjects"
	"github.com/robonet-mesh/robonet/trust"
)

// These tests run real embedded nats-servers (no robonet node) to pin down
// how the options this package builds behave on the wire.

// auth admits everything; leaf connections get perms (nil: none) and have
// their CONNECT's user recorded.
type auth struct {
	perms *server.Permissions
	mu    sync.Mutex
	users []string
}

func (a *auth) Check(c server.ClientAuthentication) bool {
	if c.Kind() == server.LEAF {
		a.mu.Lock()
		a.users = append(a.users, c.GetOpts().Username+":"+c.GetOpts().Password)
		a.mu.Unlock()
		c.RegisterUser(&server.User{Username: "leaf", Permissions: a.perms})
		return true
	}
	c.RegisterUser(&server.User{Username: "client"})
	return true
}

func startServer(t *testing.T, o *server.Options) *server.Server {
	t.Helper()
	o.Host, o.Port, o.NoSigs, o.NoLog = "127.0.0.1", server.RANDOM_PORT, true, true
	s, err := server.NewServer(o)
	if err != nil {
		t.Fatal(err)
	}
	s.Start()
	if !s.ReadyForConnections(10 * time.Second) {
		t.Fatalf("server %s not ready", o.ServerName)
	}
	t.Cleanup(func() { s.Shutdown(); s.WaitForShutdown() })
	return s
}

func leafAddr(t *testing.T, s *server.Server) string {
	t.Helper()
	v, err := s.Varz(nil)
	if err != nil {
		t.Fatal(err)
	}
	return "127.0.0.1:" + strconv.Itoa(v.LeafNode.Port)
}

func connect(t *testing.T, s *server.Server) *nats.Conn {
	t.Helper()
	nc, err := nats.Connect(s.ClientURL())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	return nc
}

func waitLeafs(t *testing.T, s *server.Server, n int) {
	t.Helper()
	testmesh.CheckFor(t, 10*time.Second, 20*time.Millisecond, func() error {
		if got := s.NumLeafNodes(); got != n {
			return fmt.Errorf("%s has %d leaf connections, want %d", s.Name(), got, n)
		}
		return nil
	})
}

// chev parses a chevron the test spells.
func chev(t testing.TB, c string) subjects.Chevron {
	t.Helper()
	v, err := subjects.Parse(c)
	if err != nil {
		t.Fatal(err)
	}
	return v
}

// TestChildPermissionsDirections registers ChildPermissions on a hub's leaf
// connection and checks, subject by subject, what crosses which way: the
// leaf user's publish allow-list is what the child sends up, its subscribe
// allow-list what the hub sends down (the hub's server reverses them for
// the accepting side).
func TestChildPermissionsDirections(t *testing.T) {
	child := chev(t, "3.12.7")
	a := &auth{perms: leafnode.ChildPermissions(child, "rn-3-12-1")}
	hub := startServer(t, &server.Options{ServerName: "hub", Cluster: server.ClusterOpts{Name: "rn-3-12-1"},
		LeafNode: server.LeafNodeOpts{Host: "127.0.0.1", Port: server.RANDOM_PORT}, CustomClientAuthentication: a})
	u, _ := url.Parse("nats-leaf://" + leafAddr(t, hub))
	spoke := startServer(t, &server.Options{ServerName: "spoke", Cluster: server.ClusterOpts{Name: "rn-3-12-7"},
		LeafNode: server.LeafNodeOpts{ReconnectInterval: 50 * time.Millisecond, Remotes: []*server.RemoteLeafOpts{{URLs: []*url.URL{u}}}}})
	waitLeafs(t, hub, 1)
	ch, cs := connect(t, hub), connect(t, spoke)
	for _, tc := range []struct {
		subj string
		up   bool // child → hub
		want bool
	}{
		{"_rn.inbox.UABC.1", true, true},
		{"rn.fed.3.cmd.ping", true, true},
		{"rn.fed.3.12.cmd.ping", true, true},
		{"rn.fed.js.3.12.7.S.abc", true, true},
		{"rn.dir.3.12.7.summary", true, true},
		{"rn.dir.3.12.8.summary", true, false},
		{"rn.3.12.7.1.evt.join", true, true},
		{"rn.3.12.7.1.evt.hb", true, false},
		{"rn.3.12.8.1.evt.join", true, false},
		{"rn.cmd.ping", true, false},
		{"rn.3.12.cmd.ping", true, false},
		{"rn.3.12.7.cmd.ping", true, false},
		{"rn.3.12.1.1.cmd.ping", true, false},
		{"rn.sys.token", true, false},
		{"$JS.rn-3-12-1.API.INFO", true, true},
		{"$JS.rn-3-12-9.API.INFO", true, false},
		{"$JSC.R.abc", true, true},
		{"$JS.FC.S.x", true, true},

		{"_rn.inbox.UDEF.2", false, true},
		{"rn.fed.3.12.7.cmd.ping", false, true},
		{"rn.dir.3.12.1.summary", false, true},
		{"$JS.rn-3-12-7.API.INFO", false, true},
		{"$JS.rn-3-12-8.API.INFO", false, false},
		{"$JS.ACK.S.x", false, true},
		{"rn.cmd.ping", false, false},
		{"rn.3.12.7.cmd.ping", false, false},
		{"rn.3.12.7.1.cmd.ping", false, false},
		{"rn.3.12.1.1.evt.hb", false, false},
		{"rn.3.12.1.1.evt.join", false, false},
		{"rn.sys.nodes", false, false},
	} {
		from, to, dir := cs, ch, "up"
		if !tc.up {
			from, to, dir = ch, cs, "down"
		}
		if got := testmesh.Crosses(t, from, to, tc.subj); got != tc.want {
			t.Errorf("%s %s: crossed=%v, want %v", dir, tc.subj, got, tc.want)
		}
	}
	// The reverse spelling (publish = what the hub sends) would let the
	// child send hb here; the assertions above rule it out.
}

// TestSpokeDeniesOnTheWire runs a hub that allows everything, so only the
// spoke's own DenyImports/DenyExports decide.
func TestSpokeDeniesOnTheWire(t *testing.T) {
	child := chev(t, "3.12.7")
	hub := startServer(t, &server.Options{ServerName: "hub", Cluster: server.ClusterOpts{Name: "rn-3-12-1"},
		LeafNode: server.LeafNodeOpts{Host: "127.0.0.1", Port: server.RANDOM_PORT}, CustomClientAuthentication: &auth{}})
	u, _ := url.Parse("nats-leaf://" + leafAddr(t, hub))
	spoke := startServer(t, &server.Options{ServerName: "spoke", Cluster: server.ClusterOpts{Name: "rn-3-12-7"},
		LeafNode: server.LeafNodeOpts{ReconnectInterval: 50 * time.Millisecond, Remotes: []*server.RemoteLeafOpts{{URLs: []*url.URL{u},
			DenyImports: leafnode.SpokeDenies(child), DenyExports: leafnode.SpokeDenies(child)}}}})
	waitLeafs(t, hub, 1)
	ch, cs := connect(t, hub), connect(t, spoke)
	for _, tc := range []struct {
		subj string
		want bool
	}{
		{"rn.fed.3.12.7.cmd.ping", true},
		{"rn.fed.3.cmd.ping", true},
		{"rn.cmd.ping", false},
		{"rn.3.12.7.cmd.ping", false},
		{"rn.3.12.7.2.cmd.ping", false},
		{"rn.3.12.7.2.evt.hb", false},
	} {
		for _, up := range []bool{true, false} {
			from, to := cs, ch
			if !up {
				from, to = ch, cs
			}
			if got := testmesh.Crosses(t, from, to, tc.subj); got != tc.want {
				t.Errorf("%s (up=%v): crossed=%v, want %v", tc.subj, up, got, tc.want)
			}
		}
	}
}

// logCapture is a nats-server logger that keeps errors and warnings.
type logCapture struct {
	mu    sync.Mutex
	lines []string
}

func (l *logCapture) add(f string, v ...any) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.lines = append(l.lines, fmt.Sprintf(f, v...))
}
func (l *logCapture) Noticef(string, ...any)    {}
func (l *logCapture) Debugf(string, ...any)     {}
func (l *logCapture) Tracef(string, ...any)     {}
func (l *logCapture) Warnf(f string, v ...any)  { l.add(f, v...) }
func (l *logCapture) Errorf(f string, v ...any) { l.add(f, v...) }
func (l *logCapture) Fatalf(f string, v ...any) { l.add(f, v...) }

func (l *logCapture) count(sub string) int {
	l.mu.Lock()
	defer l.mu.Unlock()
	n := 0
	for _, s := range l.lines {
		if strings.Contains(s, sub) {
			n++
		}
	}
	return n
}

func nodeKey(t *testing.T) (nkeys.KeyPair, string, []byte) {
	t.Helper()
	kp, err := nkeys.CreateUser()
	if err != nil {
		t.Fatal(err)
	}
	pub, _ := kp.PublicKey()
	seed, _ := kp.Seed()
	return kp, pub, seed
}

// TestSpokeAcceptsOnlyTheIssuingHub links a spoke built by Spoke.Remote to
// a hub built by Hub.Apply over TLS, and shows the spoke refusing a hub
// whose certificate does not prove the token's link key: the token (the
// password) is never sent to it.
func TestSpokeAcceptsOnlyTheIssuingHub(t *testing.T) {
	secret := make([]byte, trust.SecretSize)
	_, _ = rand.Read(secret)
	other := make([]byte, trust.SecretSize)
	_, _ = rand.Read(other)
	for _, tc := range []struct {
		name    string
		hubKey  []byte // the secret the hub's certificate proves
		linkUp  bool
		wantErr bool
	}{
		{"issuing hub", secret, true, false},
		{"another swarm's hub", other, false, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			hkp, hpub, _ := nodeKey(t)
			hcert, err := trust.NodeCertificate(hkp, trust.RouteCredential{Proof: trust.RouteProof(trust.FedLinkKey(tc.hubKey), hpub)}, time.Now())
			if err != nil {
				t.Fatal(err)
			}
			a := &auth{}
			so := &server.Options{ServerName: "hub", Cluster: server.ClusterOpts{Name: "rn-3-12-1"}, CustomClientAuthentication: a}
			if err := (leafnode.Hub{Listen: "127.0.0.1:0", Certificate: func() (*tls.Certificate, error) { return &hcert, nil }}).Apply(so); err != nil {
				t.Fatal(err)
			}
			hub := startServer(t, so)
			skp, _, seed := nodeKey(t)
			scert, err := trust.NodeCertificate(skp, trust.RouteCredential{}, time.Now())
			if err != nil {
				t.Fatal(err)
			}
			tok, _, err := trust.IssueFedToken(secret, trust.FedSpec{Hub: chev(t, "3.12.1")}, time.Hour, time.Now())
			if err != nil {
				t.Fatal(err)
			}
			r, err := leafnode.Spoke{Parents: []string{leafAddr(t, hub)}, Prefix: chev(t, "3.12.7"), Token: tok, Seed: seed, Certificate: scert}.Remote()
			if err != nil {
				t.Fatal(err)
			}
			spo := &server.Options{ServerName: "spoke", Cluster: server.ClusterOpts{Name: "rn-3-12-7"},
				LeafNode: server.LeafNodeOpts{ReconnectInterval: 50 * time.Millisecond, Remotes: []*server.RemoteLeafOpts{r}}}
			spoke := startServer(t, spo)
			logs := &logCapture{}
			spoke.SetLoggerV2(logs, false, false, false)
			if tc.linkUp {
				waitLeafs(t, hub, 1)
				waitLeafs(t, spoke, 1)
				a.mu.Lock()
				users := append([]string(nil), a.users...)
				a.mu.Unlock()
				if len(users) == 0 || users[0] != "3.12.7:"+tok {
					t.Fatalf("hub saw leaf users %q, want the prefix and the token", users)
				}
				return
			}
			// Refused: wait until the spoke has refused the hub's
			// certificate twice, then nothing may have reached the hub.
			testmesh.CheckFor(t, 10*time.Second, 20*time.Millisecond, func() error {
				if n := logs.count(leafnode.ErrHubCert.Error()); n < 2 {
					return fmt.Errorf("spoke logged %d refusals of the hub's certificate", n)
				}
				return nil
			})
			if hub.NumLeafNodes() != 0 || spoke.NumLeafNodes() != 0 {
				t.Fatal("a spoke linked to a hub that does not prove the token's link key")
			}
			a.mu.Lock()
			defer a.mu.Unlock()
			if len(a.users) != 0 {
				t.Fatalf("the token reached a foreign hub: %q", a.users)
			}
		})
	}
}

func TestSpokeRemote(t *testing.T) {
	_, _, seed := nodeKey(t)
	secret := make([]byte, trust.SecretSize)
	tok, _, err := trust.IssueFedToken(secret, trust.FedSpec{Hub: chev(t, "3.12.1")}, time.Hour, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	ok := leafnode.Spoke{Parents: []string{"hub1:7422", "nats-leaf://hub2:7422"}, Prefix: chev(t, "3.12.7"), Token: tok, Seed: seed}
	r, err := ok.Remote()
	if err != nil {
		t.Fatal(err)
	}
	if len(r.URLs) != 2 || r.URLs[1].Host != "hub2:7422" || r.URLs[0].User.Username() != "3.12.7" || !r.IgnoreDiscoveredServers ||
		r.LocalAccount != "$G" || !r.TLS || r.Nkey != string(seed) || len(r.DenyImports) == 0 || len(r.DenyExports) == 0 {
		t.Fatalf("remote %+v", r)
	}
	if p, _ := r.URLs[0].User.Password(); p != tok {
		t.Fatal("token is not the password")
	}
	for name, sp := range map[string]leafnode.Spoke{
		"no parents":   {Prefix: ok.Prefix, Token: tok, Seed: seed},
		"bad parent":   {Parents: []string{"hub1"}, Prefix: ok.Prefix, Token: tok, Seed: seed},
		"node chevron": {Parents: ok.Parents, Prefix: chev(t, "3.12.7.1"), Token: tok, Seed: seed},
		"join token":   {Parents: ok.Parents, Prefix: ok.Prefix, Token: "rntok_AQ", Seed: seed},
		"no seed":      {Parents: ok.Parents, Prefix: ok.Prefix, Token: tok},
	} {
		if _, err := sp.Remote(); err == nil {
			t.Errorf("%s: no error", name)
		}
	}
	_ = subjects.Root
}

package node_test

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nkeys"

	"github.com/robonet-mesh/robonet/internal/testmesh"
	"github.com/robonet-mesh/robonet/mesh"
	"github.com/robonet-mesh/robonet/node"
	"github.com/robonet-mesh/robonet/subjects"
	"github.com/robonet-mesh/robonet/trust"
	"github.com/robonet-mesh/robonet/wire"
)

// pingOK asserts the swarm still answers: legitimate traffic keeps flowing
// whatever an attack did.
func pingOK(t *testing.T, c *mesh.Client, want int) {
	t.Helper()
	testmesh.CheckFor(t, 10*time.Second, 100*time.Millisecond, func() error {
		res, err := c.Gather(context.Background(), mesh.GatherRequest{Selector: "all", Verb: "ping", Timeout: 3 * time.Second}, nil)
		if err != nil {
			return err
		}
		if res.Summary.OK != want {
			return errors.New(res.Summary.Line)
		}
		return nil
	})
}

// countingLogger counts a rogue server's route failures.
type countingLogger struct{ fails atomic.Int64 }

func (l *countingLogger) Noticef(f string, v ...any) { l.count(f, v) }
func (l *countingLogger) Warnf(f string, v ...any)   { l.count(f, v) }
func (l *countingLogger) Fatalf(f string, v ...any)  { l.count(f, v) }
func (l *countingLogger) Debugf(f string, v ...any)  { l.count(f, v) }
func (l *countingLogger) Tracef(string, ...any)      {}
func (l *countingLogger) Errorf(f string, v ...any)  { l.count(f, v) }
func (l *countingLogger) count(f string, v []any) {
	msg := strings.ToLower(fmt.Sprintf(f, v...))
	if strings.Contains(msg, "route") && (strings.Contains(msg, "error") || strings.Contains(msg, "closed")) {
		l.fails.Add(1)
	}
}

// rogue starts a nats-server outside the swarm that routes to addr with
// the given TLS (nil: plain).
func rogue(t *testing.T, addr string, tc *tls.Config) (*server.Server, *countingLogger) {
	t.Helper()
	route, err := url.Parse("nats-route://" + addr)
	if err != nil {
		t.Fatal(err)
	}
	o := &server.Options{ServerName: "rogue", Host: "127.0.0.1", Port: -1, NoSigs: true, Routes: []*url.URL{route}}
	o.Cluster.Name = "test"
	o.Cluster.Host, o.Cluster.Port = "127.0.0.1", -1
	o.Cluster.TLSConfig, o.Cluster.TLSTimeout = tc, 2
	o.Cluster.ConnectRetries = 100
	r, err := server.NewServer(o)
	if err != nil {
		t.Fatal(err)
	}
	l := &countingLogger{}
	r.SetLoggerV2(l, true, false, false)
	r.Start()
	t.Cleanup(r.Shutdown)
	return r, l
}

func rogueTLS(t *testing.T, cred trust.RouteCredential) *tls.Config {
	t.Helper()
	kp, _ := nkeys.CreateServer()
	cert, err := trust.NodeCertificate(kp, cred, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	return &tls.Config{MinVersion: tls.VersionTLS13, Certificates: []tls.Certificate{cert},
		ClientAuth: tls.RequireAnyClientCert, InsecureSkipVerify: true}
}

// A process that is not a member cannot route into the swarm: not without
// TLS, not with a node certificate that shows nothing, not with a proof
// under another swarm's secret; nor can a node started with that secret
// join. Unauthenticated clients and unknown keys are refused. The swarm
// keeps answering throughout.
func TestStrangersCannotRouteOrConnect(t *testing.T) {
	s := testmesh.Start(t, 2)
	s.WaitAlive(20 * time.Second)
	member := s.Node(0)
	addr := member.ClusterAddr()

	otherSecret, _ := trust.GenerateSecret()
	otherRaw, _ := trust.ParseSecret(otherSecret)
	kp, _ := nkeys.CreateServer()
	pub, _ := kp.PublicKey()
	for _, tc := range []struct {
		name string
		tls  *tls.Config
	}{
		{"plain", nil},
		{"no credential", rogueTLS(t, trust.RouteCredential{})},
		{"another swarm's proof", rogueTLS(t, trust.RouteCredential{Proof: trust.RouteProof(otherRaw, pub)})},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r, l := rogue(t, addr, tc.tls)
			testmesh.CheckFor(t, 20*time.Second, 50*time.Millisecond, func() error {
				if l.fails.Load() < 2 {
					return errors.New("rogue has not tried twice yet")
				}
				return nil
			})
			if r.NumRoutes() != 0 || slices.Contains(member.RoutedServers(), "rogue") {
				t.Fatalf("rogue routed in: %d routes; member routes %v", r.NumRoutes(), member.RoutedServers())
			}
		})
	}

	// A node with another swarm's secret gives up with a clear error.
	o := s.Options(0)
	o.DataDir, o.Cluster, o.Listen, o.Chevron = t.TempDir(), "127.0.0.1:0", "127.0.0.1:0", ""
	o.Join, o.Token = []string{addr}, otherSecret
	n, err := node.New(o)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if err := n.Start(ctx); err == nil || !strings.Contains(err.Error(), "--token") {
		t.Fatalf("node with another swarm's secret: %v", err)
	}

	// Clients: no key, an unknown key.
	if nc, err := nats.Connect(member.ClientURL()); err == nil {
		nc.Close()
		t.Fatal("a client without a key connected")
	}
	stranger, _ := nkeys.CreateUser()
	spub, _ := stranger.PublicKey()
	if nc, err := nats.Connect(member.ClientURL(), nats.Nkey(spub, stranger.Sign)); err == nil {
		nc.Close()
		t.Fatal("a client with an unknown key connected")
	}
	pingOK(t, s.Client(0), 2)
}

// signed sends body on subj signed by signer through c's connection and
// returns the reply (nil after timeout).
func signed(t *testing.T, nc *nats.Conn, signer *mesh.Signer, subj string, body []byte, timeout time.Duration) (*wire.Result, *nats.Msg) {
	t.Helper()
	m := &nats.Msg{Subject: subj, Data: body}
	if signer != nil {
		if err := signer.SignMsg(m); err != nil {
			t.Fatal(err)
		}
	}
	return send(t, nc, m, timeout), m
}

func send(t *testing.T, nc *nats.Conn, m *nats.Msg, timeout time.Duration) *wire.Result {
	t.Helper()
	m.Reply = ""
	reply, err := nc.RequestMsg(m, timeout)
	if errors.Is(err, nats.ErrTimeout) {
		return nil
	}
	if err != nil {
		t.Fatal(err)
	}
	var res wire.Result
	if err := json.Unmarshal(reply.Data, &res); err != nil {
		t.Fatalf("reply %s", reply.Data)
	}
	return &res
}

func denied(t *testing.T, what string, res *wire.Result, want string) {
	t.Helper()
	if res == nil || res.Status != wire.StatusDenied && res.Status != wire.StatusError || res.Error == nil || !strings.Contains(res.Error.Msg, want) {
		t.Fatalf("%s: %+v, want refused with %q", what, res, want)
	}
}

// Forged, replayed, unsigned commands and ones from unknown keys or below
// the verb's tier are refused with a reason (replays silently), counted,
// and the node keeps serving.
func TestForgedReplayedAndUnderTierCommandsAreRefused(t *testing.T) {
	s := testmesh.Start(t, 1, func(i int, o *node.Options) { o.ExecAllow = []string{"true"} })
	c := s.Client(0)
	nc := c.Conn()
	ping, _ := json.Marshal(wire.Request{Verb: "ping", ID: "x"})
	if res, _ := signed(t, nc, c.Signer(), "rn.1.cmd.ping", ping, 5*time.Second); res == nil || res.Status != wire.StatusOK {
		t.Fatalf("signed ping: %+v", res)
	}

	// A signature over other bytes.
	m := &nats.Msg{Subject: "rn.1.cmd.ping", Data: []byte(`{"verb":"ping","id":"a"}`)}
	if err := c.Signer().SignMsg(m); err != nil {
		t.Fatal(err)
	}
	m.Data = []byte(`{"verb":"ping","id":"b"}`)
	denied(t, "forged", send(t, nc, m, 5*time.Second), "signature")

	// The same signed command twice: the second is dropped without a word.
	_, orig := signed(t, nc, c.Signer(), "rn.1.cmd.ping", ping, 5*time.Second)
	if res := send(t, nc, orig, time.Second); res != nil {
		t.Fatalf("replay answered: %+v", res)
	}

	// Unsigned.
	res, _ := signed(t, nc, nil, "rn.1.cmd.ping", ping, 5*time.Second)
	denied(t, "unsigned", res, "unsigned")

	// Validly signed by a key the swarm does not know (sent through the
	// admin's connection, which may publish anything).
	stranger, _ := nkeys.CreateUser()
	ss, err := mesh.NewSigner(stranger, filepath.Join(t.TempDir(), "c"), 0)
	if err != nil {
		t.Fatal(err)
	}
	res, _ = signed(t, nc, ss, "rn.1.cmd.ping", ping, 5*time.Second)
	denied(t, "unknown key", res, "not a user or node")

	// An observer's key on exec (tier 2) is refused by the node itself,
	// whatever NATS let through.
	ids, err := c.Identities(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	obs, _ := nkeys.CreateUser()
	opub, _ := obs.PublicKey()
	if _, err := ids.AddUser(context.Background(), "olga", wire.RoleObserver, opub, "", time.Now()); err != nil {
		t.Fatal(err)
	}
	osig, _ := mesh.NewSigner(obs, filepath.Join(t.TempDir(), "o"), 0)
	exec, _ := json.Marshal(wire.Request{Verb: "exec", Args: json.RawMessage(`{"argv":["true"]}`)})
	testmesh.CheckFor(t, 10*time.Second, 50*time.Millisecond, func() error {
		res, _ := signed(t, nc, osig, "rn.1.cmd.exec", exec, 5*time.Second)
		if res == nil || res.Error == nil || !strings.Contains(res.Error.Msg, "needs trust tier 2") {
			return errors.New("not yet refused for its tier")
		}
		return nil
	})

	rep := s.Node(0).TrustReport(time.Now())
	ct := rep.Counters
	if ct.BadSig < 1 || ct.Replays < 1 || ct.Unsigned < 1 || ct.UnknownKey < 1 || ct.Denied < 4 {
		t.Fatalf("counters %+v", ct)
	}
	pingOK(t, c, 1)
}

// Observers may watch and ask read-only verbs, nothing else; nobody may
// listen on another identity's inbox; removing a user disconnects it.
func TestPermissionsAndUserRemoval(t *testing.T) {
	s := testmesh.Start(t, 1)
	c := s.Client(0)
	ids, err := c.Identities(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	obs, _ := nkeys.CreateUser()
	opub, _ := obs.PublicKey()
	if _, err := ids.AddUser(context.Background(), "olga", wire.RoleObserver, opub, "", time.Now()); err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	var perr []string
	closed := make(chan time.Time, 1)
	var onc *nats.Conn
	testmesh.CheckFor(t, 10*time.Second, 50*time.Millisecond, func() error {
		var err error
		onc, err = nats.Connect(s.Node(0).ClientURL(), nats.Nkey(opub, obs.Sign),
			nats.CustomInboxPrefix(subjects.Inbox(opub)), nats.NoReconnect(),
			nats.ErrorHandler(func(_ *nats.Conn, _ *nats.Subscription, err error) {
				mu.Lock()
				perr = append(perr, err.Error())
				mu.Unlock()
			}),
			nats.ClosedHandler(func(*nats.Conn) { closed <- time.Now() }))
		return err
	})
	defer onc.Close()
	osig, _ := mesh.NewSigner(obs, filepath.Join(t.TempDir(), "o"), 0)
	observer := mesh.NewClient(onc).WithSigner(osig).WithVerify()
	pingOK(t, observer, 1)

	violations := func(want int) {
		t.Helper()
		testmesh.CheckFor(t, 5*time.Second, 20*time.Millisecond, func() error {
			mu.Lock()
			defer mu.Unlock()
			if len(perr) < want {
				return errors.New("no permissions violation yet")
			}
			return nil
		})
	}
	exec, _ := json.Marshal(wire.Request{Verb: "exec", Args: json.RawMessage(`{"argv":["true"]}`)})
	if res, _ := signed(t, onc, osig, "rn.1.cmd.exec", exec, time.Second); res != nil {
		t.Fatalf("observer's exec answered: %+v", res)
	}
	violations(1)
	if _, err := onc.Subscribe(subjects.Inbox(s.Node(0).Pubkey())+".>", func(*nats.Msg) {}); err != nil {
		t.Fatal(err)
	}
	violations(2)
	mu.Lock()
	if !strings.Contains(strings.ToLower(strings.Join(perr, " ")), "permissions violation") {
		t.Fatalf("errors: %v", perr)
	}
	mu.Unlock()

	// The node's own key may not listen on the operator's inbox either.
	nkp, err := mesh.ReadSeed(filepath.Join(s.Node(0).DataDir(), node.NodeSeedFile))
	if err != nil {
		t.Fatal(err)
	}
	npub, _ := nkp.PublicKey()
	nerr := make(chan error, 1)
	nnc, err := nats.Connect(s.Node(0).ClientURL(), nats.Nkey(npub, nkp.Sign), nats.CustomInboxPrefix(subjects.Inbox(npub)),
		nats.ErrorHandler(func(_ *nats.Conn, _ *nats.Subscription, err error) { nerr <- err }))
	if err != nil {
		t.Fatal(err)
	}
	defer nnc.Close()
	opKey, _ := c.KeyPair().PublicKey()
	if _, err := nnc.Subscribe(subjects.Inbox(opKey)+".>", func(*nats.Msg) {}); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-nerr:
		if !strings.Contains(strings.ToLower(err.Error()), "permissions violation") {
			t.Fatalf("node key subscribing to another inbox: %v", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("a node key subscribed to the operator's inbox")
	}

	// Removal: the observer's connection closes at once.
	start := time.Now()
	if _, err := ids.RemoveUser(context.Background(), "olga", "", time.Now()); err != nil {
		t.Fatal(err)
	}
	select {
	case at := <-closed:
		t.Logf("user removed -> connection closed in %v", at.Sub(start))
	case <-time.After(10 * time.Second):
		t.Fatal("removed user still connected after 10s")
	}
	if nc, err := nats.Connect(s.Node(0).ClientURL(), nats.Nkey(opub, obs.Sign)); err == nil {
		nc.Close()
		t.Fatal("a removed user reconnected")
	}
}

// A new node is tier 0 in its peers' ledgers: exec (tier 2) from its key
// is refused.
func TestTierZeroNodeCannotExec(t *testing.T) {
	s := testmesh.Start(t, 2, func(i int, o *node.Options) { o.ExecAllow = []string{"true"} })
	s.WaitAlive(20 * time.Second)
	c := s.Client(0)
	signer := nodeSigner(t, s.Node(1))
	exec, _ := json.Marshal(wire.Request{Verb: "exec", Args: json.RawMessage(`{"argv":["true"]}`)})
	subj := "rn." + s.Node(0).Chevron().String() + ".cmd.exec"
	res, _ := signed(t, c.Conn(), signer, subj, exec, 5*time.Second)
	denied(t, "tier-0 node exec", res, "has tier 0")
}

// A second process holding a node's key forks its chain: it takes the
// last heartbeat it saw (headers are public on rn.>) and signs its own
// next one, while the node signs the real one. Every member sees two
// messages for one seq: the key is quarantined, the leader revokes it, and
// the members cut its routes within seconds.
func TestClonedNodeKeyIsRevoked(t *testing.T) {
	s := testmesh.Start(t, 3)
	s.WaitAlive(30 * time.Second)
	victim := s.Node(2)
	vpub, vsrv := victim.Pubkey(), victim.ServerName()
	started := forkNodeKey(t, s, 2)
	testmesh.CheckFor(t, 30*time.Second, 50*time.Millisecond, func() error {
		for _, i := range []int{0, 1} {
			if !s.Node(i).IsRevoked(vpub) {
				return errors.New("not revoked yet")
			}
			if slices.Contains(s.Node(i).RoutedServers(), vsrv) {
				return errors.New("still routed")
			}
		}
		return nil
	})
	t.Logf("fork published -> key revoked and routes cut on both members in %v", time.Since(started).Round(time.Millisecond))
	pingOK(t, s.Client(0), 2)
}

// startJoiner starts a node that joins s through node 0 with token, in a
// fresh data dir.
func startJoiner(t *testing.T, s *testmesh.Swarm, token string, wait time.Duration) (*node.Node, error) {
	t.Helper()
	return startJoinerIn(t, s, t.TempDir(), token, wait)
}

// A one-time token admits one node (its key may reuse it with every
// member), never a second one; an expired token admits nobody.
func TestOneTimeTokenAdmitsOneNode(t *testing.T) {
	s := testmesh.Start(t, 2)
	s.WaitAlive(20 * time.Second)
	c := s.Client(0)
	var tr node.TokenReply
	if err := c.Query(context.Background(), subjects.QueryToken, node.TokenRequest{TTLMs: time.Minute.Milliseconds()}, &tr); err != nil {
		t.Fatal(err)
	}
	if _, err := startJoiner(t, s, tr.Token, 60*time.Second); err != nil {
		t.Fatalf("first use of a token: %v", err)
	}
	// The members testmesh started see the joiner alive too.
	testmesh.CheckFor(t, 20*time.Second, 50*time.Millisecond, func() error {
		for _, nd := range s.Live() {
			if got := alive(nd); got != 3 {
				return fmt.Errorf("node %s sees %d alive, want 3", nd.Chevron(), got)
			}
		}
		return nil
	})
	if _, err := startJoiner(t, s, tr.Token, 20*time.Second); err == nil || !strings.Contains(err.Error(), "token") {
		t.Fatalf("second use of a token: %v", err)
	}
	raw, err := trust.ParseSecret(s.Secret())
	if err != nil {
		t.Fatal(err)
	}
	expired, _, err := trust.IssueToken(raw, time.Minute, time.Now().Add(-time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := startJoiner(t, s, expired, 20*time.Second); err == nil || !strings.Contains(err.Error(), "token") {
		t.Fatalf("expired token: %v", err)
	}
	pingOK(t, c, 3)
}

// alive counts the members nd sees alive.
func alive(nd *node.Node) int {
	k := 0
	for _, m := range nd.Members() {
		if m.State == wire.StateAlive {
			k++
		}
	}
	return k
}

// nodeSigner signs with nd's node key, continuing from a copy of its chain
// file (a fresh chain would fork at seq 1): the node's key, stolen, used
// through another connection.
func nodeSigner(t *testing.T, nd *node.Node) *mesh.Signer {
	t.Helper()
	kp, err := mesh.ReadSeed(filepath.Join(nd.DataDir(), node.NodeSeedFile))
	if err != nil {
		t.Fatal(err)
	}
	chain := filepath.Join(t.TempDir(), "n")
	b, err := os.ReadFile(filepath.Join(nd.DataDir(), node.ChainFile))
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(chain, b, 0o600); err != nil {
		t.Fatal(err)
	}
	signer, err := mesh.NewSigner(kp, chain, 0)
	if err != nil {
		t.Fatal(err)
	}
	return signer
}

package mesh_test

import (
	"context"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nkeys"

	"github.com/robonet-mesh/robonet/internal/testmesh"
	"github.com/robonet-mesh/robonet/mesh"
	"github.com/robonet-mesh/robonet/subjects"
	"github.com/robonet-mesh/robonet/wire"
)

// connect dials node 0 of s with its operator key and the given trust.
func connect(t *testing.T, s *testmesh.Swarm, known string, nodeKeys ...string) (*mesh.Client, []string) {
	t.Helper()
	var mu sync.Mutex
	var notices []string
	nd := s.Node(0)
	c, err := mesh.Connect(context.Background(), mesh.Options{Server: nd.ClientURL(), SeedFile: nd.OperatorSeedPath(),
		KnownNodes: known, NodeKeys: nodeKeys, Notice: func(n string) { mu.Lock(); notices = append(notices, n); mu.Unlock() }})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	return c, notices
}

// The member list counts only when the node that sends it proves a key the
// client trusts: the key pinned for the address on first use, or a key
// given (a local node's own). Another key is an error naming both keys and
// the file; a given key other than the node's is refused.
func TestQueryRepliesComeFromTheTrustedNodeKey(t *testing.T) {
	s := testmesh.Start(t, 1)
	nd := s.Node(0)
	known := filepath.Join(t.TempDir(), "known_nodes")
	addr, err := mesh.NodeAddr(nd.ClientURL())
	if err != nil {
		t.Fatal(err)
	}

	c, _ := connect(t, s, known)
	if _, err := c.Nodes(context.Background()); err != nil {
		t.Fatal(err)
	}
	data, err := os.ReadFile(known)
	if err != nil || !strings.Contains(string(data), addr+" "+nd.Pubkey()+"\n") || c.NodeKey() != nd.Pubkey() {
		t.Fatalf("after first use: node key %s, file %q (%v)", c.NodeKey(), data, err)
	}
	c2, _ := connect(t, s, known)
	if _, err := c2.Status(context.Background()); err != nil {
		t.Fatalf("second use: %v", err)
	}

	other := nodeKey(t)
	wrong := filepath.Join(t.TempDir(), "known_nodes")
	if err := mesh.OpenKnownNodes(wrong).Pin(addr, other); err != nil {
		t.Fatal(err)
	}
	c3, _ := connect(t, s, wrong)
	_, err = c3.Nodes(context.Background())
	var kc *mesh.NodeKeyChangedError
	if !errors.As(err, &kc) || kc.Pinned != other || kc.Got != nd.Pubkey() || kc.File != wrong || kc.Addr != addr {
		t.Fatalf("a node that is not the pinned one: %v", err)
	}

	c4, _ := connect(t, s, "", other)
	if _, err := c4.Nodes(context.Background()); !errors.Is(err, mesh.ErrNodeKey) || !strings.Contains(err.Error(), other) {
		t.Fatalf("a node that is not the given one: %v", err)
	}

	empty := filepath.Join(t.TempDir(), "known_nodes")
	c5, _ := connect(t, s, empty, nd.Pubkey())
	if _, err := c5.Nodes(context.Background()); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(empty); !os.IsNotExist(err) {
		t.Fatalf("a given key was pinned too: %v", err)
	}
}

// responder answers queries on a bare server as a node would: signed by
// its own key into the HCTH chain.
type responder struct {
	nc  *nats.Conn
	sig *mesh.Signer
	pub string
}

func newResponder(t *testing.T, url string) responder {
	t.Helper()
	kp, _ := nkeys.CreateUser()
	pub, _ := kp.PublicKey()
	sig, err := mesh.NewSigner(kp, filepath.Join(t.TempDir(), "chain"), 0)
	if err != nil {
		t.Fatal(err)
	}
	nc, err := nats.Connect(url)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	return responder{nc: nc, sig: sig, pub: pub}
}

func (r responder) answer(t *testing.T, reply string, v any) {
	data, _ := json.Marshal(v)
	out, _ := json.Marshal(wire.Reply{Data: data})
	m := &nats.Msg{Subject: reply, Data: out}
	if err := r.sig.SignMsg(m); err != nil {
		t.Error(err)
		return
	}
	// Flushed, so the next answer is published after this one reached
	// the server. The client may be done, and the test closing its
	// connections, by the time the flush returns.
	if err := r.nc.PublishMsg(m); err != nil && !errors.Is(err, nats.ErrConnectionClosed) {
		t.Errorf("answer %s from %s: %v", reply, r.pub, err)
	}
	if err := r.nc.Flush(); err != nil && !errors.Is(err, nats.ErrConnectionClosed) {
		t.Errorf("answer %s from %s: flush: %v", reply, r.pub, err)
	}
}

// Anyone who sees a query may answer its inbox first: a reply signed by a
// key that is not the connected node's is dropped and counted, and the
// client takes the node's own reply that follows. A query every node
// answers counts only answers signed by a member's registered key.
func TestForgedQueryRepliesAreDroppedWhileTheNodeAnswers(t *testing.T) {
	dir := t.TempDir()
	genuine := newResponderKeys(t)
	srv, err := server.NewServer(&server.Options{Host: "127.0.0.1", Port: -1, NoSigs: true, NoLog: true,
		ServerName: mesh.ServerName(genuine.pub), StoreDir: dir})
	if err != nil {
		t.Fatal(err)
	}
	srv.Start()
	t.Cleanup(srv.Shutdown)
	if !srv.ReadyForConnections(5 * time.Second) {
		t.Fatal("server not ready")
	}
	node := genuine.connect(t, srv.ClientURL())
	forger := newResponder(t, srv.ClientURL())
	second := newResponder(t, srv.ClientURL())

	ckp, _ := nkeys.CreateUser()
	csig, _ := mesh.NewSigner(ckp, filepath.Join(dir, "client.chain"), 0)
	cnc, err := nats.Connect(srv.ClientURL())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(cnc.Close)
	c := mesh.NewClient(cnc).WithSigner(csig).WithVerify().WithNodeKey(genuine.pub)

	real := []wire.Member{{Chevron: "1", Name: "rn1", Pubkey: genuine.pub, State: wire.StateAlive}, {Chevron: "2", Name: "rn2", Pubkey: second.pub, State: wire.StateAlive}}
	fake := []wire.Member{{Chevron: "1", Name: "evil", Pubkey: forger.pub, State: wire.StateAlive}}
	// The forger answers first; the node answers once the forgery is out.
	forged := make(chan struct{})
	if _, err := forger.nc.Subscribe(subjects.QueryAt(subjects.QueryNodes, srv.Name()), func(m *nats.Msg) {
		forger.answer(t, m.Reply, fake)
		close(forged)
	}); err != nil {
		t.Fatal(err)
	}
	if _, err := node.nc.Subscribe(subjects.QueryAt(subjects.QueryNodes, srv.Name()), func(m *nats.Msg) {
		<-forged
		node.answer(t, m.Reply, real)
	}); err != nil {
		t.Fatal(err)
	}
	for _, r := range []responder{forger, node.responder} {
		if err := r.nc.Flush(); err != nil {
			t.Fatal(err)
		}
	}
	ms, err := c.Nodes(context.Background())
	if err != nil || len(ms) != 2 || ms[0].Name != "rn1" {
		t.Fatalf("Nodes = %+v, %v; want the node's own list", ms, err)
	}
	if c.BadReplies() != 1 {
		t.Fatalf("BadReplies = %d, want the forgery counted", c.BadReplies())
	}

	// A query every node answers: the forger's answer first, then the members'.
	forged2 := make(chan struct{})
	if _, err := forger.nc.Subscribe(subjects.Query(subjects.QueryAlerts), func(m *nats.Msg) {
		forger.answer(t, m.Reply, map[string]string{"chevron": "1"})
		close(forged2)
	}); err != nil {
		t.Fatal(err)
	}
	if err := forger.nc.Flush(); err != nil {
		t.Fatal(err)
	}
	for _, r := range []responder{node.responder, second} {
		if _, err := r.nc.Subscribe(subjects.Query(subjects.QueryAlerts), func(m *nats.Msg) {
			<-forged2
			r.answer(t, m.Reply, map[string]string{"from": r.pub})
		}); err != nil {
			t.Fatal(err)
		}
		if err := r.nc.Flush(); err != nil {
			t.Fatal(err)
		}
	}
	got, err := c.QueryAll(context.Background(), subjects.QueryAlerts, nil, real, 5*time.Second)
	if err != nil || len(got.Answers) != 2 || got.Dropped != 1 {
		t.Fatalf("QueryAll = %+v, %v; want both members' answers and the forgery dropped", got, err)
	}
	for _, a := range got.Answers {
		var v map[string]string
		if json.Unmarshal(a.Data, &v) != nil || v["from"] != a.Key || (a.Key != genuine.pub && a.Key != second.pub) {
			t.Errorf("answer %+v", a)
		}
	}
}

// responderKeys is a responder whose key is made before its server exists
// (the server's name comes from the key).
type responderKeys struct {
	kp  nkeys.KeyPair
	pub string
}

func newResponderKeys(t *testing.T) responderKeys {
	kp, _ := nkeys.CreateUser()
	pub, _ := kp.PublicKey()
	return responderKeys{kp: kp, pub: pub}
}

type boundResponder struct{ responder }

func (k responderKeys) connect(t *testing.T, url string) boundResponder {
	t.Helper()
	sig, err := mesh.NewSigner(k.kp, filepath.Join(t.TempDir(), "chain"), 0)
	if err != nil {
		t.Fatal(err)
	}
	nc, err := nats.Connect(url)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	return boundResponder{responder{nc: nc, sig: sig, pub: k.pub}}
}

// A reply naming a chevron outside the expected set counts only when it is
// signed by the key the verified registry gives that chevron: a genuine
// member the set left out is reported (unexpected), while replies naming a
// chevron the registry does not know, or signed by another key than the
// registered one, are dropped and counted in the summary.
func TestGatherCountsOffListRepliesOnlyWithTheRegisteredKey(t *testing.T) {
	s := testmesh.Start(t, 2)
	s.WaitAlive(20 * time.Second)
	c := s.Client(0)
	mallory := s.User(0, "mallory", wire.RoleAdmin) // may publish anywhere, but is no node
	n1 := s.Node(1).Chevron().String()
	if _, err := mallory.Conn().Subscribe("rn.cmd.ping", func(m *nats.Msg) {
		for _, chev := range []string{"7", n1} {
			out, _ := json.Marshal(wire.Result{Chevron: chev, Name: "forged", Status: wire.StatusOK})
			r := &nats.Msg{Subject: m.Reply, Data: out}
			if err := mallory.Signer().SignMsg(r); err != nil {
				t.Error(err)
			}
			_ = mallory.Conn().PublishMsg(r)
		}
	}); err != nil {
		t.Fatal(err)
	}
	if err := mallory.Conn().Flush(); err != nil {
		t.Fatal(err)
	}
	members, err := c.Nodes(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	var set []wire.Member
	for _, m := range members {
		if m.Chevron == s.Node(0).Chevron().String() {
			set = append(set, m)
		}
	}
	// A member that never answers keeps the gather open for its timeout,
	// so every reply is in before the result is made.
	set = append(set, wire.Member{Chevron: "9", Name: "silent", Pubkey: nodeKey(t), State: wire.StateAlive})
	sel, _ := subjects.ParseSelector("all")
	res, err := c.GatherSet(context.Background(), mesh.GatherRequest{Selector: "all", Verb: "ping", Timeout: 2 * time.Second}, sel, set, nil)
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]mesh.NodeResult{}
	for _, r := range res.Results {
		got[r.Chevron] = r
	}
	if len(got) != 3 || got["9"].Status != mesh.StatusTimeout || got[n1].Status != mesh.StatusOK || !got[n1].Unexpected ||
		got[n1].Name != s.Node(1).Name() || got[s.Node(0).Chevron().String()].Status != mesh.StatusOK {
		t.Fatalf("results: %+v", res.Results)
	}
	if _, ok := got["7"]; ok {
		t.Fatal("a forged off-list reply was reported")
	}
	if res.Summary.Dropped != 2 || !strings.Contains(res.Summary.Line, "2 replies dropped") {
		t.Fatalf("summary: %+v", res.Summary)
	}
}

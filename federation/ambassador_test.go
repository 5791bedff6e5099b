package federation_test

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nkeys"
	"github.com/nats-io/nuid"

	"github.com/robonet-mesh/robonet/federation"
	"github.com/robonet-mesh/robonet/internal/testmesh"
	"github.com/robonet-mesh/robonet/mesh"
	"github.com/robonet-mesh/robonet/node"
	"github.com/robonet-mesh/robonet/subjects"
	"github.com/robonet-mesh/robonet/wire"
)

// The subjects an ambassador builds are valid by the server's own rules.
func TestFedSubjectsAreValidForTheServer(t *testing.T) {
	sw, _ := subjects.ParseSwarmPrefix("3.12.7")
	subs, err := subjects.FedCmdSubscriptions(sw)
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range subs {
		if !server.IsValidSubject(s) {
			t.Errorf("subscription %q is not a valid subject", s)
		}
	}
	for _, p := range []string{"3", "3.12", "3.12.7", "3.12.7.1"} {
		c, _ := subjects.Parse(p)
		s, err := subjects.FedCmd(c, "ping")
		if err != nil || !server.IsValidPublishSubject(s) {
			t.Errorf("FedCmd(%s) = %q, %v: not a valid publish subject", p, s, err)
		}
	}
	u, _ := subjects.FedUsers(sw)
	if !server.IsValidPublishSubject(u) || !server.IsValidSubject(subjects.FedUsersAll) {
		t.Errorf("users subjects %q / %q invalid", u, subjects.FedUsersAll)
	}
}

// One ambassador per swarm takes a federated command (a queue group),
// forwards it into the swarm and streams back a signed start naming every
// node it expects with its key, each node's reply verbatim (the node's own
// signature, for the request's id), and a signed done that accounts for
// every node. Filters, a node-level prefix, an exclusion and an unsigned
// command are handled; the minority side of a split swarm goes silent.
func TestAmbassadorStreamsEveryNodeAndADone(t *testing.T) {
	s := testmesh.Start(t, 3, testmesh.WithChevrons("3.12.7.1", "3.12.7.2", "3.12.7.3"),
		testmesh.WithCaps(nil, []string{"gpu"}, nil))
	s.WaitAlive(20 * time.Second)
	s.WaitLeader(20 * time.Second)
	ambs := startAmbassadors(t, s)
	admin := s.Client(0)
	keys := map[string]string{}
	for _, nd := range s.Live() {
		keys[nd.Chevron().String()] = nd.Pubkey()
	}

	id := nuid.Next()
	st := fedRequest(t, admin, "rn.fed.3.12.cmd.ping", nil, wire.Request{Verb: "ping", ID: id, TimeoutMs: 5000}, 10*time.Second, 300*time.Millisecond)
	if len(st.starts) != 1 || len(st.dones) != 1 || len(st.other) > 0 {
		t.Fatalf("want one start and one done (one ambassador), got %d starts, %d dones, %d other", len(st.starts), len(st.dones), len(st.other))
	}
	start, done := st.starts[0], st.dones[0]
	if start.Swarm != "3.12.7" || start.ID != id || start.Parts != 1 || len(start.Expected) != 3 {
		t.Fatalf("start: %+v", start)
	}
	for _, nd := range start.Expected {
		if keys[nd.Chevron] != nd.Pubkey || nd.State != wire.StateAlive {
			t.Fatalf("start lists %+v, registry key %s", nd, keys[nd.Chevron])
		}
	}
	// Start and done are signed by the ambassador's node, and it is the
	// node the records name.
	for _, signer := range st.signers {
		if signer != keys[start.Ambassador] || signer != keys[done.Ambassador] {
			t.Fatalf("stream signed by %s; ambassador %s has key %s", signer, start.Ambassador, keys[start.Ambassador])
		}
	}
	res := checkResults(t, st, id)
	for chev := range keys {
		if res[chev].Status != wire.StatusOK {
			t.Fatalf("node %s: %+v", chev, res[chev])
		}
	}
	if done.Answered != 3 || len(done.Offline) != 0 || len(done.Timeout) != 0 || done.Error != nil || done.RegistryRev == 0 {
		t.Fatalf("done: %+v", done)
	}
	if err := expectChevrons(done.Expected, "3.12.7.1", "3.12.7.2", "3.12.7.3"); err != nil {
		t.Fatalf("done expected: %v", err)
	}

	t.Run("filters narrow inside the prefix", func(t *testing.T) {
		st := fedRequest(t, admin, "rn.fed.3.12.cmd.ping", map[string]string{wire.HdrFedSelector: "3.12,caps=gpu"},
			wire.Request{Verb: "ping", TimeoutMs: 5000}, 10*time.Second, 100*time.Millisecond)
		if len(st.dones) != 1 || st.dones[0].Answered != 1 || len(st.results) != 1 {
			t.Fatalf("filtered: %d results, dones %+v", len(st.results), st.dones)
		}
		if err := expectChevrons(st.dones[0].Expected, "3.12.7.2"); err != nil {
			t.Fatal(err)
		}
	})
	t.Run("a node of the swarm by its chevron", func(t *testing.T) {
		st := fedRequest(t, admin, "rn.fed.3.12.7.3.cmd.info", nil, wire.Request{Verb: "info", TimeoutMs: 5000}, 10*time.Second, 100*time.Millisecond)
		if len(st.dones) != 1 || st.dones[0].Answered != 1 || len(st.results) != 1 {
			t.Fatalf("node-level: %d results, dones %+v", len(st.results), st.dones)
		}
		if err := expectChevrons(st.dones[0].Expected, "3.12.7.3"); err != nil {
			t.Fatal(err)
		}
	})
	t.Run("an excluded swarm stays silent", func(t *testing.T) {
		st := fedRequest(t, admin, "rn.fed.3.12.cmd.ping", map[string]string{wire.HdrFedExclude: "3.12.9,3.12.7"},
			wire.Request{Verb: "ping", TimeoutMs: 5000}, 700*time.Millisecond, 0)
		if len(st.starts)+len(st.dones)+len(st.results)+len(st.other) != 0 {
			t.Fatalf("excluded swarm answered: %+v", st)
		}
	})
	t.Run("a forged or foreign command is refused once, for the whole swarm", func(t *testing.T) {
		body := []byte(`{"verb":"ping","id":"forged"}`)
		m := &nats.Msg{Subject: "rn.fed.3.12.cmd.ping", Data: body}
		if err := admin.Signer().SignMsg(m); err != nil {
			t.Fatal(err)
		}
		m.Data = []byte(`{"verb":"ping","id":"forgeD"}`)
		st := publishAndCollect(t, admin, m, 5*time.Second, 100*time.Millisecond)
		if len(st.dones) != 1 || st.dones[0].Error == nil || st.dones[0].Error.Code != wire.CodeDenied || len(st.starts)+len(st.results) != 0 {
			t.Fatalf("forged: %+v", st)
		}
		stranger := newSigner(t)
		m = &nats.Msg{Subject: "rn.fed.3.12.cmd.ping", Data: body}
		if err := stranger.SignMsg(m); err != nil {
			t.Fatal(err)
		}
		st = publishAndCollect(t, admin, m, 5*time.Second, 100*time.Millisecond)
		if len(st.dones) != 1 || st.dones[0].Error == nil || st.dones[0].Error.Code != wire.CodeDenied ||
			!strings.Contains(st.dones[0].Error.Msg, "not a user of swarm 3.12.7") {
			t.Fatalf("unknown key: %+v", st.dones)
		}
	})
	t.Run("an unsigned command is refused with a done", func(t *testing.T) {
		m := &nats.Msg{Subject: "rn.fed.3.12.cmd.ping", Data: []byte(`{"verb":"ping","id":"x"}`)}
		st := publishAndCollect(t, admin, m, 5*time.Second, 100*time.Millisecond)
		if len(st.dones) != 1 || st.dones[0].Error == nil || st.dones[0].Error.Code != wire.CodeBadRequest || len(st.starts) != 0 {
			t.Fatalf("unsigned: %+v", st)
		}
	})

	// Two of three nodes gone: the survivor sees no live leader (the
	// lease cannot be held without a quorum) and leaves the queue group,
	// so the command finds no responder at once rather than a half swarm.
	leader := s.WaitLeader(10 * time.Second)
	survivor := (leader + 1) % 3
	for i := 0; i < 3; i++ {
		if i != survivor {
			s.Kill(i)
		}
	}
	testmesh.CheckFor(t, 20*time.Second, 50*time.Millisecond, func() error {
		if ambs[survivor].Serving() {
			return errors.New("the survivor of a split still serves")
		}
		return nil
	})
	c := s.Client(survivor)
	_, err := c.Conn().Request("rn.fed.3.12.cmd.ping", []byte(`{}`), 2*time.Second)
	if !errors.Is(err, nats.ErrNoResponders) {
		t.Fatalf("federated command to a swarm without a leader in view: %v, want no responders", err)
	}
}

func TestNewAmbassadorRefusesANodeOutsideAFederatedSwarm(t *testing.T) {
	s := testmesh.Start(t, 1) // chevron 1: not federated
	if _, err := federation.NewAmbassador(federation.AmbassadorOptions{Node: s.Node(0)}); err == nil {
		t.Fatal("an ambassador started on a node with a 1-token chevron")
	}
	sw, _ := subjects.ParseSwarmPrefix("3.12.7")
	if _, err := federation.NewAmbassador(federation.AmbassadorOptions{Node: s.Node(0), Swarm: sw}); err == nil {
		t.Fatal("an ambassador started for a swarm its node is not in")
	}
	if _, err := federation.NewAmbassador(federation.AmbassadorOptions{}); err == nil {
		t.Fatal("an ambassador without a node")
	}
}

// newSigner is an HCTH signer for a fresh key no swarm knows.
func newSigner(t *testing.T) *mesh.Signer {
	t.Helper()
	kp, err := nkeys.CreateUser()
	if err != nil {
		t.Fatal(err)
	}
	sg, err := mesh.NewSigner(kp, filepath.Join(t.TempDir(), "chain"), 0)
	if err != nil {
		t.Fatal(err)
	}
	return sg
}

// Shutdown waits for everything the ambassador and the publisher started,
// and a second Shutdown is harmless.
func TestFeaturesShutDownCleanly(t *testing.T) {
	s := testmesh.Start(t, 1, testmesh.WithChevrons("3.12.7.1"), func(_ int, o *node.Options) { o.ExecAllow = []string{"sleep"} })
	amb, err := federation.NewAmbassador(federation.AmbassadorOptions{Node: s.Node(0), Poll: 10 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	pub, err := federation.NewAuthority(federation.AuthorityOptions{Node: s.Node(0), Every: 10 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	if err := amb.Start(ctx); err != nil {
		t.Fatal(err)
	}
	if err := pub.Start(ctx); err != nil {
		t.Fatal(err)
	}
	testmesh.CheckFor(t, 10*time.Second, 20*time.Millisecond, func() error {
		if !amb.Serving() {
			return errors.New("not serving yet")
		}
		return nil
	})
	// A request in flight when Shutdown comes (a minute-long wait) is cut
	// short with its done, not leaked or waited out.
	admin := s.Client(0)
	inbox := admin.Conn().NewInbox()
	sub, err := admin.Conn().SubscribeSync(inbox)
	if err != nil {
		t.Fatal(err)
	}
	m := &nats.Msg{Subject: "rn.fed.3.12.7.cmd.exec", Reply: inbox,
		Data: []byte(`{"verb":"exec","id":"x","timeout_ms":60000,"args":{"argv":["sleep","30"]}}`)}
	if err := admin.Signer().SignMsg(m); err != nil {
		t.Fatal(err)
	}
	if err := admin.Conn().PublishMsg(m); err != nil {
		t.Fatal(err)
	}
	if first, err := sub.NextMsg(5 * time.Second); err != nil || first.Header.Get(wire.HdrFedKind) != wire.FedKindStart {
		t.Fatalf("no start before Shutdown: %v", err)
	}
	began := time.Now()
	for _, f := range []func(context.Context) error{amb.Shutdown, pub.Shutdown, amb.Shutdown, pub.Shutdown} {
		if err := f(ctx); err != nil {
			t.Fatal(err)
		}
	}
	if took := time.Since(began); took > 5*time.Second {
		t.Fatalf("Shutdown waited %v for a request in flight", took)
	}
	if last, err := sub.NextMsg(5 * time.Second); err != nil || last.Header.Get(wire.HdrFedKind) != wire.FedKindDone {
		t.Fatalf("the request cut short got no done: %v", err)
	}
	if amb.Serving() {
		t.Fatal("serving after Shutdown")
	}
	testmesh.CheckFor(t, 10*time.Second, 50*time.Millisecond, func() error {
		buf := make([]byte, 1<<20)
		for _, g := range strings.Split(string(buf[:runtime.Stack(buf, true)]), "\n\n") {
			if strings.Contains(g, "robonet-mesh/robonet/federation.") {
				return fmt.Errorf("leaked goroutine:\n%s", g)
			}
		}
		return nil
	})
}

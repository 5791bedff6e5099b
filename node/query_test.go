package node_test

import (
	"context"
	"encoding/json"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nkeys"

	"github.com/robonet-mesh/robonet/internal/testmesh"
	"github.com/robonet-mesh/robonet/mesh"
	"github.com/robonet-mesh/robonet/node"
	"github.com/robonet-mesh/robonet/subjects"
	"github.com/robonet-mesh/robonet/trust"
	"github.com/robonet-mesh/robonet/wire"
)

// queryAnswer is one node's signed answer to a hand-made query.
type queryAnswer struct {
	from  string // the verified signer
	reply wire.Reply
}

// askRaw publishes m (signed by whoever the caller chose, or not at all)
// over nc and returns the answers that arrive within wait, each checked to
// be signed by its node; any unsigned or forged answer fails the test.
func askRaw(t *testing.T, nc *nats.Conn, m *nats.Msg, want int, wait time.Duration) []queryAnswer {
	t.Helper()
	m.Reply = nc.NewInbox()
	sub, err := nc.SubscribeSync(m.Reply)
	if err != nil {
		t.Fatal(err)
	}
	defer sub.Unsubscribe()
	if err := nc.PublishMsg(m); err != nil {
		t.Fatal(err)
	}
	v := trust.NewVerifier(0)
	var out []queryAnswer
	deadline := time.Now().Add(wait)
	for len(out) < want {
		r, err := sub.NextMsg(time.Until(deadline))
		if err != nil {
			t.Fatalf("%s: %d of %d answers: %v", m.Subject, len(out), want, err)
		}
		h, err := mesh.ParseSigned(r)
		if err != nil {
			t.Fatalf("%s: answer not signed: %v (%s)", m.Subject, err, r.Data)
		}
		if err := v.Verify(h, r.Subject, r.Data); err != nil {
			t.Fatalf("%s: answer's signature: %v", m.Subject, err)
		}
		var rep wire.Reply
		if err := json.Unmarshal(r.Data, &rep); err != nil {
			t.Fatal(err)
		}
		out = append(out, queryAnswer{from: h.From, reply: rep})
	}
	return out
}

// Every query must carry a valid HCTH signature from a key the node knows;
// the refusal, like every answer, is signed by the node. A signed query
// from a known key is answered.
func TestQueriesNeedAValidSignatureFromAKnownKey(t *testing.T) {
	s := testmesh.Start(t, 1)
	nd := s.Node(0)
	c := s.Client(0)
	subj := subjects.QueryAt(subjects.QueryNodes, nd.ServerName())

	unsigned := askRaw(t, c.Conn(), &nats.Msg{Subject: subj}, 1, 5*time.Second)[0]
	stranger, _ := nkeys.CreateUser()
	ssig, err := mesh.NewSigner(stranger, filepath.Join(t.TempDir(), "stranger.chain"), 0)
	if err != nil {
		t.Fatal(err)
	}
	m := &nats.Msg{Subject: subj}
	if err := ssig.SignMsg(m); err != nil {
		t.Fatal(err)
	}
	unknown := askRaw(t, c.Conn(), m, 1, 5*time.Second)[0]
	m = &nats.Msg{Subject: subj, Data: []byte(`{}`)}
	if err := c.Signer().SignMsg(m); err != nil {
		t.Fatal(err)
	}
	m.Data = []byte(`{"x":1}`) // tampered after signing
	forged := askRaw(t, c.Conn(), m, 1, 5*time.Second)[0]
	for _, tc := range []struct {
		name string
		a    queryAnswer
		want string
	}{
		{"unsigned", unsigned, "unsigned query on " + subj},
		{"unknown key", unknown, "is not a user or node of this swarm"},
		{"bad signature", forged, "signature"},
	} {
		if tc.a.from != nd.Pubkey() {
			t.Errorf("%s: refusal signed by %s, not the node %s", tc.name, tc.a.from, nd.Pubkey())
		}
		if tc.a.reply.Error == nil || tc.a.reply.Error.Code != wire.CodeDenied || !strings.Contains(tc.a.reply.Error.Msg, tc.want) {
			t.Errorf("%s: answer %+v, want denied %q", tc.name, tc.a.reply.Error, tc.want)
		}
		if tc.a.reply.Data != nil {
			t.Errorf("%s: refused query answered with data %s", tc.name, tc.a.reply.Data)
		}
	}
	ct := nd.TrustReport(time.Now()).Counters
	if ct.Unsigned < 1 || ct.UnknownKey < 1 || ct.BadSig < 1 || ct.Denied < 3 {
		t.Errorf("counters %+v: want the unsigned, unknown-key and bad-signature queries counted", ct)
	}
	// A replayed query is dropped without an answer.
	m = &nats.Msg{Subject: subj}
	if err := c.Signer().SignMsg(m); err != nil {
		t.Fatal(err)
	}
	if a := askRaw(t, c.Conn(), m, 1, 5*time.Second)[0]; a.reply.Error != nil {
		t.Fatalf("signed query: %v", a.reply.Error)
	}
	replays := nd.TrustReport(time.Now()).Counters.Replays
	inbox := c.Conn().NewInbox()
	sub, _ := c.Conn().SubscribeSync(inbox)
	m.Reply = inbox
	if err := c.Conn().PublishMsg(m); err != nil {
		t.Fatal(err)
	}
	testmesh.CheckFor(t, 5*time.Second, 10*time.Millisecond, func() error {
		if nd.TrustReport(time.Now()).Counters.Replays == replays {
			return errReplayNotSeen
		}
		return nil
	})
	if _, err := sub.NextMsg(200 * time.Millisecond); err == nil {
		t.Error("a replayed query was answered")
	}
	// The legitimate path: the client's signed query, its reply verified.
	ms, err := c.Nodes(context.Background())
	if err != nil || len(ms) != 1 || c.NodeKey() != nd.Pubkey() {
		t.Fatalf("Nodes = %v, %v; client's node key %s, want %s", ms, err, c.NodeKey(), nd.Pubkey())
	}
}

var errReplayNotSeen = errString("replay not counted yet")

type errString string

func (e errString) Error() string { return string(e) }

// A privileged query is judged by its verified signer, not by the
// connection that carried it: node 1's own operator key may publish
// anything on node 1, where it is an admin, but on node 0 it is an
// operator and may not mint a token; an observer's signature carried on
// that same connection may not quarantine anyone anywhere. The founder
// (a swarm admin) mints, an operator quarantines and releases.
func TestPrivilegedQueriesCheckTheSignersRole(t *testing.T) {
	s := testmesh.Start(t, 2)
	s.WaitAlive(20 * time.Second)
	n0, n1 := s.Node(0), s.Node(1)
	local1 := s.Client(1) // node 1's operator key, connected to node 1
	olga := s.User(0, "olga", wire.RoleObserver)
	oscar := s.User(0, "oscar", wire.RoleOperator)

	req, _ := json.Marshal(node.TokenRequest{TTLMs: time.Minute.Milliseconds()})
	m := &nats.Msg{Subject: subjects.QueryAt(subjects.QueryToken, n0.ServerName()), Data: req}
	if err := local1.Signer().SignMsg(m); err != nil {
		t.Fatal(err)
	}
	a := askRaw(t, local1.Conn(), m, 1, 5*time.Second)[0]
	if a.from != n0.Pubkey() || a.reply.Error == nil || a.reply.Error.Code != wire.CodeDenied ||
		!strings.Contains(a.reply.Error.Msg, "the token query needs an admin") || !strings.Contains(a.reply.Error.Msg, "is operator") {
		t.Fatalf("token from node 1's operator key at node 0: %+v (from %s)", a.reply.Error, a.from)
	}

	act, _ := json.Marshal(node.TrustAction{Key: n1.Pubkey(), Reason: "observer tries"})
	m = &nats.Msg{Subject: subjects.Query(subjects.QueryQuarantine), Data: act}
	if err := olga.Signer().SignMsg(m); err != nil {
		t.Fatal(err)
	}
	answers := askRaw(t, local1.Conn(), m, 2, 5*time.Second)
	for _, a := range answers {
		if a.reply.Error == nil || a.reply.Error.Code != wire.CodeDenied || !strings.Contains(a.reply.Error.Msg, "needs an operator or an admin") {
			t.Errorf("observer's quarantine answered by %s: %+v %s", a.from, a.reply.Error, a.reply.Data)
		}
	}
	if st, ok := peerState(n0, n1.Pubkey()); ok && st == trust.Quarantined {
		t.Fatal("an observer's signature quarantined node 1 on node 0")
	}

	// The legitimate paths.
	var tr node.TokenReply
	if err := s.Client(0).Query(context.Background(), subjects.QueryToken, node.TokenRequest{TTLMs: time.Minute.Milliseconds()}, &tr); err != nil || tr.Token == "" {
		t.Fatalf("the founder's token: %v", err)
	}
	members, err := oscar.Nodes(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	got, err := oscar.QueryAll(context.Background(), subjects.QueryQuarantine, node.TrustAction{Key: n1.Pubkey(), Reason: "drill"}, members, 5*time.Second)
	if err != nil || len(got.Answers) != 2 || got.Dropped != 0 {
		t.Fatalf("operator's quarantine: %+v %v", got, err)
	}
	for _, a := range got.Answers {
		if a.Error != nil {
			t.Fatalf("operator's quarantine on %s: %v", a.Chevron, a.Error)
		}
	}
	if st, _ := peerState(n0, n1.Pubkey()); st != trust.Quarantined {
		t.Fatalf("node 1 on node 0 after an operator's quarantine: %q", st)
	}
	if _, err := oscar.QueryAll(context.Background(), subjects.QueryRelease, node.TrustAction{Key: n1.Pubkey()}, members, 5*time.Second); err != nil {
		t.Fatal(err)
	}
	pingOK(t, s.Client(0), 2)
}

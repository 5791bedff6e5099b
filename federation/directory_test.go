package federation_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/nats-io/nkeys"

	"github.com/robonet-mesh/robonet/federation"
	"github.com/robonet-mesh/robonet/internal/testmesh"
	"github.com/robonet-mesh/robonet/mesh"
	"github.com/robonet-mesh/robonet/node"
	"github.com/robonet-mesh/robonet/subjects"
	"github.com/robonet-mesh/robonet/trust"
	"github.com/robonet-mesh/robonet/wire"
)

// clock is the wall clock moved forward by what a test advances it.
type clock struct {
	mu  sync.Mutex
	off time.Duration
}

func (c *clock) now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return time.Now().Add(c.off)
}

func (c *clock) advance(d time.Duration) {
	c.mu.Lock()
	c.off += d
	c.mu.Unlock()
}

// startDirectory runs a directory for swarm 3.12.7 beside nd, on a feature
// connection, signing with the node's signer.
func startDirectory(t *testing.T, nd *node.Node, o federation.DirectoryOptions) *federation.Directory {
	t.Helper()
	fc, err := nd.FeatureConn("directory")
	if err != nil {
		t.Fatal(err)
	}
	o.Conn, o.Signer, o.Local = fc, nd.Signer(), nd
	if o.Prefix == "" {
		o.Prefix = "3.12.7"
	}
	d, err := federation.NewDirectory(o)
	if err != nil {
		fc.Close()
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := d.Start(ctx); err != nil {
		fc.Close()
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := d.Shutdown(ctx); err != nil {
			t.Error(err)
		}
		fc.Close()
	})
	return d
}

func oneNodeSwarm(t *testing.T) *testmesh.Swarm {
	t.Helper()
	s := testmesh.Start(t, 1, testmesh.WithChevrons("3.12.7.1"))
	s.WaitLeader(15 * time.Second)
	return s
}

// fakeLeader signs summaries for another swarm as its leader would.
type fakeLeader struct {
	pub    string
	signer *mesh.Signer
}

func newFakeLeader(t *testing.T) fakeLeader {
	t.Helper()
	kp, err := nkeys.CreateUser()
	if err != nil {
		t.Fatal(err)
	}
	pub, _ := kp.PublicKey()
	sg, err := mesh.NewSigner(kp, filepath.Join(t.TempDir(), pub[:8]+".chain"), 0)
	if err != nil {
		t.Fatal(err)
	}
	return fakeLeader{pub: pub, signer: sg}
}

func (f fakeLeader) summary(t *testing.T, p, leader string, token uint64, sent time.Time) wire.DirSummary {
	t.Helper()
	pp, err := subjects.ParseSwarmPrefix(p)
	if err != nil {
		t.Fatal(err)
	}
	dom, _ := subjects.SwarmDomain(pp)
	return wire.DirSummary{Prefix: p, Domain: dom, Parent: "3.12.1", Leader: leader, LeaderKey: f.pub, Token: token,
		Nodes: 2, Live: 2, Caps: []string{"cam"}, RegistryRev: 4, Sent: sent.UTC()}
}

// publish sends s on its swarm's summary subject over nc, signed by f,
// after tamper (if any) changed the message.
func (f fakeLeader) publish(t *testing.T, nc *nats.Conn, s wire.DirSummary, tamper func(*nats.Msg)) {
	t.Helper()
	p, _ := subjects.ParseSwarmPrefix(s.Prefix)
	subj, err := subjects.DirSummary(p)
	if err != nil {
		t.Fatal(err)
	}
	data, _ := json.Marshal(s)
	m := &nats.Msg{Subject: subj, Data: data}
	if err := f.signer.SignMsg(m); err != nil {
		t.Fatal(err)
	}
	if tamper != nil {
		tamper(m)
	}
	if err := nc.PublishMsg(m); err != nil {
		t.Fatal(err)
	}
	if err := nc.Flush(); err != nil {
		t.Fatal(err)
	}
}

// The leader's own summary reaches its directory; the directory and the
// federated registry are answered to any role, signed by the node, and
// an unsigned query is denied.
func TestDirectoryHearsItsLeaderAndAnswersQueries(t *testing.T) {
	s := oneNodeSwarm(t)
	nd := s.Node(0)
	d := startDirectory(t, nd, federation.DirectoryOptions{})
	testmesh.CheckFor(t, 10*time.Second, 50*time.Millisecond, func() error {
		self, ok := d.Swarm("3.12.7")
		switch {
		case !ok:
			return errors.New("own swarm missing")
		case self.LastHeard.IsZero():
			return errors.New("no own summary heard yet")
		case self.Link != federation.LinkSelf || self.Leader != "3.12.7.1" || self.LeaderKey != nd.Pubkey():
			return fmt.Errorf("own swarm %+v", self)
		case self.Nodes != 1 || self.Live != 1 || self.RegistryRev == 0 || self.Domain != "rn-3-12-7":
			return fmt.Errorf("own swarm %+v", self)
		}
		return nil
	})
	if c := d.Counters(); c.Accepted == 0 || c.Refused() != 0 {
		t.Fatalf("counters %+v", c)
	}

	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	watcher := s.User(0, "watcher", wire.RoleObserver)
	for _, c := range []*mesh.Client{s.Client(0), watcher} {
		v, err := federation.ReadDirectory(ctx, c)
		if err != nil {
			t.Fatal(err)
		}
		if v.Swarm != "3.12.7" || v.Node != "3.12.7.1" || !v.Leader || len(v.Swarms) != 1 || v.Swarms[0].Link != federation.LinkSelf {
			t.Fatalf("view %+v", v)
		}
		if tree := v.Tree(); len(tree) != 1 || tree[0].Role != "self" {
			t.Fatalf("tree %+v", tree)
		}
		fn, err := federation.ReadNodes(ctx, c)
		if err != nil {
			t.Fatal(err)
		}
		if len(fn.Nodes) != 1 || fn.Nodes[0].Chevron != "3.12.7.1" || fn.Nodes[0].Swarm != "3.12.7" || fn.Nodes[0].State != wire.StateAlive {
			t.Fatalf("federated registry %+v", fn)
		}
	}

	// Unsigned: denied, and the refusal is the node's own signed answer.
	nc := s.Client(0).Conn()
	rep, err := nc.Request(subjects.QueryAt(subjects.QueryFed, nd.ServerName()), nil, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	h, err := mesh.ParseSigned(rep)
	if err != nil || h.From != nd.Pubkey() {
		t.Fatalf("refusal not signed by the node: %v %s", err, h.From)
	}
	var r wire.Reply
	if err := json.Unmarshal(rep.Data, &r); err != nil || r.Error == nil || r.Error.Code != wire.CodeDenied {
		t.Fatalf("unsigned query answered %s", rep.Data)
	}
}

// Another swarm is up while its leader's summaries arrive and partitioned
// PartitionAfter after the last one (on the directory's clock); summaries
// with a bad signature, a leader outside their prefix or another key for a
// known leader are ignored and counted.
func TestDirectoryPartitionsASilentSwarmAndIgnoresForgeries(t *testing.T) {
	s := oneNodeSwarm(t)
	clk := &clock{}
	d := startDirectory(t, s.Node(0), federation.DirectoryOptions{Now: clk.now})
	nc := s.Client(0).Conn()
	leader := newFakeLeader(t)

	leader.publish(t, nc, leader.summary(t, "3.12.8", "3.12.8.1", 1, clk.now()), nil)
	testmesh.CheckFor(t, 5*time.Second, 20*time.Millisecond, func() error {
		if sw, ok := d.Swarm("3.12.8"); !ok || sw.Link != federation.LinkUp || sw.Leader != "3.12.8.1" || sw.Live != 2 {
			return fmt.Errorf("3.12.8: %+v %v", sw, ok)
		}
		return nil
	})
	clk.advance(federation.PartitionAfter - 100*time.Millisecond)
	if sw, _ := d.Swarm("3.12.8"); sw.Partitioned() {
		t.Fatalf("partitioned before PartitionAfter: %+v", sw)
	}
	clk.advance(200 * time.Millisecond)
	if sw, _ := d.Swarm("3.12.8"); !sw.Partitioned() || sw.Link != federation.LinkDown {
		t.Fatalf("not partitioned after PartitionAfter: %+v", sw)
	}
	under := d.Under(subjects.Chevron{})
	if len(under) != 2 {
		t.Fatalf("Under(all) = %+v", under)
	}

	before := d.Counters()
	// A bad signature: the payload changed after signing.
	tampered := leader.summary(t, "3.12.8", "3.12.8.1", 2, clk.now())
	leader.publish(t, nc, tampered, func(m *nats.Msg) { m.Data = []byte(strings.Replace(string(m.Data), `"live":2`, `"live":1`, 1)) })
	// Unsigned.
	leader.publish(t, nc, tampered, func(m *nats.Msg) { m.Header = nil })
	// A leader outside the summary's prefix.
	leader.publish(t, nc, leader.summary(t, "3.12.9", "3.12.10.1", 1, clk.now()), nil)
	// Another key for the leader chevron heard before.
	forger := newFakeLeader(t)
	forger.publish(t, nc, forger.summary(t, "3.12.8", "3.12.8.1", 3, clk.now()), nil)
	testmesh.CheckFor(t, 5*time.Second, 20*time.Millisecond, func() error {
		c := d.Counters()
		if c.BadSignature-before.BadSignature != 2 || c.NotUnder-before.NotUnder != 1 || c.KeyMismatch-before.KeyMismatch != 1 {
			return fmt.Errorf("counters %+v (before %+v)", c, before)
		}
		return nil
	})
	if _, ok := d.Swarm("3.12.9"); ok {
		t.Fatal("a summary from a leader outside its prefix entered the directory")
	}
	if sw, _ := d.Swarm("3.12.8"); !sw.Partitioned() || sw.LeaderKey != leader.pub {
		t.Fatalf("a refused summary changed 3.12.8: %+v", sw)
	}
	// The real leader again: up again.
	leader.publish(t, nc, leader.summary(t, "3.12.8", "3.12.8.1", 4, clk.now()), nil)
	testmesh.CheckFor(t, 5*time.Second, 20*time.Millisecond, func() error {
		if sw, _ := d.Swarm("3.12.8"); sw.Link != federation.LinkUp {
			return fmt.Errorf("3.12.8 not up again: %+v", sw)
		}
		return nil
	})
}

// The swarm's leader keeps rn_events: every event kind of its nodes but
// heartbeats (and the periodic tier views) lands there.
func TestEventsStreamKeepsEventsButNotHeartbeats(t *testing.T) {
	s := oneNodeSwarm(t)
	startDirectory(t, s.Node(0), federation.DirectoryOptions{})
	c := s.Client(0)
	js, err := jetstream.New(c.Conn())
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	var st jetstream.Stream
	testmesh.CheckFor(t, 10*time.Second, 50*time.Millisecond, func() error {
		st, err = js.Stream(ctx, federation.StreamEvents)
		return err
	})
	if cfg := st.CachedInfo().Config; cfg.MaxAge != federation.EventsMaxAge || cfg.Storage != jetstream.FileStorage {
		t.Fatalf("rn_events config %+v", cfg)
	}
	// Two heartbeats after the stream exists, and a command (audited).
	hb, err := c.Conn().SubscribeSync(subjects.Event(s.Node(0).Chevron(), subjects.EvtHeartbeat))
	if err != nil {
		t.Fatal(err)
	}
	for range 2 {
		if _, err := hb.NextMsg(5 * time.Second); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := c.Gather(ctx, mesh.GatherRequest{Selector: "3.12.7.1", Verb: "ping", Timeout: 5 * time.Second}, nil); err != nil {
		t.Fatal(err)
	}
	testmesh.CheckFor(t, 10*time.Second, 50*time.Millisecond, func() error {
		info, err := st.Info(ctx, jetstream.WithSubjectFilter(">"))
		if err != nil {
			return err
		}
		if info.State.Subjects["rn.3.12.7.1.evt.audit"] == 0 {
			return fmt.Errorf("no audit event in rn_events: %v", info.State.Subjects)
		}
		for subj := range info.State.Subjects {
			if strings.HasSuffix(subj, ".evt.hb") || strings.HasSuffix(subj, ".evt.tiers") {
				t.Fatalf("rn_events took %s", subj)
			}
		}
		return nil
	})
}

// A hub's leader sources a child's rn_nodes and rn_events (and a child
// hub's own aggregates) as soon as the child's first summary arrives, and
// relays its children upward in its own summary; a swarm outside its scope
// that names it as parent is not sourced.
func TestHubSourcesAChildWhenItFirstAppears(t *testing.T) {
	s := testmesh.Start(t, 1, testmesh.WithChevrons("3.12.1.1"))
	s.WaitLeader(15 * time.Second)
	d := startDirectory(t, s.Node(0), federation.DirectoryOptions{Prefix: "3.12.1", Hub: true})
	nc := s.Client(0).Conn()
	own, err := nc.SubscribeSync("rn.dir.3.12.1.summary")
	if err != nil {
		t.Fatal(err)
	}
	child, childHub, stranger := newFakeLeader(t), newFakeLeader(t), newFakeLeader(t)
	ch := childHub.summary(t, "3.12.8", "3.12.8.1", 1, time.Now())
	ch.Hub = true
	// A swarm of another zone naming this hub as its parent gets no source.
	stranger.publish(t, nc, stranger.summary(t, "4.1.7", "4.1.7.1", 1, time.Now()), nil)
	child.publish(t, nc, child.summary(t, "3.12.7", "3.12.7.1", 1, time.Now()), nil)
	childHub.publish(t, nc, ch, nil)

	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	sourced := func(stream string) (map[string]bool, error) {
		st, err := js.Stream(ctx, stream)
		if err != nil {
			return nil, err
		}
		out := map[string]bool{}
		for _, src := range st.CachedInfo().Config.Sources {
			if src.External == nil {
				return nil, fmt.Errorf("%s: a source without a domain: %+v", stream, src)
			}
			out[src.Name+" "+src.External.APIPrefix+" "+src.External.DeliverPrefix] = true
		}
		return out, nil
	}
	testmesh.CheckFor(t, 10*time.Second, 50*time.Millisecond, func() error {
		nodes, err := sourced("KV_" + federation.BucketFedNodes)
		if err != nil {
			return err
		}
		events, err := sourced(federation.StreamFedEvents)
		if err != nil {
			return err
		}
		for _, want := range []string{"KV_rn_nodes $JS.rn-3-12-7.API rn.fed.js.3.12.7", "KV_rn_nodes $JS.rn-3-12-8.API rn.fed.js.3.12.8",
			"KV_rn_fed_nodes $JS.rn-3-12-8.API rn.fed.js.3.12.8"} {
			if !nodes[want] {
				return fmt.Errorf("rn_fed_nodes sources %v lack %q", nodes, want)
			}
		}
		for _, want := range []string{"rn_events $JS.rn-3-12-7.API rn.fed.js.3.12.7", "rn_events $JS.rn-3-12-8.API rn.fed.js.3.12.8",
			"rn_fed_events $JS.rn-3-12-8.API rn.fed.js.3.12.8"} {
			if !events[want] {
				return fmt.Errorf("rn_fed_events sources %v lack %q", events, want)
			}
		}
		if len(nodes) != 3 || len(events) != 3 {
			return fmt.Errorf("sources: %v %v", nodes, events)
		}
		return nil
	})
	testmesh.CheckFor(t, 5*time.Second, 10*time.Millisecond, func() error {
		m, err := own.NextMsg(2 * time.Second)
		if err != nil {
			return err
		}
		var sum wire.DirSummary
		if err := json.Unmarshal(m.Data, &sum); err != nil {
			return err
		}
		if !sum.Hub || len(sum.Swarms) != 3 || sum.Swarms[0].Prefix != "3.12.7" || sum.Swarms[1].Prefix != "3.12.8" || !sum.Swarms[1].Hub {
			return fmt.Errorf("the hub's summary relays %+v", sum)
		}
		return nil
	})
	if v := d.View(); !v.Hub || v.AggregateErr != "" || len(v.Swarms) != 4 {
		t.Fatalf("view %+v", v)
	}
}

// Only the node holding the lease publishes the swarm's summary; when the
// lease moves, the new holder's summaries (with a higher token) replace
// the old holder's, and every node's directory follows.
func TestOnlyTheLeaseHolderPublishesTheSummary(t *testing.T) {
	s := testmesh.Start(t, 3, testmesh.WithChevrons("3.12.7.1", "3.12.7.2", "3.12.7.3"))
	first := s.WaitLeader(30 * time.Second)
	dirs := map[int]*federation.Directory{}
	for i := range 3 {
		dirs[i] = startDirectory(t, s.Node(i), federation.DirectoryOptions{})
	}
	other := (first + 1) % 3
	sub, err := s.Client(other).Conn().SubscribeSync("rn.dir.3.12.7.summary")
	if err != nil {
		t.Fatal(err)
	}
	next := func() (string, wire.DirSummary) {
		t.Helper()
		m, err := sub.NextMsg(5 * time.Second)
		if err != nil {
			t.Fatal(err)
		}
		h, err := mesh.ParseSigned(m)
		if err != nil {
			t.Fatal(err)
		}
		var sum wire.DirSummary
		if err := json.Unmarshal(m.Data, &sum); err != nil {
			t.Fatal(err)
		}
		return h.From, sum
	}
	oldKey := s.Node(first).Pubkey()
	var oldToken uint64
	for range 3 {
		from, sum := next()
		if from != oldKey || sum.Leader != s.Node(first).Chevron().String() || sum.Nodes != 3 || sum.Live != 3 {
			t.Fatalf("a summary from %s (leader %s is %s): %+v", from, s.Node(first).Chevron(), oldKey, sum)
		}
		oldToken = sum.Token
	}
	s.Stop(first)
	// Summaries the old holder sent before it stopped may still be queued.
	var newKey string
	for newKey == "" {
		from, sum := next()
		if from != oldKey {
			newKey = from
			if sum.Token <= oldToken {
				t.Fatalf("the new holder's token %d is not above %d", sum.Token, oldToken)
			}
		}
	}
	for range 2 {
		if from, _ := next(); from != newKey {
			t.Fatalf("a summary from %s after %s took the lease", from, newKey)
		}
	}
	testmesh.CheckFor(t, 5*time.Second, 50*time.Millisecond, func() error {
		for i, d := range dirs {
			if i == first {
				continue
			}
			if self, _ := d.Swarm("3.12.7"); self.LeaderKey != newKey {
				return fmt.Errorf("node %d's directory has leader key %s, want %s", i, self.LeaderKey, newKey)
			}
		}
		return nil
	})
}

// Shutdown is idempotent and waits for every goroutine the directory
// started (the publisher, the aggregator, a hub's watch of rn_fed_nodes).
func TestDirectoryShutdownLeavesNoGoroutines(t *testing.T) {
	s := testmesh.Start(t, 1, testmesh.WithChevrons("3.12.1.1"))
	s.WaitLeader(15 * time.Second)
	nd := s.Node(0)
	fc, err := nd.FeatureConn("directory")
	if err != nil {
		t.Fatal(err)
	}
	defer fc.Close()
	d, err := federation.NewDirectory(federation.DirectoryOptions{Conn: fc, Signer: nd.Signer(), Local: nd, Prefix: "3.12.1", Hub: true})
	if err != nil {
		t.Fatal(err)
	}
	if err := d.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	if err := d.Start(context.Background()); err == nil {
		t.Fatal("a second Start was accepted")
	}
	testmesh.CheckFor(t, 10*time.Second, 50*time.Millisecond, func() error {
		if self, _ := d.Swarm("3.12.1"); self.LastHeard.IsZero() {
			return errors.New("no own summary yet")
		}
		return nil
	})
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	for range 2 {
		if err := d.Shutdown(ctx); err != nil {
			t.Fatal(err)
		}
	}
	testmesh.CheckFor(t, 5*time.Second, 50*time.Millisecond, func() error {
		buf := make([]byte, 1<<20)
		for _, g := range strings.Split(string(buf[:runtime.Stack(buf, true)]), "\n\n") {
			if strings.Contains(g, "robonet-mesh/robonet/federation.") {
				return fmt.Errorf("leaked goroutine:\n%s", g)
			}
		}
		return nil
	})
	// And options that cannot work are refused before anything starts.
	for _, o := range []federation.DirectoryOptions{
		{Conn: fc, Signer: nd.Signer(), Local: nd, Prefix: "3.12"},
		{Conn: fc, Signer: nd.Signer(), Local: nd, Prefix: "3.12.9"},
		{Conn: fc, Signer: nd.Signer(), Local: nd, Prefix: "3.12.1", Interval: 3 * time.Second},
		{Signer: nd.Signer(), Local: nd, Prefix: "3.12.1"},
	} {
		if _, err := federation.NewDirectory(o); !errors.Is(err, federation.ErrDirectoryOptions) {
			t.Errorf("NewDirectory(%+v) = %v", o, err)
		}
	}
}

// The leader signs its summaries with its one node chain; the members take
// them into their ledgers, so the summaries leave no gaps in the leader's
// chain as the others see it (a gap before nearly every heartbeat would
// lower its trust score). A forged copy with the leader's key is dropped
// and counted, never taken as proof against the leader.
func TestLeaderSummariesLeaveNoChainGaps(t *testing.T) {
	s := testmesh.Start(t, 2, testmesh.WithChevrons("3.12.7.1", "3.12.7.2"))
	l := s.WaitLeader(30 * time.Second)
	f := 1 - l
	leaderKey := s.Node(l).Pubkey()
	peer := func() trust.Peer {
		for _, p := range s.Node(f).TrustReport(time.Now()).Peers {
			if p.Key == leaderKey {
				return p.Peer
			}
		}
		return trust.Peer{}
	}
	startDirectory(t, s.Node(l), federation.DirectoryOptions{})
	df := startDirectory(t, s.Node(f), federation.DirectoryOptions{})
	nc := s.Client(f).Conn()
	sub, err := nc.SubscribeSync("rn.dir.3.12.7.summary")
	if err != nil {
		t.Fatal(err)
	}
	real, err := sub.NextMsg(5 * time.Second)
	if err != nil {
		t.Fatal(err)
	}
	base := peer()
	testmesh.CheckFor(t, 20*time.Second, 50*time.Millisecond, func() error {
		if p := peer(); p.Length < base.Length+8 {
			return fmt.Errorf("the follower has seen %d of the leader's messages since %d", p.Length, base.Length)
		}
		return nil
	})
	if p := peer(); p.Gaps != base.Gaps {
		t.Fatalf("the leader's chain shows %d new gaps in %d messages", p.Gaps-base.Gaps, p.Length-base.Length)
	}
	forged := nats.NewMsg(real.Subject)
	forged.Header, forged.Data = real.Header, []byte(strings.Replace(string(real.Data), `"live":2`, `"live":1`, 1))
	if err := nc.PublishMsg(forged); err != nil {
		t.Fatal(err)
	}
	testmesh.CheckFor(t, 5*time.Second, 20*time.Millisecond, func() error {
		if df.Counters().BadSignature == 0 {
			return errors.New("the forgery is not counted")
		}
		return nil
	})
	if p := peer(); p.State != trust.Trusted || p.Breaks != base.Breaks {
		t.Fatalf("a forged summary counted against the leader: %+v", p)
	}
}

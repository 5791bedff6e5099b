package node_test

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/nats-io/nkeys"

	"github.com/robonet-mesh/robonet/internal/testmesh"
	"github.com/robonet-mesh/robonet/mesh"
	"github.com/robonet-mesh/robonet/node"
	"github.com/robonet-mesh/robonet/subjects"
	"github.com/robonet-mesh/robonet/trust"
	"github.com/robonet-mesh/robonet/wire"
)

// kvOf binds bucket through c's connection (an admin's: it may write any
// key, standing in for a node or a stolen key writing straight into the KV,
// which a route peer can always do whatever its client permissions say).
func kvOf(t *testing.T, c *mesh.Client, bucket string) jetstream.KeyValue {
	t.Helper()
	js, err := jetstream.New(c.Conn())
	if err != nil {
		t.Fatal(err)
	}
	kv, err := js.KeyValue(context.Background(), bucket)
	if err != nil {
		t.Fatal(err)
	}
	return kv
}

// putSigned writes rec under bucket/key signed by kp.
func putSigned(t *testing.T, kv jetstream.KeyValue, kp nkeys.KeyPair, key string, rec any) {
	t.Helper()
	b, _ := json.Marshal(rec)
	data, err := trust.SignRecord(kp, kv.Bucket(), key, b)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := kv.Put(context.Background(), key, data); err != nil {
		t.Fatal(err)
	}
}

func seedOf(t *testing.T, path string) nkeys.KeyPair {
	t.Helper()
	kp, err := mesh.ReadSeed(path)
	if err != nil {
		t.Fatal(err)
	}
	return kp
}

func badRecords(nd *node.Node) uint64 { return nd.TrustReport(time.Now()).Counters.BadRecords }

// secretOf is the swarm secret in node i's data dir.
func secretOf(t *testing.T, s *testmesh.Swarm, i int) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(s.Node(i).DataDir(), node.SecretFile))
	if err != nil {
		t.Fatal(err)
	}
	return strings.TrimSpace(string(b))
}

// A stolen node disk is not the swarm: the node's local operator key is
// an admin on its own node only. Everything it signs — a new admin user, a
// revocation of the real admin — is ignored by every node, that node
// included; on the other nodes the key is an operator at most.
func TestStolenOperatorKeyIsNotASwarmAdmin(t *testing.T) {
	s := testmesh.Start(t, 3)
	s.WaitAlive(30 * time.Second)
	admin := s.Client(0)
	adminKey, _ := admin.KeyPair().PublicKey()
	stolen := seedOf(t, s.Node(1).OperatorSeedPath())
	stolenKey, _ := stolen.PublicKey()
	for i, want := range []string{wire.RoleOperator, wire.RoleAdmin, wire.RoleOperator} {
		if role, ok := s.Node(i).RoleOf(stolenKey); !ok || role != want {
			t.Fatalf("node %d gives node 1's operator key role %q; want %q", i, role, want)
		}
	}
	// On its own node the key may write the KV: it makes itself a friend
	// with the admin role and revokes the founder.
	thief := s.Client(1)
	eve, _ := nkeys.CreateUser()
	evePub, _ := eve.PublicKey()
	before := badRecords(s.Node(0))
	putSigned(t, kvOf(t, thief, node.BucketUsers), stolen, "eve",
		wire.User{Name: "eve", Role: wire.RoleAdmin, Nkey: evePub, Added: time.Now().UTC(), By: stolenKey})
	putSigned(t, kvOf(t, thief, node.BucketRevoked), stolen, adminKey,
		wire.Revocation{Pubkey: adminKey, Reason: "taken over", At: time.Now().UTC(), By: stolenKey})
	// A record the legitimate admin writes afterwards is seen by every
	// node: once it is, the thief's two were read (and refused) before it.
	ids, err := admin.Identities(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	probe, _ := nkeys.CreateUser()
	probePub, _ := probe.PublicKey()
	if _, err := ids.AddUser(context.Background(), "probe", wire.RoleObserver, probePub, "", time.Now()); err != nil {
		t.Fatal(err)
	}
	testmesh.CheckFor(t, 20*time.Second, 50*time.Millisecond, func() error {
		for _, nd := range s.Live() {
			if _, ok := nd.RoleOf(probePub); !ok {
				return fmt.Errorf("node %s does not know the probe user yet", nd.Chevron())
			}
		}
		return nil
	})
	for i := range 3 {
		if role, ok := s.Node(i).RoleOf(evePub); ok {
			t.Errorf("node %d admits eve as %s on the stolen key's word", i, role)
		}
		if s.Node(i).IsRevoked(adminKey) {
			t.Errorf("node %d revoked the admin on the stolen key's word", i)
		}
	}
	t.Logf("bad records counted on node 0: %d", badRecords(s.Node(0))-before)
	// The admin still runs the swarm.
	pingOK(t, admin, 3)
	if _, err := ids.AddUser(context.Background(), "after", wire.RoleObserver, evePub, "", time.Now()); err != nil {
		t.Fatalf("the admin after the attempt: %v", err)
	}
}

// A node key writing identity records straight into the KV achieves
// nothing: a user record it signs, a revocation without proof, a
// registration of another live node's chevron, an unsigned registration —
// each is ignored and counted by every node, and legitimate traffic flows.
func TestRecordsWrittenByANodeKeyAreIgnored(t *testing.T) {
	s := testmesh.Start(t, 3)
	s.WaitAlive(30 * time.Second)
	admin := s.Client(0)
	adminKey, _ := admin.KeyPair().PublicKey()
	nk := seedOf(t, filepath.Join(s.Node(2).DataDir(), node.NodeSeedFile))
	npub, _ := nk.PublicKey()
	mallory, _ := nkeys.CreateUser()
	malPub, _ := mallory.PublicKey()
	before := []uint64{badRecords(s.Node(0)), badRecords(s.Node(1))}

	putSigned(t, kvOf(t, admin, node.BucketUsers), nk, "mallory",
		wire.User{Name: "mallory", Role: wire.RoleAdmin, Nkey: malPub, Added: time.Now().UTC()})
	putSigned(t, kvOf(t, admin, node.BucketRevoked), nk, adminKey,
		wire.Revocation{Pubkey: adminKey, Reason: "made up", At: time.Now().UTC(), By: npub})
	victim := s.Node(1)
	hijack := wire.NodeInfo{Chevron: victim.Chevron().String(), Name: "hijack", Pubkey: npub, Server: "x"}
	nodes := kvOf(t, admin, node.BucketNodes)
	putSigned(t, nodes, nk, victim.Chevron().String(), hijack)
	unsigned, _ := json.Marshal(wire.NodeInfo{Chevron: "77", Name: "ghost", Pubkey: malPub})
	if _, err := nodes.Put(context.Background(), "77", unsigned); err != nil {
		t.Fatal(err)
	}
	testmesh.CheckFor(t, 20*time.Second, 50*time.Millisecond, func() error {
		for i := range 2 {
			// mallory's user record, the hijack and the unsigned entry
			// are bad; the unproven revocation is kept but has no effect.
			if got := badRecords(s.Node(i)) - before[i]; got < 3 {
				return fmt.Errorf("node %d counted %d bad records, want at least 3", i, got)
			}
		}
		return nil
	})
	for i := range 3 {
		nd := s.Node(i)
		if _, ok := nd.RoleOf(malPub); ok {
			t.Errorf("node %d admits mallory", i)
		}
		if nd.IsRevoked(adminKey) {
			t.Errorf("node %d revoked the admin on a node key's unproven record", i)
		}
		for _, m := range nd.Members() {
			if m.Chevron == victim.Chevron().String() && m.Pubkey != victim.Pubkey() {
				t.Errorf("node %d maps %s to %s after the hijack", i, m.Chevron, m.Pubkey)
			}
			if m.Chevron == "77" {
				t.Errorf("node %d lists the unsigned registration", i)
			}
		}
	}
	// The victim writes its own registration back over the forgery.
	testmesh.CheckFor(t, 20*time.Second, 50*time.Millisecond, func() error {
		e, err := nodes.Get(context.Background(), victim.Chevron().String())
		if err != nil {
			return err
		}
		info, err := mesh.OpenNodeRecord(e.Key(), e.Value())
		if err != nil {
			return err
		}
		if info.Pubkey != victim.Pubkey() {
			return fmt.Errorf("registry entry %s still names %s", e.Key(), info.Pubkey)
		}
		return nil
	})
	pingOK(t, admin, 3)
}

// A break report is the reporter's word unless it carries a fork proof:
// one member telling the swarm the admin forked changes nothing anywhere.
func TestBreakReportWithoutProofChangesNothing(t *testing.T) {
	s := testmesh.Start(t, 3)
	s.WaitAlive(30 * time.Second)
	admin := s.Client(0)
	adminKey, _ := admin.KeyPair().PublicKey()
	reporter := s.Node(2)
	// The reporter's key signs through the admin's connection.
	signer := nodeSigner(t, reporter)
	report := func(e wire.Event) {
		data, _ := json.Marshal(e)
		m := &nats.Msg{Subject: subjects.Event(reporter.Chevron(), subjects.EvtTrust), Data: data}
		if err := signer.SignMsg(m); err != nil {
			t.Fatal(err)
		}
		if err := admin.Conn().PublishMsg(m); err != nil {
			t.Fatal(err)
		}
	}
	report(wire.Event{Kind: subjects.EvtTrust, Pubkey: adminKey, By: reporter.Chevron().String(), Reason: "made up", Break: true, Time: time.Now().UTC()})
	// A "proof" whose two pieces are not the admin's signatures.
	report(wire.Event{Kind: subjects.EvtTrust, Pubkey: adminKey, By: reporter.Chevron().String(), Reason: "forged proof", Break: true,
		Proof: &wire.ForkProof{Key: adminKey, A: wire.Evidence{Ver: wire.Version, Seq: 5}, B: wire.Evidence{Ver: wire.Version, Seq: 5}}, Time: time.Now().UTC()})
	// Give the reports time to arrive by a round trip through every node.
	pingOK(t, admin, 3)
	for i := range 3 {
		if s.Node(i).IsRevoked(adminKey) {
			t.Fatalf("node %d revoked the admin on an unproven report", i)
		}
		if st, _ := peerState(s.Node(i), adminKey); st == trust.Quarantined {
			t.Fatalf("node %d quarantined the admin on an unproven report", i)
		}
	}
	pingOK(t, admin, 3)
}

// An admin's rotation reaches every member, the one that was down (crashed,
// still registered) too when it is back; the old secret admits nobody new, the new one does.
func TestSecretRotationReachesAMemberThatWasDown(t *testing.T) {
	s := testmesh.Start(t, 3)
	s.WaitAlive(30 * time.Second)
	old := s.Secret()
	s.Kill(2) // down, still registered (a clean stop leaves the swarm)
	// The buckets may have had their stream leaders on node 2: they answer
	// again once a new leader is elected (4-9 s, nats-server's Raft).
	var rot mesh.Rotation
	testmesh.CheckFor(t, 30*time.Second, 200*time.Millisecond, func() error {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		ids, err := s.Client(0).Identities(ctx)
		if err != nil {
			return err
		}
		rot, err = ids.RotateSecret(ctx, time.Now())
		return err
	})
	if len(rot.Members) != 3 || len(rot.Skipped) != 0 {
		t.Fatalf("rotation sealed to %d members, skipped %v", len(rot.Members), rot.Skipped)
	}
	testmesh.CheckFor(t, 20*time.Second, 50*time.Millisecond, func() error {
		for i := range 2 {
			if secretOf(t, s, i) == old {
				return fmt.Errorf("node %d still holds the old secret", i)
			}
		}
		return nil
	})
	if secretOf(t, s, 0) != secretOf(t, s, 1) {
		t.Fatal("nodes 0 and 1 hold different new secrets")
	}
	s.Restart(2)
	testmesh.CheckFor(t, 30*time.Second, 50*time.Millisecond, func() error {
		if secretOf(t, s, 2) != secretOf(t, s, 0) {
			return errors.New("node 2 has not taken the new secret since it is back")
		}
		for _, m := range s.Node(0).Members() {
			if m.SecretEpoch != rot.Epoch {
				return fmt.Errorf("member %s reports epoch %d, want %d", m.Chevron, m.SecretEpoch, rot.Epoch)
			}
		}
		return nil
	})
	if _, err := startJoiner(t, s, old, 20*time.Second); err == nil {
		t.Fatal("the old secret still admits a node")
	}
	if _, err := startJoiner(t, s, secretOf(t, s, 0), 30*time.Second); err != nil {
		t.Fatalf("the new secret: %v", err)
	}
	pingOK(t, s.Client(0), 4)
}

// A member cannot choose the swarm secret: a sealed secret in rn_secrets
// signed by a node key (or an operator's) is ignored, counted, and the
// member keeps its secret.
func TestMemberCannotChooseTheSecret(t *testing.T) {
	s := testmesh.Start(t, 2)
	s.WaitAlive(30 * time.Second)
	admin := s.Client(0)
	ids, err := admin.Identities(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	regs, _, err := ids.RegisteredNodes(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	var target wire.NodeInfo
	for _, r := range regs {
		if r.Pubkey == s.Node(1).Pubkey() {
			target = r
		}
	}
	if target.XKey == "" {
		t.Fatalf("node 1's registration has no xkey: %+v", target)
	}
	chosen := make([]byte, trust.SecretSize)
	for i := range chosen {
		chosen[i] = byte(i + 1)
	}
	xkp, _ := nkeys.CreateCurveKeys()
	xpub, _ := xkp.PublicKey()
	sealed, err := xkp.Seal(chosen, target.XKey)
	if err != nil {
		t.Fatal(err)
	}
	held := secretOf(t, s, 1)
	before := badRecords(s.Node(1))
	nk := seedOf(t, filepath.Join(s.Node(0).DataDir(), node.NodeSeedFile))
	op := seedOf(t, s.Node(1).OperatorSeedPath()) // admin on node 1 only
	for _, signer := range []nkeys.KeyPair{nk, op} {
		putSigned(t, kvOf(t, admin, node.BucketSecrets), signer, target.Pubkey,
			wire.SealedSecret{Member: target.Pubkey, Epoch: time.Now().UnixNano(), From: xpub, Sealed: sealed, At: time.Now().UTC()})
	}
	testmesh.CheckFor(t, 20*time.Second, 50*time.Millisecond, func() error {
		if got := badRecords(s.Node(1)) - before; got < 2 {
			return fmt.Errorf("node 1 counted %d bad records, want 2", got)
		}
		return nil
	})
	if got := secretOf(t, s, 1); got != held || got == trust.FormatSecret(chosen) {
		t.Fatalf("node 1's secret changed to %q…", got[:12])
	}
	pingOK(t, admin, 2)
}

// A new user works at once: AddUser returns once every live node applied
// the record, so the user's first command through another node is
// answered ok by every node, without a retry.
func TestNewUserWorksAtOnce(t *testing.T) {
	s := testmesh.Start(t, 3)
	s.WaitAlive(30 * time.Second)
	ids, err := s.Client(0).Identities(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	for i := range 3 {
		kp, _ := nkeys.CreateUser()
		pub, _ := kp.PublicKey()
		seed, _ := kp.Seed()
		path := filepath.Join(t.TempDir(), "u.nk")
		if err := os.WriteFile(path, seed, 0o600); err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		start := time.Now()
		if _, err := ids.AddUser(ctx, fmt.Sprintf("new%d", i), wire.RoleOperator, pub, "", time.Now()); err != nil {
			cancel()
			t.Fatalf("add user: %v", err)
		}
		cancel()
		t.Logf("user add returned after %v", time.Since(start).Round(time.Millisecond))
		c, err := mesh.Connect(context.Background(), mesh.Options{Server: s.Node(2 - i%3).ClientURL(), SeedFile: path})
		if err != nil {
			t.Fatalf("the new user connects to node %d: %v", 2-i%3, err)
		}
		res, err := c.Gather(context.Background(), mesh.GatherRequest{Selector: "all", Verb: "ping", Timeout: 5 * time.Second}, nil)
		c.Close()
		if err != nil || res.Summary.OK != 3 {
			t.Fatalf("the new user's first command: %v %s", err, res.Summary.Line)
		}
	}
}

// Throwaway keys do not take places in the ledger or the Sentinel: 5,000
// fresh keys each heartbeating on a chevron no one registered leave both
// tables as they were, and a node and a user added afterwards work.
func TestThrowawayKeysDoNotFillTheLedger(t *testing.T) {
	s := testmesh.Start(t, 2)
	s.WaitAlive(30 * time.Second)
	admin := s.Client(0)
	peersBefore := len(s.Node(1).TrustReport(time.Now()).Peers)
	for i := range 5000 {
		kp, _ := nkeys.CreateUser()
		pub, _ := kp.PublicKey()
		chev := fmt.Sprintf("%d", 1000+i)
		c, _ := subjects.Parse(chev)
		subj := subjects.Event(c, subjects.EvtHeartbeat)
		data, _ := json.Marshal(wire.Heartbeat{Chevron: chev, Name: "x", Pubkey: pub, Server: "x", Seq: 1, Sent: time.Now().UTC()})
		chain, err := trust.NewChain(kp, trust.ChainState{})
		if err != nil {
			t.Fatal(err)
		}
		ch, err := chain.Sign(subj, data)
		if err != nil {
			t.Fatal(err)
		}
		m := &nats.Msg{Subject: subj, Data: data, Header: nats.Header{}}
		ch.SetInto(m.Header)
		if err := admin.Conn().PublishMsg(m); err != nil {
			t.Fatal(err)
		}
	}
	if err := admin.Conn().Flush(); err != nil {
		t.Fatal(err)
	}
	// A round trip through node 1 after the flood: it has read it all.
	pingOK(t, admin, 2)
	if got := len(s.Node(1).TrustReport(time.Now()).Peers); got > peersBefore+1 {
		t.Fatalf("ledger grew from %d to %d peers on throwaway heartbeats", peersBefore, got)
	}
	for _, m := range s.Node(1).Members() {
		if m.Name == "x" {
			t.Fatalf("a throwaway chevron is in the member list: %+v", m)
		}
	}
	// A new node joins and is seen alive, a new user works.
	s.Add()
	testmesh.CheckFor(t, 30*time.Second, 50*time.Millisecond, func() error {
		for _, nd := range s.Live() {
			if got := alive(nd); got != 3 {
				return fmt.Errorf("node %s sees %d alive, want 3", nd.Chevron(), got)
			}
		}
		return nil
	})
	u := s.User(1, "late", wire.RoleOperator)
	res, err := u.Gather(context.Background(), mesh.GatherRequest{Selector: "all", Verb: "ping", Timeout: 5 * time.Second}, nil)
	if err != nil || res.Summary.OK != 3 {
		t.Fatalf("the new user after the flood: %v %s", err, res.Summary.Line)
	}
}

// A forged record of a one-time token's use does not admit a key: the
// rogue server behind it is refused whether the record is signed by a
// local operator key or by a member node's key with a token that never
// was, and the swarm keeps answering.
func TestForgedTokenUseAdmitsNobody(t *testing.T) {
	s := testmesh.Start(t, 2)
	s.WaitAlive(20 * time.Second)
	admin := s.Client(0)
	tokens := kvOf(t, admin, node.BucketTokens)
	for _, signer := range []struct {
		name string
		kp   nkeys.KeyPair
	}{
		{"operator key", seedOf(t, s.Node(1).OperatorSeedPath())},
		{"member node key, made-up token", seedOf(t, filepath.Join(s.Node(1).DataDir(), node.NodeSeedFile))},
	} {
		t.Run(signer.name, func(t *testing.T) {
			kp, _ := nkeys.CreateServer()
			pub, _ := kp.PublicKey()
			id := fmt.Sprintf("%032x", time.Now().UnixNano())
			use := wire.TokenUse{ID: id, Pubkey: pub, Token: "rntok_made-up", At: time.Now().UTC()}
			putSigned(t, tokens, signer.kp, id, use)
			putSigned(t, tokens, signer.kp, "key."+pub, use)
			cert, err := trust.NodeCertificate(kp, trust.RouteCredential{}, time.Now())
			if err != nil {
				t.Fatal(err)
			}
			tc := &tls.Config{MinVersion: tls.VersionTLS13, Certificates: []tls.Certificate{cert},
				ClientAuth: tls.RequireAnyClientCert, InsecureSkipVerify: true}
			r, l := rogue(t, s.Node(0).ClusterAddr(), tc)
			testmesh.CheckFor(t, 20*time.Second, 50*time.Millisecond, func() error {
				if l.fails.Load() < 2 {
					return errors.New("rogue has not tried twice yet")
				}
				return nil
			})
			if r.NumRoutes() != 0 {
				t.Fatalf("a forged token use admitted a rogue: %d routes", r.NumRoutes())
			}
		})
	}
	pingOK(t, admin, 2)
}

// Founders started together, none with --founder and each joining the
// others: one of them founds (the first write wins, 3 s after start) and
// every node pins that same key.
func TestFoundersStartedTogetherAgreeOnOneFounder(t *testing.T) {
	s := testmesh.Start(t, 3, func(i int, o *node.Options) { o.Founder, o.FounderGrace = false, 0 })
	s.WaitAlive(30 * time.Second)
	ops := map[string]bool{}
	for i := range 3 {
		ops[s.Node(i).OperatorKey()] = true
	}
	f := s.Node(0).Founder()
	if !ops[f] {
		t.Fatalf("founder %q is none of the founders' operator keys", f)
	}
	for i := range 3 {
		if got := s.Node(i).Founder(); got != f {
			t.Fatalf("node %d pinned founder %s, node 0 %s", i, got, f)
		}
	}
}

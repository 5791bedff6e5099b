package federation_test

import (
	"context"
	"encoding/json"
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/robonet-mesh/robonet/federation"
	"github.com/robonet-mesh/robonet/internal/testmesh"
	"github.com/robonet-mesh/robonet/mesh"
	"github.com/robonet-mesh/robonet/node"
	"github.com/robonet-mesh/robonet/subjects"
	"github.com/robonet-mesh/robonet/wire"
)

func up(prefix string) federation.SwarmState {
	return federation.SwarmState{Prefix: prefix, Link: federation.LinkUp, LastHeard: time.Now()}
}

func swarmOf(res federation.Result, prefix string) federation.SwarmResult {
	for _, s := range res.Swarms {
		if s.Swarm == prefix {
			return s
		}
	}
	return federation.SwarmResult{}
}

func statuses(res federation.Result) string {
	out := ""
	for _, r := range res.Results {
		out += fmt.Sprintf("%s:%s ", r.Chevron, r.Status)
	}
	return out
}

// One physical swarm, 3.12.7, stands for the rest of a federation: the
// requester is told its own swarm is another one (3.12.9) and what the
// directory shows, so the ambassadors of 3.12.7 answer its federated
// commands as they would over a leaf link. Every swarm and every node ends
// accounted: complete, partitioned (from the directory, not waited for),
// incomplete (no done by the deadline); per node ok, timeout, offline or
// denied; a swarm named by its prefix is one logical node; the local swarm
// is gathered in-swarm and its ambassadors stay out. Forged stream
// messages are dropped.
func TestFederatedGatherAccountsForEverySwarmAndNode(t *testing.T) {
	s := testmesh.Start(t, 3, testmesh.WithChevrons("3.12.7.1", "3.12.7.2", "3.12.7.3"), func(i int, o *node.Options) {
		if i < 2 {
			o.ExecAllow = []string{"sleep"}
		}
	})
	s.WaitAlive(20 * time.Second)
	s.WaitLeader(20 * time.Second)
	startAmbassadors(t, s)
	c := s.Client(0)
	keys := map[string]string{}
	for _, nd := range s.Live() {
		keys[nd.Chevron().String()] = nd.Pubkey()
	}
	elsewhere, _ := subjects.ParseSwarmPrefix("3.12.9")
	here, _ := subjects.ParseSwarmPrefix("3.12.7")
	ctx := context.Background()
	gather := func(sel, verb string, args json.RawMessage, timeout time.Duration, local subjects.Chevron, members []wire.Member,
		dir []federation.SwarmState, nodeKey func(string) (string, bool)) (federation.Result, time.Duration) {
		t.Helper()
		start := time.Now()
		res, err := federation.Gather(ctx, c, federation.Request{
			GatherRequest: mesh.GatherRequest{Selector: sel, Verb: verb, Args: args, Timeout: timeout},
			Local:         local, Members: members, Swarms: dir, NodeKey: nodeKey,
		}, nil)
		if err != nil {
			t.Fatalf("gather %s %s: %v", sel, verb, err)
		}
		return res, time.Since(start)
	}

	t.Run("complete, partitioned and incomplete swarms; forgeries dropped", func(t *testing.T) {
		// eve, an admin elsewhere, sees the federated command and answers
		// for a swarm that never does, and for a node that does.
		eve := s.User(0, "eve", wire.RoleAdmin)
		var forged atomic.Int32
		sub, err := eve.Conn().Subscribe("rn.fed.3.12.cmd.ping", func(m *nats.Msg) {
			var req wire.Request
			_ = json.Unmarshal(m.Data, &req)
			send := func(kind string, v any, hdr nats.Header) {
				data, _ := json.Marshal(v)
				out := &nats.Msg{Subject: m.Reply, Data: data, Header: hdr}
				out.Header.Set(wire.HdrFedKind, kind)
				if err := eve.Signer().SignMsg(out); err == nil && eve.Conn().PublishMsg(out) == nil {
					forged.Add(1)
				}
			}
			send(wire.FedKindStart, wire.FedStart{Kind: wire.FedKindStart, ID: req.ID, Swarm: "3.12.6", Ambassador: "3.12.6.1", Parts: 1, Part: 1,
				Expected: []wire.FedNode{{Chevron: "3.12.6.1", Pubkey: eve.Signer().PublicKey(), State: wire.StateAlive}}}, nats.Header{})
			send(wire.FedKindResult, wire.Result{ID: req.ID, Status: wire.StatusOK, Chevron: "3.12.7.2"}, nats.Header{wire.HdrFedSigned: []string{m.Reply}})
			send(wire.FedKindDone, wire.FedDone{Kind: wire.FedKindDone, ID: req.ID, Swarm: "3.12.6", Ambassador: "3.12.6.1", Expected: []string{"3.12.6.1"}}, nats.Header{})
		})
		if err != nil {
			t.Fatal(err)
		}
		defer sub.Unsubscribe()
		_ = eve.Conn().Flush()
		// 3.12.8's entry is stale: its link still reads up, but its last
		// summary is older than PartitionAfter.
		dir := []federation.SwarmState{up("3.12.7"), up("3.12.6"),
			{Prefix: "3.12.8", Link: federation.LinkUp, LastHeard: time.Now().Add(-federation.PartitionAfter - time.Second), Nodes: 4}}
		nodeKey := func(ch string) (string, bool) { k, ok := keys[ch]; return k, ok }
		res, took := gather("3.12", "ping", nil, 2*time.Second, elsewhere, nil, dir, nodeKey)
		if got := swarmOf(res, "3.12.7"); got.Status != federation.SwarmComplete || got.Answered != 3 || got.Expected != 3 || keys[got.Ambassador] != got.AmbassadorKey {
			t.Fatalf("3.12.7: %+v", got)
		}
		if got := swarmOf(res, "3.12.8"); got.Status != federation.SwarmPartitioned || got.Expected != 4 {
			t.Fatalf("3.12.8: %+v", got)
		}
		if got := swarmOf(res, "3.12.6"); got.Status != federation.SwarmIncomplete {
			t.Fatalf("3.12.6 (no ambassador; a forged one): %+v", got)
		}
		if st := statuses(res); st != "3.12.7.1:ok 3.12.7.2:ok 3.12.7.3:ok " {
			t.Fatalf("nodes: %s", st)
		}
		sum := res.Summary
		// The requester's own swarm is under 3.12 too: gathered locally,
		// here with no node.
		if got := swarmOf(res, "3.12.9"); got.Status != federation.SwarmLocal || got.Expected != 0 {
			t.Fatalf("3.12.9 (local): %+v", got)
		}
		if sum.Total != 3 || sum.OK != 3 || sum.Swarms != 4 || sum.Partitioned != 1 || sum.Incomplete != 1 || res.OK() {
			t.Fatalf("summary: %+v", sum)
		}
		if forged.Load() != 3 || sum.Dropped < 3 {
			t.Fatalf("%d forged messages sent, %d dropped", forged.Load(), sum.Dropped)
		}
		for _, r := range res.Results {
			if r.Swarm != "3.12.7" {
				t.Fatalf("node %s in swarm %q", r.Chevron, r.Swarm)
			}
		}
		// Incomplete is decided at the deadline, not before; partitioned
		// costs no wait at all (checked below).
		if took < 2*time.Second || took > 4*time.Second {
			t.Fatalf("took %v with a 2 s deadline", took)
		}
	})

	t.Run("a swarm by its prefix answers as one logical node", func(t *testing.T) {
		res, took := gather("3.12.7", "info", nil, 5*time.Second, elsewhere, nil, []federation.SwarmState{up("3.12.7")}, nil)
		if len(res.Results) != 1 || res.Results[0].Chevron != "3.12.7" || res.Results[0].Status != wire.StatusOK || !res.OK() {
			t.Fatalf("logical node: %+v", res.Results)
		}
		var out struct {
			Swarm   string                  `json:"swarm"`
			Results []federation.NodeResult `json:"results"`
		}
		if err := json.Unmarshal(res.Results[0].Output, &out); err != nil || out.Swarm != "3.12.7" || len(out.Results) != 3 {
			t.Fatalf("logical node output: %s %v", res.Results[0].Output, err)
		}
		if took > 4*time.Second {
			t.Fatalf("a complete answer waited for the deadline: %v", took)
		}
		// A partitioned swarm by its prefix: offline at once.
		res, took = gather("3.12.8", "info", nil, 5*time.Second, elsewhere, nil,
			[]federation.SwarmState{{Prefix: "3.12.8", Link: federation.LinkDown}}, nil)
		if len(res.Results) != 1 || res.Results[0].Status != mesh.StatusOffline || res.Results[0].Code != federation.SwarmPartitioned || took > time.Second {
			t.Fatalf("partitioned logical node after %v: %+v", took, res.Results)
		}
	})

	t.Run("per node: timeout and denied", func(t *testing.T) {
		args, _ := json.Marshal(map[string]any{"argv": []string{"sleep", "5"}})
		res, _ := gather("3.12", "exec", args, 1500*time.Millisecond, elsewhere, nil, []federation.SwarmState{up("3.12.7")}, nil)
		if st := statuses(res); st != "3.12.7.1:timeout 3.12.7.2:timeout 3.12.7.3:denied " {
			t.Fatalf("nodes: %s", st)
		}
		sw := swarmOf(res, "3.12.7")
		if sw.Status != federation.SwarmComplete || fmt.Sprint(sw.Timeout) != "[3.12.7.1 3.12.7.2]" || sw.Answered != 1 {
			t.Fatalf("swarm: %+v", sw)
		}
		if res.Results[2].Code != wire.CodeApprovalRequired {
			t.Fatalf("the node without sleep on its allow-list: %+v", res.Results[2])
		}
	})

	t.Run("the local swarm in-swarm, its ambassadors excluded", func(t *testing.T) {
		members, err := c.Nodes(ctx)
		if err != nil {
			t.Fatal(err)
		}
		res, _ := gather("3.12", "ping", nil, 1500*time.Millisecond, here, members,
			[]federation.SwarmState{{Prefix: "3.12.7", Link: federation.LinkSelf}, up("3.12.6")}, nil)
		if st := statuses(res); st != "3.12.7.1:ok 3.12.7.2:ok 3.12.7.3:ok " {
			t.Fatalf("nodes (each once): %s", st)
		}
		if sw := swarmOf(res, "3.12.7"); sw.Status != federation.SwarmLocal || sw.Answered != 3 {
			t.Fatalf("local swarm: %+v", sw)
		}
		if sw := swarmOf(res, "3.12.6"); sw.Status != federation.SwarmIncomplete || len(res.Swarms) != 2 {
			t.Fatalf("swarms: %+v", res.Swarms)
		}
	})

	t.Run("per node: offline", func(t *testing.T) {
		leader := s.WaitLeader(10 * time.Second)
		k := 1
		if leader == 1 {
			k = 2
		}
		gone := s.Node(k).Chevron().String()
		s.Kill(k)
		testmesh.CheckFor(t, 15*time.Second, 50*time.Millisecond, func() error {
			for _, nd := range s.Live() {
				for _, m := range nd.Members() {
					if m.Chevron == gone && m.State != wire.StateOffline {
						return fmt.Errorf("%s sees %s %s", nd.Chevron(), gone, m.State)
					}
				}
			}
			return nil
		})
		res, _ := gather("3.12", "ping", nil, 3*time.Second, elsewhere, nil, []federation.SwarmState{up("3.12.7")}, nil)
		sw := swarmOf(res, "3.12.7")
		if sw.Status != federation.SwarmComplete || fmt.Sprint(sw.Offline) != "["+gone+"]" || sw.Answered != 2 {
			t.Fatalf("swarm: %+v (nodes %s)", sw, statuses(res))
		}
		if res.Summary.Offline != 1 || res.Summary.OK != 2 {
			t.Fatalf("summary: %+v", res.Summary)
		}
	})
}

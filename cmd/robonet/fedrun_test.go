package main

import (
	"context"
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/robonet-mesh/robonet/federation"
	"github.com/robonet-mesh/robonet/internal/testmesh"
	"github.com/robonet-mesh/robonet/subjects"
	"github.com/robonet-mesh/robonet/wire"
)

// serveDirectory answers the directory query on nd's behalf (signed as
// the node, as the real directory feature will), with dir.
func serveDirectory(t *testing.T, s *testmesh.Swarm, dir []federation.SwarmState) {
	t.Helper()
	nd := s.Node(0)
	fc, err := nd.FeatureConn("dirstub")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(fc.Close)
	if _, err := fc.Subscribe(subjects.QueryAt(subjects.QueryFed, nd.ServerName()), func(m *nats.Msg) {
		data, _ := json.Marshal(federation.View{Swarm: "3.12.7", Swarms: dir})
		out, _ := json.Marshal(wire.Reply{Data: data})
		r := &nats.Msg{Subject: m.Reply, Data: out}
		if nd.Signer().SignMsg(r) == nil {
			_ = fc.PublishMsg(r)
		}
	}); err != nil {
		t.Fatal(err)
	}
	if err := fc.Flush(); err != nil {
		t.Fatal(err)
	}
}

// robonet run with a prefix outside the connected node's swarm goes
// federated by itself: the local swarm's nodes in-swarm, the other swarms
// accounted (partitioned, incomplete), per-swarm results in --json, exit 2
// when not every swarm and node was ok; a prefix inside stays in-swarm.
func TestRunGoesFederatedOutsideTheLocalSwarm(t *testing.T) {
	s := testmesh.Start(t, 1, testmesh.WithChevrons("3.12.7.1"))
	nd := s.Node(0)
	stop, err := startFedCommands(context.Background(), nd, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { stop(context.Background()) })
	conn := []string{"--server", nd.ClientURL(), "--nkey", nd.OperatorSeedPath(), "--data", nd.DataDir()}

	// Without a directory (a swarm that uses four-token chevrons but is not
	// federated) the selector means this swarm's nodes.
	if _, _, err := rncli(t, append([]string{"run", "3.12", "ping", "--timeout", "5s"}, conn...)...); err != nil {
		t.Fatalf("run 3.12 ping without a directory: %v", err)
	}
	// Inside the swarm nothing changes.
	if _, _, err := rncli(t, append([]string{"run", "3.12.7.1", "ping"}, conn...)...); err != nil {
		t.Fatalf("in-swarm run: %v", err)
	}

	serveDirectory(t, s, []federation.SwarmState{
		{Prefix: "3.12.7", Link: federation.LinkSelf},
		{Prefix: "3.12.9", Link: federation.LinkUp, LastHeard: time.Now().Add(time.Hour)}, // no ambassador: incomplete
		{Prefix: "3.12.8", Link: federation.LinkDown},
	})
	out, _, err := rncli(t, append([]string{"run", "3.12", "ping", "--timeout", "1s", "--json"}, conn...)...)
	var ee exitError
	if !errors.As(err, &ee) || ee.code != 2 {
		t.Fatalf("run 3.12 ping: %v, want exit 2", err)
	}
	var res federation.Result
	if err := json.Unmarshal([]byte(out), &res); err != nil {
		t.Fatalf("--json: %v\n%s", err, out)
	}
	got := map[string]string{}
	for _, sw := range res.Swarms {
		got[sw.Swarm] = sw.Status
	}
	if got["3.12.7"] != federation.SwarmLocal || got["3.12.8"] != federation.SwarmPartitioned || got["3.12.9"] != federation.SwarmIncomplete {
		t.Fatalf("swarms: %v", got)
	}
	if len(res.Results) != 1 || res.Results[0].Chevron != "3.12.7.1" || res.Results[0].Status != wire.StatusOK || res.Results[0].Swarm != "3.12.7" {
		t.Fatalf("nodes: %+v", res.Results)
	}
	// Another swarm by its prefix: one logical node, here partitioned.
	out, _, err = rncli(t, append([]string{"run", "3.12.8", "status"}, conn...)...)
	if !errors.As(err, &ee) || ee.code != 2 || !strings.Contains(out, "3.12.8") || !strings.Contains(out, "partitioned") {
		t.Fatalf("run 3.12.8 status: %v\n%s", err, out)
	}
}

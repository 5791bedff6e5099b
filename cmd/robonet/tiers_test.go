package main

import (
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/robonet-mesh/robonet/internal/testmesh"
	"github.com/robonet-mesh/robonet/mesh"
	"github.com/robonet-mesh/robonet/node"
	"github.com/robonet-mesh/robonet/trust"
	"github.com/robonet-mesh/robonet/wire"
)

// nodes --json carries each node's tier, nodes shows a TIER column, `run
// 'trust>=2' ping` goes to the nodes at tier 2, and status reports the
// buckets' replication.
func TestNodesRunAndStatusShowTiersAndReplication(t *testing.T) {
	// Tiers rise in seconds and stop at 2 (Tier3 needs a score of exactly 1).
	s := testmesh.Start(t, 3, func(_ int, o *node.Options) {
		o.Trust = trust.Config{ChainScale: 1, AgeScale: 3 * time.Second, Tier3: 1}
	})
	s.WaitAlive(30 * time.Second)
	nd := s.Node(0)
	base := []string{"--server", nd.ClientURL(), "--nkey", nd.OperatorSeedPath(), "--data", nd.DataDir()}
	run := func(args ...string) (string, string, error) { return rncli(t, append(args, base...)...) }

	testmesh.CheckFor(t, 60*time.Second, 200*time.Millisecond, func() error {
		out, _, err := run("nodes", "--json")
		if err != nil {
			return err
		}
		var raw []map[string]any
		if err := json.Unmarshal([]byte(out), &raw); err != nil {
			return fmt.Errorf("nodes --json: %v: %s", err, out)
		}
		for _, m := range raw {
			if _, ok := m["tier"]; !ok {
				t.Fatalf("nodes --json: member without tier: %v", m)
			}
			if m["tier"] != 2.0 {
				return fmt.Errorf("%v at tier %v", m["chevron"], m["tier"])
			}
		}
		if len(raw) != 3 {
			return fmt.Errorf("%d members", len(raw))
		}
		return nil
	})
	out, _, err := run("nodes")
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if len(lines) != 4 || !strings.Contains(lines[0], "LEADER  TIER  CAPS") {
		t.Fatalf("nodes:\n%s", out)
	}
	col := strings.Index(lines[0], "TIER")
	for _, l := range lines[1:] {
		if len(l) <= col || l[col] != '2' {
			t.Errorf("nodes row without tier 2 under TIER:\n%s", out)
		}
	}

	out, _, err = run("run", "trust>=2", "ping", "--json")
	var res mesh.GatherResult
	if err != nil || json.Unmarshal([]byte(out), &res) != nil || res.Summary.Total != 3 || res.Summary.OK != 3 {
		t.Fatalf("run trust>=2 ping: %v %s", err, out)
	}
	if _, stderr, err := run("run", "trust>=3", "ping"); err == nil || !strings.Contains(stderr+err.Error(), "no nodes matched") {
		t.Fatalf("run trust>=3 ping: %v %s", err, stderr)
	}

	testmesh.CheckFor(t, 60*time.Second, 200*time.Millisecond, func() error {
		out, _, err := run("status", "--json")
		if err != nil {
			return err
		}
		var st wire.Status
		if err := json.Unmarshal([]byte(out), &st); err != nil {
			return err
		}
		if st.Replicas != 3 || strings.Contains(out, `"behind"`) {
			return fmt.Errorf("status: %s", out)
		}
		return nil
	})
	if out, _, err := run("status"); err != nil || !strings.Contains(out, "buckets R3\n") {
		t.Fatalf("status: %v\n%s", err, out)
	}
}

func TestStatusNamesBucketsBehind(t *testing.T) {
	for _, tc := range []struct {
		st   wire.Status
		want string
	}{
		{wire.Status{}, "buckets not read yet"},
		{wire.Status{Replicas: 1}, "buckets R1"},
		{wire.Status{Replicas: 3}, "buckets R3"},
		{wire.Status{Replicas: 1, Behind: []string{"rn_files", "rn_users"}},
			"buckets R1 at the lowest; behind: rn_files, rn_users (the leader raises them while 3 JetStream servers are up)"},
	} {
		if got := fmtReplication(tc.st); got != tc.want {
			t.Errorf("%+v: %q, want %q", tc.st, got, tc.want)
		}
	}
}

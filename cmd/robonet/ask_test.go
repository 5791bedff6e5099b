package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/robonet-mesh/robonet/intents"
	"github.com/robonet-mesh/robonet/internal/testmesh"
	"github.com/robonet-mesh/robonet/node"
	"github.com/robonet-mesh/robonet/sentinel"
)

// ask end to end on a real node: the headline sentence runs; --dry-run
// --json shows the plan and sends nothing; a mutating plan without a
// terminal and without --yes is refused; nonsense is not understood.
func TestAsk(t *testing.T) {
	t.Setenv("ROBONET_LLM_URL", "")
	t.Setenv("ROBONET_LLM_MODEL", "")
	s := testmesh.Start(t, 1, func(i int, o *node.Options) { o.Caps = []string{"ai"} })
	nd := s.Node(0)
	base := []string{"--server", nd.ClientURL(), "--nkey", nd.OperatorSeedPath(), "--data", nd.DataDir()}
	ask := func(args ...string) (string, string, error) {
		return rncli(t, append(append([]string{"ask"}, args...), base...)...)
	}

	out, stderr, err := ask("scan AI nodes for anomalies")
	if (err != nil && !strings.Contains(err.Error(), "step")) || !strings.Contains(out, "[s1] caps=ai scan") || !strings.Contains(out, "s1 scan on caps=ai: 1 node") {
		t.Fatalf("ask scan: %v\n%s\n%s", err, out, stderr)
	}
	out, _, err = ask("ping everything, then get cpu from the ones that answered slowly", "--dry-run", "--json")
	var res intents.Result
	if err != nil || json.Unmarshal([]byte(out), &res) != nil || !res.DryRun || len(res.Plan.Steps) != 2 || res.Plan.Steps[1].From == nil {
		t.Fatalf("dry run: %v %s", err, out)
	}
	start := time.Now()
	if _, _, err := ask("restart nginx on all nodes"); err == nil || !strings.Contains(err.Error(), "--yes") {
		t.Fatalf("mutating without --yes: %v", err)
	}
	t.Logf("refused in %v", time.Since(start))
	if _, _, err := ask("make me a sandwich"); err == nil || !strings.Contains(err.Error(), "did not understand") {
		t.Fatalf("nonsense: %v", err)
	}
	if _, _, err := ask("ping all; rm -rf /"); err == nil {
		t.Fatal("a sentence smuggling shell was planned")
	}
	if _, _, err := ask("ping all", "--planner", "magic"); err == nil || !strings.Contains(err.Error(), "--planner") {
		t.Fatalf("bad --planner: %v", err)
	}
}

// The headline: `robonet ask "scan AI nodes for anomalies"` on a swarm where
// one ai node has an injected anomaly (its CPU pinned after a normal
// baseline): the summary names that node and the Sentinels' finding.
func TestAskFindsTheAnomalousAINode(t *testing.T) {
	t.Setenv("ROBONET_LLM_URL", "")
	var pinned atomic.Bool
	s := testmesh.Start(t, 3, func(i int, o *node.Options) {
		o.Caps = []string{"ai"}
		o.Timing.Heartbeat = 100 * time.Millisecond
		o.Sentinel = sentinel.Config{Window: 300 * time.Millisecond, WarmUp: 8, History: 40, QuarantineAfter: 3,
			Quiet: time.Minute, Heartbeat: 100 * time.Millisecond}
		o.Gauges = func() (float64, float64, float64) {
			if i == 2 && pinned.Load() {
				return 1, 0.4, 0.3
			}
			return 0.2, 0.4, 0.3
		}
	})
	s.WaitAlive(20 * time.Second)
	victim := s.Node(2)
	testmesh.CheckFor(t, 30*time.Second, 50*time.Millisecond, func() error {
		for _, f := range s.Node(0).SentinelView(victim.Chevron().String()) {
			if f.Signal == sentinel.CPU && !strings.Contains(f.Detail, "warming") {
				return nil
			}
		}
		return errors.New("baseline not warm")
	})
	pinned.Store(true)
	nd := s.Node(0)
	base := []string{"--server", nd.ClientURL(), "--nkey", nd.OperatorSeedPath(), "--data", nd.DataDir()}
	testmesh.CheckFor(t, 30*time.Second, 200*time.Millisecond, func() error {
		out, _, _ := rncli(t, append([]string{"ask", "scan AI nodes for anomalies"}, base...)...)
		i := strings.Index(out, victim.Name()+" ("+victim.Chevron().String()+")")
		if i < 0 || !strings.Contains(out[i:], "sentinel") || !strings.Contains(out[i:], "cpu") {
			return fmt.Errorf("summary does not name %s with a sentinel cpu finding:\n%s", victim.Name(), out)
		}
		return nil
	})
	out, _, err := rncli(t, append([]string{"alerts"}, base...)...)
	if err != nil || !strings.Contains(out, victim.Chevron().String()) || !strings.Contains(out, "cpu") {
		t.Fatalf("alerts: %v\n%s", err, out)
	}
}

package main

import (
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/robonet-mesh/robonet/intents"
	"github.com/robonet-mesh/robonet/internal/testmesh"
	"github.com/robonet-mesh/robonet/node"
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

package intents

import (
	"context"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/robonet-mesh/robonet/internal/testmesh"
	"github.com/robonet-mesh/robonet/node"
	"github.com/robonet-mesh/robonet/trust"
)

// The rule planner's trust plans (`trust>=2` for "trusted", `trust>=3` for
// "fully trusted", `trust=0` for "untrusted") select the nodes the registry
// puts at those tiers: here every node, once the swarm has earned tier 2.
// Not parallel: the swarm's goroutines must be gone when it ends.
func TestTrustPlansSelectRealNodes(t *testing.T) {
	t.Cleanup(func() { testmesh.CheckNoLeaks(t) })
	// Tiers rise in seconds and stop at 2 (Tier3 needs a score of exactly 1).
	s := testmesh.Start(t, 3, func(_ int, o *node.Options) {
		o.Trust = trust.Config{ChainScale: 1, AgeScale: 3 * time.Second, Tier3: 1}
	})
	s.WaitAlive(30 * time.Second)
	c := s.Client(0)
	var all []string
	testmesh.CheckFor(t, 60*time.Second, 200*time.Millisecond, func() error {
		ms, err := c.Nodes(context.Background())
		if err != nil {
			return err
		}
		all = all[:0]
		for _, m := range ms {
			if m.Tier != 2 {
				return fmt.Errorf("%s at tier %d", m.Chevron, m.Tier)
			}
			all = append(all, m.Chevron)
		}
		return nil
	})
	cat := ruleCatalogue(t)
	vocab := Vocabulary{}
	opts := RunOptions{Timeout: 10 * time.Second}

	res, _ := runPlan(t, c, cat, "ping the trusted nodes", vocab, opts)
	s1 := res.Steps[0]
	if s1.Selector != "trust>=2" || s1.Status != StepOK || !slices.Equal(s1.Targets, all) || s1.Gather.Summary.OK != len(all) {
		t.Fatalf("trusted: %s on %s, targets %v (want %v): %s", s1.Status, s1.Selector, s1.Targets, all, s1.Gather.Summary.Line)
	}
	for _, tc := range []struct{ sentence, sel string }{
		{"ping the fully trusted nodes", "trust>=3"},
		{"ping the untrusted nodes", "trust=0"},
	} {
		res, _ := runPlan(t, c, cat, tc.sentence, vocab, opts)
		s1 := res.Steps[0]
		want := fmt.Sprintf("no nodes matched %s among the 3 in the registry", tc.sel)
		if s1.Selector != tc.sel || s1.Status != StepSkipped || s1.Reason != want {
			t.Errorf("%q: %s on %s: %q, want skipped: %q", tc.sentence, s1.Status, s1.Selector, s1.Reason, want)
		}
	}
}

package intents

import (
	"encoding/json"
	"testing"
)

// The rule planner's plans survive the JSON contract that `ask --json` and
// LLM planners share: encoded, strictly decoded and validated again.
func TestRulePlansRoundTripThroughJSON(t *testing.T) {
	t.Parallel()
	cat := ruleCatalogue(t)
	for _, ph := range Phrasings() {
		p, err := PlanRules(ph.Example, cat, ExampleVocabulary())
		if err != nil {
			t.Fatalf("%q: %v", ph.Example, err)
		}
		b, err := json.Marshal(p)
		if err != nil {
			t.Fatal(err)
		}
		q, err := DecodePlan(b)
		if err != nil {
			t.Fatalf("%q: %v\n%s", ph.Example, err, b)
		}
		if err := q.Validate(cat); err != nil {
			t.Errorf("%q: decoded plan: %v", ph.Example, err)
		}
		if BriefPlan(q) != BriefPlan(p) || q.Planner != PlannerRules || q.Sentence != ph.Example {
			t.Errorf("%q: %s became %s", ph.Example, BriefPlan(p), BriefPlan(q))
		}
	}
}

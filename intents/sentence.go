package intents

import (
	"context"
	"fmt"

	"github.com/robonet-mesh/robonet/command"
	"github.com/robonet-mesh/robonet/wire"
)

// Planner choices for PlanSentence.
const (
	ChooseAuto  = "auto"  // the LLM when configured, else the rules
	ChooseRules = "rules" // the offline rule planner only
	ChooseLLM   = "llm"   // the LLM; an error when it is not configured
)

// PlanSentence plans sentence for the swarm whose live registry is members
// with the planner choice (ChooseAuto, ChooseRules or ChooseLLM; the LLM's
// configuration comes from getenv, see LLMConfigFromEnv), and validates the
// plan against cat. `robonet ask` and the gateway's /api/ask plan with it.
func PlanSentence(ctx context.Context, sentence string, cat *command.Catalogue, members []wire.Member, choice string, getenv func(string) string) (Plan, error) {
	switch choice {
	case ChooseAuto, ChooseRules, ChooseLLM:
	default:
		return Plan{}, fmt.Errorf("planner %q: want auto, rules or llm", choice)
	}
	live := VocabularyFrom(members)
	rules := func(s string) (Plan, error) { return PlanRules(s, cat, live) }
	var plan Plan
	var err error
	llm, configured := LLMConfigFromEnv(getenv)
	switch {
	case choice == ChooseLLM && !configured:
		return Plan{}, fmt.Errorf("planner llm: set ROBONET_LLM_URL and ROBONET_LLM_MODEL")
	case choice != ChooseRules && configured:
		p, err := NewLLMPlanner(llm)
		if err != nil {
			return Plan{}, err
		}
		if plan, err = p.Plan(ctx, sentence, cat, live, rules); err != nil {
			return Plan{}, err
		}
	default:
		if plan, err = rules(sentence); err != nil {
			return Plan{}, err
		}
	}
	if err := plan.Validate(cat); err != nil {
		return Plan{}, err
	}
	return plan, nil
}

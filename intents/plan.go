package intents

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"regexp"
	"sort"
	"strings"

	"github.com/robonet-mesh/robonet/command"
	"github.com/robonet-mesh/robonet/subjects"
)

// Limits on a plan.
const (
	MaxSteps    = 16
	MaxPlanSize = 64 << 10 // bytes of JSON
	MaxNodes    = 10000    // the largest Limit or Pick.N
)

// Planner names, as Plan.Planner says them.
const (
	PlannerRules = "rules"
	PlannerLLM   = "llm"
)

// How a step picks nodes from an earlier step's results (Pick.Which).
const (
	PickOK      = "ok"      // the nodes that answered ok
	PickFailed  = "failed"  // the nodes that did not (error, timeout, offline, denied)
	PickSlowest = "slowest" // the N slowest answers
	PickFastest = "fastest" // the N fastest answers
	PickAll     = "all"     // every node the earlier step targeted
)

// How a step orders candidate nodes before Limit (Step.Order).
const (
	OrderLoadDesc = "load_desc" // busiest first ("the 5 busiest")
	OrderLoadAsc  = "load_asc"  // idlest first
)

// ErrPlan is wrapped by every validation error.
var ErrPlan = errors.New("invalid plan")

// Plan is a small DAG of steps that ask shows, confirms and runs. Its JSON
// is the contract with LLM planners (see Schema) and with `ask --json`.
type Plan struct {
	Sentence string `json:"sentence"`
	Planner  string `json:"planner"`        // PlannerRules or PlannerLLM
	Note     string `json:"note,omitempty"` // e.g. why the LLM's plan was not used
	Steps    []Step `json:"steps"`
}

// Step runs one verb on the nodes a selector names, gathered.
type Step struct {
	ID        string          `json:"id"`       // lower-case word, unique in the plan: "s1", "ping"
	Selector  string          `json:"selector"` // subjects selector: "all", "3.12", "caps=ai", "tag=role:camera,load<0.5"
	Verb      string          `json:"verb"`     // a catalogue verb
	Args      json.RawMessage `json:"args,omitempty"`
	DependsOn []string        `json:"depends_on,omitempty"` // steps that must finish first
	From      *Pick           `json:"from,omitempty"`       // narrow the nodes to those an earlier step picked
	Order     string          `json:"order,omitempty"`      // OrderLoadDesc or OrderLoadAsc, before Limit
	Limit     int             `json:"limit,omitempty"`      // at most this many nodes; 0: no cap
	Why       string          `json:"why,omitempty"`        // one line for people
}

// Pick uses an earlier step's result to choose this step's nodes.
type Pick struct {
	Step  string `json:"step"`        // an id in DependsOn
	Which string `json:"which"`       // PickOK, PickFailed, PickSlowest, PickFastest or PickAll
	N     int    `json:"n,omitempty"` // for slowest and fastest: how many (1..MaxNodes)
}

var stepIDRE = regexp.MustCompile(`^[a-z][a-z0-9_-]{0,31}$`)

// DecodePlan reads a plan's JSON strictly: unknown fields, trailing data,
// wrong types and plans over MaxPlanSize are errors.
func DecodePlan(data []byte) (Plan, error) {
	var p Plan
	if len(data) > MaxPlanSize {
		return p, fmt.Errorf("%w: %d bytes of JSON (limit %d)", ErrPlan, len(data), MaxPlanSize)
	}
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&p); err != nil {
		return Plan{}, fmt.Errorf("%w: %v", ErrPlan, err)
	}
	if dec.More() {
		return Plan{}, fmt.Errorf("%w: data after the plan", ErrPlan)
	}
	return p, nil
}

// Validate checks p against the catalogue: 1..MaxSteps steps, unique ids,
// known verbs with arguments that pass their schema, selectors that parse,
// dependencies that exist and form no cycle, picks from a dependency. The
// error names the step and what is wrong.
func (p Plan) Validate(cat *command.Catalogue) error {
	bad := func(format string, a ...any) error { return fmt.Errorf("%w: "+format, append([]any{ErrPlan}, a...)...) }
	if len(p.Steps) == 0 {
		return bad("no steps")
	}
	if len(p.Steps) > MaxSteps {
		return bad("%d steps (limit %d)", len(p.Steps), MaxSteps)
	}
	ids := map[string]int{}
	for i, s := range p.Steps {
		if !stepIDRE.MatchString(s.ID) {
			return bad("step %d: id %q: want a lower-case letter, then letters, digits, '_' or '-', at most 32", i+1, clip(s.ID))
		}
		if _, dup := ids[s.ID]; dup {
			return bad("step %d: id %q used twice", i+1, s.ID)
		}
		ids[s.ID] = i
	}
	for _, s := range p.Steps {
		if _, err := subjects.ParseSelector(s.Selector); err != nil {
			return bad("step %s: selector: %v", s.ID, err)
		}
		if err := cat.Validate(s.Verb, s.Args); err != nil {
			return bad("step %s: %v", s.ID, err)
		}
		seen := map[string]bool{}
		for _, d := range s.DependsOn {
			if _, ok := ids[d]; !ok {
				return bad("step %s: depends on %q, which is not a step", s.ID, clip(d))
			}
			if d == s.ID {
				return bad("step %s: depends on itself", s.ID)
			}
			if seen[d] {
				return bad("step %s: depends on %q twice", s.ID, d)
			}
			seen[d] = true
		}
		if s.From != nil {
			if !seen[s.From.Step] {
				return bad("step %s: picks from %q, which is not among its depends_on", s.ID, clip(s.From.Step))
			}
			switch s.From.Which {
			case PickOK, PickFailed, PickAll:
				if s.From.N != 0 {
					return bad("step %s: n is only for %q and %q", s.ID, PickSlowest, PickFastest)
				}
			case PickSlowest, PickFastest:
				if s.From.N < 1 || s.From.N > MaxNodes {
					return bad("step %s: n %d: want 1..%d", s.ID, s.From.N, MaxNodes)
				}
			default:
				return bad("step %s: from.which %q: want ok, failed, slowest, fastest or all", s.ID, clip(s.From.Which))
			}
		}
		switch s.Order {
		case "", OrderLoadDesc, OrderLoadAsc:
		default:
			return bad("step %s: order %q: want %s or %s", s.ID, clip(s.Order), OrderLoadDesc, OrderLoadAsc)
		}
		if s.Limit < 0 || s.Limit > MaxNodes {
			return bad("step %s: limit %d: want 0..%d", s.ID, s.Limit, MaxNodes)
		}
		if len(s.Why) > 200 {
			return bad("step %s: why is %d bytes (limit 200)", s.ID, len(s.Why))
		}
	}
	if _, err := p.Order(); err != nil {
		return err
	}
	return nil
}

// Order returns the step indexes in an order that runs every dependency
// first (stable: plan order among independent steps), or an error naming
// a cycle.
func (p Plan) Order() ([]int, error) {
	ids := map[string]int{}
	for i, s := range p.Steps {
		ids[s.ID] = i
	}
	const (
		white = iota
		grey
		black
	)
	color := make([]int, len(p.Steps))
	var out []int
	var visit func(i int, path []string) error
	visit = func(i int, path []string) error {
		switch color[i] {
		case grey:
			return fmt.Errorf("%w: cycle %s -> %s", ErrPlan, strings.Join(path, " -> "), p.Steps[i].ID)
		case black:
			return nil
		}
		color[i] = grey
		for _, d := range p.Steps[i].DependsOn {
			j, ok := ids[d]
			if !ok {
				return fmt.Errorf("%w: step %s: depends on %q, which is not a step", ErrPlan, p.Steps[i].ID, clip(d))
			}
			if err := visit(j, append(path, p.Steps[i].ID)); err != nil {
				return err
			}
		}
		color[i] = black
		out = append(out, i)
		return nil
	}
	for i := range p.Steps {
		if err := visit(i, nil); err != nil {
			return nil, err
		}
	}
	return out, nil
}

// Mutating reports whether any step changes something, as the catalogue
// (never the planner) classes it, and which steps.
func (p Plan) Mutating(cat *command.Catalogue) (bool, []string) {
	var ids []string
	for _, s := range p.Steps {
		r, err := cat.Risk(s.Verb, s.Args)
		if err != nil || r != command.Read {
			ids = append(ids, s.ID)
		}
	}
	return len(ids) > 0, ids
}

// Tree renders the plan for people: one line per step in run order, its
// dependencies indented under it, risk from the catalogue.
func (p Plan) Tree(cat *command.Catalogue) string {
	var b strings.Builder
	fmt.Fprintf(&b, "plan for %q (%s planner)\n", p.Sentence, p.Planner)
	if p.Note != "" {
		fmt.Fprintf(&b, "  note: %s\n", p.Note)
	}
	order, err := p.Order()
	if err != nil {
		fmt.Fprintf(&b, "  invalid: %v\n", err)
		return b.String()
	}
	for n, i := range order {
		s := p.Steps[i]
		risk := "read"
		if r, err := cat.Risk(s.Verb, s.Args); err == nil {
			risk = r.String()
		}
		args := ""
		if len(s.Args) > 0 && string(s.Args) != "{}" && string(s.Args) != "null" {
			args = " " + string(s.Args)
		}
		fmt.Fprintf(&b, "  %d. [%s] %s %s%s   (%s)\n", n+1, s.ID, s.Selector, s.Verb, args, risk)
		var mods []string
		if s.From != nil {
			w := s.From.Which
			if s.From.N > 0 {
				w = fmt.Sprintf("%s %d", w, s.From.N)
			}
			mods = append(mods, fmt.Sprintf("only the %s nodes of %s", w, s.From.Step))
		}
		if s.Order != "" {
			mods = append(mods, "ordered "+strings.ReplaceAll(s.Order, "_", " "))
		}
		if s.Limit > 0 {
			mods = append(mods, fmt.Sprintf("at most %d nodes", s.Limit))
		}
		if len(s.DependsOn) > 0 {
			deps := append([]string(nil), s.DependsOn...)
			sort.Strings(deps)
			mods = append(mods, "after "+strings.Join(deps, ", "))
		}
		for _, m := range mods {
			fmt.Fprintf(&b, "       %s\n", m)
		}
		if s.Why != "" {
			fmt.Fprintf(&b, "       why: %s\n", s.Why)
		}
	}
	return b.String()
}

func clip(s string) string {
	if len(s) > 40 {
		return s[:40] + "…"
	}
	return s
}

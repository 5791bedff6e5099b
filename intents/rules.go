package intents

import (
	"cmp"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"slices"
	"strconv"
	"strings"
	"unicode/utf8"

	"github.com/robonet-mesh/robonet/command"
	"github.com/robonet-mesh/robonet/intents/nlu"
	"github.com/robonet-mesh/robonet/wire"
)

// Errors of the rule planner.
var (
	// ErrNotUnderstood is wrapped when no rule of the table explains the
	// sentence; the message says what was not understood and suggests the
	// nearest phrasings of the table.
	ErrNotUnderstood = errors.New("the rule planner did not understand the sentence")
	// ErrSentenceRefused is wrapped when a sentence tries to pass shell
	// syntax or programs the planner never runs (";", "&&", backticks,
	// "$(…)", "rm", "curl", …).
	ErrSentenceRefused = errors.New("sentence refused")
	// ErrBadSentence is wrapped for input that is not a sentence at all:
	// empty, over MaxSentence bytes, not UTF-8, control characters.
	ErrBadSentence = errors.New("bad sentence")
)

// MaxSentence is the longest sentence PlanRules reads, in bytes.
const MaxSentence = 1000

// Rule planner defaults, as its phrasing table documents them.
const (
	// DefaultPickN is how many nodes "the ones that answered slowly" (or
	// quickly) means when the sentence gives no number.
	DefaultPickN = 3
	// DefaultCountN is how many nodes "the busiest nodes" (plural, no
	// number) means.
	DefaultCountN = 3
	// BusyLoad and IdleLoad are the per-CPU loads "busy" and "idle" mean;
	// "overloaded" means load>=1.
	BusyLoad = "0.7"
	IdleLoad = "0.2"
	// LogLines is how many journal lines "nginx logs" asks for.
	LogLines = "50"
)

// Vocabulary is what the swarm's registry declares, so that the rule
// planner can tell "AI nodes" (a capability) from "the cameras" (a tag
// value) from "rn2" (a name). Matching ignores case and simple plurals.
type Vocabulary struct {
	Caps  []string            // declared capabilities: gpu, ai, …
	Tags  map[string][]string // tag key → values seen: role → camera, web
	Names []string            // node names
}

// VocabularyFrom collects the capabilities, tags and names of members,
// sorted and without repeats.
func VocabularyFrom(members []wire.Member) Vocabulary {
	v := Vocabulary{Tags: map[string][]string{}}
	for _, m := range members {
		v.Caps = append(v.Caps, m.Caps...)
		if m.Name != "" {
			v.Names = append(v.Names, m.Name)
		}
		for k, val := range m.Tags {
			v.Tags[k] = append(v.Tags[k], val)
		}
	}
	v.Caps = sortedSet(v.Caps)
	v.Names = sortedSet(v.Names)
	for k := range v.Tags {
		v.Tags[k] = sortedSet(v.Tags[k])
	}
	return v
}

func sortedSet(s []string) []string {
	s = slices.Clone(s)
	slices.Sort(s)
	return slices.Compact(s)
}

// Phrasing is one row of the rule planner's table: a pattern for people,
// an example sentence, and the plan the example gives with ExampleVocabulary
// (in the form BriefPlan writes).
type Phrasing struct {
	Rule    string // the rule's name, as step.Why cites it
	Pattern string
	Example string
	Plan    string
}

// ExampleVocabulary is the swarm the phrasing table's examples assume:
// capabilities ai and gpu, tags role=camera|web|db and site=lab, nodes
// rn1..rn3.
func ExampleVocabulary() Vocabulary {
	return Vocabulary{
		Caps:  []string{"ai", "gpu"},
		Tags:  map[string][]string{"role": {"camera", "db", "web"}, "site": {"lab"}},
		Names: []string{"rn1", "rn2", "rn3"},
	}
}

// BriefPlan writes a plan's steps on one line, the form of Phrasing.Plan:
// "s1: caps=ai scan; s2: all gauge {"metric":"cpu"} from s1 slowest 3 after s1".
func BriefPlan(p Plan) string {
	var parts []string
	for _, s := range p.Steps {
		b := fmt.Sprintf("%s: %s %s", s.ID, s.Selector, s.Verb)
		if a := compactArgs(s.Args); a != "" {
			b += " " + a
		}
		if s.From != nil {
			b += fmt.Sprintf(" from %s %s", s.From.Step, s.From.Which)
			if s.From.N > 0 {
				b += " " + strconv.Itoa(s.From.N)
			}
		}
		if s.Order != "" {
			b += " order " + s.Order
		}
		if s.Limit > 0 {
			b += " limit " + strconv.Itoa(s.Limit)
		}
		if len(s.DependsOn) > 0 {
			b += " after " + strings.Join(s.DependsOn, ",")
		}
		parts = append(parts, b)
	}
	return strings.Join(parts, "; ")
}

// compactArgs re-encodes args with sorted keys, "" for none.
func compactArgs(args json.RawMessage) string {
	if len(args) == 0 || string(args) == "null" || string(args) == "{}" {
		return ""
	}
	var v any
	if json.Unmarshal(args, &v) != nil {
		return string(args)
	}
	b, err := json.Marshal(v)
	if err != nil {
		return string(args)
	}
	return string(b)
}

// PlanRules turns a sentence into a plan offline: rules find the nodes,
// numbers, chevrons, paths, keys, services and named commands; patterns
// with arguments (config, file, service actions) name their verb outright;
// otherwise the embedded intent classifier (package nlu) reads the clause
// with those parts masked, and its readings are filled from the clause's
// words. Live gives the capabilities, tags and node names. It is
// deterministic and does no I/O. Errors wrap ErrBadSentence,
// ErrSentenceRefused, ErrNotUnderstood or ErrAmbiguous (an
// *AmbiguousError with the best readings); a plan it returns passes
// Validate(cat).
func PlanRules(sentence string, cat *command.Catalogue, live Vocabulary) (Plan, error) {
	if err := checkRuleSentence(sentence); err != nil {
		return Plan{}, err
	}
	model, err := nlu.Default()
	if err != nil {
		return Plan{}, fmt.Errorf("%w: the intent model does not load: %v", ErrNotUnderstood, err)
	}
	norm := expandContractions(sentence)
	parts := splitThen(norm)
	if len(parts) > MaxSteps {
		return Plan{}, fmt.Errorf("%w: %d steps chained with 'then' (limit %d)", ErrNotUnderstood, len(parts), MaxSteps)
	}
	lx := newLexicon(live)
	all := make([][]clauseReading, len(parts))
	var best []Step
	for i, part := range parts {
		c := &clause{toks: tokenize(part), lx: lx, model: model}
		var prev *Step
		if i > 0 {
			prev = &best[i-1]
		}
		rs, err := c.plan(prev)
		if err != nil {
			return Plan{}, notUnderstood(sentence, err)
		}
		for k := range rs {
			rs[k].step.ID = "s" + strconv.Itoa(i+1)
		}
		all[i] = rs
		best = append(best, rs[0].step)
	}
	p := Plan{Sentence: sentence, Planner: PlannerRules, Steps: best}
	if err := p.Validate(cat); err != nil {
		return Plan{}, fmt.Errorf("%w: %q gives a plan that does not validate: %w", ErrNotUnderstood, clip(sentence), err)
	}
	for i, rs := range all {
		if why := unsure(rs, cat); why != "" {
			return Plan{}, ambiguous(p, i, rs, why, cat)
		}
	}
	return p, nil
}

// Confidence the planner needs before it plans a classifier's reading
// without asking: chosen on the classifier's own held-out split (intents/nlu
// TestHeldOutAccuracy prints accuracy per confidence), never on the
// evaluation sets of this package.
const (
	minRead   = 0.40 // a read-only step: the best reading's probability…
	minMargin = 0.15 // …and its lead over the second, unless it is sure
	sure      = 0.60 // (96% of the held-out readings at 0.6 or more were right)
	minMutate = 0.90 // a step that changes something is never a guess (98.7% right at 0.9 or more)
	minOffer  = 0.04 // readings below this are not offered
)

// unsure says why a clause's best reading may not be planned without
// asking ("" when it may).
func unsure(rs []clauseReading, cat *command.Catalogue) string {
	r := rs[0]
	if r.pattern {
		return ""
	}
	second := 0.0
	if len(rs) > 1 {
		second = rs[1].p
	}
	if risk, err := cat.Risk(r.step.Verb, r.step.Args); err != nil || risk != command.Read {
		if r.p < minMutate {
			return fmt.Sprintf("the best reading changes things and is not sure enough (%.2f, needs %.2f)", r.p, minMutate)
		}
		return ""
	}
	switch {
	case r.p < minRead:
		return fmt.Sprintf("no reading is sure enough (best %.2f)", r.p)
	case r.p < sure && r.p-second < minMargin:
		return fmt.Sprintf("the two best readings are close (%.2f, %.2f)", r.p, second)
	}
	return ""
}

// ambiguous lists the plans the best readings of clause i give, the other
// clauses as planned.
func ambiguous(p Plan, i int, rs []clauseReading, why string, cat *command.Catalogue) error {
	e := &AmbiguousError{Sentence: p.Sentence, Reason: why}
	for _, r := range rs {
		if len(e.Readings) == 3 || (len(e.Readings) > 0 && r.p < minOffer) {
			break
		}
		alt := p
		alt.Steps = slices.Clone(p.Steps)
		alt.Steps[i] = r.step
		if alt.Validate(cat) != nil {
			continue
		}
		risk := "read"
		if rk, err := cat.Risk(r.step.Verb, r.step.Args); err == nil {
			risk = rk.String()
		}
		label := fmt.Sprintf("%s on %s (%s)", verbLabel(r.step.Verb, r.step.Args), r.step.Selector, risk)
		if len(p.Steps) > 1 {
			label = r.step.ID + ": " + label
		}
		e.Readings = append(e.Readings, Reading{Plan: alt, Confidence: math.Round(r.p*100) / 100, Label: label})
	}
	return e
}

// clause is one "then"-separated part of a sentence while it is planned.
type clause struct {
	toks  []rtok
	lx    *lexicon
	model *nlu.Model

	rule     string // the verb rule that matched
	verb     string
	args     json.RawMessage
	cmd      []string // a command the user named, as argv
	svcTaken bool     // fill put the clause's service into argv
	sel      selBuild
	from     *Pick
	order    string
	limit    int
	allWord  bool           // "everything", "all nodes": all nodes on purpose
	chevs    map[int]string // token index → chevron prefix found there
	matched  []string       // the words the verb rule matched
	selRules []string       // the node rules that matched
	notes    []string
	hint     string // said when nothing matched
}

// clauseReading is one way to plan a clause, with the classifier's
// probability (1 for a pattern with arguments).
type clauseReading struct {
	step    Step
	p       float64
	pattern bool
}

// plan runs the stages: a command the user names, patterns whose verbs
// take arguments from the sentence, the node words, then either the
// pattern's verb or the classifier's readings, and what is left over. It
// returns the readings best first.
func (c *clause) plan(prev *Step) ([]clauseReading, error) {
	if len(c.toks) == 0 {
		return nil, errors.New("an empty step around 'then'")
	}
	if err := c.named(); err != nil {
		return nil, err
	}
	if len(c.cmd) > 0 {
		c.setVerb("exec-named", "exec", map[string][]string{"argv": c.cmd}, "run", strings.Join(c.cmd, " "))
	} else if !c.configVerbs() && !c.fileVerbs() {
		c.execVerbs()
	}
	before := make([]bool, len(c.toks))
	for i, t := range c.toks {
		before[i] = t.used
	}
	if err := c.literalSelectors(); err != nil {
		return nil, err
	}
	c.chevrons(true)
	c.counts()
	if prev != nil {
		c.references(prev)
	}
	c.loads()
	c.trusts()
	c.chevrons(false)
	c.allWords()
	c.vocabulary()
	for i := range c.toks {
		if c.toks[i].used && !before[i] && c.toks[i].mask == "" {
			c.toks[i].mask = maskNodes
		}
	}
	if err := c.leftovers(); err != nil {
		return nil, err
	}
	if c.verb != "" {
		if err := c.conflicts(c.verb); err != nil {
			return nil, err
		}
		st, err := c.step(prev)
		if err != nil {
			return nil, err
		}
		return []clauseReading{{step: st, p: 1, pattern: true}}, nil
	}
	masked := c.maskText()
	if !c.saysSomething(masked) {
		if c.hint != "" {
			return nil, errors.New(c.hint)
		}
		return nil, errors.New("no action found (ping, info, caps, status, gauge, scan, service actions, named commands, file, config)")
	}
	var out []clauseReading
	var firstErr, topErr, nodeErr error
	readings := c.model.Classify(masked)
	for k, r := range readings {
		if k > 0 && r.P < minOffer/4 {
			break
		}
		cc := *c
		cc.selRules, cc.notes = slices.Clone(c.selRules), slices.Clone(c.notes)
		rule, verb, args, err := cc.fill(r.Intent)
		if err == nil {
			err = cc.conflicts(verb)
		}
		var st Step
		if err == nil {
			cc.rule, cc.verb, cc.args = rule, verb, args
			cc.matched = []string{fmt.Sprintf("%s %.2f", r.Intent, r.P)}
			st, err = cc.step(prev)
		}
		if err != nil {
			if firstErr == nil {
				firstErr = err
			}
			if k == 0 {
				topErr = err
			}
			var ne *nodeError
			if nodeErr == nil && errors.As(err, &ne) {
				nodeErr = err
			}
			continue
		}
		// Labels that give the same step are one reading.
		if j := slices.IndexFunc(out, func(o clauseReading) bool { return sameStep(o.step, st) }); j >= 0 {
			out[j].p += r.P
			continue
		}
		out = append(out, clauseReading{step: st, p: r.P})
	}
	// The classifier's best reading could not be planned (out of scope, or
	// a slot is missing) and nothing else is likely: say why.
	if topErr != nil && (len(out) == 0 || out[0].p < minRead) {
		if nodeErr != nil && readings[0].Intent != "none" {
			return nil, nodeErr // what the nodes are is the first thing to fix
		}
		return nil, topErr
	}
	if len(out) == 0 {
		if c.hint != "" {
			return nil, errors.New(c.hint)
		}
		if firstErr != nil {
			return nil, firstErr
		}
		return nil, errors.New("no action found (ping, info, caps, status, gauge, scan, service actions, named commands, file, config)")
	}
	slices.SortStableFunc(out, func(a, b clauseReading) int { return cmp.Compare(b.p, a.p) })
	for i := range out {
		out[i].p = min(out[i].p, 1)
	}
	return out, nil
}

// saysSomething reports whether masked text holds a word besides node
// phrases and fillers: "then the slow ones" names no action.
func (c *clause) saysSomething(masked string) bool {
	glue := setOf("the a an of on in at to for from with by and or please ones one them those these that which who")
	for _, w := range strings.Fields(masked) {
		if w != maskNodes && !glue[w] {
			return true
		}
	}
	return false
}

// sameStep compares two steps of one clause.
func sameStep(a, b Step) bool {
	return a.Verb == b.Verb && compactArgs(a.Args) == compactArgs(b.Args) && a.Selector == b.Selector
}

// step builds the clause's step for its verb.
func (c *clause) step(prev *Step) (Step, error) {
	selector, err := c.sel.render()
	if err != nil {
		return Step{}, err
	}
	st := Step{Selector: selector, Verb: c.verb, Args: c.args, Order: c.order, Limit: c.limit}
	if prev != nil {
		st.DependsOn = []string{prev.ID}
		from := c.from
		if from == nil && c.sel.empty() && !c.allWord {
			from = &Pick{Step: prev.ID, Which: PickAll}
			c.noteRule("then-them")
		}
		c.noteRule("then")
		if from != nil && c.sel.empty() {
			st.Selector = prev.Selector
		}
		st.From = from
	}
	switch {
	case c.verb == "config" && c.sel.empty() && !c.allWord && st.From == nil && st.Limit == 0:
		st.Limit = 1
		c.notes = append(c.notes, "rn_config is shared, one node suffices")
	case c.rule == "file-put" && c.sel.empty() && st.From == nil:
		return Step{}, missing("say which node to upload from, e.g. \"upload /etc/hosts from rn2\"")
	}
	st.Why = c.why(st)
	return st, nil
}

func (c *clause) why(st Step) string {
	w := fmt.Sprintf("rule %s matched %q; nodes %s", c.rule, strings.Join(c.matched, " "), st.Selector)
	if len(c.selRules) > 0 {
		w += " by rule " + strings.Join(c.selRules, ", ")
	}
	if st.From != nil {
		w += fmt.Sprintf("; picks %s", st.From.Which)
		if st.From.N > 0 {
			w += " " + strconv.Itoa(st.From.N)
		}
		w += " of " + st.From.Step
	}
	if len(c.notes) > 0 {
		w += "; " + strings.Join(c.notes, "; ")
	}
	if len(w) > 200 {
		cut := 197
		for cut > 0 && !utf8.RuneStart(w[cut]) {
			cut--
		}
		w = w[:cut] + "..."
	}
	return w
}

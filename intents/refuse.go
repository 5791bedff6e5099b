package intents

import (
	"errors"
	"fmt"
	"sort"
	"strconv"
	"strings"
	"unicode"
)

// ---- what is left ----

// leftovers refuses what no reading can plan: programs named outside
// quotes, quoted text nobody took, negations, schedules, and words that
// are no node, number, path or key.
func (c *clause) leftovers() error {
	refused, neg, sched := refusedWords(), negations(), scheduling()
	for _, t := range c.toks {
		if !t.used && !t.quoted && refused[t.low] {
			return fmt.Errorf("%w: %q is not something ask plans from words: it runs the catalogue's verbs and service actions; to run a program, name it in quotes (ask 'run \"…\" on <nodes>'): a dangerous step then asks for confirmation and approval", ErrSentenceRefused, clip(t.raw))
		}
	}
	for _, t := range c.toks {
		if t.used {
			continue
		}
		switch {
		case t.quoted:
			return fmt.Errorf("quoted text %q: a command to run goes after run (run \"df -h\" on <nodes>), a config value after set <key> to", clip(t.raw))
		case neg[t.low]:
			return fmt.Errorf("%q: exclusions and negations are beyond the offline planner; name the nodes you want", t.raw)
		case sched[t.low]:
			return fmt.Errorf("%q: conditions, repeats and schedules are beyond the offline planner; it runs a plan once, now", t.raw)
		case !isPlainWord(t.low) && !isCleanPath(t.raw) && !isFileName(t.low) && !isConfigKey(t.raw):
			return fmt.Errorf("%q: not a node, chevron, number, path or key the planner can place", clip(t.raw))
		}
	}
	return nil
}

// conflicts refuses what the clause says besides verb: a second verb, a
// second service, an action without a service, numbers and paths nobody
// took, and unknown words where nodes are named.
func (c *clause) conflicts(verb string) error {
	strong, nouns, actions := strongVerbs(), nodeNouns(), actionWords()
	services := map[string]bool{}
	for _, t := range c.toks {
		if s := c.lx.svc[t.low]; s != "" && !t.used && !t.quoted {
			services[s] = true
		}
	}
	if verb == "exec" && len(services) > 0 && (!c.svcTaken || len(services) > 1) {
		return fmt.Errorf("%d services named: one service per step; chain them with \"then\"", len(services)+btoi(!c.svcTaken))
	}
	for i, t := range c.toks {
		if t.used || t.quoted {
			continue
		}
		if v := strong[t.low]; v != "" && v != verb && !(verb == "gauge" && v == "status") {
			return fmt.Errorf("%q is a second action in one step; chain actions with \"then\" (\"ping all, then scan them\")", t.raw)
		}
		if a, ok := actions[t.low]; ok && verb != "exec" {
			next := ""
			if i+1 < len(c.toks) {
				next = c.toks[i+1].low
			}
			if t.low == "start" && (next == "a" || next == "an" || next == "the") {
				continue // "start a scan of …"
			}
			if c.lx.svc[next] == "" {
				return missing("%s which service? the planner knows: %s", a, strings.Join(KnownServices(), ", "))
			}
		}
		if !isPlainWord(t.low) {
			if verb == "file" || verb == "config" || verb == "gauge" {
				continue
			}
			return fmt.Errorf("%q: not a node, chevron, number, path or key the planner can place", clip(t.raw))
		}
		// Only curated words pass here, never any word the classifier
		// knows: "scan the gpu nodes" on a swarm without gpu must not
		// scan every node. Right before a node noun even an intent word
		// names nodes ("the storage servers"), unless it only says how
		// nodes are ("the offline nodes").
		beforeNoun := i+1 < len(c.toks) && nouns[c.toks[i+1].low] && !c.toks[i+1].used
		if beforeNoun && !fillers()[t.low] && !nodeStates()[t.low] {
			return &nodeError{word: t.raw, known: c.lx.known()}
		}
		if fillers()[t.low] || c.lx.svc[t.low] != "" || actions[t.low] != "" || intentWords()[t.low] {
			continue
		}
		// An unknown word where nodes are named is refused rather than
		// dropped, or "scan the gateways" would scan every node: after
		// on/in/at/…, before a node noun, after an article, or as the
		// object of ping, scan, gauge or describe.
		before := c.prevWord(i)
		article := i > 0 && setOf("the all every each those these my our")[c.toks[i-1].low]
		if setOf("on in at under across within from ping scan gauge describe")[before] || article ||
			(i+1 < len(c.toks) && nouns[c.toks[i+1].low]) {
			return &nodeError{word: t.raw, known: c.lx.known()}
		}
	}
	return nil
}

// nodeError is a word that stands where nodes are named but names none:
// the error says what the swarm would need to declare.
type nodeError struct{ word, known string }

func (e *nodeError) Error() string {
	w := strings.ToLower(e.word)
	if s := singulars(w); len(s) > 1 && len(s[len(s)-1]) > 1 {
		w = s[len(s)-1]
	}
	return fmt.Sprintf("which nodes are %q? no node declares capability %s, nor a tag value or name %s: start nodes with --caps %s (or --tags role=%s)%s",
		e.word, w, w, w, w, e.known)
}

// prevWord is the nearest earlier word that is not an article.
func (c *clause) prevWord(i int) string {
	for j := i - 1; j >= 0; j-- {
		switch c.toks[j].low {
		case "the", "a", "an", "all", "every", "each", "any", "some", "my", "our", "those", "these":
			continue
		}
		return c.toks[j].low
	}
	return ""
}

func isPlainWord(w string) bool {
	for _, r := range w {
		if !unicode.IsLetter(r) && r != '-' {
			return false
		}
	}
	return w != "" && w[0] != '-'
}

// known lists the vocabulary for an error message.
func (lx *lexicon) known() string {
	list := func(m map[string]string) string {
		var out []string
		for _, v := range m {
			out = append(out, v)
		}
		sort.Strings(out)
		if len(out) > 12 {
			out = append(out[:12], "…")
		}
		return strings.Join(out, ", ")
	}
	var vals []string
	for _, kvs := range lx.vals {
		vals = append(vals, kvs...)
	}
	sort.Strings(vals)
	if len(vals) > 12 {
		vals = append(vals[:12], "…")
	}
	return fmt.Sprintf("; this swarm declares caps: %s; tags: %s; names: %s", orNone(list(lx.caps)), orNone(strings.Join(vals, ", ")), orNone(list(lx.names)))
}

func orNone(s string) string {
	if s == "" {
		return "none"
	}
	return s
}

// ---- not understood: suggestions ----

func notUnderstood(sentence string, err error) error {
	if errors.Is(err, ErrSentenceRefused) || errors.Is(err, ErrBadSentence) {
		return err
	}
	var ne *nodeError
	var se *slotError
	if errors.As(err, &ne) || errors.As(err, &se) {
		// What is missing is said; phrasings would not help.
		return fmt.Errorf("%w: %q: %w", ErrNotUnderstood, clip(sentence), err)
	}
	sug := Suggest(sentence, 3)
	q := make([]string, len(sug))
	for i, s := range sug {
		q[i] = strconv.Quote(s)
	}
	return fmt.Errorf("%w: %q: %v. Nearest phrasings it knows: %s", ErrNotUnderstood, clip(sentence), err, strings.Join(q, "; "))
}

// Suggest returns the n examples of the phrasing table nearest to
// sentence: most words in common (Jaccard over lower-case words), then
// smallest edit distance, then table order.
func Suggest(sentence string, n int) []string {
	stop, actions, svc := setOf("the a an of on in to for from is are"), actionWords(), knownServices()
	words := func(s string) map[string]bool {
		m := map[string]bool{}
		for _, t := range tokenize(strings.ToLower(s)) {
			w := t.low
			if a, ok := actions[w]; ok {
				w = a // "bounce" is "restart"
			} else if _, ok := svc[w]; ok {
				w = "<service>" // any service is like the example's
			}
			if w != "" && !stop[w] {
				m[w] = true
				for _, sg := range singulars(w)[1:] {
					m[sg] = true
				}
			}
		}
		return m
	}
	in := words(sentence)
	type cand struct {
		ex   string
		sim  float64
		dist int
		idx  int
	}
	var cs []cand
	seen := map[string]bool{}
	for i, ph := range Phrasings() {
		if seen[ph.Example] || sameWords(ph.Example, sentence) {
			continue
		}
		seen[ph.Example] = true
		ex := words(ph.Example + " " + ph.Pattern)
		inter, union := 0, len(ex)
		for w := range in {
			if ex[w] {
				inter++
			} else {
				union++
			}
		}
		sim := 0.0
		if union > 0 {
			sim = float64(inter) / float64(union)
		}
		cs = append(cs, cand{ph.Example, sim, editDistance(strings.ToLower(sentence), strings.ToLower(ph.Example)), i})
	}
	sort.SliceStable(cs, func(i, j int) bool {
		if cs[i].sim != cs[j].sim {
			return cs[i].sim > cs[j].sim
		}
		if cs[i].dist != cs[j].dist {
			return cs[i].dist < cs[j].dist
		}
		return cs[i].idx < cs[j].idx
	})
	var out []string
	for _, c := range cs[:min(n, len(cs))] {
		out = append(out, c.ex)
	}
	return out
}

// editDistance is the Levenshtein distance between a and b in bytes,
// capped in effort by the sentence limit.
func editDistance(a, b string) int {
	if len(a) > MaxSentence {
		a = a[:MaxSentence]
	}
	prev := make([]int, len(b)+1)
	cur := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev, cur = cur, prev
	}
	return prev[len(b)]
}

// sameWords reports whether a and b are the same words, ignoring case and
// punctuation: a suggestion must never be the sentence itself.
func sameWords(a, b string) bool {
	norm := func(s string) string {
		var ws []string
		for _, t := range tokenize(strings.ToLower(s)) {
			ws = append(ws, t.low)
		}
		return strings.Join(ws, " ")
	}
	return norm(a) == norm(b)
}

func btoi(b bool) int {
	if b {
		return 1
	}
	return 0
}

package intents

import (
	"fmt"
	"slices"
	"sort"
	"strconv"
	"strings"

	"github.com/robonet-mesh/robonet/subjects"
)

type lexicon struct {
	caps  map[string]string   // lower → as declared
	vals  map[string][]string // lower tag value → "key:value" terms, sorted
	keys  map[string]string   // lower tag key → key
	names map[string]string   // lower → name
	svc   map[string]string
}

func newLexicon(v Vocabulary) *lexicon {
	lx := &lexicon{caps: map[string]string{}, vals: map[string][]string{}, keys: map[string]string{},
		names: map[string]string{}, svc: knownServices()}
	ok := func(term string) bool { _, err := subjects.ParseSelector(term); return err == nil }
	for _, c := range sortedSet(v.Caps) {
		if _, dup := lx.caps[strings.ToLower(c)]; !dup && ok("caps="+c) {
			lx.caps[strings.ToLower(c)] = c
		}
	}
	keys := make([]string, 0, len(v.Tags))
	for k := range v.Tags {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		if !ok("tag=" + k) {
			continue
		}
		if _, dup := lx.keys[strings.ToLower(k)]; !dup {
			lx.keys[strings.ToLower(k)] = k
		}
		for _, val := range sortedSet(v.Tags[k]) {
			if val != "" && ok("tag="+k+":"+val) {
				lx.vals[strings.ToLower(val)] = append(lx.vals[strings.ToLower(val)], k+":"+val)
			}
		}
	}
	for _, n := range sortedSet(v.Names) {
		if _, dup := lx.names[strings.ToLower(n)]; !dup && ok(n) && n != "all" {
			lx.names[strings.ToLower(n)] = n
		}
	}
	return lx
}

// vocabTerm is one vocabulary match.
type vocabTerm struct {
	kind int    // rankName, rankOther (tag, os) or rankCaps
	term string // selector term
	key  string // tag key or "os=", for "and" between values of one key
	rule string // the node rule: os, caps, tag or name
}

// Ranks order the terms of one selector alternative: names must come
// before a caps list, or the grammar reads them as capabilities.
const (
	rankName = iota
	rankOther
	rankLiteral
	rankCaps
)

// lookup matches a word against the vocabulary, trying simple singulars.
// Operating systems come first, as runtime.GOOS names them.
func (lx *lexicon) lookup(low string) (vocabTerm, bool) {
	if g, ok := osNames()[low]; ok {
		return vocabTerm{kind: rankOther, term: "os=" + g, key: "os=", rule: "os"}, true
	}
	for _, w := range singulars(low) {
		if c, ok := lx.caps[w]; ok {
			return vocabTerm{kind: rankCaps, term: "caps=" + c, rule: "caps"}, true
		}
		if kv, ok := lx.vals[w]; ok {
			k, _, _ := strings.Cut(kv[0], ":")
			return vocabTerm{kind: rankOther, term: "tag=" + kv[0], key: k, rule: "tag"}, true
		}
		if k, ok := lx.keys[w]; ok {
			return vocabTerm{kind: rankOther, term: "tag=" + k, key: k + "=", rule: "tag"}, true
		}
		if n, ok := lx.names[w]; ok {
			return vocabTerm{kind: rankName, term: n, rule: "name"}, true
		}
	}
	return vocabTerm{}, false
}

func singulars(w string) []string {
	out := []string{w}
	if strings.HasSuffix(w, "ies") && len(w) > 4 {
		out = append(out, w[:len(w)-3]+"y")
	}
	if strings.HasSuffix(w, "es") && len(w) > 3 {
		out = append(out, w[:len(w)-2])
	}
	if strings.HasSuffix(w, "s") && len(w) > 2 {
		out = append(out, w[:len(w)-1])
	}
	return out
}

// The word classes below are functions, so that nothing is package state.

// ---- stage 2: node words ----

// selBuild collects the selector of one clause: factors ANDed together,
// each a choice of alternatives.
type selBuild struct {
	factors [][]selAlt
}

// selAlt is one conjunction, by rank so that it renders in a parseable order.
type selAlt struct {
	parts [4][]string // by rank
}

// addTerm adds one ANDed term found by the node rule named rule.
func (c *clause) addTerm(rule string, rank int, term string) {
	c.sel.add(rank, term)
	c.noteRule(rule)
}

func (c *clause) noteRule(rule string) {
	if !slices.Contains(c.selRules, rule) {
		c.selRules = append(c.selRules, rule)
	}
}

func (s *selBuild) empty() bool { return len(s.factors) == 0 }

func (s *selBuild) add(rank int, term string) {
	var a selAlt
	a.parts[rank] = []string{term}
	s.factors = append(s.factors, []selAlt{a})
}

// maxAlternatives bounds the OR-expansion of one selector.
const maxAlternatives = 16

func (s *selBuild) render() (string, error) {
	if len(s.factors) == 0 {
		return "all", nil
	}
	alts := []selAlt{{}}
	for _, f := range s.factors {
		var next []selAlt
		for _, a := range alts {
			for _, b := range f {
				var m selAlt
				for r := range m.parts {
					m.parts[r] = append(slices.Clone(a.parts[r]), b.parts[r]...)
				}
				next = append(next, m)
			}
		}
		if len(next) > maxAlternatives {
			return "", fmt.Errorf("too many alternatives of nodes (%d, limit %d)", len(next), maxAlternatives)
		}
		alts = next
	}
	var out []string
	for _, a := range alts {
		lits := slices.Clone(a.parts[rankLiteral])
		// A literal that starts with a bare name goes first among literals.
		sort.SliceStable(lits, func(i, j int) bool { return startsBare(lits[i]) && !startsBare(lits[j]) })
		var all []string
		all = append(all, a.parts[rankName]...)
		all = append(all, a.parts[rankOther]...)
		all = append(all, lits...)
		all = append(all, a.parts[rankCaps]...)
		out = append(out, strings.Join(all, ","))
	}
	text := strings.Join(out, "|")
	sel, err := subjects.ParseSelector(text)
	if err != nil {
		return "", fmt.Errorf("the nodes do not form a selector: %v", err)
	}
	return sel.String(), nil
}

func startsBare(lit string) bool {
	first, _, _ := strings.Cut(lit, ",")
	return first != "" && !strings.ContainsAny(first, "=<>") && !(first[0] >= '0' && first[0] <= '9')
}

func (c *clause) literalSelectors() error {
	for i := range c.toks {
		t := &c.toks[i]
		if t.used || t.quoted || !strings.ContainsAny(t.raw, "=<>") || strings.Trim(t.raw, "=<>") == "" {
			continue // bare operators belong to "load < 0.5"
		}
		sel, err := subjects.ParseSelector(t.raw)
		if err != nil {
			return fmt.Errorf("%q looks like a selector but is not one: %v", clip(t.raw), err)
		}
		t.used = true
		var f []selAlt
		for _, alt := range strings.Split(sel.String(), "|") {
			var a selAlt
			a.parts[rankLiteral] = []string{alt}
			f = append(f, a)
		}
		c.sel.factors = append(c.sel.factors, f)
		c.noteRule("selector")
	}
	return nil
}

// references finds "the ones that answered slowly" in a later step.
func (c *clause) references(prev *Step) {
	refWords := setOf("ones one them those these that which who answered responded replied answer respond reply nodes that's same")
	pick := func(which string, n int) {
		c.from = &Pick{Step: prev.ID, Which: which, N: n}
		c.useAll(refWords)
		c.noteRule(map[string]string{PickFailed: "then-failed", PickSlowest: "then-slowest", PickFastest: "then-fastest",
			PickOK: "then-ok", PickAll: "then-them"}[which])
	}
	countNear := func(m match) int {
		for _, cp := range m.caps {
			if n, err := strconv.Atoi(cp); err == nil {
				return n
			}
		}
		return DefaultPickN
	}
	for _, spec := range []string{
		"did_not|never|failed_to|could_not answer|respond|reply|answer_in_time",
		"no|without answer|reply|response",
		"failed|failing|errored|erred|unreachable|offline|silent|missing|timed_out|time_out|error|errors|down",
	} {
		if _, ok := c.take(spec); ok {
			pick(PickFailed, 0)
			return
		}
	}
	for _, dir := range []struct{ which, words string }{
		{PickSlowest, "slowest|slow|slowly|slower|laggiest|lagging|laggy"},
		{PickFastest, "fastest|fast|quickly|quick|quickest|faster|quicker"},
	} {
		for _, spec := range []string{"?the #n " + dir.words, "?the " + dir.words + " #n", "?the " + dir.words} {
			if m, ok := c.take(spec); ok {
				pick(dir.which, countNear(m))
				return
			}
		}
	}
	if _, ok := c.take("answered|responded|replied|succeeded|worked|reachable|alive|ok|okay|up|online"); ok {
		pick(PickOK, 0)
		return
	}
	if _, ok := c.take("them|those|these|the_same|same_nodes|same_ones|each_of_them"); ok {
		pick(PickAll, 0)
	}
}

func (c *clause) chevrons(keyword bool) {
	if keyword {
		for {
			m, ok := c.take("in|at|under|within|below|inside ?the zone|region|swarm|prefix|chevron|node #chev")
			if !ok {
				m, ok = c.take("zone|region|swarm|prefix|chevron|node #chev")
			}
			if !ok {
				m, ok = c.take("in|under|within|inside|below #chev")
			}
			if !ok {
				return
			}
			c.addChevron(m.end-1, m.caps[0])
		}
	}
	for i := range c.toks {
		t := &c.toks[i]
		if t.used || t.quoted {
			continue
		}
		v, ok := c.placeholder("#chev", *t)
		if !ok {
			continue
		}
		prev := ""
		if i > 0 {
			prev = c.toks[i-1].low
		}
		if !strings.Contains(t.raw, ".") && !setOf("on at to from of for and or ping scan")[prev] {
			continue
		}
		t.used = true
		c.addChevron(i, v)
	}
}

// addChevron notes a chevron prefix at token i; the vocabulary stage
// joins it with others ("zone 3 or zone 4") and ANDs it with the rest.
func (c *clause) addChevron(i int, prefix string) {
	if c.chevs == nil {
		c.chevs = map[int]string{}
	}
	c.chevs[i] = prefix
}

func (c *clause) counts() {
	nouns := nodeNouns()
	desc := "busiest|most_loaded|most_busy|hottest|heaviest|most_active"
	asc := "idlest|least_loaded|least_busy|quietest|calmest|most_idle|coolest|least_active|laziest"
	for _, o := range []struct{ order, words, rule string }{{OrderLoadDesc, desc, "busiest"}, {OrderLoadAsc, asc, "idlest"}} {
		for _, spec := range []string{"?the ?top #n " + o.words, "?the " + o.words + " #n"} {
			if m, ok := c.take(spec); ok {
				c.order, c.limit = o.order, atoi(m.caps[0])
				c.noteRule(o.rule)
				return
			}
		}
	}
	if m, ok := c.take("top #n ?by_load"); ok {
		c.order, c.limit = OrderLoadDesc, atoi(m.caps[0])
		c.noteRule("busiest")
		return
	}
	for _, o := range []struct{ order, words, rule string }{{OrderLoadDesc, desc, "busiest"}, {OrderLoadAsc, asc, "idlest"}} {
		if m, ok := c.take("?the " + o.words); ok {
			c.order, c.limit = o.order, 1
			c.noteRule(o.rule)
			// "the busiest nodes" (plural) means a few.
			for j := m.end; j < len(c.toks) && j < m.end+3; j++ {
				if w := c.toks[j].low; nouns[w] && strings.HasSuffix(w, "s") || c.isVocabPlural(w) {
					c.limit = DefaultCountN
					break
				}
			}
			return
		}
	}
	if m, ok := c.take("any|up_to|at_most|max|maximum|only|just|limit_to|no_more_than|not_more_than #n"); ok {
		c.limit = atoi(m.caps[0])
		c.noteRule("count")
		return
	}
	for i := range c.toks {
		t := c.toks[i]
		if t.used {
			continue
		}
		v, ok := c.placeholder("#n", t)
		if !ok || i+1 >= len(c.toks) {
			continue
		}
		next := c.toks[i+1].low
		if nouns[next] || c.isVocabWord(next) {
			c.toks[i].used = true
			c.limit = atoi(v)
			c.noteRule("count")
			return
		}
	}
}

func (c *clause) isVocabWord(w string) bool {
	_, ok := c.lx.lookup(w)
	return ok
}

func (c *clause) isVocabPlural(w string) bool {
	return strings.HasSuffix(w, "s") && c.isVocabWord(w)
}

func atoi(s string) int {
	n, _ := strconv.Atoi(s)
	return n
}

func (c *clause) loads() {
	ops := []struct{ op, words string }{
		{"<", "under|below|beneath|<|less_than|lower_than|smaller_than|at_most_under"},
		{"<=", "<=|at_most|not_above|not_over"},
		{">", "over|above|>|more_than|greater_than|higher_than|exceeding"},
		{">=", ">=|at_least"},
		{"=", "=|of|equal_to"},
	}
	for {
		found := false
		for _, o := range ops {
			if m, ok := c.take("?with|where|whose|having|at ?a|the ?current load|loadavg|load_average ?is|per_cpu " + o.words + " #f"); ok {
				c.addTerm("load", rankOther, "load"+o.op+m.caps[0])
				found = true
			}
		}
		if !found {
			break
		}
	}
	for _, q := range []struct{ rule, term, spec string }{
		{"busy", "load>" + BusyLoad, "with|having|under|at ?a high|heavy load"},
		{"idle", "load<" + IdleLoad, "with|having|at ?a low|light load"},
		{"busy", "load>=1", "overloaded|saturated|overworked"},
		{"idle", "load<" + IdleLoad, "idle|idling|quiet|calm|unloaded|underused|lightly_loaded"},
	} {
		if _, ok := c.take(q.spec); ok {
			c.addTerm(q.rule, rankOther, q.term)
		}
	}
	for i := range c.toks {
		t := &c.toks[i]
		if t.used || !setOf("busy loaded stressed heavily-loaded")[t.low] {
			continue
		}
		if i > 0 && c.toks[i-1].low == "how" {
			continue // "how busy are …" asks for a gauge
		}
		t.used = true
		c.addTerm("busy", rankOther, "load>"+BusyLoad)
	}
}

func (c *clause) trusts() {
	if _, ok := c.take("fully|highly|very|most|completely|totally trusted"); ok {
		c.addTerm("trust", rankOther, "trust>=3")
		return
	}
	if _, ok := c.take("untrusted|not_trusted|distrusted"); ok {
		c.addTerm("trust", rankOther, "trust=0")
		return
	}
	if m, ok := c.take("?a|with trust|tier ?level|tier|score ?of ?at_least|>=|of_at_least|=|of #tier"); ok {
		c.addTerm("trust", rankOther, "trust>="+m.caps[0])
		return
	}
	if m, ok := c.take("trust ?level|tier|score above|over|>|more_than #tier"); ok {
		c.addTerm("trust", rankOther, "trust>"+m.caps[0])
		return
	}
	if _, ok := c.take("trusted|trustworthy"); ok {
		c.addTerm("trust", rankOther, "trust>=2")
	}
}

// allWords notes "everything", "all nodes": all nodes on purpose, not by
// default (which in a later step means the earlier step's nodes).
func (c *clause) allWords() {
	nouns := nodeNouns()
	for i, t := range c.toks {
		if t.used {
			continue
		}
		switch t.low {
		case "everything", "everyone", "everybody", "everywhere", "fleet", "swarm", "cluster":
			c.allWord = true
		case "all", "every", "each":
			next := ""
			if i+1 < len(c.toks) {
				next = c.toks[i+1].low
			}
			if next == "" || nouns[next] || next == "in" || next == "on" || next == "at" {
				c.allWord = true
			}
		}
	}
}

// ---- stage 4: the vocabulary ----

func (c *clause) vocabulary() {
	type hit struct {
		at int
		vt vocabTerm
	}
	var hits []hit
	fill := fillers()
	for i := range c.toks {
		t := &c.toks[i]
		if t.used || t.quoted || (fill[t.low] && !c.lx.exact(t.low)) {
			continue
		}
		if vt, ok := c.lx.lookup(t.low); ok {
			t.used = true
			hits = append(hits, hit{i, vt})
		}
	}
	for i, prefix := range c.chevs {
		hits = append(hits, hit{i, vocabTerm{kind: rankOther, term: prefix, key: "chevron", rule: "chevron"}})
	}
	slices.SortFunc(hits, func(a, b hit) int { return a.at - b.at })
	// Hits joined by "or", "and" or a comma form a group; within a group
	// "or" separates alternatives, and so does "and" when a node noun
	// follows the group ("web and db nodes") or when AND is impossible (two
	// names, two values of one tag key). Adjacent words ("linux gpu
	// nodes") and separate groups are ANDed.
	const (
		linkAdj = iota // adjacent: AND
		linkAnd        // "and" or a comma: AND, or OR as said above
		linkOr
	)
	type group struct {
		hits  []hit
		links []int // links[k] joins hits[k] and hits[k+1]
	}
	var groups []group
	for k, h := range hits {
		if k > 0 {
			p := hits[k-1]
			var words []string // what stands between, but words other rules took
			for _, t := range c.toks[p.at+1 : h.at] {
				if t.low != "the" && !t.used {
					words = append(words, t.low)
				}
			}
			l := -1
			switch {
			case len(words) == 1 && words[0] == "or":
				l = linkOr
			case len(words) == 1 && words[0] == "and", len(words) == 0 && c.toks[p.at].comma:
				l = linkAnd
			case len(words) == 0:
				l = linkAdj
			}
			if l >= 0 {
				g := &groups[len(groups)-1]
				g.hits = append(g.hits, h)
				g.links = append(g.links, l)
				continue
			}
		}
		groups = append(groups, group{hits: []hit{h}})
	}
	nouns := nodeNouns()
	for _, g := range groups {
		last := g.hits[len(g.hits)-1].at
		nounAfter := last+1 < len(c.toks) && nouns[c.toks[last+1].low]
		var f []selAlt
		var cur selAlt
		var curHits []hit
		for k, h := range g.hits {
			if k > 0 {
				split := false
				switch g.links[k-1] {
				case linkOr:
					split = true
				case linkAnd:
					split = nounAfter || slices.ContainsFunc(curHits, func(x hit) bool {
						return x.vt.kind == rankName && h.vt.kind == rankName || x.vt.key != "" && x.vt.key == h.vt.key
					})
				}
				if split {
					f = append(f, cur)
					cur, curHits = selAlt{}, nil
				}
			}
			cur.parts[h.vt.kind] = append(cur.parts[h.vt.kind], h.vt.term)
			curHits = append(curHits, h)
		}
		f = append(f, cur)
		c.sel.factors = append(c.sel.factors, f)
		if len(f) > 1 {
			c.noteRule("or")
		}
		for _, h := range g.hits {
			c.noteRule(h.vt.rule)
		}
	}
}

// exact reports whether w is a vocabulary word as written (so that a
// node called "up" still counts, while "up" is otherwise a filler).
func (lx *lexicon) exact(w string) bool {
	_, a := lx.caps[w]
	_, b := lx.vals[w]
	_, d := lx.names[w]
	return a || b || d
}

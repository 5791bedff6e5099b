package nlu

import (
	"bufio"
	"embed"
	"errors"
	"fmt"
	"hash/fnv"
	"io/fs"
	"math/rand/v2"
	"slices"
	"strings"
)

//go:embed data/synonyms.txt data/corpus.txt
var dataFS embed.FS

// The data files, as embedded.
const (
	synonymsFile = "data/synonyms.txt"
	corpusFile   = "data/corpus.txt"
)

// MaxPerTemplate caps the expansions of one template: a template with more
// combinations is sampled (deterministically, seeded by its text).
const MaxPerTemplate = 40

// WrapPerTemplate is how many more expansions of each template are sampled
// between the synonym groups @lead and @tail, when the synonym file defines
// them: politeness and filler ("please", "for me") that every label shares.
const WrapPerTemplate = 6

// heldOutBuckets and heldOutBucket choose the held-out templates: those
// whose text hashes to bucket 0 of 5 (about 20%).
const (
	heldOutBuckets = 5
	heldOutBucket  = 0
	devBucket      = 1
)

// ErrCorpus is wrapped by every error about the corpus or synonym files.
var ErrCorpus = errors.New("nlu corpus")

// Template is one line of the corpus file.
type Template struct {
	Label   string
	Text    string // as written, syntax included
	Line    int    // in data/corpus.txt
	HeldOut bool   // its expansions are never trained on
	Dev     bool   // a training template that `gen -dev` holds out for tuning
}

// Example is one expansion of a template: a masked clause, in the words the
// classifier reads (Words), and its label.
type Example struct {
	Text     string
	Label    string
	Template int // index into Corpus.Templates
}

// Corpus is the expanded training and evaluation data.
type Corpus struct {
	Templates []Template
	Examples  []Example
}

// Train returns the examples of templates that are not held out.
func (c *Corpus) Train() []Example {
	return c.filter(func(t Template) bool { return !t.HeldOut })
}

// HeldOut returns the examples of held-out templates whose text does not
// also occur among the training examples (those would not test anything).
func (c *Corpus) HeldOut() []Example {
	seen := map[string]bool{}
	for _, e := range c.Train() {
		seen[e.Text] = true
	}
	var out []Example
	for _, e := range c.filter(func(t Template) bool { return t.HeldOut }) {
		if !seen[e.Text] {
			out = append(out, e)
		}
	}
	return out
}

func (c *Corpus) filter(keep func(Template) bool) []Example {
	var out []Example
	for _, e := range c.Examples {
		if keep(c.Templates[e.Template]) {
			out = append(out, e)
		}
	}
	return out
}

// Expand reads the embedded synonym and corpus files and expands every
// template. The result depends only on the files.
func Expand() (*Corpus, error) {
	syn, err := dataFS.ReadFile(synonymsFile)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrCorpus, err)
	}
	cor, err := dataFS.ReadFile(corpusFile)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrCorpus, err)
	}
	return ExpandText(string(syn), string(cor))
}

// ExpandText expands a corpus given the texts of a synonym file and a
// corpus file (the syntax is described at the top of each data file).
func ExpandText(synonyms, corpus string) (*Corpus, error) {
	syn, err := parseSynonyms(synonyms)
	if err != nil {
		return nil, err
	}
	wrap, err := wrapper(syn)
	if err != nil {
		return nil, err
	}
	c := &Corpus{}
	label := ""
	labels := Labels()
	sc := bufio.NewScanner(strings.NewReader(corpus))
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		if rest, ok := strings.CutPrefix(line, ">"); ok {
			label = strings.TrimSpace(rest)
			if _, found := slices.BinarySearch(labels, label); !found {
				return nil, fmt.Errorf("%w: line %d: unknown label %q", ErrCorpus, n, label)
			}
			continue
		}
		if label == "" {
			return nil, fmt.Errorf("%w: line %d: template %q before any '> label' line", ErrCorpus, n, line)
		}
		tmpl, err := parseTemplate(line)
		if err != nil {
			return nil, fmt.Errorf("%w: line %d: %w", ErrCorpus, n, err)
		}
		if err := tmpl.resolve(syn, 0); err != nil {
			return nil, fmt.Errorf("%w: line %d: %w", ErrCorpus, n, err)
		}
		b := bucketOf(line)
		ti := len(c.Templates)
		c.Templates = append(c.Templates, Template{Label: label, Text: line, Line: n,
			HeldOut: b == heldOutBucket, Dev: b == devBucket})
		texts := expandNode(tmpl, line, MaxPerTemplate)
		if wrap != nil {
			w := &node{kind: 's', kids: []*node{wrap.kids[0], tmpl, wrap.kids[1]}}
			w.count = wrap.count * tmpl.count
			texts = append(texts, expandNode(w, "wrapped "+line, WrapPerTemplate)...)
		}
		seen := map[string]bool{}
		for _, text := range texts {
			// As the classifier reads it, so that equal texts are equal.
			text = strings.Join(Words(text), " ")
			if text != "" && !seen[text] {
				seen[text] = true
				c.Examples = append(c.Examples, Example{Text: text, Label: label, Template: ti})
			}
		}
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrCorpus, err)
	}
	return c, nil
}

func bucketOf(template string) int {
	h := fnv.New64a()
	h.Write([]byte(template))
	return int(h.Sum64() % heldOutBuckets)
}

// DataFiles returns the embedded data files (synonyms, then corpus) and a
// description of the trainer (TrainerVersion and DefaultTrainOptions): what
// a model's data hash covers (see package internal/datahash).
func DataFiles() (trainer string, names []string, data [][]byte, err error) {
	for _, name := range []string{synonymsFile, corpusFile} {
		b, err := fs.ReadFile(dataFS, name)
		if err != nil {
			return "", nil, nil, fmt.Errorf("%w: %w", ErrCorpus, err)
		}
		names = append(names, name)
		data = append(data, b)
	}
	return fmt.Sprintf("%d %+v", TrainerVersion, DefaultTrainOptions()), names, data, nil
}

// node is a parsed template: a literal, a sequence, a choice, or a synonym
// reference (resolved to the synonym's choice).
type node struct {
	kind  byte // 'l' literal, 's' sequence, 'a' alternatives, 'r' reference
	text  string
	kids  []*node
	count float64 // number of expansions, set by resolve
}

func parseSynonyms(text string) (map[string]*node, error) {
	syn := map[string]*node{}
	sc := bufio.NewScanner(strings.NewReader(text))
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		name, body, ok := strings.Cut(line, "=")
		name = strings.TrimSpace(name)
		if !ok || !strings.HasPrefix(name, "@") || len(name) < 2 || !isRefName(name[1:]) {
			return nil, fmt.Errorf("%w: synonyms line %d: want '@name = a | b', got %q", ErrCorpus, n, line)
		}
		if _, dup := syn[name[1:]]; dup {
			return nil, fmt.Errorf("%w: synonyms line %d: %s defined twice", ErrCorpus, n, name)
		}
		nd, err := parseTemplate("(" + body + ")")
		if err != nil {
			return nil, fmt.Errorf("%w: synonyms line %d: %w", ErrCorpus, n, err)
		}
		syn[name[1:]] = nd
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrCorpus, err)
	}
	return syn, nil
}

func isRefName(s string) bool {
	for _, r := range s {
		if !(r >= 'a' && r <= 'z' || r >= '0' && r <= '9' || r == '_') {
			return false
		}
	}
	return s != ""
}

// parseTemplate parses "(a|b) c [d] @syn".
func parseTemplate(s string) (*node, error) {
	p := &parser{s: s}
	n := p.alts(0)
	if p.err == nil && p.i < len(p.s) {
		p.err = fmt.Errorf("unbalanced %q at byte %d of %q", p.s[p.i], p.i, s)
	}
	if p.err != nil {
		return nil, p.err
	}
	return n, nil
}

type parser struct {
	s   string
	i   int
	err error
}

// alts parses seq ('|' seq)* up to a closing bracket (not consumed).
func (p *parser) alts(depth int) *node {
	a := &node{kind: 'a'}
	for {
		a.kids = append(a.kids, p.seq(depth))
		if p.err != nil || p.i >= len(p.s) || p.s[p.i] != '|' {
			break
		}
		p.i++
	}
	if len(a.kids) == 1 {
		return a.kids[0]
	}
	return a
}

func (p *parser) seq(depth int) *node {
	sq := &node{kind: 's'}
	if depth > 20 {
		p.err = fmt.Errorf("brackets nested too deep in %q", p.s)
		return sq
	}
	lit := strings.Builder{}
	flush := func() {
		if lit.Len() > 0 {
			sq.kids = append(sq.kids, &node{kind: 'l', text: lit.String()})
			lit.Reset()
		}
	}
	for p.err == nil && p.i < len(p.s) {
		c := p.s[p.i]
		switch c {
		case '|', ')', ']':
			flush()
			return sq
		case '(', '[':
			flush()
			p.i++
			inner := p.alts(depth + 1)
			closer := byte(')')
			if c == '[' {
				closer = ']'
			}
			if p.err == nil && (p.i >= len(p.s) || p.s[p.i] != closer) {
				p.err = fmt.Errorf("missing %q in %q", closer, p.s)
				return sq
			}
			p.i++
			if c == '[' {
				inner = &node{kind: 'a', kids: []*node{inner, {kind: 's'}}}
			}
			sq.kids = append(sq.kids, inner)
		case '@':
			flush()
			j := p.i + 1
			for j < len(p.s) && isRefName(p.s[j:j+1]) {
				j++
			}
			if j == p.i+1 {
				p.err = fmt.Errorf("'@' without a name at byte %d of %q", p.i, p.s)
				return sq
			}
			sq.kids = append(sq.kids, &node{kind: 'r', text: p.s[p.i+1 : j]})
			p.i = j
		default:
			lit.WriteByte(c)
			p.i++
		}
	}
	flush()
	return sq
}

// resolve links references to synonyms and computes counts.
func (n *node) resolve(syn map[string]*node, depth int) error {
	if depth > 16 {
		return fmt.Errorf("synonyms refer to each other too deeply (a cycle?) at @%s", n.text)
	}
	switch n.kind {
	case 'l':
		n.count = 1
	case 'r':
		target, ok := syn[n.text]
		if !ok {
			return fmt.Errorf("unknown synonym @%s", n.text)
		}
		if err := target.resolve(syn, depth+1); err != nil {
			return err
		}
		n.kids = []*node{target}
		n.count = target.count
	case 's':
		n.count = 1
		for _, k := range n.kids {
			if err := k.resolve(syn, depth); err != nil {
				return err
			}
			n.count *= k.count
		}
	case 'a':
		n.count = 0
		for _, k := range n.kids {
			if err := k.resolve(syn, depth); err != nil {
				return err
			}
			n.count += k.count
		}
	}
	return nil
}

// wrapper returns the nodes "[@lead]" and "[@tail]" as the two kids of a
// sequence, or nil when the synonyms define neither.
func wrapper(syn map[string]*node) (*node, error) {
	if syn["lead"] == nil && syn["tail"] == nil {
		return nil, nil
	}
	w := &node{kind: 's'}
	for _, name := range []string{"lead", "tail"} {
		opt := &node{kind: 'a', kids: []*node{{kind: 's'}}}
		if syn[name] != nil {
			sp := &node{kind: 'l', text: " "}
			opt.kids = append(opt.kids, &node{kind: 's', kids: []*node{sp, {kind: 'r', text: name}, sp}})
		}
		w.kids = append(w.kids, opt)
	}
	if err := w.resolve(syn, 0); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrCorpus, err)
	}
	return w, nil
}

// expandNode returns up to limit distinct expansions of a template, all of
// them when there are at most limit, else a sample seeded by seed, in a
// deterministic order.
func expandNode(n *node, seed string, limit int) []string {
	var raw []string
	if n.count <= float64(limit) {
		raw = enumerate(n)
	} else {
		h := fnv.New64a()
		h.Write([]byte(seed))
		rng := rand.New(rand.NewPCG(h.Sum64(), 0x6e6c75))
		seen := map[string]bool{}
		for try := 0; try < 20*limit && len(raw) < limit; try++ {
			var b strings.Builder
			sample(n, rng, &b)
			s := b.String()
			if !seen[s] {
				seen[s] = true
				raw = append(raw, s)
			}
		}
	}
	out := make([]string, 0, len(raw))
	seen := map[string]bool{}
	for _, s := range raw {
		s = strings.Join(strings.Fields(s), " ")
		if s != "" && !seen[s] {
			seen[s] = true
			out = append(out, s)
		}
	}
	return out
}

func enumerate(n *node) []string {
	switch n.kind {
	case 'l':
		return []string{n.text}
	case 'r':
		return enumerate(n.kids[0])
	case 'a':
		var out []string
		for _, k := range n.kids {
			out = append(out, enumerate(k)...)
		}
		return out
	}
	out := []string{""}
	for _, k := range n.kids {
		parts := enumerate(k)
		next := make([]string, 0, len(out)*len(parts))
		for _, o := range out {
			for _, p := range parts {
				next = append(next, o+p)
			}
		}
		out = next
	}
	return out
}

func sample(n *node, rng *rand.Rand, b *strings.Builder) {
	switch n.kind {
	case 'l':
		b.WriteString(n.text)
	case 'r':
		sample(n.kids[0], rng, b)
	case 's':
		for _, k := range n.kids {
			sample(k, rng, b)
		}
	case 'a':
		r := rng.Float64() * n.count
		for i, k := range n.kids {
			if r < k.count || i == len(n.kids)-1 {
				sample(k, rng, b)
				return
			}
			r -= k.count
		}
	}
}

package subjects

import (
	"cmp"
	"errors"
	"fmt"
	"math"
	"slices"
	"strconv"
	"strings"
)

// Selector limits. A selector travels in commands and plans, so its size is
// bounded before anything is built from it.
const (
	MaxSelectorLen   = 4096 // bytes
	MaxSelectorTerms = 64   // comma- and bar-separated items, capabilities included
)

// ErrSelector is wrapped by every selector parse error.
var ErrSelector = errors.New("invalid selector")

// Target is what a selector is matched against: one node as the registry
// knows it.
type Target struct {
	Chevron Chevron
	Name    string
	Caps    []string
	Tags    map[string]string
	OS      string
	Load    float64
	Trust   int
}

// Selector names the nodes a command goes to. It is a disjunction of
// conjunctions of terms, obtained from ParseSelector. The zero Selector
// matches no node and formats as ""; it is never returned by ParseSelector.
type Selector struct {
	// alts is OR of ANDs. `all` is one alternative with no terms. Each
	// alternative is normalised: sorted by (kind, canonical text), without
	// duplicates, with every capability merged into one trailing caps term.
	alts [][]term
}

type termKind uint8

// The order of the kinds is the order of terms in the canonical form; caps
// must come last so that a bare word after it cannot be taken for a name.
const (
	kindPrefix termKind = iota
	kindName
	kindOS
	kindTag
	kindTrust
	kindLoad
	kindCaps
)

type cmpOp uint8

const (
	opEQ cmpOp = iota
	opLT
	opLE
	opGT
	opGE
)

func (o cmpOp) String() string {
	switch o {
	case opLT:
		return "<"
	case opLE:
		return "<="
	case opGT:
		return ">"
	case opGE:
		return ">="
	}
	return "="
}

type term struct {
	kind   termKind
	chev   Chevron  // kindPrefix
	str    string   // kindName, kindOS: the value; kindTag: the key
	val    string   // kindTag: the value when hasVal
	hasVal bool     // kindTag
	caps   []string // kindCaps: sorted, no duplicates
	op     cmpOp    // kindTrust, kindLoad
	num    float64  // kindTrust (an integer 0..3), kindLoad
}

// ParseSelector parses a node reference:
//
//	selector    = alternative { "|" alternative }
//	alternative = term { "," term }
//	term        = "all" | chevron | name | filter
//	filter      = "caps=" capability { "," capability }
//	            | "tag=" key [ ":" value ]
//	            | "os=" word
//	            | "trust" op tier
//	            | "load" op number
//	op          = ">=" | ">" | "<=" | "<" | "="
//
// "," is AND and "|" is OR, which binds loosest: a,b|c is (a AND b) OR c.
// A chevron ("3.12") matches every node under that prefix; a name
// ([A-Za-z][A-Za-z0-9_.-]*, at most 64 bytes, not "all") matches the node of
// that name; "all" matches every node. Capabilities, tag keys and names start
// with a letter; capabilities, tag keys and os values may contain
// [A-Za-z0-9_.-]; a tag value may also contain ":/@+=". The tier is one digit
// 0..3 and the load a decimal number such as 0.5 (no sign or exponent).
// Values compare exactly, case included. Blanks around a term are ignored.
//
// The comma after a caps list is ambiguous, and is resolved this way: after
// "caps=", each following comma-separated item that is a bare word (no
// '=', '<', '>' or '!', and not starting with a digit as a chevron does) is
// one more capability, so "caps=gpu,ai" needs both gpu and ai and
// "caps=gpu,rn2" needs capabilities gpu and rn2. The list ends at the first
// other item: "caps=gpu,load<0.5" is caps gpu AND load<0.5. To combine a
// node name with capabilities, write the name first: "rn2,caps=gpu".
//
// A selector is at most MaxSelectorLen bytes and MaxSelectorTerms items.
// Every error wraps ErrSelector and names the offending term, its 1-based
// index and its 1-based byte column.
func ParseSelector(s string) (Selector, error) {
	if len(s) > MaxSelectorLen {
		return Selector{}, fmt.Errorf("%w %q: %d bytes, limit %d", ErrSelector, truncate(s), len(s), MaxSelectorLen)
	}
	if strings.Trim(s, " \t") == "" {
		return Selector{}, fmt.Errorf("%w %q: empty", ErrSelector, s)
	}
	var (
		alts    [][]term
		cur     []term
		caps    = -1 // index in cur of the caps term the next bare word extends, or -1
		n       int  // items seen
		start   int  // byte offset of the current item
		hasCaps bool
	)
	for i := 0; i <= len(s); i++ {
		if i < len(s) && s[i] != ',' && s[i] != '|' {
			continue
		}
		n++
		if n > MaxSelectorTerms {
			return Selector{}, fmt.Errorf("%w %q: more than %d terms", ErrSelector, truncate(s), MaxSelectorTerms)
		}
		raw := s[start:i]
		item := strings.TrimLeft(raw, " \t")
		col := start + len(raw) - len(item) + 1
		item = strings.TrimRight(item, " \t")
		fail := func(format string, args ...any) error {
			return fmt.Errorf("%w %q: term %d (column %d) %q: %s",
				ErrSelector, truncate(s), n, col, truncate(item), fmt.Sprintf(format, args...))
		}
		if caps >= 0 && isBareWord(item) {
			if err := checkWord(item, wordCap); err != nil {
				return Selector{}, fail("capability: %v", err)
			}
			cur[caps].caps = append(cur[caps].caps, item)
		} else {
			t, all, err := parseTerm(item)
			if err != nil {
				// Wrap both sentinels so a caller can still ask
				// errors.Is(err, ErrChevron).
				if errors.Is(err, ErrChevron) {
					return Selector{}, fmt.Errorf("%w %q: term %d (column %d) %q: %w",
						ErrSelector, truncate(s), n, col, truncate(item), err)
				}
				return Selector{}, fail("%v", err)
			}
			caps = -1
			if !all {
				cur = append(cur, t)
				if t.kind == kindCaps {
					caps = len(cur) - 1
					hasCaps = true
				}
			}
		}
		if i == len(s) || s[i] == '|' {
			alts = append(alts, normalise(cur, hasCaps))
			cur, caps, hasCaps = nil, -1, false
		}
		start = i + 1
	}
	return Selector{alts: simplify(alts)}, nil
}

// isBareWord reports whether a comma item after a caps list continues it.
func isBareWord(item string) bool {
	return item != "" && !strings.ContainsAny(item, "=<>!") && !isDigit(item[0])
}

// parseTerm parses one trimmed item outside a caps list. all reports the
// term "all", which adds no condition.
func parseTerm(item string) (t term, all bool, err error) {
	if item == "" {
		return term{}, false, errors.New("empty term")
	}
	if item == "all" {
		return term{}, true, nil
	}
	if i := strings.IndexAny(item, "=<>!"); i >= 0 {
		t, err := parseFilter(item[:i], item[i:])
		return t, false, err
	}
	if isDigit(item[0]) {
		c, err := Parse(item)
		if err != nil {
			return term{}, false, err
		}
		return term{kind: kindPrefix, chev: c}, false, nil
	}
	if err := checkWord(item, wordName); err != nil {
		return term{}, false, fmt.Errorf("node name: %v", err)
	}
	return term{kind: kindName, str: item}, false, nil
}

// parseFilter parses key followed by rest, which starts with an operator.
func parseFilter(key, rest string) (term, error) {
	switch key {
	case "caps", "tag", "os", "trust", "load":
	case "":
		return term{}, errors.New("missing filter name before the operator")
	default:
		return term{}, fmt.Errorf("unknown filter %q (want caps, tag, os, trust or load)", truncate(key))
	}
	op, n, ok := parseOp(rest)
	if !ok {
		return term{}, fmt.Errorf("operator %q not supported (want >=, >, <=, < or =)", rest[:min(len(rest), 2)])
	}
	val := rest[n:]
	switch key {
	case "caps", "tag", "os":
		if op != opEQ {
			return term{}, fmt.Errorf("%s takes '=', not %q", key, op.String())
		}
	}
	switch key {
	case "caps":
		if val == "" {
			return term{}, errors.New("empty capability")
		}
		if err := checkWord(val, wordCap); err != nil {
			return term{}, fmt.Errorf("capability: %v", err)
		}
		return term{kind: kindCaps, caps: []string{val}}, nil
	case "tag":
		k, v, hasVal := strings.Cut(val, ":")
		if k == "" {
			return term{}, errors.New("empty tag key")
		}
		if err := checkWord(k, wordCap); err != nil {
			return term{}, fmt.Errorf("tag key: %v", err)
		}
		if hasVal {
			if v == "" {
				return term{}, fmt.Errorf("empty value for tag %q (write tag=%s for any value)", k, k)
			}
			if err := checkWord(v, wordTagValue); err != nil {
				return term{}, fmt.Errorf("tag value: %v", err)
			}
		}
		return term{kind: kindTag, str: k, val: v, hasVal: hasVal}, nil
	case "os":
		if val == "" {
			return term{}, errors.New("empty os")
		}
		if err := checkWord(val, wordOS); err != nil {
			return term{}, fmt.Errorf("os: %v", err)
		}
		return term{kind: kindOS, str: val}, nil
	case "trust":
		if len(val) != 1 || val[0] < '0' || val[0] > '3' {
			return term{}, fmt.Errorf("trust tier %q: want an integer 0..3", truncate(val))
		}
		return term{kind: kindTrust, op: op, num: float64(val[0] - '0')}, nil
	default: // "load", the last key checked above
		v, err := parseLoad(val)
		if err != nil {
			return term{}, err
		}
		return term{kind: kindLoad, op: op, num: v}, nil
	}
}

func parseOp(s string) (op cmpOp, n int, ok bool) {
	switch {
	case strings.HasPrefix(s, ">="):
		return opGE, 2, true
	case strings.HasPrefix(s, "<="):
		return opLE, 2, true
	case strings.HasPrefix(s, ">"):
		return opGT, 1, true
	case strings.HasPrefix(s, "<"):
		return opLT, 1, true
	case strings.HasPrefix(s, "="):
		return opEQ, 1, true
	}
	return 0, 0, false
}

// parseLoad accepts digits with an optional fraction (1, 0.5, .5, 2.) and
// nothing else, so that the canonical form is never longer than the input.
func parseLoad(s string) (float64, error) {
	digits, dot := 0, false
	for i := 0; i < len(s); i++ {
		switch {
		case isDigit(s[i]):
			digits++
		case s[i] == '.' && !dot:
			dot = true
		default:
			return 0, fmt.Errorf("load %q: want a decimal number such as 0.5", truncate(s))
		}
	}
	if digits == 0 {
		return 0, fmt.Errorf("load %q: want a decimal number such as 0.5", truncate(s))
	}
	v, err := strconv.ParseFloat(s, 64)
	if err != nil || math.IsInf(v, 0) {
		return 0, fmt.Errorf("load %q: out of range", truncate(s))
	}
	return v, nil
}

type wordClass uint8

const (
	wordName     wordClass = iota // [A-Za-z][A-Za-z0-9_.-]*, not "all" (a leading letter keeps it apart from a chevron)
	wordCap                       // [A-Za-z][A-Za-z0-9_.-]*: capabilities, tag keys
	wordOS                        // [A-Za-z0-9_.-]+
	wordTagValue                  // [A-Za-z0-9_.:/@+=-]+
)

// checkWord checks s, known to be non-empty, against a word class.
func checkWord(s string, class wordClass) error {
	limit := 64
	if class == wordTagValue {
		limit = 256
	}
	if len(s) > limit {
		return fmt.Errorf("%q longer than %d bytes", truncate(s), limit)
	}
	if class == wordName && s == "all" {
		return errors.New(`"all" is reserved`)
	}
	if class != wordOS && class != wordTagValue && !isLetter(s[0]) {
		return fmt.Errorf("%q does not start with a letter", s)
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		ok := isLetter(c) || isDigit(c) || c == '_' || c == '-'
		switch class {
		case wordCap, wordOS, wordName:
			ok = ok || c == '.'
		case wordTagValue:
			ok = ok || strings.IndexByte(".:/@+=", c) >= 0
		}
		if !ok {
			return fmt.Errorf("%q: byte %d %q not allowed", s, i+1, c)
		}
	}
	return nil
}

func isLetter(c byte) bool { return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' }
func isDigit(c byte) bool  { return c >= '0' && c <= '9' }

// normalise merges capabilities into one trailing term, sorts the terms and
// drops duplicates, so that equal conjunctions have equal representations.
func normalise(ts []term, hasCaps bool) []term {
	out := make([]term, 0, len(ts))
	var caps []string
	for _, t := range ts {
		if t.kind == kindCaps {
			caps = append(caps, t.caps...)
			continue
		}
		out = append(out, t)
	}
	slices.SortFunc(out, func(a, b term) int {
		return cmp.Or(cmp.Compare(a.kind, b.kind), strings.Compare(a.String(), b.String()))
	})
	out = slices.CompactFunc(out, func(a, b term) bool { return a.String() == b.String() })
	if hasCaps {
		slices.Sort(caps)
		out = append(out, term{kind: kindCaps, caps: slices.Compact(caps)})
	}
	return out
}

// simplify drops repeated alternatives and reduces the selector to `all`
// when one alternative has no condition.
func simplify(alts [][]term) [][]term {
	out := make([][]term, 0, len(alts))
	seen := make(map[string]bool, len(alts))
	for _, a := range alts {
		if len(a) == 0 {
			return [][]term{{}}
		}
		k := formatAlt(a)
		if !seen[k] {
			seen[k] = true
			out = append(out, a)
		}
	}
	return out
}

// String formats the selector canonically: alternatives in their original
// order without repeats, each one's terms as chevron prefixes, names, os,
// tag, trust, load and finally one caps list, each group sorted. It parses
// back to an equal Selector.
func (s Selector) String() string {
	parts := make([]string, len(s.alts))
	for i, a := range s.alts {
		parts[i] = formatAlt(a)
	}
	return strings.Join(parts, "|")
}

func formatAlt(a []term) string {
	if len(a) == 0 {
		return "all"
	}
	parts := make([]string, len(a))
	for i, t := range a {
		parts[i] = t.String()
	}
	return strings.Join(parts, ",")
}

func (t term) String() string {
	switch t.kind {
	case kindPrefix:
		return t.chev.String()
	case kindName:
		return t.str
	case kindOS:
		return "os=" + t.str
	case kindTag:
		if t.hasVal {
			return "tag=" + t.str + ":" + t.val
		}
		return "tag=" + t.str
	case kindTrust:
		return "trust" + t.op.String() + strconv.Itoa(int(t.num))
	case kindLoad:
		return "load" + t.op.String() + strconv.FormatFloat(t.num, 'f', -1, 64)
	case kindCaps:
		return "caps=" + strings.Join(t.caps, ",")
	}
	return ""
}

// Match reports whether t is one of the nodes s names.
func (s Selector) Match(t Target) bool {
	for _, a := range s.alts {
		if matchAll(a, t) {
			return true
		}
	}
	return false
}

func matchAll(a []term, t Target) bool {
	for _, x := range a {
		if !x.match(t) {
			return false
		}
	}
	return true
}

func (x term) match(t Target) bool {
	switch x.kind {
	case kindPrefix:
		return t.Chevron.HasPrefix(x.chev)
	case kindName:
		return t.Name == x.str
	case kindOS:
		return t.OS == x.str
	case kindTag:
		v, ok := t.Tags[x.str]
		return ok && (!x.hasVal || v == x.val)
	case kindTrust:
		return compare(float64(t.Trust), x.op, x.num)
	case kindLoad:
		return compare(t.Load, x.op, x.num)
	case kindCaps:
		for _, c := range x.caps {
			if !slices.Contains(t.Caps, c) {
				return false
			}
		}
		return true
	}
	return false
}

func compare(v float64, op cmpOp, ref float64) bool {
	switch op {
	case opEQ:
		return v == ref
	case opLT:
		return v < ref
	case opLE:
		return v <= ref
	case opGT:
		return v > ref
	case opGE:
		return v >= ref
	}
	return false
}

// Prefix returns the chevron prefix s names when s is exactly one plain
// prefix (such as "3.12"), or the zero chevron for "all", so that a sender
// can publish once to that prefix's subject. It returns false for anything
// else, even a selector that happens to match the same nodes.
func (s Selector) Prefix() (Chevron, bool) {
	if len(s.alts) != 1 {
		return Chevron{}, false
	}
	switch a := s.alts[0]; {
	case len(a) == 0:
		return Chevron{}, true
	case len(a) == 1 && a[0].kind == kindPrefix:
		return a[0].chev, true
	}
	return Chevron{}, false
}

// IsAll reports whether s selects every node of the swarm without
// condition, as "all" (or "all|x", or "all,all") does.
func (s Selector) IsAll() bool { return len(s.alts) == 1 && len(s.alts[0]) == 0 }

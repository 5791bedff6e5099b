package intents

import (
	"encoding/json"
	"path"
	"slices"
	"strconv"
	"strings"

	"github.com/robonet-mesh/robonet/command"
	"github.com/robonet-mesh/robonet/subjects"
)

// ---- matching ----

// pel is one element of a pattern: alternatives of word sequences.
type pel struct {
	alts [][]string
	opt  bool
}

// compile reads a pattern: elements separated by blanks, alternatives by
// '|', words of a multi-word alternative joined by '_', '?' marks an
// optional element, and #n #f #chev #svc #path #obj #key #val #tier are
// placeholders whose values are captured.
func compile(spec string) []pel {
	var out []pel
	for _, f := range strings.Fields(spec) {
		var e pel
		if strings.HasPrefix(f, "?") {
			e.opt, f = true, f[1:]
		}
		for _, a := range strings.Split(f, "|") {
			e.alts = append(e.alts, strings.Split(a, "_"))
		}
		out = append(out, e)
	}
	return out
}

type match struct {
	start, end int
	caps       []string
	words      []string // the literal words matched, in order
}

// find returns the leftmost match of spec among unused tokens.
func (c *clause) find(spec string) (match, bool) { return c.findWhere(spec, nil) }

// findWhere returns the leftmost match of spec that ok accepts (nil: any).
func (c *clause) findWhere(spec string, ok func(match) bool) (match, bool) {
	p := compile(spec)
	for i := range c.toks {
		if end, caps, words, hit := c.matchAt(p, i, nil, nil); hit && end > i {
			m := match{start: i, end: end, caps: caps, words: words}
			if ok == nil || ok(m) {
				return m, true
			}
		}
	}
	return match{}, false
}

// take finds spec and marks its tokens used.
func (c *clause) take(spec string) (match, bool) {
	m, ok := c.find(spec)
	if ok {
		c.use(m.start, m.end)
	}
	return m, ok
}

func (c *clause) use(start, end int) {
	for i := start; i < end; i++ {
		c.toks[i].used = true
	}
}

func (c *clause) matchAt(p []pel, i int, caps, words []string) (int, []string, []string, bool) {
	if len(p) == 0 {
		return i, caps, words, true
	}
	e := p[0]
	for _, alt := range e.alts {
		j := i
		cc := slices.Clone(caps)
		ww := slices.Clone(words)
		good := true
		for _, w := range alt {
			if j >= len(c.toks) || c.toks[j].used {
				good = false
				break
			}
			t := c.toks[j]
			if strings.HasPrefix(w, "#") {
				v, ok := c.placeholder(w, t)
				if !ok {
					good = false
					break
				}
				cc = append(cc, v)
			} else {
				if t.quoted || t.low != w {
					good = false
					break
				}
				ww = append(ww, w)
			}
			j++
		}
		if !good {
			continue
		}
		if end, c2, w2, ok := c.matchAt(p[1:], j, cc, ww); ok {
			return end, c2, w2, true
		}
	}
	if e.opt {
		return c.matchAt(p[1:], i, caps, words)
	}
	return 0, nil, nil, false
}

func (c *clause) placeholder(kind string, t rtok) (string, bool) {
	if t.quoted && kind != "#val" {
		return "", false
	}
	switch kind {
	case "#n":
		if n, ok := numberWords()[t.low]; ok {
			return strconv.Itoa(n), true
		}
		n, err := strconv.Atoi(t.raw)
		if err != nil || n < 1 || n > MaxNodes || t.raw[0] == '0' {
			return "", false
		}
		return strconv.Itoa(n), true
	case "#f":
		if t.raw == "" || strings.Trim(t.raw, "0123456789.") != "" || strings.Count(t.raw, ".") > 1 || strings.Trim(t.raw, ".") == "" {
			return "", false
		}
		return t.raw, true
	case "#tier":
		if len(t.raw) == 1 && t.raw[0] >= '0' && t.raw[0] <= '3' {
			return t.raw, true
		}
		return "", false
	case "#chev":
		if t.raw == "" || t.raw[0] < '0' || t.raw[0] > '9' {
			return "", false
		}
		ch, err := subjects.Parse(t.raw)
		if err != nil {
			return "", false
		}
		return ch.String(), true
	case "#svc":
		s, ok := c.lx.svc[t.low]
		return s, ok
	case "#path":
		return t.raw, isCleanPath(t.raw)
	case "#obj":
		return t.raw, isObjectName(t.raw)
	case "#key":
		return t.raw, isConfigKey(t.raw) && !fillers()[t.low] && !setOf("config configuration setting settings key value")[t.low]
	case "#val":
		if t.quoted {
			return t.raw, len(t.raw) <= command.MaxConfigValue
		}
		return t.raw, !setOf("on in at for across from")[t.low]
	}
	return "", false
}

func isCleanPath(p string) bool {
	if len(p) < 2 || len(p) > 4096 || p[0] != '/' || path.Clean(p) != p {
		return false
	}
	for i := 0; i < len(p); i++ {
		ch := p[i]
		if !(isLetterByte(ch) || ch >= '0' && ch <= '9' || strings.IndexByte("._/@+-", ch) >= 0) {
			return false
		}
	}
	return true
}

func isObjectName(n string) bool {
	if n == "" || len(n) > 255 || !isLetterByte(n[0]) && !(n[0] >= '0' && n[0] <= '9') || strings.HasSuffix(n, "/") || strings.Contains(n, "..") || strings.Contains(n, "//") {
		return false
	}
	for i := 0; i < len(n); i++ {
		ch := n[i]
		if !(isLetterByte(ch) || ch >= '0' && ch <= '9' || strings.IndexByte("._/-", ch) >= 0) {
			return false
		}
	}
	return true
}

func isConfigKey(k string) bool {
	if k == "" || len(k) > 256 || k[0] == '.' || k[len(k)-1] == '.' || strings.Contains(k, "..") {
		return false
	}
	letter := false
	for i := 0; i < len(k); i++ {
		ch := k[i]
		switch {
		case isLetterByte(ch):
			letter = true
		case ch >= '0' && ch <= '9', strings.IndexByte("-/_=.", ch) >= 0:
		default:
			return false
		}
	}
	return letter
}

func isLetterByte(c byte) bool { return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' }

// has reports whether an unused token is one of words.
func (c *clause) has(words map[string]bool) bool {
	for _, t := range c.toks {
		if !t.used && words[t.low] {
			return true
		}
	}
	return false
}

// useAll marks every unused token in words used and says how many.
func (c *clause) useAll(words map[string]bool) int {
	n := 0
	for i := range c.toks {
		if !c.toks[i].used && words[c.toks[i].low] {
			c.toks[i].used = true
			n++
		}
	}
	return n
}

func (c *clause) setVerb(rule, verb string, args any, words ...string) {
	c.rule, c.verb, c.matched = rule, verb, words
	if args != nil {
		b, _ := json.Marshal(args)
		c.args = b
	}
}

func (c *clause) findAfter(from int, spec string) (match, bool) {
	p := compile(spec)
	for i := from; i < len(c.toks); i++ {
		if end, caps, words, ok := c.matchAt(p, i, nil, nil); ok && end > i {
			return match{start: i, end: end, caps: caps, words: words}, true
		}
	}
	return match{}, false
}

package intents

import (
	"fmt"
	"strings"
	"unicode"
	"unicode/utf8"
)

func checkRuleSentence(s string) error {
	if strings.TrimSpace(s) == "" {
		return fmt.Errorf("%w: empty sentence: say what to do, e.g. \"scan AI nodes for anomalies\"", ErrBadSentence)
	}
	if len(s) > MaxSentence {
		return fmt.Errorf("%w: %d bytes (limit %d): say it shorter, or chain fewer steps", ErrBadSentence, len(s), MaxSentence)
	}
	if !utf8.ValidString(s) {
		return fmt.Errorf("%w: not valid UTF-8", ErrBadSentence)
	}
	for i, r := range s {
		if unicode.IsControl(r) || unicode.Is(unicode.Cf, r) {
			return fmt.Errorf("%w: control or format character %U at byte %d: write the sentence on one line", ErrBadSentence, r, i)
		}
	}
	refuse := func(what string) error {
		return fmt.Errorf("%w: %q contains %s; the rule planner never passes sentence text to a shell (chain steps with \"then\")",
			ErrSentenceRefused, clip(s), what)
	}
	switch {
	case strings.Contains(s, "`"):
		return refuse("backticks (command substitution)")
	case strings.Contains(s, "$"):
		return refuse("'$' (shell expansion such as $(…) or ${…})")
	case strings.Contains(s, ";"):
		return refuse("';' (a command separator)")
	case strings.Contains(s, "&"):
		return refuse("'&' (a shell operator such as && or &)")
	case strings.Contains(s, "\\"):
		return refuse("a backslash")
	}
	// '|' only inside a literal selector ("caps=gpu|tag=role:camera");
	// '<' and '>' only in load and trust comparisons.
	for _, w := range strings.Fields(s) {
		if strings.Contains(w, "|") && !(strings.ContainsAny(w, "=<>") && strings.Trim(w, "|") == w && !strings.Contains(w, "||")) {
			return refuse("'|' (a pipe)")
		}
	}
	rest := cmpRE(s)
	if strings.ContainsAny(rest, "<>") {
		return refuse("'<' or '>' outside a load or trust comparison (a redirection)")
	}
	return nil
}

// cmpRE removes "load < 0.5"-style comparisons (and the operators of
// literal selectors) from s, so that what is left must not hold < or >.
func cmpRE(s string) string {
	low := asciiLower(s) // same byte offsets as s
	var b strings.Builder
	i := 0
	for i < len(s) {
		if j := matchComparison(low, i); j > i {
			b.WriteByte(' ')
			i = j
			continue
		}
		b.WriteByte(s[i])
		i++
	}
	return b.String()
}

// matchComparison returns the end of "load|trust [ ]op[ ]number" at i, or i.
func matchComparison(low string, i int) int {
	for _, kw := range []string{"load", "trust"} {
		if !strings.HasPrefix(low[i:], kw) || (i > 0 && isWordByte(low[i-1])) {
			continue
		}
		j := i + len(kw)
		for j < len(low) && low[j] == ' ' {
			j++
		}
		k := j
		for k < len(low) && strings.IndexByte("<>=", low[k]) >= 0 && k-j < 2 {
			k++
		}
		if k == j {
			continue
		}
		for k < len(low) && low[k] == ' ' {
			k++
		}
		n := k
		for n < len(low) && (low[n] >= '0' && low[n] <= '9' || low[n] == '.') {
			n++
		}
		if n == k {
			continue
		}
		return n
	}
	return i
}

func isWordByte(c byte) bool {
	return c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '_'
}

// expandContractions rewrites "didn't" as "did not", "what's" as "what is".
// Only ASCII spellings are rewritten, so byte offsets stay meaningful.
func expandContractions(s string) string {
	s = strings.NewReplacer("’", "'", "‘", "'", "“", `"`, "”", `"`).Replace(s)
	words := strings.Fields(s)
	for i, w := range words {
		low := asciiLower(w)
		core := strings.TrimRight(low, "?!.,")
		tail := w[len(core):]
		switch {
		case core == "can't" || core == "cannot":
			words[i] = "can not" + tail
		case core == "won't":
			words[i] = "will not" + tail
		case strings.HasSuffix(core, "n't"):
			words[i] = w[:len(core)-3] + " not" + tail
		case strings.HasSuffix(core, "'s"):
			switch base := core[:len(core)-2]; base {
			case "what", "who", "how", "that", "it", "there", "here", "where", "which":
				words[i] = w[:len(base)] + " is" + tail
			}
		case strings.HasSuffix(core, "'re"), strings.HasSuffix(core, "'ve"), strings.HasSuffix(core, "'ll"),
			strings.HasSuffix(core, "'m"), strings.HasSuffix(core, "'d"):
			k := strings.LastIndexByte(core, '\'')
			words[i] = w[:k] + " " + w[k+1:]
		}
	}
	return strings.Join(words, " ")
}

// asciiLower lowers ASCII letters only, keeping every byte offset.
func asciiLower(s string) string {
	b := []byte(s)
	for i, c := range b {
		if c >= 'A' && c <= 'Z' {
			b[i] = c + 'a' - 'A'
		}
	}
	return string(b)
}

// splitThen splits "A, then B and then C" into its clauses. A "then"
// with nothing before or after it leaves an empty clause, which plan
// refuses.
func splitThen(s string) []string {
	words := strings.Fields(s)
	var parts []string
	var cur []string
	flush := func() {
		if len(cur) > 0 && strings.EqualFold(cur[len(cur)-1], "and") {
			cur = cur[:len(cur)-1]
		}
		parts = append(parts, strings.Join(cur, " "))
		cur = nil
	}
	for i := 0; i < len(words); i++ {
		low := strings.ToLower(strings.Trim(words[i], ",."))
		next := ""
		if i+1 < len(words) {
			next = strings.ToLower(strings.Trim(words[i+1], ",."))
		}
		switch {
		case low == "then" || low == "afterwards":
			flush()
			continue
		case low == "after" && next == "that":
			flush()
			i++
			continue
		}
		cur = append(cur, words[i])
	}
	flush()
	return parts
}

// rtok is one word of a clause.
type rtok struct {
	raw    string // as written, surrounding punctuation removed
	low    string
	quoted bool // came from "…"
	comma  bool // a comma followed it
	used   bool
	mask   string // the placeholder masked text shows for it, if any
}

func tokenize(s string) []rtok {
	var out []rtok
	for len(s) > 0 {
		s = strings.TrimLeft(s, " ")
		if s == "" {
			break
		}
		if s[0] == '"' {
			end := strings.IndexByte(s[1:], '"')
			if end >= 0 {
				q := s[1 : 1+end]
				out = append(out, rtok{raw: q, low: strings.ToLower(q), quoted: true})
				s = s[2+end:]
				if strings.HasPrefix(s, ",") {
					out[len(out)-1].comma = true
					s = s[1:]
				}
				continue
			}
			s = s[1:]
			continue
		}
		end := strings.IndexByte(s, ' ')
		if end < 0 {
			end = len(s)
		}
		w := s[:end]
		s = s[end:]
		if strings.ContainsAny(w, "=<>|") {
			w = strings.TrimRight(w, "?!.")
			comma := strings.HasSuffix(w, ",")
			w = strings.TrimRight(w, ",")
			out = append(out, rtok{raw: w, low: strings.ToLower(w), comma: comma})
			continue
		}
		for _, piece := range strings.SplitAfter(w, ",") {
			t := cleanWord(piece)
			if t.raw != "" {
				out = append(out, t)
			} else if t.comma && len(out) > 0 {
				out[len(out)-1].comma = true
			}
		}
	}
	return out
}

func cleanWord(w string) rtok {
	var t rtok
	w = strings.TrimLeft(w, "(\"'")
	for len(w) > 0 {
		last := w[len(w)-1]
		if strings.IndexByte(",.?!:)\"'", last) < 0 {
			break
		}
		if last == ',' {
			t.comma = true
		}
		w = w[:len(w)-1]
	}
	if strings.HasSuffix(asciiLower(w), "'s") {
		w = w[:len(w)-2]
	}
	t.raw, t.low = w, strings.ToLower(w)
	return t
}

// lexicon is the vocabulary prepared for matching.

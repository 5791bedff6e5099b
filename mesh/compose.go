package mesh

import (
	"errors"
	"fmt"
	"strings"
	"unicode"
	"unicode/utf8"
)

// Composition limits, checked by ParseComposition.
const (
	MaxComposeLen   = 8192 // bytes of input
	MaxComposeDepth = 16   // forks nested in forks
	MaxComposeSteps = 256  // steps, macro calls and local commands
)

// ErrCompose is wrapped by every error ParseComposition returns.
var ErrCompose = errors.New("invalid composition")

// ComposeError is the error ParseComposition returns: what was wrong and
// where. It wraps ErrCompose.
type ComposeError struct {
	Col   int    // 1-based byte column in Input; len(Input)+1 means its end
	Msg   string // what was expected or wrong, naming the offending text
	Input string // the whole composition
}

// Error formats the error as "compose: column N: message".
func (e *ComposeError) Error() string { return fmt.Sprintf("compose: column %d: %s", e.Col, e.Msg) }

// Unwrap returns ErrCompose.
func (e *ComposeError) Unwrap() error { return ErrCompose }

// caretWidth is the most characters of the input Caret shows.
const caretWidth = 72

// Caret renders the input on one line and a caret under the column in
// error, for a terminal:
//
//	rn1:status -> rn2:
//	                  ^
//
// Control characters show as spaces and invalid UTF-8 as '?', one column per
// character; a long input is cut to a window around the column, marked "…".
func (e *ComposeError) Caret() string {
	var line []rune
	caret := -1
	for i := 0; i < len(e.Input); {
		r, n := utf8.DecodeRuneInString(e.Input[i:])
		if caret < 0 && e.Col-1 < i+n {
			caret = len(line)
		}
		switch {
		case r == utf8.RuneError && n == 1:
			r = '?'
		case unicode.IsControl(r):
			r = ' '
		}
		line = append(line, r)
		i += n
	}
	if caret < 0 {
		caret = len(line)
	}
	lo, hi := 0, len(line)
	if hi > caretWidth {
		lo = max(0, caret-caretWidth/2)
		hi = min(len(line), lo+caretWidth)
		lo = max(0, hi-caretWidth)
	}
	var b strings.Builder
	pad := caret - lo
	if lo > 0 {
		b.WriteString("…")
		pad++
	}
	b.WriteString(string(line[lo:hi]))
	if hi < len(line) {
		b.WriteString("…")
	}
	b.WriteByte('\n')
	b.WriteString(strings.Repeat(" ", pad))
	b.WriteByte('^')
	return b.String()
}

// Expr is a node of a parsed composition: Step, MacroRef, Fork, Pipe or
// Local. Its String is the canonical text, which ParseComposition parses back
// to an equal Expr (columns aside).
type Expr interface {
	String() string
	composeExpr()
}

// Step runs one verb on the nodes a selector names: "3.12,caps=gpu:gauge cpu".
type Step struct {
	// Selector is the node reference as written, quotes removed and not
	// parsed; the caller parses it with subjects.ParseSelector.
	Selector string
	// SelectorCol is the column of Selector's first byte (inside the
	// quote when it starts quoted), to place selector errors in the input.
	SelectorCol int
	Verb        string   // [a-z][a-z0-9_-]*, at most 64 bytes
	Args        []string // words after the verb, quotes removed
	Col         int      // column of the step's first byte
}

// MacroRef calls a named macro from rn_macros: "@health".
type MacroRef struct {
	Name string // [A-Za-z][A-Za-z0-9_-]*, at most 64 bytes
	Col  int    // column of the '@'
}

// Fork runs every branch and gathers all their results: "[a:ping, b:ping]".
type Fork struct {
	Branches []Expr // at least one
	Col      int    // column of the '['
}

// PipeKind says how a Pipe passes the left side's output to the right side.
type PipeKind uint8

// Pipe kinds. The zero PipeKind is not valid.
const (
	PipeJSON PipeKind = iota + 1 // "->": structured output becomes the next step's input
	PipeText                     // "|": text output goes to a local command's standard input
)

// String returns the operator: "->" or "|".
func (k PipeKind) String() string {
	switch k {
	case PipeJSON:
		return "->"
	case PipeText:
		return "|"
	}
	return fmt.Sprintf("PipeKind(%d)", uint8(k))
}

// Pipe feeds Left's output to Right. For PipeJSON, Right is a Step, MacroRef
// or Fork; for PipeText it is a Local. Pipes chain to the left:
// "a -> b | c" is Pipe{Left: Pipe{a, b}, Right: c}.
type Pipe struct {
	Left, Right Expr
	Kind        PipeKind
	Col         int // column of the operator
}

// Local is a command line run on the caller's machine, the right side of
// "|": "grep -c linux".
type Local struct {
	Argv []string // at least one word, quotes removed
	Col  int      // column of the first word
}

func (Step) composeExpr()     {}
func (MacroRef) composeExpr() {}
func (Fork) composeExpr()     {}
func (Pipe) composeExpr()     {}
func (Local) composeExpr()    {}

// String formats the step canonically, quoting the selector and the
// arguments only where they need it.
func (s Step) String() string {
	var b strings.Builder
	b.WriteString(quoteSelector(s.Selector))
	b.WriteByte(':')
	b.WriteString(s.Verb)
	for _, a := range s.Args {
		b.WriteByte(' ')
		b.WriteString(quoteWord(a))
	}
	return b.String()
}

// String formats the call as "@name".
func (m MacroRef) String() string { return "@" + m.Name }

// String formats the fork as "[a, b]".
func (f Fork) String() string {
	parts := make([]string, len(f.Branches))
	for i, e := range f.Branches {
		parts[i] = exprString(e)
	}
	return "[" + strings.Join(parts, ", ") + "]"
}

// String formats the pipe as "left -> right" or "left | right". A Right
// that is itself a Pipe has no text form (the parser never builds one).
func (p Pipe) String() string {
	return exprString(p.Left) + " " + p.Kind.String() + " " + exprString(p.Right)
}

// String formats the command line's words, quoting where needed.
func (l Local) String() string {
	parts := make([]string, len(l.Argv))
	for i, a := range l.Argv {
		parts[i] = quoteWord(a)
	}
	return strings.Join(parts, " ")
}

func exprString(e Expr) string {
	if e == nil {
		return ""
	}
	return e.String()
}

// quoteWord quotes an argument that is empty or holds white space, a quote,
// or an operator: | , [ ] ->.
func quoteWord(s string) string {
	if s == "" || strings.ContainsAny(s, " \t\n\v\f\r'\"|,[]") || strings.Contains(s, "->") {
		return quote(s)
	}
	return s
}

// quoteSelector quotes a node reference that the step scanner would not
// read back whole: one holding white space, a quote, ':', '[', ']' or "->",
// or starting like an operator or a macro call.
func quoteSelector(s string) string {
	if s == "" || strings.ContainsAny(s, " \t\n\v\f\r'\":[]") || strings.Contains(s, "->") ||
		strings.IndexByte("@|,", s[0]) >= 0 {
		return quote(s)
	}
	return s
}

// quote wraps s in single quotes, or double quotes if it holds a single
// quote; a string holding both is written as adjacent quoted pieces, which
// the scanner joins.
func quote(s string) string {
	if !strings.Contains(s, "'") {
		return "'" + s + "'"
	}
	if !strings.Contains(s, `"`) {
		return `"` + s + `"`
	}
	var b strings.Builder
	for i, part := range strings.Split(s, "'") {
		if i > 0 {
			b.WriteString(`"'"`)
		}
		if part != "" {
			b.WriteString("'" + part + "'")
		}
	}
	return b.String()
}

// ParseComposition parses a composition, the language of `robonet do`:
//
//	composition = expr
//	expr        = operand { "->" operand | "|" local }
//	operand     = step | macro | fork
//	step        = noderef ":" verb { word }
//	macro       = "@" name
//	fork        = "[" expr { "," expr } "]"
//	local       = word { word }
//
// "->" and "|" bind equally and chain to the left; brackets group. A
// noderef is everything up to the first ':' outside quotes, without
// unquoted white space, '[', ']' or "->"; it is kept as text for
// subjects.ParseSelector. A verb is [a-z][a-z0-9_-]*, a macro name
// [A-Za-z][A-Za-z0-9_-]*. A word is a run of bytes other than white space,
// '|', ',', ']' and "->"; a part in single or double quotes may hold any of
// those and loses its quotes, there are no escapes, and adjacent parts join:
// a'b c'"d" is the word "ab cd". So an argument holding ',' must be quoted
// even outside a fork, where a bare ',' or ']' is an error.
//
// Input is at most MaxComposeLen bytes, forks nest at most MaxComposeDepth
// deep, and there are at most MaxComposeSteps steps, macro calls and local
// commands. Every error is a *ComposeError, which wraps ErrCompose.
func ParseComposition(s string) (Expr, error) {
	p := &composeParser{in: s}
	if len(s) > MaxComposeLen {
		return nil, p.errAt(0, "input is %d bytes, limit %d", len(s), MaxComposeLen)
	}
	e, err := p.expr()
	if err != nil {
		return nil, err
	}
	p.skipSpace()
	if p.pos < len(p.in) {
		switch p.in[p.pos] {
		case ',':
			return nil, p.errAt(p.pos, "',' outside a fork (quote it to pass it in a word)")
		case ']':
			return nil, p.errAt(p.pos, "']' without a matching '['")
		}
		return nil, p.unexpected("'->', '|' or end of input")
	}
	return e, nil
}

// composeParser is a recursive-descent parser over the input bytes; it
// recurses only into forks, so MaxComposeDepth bounds its stack.
type composeParser struct {
	in     string
	pos    int // byte offset of the next unread byte
	depth  int // forks open
	leaves int // steps, macro calls and locals so far
}

func (p *composeParser) errAt(pos int, format string, args ...any) error {
	return &ComposeError{Col: pos + 1, Msg: fmt.Sprintf(format, args...), Input: p.in}
}

// unexpected reports what was found at pos where want was expected.
func (p *composeParser) unexpected(want string) error {
	if p.pos >= len(p.in) {
		return p.errAt(p.pos, "expected %s, found end of input", want)
	}
	found := p.operator()
	if found == "" {
		end := p.pos
		for end < len(p.in) && end-p.pos < 32 && !isComposeSpace(p.in[end]) && p.operatorAt(end) == "" {
			end++
		}
		found = p.in[p.pos:max(end, p.pos+1)]
	}
	return p.errAt(p.pos, "expected %s, found %q", want, found)
}

// clip shortens s for an error message.
func clip(s string) string {
	if len(s) > 64 {
		return s[:64] + "…"
	}
	return s
}

func isComposeSpace(c byte) bool {
	switch c {
	case ' ', '\t', '\n', '\v', '\f', '\r':
		return true
	}
	return false
}

func (p *composeParser) skipSpace() {
	for p.pos < len(p.in) && isComposeSpace(p.in[p.pos]) {
		p.pos++
	}
}

// operatorAt returns the operator starting at i: "->", "|", "," or "]",
// or "" if there is none.
func (p *composeParser) operatorAt(i int) string {
	if i >= len(p.in) {
		return ""
	}
	switch p.in[i] {
	case '|', ',', ']':
		return p.in[i : i+1]
	case '-':
		if strings.HasPrefix(p.in[i:], "->") {
			return "->"
		}
	}
	return ""
}

func (p *composeParser) operator() string { return p.operatorAt(p.pos) }

// atBoundary reports whether a verb or macro name may end at pos.
func (p *composeParser) atBoundary() bool {
	return p.pos == len(p.in) || isComposeSpace(p.in[p.pos]) || p.operator() != ""
}

func (p *composeParser) leaf(pos int) error {
	p.leaves++
	if p.leaves > MaxComposeSteps {
		return p.errAt(pos, "more than %d steps", MaxComposeSteps)
	}
	return nil
}

func (p *composeParser) expr() (Expr, error) {
	left, err := p.operand()
	if err != nil {
		return nil, err
	}
	for {
		p.skipSpace()
		col := p.pos + 1
		switch p.operator() {
		case "->":
			p.pos += 2
			right, err := p.operand()
			if err != nil {
				return nil, err
			}
			left = Pipe{Left: left, Right: right, Kind: PipeJSON, Col: col}
		case "|":
			p.pos++
			right, err := p.local()
			if err != nil {
				return nil, err
			}
			left = Pipe{Left: left, Right: right, Kind: PipeText, Col: col}
		default:
			return left, nil
		}
	}
}

func (p *composeParser) operand() (Expr, error) {
	p.skipSpace()
	const want = "a step, '@macro' or '['"
	if p.pos == len(p.in) || p.operator() != "" {
		return nil, p.unexpected(want)
	}
	switch p.in[p.pos] {
	case '[':
		return p.fork()
	case '@':
		return p.macro()
	}
	return p.step()
}

func (p *composeParser) fork() (Expr, error) {
	open := p.pos
	p.depth++
	if p.depth > MaxComposeDepth {
		return nil, p.errAt(open, "forks nested deeper than %d", MaxComposeDepth)
	}
	p.pos++
	p.skipSpace()
	if p.pos < len(p.in) && p.in[p.pos] == ']' {
		return nil, p.errAt(open, "empty fork")
	}
	var branches []Expr
	for {
		e, err := p.expr()
		if err != nil {
			return nil, err
		}
		branches = append(branches, e)
		p.skipSpace()
		if p.pos == len(p.in) {
			return nil, p.errAt(p.pos, "missing ']' to close the '[' at column %d", open+1)
		}
		switch p.in[p.pos] {
		case ',':
			p.pos++
		case ']':
			p.pos++
			p.depth--
			return Fork{Branches: branches, Col: open + 1}, nil
		default:
			return nil, p.unexpected("'->', '|', ',' or ']'")
		}
	}
}

func (p *composeParser) macro() (Expr, error) {
	at := p.pos
	p.pos++
	if p.pos == len(p.in) || !isASCIILetter(p.in[p.pos]) {
		return nil, p.unexpected("a macro name after '@'")
	}
	name := p.ident(true)
	if !p.atBoundary() {
		return nil, p.errAt(p.pos, "invalid character %q in macro name %q", p.in[p.pos], name)
	}
	if len(name) > 64 {
		return nil, p.errAt(at+1, "macro name %q longer than 64 bytes", clip(name))
	}
	if err := p.leaf(at); err != nil {
		return nil, err
	}
	return MacroRef{Name: name, Col: at + 1}, nil
}

// ident reads [A-Za-z0-9_-]* (lower-case letters only unless upper), stopping
// before "->".
func (p *composeParser) ident(upper bool) string {
	start := p.pos
	for p.pos < len(p.in) {
		c := p.in[p.pos]
		ok := c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '_' ||
			c == '-' && p.operator() != "->" || upper && c >= 'A' && c <= 'Z'
		if !ok {
			break
		}
		p.pos++
	}
	return p.in[start:p.pos]
}

func isASCIILetter(c byte) bool { return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' }

func (p *composeParser) step() (Expr, error) {
	start := p.pos
	sel, selCol, err := p.noderef()
	if err != nil {
		return nil, err
	}
	p.pos++ // the ':'
	verbAt := p.pos
	if p.pos == len(p.in) {
		return nil, p.errAt(p.pos, "expected verb after ':'")
	}
	if c := p.in[p.pos]; c < 'a' || c > 'z' {
		return nil, p.unexpected("verb after ':'")
	}
	verb := p.ident(false)
	if !p.atBoundary() {
		return nil, p.errAt(p.pos, "invalid character %q in verb %q", p.in[p.pos], verb)
	}
	if len(verb) > 64 {
		return nil, p.errAt(verbAt, "verb %q longer than 64 bytes", clip(verb))
	}
	if err := p.leaf(start); err != nil {
		return nil, err
	}
	args, err := p.words()
	if err != nil {
		return nil, err
	}
	return Step{Selector: sel, SelectorCol: selCol, Verb: verb, Args: args, Col: start + 1}, nil
}

// noderef reads the node reference up to the ':' and leaves pos on it.
func (p *composeParser) noderef() (sel string, col int, err error) {
	start := p.pos
	col = start + 1
	if c := p.in[start]; c == '\'' || c == '"' {
		col++
	}
	var b strings.Builder
	for {
		if p.pos == len(p.in) {
			return "", 0, p.errAt(p.pos, "expected ':' after node reference %q", clip(b.String()))
		}
		switch c := p.in[p.pos]; {
		case c == ':':
			if b.Len() == 0 {
				return "", 0, p.errAt(start, "empty node reference before ':'")
			}
			return b.String(), col, nil
		case c == '\'' || c == '"':
			part, err := p.quoted()
			if err != nil {
				return "", 0, err
			}
			b.WriteString(part)
		case isComposeSpace(c) || c == '[' || c == ']' || p.operator() == "->":
			return "", 0, p.errAt(p.pos, "expected ':' after node reference %q", clip(b.String()))
		default:
			b.WriteByte(c)
			p.pos++
		}
	}
}

// quoted reads a quoted part starting at pos and returns its contents.
func (p *composeParser) quoted() (string, error) {
	q := p.in[p.pos]
	end := strings.IndexByte(p.in[p.pos+1:], q)
	if end < 0 {
		return "", p.errAt(p.pos, "unterminated %c quote", q)
	}
	part := p.in[p.pos+1 : p.pos+1+end]
	p.pos += end + 2
	return part, nil
}

// words reads whitespace-separated words up to an operator or the end.
func (p *composeParser) words() ([]string, error) {
	var out []string
	for {
		p.skipSpace()
		if p.pos == len(p.in) || p.operator() != "" {
			return out, nil
		}
		var b strings.Builder
		for p.pos < len(p.in) && !isComposeSpace(p.in[p.pos]) && p.operator() == "" {
			if c := p.in[p.pos]; c == '\'' || c == '"' {
				part, err := p.quoted()
				if err != nil {
					return nil, err
				}
				b.WriteString(part)
				continue
			}
			b.WriteByte(p.in[p.pos])
			p.pos++
		}
		out = append(out, b.String())
	}
}

func (p *composeParser) local() (Expr, error) {
	p.skipSpace()
	start := p.pos
	argv, err := p.words()
	if err != nil {
		return nil, err
	}
	if len(argv) == 0 {
		return nil, p.unexpected("a command after '|'")
	}
	if err := p.leaf(start); err != nil {
		return nil, err
	}
	return Local{Argv: argv, Col: start + 1}, nil
}

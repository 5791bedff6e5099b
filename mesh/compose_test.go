package mesh

import (
	"errors"
	"reflect"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

// stripCols returns e with every column zeroed, to compare shapes only.
func stripCols(e Expr) Expr {
	switch e := e.(type) {
	case Step:
		e.Col, e.SelectorCol = 0, 0
		return e
	case MacroRef:
		e.Col = 0
		return e
	case Fork:
		bs := make([]Expr, len(e.Branches))
		for i, b := range e.Branches {
			bs[i] = stripCols(b)
		}
		return Fork{Branches: bs}
	case Pipe:
		return Pipe{Left: stripCols(e.Left), Right: stripCols(e.Right), Kind: e.Kind}
	case Local:
		e.Col = 0
		return e
	}
	return e
}

// checkCols fails if a column in e lies outside the input of length n.
func checkCols(t *testing.T, in string, e Expr) {
	t.Helper()
	ok := func(col int) {
		if col < 1 || col > len(in) {
			t.Fatalf("ParseComposition(%q): column %d outside 1..%d in %#v", in, col, len(in), e)
		}
	}
	switch e := e.(type) {
	case Step:
		ok(e.Col)
		ok(e.SelectorCol)
	case MacroRef:
		ok(e.Col)
	case Fork:
		ok(e.Col)
		for _, b := range e.Branches {
			checkCols(t, in, b)
		}
	case Pipe:
		ok(e.Col)
		checkCols(t, in, e.Left)
		checkCols(t, in, e.Right)
	case Local:
		ok(e.Col)
	default:
		t.Fatalf("ParseComposition(%q): unexpected node %#v", in, e)
	}
}

func TestParseCompositionBuildsTree(t *testing.T) {
	tests := []struct {
		in   string
		want Expr
	}{
		{"rn1:status -> rn2:gauge list", Pipe{
			Left:  Step{Selector: "rn1", SelectorCol: 1, Verb: "status", Col: 1},
			Right: Step{Selector: "rn2", SelectorCol: 15, Verb: "gauge", Args: []string{"list"}, Col: 15},
			Kind:  PipeJSON, Col: 12,
		}},
		{"all:info | grep -c linux", Pipe{
			Left:  Step{Selector: "all", SelectorCol: 1, Verb: "info", Col: 1},
			Right: Local{Argv: []string{"grep", "-c", "linux"}, Col: 12},
			Kind:  PipeText, Col: 10,
		}},
		{"[3.12:ping, 3.13:ping]", Fork{Col: 1, Branches: []Expr{
			Step{Selector: "3.12", SelectorCol: 2, Verb: "ping", Col: 2},
			Step{Selector: "3.13", SelectorCol: 13, Verb: "ping", Col: 13},
		}}},
		{"[3.12:ping, 3.13:ping] -> all:gauge cpu", Pipe{
			Left: Fork{Col: 1, Branches: []Expr{
				Step{Selector: "3.12", SelectorCol: 2, Verb: "ping", Col: 2},
				Step{Selector: "3.13", SelectorCol: 13, Verb: "ping", Col: 13},
			}},
			Right: Step{Selector: "all", SelectorCol: 27, Verb: "gauge", Args: []string{"cpu"}, Col: 27},
			Kind:  PipeJSON, Col: 24,
		}},
		{"@health", MacroRef{Name: "health", Col: 1}},
		{"@Health-2_x", MacroRef{Name: "Health-2_x", Col: 1}},
		{"@health -> rn2:gauge", Pipe{
			Left:  MacroRef{Name: "health", Col: 1},
			Right: Step{Selector: "rn2", SelectorCol: 12, Verb: "gauge", Col: 12},
			Kind:  PipeJSON, Col: 9,
		}},
		{"a:x->@fmt", Pipe{
			Left:  Step{Selector: "a", SelectorCol: 1, Verb: "x", Col: 1},
			Right: MacroRef{Name: "fmt", Col: 6},
			Kind:  PipeJSON, Col: 4,
		}},
		{"a:x-->b:y", Pipe{
			Left:  Step{Selector: "a", SelectorCol: 1, Verb: "x-", Col: 1},
			Right: Step{Selector: "b", SelectorCol: 7, Verb: "y", Col: 7},
			Kind:  PipeJSON, Col: 5,
		}},
		{"a:x -> b:y | sort | uniq -c", Pipe{
			Left: Pipe{
				Left: Pipe{
					Left:  Step{Selector: "a", SelectorCol: 1, Verb: "x", Col: 1},
					Right: Step{Selector: "b", SelectorCol: 8, Verb: "y", Col: 8},
					Kind:  PipeJSON, Col: 5,
				},
				Right: Local{Argv: []string{"sort"}, Col: 14},
				Kind:  PipeText, Col: 12,
			},
			Right: Local{Argv: []string{"uniq", "-c"}, Col: 21},
			Kind:  PipeText, Col: 19,
		}},
		{"a:x | jq . -> b:y", Pipe{
			Left: Pipe{
				Left:  Step{Selector: "a", SelectorCol: 1, Verb: "x", Col: 1},
				Right: Local{Argv: []string{"jq", "."}, Col: 7},
				Kind:  PipeText, Col: 5,
			},
			Right: Step{Selector: "b", SelectorCol: 15, Verb: "y", Col: 15},
			Kind:  PipeJSON, Col: 12,
		}},
		{"'tag=role:camera':status", Step{Selector: "tag=role:camera", SelectorCol: 2, Verb: "status", Col: 1}},
		{`tag="role:camera":status`, Step{Selector: "tag=role:camera", SelectorCol: 1, Verb: "status", Col: 1}},
		{"caps=gpu,ai:status", Step{Selector: "caps=gpu,ai", SelectorCol: 1, Verb: "status", Col: 1}},
		{"caps=gpu,load<0.5|tag=edge:ping", Step{Selector: "caps=gpu,load<0.5|tag=edge", SelectorCol: 1, Verb: "ping", Col: 1}},
		{"[caps=gpu,ai:ping,rn1|rn2:ping]", Fork{Col: 1, Branches: []Expr{
			Step{Selector: "caps=gpu,ai", SelectorCol: 2, Verb: "ping", Col: 2},
			Step{Selector: "rn1|rn2", SelectorCol: 19, Verb: "ping", Col: 19},
		}}},
		{`a:exec "hello world" 'it''s' x"y z"w '' ""`, Step{
			Selector: "a", SelectorCol: 1, Verb: "exec", Col: 1,
			Args: []string{"hello world", "its", "xy zw", "", ""},
		}},
		{`a:x "a|b" 'c,d' "e->f" '[g]' k:v @y [z h-`, Step{
			Selector: "a", SelectorCol: 1, Verb: "x", Col: 1,
			Args: []string{"a|b", "c,d", "e->f", "[g]", "k:v", "@y", "[z", "h-"},
		}},
		{"a:gauge-2_x cpu", Step{Selector: "a", SelectorCol: 1, Verb: "gauge-2_x", Args: []string{"cpu"}, Col: 1}},
		{"  a:x\t->\n b:y  ", Pipe{
			Left:  Step{Selector: "a", SelectorCol: 3, Verb: "x", Col: 3},
			Right: Step{Selector: "b", SelectorCol: 11, Verb: "y", Col: 11},
			Kind:  PipeJSON, Col: 7,
		}},
		{"[a:x]", Fork{Col: 1, Branches: []Expr{Step{Selector: "a", SelectorCol: 2, Verb: "x", Col: 2}}}},
		{"[ [a:x, b:y] -> c:z , @m ]", Fork{Col: 1, Branches: []Expr{
			Pipe{
				Left: Fork{Col: 3, Branches: []Expr{
					Step{Selector: "a", SelectorCol: 4, Verb: "x", Col: 4},
					Step{Selector: "b", SelectorCol: 9, Verb: "y", Col: 9},
				}},
				Right: Step{Selector: "c", SelectorCol: 17, Verb: "z", Col: 17},
				Kind:  PipeJSON, Col: 14,
			},
			MacroRef{Name: "m", Col: 23},
		}}},
		{"[a:x | grep y, b:z -> c:w]", Fork{Col: 1, Branches: []Expr{
			Pipe{
				Left:  Step{Selector: "a", SelectorCol: 2, Verb: "x", Col: 2},
				Right: Local{Argv: []string{"grep", "y"}, Col: 8},
				Kind:  PipeText, Col: 6,
			},
			Pipe{
				Left:  Step{Selector: "b", SelectorCol: 16, Verb: "z", Col: 16},
				Right: Step{Selector: "c", SelectorCol: 23, Verb: "w", Col: 23},
				Kind:  PipeJSON, Col: 20,
			},
		}}},
		{"a:x | awk '{print $1}'", Pipe{
			Left:  Step{Selector: "a", SelectorCol: 1, Verb: "x", Col: 1},
			Right: Local{Argv: []string{"awk", "{print $1}"}, Col: 7},
			Kind:  PipeText, Col: 5,
		}},
	}
	for _, tt := range tests {
		got, err := ParseComposition(tt.in)
		if err != nil {
			t.Errorf("ParseComposition(%q): %v", tt.in, err)
			continue
		}
		if diff := cmp.Diff(tt.want, got); diff != "" {
			t.Errorf("ParseComposition(%q) (-want +got):\n%s", tt.in, diff)
		}
		again, err := ParseComposition(got.String())
		if err != nil {
			t.Errorf("ParseComposition(%q).String() = %q does not parse: %v", tt.in, got, err)
			continue
		}
		if diff := cmp.Diff(stripCols(got), stripCols(again)); diff != "" {
			t.Errorf("ParseComposition(%q) does not round-trip through %q (-first +again):\n%s", tt.in, got, diff)
		}
	}
}

func TestCompositionStringIsCanonical(t *testing.T) {
	tests := []struct{ in, want string }{
		{"rn1:status->rn2:gauge list", "rn1:status -> rn2:gauge list"},
		{"all:info|grep -c linux", "all:info | grep -c linux"},
		{"[3.12:ping,3.13:ping]", "[3.12:ping, 3.13:ping]"},
		{"[ 3.12:ping ,3.13:ping ]->all:gauge  cpu", "[3.12:ping, 3.13:ping] -> all:gauge cpu"},
		{"@health", "@health"},
		{"[[a:x]]", "[[a:x]]"},
		{`tag="role:camera":status`, "'tag=role:camera':status"},
		{`"caps=gpu,ai":status`, "caps=gpu,ai:status"},
		{`"rn1|rn2":status`, "rn1|rn2:status"},
		{`"@m":x`, "'@m':x"},
		{`"|a":x`, "'|a':x"},
		{`",a":x`, "',a':x"},
		{`"a->b":x`, "'a->b':x"},
		{`"a b":x`, "'a b':x"},
		{`"a[b":x`, "'a[b':x"},
		{`"it's":x`, `"it's":x`},
		{`a:x "it's"`, `a:x "it's"`},
		{`a:x 'say "hi"'`, `a:x 'say "hi"'`},
		{`a:x "it's "'"x"'`, `a:x 'it'"'"'s "x"'`},
		{`a:x "'"`, `a:x "'"`},
		{`a:x "'"'"'`, `a:x "'"'"'`},
		{`a:x '' ""`, `a:x '' ''`},
		{`a:x "b,c" "d]" "e|f" "g->h" "[i" 'j k'`, `a:x 'b,c' 'd]' 'e|f' 'g->h' '[i' 'j k'`},
		{`a:x k:v @y h- a-b x>y`, `a:x k:v @y h- a-b x>y`},
		{"a:x | awk '{print $1}'", "a:x | awk '{print $1}'"},
		{"a:x|sort|uniq -c", "a:x | sort | uniq -c"},
	}
	for _, tt := range tests {
		e, err := ParseComposition(tt.in)
		if err != nil {
			t.Errorf("ParseComposition(%q): %v", tt.in, err)
			continue
		}
		if got := e.String(); got != tt.want {
			t.Errorf("ParseComposition(%q).String() = %s, want %s", tt.in, got, tt.want)
		}
	}
}

func TestParseCompositionReportsColumn(t *testing.T) {
	tooMany := "a:x" + strings.Repeat(" -> a:x", MaxComposeSteps)
	tooManyLocals := "a:x" + strings.Repeat(" | wc", MaxComposeSteps)
	tests := []struct {
		in  string
		col int
		msg string
	}{
		{"rn1:status -> rn2:", 19, "expected verb after ':'"},
		{"", 1, "expected a step, '@macro' or '[', found end of input"},
		{"   ", 4, "expected a step, '@macro' or '[', found end of input"},
		{"rn1 status", 4, `expected ':' after node reference "rn1"`},
		{"rn1", 4, `expected ':' after node reference "rn1"`},
		{"grep -c linux", 5, `expected ':' after node reference "grep"`},
		{"a[b:x", 2, `expected ':' after node reference "a"`},
		{"a]:x", 2, `expected ':' after node reference "a"`},
		{"web->b:x", 4, `expected ':' after node reference "web"`},
		{":status", 1, "empty node reference before ':'"},
		{"'':status", 1, "empty node reference before ':'"},
		{"rn1:Status", 5, `expected verb after ':', found "Status"`},
		{"rn1: status", 5, `expected verb after ':', found " "`},
		{"rn1::x", 5, `expected verb after ':', found ":x"`},
		{"rn1:1x", 5, `expected verb after ':', found "1x"`},
		{"rn1:->b:x", 5, `expected verb after ':', found "->"`},
		{"rn1:sta$us", 8, `invalid character '$' in verb "sta"`},
		{"rn1:status:x", 11, `invalid character ':' in verb "status"`},
		{"rn1:x'y'", 6, `invalid character '\'' in verb "x"`},
		{"a:" + strings.Repeat("v", 65), 3, `verb "` + strings.Repeat("v", 64) + `…" longer than 64 bytes`},
		{"a:x -> ", 8, "expected a step, '@macro' or '[', found end of input"},
		{"-> a:x", 1, `expected a step, '@macro' or '[', found "->"`},
		{"| a:x", 1, `expected a step, '@macro' or '[', found "|"`},
		{"a:x -> | b", 8, `expected a step, '@macro' or '[', found "|"`},
		{"a:x |", 6, "expected a command after '|', found end of input"},
		{"a:x | | b", 7, `expected a command after '|', found "|"`},
		{"a:x |->b:y", 6, `expected a command after '|', found "->"`},
		{"a:x, b:y", 4, "',' outside a fork (quote it to pass it in a word)"},
		{"a:gauge cpu,mem", 12, "',' outside a fork (quote it to pass it in a word)"},
		{"a:x]", 4, "']' without a matching '['"},
		{"a:x y]", 6, "']' without a matching '['"},
		{"a:x | grep ]", 12, "']' without a matching '['"},
		{"[a:x", 5, "missing ']' to close the '[' at column 1"},
		{"a:x -> [b:y, [c:z]", 19, "missing ']' to close the '[' at column 8"},
		{"[]", 1, "empty fork"},
		{"a:x -> [ ]", 8, "empty fork"},
		{"[a:x,]", 6, `expected a step, '@macro' or '[', found "]"`},
		{"[,a:x]", 2, `expected a step, '@macro' or '[', found ","`},
		{"[@m a:x]", 5, `expected '->', '|', ',' or ']', found "a:x"`},
		{"[a:x] y", 7, `expected '->', '|' or end of input, found "y"`},
		{"@m x", 4, `expected '->', '|' or end of input, found "x"`},
		{"@m [a:x]", 4, `expected '->', '|' or end of input, found "[a:x"`},
		{"@", 2, "expected a macro name after '@', found end of input"},
		{"@ m", 2, `expected a macro name after '@', found " "`},
		{"@1x", 2, `expected a macro name after '@', found "1x"`},
		{"@m!", 3, `invalid character '!' in macro name "m"`},
		{"@m:x", 3, `invalid character ':' in macro name "m"`},
		{"@" + strings.Repeat("m", 65), 2, `macro name "` + strings.Repeat("m", 64) + `…" longer than 64 bytes`},
		{"a:x 'oops", 5, "unterminated ' quote"},
		{`"a:x`, 1, `unterminated " quote`},
		{`a:x | echo "it's`, 12, `unterminated " quote`},
		{strings.Repeat(" ", MaxComposeLen+1), 1, "input is 8193 bytes, limit 8192"},
		{strings.Repeat("[", MaxComposeDepth+1) + "a:x" + strings.Repeat("]", MaxComposeDepth+1), MaxComposeDepth + 1, "forks nested deeper than 16"},
		{tooMany, strings.LastIndex(tooMany, "a:x") + 1, "more than 256 steps"},
		{tooManyLocals, strings.LastIndex(tooManyLocals, "wc") + 1, "more than 256 steps"},
	}
	for _, tt := range tests {
		_, err := ParseComposition(tt.in)
		if err == nil {
			t.Errorf("ParseComposition(%q) succeeded, want column %d: %s", tt.in, tt.col, tt.msg)
			continue
		}
		if !errors.Is(err, ErrCompose) {
			t.Errorf("ParseComposition(%q) = %v, does not wrap ErrCompose", tt.in, err)
		}
		var ce *ComposeError
		if !errors.As(err, &ce) {
			t.Errorf("ParseComposition(%q) = %T, want *ComposeError", tt.in, err)
			continue
		}
		if ce.Col != tt.col || ce.Msg != tt.msg || ce.Input != tt.in {
			t.Errorf("ParseComposition(%q) = column %d: %s; want column %d: %s", tt.in, ce.Col, ce.Msg, tt.col, tt.msg)
		}
	}
}

func TestParseCompositionAcceptsLimits(t *testing.T) {
	deep := strings.Repeat("[", MaxComposeDepth) + "a:x" + strings.Repeat("]", MaxComposeDepth)
	steps := "a:x" + strings.Repeat(" -> a:x", MaxComposeSteps-1)
	long := "a:x " + strings.Repeat("y", MaxComposeLen-4)
	for _, in := range []string{deep, steps, long} {
		if _, err := ParseComposition(in); err != nil {
			t.Errorf("ParseComposition(%.40q…): %v", in, err)
		}
	}
}

func TestComposeErrorMessage(t *testing.T) {
	_, err := ParseComposition("rn1:status -> rn2: list")
	want := "compose: column 19: expected verb after ':', found \" \""
	if err == nil || err.Error() != want {
		t.Fatalf("error = %v, want %s", err, want)
	}
}

func TestComposeErrorCaret(t *testing.T) {
	tests := []struct {
		name string
		err  ComposeError
		want string
	}{
		{"end of input", ComposeError{Col: 19, Input: "rn1:status -> rn2:"},
			"rn1:status -> rn2:\n                  ^"},
		{"first column", ComposeError{Col: 1, Input: ":x"},
			":x\n^"},
		{"empty input", ComposeError{Col: 1, Input: ""},
			"\n^"},
		{"control bytes", ComposeError{Col: 5, Input: "a:x\t|\n"},
			"a:x | \n    ^"},
		{"multi-byte runes count once", ComposeError{Col: 8, Input: "ñé:x -> "},
			"ñé:x -> \n     ^"},
		{"invalid UTF-8", ComposeError{Col: 3, Input: "\xff:"},
			"?:\n  ^"},
		{"column out of range", ComposeError{Col: 99, Input: "ab"},
			"ab\n  ^"},
		{"long input, column near the start", ComposeError{Col: 3, Input: strings.Repeat("x", 100)},
			strings.Repeat("x", 72) + "…\n  ^"},
		{"long input, column in the middle", ComposeError{Col: 51, Input: strings.Repeat("x", 50) + "!" + strings.Repeat("y", 49)},
			"…" + strings.Repeat("x", 36) + "!" + strings.Repeat("y", 35) + "…\n" + strings.Repeat(" ", 37) + "^"},
		{"long input, column at the end", ComposeError{Col: 101, Input: strings.Repeat("x", 100)},
			"…" + strings.Repeat("x", 72) + "\n" + strings.Repeat(" ", 73) + "^"},
	}
	for _, tt := range tests {
		if got := tt.err.Caret(); got != tt.want {
			t.Errorf("%s: Caret() =\n%s\nwant\n%s", tt.name, got, tt.want)
		}
	}
}

func TestPipeKindString(t *testing.T) {
	for k, want := range map[PipeKind]string{PipeJSON: "->", PipeText: "|", 0: "PipeKind(0)"} {
		if got := k.String(); got != want {
			t.Errorf("PipeKind(%d).String() = %q, want %q", k, got, want)
		}
	}
}

func FuzzParseComposition(f *testing.F) {
	for _, s := range []string{
		"rn1:status -> rn2:gauge list", "all:info | grep -c linux", "[3.12:ping, 3.13:ping]",
		"[3.12:ping, 3.13:ping] -> all:gauge cpu", "@health", "@health -> rn2:gauge",
		`'tag=role:camera':status`, `a:exec "it's "'"x"'`, "caps=gpu,ai:status", "a:x-->b:y",
		"[ [a:x, b:y] -> c:z , @m ]", "a:x | jq . -> b:y", "a:x, b:y", "rn1:status -> rn2:", "[a:x",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		e, err := ParseComposition(s)
		if err != nil {
			var ce *ComposeError
			if !errors.As(err, &ce) || !errors.Is(err, ErrCompose) {
				t.Fatalf("ParseComposition(%q) = %v (%T), want a *ComposeError wrapping ErrCompose", s, err, err)
			}
			if ce.Col < 1 || ce.Col > len(s)+1 {
				t.Fatalf("ParseComposition(%q): column %d outside 1..%d", s, ce.Col, len(s)+1)
			}
			_ = ce.Caret()
			return
		}
		checkCols(t, s, e)
		out := e.String()
		if len(out) > MaxComposeLen {
			// Canonical spacing and quoting can make a composition near the
			// limit longer than the limit; nothing to compare then.
			return
		}
		again, err := ParseComposition(out)
		if err != nil {
			t.Fatalf("ParseComposition(%q) formats as %q, which does not parse: %v", s, out, err)
		}
		if a, b := stripCols(e), stripCols(again); !reflect.DeepEqual(a, b) { // cheaper than cmp when fuzzing
			t.Fatalf("ParseComposition(%q) → %q → different tree (-first +again):\n%s", s, out, cmp.Diff(a, b))
		}
		if again.String() != out {
			t.Fatalf("String is not stable: %q → %q", out, again.String())
		}
	})
}

package subjects

import (
	"errors"
	"reflect"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

// selectorCmp lets cmp compare selectors field by field.
func selectorCmp() cmp.Option { return cmp.AllowUnexported(Selector{}, term{}, Chevron{}) }

func mustSelector(t testing.TB, s string) Selector {
	t.Helper()
	sel, err := ParseSelector(s)
	if err != nil {
		t.Fatalf("ParseSelector(%q): %v", s, err)
	}
	return sel
}

func TestParseSelectorCanonicalForm(t *testing.T) {
	tests := []struct{ in, want string }{
		{"all", "all"},
		{"1", "1"},
		{"3.12", "3.12"},
		{"3.12.7.1", "3.12.7.1"},
		{"rn2", "rn2"},
		{"web-01", "web-01"},
		{"rn3.12.7.1", "rn3.12.7.1"}, // default names of full chevrons carry dots
		{"Web_01", "Web_01"},
		{"ALL", "ALL"}, // a name: only lower-case "all" is the keyword
		{"caps=gpu", "caps=gpu"},
		{"caps=gpu,ai", "caps=ai,gpu"},
		{"caps=gpu,ai,gpu", "caps=ai,gpu"},
		{"caps=gpu,caps=ai", "caps=ai,gpu"},
		{"caps=gpu,rn2", "caps=gpu,rn2"}, // a bare word after caps is a capability
		{"caps=gpu,all", "caps=all,gpu"},
		{"caps=gpu,3.12", "3.12,caps=gpu"},         // a chevron ends the list
		{"caps=gpu,3.12,rn2", "3.12,rn2,caps=gpu"}, // and rn2 after it is a name
		{"rn2,caps=gpu", "rn2,caps=gpu"},
		{"caps=gpu,load<0.5", "load<0.5,caps=gpu"},
		{"caps=gpu,load<0.5|tag=role:camera", "load<0.5,caps=gpu|tag=role:camera"},
		{"caps=a.b,c-d", "caps=a.b,c-d"},
		{"tag=role:camera", "tag=role:camera"},
		{"tag=edge", "tag=edge"},
		{"tag=url:http://x/y@z+1=2", "tag=url:http://x/y@z+1=2"},
		{"tag=k:v:w", "tag=k:v:w"},
		{"os=linux", "os=linux"},
		{"os=Linux", "os=Linux"},
		{"trust>=2", "trust>=2"},
		{"trust>0", "trust>0"},
		{"trust<=3", "trust<=3"},
		{"trust<1", "trust<1"},
		{"trust=0", "trust=0"},
		{"load<0.5", "load<0.5"},
		{"load<=.50", "load<=0.5"},
		{"load>2.", "load>2"},
		{"load>=007", "load>=7"},
		{"load=0", "load=0"},
		{"load<0.30000000000000004441", "load<0.30000000000000004"},
		{"3.12,caps=gpu", "3.12,caps=gpu"},
		{"caps=gpu,3.12", "3.12,caps=gpu"},
		{"os=linux,3.12,trust>=2,rn2", "3.12,rn2,os=linux,trust>=2"},
		{"3.13,3.12", "3.12,3.13"},
		{"rn2,rn2", "rn2"},
		{"all,3.12", "3.12"},
		{"3.12,all", "3.12"},
		{"all,all", "all"},
		{"3.12|all", "all"},
		{"rn1|rn2|rn1", "rn1|rn2"},
		{"rn2|rn1", "rn2|rn1"}, // alternatives keep their order
		{"a,b|c", "a,b|c"},
		{" 3.12 , caps=gpu\t| rn2 ", "3.12,caps=gpu|rn2"},
	}
	for _, tt := range tests {
		sel := mustSelector(t, tt.in)
		if got := sel.String(); got != tt.want {
			t.Errorf("ParseSelector(%q).String() = %q, want %q", tt.in, got, tt.want)
			continue
		}
		again := mustSelector(t, sel.String())
		if diff := cmp.Diff(sel, again, selectorCmp()); diff != "" {
			t.Errorf("ParseSelector(%q) does not round-trip through %q (-first +again):\n%s", tt.in, sel, diff)
		}
	}
}

func TestParseSelectorRejectsBadInput(t *testing.T) {
	long := strings.Repeat("a", MaxSelectorLen+1)
	terms := strings.Repeat("a,", MaxSelectorTerms) + "a"
	tests := []struct{ in, want string }{
		{"", `invalid selector "": empty`},
		{" \t", `invalid selector " \t": empty`},
		{long, `invalid selector "` + long[:64] + `…": 4097 bytes, limit 4096`},
		{terms, `invalid selector "` + terms[:64] + `…": more than 64 terms`},
		{"caps=,x", `invalid selector "caps=,x": term 1 (column 1) "caps=": empty capability`},
		{"caps=gpu,,ai", `invalid selector "caps=gpu,,ai": term 2 (column 10) "": empty term`},
		{"a,", `invalid selector "a,": term 2 (column 3) "": empty term`},
		{"|a", `invalid selector "|a": term 1 (column 1) "": empty term`},
		{"a| ", `invalid selector "a| ": term 2 (column 4) "": empty term`},
		{"3.x", `invalid selector "3.x": term 1 (column 1) "3.x": invalid chevron "3.x": token 2: "x" is not a decimal number`},
		{"rn1, 0", `invalid selector "rn1, 0": term 2 (column 6) "0": invalid chevron "0": token 1: "0": zero or leading zero`},
		{"caps=gpu,1.2.3.4.5", `invalid selector "caps=gpu,1.2.3.4.5": term 2 (column 10) "1.2.3.4.5": invalid chevron "1.2.3.4.5": more than 4 tokens`},
		{"rn 2", `invalid selector "rn 2": term 1 (column 1) "rn 2": node name: "rn 2": byte 3 ' ' not allowed`},
		{"web/01", `invalid selector "web/01": term 1 (column 1) "web/01": node name: "web/01": byte 4 '/' not allowed`},
		{"_x", `invalid selector "_x": term 1 (column 1) "_x": node name: "_x" does not start with a letter`},
		{strings.Repeat("n", 65), `invalid selector "` + strings.Repeat("n", 64) + `…": term 1 (column 1) "` + strings.Repeat("n", 64) + `…": node name: "` + strings.Repeat("n", 64) + `…" longer than 64 bytes`},
		{"cap=gpu", `invalid selector "cap=gpu": term 1 (column 1) "cap=gpu": unknown filter "cap" (want caps, tag, os, trust or load)`},
		{"=gpu", `invalid selector "=gpu": term 1 (column 1) "=gpu": missing filter name before the operator`},
		{"caps<gpu", `invalid selector "caps<gpu": term 1 (column 1) "caps<gpu": caps takes '=', not "<"`},
		{"os>=linux", `invalid selector "os>=linux": term 1 (column 1) "os>=linux": os takes '=', not ">="`},
		{"tag<x", `invalid selector "tag<x": term 1 (column 1) "tag<x": tag takes '=', not "<"`},
		{"caps=gpu,a$", `invalid selector "caps=gpu,a$": term 2 (column 10) "a$": capability: "a$": byte 2 '$' not allowed`},
		{"caps=9x", `invalid selector "caps=9x": term 1 (column 1) "caps=9x": capability: "9x" does not start with a letter`},
		{"tag=", `invalid selector "tag=": term 1 (column 1) "tag=": empty tag key`},
		{"tag=:v", `invalid selector "tag=:v": term 1 (column 1) "tag=:v": empty tag key`},
		{"tag=role:", `invalid selector "tag=role:": term 1 (column 1) "tag=role:": empty value for tag "role" (write tag=role for any value)`},
		{"tag=role:a b", `invalid selector "tag=role:a b": term 1 (column 1) "tag=role:a b": tag value: "a b": byte 2 ' ' not allowed`},
		{"tag=r*:x", `invalid selector "tag=r*:x": term 1 (column 1) "tag=r*:x": tag key: "r*": byte 2 '*' not allowed`},
		{"os=", `invalid selector "os=": term 1 (column 1) "os=": empty os`},
		{"os=li/nux", `invalid selector "os=li/nux": term 1 (column 1) "os=li/nux": os: "li/nux": byte 3 '/' not allowed`},
		{"trust>=4", `invalid selector "trust>=4": term 1 (column 1) "trust>=4": trust tier "4": want an integer 0..3`},
		{"trust==2", `invalid selector "trust==2": term 1 (column 1) "trust==2": trust tier "=2": want an integer 0..3`},
		{"trust>=", `invalid selector "trust>=": term 1 (column 1) "trust>=": trust tier "": want an integer 0..3`},
		{"trust!=2", `invalid selector "trust!=2": term 1 (column 1) "trust!=2": operator "!=" not supported (want >=, >, <=, < or =)`},
		{"trust>=-1", `invalid selector "trust>=-1": term 1 (column 1) "trust>=-1": trust tier "-1": want an integer 0..3`},
		{"load<", `invalid selector "load<": term 1 (column 1) "load<": load "": want a decimal number such as 0.5`},
		{"load<.", `invalid selector "load<.": term 1 (column 1) "load<.": load ".": want a decimal number such as 0.5`},
		{"load<1e3", `invalid selector "load<1e3": term 1 (column 1) "load<1e3": load "1e3": want a decimal number such as 0.5`},
		{"load<-1", `invalid selector "load<-1": term 1 (column 1) "load<-1": load "-1": want a decimal number such as 0.5`},
		{"load<NaN", `invalid selector "load<NaN": term 1 (column 1) "load<NaN": load "NaN": want a decimal number such as 0.5`},
		{"load<1.2.3", `invalid selector "load<1.2.3": term 1 (column 1) "load<1.2.3": load "1.2.3": want a decimal number such as 0.5`},
		{"load<1" + strings.Repeat("0", 400), `invalid selector "load<1` + strings.Repeat("0", 58) + `…": term 1 (column 1) "load<1` + strings.Repeat("0", 58) + `…": load "1` + strings.Repeat("0", 63) + `…": out of range`},
		{"3.12,caps=gpu|rn2, os=", `invalid selector "3.12,caps=gpu|rn2, os=": term 4 (column 20) "os=": empty os`},
	}
	for _, tt := range tests {
		_, err := ParseSelector(tt.in)
		if err == nil {
			t.Errorf("ParseSelector(%q) succeeded, want %s", tt.in, tt.want)
			continue
		}
		if !errors.Is(err, ErrSelector) {
			t.Errorf("ParseSelector(%q) = %v, does not wrap ErrSelector", tt.in, err)
		}
		if got := err.Error(); got != tt.want {
			t.Errorf("ParseSelector(%q) error\n got: %s\nwant: %s", tt.in, got, tt.want)
		}
	}
}

func TestParseSelectorChevronErrorWrapsErrChevron(t *testing.T) {
	_, err := ParseSelector("rn1,3.0")
	if !errors.Is(err, ErrSelector) || !errors.Is(err, ErrChevron) {
		t.Fatalf("ParseSelector(\"rn1,3.0\") = %v, want ErrSelector and ErrChevron", err)
	}
}

func TestParseSelectorAcceptsLimits(t *testing.T) {
	terms := strings.Repeat("a,", MaxSelectorTerms-1) + "a"
	if _, err := ParseSelector(terms); err != nil {
		t.Errorf("%d terms: %v", MaxSelectorTerms, err)
	}
	caps := "caps=" + strings.Repeat("abcdefg,", MaxSelectorTerms-1) + "x"
	caps += strings.Repeat(" ", MaxSelectorLen-len(caps))
	if _, err := ParseSelector(caps); err != nil {
		t.Errorf("%d bytes: %v", len(caps), err)
	}
	if _, err := ParseSelector(strings.Repeat("n", 64)); err != nil {
		t.Errorf("64-byte name: %v", err)
	}
	if _, err := ParseSelector("tag=k:" + strings.Repeat("v", 256)); err != nil {
		t.Errorf("256-byte tag value: %v", err)
	}
}

// fixedTargets returns the nodes the match tests and the fuzz target use:
// camera, gpu, laptop and blank.
func fixedTargets() []Target {
	return []Target{
		{
			Chevron: Chevron{toks: [MaxTokens]uint16{3, 12, 7, 1}, n: 4},
			Name:    "rn1",
			Caps:    []string{"camera", "ai"},
			Tags:    map[string]string{"role": "camera", "edge": ""},
			OS:      "linux",
			Load:    0.25,
			Trust:   2,
		},
		{
			Chevron: Chevron{toks: [MaxTokens]uint16{3, 13, 1}, n: 3},
			Name:    "rn2",
			Caps:    []string{"gpu", "ai"},
			Tags:    map[string]string{"role": "trainer"},
			OS:      "linux",
			Load:    0.75,
			Trust:   3,
		},
		{
			Chevron: Chevron{toks: [MaxTokens]uint16{1}, n: 1},
			Name:    "web-01",
			OS:      "darwin",
			Load:    0.5,
			Trust:   0,
		},
		{},
	}
}

func TestSelectorMatch(t *testing.T) {
	names := []string{"camera", "gpu", "laptop", "blank"}
	targets := fixedTargets()
	tests := []struct {
		sel  string
		want string // the names of targets that match, in the order above
	}{
		{"all", "camera gpu laptop blank"},
		{"3", "camera gpu"},
		{"3.12", "camera"},
		{"3.12.7.1", "camera"},
		{"3.12.7", "camera"},
		{"3.13.1", "gpu"},
		{"3.1", ""},
		{"1", "laptop"},
		{"rn1", "camera"},
		{"web-01", "laptop"},
		{"RN1", ""},
		{"caps=ai", "camera gpu"},
		{"caps=gpu,ai", "gpu"},
		{"caps=camera,gpu", ""},
		{"caps=AI", ""},
		{"tag=role", "camera gpu"},
		{"tag=edge", "camera"},
		{"tag=edge:x", ""},
		{"tag=role:camera", "camera"},
		{"tag=role:trainer", "gpu"},
		{"os=linux", "camera gpu"},
		{"os=darwin", "laptop"},
		{"os=Linux", ""},
		{"trust=0", "laptop blank"},
		{"trust=2", "camera"},
		{"trust>=2", "camera gpu"},
		{"trust>2", "gpu"},
		{"trust<=2", "camera laptop blank"},
		{"trust<2", "laptop blank"},
		{"load=0.5", "laptop"},
		{"load<0.5", "camera blank"},
		{"load<=0.5", "camera laptop blank"},
		{"load>0.5", "gpu"},
		{"load>=0.5", "gpu laptop"},
		{"3,trust>=2,load<0.5", "camera"},
		{"caps=ai,os=linux", "camera gpu"},
		{"caps=ai,load<0.5|os=darwin", "camera laptop"},
		{"os=darwin|caps=ai,load<0.5", "camera laptop"},
		{"rn1|rn2", "camera gpu"},
		{"rn1,rn2", ""},
		{"3.12,caps=gpu", ""},
		{"3,caps=gpu", "gpu"},
		{"all,os=linux", "camera gpu"},
		{"tag=role,trust<3|1", "camera laptop"},
	}
	for _, tt := range tests {
		sel := mustSelector(t, tt.sel)
		var got []string
		for i, x := range targets {
			if sel.Match(x) {
				got = append(got, names[i])
			}
		}
		if g := strings.Join(got, " "); g != tt.want {
			t.Errorf("%q matches %q, want %q", tt.sel, g, tt.want)
		}
	}
}

func TestZeroSelectorMatchesNothing(t *testing.T) {
	var s Selector
	for _, x := range fixedTargets() {
		if s.Match(x) {
			t.Errorf("zero Selector matched %+v", x)
		}
	}
	if s.IsAll() {
		t.Error("zero Selector IsAll")
	}
	if _, ok := s.Prefix(); ok {
		t.Error("zero Selector has a Prefix")
	}
	if s.String() != "" {
		t.Errorf("zero Selector formats as %q", s.String())
	}
}

func TestSelectorPrefix(t *testing.T) {
	tests := []struct {
		sel    string
		prefix string
		ok     bool
		all    bool
	}{
		{"all", "", true, true},
		{"all,all", "", true, true},
		{"rn1|all", "", true, true},
		{"3.12", "3.12", true, false},
		{"3.12.7.1", "3.12.7.1", true, false},
		{"all,3.12", "3.12", true, false},
		{"3.12|3.12", "3.12", true, false},
		{"3.12,3.12", "3.12", true, false},
		{"3.12|3.13", "", false, false},
		{"3.12,caps=gpu", "", false, false},
		{"3.12,3.13", "", false, false},
		{"rn1", "", false, false},
		{"os=linux", "", false, false},
	}
	for _, tt := range tests {
		sel := mustSelector(t, tt.sel)
		p, ok := sel.Prefix()
		if ok != tt.ok || p.String() != tt.prefix {
			t.Errorf("%q.Prefix() = %q, %v; want %q, %v", tt.sel, p, ok, tt.prefix, tt.ok)
		}
		if got := sel.IsAll(); got != tt.all {
			t.Errorf("%q.IsAll() = %v, want %v", tt.sel, got, tt.all)
		}
	}
}

func FuzzParseSelector(f *testing.F) {
	for _, s := range []string{
		"all", "3.12", "3.12.7.1", "rn2", "web-01", "caps=gpu,ai", "tag=role:camera", "tag=edge",
		"os=linux", "trust>=2", "load<0.5", "caps=gpu,load<0.5|tag=role:camera", "3.12,caps=gpu",
		"a,b|c", "caps=gpu,rn2,3.1,x", " 3.12 ,all| x", "load>=.5", "caps=,x", "trust!=2", "1.2.3.4.5",
	} {
		f.Add(s)
	}
	targets := fixedTargets()
	f.Fuzz(func(t *testing.T, s string) {
		sel, err := ParseSelector(s)
		if err != nil {
			if !errors.Is(err, ErrSelector) {
				t.Fatalf("ParseSelector(%q) = %v, does not wrap ErrSelector", s, err)
			}
			return
		}
		out := sel.String()
		again, err := ParseSelector(out)
		if err != nil {
			t.Fatalf("ParseSelector(%q) formats as %q, which does not parse: %v", s, out, err)
		}
		if !reflect.DeepEqual(sel, again) { // cheaper than cmp on the fuzzing hot path
			t.Fatalf("ParseSelector(%q) → %q → different selector (-first +again):\n%s", s, out, cmp.Diff(sel, again, selectorCmp()))
		}
		if again.String() != out {
			t.Fatalf("String is not stable: %q → %q", out, again.String())
		}
		for _, x := range targets {
			if sel.Match(x) != again.Match(x) {
				t.Fatalf("%q and %q disagree on %+v", s, out, x)
			}
		}
		if p, ok := sel.Prefix(); ok && !sel.IsAll() {
			for _, x := range targets {
				if sel.Match(x) != x.Chevron.HasPrefix(p) {
					t.Fatalf("%q.Prefix() = %q but Match(%v) = %v", s, p, x.Chevron, sel.Match(x))
				}
			}
		}
		if sel.IsAll() {
			for _, x := range targets {
				if !sel.Match(x) {
					t.Fatalf("%q IsAll but does not match %+v", s, x)
				}
			}
		}
	})
}

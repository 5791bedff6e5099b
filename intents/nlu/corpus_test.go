package nlu

import (
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

func TestExpandTextSyntax(t *testing.T) {
	t.Parallel()
	syn := "# comment\n@verb = show | display [me]\n@two = @verb | list\n"
	cases := []struct {
		template string
		want     []string
	}{
		{"ping NODES", []string{"ping NODES"}},
		{"(ping|poke) NODES", []string{"ping NODES", "poke NODES"}},
		{"ping [the] NODES", []string{"ping the NODES", "ping NODES"}},
		{"@verb NODES", []string{"show NODES", "display me NODES", "display NODES"}},
		{"@two x", []string{"show x", "display me x", "display x", "list x"}},
		{"(a|b)(c|d)", []string{"ac", "ad", "bc", "bd"}},
		{"((a|b) c|d)", []string{"a c", "b c", "d"}},
		{"  spaced   out  [x]  ", []string{"spaced out x", "spaced out"}},
	}
	for _, c := range cases {
		corp, err := ExpandText(syn, "> ping\n"+c.template+"\n")
		if err != nil {
			t.Errorf("%q: %v", c.template, err)
			continue
		}
		var got []string
		for _, e := range corp.Examples {
			got = append(got, e.Text)
		}
		if diff := cmp.Diff(c.want, got); diff != "" {
			t.Errorf("%q (-want +got):\n%s", c.template, diff)
		}
	}
}

func TestExpandTextRejectsBadInput(t *testing.T) {
	t.Parallel()
	cases := []struct{ syn, corpus string }{
		{"", "ping NODES\n"},                   // before a label
		{"", "> pong\nping NODES\n"},           // unknown label
		{"", "> ping\n(ping NODES\n"},          // unbalanced
		{"", "> ping\nping] NODES\n"},          // unbalanced
		{"", "> ping\n@nope NODES\n"},          // unknown synonym
		{"", "> ping\n@ NODES\n"},              // @ without a name
		{"@a = @b\n@b = @a\n", "> ping\n@a\n"}, // cycle
		{"@a = x\n@a = y\n", "> ping\nx\n"},    // defined twice
		{"a = x\n", "> ping\nx\n"},             // no @
	}
	for _, c := range cases {
		if _, err := ExpandText(c.syn, c.corpus); !errors.Is(err, ErrCorpus) {
			t.Errorf("ExpandText(%q, %q) = %v, want ErrCorpus", c.syn, c.corpus, err)
		}
	}
}

func TestExpandCapsAndIsDeterministic(t *testing.T) {
	t.Parallel()
	syn := "@d = 0|1|2|3|4|5|6|7|8|9\n"
	corpus := "> ping\n@d @d @d\n"
	a, err := ExpandText(syn, corpus)
	if err != nil {
		t.Fatal(err)
	}
	b, err := ExpandText(syn, corpus)
	if err != nil {
		t.Fatal(err)
	}
	if len(a.Examples) != MaxPerTemplate {
		t.Errorf("%d expansions of a 1000-way template, want %d", len(a.Examples), MaxPerTemplate)
	}
	if diff := cmp.Diff(a, b); diff != "" {
		t.Errorf("two expansions differ (-first +second):\n%s", diff)
	}
}

// TestCorpusIsSound checks the shipped data: every label has at least 25
// templates, about a fifth of the templates are held out, and no masked text
// is given two labels.
func TestCorpusIsSound(t *testing.T) {
	t.Parallel()
	c, err := Expand()
	if err != nil {
		t.Fatal(err)
	}
	perLabel := map[string]int{}
	held := 0
	for _, tm := range c.Templates {
		perLabel[tm.Label]++
		if tm.HeldOut {
			held++
		}
	}
	var counts []string
	for _, l := range Labels() {
		counts = append(counts, fmt.Sprintf("%s %d", l, perLabel[l]))
		if perLabel[l] < 25 {
			t.Errorf("label %s has %d templates, want at least 25", l, perLabel[l])
		}
	}
	t.Logf("%d templates (%d held out), %d examples; per label: %s", len(c.Templates), held, len(c.Examples), strings.Join(counts, ", "))
	if share := float64(held) / float64(len(c.Templates)); share < 0.15 || share > 0.25 {
		t.Errorf("%.0f%% of templates held out, want about 20%%", 100*share)
	}
	labelOf := map[string]string{}
	var conflicts []string
	for _, e := range c.Examples {
		if l, ok := labelOf[e.Text]; ok && l != e.Label {
			conflicts = append(conflicts, fmt.Sprintf("%q: %s and %s", e.Text, l, e.Label))
		}
		labelOf[e.Text] = e.Label
	}
	slices.Sort(conflicts)
	conflicts = slices.Compact(conflicts)
	if len(conflicts) > 0 {
		t.Errorf("%d texts with two labels:\n%s", len(conflicts), strings.Join(conflicts, "\n"))
	}
}

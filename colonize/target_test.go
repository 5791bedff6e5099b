package colonize

import (
	"errors"
	"sort"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

func TestParseTargetAcceptsUserHostPortAndIPv6(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want Target
	}{
		{"pi@10.0.0.7:2222", Target{User: "pi", Host: "10.0.0.7", Port: 2222}},
		{"10.0.0.7", Target{Host: "10.0.0.7"}},
		{"robot-1", Target{Host: "robot-1"}},
		{"root@robot-1", Target{User: "root", Host: "robot-1"}},
		{"[::1]:22", Target{Host: "::1", Port: 22}},
		{"me@[fe80::1%eth0]:2200", Target{User: "me", Host: "fe80::1%eth0", Port: 2200}},
		{"::1", Target{Host: "::1"}},
		{"[::1]", Target{Host: "::1"}},
		{"a@b@host", Target{User: "a@b", Host: "host"}},
	} {
		got, err := ParseTarget(tc.in)
		if err != nil {
			t.Errorf("ParseTarget(%q): %v", tc.in, err)
			continue
		}
		if diff := cmp.Diff(tc.want, got); diff != "" {
			t.Errorf("ParseTarget(%q) (-want +got):\n%s", tc.in, diff)
		}
	}
}

func TestParseTargetErrorsNameTheBadValue(t *testing.T) {
	for _, tc := range []struct{ in, mention string }{
		{"", "empty"},
		{"@host", "empty user"},
		{"pi@", "empty host"},
		{"host:", "empty port"},
		{"host:0", `"0"`},
		{"host:65536", `"65536"`},
		{"host:22x", `"22x"`},
		{"host:022", `"022"`},
		{"[::1", "missing ']'"},
		{"[::1]x", `"x"`},
		{"[host]:22", `"host"`},
		{"a:b:c", `"a:b:c"`},
		{"ho st", "space"},
		{"-oProxyCommand=x", "starts with '-'"},
		{"a/b", "'/'"},
	} {
		_, err := ParseTarget(tc.in)
		if err == nil {
			t.Errorf("ParseTarget(%q) = nil error, want one mentioning %s", tc.in, tc.mention)
			continue
		}
		if !errors.Is(err, ErrTarget) || !strings.Contains(err.Error(), tc.mention) {
			t.Errorf("ParseTarget(%q) = %v, want ErrTarget mentioning %s", tc.in, err, tc.mention)
		}
	}
}

func TestTargetStringIsTheTargetAsGiven(t *testing.T) {
	for _, in := range []string{"pi@10.0.0.7:2222", "host", "u@host", "host:2", "[::1]:22", "::1"} {
		tg, err := ParseTarget(in)
		if err != nil {
			t.Fatal(err)
		}
		if got := tg.String(); got != in {
			t.Errorf("ParseTarget(%q).String() = %q", in, got)
		}
	}
}

func TestParseHostsFileReadsFieldsAndSkipsComments(t *testing.T) {
	in := `# fleet
pi@10.0.0.7:2222 chevron=3.12 caps=camera,arm tags=site=lab,row=2

robot-2   # the spare
[::1]:22 caps=x
`
	got, err := ParseHostsFile(strings.NewReader(in))
	if err != nil {
		t.Fatal(err)
	}
	want := []Target{
		{User: "pi", Host: "10.0.0.7", Port: 2222, Chevron: "3.12", Caps: []string{"camera", "arm"}, Tags: map[string]string{"site": "lab", "row": "2"}},
		{Host: "robot-2"},
		{Host: "::1", Port: 22, Caps: []string{"x"}},
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("(-want +got):\n%s", diff)
	}
}

func TestParseHostsFileErrorsNameTheLine(t *testing.T) {
	for _, tc := range []struct{ in, mention string }{
		{"a\nb chevron=0\n", "line 2"},
		{"a\n\n# c\nb caps=\n", "line 4"},
		{"a color=red", `"color"`},
		{"a tags=x", `"x"`},
		{"a caps=x caps=y", "twice"},
		{"a caps=x,,y", "empty entry"},
		{"a:22\nb\nA", "already given on line 1"},
		{"pi@a\nroot@a:22", "line 2"},
		{"[::1]:2 x", `"x"`},
	} {
		_, err := ParseHostsFile(strings.NewReader(tc.in))
		if err == nil || !strings.Contains(err.Error(), tc.mention) {
			t.Errorf("ParseHostsFile(%q) = %v, want an error mentioning %s", tc.in, err, tc.mention)
		}
	}
}

func FuzzParseTarget(f *testing.F) {
	for _, s := range []string{"pi@10.0.0.7:2222", "[::1]:22", "::1", "host", "a@b@c:1", "[", "@", ":"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		tg, err := ParseTarget(s)
		if err != nil {
			return
		}
		again, err := ParseTarget(tg.String())
		if err != nil {
			t.Fatalf("ParseTarget(%q).String() = %q does not parse: %v", s, tg.String(), err)
		}
		if diff := cmp.Diff(tg, again); diff != "" {
			t.Fatalf("round trip of %q (-first +second):\n%s", s, diff)
		}
	})
}

func FuzzParseHostsFile(f *testing.F) {
	f.Add("pi@10.0.0.7:2222 chevron=3.12 caps=camera,arm tags=site=lab,row=2\n# c\n\nb\n")
	f.Add("a tags=k=v=w caps=x")
	f.Add("[::1]:22\n::2")
	f.Fuzz(func(t *testing.T, s string) {
		ts, err := ParseHostsFile(strings.NewReader(s))
		if err != nil {
			return
		}
		lines := make([]string, len(ts))
		for i, tg := range ts {
			lines[i] = formatHostsLine(tg)
		}
		again, err := ParseHostsFile(strings.NewReader(strings.Join(lines, "\n")))
		if err != nil {
			t.Fatalf("formatted %q does not parse: %v", lines, err)
		}
		if diff := cmp.Diff(ts, again); diff != "" {
			t.Fatalf("round trip of %q (-first +second):\n%s", s, diff)
		}
	})
}

// formatHostsLine is the inverse of parseHostsLine; the fuzz test uses it to
// check the round trip.
func formatHostsLine(t Target) string {
	parts := []string{t.String()}
	if t.Chevron != "" {
		parts = append(parts, "chevron="+t.Chevron)
	}
	if len(t.Caps) > 0 {
		parts = append(parts, "caps="+strings.Join(t.Caps, ","))
	}
	if len(t.Tags) > 0 {
		keys := make([]string, 0, len(t.Tags))
		for k := range t.Tags {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		kvs := make([]string, len(keys))
		for i, k := range keys {
			kvs[i] = k + "=" + t.Tags[k]
		}
		parts = append(parts, "tags="+strings.Join(kvs, ","))
	}
	return strings.Join(parts, " ")
}

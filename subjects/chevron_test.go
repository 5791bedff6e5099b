package subjects

import (
	"errors"
	"testing"
)

func TestParseAcceptsValidChevrons(t *testing.T) {
	for _, s := range []string{"1", "2", "3.12", "3.12.7.1", "65535.65535.65535.65535", "10.200"} {
		c, err := Parse(s)
		if err != nil {
			t.Fatalf("Parse(%q): %v", s, err)
		}
		if got := c.String(); got != s {
			t.Errorf("Parse(%q).String() = %q", s, got)
		}
	}
}

func TestParseRejectsInvalidChevrons(t *testing.T) {
	for _, s := range []string{"", "0", "01", "1.0", "1..2", ".1", "1.", "1.2.3.4.5", "65536", "-1", "+1",
		"1 ", " 1", "a", "1.a", "1/2", "99999999999999999999", "１"} {
		if _, err := Parse(s); !errors.Is(err, ErrChevron) {
			t.Errorf("Parse(%q) = %v, want ErrChevron", s, err)
		}
	}
}

func TestPrefixAndConflict(t *testing.T) {
	mk := func(s string) Chevron {
		c, err := Parse(s)
		if err != nil {
			t.Fatal(err)
		}
		return c
	}
	tests := []struct {
		a, b      string
		prefix    bool // b is a prefix of a
		conflicts bool
		cmp       int
	}{
		{"3.12.7.1", "3.12", true, true, 1},
		{"3.12", "3.12.7.1", false, true, -1},
		{"3.12", "3.12", true, true, 0},
		{"3.12", "3.13", false, false, -1},
		{"3.2", "3.12", false, false, -1},
		{"1", "10", false, false, -1},
		{"10", "1", false, false, 1},
	}
	for _, tt := range tests {
		a, b := mk(tt.a), mk(tt.b)
		if got := a.HasPrefix(b); got != tt.prefix {
			t.Errorf("%s.HasPrefix(%s) = %v", tt.a, tt.b, got)
		}
		if got := a.Conflicts(b); got != tt.conflicts {
			t.Errorf("%s.Conflicts(%s) = %v", tt.a, tt.b, got)
		}
		if got := a.Compare(b); got != tt.cmp {
			t.Errorf("%s.Compare(%s) = %d, want %d", tt.a, tt.b, got, tt.cmp)
		}
	}
	if !mk("7").HasPrefix(Chevron{}) {
		t.Error("zero chevron must prefix everything")
	}
}

func TestPrefixesShortestFirst(t *testing.T) {
	c, _ := Parse("3.12.7.1")
	var got []string
	for _, p := range c.Prefixes() {
		got = append(got, p.String())
	}
	want := []string{"3", "3.12", "3.12.7", "3.12.7.1"}
	if len(got) != len(want) {
		t.Fatalf("Prefixes = %v", got)
	}
	for i := range want {
		if got[i] != want[i] {
			t.Fatalf("Prefixes = %v, want %v", got, want)
		}
	}
	// A prefix must equal a freshly parsed chevron: Chevron is a map key.
	if c.Prefixes()[1] != mustParse(t, "3.12") {
		t.Error("prefix not comparable-equal to parsed chevron")
	}
}

func TestSeedRoundTrip(t *testing.T) {
	s, err := ParseSeed("3.12.7.1/tcp/10.0.0.5:8340")
	if err != nil {
		t.Fatal(err)
	}
	if s.Chevron.String() != "3.12.7.1" || s.Endpoint != "10.0.0.5:8340" || s.String() != "3.12.7.1/tcp/10.0.0.5:8340" {
		t.Errorf("seed = %+v", s)
	}
	for _, bad := range []string{"3.12/udp/x:1", "3.12/tcp/", "3.12/tcp", "x/tcp/a:1"} {
		if _, err := ParseSeed(bad); err == nil {
			t.Errorf("ParseSeed(%q) accepted", bad)
		}
	}
}

func TestChevronJSONText(t *testing.T) {
	var c Chevron
	if err := c.UnmarshalText([]byte("3.12")); err != nil || c.String() != "3.12" {
		t.Fatalf("UnmarshalText: %v %v", c, err)
	}
	if err := c.UnmarshalText([]byte("3.x")); err == nil {
		t.Fatal("UnmarshalText accepted 3.x")
	}
}

func mustParse(t *testing.T, s string) Chevron {
	t.Helper()
	c, err := Parse(s)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func FuzzParse(f *testing.F) {
	for _, s := range []string{"1", "3.12.7.1", "0", "1..2", "65536", "3.12/tcp/a:1"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		c, err := Parse(s)
		if err != nil {
			if c != (Chevron{}) {
				t.Fatalf("Parse(%q) returned %v with error", s, c)
			}
			return
		}
		// Round trip: what parses formats back to the same text.
		if c.String() != s {
			t.Fatalf("Parse(%q).String() = %q", s, c.String())
		}
		if c.Len() < 1 || c.Len() > MaxTokens || !c.HasPrefix(c) || c.Compare(c) != 0 {
			t.Fatalf("invariants broken for %q", s)
		}
		if _, err := ParseSeed(s + "/tcp/h:1"); err != nil {
			t.Fatalf("ParseSeed of valid chevron %q: %v", s, err)
		}
	})
}

func FuzzParseSeed(f *testing.F) {
	f.Add("3.12.7.1/tcp/10.0.0.5:8340")
	f.Add("1")
	f.Fuzz(func(t *testing.T, s string) {
		sd, err := ParseSeed(s)
		if err != nil {
			return
		}
		again, err := ParseSeed(sd.String())
		if err != nil || again != sd {
			t.Fatalf("seed %q does not round-trip: %v %v", s, again, err)
		}
	})
}

func TestCompareText(t *testing.T) {
	for _, tc := range []struct {
		a, b string
		want int
	}{{"2", "10", -1}, {"3.12", "3.2", 1}, {"3.12", "3.12.1", -1}, {"1", "1", 0}, {"x", "y", -1}} {
		if got := CompareText(tc.a, tc.b); got != tc.want {
			t.Errorf("CompareText(%q, %q) = %d, want %d", tc.a, tc.b, got, tc.want)
		}
	}
}

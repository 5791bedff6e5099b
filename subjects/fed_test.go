package subjects

import (
	"errors"
	"strings"
	"testing"
)

func TestFedCmdRoundTrips(t *testing.T) {
	for _, tc := range []struct{ prefix, verb, want string }{
		{"3", "ping", "rn.fed.3.cmd.ping"},
		{"3.12", "ping", "rn.fed.3.12.cmd.ping"},
		{"3.12.7", "status", "rn.fed.3.12.7.cmd.status"},
		{"3.12.7.1", "exec", "rn.fed.3.12.7.1.cmd.exec"},
	} {
		got, err := FedCmd(mustParse(t, tc.prefix), tc.verb)
		if err != nil || got != tc.want {
			t.Fatalf("FedCmd(%s, %s) = %q, %v; want %q", tc.prefix, tc.verb, got, err, tc.want)
		}
		p, v, err := ParseFedCmd(got)
		if err != nil || p.String() != tc.prefix || v != tc.verb {
			t.Fatalf("ParseFedCmd(%q) = %v %q %v", got, p, v, err)
		}
	}
	if _, err := FedCmd(Chevron{}, "ping"); !errors.Is(err, ErrFedSubject) {
		t.Fatalf("FedCmd with no prefix: %v", err)
	}
	if _, err := FedCmd(mustParse(t, "3"), "p*"); err == nil {
		t.Fatal("FedCmd accepted a wildcard verb")
	}
}

func TestParseFedCmdRefuses(t *testing.T) {
	for _, bad := range []string{
		"", "rn.fed.cmd.ping", "rn.3.12.cmd.ping", "rn.fed.3.12.cmd", "rn.fed.3.12.cmd.*", "rn.fed.*.cmd.ping",
		"rn.fed.3.12.cmd.>", "rn.fed.0.cmd.ping", "rn.fed.1.2.3.4.5.cmd.ping", "rn.fed.3.12.evt.ping",
		"xx.fed.3.cmd.ping", "rn.fed.3.cmd.Ping", "rn.fed.3..cmd.ping", "rn.fed.3.cmd.ping.x", "rn.fed.3.cmd.pi ng",
		"rn.fed.3.cmd." + strings.Repeat("a", 65), "rn.fed.3.cmd." + strings.Repeat("a", MaxSubjectLen),
	} {
		if _, _, err := ParseFedCmd(bad); !errors.Is(err, ErrFedSubject) {
			t.Errorf("ParseFedCmd(%q) = %v, want ErrFedSubject", bad, err)
		}
	}
}

func TestAmbassadorSubscriptions(t *testing.T) {
	sw := mustParse(t, "3.12.7")
	subs, err := FedCmdSubscriptions(sw)
	if err != nil {
		t.Fatal(err)
	}
	want := "rn.fed.3.cmd.* rn.fed.3.12.cmd.* rn.fed.3.12.7.cmd.* rn.fed.3.12.7.*.cmd.*"
	if got := strings.Join(subs, " "); got != want {
		t.Fatalf("FedCmdSubscriptions = %q, want %q", got, want)
	}
	if q, err := AmbassadorQueue(sw); err != nil || q != "amb.3.12.7" {
		t.Fatalf("AmbassadorQueue = %q, %v", q, err)
	}
	for _, bad := range []string{"3", "3.12", "3.12.7.1"} {
		if _, err := FedCmdSubscriptions(mustParse(t, bad)); err == nil {
			t.Errorf("FedCmdSubscriptions(%s) accepted a non-swarm prefix", bad)
		}
		if _, err := AmbassadorQueue(mustParse(t, bad)); err == nil {
			t.Errorf("AmbassadorQueue(%s) accepted a non-swarm prefix", bad)
		}
	}
	// Every node-level fed subject of the swarm is matched by the last
	// subscription, and only those of this swarm.
	if !matches(subs[3], "rn.fed.3.12.7.9.cmd.ping") || matches(subs[3], "rn.fed.3.12.8.9.cmd.ping") {
		t.Fatal("node-level subscription matches the wrong subjects")
	}
}

// matches applies NATS wildcard rules (tokens only, '*' and a final '>').
func matches(pattern, subject string) bool {
	p, s := strings.Split(pattern, "."), strings.Split(subject, ".")
	for i, tok := range p {
		if tok == ">" {
			return len(s) > i
		}
		if i >= len(s) || (tok != "*" && tok != s[i]) {
			return false
		}
	}
	return len(p) == len(s)
}

func TestSwarmOfAndOverlaps(t *testing.T) {
	sw, err := NodeSwarm(mustParse(t, "3.12.7.1"))
	if err != nil || sw.String() != "3.12.7" {
		t.Fatalf("SwarmOf = %v, %v", sw, err)
	}
	if _, err := NodeSwarm(mustParse(t, "3.12.7")); err == nil {
		t.Fatal("SwarmOf accepted a 3-token chevron")
	}
	if _, err := ParseSwarmPrefix("3.12"); err == nil {
		t.Fatal("ParseSwarm accepted 2 tokens")
	}
	for _, tc := range []struct {
		a, b string
		want bool
		deep string
	}{
		{"3.12", "3.12.7", true, "3.12.7"},
		{"3.12.7.1", "3.12.7", true, "3.12.7.1"},
		{"3.12.8", "3.12.7", false, ""},
		{"3.14", "3.12.7", false, ""},
	} {
		a, b := mustParse(t, tc.a), mustParse(t, tc.b)
		if Overlaps(a, b) != tc.want || Overlaps(b, a) != tc.want {
			t.Errorf("Overlaps(%s, %s) != %v", tc.a, tc.b, tc.want)
		}
		if tc.want && Deeper(a, b).String() != tc.deep {
			t.Errorf("Deeper(%s, %s) = %s", tc.a, tc.b, Deeper(a, b))
		}
	}
}

func TestFedUsersSubject(t *testing.T) {
	subj, err := FedUsers(mustParse(t, "3.12.1"))
	if err != nil || subj != "rn.dir.3.12.1.users" || !matches(FedUsersAll, subj) {
		t.Fatalf("FedUsers = %q, %v", subj, err)
	}
	if c, ok := ParseFedUsers(subj); !ok || c.String() != "3.12.1" {
		t.Fatalf("ParseFedUsers = %v %v", c, ok)
	}
	for _, bad := range []string{"rn.dir.3.12.users", "rn.dir.3.12.1.summary", "rn.dir.3.12.1.1.users", "rn.3.12.1.users"} {
		if _, ok := ParseFedUsers(bad); ok {
			t.Errorf("ParseFedUsers(%q) ok", bad)
		}
	}
}

func TestFedExclude(t *testing.T) {
	got, err := ParseFedExclude(" 3.12.7 ,3.12.8")
	if err != nil || len(got) != 2 || FormatFedExclude(got...) != "3.12.7,3.12.8" {
		t.Fatalf("ParseFedExclude = %v, %v", got, err)
	}
	if got, err := ParseFedExclude(""); err != nil || got != nil {
		t.Fatalf("empty exclude = %v, %v", got, err)
	}
	for _, bad := range []string{"3.12", "3.12.7.1", "x", "3.12.7,", strings.Repeat("1.1.1,", MaxFedExclude) + "1.1.1"} {
		if _, err := ParseFedExclude(bad); err == nil {
			t.Errorf("ParseFedExclude(%q) accepted", bad)
		}
	}
}

func FuzzParseFedCmd(f *testing.F) {
	for _, s := range []string{"rn.fed.3.12.cmd.ping", "rn.fed.3.12.7.1.cmd.exec", "rn.fed.cmd.ping", "rn.fed.0.cmd.x",
		"rn.fed.3.cmd.*", "rn.fed.1.2.3.4.5.cmd.a", "rn.fed.3.12.cmd.ping\x00"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		p, verb, err := ParseFedCmd(s)
		if err != nil {
			if !errors.Is(err, ErrFedSubject) || !p.IsZero() || verb != "" {
				t.Fatalf("ParseFedCmd(%q): %v with %v %q", s, err, p, verb)
			}
			return
		}
		// What parses is a valid publish subject and rebuilds to itself.
		again, err := FedCmd(p, verb)
		if err != nil || again != s {
			t.Fatalf("ParseFedCmd(%q) = %v %q, rebuilt %q %v", s, p, verb, again, err)
		}
		if err := ValidPublish(s); err != nil {
			t.Fatalf("ParseFedCmd accepted %q, which is not a valid publish subject: %v", s, err)
		}
	})
}

func FuzzParseFedExclude(f *testing.F) {
	f.Add("3.12.7")
	f.Add("3.12.7,3.12.8")
	f.Add(",")
	f.Fuzz(func(t *testing.T, s string) {
		cs, err := ParseFedExclude(s)
		if err != nil {
			return
		}
		again, err := ParseFedExclude(FormatFedExclude(cs...))
		if err != nil || len(again) != len(cs) {
			t.Fatalf("exclude %q does not round-trip: %v %v", s, again, err)
		}
		for i := range cs {
			if cs[i] != again[i] || cs[i].Len() != SwarmTokens {
				t.Fatalf("exclude %q: %v vs %v", s, cs, again)
			}
		}
	})
}

func TestSelectorScope(t *testing.T) {
	for _, tc := range []struct {
		sel   string
		scope string // "" for not federated
	}{
		{"3.12", "3.12"},
		{"3.12.7.1", "3.12.7.1"},
		{"3.12,caps=gpu", "3.12"},
		{"3.12.7|3.12.8,os=linux", "3.12"},
		{"3.12,3.12.7", "3.12.7"},
		{"3.12,3.14|3.12.9", "3.12.9"},
		{"3|4", ""},
		{"all", ""},
		{"rn2", ""},
		{"caps=gpu", ""},
		{"3.12|caps=gpu", ""},
	} {
		sel, err := ParseSelector(tc.sel)
		if err != nil {
			t.Fatal(err)
		}
		got, ok := sel.Scope()
		if tc.scope == "" {
			if ok {
				t.Errorf("Scope(%q) = %s, want none", tc.sel, got)
			}
			continue
		}
		if !ok || got.String() != tc.scope {
			t.Errorf("Scope(%q) = %s %v, want %s", tc.sel, got, ok, tc.scope)
		}
	}
}

// Whatever a selector with a scope matches lies under that scope: an
// ambassador outside it may never be needed.
func FuzzSelectorScope(f *testing.F) {
	for _, s := range []string{"3.12", "3.12.7|3.13", "3.12,caps=ai|3.13.1,rn2", "3,3.12|3.12.7.1", "all"} {
		f.Add(s)
	}
	targets := fixedTargets()
	f.Fuzz(func(t *testing.T, s string) {
		sel, err := ParseSelector(s)
		if err != nil {
			return
		}
		scope, ok := sel.Scope()
		if !ok {
			return
		}
		for _, tg := range targets {
			if sel.Match(tg) && !tg.Chevron.HasPrefix(scope) {
				t.Fatalf("selector %q matches %s outside its scope %s", s, tg.Chevron, scope)
			}
		}
	})
}

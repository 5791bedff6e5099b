package subjects

import (
	"errors"
	"strings"
	"testing"
)

func TestDirectorySubjects(t *testing.T) {
	p := mustParse(t, "3.12.7")
	got, err := DirSummary(p)
	if err != nil || got != "rn.dir.3.12.7.summary" {
		t.Fatalf("DirSummary = %q, %v", got, err)
	}
	if back, ok := ParseDirSummary(got); !ok || back != p {
		t.Fatalf("ParseDirSummary(%q) = %v %v", got, back, ok)
	}
	if d, err := SwarmDomain(p); err != nil || d != "rn-3-12-7" {
		t.Fatalf("SwarmDomain = %q, %v", d, err)
	}
	if d, err := SourceDeliverPrefix(p); err != nil || d != "rn.fed.js.3.12.7" {
		t.Fatalf("SourceDeliverPrefix = %q, %v", d, err)
	}
	for _, bad := range []string{"3.12", "3.12.7.1", "3"} {
		c := mustParse(t, bad)
		if _, err := DirSummary(c); !errors.Is(err, ErrSwarmPrefix) {
			t.Errorf("DirSummary(%s) err = %v, want ErrSwarmPrefix", bad, err)
		}
		if _, err := SwarmDomain(c); !errors.Is(err, ErrSwarmPrefix) {
			t.Errorf("SwarmDomain(%s) err = %v", bad, err)
		}
	}
	for _, bad := range []string{"rn.dir.3.12.summary", "rn.dir.3.12.7.1.summary", "rn.dir.3.12.07.summary",
		"rn.dir.3.12.7.sum", "rn.dir.*.*.*.summary", "rn.3.12.7.summary", "rn.dir.3.12.7.summary.x"} {
		if _, ok := ParseDirSummary(bad); ok {
			t.Errorf("ParseDirSummary(%q) ok", bad)
		}
	}
	if err := ValidPublish(DirSummaryWildcard); err == nil {
		t.Fatal("the summary wildcard is a valid publish subject")
	}
}

func TestSwarmOf(t *testing.T) {
	s, ok := SwarmOf(mustParse(t, "3.12.7.1"))
	if !ok || s.String() != "3.12.7" {
		t.Fatalf("SwarmOf = %v %v", s, ok)
	}
	if _, ok := SwarmOf(mustParse(t, "3.12.7")); ok {
		t.Fatal("SwarmOf of a 3-token chevron ok")
	}
	if _, err := ParseSwarmPrefix("3.12.7.1"); err == nil {
		t.Fatal("ParseSwarmPrefix took a node chevron")
	}
}

// rn_events keeps every event kind but the heartbeat and the tier views.
func TestEventsSubjectsLeaveOutHeartbeats(t *testing.T) {
	subs, err := EventsSubjects(mustParse(t, "3.12.7"))
	if err != nil {
		t.Fatal(err)
	}
	all := strings.Join(subs, " ")
	for _, k := range []string{EvtJoin, EvtLeave, EvtLeader, EvtAlert, EvtTrust, EvtAudit} {
		if !strings.Contains(all, "rn.3.12.7.*.evt."+k) {
			t.Errorf("rn_events misses %s: %s", k, all)
		}
	}
	if strings.Contains(all, ".evt.hb") || strings.Contains(all, ".evt.>") || strings.Contains(all, "tiers") {
		t.Fatalf("rn_events takes heartbeats or tier views: %s", all)
	}
}

func FuzzParseDirSummary(f *testing.F) {
	f.Add("rn.dir.3.12.7.summary")
	f.Add("rn.dir.1.1.1.summary")
	f.Add("rn.dir..summary")
	f.Fuzz(func(t *testing.T, s string) {
		p, ok := ParseDirSummary(s)
		if !ok {
			return
		}
		back, err := DirSummary(p)
		if err != nil || back != s {
			t.Fatalf("ParseDirSummary(%q) = %v, which formats as %q (%v)", s, p, back, err)
		}
	})
}

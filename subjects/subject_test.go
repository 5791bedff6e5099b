package subjects

import (
	"strings"
	"testing"
)

func TestCmdSubjects(t *testing.T) {
	c := mustParse(t, "3.12.7.1")
	got, err := Cmd(mustParse(t, "3.12"), "ping")
	if err != nil || got != "rn.3.12.cmd.ping" {
		t.Fatalf("Cmd = %q, %v", got, err)
	}
	if got, _ := Cmd(Chevron{}, "ping"); got != "rn.cmd.ping" {
		t.Fatalf("swarm Cmd = %q", got)
	}
	if _, err := Cmd(c, "p*"); err == nil {
		t.Fatal("Cmd accepted a wildcard verb")
	}
	subs := strings.Join(CmdSubscriptions(c), " ")
	want := "rn.cmd.* rn.3.cmd.* rn.3.12.cmd.* rn.3.12.7.cmd.* rn.3.12.7.1.cmd.*"
	if subs != want {
		t.Fatalf("CmdSubscriptions = %q, want %q", subs, want)
	}
}

func TestEventSubjects(t *testing.T) {
	c := mustParse(t, "3.12.7.1")
	if got := Event(c, EvtHeartbeat); got != "rn.3.12.7.1.evt.hb" {
		t.Fatalf("Event = %q", got)
	}
	pc, kind, ok := ParseEvent("rn.3.12.7.1.evt.hb")
	if !ok || pc != c || kind != "hb" {
		t.Fatalf("ParseEvent = %v %q %v", pc, kind, ok)
	}
	for _, bad := range []string{"rn.evt.hb", "rn.x.evt.hb", "rn.1.cmd.ping", "xx.1.evt.hb", "rn.1.2.3.4.5.evt.hb"} {
		if _, _, ok := ParseEvent(bad); ok {
			t.Errorf("ParseEvent(%q) ok", bad)
		}
	}
	if got := EventWildcards("hb"); len(got) != 4 || got[0] != "rn.*.evt.hb" || got[3] != "rn.*.*.*.*.evt.hb" {
		t.Fatalf("EventWildcards = %v", got)
	}
}

func TestValidPublish(t *testing.T) {
	for _, ok := range []string{"rn.1.cmd.ping", "a", "_INBOX.x.y"} {
		if err := ValidPublish(ok); err != nil {
			t.Errorf("ValidPublish(%q) = %v", ok, err)
		}
	}
	for _, bad := range []string{"", "rn..x", "rn.*", "rn.>", ".a", "a.", "a b", "a\tb", strings.Repeat("a", MaxSubjectLen+1)} {
		if err := ValidPublish(bad); err == nil {
			t.Errorf("ValidPublish(%q) accepted", bad)
		}
	}
}

package colonize

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

func testConfig(t *testing.T, body string) *sshConfig {
	t.Helper()
	p := filepath.Join(t.TempDir(), "config")
	if err := os.WriteFile(p, []byte(body), 0o600); err != nil {
		t.Fatal(err)
	}
	c, err := loadSSHConfig(p, "/home/me", "me")
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func TestResolveChainFollowsProxyJumpWithPerHopConfig(t *testing.T) {
	c := testConfig(t, `
Host robot
  HostName 10.0.0.7
  ProxyJump ops@gw:2200,ssh://inner
  IdentityFile ~/.ssh/robot_%r
  User pi
Host gw
  HostName gw.example
  ProxyJump edge
Host inner
  Port 2022
  ProxyJump ignored-for-a-later-hop
`)
	chain, err := c.resolveChain(Target{Host: "robot"})
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, h := range chain {
		got = append(got, h.user+"@"+h.addr())
	}
	want := []string{"me@edge:22", "ops@gw.example:2200", "me@inner:2022", "pi@10.0.0.7:22"}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("chain (-want +got):\n%s", diff)
	}
	if f := chain[3].identityFiles; len(f) != 1 || f[0] != "/home/me/.ssh/robot_pi" {
		t.Errorf("identity files = %q", f)
	}
}

func TestResolveChainProxyJumpNoneAndGivenValuesWin(t *testing.T) {
	c := testConfig(t, "Host *\n  ProxyJump none\n  User cfg\n  Port 2\n")
	chain, err := c.resolveChain(Target{Host: "h", User: "u", Port: 3})
	if err != nil {
		t.Fatal(err)
	}
	if len(chain) != 1 || chain[0].user != "u" || chain[0].port != 3 {
		t.Errorf("chain = %+v", chain)
	}
}

func TestResolveChainRefusesLoopsAndProxyCommand(t *testing.T) {
	c := testConfig(t, "Host a\n  ProxyJump b\nHost b\n  ProxyJump a\nHost p\n  ProxyCommand nc %h %p\n")
	if _, err := c.resolveChain(Target{Host: "a"}); err == nil || !strings.Contains(err.Error(), "twice") {
		t.Errorf("loop: err = %v", err)
	}
	if _, err := c.resolveChain(Target{Host: "p"}); err == nil || !strings.Contains(err.Error(), "ProxyCommand") {
		t.Errorf("ProxyCommand: err = %v", err)
	}
}

func TestLoadSSHConfigNoneAndMissingDefault(t *testing.T) {
	if c, err := loadSSHConfig("none", t.TempDir(), "me"); err != nil || c.cfg != nil {
		t.Errorf("none: %v, %v", c, err)
	}
	if c, err := loadSSHConfig("", t.TempDir(), "me"); err != nil || c.cfg != nil {
		t.Errorf("missing default: %v, %v", c, err)
	}
	if _, err := loadSSHConfig(filepath.Join(t.TempDir(), "nope"), "/", "me"); err == nil {
		t.Error("a named config that is missing must be an error")
	}
}

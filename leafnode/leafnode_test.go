package leafnode

import (
	"errors"
	"strings"
	"testing"

	"github.com/nats-io/nats-server/v2/server"

	"github.com/robonet-mesh/robonet/subjects"
)

func chev(t testing.TB, s string) subjects.Chevron {
	t.Helper()
	c, err := subjects.Parse(s)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func TestSwarmPrefixAndDomain(t *testing.T) {
	for _, tc := range []struct {
		chev, prefix, domain string
		bad                  bool
	}{
		{chev: "3.12.7.1", prefix: "3.12.7", domain: "rn-3-12-7"},
		{chev: "65535.65535.65535.65535", prefix: "65535.65535.65535", domain: "rn-65535-65535-65535"},
		{chev: "1.1.1.9", prefix: "1.1.1", domain: "rn-1-1-1"},
		{chev: "3.12.7", bad: true},
		{chev: "1", bad: true},
	} {
		t.Run(tc.chev, func(t *testing.T) {
			p, err := SwarmPrefix(chev(t, tc.chev))
			if tc.bad {
				if !errors.Is(err, ErrPrefix) {
					t.Fatalf("prefix %v, err %v; want ErrPrefix", p, err)
				}
				return
			}
			if err != nil || p.String() != tc.prefix {
				t.Fatalf("prefix %q, %v; want %s", p, err, tc.prefix)
			}
			if d := Domain(p); d != tc.domain {
				t.Fatalf("domain %q, want %s", d, tc.domain)
			}
			back, err := ParseDomain(tc.domain)
			if err != nil || back != p {
				t.Fatalf("ParseDomain(%s) = %v, %v", tc.domain, back, err)
			}
		})
	}
	for _, d := range []string{"", "rn-", "rn-3-12", "rn-3-12-7-1", "rn-03-12-7", "rn-3-12-0", "xx-3-12-7", "rn-3.12.7", "rn-3-12-7 "} {
		if p, err := ParseDomain(d); err == nil {
			t.Errorf("ParseDomain(%q) = %v, want an error", d, p)
		}
	}
	if Domain(chev(t, "3.12")) != "" || Domain(subjects.Chevron{}) != "" {
		t.Fatal("Domain of a non-swarm prefix is not empty")
	}
}

func TestCheckChild(t *testing.T) {
	for _, tc := range []struct {
		name, hub, parent, child string
		ok                       bool
		says                     string
	}{
		{"zone hub admits a swarm of its zone", "3.1.1", "", "3.12.1", true, ""},
		{"zone hub admits another region's swarm", "3.1.1", "", "3.14.2", true, ""},
		{"zone hub refuses another zone", "3.1.1", "", "4.1.1", false, "outside this hub's scope 3"},
		{"region hub admits its region", "3.12.1", "3.1.1", "3.12.7", true, ""},
		{"region hub refuses a sibling region", "3.12.1", "3.1.1", "3.14.7", false, "outside this hub's scope 3.12"},
		{"own swarm", "3.12.1", "3.1.1", "3.12.1", false, "this hub's own swarm"},
		{"own swarm, zone hub", "3.1.1", "", "3.1.1", false, "own swarm"},
		{"parent in scope", "3.1.5", "3.1.1", "3.1.1", false, "parent swarm"},
		{"not a swarm prefix", "3.12.1", "", "3.12", false, "not a swarm prefix"},
		{"a node chevron", "3.12.1", "", "3.12.7.1", false, "not a swarm prefix"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var parent subjects.Chevron
			if tc.parent != "" {
				parent = chev(t, tc.parent)
			}
			err := CheckChild(chev(t, tc.hub), parent, chev(t, tc.child))
			if tc.ok != (err == nil) {
				t.Fatalf("err %v, want ok=%v", err, tc.ok)
			}
			if err != nil && (!errors.Is(err, ErrScope) || !strings.Contains(err.Error(), tc.says)) {
				t.Fatalf("err %q does not wrap ErrScope or say %q", err, tc.says)
			}
		})
	}
}

func TestConfigureSetsFederatedServerOptions(t *testing.T) {
	var so server.Options
	if err := Configure(&so, chev(t, "3.12.7")); err != nil {
		t.Fatal(err)
	}
	if so.JetStreamDomain != "rn-3-12-7" || so.Cluster.Name != "rn-3-12-7" || so.JetStreamExtHint != "no_extend" ||
		so.PingInterval != PingInterval || so.MaxPingsOut != 3 || so.LeafNode.ReconnectInterval != ReconnectInterval || !so.SyncAlways {
		t.Fatalf("options: domain %q cluster %q hint %q ping %v/%d reconnect %v sync %v", so.JetStreamDomain, so.Cluster.Name,
			so.JetStreamExtHint, so.PingInterval, so.MaxPingsOut, so.LeafNode.ReconnectInterval, so.SyncAlways)
	}
	if err := Configure(&so, chev(t, "3.12")); !errors.Is(err, ErrPrefix) {
		t.Fatalf("2-token prefix: %v", err)
	}
}

func TestParseAddress(t *testing.T) {
	for _, tc := range []struct {
		in, out  string
		wantHost bool
		bad      bool
	}{
		{"hub1:7422", "hub1:7422", true, false},
		{"nats-leaf://10.0.0.5:7422", "10.0.0.5:7422", true, false},
		{" [::1]:7422 ", "[::1]:7422", true, false},
		{"0.0.0.0:0", "0.0.0.0:0", false, false},
		{":7422", ":7422", false, false},
		{":7422", "", true, true},
		{"hub1:0", "", true, true},
		{"hub1", "", true, true},
		{"hub1:70000", "", true, true},
		{"hub1:x", "", false, true},
	} {
		got, err := ParseAddress(tc.in, tc.wantHost)
		if tc.bad != (err != nil) || got != tc.out {
			t.Errorf("ParseAddress(%q, %v) = %q, %v", tc.in, tc.wantHost, got, err)
		}
		if err != nil && !errors.Is(err, ErrAddress) {
			t.Errorf("ParseAddress(%q): %v does not wrap ErrAddress", tc.in, err)
		}
	}
}

func TestSpokeDeniesKeepFederatedCommands(t *testing.T) {
	denies := SpokeDenies(chev(t, "3.12.7"))
	match := func(subj string) bool {
		for _, d := range denies {
			if subjectMatches(d, subj) {
				return true
			}
		}
		return false
	}
	for subj, denied := range map[string]bool{
		"rn.cmd.ping":             true,
		"rn.3.cmd.ping":           true,
		"rn.3.12.cmd.ping":        true,
		"rn.3.12.7.cmd.ping":      true,
		"rn.3.12.7.1.cmd.ping":    true,
		"rn.3.12.7.1.evt.hb":      true,
		"rn.3.12.8.1.evt.hb":      true,
		"rn.sys.token":            true,
		"$SYS.REQ.SERVER.PING":    true,
		"rn.fed.3.cmd.ping":       false,
		"rn.fed.3.12.cmd.ping":    false,
		"rn.fed.3.12.7.cmd.ping":  false,
		"rn.dir.3.12.7.summary":   false,
		"rn.3.12.7.1.evt.join":    false,
		"_rn.inbox.UABC.1":        false,
		"rn.fed.js.3.12.7.S.abcd": false,
	} {
		if match(subj) != denied {
			t.Errorf("%s: denied=%v, want %v (denies %v)", subj, match(subj), denied, denies)
		}
	}
}

// subjectMatches is NATS subject matching of a literal subject against a
// pattern with * and >.
func subjectMatches(pattern, subj string) bool {
	p, s := strings.Split(pattern, "."), strings.Split(subj, ".")
	for i, t := range p {
		if t == ">" {
			return len(s) > i
		}
		if i >= len(s) || t != "*" && t != s[i] {
			return false
		}
	}
	return len(p) == len(s)
}

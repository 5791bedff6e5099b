package gateway

import (
	"net/netip"
	"strings"
	"testing"
)

// FuzzWHEPTarget: any URL parts are checked without panicking; what passes
// is a chevron, a stream name by media's rule and, for a session URL, 32
// lowercase hex characters with or without the relay prefix.
func FuzzWHEPTarget(f *testing.F) {
	f.Add("3.12.7.1", "cam0", "r0123456789abcdef0123456789abcdef", true)
	f.Add("1", "test", "0123456789abcdef0123456789abcdef", true)
	f.Add("x.y", "CAM", "", false)
	f.Add("1.2.3.4.5", "-a", "r", true)
	f.Add("0", strings.Repeat("a", 33), "R0123456789ABCDEF0123456789ABCDEF", true)
	f.Fuzz(func(t *testing.T, chev, stream, session string, withSession bool) {
		pattern := "POST /media/{chevron}/{stream}/whep"
		if withSession {
			pattern = "PATCH /media/{chevron}/{stream}/whep/{session}"
		}
		tg, aerr := parseTarget(chev, stream, session, pattern)
		if aerr != nil {
			if aerr.Status != 404 || aerr.Code != CodeNotFound || aerr.Msg == "" {
				t.Fatalf("refusal %+v", aerr)
			}
			return
		}
		if !validStream(tg.stream) || tg.chev.IsZero() {
			t.Fatalf("accepted %q %q", chev, stream)
		}
		if !withSession {
			if tg.session != "" {
				t.Fatalf("a session %q from an endpoint URL", tg.session)
			}
			return
		}
		id, relay, ok := splitSession(tg.session)
		if !ok || len(id) != 32 || strings.Trim(id, "0123456789abcdef") != "" || relay != strings.HasPrefix(tg.session, relayPrefix) {
			t.Fatalf("session %q → %q %v %v", tg.session, id, relay, ok)
		}
	})
}

// FuzzOnSubnet: any client address and node addresses are compared
// without panicking; an address is always on its own subnet.
func FuzzOnSubnet(f *testing.F) {
	f.Add("192.168.1.20", "192.168.1.5/24")
	f.Add("127.0.0.1", "127.0.0.1")
	f.Add("fe80::1%eth0", "fe80::2")
	f.Add("::ffff:10.0.0.1", "10.0.0.9")
	f.Add("nonsense", "also/nonsense")
	f.Fuzz(func(t *testing.T, client, addr string) {
		onSubnet(client, []string{addr, client})
		if ip, err := netip.ParseAddr(client); err == nil && !onSubnet(client, []string{ip.String()}) {
			t.Fatalf("%s is not on its own subnet", client)
		}
	})
}

func TestOnSubnet(t *testing.T) {
	for _, c := range []struct {
		client string
		addrs  []string
		want   bool
	}{
		{"192.168.1.20", []string{"192.168.1.5/24"}, true},
		{"192.168.2.20", []string{"192.168.1.5/24"}, false},
		{"192.168.1.20", []string{"192.168.1.5"}, true}, // a bare address: its /24
		{"10.1.2.3", []string{"10.0.0.1/8"}, true},
		{"127.0.0.1", []string{"127.0.0.1/8"}, true},
		{"::ffff:192.168.1.9", []string{"192.168.1.1/24"}, true},
		{"2001:db8::5", []string{"2001:db8::1"}, true}, // its /64
		{"2001:db8:1::5", []string{"2001:db8::1"}, false},
		{"192.168.1.20", nil, false},
		{"not an ip", []string{"192.168.1.5/24"}, false},
	} {
		if got := onSubnet(c.client, c.addrs); got != c.want {
			t.Errorf("onSubnet(%s, %v) = %v, want %v", c.client, c.addrs, got, c.want)
		}
	}
}

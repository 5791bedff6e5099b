package wire

import (
	"bytes"
	"fmt"
	"strings"
	"testing"
)

// The done record's fields are the contract of issue 11.
func TestFedJSONContract(t *testing.T) {
	for _, tc := range []struct {
		name string
		v    any
		want string
	}{
		{"done", FedDone{}, "kind id swarm expected answered offline timeout registry_rev"},
		{"start", FedStart{}, "kind id swarm ambassador expected part parts registry_rev"},
		{"users", FedUsers{}, "swarm sets sent"},
	} {
		got := keys(t, tc.v)
		for _, k := range strings.Fields(tc.want) {
			if !got[k] {
				t.Errorf("%s: JSON lacks %q (has %v)", tc.name, k, got)
			}
		}
	}
}

func TestFedViaRoundTrip(t *testing.T) {
	v := FormatFedVia("NABC", "42", strings.Repeat("0", 64), "c2ln")
	h, err := ParseFedVia(v)
	if err != nil {
		t.Fatal(err)
	}
	if h[HdrFrom] != "NABC" || h[HdrSeq] != "42" || h[HdrSig] != "c2ln" || h[HdrVer] != Version {
		t.Fatalf("ParseFedVia = %v", h)
	}
	for _, bad := range []string{"", "a b c", "a b c d e", "a  c d", strings.Repeat("x", 2000)} {
		if _, err := ParseFedVia(bad); err == nil {
			t.Errorf("ParseFedVia(%q) accepted", bad)
		}
	}
	// The via payload binds the fed subject and the requester's signature.
	a := FedViaPayload("rn.fed.3.cmd.ping", "sig1")
	if bytes.Equal(a, FedViaPayload("rn.fed.3.cmd.pin", "gsig1")) || bytes.Equal(a, FedViaPayload("rn.fed.3.cmd.ping", "sig2")) {
		t.Fatal("via payloads of different commands collide")
	}
}

func TestFedUsersCheckBounds(t *testing.T) {
	u := FedUsers{Swarm: "3.12.1", Sets: make([]FedUserSet, MaxFedUserSets+1)}
	if err := u.Check(); err == nil {
		t.Fatal("too many sets accepted")
	}
	big := map[string][]byte{}
	for i := 0; i <= MaxFedUsers; i++ {
		big[fmt.Sprint("u", i)] = nil
	}
	u = FedUsers{Sets: []FedUserSet{{Founder: "U", Users: big}}}
	if err := u.Check(); err == nil {
		t.Fatal("too many users accepted")
	}
	u = FedUsers{Sets: []FedUserSet{{Founder: "U", Users: map[string][]byte{"a": []byte("x")}}}}
	if err := u.Check(); err != nil {
		t.Fatal(err)
	}
}

func FuzzDecodeFed(f *testing.F) {
	f.Add([]byte(`{"kind":"done","id":"x","swarm":"3.12.7","expected":["3.12.7.1"],"answered":1,"offline":[],"timeout":[],"registry_rev":9}`))
	f.Add([]byte(`{"kind":"start","expected":[{"chevron":"3.12.7.1","pubkey":"N","state":"alive"}],"part":1,"parts":1}`))
	f.Add([]byte(`{"swarm":"3.12.1","sets":[{"founder":"U","users":{"a":"eyJ9"}}]}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		var d FedDone
		_ = Decode(data, &d)
		var s FedStart
		_ = Decode(data, &s)
		var u FedUsers
		if Decode(data, &u) == nil {
			_ = u.Check()
		}
		_, _ = ParseFedVia(string(data))
	})
}

package trust

import (
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nkeys"

	"github.com/robonet-mesh/robonet/wire"
)

func delegationFor(t testing.TB, now time.Time) (nkeys.KeyPair, wire.Delegation) {
	t.Helper()
	user, _ := nkeys.CreateUser()
	key, _ := nkeys.CreateUser()
	node, _ := nkeys.CreateUser() // node keys are user keys
	upub, _ := user.PublicKey()
	kpub, _ := key.PublicKey()
	npub, _ := node.PublicKey()
	return user, wire.Delegation{User: upub, Key: kpub, Role: wire.RoleOperator, Node: npub, Issued: now, Expires: now.Add(time.Hour)}
}

func TestDelegationRoundTrip(t *testing.T) {
	now := time.Date(2026, 12, 7, 10, 0, 0, 123, time.FixedZone("x", 3600))
	user, d := delegationFor(t, now)
	hdr, err := SignDelegation(user, d)
	if err != nil {
		t.Fatal(err)
	}
	got, err := ParseDelegation(hdr, now.Add(time.Minute))
	if err != nil {
		t.Fatal(err)
	}
	if got.User != d.User || got.Key != d.Key || got.Role != d.Role || got.Node != d.Node || !got.Expires.Equal(d.Expires) {
		t.Fatalf("got %+v, want %+v", got, d)
	}
}

func TestDelegationRefusals(t *testing.T) {
	now := time.Date(2026, 12, 7, 10, 0, 0, 0, time.UTC)
	user, d := delegationFor(t, now)
	other, _ := nkeys.CreateUser()
	good, err := SignDelegation(user, d)
	if err != nil {
		t.Fatal(err)
	}
	body, sig, _ := strings.Cut(good, ".")
	forged, _ := SignDelegation(other, func() wire.Delegation { o := d; o.User, _ = other.PublicKey(); return o }())
	_, forgedSig, _ := strings.Cut(forged, ".")
	for _, tc := range []struct {
		name, hdr, want string
		at              time.Time
	}{
		{"expired", good, "expired", now.Add(2 * time.Hour)},
		{"from the future", good, "in the future", now.Add(-time.Hour)},
		{"another key's signature", body + "." + forgedSig, "does not verify", now},
		{"tampered body", strings.Replace(body, "A", "B", 1) + "." + sig, "", now},
		{"no dot", body, "body.signature", now},
		{"not base64", "%%." + sig, "base64url", now},
		{"too long", strings.Repeat("a", 4096), "limit", now},
		{"empty", "", "body.signature", now},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := ParseDelegation(tc.hdr, tc.at)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("ParseDelegation: %v, want an error containing %q", err, tc.want)
			}
		})
	}
	for _, tc := range []struct {
		name string
		mod  func(*wire.Delegation)
		want string
	}{
		{"role above the known ones", func(d *wire.Delegation) { d.Role = "root" }, "role"},
		{"node role", func(d *wire.Delegation) { d.Role = wire.RoleNode }, "role"},
		{"to itself", func(d *wire.Delegation) { d.Key = d.User }, "itself"},
		{"no audience", func(d *wire.Delegation) { d.Node = "" }, "node key"},
		{"too long", func(d *wire.Delegation) { d.Expires = d.Issued.Add(MaxDelegation + time.Hour) }, "limit"},
		{"ends before it starts", func(d *wire.Delegation) { d.Expires = d.Issued }, "not after"},
	} {
		t.Run("sign "+tc.name, func(t *testing.T) {
			dd := d
			tc.mod(&dd)
			if _, err := SignDelegation(user, dd); err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("SignDelegation: %v, want an error containing %q", err, tc.want)
			}
		})
	}
	if _, err := SignDelegation(other, d); err == nil {
		t.Fatal("a key signed a delegation for another user")
	}
}

func TestLowerRole(t *testing.T) {
	for _, tc := range [][3]string{
		{wire.RoleAdmin, wire.RoleObserver, wire.RoleObserver},
		{wire.RoleOperator, wire.RoleAdmin, wire.RoleOperator},
		{wire.RoleObserver, wire.RoleObserver, wire.RoleObserver},
		{wire.RoleNode, wire.RoleAdmin, ""},
		{"", wire.RoleAdmin, ""},
	} {
		if got := LowerRole(tc[0], tc[1]); got != tc[2] {
			t.Errorf("LowerRole(%q, %q) = %q, want %q", tc[0], tc[1], got, tc[2])
		}
	}
}

func FuzzParseDelegation(f *testing.F) {
	now := time.Date(2026, 12, 7, 10, 0, 0, 0, time.UTC)
	user, d := delegationFor(f, now)
	good, _ := SignDelegation(user, d)
	f.Add(good)
	f.Add("")
	f.Add("e30.AAAA")
	f.Fuzz(func(t *testing.T, hdr string) {
		got, err := ParseDelegation(hdr, now)
		if err == nil && (got.User == "" || got.Key == "" || checkDelegation(got) != nil) {
			t.Fatalf("accepted %q as %+v", hdr, got)
		}
	})
}

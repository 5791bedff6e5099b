package trust

import (
	"errors"
	"strings"
	"testing"

	"github.com/nats-io/nkeys"

	"github.com/robonet-mesh/robonet/wire"
)

func TestSignedRecordRoundTripAndBinding(t *testing.T) {
	kp, _ := nkeys.CreateUser()
	pub, _ := kp.PublicKey()
	rec := []byte(`{"name":"alice","role":"admin"}`)
	data, err := SignRecord(kp, "rn_users", "alice", rec)
	if err != nil {
		t.Fatal(err)
	}
	got, by, err := OpenRecord("rn_users", "alice", data)
	if err != nil || by != pub || string(got) != string(rec) {
		t.Fatalf("open: %s %s %v", got, by, err)
	}
	// Another key, another bucket, a changed body or signer: refused.
	for _, tt := range []struct{ bucket, key string }{{"rn_users", "bob"}, {"rn_revoked", "alice"}} {
		if _, _, err := OpenRecord(tt.bucket, tt.key, data); !errors.Is(err, ErrRecord) {
			t.Errorf("%s/%s accepted", tt.bucket, tt.key)
		}
	}
	tampered := strings.Replace(string(data), "admin", "observ", 1)
	if _, _, err := OpenRecord("rn_users", "alice", []byte(tampered)); !errors.Is(err, ErrRecord) {
		t.Error("tampered record accepted")
	}
	other, _ := nkeys.CreateUser()
	opub, _ := other.PublicKey()
	swapped := strings.Replace(string(data), pub, opub, 1)
	if _, _, err := OpenRecord("rn_users", "alice", []byte(swapped)); !errors.Is(err, ErrRecord) {
		t.Error("record with a swapped signer accepted")
	}
	for _, bad := range []string{``, `{}`, `{"name":"alice","role":"admin"}`, `{"rec":{},"by":"x","sig":"y"}`, `[1]`} {
		if _, _, err := OpenRecord("rn_users", "alice", []byte(bad)); !errors.Is(err, ErrRecord) {
			t.Errorf("%q accepted", bad)
		}
	}
}

func FuzzOpenRecord(f *testing.F) {
	kp, _ := nkeys.CreateUser()
	good, _ := SignRecord(kp, "rn_users", "a", []byte(`{"a":1}`))
	f.Add("rn_users", "a", good)
	f.Add("rn_users", "a", []byte(`{"rec":1,"by":"U","sig":"!"}`))
	f.Fuzz(func(t *testing.T, bucket, key string, data []byte) {
		rec, by, err := OpenRecord(bucket, key, data)
		if err == nil && (by == "" || len(rec) == 0) {
			t.Fatalf("accepted without signer or body: %q", data)
		}
	})
}

func TestAdminsIsAChainFromTheFounder(t *testing.T) {
	const f, a, b, c, op = "UF", "UA", "UB", "UC", "UO"
	admin := func(key, by string) UserRecord {
		return UserRecord{User: wire.User{Name: key, Role: wire.RoleAdmin, Nkey: key}, By: by}
	}
	recs := []UserRecord{
		admin(b, a), // b's record signed by a, listed before a's own
		admin(a, f),
		admin(c, op), // signed by a key that is no admin
		{User: wire.User{Name: "o", Role: wire.RoleOperator, Nkey: "UX"}, By: f},
	}
	got := Admins(f, recs)
	for key, want := range map[string]bool{f: true, a: true, b: true, c: false, op: false, "UX": false} {
		if got[key] != want {
			t.Errorf("Admins[%s] = %v, want %v", key, got[key], want)
		}
	}
	if n := len(Admins("", recs)); n != 0 {
		t.Errorf("no founder: %d admins", n)
	}
}

package trust

import (
	"bytes"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

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

func TestFedTokenRoundTrip(t *testing.T) {
	secret := bytes.Repeat([]byte{7}, SecretSize)
	pins := []string{pubOf(t, userKey(t, 1)), pubOf(t, userKey(t, 2))}
	for _, tc := range []struct {
		name string
		spec FedSpec
	}{
		{"unbound, no pins", FedSpec{Hub: chev(t, "3.1.1")}},
		{"bound", FedSpec{Hub: chev(t, "3.12.1"), Bound: chev(t, "3.12.7")}},
		{"pins", FedSpec{Hub: chev(t, "3.12.1"), Pins: pins}},
		{"max pins", FedSpec{Hub: chev(t, "65535.65535.65535"), Bound: chev(t, "65535.65535.1"),
			Pins: []string{pins[0], pins[1], pubOf(t, userKey(t, 3)), pubOf(t, userKey(t, 4))}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tok, c, err := IssueFedToken(secret, tc.spec, 15*time.Minute, t0)
			if err != nil {
				t.Fatal(err)
			}
			if !IsFedToken(tok) {
				t.Fatal("IsFedToken false for a federation token")
			}
			got, err := ParseFedToken(tok, secret)
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(c, got, cmp.Comparer(func(a, b subjects.Chevron) bool { return a == b })); diff != "" {
				t.Fatalf("claims differ (-issued +parsed):\n%s", diff)
			}
			insp, err := InspectFedToken(tok)
			if err != nil || insp.ID != c.ID || !bytes.Equal(insp.Link, FedLinkKey(secret)) {
				t.Fatalf("inspect: %+v, %v", insp, err)
			}
			if got.Hub != tc.spec.Hub || got.Bound != tc.spec.Bound || len(got.Pins) != len(tc.spec.Pins) {
				t.Fatalf("claims %+v for spec %+v", got, tc.spec)
			}
		})
	}
}

func TestFedTokenRefusals(t *testing.T) {
	secret := bytes.Repeat([]byte{7}, SecretSize)
	other := bytes.Repeat([]byte{8}, SecretSize)
	tok, _, err := IssueFedToken(secret, FedSpec{Hub: chev(t, "3.12.1"), Bound: chev(t, "3.12.7")}, time.Hour, t0)
	if err != nil {
		t.Fatal(err)
	}
	join, _, err := IssueToken(secret, time.Hour, t0)
	if err != nil {
		t.Fatal(err)
	}
	flip := []byte(tok)
	if i := len(TokenPrefix) + 30; flip[i] == 'A' {
		flip[i] = 'B'
	} else {
		flip[i] = 'A'
	}
	for _, tc := range []struct {
		name, tok string
		secret    []byte
		want      error
	}{
		{"other swarm's secret", tok, other, ErrTokenMAC},
		{"altered", string(flip), secret, ErrTokenMAC},
		{"a join token", join, secret, ErrFedToken},
		{"no prefix", strings.TrimPrefix(tok, TokenPrefix), secret, ErrFedToken},
		{"truncated", tok[:len(tok)-4], secret, ErrFedToken},
		{"trailing", tok + "AAAA", secret, ErrFedToken},
		{"newline", tok[:40] + "\n" + tok[40:], secret, ErrFedToken},
		{"short secret", tok, secret[:5], ErrSecret},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := ParseFedToken(tc.tok, tc.secret); !errors.Is(err, tc.want) {
				t.Fatalf("err %v, want %v", err, tc.want)
			}
		})
	}
	if IsFedToken(join) {
		t.Fatal("a join token reads as a federation token")
	}
	if _, err := ParseToken(tok, secret, t0); err == nil {
		t.Fatal("a federation token parses as a join token")
	}
}

func TestFedTokenFirstUse(t *testing.T) {
	secret := bytes.Repeat([]byte{7}, SecretSize)
	for _, tc := range []struct {
		name  string
		bound string
		child string
		at    time.Duration
		want  error
	}{
		{"unbound before expiry", "", "3.12.7", time.Minute, nil},
		{"bound, its prefix", "3.12.7", "3.12.7", time.Minute, nil},
		{"bound, another prefix", "3.12.7", "3.12.8", time.Minute, ErrFedBound},
		{"at expiry", "", "3.12.7", time.Hour, ErrFedExpired},
		{"after expiry", "3.12.7", "3.12.7", 2 * time.Hour, ErrFedExpired},
	} {
		t.Run(tc.name, func(t *testing.T) {
			spec := FedSpec{Hub: chev(t, "3.12.1")}
			if tc.bound != "" {
				spec.Bound = chev(t, tc.bound)
			}
			_, c, err := IssueFedToken(secret, spec, time.Hour, t0)
			if err != nil {
				t.Fatal(err)
			}
			err = c.CheckFirstUse(chev(t, tc.child), t0.Add(tc.at))
			if tc.want == nil && err != nil || tc.want != nil && !errors.Is(err, tc.want) {
				t.Fatalf("err %v, want %v", err, tc.want)
			}
		})
	}
}

func TestIssueFedTokenRefusesBadSpecs(t *testing.T) {
	secret := bytes.Repeat([]byte{7}, SecretSize)
	pin := pubOf(t, userKey(t, 1))
	five := []string{pin, pubOf(t, userKey(t, 2)), pubOf(t, userKey(t, 3)), pubOf(t, userKey(t, 4)), pubOf(t, userKey(t, 5))}
	for _, tc := range []struct {
		name string
		spec FedSpec
		ttl  time.Duration
	}{
		{"hub of 2 tokens", FedSpec{Hub: chev(t, "3.12")}, time.Hour},
		{"child of 4 tokens", FedSpec{Hub: chev(t, "3.12.1"), Bound: chev(t, "3.12.7.1")}, time.Hour},
		{"too many pins", FedSpec{Hub: chev(t, "3.12.1"), Pins: five}, time.Hour},
		{"duplicate pin", FedSpec{Hub: chev(t, "3.12.1"), Pins: []string{pin, pin}}, time.Hour},
		{"server key pin", FedSpec{Hub: chev(t, "3.12.1"), Pins: []string{"N" + pin[1:]}}, time.Hour},
		{"zero ttl", FedSpec{Hub: chev(t, "3.12.1")}, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if tok, _, err := IssueFedToken(secret, tc.spec, tc.ttl, t0); err == nil {
				t.Fatalf("issued %s", tok)
			}
		})
	}
}

func FuzzParseFedToken(f *testing.F) {
	secret := bytes.Repeat([]byte{0x5a}, SecretSize)
	for _, spec := range []FedSpec{
		{Hub: chev(f, "3.12.1")},
		{Hub: chev(f, "3.12.1"), Bound: chev(f, "3.12.7"), Pins: []string{pubOf(f, userKey(f, 1))}},
	} {
		tok, _, err := IssueFedToken(secret, spec, time.Hour, t0)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(tok)
		f.Add(tok[:len(tok)-1])
		f.Add(tok[:len(TokenPrefix)+20])
	}
	f.Add(TokenPrefix + "Aw")
	f.Add("")
	f.Fuzz(func(t *testing.T, s string) {
		c, err := ParseFedToken(s, secret)
		ic, ierr := InspectFedToken(s)
		if err != nil {
			if !errors.Is(err, ErrFedToken) && !errors.Is(err, ErrTokenMAC) && !errors.Is(err, subjects.ErrChevron) {
				t.Fatalf("unexpected error kind: %v", err)
			}
			if len(err.Error()) > 300 {
				t.Fatalf("error message of %d bytes", len(err.Error()))
			}
			return
		}
		if ierr != nil || ic.ID != c.ID {
			t.Fatalf("parses but does not inspect the same: %v", ierr)
		}
		if !IsFedToken(s) || c.Hub.Len() != 3 || (!c.Bound.IsZero() && c.Bound.Len() != 3) || len(c.Pins) > MaxFedPins ||
			!c.Expires.After(c.Issued) || len(c.Link) != 32 {
			t.Fatalf("invariant broken: %+v", c)
		}
	})
}

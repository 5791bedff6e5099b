package wire

import (
	"encoding/json"
	"errors"
	"strings"
	"testing"
)

// keys returns the JSON object keys v encodes to.
func keys(t *testing.T, v any) map[string]bool {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	var m map[string]any
	if err := json.Unmarshal(b, &m); err != nil {
		t.Fatal(err)
	}
	out := map[string]bool{}
	for k := range m {
		out[k] = true
	}
	return out
}

// The field names the issues promise to scripts outside the repo.
func TestJSONContract(t *testing.T) {
	for _, tc := range []struct {
		name string
		v    any
		want string
	}{
		{"nodes --json row", Member{}, "chevron name pubkey state leader caps tags load version started"},
		{"status --json", Status{}, "swarm chevron leader members meta_leader"},
		{"heartbeat", Heartbeat{}, "chevron name pubkey seq sent started load leader version"},
		{"command request", Request{}, "verb id"},
		{"command result", Result{Status: StatusOK}, "status ms"},
		{"event", Event{}, "kind chevron time"},
	} {
		got := keys(t, tc.v)
		for _, k := range strings.Fields(tc.want) {
			if !got[k] {
				t.Errorf("%s: JSON lacks %q (has %v)", tc.name, k, got)
			}
		}
	}
}

func TestDecodeRefusesOversizeAndGarbage(t *testing.T) {
	var hb Heartbeat
	if err := Decode(make([]byte, MaxMessage+1), &hb); !errors.Is(err, ErrTooLarge) {
		t.Fatalf("oversize: %v", err)
	}
	for _, bad := range []string{"", "{", "[]", `{"seq":"x"}`, `{"chevron":1}`} {
		if err := Decode([]byte(bad), &hb); err == nil {
			t.Errorf("Decode(%q) accepted", bad)
		}
	}
	if err := Decode([]byte(`{"chevron":"3.12","seq":7}`), &hb); err != nil || hb.Seq != 7 {
		t.Fatalf("valid heartbeat: %v %+v", err, hb)
	}
}

func FuzzDecodeHeartbeat(f *testing.F) {
	f.Add([]byte(`{"chevron":"1","name":"rn1","pubkey":"U","seq":1,"load":0.5}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		var hb Heartbeat
		_ = Decode(data, &hb) // must not panic; errors are the caller's to handle
		var r Result
		_ = Decode(data, &r)
	})
}

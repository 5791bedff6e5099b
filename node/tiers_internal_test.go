package node

import (
	"slices"
	"testing"
	"time"

	"github.com/robonet-mesh/robonet/wire"
)

// tierOf takes the lower median of this node's word and the live views,
// never a key's view of itself, and 0 for a key banned here whatever the
// others say.
func TestTierOfIsTheLowerMedianOfTheSwarmsViews(t *testing.T) {
	const a, b, c, d = "NA", "NB", "NC", "ND" // d is this node
	view := func(pub string, tiers map[string]int) tierView { return tierView{pub: pub, tiers: tiers} }
	for _, tc := range []struct {
		name   string
		pub    string
		own    judgement
		banned []string // reporters banned here
		views  []tierView
		want   int
	}{
		{"nobody judged it", a, judgement{vote: true}, nil, nil, 0},
		{"only this node's word", a, judgement{tier: 2, vote: true}, nil, nil, 2},
		{"banned here beats every view", a, judgement{tier: 3, vote: true, banned: true}, nil,
			[]tierView{view(b, map[string]int{a: 3}), view(c, map[string]int{a: 3})}, 0},
		{"one member cannot sink a key", a, judgement{tier: 3, vote: true}, nil,
			[]tierView{view(b, map[string]int{a: 0}), view(c, map[string]int{a: 3})}, 3},
		{"one member cannot raise a key", a, judgement{tier: 0, vote: true}, nil,
			[]tierView{view(b, map[string]int{a: 3}), view(c, map[string]int{a: 0})}, 0},
		{"two words: the lower counts", a, judgement{tier: 3, vote: true}, nil,
			[]tierView{view(b, map[string]int{a: 1})}, 1},
		{"its own view of itself does not count", a, judgement{tier: 1, vote: true}, nil,
			[]tierView{view(a, map[string]int{a: 3}), view(b, map[string]int{a: 1})}, 1},
		{"this node is judged by the others only", d, judgement{}, nil,
			[]tierView{view(b, map[string]int{d: 2}), view(c, map[string]int{d: 3})}, 2},
		{"this node, judged by nobody yet", d, judgement{}, nil, nil, 0},
		{"a banned reporter's view does not count", a, judgement{tier: 1, vote: true}, []string{b},
			[]tierView{view(b, map[string]int{a: 3}), view(c, map[string]int{a: 1})}, 1},
		{"a view without the key is no vote", a, judgement{tier: 2, vote: true}, nil,
			[]tierView{view(b, map[string]int{c: 0})}, 2},
		{"an empty key is tier 0", "", judgement{tier: 3, vote: true}, nil, nil, 0},
	} {
		word := func(pub string) judgement {
			if pub == tc.pub {
				return tc.own
			}
			if slices.Contains(tc.banned, pub) {
				return judgement{banned: true}
			}
			return judgement{tier: 2, vote: true}
		}
		if got := tierOf(tc.pub, word, tc.views); got != tc.want {
			t.Errorf("%s: tier %d, want %d", tc.name, got, tc.want)
		}
	}
}

// The registry gives each member its tier from the views of members alive
// now; a view older than viewMaxAge, or from a member gone offline, is no
// vote.
func TestRegistryTiersCountLiveFreshViewsOnly(t *testing.T) {
	t0 := time.Unix(1000, 0)
	r := newRegistry(DefaultTiming(), false)
	r.setJudge(func(pub string) judgement {
		if pub == "N1" {
			return judgement{} // this node's own key
		}
		return judgement{tier: 3, vote: true}
	})
	beat := func(chev, pub string, seq uint64, at time.Time) {
		r.onHeartbeat(wire.Heartbeat{Chevron: chev, Pubkey: pub, Name: "rn" + chev, Started: t0, Seq: seq}, at)
	}
	beat("2", "N2", 1, t0)
	beat("3", "N3", 1, t0)
	r.onTierView("2", "N2", map[string]int{"N1": 2, "N3": 1}, t0)
	r.onTierView("3", "N3", map[string]int{"N1": 3, "N2": 3}, t0)
	self := wire.Member{Chevron: "1", Pubkey: "N1", State: wire.StateAlive}
	tiers := func(at time.Time) map[string]int {
		out := map[string]int{}
		for _, m := range r.members(at, self) {
			out[m.Chevron] = m.Tier
		}
		return out
	}
	// 1: views 2 and 3 → 2; 2: own 3, view 3 → 3; 3: own 3, view 1 → 1.
	if got, want := tiers(t0), map[string]int{"1": 2, "2": 3, "3": 1}; !mapsEqual(got, want) {
		t.Fatalf("tiers %v, want %v", got, want)
	}
	// Member 3 goes offline (no heartbeat for 3 s): its view no longer counts.
	at := t0.Add(3 * time.Second)
	beat("2", "N2", 2, at)
	if got, want := tiers(at), map[string]int{"1": 2, "2": 3, "3": 1}; !mapsEqual(got, want) {
		t.Fatalf("after 3 went offline: tiers %v, want %v", got, want)
	}
	r.onTierView("3", "N3", map[string]int{"N1": 3, "N2": 0}, at) // an offline member's word
	if got := tiers(at)["2"]; got != 3 {
		t.Errorf("an offline member's view counted: tier of 2 is %d, want 3", got)
	}
	// Member 2 stays alive but stops publishing views: after viewMaxAge
	// this node has no word on itself but 2's stale one, which is ignored.
	later := t0.Add(viewMaxAge + time.Second)
	beat("2", "N2", 3, later)
	if got := tiers(later)["1"]; got != 0 {
		t.Errorf("a stale view counted: own tier %d, want 0", got)
	}
	r.forget(at.Add(viewMaxAge+time.Second), time.Hour)
	r.mu.Lock()
	n := len(r.views)
	r.mu.Unlock()
	if n != 0 {
		t.Errorf("%d stale views kept after forget", n)
	}
}

func mapsEqual(a, b map[string]int) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if w, ok := b[k]; !ok || w != v {
			return false
		}
	}
	return true
}

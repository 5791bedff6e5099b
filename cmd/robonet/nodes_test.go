package main

import (
	"testing"
	"time"

	"github.com/robonet-mesh/robonet/wire"
)

func TestDiffMembers(t *testing.T) {
	now := time.Now()
	prev := []wire.Member{{Chevron: "1", State: "alive", Leader: true}, {Chevron: "2", State: "alive"}, {Chevron: "3", State: "alive"}}
	cur := []wire.Member{{Chevron: "1", State: "alive"}, {Chevron: "2", State: "offline", Leader: false}, {Chevron: "4", State: "alive", Leader: true}}
	got := map[string]string{}
	for _, c := range diffMembers(prev, cur, now) {
		got[c.Node.Chevron+":"+c.Change] = c.Was
	}
	for _, want := range []string{"2:leave", "3:leave", "4:join"} {
		if _, ok := got[want]; !ok {
			t.Errorf("missing %s in %v", want, got)
		}
	}
	if len(got) != 3 {
		t.Errorf("changes = %v", got)
	}
	// A node coming back is a join; a new leader among known nodes is reported.
	again := diffMembers(cur, []wire.Member{{Chevron: "1", State: "alive", Leader: true}, {Chevron: "2", State: "alive"}, {Chevron: "4", State: "alive"}}, now)
	kinds := map[string]bool{}
	for _, c := range again {
		kinds[c.Node.Chevron+":"+c.Change] = true
	}
	if !kinds["2:join"] || !kinds["1:leader"] || len(again) != 2 {
		t.Errorf("changes = %v", kinds)
	}
	// A promoted edge is a role change; a node without a role is core.
	roles := diffMembers([]wire.Member{{Chevron: "7", State: "alive", Role: "edge"}, {Chevron: "8", State: "alive"}},
		[]wire.Member{{Chevron: "7", State: "alive", Role: "core"}, {Chevron: "8", State: "alive", Role: "core"}}, now)
	if len(roles) != 1 || roles[0].Change != "role" || roles[0].Was != "edge" || roles[0].Node.Chevron != "7" {
		t.Errorf("role changes = %+v", roles)
	}
}

package node

import (
	"slices"
	"testing"

	"github.com/robonet-mesh/robonet/wire"
)

// On an edge an operator's JetStream rights hold through the core's
// domain too, and nothing else is added.
func TestInDomainAddsTheDomainFormOfJetStreamRights(t *testing.T) {
	p := inDomain(Permissions(wire.RoleOperator, "UKEY", nil), "rn-robonet")
	allow := p.Publish.Allow
	for _, want := range []string{"$JS.API.STREAM.INFO.KV_" + BucketMacros, "$JS.rn-robonet.API.STREAM.INFO.KV_" + BucketMacros,
		"$KV." + BucketMacros + ".>", "$JS.rn-robonet.API.$KV." + BucketMacros + ".>"} {
		if !slices.Contains(allow, want) {
			t.Errorf("operator on an edge lacks %s", want)
		}
	}
	for _, a := range allow {
		if a == ">" || a == "$JS.rn-robonet.API.>" {
			t.Errorf("operator on an edge may publish %s", a)
		}
	}
	if obs := inDomain(Permissions(wire.RoleObserver, "UKEY", nil), "rn-robonet"); slices.ContainsFunc(obs.Publish.Allow, func(a string) bool { return len(a) > 3 && a[:4] == "$JS." }) {
		t.Errorf("an observer gains JetStream rights on an edge: %v", obs.Publish.Allow)
	}
}

package main

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/robonet-mesh/robonet/internal/testmesh"
	"github.com/robonet-mesh/robonet/node"
	"github.com/robonet-mesh/robonet/trust"
)

// token create --federate on a single-node hub swarm, as an admin types it,
// and the flag combinations it refuses.
func TestFedTokenCreate(t *testing.T) {
	hub := testmesh.StartSwarm(t, 1, "3.12.1", testmesh.AsHub())
	nd := hub.Node(0)
	base := []string{"--server", nd.ClientURL(), "--nkey", nd.OperatorSeedPath(), "--data", nd.DataDir()}
	out, errOut, err := rncli(t, append([]string{"token", "create", "--federate", "--ttl", "15m", "--prefix", "3.12.7", "--json"}, base...)...)
	if err != nil {
		t.Fatalf("%v (%s)", err, errOut)
	}
	var tr node.TokenReply
	if err := json.Unmarshal([]byte(out), &tr); err != nil || !tr.Federate || tr.Hub != "3.12.1" || tr.Prefix != "3.12.7" {
		t.Fatalf("token create --federate --json = %s (%v)", out, err)
	}
	c, err := trust.InspectFedToken(tr.Token)
	if err != nil || c.Hub.String() != "3.12.1" || c.Bound.String() != "3.12.7" || len(c.Pins) != 1 || c.Pins[0] != nd.Founder() {
		t.Fatalf("claims %+v, %v; want hub 3.12.1, bound 3.12.7, pinned founder %s", c, err, nd.Founder())
	}
	out, errOut, err = rncli(t, append([]string{"token", "create", "--federate"}, base...)...)
	if err != nil || !trust.IsFedToken(strings.TrimSpace(out)) || !strings.Contains(errOut, "--federate-token-file") {
		t.Fatalf("unbound: %q, %q, %v", out, errOut, err)
	}
	for _, tc := range []struct {
		args []string
		says string
	}{
		{[]string{"--federate", "--for", "UABC"}, "--for binds a join token"},
		{[]string{"--prefix", "3.12.7"}, "needs --federate"},
		{[]string{"--federate", "--prefix", "3.12"}, "want a swarm prefix"},
		{[]string{"--federate", "--prefix", "4.1.1"}, "outside this hub's scope"},
		{[]string{"--federate", "--prefix", "3.12.1"}, "own swarm"},
	} {
		if _, _, err := rncli(t, append(append([]string{"token", "create"}, tc.args...), base...)...); err == nil || !strings.Contains(err.Error(), tc.says) {
			t.Errorf("token create %v: %v; want an error saying %q", tc.args, err, tc.says)
		}
	}

	// A swarm that is not a hub issues no federation token.
	plain := testmesh.StartSwarm(t, 1, "3.12.7")
	pn := plain.Node(0)
	pbase := []string{"--server", pn.ClientURL(), "--nkey", pn.OperatorSeedPath(), "--data", pn.DataDir()}
	if _, _, err := rncli(t, append([]string{"token", "create", "--federate"}, pbase...)...); err == nil || !strings.Contains(err.Error(), "does not accept child swarms") {
		t.Fatalf("token create --federate on a non-hub: %v", err)
	}
}

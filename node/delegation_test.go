package node_test

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nkeys"

	"github.com/robonet-mesh/robonet/internal/testmesh"
	"github.com/robonet-mesh/robonet/mesh"
	"github.com/robonet-mesh/robonet/trust"
	"github.com/robonet-mesh/robonet/wire"
)

// session returns a client that signs as a new key delegated by user's key
// with role (as a gateway session does), over user's connection.
func session(t *testing.T, user *mesh.Client, node, role string) *mesh.Client {
	t.Helper()
	kp, err := nkeys.CreateUser()
	if err != nil {
		t.Fatal(err)
	}
	key, _ := kp.PublicKey()
	upub, _ := user.KeyPair().PublicKey()
	now := time.Now()
	hdr, err := trust.SignDelegation(user.KeyPair(), wire.Delegation{User: upub, Key: key, Role: role, Node: node, Issued: now, Expires: now.Add(time.Hour)})
	if err != nil {
		t.Fatal(err)
	}
	s, err := mesh.NewSessionSigner(kp, hdr)
	if err != nil {
		t.Fatal(err)
	}
	return mesh.NewClient(user.Conn()).WithSigner(s)
}

// runOne runs verb with args on every node and returns the first result's
// status and error.
func runOne(ctx context.Context, c *mesh.Client, verb, args string) (string, string, error) {
	res, err := c.Gather(ctx, mesh.GatherRequest{Selector: "all", Verb: verb, Args: []byte(args), Timeout: 5 * time.Second}, nil)
	if err != nil {
		return "", "", err
	}
	for _, r := range res.Results {
		if r.Status != res.Results[0].Status {
			return "", "", fmt.Errorf("mixed results: %+v", res.Results)
		}
	}
	return res.Results[0].Status, res.Results[0].Error, nil
}

// A key a user delegated (a gateway session) may do what the lower of the
// delegated role and the user's own role may, no more; never a dangerous
// command; and nothing once the user is revoked.
func TestDelegatedKeyActsWithTheLowerRole(t *testing.T) {
	s := testmesh.Start(t, 2)
	s.WaitAlive(30 * time.Second)
	ctx := context.Background()
	gw := s.Node(1).Pubkey()
	olga := s.User(1, "olga", wire.RoleOperator)
	otto := s.User(1, "otto", wire.RoleObserver)
	setArgs := `{"op":"set","key":"motd","value":"hi"}`

	for _, tc := range []struct {
		name     string
		c        *mesh.Client
		ping     string
		set      string
		errMatch string
	}{
		{"operator as operator", session(t, olga, gw, wire.RoleOperator), mesh.StatusOK, mesh.StatusOK, ""},
		{"operator as observer", session(t, olga, gw, wire.RoleObserver), mesh.StatusOK, mesh.StatusDenied, "needs trust tier 2"},
		// Carried by an operator's connection (as a gateway's carries every
		// session's), so that the node, not the connection, refuses it.
		{"observer asking admin", mesh.NewClient(olga.Conn()).WithSigner(session(t, otto, gw, wire.RoleAdmin).Signer()), mesh.StatusOK, mesh.StatusDenied, "needs trust tier 2"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := tc.c.Nodes(ctx); err != nil {
				t.Fatalf("nodes query: %v", err)
			}
			testmesh.CheckFor(t, 10*time.Second, 100*time.Millisecond, func() error {
				st, msg, err := runOne(ctx, tc.c, "ping", `{}`)
				if err != nil || st != tc.ping {
					return fmt.Errorf("ping: %s %s %v", st, msg, err)
				}
				return nil
			})
			testmesh.CheckFor(t, 10*time.Second, 100*time.Millisecond, func() error {
				st, msg, err := runOne(ctx, tc.c, "config", setArgs)
				if err != nil || st != tc.set || !strings.Contains(msg, tc.errMatch) {
					return fmt.Errorf("config set: %s %q %v, want %s with %q", st, msg, err, tc.set, tc.errMatch)
				}
				return nil
			})
		})
	}

	t.Run("dangerous stays with the CLI", func(t *testing.T) {
		admin := session(t, s.Client(0), gw, wire.RoleAdmin)
		testmesh.CheckFor(t, 10*time.Second, 100*time.Millisecond, func() error {
			st, msg, err := runOne(ctx, admin, "exec", `{"argv":["/bin/true"]}`)
			if err != nil || st != mesh.StatusDenied || !strings.Contains(msg, "delegated key") {
				return fmt.Errorf("exec by an admin's session: %s %q %v, want denied naming the delegated key", st, msg, err)
			}
			return nil
		})
	})

	t.Run("no delegation", func(t *testing.T) {
		kp, _ := nkeys.CreateUser()
		bare, err := mesh.NewSessionSigner(kp, "")
		if err != nil {
			t.Fatal(err)
		}
		c := mesh.NewClient(olga.Conn()).WithSigner(bare)
		if _, err := c.Nodes(ctx); err == nil || !strings.Contains(err.Error(), "not a user or node") {
			t.Fatalf("nodes query by a bare key: %v", err)
		}
	})

	t.Run("revoked user", func(t *testing.T) {
		c := session(t, olga, gw, wire.RoleOperator)
		if _, err := c.Nodes(ctx); err != nil {
			t.Fatal(err)
		}
		ids, err := s.Client(0).Identities(ctx)
		if err != nil {
			t.Fatal(err)
		}
		opub, _ := olga.KeyPair().PublicKey()
		if err := ids.Revoke(ctx, opub, "", "test", "", time.Now()); err != nil {
			t.Fatal(err)
		}
		testmesh.CheckFor(t, 20*time.Second, 100*time.Millisecond, func() error {
			// olga's connection is cut by the revocation; a session of
			// hers rides another connection.
			c2 := session(t, olga, gw, wire.RoleOperator)
			c2 = mesh.NewClient(otto.Conn()).WithSigner(c2.Signer())
			if _, err := c2.Nodes(ctx); err == nil || !strings.Contains(err.Error(), "not a user of this swarm") {
				return fmt.Errorf("a revoked user's session: %v", err)
			}
			return nil
		})
	})
}

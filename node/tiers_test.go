package node_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"path/filepath"
	"slices"
	"sort"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/robonet-mesh/robonet/internal/testmesh"
	"github.com/robonet-mesh/robonet/mesh"
	"github.com/robonet-mesh/robonet/node"
	"github.com/robonet-mesh/robonet/subjects"
	"github.com/robonet-mesh/robonet/trust"
	"github.com/robonet-mesh/robonet/wire"
)

// quickTiers makes tiers rise in test time: the chain-length factor is
// full after a few heartbeats and the age factor crosses Tier2 (0.5) about
// 5.5 s after a key is first heard. Tier 3 needs a score of exactly 1,
// which takes minutes: tiers settle at 2 within a test.
func quickTiers(_ int, o *node.Options) {
	o.Trust = trust.Config{ChainScale: 1, AgeScale: 8 * time.Second, Tier3: 1}
}

// tiersOf asks the node c is connected to for the registry (the raw JSON
// `robonet nodes --json` prints) and returns each chevron's tier; every
// member must carry the field.
func tiersOf(ctx context.Context, c *mesh.Client) (map[string]int, error) {
	var raw []map[string]json.RawMessage
	if err := c.Query(ctx, subjects.QueryNodes, nil, &raw); err != nil {
		return nil, err
	}
	out := map[string]int{}
	for _, m := range raw {
		var chev string
		var tier int
		if err := json.Unmarshal(m["chevron"], &chev); err != nil {
			return nil, fmt.Errorf("member without chevron: %v", m)
		}
		if m["tier"] == nil || json.Unmarshal(m["tier"], &tier) != nil {
			return nil, fmt.Errorf("member %s has no tier field: %v", chev, m)
		}
		out[chev] = tier
	}
	return out, nil
}

// atLeast lists the chevrons whose tier is n or more, sorted.
func atLeast(tiers map[string]int, n int) []string {
	var out []string
	for c, t := range tiers {
		if t >= n {
			out = append(out, c)
		}
	}
	sort.Strings(out)
	return out
}

// selected runs ping on sel and returns the chevrons it went to; every one
// must have answered ok, none unexpectedly.
func selected(ctx context.Context, c *mesh.Client, sel string) ([]string, error) {
	res, err := c.Gather(ctx, mesh.GatherRequest{Selector: sel, Verb: "ping", Timeout: 5 * time.Second}, nil)
	if err != nil {
		return nil, err
	}
	var out []string
	for _, r := range res.Results {
		if r.Status != mesh.StatusOK || r.Unexpected {
			return nil, fmt.Errorf("%s on %s: %+v", sel, r.Chevron, r)
		}
		out = append(out, r.Chevron)
	}
	sort.Strings(out)
	return out, nil
}

// Tiers rise as the members' ledgers hear each other's chains, show in
// nodes --json as "tier", and trust>=N selects exactly the nodes at tier N
// or above: a node that just joined is left out until the swarm trusts it.
func TestTrustSelectorSelectsByTheSwarmsTiers(t *testing.T) {
	s := testmesh.Start(t, 3, quickTiers)
	s.WaitAlive(30 * time.Second)
	c := s.Client(0)
	ctx := context.Background()

	// Every member rises to tier 2 and no further (quickTiers).
	seen := map[int]bool{}
	testmesh.CheckFor(t, 60*time.Second, 100*time.Millisecond, func() error {
		tiers, err := tiersOf(ctx, c)
		if err != nil {
			return err
		}
		for chev, tr := range tiers {
			seen[tr] = true
			if tr > 2 {
				t.Fatalf("%s at tier %d: quickTiers cannot reach 3 in a test", chev, tr)
			}
		}
		if got := atLeast(tiers, 2); len(tiers) != 3 || len(got) != 3 {
			return fmt.Errorf("tiers %v", tiers)
		}
		return nil
	})
	t.Logf("tiers seen while rising: %v", seen)
	if got, err := selected(ctx, c, "trust>=2"); err != nil || !slices.Equal(got, []string{"1", "2", "3"}) {
		t.Fatalf("trust>=2 selected %v (%v), want every member", got, err)
	}
	if _, err := c.Gather(ctx, mesh.GatherRequest{Selector: "trust>=3", Verb: "ping"}, nil); !errors.Is(err, mesh.ErrNoMatch) {
		t.Fatalf("trust>=3: %v, want no match", err)
	}

	// A fourth node starts at 0 in every ledger. While it is below 2,
	// trust>=2 and trust>=1 each select exactly the nodes the registry puts
	// at or above that tier (read before and after the gather, equal).
	late := s.Add(quickTiers).Chevron().String()
	for _, n := range []int{2, 1} {
		sel := fmt.Sprintf("trust>=%d", n)
		testmesh.CheckFor(t, 30*time.Second, 20*time.Millisecond, func() error {
			before, err := tiersOf(ctx, c)
			if err != nil {
				return err
			}
			if before[late] >= n {
				if n == 2 {
					t.Fatalf("%s reached tier 2 before it was checked: %v", late, before)
				}
				return nil // tier 1 came at once: nothing below it to leave out
			}
			got, err := selected(ctx, c, sel)
			if err != nil {
				return err
			}
			after, err := tiersOf(ctx, c)
			if err != nil {
				return err
			}
			if fmt.Sprint(before) != fmt.Sprint(after) || len(before) != 4 {
				return fmt.Errorf("tiers moved during the gather: %v then %v", before, after)
			}
			if want := atLeast(before, n); !slices.Equal(got, want) || slices.Contains(got, late) {
				t.Fatalf("%s selected %v; tiers %v, want %v", sel, got, before, want)
			}
			t.Logf("%s with tiers %v selected %v", sel, before, got)
			return nil
		})
	}
	// It earns tier 2 in time and is selected then.
	testmesh.CheckFor(t, 30*time.Second, 100*time.Millisecond, func() error {
		got, err := selected(ctx, c, "trust>=2")
		if err != nil {
			return err
		}
		if len(got) != 4 || !slices.Contains(got, late) {
			return fmt.Errorf("trust>=2 selected %v", got)
		}
		return nil
	})
}

// forkNodeKey publishes, with a copy of node i's key, a heartbeat that
// takes the seq its real next heartbeat will use: a fork. It returns when
// it published it.
func forkNodeKey(t *testing.T, s *testmesh.Swarm, i int) (published time.Time) {
	t.Helper()
	victim := s.Node(i)
	kp, err := mesh.ReadSeed(filepath.Join(victim.DataDir(), node.NodeSeedFile))
	if err != nil {
		t.Fatal(err)
	}
	nc := s.Client(0).Conn() // the admin's connection may publish anywhere
	subj := subjects.Event(victim.Chevron(), subjects.EvtHeartbeat)
	sub, err := nc.SubscribeSync(subj)
	if err != nil {
		t.Fatal(err)
	}
	defer sub.Unsubscribe()
	m, err := sub.NextMsg(10 * time.Second)
	if err != nil {
		t.Fatal(err)
	}
	h, err := mesh.ParseSigned(m)
	if err != nil {
		t.Fatal(err)
	}
	clone, err := trust.NewChain(kp, trust.ChainState{Seq: h.Seq, Head: trust.ChainHash(h.Prev, h.Seq, m.Subject, m.Data)})
	if err != nil {
		t.Fatal(err)
	}
	var hb wire.Heartbeat
	if err := json.Unmarshal(m.Data, &hb); err != nil {
		t.Fatal(err)
	}
	hb.Seq++
	hb.Sent = time.Now().UTC()
	data, _ := json.Marshal(hb)
	ch, err := clone.Sign(subj, data)
	if err != nil {
		t.Fatal(err)
	}
	forged := &nats.Msg{Subject: subj, Data: data, Header: nats.Header{}}
	ch.SetInto(forged.Header)
	published = time.Now()
	if err := nc.PublishMsg(forged); err != nil {
		t.Fatal(err)
	}
	return published
}

// A node whose key forks its chain shows tier 0 the moment a member knows:
// every registry read on node 0 after its ledger quarantined the key gives
// tier 0, and trust>=1 leaves the node out, while the others keep theirs.
func TestBrokenChainShowsTierZeroAtOnce(t *testing.T) {
	s := testmesh.Start(t, 3, quickTiers)
	s.WaitAlive(30 * time.Second)
	c := s.Client(0)
	ctx := context.Background()
	testmesh.CheckFor(t, 60*time.Second, 100*time.Millisecond, func() error {
		tiers, err := tiersOf(ctx, c)
		if err != nil {
			return err
		}
		if len(atLeast(tiers, 2)) != 3 {
			return fmt.Errorf("tiers %v", tiers)
		}
		return nil
	})
	victim := s.Node(2)
	vpub, vchev := victim.Pubkey(), victim.Chevron().String()
	quarantined := func() bool {
		for _, p := range s.Node(0).TrustReport(time.Now()).Peers {
			if p.Key == vpub && p.State == trust.Quarantined {
				return true
			}
		}
		return false
	}
	started := time.Now()
	forkNodeKey(t, s, 2)
	var reads int
	testmesh.CheckFor(t, 30*time.Second, 5*time.Millisecond, func() error {
		known := quarantined()
		for _, m := range s.Node(0).Members() {
			if m.Pubkey == vpub && m.Tier != 0 && known {
				t.Fatalf("node 0 quarantined %s, yet its registry gives it tier %d", vchev, m.Tier)
			}
		}
		if !known {
			return errors.New("not quarantined on node 0 yet")
		}
		reads++
		return nil
	})
	t.Logf("fork published -> quarantined on node 0 in %v", time.Since(started).Round(time.Millisecond))
	// Through the query the CLI uses; the revocation that follows the
	// fork makes the servers reload, which costs connected clients one
	// reconnect (node/auth.go applyAuth), so the first answer is awaited.
	others := []string{s.Node(0).Chevron().String(), s.Node(1).Chevron().String()}
	sort.Strings(others)
	testmesh.CheckFor(t, 10*time.Second, 50*time.Millisecond, func() error {
		tiers, err := tiersOf(ctx, c)
		if err != nil {
			return err
		}
		if tiers[vchev] != 0 || tiers[others[0]] != 2 || tiers[others[1]] != 2 {
			t.Fatalf("after the fork: tiers %v, want %s at 0 and the others at 2", tiers, vchev)
		}
		return nil
	})
	testmesh.CheckFor(t, 10*time.Second, 100*time.Millisecond, func() error {
		got, err := selected(ctx, c, "trust>=1")
		if err != nil {
			return err
		}
		if !slices.Equal(got, others) {
			return fmt.Errorf("trust>=1 selected %v, want %v", got, others)
		}
		return nil
	})
}

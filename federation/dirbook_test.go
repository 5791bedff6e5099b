package federation

import (
	"errors"
	"testing"
	"time"

	"github.com/nats-io/nkeys"

	"github.com/robonet-mesh/robonet/subjects"
	"github.com/robonet-mesh/robonet/wire"
)

func userKey(t *testing.T) string {
	t.Helper()
	kp, err := nkeys.CreateUser()
	if err != nil {
		t.Fatal(err)
	}
	pub, _ := kp.PublicKey()
	return pub
}

func prefix(t *testing.T, s string) subjects.Chevron {
	t.Helper()
	p, err := subjects.ParseSwarmPrefix(s)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// sum is a valid summary for swarm p led by p.1 with key, sent at sent.
func sum(t *testing.T, p, key string, token uint64, sent time.Time) wire.DirSummary {
	t.Helper()
	dom, _ := subjects.SwarmDomain(prefix(t, p))
	return wire.DirSummary{Prefix: p, Domain: dom, Parent: "3.12.1", Leader: p + ".1", LeaderKey: key, Token: token,
		Nodes: 3, Live: 2, Offline: []string{p + ".3"}, Caps: []string{"gpu"}, RegistryRev: 7, Sent: sent}
}

var t0 = time.Date(2026, 12, 7, 12, 0, 0, 0, time.UTC)

// A swarm is up while its summaries arrive and partitioned PartitionAfter
// after the last one; its nodes' states follow.
func TestBookMarksASilentSwarmPartitioned(t *testing.T) {
	b := newBook(prefix(t, "3.12.1"), PartitionAfter, time.Second)
	k := userKey(t)
	if err := b.accept(prefix(t, "3.12.7"), sum(t, "3.12.7", k, 5, t0), k, nil, nil, t0); err != nil {
		t.Fatal(err)
	}
	at := func(d time.Duration) SwarmState {
		s := b.snapshot(t0.Add(d))
		if len(s) != 1 {
			t.Fatalf("snapshot: %+v", s)
		}
		return s[0]
	}
	if s := at(PartitionAfter); s.Link != LinkUp || s.Partitioned() || s.Leader != "3.12.7.1" || s.Live != 2 {
		t.Fatalf("at PartitionAfter: %+v", s)
	}
	if s := at(PartitionAfter + time.Millisecond); s.Link != LinkDown || !s.Partitioned() {
		t.Fatalf("after PartitionAfter: %+v", s)
	}
	if st, leader, _ := b.liveness("3.12.7", "3.12.7.1", t0.Add(time.Second)); st != wire.StateAlive || !leader {
		t.Fatalf("leader while heard: %s %v", st, leader)
	}
	if st, _, _ := b.liveness("3.12.7", "3.12.7.3", t0.Add(time.Second)); st != wire.StateOffline {
		t.Fatalf("an offline member while heard: %s", st)
	}
	if st, _, _ := b.liveness("3.12.7", "3.12.7.1", t0.Add(4*time.Second)); st != wire.StatePartitioned {
		t.Fatalf("a member of a silent swarm: %s", st)
	}
	if st, _, ok := b.liveness("3.12.9", "3.12.9.1", t0); ok || st != wire.StateUnknown {
		t.Fatalf("a member of an unknown swarm: %s %v", st, ok)
	}
}

// Every summary that breaks the rule is refused, counted under its
// reason, and changes nothing.
func TestBookRefusesSummariesThatBreakTheRule(t *testing.T) {
	self := prefix(t, "3.12.1")
	k, other := userKey(t), userKey(t)
	registry := func(chev string) (string, bool) {
		if chev == "3.12.8.1" {
			return k, true // registered with k: a summary signed by other is forged
		}
		return "", false
	}
	own := func(chev string) (string, bool) {
		if chev == "3.12.1.1" {
			return k, true
		}
		return "", false
	}
	mut := func(f func(*wire.DirSummary)) wire.DirSummary {
		s := sum(t, "3.12.7", k, 5, t0)
		f(&s)
		return s
	}
	cases := []struct {
		name   string
		p      string
		s      wire.DirSummary
		signer string
		want   error
	}{
		{"signed by another key than the leader's", "3.12.7", sum(t, "3.12.7", k, 5, t0), other, ErrSummarySigner},
		{"leader outside the prefix", "3.12.7", mut(func(s *wire.DirSummary) { s.Leader = "3.12.9.1" }), k, ErrSummaryPrefix},
		{"leader is the prefix itself", "3.12.7", mut(func(s *wire.DirSummary) { s.Leader = "3.12.7" }), k, ErrSummaryPrefix},
		{"prefix differs from the subject's", "3.12.7", sum(t, "3.12.9", k, 5, t0), k, ErrSummaryMalformed},
		{"wrong domain", "3.12.7", mut(func(s *wire.DirSummary) { s.Domain = "rn-3-12-1" }), k, ErrSummaryMalformed},
		{"no token", "3.12.7", mut(func(s *wire.DirSummary) { s.Token = 0 }), k, ErrSummaryMalformed},
		{"more live than known", "3.12.7", mut(func(s *wire.DirSummary) { s.Live = 4 }), k, ErrSummaryMalformed},
		{"offline node elsewhere", "3.12.7", mut(func(s *wire.DirSummary) { s.Offline = []string{"3.12.1.2"} }), k, ErrSummaryMalformed},
		{"a cap that is no token", "3.12.7", mut(func(s *wire.DirSummary) { s.Caps = []string{"g.pu"} }), k, ErrSummaryMalformed},
		{"parent is itself", "3.12.7", mut(func(s *wire.DirSummary) { s.Parent = "3.12.7" }), k, ErrSummaryMalformed},
		{"a key the registry does not give the leader", "3.12.8", sum(t, "3.12.8", other, 5, t0), other, ErrSummaryKey},
		{"own swarm, leader not a member", "3.12.1", mut(func(s *wire.DirSummary) {
			*s = sum(t, "3.12.1", other, 5, t0)
			s.Parent = ""
		}), other, ErrSummaryKey},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			b := newBook(self, PartitionAfter, time.Second)
			err := b.accept(prefix(t, c.p), c.s, c.signer, own, registry, t0)
			if !errors.Is(err, c.want) {
				t.Fatalf("err = %v, want %v", err, c.want)
			}
			if n := len(b.snapshot(t0)); n != 0 {
				t.Fatalf("a refused summary entered the directory (%d swarms)", n)
			}
			if _, ok := b.own(); ok {
				t.Fatal("a refused own-swarm summary entered the directory")
			}
			if c := b.counters(); c.Refused() != 1 || c.Accepted != 0 {
				t.Fatalf("counters %+v", c)
			}
		})
	}
}

// A leader's key is pinned per chevron when no registry names it; a newer
// lease token replaces the summary in view, an older one is stale while
// the one in view is fresh.
func TestBookOrdersSummariesByLeaseAndPinsKeys(t *testing.T) {
	b := newBook(prefix(t, "3.12.1"), PartitionAfter, time.Second)
	k, k2, forger := userKey(t), userKey(t), userKey(t)
	p := prefix(t, "3.12.7")
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	must(b.accept(p, sum(t, "3.12.7", k, 5, t0), k, nil, nil, t0))
	if err := b.accept(p, sum(t, "3.12.7", k, 5, t0), k, nil, nil, t0.Add(time.Millisecond)); !errors.Is(err, ErrSummaryStale) {
		t.Fatalf("a replayed summary: %v", err)
	}
	if err := b.accept(p, sum(t, "3.12.7", forger, 9, t0.Add(time.Second)), forger, nil, nil, t0.Add(time.Second)); !errors.Is(err, ErrSummaryKey) {
		t.Fatalf("another key for the pinned leader chevron: %v", err)
	}
	// A new leader (another node, higher token) is taken at once.
	s2 := sum(t, "3.12.7", k2, 9, t0.Add(time.Second))
	s2.Leader = "3.12.7.2"
	must(b.accept(p, s2, k2, nil, nil, t0.Add(time.Second)))
	old := sum(t, "3.12.7", k, 5, t0.Add(2*time.Second))
	if err := b.accept(p, old, k, nil, nil, t0.Add(2*time.Second)); !errors.Is(err, ErrSummaryStale) {
		t.Fatalf("the old leader's lower token while the new one is fresh: %v", err)
	}
	// Once the swarm went silent, whatever leads it now counts (a swarm
	// rebuilt from scratch starts its tokens again).
	must(b.accept(p, sum(t, "3.12.7", k, 2, t0.Add(10*time.Second)), k, nil, nil, t0.Add(10*time.Second)))
	if s := b.snapshot(t0.Add(10 * time.Second)); s[0].Leader != "3.12.7.1" || s[0].Link != LinkUp {
		t.Fatalf("%+v", s)
	}
	if c := b.counters(); c.Accepted != 3 || c.Stale != 2 || c.KeyMismatch != 1 {
		t.Fatalf("counters %+v", c)
	}
}

// A hub's summary relays its subtree: the grandparent keeps the
// descendants it carries (and only those), each up while the relay is,
// and forgets what the next summary no longer relays.
func TestBookKeepsTheSubtreeAChildRelays(t *testing.T) {
	zone := newBook(prefix(t, "3.1.1"), PartitionAfter, time.Second)
	k := userKey(t)
	region := sum(t, "3.12.1", k, 3, t0)
	region.Parent, region.Hub = "3.1.1", true
	entry := func(p, parent, link string) wire.DirEntry {
		dom, _ := subjects.SwarmDomain(prefix(t, p))
		return wire.DirEntry{Prefix: p, Domain: dom, Parent: parent, Leader: p + ".1", LeaderKey: k, Nodes: 2, Live: 2, Link: link, HeardMs: 400}
	}
	region.Swarms = []wire.DirEntry{
		entry("3.12.7", "3.12.1", LinkUp),
		entry("3.12.8", "3.12.7", LinkDown), // a grandchild of the region, seen down there
		entry("4.1.7", "3.12.1", LinkUp),    // another zone: refused
		entry("3.12.9", "3.99.1", LinkUp),   // not below the relay
		entry("3.1.1", "3.12.1", LinkUp),    // the zone itself
	}
	if err := zone.accept(prefix(t, "3.12.1"), region, k, nil, nil, t0); err != nil {
		t.Fatal(err)
	}
	got := map[string]SwarmState{}
	for _, s := range zone.snapshot(t0.Add(time.Second)) {
		got[s.Prefix] = s
	}
	if len(got) != 3 || got["3.12.7"].Via != "3.12.1" || got["3.12.7"].Link != LinkUp || got["3.12.8"].Link != LinkDown {
		t.Fatalf("relayed: %+v", got)
	}
	if !got["3.12.7"].LastHeard.Equal(t0.Add(-400 * time.Millisecond)) {
		t.Fatalf("relayed last heard %v", got["3.12.7"].LastHeard)
	}
	// The zone relays upward what is below it: the region and its subtree.
	if d := zone.descendants(t0); len(d) != 3 || d[0].Prefix != "3.12.1" {
		t.Fatalf("descendants: %+v", d)
	}
	// The region silent: everything it relayed is down with it.
	for _, s := range zone.snapshot(t0.Add(PartitionAfter + time.Second)) {
		if s.Link != LinkDown {
			t.Fatalf("%s is %s while its relay is silent", s.Prefix, s.Link)
		}
	}
	// The next summary no longer relays 3.12.8: forgotten.
	region.Swarms, region.Sent = region.Swarms[:1], t0.Add(time.Second)
	if err := zone.accept(prefix(t, "3.12.1"), region, k, nil, nil, t0.Add(time.Second)); err != nil {
		t.Fatal(err)
	}
	if n := len(zone.snapshot(t0.Add(time.Second))); n != 2 {
		t.Fatalf("%d swarms after the relay dropped one", n)
	}
}

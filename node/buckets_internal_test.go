package node

import (
	"slices"
	"strings"
	"testing"

	"github.com/nats-io/nats.go/jetstream"
)

// Status reports the lowest replica count over every bucket and names the
// buckets below the swarm's target, which is 3 once three JetStream servers
// are up or any bucket was raised.
func TestReplicationSummaryNamesBucketsBehind(t *testing.T) {
	all3 := map[string]int{BucketNodes: 3, BucketUsers: 3, BucketFiles: 3}
	for _, tc := range []struct {
		name       string
		have       map[string]int
		peers      int
		wantLowest int
		wantBehind []string
	}{
		{"not read yet", nil, 3, 0, nil},
		{"single node", map[string]int{BucketNodes: 1, BucketFiles: 1}, 1, 1, nil},
		{"two servers: R1 is what they can have", map[string]int{BucketNodes: 1, BucketFiles: 1}, 2, 1, nil},
		{"three servers, not raised yet", map[string]int{BucketNodes: 1, BucketFiles: 1}, 3, 1, []string{BucketFiles, BucketNodes}},
		{"all raised", all3, 3, 3, nil},
		{"raised partway, a server down now", map[string]int{BucketNodes: 3, BucketUsers: 1, BucketFiles: 1}, 2, 1, []string{BucketFiles, BucketUsers}},
	} {
		r := &replication{have: tc.have, peers: tc.peers}
		lowest, behind := r.summary()
		if lowest != tc.wantLowest || !slices.Equal(behind, tc.wantBehind) {
			t.Errorf("%s: lowest %d behind %v, want %d %v", tc.name, lowest, behind, tc.wantLowest, tc.wantBehind)
		}
	}
	var none *replication
	if l, b := none.summary(); l != 0 || b != nil {
		t.Errorf("nil replication: %d %v", l, b)
	}
	r := &replication{have: map[string]int{BucketNodes: 3, BucketUsers: 1}}
	if got := r.below([]string{BucketNodes, BucketUsers, BucketFiles}, 3); !slices.Equal(got, []string{BucketUsers, BucketFiles}) {
		t.Errorf("below: %v, want rn_users (R1) and rn_files (never read)", got)
	}
}

func TestResilienceSaysWhatALossWouldBreak(t *testing.T) {
	all := func(c int) map[string]int {
		return map[string]int{BucketNodes: c, BucketLeader: c, BucketFiles: c}
	}
	for _, tc := range []struct {
		name    string
		rep     *replication
		ok      bool
		wantWhy string
	}{
		{"no buckets yet", nil, false, "buckets not created yet"},
		{"not read", &replication{}, false, "buckets not read yet"},
		{"two servers", &replication{have: all(3), peers: 2}, false, "2 JetStream server(s) up"},
		{"R1 buckets", &replication{have: map[string]int{BucketNodes: 1, BucketLeader: 3}, peers: 3}, false, "buckets below R3 (rn_nodes R1; the leader raises them)"},
		{"a replica catching up", &replication{have: all(3), peers: 3, lagging: map[string]string{BucketLeader: "replica rn-X catching up"}}, false, "rn_leader: replica rn-X catching up"},
		{"resilient", &replication{have: all(3), peers: 3, lagging: map[string]string{}}, true, "survives the loss of one node (3 JetStream servers up"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ok, why := tc.rep.resilience()
			if ok != tc.ok || !strings.Contains(why, tc.wantWhy) {
				t.Fatalf("resilience() = %v, %q; want %v, …%q…", ok, why, tc.ok, tc.wantWhy)
			}
			if !ok && tc.rep != nil && len(tc.rep.have) > 0 && !strings.HasPrefix(why, "CANNOT") {
				t.Fatalf("a swarm that cannot lose a node must say so plainly: %q", why)
			}
		})
	}
}

func TestStreamLag(t *testing.T) {
	si := func(replicas int, ci *jetstream.ClusterInfo) *jetstream.StreamInfo {
		return &jetstream.StreamInfo{Config: jetstream.StreamConfig{Replicas: replicas}, Cluster: ci}
	}
	for _, tc := range []struct {
		name string
		si   *jetstream.StreamInfo
		want string
	}{
		{"R1", si(1, &jetstream.ClusterInfo{Leader: "a"}), ""},
		{"no cluster info", si(3, nil), ""},
		{"no leader", si(3, &jetstream.ClusterInfo{}), "no leader"},
		{"offline", si(3, &jetstream.ClusterInfo{Leader: "a", Replicas: []*jetstream.PeerInfo{{Name: "b", Current: true}, {Name: "c", Offline: true}}}), "replica c offline"},
		{"behind", si(3, &jetstream.ClusterInfo{Leader: "a", Replicas: []*jetstream.PeerInfo{{Name: "b", Current: true}, {Name: "c"}}}), "replica c catching up"},
		{"unplaced", si(3, &jetstream.ClusterInfo{Leader: "a", Replicas: []*jetstream.PeerInfo{{Name: "b", Current: true}}}), "2 of 3 replicas placed"},
		{"current", si(3, &jetstream.ClusterInfo{Leader: "a", Replicas: []*jetstream.PeerInfo{{Name: "b", Current: true}, nil, {Name: "c", Current: true}}}), ""},
	} {
		if got := streamLag(tc.si); got != tc.want {
			t.Errorf("%s: streamLag = %q, want %q", tc.name, got, tc.want)
		}
	}
}

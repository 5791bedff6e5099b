package node

import (
	"slices"
	"testing"
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

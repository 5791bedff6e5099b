package node

import (
	"fmt"
	"maps"
	"math/rand/v2"
	"testing"

	"github.com/robonet-mesh/robonet/wire"
)

// setNode's fast path for a new node must derive exactly what a full
// rebuild derives, whatever came before: keys shared between nodes,
// operators that are node keys, revoked keys, the founder, re-declarations
// and deletions, in any order.
func TestSetNodeDerivesWhatARebuildDerives(t *testing.T) {
	keys := []string{"", "K1", "K2", "K3", "K4", "K5", "K6", "F"}
	rng := rand.New(rand.NewPCG(1, 2))
	for round := 0; round < 300; round++ {
		ids := newIdentities()
		ids.setFounder("F")
		ids.setClaim("r", revocationClaim{r: wire.Revocation{Pubkey: "K6"}, proven: true})
		for step := 0; step < 40; step++ {
			chev := fmt.Sprint(1 + rng.IntN(6))
			if rng.IntN(5) == 0 {
				ids.setNode(chev, nil)
			} else {
				ids.setNode(chev, &wire.NodeInfo{Pubkey: keys[rng.IntN(len(keys))], Operator: keys[rng.IntN(len(keys))]})
			}
			ids.mu.Lock()
			byKey, keyChev := maps.Clone(ids.byKey), maps.Clone(ids.keyChev)
			ids.rebuildLocked()
			same := maps.Equal(byKey, ids.byKey) && maps.Equal(keyChev, ids.keyChev)
			want, wantChev := ids.byKey, ids.keyChev
			ids.mu.Unlock()
			if !same {
				t.Fatalf("round %d step %d: incremental roles %v chevrons %v, a rebuild gives %v %v", round, step, byKey, keyChev, want, wantChev)
			}
		}
	}
}

// Loading a large registry costs O(n), not O(n²): 20,000 new nodes.
func BenchmarkSetNodeNewNodes(b *testing.B) {
	for b.Loop() {
		ids := newIdentities()
		for i := 0; i < 20000; i++ {
			ids.setNode(fmt.Sprint(i+1), &wire.NodeInfo{Pubkey: fmt.Sprintf("N%d", i), Operator: fmt.Sprintf("O%d", i)})
		}
	}
}

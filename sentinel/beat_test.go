package sentinel

import (
	"fmt"
	"math"
	"math/rand/v2"
	"reflect"
	"testing"
	"time"
)

// Beat must leave exactly what Message, Heartbeat, Reply and Gauges leave,
// as a core member called them for each heartbeat before Beat: the same
// records, invalid counts and findings, with late, missing and invalid
// values and a full table.
func TestBeatEqualsItsFourCalls(t *testing.T) {
	t.Parallel()
	rng := rand.New(rand.NewPCG(3, 4))
	one, four := newSentinel(t, Config{MaxPeers: 6}), newSentinel(t, Config{MaxPeers: 6})
	gauge := func() float64 {
		switch rng.IntN(12) {
		case 0:
			return 0
		case 1:
			return math.NaN()
		case 2:
			return 1.5
		case 3:
			return -0.1
		}
		return rng.Float64()
	}
	now, found := t0, 0
	for step := range 20000 {
		now = now.Add(time.Duration(rng.IntN(1200)) * time.Millisecond)
		peer := fmt.Sprintf("9000.%d", 1+rng.IntN(8)) // 8 names, room for 6: some refused
		b := Beat{Latency: time.Duration(rng.IntN(400)-20) * time.Millisecond}
		if rng.IntN(3) > 0 {
			b.CPU, b.Mem, b.Disk = gauge(), gauge(), gauge()
		}
		if rng.IntN(10) == 0 {
			b.Latency = -1
		}
		if rng.IntN(4) == 0 { // the peer's spike: anomalous windows, escalation
			b.Latency *= 50
		}
		one.Beat(peer, b, now)
		four.Message(peer, now)
		four.Heartbeat(peer, now)
		if b.Latency >= 0 {
			four.Reply(peer, b.Latency, now)
		}
		if b.CPU > 0 || b.Mem > 0 || b.Disk > 0 {
			four.Gauges(peer, b.CPU, b.Mem, b.Disk, now)
		}
		if step%97 == 0 {
			if a, b := one.Evaluate(now), four.Evaluate(now); !reflect.DeepEqual(a, b) {
				t.Fatalf("step %d: Evaluate with Beat %v, with four calls %v", step, a, b)
			} else {
				found += len(a)
			}
		}
	}
	if found == 0 {
		t.Fatal("no finding in the whole run: the comparison saw no escalation")
	}
	// A refused heartbeat is one refused observation with Beat, up to
	// four with the four calls.
	if a, b := one.Stats(), four.Stats(); a.Peers != b.Peers || a.Invalid != b.Invalid || a.Refused == 0 || a.Refused > b.Refused {
		t.Fatalf("stats with Beat %+v, with four calls %+v", a, b)
	}
	for name, p := range one.peers {
		q := four.peers[name]
		if q == nil || !reflect.DeepEqual(p, q) {
			t.Fatalf("peer %s: record with Beat %+v, with four calls %+v", name, p, q)
		}
	}
}

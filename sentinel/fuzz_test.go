package sentinel

import (
	"math"
	"testing"
	"time"
)

// FuzzSentinel feeds arbitrary sequences of observations, NaN, ±Inf,
// negative and huge values and times going backwards or jumping far, and
// checks that nothing panics, every number in a finding is finite, scores
// are in [0, 1e9], levels are known and every record stays consistent.
//
// Each operation takes 3 bytes (short inputs keep the fuzzer's
// minimisation quick): the operation and the peer; a signed time step in
// units of 137 ms (1 s windows both pass and repeat); and a value, an index
// into fuzzValues below 128 (index 0 is x, any float64 the fuzzer picks),
// else a fraction in [0, 1.27].
func FuzzSentinel(f *testing.F) {
	var steady, odd, backwards []byte
	for i := range 120 {
		steady = append(steady, byte(i%6)|byte(i%3)<<4, 7, byte(128+25+i%5))
	}
	for i := range 60 {
		odd = append(odd, byte(i%10)|byte(i%5)<<4, byte(i*37), byte(i%len(fuzzValues())))
		backwards = append(backwards, byte(i%6), byte(int8(-20+i%3*10)), byte(128+i))
	}
	f.Add(false, 0.25, steady)
	f.Add(true, math.NaN(), odd)
	f.Add(false, math.Inf(-1), append(steady, backwards...))
	f.Add(true, 1e308, append(append(steady, 8, 0, 0), steady...))

	values := fuzzValues()
	f.Fuzz(func(t *testing.T, twoSided bool, x float64, data []byte) {
		s, err := New(Config{
			Window: time.Second, Heartbeat: 100 * time.Millisecond, History: 8, WarmUp: 3, Persist: 2,
			QuarantineAfter: 3, Quiet: 5 * time.Second, AgreeWindow: 3 * time.Second, MaxPeers: 3,
			TwoSided: twoSided,
		})
		if err != nil {
			t.Fatal(err)
		}
		peers := []string{"1", "2", "3", "4", ""}
		verbs := []string{"ping", "exec", "", "status", "x"}
		now := t0
		for i := 0; i+3 <= len(data) && i < 3*400; i += 3 {
			o, peer := data[i]&0x0f, peers[int(data[i]>>4)%len(peers)]
			now = now.Add(time.Duration(int8(data[i+1])) * 137 * time.Millisecond)
			v := x
			switch b := data[i+2]; {
			case b >= 128:
				v = float64(b-128) / 100
			case b > 0:
				v = values[int(b)%len(values)]
			}
			switch o % 10 {
			case 0:
				s.Message(peer, now)
			case 1:
				s.Command(peer, verbs[int(data[i+2])%len(verbs)], now)
			case 2:
				s.Reply(peer, time.Duration(v*float64(time.Millisecond)), now) // saturates
			case 3:
				s.Heartbeat(peer, now)
			case 4:
				s.Gauges(peer, v, 1-v, v/2, now)
			case 5:
				checkFinite(t, s.Evaluate(now))
			case 6:
				checkFinite(t, s.Findings(peer, now))
			case 7:
				s.Agree(peer, peers[int(data[i+2])%len(peers)], now)
			case 8:
				now = time.Unix(int64(math.Float64bits(v)), 0) // anywhere, far past or future
			case 9:
				s.Forget(peer)
			}
		}
		checkFinite(t, s.Evaluate(now))
		for _, p := range peers {
			checkFinite(t, s.Findings(p, now))
			switch s.Level(p, now) {
			case OK, Alert, Quarantine, Disconnect:
			default:
				t.Fatalf("unknown level for %q", p)
			}
		}
		checkInvariants(t, s)
	})
}

// fuzzValues are the values FuzzSentinel picks by index.
func fuzzValues() []float64 {
	return []float64{
		0, math.NaN(), math.Inf(1), math.Inf(-1), -1, -0.0, 5e-324, 1e-300, 0.5, 1, 1.0000001, 45, 100,
		1e9, 1e300, math.MaxFloat64, -math.MaxFloat64, math.Float64frombits(0x7ff0000000000001),
	}
}

package sentinel

import (
	"errors"
	"math"
	"slices"
	"testing"
	"time"
)

// bruteMAD is the textbook definition, for comparison.
func bruteMAD(vals []float32) (float64, float64) {
	s := slices.Clone(vals)
	slices.Sort(s)
	m := median(s)
	dev := make([]float64, len(s))
	for i, v := range s {
		dev[i] = math.Abs(float64(v) - m)
	}
	slices.Sort(dev)
	n := len(dev)
	switch {
	case n == 0:
		return m, 0
	case n%2 == 1:
		return m, dev[n/2]
	}
	return m, (dev[n/2-1] + dev[n/2]) / 2
}

func TestMedianAndMAD(t *testing.T) {
	tests := []struct {
		name      string
		vals      []float32
		med, madv float64
	}{
		{"empty", nil, 0, 0},
		{"one", []float32{7}, 7, 0},
		{"two", []float32{1, 3}, 2, 1},
		{"odd", []float32{1, 2, 3, 4, 100}, 3, 1},
		{"even", []float32{1, 2, 3, 4}, 2.5, 1},
		{"flat", []float32{5, 5, 5, 5, 5, 5}, 5, 0},
		{"flat with outlier", []float32{5, 5, 5, 5, 5, 500}, 5, 0},
		{"negative", []float32{-3, -1, 0, 2, 10}, 0, 2},
		{"half outliers", []float32{1, 1, 1, 9, 9, 9}, 5, 4},
		{"skewed", []float32{0, 0, 0, 0, 1, 2, 3}, 0, 0},
		{"spread", []float32{10, 12, 14, 16, 18, 20, 22}, 16, 4},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			s := slices.Clone(tc.vals)
			slices.Sort(s)
			m := median(s)
			d := mad(s, m)
			if m != tc.med || d != tc.madv {
				t.Errorf("median, MAD = %v, %v; want %v, %v", m, d, tc.med, tc.madv)
			}
			if bm, bd := bruteMAD(tc.vals); bm != m || bd != d {
				t.Errorf("brute force says %v, %v", bm, bd)
			}
		})
	}
}

func TestMADMatchesBruteForce(t *testing.T) {
	// A deterministic pseudo-random walk over many sizes and shapes.
	x := uint64(1)
	next := func() float32 {
		x ^= x << 13
		x ^= x >> 7
		x ^= x << 17
		return float32(x%1000) / 10
	}
	for n := 1; n < 200; n++ {
		vals := make([]float32, n)
		for i := range vals {
			vals[i] = next()
			if i%7 == 0 {
				vals[i] = vals[0] // ties
			}
		}
		s := slices.Clone(vals)
		slices.Sort(s)
		m := median(s)
		bm, bd := bruteMAD(vals)
		if d := mad(s, m); m != bm || math.Abs(d-bd) > 1e-9 {
			t.Fatalf("n=%d: median, MAD = %v, %v; brute force %v, %v", n, m, d, bm, bd)
		}
	}
}

func TestRobustScore(t *testing.T) {
	tests := []struct {
		name         string
		v, m, spread float64
		twoSided     bool
		want         float64
	}{
		{"at median", 5, 5, 1, false, 0},
		{"above", 11, 5, 1, false, 6},
		{"below, one-sided", 0, 5, 1, false, 0},
		{"below, two-sided", 0, 5, 1, true, 5},
		{"fraction", 0.55, 0.25, 0.05, false, 6},
		{"clipped", 1e300, 0, 1e-9, false, maxScore},
		{"NaN spread", 1, 0, math.NaN(), false, 0},
		{"NaN value", math.NaN(), 0, 1, true, 0},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := robustScore(tc.v, tc.m, tc.spread, tc.twoSided); math.Abs(got-tc.want) > 1e-9 {
				t.Errorf("robustScore(%v, %v, %v, %v) = %v; want %v", tc.v, tc.m, tc.spread, tc.twoSided, got, tc.want)
			}
		})
	}
}

func TestSeriesKeepsTheLastHistoryValuesSorted(t *testing.T) {
	var s series
	const limit = 5
	var all []float32
	for i, v := range []float32{3, 1, 4, 1, 5, 9, 2, 6, 5, 3, 5} {
		s.push(v, limit)
		all = append(all, v)
		want := slices.Clone(all[max(0, len(all)-limit):])
		slices.Sort(want)
		if !slices.Equal(s.sorted, want) {
			t.Fatalf("after %d pushes: sorted %v; want %v", i+1, s.sorted, want)
		}
		ring := slices.Clone(s.ring)
		slices.Sort(ring)
		if !slices.Equal(ring, want) {
			t.Fatalf("after %d pushes: ring %v holds other values than %v", i+1, s.ring, want)
		}
	}
	if cap(s.ring) != limit || cap(s.sorted) != limit {
		t.Errorf("grew beyond the limit: caps %d, %d", cap(s.ring), cap(s.sorted))
	}
}

func TestSamplesKeepTheLatest(t *testing.T) {
	tests := []struct {
		name    string
		windows [][]float64 // samples per window
		want    []float64   // value per window, NaN: none
	}{
		{"none", [][]float64{nil}, []float64{math.NaN()}},
		{"one", [][]float64{{20}}, []float64{20}},
		{"spike ignored", [][]float64{{20, 21, 19, 500, 20}}, []float64{20}},
		{"even", [][]float64{{1, 2, 3, 4}}, []float64{2.5}},
		{"latest sixteen", [][]float64{append([]float64{1000, 1000, 1000, 1000}, slices.Repeat([]float64{1, 2}, 8)...)}, []float64{1.5}},
		{"across windows", [][]float64{{20, 20, 20}, {500}, nil, {500}, {500}}, []float64{20, 20, math.NaN(), 20, 260}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var b samples
			for i, w := range tc.windows {
				for _, v := range w {
					b.add(v)
				}
				got, ok := b.take()
				if want := tc.want[i]; ok == math.IsNaN(want) || (ok && got != want) {
					t.Errorf("window %d: %v, %v; want %v", i, got, ok, want)
				}
			}
		})
	}
}

func TestCounterLeavesOutTheTwoBusiestSlices(t *testing.T) {
	tests := []struct {
		name    string
		slices  []int64 // slice of each event
		trimmed uint64
	}{
		{"none", nil, 0},
		{"steady", []int64{0, 1, 2, 3, 4, 5, 6, 7, 8, 9}, 8},
		{"one burst", append([]int64{0, 1, 2, 3, 4, 5, 6, 7, 8, 9}, slices.Repeat([]int64{9}, 100)...), 8},
		{"burst across two slices", append([]int64{0, 1, 2, 3, 4, 5, 6, 7}, append(slices.Repeat([]int64{8}, 50), slices.Repeat([]int64{9}, 50)...)...), 8},
		{"three bursts", append(slices.Repeat([]int64{1}, 10), append(slices.Repeat([]int64{2}, 20), slices.Repeat([]int64{3}, 30)...)...), 10},
		{"backwards counts in the current slice", []int64{5, 5, 2, 2, 6}, 0},
		{"flood", slices.Concat(slices.Repeat([]int64{0}, 50), slices.Repeat([]int64{1}, 50), slices.Repeat([]int64{2}, 50),
			slices.Repeat([]int64{3}, 50), slices.Repeat([]int64{4}, 50), slices.Repeat([]int64{5}, 50), slices.Repeat([]int64{6}, 50),
			slices.Repeat([]int64{7}, 50), slices.Repeat([]int64{8}, 50), slices.Repeat([]int64{9}, 50)), 400},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c := counter{slice: math.MinInt64}
			for _, s := range tc.slices {
				c.add(s)
			}
			if got := c.trimmed(); got != tc.trimmed || c.total != uint64(len(tc.slices)) {
				t.Errorf("trimmed %d of %d; want %d of %d", got, c.total, tc.trimmed, len(tc.slices))
			}
		})
	}
}

func TestMixDivergence(t *testing.T) {
	const ping, status, exec = 0, 1, 2
	onlyPing := [numBuckets]float32{ping: 100}
	mixed := [numBuckets]float32{ping: 60, status: 30, exec: 10}
	count := func(kv ...uint32) (c [numBuckets]uint32, n uint64) {
		for i := 0; i < len(kv); i += 2 {
			c[kv[i]] = kv[i+1]
			n += uint64(kv[i+1])
		}
		return c, n
	}
	tests := []struct {
		name   string
		base   [numBuckets]float32
		window []uint32 // bucket, count pairs
		lo, hi float64
		top    int
	}{
		{"same verb as always", onlyPing, []uint32{ping, 5}, 0, 0.01, -1},
		{"same mix as always", mixed, []uint32{ping, 6, status, 3, exec, 1}, 0, 0.01, -1},
		{"one exec among pings", onlyPing, []uint32{ping, 5, exec, 1}, 0.3, 1, exec},
		{"all exec, few", onlyPing, []uint32{exec, 5}, 2, 5, exec},
		{"all exec, flood", onlyPing, []uint32{exec, 500}, 6, 8.2, exec},
		{"rare verb becomes all", mixed, []uint32{exec, 50}, 1.5, 2.4, exec},
		{"unknown verbs", onlyPing, []uint32{other, 100}, 6, 8.2, other},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c, n := count(tc.window...)
			sum := 0.0
			for _, b := range tc.base {
				sum += float64(b)
			}
			d, top := mixDivergence(&c, n, &tc.base, sum)
			if d < tc.lo || d > tc.hi || math.IsNaN(d) {
				t.Errorf("divergence %v; want %v..%v", d, tc.lo, tc.hi)
			}
			if tc.top >= 0 && top != tc.top {
				t.Errorf("top bucket %d; want %d", top, tc.top)
			}
			t.Logf("%s: %.3f nats", tc.name, d)
		})
	}
}

func TestMillisAndFloorDiv(t *testing.T) {
	tests := []struct {
		t    time.Time
		want int64
	}{
		{time.Unix(0, 0), 0},
		{time.Unix(1, 999_999_999), 1999},
		{time.Unix(-1, 500_000_000), -500},
		{time.Time{}, -62135596800000},
		{time.Unix(math.MaxInt64/2, 0), (1 << 42) * 1000},
		{time.Unix(math.MinInt64/2, 0), -(1 << 42) * 1000},
	}
	for _, tc := range tests {
		if got := millis(tc.t); got != tc.want {
			t.Errorf("millis(%v) = %d; want %d", tc.t, got, tc.want)
		}
	}
	for _, tc := range []struct{ a, b, want int64 }{
		{0, 10, 0}, {9, 10, 0}, {10, 10, 1}, {-1, 10, -1}, {-10, 10, -1}, {-11, 10, -2},
	} {
		if got := floorDiv(tc.a, tc.b); got != tc.want {
			t.Errorf("floorDiv(%d, %d) = %d; want %d", tc.a, tc.b, got, tc.want)
		}
	}
}

func TestConfigValidate(t *testing.T) {
	tests := []struct {
		name string
		mod  func(*Config)
		ok   bool
	}{
		{"zero is default", func(*Config) {}, true},
		{"small window", func(c *Config) { c.Window = time.Second; c.Heartbeat = 100 * time.Millisecond }, true},
		{"window too short", func(c *Config) { c.Window = 50 * time.Millisecond }, false},
		{"window not whole ms", func(c *Config) { c.Window = 10*time.Second + 1 }, false},
		{"window not a multiple of 10ms", func(c *Config) { c.Window = 10*time.Second + time.Millisecond }, false},
		{"heartbeat not below window", func(c *Config) { c.Window = time.Second; c.Heartbeat = time.Second }, false},
		{"history too short", func(c *Config) { c.History = 2; c.WarmUp = 2 }, false},
		{"warm-up above history", func(c *Config) { c.History = 10; c.WarmUp = 11 }, false},
		{"persist too long", func(c *Config) { c.Persist = 9 }, false},
		{"negative alert", func(c *Config) { c.AlertScore = -1 }, false},
		{"NaN alert", func(c *Config) { c.AlertScore = math.NaN() }, false},
		{"quarantine below alert", func(c *Config) { c.AlertScore = 8; c.QuarantineScore = 7 }, false},
		{"quorum too big", func(c *Config) { c.Quorum = 65 }, false},
		{"negative max peers", func(c *Config) { c.MaxPeers = -1 }, false},
		{"negative floor", func(c *Config) { c.Floors.CPU = -0.1 }, false},
		{"infinite floor", func(c *Config) { c.Floors.HBJitter = math.Inf(1) }, false},
		{"rel floor above 1", func(c *Config) { c.RelFloor = 2 }, false},
		{"negative quiet", func(c *Config) { c.Quiet = -time.Second }, false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var c Config
			tc.mod(&c)
			err := c.Validate()
			if (err == nil) != tc.ok {
				t.Fatalf("Validate() = %v; want ok=%v", err, tc.ok)
			}
			if err != nil && !errors.Is(err, ErrConfig) {
				t.Errorf("%v does not wrap ErrConfig", err)
			}
			if _, nerr := New(c); (nerr == nil) != tc.ok {
				t.Errorf("New() = %v; want ok=%v", nerr, tc.ok)
			}
		})
	}
	if got := (Config{}).withDefaults(); got != DefaultConfig() {
		t.Errorf("Config{} with defaults = %+v; want %+v", got, DefaultConfig())
	}
}

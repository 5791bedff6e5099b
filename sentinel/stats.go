package sentinel

import (
	"math"
	"slices"
)

const (
	madScale    = 1.4826 // makes the MAD of normal noise estimate its standard deviation
	maxScore    = 1e9    // scores are clipped here, so they stay finite in float32
	maxPersist  = 8      // largest Config.Persist
	absorbEvery = 4      // one anomalous window in absorbEvery enters the history (clipped)
	bufSize     = 16     // samples of a per-sample signal kept per peer (the latest)
)

// series is one signal's history for one peer: the last History window values
// in arrival order (ring) and the same values sorted (sorted), so the median
// costs O(1) and the MAD O(n), without allocating.
type series struct {
	ring   []float32
	head   int // index of the oldest value once the ring is full
	sorted []float32

	skipped int                 // anomalous windows not absorbed since the last one that was
	recent  [maxPersist]float32 // the last Persist raw scores, recent[nrec%Persist]
	nrec    uint64

	// The latest window with a value.
	has    bool
	win    int64   // its index
	value  float64 // its value
	base   float64 // median before it
	spread float64 // spread before it
	raw    float64 // its own score
	score  float64 // min of the last Persist raw scores
	warm   bool    // whether it was scored
	size   int     // history size before it

	inRun    bool  // raw ≥ AlertScore in the latest value and each one back to runStart
	runStart int64 // ms: start of the window that began the run
}

// push adds v to the history, evicting the oldest value when full.
func (s *series) push(v float32, limit int) {
	if s.ring == nil {
		s.ring = make([]float32, 0, limit)
		s.sorted = make([]float32, 0, limit)
	}
	if len(s.ring) < limit {
		s.ring = append(s.ring, v)
	} else {
		old := s.ring[s.head]
		s.ring[s.head] = v
		s.head = (s.head + 1) % limit
		if i, ok := slices.BinarySearch(s.sorted, old); ok {
			s.sorted = slices.Delete(s.sorted, i, i+1)
		}
	}
	i, _ := slices.BinarySearch(s.sorted, v)
	s.sorted = slices.Insert(s.sorted, i, v)
}

// median returns the median of sorted values, 0 for none.
func median(sorted []float32) float64 {
	n := len(sorted)
	switch {
	case n == 0:
		return 0
	case n%2 == 1:
		return float64(sorted[n/2])
	}
	return (float64(sorted[n/2-1]) + float64(sorted[n/2])) / 2
}

// mad returns the median absolute deviation of sorted values from m. The
// deviations grow leftwards from m on its left and rightwards on its right,
// so the k-th smallest is found by merging the two runs: O(n), no copy.
func mad(sorted []float32, m float64) float64 {
	n := len(sorted)
	if n == 0 {
		return 0
	}
	lo, hi := 0, n // first index with sorted[j] >= m
	for lo < hi {
		mid := int(uint(lo+hi) >> 1)
		if float64(sorted[mid]) < m {
			lo = mid + 1
		} else {
			hi = mid
		}
	}
	i, j := lo-1, lo
	var prev, cur float64
	for range n/2 + 1 {
		if i >= 0 && (j >= n || m-float64(sorted[i]) <= float64(sorted[j])-m) {
			prev, cur = cur, m-float64(sorted[i])
			i--
		} else {
			prev, cur = cur, float64(sorted[j])-m
			j++
		}
	}
	if n%2 == 1 {
		return cur
	}
	return (prev + cur) / 2
}

// robustScore is (v − m)/spread, clipped at 0 unless twoSided, at most
// maxScore, 0 for anything not a number.
func robustScore(v, m, spread float64, twoSided bool) float64 {
	d := v - m
	if twoSided {
		d = math.Abs(d)
	}
	r := d / spread
	if !(r > 0) {
		return 0
	}
	return math.Min(r, maxScore)
}

// numSlices is the number of slices a window is cut into for counting.
const numSlices = 10

// counter counts events in a window by slice (a tenth of the window) and
// remembers the two busiest slices, so that a rate can leave out a burst
// shorter than a slice wherever it falls.
type counter struct {
	total uint64
	slice int64     // index of the current slice
	cur   uint64    // events in it
	top   [2]uint64 // the two busiest finished slices, top[0] >= top[1]
}

// add counts one event in slice (an earlier slice counts in the current).
func (c *counter) add(slice int64) {
	if slice > c.slice {
		c.fold()
		c.slice = slice
	}
	c.cur++
	c.total++
}

func (c *counter) fold() {
	switch x := c.cur; {
	case x > c.top[0]:
		c.top[1], c.top[0] = c.top[0], x
	case x > c.top[1]:
		c.top[1] = x
	}
	c.cur = 0
}

// trimmed returns the events outside the two busiest slices.
func (c *counter) trimmed() uint64 {
	c.fold()
	return c.total - c.top[0] - c.top[1]
}

// samples keeps a peer's latest bufSize samples of a per-sample signal
// (reply latency, heartbeat deviation, a gauge) across windows: a window's
// value is their median when the window brought at least one new sample,
// so a quiet peer's single slow reply is one sample of sixteen, not the
// whole window.
type samples struct {
	v     [bufSize]float32
	pos   uint8 // next slot
	n     uint8 // samples held, at most bufSize
	fresh bool  // a sample arrived in the current window
}

func (b *samples) add(x float64) {
	b.v[b.pos] = float32(x)
	b.pos = (b.pos + 1) % bufSize
	if b.n < bufSize {
		b.n++
	}
	b.fresh = true
}

// take returns the median of the samples held if one arrived in the current
// window, and starts the next window.
func (b *samples) take() (float64, bool) {
	if !b.fresh {
		return 0, false
	}
	b.fresh = false
	var tmp [bufSize]float32
	s := tmp[:b.n]
	copy(s, b.v[:b.n])
	slices.Sort(s)
	return median(s), true
}

// Verb-mix constants; see the package doc.
const (
	maxVerbs   = 32       // distinct verbs remembered per peer
	other      = maxVerbs // the bucket of every further verb
	numBuckets = maxVerbs + 1
	maxVerbLen = 64   // a longer verb goes to other
	mixUniform = 0.01 // weight of the uniform distribution mixed into the baseline
	mixShrink  = 5.0  // pseudo-commands pulling a window's mix towards the baseline
)

// mixDivergence returns KL(p̂ ‖ q) in nats, where q is the baseline mix
// (weights base, total baseSum) mixed with mixUniform of the uniform
// distribution, and p̂ the window's counts (total n) shrunk towards q by
// mixShrink pseudo-commands. It also returns the bucket contributing most.
func mixDivergence(counts *[numBuckets]uint32, n uint64, base *[numBuckets]float32, baseSum float64) (float64, int) {
	fn := float64(n)
	d, top, topC := 0.0, 0, math.Inf(-1)
	for i := range numBuckets {
		q := (1-mixUniform)*float64(base[i])/baseSum + mixUniform/numBuckets
		p := (float64(counts[i]) + mixShrink*q) / (fn + mixShrink)
		c := p * math.Log(p/q)
		d += c
		if c > topC {
			top, topC = i, c
		}
	}
	if !(d > 0) { // Gibbs: d ≥ 0 but for rounding
		return 0, top
	}
	return d, top
}

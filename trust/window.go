package trust

import "encoding/binary"

// slot kinds
const (
	slotEmpty   = 0
	slotSeen    = 1 // the fingerprint is h_seq's, of an accepted message
	slotClaimed = 2 // the fingerprint is h_seq's as claimed by the accepted message seq+1 (its Rn-Prev)
)

// window is what a ledger remembers of the last w seqs of one peer's chain,
// top-w+1..top, where top is the highest seq accepted: which were accepted
// (seen), which an accepted successor named (claimed), which seen ones were
// counted as gaps, and a fingerprint of each one's chain hash. Seq x lives
// at x%w; advancing top clears the places the seqs leaving the window held.
//
// A fingerprint is the first 8 bytes of the chain hash (SHA-256): about 9
// bytes a seq instead of 48 for the full hash and the seq. Two different
// fingerprints are two different messages, so every fork the full hashes
// showed is still a Break; a different message with the same fingerprint
// as one seen (a chance of 2⁻⁶⁴, or 2⁶⁴ hashes to grind one) would be
// dropped as a Replay: never accepted, only not reported as a fork.
type window struct {
	w       uint64
	fp      []uint64 // w fingerprints
	seen    []uint64 // bitmaps of w bits
	claimed []uint64
	gap     []uint64
}

func newWindow(w uint64) *window {
	words := (w + 63) / 64
	all := make([]uint64, w+3*words) // one allocation
	return &window{w: w, fp: all[:w:w], seen: all[w : w+words : w+words],
		claimed: all[w+words : w+2*words : w+2*words], gap: all[w+2*words:]}
}

// fingerprint is what the window keeps of a chain hash.
func fingerprint(h Hash) uint64 { return binary.BigEndian.Uint64(h[:8]) }

func bit(bm []uint64, i uint64) bool { return bm[i/64]&(1<<(i%64)) != 0 }
func setBit(bm []uint64, i uint64)   { bm[i/64] |= 1 << (i % 64) }
func clearBit(bm []uint64, i uint64) { bm[i/64] &^= 1 << (i % 64) }

// at returns what the window holds for seq x while its highest seq is top.
func (win *window) at(x, top uint64) (kind int, fp uint64) {
	if x > top || (top >= win.w && x <= top-win.w) {
		return slotEmpty, 0
	}
	i := x % win.w
	switch {
	case bit(win.seen, i):
		return slotSeen, win.fp[i]
	case bit(win.claimed, i):
		return slotClaimed, win.fp[i]
	}
	return slotEmpty, 0
}

// set records seq x, which must be in the window.
func (win *window) set(x uint64, kind int, fp uint64, gap bool) {
	i := x % win.w
	win.fp[i] = fp
	clearBit(win.seen, i)
	clearBit(win.claimed, i)
	clearBit(win.gap, i)
	switch kind {
	case slotSeen:
		setBit(win.seen, i)
	case slotClaimed:
		setBit(win.claimed, i)
	}
	if gap {
		setBit(win.gap, i)
	}
}

// advance moves the window's top from top to next (> top): the places of
// top+1..next held seqs that are now below the window.
func (win *window) advance(top, next uint64) {
	if next-top >= win.w {
		clear(win.fp)
		clear(win.seen)
		clear(win.claimed)
		clear(win.gap)
		return
	}
	for x := top + 1; x <= next && x > top; x++ { // x > top: no wrap at MaxUint64
		i := x % win.w
		win.fp[i] = 0
		clearBit(win.seen, i)
		clearBit(win.claimed, i)
		clearBit(win.gap, i)
	}
}

// closeGap clears the gap mark of seq x if x is seen and marked, and
// reports whether it did.
func (win *window) closeGap(x, top uint64) bool {
	if k, _ := win.at(x, top); k != slotSeen || !bit(win.gap, x%win.w) {
		return false
	}
	clearBit(win.gap, x%win.w)
	return true
}

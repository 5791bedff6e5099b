package trust

import (
	"fmt"
	"math"
	"time"
)

// Config tunes a Ledger. The zero value of every field means its default
// (DefaultConfig), so Config{} is a sensible configuration.
type Config struct {
	// Tier1, Tier2 and Tier3 are the lowest scores of tiers 1 (observe),
	// 2 (operate) and 3 (critical); below Tier1 a peer is tier 0 (read-only).
	// Each in (0,1], Tier1 <= Tier2 <= Tier3.
	Tier1, Tier2, Tier3 float64

	// ChainScale is the number of accepted messages at which the chain-length
	// factor reaches 1-1/e (63%). Default 600: ten minutes of heartbeats.
	ChainScale float64
	// AgeScale is the time since first seen at which the age factor reaches
	// 1-1/e. Default one hour.
	AgeScale time.Duration
	// GapWeight, in (0,1], is how much a fully gapped history (no accepted
	// message follows one the ledger saw) takes off the score. Default 0.25:
	// a receiver sees only the subjects it subscribes to, so gaps are mostly
	// traffic it was never meant to see; they must not dominate the score.
	GapWeight float64

	// Window is how many recent sequence numbers per peer the ledger
	// remembers (about 9 bytes each, a fingerprint and three bits,
	// allocated on the peer's first message) to detect forks and replays.
	// Default 1024, at least 16.
	Window int
	// MaxPeers bounds the number of peer records; a new peer beyond it is
	// refused (never evicting a known one). Default 1024.
	MaxPeers int

	// TolerateBadSignatures makes a message with a bad signature a rejected
	// message and an anomaly instead of a break. DESIGN.md makes it a break,
	// which is only proof of compromise when nobody else can publish with the
	// peer's Rn-From: set it where other identities may publish on the same
	// subjects, or anyone there can get any peer quarantined.
	TolerateBadSignatures bool
}

// DefaultConfig returns the defaults: tiers at 0.05, 0.5 and 0.85 (for a peer
// heard only through 1 s heartbeats: about 7 minutes, 45 minutes and 2 hours),
// ChainScale 600, AgeScale 1h, GapWeight 0.25, Window 1024, MaxPeers 1024.
func DefaultConfig() Config {
	return Config{
		Tier1:      0.05,
		Tier2:      0.5,
		Tier3:      0.85,
		ChainScale: 600,
		AgeScale:   time.Hour,
		GapWeight:  0.25,
		Window:     1024,
		MaxPeers:   1024,
	}
}

// withDefaults replaces every zero field with its default.
func (c Config) withDefaults() Config {
	d := DefaultConfig()
	if c.Tier1 == 0 {
		c.Tier1 = d.Tier1
	}
	if c.Tier2 == 0 {
		c.Tier2 = d.Tier2
	}
	if c.Tier3 == 0 {
		c.Tier3 = d.Tier3
	}
	if c.ChainScale == 0 {
		c.ChainScale = d.ChainScale
	}
	if c.AgeScale == 0 {
		c.AgeScale = d.AgeScale
	}
	if c.GapWeight == 0 {
		c.GapWeight = d.GapWeight
	}
	if c.Window == 0 {
		c.Window = d.Window
	}
	if c.MaxPeers == 0 {
		c.MaxPeers = d.MaxPeers
	}
	return c
}

// Validate checks c after defaults are applied.
func (c Config) Validate() error {
	c = c.withDefaults()
	unit := func(v float64) bool { return v > 0 && v <= 1 }
	switch {
	case !unit(c.Tier1) || !unit(c.Tier2) || !unit(c.Tier3):
		return fmt.Errorf("%w: tier thresholds %v, %v, %v: each must be in (0,1]", ErrConfig, c.Tier1, c.Tier2, c.Tier3)
	case c.Tier1 > c.Tier2 || c.Tier2 > c.Tier3:
		return fmt.Errorf("%w: tier thresholds %v, %v, %v are not ascending", ErrConfig, c.Tier1, c.Tier2, c.Tier3)
	case !(c.ChainScale > 0) || math.IsInf(c.ChainScale, 0):
		return fmt.Errorf("%w: ChainScale %v must be positive and finite", ErrConfig, c.ChainScale)
	case c.AgeScale < 0:
		return fmt.Errorf("%w: AgeScale %v must be positive", ErrConfig, c.AgeScale)
	case !unit(c.GapWeight):
		return fmt.Errorf("%w: GapWeight %v must be in (0,1]", ErrConfig, c.GapWeight)
	case c.Window < 16 || c.Window > 1<<20:
		return fmt.Errorf("%w: Window %d must be in 16..%d", ErrConfig, c.Window, 1<<20)
	case c.MaxPeers < 1:
		return fmt.Errorf("%w: MaxPeers %d must be positive", ErrConfig, c.MaxPeers)
	}
	return nil
}

// Tier maps a score to a tier, 0 (read-only) to 3 (critical), with c's
// thresholds (zero thresholds meaning the defaults). NaN is tier 0.
func (c Config) Tier(score float64) int {
	c = c.withDefaults()
	switch {
	case score >= c.Tier3:
		return 3
	case score >= c.Tier2:
		return 2
	case score >= c.Tier1:
		return 1
	}
	return 0
}

// score is the trust formula, documented in the package doc:
//
//	L = 1 - exp(-n / ChainScale)
//	A = 1 - exp(-age / AgeScale)
//	g = gaps / (n - 1)              (0 when n <= 1)
//	S = L · A · (1 - GapWeight · g)
func (c Config) score(n, gaps uint64, age time.Duration) float64 {
	if n == 0 || age <= 0 {
		return 0
	}
	c = c.withDefaults()
	l := 1 - math.Exp(-float64(n)/c.ChainScale)
	a := 1 - math.Exp(-age.Seconds()/c.AgeScale.Seconds())
	g := 0.0
	if n > 1 {
		g = math.Min(1, float64(gaps)/float64(n-1))
	}
	s := l * a * (1 - c.GapWeight*g)
	if !(s > 0) { // also NaN
		return 0
	}
	return math.Min(s, 1)
}

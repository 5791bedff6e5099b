package sentinel

import (
	"fmt"
	"math"
	"time"
)

// Config tunes a Sentinel. The zero value of every field means its default
// (DefaultConfig), so Config{} is a sensible configuration. The package doc
// says why each default is what it is.
type Config struct {
	// Window is the length of the fixed, clock-aligned windows every signal
	// is measured over: one window is one value per signal. A multiple of
	// 10 ms (rates count by tenths of a window), 100ms..1h. Default 10 s.
	Window time.Duration
	// History is how many closed windows per signal the baseline (median and
	// MAD) is computed over. 8 bytes per window and signal per peer, allocated
	// on the signal's first value. Default 180 (30 minutes of 10 s windows).
	History int
	// WarmUp is how many windows a signal's history must hold before the
	// signal is scored; before that its score is 0. 3..History. Default 30.
	WarmUp int
	// Persist is how many consecutive values of a signal must all score at
	// least AlertScore before it counts as anomalous: a signal's score is the
	// smallest of its last Persist window scores, so a single spike never
	// alerts. 1..8. Default 2.
	Persist int

	// AlertScore is the score at which a signal is anomalous and its peer
	// goes to alert. Default 6.
	AlertScore float64
	// QuarantineScore is the score at which an alerted peer goes to
	// quarantine at once. At least AlertScore. Default 15.
	QuarantineScore float64
	// QuarantineAfter is how many consecutive anomalous windows put an
	// alerted peer in quarantine whatever its scores. Default 18 (3 minutes).
	QuarantineAfter int
	// Quiet is how long a peer must go without an anomalous window before
	// its level decays one step; each further step needs another Quiet.
	// Default 5 minutes.
	Quiet time.Duration
	// Quorum is how many distinct other nodes must have reported an alert
	// about a quarantined peer (Agree) within AgreeWindow for it to go to
	// disconnect. 1..64. Default 0: a majority of the nodes that watch the
	// peer (SetObservers), this node included, clamped to 2..5 — so one
	// other node in a 3-node swarm, two in a 5-node one, four from 9 nodes
	// on; two while the number of observers is unknown.
	Quorum int
	// AgreeWindow is how long an Agree report counts, and how recent this
	// node's own last anomalous window about the peer must be. Default 2 minutes.
	AgreeWindow time.Duration

	// Heartbeat is the interval at which peers publish heartbeats
	// (DESIGN.md: 1 s); hb_jitter measures the deviation from it. Less than
	// Window. Default 1 s.
	Heartbeat time.Duration
	// MaxPeers bounds the number of peer records; a new peer beyond it is
	// refused (counted in Stats.Refused), never evicting a known one.
	// Default 1024.
	MaxPeers int
	// SelfBusy is the busy fraction (CPU, or load average per core) of this
	// node at which its own timing measurements of its peers (reply_latency,
	// hb_jitter) stop counting for the window (Sentinel.Self): a loaded
	// observer sees everyone late. Above 1 never mutes. Default 0.75.
	SelfBusy float64

	// TwoSided scores drops below the baseline as well as rises. Off by
	// default: a node that finishes its work (cpu, rates and latency fall) is
	// not misbehaving, and a dead node is membership's business.
	TwoSided bool
	// RelFloor is the smallest spread of msg_rate, cmd_rate and
	// reply_latency as a fraction of their baseline median, so that a
	// busy, very regular peer is judged on relative change. 0..1. Default 0.2.
	RelFloor float64
	// Floors are the smallest spread of each signal, in the signal's unit, so
	// that a perfectly flat baseline does not make the tiniest change
	// infinitely anomalous.
	Floors Floors
}

// Floors holds one spread floor per signal, in the signal's unit; each must
// be positive and finite. Zero means the default.
type Floors struct {
	MsgRate      float64 // messages/s; default 0.5
	CmdRate      float64 // commands/s; default 0.2
	CmdMix       float64 // nats; default 0.05
	ReplyLatency float64 // ms; default 5
	HBJitter     float64 // ms; default 10
	CPU          float64 // fraction; default 0.05
	Mem          float64 // fraction; default 0.02
	Disk         float64 // fraction; default 0.01
}

// DefaultConfig returns the defaults: 10 s windows, a 180-window history,
// warm-up 30 windows, persist 2, alert at score 6, quarantine at 15 or after
// 18 anomalous windows, decay after 5 minutes of quiet, a quorum of 2 within
// 2 minutes for disconnect, 1 s heartbeats, 1024 peers, one-sided scores,
// relative floor 0.2 and the Floors listed on its fields.
func DefaultConfig() Config {
	return Config{
		Window:          10 * time.Second,
		History:         180,
		WarmUp:          30,
		Persist:         2,
		AlertScore:      6,
		QuarantineScore: 15,
		QuarantineAfter: 18,
		Quiet:           5 * time.Minute,
		Quorum:          0,
		AgreeWindow:     2 * time.Minute,
		Heartbeat:       time.Second,
		MaxPeers:        1024,
		SelfBusy:        0.75,
		RelFloor:        0.2,
		Floors: Floors{
			MsgRate:      0.5,
			CmdRate:      0.2,
			CmdMix:       0.05,
			ReplyLatency: 5,
			HBJitter:     10,
			CPU:          0.05,
			Mem:          0.02,
			Disk:         0.01,
		},
	}
}

// withDefaults replaces every zero field with its default.
func (c Config) withDefaults() Config {
	d := DefaultConfig()
	def := func(v *float64, dv float64) {
		if *v == 0 {
			*v = dv
		}
	}
	defInt := func(v *int, dv int) {
		if *v == 0 {
			*v = dv
		}
	}
	defDur := func(v *time.Duration, dv time.Duration) {
		if *v == 0 {
			*v = dv
		}
	}
	defDur(&c.Window, d.Window)
	defInt(&c.History, d.History)
	defInt(&c.WarmUp, d.WarmUp)
	defInt(&c.Persist, d.Persist)
	def(&c.AlertScore, d.AlertScore)
	def(&c.QuarantineScore, d.QuarantineScore)
	defInt(&c.QuarantineAfter, d.QuarantineAfter)
	defDur(&c.Quiet, d.Quiet)
	defDur(&c.AgreeWindow, d.AgreeWindow)
	defDur(&c.Heartbeat, d.Heartbeat)
	defInt(&c.MaxPeers, d.MaxPeers)
	def(&c.SelfBusy, d.SelfBusy)
	def(&c.RelFloor, d.RelFloor)
	def(&c.Floors.MsgRate, d.Floors.MsgRate)
	def(&c.Floors.CmdRate, d.Floors.CmdRate)
	def(&c.Floors.CmdMix, d.Floors.CmdMix)
	def(&c.Floors.ReplyLatency, d.Floors.ReplyLatency)
	def(&c.Floors.HBJitter, d.Floors.HBJitter)
	def(&c.Floors.CPU, d.Floors.CPU)
	def(&c.Floors.Mem, d.Floors.Mem)
	def(&c.Floors.Disk, d.Floors.Disk)
	return c
}

// Validate checks c after defaults are applied.
func (c Config) Validate() error {
	c = c.withDefaults()
	pos := func(v float64) bool { return v > 0 && !math.IsInf(v, 0) } // false for NaN
	switch {
	case c.Window < 100*time.Millisecond || c.Window > time.Hour || c.Window%(10*time.Millisecond) != 0:
		return fmt.Errorf("%w: Window %v must be a multiple of 10ms in 100ms..1h", ErrConfig, c.Window)
	case c.History < 3 || c.History > 1<<16:
		return fmt.Errorf("%w: History %d must be in 3..%d", ErrConfig, c.History, 1<<16)
	case c.WarmUp < 3 || c.WarmUp > c.History:
		return fmt.Errorf("%w: WarmUp %d must be in 3..History (%d)", ErrConfig, c.WarmUp, c.History)
	case c.Persist < 1 || c.Persist > maxPersist:
		return fmt.Errorf("%w: Persist %d must be in 1..%d", ErrConfig, c.Persist, maxPersist)
	case !pos(c.AlertScore) || c.AlertScore > maxScore:
		return fmt.Errorf("%w: AlertScore %v must be positive and at most %g", ErrConfig, c.AlertScore, float64(maxScore))
	case !pos(c.QuarantineScore) || c.QuarantineScore < c.AlertScore || c.QuarantineScore > maxScore:
		return fmt.Errorf("%w: QuarantineScore %v must be in AlertScore (%v)..%g", ErrConfig, c.QuarantineScore, c.AlertScore, float64(maxScore))
	case c.QuarantineAfter < 1:
		return fmt.Errorf("%w: QuarantineAfter %d must be positive", ErrConfig, c.QuarantineAfter)
	case c.Quiet < time.Millisecond:
		return fmt.Errorf("%w: Quiet %v must be at least 1ms", ErrConfig, c.Quiet)
	case c.Quorum < 0 || c.Quorum > 64:
		return fmt.Errorf("%w: Quorum %d must be in 0..64 (0: a majority of the observers)", ErrConfig, c.Quorum)
	case c.AgreeWindow < time.Millisecond:
		return fmt.Errorf("%w: AgreeWindow %v must be at least 1ms", ErrConfig, c.AgreeWindow)
	case c.Heartbeat < time.Millisecond || c.Heartbeat >= c.Window:
		return fmt.Errorf("%w: Heartbeat %v must be in 1ms..Window (%v)", ErrConfig, c.Heartbeat, c.Window)
	case !(c.SelfBusy > 0):
		return fmt.Errorf("%w: SelfBusy %v must be positive", ErrConfig, c.SelfBusy)
	case c.MaxPeers < 1:
		return fmt.Errorf("%w: MaxPeers %d must be positive", ErrConfig, c.MaxPeers)
	case !(c.RelFloor >= 0 && c.RelFloor <= 1):
		return fmt.Errorf("%w: RelFloor %v must be in 0..1", ErrConfig, c.RelFloor)
	}
	for i := range numSignals {
		if v := c.floor(i); !pos(v) || v < 1e-9 {
			return fmt.Errorf("%w: Floors.%s %v must be positive, finite and at least 1e-9", ErrConfig, floorName(i), v)
		}
	}
	return nil
}

// floor returns the configured spread floor of signal i.
func (c Config) floor(i int) float64 {
	switch i {
	case sigMsgRate:
		return c.Floors.MsgRate
	case sigCmdRate:
		return c.Floors.CmdRate
	case sigCmdMix:
		return c.Floors.CmdMix
	case sigReplyLatency:
		return c.Floors.ReplyLatency
	case sigHBJitter:
		return c.Floors.HBJitter
	case sigCPU:
		return c.Floors.CPU
	case sigMem:
		return c.Floors.Mem
	case sigDisk:
		return c.Floors.Disk
	}
	return 0
}

func floorName(i int) string {
	switch i {
	case sigMsgRate:
		return "MsgRate"
	case sigCmdRate:
		return "CmdRate"
	case sigCmdMix:
		return "CmdMix"
	case sigReplyLatency:
		return "ReplyLatency"
	case sigHBJitter:
		return "HBJitter"
	case sigCPU:
		return "CPU"
	case sigMem:
		return "Mem"
	case sigDisk:
		return "Disk"
	}
	return "?"
}

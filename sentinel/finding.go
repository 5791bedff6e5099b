package sentinel

import "time"

// Signal names one behavioural measure of a peer. The names are a JSON
// contract (Finding.Signal); see the package doc for each one's unit.
type Signal string

// Signals, in the order findings list them.
const (
	MsgRate      Signal = "msg_rate"      // messages/s, any kind
	CmdRate      Signal = "cmd_rate"      // commands/s
	CmdMix       Signal = "cmd_mix"       // divergence of the window's verb mix from the baseline mix, nats
	ReplyLatency Signal = "reply_latency" // median reply latency to commands, ms
	HBJitter     Signal = "hb_jitter"     // median |heartbeat interval − Config.Heartbeat|, ms
	CPU          Signal = "cpu"           // median cpu gauge, fraction 0..1
	Mem          Signal = "mem"           // median memory gauge, fraction 0..1
	Disk         Signal = "disk"          // median disk gauge, fraction 0..1
)

// Signals returns every signal, in the order findings list them.
func Signals() []Signal {
	out := make([]Signal, numSignals)
	for i := range out {
		out[i] = signalAt(i)
	}
	return out
}

// Signal indexes inside a peer record.
const (
	sigMsgRate = iota
	sigCmdRate
	sigCmdMix
	sigReplyLatency
	sigHBJitter
	sigCPU
	sigMem
	sigDisk
	numSignals
)

// isBehaviour reports whether signal i measures what a peer does (its
// messages and commands) rather than how healthy it is. Only behaviour
// escalates past Alert: a busy, slow or full node is not an attacker.
func isBehaviour(i int) bool { return i <= sigCmdMix }

// Behaviour reports whether s is a behaviour signal (msg_rate, cmd_rate,
// cmd_mix), the only kind that escalates past Alert; health signals
// (reply_latency, hb_jitter, cpu, mem, disk) give alerts and findings only.
func (s Signal) Behaviour() bool {
	for i := range numSignals {
		if signalAt(i) == s {
			return isBehaviour(i)
		}
	}
	return false
}

func signalAt(i int) Signal {
	switch i {
	case sigMsgRate:
		return MsgRate
	case sigCmdRate:
		return CmdRate
	case sigCmdMix:
		return CmdMix
	case sigReplyLatency:
		return ReplyLatency
	case sigHBJitter:
		return HBJitter
	case sigCPU:
		return CPU
	case sigMem:
		return Mem
	case sigDisk:
		return Disk
	}
	return ""
}

// unit is how a signal's values read in a Detail.
func unit(i int) string {
	switch i {
	case sigMsgRate:
		return " msg/s"
	case sigCmdRate:
		return " cmd/s"
	case sigCmdMix:
		return " nats"
	case sigReplyLatency, sigHBJitter:
		return " ms"
	}
	return ""
}

// Level is how far a peer has been escalated. The names are a JSON contract.
type Level string

// Levels, from the lowest. A peer rises at most one level per evaluated
// window and decays one level per Config.Quiet without an anomalous window.
const (
	OK         Level = "ok"         // nothing anomalous, or long enough ago
	Alert      Level = "alert"      // a signal scored at least AlertScore
	Quarantine Level = "quarantine" // alerts sustained, or a score at least QuarantineScore
	Disconnect Level = "disconnect" // quarantined here and reported by a quorum of other nodes
)

// level is a Level as a rank, the form peer records keep.
type level uint8

const (
	lvOK level = iota
	lvAlert
	lvQuarantine
	lvDisconnect
)

func (l level) Level() Level {
	switch l {
	case lvAlert:
		return Alert
	case lvQuarantine:
		return Quarantine
	case lvDisconnect:
		return Disconnect
	}
	return OK
}

// Finding is what the sentinel says about one signal of one peer. Value,
// Baseline and Spread are in the signal's unit and describe the peer's
// latest window with a value for the signal.
type Finding struct {
	Peer   string `json:"peer"`
	Signal Signal `json:"signal"`
	// Value is the signal's value in its latest window.
	Value float64 `json:"value"`
	// Baseline is the median of the signal's history before that window.
	Baseline float64 `json:"baseline"`
	// Spread is the divisor of the score: max(1.4826·MAD, floor).
	Spread float64 `json:"spread"`
	// Score is the smallest of the signal's last Persist window scores
	// ((Value − Baseline)/Spread, clipped at 0 unless TwoSided), 0 while
	// warming up. Always finite and at least 0.
	Score float64 `json:"score"`
	// Level is the peer's current level, the same in all its findings.
	Level Level `json:"level"`
	// Since is the start of the first window of the signal's current run of
	// anomalous windows; zero when Score is below AlertScore.
	Since time.Time `json:"since,omitzero"`
	// Detail says the same for people, with the verb that moved the mix or
	// how far the warm-up is.
	Detail string `json:"detail,omitempty"`
}

// Stats counts what a Sentinel holds and what it refused.
type Stats struct {
	Peers   int    `json:"peers"`   // peer records held
	Refused uint64 `json:"refused"` // observations of a new peer refused because MaxPeers were held
	Invalid uint64 `json:"invalid"` // observations ignored: NaN, ±Inf, negative, a gauge above 1, an empty peer
}

// Package sentinel owns per-peer behavioural baselines and anomaly scores:
// a node feeds its Sentinel what it observes about each peer (messages,
// commands and their verbs, reply latencies, heartbeats, resource gauges),
// and the Sentinel says which peers behave unlike themselves and how far
// each has been escalated (ok, alert, quarantine, disconnect).
//
// It is pure logic: no I/O, no NATS, no wall clock (every method takes now),
// no randomness, no package-level mutable state. It does not publish alerts
// (package node publishes rn.<chevron>.evt.alert), does not act on a level
// (node decides what quarantine and disconnect do, and whether a decay lifts
// anything), does not authenticate reporters of Agree (the caller passes
// only signed alerts from other nodes), and does not judge liveness (a
// silent peer is membership's business) or chain integrity (package trust).
//
// # Windows and signals
//
// Time is cut into fixed windows of Config.Window (10 s), aligned to the
// Unix epoch. A window closes when Evaluate, Findings, Level or Agree runs
// after its end, or on the peer's next observation, so the outcome does not
// depend on how often Evaluate runs. A window with no observation at all is
// idle: it is neither scored nor learnt from, so a peer that was away does
// not come back to a baseline of zeros. A record's first window, which
// began before the peer was first heard, is skipped. Each closed window
// gives at most one value per signal:
//
//	msg_rate       Message calls / s, leaving out the window's two busiest tenths
//	cmd_rate       Command calls / s, the same way
//	cmd_mix        verb-mix divergence (below), nats; windows with commands, once a baseline mix exists
//	reply_latency  median of the peer's last 16 reply latencies, ms
//	hb_jitter      median of the peer's last 16 |heartbeat interval − Heartbeat|, ms
//	cpu, mem, disk median of the peer's last 16 gauge samples, fractions 0..1
//
// Rates count by tenths of the window and leave out the two busiest, so a
// burst of up to a tenth of a window (one second: a reply storm to a scan),
// wherever it falls, does not move them, while a flood does. The last-16
// medians are taken when the window brought at least one new sample; they
// carry over windows, so one late heartbeat, one slow reply or one cpu
// spike is one sample of sixteen even for a quiet peer. The price: fewer than
// half of the samples being odd goes unseen, and a change shows once it is
// most of the last 16 samples (a window at 1 sample/s, longer for peers that
// sample less often). An interval longer than a Window is a gap, not jitter.
//
// Message, Command, Reply and Heartbeat are separate observations: the node
// calls Message for every message and the typed call in addition. Gauges
// are fractions (divide percentages by 100); a value outside [0,1], a NaN or
// infinite value, a negative latency and an empty peer name are ignored and
// counted (Stats.Invalid), never learnt from. An observation whose time lies
// in an earlier window than the peer's current one (callers racing, a clock
// stepping back) counts in the current window.
//
// cmd_mix: per peer, the first 32 distinct verbs get a bucket each and
// everything else shares a 33rd. The baseline mix b is a sum of window mixes,
// each normalised to weigh 1, the old weight decaying by 1 − 1/History per
// window learnt. With B = Σb, n commands in the window and c_i per bucket,
//
//	q_i = 0.99·b_i/B + 0.01/33            (a never-seen verb is rare, not impossible)
//	p_i = (c_i + 5·q_i) / (n + 5)         (five pseudo-commands pull a small window towards q)
//	cmd_mix = Σ_i p_i · ln(p_i / q_i)     (Kullback–Leibler divergence, ≥ 0, at most ln(3300) ≈ 8.1)
//
// Against a peer that only ever sent ping (a baseline near 0 nats), a window
// of five pings and one exec scores about 0.43 nats, five exec alone 3.4, a
// flood of exec about 8.
//
// # Scores
//
// Each signal keeps the values of its last History (180) learnt windows.
// With m their median and MAD the median of |x − m|,
//
//	spread = max(1.4826·MAD, floor)
//	raw    = (value − m) / spread         clipped at 0 (TwoSided: |value − m|), at most 1e9
//	score  = min(raw of the signal's last Persist values)
//
// where floor is the signal's Floors entry, and for msg_rate, cmd_rate and
// reply_latency at least RelFloor·|m| (busy peers are judged on relative
// change). 1.4826·MAD estimates the standard deviation of normal noise while
// ignoring up to half of the history being outliers; the floor keeps a flat
// history from making the smallest change infinite. No signal is scored
// before its history holds WarmUp (30) values: its score is 0 until then.
// Persist (2) means a single odd window never alerts: a signal is anomalous
// when Persist consecutive values of it all score at least AlertScore.
// Scores are one-sided by default: only rises are anomalous, because a node
// whose work ended (cpu, rates and latency fall) is not misbehaving and a
// falling rate is liveness, which membership already judges.
//
// Learning without being taught: a value whose raw score is below
// AlertScore enters the history as it is. An anomalous one does not, except
// one in four, which enters clipped to m ± AlertScore·spread. A sustained
// attack therefore moves the median only after the clipped stand-ins are
// half the history (from a full 180-window history: 360 anomalous windows,
// an hour; just after warm-up: 120 windows, 20 minutes), and then only to
// the alert boundary: it never becomes normal within a minute. A legitimate
// lasting change (a new workload) is learnt the same way, in the same time,
// raising alerts until then. The verb-mix baseline follows the cmd_mix
// value: a window's mix is learnt when its cmd_mix value is (or, before a
// mix baseline exists, when its cmd_rate value is).
//
// # Escalation
//
// Per peer, a state machine advanced by each evaluated (closed, not idle)
// window and by time:
//
//   - ok → alert: an evaluated window in which some signal's score ≥ AlertScore
//     (an anomalous window).
//   - alert → quarantine: an anomalous window with a score ≥ QuarantineScore,
//     or the QuarantineAfter-th consecutive anomalous window (an idle window
//     breaks the run).
//   - quarantine → disconnect: Quorum distinct reporters other than the peer
//     (Agree) with a report within AgreeWindow, while this node's own latest
//     anomalous window about the peer is within AgreeWindow too. Reports
//     alone never raise a peer this node sees as normal.
//   - down one level: Quiet after both the latest anomalous window and the
//     latest level change; each step needs another Quiet, effective at the
//     time it was due whatever the cadence of Evaluate.
//
// A peer rises at most one level per evaluated window, so the node always
// sees alert before quarantine. Every Finding carries the peer's current level.
//
// # Defaults and why
//
//   - Window 10 s: about ten heartbeats and gauge samples per value, so the
//     medians mean something; a flood alerts after two windows, 20 s.
//   - History 180 (30 minutes of windows): long enough to span ordinary
//     bursts, short enough to follow the day; 8 bytes per window and signal,
//     about 12 KB per peer with every signal in use, 13 MB at MaxPeers.
//   - WarmUp 30 (5 minutes): MAD over fewer values is too unstable to score.
//   - Persist 2: one odd window (a burst, a GC pause) never alerts.
//   - AlertScore 6: six robust standard deviations; under normal noise that is
//     about 1e-9 per window, and the floors make real noise tamer still. The
//     six-hour, five-peer noisy soak test raises no alert.
//   - QuarantineScore 15, QuarantineAfter 18 (3 minutes): gross anomalies
//     are quarantined in the window after the alert, moderate ones only when
//     they last; quarantine is an action, an alert only a report.
//   - Quiet 5 minutes: a peer must behave for a while before trust returns,
//     one level at a time.
//   - Quorum 2, AgreeWindow 2 minutes: one other node may be the one that is
//     wrong (or lying); two agreeing with this node's own quarantine are not.
//   - Heartbeat 1 s: DESIGN.md's heartbeat interval.
//   - MaxPeers 1024: as package trust; a new peer beyond it is refused, never
//     evicting a known one.
//   - Floors msg_rate 0.5 msg/s, cmd_rate 0.2 cmd/s, cmd_mix 0.05 nats,
//     reply_latency 5 ms, hb_jitter 10 ms, cpu 0.05, mem 0.02, disk 0.01, and
//     RelFloor 0.2: at AlertScore 6 the smallest rise that can alert against
//     a flat history is +3 msg/s, +1.2 cmd/s, +0.3 nats, +30 ms, +60 ms, +0.3
//     cpu, +0.12 mem, +0.06 disk, and for a rate or latency +120% of its
//     median: less is not worth an operator's time.
package sentinel

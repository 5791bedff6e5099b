package node

import (
	"encoding/json"
	"fmt"
	"sort"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/shirou/gopsutil/v4/cpu"
	"github.com/shirou/gopsutil/v4/disk"
	"github.com/shirou/gopsutil/v4/mem"

	"github.com/robonet-mesh/robonet/command"
	"github.com/robonet-mesh/robonet/sentinel"
	"github.com/robonet-mesh/robonet/subjects"
	"github.com/robonet-mesh/robonet/trust"
	"github.com/robonet-mesh/robonet/wire"
)

// AlertsReport is a node's answer to the alerts query: what its Sentinel
// finds now about its peers, and what it did about it.
type AlertsReport struct {
	Chevron string       `json:"chevron"`
	Name    string       `json:"name"`
	Alerts  []wire.Alert `json:"alerts"`
}

// sentinelState is the node's side of the Sentinel: escalations acted on
// and the alerts other nodes published about this node.
type sentinelState struct {
	mu      sync.Mutex            // guards the maps and last
	acted   map[string]string     // peer → the level acted on (quarantined, revoked)
	aboutMe map[string]wire.Alert // reporter+signal → the latest alert about this node
	last    []wire.Alert          // the alerts of the latest evaluation
}

// peerID is how the Sentinel names a key: a node by its chevron, a user by
// its key.
func (n *Node) peerID(pub, role string) string {
	if role == wire.RoleNode {
		if c, ok := n.ids.nodeChevron(pub); ok {
			return c.String()
		}
	}
	return pub
}

// peerKey is the key behind a Sentinel peer name.
func (n *Node) peerKey(peer string) (pub string, chev string) {
	if c, err := subjects.Parse(peer); err == nil {
		k, _ := n.ids.ownerOf(c)
		return k, c.String()
	}
	return peer, ""
}

// startSentinel subscribes to other nodes' alerts and starts evaluating.
func (n *Node) startSentinel() error {
	n.sst = &sentinelState{acted: map[string]string{}, aboutMe: map[string]wire.Alert{}}
	for _, subj := range subjects.EventWildcards(subjects.EvtAlert) {
		if _, err := n.nc.Subscribe(subj, n.onAlert); err != nil {
			return err
		}
	}
	for _, subj := range []string{subjects.Query(subjects.QueryAlerts), subjects.QueryAt(subjects.QueryAlerts, n.ServerName())} {
		if _, err := n.nc.Subscribe(subj, n.onAlertsQuery); err != nil {
			return err
		}
	}
	n.wg.Add(1)
	go n.sentinelLoop()
	return nil
}

func (n *Node) sentinelLoop() {
	defer n.wg.Done()
	t := time.NewTicker(n.sent.Config().Window)
	defer t.Stop()
	lastSweep := time.Now()
	for {
		select {
		case <-n.ctx.Done():
			return
		case now := <-t.C:
			n.evaluate(now)
			if now.Sub(lastSweep) >= sweepEvery {
				n.sweepDeparted()
				lastSweep = now
			}
		}
	}
}

// evaluate closes the Sentinel's windows, publishes an alert per anomalous
// signal, and escalates: quarantine takes the peer's trust to 0 here (its
// commands are refused; its heartbeats still count for liveness); a
// disconnect (a quorum of other nodes agreeing) also closes the key's
// connections here for DefaultSentinelBlock. Both are this node's own
// decisions, never written to the swarm. A peer back to ok is released if
// the quarantine was the Sentinel's.
func (n *Node) evaluate(now time.Time) {
	n.sent.SetObservers(n.observers())
	findings := n.sent.Evaluate(now)
	self := n.selfChev().String()
	levels := map[string]sentinel.Level{}
	var alerts []wire.Alert
	for _, f := range findings {
		levels[f.Peer] = f.Level
		if f.Score < n.sent.Config().AlertScore {
			continue
		}
		_, chev := n.peerKey(f.Peer)
		alerts = append(alerts, wire.Alert{Kind: "alert", Peer: f.Peer, Chevron: chev, By: self, Signal: string(f.Signal),
			Score: f.Score, Value: f.Value, Baseline: f.Baseline, Level: string(f.Level), Detail: f.Detail, Time: now.UTC()})
	}
	n.sst.mu.Lock()
	var release []string
	for peer, lv := range n.sst.acted {
		if lv == "disconnected" {
			if pub, _ := n.peerKey(peer); pub != "" && n.sentinelBlocked(pub) {
				continue // the block runs its course
			}
		}
		if cur, still := levels[peer]; !still || cur == sentinel.Alert || cur == sentinel.OK {
			release = append(release, peer)
			delete(n.sst.acted, peer)
		}
	}
	n.sst.mu.Unlock()
	for _, peer := range release {
		if pub, _ := n.peerKey(peer); pub != "" && n.sentinelQuarantined(pub) {
			if err := n.ledger.Release(pub, now); err == nil {
				n.log.Info("sentinel: peer back to normal, released", "peer", peer)
			}
		}
	}
	for i, a := range alerts {
		alerts[i].Action = n.escalate(a, sentinel.Level(a.Level), now)
		n.st.alert(a.Level)
		data, err := json.Marshal(alerts[i])
		if err != nil {
			continue
		}
		if err := n.publish(subjects.Event(n.selfChev(), subjects.EvtAlert), data); err != nil {
			n.log.Debug("publish alert", "err", err)
		}
	}
	n.sst.mu.Lock()
	n.sst.last = alerts
	n.sst.mu.Unlock()
}

// observers is how many other nodes can watch a peer: the live members
// other than this node and the peer.
func (n *Node) observers() int {
	return max(len(n.reg.heardAlive(time.Now(), n.pub)), 1)
}

// escalate acts on a peer's level once per level and says what it did. It
// never takes over a quarantine someone else placed (an operator, the
// fork detector), so a Sentinel release cannot lift one.
func (n *Node) escalate(a wire.Alert, lv sentinel.Level, now time.Time) string {
	pub, _ := n.peerKey(a.Peer)
	if pub == "" || pub == n.pub {
		return ""
	}
	n.sst.mu.Lock()
	done := n.sst.acted[a.Peer]
	n.sst.mu.Unlock()
	reason := fmt.Sprintf("%s%s score %.1f", sentinelReason, a.Signal, a.Score)
	quarantine := func() bool {
		if p, ok := n.ledger.Peer(pub); ok && p.State == trust.Quarantined && !n.sentinelQuarantined(pub) {
			return false // someone else's quarantine
		}
		return n.ledger.Quarantine(pub, reason, now) == nil
	}
	switch {
	case lv == sentinel.Disconnect && done != "disconnected":
		quarantine()
		n.sentinelBlock(pub, reason+", confirmed by a quorum of nodes", now)
		n.sst.mu.Lock()
		n.sst.acted[a.Peer] = "disconnected"
		n.sst.mu.Unlock()
		return "disconnected"
	case lv == sentinel.Quarantine && done == "":
		if !quarantine() {
			return ""
		}
		n.sst.mu.Lock()
		n.sst.acted[a.Peer] = "quarantined"
		n.sst.mu.Unlock()
		n.log.Warn("sentinel: peer quarantined", "peer", a.Peer, "signal", a.Signal, "score", a.Score)
		return "quarantined"
	}
	return done
}

// onAlert records another node's alert: about this node, for scan; about a
// peer, as an agreeing report for the disconnect quorum.
func (n *Node) onAlert(m *nats.Msg) {
	from, _, ok := subjects.ParseEvent(m.Subject)
	if !ok || from == n.selfChev() {
		return
	}
	var a wire.Alert
	if err := wire.Decode(m.Data, &a); err != nil || a.Peer == "" || a.By != from.String() {
		return
	}
	if _, ok := n.verifyNodeMsg(m, from); !ok {
		return
	}
	now := time.Now()
	n.sent.Message(from.String(), now)
	if a.Peer == n.selfChev().String() || a.Peer == n.pub {
		n.sst.mu.Lock()
		n.sst.aboutMe[a.By+"/"+a.Signal] = a
		n.sst.mu.Unlock()
		return
	}
	if a.Level != string(sentinel.OK) && a.Score >= n.sent.Config().AlertScore {
		n.sent.Agree(a.Peer, a.By, now)
	}
}

// SentinelFindings are what other nodes' Sentinels reported about this node
// within the last few windows, for scan.
func (n *Node) SentinelFindings() []command.Finding {
	if n.sst == nil {
		return nil
	}
	horizon := time.Now().Add(-3 * n.sent.Config().Window)
	n.sst.mu.Lock()
	defer n.sst.mu.Unlock()
	var out []command.Finding
	for k, a := range n.sst.aboutMe {
		if a.Time.Before(horizon) {
			delete(n.sst.aboutMe, k)
			continue
		}
		sev := command.SeverityWarning
		if a.Level == string(sentinel.Quarantine) || a.Level == string(sentinel.Disconnect) {
			sev = command.SeverityCritical
		}
		out = append(out, command.Finding{Check: command.CheckSentinel, Severity: sev, Subject: a.Signal,
			Message: fmt.Sprintf("node %s sees %s at %.3g against a baseline of %.3g (score %.1f, %s)", a.By, a.Signal, a.Value, a.Baseline, a.Score, a.Level)})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Message < out[j].Message })
	return out
}

// AlertsReport is what this node's Sentinel reports now.
func (n *Node) AlertsReport() AlertsReport {
	r := AlertsReport{Chevron: n.selfChev().String(), Name: n.name, Alerts: []wire.Alert{}}
	if n.sst == nil {
		return r
	}
	n.sst.mu.Lock()
	r.Alerts = append(r.Alerts, n.sst.last...)
	n.sst.mu.Unlock()
	return r
}

func (n *Node) onAlertsQuery(m *nats.Msg) {
	n.answerQuery(m, subjects.QueryAlerts, anyRole, func(string, string, []byte) (any, error) { return n.AlertsReport(), nil })
}

// gauges measures this node for its heartbeat: busy CPU since the last
// call, used memory, used space of the data dir's filesystem (fractions).
func (n *Node) gauges() (float64, float64, float64) {
	if n.opts.Gauges != nil {
		return n.opts.Gauges()
	}
	var c, m, d float64
	if p, err := cpu.Percent(0, false); err == nil && len(p) == 1 {
		c = p[0] / 100
	}
	if v, err := mem.VirtualMemory(); err == nil {
		m = v.UsedPercent / 100
	}
	if u, err := disk.Usage(n.opts.DataDir); err == nil {
		d = u.UsedPercent / 100
	}
	return c, m, d
}

// SentinelView is what this node's Sentinel holds about peer now (a
// node's chevron or a key), ok and warming-up signals included.
func (n *Node) SentinelView(peer string) []sentinel.Finding {
	return n.sent.Findings(peer, time.Now())
}

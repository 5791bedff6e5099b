package main

// The pure side of `robonet top`: the state of the screen and what a key does
// to it (topview.go draws it). No I/O and no clock: data and the time
// arrive in messages (top.go), so every behaviour is table-testable.

import (
	"cmp"
	"encoding/json"
	"fmt"
	"maps"
	"slices"
	"strings"
	"time"

	"github.com/robonet-mesh/robonet/command"
	"github.com/robonet-mesh/robonet/mesh"
	"github.com/robonet-mesh/robonet/node"
	"github.com/robonet-mesh/robonet/subjects"
	"github.com/robonet-mesh/robonet/wire"
)

// Bounds on what top keeps of what nodes send: a node's answer is its
// word, not a reason to grow without limit.
const (
	topMaxGauges     = 64 // gauges kept per node for the detail view
	topMaxAlerts     = 32 // alerts kept per node
	topMaxGaugeNodes = 64 // nodes asked for gauges at once (the visible rows)
	topMaxInput      = subjects.MaxSelectorLen
)

// topColumn is a sortable column of the table.
type topColumn int

const (
	topColChevron topColumn = iota
	topColName
	topColState
	topColRole
	topColLoad
	topColMem
	topColCPU
	topColAlerts
	topColumns // the number of columns
)

func (c topColumn) String() string {
	switch c {
	case topColName:
		return "name"
	case topColState:
		return "state"
	case topColRole:
		return "role"
	case topColLoad:
		return "load"
	case topColMem:
		return "mem"
	case topColCPU:
		return "cpu"
	case topColAlerts:
		return "alerts"
	}
	return "chevron"
}

// parseTopColumn is the column a --sort value names.
func parseTopColumn(s string) (topColumn, error) {
	for c := topColChevron; c < topColumns; c++ {
		if c.String() == s {
			return c, nil
		}
	}
	return 0, fmt.Errorf("--sort %q: not one of chevron, name, state, role, load, mem, cpu, alerts", topClean(s, 32))
}

// numeric columns sort the largest first; S reverses any column.
func (c topColumn) descending() bool { return c >= topColLoad }

// topGaugeSample is what top keeps of one node's gauge answer.
type topGaugeSample struct {
	at      time.Time
	status  string  // mesh.StatusOK, or why there is no value (denied, timeout, …)
	errText string  // the node's error, if any
	mem     float64 // mem.used_pct; -1 unknown
	cpu     float64 // cpu.busy_pct; -1 unknown
	disk    float64 // the fullest mount's disk.used_pct; -1 unknown
	gauges  []command.Gauge
}

// newTopGaugeSample reads one node's gauge result.
func newTopGaugeSample(r mesh.NodeResult, at time.Time) topGaugeSample {
	s := topGaugeSample{at: at, status: r.Status, errText: r.Error, mem: -1, cpu: -1, disk: -1}
	if r.Status != mesh.StatusOK {
		return s
	}
	var rep command.GaugeReply
	if err := json.Unmarshal(r.Output, &rep); err != nil {
		s.status, s.errText = mesh.StatusError, "unreadable gauge reply: "+err.Error()
		return s
	}
	for _, g := range rep.Gauges {
		switch g.Name {
		case "mem.used_pct":
			s.mem = g.Value
		case "cpu.busy_pct":
			s.cpu = g.Value
		case "disk.used_pct":
			s.disk = max(s.disk, g.Value)
		}
	}
	// A copy: the rest of a large reply is not kept alive.
	s.gauges = slices.Clone(rep.Gauges[:min(len(rep.Gauges), topMaxGauges)])
	return s
}

// topModel is the state of the screen. The zero value is not ready: use
// newTopModel.
type topModel struct {
	width, height int
	styled        bool // emit SGR attributes (reverse video, bold); colour only when colour is set too
	colour        bool
	now           time.Time

	swarm    string
	members  []wire.Member
	nodesAt  time.Time
	nodesErr string
	gauges   map[string]topGaugeSample // chevron → latest sample
	alerts   map[string][]wire.Alert   // chevron → alerts about it
	alertN   map[string]int            // chevron → distinct signals alerted
	worst    map[string]string         // chevron → the worst level alerted
	alertsAt time.Time
	alertErr string
	gaugeErr string

	sortCol    topColumn
	reverse    bool
	filterText string // the selector in force; "" none
	filter     subjects.Selector
	editing    bool   // the filter prompt is open
	input      string // what is typed at the prompt
	msg        string // the error line

	rows   []wire.Member // members after filter and sort
	cursor int           // index into rows
	top    int           // first row shown

	detail       string // chevron shown in detail; "" the table
	detailScroll int
}

func newTopModel(width, height int) *topModel {
	m := &topModel{width: width, height: height, gauges: map[string]topGaugeSample{}, alerts: map[string][]wire.Alert{},
		alertN: map[string]int{}, worst: map[string]string{}}
	m.clampSize()
	return m
}

func (m *topModel) clampSize() {
	// Tiny or absurd sizes are drawn as if sane; the terminal clips.
	m.width = min(max(m.width, 20), 1000)
	m.height = min(max(m.height, 6), 1000)
}

// resize follows the terminal's size.
func (m *topModel) resize(w, h int) {
	m.width, m.height = w, h
	m.clampSize()
	m.keepCursorVisible()
}

// setFilter applies a selector typed at the prompt; an invalid one leaves
// the filter in force and says why. An empty one removes the filter.
func (m *topModel) setFilter(text string) error {
	text = strings.TrimSpace(text)
	if text == "" {
		m.filterText, m.filter = "", subjects.Selector{}
		m.refresh()
		return nil
	}
	sel, err := subjects.ParseSelector(text)
	if err != nil {
		return err
	}
	m.filterText, m.filter = text, sel
	m.refresh()
	return nil
}

// setNodes takes a fresh registry view (err: the poll failed; the last
// view stays on screen, marked stale).
func (m *topModel) setNodes(ms []wire.Member, err error, at time.Time) {
	m.now = at
	if err != nil {
		m.nodesErr = oneLine(err)
		return
	}
	m.nodesErr = ""
	m.members, m.nodesAt = ms, at
	// Forget what is known of nodes that left the registry.
	known := make(map[string]bool, len(ms))
	for _, x := range ms {
		known[x.Chevron] = true
	}
	maps.DeleteFunc(m.gauges, func(c string, _ topGaugeSample) bool { return !known[c] })
	maps.DeleteFunc(m.alerts, func(c string, _ []wire.Alert) bool { return !known[c] })
	maps.DeleteFunc(m.alertN, func(c string, _ int) bool { return !known[c] })
	maps.DeleteFunc(m.worst, func(c string, _ string) bool { return !known[c] })
	m.refresh()
}

// setGauges merges a gather of gauges.
func (m *topModel) setGauges(rs []mesh.NodeResult, err error, at time.Time) {
	m.gaugeErr = ""
	if err != nil {
		m.gaugeErr = oneLine(err)
	}
	for _, r := range rs {
		if r.Unexpected {
			continue
		}
		m.gauges[r.Chevron] = newTopGaugeSample(r, at)
	}
	m.refresh()
}

// setAlerts replaces the alerts with what the nodes reported.
func (m *topModel) setAlerts(reports []node.AlertsReport, err error, at time.Time) {
	if err != nil {
		m.alertErr = oneLine(err)
		if len(reports) == 0 {
			return
		}
	} else {
		m.alertErr = ""
	}
	known := make(map[string]bool, len(m.members))
	for _, x := range m.members {
		known[x.Chevron] = true
	}
	// Kept only for registered nodes: reports name whatever they like.
	m.alerts, m.alertN, m.worst, m.alertsAt = map[string][]wire.Alert{}, map[string]int{}, map[string]string{}, at
	signals := map[[2]string]bool{}
	rank := map[string]int{"alert": 1, "quarantine": 2, "disconnect": 3}
	for _, r := range reports {
		for _, a := range r.Alerts {
			c := cmp.Or(a.Chevron, a.Peer)
			if !known[c] || len(m.alerts[c]) >= topMaxAlerts {
				continue
			}
			m.alerts[c] = append(m.alerts[c], a)
			if k := [2]string{c, a.Signal}; !signals[k] {
				signals[k] = true
				m.alertN[c]++
			}
			if rank[a.Level] > rank[m.worst[c]] {
				m.worst[c] = a.Level
			}
		}
	}
	m.refresh()
}

// alertCount is the number of distinct signals alerted about a node, and
// the worst level among them.
func (m *topModel) alertCount(chev string) (int, string) {
	return m.alertN[chev], m.worst[chev]
}

// refresh recomputes the rows from the members, the filter and the sort,
// keeping the cursor on the node it was on.
func (m *topModel) refresh() {
	var at string
	if m.cursor < len(m.rows) {
		at = m.rows[m.cursor].Chevron
	}
	rows := m.members
	if m.filterText != "" {
		rows = mesh.Resolve(m.filter, m.members)
	}
	m.rows = m.sorted(rows)
	m.cursor = 0
	for i, r := range m.rows {
		if r.Chevron == at {
			m.cursor = i
			break
		}
	}
	m.keepCursorVisible()
}

// topSortKey is a row with what it sorts on, computed once per sort (a
// chevron parsed per comparison made a 10,000-row sort cost 25 ms).
type topSortKey struct {
	i    int // index in the rows (small keys sort fast; members are large)
	chev subjects.Chevron
	ok   bool // chev parsed
	num  float64
	text string
}

// sorted returns rows in the order of the sort column, ties in chevron order.
func (m *topModel) sorted(rows []wire.Member) []wire.Member {
	keys := make([]topSortKey, len(rows))
	for i, r := range rows {
		k := topSortKey{i: i}
		c, err := subjects.Parse(r.Chevron)
		k.chev, k.ok = c, err == nil
		switch m.sortCol {
		case topColName:
			k.text = r.Name
		case topColState:
			k.text = r.State
		case topColRole:
			k.text = node.MemberRole(r)
		case topColLoad:
			k.num = r.Load
		case topColMem:
			k.num = m.gauge(r.Chevron).mem
		case topColCPU:
			k.num = m.gauge(r.Chevron).cpu
		case topColAlerts:
			n, _ := m.alertCount(r.Chevron)
			k.num = float64(n)
		}
		keys[i] = k
	}
	sign := 1
	if m.sortCol.descending() != m.reverse {
		sign = -1
	}
	slices.SortFunc(keys, func(a, b topSortKey) int {
		c := strings.Compare(a.text, b.text)
		if c == 0 {
			c = cmp.Compare(a.num, b.num)
		}
		if c != 0 {
			return sign * c
		}
		if a.ok && b.ok {
			return a.chev.Compare(b.chev)
		}
		return strings.Compare(rows[a.i].Chevron, rows[b.i].Chevron)
	})
	out := make([]wire.Member, len(keys))
	for i, k := range keys {
		out[i] = rows[k.i]
	}
	return out
}

// gauge is the latest sample of a node, or an unknown one.
func (m *topModel) gauge(chev string) topGaugeSample {
	if g, ok := m.gauges[chev]; ok {
		return g
	}
	return topGaugeSample{mem: -1, cpu: -1, disk: -1}
}

// tableRows is how many rows of nodes fit: the screen less two header
// lines, the column titles, the message line and the key line.
func (m *topModel) tableRows() int { return max(m.height-5, 1) }

func (m *topModel) keepCursorVisible() {
	m.cursor = min(max(m.cursor, 0), max(len(m.rows)-1, 0))
	n := m.tableRows()
	if m.cursor < m.top {
		m.top = m.cursor
	}
	if m.cursor >= m.top+n {
		m.top = m.cursor - n + 1
	}
	m.top = min(max(m.top, 0), max(len(m.rows)-n, 0))
}

// gaugeTargets are the nodes worth asking for gauges: the live ones on
// screen (and the one in detail), never more than topMaxGaugeNodes, so the
// cost of top does not grow with the swarm.
func (m *topModel) gaugeTargets() []wire.Member {
	var out []wire.Member
	seen := map[string]bool{}
	add := func(x wire.Member) {
		if x.State != wire.StateOffline && !seen[x.Chevron] && len(out) < topMaxGaugeNodes {
			seen[x.Chevron] = true
			out = append(out, x)
		}
	}
	if m.detail != "" {
		for _, x := range m.members {
			if x.Chevron == m.detail {
				add(x)
			}
		}
	}
	for _, x := range m.rows[m.top:min(m.top+m.tableRows(), len(m.rows))] {
		add(x)
	}
	return out
}

// key applies one key press (k as bubbletea names it: "q", "ctrl+c",
// "enter", "up", …; text the printable text it carries) and reports
// whether top should quit.
func (m *topModel) key(k, text string) (quit bool) {
	if k == "ctrl+c" {
		return true
	}
	switch {
	case m.editing:
		m.editKey(k, text)
		return false
	case m.detail != "":
		return m.detailKey(k)
	}
	switch k {
	case "q":
		return true
	case "s":
		m.sortCol = (m.sortCol + 1) % topColumns
		m.refresh()
	case "S":
		m.reverse = !m.reverse
		m.refresh()
	case "/":
		m.editing, m.input, m.msg = true, m.filterText, ""
	case "enter":
		if m.cursor < len(m.rows) {
			m.detail, m.detailScroll = m.rows[m.cursor].Chevron, 0
		}
	case "esc":
		m.msg = ""
	case "up", "k":
		m.cursor--
	case "down", "j":
		m.cursor++
	case "pgup":
		m.cursor -= m.tableRows()
	case "pgdown", "space":
		m.cursor += m.tableRows()
	case "home", "g":
		m.cursor = 0
	case "end", "G":
		m.cursor = len(m.rows) - 1
	}
	m.keepCursorVisible()
	return false
}

func (m *topModel) editKey(k, text string) {
	switch k {
	case "enter":
		if err := m.setFilter(m.input); err != nil {
			// What is kept comes first: a long error is cut at the right.
			m.msg = "filter kept (" + cmp.Or(m.filterText, "none") + "): " + oneLine(err)
		} else {
			m.msg = ""
		}
		m.editing = false
	case "esc":
		m.editing = false
	case "backspace", "ctrl+h":
		if m.input != "" {
			m.input = m.input[:len(m.input)-1]
		}
	case "ctrl+u":
		m.input = ""
	default:
		// Selectors are ASCII: anything else could only make it invalid.
		for _, r := range text {
			if r >= 0x20 && r < 0x7f && len(m.input) < topMaxInput {
				m.input += string(r)
			}
		}
	}
}

func (m *topModel) detailKey(k string) (quit bool) {
	switch k {
	case "q":
		return true
	case "esc", "backspace", "left", "h":
		m.detail = ""
	case "up", "k":
		m.detailScroll = max(m.detailScroll-1, 0)
	case "down", "j":
		m.detailScroll++
	case "pgup":
		m.detailScroll = max(m.detailScroll-m.tableRows(), 0)
	case "pgdown", "space":
		m.detailScroll += m.tableRows()
	case "home", "g":
		m.detailScroll = 0
	case "end", "G":
		m.detailScroll = 1 << 20 // the view clamps it to the last page
	}
	return false
}

// topPollEvery is the wait before the next poll: base, or four times what the
// last poll took when that is longer (a slow link or a large swarm is
// asked less often), never more than ceiling.
func topPollEvery(base, took, ceiling time.Duration) time.Duration {
	return min(max(base, 4*took), ceiling)
}

// topAlertsEvery is the wait between two alerts queries. Every live node
// answers one, so the wait grows with the swarm: 2 s up to 40 live nodes,
// then 50 ms per node, at most a minute (10,000 nodes: one answer each
// per minute).
func topAlertsEvery(live int) time.Duration {
	return min(max(2*time.Second, time.Duration(live)*50*time.Millisecond), time.Minute)
}

package main

// The drawing side of `robonet top`'s pure model: the screen as a string of
// exactly height lines no wider than width, with text from the network
// made safe to draw.

import (
	"cmp"
	"fmt"
	"strings"

	"github.com/robonet-mesh/robonet/command"
	"github.com/robonet-mesh/robonet/mesh"
	"github.com/robonet-mesh/robonet/node"
	"github.com/robonet-mesh/robonet/wire"
)

// SGR sequences used when styled. Colour goes only to the state and the
// alerts, and only when colour is on: reverse video and bold carry the
// meaning without it (NO_COLOR, a monochrome terminal).
const (
	topSGRReset   = "\x1b[0m"
	topSGRReverse = "\x1b[7m"
	topSGRBold    = "\x1b[1m"
	topSGRRed     = "\x1b[31m"
	topSGRGreen   = "\x1b[32m"
	topSGRYellow  = "\x1b[33m"
)

// view is the whole screen: exactly height lines, none wider than width.
func (m *topModel) view() string {
	var lines []string
	if m.detail != "" {
		lines = m.detailLines()
	} else {
		lines = m.tableLines()
	}
	return strings.Join(lines, "\n")
}

// style wraps plain (already fitted) text in an SGR attribute when styled.
func (m *topModel) style(sgr, s string) string {
	if !m.styled || sgr == "" {
		return s
	}
	return sgr + s + topSGRReset
}

func (m *topModel) colourFor(state string) string {
	if !m.colour {
		return ""
	}
	switch state {
	case wire.StateAlive:
		return topSGRGreen
	case wire.StateSuspect, wire.StateLeaving:
		return topSGRYellow
	case wire.StateOffline:
		return topSGRRed
	}
	return ""
}

func (m *topModel) headerLine(what string) string {
	live, leader := 0, "none"
	for _, x := range m.members {
		if x.State != wire.StateOffline {
			live++
		}
		if x.Leader {
			leader = x.Chevron + " " + x.Name
		}
	}
	clock := "--:--:--" // nothing heard yet
	if !m.now.IsZero() {
		clock = m.now.Format("15:04:05")
	}
	h := fmt.Sprintf("robonet top  swarm %s  leader %s  %d/%d live  %s", cmp.Or(m.swarm, "?"), leader, live,
		len(m.members), clock)
	if what != "" {
		h = fmt.Sprintf("robonet top  %s  %s", what, clock)
	}
	if m.nodesErr != "" {
		h += "  STALE"
	}
	return m.style(topSGRReverse, topFit(h, m.width))
}

// bottomLines are the message line and the key line.
func (m *topModel) bottomLines(keys string) []string {
	msg := m.msg
	switch {
	case m.editing:
		msg = "filter (selector, empty clears, esc cancels): /" + m.input + "_"
		if w := m.width; len(msg) > w {
			msg = "/" + m.input[max(len(m.input)-(w-2), 0):] + "_" // the end of what is typed
		}
	case msg == "" && m.nodesErr != "":
		msg = "nodes: " + m.nodesErr + " (retrying)"
	case msg == "" && m.gaugeErr != "":
		msg = "gauges: " + m.gaugeErr
	case msg == "" && m.alertErr != "":
		msg = "alerts: " + m.alertErr
	}
	return []string{topFit(msg, m.width), m.style(topSGRBold, topFit(keys, m.width))}
}

// topLayout is the table's column widths for a screen width.
type topLayout struct {
	chev, name, state, role, load, mem, cpu, alerts int // 0: column not shown
}

func (m *topModel) layout() topLayout {
	l := topLayout{chev: len("CHEVRON"), state: 7, role: 4, load: 5, mem: 5, cpu: 5, alerts: 6}
	for _, r := range m.rows[m.top:min(m.top+m.tableRows(), len(m.rows))] {
		l.chev = min(max(l.chev, len(r.Chevron)), 23)
	}
	rest := func() int {
		used := 3 + l.chev // the cursor and leader marks and a blank
		for _, w := range []int{l.state, l.role, l.load, l.mem, l.cpu, l.alerts} {
			if w > 0 {
				used += 1 + w
			}
		}
		return m.width - used - 1
	}
	if rest() < 8 {
		l.cpu = 0
	}
	if rest() < 8 {
		l.role = 0
	}
	if rest() < 6 {
		l.chev = len("CHEVRON")
	}
	l.name = max(rest(), 4)
	return l
}

func (m *topModel) tableLines() []string {
	arrow := "^"
	if m.sortCol.descending() != m.reverse {
		arrow = "v"
	}
	filter := "none (/ to set)"
	if m.filterText != "" {
		filter = m.filterText
	}
	lines := []string{
		m.headerLine(""),
		topFit(fmt.Sprintf("sort %s %s  filter %s  %d of %d shown", m.sortCol, arrow, filter, len(m.rows), len(m.members)), m.width),
	}
	l := m.layout()
	cells := func(chev, name, state, role, load, mem, cpu, alerts string, right bool) []string {
		out := []string{topFit(chev, l.chev), topFit(name, l.name), topFit(state, l.state)}
		if l.role > 0 {
			out = append(out, topFit(role, l.role))
		}
		out = append(out, topFitRight(load, l.load, right), topFitRight(mem, l.mem, right))
		if l.cpu > 0 {
			out = append(out, topFitRight(cpu, l.cpu, right))
		}
		return append(out, topFitRight(alerts, l.alerts, right))
	}
	title := "   " + strings.Join(cells("CHEVRON", "NAME", "STATE", "ROLE", "LOAD", "MEM%", "CPU%", "ALERTS", true), " ")
	lines = append(lines, m.style(topSGRBold, topFit(title, m.width)))
	n := m.tableRows()
	for i := m.top; i < m.top+n; i++ {
		if i >= len(m.rows) {
			lines = append(lines, "")
			continue
		}
		lines = append(lines, m.rowLine(m.rows[i], i == m.cursor, cells))
	}
	if len(m.members) == 0 && m.nodesAt.IsZero() {
		lines[3] = topFit("  asking the swarm for its nodes...", m.width)
	} else if len(m.rows) == 0 {
		lines[3] = topFit("  no node matches "+m.filterText, m.width)
	}
	return append(lines, m.bottomLines("s/S sort  / filter  enter detail  up/down move  q quit")...)
}

func (m *topModel) rowLine(r wire.Member, selected bool, cells func(chev, name, state, role, load, mem, cpu, alerts string, right bool) []string) string {
	g := m.gauge(r.Chevron)
	n, worst := m.alertCount(r.Chevron)
	alerts := "-"
	if n > 0 {
		alerts = fmt.Sprint(n)
		if worst == "quarantine" || worst == "disconnect" {
			alerts += " " + strings.ToUpper(worst[:1])
		}
	}
	mark := " "
	if selected {
		mark = ">"
	}
	if r.Leader {
		mark += "* "
	} else {
		mark += "  "
	}
	cs := cells(r.Chevron, r.Name, r.State, node.MemberRole(r), fmt.Sprintf("%.2f", r.Load),
		g.pct(g.mem), g.pct(g.cpu), alerts, true)
	if selected {
		return m.style(topSGRReverse, topFit(mark+strings.Join(cs, " "), m.width))
	}
	// Colour the state cell (index 2); widths are already fitted, so
	// the SGR codes do not change what is drawn.
	cs[2] = m.styleColour(m.colourFor(r.State), cs[2])
	if n > 0 {
		cs[len(cs)-1] = m.styleColour(topSGRRed, cs[len(cs)-1])
	}
	return topClipCells(mark, cs, m.width)
}

func (m *topModel) styleColour(sgr, s string) string {
	if !m.colour {
		return s
	}
	return m.style(sgr, s)
}

// clipCells joins fitted cells with blanks, dropping what passes width.
// Cells carry SGR codes only around whole cells, so their visible width is
// counted without them.
func topClipCells(prefix string, cells []string, width int) string {
	var b strings.Builder
	used := len(prefix)
	b.WriteString(prefix)
	for i, c := range cells {
		w := topVisibleLen(c)
		if i > 0 {
			w++
		}
		if used+w > width {
			break
		}
		if i > 0 {
			b.WriteByte(' ')
		}
		b.WriteString(c)
		used += w
	}
	return b.String()
}

// visibleLen is the width of ASCII text that may hold SGR sequences.
func topVisibleLen(s string) int {
	n := 0
	for i := 0; i < len(s); i++ {
		if s[i] == 0x1b {
			for i < len(s) && s[i] != 'm' {
				i++
			}
			continue
		}
		n++
	}
	return n
}

// pct is a percentage cell: the value, or why there is none.
func (g topGaugeSample) pct(v float64) string {
	switch {
	case g.status == "":
		return "-"
	case g.status == mesh.StatusDenied:
		return "deny"
	case g.status == mesh.StatusTimeout:
		return "t/o"
	case g.status != mesh.StatusOK:
		return "err"
	case v < 0:
		return "-"
	}
	return fmt.Sprintf("%.1f", v)
}

func (m *topModel) detailLines() []string {
	var r wire.Member
	found := false
	for _, x := range m.members {
		if x.Chevron == m.detail {
			r, found = x, true
		}
	}
	body := []string{}
	if !found {
		body = append(body, "node "+m.detail+" is no longer in the registry")
	} else {
		body = m.detailBody(r)
	}
	n := m.height - 3
	m.detailScroll = min(m.detailScroll, max(len(body)-n, 0))
	lines := []string{m.headerLine("node " + m.detail + " " + r.Name)}
	for i := m.detailScroll; i < m.detailScroll+n; i++ {
		if i < len(body) {
			lines = append(lines, topFit(body[i], m.width))
		} else {
			lines = append(lines, "")
		}
	}
	return append(lines, m.bottomLines("esc back  up/down scroll  q quit")...)
}

func (m *topModel) detailBody(r wire.Member) []string {
	kv := func(k string, v any) string { return fmt.Sprintf("%-12s %v", k, v) }
	leader := ""
	if r.Leader {
		leader = " (leader)"
	}
	uptime := "-"
	if !r.Started.IsZero() && r.State != wire.StateOffline && !m.now.IsZero() {
		uptime = fmtDuration(m.now.Sub(r.Started))
	}
	seen := "-"
	if !r.LastSeen.IsZero() && !m.now.IsZero() {
		seen = fmtDuration(max(m.now.Sub(r.LastSeen), 0)) + " ago"
	}
	body := []string{
		kv("chevron", r.Chevron),
		kv("name", r.Name),
		kv("state", r.State+leader),
		kv("role", node.MemberRole(r)),
		kv("tier", r.Tier),
		kv("load", fmt.Sprintf("%.2f", r.Load)),
		kv("usage", m.usage(r.Chevron)),
		kv("os/arch", orDash(strings.Trim(r.OS+"/"+r.Arch, "/"))),
		kv("version", orDash(r.Version)),
		kv("uptime", uptime),
		kv("last seen", seen),
		kv("caps", orDash(strings.Join(r.Caps, ","))),
		kv("tags", orDash(fmtTags(r.Tags))),
		kv("server", orDash(r.Server)),
		kv("pubkey", orDash(r.Pubkey)),
	}
	if r.Client != "" {
		body = append(body, kv("client", r.Client))
	}
	if r.SecretEpoch != 0 || r.UsersRev != 0 {
		body = append(body, kv("secret", fmt.Sprintf("epoch %d, users rev %d", r.SecretEpoch, r.UsersRev)))
	}
	g, ok := m.gauges[r.Chevron]
	switch {
	case !ok:
		body = append(body, "", "gauges: not read yet")
	case g.status != mesh.StatusOK:
		body = append(body, "", "gauges: "+g.status+" "+g.errText)
	default:
		body = append(body, "", fmt.Sprintf("gauges (%s ago)", fmtDuration(max(m.now.Sub(g.at), 0))))
		for _, x := range g.gauges {
			body = append(body, "  "+topFmtGauge(x))
		}
	}
	as := m.alerts[r.Chevron]
	if len(as) == 0 {
		body = append(body, "", "alerts: none")
	} else {
		body = append(body, "", fmt.Sprintf("alerts (%d)", len(as)))
		for _, a := range as {
			body = append(body, fmt.Sprintf("  %-13s %-10s score %.1f value %.3g baseline %.3g by %s %s",
				a.Signal, a.Level, a.Score, a.Value, a.Baseline, a.By, a.Detail))
		}
	}
	return body
}

// usage is a node's memory, CPU and fullest disk in one line.
func (m *topModel) usage(chev string) string {
	g := m.gauge(chev)
	if g.status != mesh.StatusOK {
		return "-"
	}
	return fmt.Sprintf("mem %s%%  cpu %s%%  disk %s%% (fullest mount)", g.pct(g.mem), g.pct(g.cpu), g.pct(g.disk))
}

// fmtGauge is one gauge as `name{labels} value`.
func topFmtGauge(g command.Gauge) string {
	name := g.Name
	if len(g.Labels) > 0 {
		name += "{" + fmtTags(g.Labels) + "}"
	}
	var v string
	switch g.Unit {
	case command.UnitPercent:
		v = fmt.Sprintf("%.1f%%", g.Value)
	case command.UnitBytes:
		v = topFmtBytes(g.Value)
	case command.UnitBytesPerSec:
		v = topFmtBytes(g.Value) + "/s"
	default:
		v = strings.TrimSuffix(strings.TrimRight(fmt.Sprintf("%.2f", g.Value), "0"), ".")
	}
	return fmt.Sprintf("%-32s %s", name, v)
}

func topFmtBytes(v float64) string {
	units := []string{"B", "KiB", "MiB", "GiB", "TiB", "PiB"}
	i := 0
	for v >= 1024 && i < len(units)-1 {
		v /= 1024
		i++
	}
	if i == 0 {
		return fmt.Sprintf("%.0f B", v)
	}
	return fmt.Sprintf("%.1f %s", v, units[i])
}

// clean makes text from the network safe to draw: printable ASCII only
// (a node's name or an alert's detail must not move the cursor or retitle
// the terminal), at most limit bytes.
func topClean(s string, limit int) string {
	var b strings.Builder
	for _, r := range s {
		if b.Len() >= limit {
			break
		}
		if r >= 0x20 && r < 0x7f {
			b.WriteRune(r)
		} else {
			b.WriteByte('?')
		}
	}
	return b.String()
}

// fit is s cleaned and made exactly w columns wide: padded, or cut with a
// '~' marking the cut.
func topFit(s string, w int) string {
	if w <= 0 {
		return ""
	}
	s = topClean(s, w+1)
	if len(s) > w {
		return s[:w-1] + "~"
	}
	return s + strings.Repeat(" ", w-len(s))
}

// fitRight is fit aligned right when right is set.
func topFitRight(s string, w int, right bool) string {
	if !right || w <= 0 {
		return topFit(s, w)
	}
	s = topClean(s, w+1)
	if len(s) > w {
		return s[:w-1] + "~"
	}
	return strings.Repeat(" ", w-len(s)) + s
}

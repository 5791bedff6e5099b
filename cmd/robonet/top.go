package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"text/tabwriter"
	"time"

	tea "charm.land/bubbletea/v2"
	"github.com/spf13/cobra"
	"golang.org/x/term"

	"github.com/robonet-mesh/robonet/mesh"
	"github.com/robonet-mesh/robonet/node"
	"github.com/robonet-mesh/robonet/subjects"
	"github.com/robonet-mesh/robonet/wire"
)

// topSnapshotGauges bounds the nodes a one-shot snapshot asks for gauges.
const topSnapshotGauges = 256

func newTopCmd(g *globals) *cobra.Command {
	var (
		once    bool
		filter  string
		sortBy  string
		reverse bool
	)
	cmd := &cobra.Command{
		Use:   "top",
		Short: "The live fleet view: nodes with state, load, memory and alerts, updating every second",
		Long: `top shows the swarm's nodes in the terminal: chevron, name, state, role (core|edge), load,
memory and CPU in use, and the Sentinel's alerts about each, updating every second.

Keys: s cycles the sort column, S reverses it; / filters by a selector (the grammar of run:
3.12, caps=gpu,ai, load<0.5, trust>=2, ...; an empty one clears it; an invalid one is shown and the
filter in force kept); up/down, pgup/pgdown, home/end move; enter shows a node's detail (every
registry field, its gauges, its alerts), esc goes back; q or ctrl+c quits.

The registry is read every second. Gauges (the gauge command) are asked only of the nodes on
screen, every 1 to 5 s depending on how long the last answer took; the alerts query, which every
node answers, every 2 s up to 40 nodes and less often beyond (at most once a minute). So top costs
a 10,000-node swarm about what it costs a 20-node one. Needs no mouse and no colour (NO_COLOR is
honoured); it fits 80x24.

When standard output is not a terminal (or with --once), top prints one snapshot table and
exits, so scripts work; --json prints the rows as JSON.`,
		Example: `  robonet top
  robonet top --filter 'caps=gpu' --sort mem
  robonet top --once | grep offline`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			col, err := parseTopColumn(sortBy)
			if err != nil {
				return err
			}
			m := newTopModel(80, 24)
			m.sortCol, m.reverse = col, reverse
			if err := m.setFilter(filter); err != nil {
				return fmt.Errorf("--filter: %w", err)
			}
			ctx := cmd.Context()
			c, err := g.connect(ctx)
			if err != nil {
				return err
			}
			defer c.Close()
			src := &topSource{ctx: ctx, c: c}
			out := cmd.OutOrStdout()
			f, isFile := out.(*os.File)
			if once || g.json || !isFile || !term.IsTerminal(int(f.Fd())) || !term.IsTerminal(int(os.Stdin.Fd())) {
				return topSnapshot(ctx, out, cmd.ErrOrStderr(), g.json, src, m)
			}
			return runTopUI(ctx, src, m, f)
		},
	}
	f := cmd.Flags()
	f.BoolVar(&once, "once", false, "print one snapshot table and exit (the default when stdout is not a terminal)")
	f.StringVar(&filter, "filter", "", "start with this selector as the filter (as typed after /)")
	f.StringVar(&sortBy, "sort", "chevron", "start sorted by this column: chevron, name, state, role, load, mem, cpu, alerts")
	f.BoolVar(&reverse, "reverse", false, "start with the sort reversed (as S does)")
	return cmd
}

// runTopUI runs the full-screen view until q, ctrl+c or ctx ends.
func runTopUI(ctx context.Context, src *topSource, m *topModel, out *os.File) error {
	m.styled = true
	m.colour = os.Getenv("NO_COLOR") == "" && os.Getenv("TERM") != "dumb"
	ui := &topUI{m: m, src: src}
	p := tea.NewProgram(ui, tea.WithContext(ctx), tea.WithOutput(out), tea.WithInput(os.Stdin))
	if _, err := p.Run(); err != nil && ctx.Err() == nil {
		return fmt.Errorf("top: %w", err)
	}
	return nil
}

// topSource is top's I/O: each method returns a bubbletea command that
// asks the swarm and comes back as a message.
type topSource struct {
	ctx context.Context
	c   *mesh.Client
}

type (
	topStatusMsg struct {
		swarm string
		err   error
	}
	topNodesMsg struct {
		members []wire.Member
		err     error
		at      time.Time
		took    time.Duration
	}
	topGaugesMsg struct {
		results []mesh.NodeResult
		err     error
		at      time.Time
		took    time.Duration
	}
	topAlertsMsg struct {
		reports []node.AlertsReport
		err     error
		at      time.Time
	}
	// topPollMsg says it is time to ask again for one kind of data.
	topPollMsg int
)

const (
	topPollNodes topPollMsg = iota
	topPollGauges
	topPollAlerts
)

func (s *topSource) status() tea.Cmd {
	return func() tea.Msg {
		ctx, cancel := context.WithTimeout(s.ctx, 3*time.Second)
		defer cancel()
		st, err := s.c.Status(ctx)
		return topStatusMsg{swarm: st.Swarm, err: err}
	}
}

func (s *topSource) nodes() tea.Cmd {
	return func() tea.Msg {
		start := time.Now()
		ctx, cancel := context.WithTimeout(s.ctx, 3*time.Second)
		defer cancel()
		ms, err := s.c.Nodes(ctx)
		return topNodesMsg{members: ms, err: err, at: time.Now(), took: time.Since(start)}
	}
}

// topGaugeRequest asks for every gauge of a node in one command.
func topGaugeRequest() mesh.GatherRequest {
	return mesh.GatherRequest{Selector: "top", Verb: "gauge", Args: json.RawMessage(`{"metric":"list"}`),
		Timeout: 3 * time.Second, From: userName()}
}

func (s *topSource) gauges(set []wire.Member) tea.Cmd {
	return func() tea.Msg {
		start := time.Now()
		// The zero selector is no prefix: one command to each node of set.
		res, err := s.c.GatherSet(s.ctx, topGaugeRequest(), subjects.Selector{}, set, nil)
		return topGaugesMsg{results: res.Results, err: err, at: time.Now(), took: time.Since(start)}
	}
}

func (s *topSource) alerts(members []wire.Member) tea.Cmd {
	return func() tea.Msg {
		reports, err := topQueryAlerts(s.ctx, s.c, members)
		return topAlertsMsg{reports: reports, err: err, at: time.Now()}
	}
}

// topQueryAlerts asks every live node for the alerts it sees, as `robonet
// alerts` does, but quietly: top owns the terminal, so nothing goes to
// stderr, and a node's error answer is skipped, not fatal.
func topQueryAlerts(ctx context.Context, c *mesh.Client, members []wire.Member) ([]node.AlertsReport, error) {
	got, err := c.QueryAll(ctx, subjects.QueryAlerts, nil, members, 3*time.Second)
	if err != nil {
		return nil, err
	}
	var out []node.AlertsReport
	bad := got.Dropped
	for _, a := range got.Answers {
		var r node.AlertsReport
		if a.Error != nil || wire.Decode(a.Data, &r) != nil {
			bad++
			continue
		}
		out = append(out, r)
	}
	if bad > 0 {
		return out, fmt.Errorf("%d of %d answers unusable (error, bad signature, or not a member's key)", bad, len(got.Answers)+got.Dropped)
	}
	return out, nil
}

// topUI is the bubbletea model: the pure topModel plus the polling loop.
type topUI struct {
	m       *topModel
	src     *topSource
	started bool // gauges and alerts polls are running
}

func (u *topUI) Init() tea.Cmd { return tea.Batch(u.src.status(), u.src.nodes()) }

func topAfter(d time.Duration, p topPollMsg) tea.Cmd {
	return tea.Tick(d, func(time.Time) tea.Msg { return p })
}

func (u *topUI) Update(msg tea.Msg) (tea.Model, tea.Cmd) {
	switch msg := msg.(type) {
	case tea.WindowSizeMsg:
		u.m.resize(msg.Width, msg.Height)
	case tea.KeyPressMsg:
		if u.m.key(msg.String(), msg.Text) {
			return u, tea.Quit
		}
	case topStatusMsg:
		if msg.err == nil {
			u.m.swarm = msg.swarm
		}
	case topNodesMsg:
		u.m.setNodes(msg.members, msg.err, msg.at)
		cmds := []tea.Cmd{topAfter(topPollEvery(time.Second, msg.took, 10*time.Second), topPollNodes)}
		if u.m.swarm == "" {
			cmds = append(cmds, u.src.status())
		}
		if !u.started && msg.err == nil {
			u.started = true
			cmds = append(cmds, u.askGauges(), u.src.alerts(u.m.members))
		}
		return u, tea.Batch(cmds...)
	case topGaugesMsg:
		u.m.setGauges(msg.results, msg.err, msg.at)
		return u, topAfter(topPollEvery(time.Second, msg.took, 5*time.Second), topPollGauges)
	case topAlertsMsg:
		u.m.setAlerts(msg.reports, msg.err, msg.at)
		return u, topAfter(topAlertsEvery(liveCount(u.m.members)), topPollAlerts)
	case topPollMsg:
		switch msg {
		case topPollNodes:
			return u, u.src.nodes()
		case topPollGauges:
			return u, u.askGauges()
		case topPollAlerts:
			return u, u.src.alerts(u.m.members)
		}
	}
	return u, nil
}

// askGauges asks the nodes on screen for gauges, or waits a second when
// none is live.
func (u *topUI) askGauges() tea.Cmd {
	set := u.m.gaugeTargets()
	if len(set) == 0 {
		return topAfter(time.Second, topPollGauges)
	}
	return u.src.gauges(set)
}

func (u *topUI) View() tea.View {
	v := tea.NewView(u.m.view())
	v.AltScreen = true
	return v
}

// topRow is one node of `top --json`.
type topRow struct {
	Chevron string   `json:"chevron"`
	Name    string   `json:"name"`
	State   string   `json:"state"`
	Role    string   `json:"role"`
	Leader  bool     `json:"leader"`
	Tier    int      `json:"tier"`
	Load    float64  `json:"load"`
	MemPct  *float64 `json:"mem_pct"`  // null: not read
	CPUPct  *float64 `json:"cpu_pct"`  // null: not read
	DiskPct *float64 `json:"disk_pct"` // the fullest mount; null: not read
	Gauge   string   `json:"gauge"`    // ok, denied, timeout, error, or "" when not asked
	Alerts  int      `json:"alerts"`   // distinct signals alerted about the node
	Level   string   `json:"level"`    // the worst alert level, "" none
}

// topSnapshot prints the rows once: what top shows, for scripts.
func topSnapshot(ctx context.Context, w, stderr io.Writer, asJSON bool, src *topSource, m *topModel) error {
	ctx, cancel := context.WithTimeout(ctx, 20*time.Second)
	defer cancel()
	ms, err := src.c.Nodes(ctx)
	if err != nil {
		return err
	}
	m.setNodes(ms, nil, time.Now())
	var set []wire.Member
	for _, r := range m.rows {
		if r.State != wire.StateOffline && len(set) < topSnapshotGauges {
			set = append(set, r)
		}
	}
	if live := liveCount(m.rows); live > len(set) {
		fmt.Fprintf(stderr, "robonet: gauges asked of the first %d of %d live nodes\n", len(set), live)
	}
	if len(set) > 0 {
		res, err := src.c.GatherSet(ctx, topGaugeRequest(), subjects.Selector{}, set, nil)
		m.setGauges(res.Results, err, time.Now())
		if err != nil {
			fmt.Fprintf(stderr, "robonet: gauges: %v\n", err)
		}
	}
	reports, err := topQueryAlerts(ctx, src.c, ms)
	m.setAlerts(reports, err, time.Now())
	if err != nil {
		fmt.Fprintf(stderr, "robonet: alerts: %v\n", err)
	}
	rows := m.snapshotRows()
	if asJSON {
		return printJSON(w, rows)
	}
	tw := tabwriter.NewWriter(w, 2, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "CHEVRON\tNAME\tSTATE\tROLE\tLEADER\tLOAD\tMEM%\tCPU%\tDISK%\tALERTS")
	pct := func(p *float64, status string) string {
		if p == nil {
			return orDash(status)
		}
		return fmt.Sprintf("%.1f", *p)
	}
	for _, r := range rows {
		leader, alerts := "", "-"
		if r.Leader {
			leader = "*"
		}
		if r.Alerts > 0 {
			alerts = fmt.Sprintf("%d %s", r.Alerts, r.Level)
		}
		status := ""
		if r.Gauge != mesh.StatusOK {
			status = r.Gauge
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%.2f\t%s\t%s\t%s\t%s\n", topClean(r.Chevron, 64), topClean(r.Name, 64), topClean(r.State, 16),
			topClean(r.Role, 16), leader, r.Load, pct(r.MemPct, status), pct(r.CPUPct, status), pct(r.DiskPct, status), alerts)
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	filter := ""
	if m.filterText != "" {
		filter = " matching " + m.filterText
	}
	_, err = fmt.Fprintf(w, "%d of %d nodes%s, %d live\n", len(rows), len(m.members), filter, liveCount(m.members))
	return err
}

// snapshotRows are the rows on screen, whole, as JSON rows.
func (m *topModel) snapshotRows() []topRow {
	out := make([]topRow, 0, len(m.rows))
	for _, r := range m.rows {
		g := m.gauge(r.Chevron)
		n, worst := m.alertCount(r.Chevron)
		row := topRow{Chevron: r.Chevron, Name: r.Name, State: r.State, Role: node.MemberRole(r), Leader: r.Leader,
			Tier: r.Tier, Load: r.Load, Gauge: g.status, Alerts: n, Level: worst}
		if g.status == mesh.StatusOK {
			row.MemPct, row.CPUPct, row.DiskPct = topKnown(g.mem), topKnown(g.cpu), topKnown(g.disk)
		}
		out = append(out, row)
	}
	return out
}

func topKnown(v float64) *float64 {
	if v < 0 {
		return nil
	}
	return &v
}

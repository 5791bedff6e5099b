package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"regexp"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/charmbracelet/x/vt"
	"github.com/creack/pty"

	"github.com/robonet-mesh/robonet/command"
	"github.com/robonet-mesh/robonet/internal/testmesh"
	"github.com/robonet-mesh/robonet/mesh"
	"github.com/robonet-mesh/robonet/node"
	"github.com/robonet-mesh/robonet/wire"
)

// topMembers is a small registry: n nodes, loads rising, node 2 offline.
func topMembers(n int) []wire.Member {
	var ms []wire.Member
	for i := 1; i <= n; i++ {
		m := wire.Member{Chevron: fmt.Sprint(i), Name: fmt.Sprintf("rn%d", i), State: wire.StateAlive,
			Load: float64(i) / 10, Pubkey: fmt.Sprintf("UKEY%d", i)}
		if i == 2 {
			m.State = wire.StateOffline
		}
		if i == 1 {
			m.Leader = true
		}
		if i%2 == 0 {
			m.Caps = []string{"gpu"}
		}
		ms = append(ms, m)
	}
	return ms
}

func topGaugeResult(t *testing.T, chev string, mem, cpu float64) mesh.NodeResult {
	t.Helper()
	out, err := json.Marshal(command.GaugeReply{Metric: "list", Gauges: []command.Gauge{
		{Name: "cpu.busy_pct", Value: cpu, Unit: command.UnitPercent},
		{Name: "mem.used_pct", Value: mem, Unit: command.UnitPercent},
		{Name: "mem.total", Value: 8 << 30, Unit: command.UnitBytes},
		{Name: "disk.used_pct", Value: 40, Unit: command.UnitPercent, Labels: map[string]string{"mount": "/"}},
	}})
	if err != nil {
		t.Fatal(err)
	}
	return mesh.NodeResult{Chevron: chev, Status: mesh.StatusOK, Output: out}
}

func topRowOrder(m *topModel) string {
	var cs []string
	for _, r := range m.rows {
		cs = append(cs, r.Chevron)
	}
	return strings.Join(cs, " ")
}

func TestTopModelKeys(t *testing.T) {
	now := time.Date(2026, 12, 7, 10, 0, 0, 0, time.UTC)
	for _, tc := range []struct {
		name   string
		keys   []string // a key name, or "text:abc" for typed text
		order  string   // the rows, top to bottom
		filter string
		msg    string // in the message line
		detail string
		quit   bool
	}{
		{name: "starts sorted by chevron", order: "1 2 3 4 5"},
		{name: "s sorts by name", keys: []string{"s"}, order: "1 2 3 4 5"},
		{name: "s s s s sorts by load, largest first", keys: []string{"s", "s", "s", "s"}, order: "5 4 3 2 1"},
		{name: "S reverses", keys: []string{"s", "s", "s", "s", "S"}, order: "1 2 3 4 5"},
		{name: "mem sorts by the gauges, unknown last", keys: []string{"s", "s", "s", "s", "s"}, order: "3 1 2 4 5"},
		{name: "s wraps to chevron", keys: []string{"s", "s", "s", "s", "s", "s", "s", "s"}, order: "1 2 3 4 5"},
		{name: "filter by a selector", keys: []string{"/", "text:caps=gpu", "enter"}, order: "2 4", filter: "caps=gpu"},
		{name: "filter by load", keys: []string{"/", "text:load<0.35", "enter"}, order: "1 2 3", filter: "load<0.35"},
		{name: "invalid filter keeps the previous one", keys: []string{"/", "text:caps=gpu", "enter", "/", "ctrl+u", "text:bad=", "enter"},
			order: "2 4", filter: "caps=gpu", msg: "invalid selector"},
		{name: "empty filter clears", keys: []string{"/", "text:caps=gpu", "enter", "/", "ctrl+u", "enter"}, order: "1 2 3 4 5"},
		{name: "esc cancels the prompt", keys: []string{"/", "text:caps=gpu", "esc"}, order: "1 2 3 4 5"},
		{name: "backspace edits", keys: []string{"/", "text:rn33", "backspace", "enter"}, order: "3", filter: "rn3"},
		{name: "q at the prompt is text", keys: []string{"/", "text:q"}, order: "1 2 3 4 5"},
		{name: "control text is not typed", keys: []string{"/", "text:rn\x1b3", "enter"}, order: "3", filter: "rn3"},
		{name: "enter shows the node under the cursor", keys: []string{"down", "down", "enter"}, order: "1 2 3 4 5", detail: "3"},
		{name: "esc goes back", keys: []string{"down", "enter", "esc"}, order: "1 2 3 4 5"},
		{name: "cursor stops at the end", keys: []string{"end", "down", "down", "enter"}, order: "1 2 3 4 5", detail: "5"},
		{name: "q quits", keys: []string{"q"}, order: "1 2 3 4 5", quit: true},
		{name: "q quits the detail", keys: []string{"enter", "q"}, order: "1 2 3 4 5", detail: "1", quit: true},
		{name: "ctrl+c quits at the prompt", keys: []string{"/", "ctrl+c"}, order: "1 2 3 4 5", quit: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			m := newTopModel(80, 24)
			m.setNodes(topMembers(5), nil, now)
			m.setGauges([]mesh.NodeResult{topGaugeResult(t, "1", 50, 5), topGaugeResult(t, "3", 70, 1),
				{Chevron: "2", Status: mesh.StatusOffline}}, nil, now)
			quit := false
			for _, k := range tc.keys {
				text, typed := strings.CutPrefix(k, "text:")
				if typed {
					quit = m.key("", text)
				} else {
					quit = m.key(k, "")
				}
				if quit {
					break
				}
			}
			if got := topRowOrder(m); got != tc.order {
				t.Errorf("rows %q, want %q", got, tc.order)
			}
			if m.filterText != tc.filter {
				t.Errorf("filter %q, want %q", m.filterText, tc.filter)
			}
			if !strings.Contains(m.msg, tc.msg) || (tc.msg == "" && m.msg != "") {
				t.Errorf("message %q, want %q", m.msg, tc.msg)
			}
			if m.detail != tc.detail || quit != tc.quit {
				t.Errorf("detail %q quit %v, want %q %v", m.detail, quit, tc.detail, tc.quit)
			}
		})
	}
}

// checkTopScreen fails unless s is exactly h lines, none wider than w, and
// carries no escape sequence but top's own SGR attributes.
func checkTopScreen(t *testing.T, s string, w, h int) {
	t.Helper()
	lines := strings.Split(s, "\n")
	if len(lines) != h {
		t.Fatalf("%d lines, want %d:\n%s", len(lines), h, s)
	}
	sgr := regexp.MustCompile(`\x1b\[[0-9;]*m`)
	for i, l := range lines {
		plain := sgr.ReplaceAllString(l, "")
		if len(plain) > w {
			t.Errorf("line %d is %d wide (> %d): %q", i, len(plain), w, plain)
		}
		if strings.ContainsAny(plain, "\x1b\a\r\t\x00") {
			t.Errorf("line %d carries control bytes: %q", i, l)
		}
	}
}

func TestTopViewFitsAndIsSafe(t *testing.T) {
	now := time.Date(2026, 12, 7, 10, 0, 0, 0, time.UTC)
	ms := topMembers(40)
	// A hostile or careless node: escape sequences and a very long name.
	ms[5].Name = "evil\x1b]0;pwned\a\x1b[2J" + strings.Repeat("x", 300)
	ms[6].Chevron = "65535.65535.65535.65535"
	ms[7].Tags = map[string]string{"k": "\x1b[31mred"}
	for _, size := range [][2]int{{80, 24}, {40, 10}, {200, 60}, {20, 6}, {1, 1}} {
		for _, styled := range []bool{false, true} {
			m := newTopModel(size[0], size[1])
			m.styled, m.colour = styled, styled
			m.setNodes(ms, nil, now)
			m.setGauges([]mesh.NodeResult{topGaugeResult(t, "1", 50, 5), {Chevron: "3", Status: mesh.StatusDenied}}, nil, now)
			m.setAlerts([]node.AlertsReport{{Chevron: "1", Alerts: []wire.Alert{
				{Peer: "6", Chevron: "6", Signal: "cpu", Level: "quarantine", Detail: "\x1b[H\x1b[2Jgone"}}}}, nil, now)
			w, h := m.width, m.height
			checkTopScreen(t, m.view(), w, h)
			for _, k := range []string{"end", "enter"} {
				m.key(k, "")
			}
			checkTopScreen(t, m.view(), w, h) // the detail of the last node
			m.key("esc", "")
			m.key("home", "")
			for range 5 {
				m.key("down", "")
			}
			m.key("enter", "") // node 6: the hostile one
			checkTopScreen(t, m.view(), w, h)
			m.key("pgdown", "")
			checkTopScreen(t, m.view(), w, h)
		}
	}
	// Without styling (a dumb terminal, the tests) the cursor row is
	// still marked.
	m := newTopModel(80, 24)
	m.setNodes(ms, nil, now)
	m.key("down", "")
	if v := m.view(); !strings.Contains(v, "\n>  2 ") || !strings.Contains(v, "\n * 1 ") {
		t.Errorf("cursor or leader not marked:\n%s", v)
	}
}

func TestTopViewShowsGaugesAlertsAndErrors(t *testing.T) {
	now := time.Date(2026, 12, 7, 10, 0, 0, 0, time.UTC)
	m := newTopModel(80, 24)
	m.swarm = "prod"
	m.setNodes(topMembers(3), nil, now)
	m.setGauges([]mesh.NodeResult{topGaugeResult(t, "1", 51.26, 5), {Chevron: "3", Status: mesh.StatusDenied, Error: "tier"}}, nil, now)
	m.setAlerts([]node.AlertsReport{
		{Chevron: "1", Alerts: []wire.Alert{{Peer: "3", Chevron: "3", Signal: "cmd_rate", Level: "alert", By: "1"}}},
		{Chevron: "2", Alerts: []wire.Alert{{Peer: "3", Chevron: "3", Signal: "msg_rate", Level: "quarantine", By: "2"},
			{Peer: "3", Chevron: "3", Signal: "cmd_rate", Level: "alert", By: "2"},
			{Peer: "99", Chevron: "99", Signal: "cmd_rate", Level: "alert", By: "2"}}}, // not a member: dropped
	}, nil, now)
	if _, ok := m.alerts["99"]; ok || len(m.alerts) != 1 {
		t.Errorf("alerts kept for %v, want only 3", m.alerts)
	}
	for range 7 { // sort by alerts, most first
		m.key("s", "")
	}
	if got := topRowOrder(m); m.sortCol != topColAlerts || got != "3 1 2" {
		t.Errorf("sorted by %s: %q, want alerts: 3 1 2", m.sortCol, got)
	}
	m.key("s", "")
	v := m.view()
	for _, want := range []string{"swarm prod", "leader 1 rn1", "2/3 live", "10:00:00", "3 of 3 shown",
		"51.3", "deny", "2 Q", "CHEVRON", "MEM%", "q quit"} {
		if !strings.Contains(v, want) {
			t.Errorf("view lacks %q:\n%s", want, v)
		}
	}
	// A failed poll keeps the last view, marked stale, and says why.
	m.setNodes(nil, errors.New("nats: timeout"), now.Add(time.Second))
	if v := m.view(); !strings.Contains(v, "STALE") || !strings.Contains(v, "nodes: nats: timeout (retrying)") || !strings.Contains(v, "rn3") {
		t.Errorf("stale view:\n%s", v)
	}
	m.key("end", "")
	m.key("enter", "")
	v = m.view()
	for _, want := range []string{"pubkey       UKEY3", "gauges: denied tier", "alerts (3)", "msg_rate", "quarantine"} {
		if !strings.Contains(v, want) {
			t.Errorf("detail lacks %q:\n%s", want, v)
		}
	}
	// Gauges of the node in detail, in full.
	m.key("esc", "")
	m.key("home", "")
	m.key("enter", "")
	if v := m.view(); !strings.Contains(v, "mem.total") || !strings.Contains(v, "8.0 GiB") || !strings.Contains(v, "disk.used_pct{mount=/}") {
		t.Errorf("detail of 1 lacks gauges:\n%s", v)
	}
}

func TestTopViewBeforeDataAndWithNoMatch(t *testing.T) {
	m := newTopModel(80, 24)
	if v := m.view(); !strings.Contains(v, "asking the swarm for its nodes...") || !strings.Contains(v, "--:--:--") {
		t.Errorf("first screen:\n%s", v)
	}
	m.setNodes(topMembers(3), nil, time.Now())
	if err := m.setFilter("caps=tpu"); err != nil {
		t.Fatal(err)
	}
	if v := m.view(); !strings.Contains(v, "no node matches caps=tpu") || !strings.Contains(v, "0 of 3 shown") {
		t.Errorf("no match:\n%s", v)
	}
	m.key("enter", "") // nothing to show: stays on the table
	if m.detail != "" {
		t.Errorf("detail %q with no rows", m.detail)
	}
}

func TestTopAsksGaugesOnlyOfVisibleLiveRows(t *testing.T) {
	m := newTopModel(80, 24) // 19 rows of nodes
	m.setNodes(topMembers(500), nil, time.Now())
	got := m.gaugeTargets()
	if len(got) != 18 { // 19 on screen, node 2 offline
		t.Fatalf("%d targets, want 18", len(got))
	}
	m.key("end", "")
	m.key("enter", "")
	got = m.gaugeTargets()
	// The node in detail first, then the 19 rows on screen (482..500), once each.
	if len(got) != 19 || got[0].Chevron != "500" || got[1].Chevron != "482" || got[18].Chevron != "499" {
		t.Errorf("targets in detail: %d, first %s", len(got), got[0].Chevron)
	}
	big := newTopModel(1000, 1000)
	big.setNodes(topMembers(5000), nil, time.Now())
	if n := len(big.gaugeTargets()); n != topMaxGaugeNodes {
		t.Errorf("a tall terminal asks %d nodes, want the cap %d", n, topMaxGaugeNodes)
	}
}

func TestTopPollIntervals(t *testing.T) {
	for _, tc := range []struct {
		took, want time.Duration
	}{{0, time.Second}, {100 * time.Millisecond, time.Second}, {500 * time.Millisecond, 2 * time.Second}, {time.Minute, 5 * time.Second}} {
		if got := topPollEvery(time.Second, tc.took, 5*time.Second); got != tc.want {
			t.Errorf("topPollEvery(1s, %v, 5s) = %v, want %v", tc.took, got, tc.want)
		}
	}
	for _, tc := range []struct {
		live int
		want time.Duration
	}{{1, 2 * time.Second}, {40, 2 * time.Second}, {100, 5 * time.Second}, {1000, 50 * time.Second}, {10000, time.Minute}} {
		if got := topAlertsEvery(tc.live); got != tc.want {
			t.Errorf("topAlertsEvery(%d) = %v, want %v", tc.live, got, tc.want)
		}
	}
}

func TestTopSortFlagIsChecked(t *testing.T) {
	_, errOut, code := robonet(t, "top", "--sort", "color", "--server", "nats://127.0.0.1:1", "--nkey", "/nonexistent")
	if code != 1 || !strings.Contains(errOut, `--sort "color"`) {
		t.Errorf("exit %d: %s", code, errOut)
	}
	_, errOut, code = robonet(t, "top", "--filter", "load<<1", "--server", "nats://127.0.0.1:1", "--nkey", "/nonexistent")
	if code != 1 || !strings.Contains(errOut, "--filter") || !strings.Contains(errOut, "load<<1") {
		t.Errorf("exit %d: %s", code, errOut)
	}
}

func FuzzTopModelKeys(f *testing.F) {
	f.Add([]byte("ss/caps=gpu\nS\x02\x03q"), uint8(80), uint8(24))
	f.Add([]byte("/\x7f\x7f\n\x05\x01\n\x1b"), uint8(20), uint8(6))
	names := []string{"s", "S", "/", "enter", "esc", "up", "down", "pgup", "pgdown", "home", "end", "backspace", "ctrl+u", "q"}
	ms := topMembers(30)
	f.Fuzz(func(t *testing.T, keys []byte, w, h uint8) {
		m := newTopModel(int(w), int(h))
		m.setNodes(ms, nil, time.Unix(0, 0))
		for _, b := range keys {
			k, text := "", string(rune(b))
			if int(b) < len(names) {
				k, text = names[b], ""
			}
			if k == "q" && !m.editing {
				continue
			}
			m.key(k, text)
			checkTopScreen(t, m.view(), m.width, m.height)
		}
	})
}

// TestTopPrintsASnapshotWithoutATerminal: stdout is not a terminal, so top
// prints one table (or JSON) and exits, for scripts.
func TestTopPrintsASnapshotWithoutATerminal(t *testing.T) {
	s := testmesh.Start(t, 1)
	nd := s.Node(0)
	conn := []string{"--server", nd.ClientURL(), "--nkey", nd.OperatorSeedPath(), "--data", nd.DataDir()}
	var out, errOut string
	var code int
	testmesh.CheckFor(t, 30*time.Second, 100*time.Millisecond, func() error { // until the lease is held
		out, errOut, code = robonet(t, append([]string{"top"}, conn...)...)
		if code != 0 || !strings.Contains(out, " * ") {
			return fmt.Errorf("exit %d, no leader yet: %s %s", code, out, errOut)
		}
		return nil
	})
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if len(lines) != 3 || !strings.HasPrefix(lines[0], "CHEVRON  NAME  STATE  ROLE  LEADER  LOAD  MEM%") ||
		!regexp.MustCompile(`^1 +rn1 +alive +core +\* +\d+\.\d\d +\d+\.\d +\d+\.\d +\d+\.\d +-$`).MatchString(lines[1]) ||
		lines[2] != "1 of 1 nodes, 1 live" {
		t.Fatalf("snapshot:\n%s\nstderr: %s", out, errOut)
	}
	out, errOut, code = robonet(t, append([]string{"top", "--json", "--filter", "caps=nothing"}, conn...)...)
	if code != 0 || strings.TrimSpace(out) != "[]" {
		t.Fatalf("exit %d: %q %s", code, out, errOut)
	}
	out, _, code = robonet(t, append([]string{"top", "--json"}, conn...)...)
	var rows []map[string]any
	if code != 0 || json.Unmarshal([]byte(out), &rows) != nil || len(rows) != 1 {
		t.Fatalf("exit %d: %s", code, out)
	}
	for _, k := range []string{"chevron", "name", "state", "role", "leader", "tier", "load", "mem_pct", "cpu_pct", "disk_pct", "gauge", "alerts", "level"} {
		if _, ok := rows[0][k]; !ok {
			t.Errorf("top --json lacks %q: %s", k, out)
		}
	}
	if mem, ok := rows[0]["mem_pct"].(float64); !ok || mem <= 0 || mem > 100 {
		t.Errorf("mem_pct %v", rows[0]["mem_pct"])
	}
}

// topScreen is a terminal: the emulator top draws on, read while it draws.
// The emulator's answers to top's queries (device attributes, …) go back
// through answer until stop.
type topScreen struct {
	mu   sync.Mutex // guards emu's screen
	emu  *vt.Emulator
	done atomic.Bool
	n    atomic.Int64 // bytes drawn
}

func (s *topScreen) Write(p []byte) (int, error) {
	s.n.Add(int64(len(p)))
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.emu.Write(p)
}

func (s *topScreen) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.emu.String()
}

// answer copies the terminal's answers to w until stop. It keeps reading
// after w fails, so that Write never blocks on an answer nobody reads.
func (s *topScreen) answer(w io.Writer) {
	buf := make([]byte, 4096)
	for {
		n, err := s.emu.Read(buf)
		if err != nil || s.done.Load() {
			return
		}
		_, _ = w.Write(buf[:n])
	}
}

// stop ends answer: a device-attributes query makes the emulator answer,
// and answer, woken, sees done. (Closing the emulator instead races with
// its Read.) Call it once nothing else writes to the screen.
func (s *topScreen) stop() {
	s.done.Store(true)
	_, _ = s.Write([]byte("\x1b[c"))
}

// topPty is `robonet top` running in an 80x24 pseudo-terminal.
type topPty struct {
	t      *testing.T
	cmd    *exec.Cmd
	ptmx   *os.File
	scr    *topScreen
	exited chan error
	began  time.Time
}

// startTopPty runs the binary's top against node nd with env added.
func startTopPty(t *testing.T, nd *node.Node, env ...string) *topPty {
	t.Helper()
	p := &topPty{t: t, exited: make(chan error, 1), began: time.Now(), scr: &topScreen{emu: vt.NewEmulator(80, 24)}}
	p.cmd = exec.Command(binPath, "top", "--server", nd.ClientURL(), "--nkey", nd.OperatorSeedPath(), "--data", nd.DataDir())
	p.cmd.Env = append(os.Environ(), env...)
	var err error
	if p.ptmx, err = pty.StartWithSize(p.cmd, &pty.Winsize{Cols: 80, Rows: 24}); err != nil {
		t.Fatal(err)
	}
	go func() { p.exited <- p.cmd.Wait() }()
	drawn := make(chan struct{})
	go func() { _, _ = io.Copy(p.scr, p.ptmx); close(drawn) }() // what top draws, until the pty closes
	go p.scr.answer(p.ptmx)                                     // the terminal's answers to top's queries
	t.Cleanup(func() {
		_ = p.cmd.Process.Kill()
		p.ptmx.Close()
		<-drawn
		p.scr.stop()
	})
	return p
}

// wait polls the screen until ok accepts it.
func (p *topPty) wait(what string, ok func(string) error) {
	p.t.Helper()
	testmesh.CheckFor(p.t, 30*time.Second, 50*time.Millisecond, func() error {
		v := p.scr.String()
		if err := ok(v); err != nil {
			return fmt.Errorf("%s: %v; screen:\n%s", what, err, v)
		}
		return nil
	})
}

// press types keys as a terminal sends them.
func (p *topPty) press(keys string) {
	p.t.Helper()
	if _, err := io.WriteString(p.ptmx, keys); err != nil {
		p.t.Fatal(err)
	}
}

// quit presses keys and wants top to exit 0; it logs what top cost, a
// figure, not asserted.
func (p *topPty) quit(keys string) {
	p.t.Helper()
	p.press(keys)
	select {
	case err := <-p.exited:
		if err != nil {
			p.t.Fatalf("top exited: %v; screen:\n%s", err, p.scr.String())
		}
		ps, took := p.cmd.ProcessState, time.Since(p.began)
		p.t.Logf("top ran %v: drew %d bytes (%.0f B/s), cpu %v user + %v sys", took.Round(time.Millisecond), p.scr.n.Load(),
			float64(p.scr.n.Load())/took.Seconds(), ps.UserTime(), ps.SystemTime())
	case <-time.After(15 * time.Second):
		p.t.Fatalf("top did not exit on %q; screen:\n%s", keys, p.scr.String())
	}
}

func topHas(subs ...string) func(string) error {
	return func(v string) error {
		for _, s := range subs {
			if !strings.Contains(v, s) {
				return fmt.Errorf("no %q", s)
			}
		}
		return nil
	}
}

// topRowRE matches a node's row with its memory read by the gauge:
// chevron, name, alive, core, load, mem%.
func topRowRE(name string) *regexp.Regexp {
	return regexp.MustCompile(`(?m)^[ >][ *] \d+ +` + name + ` +alive +core +\d+\.\d\d +\d+\.\d`)
}

// TestTopInAPseudoTerminal runs the real binary in an 80x24 pseudo-terminal
// against a real swarm, and reads the screen a terminal emulator shows.
func TestTopInAPseudoTerminal(t *testing.T) {
	s := testmesh.Start(t, 2)
	s.WaitAlive(30 * time.Second)
	p := startTopPty(t, s.Node(0), "TERM=xterm-256color", "NO_COLOR=1")
	p.wait("both nodes with memory, the key line on the last of 24 rows", func(v string) error {
		if !topRowRE("rn1").MatchString(v) || !topRowRE("rn2").MatchString(v) {
			return errors.New("no rows with mem% for rn1 and rn2")
		}
		lines := strings.Split(v, "\n")
		if len(lines) != 24 || !strings.HasPrefix(lines[0], "robonet top") || !strings.Contains(lines[23], "q quit") {
			return fmt.Errorf("%d lines, or header and keys not first and last", len(lines))
		}
		return topHas("2/2 live", "CHEVRON")(v)
	})

	s.Add() // a node started later appears
	p.wait("the third node", func(v string) error {
		if !topRowRE("rn3").MatchString(v) {
			return errors.New("no row with mem% for rn3")
		}
		return topHas("3/3 live")(v)
	})

	p.press("/rn2\r")
	p.wait("the filter", func(v string) error {
		listed := func(name string) bool { return regexp.MustCompile(`(?m)^[ >][ *] +\d+ +` + name + ` `).MatchString(v) }
		if listed("rn1") || listed("rn3") || !listed("rn2") {
			return errors.New("rows are not just rn2")
		}
		return topHas("filter rn2", "1 of 3 shown")(v)
	})
	p.press("/\x15caps=\r") // ctrl+u clears the prompt
	p.wait("an invalid filter", topHas("filter kept (rn2): invalid selector", "1 of 3 shown"))

	p.press("\r")
	p.wait("the detail", func(v string) error {
		if !regexp.MustCompile(`usage +mem \d+\.\d%  cpu \d+\.\d%`).MatchString(v) {
			return errors.New("no usage line")
		}
		return topHas("node 2 rn2", "pubkey", "gauges (", "cpu.busy_pct", "esc back")(v)
	})
	p.press("\x1b[6~") // pgdown
	p.wait("the detail a page down", topHas("node 2 rn2", "mem.used_pct"))
	p.press("G")
	p.wait("the end of the detail", topHas("node 2 rn2", "alerts: none"))
	p.press("g")
	p.wait("the top of the detail", topHas("chevron      2"))
	p.press("\x1b")
	p.wait("back to the table", topHas("CHEVRON", "filter rn2"))
	p.press("s")
	p.wait("sorted by name", topHas("sort name ^"))
	p.quit("q")

	// In colour, as an operator through another node; ctrl+c quits as well.
	p = startTopPty(t, s.Node(1), "TERM=xterm-256color")
	p.wait("the nodes in colour", func(v string) error {
		for _, n := range []string{"rn1", "rn2", "rn3"} {
			if !topRowRE(n).MatchString(v) {
				return fmt.Errorf("no row with mem%% for %s", n)
			}
		}
		return nil
	})
	p.quit("\x03")
}

// BenchmarkTopRefresh is what one update costs top with a 10,000-node
// registry (every message re-filters and re-sorts the rows).
func BenchmarkTopRefresh(b *testing.B) {
	ms := make([]wire.Member, 0, 10000)
	for i := range 10000 {
		ms = append(ms, wire.Member{Chevron: fmt.Sprintf("3.%d.%d.%d", 1+i/1000, 1+i/100%10, 1+i%100),
			Name: fmt.Sprintf("n%d", i), State: wire.StateAlive, Load: float64(i%97) / 10})
	}
	for _, sortBy := range []string{"chevron", "load"} {
		b.Run(sortBy, func(b *testing.B) {
			m := newTopModel(80, 24)
			m.sortCol, _ = parseTopColumn(sortBy)
			for b.Loop() {
				m.setNodes(ms, nil, time.Unix(0, 0))
				_ = m.view()
			}
		})
	}
}

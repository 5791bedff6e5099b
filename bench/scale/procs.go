package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/robonet-mesh/robonet/mesh"
	"github.com/robonet-mesh/robonet/subjects"
	"github.com/robonet-mesh/robonet/wire"
)

// What the binary shows the outside (spelled as bench/nodefigures does).
const (
	upMarker     = " up as chevron "
	operatorSeed = "operator.nk"
)

// proc is one child process: a `robonet up` or a `sim` child.
type proc struct {
	label  string
	data   string // robonet data dir
	listen string // client address host:port
	route  string // cluster address, for core members
	cmd    *exec.Cmd
	began  time.Time
	ready  chan struct{} // closed at the marker line
	readyT time.Time
	readyL string      // the marker line
	lines  chan string // sim children: stdout lines after the marker
	exited chan struct{}
	mu     sync.Mutex
	tail   []string // last lines of output
}

func (p *proc) url() string { return "nats://" + p.listen }
func (p *proc) pid() int    { return p.cmd.Process.Pid }

func (p *proc) lastLines() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return strings.Join(p.tail, " | ")
}

// procs owns every child: kill all on exit.
type procs struct {
	mu     sync.Mutex
	all    map[*proc]struct{}
	closed bool
}

// start execs bin args; marker (a substring of a stdout line) closes ready.
func (ps *procs) start(label, bin string, args []string, marker string) (*proc, error) {
	p := &proc{label: label, ready: make(chan struct{}), exited: make(chan struct{}), lines: make(chan string, 16)}
	p.cmd = exec.Command(bin, args...)
	p.cmd.Env = childEnv()
	// Pdeathsig: the children die with us, whatever happens to us.
	p.cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	out, err := p.cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	p.cmd.Stderr = p.cmd.Stdout
	ps.mu.Lock()
	defer ps.mu.Unlock()
	if ps.closed {
		return nil, errors.New("shutting down")
	}
	p.began = time.Now()
	if err := p.cmd.Start(); err != nil {
		return nil, fmt.Errorf("%s: exec %s: %w", label, bin, err)
	}
	if ps.all == nil {
		ps.all = map[*proc]struct{}{}
	}
	ps.all[p] = struct{}{}
	go p.read(out, marker)
	return p, nil
}

func (p *proc) read(r io.Reader, marker string) {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	marked := false
	for sc.Scan() {
		l := sc.Text()
		p.mu.Lock()
		p.tail = append(p.tail, l)
		if len(p.tail) > 4 {
			p.tail = p.tail[1:]
		}
		p.mu.Unlock()
		if !marked && strings.Contains(l, marker) {
			marked, p.readyT, p.readyL = true, time.Now(), l
			close(p.ready)
			continue
		}
		select {
		case p.lines <- l:
		default:
		}
	}
	_ = p.cmd.Wait()
	close(p.exited)
}

// waitReady waits for p's marker line.
func (p *proc) waitReady(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-p.ready:
		return nil
	case <-p.exited:
		return fmt.Errorf("%s exited before ready: %s", p.label, p.lastLines())
	case <-t.C:
		return fmt.Errorf("%s not ready after %v: %s", p.label, d, p.lastLines())
	case <-ctx.Done():
		return ctx.Err()
	}
}

// kill SIGKILLs p (if it runs) and waits for it.
func (ps *procs) kill(p *proc) {
	_ = p.cmd.Process.Signal(syscall.SIGCONT)
	_ = p.cmd.Process.Kill()
	select {
	case <-p.exited:
	case <-time.After(10 * time.Second):
	}
	ps.mu.Lock()
	delete(ps.all, p)
	ps.mu.Unlock()
}

// killAll kills every child started, in parallel.
func (ps *procs) killAll() {
	ps.mu.Lock()
	var l []*proc
	for p := range ps.all {
		l = append(l, p)
	}
	ps.mu.Unlock()
	var wg sync.WaitGroup
	for _, p := range l {
		wg.Add(1)
		go func() { defer wg.Done(); ps.kill(p) }()
	}
	wg.Wait()
}

// reservePorts returns n free 127.0.0.1 addresses (listen on :0, close).
func reservePorts(n int) ([]string, error) {
	var out []string
	var ls []net.Listener
	defer func() {
		for _, l := range ls {
			l.Close()
		}
	}()
	for range n {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return nil, fmt.Errorf("reserve a port: %w", err)
		}
		ls = append(ls, l)
		out = append(out, l.Addr().String())
	}
	return out, nil
}

// childEnv is our environment without ROBONET_* variables (read as flags).
func childEnv() []string {
	var env []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "ROBONET_") {
			env = append(env, kv)
		}
	}
	return env
}

// cpuTicks reads utime+stime of pid from /proc/<pid>/stat, in clock ticks
// (USER_HZ, 100 on Linux).
func cpuTicks(pid int) (int64, error) {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, err
	}
	s := string(data)
	i := strings.LastIndexByte(s, ')')
	if i < 0 {
		return 0, fmt.Errorf("/proc/%d/stat: no comm", pid)
	}
	f := strings.Fields(s[i+1:])
	if len(f) < 13 {
		return 0, fmt.Errorf("/proc/%d/stat: short", pid)
	}
	u, err1 := strconv.ParseInt(f[11], 10, 64)
	st, err2 := strconv.ParseInt(f[12], 10, 64)
	if err1 != nil || err2 != nil {
		return 0, fmt.Errorf("/proc/%d/stat: bad utime/stime", pid)
	}
	return u + st, nil
}

const clkTck = 100

// cpuOver measures each pid's CPU over d, in ms of CPU per s of wall time.
func cpuOver(ctx context.Context, pids []int, d time.Duration) ([]float64, error) {
	t0 := make([]int64, len(pids))
	for i, pid := range pids {
		v, err := cpuTicks(pid)
		if err != nil {
			return nil, err
		}
		t0[i] = v
	}
	began := time.Now()
	select {
	case <-ctx.Done():
		return nil, ctx.Err()
	case <-time.After(d):
	}
	wall := time.Since(began).Seconds()
	out := make([]float64, len(pids))
	for i, pid := range pids {
		v, err := cpuTicks(pid)
		if err != nil {
			return nil, err
		}
		out[i] = float64(v-t0[i]) * 1000 / clkTck / wall
	}
	return out, nil
}

// rssMiB reads VmRSS of pid in MiB.
func rssMiB(pid int) (float64, error) {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, err
	}
	for _, line := range strings.Split(string(data), "\n") {
		if rest, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			f := strings.Fields(rest)
			if len(f) == 2 {
				kb, err := strconv.ParseFloat(f[0], 64)
				return kb / 1024, err
			}
		}
	}
	return 0, fmt.Errorf("/proc/%d/status: no VmRSS", pid)
}

func loadAvg() string {
	data, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return "?"
	}
	f := strings.Fields(string(data))
	if len(f) < 3 {
		return "?"
	}
	return strings.Join(f[:3], " ")
}

// connect opens a client on url with the operator seed of dataDir (the
// founder's is an admin everywhere).
func connect(ctx context.Context, url, dataDir, name string) (*mesh.Client, error) {
	return mesh.Connect(ctx, mesh.Options{Server: url, SeedFile: filepath.Join(dataDir, operatorSeed), Name: name, Timeout: 5 * time.Second})
}

// formed waits until every member of c's view (asked at the connected
// server) is alive and there are n, and every alive member's server says
// the same; it returns the members' servers.
func formed(ctx context.Context, c *mesh.Client, n int, d time.Duration) (time.Time, []string, error) {
	var servers []string
	at, err := poll(ctx, d, 200*time.Millisecond, func(ctx context.Context) (bool, error) {
		ms, err := nodesView(ctx, c, "")
		if err != nil {
			return false, err
		}
		if a := states(ms)[wire.StateAlive]; a != n {
			return false, fmt.Errorf("%d alive", a)
		}
		servers = servers[:0]
		for _, m := range ms {
			servers = append(servers, m.Server)
		}
		for _, srv := range servers {
			ms, err := nodesView(ctx, c, srv)
			if err != nil {
				return false, fmt.Errorf("%s: %w", srv, err)
			}
			if a := states(ms)[wire.StateAlive]; a != n {
				return false, fmt.Errorf("%s sees %d alive", srv, a)
			}
		}
		return true, nil
	})
	return at, servers, err
}

// nodesView asks the node c is connected to for rn.sys.nodes, signed as
// the CLI signs it, and decodes the answer without wire.MaxMessage (1 MiB),
// which mesh.Client.Nodes applies and a registry of a few thousand
// members exceeds. The reply's signature is not checked here.
//
// The query goes to server (the connected one when ""): one client signs
// every query of the bench, since signers of one key with chains of their
// own look like a fork (stale sequences) to the nodes.
func nodesView(ctx context.Context, c *mesh.Client, server string) ([]wire.Member, error) {
	nc := c.Conn()
	if server == "" {
		server = nc.ConnectedServerName()
	}
	subj := subjects.QueryAt(subjects.QueryNodes, server)
	m := &nats.Msg{Subject: subj, Reply: nc.NewInbox()}
	if err := c.Signer().SignMsg(m); err != nil {
		return nil, err
	}
	sub, err := nc.SubscribeSync(m.Reply)
	if err != nil {
		return nil, err
	}
	defer sub.Unsubscribe()
	if err := nc.PublishMsg(m); err != nil {
		return nil, err
	}
	r, err := sub.NextMsgWithContext(ctx)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", subj, err)
	}
	var reply wire.Reply
	if err := json.Unmarshal(r.Data, &reply); err != nil {
		return nil, fmt.Errorf("%s: %w", subj, err)
	}
	if reply.Error != nil {
		return nil, fmt.Errorf("%s: %w", subj, reply.Error)
	}
	var out []wire.Member
	if err := json.Unmarshal(reply.Data, &out); err != nil {
		return nil, fmt.Errorf("%s: %w", subj, err)
	}
	return out, nil
}

// states counts members by state.
func states(ms []wire.Member) map[string]int {
	out := map[string]int{}
	for _, m := range ms {
		out[m.State]++
	}
	return out
}

// stateOf returns chev's state in ms ("" when not listed).
func stateOf(ms []wire.Member, chev string) string {
	for _, m := range ms {
		if m.Chevron == chev {
			return m.State
		}
	}
	return ""
}

// poll calls f every `every` until it returns true, an error past the
// deadline, or ctx ends. It returns when f returned true.
func poll(ctx context.Context, d, every time.Duration, f func(ctx context.Context) (bool, error)) (time.Time, error) {
	deadline := time.Now().Add(d)
	var last error
	for {
		// A view of 50,000 members takes the member seconds to build.
		qctx, cancel := context.WithTimeout(ctx, 60*time.Second)
		ok, err := f(qctx)
		cancel()
		if ok {
			return time.Now(), nil
		}
		if err != nil {
			last = err
		}
		if time.Now().After(deadline) {
			if last == nil {
				last = errors.New("condition not met")
			}
			return time.Time{}, fmt.Errorf("after %v: %w", d, last)
		}
		select {
		case <-ctx.Done():
			return time.Time{}, ctx.Err()
		case <-time.After(every):
		}
	}
}

// Package proc runs the child processes a bench program measures (`robonet
// up`, the scale bench's sim children) and reads what the kernel says about
// them. It starts a child, tells when it printed its ready line, keeps the
// end of its output for error messages, and kills every child on the way out
// (and, through Pdeathsig, when the bench itself dies); it reads a process's
// CPU time and RSS from /proc, and the machine's load.
//
// It owns no figure and decides nothing about one: what to start, when to
// measure and what to print stay with each bench. Linux only, as the benches.
package proc

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

// tailLines is how many of a child's last output lines Tail shows.
const tailLines = 5

// Command is exec.CommandContext for a child of a bench: it gets our
// environment without ROBONET_* variables (which `robonet` reads as flags)
// and SIGKILL should the bench die without cleaning up. No process group of
// its own: a group leader is one more target for a stale `kill -- -PGID` on
// a busy machine, and a Ctrl-C reaching the children too is harmless (the
// bench kills them right after).
func Command(ctx context.Context, bin string, args ...string) *exec.Cmd {
	cmd := exec.CommandContext(ctx, bin, args...)
	cmd.Env = childEnv()
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	return cmd
}

func childEnv() []string {
	var env []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "ROBONET_") {
			env = append(env, kv)
		}
	}
	return env
}

// Child is one running child process, started by Group.Start.
type Child struct {
	Label string    // for messages: "core0", "bench4/n2"
	Cmd   *exec.Cmd // its Process is the child
	Began time.Time // just before exec

	ready  chan struct{} // closed at the marker line
	exited chan struct{} // closed once Wait returned

	mu        sync.Mutex // guards the fields below
	tail      []string   // the last tailLines lines of output
	readyAt   time.Time
	readyLine string
	err       error // from Wait
	exitedAt  time.Time
}

// Pid is the child's process id.
func (c *Child) Pid() int { return c.Cmd.Process.Pid }

// ReadyAt is when the marker line came (zero before).
func (c *Child) ReadyAt() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.readyAt
}

// ReadyLine is the marker line ("" before).
func (c *Child) ReadyLine() string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.readyLine
}

// Exited is closed once the child has exited and its output is read.
func (c *Child) Exited() <-chan struct{} { return c.exited }

// Err is what waiting for the child returned (nil before it exited).
func (c *Child) Err() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.err
}

// ExitedAt is when the child was seen to exit (zero before).
func (c *Child) ExitedAt() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.exitedAt
}

// Tail is the end of the child's output (stdout and stderr) on one line,
// for error messages.
func (c *Child) Tail() string {
	c.mu.Lock()
	s := strings.Join(c.tail, " | ")
	c.mu.Unlock()
	if len(s) > 600 {
		s = "…" + s[len(s)-600:]
	}
	return s
}

// WaitReady waits for the child's marker line until deadline.
func (c *Child) WaitReady(ctx context.Context, deadline time.Time) error {
	t := time.NewTimer(time.Until(deadline))
	defer t.Stop()
	select {
	case <-c.ready:
		return nil
	case <-c.exited:
		// The line may have come with the exit.
		if !c.ReadyAt().IsZero() {
			return nil
		}
		return fmt.Errorf("%s exited before ready (%v): %s", c.Label, c.Err(), c.Tail())
	case <-t.C:
		return fmt.Errorf("%s not ready %v after exec: %s", c.Label, time.Since(c.Began).Round(time.Second), c.Tail())
	case <-ctx.Done():
		return ctx.Err()
	}
}

// read takes c's output line by line until the child closes it, then waits
// for the child.
func (c *Child) read(r io.Reader, marker string) {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	marked := marker == ""
	for sc.Scan() {
		l := sc.Text()
		now := time.Now()
		c.mu.Lock()
		c.tail = append(c.tail, l)
		if len(c.tail) > tailLines {
			c.tail = c.tail[1:]
		}
		mark := !marked && strings.Contains(l, marker)
		if mark {
			c.readyAt, c.readyLine = now, l
		}
		c.mu.Unlock()
		if mark {
			marked = true
			close(c.ready)
		}
	}
	// A line too long for the scanner stops it: drain the rest so that
	// the child never blocks on a full pipe.
	_, _ = io.Copy(io.Discard, r)
	err := c.Cmd.Wait()
	c.mu.Lock()
	c.err, c.exitedAt = err, time.Now()
	c.mu.Unlock()
	close(c.exited)
}

// Group owns every child it started, so that all can be killed on the way
// out. The zero Group is ready to use.
type Group struct {
	mu     sync.Mutex // guards the fields below
	all    map[*Child]struct{}
	closed bool
}

// Start execs bin with args (see Command). A stdout or stderr line that
// contains marker makes the child ready; with marker "" it never is.
func (g *Group) Start(label, bin string, args []string, marker string) (*Child, error) {
	c := &Child{Label: label, ready: make(chan struct{}), exited: make(chan struct{})}
	c.Cmd = Command(context.Background(), bin, args...)
	out, err := c.Cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	c.Cmd.Stderr = c.Cmd.Stdout
	c.Cmd.WaitDelay = 5 * time.Second
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.closed {
		return nil, errors.New("shutting down")
	}
	c.Began = time.Now()
	if err := c.Cmd.Start(); err != nil {
		return nil, fmt.Errorf("%s: exec %s: %w", label, bin, err)
	}
	if g.all == nil {
		g.all = map[*Child]struct{}{}
	}
	g.all[c] = struct{}{}
	go c.read(out, marker)
	return c, nil
}

// Kill SIGKILLs c if it still runs (SIGCONT first, should it be stopped)
// and waits for it, 10 s at most.
func (g *Group) Kill(c *Child) {
	_ = c.Cmd.Process.Signal(syscall.SIGCONT)
	_ = c.Cmd.Process.Kill() // an error means it has already exited
	select {
	case <-c.exited:
	case <-time.After(10 * time.Second):
		fmt.Fprintf(os.Stderr, "%s: %s (pid %d) did not exit 10 s after SIGKILL\n", filepath.Base(os.Args[0]), c.Label, c.Pid())
	}
	g.mu.Lock()
	delete(g.all, c)
	g.mu.Unlock()
}

// KillAll kills every child still running, in parallel.
func (g *Group) KillAll() {
	g.mu.Lock()
	var l []*Child
	for c := range g.all {
		l = append(l, c)
	}
	g.mu.Unlock()
	var wg sync.WaitGroup
	for _, c := range l {
		wg.Go(func() { g.Kill(c) })
	}
	wg.Wait()
}

// Close refuses to start more children and kills every one still running.
func (g *Group) Close() {
	g.mu.Lock()
	g.closed = true
	g.mu.Unlock()
	g.KillAll()
}

// Ports returns n ports free on host: listen on :0, then close. Another
// program may take one before the child binds it; that run then fails.
func Ports(host string, n int) ([]int, error) {
	var out []int
	var ls []net.Listener
	defer func() {
		for _, l := range ls {
			l.Close()
		}
	}()
	for range n {
		l, err := net.Listen("tcp", net.JoinHostPort(host, "0"))
		if err != nil {
			return nil, fmt.Errorf("reserve a port: %w", err)
		}
		ls = append(ls, l)
		out = append(out, l.Addr().(*net.TCPAddr).Port)
	}
	return out, nil
}

// LocalAddrs returns n free 127.0.0.1 addresses (host:port), as Ports.
func LocalAddrs(n int) ([]string, error) {
	ports, err := Ports("127.0.0.1", n)
	if err != nil {
		return nil, err
	}
	out := make([]string, len(ports))
	for i, p := range ports {
		out[i] = net.JoinHostPort("127.0.0.1", strconv.Itoa(p))
	}
	return out, nil
}

// ClockTick is USER_HZ, the unit of CPUTicks: 100 on Linux.
const ClockTick = 100

// CPUTicks reads utime+stime of pid from /proc/<pid>/stat, in clock ticks.
func CPUTicks(pid int) (int64, error) {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, err
	}
	s := string(data)
	i := strings.LastIndexByte(s, ')') // the command name may hold spaces
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

// CPUOver measures each pid's CPU over d, in ms of CPU per s of wall time.
func CPUOver(ctx context.Context, pids []int, d time.Duration) ([]float64, error) {
	t0 := make([]int64, len(pids))
	for i, pid := range pids {
		v, err := CPUTicks(pid)
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
		v, err := CPUTicks(pid)
		if err != nil {
			return nil, err
		}
		out[i] = float64(v-t0[i]) * 1000 / ClockTick / wall
	}
	return out, nil
}

// RSSBytes reads VmRSS from /proc/<pid>/status.
func RSSBytes(pid int) (int64, error) {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, fmt.Errorf("rss: %w", err)
	}
	for _, line := range strings.Split(string(data), "\n") {
		if rest, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			f := strings.Fields(rest)
			if len(f) == 2 && f[1] == "kB" {
				kb, err := strconv.ParseInt(f[0], 10, 64)
				if err == nil {
					return kb << 10, nil
				}
			}
			return 0, fmt.Errorf("rss: /proc/%d/status: bad line %q", pid, line)
		}
	}
	return 0, fmt.Errorf("rss: /proc/%d/status has no VmRSS", pid)
}

// MiB is b bytes in MiB.
func MiB(b int64) float64 { return float64(b) / (1 << 20) }

// LoadAvg reads the 1, 5 and 15-minute load averages (zeros if unavailable).
func LoadAvg() [3]float64 {
	var out [3]float64
	data, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return out
	}
	f := strings.Fields(string(data))
	for i := 0; i < 3 && i < len(f); i++ {
		out[i], _ = strconv.ParseFloat(f[i], 64)
	}
	return out
}

// FormatLoad prints load averages as /proc/loadavg does.
func FormatLoad(l [3]float64) string { return fmt.Sprintf("%.2f %.2f %.2f", l[0], l[1], l[2]) }

// Percentile is the p-th (0..1) value of v by the nearest-rank method (0 for
// an empty v); v is not changed.
func Percentile(v []float64, p float64) float64 {
	if len(v) == 0 {
		return 0
	}
	s := append([]float64(nil), v...)
	sort.Float64s(s)
	i := int(p*float64(len(s))+0.999999) - 1
	return s[max(0, min(i, len(s)-1))]
}

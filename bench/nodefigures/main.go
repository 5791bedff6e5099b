// Command nodefigures prints the robonet node runtime's figures, each as
// min/median/max over repeated runs: start-to-ready time of a single node and
// of a 3-node swarm, idle memory (RSS) of a single node and of a swarm member,
// how fast survivors see a member leave after SIGKILL and after SIGTERM, and
// how fast the swarm-leader lease moves after the holder's SIGKILL.
//
// It drives the real binary as separate processes on 127.0.0.1, so a SIGKILL
// is a real crash: sockets are closed by the kernel, nothing is flushed. Every
// node gets free ports (listen on :0, then close) and a fresh data dir under
// one temp dir, which is removed at the end; every child is killed on exit,
// on Ctrl-C too (and, on Linux, when this program itself dies: Pdeathsig).
// Polling during a measurement uses package mesh over one NATS connection per
// survivor, opened before the kill, so a figure is not a process spawn.
//
// It owns measuring and printing; it asserts nothing about the figures (they
// depend on the machine and its load), and it is no test: a run that misses a
// deadline is counted as failed and the program goes on.
//
// Usage, from inside the module:
//
//	go run ./bench/nodefigures [-runs 5] [-bin PATH] [-json] [-v]
//
// See bench/README.md for what each figure measures.
package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"math"
	"net"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"text/tabwriter"
	"time"

	"github.com/robonet-mesh/robonet/mesh"
	"github.com/robonet-mesh/robonet/trust"
	"github.com/robonet-mesh/robonet/wire"
)

// Deadlines: every wait has one, so a run that misses it fails instead of hanging.
const (
	singleReadyWait = 30 * time.Second // exec to "up as chevron" of a single node
	swarmReadyWait  = 90 * time.Second // exec to "up as chevron" of all three swarm members
	settleWait      = 60 * time.Second // ready to 3 alive everywhere, R3, one agreed leader
	streamMoveWait  = 10 * time.Second // then: the lease stream's leader moved off the holder
	cliWait         = 15 * time.Second // one `robonet status --json`
	detectWait      = 20 * time.Second // kill to survivors showing the victim gone
	failoverWait    = 30 * time.Second // kill of the holder to a new leader on both survivors
	exitWait        = 30 * time.Second // SIGTERM to process exit (lame duck is 2 s)
	queryTimeout    = time.Second      // one nodes/status query
)

// What the binary shows the outside: the line `robonet up` prints once
// ready, the operator seed in its data dir (node.OperatorSeedFile) and the
// lease bucket's stream (node.BucketLeader). They are spelled out rather than
// imported so this program needs neither package node nor nats-server.
const (
	upMarker     = " up as chevron "
	operatorSeed = "operator.nk"
	leaseStream  = "KV_rn_leader"
)

// Figure keys, in table order.
const (
	figReadyLine     = "ready_line"
	figReadyStatus   = "ready_status"
	figCLIStatus     = "cli_status"
	figSwarmReady    = "swarm_ready"
	figRSSSingle     = "rss_single"
	figRSSLeader     = "rss_swarm_leader"
	figRSSFollower   = "rss_swarm_follower"
	figKillFirst     = "kill_offline_first"
	figKillBoth      = "kill_offline_both"
	figTermFirst     = "term_gone_first"
	figTermBoth      = "term_gone_both"
	figTermExit      = "term_exit"
	figFailoverFirst = "failover_first"
	figFailoverBoth  = "failover_both"
)

var figureDefs = []struct{ key, name, unit string }{
	{figReadyLine, `start-to-ready: "up as chevron" line`, "ms"},
	{figReadyStatus, "start-to-ready: first status answer", "ms"},
	{figCLIStatus, "CLI `status --json` (spawn+query)", "ms"},
	{figSwarmReady, "start-to-ready: 3-node swarm", "ms"},
	{figRSSSingle, "idle RSS: single node", "MiB"},
	{figRSSLeader, "idle RSS: swarm leader", "MiB"},
	{figRSSFollower, "idle RSS: swarm follower", "MiB"},
	{figKillFirst, "SIGKILL follower -> offline (1st)", "ms"},
	{figKillBoth, "SIGKILL follower -> offline (both)", "ms"},
	{figTermFirst, "SIGTERM follower -> gone (1st)", "ms"},
	{figTermBoth, "SIGTERM follower -> gone (both)", "ms"},
	{figTermExit, "SIGTERM follower -> process exit", "ms"},
	{figFailoverFirst, "SIGKILL leader -> new leader (1st)", "ms"},
	{figFailoverBoth, "SIGKILL leader -> new leader (both)", "ms"},
}

func main() { os.Exit(run()) }

// config is what the flags say.
type config struct {
	runs    int
	bin     string
	json    bool
	verbose bool
	idle    time.Duration
	poll    time.Duration
}

func run() int {
	var cfg config
	flag.IntVar(&cfg.runs, "runs", 5, "how many times to measure each figure")
	flag.StringVar(&cfg.bin, "bin", "", "robonet binary to drive (default: go build ./cmd/robonet into a temp dir)")
	flag.BoolVar(&cfg.json, "json", false, "print JSON instead of a table")
	flag.BoolVar(&cfg.verbose, "v", false, "print progress on stderr (default: only when stderr is a terminal)")
	flag.DurationVar(&cfg.idle, "idle", 10*time.Second, "how long a node idles before its RSS is read")
	flag.DurationVar(&cfg.poll, "poll", 20*time.Millisecond, "poll interval while measuring detection and failover")
	flag.Usage = func() {
		fmt.Fprintf(flag.CommandLine.Output(), "usage: nodefigures [flags]\n\n"+
			"Prints robonet node figures (start-to-ready, idle RSS, leave detection, lease failover)\n"+
			"as min/median/max over -runs runs, driving the real binary on 127.0.0.1.\n\n")
		flag.PrintDefaults()
	}
	flag.Parse()
	if flag.NArg() > 0 {
		fmt.Fprintf(os.Stderr, "nodefigures: unexpected argument %q\n", flag.Arg(0))
		return 2
	}
	if cfg.runs < 1 || cfg.poll <= 0 || cfg.idle < 0 {
		fmt.Fprintln(os.Stderr, "nodefigures: -runs must be at least 1, -poll positive, -idle not negative")
		return 2
	}

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()

	tmp, err := os.MkdirTemp("", "nodefigures-")
	if err != nil {
		fmt.Fprintln(os.Stderr, "nodefigures:", err)
		return 1
	}
	b := &bench{cfg: cfg, tmp: tmp, procs: map[*proc]struct{}{}, progress: io.Discard}
	if cfg.verbose || isTerminal(os.Stderr) {
		b.progress = os.Stderr
	}
	defer b.cleanup()

	if err := b.prepareBinary(ctx); err != nil {
		fmt.Fprintln(os.Stderr, "nodefigures:", err)
		return 1
	}
	rep := report{
		Runs: cfg.runs, Binary: b.binFrom, Version: b.version(ctx), Go: runtime.Version(),
		CPUs: runtime.NumCPU(), Started: time.Now().UTC().Truncate(time.Second),
		LoadStart: loadAvg(), Poll: cfg.poll.String(), Idle: cfg.idle.String(),
	}
	b.figs = map[string]*figure{}
	for _, d := range figureDefs {
		f := &figure{Key: d.key, Name: d.name, Unit: d.unit}
		b.figs[d.key] = f
		rep.Figures = append(rep.Figures, f)
	}

	began := time.Now()
	b.measureSingle(ctx)
	for r := 1; r <= cfg.runs && ctx.Err() == nil; r++ {
		b.measureKillFollower(ctx, r)
		b.measureTermFollower(ctx, r)
		b.measureFailover(ctx, r)
	}
	rep.Elapsed = time.Since(began).Round(time.Second).String()
	rep.LoadEnd = loadAvg()
	interrupted := ctx.Err() != nil
	if interrupted {
		b.note("interrupted: the figures are partial")
	}
	rep.Notes = b.notes
	for _, f := range rep.Figures {
		f.summarize()
	}
	if cfg.json {
		enc := json.NewEncoder(os.Stdout)
		enc.SetIndent("", "  ")
		if err := enc.Encode(rep); err != nil {
			fmt.Fprintln(os.Stderr, "nodefigures:", err)
			return 1
		}
	} else {
		rep.print(os.Stdout)
	}
	switch {
	case interrupted:
		return 130
	case rep.anyFailed():
		return 1
	}
	return 0
}

// bench holds what every measurement shares: the binary, the temp dir, and
// every child process so that all of them can be killed on the way out.
type bench struct {
	cfg      config
	bin      string // the binary run
	binFrom  string // where it came from, for the report
	tmp      string
	progress io.Writer
	figs     map[string]*figure
	swarms   int // swarms started so far, for unique names

	mu     sync.Mutex // guards the fields below
	procs  map[*proc]struct{}
	closed bool
	notes  []string
}

func (b *bench) logf(format string, a ...any) {
	fmt.Fprintf(b.progress, "nodefigures: "+format+"\n", a...)
}

// note records something odd for the report (and shows it as progress).
func (b *bench) note(format string, a ...any) {
	msg := fmt.Sprintf(format, a...)
	b.mu.Lock()
	b.notes = append(b.notes, msg)
	b.mu.Unlock()
	b.logf("NOTE: %s", msg)
}

func (b *bench) add(key string, v float64) { b.figs[key].Samples = append(b.figs[key].Samples, v) }

func (b *bench) addDur(key string, d time.Duration) { b.add(key, ms(d)) }

// fail counts one failed run for each key, unless the whole program is being
// interrupted (that is no failure of the thing measured).
func (b *bench) fail(ctx context.Context, err error, keys ...string) {
	if ctx.Err() != nil {
		return
	}
	for _, k := range keys {
		f := b.figs[k]
		f.Failed++
		f.Errors = append(f.Errors, err.Error())
	}
	b.logf("FAILED %s: %v", strings.Join(keys, ", "), err)
}

// prepareBinary builds ./cmd/robonet into the temp dir unless -bin names one.
func (b *bench) prepareBinary(ctx context.Context) error {
	if b.cfg.bin != "" {
		abs, err := filepath.Abs(b.cfg.bin)
		if err != nil {
			return err
		}
		st, err := os.Stat(abs)
		if err != nil {
			return fmt.Errorf("-bin: %w", err)
		}
		if st.IsDir() || st.Mode()&0o111 == 0 {
			return fmt.Errorf("-bin %s: not an executable file", abs)
		}
		b.bin, b.binFrom = abs, abs
		return nil
	}
	out, err := exec.CommandContext(ctx, "go", "env", "GOMOD").Output()
	gomod := strings.TrimSpace(string(out))
	if err != nil || gomod == "" || gomod == os.DevNull {
		return fmt.Errorf("not inside a Go module (go env GOMOD: %q, %v): run from the robonet module or pass -bin", gomod, err)
	}
	root := filepath.Dir(gomod)
	if _, err := os.Stat(filepath.Join(root, "cmd", "robonet")); err != nil {
		return fmt.Errorf("module at %s has no cmd/robonet: run from the robonet module or pass -bin", root)
	}
	b.bin = filepath.Join(b.tmp, "robonet")
	b.binFrom = "go build " + filepath.Join(root, "cmd", "robonet")
	began := time.Now()
	b.logf("building %s/cmd/robonet", root)
	cmd := exec.CommandContext(ctx, "go", "build", "-o", b.bin, "./cmd/robonet")
	cmd.Dir = root
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("go build ./cmd/robonet: %v\n%s", err, out)
	}
	b.logf("built in %v", time.Since(began).Round(time.Millisecond))
	return nil
}

func (b *bench) version(ctx context.Context) string {
	cctx, cancel := context.WithTimeout(ctx, cliWait)
	defer cancel()
	cmd := exec.CommandContext(cctx, b.bin, "version", "--json")
	cmd.Env = childEnv()
	out, err := cmd.Output()
	var v struct {
		Version string `json:"version"`
	}
	if err != nil || json.Unmarshal(out, &v) != nil {
		return "unknown"
	}
	return v.Version
}

// cleanup kills every child still running and removes the temp dir. It runs
// on every way out of run, Ctrl-C included.
func (b *bench) cleanup() {
	b.mu.Lock()
	b.closed = true
	ps := make([]*proc, 0, len(b.procs))
	for p := range b.procs {
		ps = append(ps, p)
	}
	b.mu.Unlock()
	for _, p := range ps {
		b.kill(p)
	}
	if err := os.RemoveAll(b.tmp); err != nil {
		fmt.Fprintf(os.Stderr, "nodefigures: remove %s: %v\n", b.tmp, err)
	}
}

// proc is one running `robonet up`.
type proc struct {
	label  string // for messages: "single 3", "bench4/n2"
	data   string
	listen string // client address host:port
	cmd    *exec.Cmd
	began  time.Time // just before exec
	stdout *outBuf
	stderr *outBuf
	exited chan struct{}
	err    error     // from Wait, once exited is closed
	doneAt time.Time // once exited is closed
	client *mesh.Client

	// Learned once the node answers.
	chevron string
	server  string
}

func (p *proc) url() string { return "nats://" + p.listen }

// readyAt is when the up line appeared on stdout (zero if not yet).
func (p *proc) readyAt() time.Time { return p.stdout.markedAt() }

// tail is the end of the process's stderr (its error and last warnings; or
// of its stdout when stderr is empty) on one line, for error messages.
func (p *proc) tail() string {
	out := strings.TrimSpace(p.stderr.String())
	if out == "" {
		out = strings.TrimSpace(p.stdout.String())
	}
	lines := strings.Split(out, "\n")
	lines = lines[max(0, len(lines)-3):]
	s := strings.Join(lines, " | ")
	if len(s) > 600 {
		s = "…" + s[len(s)-600:]
	}
	return s
}

// startNode execs `robonet up` with a fresh data dir and client address.
func (b *bench) startNode(label, data, listen string, extra ...string) (*proc, error) {
	args := append([]string{"up", "--data", data, "--listen", listen, "--log-level", "warn"}, extra...)
	p := &proc{
		label: label, data: data, listen: listen,
		stdout: newOutBuf(upMarker), stderr: newOutBuf(""), exited: make(chan struct{}),
	}
	p.cmd = exec.Command(b.bin, args...)
	p.cmd.Env = childEnv()
	p.cmd.Stdout, p.cmd.Stderr = p.stdout, p.stderr
	// Pdeathsig kills the child should we die without cleanup. No process
	// group of its own: a group leader (pgid == pid) is one more target for a
	// stale `kill -- -PGID` on a busy machine, and a Ctrl-C reaching the
	// children too is harmless (we SIGKILL them right after).
	p.cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	p.cmd.WaitDelay = 5 * time.Second
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.closed {
		return nil, errors.New("shutting down")
	}
	p.began = time.Now()
	if err := p.cmd.Start(); err != nil {
		return nil, fmt.Errorf("%s: exec %s: %w", label, b.bin, err)
	}
	b.procs[p] = struct{}{}
	go func() {
		err := p.cmd.Wait()
		p.err, p.doneAt = err, time.Now()
		close(p.exited)
	}()
	return p, nil
}

// kill SIGKILLs p if it still runs, waits for it and closes its client.
func (b *bench) kill(p *proc) {
	if p.client != nil {
		p.client.Close()
	}
	_ = p.cmd.Process.Kill() // an error means it has already exited
	select {
	case <-p.exited:
	case <-time.After(10 * time.Second):
		fmt.Fprintf(os.Stderr, "nodefigures: %s (pid %d) did not exit 10 s after SIGKILL\n", p.label, p.cmd.Process.Pid)
	}
	b.mu.Lock()
	delete(b.procs, p)
	b.mu.Unlock()
}

// waitReady waits for the up line on p's stdout.
func waitReady(ctx context.Context, p *proc, deadline time.Time) error {
	t := time.NewTimer(time.Until(deadline))
	defer t.Stop()
	select {
	case <-p.stdout.marked:
		return nil
	case <-p.exited:
		// The line may have come with the exit.
		if !p.readyAt().IsZero() {
			return nil
		}
		return fmt.Errorf("%s exited before ready (%v): %s", p.label, p.err, p.tail())
	case <-t.C:
		return fmt.Errorf("%s not ready %v after exec: %s", p.label, time.Since(p.began).Round(time.Second), p.tail())
	case <-ctx.Done():
		return ctx.Err()
	}
}

// connect opens p's client with the operator key from p's own data dir.
func connect(ctx context.Context, p *proc) error {
	c, err := mesh.Connect(ctx, mesh.Options{
		Server: p.url(), SeedFile: filepath.Join(p.data, operatorSeed),
		Name: "nodefigures", Timeout: 2 * time.Second,
	})
	if err != nil {
		return fmt.Errorf("%s: %w", p.label, err)
	}
	p.client = c
	return nil
}

// ---- figures 1 and 2: single node ----

// measureSingle starts one single node per run, one after another, timing
// each from exec to its up line and to its first status answer, and one CLI
// status per node. The nodes stay up and idle side by side; once the newest
// has idled for -idle, each one's RSS is read and they are all killed.
func (b *bench) measureSingle(ctx context.Context) {
	var live []*proc
	defer func() {
		for _, p := range live {
			b.kill(p)
		}
	}()
	for r := 1; r <= b.cfg.runs && ctx.Err() == nil; r++ {
		p, err := b.singleStart(ctx, r)
		if p != nil {
			live = append(live, p)
		}
		if err != nil {
			b.fail(ctx, err, figReadyLine, figReadyStatus, figCLIStatus, figRSSSingle)
			continue
		}
		d, err := b.cliStatus(ctx, p)
		if err != nil {
			b.fail(ctx, err, figCLIStatus)
			continue
		}
		b.addDur(figCLIStatus, d)
	}
	for _, p := range live {
		if p.readyAt().IsZero() {
			continue // failed above
		}
		if err := sleepCtx(ctx, time.Until(p.readyAt().Add(b.cfg.idle))); err != nil {
			return
		}
		select {
		case <-p.exited:
			b.fail(ctx, fmt.Errorf("%s exited while idle (%v): %s", p.label, p.err, p.tail()), figRSSSingle)
			continue
		default:
		}
		rss, err := rssBytes(p.cmd.Process.Pid)
		if err != nil {
			b.fail(ctx, fmt.Errorf("%s: %w", p.label, err), figRSSSingle)
			continue
		}
		b.add(figRSSSingle, mib(rss))
		b.logf("%s: idle RSS %.1f MiB after %v", p.label, mib(rss), time.Since(p.readyAt()).Round(time.Second))
	}
}

// singleStart execs one single node on a fresh data dir and times it to its
// up line and to the first status answer (the query `status --json` makes,
// polled every 5 ms over a NATS connection retried as soon as the seed file
// and the port exist).
func (b *bench) singleStart(ctx context.Context, r int) (*proc, error) {
	addrs, err := reservePorts(1)
	if err != nil {
		return nil, err
	}
	p, err := b.startNode(fmt.Sprintf("single %d", r), filepath.Join(b.tmp, fmt.Sprintf("single%d", r)), addrs[0])
	if err != nil {
		return nil, err
	}
	deadline := p.began.Add(singleReadyWait)
	type answer struct {
		at  time.Time
		err error
	}
	polled := make(chan answer, 1)
	pctx, cancel := context.WithDeadline(ctx, deadline)
	defer cancel()
	go func() {
		var lastErr error
		for pctx.Err() == nil {
			if p.client == nil {
				if err := connect(pctx, p); err != nil {
					lastErr = err
					_ = sleepCtx(pctx, 5*time.Millisecond)
					continue
				}
			}
			qctx, qcancel := context.WithTimeout(pctx, queryTimeout)
			_, err := p.client.Status(qctx)
			qcancel()
			if err == nil {
				polled <- answer{at: time.Now()}
				return
			}
			lastErr = err
			_ = sleepCtx(pctx, 5*time.Millisecond)
		}
		polled <- answer{err: fmt.Errorf("%s: no status answer within %v: %v", p.label, singleReadyWait, lastErr)}
	}()
	if err := waitReady(ctx, p, deadline); err != nil {
		cancel()
		<-polled
		return p, err
	}
	a := <-polled
	if a.err != nil {
		return p, fmt.Errorf("%w: %s", a.err, p.tail())
	}
	line, status := p.readyAt().Sub(p.began), a.at.Sub(p.began)
	b.addDur(figReadyLine, line)
	b.addDur(figReadyStatus, status)
	b.logf("%s: up line after %v, first status answer after %v", p.label, round(line), round(status))
	return p, nil
}

// cliStatus times one `robonet status --json` against p, exec to exit.
func (b *bench) cliStatus(ctx context.Context, p *proc) (time.Duration, error) {
	cctx, cancel := context.WithTimeout(ctx, cliWait)
	defer cancel()
	cmd := exec.CommandContext(cctx, b.bin, "status", "--json", "--server", p.url(), "--data", p.data)
	cmd.Env = childEnv()
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	began := time.Now()
	err := cmd.Run()
	took := time.Since(began)
	if err != nil {
		return 0, fmt.Errorf("%s: robonet status --json: %v: %s", p.label, err, strings.TrimSpace(stderr.String()))
	}
	var st wire.Status
	if err := json.Unmarshal(stdout.Bytes(), &st); err != nil || st.Chevron == "" {
		return 0, fmt.Errorf("%s: robonet status --json printed %q (%v)", p.label, stdout.String(), err)
	}
	return took, nil
}

// ---- figures 3 to 5: a fresh 3-node swarm per run ----

// swarm is three `robonet up` processes routed to each other.
type swarm struct {
	name   string
	procs  []*proc
	leader int    // index of the lease holder once settled
	stream string // server name of the lease stream's leader at settle time
}

func (s *swarm) followers() []int {
	var out []int
	for i := range s.procs {
		if i != s.leader {
			out = append(out, i)
		}
	}
	return out
}

func (s *swarm) others(victim int) []*proc {
	var out []*proc
	for i, p := range s.procs {
		if i != victim {
			out = append(out, p)
		}
	}
	return out
}

// startSwarm starts three members at once, each joining all three route
// addresses, and waits until the swarm is settled: every member sees 3 alive,
// every member reports R3 buckets and current JetStream, all agree on one
// lease holder, and (up to streamMoveWait longer) the lease stream's leader is
// not the holder, as the node arranges.
func (b *bench) startSwarm(ctx context.Context) (*swarm, error) {
	b.swarms++
	s := &swarm{name: fmt.Sprintf("bench%d", b.swarms), leader: -1}
	addrs, err := reservePorts(6)
	if err != nil {
		return s, err
	}
	routes := addrs[3:]
	join := strings.Join(routes, ",")
	dir := filepath.Join(b.tmp, s.name)
	secret, err := trust.GenerateSecret()
	if err != nil {
		return s, err
	}
	for i := 0; i < 3; i++ {
		p, err := b.startNode(fmt.Sprintf("%s/n%d", s.name, i), filepath.Join(dir, fmt.Sprint("n", i)), addrs[i],
			"--cluster", routes[i], "--join", join, "--swarm", s.name, "--token", secret)
		if err != nil {
			return s, err
		}
		s.procs = append(s.procs, p)
	}
	deadline := time.Now().Add(swarmReadyWait)
	var readyAt time.Time
	for _, p := range s.procs {
		if err := waitReady(ctx, p, deadline); err != nil {
			b.fail(ctx, err, figSwarmReady)
			return s, err
		}
		if p.readyAt().After(readyAt) {
			readyAt = p.readyAt()
		}
	}
	b.addDur(figSwarmReady, readyAt.Sub(s.procs[0].began))
	for _, p := range s.procs {
		if err := connect(ctx, p); err != nil {
			return s, err
		}
	}
	statuses := make([]wire.Status, 3)
	settledAt, err := pollUntil(ctx, readyAt.Add(settleWait), 100*time.Millisecond, func(ctx context.Context) (bool, error) {
		for i, p := range s.procs {
			st, err := p.client.Status(ctx)
			if err != nil {
				return false, fmt.Errorf("%s: %w", p.label, err)
			}
			ms, err := p.client.Nodes(ctx)
			if err != nil {
				return false, fmt.Errorf("%s: %w", p.label, err)
			}
			alive := 0
			for _, m := range ms {
				if m.State == wire.StateAlive {
					alive++
				}
				if m.Chevron == st.Chevron {
					p.server = m.Server
				}
			}
			p.chevron, statuses[i] = st.Chevron, st
			switch {
			case alive != 3 || len(ms) != 3:
				return false, fmt.Errorf("%s sees %d alive of %d listed", p.label, alive, len(ms))
			case st.Replicas != 3:
				return false, fmt.Errorf("%s: buckets R%d", p.label, st.Replicas)
			case !st.JetStreamOK:
				return false, fmt.Errorf("%s: JetStream not current", p.label)
			case st.Leader == "":
				return false, fmt.Errorf("%s: no leader", p.label)
			case i > 0 && st.Leader != statuses[0].Leader:
				return false, fmt.Errorf("leaders differ: %s says %s, %s says %s",
					s.procs[0].label, statuses[0].Leader, p.label, st.Leader)
			}
		}
		return true, nil
	})
	if err != nil {
		return s, fmt.Errorf("swarm %s not settled within %v of ready: %w", s.name, settleWait, err)
	}
	for i, p := range s.procs {
		if p.chevron == statuses[0].Leader {
			s.leader = i
		}
	}
	if s.leader < 0 {
		return s, fmt.Errorf("swarm %s: leader %s is none of its members", s.name, statuses[0].Leader)
	}
	holder := s.procs[s.leader]
	// The holder moves the lease stream's leadership away from itself (else
	// its death costs a Raft election on top of the TTL): wait for that.
	_, err = pollUntil(ctx, time.Now().Add(streamMoveWait), 100*time.Millisecond, func(ctx context.Context) (bool, error) {
		l, err := streamLeader(ctx, holder.client, leaseStream)
		s.stream = l
		if err != nil {
			return false, err
		}
		if l == holder.server {
			return false, fmt.Errorf("the holder %s (%s) leads it", holder.label, l)
		}
		return true, nil
	})
	if err != nil {
		if ctx.Err() != nil {
			return s, ctx.Err()
		}
		b.note("swarm %s: lease stream leader still on the holder %v after settling: %v", s.name, streamMoveWait, err)
	}
	b.logf("swarm %s: ready %v after exec, settled %v later (leader %s = %s, lease stream led by %s)",
		s.name, round(readyAt.Sub(s.procs[0].began)), round(settledAt.Sub(readyAt)), holder.chevron, holder.label, s.stream)
	return s, nil
}

// startSwarmRetry is startSwarm with one retry on a fresh swarm: on a shared
// machine a reserved port can be taken, or a stray signal hit a member,
// before the swarm is up. The failed attempt stays in the notes (and in the
// swarm start-to-ready figure when a member never got ready).
func (b *bench) startSwarmRetry(ctx context.Context, r int) (*swarm, error) {
	s, err := b.startSwarm(ctx)
	if err == nil || ctx.Err() != nil {
		return s, err
	}
	b.note("run %d: swarm %s did not come up, retrying with a fresh swarm: %v", r, s.name, err)
	b.stopSwarm(s)
	return b.startSwarm(ctx)
}

// stopSwarm kills every member and removes the swarm's data dirs.
func (b *bench) stopSwarm(s *swarm) {
	for _, p := range s.procs {
		b.kill(p)
	}
	_ = os.RemoveAll(filepath.Join(b.tmp, s.name))
}

// measureKillFollower: idle RSS of the members, then SIGKILL of a follower and
// the time until each survivor lists it offline.
func (b *bench) measureKillFollower(ctx context.Context, r int) {
	keys := []string{figRSSLeader, figRSSFollower, figKillFirst, figKillBoth}
	s, err := b.startSwarmRetry(ctx, r)
	defer b.stopSwarm(s)
	if err != nil {
		b.fail(ctx, fmt.Errorf("run %d: %w", r, err), keys...)
		return
	}
	var newest time.Time
	for _, p := range s.procs {
		if p.readyAt().After(newest) {
			newest = p.readyAt()
		}
	}
	if err := sleepCtx(ctx, time.Until(newest.Add(b.cfg.idle))); err != nil {
		return
	}
	for i, p := range s.procs {
		rss, err := rssBytes(p.cmd.Process.Pid)
		key := figRSSFollower
		if i == s.leader {
			key = figRSSLeader
		}
		if err != nil {
			b.fail(ctx, fmt.Errorf("run %d: %s: %w", r, p.label, err), key)
			continue
		}
		b.add(key, mib(rss))
	}

	victim := s.procs[s.followers()[0]]
	victim.client.Close()
	survivors := s.others(s.followers()[0])
	killed := time.Now()
	if err := victim.cmd.Process.Kill(); err != nil {
		b.fail(ctx, fmt.Errorf("run %d: kill %s: %w", r, victim.label, err), figKillFirst, figKillBoth)
		return
	}
	var unlisted sync.Once
	ats, err := pollEach(ctx, survivors, killed.Add(detectWait), b.cfg.poll, func(ctx context.Context, p *proc) (bool, error) {
		ms, err := p.client.Nodes(ctx)
		if err != nil {
			return false, err
		}
		for _, m := range ms {
			if m.Chevron == victim.chevron {
				if m.State == wire.StateOffline {
					return true, nil
				}
				return false, fmt.Errorf("%s sees %s %s", p.label, victim.chevron, m.State)
			}
		}
		unlisted.Do(func() {
			b.note("run %d: after SIGKILL %s no longer lists %s (expected it offline)", r, p.label, victim.chevron)
		})
		return true, nil
	})
	b.record(ctx, r, killed, ats, err, figKillFirst, figKillBoth, "SIGKILL follower "+victim.chevron+" offline")
}

// measureTermFollower: SIGTERM of a follower and the time until each
// survivor shows it gone (not listed, or offline), and until it exited.
func (b *bench) measureTermFollower(ctx context.Context, r int) {
	keys := []string{figTermFirst, figTermBoth, figTermExit}
	s, err := b.startSwarmRetry(ctx, r)
	defer b.stopSwarm(s)
	if err != nil {
		b.fail(ctx, fmt.Errorf("run %d: %w", r, err), keys...)
		return
	}
	vi := s.followers()[0]
	victim := s.procs[vi]
	victim.client.Close()
	survivors := s.others(vi)
	termed := time.Now()
	if err := victim.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		b.fail(ctx, fmt.Errorf("run %d: SIGTERM %s: %w", r, victim.label, err), keys...)
		return
	}
	ats, err := pollEach(ctx, survivors, termed.Add(detectWait), b.cfg.poll, func(ctx context.Context, p *proc) (bool, error) {
		ms, err := p.client.Nodes(ctx)
		if err != nil {
			return false, err
		}
		for _, m := range ms {
			if m.Chevron == victim.chevron && m.State != wire.StateOffline {
				return false, fmt.Errorf("%s sees %s %s", p.label, victim.chevron, m.State)
			}
		}
		return true, nil
	})
	b.record(ctx, r, termed, ats, err, figTermFirst, figTermBoth, "SIGTERM follower "+victim.chevron+" gone")
	t := time.NewTimer(time.Until(termed.Add(exitWait)))
	defer t.Stop()
	select {
	case <-victim.exited:
		d := victim.doneAt.Sub(termed)
		if victim.err != nil {
			b.fail(ctx, fmt.Errorf("run %d: %s after SIGTERM: %v: %s", r, victim.label, victim.err, victim.tail()), figTermExit)
			return
		}
		if !strings.Contains(victim.stderr.String(), "stopped cleanly") {
			b.note("run %d: %s exited 0 after SIGTERM without saying \"stopped cleanly\"", r, victim.label)
		}
		b.addDur(figTermExit, d)
		b.logf("run %d: %s exited %v after SIGTERM", r, victim.label, round(d))
	case <-t.C:
		b.fail(ctx, fmt.Errorf("run %d: %s still running %v after SIGTERM", r, victim.label, exitWait), figTermExit)
	case <-ctx.Done():
	}
}

// measureFailover: SIGKILL of the lease holder and the time until each
// survivor's status shows a different leader that is one of the survivors.
func (b *bench) measureFailover(ctx context.Context, r int) {
	s, err := b.startSwarmRetry(ctx, r)
	defer b.stopSwarm(s)
	if err != nil {
		b.fail(ctx, fmt.Errorf("run %d: %w", r, err), figFailoverFirst, figFailoverBoth)
		return
	}
	old := s.procs[s.leader]
	old.client.Close()
	survivors := s.others(s.leader)
	live := map[string]bool{}
	for _, p := range survivors {
		live[p.chevron] = true
	}
	var mu sync.Mutex
	seen := map[*proc]string{}
	killed := time.Now()
	if err := old.cmd.Process.Kill(); err != nil {
		b.fail(ctx, fmt.Errorf("run %d: kill %s: %w", r, old.label, err), figFailoverFirst, figFailoverBoth)
		return
	}
	ats, err := pollEach(ctx, survivors, killed.Add(failoverWait), b.cfg.poll, func(ctx context.Context, p *proc) (bool, error) {
		st, err := p.client.Status(ctx)
		if err != nil {
			return false, err
		}
		if st.Leader == "" || st.Leader == old.chevron || !live[st.Leader] {
			return false, fmt.Errorf("%s: leader %q", p.label, st.Leader)
		}
		mu.Lock()
		seen[p] = st.Leader
		mu.Unlock()
		return true, nil
	})
	b.record(ctx, r, killed, ats, err, figFailoverFirst, figFailoverBoth, "SIGKILL leader "+old.chevron+" new leader")
	if err == nil && seen[survivors[0]] != seen[survivors[1]] {
		b.note("run %d: survivors name different new leaders: %s says %s, %s says %s", r,
			survivors[0].label, seen[survivors[0]], survivors[1].label, seen[survivors[1]])
	}
}

// record adds the first and the last survivor's time (from t0) to the
// figures first and both. A survivor that missed the deadline fails both,
// but the other one's time still counts as the first.
func (b *bench) record(ctx context.Context, r int, t0 time.Time, ats []time.Time, err error, first, both, what string) {
	var done []time.Duration
	for _, at := range ats {
		if !at.IsZero() {
			done = append(done, at.Sub(t0))
		}
	}
	slices.Sort(done)
	if len(done) > 0 {
		b.addDur(first, done[0])
	}
	if err != nil {
		err = fmt.Errorf("run %d: %s: %w", r, what, err)
		if len(done) == 0 {
			b.fail(ctx, err, first, both)
		} else {
			b.fail(ctx, err, both)
		}
		return
	}
	b.addDur(both, done[len(done)-1])
	b.logf("run %d: %s: first survivor %v, both %v", r, what, round(done[0]), round(done[len(done)-1]))
}

// ---- polling ----

// pollUntil calls check every interval until it reports done, and returns
// when the answer that said so arrived. check explains "not yet" with an
// error, which the deadline error repeats.
func pollUntil(ctx context.Context, deadline time.Time, every time.Duration,
	check func(context.Context) (bool, error)) (time.Time, error) {
	t := time.NewTicker(every)
	defer t.Stop()
	var why error
	for {
		qd := time.Now().Add(queryTimeout)
		if deadline.Before(qd) {
			qd = deadline
		}
		qctx, cancel := context.WithDeadline(ctx, qd)
		done, err := check(qctx)
		at := time.Now()
		cancel()
		if done {
			return at, nil
		}
		if err != nil {
			why = err
		}
		if !at.Before(deadline) {
			return time.Time{}, fmt.Errorf("deadline passed: %v", why)
		}
		select {
		case <-ctx.Done():
			return time.Time{}, ctx.Err()
		case <-t.C:
		}
	}
}

// pollEach polls every process in ps concurrently, each over its own client,
// and returns when each first reported done (zero for one that did not).
func pollEach(ctx context.Context, ps []*proc, deadline time.Time, every time.Duration,
	check func(context.Context, *proc) (bool, error)) ([]time.Time, error) {
	ats := make([]time.Time, len(ps))
	errs := make([]error, len(ps))
	var wg sync.WaitGroup
	for i, p := range ps {
		wg.Go(func() {
			ats[i], errs[i] = pollUntil(ctx, deadline, every, func(ctx context.Context) (bool, error) {
				return check(ctx, p)
			})
			if errs[i] != nil {
				errs[i] = fmt.Errorf("%s: %w", p.label, errs[i])
			}
		})
	}
	wg.Wait()
	return ats, errors.Join(errs...)
}

// streamLeader asks JetStream which server leads a stream.
func streamLeader(ctx context.Context, c *mesh.Client, stream string) (string, error) {
	msg, err := c.Conn().RequestWithContext(ctx, "$JS.API.STREAM.INFO."+stream, nil)
	if err != nil {
		return "", fmt.Errorf("stream info %s: %w", stream, err)
	}
	var si struct {
		Cluster *struct {
			Leader string `json:"leader"`
		} `json:"cluster"`
		Error *struct {
			Description string `json:"description"`
		} `json:"error"`
	}
	if err := json.Unmarshal(msg.Data, &si); err != nil {
		return "", fmt.Errorf("stream info %s: %w", stream, err)
	}
	if si.Error != nil {
		return "", fmt.Errorf("stream info %s: %s", stream, si.Error.Description)
	}
	if si.Cluster == nil || si.Cluster.Leader == "" {
		return "", fmt.Errorf("stream info %s: no leader", stream)
	}
	return si.Cluster.Leader, nil
}

// ---- results ----

// report is the whole output; -json prints it as is.
type report struct {
	Runs      int        `json:"runs"`
	Binary    string     `json:"binary"` // the -bin path, or "go build <dir>"
	Version   string     `json:"version"`
	Go        string     `json:"go"`
	CPUs      int        `json:"cpus"`
	Started   time.Time  `json:"started"`
	Elapsed   string     `json:"elapsed"`
	LoadStart [3]float64 `json:"load_start"` // 1, 5 and 15-minute load averages
	LoadEnd   [3]float64 `json:"load_end"`
	Poll      string     `json:"poll"`
	Idle      string     `json:"idle"`
	Figures   []*figure  `json:"figures"`
	Notes     []string   `json:"notes,omitempty"`
}

// figure is one row: its samples and their summary. Failed counts runs that
// missed a deadline or errored; Errors says why.
type figure struct {
	Key     string    `json:"key"`
	Name    string    `json:"name"`
	Unit    string    `json:"unit"` // ms or MiB
	Samples []float64 `json:"samples"`
	Min     float64   `json:"min"`
	Median  float64   `json:"median"`
	Max     float64   `json:"max"`
	N       int       `json:"n"`
	Failed  int       `json:"failed"`
	Errors  []string  `json:"errors,omitempty"`
}

func (f *figure) summarize() {
	f.N = len(f.Samples)
	if f.Samples == nil {
		f.Samples = []float64{}
	}
	if f.N == 0 {
		f.Min, f.Median, f.Max = math.NaN(), math.NaN(), math.NaN()
		return
	}
	s := slices.Clone(f.Samples)
	slices.Sort(s)
	f.Min, f.Max = s[0], s[len(s)-1]
	if len(s)%2 == 1 {
		f.Median = s[len(s)/2]
	} else {
		f.Median = (s[len(s)/2-1] + s[len(s)/2]) / 2
	}
}

// MarshalJSON writes NaN (no samples) as null.
func (f *figure) MarshalJSON() ([]byte, error) {
	type plain figure
	num := func(v float64) *float64 {
		if math.IsNaN(v) {
			return nil
		}
		v = math.Round(v*100) / 100
		return &v
	}
	samples := make([]float64, len(f.Samples))
	for i, v := range f.Samples {
		samples[i] = math.Round(v*100) / 100
	}
	return json.Marshal(struct {
		*plain
		Samples []float64 `json:"samples"`
		Min     *float64  `json:"min"`
		Median  *float64  `json:"median"`
		Max     *float64  `json:"max"`
	}{(*plain)(f), samples, num(f.Min), num(f.Median), num(f.Max)})
}

func (f *figure) format(v float64) string {
	switch {
	case math.IsNaN(v):
		return "-"
	case f.Unit == "MiB":
		return fmt.Sprintf("%.1fMiB", v)
	case v < 10:
		return fmt.Sprintf("%.1fms", v)
	}
	return fmt.Sprintf("%.0fms", v)
}

func (rep *report) anyFailed() bool {
	for _, f := range rep.Figures {
		if f.Failed > 0 {
			return true
		}
	}
	return false
}

func (rep *report) print(w io.Writer) {
	fmt.Fprintf(w, "robonet %s node figures: %d runs, %s, %s, %d CPUs, took %s\n",
		rep.Version, rep.Runs, rep.Binary, rep.Go, rep.CPUs, rep.Elapsed)
	fmt.Fprintf(w, "load average: %s at start, %s at end\n\n", fmtLoad(rep.LoadStart), fmtLoad(rep.LoadEnd))
	tw := tabwriter.NewWriter(w, 0, 8, 3, ' ', 0)
	fmt.Fprintln(tw, "figure\tmin\tmedian\tmax\tn\tfailed")
	for _, f := range rep.Figures {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%d\t%d\n", f.Name, f.format(f.Min), f.format(f.Median), f.format(f.Max), f.N, f.Failed)
	}
	tw.Flush()
	// One line per distinct error, naming the figures it cost.
	var errs []string
	keys := map[string][]string{}
	for _, f := range rep.Figures {
		for _, e := range f.Errors {
			if keys[e] == nil {
				errs = append(errs, e)
			}
			if !slices.Contains(keys[e], f.Key) {
				keys[e] = append(keys[e], f.Key)
			}
		}
	}
	if len(errs) > 0 {
		fmt.Fprintln(w, "\nfailures:")
		for _, e := range errs {
			fmt.Fprintf(w, "  [%s] %s\n", strings.Join(keys[e], ", "), e)
		}
	}
	if len(rep.Notes) > 0 {
		fmt.Fprintln(w, "\nnotes:")
		for _, n := range rep.Notes {
			fmt.Fprintln(w, "  "+n)
		}
	}
}

// ---- small helpers ----

// outBuf collects a child's output (up to 1 MiB) and notes when a marker
// first appeared in it.
type outBuf struct {
	marker []byte
	marked chan struct{} // closed when the marker appeared

	mu   sync.Mutex // guards the fields below
	buf  []byte
	from int       // where the next marker search starts
	at   time.Time // when the marker appeared
}

const maxOut = 1 << 20

func newOutBuf(marker string) *outBuf {
	return &outBuf{marker: []byte(marker), marked: make(chan struct{})}
}

func (w *outBuf) Write(p []byte) (int, error) {
	now := time.Now()
	w.mu.Lock()
	defer w.mu.Unlock()
	if room := maxOut - len(w.buf); room > 0 {
		w.buf = append(w.buf, p[:min(len(p), room)]...)
	}
	if len(w.marker) > 0 && w.at.IsZero() {
		if bytes.Contains(w.buf[w.from:], w.marker) {
			w.at = now
			close(w.marked)
		} else {
			w.from = max(0, len(w.buf)-len(w.marker)+1)
		}
	}
	return len(p), nil
}

func (w *outBuf) String() string {
	w.mu.Lock()
	defer w.mu.Unlock()
	return string(w.buf)
}

func (w *outBuf) markedAt() time.Time {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.at
}

// reservePorts returns n free 127.0.0.1 addresses: listen on :0, then close.
// Another program may take one before the node binds it; that run then fails.
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

// childEnv is our environment without ROBONET_* variables, which `robonet`
// would read as flags.
func childEnv() []string {
	var env []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "ROBONET_") {
			env = append(env, kv)
		}
	}
	return env
}

// rssBytes reads VmRSS from /proc/<pid>/status.
func rssBytes(pid int) (int64, error) {
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

// loadAvg reads the 1, 5 and 15-minute load averages (zeros if unavailable).
func loadAvg() [3]float64 {
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

func fmtLoad(l [3]float64) string { return fmt.Sprintf("%.2f %.2f %.2f", l[0], l[1], l[2]) }

func sleepCtx(ctx context.Context, d time.Duration) error {
	if d <= 0 {
		return ctx.Err()
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}

func isTerminal(f *os.File) bool {
	st, err := f.Stat()
	return err == nil && st.Mode()&os.ModeCharDevice != 0
}

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }

func mib(b int64) float64 { return float64(b) / (1 << 20) }

func round(d time.Duration) time.Duration { return d.Round(time.Millisecond) }

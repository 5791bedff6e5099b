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
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"sync"
	"syscall"
	"text/tabwriter"
	"time"

	"github.com/robonet-mesh/robonet/bench/internal/proc"
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
	b := &bench{cfg: cfg, tmp: tmp, progress: io.Discard}
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
		LoadStart: proc.LoadAvg(), Poll: cfg.poll.String(), Idle: cfg.idle.String(),
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
	rep.LoadEnd = proc.LoadAvg()
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

	ps proc.Group // every child

	mu    sync.Mutex // guards notes
	notes []string
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
	cmd := proc.Command(cctx, b.bin, "version", "--json")
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
	b.ps.Close()
	if err := os.RemoveAll(b.tmp); err != nil {
		fmt.Fprintf(os.Stderr, "nodefigures: remove %s: %v\n", b.tmp, err)
	}
}

// child is one running `robonet up`.
type child struct {
	*proc.Child
	data   string
	listen string // client address host:port
	client *mesh.Client

	// Learned once the node answers.
	chevron string
	server  string
}

func (p *child) url() string { return "nats://" + p.listen }

// startNode execs `robonet up` with a fresh data dir and client address.
func (b *bench) startNode(label, data, listen string, extra ...string) (*child, error) {
	args := append([]string{"up", "--data", data, "--listen", listen, "--log-level", "warn"}, extra...)
	c, err := b.ps.Start(label, b.bin, args, upMarker)
	if err != nil {
		return nil, err
	}
	return &child{Child: c, data: data, listen: listen}, nil
}

// kill SIGKILLs p if it still runs, waits for it and closes its client.
func (b *bench) kill(p *child) {
	if p.client != nil {
		p.client.Close()
	}
	b.ps.Kill(p.Child)
}

// connect opens p's client with the operator key from p's own data dir.
func connect(ctx context.Context, p *child) error {
	c, err := mesh.Connect(ctx, mesh.Options{
		Server: p.url(), SeedFile: filepath.Join(p.data, operatorSeed),
		Name: "nodefigures", Timeout: 2 * time.Second,
	})
	if err != nil {
		return fmt.Errorf("%s: %w", p.Label, err)
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
	var live []*child
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
		if p.ReadyAt().IsZero() {
			continue // failed above
		}
		if err := sleepCtx(ctx, time.Until(p.ReadyAt().Add(b.cfg.idle))); err != nil {
			return
		}
		select {
		case <-p.Exited():
			b.fail(ctx, fmt.Errorf("%s exited while idle (%v): %s", p.Label, p.Err(), p.Tail()), figRSSSingle)
			continue
		default:
		}
		rss, err := proc.RSSBytes(p.Cmd.Process.Pid)
		if err != nil {
			b.fail(ctx, fmt.Errorf("%s: %w", p.Label, err), figRSSSingle)
			continue
		}
		b.add(figRSSSingle, proc.MiB(rss))
		b.logf("%s: idle RSS %.1f MiB after %v", p.Label, proc.MiB(rss), time.Since(p.ReadyAt()).Round(time.Second))
	}
}

// singleStart execs one single node on a fresh data dir and times it to its
// up line and to the first status answer (the query `status --json` makes,
// polled every 5 ms over a NATS connection retried as soon as the seed file
// and the port exist).
func (b *bench) singleStart(ctx context.Context, r int) (*child, error) {
	addrs, err := proc.LocalAddrs(1)
	if err != nil {
		return nil, err
	}
	p, err := b.startNode(fmt.Sprintf("single %d", r), filepath.Join(b.tmp, fmt.Sprintf("single%d", r)), addrs[0])
	if err != nil {
		return nil, err
	}
	deadline := p.Began.Add(singleReadyWait)
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
		polled <- answer{err: fmt.Errorf("%s: no status answer within %v: %v", p.Label, singleReadyWait, lastErr)}
	}()
	if err := p.WaitReady(ctx, deadline); err != nil {
		cancel()
		<-polled
		return p, err
	}
	a := <-polled
	if a.err != nil {
		return p, fmt.Errorf("%w: %s", a.err, p.Tail())
	}
	line, status := p.ReadyAt().Sub(p.Began), a.at.Sub(p.Began)
	b.addDur(figReadyLine, line)
	b.addDur(figReadyStatus, status)
	b.logf("%s: up line after %v, first status answer after %v", p.Label, round(line), round(status))
	return p, nil
}

// cliStatus times one `robonet status --json` against p, exec to exit.
func (b *bench) cliStatus(ctx context.Context, p *child) (time.Duration, error) {
	cctx, cancel := context.WithTimeout(ctx, cliWait)
	defer cancel()
	cmd := proc.Command(cctx, b.bin, "status", "--json", "--server", p.url(), "--data", p.data)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	began := time.Now()
	err := cmd.Run()
	took := time.Since(began)
	if err != nil {
		return 0, fmt.Errorf("%s: robonet status --json: %v: %s", p.Label, err, strings.TrimSpace(stderr.String()))
	}
	var st wire.Status
	if err := json.Unmarshal(stdout.Bytes(), &st); err != nil || st.Chevron == "" {
		return 0, fmt.Errorf("%s: robonet status --json printed %q (%v)", p.Label, stdout.String(), err)
	}
	return took, nil
}

// ---- figures 3 to 5: a fresh 3-node swarm per run ----

// swarm is three `robonet up` processes routed to each other.
type swarm struct {
	name   string
	procs  []*child
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

func (s *swarm) others(victim int) []*child {
	var out []*child
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
	addrs, err := proc.LocalAddrs(6)
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
		if err := p.WaitReady(ctx, deadline); err != nil {
			b.fail(ctx, err, figSwarmReady)
			return s, err
		}
		if p.ReadyAt().After(readyAt) {
			readyAt = p.ReadyAt()
		}
	}
	b.addDur(figSwarmReady, readyAt.Sub(s.procs[0].Began))
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
				return false, fmt.Errorf("%s: %w", p.Label, err)
			}
			ms, err := p.client.Nodes(ctx)
			if err != nil {
				return false, fmt.Errorf("%s: %w", p.Label, err)
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
				return false, fmt.Errorf("%s sees %d alive of %d listed", p.Label, alive, len(ms))
			case st.Replicas != 3:
				return false, fmt.Errorf("%s: buckets R%d", p.Label, st.Replicas)
			case !st.JetStreamOK:
				return false, fmt.Errorf("%s: JetStream not current", p.Label)
			case st.Leader == "":
				return false, fmt.Errorf("%s: no leader", p.Label)
			case i > 0 && st.Leader != statuses[0].Leader:
				return false, fmt.Errorf("leaders differ: %s says %s, %s says %s",
					s.procs[0].Label, statuses[0].Leader, p.Label, st.Leader)
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
			return false, fmt.Errorf("the holder %s (%s) leads it", holder.Label, l)
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
		s.name, round(readyAt.Sub(s.procs[0].Began)), round(settledAt.Sub(readyAt)), holder.chevron, holder.Label, s.stream)
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
		if p.ReadyAt().After(newest) {
			newest = p.ReadyAt()
		}
	}
	if err := sleepCtx(ctx, time.Until(newest.Add(b.cfg.idle))); err != nil {
		return
	}
	for i, p := range s.procs {
		rss, err := proc.RSSBytes(p.Cmd.Process.Pid)
		key := figRSSFollower
		if i == s.leader {
			key = figRSSLeader
		}
		if err != nil {
			b.fail(ctx, fmt.Errorf("run %d: %s: %w", r, p.Label, err), key)
			continue
		}
		b.add(key, proc.MiB(rss))
	}

	victim := s.procs[s.followers()[0]]
	victim.client.Close()
	survivors := s.others(s.followers()[0])
	killed := time.Now()
	if err := victim.Cmd.Process.Kill(); err != nil {
		b.fail(ctx, fmt.Errorf("run %d: kill %s: %w", r, victim.Label, err), figKillFirst, figKillBoth)
		return
	}
	var unlisted sync.Once
	ats, err := pollEach(ctx, survivors, killed.Add(detectWait), b.cfg.poll, func(ctx context.Context, p *child) (bool, error) {
		ms, err := p.client.Nodes(ctx)
		if err != nil {
			return false, err
		}
		for _, m := range ms {
			if m.Chevron == victim.chevron {
				if m.State == wire.StateOffline {
					return true, nil
				}
				return false, fmt.Errorf("%s sees %s %s", p.Label, victim.chevron, m.State)
			}
		}
		unlisted.Do(func() {
			b.note("run %d: after SIGKILL %s no longer lists %s (expected it offline)", r, p.Label, victim.chevron)
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
	if err := victim.Cmd.Process.Signal(syscall.SIGTERM); err != nil {
		b.fail(ctx, fmt.Errorf("run %d: SIGTERM %s: %w", r, victim.Label, err), keys...)
		return
	}
	ats, err := pollEach(ctx, survivors, termed.Add(detectWait), b.cfg.poll, func(ctx context.Context, p *child) (bool, error) {
		ms, err := p.client.Nodes(ctx)
		if err != nil {
			return false, err
		}
		for _, m := range ms {
			if m.Chevron == victim.chevron && m.State != wire.StateOffline {
				return false, fmt.Errorf("%s sees %s %s", p.Label, victim.chevron, m.State)
			}
		}
		return true, nil
	})
	b.record(ctx, r, termed, ats, err, figTermFirst, figTermBoth, "SIGTERM follower "+victim.chevron+" gone")
	t := time.NewTimer(time.Until(termed.Add(exitWait)))
	defer t.Stop()
	select {
	case <-victim.Exited():
		d := victim.ExitedAt().Sub(termed)
		if victim.Err() != nil {
			b.fail(ctx, fmt.Errorf("run %d: %s after SIGTERM: %v: %s", r, victim.Label, victim.Err(), victim.Tail()), figTermExit)
			return
		}
		if !strings.Contains(victim.Tail(), "stopped cleanly") {
			b.note("run %d: %s exited 0 after SIGTERM without saying \"stopped cleanly\"", r, victim.Label)
		}
		b.addDur(figTermExit, d)
		b.logf("run %d: %s exited %v after SIGTERM", r, victim.Label, round(d))
	case <-t.C:
		b.fail(ctx, fmt.Errorf("run %d: %s still running %v after SIGTERM", r, victim.Label, exitWait), figTermExit)
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
	seen := map[*child]string{}
	killed := time.Now()
	if err := old.Cmd.Process.Kill(); err != nil {
		b.fail(ctx, fmt.Errorf("run %d: kill %s: %w", r, old.Label, err), figFailoverFirst, figFailoverBoth)
		return
	}
	ats, err := pollEach(ctx, survivors, killed.Add(failoverWait), b.cfg.poll, func(ctx context.Context, p *child) (bool, error) {
		st, err := p.client.Status(ctx)
		if err != nil {
			return false, err
		}
		if st.Leader == "" || st.Leader == old.chevron || !live[st.Leader] {
			return false, fmt.Errorf("%s: leader %q", p.Label, st.Leader)
		}
		mu.Lock()
		seen[p] = st.Leader
		mu.Unlock()
		return true, nil
	})
	b.record(ctx, r, killed, ats, err, figFailoverFirst, figFailoverBoth, "SIGKILL leader "+old.chevron+" new leader")
	if err == nil && seen[survivors[0]] != seen[survivors[1]] {
		b.note("run %d: survivors name different new leaders: %s says %s, %s says %s", r,
			survivors[0].Label, seen[survivors[0]], survivors[1].Label, seen[survivors[1]])
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
func pollEach(ctx context.Context, ps []*child, deadline time.Time, every time.Duration,
	check func(context.Context, *child) (bool, error)) ([]time.Time, error) {
	ats := make([]time.Time, len(ps))
	errs := make([]error, len(ps))
	var wg sync.WaitGroup
	for i, p := range ps {
		wg.Go(func() {
			ats[i], errs[i] = pollUntil(ctx, deadline, every, func(ctx context.Context) (bool, error) {
				return check(ctx, p)
			})
			if errs[i] != nil {
				errs[i] = fmt.Errorf("%s: %w", p.Label, errs[i])
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
	fmt.Fprintf(w, "load average: %s at start, %s at end\n\n", proc.FormatLoad(rep.LoadStart), proc.FormatLoad(rep.LoadEnd))
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

func round(d time.Duration) time.Duration { return d.Round(time.Millisecond) }

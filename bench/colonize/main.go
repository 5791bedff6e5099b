// Command colonize prints the figures of `robonet colonize`: a bare SSH host
// to a live node, a rerun on a colonized host (and the bytes it uploaded),
// uncolonize, a bare host at 100 ms RTT, and a fleet of -hosts hosts in one
// run (total time, hosts per minute, per-host step times, and how much of
// the total the one-at-a-time admission of new nodes is).
//
// It drives the real binary: a 2-node controller swarm runs as processes on
// this host (routes on every address, so targets reach it through their
// network's gateway), and every target is a fresh Docker container of the
// e2e image (robonet-e2e-target:latest, built by e2e/target/build when
// missing) running OpenSSH, on the e2e network. The CLI runs as
// `robonet colonize --json`; a figure is the CLI's wall time, exec to exit,
// and the step times come from its JSON events.
//
// It owns measuring and printing; it asserts nothing about the figures (they
// depend on the machine and its load). A run that fails is counted as
// failed and the program goes on. Everything it starts is removed at the
// end and on Ctrl-C: controller processes (also by Pdeathsig), containers
// (labelled with this program's pid, so a crashed run's leftovers are
// removed by the next run) and the temp dir.
//
// Usage, from inside the module (docker needed):
//
//	go run ./bench/colonize [-runs 3] [-hosts 20] [-bin PATH] [-json] [-v]
//
// See bench/README.md for what each figure measures.
package main

import (
	"bufio"
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"debug/elf"
	"encoding/json"
	"encoding/pem"
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

	"golang.org/x/crypto/ssh"

	"github.com/robonet-mesh/robonet/bench/internal/proc"
	"github.com/robonet-mesh/robonet/trust"
	"github.com/robonet-mesh/robonet/wire"
)

// The targets: the e2e suite's image and network (e2e/target_test.go), and
// this program's own container label, whose value is its pid.
const (
	targetImage   = "robonet-e2e-target:latest"
	targetNetwork = "robonet-e2e"
	targetSubnet  = "172.30.57.0/24"
	targetGateway = "172.30.57.1"
	targetLabel   = "robonet-bench.colonize"
	swarmName     = "colbench"
)

// Deadlines: every wait has one, so a run that misses it fails instead of hanging.
const (
	controllerWait = 60 * time.Second // exec to 2 members alive
	bannerWait     = 60 * time.Second // docker run to the SSH banner
	oneHostWait    = 3 * time.Minute  // one colonize or uncolonize of one host
	fleetWait      = 15 * time.Minute // colonize of -hosts hosts
	cliWait        = 15 * time.Second // one `robonet nodes --json`
)

// fleetParallel is --parallel of the fleet run (the CLI's default), and
// fleetJoinWait its --wait: a host not live 30 s after its service started
// has missed the 100-hosts-a-minute target anyway, and with the admission
// serialized the CLI's 60 s default lets a few such hosts hold the run for
// minutes.
const (
	fleetParallel = 32
	fleetJoinWait = 30 * time.Second
)

// Figure keys, in table order.
const (
	figBareLive  = "bare_to_live"
	figRerun     = "rerun"
	figRerunSent = "rerun_bytes"
	figUncol     = "uncolonize"
	figRTTConn   = "rtt_tcp_connect"
	figRTTLive   = "rtt_bare_to_live"
)

var figureDefs = []struct{ key, name, unit, target string }{
	{figBareLive, "bare host -> live node", "s", "≤ 10 s"},
	{figRerun, "rerun on a colonized host", "s", "≤ 2 s"},
	{figRerunSent, "rerun: bytes uploaded", "B", "0"},
	{figUncol, "uncolonize", "s", "≤ 3 s"},
	{figRTTConn, "100 ms RTT: connect to SSH banner", "ms", "≈ 100 ms netem, ≈ 50 ms proxy (one way)"},
	{figRTTLive, "100 ms RTT: bare host -> live node", "s", "≤ 15 s"},
}

// fleetSteps are the steps whose per-host times the fleet table shows.
var fleetSteps = []string{"upload", "service", "wait for join"}

func main() { os.Exit(run()) }

type config struct {
	runs    int
	hosts   int
	bin     string
	json    bool
	verbose bool
}

func run() int {
	var cfg config
	flag.IntVar(&cfg.runs, "runs", 3, "fresh containers per single-host figure")
	flag.IntVar(&cfg.hosts, "hosts", 20, "containers colonized in one run for the fleet figures (0: skip)")
	flag.StringVar(&cfg.bin, "bin", "", "static robonet binary, for the CLI, the controller and the targets (default: CGO_ENABLED=0 go build ./cmd/robonet into a temp dir)")
	flag.BoolVar(&cfg.json, "json", false, "print JSON instead of a table")
	flag.BoolVar(&cfg.verbose, "v", false, "print progress on stderr (default: only when stderr is a terminal)")
	flag.Usage = func() {
		fmt.Fprintf(flag.CommandLine.Output(), "usage: colonize [flags]\n\n"+
			"Prints `robonet colonize` figures against Docker target containers and a 2-node\n"+
			"controller swarm on this host.\n\n")
		flag.PrintDefaults()
	}
	flag.Parse()
	if flag.NArg() > 0 {
		fmt.Fprintf(os.Stderr, "colonize: unexpected argument %q\n", flag.Arg(0))
		return 2
	}
	if cfg.runs < 1 || cfg.hosts < 0 {
		fmt.Fprintln(os.Stderr, "colonize: -runs must be at least 1, -hosts not negative")
		return 2
	}
	if err := checkDocker(); err != nil {
		fmt.Fprintln(os.Stderr, "colonize: docker is needed for the target hosts:", err)
		return 1
	}

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	removeStale()
	tmp, err := os.MkdirTemp("", "colonizebench-")
	if err != nil {
		fmt.Fprintln(os.Stderr, "colonize:", err)
		return 1
	}
	b := &bench{cfg: cfg, tmp: tmp, progress: io.Discard, figs: map[string]*figure{}}
	if cfg.verbose || isTerminal(os.Stderr) {
		b.progress = os.Stderr
	}
	defer b.cleanup()
	if err := b.prepare(ctx); err != nil {
		fmt.Fprintln(os.Stderr, "colonize:", err)
		return 1
	}

	rep := report{Runs: cfg.runs, Binary: b.binFrom, Go: runtime.Version(), CPUs: runtime.NumCPU(),
		Started: time.Now().UTC().Truncate(time.Second), LoadStart: proc.LoadAvg()}
	for _, d := range figureDefs {
		f := &figure{Key: d.key, Name: d.name, Unit: d.unit, Target: d.target}
		b.figs[d.key] = f
		rep.Figures = append(rep.Figures, f)
	}
	began := time.Now()
	b.measureSingle(ctx)
	if cfg.hosts > 0 && ctx.Err() == nil {
		rep.Fleet = b.measureFleet(ctx)
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
			fmt.Fprintln(os.Stderr, "colonize:", err)
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

// bench holds what every measurement shares.
type bench struct {
	cfg      config
	tmp      string
	bin      string // static robonet: the CLI, the controller and what targets get
	binFrom  string
	keyFile  string // client private key, authorized on every target
	keyLine  string // its authorized_keys line
	secret   string // the controller swarm's secret
	progress io.Writer
	figs     map[string]*figure
	seq      int // targets and controllers started, for unique names

	ps proc.Group // the controllers' nodes

	mu    sync.Mutex // guards notes
	notes []string
}

func (b *bench) logf(format string, a ...any) {
	fmt.Fprintf(b.progress, "colonize: "+format+"\n", a...)
}

func (b *bench) note(format string, a ...any) {
	msg := fmt.Sprintf(format, a...)
	b.mu.Lock()
	b.notes = append(b.notes, msg)
	b.mu.Unlock()
	b.logf("NOTE: %s", msg)
}

func (b *bench) add(key string, v float64) { b.figs[key].Samples = append(b.figs[key].Samples, v) }

// fail counts a failed run of each key, unless we are being interrupted.
func (b *bench) fail(ctx context.Context, err error, keys ...string) {
	if ctx.Err() != nil {
		return
	}
	for _, k := range keys {
		b.figs[k].Failed++
		b.figs[k].Errors = append(b.figs[k].Errors, err.Error())
	}
	b.logf("FAILED %s: %v", strings.Join(keys, ", "), err)
}

func (b *bench) next() int { b.seq++; return b.seq }

// ---- setup and cleanup ----

func checkDocker() error {
	if _, err := exec.LookPath("docker"); err != nil {
		return errors.New("`docker` not found in PATH")
	}
	out, err := exec.Command("docker", "info", "--format", "{{.ServerVersion}}").CombinedOutput()
	if err != nil {
		return fmt.Errorf("docker engine not reachable: %v: %s", err, bytes.TrimSpace(out))
	}
	return nil
}

// removeStale removes the containers of earlier runs of this program whose
// process is gone (it was killed before its cleanup).
func removeStale() {
	out, err := exec.Command("docker", "ps", "-a", "--filter", "label="+targetLabel,
		"--format", `{{.ID}} {{.Label "`+targetLabel+`"}}`).Output()
	if err != nil {
		return
	}
	self, _ := os.ReadFile("/proc/self/comm")
	for _, line := range strings.Split(string(out), "\n") {
		f := strings.Fields(line)
		if len(f) != 2 {
			continue
		}
		if comm, err := os.ReadFile("/proc/" + f[1] + "/comm"); err == nil && bytes.Equal(comm, self) {
			continue // that run is still going
		}
		_ = exec.Command("docker", "rm", "-f", "-v", f[0]).Run()
		fmt.Fprintf(os.Stderr, "colonize: removed stale container %s (run %s)\n", f[0], f[1])
	}
}

// prepare makes the binary, the image, the network, the client key and the
// swarm secret.
func (b *bench) prepare(ctx context.Context) error {
	root, err := moduleRoot(ctx)
	if err != nil && (b.cfg.bin == "" || !imagePresent()) {
		return err
	}
	if err := b.prepareBinary(ctx, root); err != nil {
		return err
	}
	if !imagePresent() {
		b.logf("image %s missing: running e2e/target/build (needs root)", targetImage)
		cmd := exec.CommandContext(ctx, "bash", filepath.Join(root, "e2e", "target", "build"))
		cmd.Stdout, cmd.Stderr = b.progress, b.progress
		if err := cmd.Run(); err != nil {
			return fmt.Errorf("e2e/target/build: %w", err)
		}
	}
	if err := ensureNetwork(); err != nil {
		return err
	}
	if b.keyFile, b.keyLine, err = makeClientKey(b.tmp); err != nil {
		return err
	}
	b.secret, err = trust.GenerateSecret()
	return err
}

func moduleRoot(ctx context.Context) (string, error) {
	out, err := exec.CommandContext(ctx, "go", "env", "GOMOD").Output()
	gomod := strings.TrimSpace(string(out))
	if err != nil || gomod == "" || gomod == os.DevNull {
		return "", fmt.Errorf("not inside a Go module (go env GOMOD: %q, %v): run from the robonet module", gomod, err)
	}
	return filepath.Dir(gomod), nil
}

func imagePresent() bool { return exec.Command("docker", "image", "inspect", targetImage).Run() == nil }

// prepareBinary builds ./cmd/robonet statically unless -bin names a binary,
// which must be static too: the targets have no Go toolchain's C library.
func (b *bench) prepareBinary(ctx context.Context, root string) error {
	if b.cfg.bin != "" {
		abs, err := filepath.Abs(b.cfg.bin)
		if err != nil {
			return err
		}
		f, err := elf.Open(abs)
		if err != nil {
			return fmt.Errorf("-bin: %w", err)
		}
		defer f.Close()
		for _, p := range f.Progs {
			if p.Type == elf.PT_INTERP {
				return fmt.Errorf("-bin %s is dynamically linked: the targets need a static build (CGO_ENABLED=0 go build ./cmd/robonet)", abs)
			}
		}
		b.bin, b.binFrom = abs, abs
		return nil
	}
	b.bin = filepath.Join(b.tmp, "robonet")
	b.binFrom = "CGO_ENABLED=0 go build " + filepath.Join(root, "cmd", "robonet")
	began := time.Now()
	b.logf("building %s/cmd/robonet (static)", root)
	cmd := exec.CommandContext(ctx, "go", "build", "-o", b.bin, "./cmd/robonet")
	cmd.Dir = root
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("go build ./cmd/robonet: %v\n%s", err, out)
	}
	b.logf("built in %v", round(time.Since(began)))
	return nil
}

// ensureNetwork makes the e2e suite's target network unless it exists, the
// way the suite does: internal, so targets reach this host's gateway address
// and nothing beyond it.
func ensureNetwork() error {
	if exec.Command("docker", "network", "inspect", targetNetwork).Run() == nil {
		return nil
	}
	out, err := exec.Command("docker", "network", "create", "--driver", "bridge", "--internal",
		"--subnet", targetSubnet, "--gateway", targetGateway,
		"-o", "com.docker.network.bridge.name=rne2e-targets", targetNetwork).CombinedOutput()
	if err != nil && exec.Command("docker", "network", "inspect", targetNetwork).Run() != nil {
		return fmt.Errorf("docker network create %s: %v: %s", targetNetwork, err, bytes.TrimSpace(out))
	}
	return nil
}

// makeClientKey writes an ed25519 key into dir and returns its file and its
// authorized_keys line.
func makeClientKey(dir string) (string, string, error) {
	pub, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		return "", "", err
	}
	block, err := ssh.MarshalPrivateKey(priv, "robonet-bench")
	if err != nil {
		return "", "", err
	}
	sshPub, err := ssh.NewPublicKey(pub)
	if err != nil {
		return "", "", err
	}
	file := filepath.Join(dir, "id_ed25519")
	line := strings.TrimSpace(string(ssh.MarshalAuthorizedKey(sshPub))) + " robonet-bench"
	return file, line, os.WriteFile(file, pem.EncodeToMemory(block), 0o600)
}

// cleanup stops every controller, removes this run's containers and the
// temp dir. It runs on every way out of run, Ctrl-C included.
func (b *bench) cleanup() {
	b.ps.Close()
	out, _ := exec.Command("docker", "ps", "-aq", "--filter", fmt.Sprintf("label=%s=%d", targetLabel, os.Getpid())).Output()
	if ids := strings.Fields(string(out)); len(ids) > 0 {
		b.logf("removing %d containers", len(ids))
		if out, err := exec.Command("docker", append([]string{"rm", "-f", "-v"}, ids...)...).CombinedOutput(); err != nil {
			fmt.Fprintf(os.Stderr, "colonize: docker rm: %v: %s\n", err, bytes.TrimSpace(out))
		}
	}
	if err := os.RemoveAll(b.tmp); err != nil {
		fmt.Fprintf(os.Stderr, "colonize: remove %s: %v\n", b.tmp, err)
	}
}

// ---- the controller swarm ----

// controller is a 2-node swarm on this host, as in e2e/colonize_test.go:
// routes on 0.0.0.0 so targets reach node 0 at the gateway address; two
// nodes, because a clustered swarm needs two members to write its state.
type controller struct {
	dir    string
	server string // node 0's client URL: the CLI's --server
	data0  string // node 0's data dir: the CLI's --data (the founder's operator key, an admin)
	nodes  []*proc.Child
	route0 int // node 0's route port
}

func (b *bench) startController(ctx context.Context) (*controller, error) {
	c := &controller{dir: filepath.Join(b.tmp, fmt.Sprintf("ctl%d", b.next()))}
	ports, err := proc.Ports("0.0.0.0", 4)
	if err != nil {
		return nil, err
	}
	client, route := ports[:2], ports[2:]
	c.route0 = route[0]
	for i := range 2 {
		data := filepath.Join(c.dir, fmt.Sprintf("n%d", i))
		args := []string{"up", "--data", data, "--name", fmt.Sprintf("ctl%d", i),
			"--listen", fmt.Sprintf("127.0.0.1:%d", client[i]), "--cluster", fmt.Sprintf("0.0.0.0:%d", route[i]),
			"--join", fmt.Sprintf("127.0.0.1:%d", route[1-i]), "--swarm", swarmName, "--token", b.secret,
			"--log-level", "warn"}
		if i == 0 {
			args = append(args, "--founder")
			c.data0 = data
			c.server = fmt.Sprintf("nats://127.0.0.1:%d", client[0])
		}
		if err := os.MkdirAll(c.dir, 0o700); err != nil {
			return c, err
		}
		nd, err := b.ps.Start(fmt.Sprintf("%s/n%d", filepath.Base(c.dir), i), b.bin, args, "")
		if err != nil {
			return c, err
		}
		c.nodes = append(c.nodes, nd)
	}
	began := time.Now()
	for {
		live, err := c.alive(ctx, b)
		if live == 2 {
			b.logf("controller swarm of 2 up in %v", round(time.Since(began)))
			return c, nil
		}
		if time.Since(began) > controllerWait || ctx.Err() != nil {
			return c, fmt.Errorf("controller swarm: %d of 2 alive after %v (%v); node 0 log: %s",
				live, round(time.Since(began)), err, c.nodes[0].Tail())
		}
		_ = sleepCtx(ctx, 250*time.Millisecond)
	}
}

// alive counts the members `robonet nodes` lists alive.
func (c *controller) alive(ctx context.Context, b *bench) (int, error) {
	cctx, cancel := context.WithTimeout(ctx, cliWait)
	defer cancel()
	cmd := b.cli(cctx, "--server", c.server, "--data", c.data0, "nodes", "--json")
	out, err := cmd.Output()
	if err != nil {
		return 0, err
	}
	var ms []wire.Member
	if err := json.Unmarshal(out, &ms); err != nil {
		return 0, err
	}
	n := 0
	for _, m := range ms {
		if m.State == wire.StateAlive {
			n++
		}
	}
	return n, nil
}

// stopController SIGKILLs the controller's nodes and waits for them.
func (b *bench) stopController(c *controller) {
	for _, nd := range c.nodes {
		b.ps.Kill(nd)
	}
}

// ---- target containers ----

type target struct{ name, ip string }

// startTarget runs a fresh target container (OpenSSH, root, our client key
// authorized) and waits for its SSH banner. netAdmin lets it shape its own
// traffic with tc.
func (b *bench) startTarget(ctx context.Context, name string, netAdmin bool) (*target, error) {
	tg := &target{name: name}
	args := []string{"run", "-d", "--init", "--name", name, "--hostname", name,
		"--network", targetNetwork, "--label", fmt.Sprintf("%s=%d", targetLabel, os.Getpid()),
		"-e", "E2E_SSHD=openssh", "-e", "E2E_HOSTKEYS=ed25519 ecdsa rsa", "-e", "E2E_AUTHORIZED=" + b.keyLine}
	if netAdmin {
		args = append(args, "--cap-add", "NET_ADMIN")
	}
	args = append(args, targetImage)
	if out, err := exec.CommandContext(ctx, "docker", args...).CombinedOutput(); err != nil {
		return nil, fmt.Errorf("docker run %s: %v: %s", name, err, bytes.TrimSpace(out))
	}
	out, err := exec.CommandContext(ctx, "docker", "inspect", "--format",
		`{{(index .NetworkSettings.Networks "`+targetNetwork+`").IPAddress}}`, name).Output()
	tg.ip = strings.TrimSpace(string(out))
	if err != nil || net.ParseIP(tg.ip) == nil {
		return nil, fmt.Errorf("docker inspect %s: no address on %s: %v %q", name, targetNetwork, err, out)
	}
	deadline := time.Now().Add(bannerWait)
	var last error
	for lastCheck := time.Now(); ; {
		banner, err := readBanner(net.JoinHostPort(tg.ip, "22"))
		if err == nil && strings.HasPrefix(banner, "SSH-") {
			return tg, nil
		}
		last = err
		if time.Since(lastCheck) > time.Second {
			lastCheck = time.Now()
			out, _ := exec.Command("docker", "inspect", "--format", "{{.State.Running}}", name).Output()
			if strings.TrimSpace(string(out)) != "true" {
				logs, _ := exec.Command("docker", "logs", "--tail", "5", name).CombinedOutput()
				return nil, fmt.Errorf("%s stopped before its SSH server answered (%v): %s", name, last, bytes.TrimSpace(logs))
			}
		}
		if time.Now().After(deadline) {
			return nil, fmt.Errorf("%s: no SSH banner within %v: %v", name, bannerWait, last)
		}
		if err := sleepCtx(ctx, 20*time.Millisecond); err != nil {
			return nil, err
		}
	}
}

func readBanner(addr string) (string, error) {
	c, err := net.DialTimeout("tcp", addr, time.Second)
	if err != nil {
		return "", err
	}
	defer c.Close()
	_ = c.SetReadDeadline(time.Now().Add(2 * time.Second))
	line, err := bufio.NewReader(c).ReadString('\n')
	return strings.TrimSpace(line), err
}

func removeTargets(ts ...*target) {
	var names []string
	for _, t := range ts {
		if t != nil {
			names = append(names, t.name)
		}
	}
	if len(names) > 0 {
		_ = exec.Command("docker", append([]string{"rm", "-f", "-v"}, names...)...).Run()
	}
}

func (t *target) exec(ctx context.Context, script string) (string, error) {
	out, err := exec.CommandContext(ctx, "docker", "exec", t.name, "sh", "-c", script).CombinedOutput()
	if err != nil {
		return string(out), fmt.Errorf("%s: %q: %v: %s", t.name, script, err, bytes.TrimSpace(out))
	}
	return string(out), nil
}

// ---- running the CLI ----

// event is one line of `colonize --json`.
type event struct {
	Time   time.Time `json:"time"`
	Host   string    `json:"host"`
	Step   string    `json:"step"`
	Status string    `json:"status"`
	TookMs float64   `json:"took_ms"`
	Detail string    `json:"detail"`
	Error  string    `json:"error"`
	Bytes  int64     `json:"bytes"`
}

// colRun is one CLI run: its events, wall time (exec to exit) and exit code.
type colRun struct {
	events []event
	took   time.Duration
	code   int
	stderr string
}

// done is the host's final event.
func (r colRun) done(host string) (event, bool) {
	for _, e := range slices.Backward(r.events) {
		if e.Host == host && e.Step == "done" {
			return e, true
		}
	}
	return event{}, false
}

// problem says why the run did not end ok for every host, or nil.
func (r colRun) problem() error {
	var bad []string
	for _, e := range r.events {
		if e.Status == "failed" || e.Status == "unreachable" {
			if e.Step != "done" { // done repeats the failed step's error
				bad = append(bad, fmt.Sprintf("%s %s %s: %s", e.Host, e.Step, e.Status, oneLine(e.Error)))
			}
		}
	}
	if r.code != 0 || len(bad) > 0 {
		if len(bad) > 3 {
			bad = append(bad[:3], fmt.Sprintf("and %d more", len(bad)-3))
		}
		return fmt.Errorf("exit %d: %s; stderr: %s", r.code, strings.Join(bad, "; "), firstLine(r.stderr))
	}
	return nil
}

// cli is a command running our robonet CLI with args.
func (b *bench) cli(ctx context.Context, args ...string) *exec.Cmd {
	cmd := proc.Command(ctx, b.bin, args...)
	// HOME and no agent: colonize reads no ~/.ssh of the person running us.
	cmd.Env = append(cmd.Env, "HOME="+b.tmp, "SSH_AUTH_SOCK=")
	return cmd
}

// colonize runs `robonet <verb> --json args...` against c and collects its events.
func (b *bench) colonize(ctx context.Context, c *controller, timeout time.Duration, verb string, args ...string) (colRun, error) {
	cctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	all := append([]string{"--server", c.server, "--data", c.data0, verb, "--json"}, args...)
	cmd := b.cli(cctx, all...)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	cmd.WaitDelay = 5 * time.Second
	began := time.Now()
	err := cmd.Run()
	r := colRun{took: time.Since(began), stderr: errb.String()}
	var ee *exec.ExitError
	switch {
	case cctx.Err() != nil:
		return r, fmt.Errorf("%s: not done after %v", verb, timeout)
	case errors.As(err, &ee):
		r.code = ee.ExitCode()
	case err != nil:
		return r, fmt.Errorf("%s: %w", verb, err)
	}
	sc := bufio.NewScanner(&out)
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		var e event
		if err := json.Unmarshal(sc.Bytes(), &e); err != nil {
			return r, fmt.Errorf("%s --json printed a line that is not an event: %q", verb, sc.Text())
		}
		r.events = append(r.events, e)
	}
	return r, nil
}

// sshArgs are the flags that reach target t with our key and a known_hosts
// file of its own.
func (b *bench) sshArgs(t *target) []string {
	return []string{"root@" + t.ip, "--key", b.keyFile, "--ssh-config", "none",
		"--known-hosts", filepath.Join(b.tmp, t.name+".known_hosts")}
}

// ---- figures 1 to 4: one host at a time ----

func (b *bench) measureSingle(ctx context.Context) {
	all := []string{figBareLive, figRerun, figRerunSent, figUncol, figRTTConn, figRTTLive}
	c, err := b.startController(ctx)
	if c != nil {
		defer b.stopController(c)
	}
	if err != nil {
		b.fail(ctx, err, all...)
		return
	}
	for r := 1; r <= b.cfg.runs && ctx.Err() == nil; r++ {
		b.lifeOfOneHost(ctx, c, r)
	}
	netem := true
	for r := 1; r <= b.cfg.runs && netem && ctx.Err() == nil; r++ {
		netem = b.farHost(ctx, c, r)
	}
}

// lifeOfOneHost: a fresh container colonized, colonized again, uncolonized.
func (b *bench) lifeOfOneHost(ctx context.Context, c *controller, r int) {
	tg, err := b.startTarget(ctx, fmt.Sprintf("rnbench-%d-h%d", os.Getpid(), b.next()), false)
	defer removeTargets(tg)
	if err != nil {
		b.fail(ctx, fmt.Errorf("run %d: %w", r, err), figBareLive, figRerun, figRerunSent, figUncol)
		return
	}
	args := append(b.sshArgs(tg), "--binary", b.bin)
	first, err := b.colonize(ctx, c, oneHostWait, "colonize", append(args, "--accept-new")...)
	if err == nil {
		err = first.problem()
	}
	if err != nil {
		b.fail(ctx, fmt.Errorf("run %d: colonize %s: %w", r, tg.ip, err), figBareLive, figRerun, figRerunSent, figUncol)
		return
	}
	b.add(figBareLive, first.took.Seconds())

	again, err := b.colonize(ctx, c, oneHostWait, "colonize", args...)
	if err == nil {
		err = again.problem()
	}
	if err != nil {
		b.fail(ctx, fmt.Errorf("run %d: rerun %s: %w", r, tg.ip, err), figRerun, figRerunSent)
	} else {
		done, _ := again.done("root@" + tg.ip)
		b.add(figRerun, again.took.Seconds())
		b.add(figRerunSent, float64(done.Bytes))
		if done.Status != "ok" {
			b.note("run %d: the rerun on %s ended %q, want ok (nothing changed)", r, tg.ip, done.Status)
		}
	}

	un, err := b.colonize(ctx, c, oneHostWait, "uncolonize", b.sshArgs(tg)...)
	if err == nil {
		err = un.problem()
	}
	if err != nil {
		b.fail(ctx, fmt.Errorf("run %d: uncolonize %s: %w", r, tg.ip, err), figUncol)
		return
	}
	b.add(figUncol, un.took.Seconds())
	b.logf("run %d: bare->live %v, rerun %v, uncolonize %v", r, round(first.took), round(again.took), round(un.took))
}

// farHost: a fresh container that delays its own egress by 100 ms with
// netem (so every round trip to it takes 100 ms more), colonized. It
// returns false when netem is not available here: no later run can do better.
func (b *bench) farHost(ctx context.Context, c *controller, r int) bool {
	keys := []string{figRTTConn, figRTTLive}
	tg, err := b.startTarget(ctx, fmt.Sprintf("rnbench-%d-h%d", os.Getpid(), b.next()), true)
	defer removeTargets(tg)
	if err != nil {
		b.fail(ctx, fmt.Errorf("run %d: %w", r, err), keys...)
		return true
	}
	sshAddr := net.JoinHostPort(tg.ip, "22")
	args := append(b.sshArgs(tg), "--binary", b.bin, "--accept-new")
	if _, err := tg.exec(ctx, "tc qdisc add dev eth0 root netem delay 100ms"); err != nil {
		// No netem in this kernel: delay in user space instead, with a
		// proxy adding 50 ms each way on the SSH connection and on the
		// route the new node first dials (--join). Routes gossiped later
		// go direct, so the join itself is delayed less than on a real
		// far link.
		if r == 1 {
			b.note("100 ms RTT: the kernel has no netem (`tc qdisc add dev eth0 root netem delay 100ms`: %v); "+
				"the delay comes from user-space proxies (50 ms each way) on SSH and on the --join route; "+
				"gossiped routes are not delayed", oneLine(err.Error()))
		}
		sshProxy, err := startDelayProxy("127.0.0.1:0", sshAddr, 50*time.Millisecond)
		if err != nil {
			b.fail(ctx, fmt.Errorf("run %d: ssh proxy: %w", r, err), keys...)
			return true
		}
		defer sshProxy.Close()
		routeProxy, err := startDelayProxy(net.JoinHostPort(targetGateway, "0"), fmt.Sprintf("127.0.0.1:%d", c.route0), 50*time.Millisecond)
		if err != nil {
			b.fail(ctx, fmt.Errorf("run %d: route proxy: %w", r, err), keys...)
			return true
		}
		defer routeProxy.Close()
		sshAddr = sshProxy.Addr().String()
		args = append([]string{"root@" + sshAddr}, args[1:]...)
		args = append(args, "--join", routeProxy.Addr().String())
	}
	// The TCP handshake plus the SSH banner is one round trip: proof that
	// the delay is in place.
	began := time.Now()
	if _, err := readBanner(sshAddr); err != nil {
		b.fail(ctx, fmt.Errorf("run %d: banner of %s: %w", r, sshAddr, err), keys...)
		return true
	}
	b.add(figRTTConn, float64(time.Since(began))/float64(time.Millisecond))

	first, err := b.colonize(ctx, c, oneHostWait, "colonize", args...)
	if err == nil {
		err = first.problem()
	}
	if err != nil {
		b.fail(ctx, fmt.Errorf("run %d: colonize %s at 100 ms RTT: %w", r, tg.ip, err), figRTTLive)
		return true
	}
	b.add(figRTTLive, first.took.Seconds())
	var steps []string
	for _, e := range first.events {
		if e.Status != "running" {
			steps = append(steps, fmt.Sprintf("%s %.0fms", e.Step, e.TookMs))
		}
	}
	b.logf("run %d: bare->live at 100 ms RTT %v: %s", r, round(first.took), strings.Join(steps, ", "))
	// Revoked, so the swarm does not keep a dead member once the container goes.
	if un, err := b.colonize(ctx, c, oneHostWait, "uncolonize", append([]string{"root@" + sshAddr}, b.sshArgs(tg)[1:]...)...); err != nil || un.problem() != nil {
		b.note("run %d: uncolonize of the 100 ms RTT host %s: %v %v", r, tg.ip, err, un.problem())
	}
	return true
}

// ---- figure 5: a fleet in one run ----

// fleet is the result of colonizing -hosts fresh containers in one run.
type fleet struct {
	Hosts     int        `json:"hosts"`
	Parallel  int        `json:"parallel"`
	JoinWait  string     `json:"join_wait"`          // --wait
	Started   string     `json:"containers_started"` // docker run of all to every banner
	OK        int        `json:"ok"`
	Failed    int        `json:"failed"`
	TotalS    float64    `json:"total_s"` // CLI exec to exit
	PerMinute float64    `json:"hosts_per_minute"`
	Steps     []stepStat `json:"steps"`
	// The one-at-a-time admission: service and wait for join of one host
	// never overlap another's, so their sums are wall time.
	WaitSumS    float64  `json:"wait_for_join_sum_s"`
	ServiceSumS float64  `json:"service_sum_s"`
	Error       string   `json:"error,omitempty"`
	Failures    []string `json:"failures,omitempty"`
}

// stepStat is one step's per-host times, in seconds.
type stepStat struct {
	Step string  `json:"step"`
	N    int     `json:"n"`
	P50  float64 `json:"p50_s"`
	P95  float64 `json:"p95_s"`
	Max  float64 `json:"max_s"`
	Sum  float64 `json:"sum_s"`
}

func (b *bench) measureFleet(ctx context.Context) *fleet {
	fl := &fleet{Hosts: b.cfg.hosts, Parallel: fleetParallel, JoinWait: fleetJoinWait.String()}
	failed := func(err error) *fleet {
		if ctx.Err() == nil {
			fl.Error = err.Error()
			b.logf("FAILED fleet: %v", err)
		}
		return fl
	}
	// A swarm of its own: the single-host runs leave nothing in it.
	c, err := b.startController(ctx)
	if c != nil {
		defer b.stopController(c)
	}
	if err != nil {
		return failed(err)
	}
	b.logf("starting %d target containers", fl.Hosts)
	began := time.Now()
	tgs := make([]*target, fl.Hosts)
	errs := make([]error, fl.Hosts)
	sem := make(chan struct{}, 4) // docker run is mostly dockerd's CPU; more at once only queue
	var wg sync.WaitGroup
	for i := range tgs {
		name := fmt.Sprintf("rnbench-%d-f%d", os.Getpid(), i)
		wg.Go(func() {
			sem <- struct{}{}
			defer func() { <-sem }()
			tgs[i], errs[i] = b.startTarget(ctx, name, false)
		})
	}
	wg.Wait()
	defer removeTargets(tgs...)
	if err := errors.Join(errs...); err != nil {
		return failed(err)
	}
	fl.Started = round(time.Since(began)).String()
	b.logf("%d containers up in %s", fl.Hosts, fl.Started)

	var hosts strings.Builder
	for _, t := range tgs {
		fmt.Fprintf(&hosts, "root@%s\n", t.ip)
	}
	file := filepath.Join(b.tmp, "hosts")
	if err := os.WriteFile(file, []byte(hosts.String()), 0o600); err != nil {
		return failed(err)
	}
	run, err := b.colonize(ctx, c, fleetWait, "colonize", "--hosts", file, "--parallel", strconv.Itoa(fl.Parallel),
		"--key", b.keyFile, "--ssh-config", "none", "--known-hosts", filepath.Join(b.tmp, "fleet.known_hosts"),
		"--accept-new", "--binary", b.bin, "--wait", fleetJoinWait.String())
	if err != nil {
		return failed(err)
	}
	fl.TotalS = run.took.Seconds()
	for _, t := range tgs {
		done, ok := run.done("root@" + t.ip)
		if ok && (done.Status == "ok" || done.Status == "changed") {
			fl.OK++
		} else {
			fl.Failed++
		}
	}
	fl.PerMinute = float64(fl.OK) / run.took.Minutes()
	if err := run.problem(); err != nil {
		fl.Failures = append(fl.Failures, err.Error())
	}
	times := map[string][]float64{}
	for _, e := range run.events {
		if e.Status != "running" {
			times[e.Step] = append(times[e.Step], e.TookMs/1000)
		}
	}
	for _, s := range append(slices.Clone(fleetSteps), "done") {
		fl.Steps = append(fl.Steps, newStepStat(s, times[s]))
	}
	fl.WaitSumS = sum(times["wait for join"])
	fl.ServiceSumS = sum(times["service"])
	b.logf("fleet: %d hosts in %v, %d failed", fl.Hosts, round(run.took), fl.Failed)
	return fl
}

func newStepStat(step string, v []float64) stepStat {
	s := stepStat{Step: step, N: len(v), Sum: sum(v)}
	if len(v) == 0 {
		s.P50, s.P95, s.Max = math.NaN(), math.NaN(), math.NaN()
		return s
	}
	v = slices.Clone(v)
	slices.Sort(v)
	s.P50, s.P95, s.Max = rank(v, 0.50), rank(v, 0.95), v[len(v)-1]
	return s
}

// rank is the nearest-rank percentile of sorted v.
func rank(v []float64, p float64) float64 {
	i := int(math.Ceil(p*float64(len(v)))) - 1
	return v[max(0, min(i, len(v)-1))]
}

func sum(v []float64) float64 {
	var s float64
	for _, x := range v {
		s += x
	}
	return s
}

// ---- results ----

type report struct {
	Runs      int        `json:"runs"`
	Binary    string     `json:"binary"`
	Go        string     `json:"go"`
	CPUs      int        `json:"cpus"`
	Started   time.Time  `json:"started"`
	Elapsed   string     `json:"elapsed"`
	LoadStart [3]float64 `json:"load_start"`
	LoadEnd   [3]float64 `json:"load_end"`
	Figures   []*figure  `json:"figures"`
	Fleet     *fleet     `json:"fleet,omitempty"`
	Notes     []string   `json:"notes,omitempty"`
}

// figure is one row: its samples and their summary. Failed counts runs that
// failed; Errors says why. Unavailable says why it could not be measured.
type figure struct {
	Key         string    `json:"key"`
	Name        string    `json:"name"`
	Unit        string    `json:"unit"` // s, ms or B
	Target      string    `json:"target"`
	Samples     []float64 `json:"samples"`
	Min         float64   `json:"-"`
	Median      float64   `json:"-"`
	Max         float64   `json:"-"`
	N           int       `json:"n"`
	Failed      int       `json:"failed"`
	Errors      []string  `json:"errors,omitempty"`
	Unavailable string    `json:"unavailable,omitempty"`
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
	return json.Marshal(struct {
		*plain
		Min    *float64 `json:"min"`
		Median *float64 `json:"median"`
		Max    *float64 `json:"max"`
	}{(*plain)(f), num(f.Min), num(f.Median), num(f.Max)})
}

// MarshalJSON writes NaN as null.
func (s stepStat) MarshalJSON() ([]byte, error) {
	return json.Marshal(struct {
		Step string   `json:"step"`
		N    int      `json:"n"`
		P50  *float64 `json:"p50_s"`
		P95  *float64 `json:"p95_s"`
		Max  *float64 `json:"max_s"`
		Sum  *float64 `json:"sum_s"`
	}{s.Step, s.N, num(s.P50), num(s.P95), num(s.Max), num(s.Sum)})
}

func num(v float64) *float64 {
	if math.IsNaN(v) {
		return nil
	}
	v = math.Round(v*1000) / 1000
	return &v
}

func (f *figure) format(v float64) string {
	switch {
	case math.IsNaN(v) && f.Unavailable != "":
		return "n/a"
	case math.IsNaN(v):
		return "-"
	case f.Unit == "B":
		return fmt.Sprintf("%.0f B", v)
	case f.Unit == "ms":
		return fmt.Sprintf("%.0fms", v)
	}
	return fmt.Sprintf("%.2fs", v)
}

func (rep *report) anyFailed() bool {
	for _, f := range rep.Figures {
		if f.Failed > 0 {
			return true
		}
	}
	return rep.Fleet != nil && (rep.Fleet.Error != "" || rep.Fleet.Failed > 0)
}

func (rep *report) print(w io.Writer) {
	fmt.Fprintf(w, "robonet colonize figures: %d runs, %s, %s, %d CPUs, took %s\n",
		rep.Runs, rep.Binary, rep.Go, rep.CPUs, rep.Elapsed)
	fmt.Fprintf(w, "load average: %s at start, %s at end\n\n", proc.FormatLoad(rep.LoadStart), proc.FormatLoad(rep.LoadEnd))
	tw := tabwriter.NewWriter(w, 0, 8, 3, ' ', 0)
	fmt.Fprintln(tw, "figure\tmin\tmedian\tmax\tn\tfailed\ttarget")
	for _, f := range rep.Figures {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%d\t%d\t%s\n", f.Name, f.format(f.Min), f.format(f.Median), f.format(f.Max),
			f.N, f.Failed, f.Target)
	}
	tw.Flush()
	if fl := rep.Fleet; fl != nil {
		rep.printFleet(w, fl)
	}
	var errs []string
	for _, f := range rep.Figures {
		for _, e := range f.Errors {
			errs = append(errs, "["+f.Key+"] "+e)
		}
	}
	if fl := rep.Fleet; fl != nil {
		if fl.Error != "" {
			errs = append(errs, "[fleet] "+fl.Error)
		}
		for _, e := range fl.Failures {
			errs = append(errs, "[fleet] "+e)
		}
	}
	if len(errs) > 0 {
		fmt.Fprintln(w, "\nfailures:")
		for _, e := range errs {
			fmt.Fprintln(w, "  "+e)
		}
	}
	if len(rep.Notes) > 0 {
		fmt.Fprintln(w, "\nnotes:")
		for _, n := range rep.Notes {
			fmt.Fprintln(w, "  "+n)
		}
	}
}

func (rep *report) printFleet(w io.Writer, fl *fleet) {
	fmt.Fprintf(w, "\nfleet: %d hosts, --parallel %d --wait %s, one run (containers up in %s)\n",
		fl.Hosts, fl.Parallel, fl.JoinWait, orDash(fl.Started))
	if fl.TotalS == 0 {
		fmt.Fprintln(w, "  not measured (see failures)")
		return
	}
	fmt.Fprintf(w, "  total %.1fs, %d ok, %d failed: %.0f hosts/min (target: 100 hosts in ≤ 60 s, ≥ 100/min)\n",
		fl.TotalS, fl.OK, fl.Failed, fl.PerMinute)
	fmt.Fprintf(w, "  serialized admission: wait for join %.1fs summed = %.0f%% of the total; with service %.1fs = %.0f%%\n",
		fl.WaitSumS, 100*fl.WaitSumS/fl.TotalS, fl.WaitSumS+fl.ServiceSumS, 100*(fl.WaitSumS+fl.ServiceSumS)/fl.TotalS)
	tw := tabwriter.NewWriter(w, 0, 8, 3, ' ', 0)
	fmt.Fprintln(tw, "  step (per host)\tp50\tp95\tmax\tsum\tn")
	for _, s := range fl.Steps {
		name := s.Step
		if name == "done" {
			name = "whole host (done)"
		}
		fmt.Fprintf(tw, "  %s\t%s\t%s\t%s\t%s\t%d\n", name, secs(s.P50), secs(s.P95), secs(s.Max), secs(s.Sum), s.N)
	}
	tw.Flush()
}

func secs(v float64) string {
	if math.IsNaN(v) {
		return "-"
	}
	return fmt.Sprintf("%.2fs", v)
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

// ---- small helpers ----

func sleepCtx(ctx context.Context, d time.Duration) error {
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

// oneLine folds a multi-line error (a node's last log lines) onto one line.
func oneLine(s string) string {
	s = strings.Join(strings.Fields(strings.ReplaceAll(strings.TrimSpace(s), "\n", " | ")), " ")
	if len(s) > 1200 {
		s = s[:1200] + "…"
	}
	return s
}

func firstLine(s string) string {
	s, _, _ = strings.Cut(strings.TrimSpace(s), "\n")
	return s
}

func round(d time.Duration) time.Duration { return d.Round(time.Millisecond) }

// startDelayProxy forwards every connection to listen on to target, each
// chunk held for delay in each direction (so a round trip takes 2×delay
// more), without limiting throughput: chunks are timestamped as they are
// read and written once their time has come.
func startDelayProxy(listen, target string, delay time.Duration) (net.Listener, error) {
	l, err := net.Listen("tcp", listen)
	if err != nil {
		return nil, err
	}
	go func() {
		for {
			in, err := l.Accept()
			if err != nil {
				return
			}
			out, err := net.DialTimeout("tcp", target, 5*time.Second)
			if err != nil {
				in.Close()
				continue
			}
			go delayCopy(out, in, delay)
			go delayCopy(in, out, delay)
		}
	}()
	return l, nil
}

type chunk struct {
	at   time.Time
	data []byte
}

func delayCopy(dst, src net.Conn, delay time.Duration) {
	q := make(chan chunk, 1024)
	go func() {
		defer close(q)
		for {
			buf := make([]byte, 32<<10)
			n, err := src.Read(buf)
			if n > 0 {
				q <- chunk{at: time.Now().Add(delay), data: buf[:n]}
			}
			if err != nil {
				return
			}
		}
	}()
	for c := range q {
		time.Sleep(time.Until(c.at))
		if _, err := dst.Write(c.data); err != nil {
			break
		}
	}
	dst.Close()
	src.Close()
}

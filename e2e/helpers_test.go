//go:build e2e

package e2e

import (
	"bufio"
	"bytes"
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
)

// Ports and swarm name every node of the suite uses; each host has its own
// namespace, so every node can have the same ones.
const (
	clientPort  = "4222"
	clusterPort = "6222"
	swarmName   = "e2e"
	// swarmSecret admits the lab's nodes to each other (a fixed test value).
	swarmSecret = "rnsec_QkJCQkJCQkJCQkJCQkJCQkJCQkJCQkJCQkJCQkJCQkI"
)

// Node states as `robonet nodes --json` prints them.
const (
	alive   = "alive"
	suspect = "suspect"
	offline = "offline"
)

// pollEvery paces every poll loop; the CLI round trip adds to it.
const pollEvery = 100 * time.Millisecond

// member is one row of `robonet nodes --json` (the fields the suite reads).
type member struct {
	Chevron string            `json:"chevron"`
	Name    string            `json:"name"`
	Pubkey  string            `json:"pubkey"`
	Server  string            `json:"server"`
	State   string            `json:"state"`
	Leader  bool              `json:"leader"`
	Caps    []string          `json:"caps"`
	Tags    map[string]string `json:"tags"`
	Version string            `json:"version"`
	Started time.Time         `json:"started"`
}

// status is `robonet status --json`.
type status struct {
	Swarm       string `json:"swarm"`
	Chevron     string `json:"chevron"`
	Name        string `json:"name"`
	State       string `json:"state"`
	Leader      string `json:"leader"`
	LeaderName  string `json:"leader_name"`
	Token       uint64 `json:"token"`
	Members     int    `json:"members"`
	Known       int    `json:"known"`
	MetaLeader  string `json:"meta_leader"`
	Clustered   bool   `json:"clustered"`
	Replicas    int    `json:"replicas"`
	Version     string `json:"version"`
	JetStreamOK bool   `json:"jetstream_ok"`
}

// node is one robonet daemon on a host, across its restarts: its data dir
// stays, each start is a new process with its own log files.
type node struct {
	t    *testing.T
	host *host
	name string
	data string
	join string   // --join
	args []string // extra `up` flags
	// noSwarm leaves out --swarm: a federated node's swarm is named by its
	// chevron.
	noSwarm bool
	// secret is the --token the node starts with; "" means swarmSecret.
	secret string
	// standalone starts the node without --cluster and --join: a
	// single-node swarm, JetStream standalone. (A node with --cluster and
	// an empty --join founds a swarm and waits for a second member.)
	standalone bool

	// Set by start and read by the test goroutine only; the waiter goroutine
	// writes waitErr and exited before closing done.
	runs    int
	cmd     *exec.Cmd
	done    chan struct{}
	waitErr error
	began   time.Time
	exited  time.Time
	logs    []string // stdout and stderr files of every run
	readyIn time.Duration
}

// upLine is the line `robonet up` prints on stdout when the node is ready.
var upLine = regexp.MustCompile(`node (\S+) up as chevron (\S+) in swarm`)

// newNode prepares a node on h, joining every host of the lab, with its own
// data dir, and starts it; it is stopped (SIGKILL) in t.Cleanup, and its logs
// are printed if the test failed.
func newNode(t *testing.T, h *host, name string, args ...string) *node {
	t.Helper()
	return newNodeJoining(t, h, name, h.lab.joinList(), args...)
}

// newNodeJoining is newNode with the given --join list.
func newNodeJoining(t *testing.T, h *host, name, join string, args ...string) *node {
	t.Helper()
	n := &node{t: t, host: h, name: name, data: filepath.Join(h.lab.dir, name), join: join, args: args}
	t.Cleanup(n.cleanup)
	n.start()
	return n
}

// start runs `robonet up` in the host's namespace. It does not wait.
func (n *node) start() {
	n.t.Helper()
	if n.cmd != nil && n.running() {
		n.t.Fatalf("%s: start while running", n.name)
	}
	n.runs++
	args := []string{"up",
		"--name", n.name, "--data", n.data,
		"--listen", "0.0.0.0:" + clientPort, "--token", cmp.Or(n.secret, swarmSecret),
		"--log-level", logLevel(),
	}
	if !n.standalone {
		args = append(args, "--cluster", "0.0.0.0:"+clusterPort, "--join", n.join)
	}
	if !n.noSwarm {
		args = append(args, "--swarm", swarmName)
	}
	args = append(args, n.args...)
	base := filepath.Join(n.host.lab.dir, fmt.Sprintf("%s.run%d", n.name, n.runs))
	stdout, err := os.Create(base + ".stdout")
	if err != nil {
		n.t.Fatal(err)
	}
	stderr, err := os.Create(base + ".stderr")
	if err != nil {
		n.t.Fatal(err)
	}
	n.logs = append(n.logs, stdout.Name(), stderr.Name())
	// ip netns exec enters the namespace and execs robonet, so the child's
	// pid is robonet's: signals reach it directly.
	cmd := exec.Command(ipBin, append([]string{"netns", "exec", n.host.ns, robonetBin}, args...)...)
	cmd.Env = childEnv()
	cmd.Stdout, cmd.Stderr = stdout, stderr
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL} // never outlive the suite
	if err := cmd.Start(); err != nil {
		stdout.Close()
		stderr.Close()
		n.t.Fatalf("start %s: %v", n.name, err)
	}
	stdout.Close() // the child has its own copies
	stderr.Close()
	n.cmd, n.began, n.done, n.waitErr, n.readyIn = cmd, time.Now(), make(chan struct{}), nil, 0
	done := n.done
	go func() {
		err := cmd.Wait()
		n.waitErr, n.exited = err, time.Now()
		close(done)
	}()
}

// logLevel is the nodes' --log-level: $E2E_LOG_LEVEL, default info.
func logLevel() string {
	if l := os.Getenv("E2E_LOG_LEVEL"); l != "" {
		return l
	}
	return "info"
}

// running reports whether the current process has not exited.
func (n *node) running() bool {
	select {
	case <-n.done:
		return false
	default:
		return true
	}
}

// waitReady waits until `robonet up` prints that the node is up and returns
// the chevron it took; it fails the test if the process exits first.
func (n *node) waitReady(timeout time.Duration) string {
	n.t.Helper()
	stdout := n.logs[len(n.logs)-2]
	deadline := time.Now().Add(timeout)
	for {
		data, _ := os.ReadFile(stdout)
		if m := upLine.FindSubmatch(data); m != nil {
			if string(m[1]) != n.name {
				n.t.Fatalf("%s: up line names node %q", n.name, m[1])
			}
			if n.readyIn == 0 {
				n.readyIn = time.Since(n.began)
			}
			return string(m[2])
		}
		if !n.running() {
			n.t.Fatalf("%s exited before it was up (%v):\n%s", n.name, n.waitErr, n.tail(n.logs[len(n.logs)-1], 40))
		}
		if time.Now().After(deadline) {
			n.t.Fatalf("%s not up after %s:\n%s", n.name, timeout, n.tail(n.logs[len(n.logs)-1], 40))
		}
		time.Sleep(pollEvery)
	}
}

// signal sends sig to the node's process.
func (n *node) signal(sig syscall.Signal) {
	n.t.Helper()
	if err := n.cmd.Process.Signal(sig); err != nil {
		n.t.Fatalf("signal %v to %s: %v", sig, n.name, err)
	}
}

// waitExit waits for the process to end and returns its state.
func (n *node) waitExit(timeout time.Duration) *os.ProcessState {
	n.t.Helper()
	select {
	case <-n.done:
		return n.cmd.ProcessState
	case <-time.After(timeout):
		n.t.Fatalf("%s still running %s after it was asked to stop", n.name, timeout)
		return nil
	}
}

// cleanup kills the process if it still runs, copies its logs to
// $E2E_LOG_DIR/<test>/ when that is set (e.g. for CI artifacts), and prints
// their tails when the test failed (or E2E_SHOW_LOGS is set).
func (n *node) cleanup() {
	if n.cmd != nil && n.running() {
		_ = n.cmd.Process.Kill()
		select {
		case <-n.done:
		case <-time.After(10 * time.Second):
			n.t.Errorf("%s (pid %d) did not die after SIGKILL", n.name, n.cmd.Process.Pid)
		}
	}
	if dir := os.Getenv("E2E_LOG_DIR"); dir != "" {
		n.keepLogs(filepath.Join(dir, strings.ReplaceAll(n.t.Name(), "/", "_")))
	}
	if !n.t.Failed() && os.Getenv("E2E_SHOW_LOGS") == "" {
		return
	}
	for _, f := range n.logs {
		n.t.Logf("==== %s ====\n%s", filepath.Base(f), n.tail(f, 120))
	}
}

// keepLogs copies the node's log files into dir.
func (n *node) keepLogs(dir string) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		n.t.Errorf("keep logs: %v", err)
		return
	}
	for _, f := range n.logs {
		data, err := os.ReadFile(f)
		if err == nil {
			err = os.WriteFile(filepath.Join(dir, filepath.Base(f)), data, 0o644)
		}
		if err != nil {
			n.t.Errorf("keep logs: %v", err)
		}
	}
}

// tail is the last lines of a file.
func (n *node) tail(path string, lines int) string {
	data, err := os.ReadFile(path)
	if err != nil {
		return err.Error()
	}
	ls := strings.Split(strings.TrimRight(string(data), "\n"), "\n")
	if len(ls) > lines {
		ls = append([]string{fmt.Sprintf("… %d lines before", len(ls)-lines)}, ls[len(ls)-lines:]...)
	}
	return strings.Join(ls, "\n")
}

// cli runs a client command against this node from inside its namespace,
// with this node's operator key, and decodes its --json output into v.
func (n *node) cli(ctx context.Context, v any, args ...string) error {
	full := append(args, "--json", "--server", "nats://127.0.0.1:"+clientPort, "--data", n.data)
	out, err := n.host.exec(ctx, full...)
	if err != nil {
		return err
	}
	if err := json.Unmarshal(out, v); err != nil {
		return fmt.Errorf("robonet %s on %s: decode %q: %v", args[0], n.name, clip(out), err)
	}
	return nil
}

func clip(b []byte) string {
	if len(b) > 200 {
		return string(b[:200]) + "…"
	}
	return string(b)
}

// view is what one node showed in one observation: its nodes list and its
// status, asked at the same time.
type view struct {
	node       *node
	members    []member
	status     status
	start, end time.Time // the two CLI calls ran within [start, end]
	err        error
}

// observe asks every given node for its nodes list and status, all in
// parallel, and returns one view per node in the same order.
func observe(nodes ...*node) []view {
	views := make([]view, len(nodes))
	var wg sync.WaitGroup
	for i, n := range nodes {
		views[i] = view{node: n, start: time.Now()}
		v := &views[i]
		var errNodes, errStatus error
		var inner sync.WaitGroup
		inner.Add(2)
		wg.Go(func() {
			inner.Wait()
			v.end = time.Now()
			v.err = errors.Join(errNodes, errStatus)
		})
		go func() {
			defer inner.Done()
			ctx, cancel := context.WithTimeout(context.Background(), 8*time.Second)
			defer cancel()
			errNodes = n.cli(ctx, &v.members, "nodes")
		}()
		go func() {
			defer inner.Done()
			ctx, cancel := context.WithTimeout(context.Background(), 8*time.Second)
			defer cancel()
			errStatus = n.cli(ctx, &v.status, "status")
		}()
	}
	wg.Wait()
	return views
}

// String renders a view compactly: "h1: 1 h1 alive *, 2 h2 offline | leader 1 token 7 R3".
func (v view) String() string {
	if v.err != nil {
		return fmt.Sprintf("%s: error: %v", v.node.name, v.err)
	}
	var parts []string
	for _, m := range v.members {
		s := fmt.Sprintf("%s %s %s", m.Chevron, m.Name, m.State)
		if m.Leader {
			s += " *"
		}
		parts = append(parts, s)
	}
	st := v.status
	return fmt.Sprintf("%s: %s | leader %q token %d members %d R%d js_ok %v",
		v.node.name, strings.Join(parts, ", "), st.Leader, st.Token, st.Members, st.Replicas, st.JetStreamOK)
}

// byName indexes a view's members by node name.
func (v view) byName() map[string]member {
	out := map[string]member{}
	for _, m := range v.members {
		out[m.Name] = m
	}
	return out
}

// leaders are the members the view marks as leader.
func (v view) leaders() []member {
	var out []member
	for _, m := range v.members {
		if m.Leader {
			out = append(out, m)
		}
	}
	return out
}

// selfLeader reports whether the node claims the lease itself: its own row
// says leader, or its status names its own chevron.
func (v view) selfLeader() bool {
	if v.err != nil {
		return false
	}
	if v.status.Leader != "" && v.status.Leader == v.status.Chevron {
		return true
	}
	for _, m := range v.members {
		if m.Name == v.node.name && m.Leader {
			return true
		}
	}
	return false
}

// picture is what a set of views agreed on.
type picture struct {
	leader  member            // the lease holder
	token   uint64            // the lease's fencing token
	members map[string]member // by name
}

// sig summarises a picture for stability checks: same sig, same swarm.
func (p picture) sig() string {
	var names []string
	for name := range p.members {
		names = append(names, name)
	}
	sort.Strings(names)
	var b strings.Builder
	fmt.Fprintf(&b, "leader %s token %d;", p.leader.Chevron, p.token)
	for _, name := range names {
		m := p.members[name]
		fmt.Fprintf(&b, " %s=%s/%s/%s/%s", name, m.Chevron, m.Pubkey, m.State, m.Started.Format(time.RFC3339Nano))
	}
	return b.String()
}

// agreement checks that every view shows exactly the nodes named in up as
// alive and those in down as offline (and no others), exactly one leader,
// which is alive, named by status too, and that all views agree on the
// leader, the token and every node's chevron and key. It returns the
// agreed picture.
func agreement(views []view, up, down []string) (picture, error) {
	var p picture
	want := map[string]string{}
	for _, name := range up {
		want[name] = alive
	}
	for _, name := range down {
		want[name] = offline
	}
	for i, v := range views {
		if v.err != nil {
			return p, v.err
		}
		got := v.byName()
		if len(v.members) != len(want) || len(got) != len(want) {
			return p, fmt.Errorf("%s lists %d nodes, want %d (%v)", v.node.name, len(v.members), len(want), v)
		}
		for name, st := range want {
			m, ok := got[name]
			if !ok {
				return p, fmt.Errorf("%s does not list %s (%v)", v.node.name, name, v)
			}
			if m.State != st {
				return p, fmt.Errorf("%s shows %s %s, want %s (%v)", v.node.name, name, m.State, st, v)
			}
		}
		ls := v.leaders()
		if len(ls) != 1 {
			return p, fmt.Errorf("%s shows %d leaders, want 1 (%v)", v.node.name, len(ls), v)
		}
		if ls[0].State != alive {
			return p, fmt.Errorf("%s shows leader %s %s (%v)", v.node.name, ls[0].Name, ls[0].State, v)
		}
		st := v.status
		if st.Leader != ls[0].Chevron || st.Members != len(up) || st.State != alive || st.Token == 0 {
			return p, fmt.Errorf("%s status disagrees with its nodes list: leader %q token %d members %d state %s (%v)",
				v.node.name, st.Leader, st.Token, st.Members, st.State, v)
		}
		if i == 0 {
			p = picture{leader: ls[0], token: st.Token, members: got}
			continue
		}
		if ls[0].Name != p.leader.Name || st.Token != p.token {
			return p, fmt.Errorf("%s sees leader %s token %d, %s sees %s token %d",
				v.node.name, ls[0].Name, st.Token, views[0].node.name, p.leader.Name, p.token)
		}
		for name, m := range got {
			o := p.members[name]
			if m.Chevron != o.Chevron || m.Pubkey != o.Pubkey || !m.Started.Equal(o.Started) {
				return p, fmt.Errorf("%s and %s disagree on %s: %s/%s/%s vs %s/%s/%s", v.node.name, views[0].node.name,
					name, m.Chevron, m.Pubkey, m.Started, o.Chevron, o.Pubkey, o.Started)
			}
		}
	}
	return p, nil
}

// replicated checks that every view reports R3 buckets and a current
// JetStream.
func replicated(views []view) error {
	for _, v := range views {
		if v.err != nil {
			return v.err
		}
		if v.status.Replicas != 3 || !v.status.JetStreamOK || !v.status.Clustered {
			return fmt.Errorf("%s: replicas %d, jetstream_ok %v, clustered %v", v.node.name,
				v.status.Replicas, v.status.JetStreamOK, v.status.Clustered)
		}
	}
	return nil
}

// poll calls check until it returns nil, pacing the loop with pollEvery, and
// returns how long that took; after timeout it fails the test with check's
// last error.
func poll(t *testing.T, timeout time.Duration, what string, check func() error) time.Duration {
	t.Helper()
	began := time.Now()
	for {
		err := check()
		if err == nil {
			return time.Since(began)
		}
		if time.Since(began) > timeout {
			t.Fatalf("%s: not after %s: %v", what, timeout, err)
		}
		time.Sleep(pollEvery)
	}
}

// requireRunning fails the test at once if one of the nodes' processes has
// ended: the suite signals a process only when a test means to, so this is
// a crash, a self-inflicted exit, or something outside the suite killing it.
func requireRunning(t *testing.T, nodes ...*node) {
	t.Helper()
	for _, n := range nodes {
		if n.running() {
			continue
		}
		why := ""
		if errLog, _ := os.ReadFile(n.logs[len(n.logs)-1]); bytes.Contains(errLog, []byte("stopped cleanly")) {
			why = " after a clean shutdown: it was sent SIGTERM or SIGINT, not by this test (another job killing processes named robonet?)"
		}
		t.Fatalf("%s (pid %d) ended unexpectedly, %s%s; stderr:\n%s", n.name, n.cmd.Process.Pid,
			exitSummary(n.cmd.ProcessState), why, n.tail(n.logs[len(n.logs)-1], 30))
	}
}

// converge waits until the given nodes agree (see agreement) that the nodes
// named in up are alive and those in down offline, and returns the picture
// and how long it took. The last disagreement seen is logged: it tells what
// the wait was spent on.
func converge(t *testing.T, timeout time.Duration, what string, nodes []*node, up, down []string) (picture, time.Duration) {
	t.Helper()
	var p picture
	var last error
	var lastAt time.Duration
	began := time.Now()
	d := poll(t, timeout, what, func() error {
		requireRunning(t, nodes...)
		var err error
		if p, err = agreement(observe(nodes...), up, down); err != nil {
			last, lastAt = err, time.Since(began)
		}
		return err
	})
	if last != nil {
		t.Logf("%s: last disagreement at %s: %v", what, lastAt.Round(time.Millisecond), last)
	}
	return p, d
}

// swarm is a lab of three hosts with one node each.
type swarm struct {
	lab   *lab
	nodes []*node
	began time.Time // when the first node was started
}

// names of the swarm's nodes, in host order.
func (s *swarm) names() []string {
	var out []string
	for _, n := range s.nodes {
		out = append(out, n.name)
	}
	return out
}

// byName finds a node of the swarm.
func (s *swarm) byName(name string) *node {
	for _, n := range s.nodes {
		if n.name == name {
			return n
		}
	}
	s.lab.t.Fatalf("no node %q in the swarm", name)
	return nil
}

// others are the swarm's nodes except the given ones.
func (s *swarm) others(except ...*node) []*node {
	var out []*node
	for _, n := range s.nodes {
		if !slices.Contains(except, n) {
			out = append(out, n)
		}
	}
	return out
}

// startSwarm starts n nodes at once, h1…hn on hosts 1…n with no --chevron
// (args[i], if given, are more `up` flags for node i), and waits until each
// printed that it is up.
func startSwarm(t *testing.T, n int, args ...[]string) *swarm {
	t.Helper()
	l := newLab(t, n)
	s := &swarm{lab: l, began: time.Now()}
	for i, h := range l.hosts {
		var extra []string
		if i < len(args) {
			extra = args[i]
		}
		s.nodes = append(s.nodes, newNode(t, h, fmt.Sprintf("h%d", i+1), extra...))
	}
	for _, nd := range s.nodes {
		c := nd.waitReady(2 * time.Minute)
		t.Logf("%s up as chevron %s after %s", nd.name, c, nd.readyIn.Round(time.Millisecond))
	}
	t.Logf("all %d nodes up after %s", n, time.Since(s.began).Round(time.Millisecond))
	return s
}

// settle waits until every node shows the whole swarm alive with one
// leader, all agree, buckets are R3 and JetStream is current, and that
// picture has held unchanged for hold (so the leader has had time to move the
// lease stream's leadership away from itself before a test breaks something).
// It returns the picture.
func (s *swarm) settle(timeout, hold time.Duration) picture {
	t := s.lab.t
	t.Helper()
	var p picture
	var sig string
	var since time.Time
	poll(t, timeout, "swarm settles", func() error {
		requireRunning(t, s.nodes...)
		views := observe(s.nodes...)
		cur, err := agreement(views, s.names(), nil)
		if err == nil {
			err = replicated(views)
		}
		if err != nil {
			sig = ""
			return err
		}
		if cur.sig() != sig {
			p, sig, since = cur, cur.sig(), time.Now()
		}
		if held := time.Since(since); held < hold {
			return fmt.Errorf("stable for %s of %s", held.Round(time.Millisecond), hold)
		}
		return nil
	})
	t.Logf("settled: leader %s (chevron %s), token %d", p.leader.Name, p.leader.Chevron, p.token)
	return p
}

// The suite's own test binary runs as a fake server inside a namespace
// (see startFake) when fakeModeEnv names one of fakeServers.
const (
	fakeModeEnv = "RN_E2E_FAKE"
	fakeAddrEnv = "RN_E2E_FAKE_ADDR"
)

// fakeServers are TCP servers that are not robonet nodes, by mode: each
// handles one accepted connection and closes it.
var fakeServers = map[string]func(net.Conn){
	// http answers like a web server.
	"http": func(c net.Conn) {
		defer c.Close()
		_, _ = io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n")
	},
	// silent accepts and never says anything, until the peer hangs up.
	"silent": func(c net.Conn) {
		defer c.Close()
		_ = c.SetReadDeadline(time.Now().Add(30 * time.Second))
		_, _ = io.Copy(io.Discard, c)
	},
	// hangup closes every connection at once.
	"hangup": func(c net.Conn) { c.Close() },
}

// runFake is the whole program when the test binary runs as a fake server:
// it listens on addr, prints "listening", then "accepted" for every
// connection, until it is killed.
func runFake(mode, addr string) int {
	serve, ok := fakeServers[mode]
	if !ok {
		fmt.Fprintf(os.Stderr, "fake server: unknown mode %q\n", mode)
		return 2
	}
	l, err := net.Listen("tcp", addr)
	if err != nil {
		fmt.Fprintf(os.Stderr, "fake server: %v\n", err)
		return 1
	}
	fmt.Println("listening")
	for {
		c, err := l.Accept()
		if err != nil {
			fmt.Fprintf(os.Stderr, "fake server: %v\n", err)
			return 1
		}
		fmt.Println("accepted")
		go serve(c)
	}
}

// fake is a fake server process in a host's namespace.
type fake struct {
	accepted atomic.Int64 // connections it reported
}

// startFake runs the test binary as the fake server mode on addr inside h's
// namespace, waits until it listens, and kills it in t.Cleanup.
func startFake(t *testing.T, h *host, mode, addr string) *fake {
	t.Helper()
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(ipBin, "netns", "exec", h.ns, self)
	cmd.Env = append(os.Environ(), fakeModeEnv+"="+mode, fakeAddrEnv+"="+addr)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatalf("start fake %s server: %v", mode, err)
	}
	f := &fake{}
	listening := make(chan struct{})
	read := make(chan struct{})
	go func() {
		defer close(read)
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			switch sc.Text() {
			case "listening":
				close(listening)
			case "accepted":
				f.accepted.Add(1)
			}
		}
	}()
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		<-read
		_ = cmd.Wait()
	})
	select {
	case <-listening:
	case <-read:
		t.Fatalf("fake %s server on %s exited: %s", mode, addr, bytes.TrimSpace(stderr.Bytes()))
	case <-time.After(30 * time.Second):
		t.Fatalf("fake %s server on %s: not listening after 30s", mode, addr)
	}
	return f
}

// exitSummary describes how a process ended, for messages.
func exitSummary(ps *os.ProcessState) string {
	if ps == nil {
		return "still running"
	}
	if ws, ok := ps.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
		return "killed by " + ws.Signal().String()
	}
	return fmt.Sprintf("exit code %d", ps.ExitCode())
}

// nonEmptyLines splits out into its non-blank lines.
func nonEmptyLines(out []byte) []string {
	var lines []string
	for _, l := range bytes.Split(out, []byte("\n")) {
		if s := strings.TrimSpace(string(l)); s != "" {
			lines = append(lines, s)
		}
	}
	return lines
}

package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/robonet-mesh/robonet/internal/testmesh"
	"github.com/robonet-mesh/robonet/node"
	"github.com/robonet-mesh/robonet/trust"
	"github.com/robonet-mesh/robonet/wire"
)

// These tests drive the built binary as separate processes, so SIGKILL is a
// real crash and exit codes and stderr are what a user sees.

var binPath string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "robonet-bin")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	binPath = filepath.Join(dir, "robonet")
	// Node keys the CLI pins on first use go to a scratch config dir, never
	// the user's (tests that look at the file set their own).
	if err := os.Setenv("XDG_CONFIG_HOME", filepath.Join(dir, "config")); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	if out, err := exec.Command("go", "build", "-o", binPath, ".").CombinedOutput(); err != nil {
		fmt.Fprintf(os.Stderr, "build robonet: %v\n%s", err, out)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// proc is a running `robonet up`.
type proc struct {
	cmd    *exec.Cmd
	data   string
	client string
	mu     sync.Mutex
	out    bytes.Buffer
	done   chan struct{}
	err    error
}

type lockedWriter struct {
	mu *sync.Mutex
	b  *bytes.Buffer
}

func (w lockedWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.b.Write(p)
}

func (p *proc) output() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.out.String()
}

func freeAddr(t *testing.T) string {
	t.Helper()
	return testmesh.ReservePorts(t, 1)[0]
}

func startUp(t *testing.T, data string, args ...string) *proc {
	t.Helper()
	listen := freeAddr(t)
	p := &proc{data: data, client: "nats://" + listen, done: make(chan struct{})}
	all := append([]string{"up", "--data", data, "--listen", listen, "--log-level", "warn"}, args...)
	p.cmd = exec.Command(binPath, all...)
	w := lockedWriter{mu: &p.mu, b: &p.out}
	p.cmd.Stdout, p.cmd.Stderr = w, w
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { p.err = p.cmd.Wait(); close(p.done) }()
	t.Cleanup(func() {
		_ = p.cmd.Process.Kill()
		<-p.done
		if t.Failed() {
			t.Logf("output of robonet up --data %s:\n%s", data, p.output())
		}
	})
	return p
}

func (p *proc) waitReady(t *testing.T) {
	t.Helper()
	testmesh.CheckFor(t, 60*time.Second, 20*time.Millisecond, func() error {
		select {
		case <-p.done:
			return fmt.Errorf("exited early: %v\n%s", p.err, p.output())
		default:
		}
		if !strings.Contains(p.output(), "  nats CLI  ") { // the banner's last line
			return errors.New("not ready yet")
		}
		return nil
	})
}

// cli runs a client command against p and returns stdout, stderr and the exit code.
func cli(t *testing.T, env []string, args ...string) (string, string, int) {
	t.Helper()
	cmd := exec.Command(binPath, args...)
	cmd.Env = append(os.Environ(), env...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	code := 0
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		code = ee.ExitCode()
	} else if err != nil {
		t.Fatal(err)
	}
	return stdout.String(), stderr.String(), code
}

func (p *proc) nodes(t *testing.T) ([]wire.Member, error) {
	out, errOut, code := cli(t, nil, "nodes", "--json", "--server", p.client, "--data", p.data)
	if code != 0 {
		return nil, fmt.Errorf("nodes: exit %d: %s", code, errOut)
	}
	var ms []wire.Member
	if err := json.Unmarshal([]byte(out), &ms); err != nil {
		return nil, fmt.Errorf("nodes --json: %v: %q", err, out)
	}
	return ms, nil
}

func TestBinarySingleNode(t *testing.T) {
	data := filepath.Join(t.TempDir(), "d")
	p := startUp(t, data)
	p.waitReady(t)
	for _, want := range []string{"chevron 1", "clients", "creds", data, "nats --context robonet sub"} {
		if !strings.Contains(p.output(), want) {
			t.Errorf("up output lacks %q:\n%s", want, p.output())
		}
	}
	var st wire.Status
	testmesh.CheckFor(t, 10*time.Second, 50*time.Millisecond, func() error {
		out, errOut, code := cli(t, nil, "status", "--json", "--server", p.client, "--data", data)
		if code != 0 {
			return errors.New(errOut)
		}
		if err := json.Unmarshal([]byte(out), &st); err != nil {
			return err
		}
		if st.Leader != "1" {
			return fmt.Errorf("leader %q", st.Leader)
		}
		return nil
	})
	if st.Swarm != "robonet" || st.Chevron != "1" || st.Members != 1 || st.MetaLeader == "" {
		t.Fatalf("status = %+v", st)
	}
	// The JSON contract of `nodes --json`.
	out, _, code := cli(t, nil, "nodes", "--json", "--server", p.client, "--data", data)
	if code != 0 {
		t.Fatal(out)
	}
	var raw []map[string]any
	if err := json.Unmarshal([]byte(out), &raw); err != nil || len(raw) != 1 {
		t.Fatalf("nodes --json = %q (%v)", out, err)
	}
	for _, k := range []string{"chevron", "name", "pubkey", "state", "leader", "caps", "tags", "load", "version", "started"} {
		if _, ok := raw[0][k]; !ok {
			t.Errorf("nodes --json lacks %q", k)
		}
	}
	// The table.
	out, _, _ = cli(t, nil, "nodes", "--server", p.client, "--data", data)
	if !strings.Contains(out, "CHEVRON") || !strings.Contains(out, "rn1") || !strings.Contains(out, "*") {
		t.Errorf("nodes table:\n%s", out)
	}
	// nats-context writes a context the nats CLI reads.
	xdg := t.TempDir()
	_, errOut, code := cli(t, []string{"XDG_CONFIG_HOME=" + xdg}, "nats-context", "--server", p.client, "--data", data)
	if code != 0 {
		t.Fatal(errOut)
	}
	var ctx natsContext
	b, err := os.ReadFile(filepath.Join(xdg, "nats", "context", "robonet.json"))
	if err != nil || json.Unmarshal(b, &ctx) != nil || ctx.URL != p.client || ctx.NKey != filepath.Join(data, "operator.nk") {
		t.Fatalf("context file %s: %v", b, err)
	}
	// version --json carries what the toolchain recorded.
	out, _, code = cli(t, nil, "version", "--json")
	var bi buildInfo
	if code != 0 || json.Unmarshal([]byte(out), &bi) != nil || bi.Version != node.Version || bi.Go == "" ||
		bi.OS != runtime.GOOS || bi.Arch != runtime.GOARCH || bi.Path != "github.com/robonet-mesh/robonet/cmd/robonet" {
		t.Errorf("version --json = %q", out)
	}
	// SIGTERM: clean exit 0.
	if err := p.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	select {
	case <-p.done:
	case <-time.After(30 * time.Second):
		t.Fatal("no exit 30 s after SIGTERM")
	}
	if p.err != nil || !strings.Contains(p.output(), "stopped cleanly") {
		t.Fatalf("exit after SIGTERM: %v\n%s", p.err, p.output())
	}
}

// testSecret is a well-formed swarm secret for bad-input cases.
const testSecret = "rnsec_QkJCQkJCQkJCQkJCQkJCQkJCQkJCQkJCQkJCQkJCQkI"

func TestBinarySwarmSurvivesLeaderSIGKILL(t *testing.T) {
	routes := testmesh.ReservePorts(t, 3)
	join := strings.Join(routes, ",")
	secret, err := trust.GenerateSecret()
	if err != nil {
		t.Fatal(err)
	}
	var ps []*proc
	health := testmesh.ReservePorts(t, 3)
	for i := 0; i < 3; i++ {
		ps = append(ps, startUp(t, filepath.Join(t.TempDir(), fmt.Sprint("d", i)),
			"--cluster", routes[i], "--join", join, "--swarm", "proc", "--token", secret, "--health", health[i]))
	}
	for _, p := range ps {
		p.waitReady(t)
	}
	leader := -1
	byChev := map[string]int{}
	testmesh.CheckFor(t, 60*time.Second, 100*time.Millisecond, func() error {
		leader = -1
		for i, p := range ps {
			ms, err := p.nodes(t)
			if err != nil {
				return err
			}
			alive := 0
			for _, m := range ms {
				if m.State == wire.StateAlive {
					alive++
				}
				if m.Leader && m.Pubkey == selfKey(ms, p) {
					leader = i
				}
				if m.Pubkey == selfKey(ms, p) {
					byChev[m.Chevron] = i
				}
			}
			if alive != 3 {
				return fmt.Errorf("node %d sees %d alive", i, alive)
			}
		}
		if leader < 0 {
			return errors.New("no leader yet")
		}
		return nil
	})
	// Kill only once up has said the swarm survives a loss: the buckets
	// R3 and every replica current, as status and /readyz say too.
	testmesh.CheckFor(t, 60*time.Second, 100*time.Millisecond, func() error {
		for i, p := range ps {
			if !strings.Contains(p.output(), `robonet: swarm "proc" ready: survives the loss of one node`) {
				return fmt.Errorf("node %d: up has not said the swarm is ready", i)
			}
			st, err := p.status(t)
			if err != nil {
				return err
			}
			if st.Replicas != 3 || !st.SurvivesLoss || !strings.HasPrefix(st.Resilience, "survives the loss of one node") {
				return fmt.Errorf("node %d: replicas %d, survives_loss %v (%s)", i, st.Replicas, st.SurvivesLoss, st.Resilience)
			}
			code, rep := probe(t, health[i], "/readyz")
			if code != http.StatusOK || !rep.Ready || rep.State != "ready" || !rep.SurvivesLoss {
				return fmt.Errorf("node %d: /readyz %d %+v", i, code, rep)
			}
		}
		return nil
	})
	var leaderChev string
	for c, i := range byChev {
		if i == leader {
			leaderChev = c
		}
	}
	killed := time.Now()
	if err := ps[leader].cmd.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	var gone, newLeader time.Duration
	testmesh.CheckFor(t, 30*time.Second, 50*time.Millisecond, func() error {
		for i, p := range ps {
			if i == leader {
				continue
			}
			ms, err := p.nodes(t)
			if err != nil {
				return err
			}
			var leaders []string
			offline := false
			for _, m := range ms {
				if m.Chevron == leaderChev && m.State == wire.StateOffline {
					offline = true
				}
				if m.Leader && m.State != wire.StateOffline {
					leaders = append(leaders, m.Chevron)
				}
			}
			if !offline {
				return fmt.Errorf("node %d still sees %s live", i, leaderChev)
			}
			if gone == 0 {
				gone = time.Since(killed)
			}
			if len(leaders) > 1 {
				t.Fatalf("two leaders: %v", leaders)
			}
			if len(leaders) != 1 || leaders[0] == leaderChev {
				return fmt.Errorf("node %d: leaders %v", i, leaders)
			}
		}
		newLeader = time.Since(killed)
		return nil
	})
	t.Logf("after SIGKILL of the leader: offline seen at %v, new leader at %v (figures: bench/)", gone, newLeader)
	// Two of three left: the survivors say plainly that another loss
	// would stop the swarm, and stay ready.
	survivor := (leader + 1) % 3
	testmesh.CheckFor(t, 30*time.Second, 100*time.Millisecond, func() error {
		st, err := ps[survivor].status(t)
		if err != nil {
			return err
		}
		if st.SurvivesLoss || !strings.HasPrefix(st.Resilience, "CANNOT survive the loss of a node") {
			return fmt.Errorf("survives_loss %v (%s)", st.SurvivesLoss, st.Resilience)
		}
		if code, rep := probe(t, health[survivor], "/readyz"); code != http.StatusOK || rep.SurvivesLoss {
			return fmt.Errorf("/readyz %d %+v", code, rep)
		}
		return nil
	})
	// robonet stop: a lame-duck exit 0, found by the data dir's lock.
	out, errOut, code := cli(t, nil, "stop", "--data", ps[survivor].data)
	if code != 0 || !strings.Contains(out, "stopped") {
		t.Fatalf("robonet stop: exit %d: %s%s", code, out, errOut)
	}
	select {
	case <-ps[survivor].done:
	default:
		t.Fatal("robonet stop returned before the node exited")
	}
	if ps[survivor].err != nil || !strings.Contains(ps[survivor].output(), "stopped cleanly") {
		t.Fatalf("exit after robonet stop: %v\n%s", ps[survivor].err, ps[survivor].output())
	}
	if out, _, code := cli(t, nil, "stop", "--data", ps[survivor].data); code != 0 || !strings.Contains(out, "no node runs") {
		t.Fatalf("robonet stop with none running: exit %d: %s", code, out)
	}
}

func (p *proc) status(t *testing.T) (wire.Status, error) {
	var st wire.Status
	out, errOut, code := cli(t, nil, "status", "--json", "--server", p.client, "--data", p.data)
	if code != 0 {
		return st, errors.New(errOut)
	}
	err := json.Unmarshal([]byte(out), &st)
	return st, err
}

// probe GETs path from a node's --health endpoint.
func probe(t *testing.T, addr, path string) (int, healthReport) {
	t.Helper()
	var rep healthReport
	resp, err := http.Get("http://" + addr + path)
	if err != nil {
		return 0, rep
	}
	defer resp.Body.Close()
	if err := json.NewDecoder(resp.Body).Decode(&rep); err != nil {
		t.Errorf("%s%s: %v", addr, path, err)
	}
	return resp.StatusCode, rep
}

func selfKey(ms []wire.Member, p *proc) string {
	// The node answering is the one whose data dir p owns; its key is in node.nk's
	// public half, which the registry lists: find it by client URL.
	for _, m := range ms {
		if m.Client == p.client {
			return m.Pubkey
		}
	}
	return ""
}

func TestBinaryBadInput(t *testing.T) {
	// A listener that is not a robonet node.
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			_, _ = c.Write([]byte("HTTP/1.1 200 OK\r\n\r\n"))
			c.Close()
		}
	}()
	busy, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer busy.Close()

	corrupt := filepath.Join(t.TempDir(), "corrupt")
	if err := os.MkdirAll(corrupt, 0o700); err != nil {
		t.Fatal(err)
	}
	garbage := []byte("this is not a seed\n")
	if err := os.WriteFile(filepath.Join(corrupt, "node.nk"), garbage, 0o600); err != nil {
		t.Fatal(err)
	}
	notDir := filepath.Join(t.TempDir(), "file")
	if err := os.WriteFile(notDir, []byte("x"), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name string
		args []string
		want string
	}{
		{"invalid chevron", []string{"--chevron", "3.0.1"}, `"3.0.1"`},
		{"port in use", []string{"--listen", busy.Addr().String()}, busy.Addr().String()},
		{"corrupt seed", []string{"--data", corrupt}, filepath.Join(corrupt, "node.nk")},
		{"data dir is a file", []string{"--data", notDir}, notDir},
		{"join a non-robonet port", []string{"--join", l.Addr().String(), "--cluster", freeAddr(t), "--token", testSecret}, l.Addr().String()},
		{"join without a token", []string{"--join", l.Addr().String(), "--cluster", freeAddr(t)}, "--token"},
		{"garbage token", []string{"--join", l.Addr().String(), "--cluster", freeAddr(t), "--token", "hunter2"}, "--token"},
		{"forged token", []string{"--join", l.Addr().String(), "--cluster", freeAddr(t), "--token", "rntok_AAAA"}, "--token"},
		{"bad tags", []string{"--tags", "=x"}, "=x"},
		{"bad caps", []string{"--caps", "GPU"}, "GPU"},
		{"core too big", []string{"--core", "8"}, "--core 8: want a core size of 1..7"},
		{"core zero", []string{"--core", "0"}, "--core 0"},
		{"bad edge listen", []string{"--cluster", freeAddr(t), "--edge-listen", "nowhere"}, `"nowhere"`},
		{"health without a port", []string{"--health", "127.0.0.1"}, `--health "127.0.0.1"`},
		{"health on a name", []string{"--health", "example.com:8222"}, `host "example.com" is not an IP address`},
		{"health port in use", []string{"--health", busy.Addr().String()}, "--health " + busy.Addr().String()},
	} {
		t.Run(tc.name, func(t *testing.T) {
			args := append([]string{"up", "--data", filepath.Join(t.TempDir(), "d"), "--listen", freeAddr(t)}, tc.args...)
			out, errOut, code := cli(t, nil, args...)
			if code == 0 {
				t.Fatalf("exit 0; stdout %q", out)
			}
			lines := strings.Split(strings.TrimSpace(errOut), "\n")
			last := lines[len(lines)-1]
			if !strings.HasPrefix(last, "robonet: ") || !strings.Contains(last, tc.want) {
				t.Fatalf("stderr last line %q does not name %q (all: %q)", last, tc.want, errOut)
			}
			if strings.Contains(errOut, "panic") || strings.Contains(errOut, "goroutine ") {
				t.Fatalf("panic: %s", errOut)
			}
		})
	}
	// Nothing in the corrupt data dir was overwritten.
	if b, _ := os.ReadFile(filepath.Join(corrupt, "node.nk")); !bytes.Equal(b, garbage) {
		t.Fatalf("corrupt seed was rewritten: %q", b)
	}
	// A client with no node to talk to: one line, non-zero.
	_, errOut, code := cli(t, nil, "status", "--server", "nats://"+freeAddr(t), "--data", t.TempDir())
	if code == 0 || !strings.HasPrefix(errOut, "robonet: ") || strings.Count(strings.TrimSpace(errOut), "\n") != 0 {
		t.Fatalf("status without a node: exit %d, %q", code, errOut)
	}
}

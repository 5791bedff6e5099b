//go:build e2e

package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/robonet-mesh/robonet/mesh"
	"github.com/robonet-mesh/robonet/wire"
)

// The trust scenarios' lab: the swarm they share, the users the founder
// makes for them, and reading the CLI's JSON.

// use makes the lab's nodes report to t, a scenario's subtest, until it
// ends (a node's failure then fails the scenario, from its goroutine).
func (l *trustLab) use(t *testing.T) {
	parent := l.lab.t
	for _, n := range l.all {
		n.t = t
	}
	t.Cleanup(func() {
		for _, n := range l.all {
			n.t = parent
		}
	})
}

// addNode starts a node on h that outlives the scenario that starts it:
// it reports to t, but it is stopped (and its logs shown) when the lab's
// test ends.
func (l *trustLab) addNode(t *testing.T, h *host, name string, args ...string) *node {
	t.Helper()
	n := &node{t: t, host: h, name: name, data: filepath.Join(h.lab.dir, name), join: l.join, args: args}
	l.lab.t.Cleanup(n.cleanup)
	l.all = append(l.all, n)
	n.start()
	return n
}

// trustLab is the swarm the trust scenarios share.
type trustLab struct {
	*swarm
	join       string            // the three members' cluster addresses
	keys       string            // seeds the founder made, and the attackers' loot
	founder    string            // the founder's seed: h1's operator.nk
	founderKey string            // its public key
	seeds      map[string]string // user name → seed file
	userKeys   map[string]string // user name → public key
	watch      *agent            // an observer on h1 watching alert and trust events
	admin      *agent            // the founder's key on h1, reading JetStream
	// gone are members the admin removed; nodes may still list them
	// offline, and gathers report them offline.
	gone map[string]bool
	all  []*node // every node the lab started that outlives a scenario, removed ones too
}

// startTrustLab starts the three members, waits until they agree, then
// adds the users the scenarios need through the founder: oscar (operator,
// the legitimate traffic), mallory (observer, the forger), watcher
// (observer, the watch agent) and obs (observer, the flooder).
func startTrustLab(t *testing.T) *trustLab {
	t.Helper()
	lb := newLab(t, 4)
	s := &swarm{lab: lb, began: time.Now()}
	var addrs []string
	for _, h := range lb.hosts[:3] {
		addrs = append(addrs, net.JoinHostPort(h.ip, clusterPort))
	}
	l := &trustLab{swarm: s, join: strings.Join(addrs, ","), keys: filepath.Join(lb.dir, "keys"),
		seeds: map[string]string{}, userKeys: map[string]string{}, gone: map[string]bool{}}
	// The founder has no --join: it writes the swarm's founder record.
	s.nodes = append(s.nodes, newNodeJoining(t, lb.hosts[0], "h1", ""))
	for i := 1; i < 3; i++ {
		s.nodes = append(s.nodes, newNodeJoining(t, lb.hosts[i], fmt.Sprintf("h%d", i+1), l.join))
	}
	for _, n := range s.nodes {
		n.waitReady(upTimeout)
	}
	l.all = slices.Clone(s.nodes)
	s.settle(settleTimeout, settleHold)
	record(t, "trust lab: first start → settled", time.Since(s.began), "")

	l.founder = filepath.Join(s.nodes[0].data, "operator.nk")
	kp, err := mesh.ReadSeed(l.founder)
	if err != nil {
		t.Fatal(err)
	}
	l.founderKey, _ = kp.PublicKey()
	began := time.Now()
	l.addUser(t, "oscar", wire.RoleOperator)
	l.addUser(t, "mallory", wire.RoleObserver)
	l.addUser(t, "watcher", wire.RoleObserver)
	l.addUser(t, "obs", wire.RoleObserver)
	record(t, "trust lab: four users added, each applied on every node", time.Since(began), "")
	var users []struct{ Name, Role, Nkey string }
	if err := l.rnJSON(s.nodes[0], "", &users, "user", "list"); err != nil {
		t.Fatal(err)
	}
	if !slices.ContainsFunc(users, func(u struct{ Name, Role, Nkey string }) bool {
		return u.Name == "founder" && u.Role == wire.RoleAdmin && u.Nkey == l.founderKey
	}) {
		t.Fatalf("rn_users has no founder record naming h1's operator key %s: %+v", l.founderKey, users)
	}
	l.watch = startAgent(t, s.nodes[0], "watcher", l.seeds["watcher"])
	l.watch.must(t, agentOp{Op: "sub", Subject: "rn.*.evt.alert"})
	l.watch.must(t, agentOp{Op: "sub", Subject: "rn.*.evt.trust"})
	l.admin = startAgent(t, s.nodes[0], "founder", l.founder)
	l.pingOK(t, s.nodes[0], l.seeds["oscar"], s.names())
	return l
}

// addUser adds a user through h1 with the founder's key and keeps its seed;
// `user add` returns once every live node applied the record.
func (l *trustLab) addUser(t *testing.T, name, role string) {
	t.Helper()
	seed := filepath.Join(l.keys, name+".nk")
	var out struct {
		User struct{ Nkey string } `json:"user"`
	}
	if err := l.rnJSON(l.nodes[0], "", &out, "user", "add", name, "--role", role, "--out", seed); err != nil {
		t.Fatalf("user add %s: %v", name, err)
	}
	l.seeds[name], l.userKeys[name] = seed, out.User.Nkey
}

// cliRun is one finished robonet CLI call.
type cliRun struct {
	out    []byte
	stderr string
	code   int // -1: it did not run to an exit
}

func (r cliRun) String() string {
	return fmt.Sprintf("exit %d: %s %s", r.code, bytes.TrimSpace(r.out), r.stderr)
}

// rn runs robonet in h's namespace against the node there (the default
// nats://127.0.0.1:4222), with --data data (a node's data dir: the CLI
// trusts its node key, which the client port's certificate proves) and,
// when seed is not "", --nkey seed; else the data dir's operator key.
func rn(h *host, data, seed string, args ...string) cliRun {
	ctx, cancel := context.WithTimeout(context.Background(), cliTimeout)
	defer cancel()
	full := append([]string{"netns", "exec", h.ns, robonetBin}, args...)
	full = append(full, "--data", data)
	if seed != "" {
		full = append(full, "--nkey", seed)
	}
	cmd := exec.CommandContext(ctx, ipBin, full...)
	cmd.Env = childEnv()
	cmd.WaitDelay = time.Second
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	r := cliRun{out: out, stderr: strings.TrimSpace(stderr.String())}
	var ee *exec.ExitError
	switch {
	case err == nil:
	case errors.As(err, &ee) && ee.Exited():
		r.code = ee.ExitCode()
	default:
		r.code = -1
		r.stderr += fmt.Sprintf(" (%v)", err)
	}
	return r
}

// rnJSON runs `robonet <args> --json` through node n with seed's key (""
// for n's operator key) and decodes its output into v; a non-zero exit is
// an error.
func (l *trustLab) rnJSON(n *node, seed string, v any, args ...string) error {
	r := rn(n.host, n.data, seed, append(args, "--json")...)
	if r.code != 0 {
		return fmt.Errorf("robonet %s via %s: %v", strings.Join(args, " "), n.name, r)
	}
	if err := json.Unmarshal(r.out, v); err != nil {
		return fmt.Errorf("robonet %s via %s: decode %q: %v", strings.Join(args, " "), n.name, clip(r.out), err)
	}
	return nil
}

// gathered is `robonet run --json`.
type gathered struct {
	Results []struct {
		Chevron, Name, Status, Code, Error string
	} `json:"results"`
	Summary struct {
		Total, OK, Error, Timeout, Offline, Denied int
		Line                                       string
	} `json:"summary"`
}

// ping runs `robonet run all ping` through via with seed's key.
func (l *trustLab) ping(via *node, seed string) (gathered, error) {
	var g gathered
	r := rn(via.host, via.data, seed, "run", "all", "ping", "--json")
	if r.code != 0 && r.code != 2 {
		return g, fmt.Errorf("run all ping via %s: %v", via.name, r)
	}
	if err := json.Unmarshal(r.out, &g); err != nil {
		return g, fmt.Errorf("run all ping via %s: decode %q: %v", via.name, clip(r.out), err)
	}
	return g, nil
}

// allOK checks that exactly the nodes named in want answered, each ok;
// besides them only members in gone may be in the result, as offline.
func (g gathered) allOK(want []string, gone map[string]bool) error {
	var got []string
	for _, r := range g.Results {
		if gone[r.Name] && r.Status == offline {
			continue
		}
		if r.Status != wire.StatusOK {
			return fmt.Errorf("%s answered %s %s %q (%s)", r.Name, r.Status, r.Code, r.Error, g.Summary.Line)
		}
		got = append(got, r.Name)
	}
	sort.Strings(got)
	w := slices.Sorted(slices.Values(want))
	if !slices.Equal(got, w) || g.Summary.OK != len(w) {
		return fmt.Errorf("answers from %v, want %v ok (%s)", got, w, g.Summary.Line)
	}
	return nil
}

// pingOK checks that an operator's `robonet run all ping` through via gets
// exactly the named nodes ok.
func (l *trustLab) pingOK(t *testing.T, via *node, seed string, want []string) {
	t.Helper()
	g, err := l.ping(via, seed)
	if err == nil {
		err = g.allOK(want, l.gone)
	}
	if err != nil {
		t.Errorf("legitimate traffic: %v", err)
	}
}

// nodeRow is one row of `robonet nodes --json` (what the trust scenarios read).
type nodeRow struct {
	Chevron     string `json:"chevron"`
	Name        string `json:"name"`
	Pubkey      string `json:"pubkey"`
	Server      string `json:"server"`
	State       string `json:"state"`
	Leader      bool   `json:"leader"`
	SecretEpoch int64  `json:"secret_epoch"`
}

func (l *trustLab) nodesVia(n *node) ([]nodeRow, error) {
	var rows []nodeRow
	err := l.rnJSON(n, "", &rows, "nodes")
	return rows, err
}

// trustReport is `robonet trust --json`.
type trustReport struct {
	Chevron string `json:"chevron"`
	Name    string `json:"name"`
	Peers   []struct {
		Key, Chevron, Name, Role, State, Reason string
		Breaks                                  uint64
	} `json:"peers"`
	Counters map[string]uint64 `json:"counters"`
}

// trustOf asks every node for its trust report, by node name.
func (l *trustLab) trustOf(nodes []*node) (map[string]trustReport, error) {
	out := map[string]trustReport{}
	for _, n := range nodes {
		var r trustReport
		if err := l.rnJSON(n, "", &r, "trust"); err != nil {
			return nil, err
		}
		out[n.name] = r
	}
	return out, nil
}

// within calls check until it returns nil or timeout passes, and returns
// how long that took and check's last error (nil when it passed).
func within(timeout time.Duration, check func() error) (time.Duration, error) {
	began := time.Now()
	for {
		err := check()
		if err == nil || time.Since(began) > timeout {
			return time.Since(began), err
		}
		time.Sleep(pollEvery)
	}
}

// copyFile copies src to dst (mode 0600), making dst's directory.
func copyFile(t *testing.T, src, dst string) {
	t.Helper()
	b, err := os.ReadFile(src)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(filepath.Dir(dst), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(dst, b, 0o600); err != nil {
		t.Fatal(err)
	}
}

// secretOf is the swarm secret in n's data dir.
func secretOf(t *testing.T, n *node) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(n.data, "swarm.secret"))
	if err != nil {
		t.Fatal(err)
	}
	return strings.TrimSpace(string(b))
}

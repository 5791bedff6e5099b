//go:build e2e

package e2e

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// colonizeSecret is the controller swarm's secret in the colonize tests.
const colonizeSecret = swarmSecret

// controller is a two-node swarm on the test's own host (the root network
// namespace), listening for routes on every address, so target containers
// reach it through the targets' network gateway. Two nodes, because a
// clustered swarm needs two members before its state can be written.
type controller struct {
	t      *testing.T
	dir    string
	server string // node 0's client URL: the CLI's --server
	data0  string // node 0's data dir: the CLI's --data (its operator key is the founder, an admin)
	cmds   []*exec.Cmd
}

func freePort(t *testing.T) int {
	t.Helper()
	l, err := net.Listen("tcp", "0.0.0.0:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

func startController(t *testing.T) *controller {
	t.Helper()
	c := &controller{t: t, dir: t.TempDir()}
	client := []int{freePort(t), freePort(t)}
	route := []int{freePort(t), freePort(t)}
	for i := range 2 {
		data := filepath.Join(c.dir, fmt.Sprintf("ctl%d", i))
		args := []string{"up", "--data", data, "--name", fmt.Sprintf("ctl%d", i),
			"--listen", fmt.Sprintf("127.0.0.1:%d", client[i]), "--cluster", fmt.Sprintf("0.0.0.0:%d", route[i]),
			"--join", fmt.Sprintf("127.0.0.1:%d", route[1-i]), "--swarm", "colonize", "--token", colonizeSecret,
			"--log-level", logLevel()}
		if i == 0 {
			args = append(args, "--founder")
			c.data0 = data
			c.server = fmt.Sprintf("nats://127.0.0.1:%d", client[0])
		}
		log, err := os.Create(filepath.Join(c.dir, fmt.Sprintf("ctl%d.log", i)))
		if err != nil {
			t.Fatal(err)
		}
		cmd := exec.Command(robonetBin, args...)
		cmd.Env = childEnv()
		cmd.Stdout, cmd.Stderr = log, log
		cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		log.Close()
		c.cmds = append(c.cmds, cmd)
	}
	t.Cleanup(func() {
		for _, cmd := range c.cmds {
			_ = cmd.Process.Kill()
		}
		for _, cmd := range c.cmds {
			done := make(chan struct{})
			go func() { _ = cmd.Wait(); close(done) }()
			select {
			case <-done:
			case <-time.After(20 * time.Second):
				_ = cmd.Process.Kill()
				<-done
			}
		}
		if t.Failed() {
			for i := range c.cmds {
				b, _ := os.ReadFile(filepath.Join(c.dir, fmt.Sprintf("ctl%d.log", i)))
				t.Logf("ctl%d log (tail):\n%s", i, tail(string(b), 300))
			}
		}
	})
	poll(t, 60*time.Second, "controller swarm of 2 live", func() error {
		var members []struct {
			State string `json:"state"`
		}
		if err := c.cliJSON(&members, "nodes"); err != nil {
			return err
		}
		live := 0
		for _, m := range members {
			if m.State == "alive" {
				live++
			}
		}
		if live != 2 {
			return fmt.Errorf("%d live", live)
		}
		return nil
	})
	return c
}

func tail(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// cli runs the robonet CLI against node 0 and returns stdout, stderr and the exit code.
func (c *controller) cli(stdin string, args ...string) (string, string, int) {
	c.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, robonetBin, append([]string{"--server", c.server, "--data", c.data0}, args...)...)
	cmd.Env = append(childEnv(), "HOME="+c.dir, "SSH_AUTH_SOCK=")
	cmd.Stdin = strings.NewReader(stdin)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	code := 0
	if ee, ok := err.(*exec.ExitError); ok {
		code = ee.ExitCode()
	} else if err != nil {
		c.t.Fatalf("robonet %s: %v", strings.Join(args, " "), err)
	}
	return out.String(), errb.String(), code
}

func (c *controller) cliJSON(v any, args ...string) error {
	out, errs, code := c.cli("", append(args, "--json")...)
	if code != 0 {
		return fmt.Errorf("robonet %s: exit %d: %s", strings.Join(args, " "), code, strings.TrimSpace(errs))
	}
	return json.Unmarshal([]byte(out), v)
}

// colEvent is one line of colonize --json.
type colEvent struct {
	Host    string  `json:"host"`
	Step    string  `json:"step"`
	Status  string  `json:"status"`
	TookMs  float64 `json:"took_ms"`
	Detail  string  `json:"detail"`
	Diff    string  `json:"diff"`
	Error   string  `json:"error"`
	Remedy  string  `json:"remedy"`
	Chevron string  `json:"chevron"`
	Pubkey  string  `json:"pubkey"`
	Bytes   int64   `json:"bytes"`
}

type colRun struct {
	events []colEvent
	stderr string
	code   int
	took   time.Duration
}

// results is each step's final status (the last event for it that is not "running").
func (r colRun) results() map[string]colEvent {
	out := map[string]colEvent{}
	for _, e := range r.events {
		if e.Status != "running" {
			out[e.Step] = e
		}
	}
	return out
}

func (r colRun) String() string {
	var b strings.Builder
	for _, e := range r.events {
		fmt.Fprintf(&b, "  %-16s %-10s %8.1fms %s %s %s\n", e.Step, e.Status, e.TookMs, e.Detail, e.Error, e.Remedy)
	}
	fmt.Fprintf(&b, "  exit %d, stderr: %s", r.code, strings.TrimSpace(r.stderr))
	return b.String()
}

var colonizeSteps = []string{"connect", "host key", "authenticate", "privilege", "detect", "preflight",
	"upload", "config", "identity", "join credential", "service", "wait for join"}

// colonizeBin is a static robonet for the targets (the suite's own build
// may link the host's C library).
var colonizeBin struct {
	once sync.Once
	path string
	err  error
}

func staticRobonet(t *testing.T) string {
	t.Helper()
	colonizeBin.once.Do(func() {
		dir, err := os.MkdirTemp("", binDirPrefix+strconv.Itoa(os.Getpid())+"-static-")
		if err != nil {
			colonizeBin.err = err
			return
		}
		colonizeBin.path, colonizeBin.err = goBuild(dir, "robonet", "./cmd/robonet", "")
	})
	if colonizeBin.err != nil {
		t.Fatal(colonizeBin.err)
	}
	return colonizeBin.path
}

// goBuild builds pkg statically into dir/name, with extra -ldflags.
func goBuild(dir, name, pkg, ldflags string) (string, error) {
	gomod, err := exec.Command("go", "env", "GOMOD").Output()
	if err != nil {
		return "", err
	}
	out := filepath.Join(dir, name)
	args := []string{"build", "-o", out}
	if ldflags != "" {
		args = append(args, "-ldflags", ldflags)
	}
	cmd := exec.Command("go", append(args, pkg)...)
	cmd.Dir = filepath.Dir(strings.TrimSpace(string(gomod)))
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if b, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("go build %s: %v\n%s", pkg, err, b)
	}
	return out, nil
}

// colonizeArgs are the SSH flags for a target: the suite's client key and a
// known_hosts file in dir (written by --accept-new unless the test wrote one).
func colonizeArgs(t *testing.T, tg *target, dir string, user string) []string {
	return append(sshArgs(t, tg, dir, user), "--binary", staticRobonet(t))
}

// sshArgs are colonizeArgs without the binary, for uncolonize.
func sshArgs(t *testing.T, tg *target, dir string, user string) []string {
	priv, _ := clientKey(t)
	if user == "" {
		user = "root"
	}
	return []string{user + "@" + tg.IP, "--key", priv, "--ssh-config", "none",
		"--known-hosts", filepath.Join(dir, "known_hosts")}
}

// colonize runs robonet colonize (or uncolonize) --json and collects its events.
func (c *controller) colonize(verb, stdin string, args ...string) colRun {
	c.t.Helper()
	began := time.Now()
	out, errs, code := c.cli(stdin, append([]string{verb, "--json"}, args...)...)
	r := colRun{stderr: errs, code: code, took: time.Since(began)}
	sc := bufio.NewScanner(strings.NewReader(out))
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		var e colEvent
		if err := json.Unmarshal(sc.Bytes(), &e); err != nil {
			c.t.Fatalf("%s --json printed a line that is not an event: %q", verb, sc.Text())
		}
		r.events = append(r.events, e)
	}
	return r
}

// member is the controller's view of a node by key.
func (c *controller) member(pubkey string) (chevron, state string) {
	var members []struct {
		Chevron string `json:"chevron"`
		Pubkey  string `json:"pubkey"`
		State   string `json:"state"`
	}
	if err := c.cliJSON(&members, "nodes"); err != nil {
		c.t.Fatal(err)
	}
	for _, m := range members {
		if m.Pubkey == pubkey {
			return m.Chevron, m.State
		}
	}
	return "", ""
}

// watchCmdlines scans every process's command line and environment on the
// target until stop is closed, and reports any that held a join token.
func watchCmdlines(t *testing.T, tg *target, stop <-chan struct{}) <-chan []string {
	found := make(chan []string, 1)
	go func() {
		var hits []string
		scans := 0
		for {
			out, _ := tg.tryExec(`for p in /proc/[0-9]*; do tr '\0' ' ' < $p/cmdline 2>/dev/null; echo; tr '\0' '\n' < $p/environ 2>/dev/null; done`)
			scans++
			for _, l := range strings.Split(out, "\n") {
				if strings.Contains(l, "rntok_") && !slices.Contains(hits, l) {
					hits = append(hits, l)
				}
			}
			select {
			case <-stop:
				t.Logf("%s: scanned every process's argv and environment %d times during colonize", tg.Name, scans)
				found <- hits
				return
			default:
			}
		}
	}()
	return found
}

func requireSteps(t *testing.T, r colRun, want map[string]string) {
	t.Helper()
	got := r.results()
	for step, status := range want {
		if got[step].Status != status {
			t.Errorf("step %q: %q, want %q\n%s", step, got[step].Status, status, r)
			return
		}
	}
}

// TestColonizeBareHostJoinsRerunsUnchangedAndUncolonizeLeavesNothing is the
// life of one host: colonize (token never in a command line), rerun (no
// byte uploaded, every step unchanged, no file rewritten), uncolonize (the
// file list as before, the key revoked).
func TestColonizeBareHostJoinsRerunsUnchangedAndUncolonizeLeavesNothing(t *testing.T) {
	for _, tc := range []struct {
		name string
		o    targetOpts
		user string
	}{
		{"systemd-sudo", targetOpts{Systemd: true, User: "pi", Sudo: "nopasswd"}, "pi"},
		{"no-systemd-root-noexec-tmp", targetOpts{NoexecTmp: true}, ""},
		{"dropbear", targetOpts{Dropbear: true}, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := startController(t)
			tg := startTarget(t, tc.o)
			before := tg.files(t)
			dir := t.TempDir()
			args := append(colonizeArgs(t, tg, dir, tc.user), "--accept-new", "--caps", "camera", "--tags", "site=lab")

			stop := make(chan struct{})
			hits := watchCmdlines(t, tg, stop)
			first := c.colonize("colonize", "", args...)
			close(stop)
			if tokens := <-hits; len(tokens) > 0 {
				t.Errorf("a join token was on a command line or in an environment on the target: %q", tokens)
			}
			if first.code != 0 {
				t.Fatalf("colonize: exit %d\n%s", first.code, first)
			}
			res := first.results()
			for _, s := range colonizeSteps {
				if st := res[s].Status; st != "ok" && st != "changed" && st != "unchanged" {
					t.Errorf("step %q: %q after a first colonize\n%s", s, st, first)
				}
			}
			requireSteps(t, first, map[string]string{"host key": "changed", "upload": "changed", "config": "changed",
				"identity": "changed", "join credential": "changed", "service": "changed", "wait for join": "ok", "done": "changed"})
			pub := res["identity"].Pubkey
			chev, state := c.member(pub)
			if state != "alive" || chev == "" {
				t.Fatalf("node %s after colonize: chevron %q state %q", pub, chev, state)
			}
			record(t, "colonize: bare host to live node", first.took, "≤ 10s")
			if got := tg.exec(t, "stat -c %a /etc/robonet/robonet.conf; test -e /etc/robonet/join.token && echo token-left || echo token-gone"); got != "600\ntoken-gone\n" {
				t.Errorf("config mode and token after joining: %q", got)
			}
			stamp := tg.exec(t, "stat -c '%i %Y' /usr/local/bin/robonet /etc/robonet/robonet.conf")

			again := c.colonize("colonize", "", args...)
			if again.code != 0 {
				t.Fatalf("rerun: exit %d\n%s", again.code, again)
			}
			for _, s := range colonizeSteps {
				if again.results()[s].Status != "unchanged" {
					t.Errorf("rerun: step %q %q, want unchanged\n%s", s, again.results()[s].Status, again)
				}
			}
			if b := again.results()["done"].Bytes; b != 0 {
				t.Errorf("rerun uploaded %d bytes", b)
			}
			if s := tg.exec(t, "stat -c '%i %Y' /usr/local/bin/robonet /etc/robonet/robonet.conf"); s != stamp {
				t.Errorf("rerun rewrote files: %q then %q", stamp, s)
			}
			record(t, "colonize: rerun on a colonized host", again.took, "≤ 2s")

			un := c.colonize("uncolonize", "", sshArgs(t, tg, dir, tc.user)...)
			if un.code != 0 {
				t.Fatalf("uncolonize: exit %d\n%s", un.code, un)
			}
			record(t, "uncolonize", un.took, "≤ 3s")
			after := tg.files(t)
			if d := diffLists(before, after); d != "" {
				t.Errorf("uncolonize left the host changed:\n%s", d)
			}
			if out, _ := tg.tryExec("ls -d /var/log/robonet.log /run/robonet.pid 2>/dev/null"); strings.TrimSpace(out) != "" {
				t.Errorf("uncolonize left %q", out)
			}
			requireSteps(t, un, map[string]string{"stop": "changed", "remove": "changed", "revoke": "changed"})
			poll(t, 10*time.Second, "the node's registration gone", func() error {
				if _, st := c.member(pub); st != "" {
					return fmt.Errorf("still registered (%s)", st)
				}
				return nil
			})
		})
	}
}

func diffLists(a, b []string) string {
	var out []string
	for _, x := range a {
		if !slices.Contains(b, x) {
			out = append(out, "- "+x)
		}
	}
	for _, x := range b {
		if !slices.Contains(a, x) {
			out = append(out, "+ "+x)
		}
	}
	return strings.Join(out, "\n")
}

// watchFor scans every process's argv and environment on the target for
// needle until stop is closed, and reports the lines that held it.
func watchFor(t *testing.T, tg *target, needle string, stop <-chan struct{}) <-chan []string {
	found := make(chan []string, 1)
	go func() {
		var hits []string
		for {
			out, _ := tg.tryExec(`for p in /proc/[0-9]*; do tr '\0' ' ' < $p/cmdline 2>/dev/null; echo; tr '\0' '\n' < $p/environ 2>/dev/null; done`)
			for _, l := range strings.Split(out, "\n") {
				// E2E_* is the harness's own setup of the container (the
				// user's password among it), not something colonize passed.
				if strings.Contains(l, needle) && !strings.HasPrefix(l, "E2E_") && !slices.Contains(hits, l) {
					hits = append(hits, l)
				}
			}
			select {
			case <-stop:
				found <- hits
				return
			default:
			}
		}
	}()
	return found
}

// TestColonizeWithASudoPasswordAndAWrongOne: a user whose sudo asks for a
// password. A wrong one is one clear error and nothing changes; the right
// one, given on stdin, never shows in any process's argv or environment.
func TestColonizeWithASudoPasswordAndAWrongOne(t *testing.T) {
	c := startController(t)
	const pw = "s3cret-Sudo-pw"
	tg := startTarget(t, targetOpts{User: "ops", Sudo: "password", Password: pw})
	before := tg.files(t)
	dir := t.TempDir()
	args := append(colonizeArgs(t, tg, dir, "ops"), "--accept-new", "--sudo-password-stdin")

	bad := c.colonize("colonize", "not-the-password\n", args...)
	if bad.code != 2 {
		t.Fatalf("wrong sudo password: exit %d, want 2\n%s", bad.code, bad)
	}
	priv := bad.results()["privilege"]
	if priv.Status != "failed" || !strings.Contains(priv.Error, "sudo refused the password") {
		t.Errorf("wrong sudo password: privilege step %+v", priv)
	}
	if got := tg.files(t); diffLists(before, got) != "" {
		t.Errorf("a refused password changed the host:\n%s", diffLists(before, got))
	}

	stop := make(chan struct{})
	hits := watchFor(t, tg, pw, stop)
	good := c.colonize("colonize", pw+"\n", args...)
	close(stop)
	if h := <-hits; len(h) > 0 {
		t.Errorf("the sudo password showed in a process's argv or environment: %q", h)
	}
	if good.code != 0 {
		t.Fatalf("colonize with the sudo password: exit %d\n%s", good.code, good)
	}
	if p := good.results()["privilege"]; !strings.Contains(p.Detail, "sudo password") {
		t.Errorf("privilege detail %q, want the sudo password mode", p.Detail)
	}
	if out, _ := tg.tryExec("grep -rl " + pw + " /etc /var/lib/robonet /usr/local/bin /root /home 2>/dev/null"); strings.TrimSpace(out) != "" {
		t.Errorf("the sudo password is on the target's disk: %s", out)
	}
	un := c.colonize("uncolonize", pw+"\n", append(sshArgs(t, tg, dir, "ops"), "--sudo-password-stdin")...)
	if un.code != 0 {
		t.Fatalf("uncolonize: exit %d\n%s", un.code, un)
	}
	if d := diffLists(before, tg.files(t)); d != "" {
		t.Errorf("uncolonize left the host changed:\n%s", d)
	}
}

// TestColonizeHostKeys: a changed key is refused with both fingerprints and
// the ssh-keygen -R remedy, and known_hosts is left alone; a pinned
// fingerprint needs no known_hosts; a host known only by its ECDSA key
// verifies although the server prefers Ed25519. --check changes nothing.
func TestColonizeHostKeys(t *testing.T) {
	c := startController(t)
	tg := startTarget(t, targetOpts{})
	before := tg.files(t)
	dir := t.TempDir()
	keys := tg.hostKeys(t)
	kh := filepath.Join(dir, "known_hosts")

	other := filepath.Join(dir, "other")
	if out, err := exec.Command("ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", other).CombinedOutput(); err != nil {
		t.Fatalf("ssh-keygen: %v %s", err, out)
	}
	pubOther, _ := os.ReadFile(other + ".pub")
	fields := strings.Fields(string(pubOther))
	stale := tg.IP + " " + fields[0] + " " + fields[1] + "\n"
	os.WriteFile(kh, []byte(stale), 0o600)
	r := c.colonize("colonize", "", append(colonizeArgs(t, tg, dir, ""), "--accept-new", "--check")...)
	hk := r.results()["host key"]
	if r.code != 2 || hk.Status != "failed" || !strings.Contains(hk.Remedy, "ssh-keygen -R") {
		t.Errorf("changed host key: exit %d, step %+v\n%s", r.code, hk, r)
	}
	if b, _ := os.ReadFile(kh); string(b) != stale {
		t.Errorf("known_hosts changed after a refused key: %q", b)
	}

	// Known only as ECDSA; the server offers Ed25519 first.
	os.WriteFile(kh, []byte(tg.IP+" "+keys["ecdsa"]+"\n"), 0o600)
	r = c.colonize("colonize", "", append(colonizeArgs(t, tg, dir, ""), "--check")...)
	if r.code != 0 || r.results()["host key"].Status != "unchanged" {
		t.Errorf("ecdsa-only known_hosts: exit %d\n%s", r.code, r)
	}
	// --check on a bare host: what would change, with the config's diff.
	res := r.results()
	if res["upload"].Status != "changed" || !strings.HasPrefix(res["upload"].Detail, "would upload") {
		t.Errorf("--check upload: %+v", res["upload"])
	}
	var diff string
	for _, e := range r.events {
		if e.Diff != "" && strings.Contains(e.Diff, "/etc/robonet/robonet.conf") {
			diff = e.Diff
		}
	}
	if !strings.Contains(diff, "+token-file = /etc/robonet/join.token") {
		t.Errorf("--check printed no config diff: %q", diff)
	}

	// Pinned: no known_hosts needed; a wrong pin is refused.
	os.Remove(kh)
	fp := fingerprint(t, keys["ed25519"])
	r = c.colonize("colonize", "", append(colonizeArgs(t, tg, dir, ""), "--host-key", fp, "--check")...)
	if r.code != 0 {
		t.Errorf("pinned %s: exit %d\n%s", fp, r.code, r)
	}
	r = c.colonize("colonize", "", append(colonizeArgs(t, tg, dir, ""), "--host-key", fingerprint(t, fields[0]+" "+fields[1]), "--check")...)
	if r.code != 2 || r.results()["host key"].Status != "failed" {
		t.Errorf("wrong pin: exit %d\n%s", r.code, r)
	}
	if d := diffLists(before, tg.files(t)); d != "" {
		t.Errorf("--check changed the host:\n%s", d)
	}
}

// fingerprint is ssh-keygen's SHA256 fingerprint of "algo base64".
func fingerprint(t *testing.T, key string) string {
	t.Helper()
	cmd := exec.Command("ssh-keygen", "-l", "-E", "sha256", "-f", "-")
	cmd.Stdin = strings.NewReader(key + "\n")
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("ssh-keygen -l: %v", err)
	}
	f := strings.Fields(string(out))
	if len(f) < 2 {
		t.Fatalf("ssh-keygen -l printed %q", out)
	}
	return f[1]
}

// TestColonizeUpgradesARunningNodeAndRollsBackABrokenBuild: a new build
// replaces the running binary (no "text file busy") and the node restarts
// with the same key; a build that cannot start is rolled back to the one
// that ran, which runs again.
func TestColonizeUpgradesARunningNodeAndRollsBackABrokenBuild(t *testing.T) {
	c := startController(t)
	tg := startTarget(t, targetOpts{Systemd: true})
	dir := t.TempDir()
	first := c.colonize("colonize", "", append(colonizeArgs(t, tg, dir, ""), "--accept-new")...)
	if first.code != 0 {
		t.Fatalf("colonize: exit %d\n%s", first.code, first)
	}
	pub := first.results()["identity"].Pubkey

	bdir := t.TempDir()
	buildB, err := goBuild(bdir, "robonet-b", "./cmd/robonet", "-s -w")
	if err != nil {
		t.Fatal(err)
	}
	up := c.colonize("colonize", "", append(colonizeArgs(t, tg, dir, ""), "--binary", buildB)...)
	if up.code != 0 {
		t.Fatalf("upgrade: exit %d\n%s", up.code, up)
	}
	requireSteps(t, up, map[string]string{"upload": "changed", "identity": "unchanged", "join credential": "unchanged", "service": "changed", "wait for join": "ok"})
	if up.results()["identity"].Pubkey != pub {
		t.Errorf("the upgrade changed the node key")
	}
	sumB := sha256File(t, buildB)
	if got := strings.Fields(tg.exec(t, "sha256sum /usr/local/bin/robonet"))[0]; got != sumB {
		t.Errorf("after the upgrade the target runs %s, want %s", got, sumB)
	}

	fail, err := goBuild(bdir, "failnode", "./e2e/testdata/failnode", "")
	if err != nil {
		t.Fatal(err)
	}
	bad := c.colonize("colonize", "", append(colonizeArgs(t, tg, dir, ""), "--binary", fail, "--wait", "20s")...)
	if bad.code != 2 {
		t.Fatalf("broken build: exit %d, want 2\n%s", bad.code, bad)
	}
	if rb := bad.results()["rollback"]; rb.Status != "changed" {
		t.Errorf("broken build: rollback %+v\n%s", rb, bad)
	}
	if got := strings.Fields(tg.exec(t, "sha256sum /usr/local/bin/robonet"))[0]; got != sumB {
		t.Errorf("after the rollback the target has %s, want the build that ran (%s)", got, sumB)
	}
	poll(t, 30*time.Second, "the rolled-back node live again", func() error {
		if _, st := c.member(pub); st != "alive" {
			return fmt.Errorf("state %q", st)
		}
		return nil
	})
	again := c.colonize("colonize", "", append(colonizeArgs(t, tg, dir, ""), "--binary", buildB)...)
	if again.code != 0 || again.results()["done"].Status != "ok" {
		t.Errorf("rerun after the rollback: exit %d\n%s", again.code, again)
	}
}

func sha256File(t *testing.T, path string) string {
	t.Helper()
	out, err := exec.Command("sha256sum", path).Output()
	if err != nil {
		t.Fatal(err)
	}
	return strings.Fields(string(out))[0]
}

// TestColonizeKilledAtEachStepConverges kills the CLI (SIGKILL) as each
// step from privilege to service reports, then reruns: the rerun must
// bring the node up, and uncolonize must still leave the host as it was.
func TestColonizeKilledAtEachStepConverges(t *testing.T) {
	c := startController(t)
	tg := startTarget(t, targetOpts{})
	before := tg.files(t)
	dir := t.TempDir()
	args := append(colonizeArgs(t, tg, dir, ""), "--accept-new")
	for _, step := range colonizeSteps[3:11] {
		c.killAt(step, args)
		r := c.colonize("colonize", "", args...)
		if r.code != 0 {
			t.Fatalf("rerun after a kill at %q: exit %d\n%s", step, r.code, r)
		}
		un := c.colonize("uncolonize", "", sshArgs(t, tg, dir, "")...)
		if un.code != 0 {
			t.Fatalf("uncolonize after a kill at %q: exit %d\n%s", step, un.code, un)
		}
		if d := diffLists(before, tg.files(t)); d != "" {
			t.Fatalf("kill at %q, rerun, uncolonize: the host is changed:\n%s", step, d)
		}
	}
}

// killAt runs colonize and SIGKILLs it when step reports.
func (c *controller) killAt(step string, args []string) {
	c.t.Helper()
	cmd := exec.Command(robonetBin, append([]string{"--server", c.server, "--data", c.data0, "colonize", "--json"}, args...)...)
	cmd.Env = append(childEnv(), "HOME="+c.dir, "SSH_AUTH_SOCK=")
	out, err := cmd.StdoutPipe()
	if err != nil {
		c.t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		c.t.Fatal(err)
	}
	sc := bufio.NewScanner(out)
	killed := false
	for sc.Scan() {
		var e colEvent
		if json.Unmarshal(sc.Bytes(), &e) == nil && e.Step == step && e.Status != "running" {
			_ = cmd.Process.Kill()
			killed = true
			break
		}
	}
	_ = cmd.Wait()
	if !killed {
		c.t.Logf("colonize ended before step %q reported", step)
	}
}

// TestColonizeManyHostsFromAFileRecapsEachHost: three hosts colonized in
// parallel from a --hosts file (one with its own caps and tags) and a
// fourth that does not answer: the recap names each, the totals count the
// unreachable one, and the exit status is 2.
func TestColonizeManyHostsFromAFileRecapsEachHost(t *testing.T) {
	c := startController(t)
	var tgs []*target
	for range 3 {
		tgs = append(tgs, startTarget(t, targetOpts{}))
	}
	dir := t.TempDir()
	hosts := "# a fleet\n" + "root@" + tgs[0].IP + "\n" + "root@" + tgs[1].IP + " caps=camera tags=site=roof\n" +
		"root@" + tgs[2].IP + ":22\n" + "root@172.30.57.250   # nobody there\n"
	hf := filepath.Join(dir, "fleet.txt")
	os.WriteFile(hf, []byte(hosts), 0o600)
	priv, _ := clientKey(t)
	out, errs, code := c.cli("", "colonize", "--hosts", hf, "--parallel", "32", "--key", priv, "--ssh-config", "none",
		"--known-hosts", filepath.Join(dir, "known_hosts"), "--accept-new", "--binary", staticRobonet(t), "--connect-timeout", "2s")
	t.Cleanup(func() {
		if t.Failed() {
			for _, tg := range tgs {
				logs, _ := tg.tryExec("tail -n 40 /var/log/robonet.log")
				t.Logf("%s node log (tail):\n%s", tg.IP, logs)
			}
		}
	})
	if code != 2 {
		t.Fatalf("exit %d, want 2 (one host unreachable)\n%s\n%s", code, out, errs)
	}
	if !strings.Contains(out, "hosts=4 ok=0 changed=3 failed=0 unreachable=1") {
		t.Errorf("recap totals wrong:\n%s", out)
	}
	for _, tg := range tgs {
		if !regexpMatch(`(?m)^root@`+regexpQuote(tg.IP)+`(:22)? +: ok=.*joined as \S+`, out) {
			t.Errorf("no recap line saying %s joined:\n%s", tg.IP, out)
		}
	}
	if !regexpMatch(`(?m)^root@172\.30\.57\.250 +: .*UNREACHABLE`, out) {
		t.Errorf("the unreachable host is not named:\n%s", out)
	}
	var members []struct {
		Caps []string          `json:"caps"`
		Tags map[string]string `json:"tags"`
	}
	if err := c.cliJSON(&members, "nodes"); err != nil {
		t.Fatal(err)
	}
	roof := 0
	for _, m := range members {
		if m.Tags["site"] == "roof" && slices.Contains(m.Caps, "camera") {
			roof++
		}
	}
	if len(members) != 5 || roof != 1 {
		t.Errorf("after the fleet: %d members, %d with the line's caps and tags; want 5 and 1", len(members), roof)
	}
}

func regexpMatch(re, s string) bool { return regexp.MustCompile(re).MatchString(s) }

func regexpQuote(s string) string { return regexp.QuoteMeta(s) }

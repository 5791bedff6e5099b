//go:build e2e

package e2e

import (
	"bufio"
	"bytes"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/pem"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"
)

// Target hosts are Docker containers of the image e2e/target/build makes (a
// debootstrapped Debian bookworm with OpenSSH, Dropbear, sudo and systemd;
// nothing is pulled), on a bridge network of their own, so a colonize test
// gets real SSH servers with their own addresses. The host's side of the
// bridge (gatewayIP) is where a controller node of the test listens for
// colonized nodes to join.
const (
	targetImage   = "robonet-e2e-target"
	targetNetwork = "robonet-e2e"
	// targetSubnet is the network's subnet when this suite creates it; one
	// made earlier keeps its own (gatewayIP reads it back).
	targetSubnet  = "172.30.57.0/24"
	targetGateway = "172.30.57.1"
	// targetLabel marks the suite's containers with the test process's pid,
	// so the containers of a run that died can be recognised and removed.
	targetLabel = "robonet-e2e.pid"
	// targetReady bounds a container's start until its SSH banner.
	targetReady = 60 * time.Second
)

// targetOpts says how a target host is set up. The zero value is root only,
// OpenSSH as PID 1's child, key logins only, host keys ed25519, ecdsa, rsa.
type targetOpts struct {
	Dropbear     bool     // run dropbear instead of sshd
	Systemd      bool     // systemd as PID 1, the SSH server a unit (privileged container)
	NoexecTmp    bool     // /tmp a noexec tmpfs
	User         string   // login user to create ("" = root only)
	Sudo         string   // User's sudo: "none" (default) | "nopasswd" | "password"
	Password     string   // User's password, for password logins and sudo -S ("" = none)
	PasswordAuth bool     // allow password logins (not for root)
	HostKeyTypes []string // host key types, in sshd's HostKey order; default ed25519, ecdsa, rsa
}

func (o targetOpts) validate() error {
	switch o.Sudo {
	case "", "none", "nopasswd":
	case "password":
		if o.Password == "" {
			return fmt.Errorf("Sudo %q needs a Password", o.Sudo)
		}
	default:
		return fmt.Errorf("Sudo %q: want none, nopasswd or password", o.Sudo)
	}
	if o.User == "" && (o.Sudo != "" && o.Sudo != "none" || o.Password != "" || o.PasswordAuth) {
		return fmt.Errorf("Sudo, Password and PasswordAuth are for a User, and none is set")
	}
	if o.User == "root" {
		return fmt.Errorf("User root: root always exists; leave User empty")
	}
	for _, k := range o.HostKeyTypes {
		if k != "ed25519" && k != "ecdsa" && k != "rsa" {
			return fmt.Errorf("HostKeyTypes %q: want ed25519, ecdsa or rsa", k)
		}
	}
	return nil
}

// target is one running target host.
type target struct {
	Name string // container name, also its hostname
	IP   string // address on the targets' network
	Port int    // SSH port
	User string // targetOpts.User
	opts targetOpts
}

// targets holds what every target of this test binary shares, set once by
// requireDocker and read-only afterwards.
var targets struct {
	once    sync.Once
	problem string // why targets cannot run here; "" if they can
	broken  bool   // problem is a failure even outside CI (a build that failed)
	image   string // robonet-e2e-target:<hash of e2e/target/build>
	gateway string // the host's address on the targets' network
	keyDir  string // the client key's temp dir
	keyPriv string // client private key file
	keyPub  string // its authorized_keys line
	seq     atomic.Int64
}

// requireDocker skips the test when this machine cannot run target
// containers (no docker, not root to build the image), or fails it when
// CI=true or when the image build failed. The first call builds the image
// through e2e/target/build when it is missing, makes the network and the
// client key.
func requireDocker(t *testing.T) {
	t.Helper()
	targets.once.Do(setupTargets)
	if targets.problem == "" {
		return
	}
	if targets.broken {
		t.Fatalf("target hosts: %s", targets.problem)
	}
	if os.Getenv("CI") == "true" {
		t.Fatalf("target hosts need docker and the target image: %s (CI=true: failing instead of skipping)", targets.problem)
	}
	t.Skipf("target hosts need docker and the target image: %s", targets.problem)
}

func setupTargets() {
	if _, err := exec.LookPath("docker"); err != nil {
		targets.problem = "`docker` not found"
		return
	}
	if out, err := exec.Command("docker", "info", "--format", "{{.ServerVersion}}").CombinedOutput(); err != nil {
		targets.problem = fmt.Sprintf("docker engine not reachable: %v: %s", err, bytes.TrimSpace(out))
		return
	}
	removeStaleTargets()
	script, err := filepath.Abs(filepath.Join("target", "build"))
	if err != nil {
		targets.problem = err.Error()
		return
	}
	data, err := os.ReadFile(script)
	if err != nil {
		targets.problem, targets.broken = err.Error(), true
		return
	}
	sum := sha256.Sum256(data)
	targets.image = targetImage + ":" + hex.EncodeToString(sum[:])[:12]
	if exec.Command("docker", "image", "inspect", targets.image).Run() != nil {
		if os.Geteuid() != 0 {
			targets.problem = fmt.Sprintf("image %s missing, and building it needs root", targets.image)
			return
		}
		began := time.Now()
		fmt.Fprintf(os.Stderr, "e2e: building %s with %s\n", targets.image, script)
		cmd := exec.Command("bash", script)
		cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
		if err := cmd.Run(); err != nil {
			targets.problem, targets.broken = fmt.Sprintf("%s: %v", script, err), true
			return
		}
		fmt.Fprintf(os.Stderr, "e2e: built %s in %s\n", targets.image, time.Since(began).Round(time.Millisecond))
	}
	if targets.gateway, err = ensureTargetNetwork(); err != nil {
		targets.problem, targets.broken = err.Error(), true
		return
	}
	if err := makeClientKey(); err != nil {
		targets.problem, targets.broken = err.Error(), true
	}
}

// ensureTargetNetwork creates the targets' bridge network unless it exists
// (another run may be making it at the same moment) and returns its gateway.
func ensureTargetNetwork() (string, error) {
	inspect := func() (string, error) {
		out, err := exec.Command("docker", "network", "inspect", targetNetwork,
			"--format", "{{range .IPAM.Config}}{{.Gateway}} {{end}}").Output()
		if err != nil {
			return "", err
		}
		f := strings.Fields(string(out))
		if len(f) == 0 || net.ParseIP(f[0]) == nil {
			return "", fmt.Errorf("docker network %s has no gateway: %q", targetNetwork, out)
		}
		return f[0], nil
	}
	if gw, err := inspect(); err == nil {
		return gw, nil
	}
	// Internal: nothing on it reaches beyond this machine, while the host
	// still reaches the containers, and they reach the host's gateway address.
	out, err := exec.Command("docker", "network", "create", "--driver", "bridge", "--internal",
		"--subnet", targetSubnet, "--gateway", targetGateway,
		"-o", "com.docker.network.bridge.name=rne2e-targets", targetNetwork).CombinedOutput()
	if gw, ierr := inspect(); ierr == nil {
		return gw, nil
	}
	return "", fmt.Errorf("docker network create %s: %v: %s", targetNetwork, err, bytes.TrimSpace(out))
}

// makeClientKey writes the ed25519 key every target authorizes for root and
// its user into a temp dir of this run (removed by cleanupTargets).
func makeClientKey() error {
	dir, err := os.MkdirTemp("", binDirPrefix+strconv.Itoa(os.Getpid())+"-key-")
	if err != nil {
		return err
	}
	pub, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		return err
	}
	block, err := ssh.MarshalPrivateKey(priv, "robonet-e2e")
	if err != nil {
		return err
	}
	sshPub, err := ssh.NewPublicKey(pub)
	if err != nil {
		return err
	}
	targets.keyDir = dir
	targets.keyPriv = filepath.Join(dir, "id_ed25519")
	targets.keyPub = strings.TrimSpace(string(ssh.MarshalAuthorizedKey(sshPub))) + " robonet-e2e"
	if err := os.WriteFile(targets.keyPriv, pem.EncodeToMemory(block), 0o600); err != nil {
		return err
	}
	return os.WriteFile(targets.keyPriv+".pub", []byte(targets.keyPub+"\n"), 0o644)
}

// cleanupTargets removes the client key; TestMain calls it at the end of the
// run. Containers go in each test's cleanup.
func cleanupTargets() {
	if targets.keyDir != "" {
		_ = os.RemoveAll(targets.keyDir)
	}
}

// removeStaleTargets removes the containers of runs of this suite whose test
// process is gone.
func removeStaleTargets() {
	out, err := exec.Command("docker", "ps", "-a", "--filter", "label="+targetLabel,
		"--format", `{{.ID}} {{.Label "`+targetLabel+`"}}`).Output()
	if err != nil {
		return
	}
	for _, line := range strings.Split(string(out), "\n") {
		f := strings.Fields(line)
		if len(f) != 2 {
			continue
		}
		pid, _ := strconv.Atoi(f[1])
		if pid == os.Getpid() || suiteAlive(pid) {
			continue
		}
		_ = exec.Command("docker", "rm", "-f", "-v", f[0]).Run()
		fmt.Fprintf(os.Stderr, "e2e: removed stale target container %s (run %d)\n", f[0], pid)
	}
}

// clientKey returns the private key file and the authorized_keys line of the
// key every target authorizes for root and its user.
func clientKey(t *testing.T) (privPath, pubLine string) {
	t.Helper()
	requireDocker(t)
	return targets.keyPriv, targets.keyPub
}

// gatewayIP is the host's address on the targets' network: a listener there
// (a controller node of the test) is reachable from every target. It is ""
// when targets cannot run here (requireDocker says why).
func gatewayIP() string {
	targets.once.Do(setupTargets)
	return targets.gateway
}

// startTarget starts a target host and waits until its SSH server sends its
// banner; the container is removed in t.Cleanup.
func startTarget(t *testing.T, o targetOpts) *target {
	t.Helper()
	requireDocker(t)
	if err := o.validate(); err != nil {
		t.Fatalf("startTarget: %v", err)
	}
	keys := o.HostKeyTypes
	if len(keys) == 0 {
		keys = []string{"ed25519", "ecdsa", "rsa"}
	}
	sshd := "openssh"
	if o.Dropbear {
		sshd = "dropbear"
	}
	tg := &target{
		Name: fmt.Sprintf("rne2e-%d-t%d", os.Getpid(), targets.seq.Add(1)),
		Port: 22, User: o.User, opts: o,
	}
	args := []string{"run", "-d", "--name", tg.Name, "--hostname", tg.Name,
		"--network", targetNetwork, "--label", targetLabel + "=" + strconv.Itoa(os.Getpid()),
		"-e", "E2E_SSHD=" + sshd, "-e", "E2E_HOSTKEYS=" + strings.Join(keys, " "),
		"-e", "E2E_AUTHORIZED=" + targets.keyPub,
		"-e", "E2E_USER=" + o.User, "-e", "E2E_SUDO=" + o.Sudo, "-e", "E2E_PASSWORD=" + o.Password,
	}
	if o.PasswordAuth {
		args = append(args, "-e", "E2E_PASSWORD_AUTH=1")
	}
	if o.NoexecTmp {
		args = append(args, "--tmpfs", "/tmp:rw,noexec,nosuid,nodev,mode=1777,size=64m")
	}
	if o.Systemd {
		// systemd needs the cgroup tree, writable, and its own /run. The
		// host's cgroup namespace keeps it inside the container's own
		// cgroup (with a private one on cgroup v1 it makes its slices at the
		// machine's root); SYS_ADMIN instead of --privileged, which this
		// machine refuses (its Docker lacks CAP_SYS_RESOURCE to hand out).
		args = append(args, "-e", "E2E_SYSTEMD=1", "--cap-add", "SYS_ADMIN", "--cgroupns=host",
			"-v", "/sys/fs/cgroup:/sys/fs/cgroup:rw", "--tmpfs", "/run", "--tmpfs", "/run/lock")
	} else {
		// docker-init as PID 1 reaps what a non-systemd install leaves running.
		args = append(args, "--init")
	}
	args = append(args, targets.image)

	began := time.Now()
	t.Cleanup(func() { _ = exec.Command("docker", "rm", "-f", "-v", tg.Name).Run() })
	if out, err := exec.Command("docker", args...).CombinedOutput(); err != nil {
		t.Fatalf("docker run %s: %v: %s", tg.Name, err, bytes.TrimSpace(out))
	}
	out, err := exec.Command("docker", "inspect", "--format",
		`{{(index .NetworkSettings.Networks "`+targetNetwork+`").IPAddress}}`, tg.Name).Output()
	if err != nil || net.ParseIP(strings.TrimSpace(string(out))) == nil {
		t.Fatalf("docker inspect %s: no address on %s: %v %q", tg.Name, targetNetwork, err, out)
	}
	tg.IP = strings.TrimSpace(string(out))
	if err := tg.waitBanner(targetReady); err != nil {
		logs, _ := exec.Command("docker", "logs", "--tail", "40", tg.Name).CombinedOutput()
		t.Fatalf("target %s (%s): %v\n%s", tg.Name, tg.IP, err, logs)
	}
	mode, goal := sshd, "2s"
	if o.Systemd {
		mode, goal = sshd+"+systemd", "5s"
	}
	record(t, "target start to SSH banner ("+mode+")", time.Since(began), goal)
	return tg
}

// waitBanner polls the SSH port until the server sends its "SSH-" line, or
// fails when the container stops or the time is up.
func (tg *target) waitBanner(timeout time.Duration) error {
	addr := net.JoinHostPort(tg.IP, strconv.Itoa(tg.Port))
	deadline := time.Now().Add(timeout)
	var last error
	for time.Now().Before(deadline) {
		if banner, err := readBanner(addr); err == nil {
			if strings.HasPrefix(banner, "SSH-") {
				return nil
			}
			last = fmt.Errorf("banner %q", banner)
		} else {
			last = err
		}
		out, _ := exec.Command("docker", "inspect", "--format", "{{.State.Running}}", tg.Name).Output()
		if strings.TrimSpace(string(out)) != "true" {
			return fmt.Errorf("container stopped before its SSH server answered (last: %v)", last)
		}
		time.Sleep(20 * time.Millisecond) // poll pace, not a wait for something
	}
	return fmt.Errorf("no SSH banner on %s within %s: %v", addr, timeout, last)
}

// readBanner connects to addr and returns the first line it sends.
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

// exec runs cmd with sh -c in the target as root and returns its stdout; it
// fails the test if cmd fails.
func (tg *target) exec(t *testing.T, cmd string) string {
	t.Helper()
	out, err := tg.tryExec(cmd)
	if err != nil {
		t.Fatalf("%s: %v", tg.Name, err)
	}
	return out
}

// tryExec runs cmd with sh -c in the target as root and returns its stdout;
// the error carries the exit status and stderr.
func (tg *target) tryExec(cmd string) (string, error) {
	var stdout, stderr bytes.Buffer
	c := exec.Command("docker", "exec", tg.Name, "sh", "-c", cmd)
	c.Stdout, c.Stderr = &stdout, &stderr
	if err := c.Run(); err != nil {
		return stdout.String(), fmt.Errorf("%q: %v: %s", cmd, err, bytes.TrimSpace(stderr.Bytes()))
	}
	return stdout.String(), nil
}

// hostKeys returns the target's public host keys by type ("ed25519",
// "ecdsa", "rsa"), each as "algorithm base64" (a known_hosts line without
// the host).
func (tg *target) hostKeys(t *testing.T) map[string]string {
	t.Helper()
	keys := map[string]string{}
	for _, line := range nonEmptyLines([]byte(tg.exec(t, "cat /run/e2e-target/host_keys"))) {
		algo, _, _ := strings.Cut(line, " ")
		switch {
		case algo == "ssh-ed25519":
			keys["ed25519"] = line
		case strings.HasPrefix(algo, "ecdsa-sha2-"):
			keys["ecdsa"] = line
		case algo == "ssh-rsa":
			keys["rsa"] = line
		default:
			t.Fatalf("%s: host key of unknown algorithm %q", tg.Name, algo)
		}
	}
	if len(keys) == 0 {
		t.Fatalf("%s: no host keys", tg.Name)
	}
	return keys
}

// knownHosts writes a known_hosts file holding every host key of the target
// under its address, in dir, and returns its path.
func (tg *target) knownHosts(t *testing.T, dir string) string {
	t.Helper()
	var b strings.Builder
	for _, k := range tg.hostKeys(t) {
		fmt.Fprintf(&b, "%s %s\n", tg.IP, k)
	}
	path := filepath.Join(dir, tg.Name+".known_hosts")
	if err := os.WriteFile(path, []byte(b.String()), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// snapshotSkips are the trees files leaves out: kernel and runtime file
// systems, scratch space, logs and caches, and the state that logging in and
// using sudo change by themselves (sudo's lecture marks, systemd's
// timestamps). What robonet installs, and what it must remove again, is
// elsewhere: /usr/local, /etc, /var/lib/robonet, home directories.
var snapshotSkips = []string{"/proc", "/sys", "/dev", "/run", "/tmp", "/var/tmp", "/var/log",
	"/var/cache", "/var/lib/apt", "/var/lib/sudo", "/var/lib/systemd", "/var/lib/private"}

// files returns every path on the target's root file system outside
// snapshotSkips, sorted, one line each: path, type, mode, owner, size, and
// the sha256 of regular files under 1 MiB (or a symlink's target). Two
// snapshots are equal when nothing was added, removed or changed.
func (tg *target) files(t *testing.T) []string {
	t.Helper()
	var prune []string
	for _, p := range snapshotSkips {
		prune = append(prune, "-path", p, "-o")
	}
	expr := "\\( " + strings.Join(prune[:len(prune)-1], " ") + " \\) -prune -o"
	script := "find / -xdev " + expr + ` -printf '%p\t%y %#m %U:%G %s %l\n' && echo --sums-- && ` +
		"find / -xdev " + expr + ` -type f -size -1024k -exec sha256sum {} +`
	out := tg.exec(t, script)
	list, sums, ok := strings.Cut(out, "--sums--\n")
	if !ok {
		t.Fatalf("%s: files: no sums in find's output", tg.Name)
	}
	sum := map[string]string{}
	for _, line := range nonEmptyLines([]byte(sums)) {
		if h, p, ok := strings.Cut(line, "  "); ok {
			sum[p] = h
		}
	}
	var files []string
	for _, line := range nonEmptyLines([]byte(list)) {
		p, attrs, _ := strings.Cut(line, "\t")
		entry := p + " " + strings.TrimSpace(attrs)
		if h, ok := sum[p]; ok {
			entry += " " + h
		}
		files = append(files, entry)
	}
	sort.Strings(files)
	return files
}

package colonize

// A harness that runs real OpenSSH and Dropbear servers on 127.0.0.1 for the
// transport tests: per-test host keys, authorized keys and config, a real
// throwaway local user for password tests, and an agent speaking the real
// agent protocol on a unix socket.

import (
	"bufio"
	"context"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"
	"golang.org/x/crypto/ssh/agent"
)

// unavailable skips a test whose prerequisite is missing, or fails it
// when CI=true: in CI a missing tool is a broken runner.
func unavailable(t *testing.T, format string, args ...any) {
	t.Helper()
	if os.Getenv("CI") == "true" {
		t.Fatalf("required in CI: "+format, args...)
	}
	t.Skipf(format, args...)
}

func needTool(t *testing.T, path string) {
	t.Helper()
	if _, err := os.Stat(path); err != nil {
		unavailable(t, "%s not found: %v", path, err)
	}
}

func run(t *testing.T, name string, args ...string) string {
	t.Helper()
	out, err := exec.Command(name, args...).CombinedOutput()
	if err != nil {
		t.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, out)
	}
	return string(out)
}

type sshdConfig struct {
	hostKeys      []string // key types for ssh-keygen -t, in the server's order; default ed25519
	authorized    []string // authorized_keys lines
	password      bool
	maxAuthTries  int
	hostKeyAlgos  string // HostKeyAlgorithms
	hostCertCA    string // path of a CA private key: sign the first host key with it
	hostCertPrinc string
}

type sshd struct {
	addr     string
	port     int
	dir      string
	hostPubs []ssh.PublicKey // in hostKeys order
	log      *syncBuffer
}

type syncBuffer struct {
	mu sync.Mutex // guards b
	b  strings.Builder
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

func freePort(t *testing.T) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

func hostKeyFiles(t *testing.T, dir string, types []string) ([]string, []ssh.PublicKey) {
	t.Helper()
	needTool(t, "/usr/bin/ssh-keygen")
	var paths []string
	var pubs []ssh.PublicKey
	for _, typ := range types {
		p := filepath.Join(dir, "ssh_host_"+typ+"_key")
		args := []string{"-q", "-t", typ, "-N", "", "-f", p, "-C", ""}
		if typ == "rsa" {
			args = append(args, "-b", "2048")
		}
		run(t, "/usr/bin/ssh-keygen", args...)
		paths = append(paths, p)
		pubs = append(pubs, readPub(t, p+".pub"))
	}
	return paths, pubs
}

func readPub(t *testing.T, path string) ssh.PublicKey {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	k, _, _, _, err := ssh.ParseAuthorizedKey(b)
	if err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	return k
}

// startSSHD runs /usr/sbin/sshd -D -e on a free 127.0.0.1 port and waits
// until it sends its banner.
func startSSHD(t *testing.T, c sshdConfig) *sshd {
	t.Helper()
	needTool(t, "/usr/sbin/sshd")
	if err := os.MkdirAll("/run/sshd", 0o755); err != nil { // sshd's privilege separation dir
		unavailable(t, "sshd needs /run/sshd: %v", err)
	}
	dir := t.TempDir()
	if len(c.hostKeys) == 0 {
		c.hostKeys = []string{"ed25519"}
	}
	keys, pubs := hostKeyFiles(t, dir, c.hostKeys)
	ak := filepath.Join(dir, "authorized_keys")
	if err := os.WriteFile(ak, []byte(strings.Join(c.authorized, "\n")+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	var cfg strings.Builder
	for _, k := range keys {
		fmt.Fprintf(&cfg, "HostKey %s\n", k)
	}
	if c.hostCertCA != "" {
		princ := c.hostCertPrinc
		if princ == "" {
			princ = "127.0.0.1"
		}
		run(t, "/usr/bin/ssh-keygen", "-q", "-s", c.hostCertCA, "-I", "test-host", "-h", "-n", princ, "-V", "-5m:+1h", keys[0]+".pub")
		fmt.Fprintf(&cfg, "HostCertificate %s-cert.pub\n", keys[0])
	}
	fmt.Fprintf(&cfg, "AuthorizedKeysFile %s\nStrictModes no\nPidFile none\nUsePAM no\nPermitRootLogin yes\n", ak)
	fmt.Fprintf(&cfg, "PasswordAuthentication %s\nKbdInteractiveAuthentication no\nLogLevel VERBOSE\n", yesNo(c.password))
	if c.maxAuthTries > 0 {
		fmt.Fprintf(&cfg, "MaxAuthTries %d\n", c.maxAuthTries)
	}
	if c.hostKeyAlgos != "" {
		fmt.Fprintf(&cfg, "HostKeyAlgorithms %s\n", c.hostKeyAlgos)
	}
	for try := 0; ; try++ {
		port := freePort(t)
		conf := filepath.Join(dir, "sshd_config")
		body := fmt.Sprintf("ListenAddress 127.0.0.1:%d\n%s", port, cfg.String())
		if err := os.WriteFile(conf, []byte(body), 0o600); err != nil {
			t.Fatal(err)
		}
		s := &sshd{addr: net.JoinHostPort("127.0.0.1", strconv.Itoa(port)), port: port, dir: dir, hostPubs: pubs, log: &syncBuffer{}}
		cmd := exec.Command("/usr/sbin/sshd", "-D", "-e", "-f", conf)
		if startServer(t, cmd, s, "sshd") {
			return s
		}
		if try == 4 {
			t.Fatalf("sshd did not start:\n%s", s.log)
		}
	}
}

func yesNo(b bool) string {
	if b {
		return "yes"
	}
	return "no"
}

// startServer starts cmd and waits for the SSH banner on s.addr; false means
// the server exited (a port taken in the meantime) and the caller retries.
func startServer(t *testing.T, cmd *exec.Cmd, s *sshd, name string) bool {
	t.Helper()
	cmd.Stdout, cmd.Stderr = s.log, s.log
	if err := cmd.Start(); err != nil {
		t.Fatalf("%s: %v", name, err)
	}
	exited := make(chan struct{})
	go func() { _ = cmd.Wait(); close(exited) }()
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		select {
		case <-exited:
			return false
		default:
		}
		if banner(s.addr) == nil {
			t.Cleanup(func() {
				_ = cmd.Process.Kill()
				<-exited
				if t.Failed() {
					t.Logf("%s log:\n%s", name, s.log)
				}
			})
			return true
		}
		time.Sleep(20 * time.Millisecond)
	}
	_ = cmd.Process.Kill()
	<-exited
	t.Fatalf("%s sent no banner within 10s:\n%s", name, s.log)
	return false
}

func banner(addr string) error {
	c, err := net.DialTimeout("tcp", addr, time.Second)
	if err != nil {
		return err
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(time.Second))
	line, err := bufio.NewReader(c).ReadString('\n')
	if err != nil {
		return err
	}
	if !strings.HasPrefix(line, "SSH-2.0-") {
		return fmt.Errorf("banner %q", line)
	}
	return nil
}

// startDropbear runs dropbear in the foreground with an ed25519 host key;
// it reads ~/.ssh/authorized_keys of the user logging in.
func startDropbear(t *testing.T) *sshd {
	t.Helper()
	needTool(t, "/usr/sbin/dropbear")
	needTool(t, "/usr/bin/dropbearkey")
	dir := t.TempDir()
	key := filepath.Join(dir, "dropbear_ed25519_host_key")
	out := run(t, "/usr/bin/dropbearkey", "-t", "ed25519", "-f", key)
	var pub ssh.PublicKey
	for _, l := range strings.Split(out, "\n") {
		if strings.HasPrefix(l, "ssh-ed25519 ") {
			var err error
			if pub, _, _, _, err = ssh.ParseAuthorizedKey([]byte(l)); err != nil {
				t.Fatal(err)
			}
		}
	}
	if pub == nil {
		t.Fatalf("dropbearkey printed no public key:\n%s", out)
	}
	for try := 0; ; try++ {
		port := freePort(t)
		s := &sshd{addr: net.JoinHostPort("127.0.0.1", strconv.Itoa(port)), port: port, dir: dir, hostPubs: []ssh.PublicKey{pub}, log: &syncBuffer{}}
		cmd := exec.Command("/usr/sbin/dropbear", "-F", "-E", "-p", s.addr, "-r", key)
		if startServer(t, cmd, s, "dropbear") {
			return s
		}
		if try == 4 {
			t.Fatalf("dropbear did not start:\n%s", s.log)
		}
	}
}

// knownHosts writes a known_hosts file holding the server's keys (all of
// them, or those of the given types) and returns its path.
func (s *sshd) knownHosts(t *testing.T, types ...string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "known_hosts")
	var b strings.Builder
	for _, k := range s.hostPubs {
		if len(types) > 0 && !containsType(types, k.Type()) {
			continue
		}
		fmt.Fprintf(&b, "[127.0.0.1]:%d %s", s.port, ssh.MarshalAuthorizedKey(k))
	}
	if err := os.WriteFile(p, []byte(b.String()), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

func containsType(types []string, typ string) bool {
	for _, x := range types {
		if x == typ {
			return true
		}
	}
	return false
}

// clientKey writes a private key (encrypted when passphrase is set) and its
// .pub into dir and returns the path and the authorized_keys line.
func clientKey(t *testing.T, dir, typ, passphrase string) (string, string) {
	t.Helper()
	var priv any
	switch typ {
	case "ed25519":
		_, k, err := ed25519.GenerateKey(rand.Reader)
		if err != nil {
			t.Fatal(err)
		}
		priv = k
	case "ecdsa":
		k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		if err != nil {
			t.Fatal(err)
		}
		priv = k
	case "rsa":
		k, err := rsa.GenerateKey(rand.Reader, 2048)
		if err != nil {
			t.Fatal(err)
		}
		priv = k
	default:
		t.Fatalf("key type %s", typ)
	}
	var block *pem.Block
	var err error
	if passphrase == "" {
		block, err = ssh.MarshalPrivateKey(priv, "test")
	} else {
		block, err = ssh.MarshalPrivateKeyWithPassphrase(priv, "test", []byte(passphrase))
	}
	if err != nil {
		t.Fatal(err)
	}
	signer, err := ssh.NewSignerFromKey(priv)
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, "id_"+typ+randHex(t, 3))
	if err := os.WriteFile(path, pem.EncodeToMemory(block), 0o600); err != nil {
		t.Fatal(err)
	}
	line := strings.TrimSpace(string(ssh.MarshalAuthorizedKey(signer.PublicKey())))
	if err := os.WriteFile(path+".pub", []byte(line+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	return path, line
}

func randHex(t *testing.T, n int) string {
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return hex.EncodeToString(b)
}

// startAgent serves keyring on a unix socket with the real agent protocol.
func startAgent(t *testing.T, keys ...any) string {
	t.Helper()
	dir, err := os.MkdirTemp("", "rnag") // short: unix socket paths are limited to 108 bytes
	if err != nil {
		t.Fatal(err)
	}
	sock := filepath.Join(dir, "agent.sock")
	l, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	kr := agent.NewKeyring()
	for i, k := range keys {
		if err := kr.Add(agent.AddedKey{PrivateKey: k, Comment: fmt.Sprintf("key%d", i)}); err != nil {
			t.Fatal(err)
		}
	}
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			wg.Add(1)
			go func() {
				defer wg.Done()
				defer c.Close()
				_ = agent.ServeAgent(kr, c)
			}()
		}
	}()
	t.Cleanup(func() {
		l.Close()
		wg.Wait()
		os.RemoveAll(dir)
	})
	return sock
}

// throwawayUser creates a real local user rncol<random> with a password and
// a home directory, removed when the test ends.
func throwawayUser(t *testing.T, password string) (name, home string) {
	t.Helper()
	needTool(t, "/usr/sbin/useradd")
	needTool(t, "/usr/sbin/chpasswd")
	if os.Geteuid() != 0 {
		unavailable(t, "creating a throwaway user needs root")
	}
	name = "rncol" + randHex(t, 4)
	run(t, "/usr/sbin/useradd", "-m", "-s", "/bin/sh", name)
	t.Cleanup(func() {
		_ = exec.Command("/usr/sbin/userdel", "-r", "-f", name).Run()
	})
	cmd := exec.Command("/usr/sbin/chpasswd")
	cmd.Stdin = strings.NewReader(name + ":" + password + "\n")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("chpasswd: %v\n%s", err, out)
	}
	return name, "/home/" + name
}

// testOptions reads nothing from the real ~/.ssh: no config, a temp home,
// no agent, one attempt, and known_hosts given by the test.
func testOptions(t *testing.T, knownHosts string) SSHOptions {
	return SSHOptions{
		ConfigFile:       "none",
		KnownHosts:       []string{knownHosts},
		AgentSocket:      "none",
		Attempts:         1,
		HandshakeTimeout: 20 * time.Second,
		home:             t.TempDir(),
	}
}

func target(t *testing.T, s *sshd, user string) Target {
	return Target{User: user, Host: "127.0.0.1", Port: s.port}
}

// dialOK dials and fails the test unless all three steps passed.
func dialOK(t *testing.T, tg Target, o SSHOptions) (*Conn, []StepResult) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	c, steps, err := Dial(ctx, tg, o)
	if err != nil {
		t.Fatalf("Dial(%s): %v\nsteps: %+v", tg, err, steps)
	}
	t.Cleanup(func() { c.Close() })
	if len(steps) != 3 {
		t.Fatalf("steps = %+v, want connect, host key, authenticate", steps)
	}
	return c, steps
}

func whoami(t *testing.T, c *Conn) string {
	t.Helper()
	out, err := c.Output(context.Background(), "id -un", nil)
	if err != nil {
		t.Fatalf("id -un: %v", err)
	}
	return strings.TrimSpace(string(out))
}

var errNoAnswer = errors.New("no answer scripted")

// scriptedPrompter answers as a person at a terminal would; it records the
// questions asked.
type scriptedPrompter struct {
	mu        sync.Mutex // guards the fields below
	confirm   []bool
	secrets   []string
	questions []string
}

func (p *scriptedPrompter) Confirm(q string) (bool, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.questions = append(p.questions, q)
	if len(p.confirm) == 0 {
		return false, errNoAnswer
	}
	a := p.confirm[0]
	p.confirm = p.confirm[1:]
	return a, nil
}

func (p *scriptedPrompter) Secret(q string) ([]byte, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.questions = append(p.questions, q)
	if len(p.secrets) == 0 {
		return nil, errNoAnswer
	}
	a := p.secrets[0]
	p.secrets = p.secrets[1:]
	return []byte(a), nil
}

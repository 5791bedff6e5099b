package colonize

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// keyServer is an sshd that lets a fresh ed25519 key in as root, and the
// options that reach it.
func keyServer(t *testing.T) (*sshd, SSHOptions) {
	t.Helper()
	key, line := clientKey(t, t.TempDir(), "ed25519", "")
	s := startSSHD(t, sshdConfig{authorized: []string{line}})
	o := testOptions(t, s.knownHosts(t))
	o.KeyFiles = []string{key}
	return s, o
}

func TestDialHonoursSSHConfigHostNameUserPortIdentityFile(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	key, line := clientKey(t, dir, "ed25519", "")
	s := startSSHD(t, sshdConfig{authorized: []string{line}})
	cfg := filepath.Join(dir, "config")
	body := fmt.Sprintf("Host robot\n  HostName 127.0.0.1\n  User root\n  Port %d\n  IdentityFile %s\n  IdentitiesOnly yes\n", s.port, key)
	if err := os.WriteFile(cfg, []byte(body), 0o600); err != nil {
		t.Fatal(err)
	}
	o := testOptions(t, s.knownHosts(t))
	o.ConfigFile = cfg
	c, steps := dialOK(t, Target{Host: "robot"}, o)
	if c.Addr() != s.addr || c.User() != "root" {
		t.Errorf("Addr, User = %s, %s; want %s, root", c.Addr(), c.User(), s.addr)
	}
	if !strings.Contains(steps[2].Detail, key) {
		t.Errorf("authenticate detail = %q, want the IdentityFile", steps[2].Detail)
	}
}

func TestDialThroughProxyJumpFromSSHConfig(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	key, line := clientKey(t, dir, "ed25519", "")
	jump := startSSHD(t, sshdConfig{authorized: []string{line}})
	tgt := startSSHD(t, sshdConfig{authorized: []string{line}, hostKeys: []string{"ecdsa"}})
	kh := filepath.Join(dir, "known_hosts")
	both := readFile(t, jump.knownHosts(t)) + readFile(t, tgt.knownHosts(t))
	if err := os.WriteFile(kh, []byte(both), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg := filepath.Join(dir, "config")
	body := fmt.Sprintf("Host bastion\n  HostName 127.0.0.1\n  Port %d\n  User root\n\nHost robot\n  HostName 127.0.0.1\n  Port %d\n  ProxyJump bastion\n  IdentityFile %s\n",
		jump.port, tgt.port, key)
	if err := os.WriteFile(cfg, []byte(body), 0o600); err != nil {
		t.Fatal(err)
	}
	o := testOptions(t, kh)
	o.ConfigFile = cfg
	o.KeyFiles = []string{key}
	c, steps := dialOK(t, Target{Host: "robot", User: "root"}, o)
	if !strings.HasSuffix(steps[0].Detail, "via bastion") {
		t.Errorf("connect detail = %q, want … via bastion", steps[0].Detail)
	}
	if !strings.HasPrefix(steps[1].Detail, "ECDSA ") {
		t.Errorf("host key detail = %q, want the target's ECDSA key", steps[1].Detail)
	}
	if got := whoami(t, c); got != "root" {
		t.Errorf("id -un = %q", got)
	}
	if err := c.Close(); err != nil {
		t.Errorf("Close: %v", err)
	}

	// The jump host's key is checked too.
	o.KnownHosts = []string{tgt.knownHosts(t)}
	_, steps, err := Dial(context.Background(), Target{Host: "robot", User: "root"}, o)
	var hke *HostKeyError
	if !errors.As(err, &hke) || hke.Kind != "unknown" || !strings.Contains(err.Error(), "jump host bastion") {
		t.Fatalf("err = %v, want the jump host's key unknown", err)
	}
	if last := steps[len(steps)-1]; last.Step != "host key" || !strings.HasPrefix(last.Detail, "jump host bastion") {
		t.Errorf("last step = %+v", last)
	}
}

func readFile(t *testing.T, p string) string {
	t.Helper()
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// A listener that accepts and never sends a banner: the handshake timeout,
// not the TCP one, ends the dial.
func TestDialHandshakeTimeoutAgainstSilentListener(t *testing.T) {
	t.Parallel()
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
			defer c.Close()
		}
	}()
	o := testOptions(t, filepath.Join(t.TempDir(), "known_hosts"))
	o.HandshakeTimeout = 300 * time.Millisecond
	start := time.Now()
	_, steps, err := Dial(context.Background(), Target{Host: "127.0.0.1", Port: l.Addr().(*net.TCPAddr).Port}, o)
	if !errors.Is(err, ErrUnreachable) || !strings.Contains(err.Error(), "timed out") {
		t.Fatalf("err = %v, want ErrUnreachable timed out", err)
	}
	if took := time.Since(start); took > 5*time.Second {
		t.Errorf("took %s, want about 300ms", took)
	}
	if len(steps) != 1 || steps[0].Step != "connect" || steps[0].Status != "failed" {
		t.Errorf("steps = %+v", steps)
	}
}

func TestDialRefusedPortIsUnreachableAfterAttempts(t *testing.T) {
	t.Parallel()
	port := freePort(t) // closed again: connections are refused
	o := testOptions(t, filepath.Join(t.TempDir(), "known_hosts"))
	o.Attempts = 3
	start := time.Now()
	_, steps, err := Dial(context.Background(), Target{Host: "127.0.0.1", Port: port}, o)
	if !errors.Is(err, ErrUnreachable) || !strings.Contains(err.Error(), "(3 attempts)") {
		t.Fatalf("err = %v, want ErrUnreachable after 3 attempts", err)
	}
	if took := time.Since(start); took < 200*time.Millisecond {
		t.Errorf("took %s: the two backoffs of at least 100ms each are missing", took)
	}
	if len(steps) != 1 || steps[0].Err != err {
		t.Errorf("steps = %+v", steps)
	}
}

func TestDialDoesNotRetryAuthFailures(t *testing.T) {
	t.Parallel()
	s, o := keyServer(t)
	o.KeyFiles = nil
	o.Attempts = 3
	_, _, err := Dial(context.Background(), target(t, s, "root"), o)
	if !errors.Is(err, ErrAuth) || strings.Contains(err.Error(), "attempts") {
		t.Fatalf("err = %v, want ErrAuth without retries", err)
	}
}

func TestRunReturnsExitCodeAndStderrTail(t *testing.T) {
	t.Parallel()
	s, o := keyServer(t)
	c, _ := dialOK(t, target(t, s, "root"), o)
	ctx := context.Background()
	out, err := c.Output(ctx, "echo out; echo oops >&2; exit 3", nil)
	var ee *ExitError
	if !errors.As(err, &ee) || ee.Code != 3 || ee.Stderr != "oops\n" {
		t.Fatalf("err = %#v, want ExitError 3 with stderr oops", err)
	}
	if string(out) != "out\n" {
		t.Errorf("stdout = %q", out)
	}
	_, err = c.Output(ctx, "head -c 10000 /dev/zero | tr '\\0' x >&2; exit 1", nil)
	if !errors.As(err, &ee) || len(ee.Stderr) != 4096 {
		t.Errorf("err = %v, want the last 4 KiB of stderr", err)
	}
	if err := c.Run(ctx, "true", nil, nil, nil); err != nil {
		t.Errorf("true: %v", err)
	}
}

func TestRunStreamsLargeStdin(t *testing.T) {
	t.Parallel()
	s, o := keyServer(t)
	c, _ := dialOK(t, target(t, s, "root"), o)
	data := make([]byte, 8<<20)
	if _, err := rand.Read(data); err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256(data)
	out, err := c.Output(context.Background(), "sha256sum", bytes.NewReader(data))
	if err != nil {
		t.Fatal(err)
	}
	if got, want := strings.Fields(string(out))[0], hex.EncodeToString(sum[:]); got != want {
		t.Errorf("remote sha256 %s, want %s", got, want)
	}
}

func TestRunCancelEndsHungCommand(t *testing.T) {
	t.Parallel()
	s, o := keyServer(t)
	c, _ := dialOK(t, target(t, s, "root"), o)
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	start := time.Now()
	err := c.Run(ctx, "sleep 600", nil, nil, nil)
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("err = %v, want the context's", err)
	}
	if took := time.Since(start); took > 6*time.Second {
		t.Errorf("Run returned after %s", took)
	}
	// The connection is still usable.
	if got := whoami(t, c); got != "root" {
		t.Errorf("after cancel: id -un = %q", got)
	}
}

func TestRunAfterServerGoneIsErrConnLost(t *testing.T) {
	t.Parallel()
	s, o := keyServer(t)
	c, _ := dialOK(t, target(t, s, "root"), o)
	// Killing the session's sshd process tree drops the connection.
	err := c.Run(context.Background(), "kill -9 $PPID; sleep 5", nil, nil, nil)
	if !errors.Is(err, ErrConnLost) {
		t.Fatalf("err = %v, want ErrConnLost", err)
	}
	if err := c.Run(context.Background(), "true", nil, nil, nil); !errors.Is(err, ErrConnLost) {
		t.Errorf("next Run: err = %v, want ErrConnLost", err)
	}
}

func TestDropbearConnectAuthAndRunWithStdin(t *testing.T) {
	t.Parallel()
	user, home := throwawayUser(t, "unused-"+randHex(t, 8))
	key, line := clientKey(t, t.TempDir(), "ed25519", "")
	if err := os.MkdirAll(home+"/.ssh", 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(home+"/.ssh/authorized_keys", []byte(line+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	run(t, "chown", "-R", user+":", home+"/.ssh")
	s := startDropbear(t)
	o := testOptions(t, s.knownHosts(t))
	o.KeyFiles = []string{key}
	c, steps := dialOK(t, target(t, s, user), o)
	if steps[1].Status != "unchanged" {
		t.Errorf("host key step = %+v", steps[1])
	}
	out, err := c.Output(context.Background(), "wc -c; id -un", strings.NewReader(strings.Repeat("x", 100000)))
	if err != nil {
		t.Fatal(err)
	}
	if f := strings.Fields(string(out)); len(f) != 2 || f[0] != "100000" || f[1] != user {
		t.Errorf("output = %q, want 100000 and %s", out, user)
	}
	var ee *ExitError
	if _, err := c.Output(context.Background(), "exit 7", nil); !errors.As(err, &ee) || ee.Code != 7 {
		t.Errorf("exit 7: err = %v", err)
	}
}

//go:build e2e

package e2e

import (
	"bufio"
	"context"
	"fmt"
	"net"
	"os/exec"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

// sshTo runs cmd on the target as user with the system ssh client, the
// client key and a known_hosts of the target's host keys only (strict
// checking), feeding it stdin; it returns the combined output.
func sshTo(t *testing.T, tg *target, user, stdin, cmd string) (string, error) {
	t.Helper()
	priv, _ := clientKey(t)
	kh := tg.knownHosts(t, t.TempDir())
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	c := exec.CommandContext(ctx, "ssh", "-F", "/dev/null", "-i", priv, "-o", "IdentitiesOnly=yes",
		"-o", "BatchMode=yes", "-o", "UserKnownHostsFile="+kh, "-o", "GlobalKnownHostsFile=/dev/null",
		"-o", "StrictHostKeyChecking=yes", "-o", "ConnectTimeout=5", "-o", "LogLevel=ERROR",
		"-p", "22", user+"@"+tg.IP, cmd)
	c.Stdin = strings.NewReader(stdin)
	out, err := c.CombinedOutput()
	return strings.TrimSpace(string(out)), err
}

// TestTargetContainerBasics checks the target hosts the colonize tests stand
// on: a user with passwordless sudo reached with the system ssh client and
// strict host key checking, a Dropbear server, systemd as PID 1 with either
// server as a unit, a noexec /tmp, a user whose
// sudo wants a password, a file snapshot that only changes when a file does,
// and a listener on the host's gateway address reached from a target.
func TestTargetContainerBasics(t *testing.T) {
	if _, err := exec.LookPath("ssh"); err != nil {
		requireDocker(t) // fails under CI=true for docker; ssh is the next thing missing
		t.Skip("the system ssh client is not installed")
	}

	t.Run("OpenSSHUserWithNopasswdSudo", func(t *testing.T) {
		t.Parallel()
		tg := startTarget(t, targetOpts{User: "ops", Sudo: "nopasswd"})
		out, err := sshTo(t, tg, "ops", "", "id -un && sudo -n true && echo sudo-ok")
		if err != nil || out != "ops\nsudo-ok" {
			t.Fatalf("ssh ops@%s: %v: %q", tg.IP, err, out)
		}
		out, err = sshTo(t, tg, "root", "", "id -u")
		if err != nil || out != "0" {
			t.Fatalf("ssh root@%s: %v: %q", tg.IP, err, out)
		}
		if banner, _ := readBanner(tg.IP + ":22"); !strings.Contains(banner, "OpenSSH") {
			t.Errorf("banner %q, want OpenSSH's", banner)
		}
	})

	t.Run("Dropbear", func(t *testing.T) {
		t.Parallel()
		tg := startTarget(t, targetOpts{Dropbear: true, HostKeyTypes: []string{"ed25519", "ecdsa"}})
		if banner, _ := readBanner(tg.IP + ":22"); !strings.Contains(banner, "dropbear") {
			t.Errorf("banner %q, want dropbear's", banner)
		}
		keys := tg.hostKeys(t)
		if _, ok := keys["rsa"]; ok || len(keys) != 2 {
			t.Errorf("host keys %v, want ed25519 and ecdsa only", keys)
		}
		out, err := sshTo(t, tg, "root", "", "echo ok; pgrep -x dropbear >/dev/null && echo dropbear; pgrep -x sshd || true")
		if err != nil || out != "ok\ndropbear" {
			t.Fatalf("ssh root@%s (dropbear): %v: %q", tg.IP, err, out)
		}
	})

	t.Run("Systemd", func(t *testing.T) {
		t.Parallel()
		tg := startTarget(t, targetOpts{Systemd: true, User: "ops", Sudo: "nopasswd"})
		out, err := sshTo(t, tg, "ops", "", "cat /proc/1/comm; sudo -n systemctl is-active ssh.service")
		if err != nil || out != "systemd\nactive" {
			t.Fatalf("ssh ops@%s (systemd): %v: %q", tg.IP, err, out)
		}
		poll(t, 30*time.Second, "systemd up", func() error {
			state, _ := tg.tryExec("systemctl is-system-running")
			if s := strings.TrimSpace(state); s != "running" && s != "degraded" {
				return fmt.Errorf("systemctl is-system-running: %q", s)
			}
			return nil
		})
		tg.exec(t, "systemd-run --unit e2e-probe sleep 60 && systemctl is-active e2e-probe")
	})

	t.Run("SystemdDropbear", func(t *testing.T) {
		t.Parallel()
		tg := startTarget(t, targetOpts{Systemd: true, Dropbear: true})
		out, err := sshTo(t, tg, "root", "", "cat /proc/1/comm; systemctl is-active dropbear-e2e.service")
		if err != nil || out != "systemd\nactive" {
			t.Fatalf("ssh root@%s (dropbear under systemd): %v: %q", tg.IP, err, out)
		}
	})

	t.Run("NoexecTmp", func(t *testing.T) {
		t.Parallel()
		tg := startTarget(t, targetOpts{NoexecTmp: true})
		if mounts := tg.exec(t, "grep ' /tmp ' /proc/mounts"); !strings.Contains(mounts, "noexec") {
			t.Fatalf("/tmp is mounted %q, want noexec", mounts)
		}
		if out, err := tg.tryExec("cp /bin/true /tmp/t && /tmp/t"); err == nil {
			t.Fatalf("a binary in /tmp ran: %q", out)
		}
		tg.exec(t, "cp /bin/true /var/tmp/t && /var/tmp/t") // and elsewhere it does run
	})

	t.Run("PasswordSudo", func(t *testing.T) {
		t.Parallel()
		tg := startTarget(t, targetOpts{User: "dev", Sudo: "password", Password: "s3cret-e2e"})
		if out, err := sshTo(t, tg, "dev", "", "sudo -n true"); err == nil {
			t.Fatalf("sudo -n without a password succeeded: %q", out)
		}
		out, err := sshTo(t, tg, "dev", "s3cret-e2e\n", "sudo -S -p '' id -u")
		if err != nil || out != "0" {
			t.Fatalf("sudo -S with the password: %v: %q", err, out)
		}
		if out, err := sshTo(t, tg, "dev", "wrong\n", "sudo -S -p '' id -u"); err == nil {
			t.Fatalf("sudo -S with a wrong password succeeded: %q", out)
		}
	})

	t.Run("FilesSnapshot", func(t *testing.T) {
		t.Parallel()
		tg := startTarget(t, targetOpts{User: "ops", Sudo: "nopasswd"})
		began := time.Now()
		before := tg.files(t)
		record(t, "files() snapshot of a target", time.Since(began), "")
		if len(before) < 1000 || !slices.ContainsFunc(before, func(s string) bool { return strings.HasPrefix(s, "/usr/sbin/sshd f ") }) {
			t.Fatalf("snapshot has %d entries and no /usr/sbin/sshd", len(before))
		}
		// Logging in and using sudo leave the snapshot as it was.
		if out, err := sshTo(t, tg, "ops", "", "sudo -n true"); err != nil {
			t.Fatalf("ssh: %v: %q", err, out)
		}
		if diff := cmp.Diff(before, tg.files(t)); diff != "" {
			t.Fatalf("snapshot changed with no file changed (-before +after):\n%s", diff)
		}
		tg.exec(t, "echo x >/etc/robonet-probe && chmod 600 /etc/ssh/sshd_config")
		after := tg.files(t)
		var added, changed bool
		for _, s := range after {
			added = added || strings.HasPrefix(s, "/etc/robonet-probe ")
		}
		for _, s := range before {
			changed = changed || strings.HasPrefix(s, "/etc/ssh/sshd_config ") && !slices.Contains(after, s)
		}
		if !added || !changed {
			t.Fatalf("snapshot missed a new file (%v) or a mode change (%v)", !added, !changed)
		}
	})

	t.Run("GatewayReachable", func(t *testing.T) {
		t.Parallel()
		tg := startTarget(t, targetOpts{})
		ln, err := net.Listen("tcp", net.JoinHostPort(gatewayIP(), "0"))
		if err != nil {
			t.Fatalf("listen on the gateway %s: %v", gatewayIP(), err)
		}
		defer ln.Close()
		got := make(chan string, 1)
		go func() {
			c, err := ln.Accept()
			if err != nil {
				got <- err.Error()
				return
			}
			defer c.Close()
			_ = c.SetReadDeadline(time.Now().Add(10 * time.Second))
			line, _ := bufio.NewReader(c).ReadString('\n')
			got <- strings.TrimSpace(line)
		}()
		_, port, _ := net.SplitHostPort(ln.Addr().String())
		tg.exec(t, "exec bash -c 'echo hello-from-"+tg.Name+" >/dev/tcp/"+gatewayIP()+"/"+port+"'")
		select {
		case line := <-got:
			if line != "hello-from-"+tg.Name {
				t.Fatalf("the host's listener read %q", line)
			}
		case <-time.After(10 * time.Second):
			t.Fatal("the host's listener got nothing from the target")
		}
	})
}

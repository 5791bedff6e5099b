package colonize

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"golang.org/x/crypto/ssh"
)

// hostKeyServer is an sshd that lets key in, and the options to reach it.
func hostKeyServer(t *testing.T, c sshdConfig) (*sshd, SSHOptions) {
	t.Helper()
	key, line := clientKey(t, t.TempDir(), "ed25519", "")
	c.authorized = append(c.authorized, line)
	s := startSSHD(t, c)
	o := testOptions(t, filepath.Join(t.TempDir(), "known_hosts"))
	o.KeyFiles = []string{key}
	return s, o
}

func dialHostKeyError(t *testing.T, s *sshd, o SSHOptions, kind string) *HostKeyError {
	t.Helper()
	_, steps, err := Dial(context.Background(), target(t, s, "root"), o)
	var hke *HostKeyError
	if !errors.As(err, &hke) || hke.Kind != kind {
		t.Fatalf("err = %v, want HostKeyError %s", err, kind)
	}
	if len(steps) != 2 || steps[1].Step != "host key" || steps[1].Status != "failed" || steps[1].Err != err {
		t.Errorf("steps = %+v, want connect ok then host key failed", steps)
	}
	if want := fmt.Sprintf("[127.0.0.1]:%d", s.port); hke.Host != want {
		t.Errorf("Host = %q, want %q", hke.Host, want)
	}
	return hke
}

func TestDialRefusesUnknownHostKeyWithoutAcceptNew(t *testing.T) {
	t.Parallel()
	s, o := hostKeyServer(t, sshdConfig{})
	hke := dialHostKeyError(t, s, o, "unknown")
	if want := "ED25519 " + ssh.FingerprintSHA256(s.hostPubs[0]); hke.Key != want {
		t.Errorf("Key = %q, want %q", hke.Key, want)
	}
	if !strings.Contains(hke.Remedy, "--accept-new") {
		t.Errorf("Remedy = %q", hke.Remedy)
	}
	if _, err := os.Stat(o.KnownHosts[0]); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("known_hosts was created: %v", err)
	}
}

func TestDialAcceptNewRecordsOneLineThenUnchanged(t *testing.T) {
	t.Parallel()
	s, o := hostKeyServer(t, sshdConfig{})
	o.KnownHosts = []string{filepath.Join(t.TempDir(), "new", "known_hosts")}
	o.AcceptNew = true
	_, steps := dialOK(t, target(t, s, "root"), o)
	if steps[1].Status != "changed" || !strings.Contains(steps[1].Detail, "recorded in") {
		t.Errorf("first host key step = %+v, want changed/recorded", steps[1])
	}
	b, err := os.ReadFile(o.KnownHosts[0])
	if err != nil {
		t.Fatal(err)
	}
	want := fmt.Sprintf("[127.0.0.1]:%d %s", s.port, ssh.MarshalAuthorizedKey(s.hostPubs[0]))
	if string(b) != want {
		t.Errorf("known_hosts = %q, want %q", b, want)
	}
	if st, _ := os.Stat(o.KnownHosts[0]); st.Mode().Perm() != 0o600 {
		t.Errorf("known_hosts mode %v, want 0600", st.Mode().Perm())
	}
	if st, _ := os.Stat(filepath.Dir(o.KnownHosts[0])); st.Mode().Perm() != 0o700 {
		t.Errorf("known_hosts dir mode %v, want 0700", st.Mode().Perm())
	}
	_, steps = dialOK(t, target(t, s, "root"), o)
	if steps[1].Status != "unchanged" {
		t.Errorf("second host key step = %+v, want unchanged", steps[1])
	}
	if again, _ := os.ReadFile(o.KnownHosts[0]); string(again) != want {
		t.Errorf("second dial changed known_hosts: %q", again)
	}
}

func TestDialRecordsHostKeyConfirmedAtThePrompt(t *testing.T) {
	t.Parallel()
	s, o := hostKeyServer(t, sshdConfig{})
	p := &scriptedPrompter{confirm: []bool{true}}
	o.Prompt = p
	_, steps := dialOK(t, target(t, s, "root"), o)
	if len(p.questions) != 1 || !strings.Contains(p.questions[0], ssh.FingerprintSHA256(s.hostPubs[0])) {
		t.Errorf("questions = %q, want one showing the fingerprint", p.questions)
	}
	if steps[1].Status != "changed" {
		t.Errorf("host key step = %+v", steps[1])
	}
	o.Prompt = &scriptedPrompter{confirm: []bool{false}}
	o.KnownHosts = []string{filepath.Join(t.TempDir(), "other")}
	dialHostKeyError(t, s, o, "unknown")
}

func TestDialRefusesChangedHostKeyAndLeavesFileAlone(t *testing.T) {
	t.Parallel()
	s, o := hostKeyServer(t, sshdConfig{})
	_, old := hostKeyFiles(t, t.TempDir(), []string{"ed25519"})
	kh := o.KnownHosts[0]
	body := fmt.Sprintf("# mine\n[127.0.0.1]:%d %s", s.port, ssh.MarshalAuthorizedKey(old[0]))
	if err := os.WriteFile(kh, []byte(body), 0o600); err != nil {
		t.Fatal(err)
	}
	o.AcceptNew = true // must not matter for a changed key
	hke := dialHostKeyError(t, s, o, "changed")
	if want := "ED25519 " + ssh.FingerprintSHA256(s.hostPubs[0]); hke.Key != want {
		t.Errorf("Key = %q, want %q", hke.Key, want)
	}
	wantKnown := fmt.Sprintf("ED25519 %s (%s:2)", ssh.FingerprintSHA256(old[0]), kh)
	if len(hke.Known) != 1 || hke.Known[0] != wantKnown {
		t.Errorf("Known = %q, want [%q]", hke.Known, wantKnown)
	}
	if want := fmt.Sprintf(`ssh-keygen -R "[127.0.0.1]:%d" -f %s`, s.port, kh); hke.Remedy != want {
		t.Errorf("Remedy = %q, want %q", hke.Remedy, want)
	}
	for _, part := range []string{hke.Key, hke.Known[0], hke.Remedy} {
		if !strings.Contains(hke.Error(), part) {
			t.Errorf("Error() = %q lacks %q", hke.Error(), part)
		}
	}
	if b, _ := os.ReadFile(kh); string(b) != body {
		t.Errorf("known_hosts changed to %q", b)
	}
}

func TestDialAcceptsPinnedFingerprintWithoutKnownHosts(t *testing.T) {
	t.Parallel()
	s, o := hostKeyServer(t, sshdConfig{})
	o.HostKey = ssh.FingerprintSHA256(s.hostPubs[0])
	_, steps := dialOK(t, target(t, s, "root"), o)
	if steps[1].Status != "ok" || !strings.Contains(steps[1].Detail, "pinned") {
		t.Errorf("host key step = %+v", steps[1])
	}
}

func TestDialRefusesPinMismatch(t *testing.T) {
	t.Parallel()
	s, o := hostKeyServer(t, sshdConfig{})
	_, other := hostKeyFiles(t, t.TempDir(), []string{"ed25519"})
	o.HostKey = ssh.FingerprintSHA256(other[0])
	o.KnownHosts = []string{s.knownHosts(t)} // known_hosts is ignored when pinned
	hke := dialHostKeyError(t, s, o, "pin")
	if hke.Known[0] != o.HostKey {
		t.Errorf("Known = %q", hke.Known)
	}
}

func TestDialVerifiesHostKnownOnlyAsECDSAWhenServerPrefersED25519(t *testing.T) {
	t.Parallel()
	s, o := hostKeyServer(t, sshdConfig{hostKeys: []string{"ed25519", "ecdsa"}})
	o.KnownHosts = []string{s.knownHosts(t, "ecdsa-sha2-nistp256")}
	_, steps := dialOK(t, target(t, s, "root"), o)
	if steps[1].Status != "unchanged" || !strings.HasPrefix(steps[1].Detail, "ECDSA ") {
		t.Errorf("host key step = %+v, want the ECDSA key known", steps[1])
	}
}

func TestDialVerifiesHostKnownOnlyAsRSA(t *testing.T) {
	t.Parallel()
	s, o := hostKeyServer(t, sshdConfig{hostKeys: []string{"ed25519", "rsa"}})
	o.KnownHosts = []string{s.knownHosts(t, "ssh-rsa")}
	_, steps := dialOK(t, target(t, s, "root"), o)
	if steps[1].Status != "unchanged" || !strings.HasPrefix(steps[1].Detail, "RSA ") {
		t.Errorf("host key step = %+v, want the RSA key known", steps[1])
	}
}

func TestDialRefusesRevokedHostKey(t *testing.T) {
	t.Parallel()
	s, o := hostKeyServer(t, sshdConfig{})
	kh := s.knownHosts(t)
	f, err := os.OpenFile(kh, os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	fmt.Fprintf(f, "@revoked * %s", ssh.MarshalAuthorizedKey(s.hostPubs[0]))
	f.Close()
	o.KnownHosts = []string{kh}
	hke := dialHostKeyError(t, s, o, "revoked")
	if len(hke.Known) != 1 || !strings.Contains(hke.Known[0], kh+":2") {
		t.Errorf("Known = %q, want the @revoked line", hke.Known)
	}
}

func TestDialAcceptsHostCertificateFromTrustedCA(t *testing.T) {
	t.Parallel()
	caDir := t.TempDir()
	ca := filepath.Join(caDir, "host_ca")
	run(t, "/usr/bin/ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", ca, "-C", "")
	s, o := hostKeyServer(t, sshdConfig{hostCertCA: ca})
	kh := filepath.Join(t.TempDir(), "known_hosts")
	body := fmt.Sprintf("@cert-authority * %s", ssh.MarshalAuthorizedKey(readPub(t, ca+".pub")))
	if err := os.WriteFile(kh, []byte(body), 0o600); err != nil {
		t.Fatal(err)
	}
	o.KnownHosts = []string{kh}
	_, steps := dialOK(t, target(t, s, "root"), o)
	if steps[1].Status != "unchanged" || !strings.Contains(steps[1].Detail, "certificate signed by") {
		t.Errorf("host key step = %+v, want a certificate from the known CA", steps[1])
	}
}

func TestDialRefusesHostCertificateForAnotherName(t *testing.T) {
	t.Parallel()
	caDir := t.TempDir()
	ca := filepath.Join(caDir, "host_ca")
	run(t, "/usr/bin/ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", ca, "-C", "")
	s, o := hostKeyServer(t, sshdConfig{hostCertCA: ca, hostCertPrinc: "elsewhere.example"})
	kh := filepath.Join(t.TempDir(), "known_hosts")
	body := fmt.Sprintf("@cert-authority * %s", ssh.MarshalAuthorizedKey(readPub(t, ca+".pub")))
	if err := os.WriteFile(kh, []byte(body), 0o600); err != nil {
		t.Fatal(err)
	}
	o.KnownHosts = []string{kh}
	if _, _, err := Dial(context.Background(), target(t, s, "root"), o); err == nil || !strings.Contains(err.Error(), "host key") {
		t.Fatalf("err = %v, want a host key error", err)
	}
}

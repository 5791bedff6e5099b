package colonize

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"errors"
	"os"
	"strings"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"
)

func testKeyAuth(t *testing.T, typ string) {
	t.Parallel()
	dir := t.TempDir()
	key, line := clientKey(t, dir, typ, "")
	s := startSSHD(t, sshdConfig{authorized: []string{line}})
	o := testOptions(t, s.knownHosts(t))
	o.KeyFiles = []string{key}
	c, steps := dialOK(t, target(t, s, "root"), o)
	if got := steps[2].Detail; !strings.Contains(got, "publickey") || !strings.Contains(got, key) {
		t.Errorf("authenticate detail = %q, want publickey with %s", got, key)
	}
	if got := whoami(t, c); got != "root" {
		t.Errorf("id -un = %q", got)
	}
}

func TestDialAuthenticatesWithED25519Key(t *testing.T) { testKeyAuth(t, "ed25519") }
func TestDialAuthenticatesWithECDSAKey(t *testing.T)   { testKeyAuth(t, "ecdsa") }

// OpenSSH 9.2 refuses ssh-rsa (SHA-1) signatures by default, so this passes
// only if the key signs with rsa-sha2.
func TestDialAuthenticatesWithRSAKeyUsingSHA2(t *testing.T) { testKeyAuth(t, "rsa") }

func TestDialAsksPassphraseOfEncryptedKey(t *testing.T) {
	t.Parallel()
	key, line := clientKey(t, t.TempDir(), "ed25519", "sesame")
	s := startSSHD(t, sshdConfig{authorized: []string{line}})
	o := testOptions(t, s.knownHosts(t))
	o.KeyFiles = []string{key}
	p := &scriptedPrompter{secrets: []string{"wrong", "sesame"}}
	o.Prompt = p
	dialOK(t, target(t, s, "root"), o)
	if len(p.questions) != 2 || !strings.Contains(p.questions[0], "passphrase") {
		t.Errorf("questions = %q, want two passphrase prompts", p.questions)
	}
}

func TestDialSkipsEncryptedKeyWithoutPrompterAndSaysSo(t *testing.T) {
	t.Parallel()
	key, line := clientKey(t, t.TempDir(), "ed25519", "sesame")
	s := startSSHD(t, sshdConfig{authorized: []string{line}})
	o := testOptions(t, s.knownHosts(t))
	o.KeyFiles = []string{key}
	_, steps, err := Dial(context.Background(), target(t, s, "root"), o)
	if !errors.Is(err, ErrAuth) {
		t.Fatalf("err = %v, want ErrAuth", err)
	}
	if !strings.Contains(err.Error(), key) || !strings.Contains(err.Error(), "encrypted") {
		t.Errorf("err = %v, want it to name %s as encrypted and skipped", err, key)
	}
	if last := steps[len(steps)-1]; last.Step != "authenticate" || last.Status != "failed" {
		t.Errorf("last step = %+v", last)
	}
}

func TestDialUsesAgentCopyOfEncryptedKeyWithoutAsking(t *testing.T) {
	t.Parallel()
	_, priv, _ := ed25519.GenerateKey(rand.Reader)
	dir := t.TempDir()
	key, line := clientKey(t, dir, "ed25519", "sesame")
	raw, err := os.ReadFile(key)
	if err != nil {
		t.Fatal(err)
	}
	k, err := ssh.ParseRawPrivateKeyWithPassphrase(raw, []byte("sesame"))
	if err != nil {
		t.Fatal(err)
	}
	s := startSSHD(t, sshdConfig{authorized: []string{line}})
	o := testOptions(t, s.knownHosts(t))
	o.KeyFiles = []string{key}
	o.AgentSocket = startAgent(t, priv, k)
	p := &scriptedPrompter{}
	o.Prompt = p
	_, steps := dialOK(t, target(t, s, "root"), o)
	if len(p.questions) != 0 {
		t.Errorf("asked %q; the agent holds the key", p.questions)
	}
	if !strings.Contains(steps[2].Detail, "agent") {
		t.Errorf("authenticate detail = %q, want the agent's key", steps[2].Detail)
	}
}

// With many agent keys, naming the key offers only its agent copy, so a
// server with MaxAuthTries 2 still lets us in.
func TestDialAgentIdentitiesOnlyStaysUnderMaxAuthTries(t *testing.T) {
	t.Parallel()
	var keys []any
	for range 5 {
		_, k, _ := ed25519.GenerateKey(rand.Reader)
		keys = append(keys, k)
	}
	_, want, _ := ed25519.GenerateKey(rand.Reader)
	keys = append(keys, want)
	signer, _ := ssh.NewSignerFromKey(want)
	line := strings.TrimSpace(string(ssh.MarshalAuthorizedKey(signer.PublicKey())))
	pub := t.TempDir() + "/named"
	if err := os.WriteFile(pub+".pub", []byte(line+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	s := startSSHD(t, sshdConfig{authorized: []string{line}, maxAuthTries: 2})
	o := testOptions(t, s.knownHosts(t))
	o.AgentSocket = startAgent(t, keys...)

	// Unnamed, at most maxAgentKeys agent keys are offered; the wanted one is the 6th.
	if _, _, err := Dial(context.Background(), target(t, s, "root"), o); !errors.Is(err, ErrAuth) {
		t.Fatalf("without a named key: err = %v, want ErrAuth (MaxAuthTries 2, wanted key is 6th)", err)
	}
	o.KeyFiles = []string{pub} // only the .pub exists: the agent holds the private half
	_, steps := dialOK(t, target(t, s, "root"), o)
	if got := steps[2].Detail; got != "publickey (agent: key5)" {
		t.Errorf("authenticate detail = %q, want publickey (agent: key5)", got)
	}
}

func TestDialAuthenticatesWithPassword(t *testing.T) {
	t.Parallel()
	pw := "right-" + randHex(t, 6)
	user, _ := throwawayUser(t, pw)
	s := startSSHD(t, sshdConfig{password: true})
	o := testOptions(t, s.knownHosts(t))
	o.Password = []byte(pw)
	c, steps := dialOK(t, target(t, s, user), o)
	if steps[2].Detail != "password" {
		t.Errorf("authenticate detail = %q", steps[2].Detail)
	}
	if got := whoami(t, c); got != user {
		t.Errorf("id -un = %q, want %s", got, user)
	}
}

func TestDialWrongPasswordIsErrAuthListingWhatWasTried(t *testing.T) {
	t.Parallel()
	user, _ := throwawayUser(t, "right-"+randHex(t, 8))
	s := startSSHD(t, sshdConfig{password: true})
	o := testOptions(t, s.knownHosts(t))
	o.Password = []byte("wrong")
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	_, steps, err := Dial(ctx, target(t, s, user), o)
	if !errors.Is(err, ErrAuth) {
		t.Fatalf("err = %v, want ErrAuth", err)
	}
	want := "unable to authenticate as " + user + "@127.0.0.1:"
	if !strings.Contains(err.Error(), want) || !strings.Contains(err.Error(), "tried password") {
		t.Errorf("err = %q, want %q… tried password", err, want)
	}
	if strings.Contains(err.Error(), "wrong") {
		t.Errorf("err = %q contains the password", err)
	}
	if len(steps) != 3 || steps[2].Status != "failed" || steps[1].Status != "unchanged" {
		t.Errorf("steps = %+v", steps)
	}
}

package colonize

import (
	"bufio"
	"bytes"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"strings"
	"sync"

	"golang.org/x/crypto/ssh"
	"golang.org/x/crypto/ssh/agent"
	"golang.org/x/term"
)

// Prompter asks the person at the terminal. nil means there is no terminal.
type Prompter interface {
	Confirm(question string) (bool, error) // yes/no (host key unknown)
	Secret(prompt string) ([]byte, error)  // passphrase of an encrypted key
}

// TerminalPrompter returns a Prompter on /dev/tty, or nil when the process
// has no controlling terminal. Each question opens /dev/tty anew, so nothing
// stays open between questions; questions from concurrent dials take turns.
func TerminalPrompter() Prompter {
	f, err := os.OpenFile("/dev/tty", os.O_RDWR, 0)
	if err != nil {
		return nil
	}
	defer f.Close()
	if !term.IsTerminal(int(f.Fd())) {
		return nil
	}
	return &ttyPrompter{}
}

type ttyPrompter struct {
	mu sync.Mutex // one question on the terminal at a time
}

func (p *ttyPrompter) Confirm(question string) (bool, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	f, err := os.OpenFile("/dev/tty", os.O_RDWR, 0)
	if err != nil {
		return false, err
	}
	defer f.Close()
	for range 3 {
		fmt.Fprint(f, question, " ")
		line, err := bufio.NewReader(f).ReadString('\n')
		if err != nil {
			return false, err
		}
		switch strings.ToLower(strings.TrimSpace(line)) {
		case "yes", "y":
			return true, nil
		case "no", "n":
			return false, nil
		}
		fmt.Fprintln(f, "Please type 'yes' or 'no'.")
	}
	return false, nil
}

func (p *ttyPrompter) Secret(prompt string) ([]byte, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	f, err := os.OpenFile("/dev/tty", os.O_RDWR, 0)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	fmt.Fprint(f, prompt)
	b, err := term.ReadPassword(int(f.Fd()))
	fmt.Fprintln(f)
	return b, err
}

// maxAgentKeys keeps unnamed agent keys under sshd's default MaxAuthTries (6)
// with room left for a key file and a password.
const maxAgentKeys = 4

// keyring holds the credentials of one Dial: the agent connection, key files
// already read (each passphrase is asked once per Dial, before any handshake,
// so no prompt races a handshake deadline) and notes on what was skipped.
type keyring struct {
	o         *SSHOptions
	home      string
	agentConn net.Conn
	agent     agent.ExtendedAgent
	agentKeys []*agent.Key
	agentErr  error
	files     map[string]*keyFile
}

type keyFile struct {
	path   string
	pub    ssh.PublicKey // nil when not even the public half could be read
	signer ssh.Signer    // nil when skipped
	note   string        // why it was skipped
}

func newKeyring(o *SSHOptions, home string) *keyring {
	kr := &keyring{o: o, home: home, files: map[string]*keyFile{}}
	if o.AgentSocket == "" || o.AgentSocket == "none" {
		return kr
	}
	c, err := net.Dial("unix", o.AgentSocket)
	if err != nil {
		kr.agentErr = fmt.Errorf("agent %s: %w", o.AgentSocket, err)
		return kr
	}
	kr.agentConn, kr.agent = c, agent.NewClient(c)
	kr.agentKeys, kr.agentErr = kr.agent.List()
	return kr
}

func (kr *keyring) close() {
	if kr.agentConn != nil {
		kr.agentConn.Close()
	}
}

func (kr *keyring) agentHolds(pub ssh.PublicKey) bool {
	if pub == nil {
		return false
	}
	for _, k := range kr.agentKeys {
		if bytes.Equal(k.Marshal(), pub.Marshal()) {
			return true
		}
	}
	return false
}

// hopAuth is the auth plan for one hop and the record of what it tried.
type hopAuth struct {
	user, addr string
	publickey  []ssh.Signer
	offered    string // "agent: 2 keys, ~/.ssh/id_ed25519"
	notes      []string
	password   []byte
	tried      []string
	used       string // what succeeded, for the StepResult
}

// plan decides, before the handshake, which keys the hop offers and in what
// order: matching agent keys, then key files, then the password.
func (kr *keyring) plan(h hop) *hopAuth {
	a := &hopAuth{user: h.user, addr: h.addr(), password: kr.o.Password}
	paths := append(append([]string(nil), h.identityFiles...), kr.o.KeyFiles...)
	named := len(paths) > 0
	if !named {
		for _, n := range []string{"id_ed25519", "id_ecdsa", "id_rsa"} {
			p := kr.home + "/.ssh/" + n
			if _, err := os.Stat(p); err == nil {
				paths = append(paths, p)
			}
		}
	}
	var files []*keyFile
	seen := map[string]bool{}
	for _, p := range paths {
		if seen[p] {
			continue
		}
		seen[p] = true
		files = append(files, kr.load(p))
	}

	var signers []ssh.Signer
	var desc []string
	offeredKey := map[string]bool{}
	add := func(s ssh.Signer, label string) bool {
		k := string(s.PublicKey().Marshal())
		if offeredKey[k] {
			return false
		}
		offeredKey[k] = true
		signers = append(signers, &labelledSigner{Signer: s, label: label, a: a})
		return true
	}
	if kr.agentErr != nil {
		a.notes = append(a.notes, kr.agentErr.Error())
	}
	if kr.agent != nil {
		agentSigners, err := kr.agent.Signers()
		if err != nil {
			a.notes = append(a.notes, fmt.Sprintf("agent: %v", err))
		}
		n := 0
		for i, s := range agentSigners {
			if named || h.identitiesOnly {
				if !matchesAny(s.PublicKey(), files) {
					continue
				}
			} else if n == maxAgentKeys {
				a.notes = append(a.notes, fmt.Sprintf("agent: %d more keys not offered (MaxAuthTries); name one with --key", len(agentSigners)-i))
				break
			}
			label := "agent"
			if i < len(kr.agentKeys) && kr.agentKeys[i].Comment != "" {
				label = "agent: " + kr.agentKeys[i].Comment
			}
			if add(s, label) {
				n++
			}
		}
		if n > 0 {
			desc = append(desc, fmt.Sprintf("agent: %d keys", n))
		}
	}
	for _, f := range files {
		switch {
		case f.signer != nil:
			if add(f.signer, tildePath(f.path, kr.home)) {
				desc = append(desc, tildePath(f.path, kr.home))
			}
		case f.pub != nil && offeredKey[string(f.pub.Marshal())]:
			// Encrypted, but the agent's copy was offered.
		default:
			a.notes = append(a.notes, fmt.Sprintf("skipped %s (%s)", tildePath(f.path, kr.home), f.note))
		}
	}
	a.publickey = signers
	a.offered = strings.Join(desc, ", ")
	return a
}

func matchesAny(pub ssh.PublicKey, files []*keyFile) bool {
	for _, f := range files {
		if f.pub != nil && bytes.Equal(f.pub.Marshal(), pub.Marshal()) {
			return true
		}
	}
	return false
}

// load reads one key file once per Dial. An encrypted key the agent holds is
// left to the agent; otherwise the passphrase is asked (three tries).
func (kr *keyring) load(path string) *keyFile {
	if f, ok := kr.files[path]; ok {
		return f
	}
	f := &keyFile{path: path}
	kr.files[path] = f
	if b, err := os.ReadFile(path + ".pub"); err == nil {
		f.pub, _, _, _, _ = ssh.ParseAuthorizedKey(b)
	}
	pem, err := os.ReadFile(path)
	if err != nil {
		f.note = errNote(err)
		return f
	}
	signer, err := ssh.ParsePrivateKey(pem)
	var missing *ssh.PassphraseMissingError
	switch {
	case err == nil:
		f.signer, f.pub = signer, signer.PublicKey()
		return f
	case !errors.As(err, &missing):
		f.note = "unreadable: " + err.Error()
		return f
	}
	if f.pub == nil {
		f.pub = missing.PublicKey
	}
	if kr.agentHolds(f.pub) {
		f.note = "encrypted; the agent holds it"
		return f
	}
	if kr.o.Prompt == nil {
		f.note = "encrypted, no terminal to ask the passphrase"
		return f
	}
	for range 3 {
		pass, err := kr.o.Prompt.Secret(fmt.Sprintf("Enter passphrase for key '%s': ", tildePath(path, kr.home)))
		if err != nil {
			f.note = "encrypted, asking the passphrase: " + err.Error()
			return f
		}
		signer, err := ssh.ParsePrivateKeyWithPassphrase(pem, pass)
		clear(pass)
		if err == nil {
			f.signer, f.pub = signer, signer.PublicKey()
			return f
		}
		if !errors.Is(err, x509.IncorrectPasswordError) {
			f.note = "encrypted, " + err.Error()
			return f
		}
	}
	f.note = "encrypted, wrong passphrase three times"
	return f
}

func errNote(err error) string {
	if errors.Is(err, os.ErrNotExist) {
		return "no such file"
	}
	return err.Error()
}

// methods returns the x/crypto auth methods for the plan, each recording in
// a.tried that the server was asked. The password is never logged.
func (a *hopAuth) methods() []ssh.AuthMethod {
	var m []ssh.AuthMethod
	if len(a.publickey) > 0 {
		m = append(m, ssh.PublicKeysCallback(func() ([]ssh.Signer, error) {
			a.tried = append(a.tried, "publickey ("+a.offered+")")
			return a.publickey, nil
		}))
	}
	if a.password != nil {
		m = append(m, ssh.PasswordCallback(func() (string, error) {
			a.tried = append(a.tried, "password")
			a.used = "password"
			return string(a.password), nil
		}))
		m = append(m, ssh.KeyboardInteractive(func(name, instruction string, questions []string, echos []bool) ([]string, error) {
			if len(questions) == 0 {
				return nil, nil
			}
			if len(questions) != 1 || echos[0] {
				return nil, fmt.Errorf("keyboard-interactive asks %d questions; only a single password prompt is answered", len(questions))
			}
			a.tried = append(a.tried, "keyboard-interactive")
			a.used = "keyboard-interactive (password)"
			return []string{string(a.password)}, nil
		}))
	}
	return m
}

// failure is the ErrAuth error: who, what was tried, what was skipped.
func (a *hopAuth) failure(cause error) error {
	tried := "nothing the server accepts"
	if len(a.tried) > 0 {
		tried = strings.Join(a.tried, ", ")
	}
	msg := fmt.Sprintf("as %s@%s: tried %s", a.user, a.addr, tried)
	if len(a.notes) > 0 {
		msg += "; " + strings.Join(a.notes, "; ")
	}
	if cause != nil && len(a.tried) == 0 {
		msg += " (" + cause.Error() + ")"
	}
	return fmt.Errorf("%w %s", ErrAuth, msg)
}

// labelledSigner remembers which key the server accepted. x/crypto signs
// only after the server said it would accept the key.
type labelledSigner struct {
	ssh.Signer
	label string
	a     *hopAuth
}

func (s *labelledSigner) Sign(rand io.Reader, data []byte) (*ssh.Signature, error) {
	s.a.used = "publickey (" + s.label + ")"
	return s.Signer.Sign(rand, data)
}

func (s *labelledSigner) SignWithAlgorithm(rand io.Reader, data []byte, algorithm string) (*ssh.Signature, error) {
	s.a.used = "publickey (" + s.label + ")"
	if as, ok := s.Signer.(ssh.AlgorithmSigner); ok {
		return as.SignWithAlgorithm(rand, data, algorithm)
	}
	if algorithm != "" && algorithm != s.PublicKey().Type() {
		return nil, fmt.Errorf("key %s cannot sign with %s", s.label, algorithm)
	}
	return s.Signer.Sign(rand, data)
}

// Algorithms keeps rsa-sha2 working through the wrapper (OpenSSH ≥ 8.8
// refuses ssh-rsa signatures).
func (s *labelledSigner) Algorithms() []string {
	if ms, ok := s.Signer.(ssh.MultiAlgorithmSigner); ok {
		return ms.Algorithms()
	}
	switch t := s.PublicKey().Type(); t {
	case ssh.KeyAlgoRSA:
		return []string{ssh.KeyAlgoRSASHA512, ssh.KeyAlgoRSASHA256, ssh.KeyAlgoRSA}
	case ssh.CertAlgoRSAv01:
		return []string{ssh.CertAlgoRSASHA512v01, ssh.CertAlgoRSASHA256v01, ssh.CertAlgoRSAv01}
	default:
		return []string{t}
	}
}

package colonize

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"strings"
)

// Privilege modes, as the privilege step found them.
const (
	PrivRoot     = "root"          // logged in as uid 0
	PrivSudo     = "sudo -n"       // passwordless sudo
	PrivSudoPass = "sudo password" // sudo -S with the password on stdin
)

// ErrSudoPassword is returned when sudo refused the password given.
var ErrSudoPassword = errors.New("sudo refused the password")

// ErrNeedSudoPassword is returned when sudo wants a password and none was given.
var ErrNeedSudoPassword = errors.New("sudo needs a password")

// shell runs scripts on a target as root, whichever way privilege was won.
// The sudo password, when there is one, only ever travels on the session's
// stdin, ahead of the script's own input: never in argv, the environment,
// a log line or a file.
type shell struct {
	c      *Conn
	mode   string
	pw     []byte // sudo password (PrivSudoPass only)
	nonce  string // marks sudo's prompt and the line that proves sudo ran us
	prompt string
	marker string
}

func newShell(c *Conn) *shell {
	var b [8]byte
	_, _ = rand.Read(b[:])
	n := hex.EncodeToString(b[:])
	return &shell{c: c, nonce: n, prompt: "[robonet-sudo-" + n + "] ", marker: "ROBONET-SUDO-OK-" + n}
}

// probe finds how to become root: already root, sudo -n, or sudo with a
// password (asked through need when none was given). It verifies the mode
// by running id -u as root.
func (s *shell) probe(ctx context.Context, password func() ([]byte, error)) (string, error) {
	out, err := s.c.Output(ctx, "id -u", nil)
	if err != nil {
		return "", fmt.Errorf("id -u: %w", err)
	}
	if strings.TrimSpace(string(out)) == "0" {
		s.mode = PrivRoot
		return s.mode, nil
	}
	if out, err := s.c.Output(ctx, "sudo -n id -u", nil); err == nil && strings.TrimSpace(string(out)) == "0" {
		s.mode = PrivSudo
		return s.mode, nil
	}
	if _, err := s.c.Output(ctx, "command -v sudo", nil); err != nil {
		return "", fmt.Errorf("user %s is not root and the host has no sudo", s.c.User())
	}
	if password == nil {
		return "", fmt.Errorf("%w: user %s has no passwordless sudo (use --sudo-password-stdin, or run on a terminal)", ErrNeedSudoPassword, s.c.User())
	}
	pw, err := password()
	if err != nil {
		return "", err
	}
	if len(pw) == 0 {
		return "", fmt.Errorf("%w: user %s has no passwordless sudo and the password given is empty", ErrNeedSudoPassword, s.c.User())
	}
	s.mode, s.pw = PrivSudoPass, pw
	out, err = s.output(ctx, "id -u", nil)
	if err != nil {
		s.mode, s.pw = "", nil
		return "", err
	}
	if strings.TrimSpace(string(out)) != "0" {
		return "", fmt.Errorf("sudo ran id -u as uid %q, not root", strings.TrimSpace(string(out)))
	}
	return s.mode, nil
}

// run runs script with sh as root, stdin feeding it, and returns its stdout.
func (s *shell) output(ctx context.Context, script string, stdin io.Reader) ([]byte, error) {
	var out bytes.Buffer
	err := s.run(ctx, script, stdin, &out)
	return out.Bytes(), err
}

func (s *shell) run(ctx context.Context, script string, stdin io.Reader, stdout io.Writer) error {
	switch s.mode {
	case PrivRoot:
		return s.c.Run(ctx, "sh -c "+quote(script), stdin, stdout, nil)
	case PrivSudo:
		return s.c.Run(ctx, "sudo -n sh -c "+quote(script), stdin, stdout, nil)
	case PrivSudoPass:
		// -k: never use a cached timestamp, so sudo always reads the
		// password line and never hands it to the script. sudo -S reads
		// the password a byte at a time up to the newline; what follows is
		// the script's stdin. The marker proves sudo accepted it.
		in := io.MultiReader(bytes.NewReader(append(append([]byte(nil), s.pw...), '\n')), orEmpty(stdin))
		w := &markerWriter{marker: []byte(s.marker + "\n"), w: stdout}
		var errb bytes.Buffer
		err := s.c.Run(ctx, "sudo -k -S -p "+quote(s.prompt)+" sh -c "+quote("echo "+s.marker+"; "+script), in, w, &errb)
		if !w.seen {
			msg := strings.ReplaceAll(errb.String(), s.prompt, "")
			if strings.Contains(msg, "incorrect password") || strings.Contains(msg, "Sorry, try again") || strings.Contains(msg, "no password was provided") {
				return fmt.Errorf("%w for user %s", ErrSudoPassword, s.c.User())
			}
			if err == nil {
				err = errors.New("sudo did not run the command")
			}
			return fmt.Errorf("sudo: %w: %s", err, strings.TrimSpace(msg))
		}
		return err
	}
	return errors.New("privilege not established")
}

func orEmpty(r io.Reader) io.Reader {
	if r == nil {
		return bytes.NewReader(nil)
	}
	return r
}

// markerWriter drops the first line when it is the marker, and says it saw it.
type markerWriter struct {
	marker []byte
	w      io.Writer
	head   []byte
	seen   bool
	done   bool
}

func (m *markerWriter) Write(p []byte) (int, error) {
	if m.done {
		if m.w == nil {
			return len(p), nil
		}
		return m.w.Write(p)
	}
	n := len(p)
	m.head = append(m.head, p...)
	if len(m.head) < len(m.marker) && bytes.HasPrefix(m.marker, m.head) {
		return n, nil
	}
	m.done = true
	rest := m.head
	if bytes.HasPrefix(m.head, m.marker) {
		m.seen = true
		rest = m.head[len(m.marker):]
	}
	m.head = nil
	if m.w != nil && len(rest) > 0 {
		if _, err := m.w.Write(rest); err != nil {
			return n, err
		}
	}
	return n, nil
}

// quote makes s one word for a POSIX shell.
func quote(s string) string {
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}

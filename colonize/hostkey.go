package colonize

import (
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/skeema/knownhosts"
	"golang.org/x/crypto/ssh"
	xknownhosts "golang.org/x/crypto/ssh/knownhosts"
)

// HostKeyError is a host key colonize refused. Its message says what to do.
type HostKeyError struct {
	Kind   string   // "unknown" (no terminal, no --accept-new, or answered no), "changed", "revoked", "pin" (pinned fingerprint differs)
	Host   string   // the known_hosts host name form, e.g. "[10.0.0.7]:2222"
	Key    string   // offered key "ED25519 SHA256:…"
	Known  []string // fingerprints on file ("ECDSA SHA256:… (~/.ssh/known_hosts:12)")
	Remedy string   // e.g. `ssh-keygen -R "[10.0.0.7]:2222" -f ~/.ssh/known_hosts`, or "re-run with --accept-new"
}

func (e *HostKeyError) Error() string {
	var b strings.Builder
	switch e.Kind {
	case "changed":
		fmt.Fprintf(&b, "host key for %s CHANGED (possible man-in-the-middle): offered %s, on file %s", e.Host, e.Key, strings.Join(e.Known, ", "))
	case "revoked":
		fmt.Fprintf(&b, "host key for %s is revoked: offered %s (%s)", e.Host, e.Key, strings.Join(e.Known, ", "))
	case "pin":
		fmt.Fprintf(&b, "host key for %s does not match the pin: offered %s, pinned %s", e.Host, e.Key, strings.Join(e.Known, ", "))
	default:
		fmt.Fprintf(&b, "host key for %s is unknown: offered %s", e.Host, e.Key)
	}
	if e.Kind == "changed" {
		b.WriteString("; if the host was reinstalled, remove the old key and re-run: ")
		b.WriteString(e.Remedy)
	} else if e.Remedy != "" {
		b.WriteString("; remedy: ")
		b.WriteString(e.Remedy)
	}
	return b.String()
}

// hostKeys checks host keys for every hop of one Dial against the same
// known_hosts files. It is used by one goroutine at a time.
type hostKeys struct {
	o     *SSHOptions
	home  string
	read  []string // files that exist, read in order
	write string   // where AcceptNew and a confirmed key are recorded
	db    *knownhosts.HostKeyDB
}

func newHostKeys(o *SSHOptions, home string) (*hostKeys, error) {
	hk := &hostKeys{o: o, home: home}
	if len(o.KnownHosts) > 0 {
		hk.write = o.KnownHosts[0]
	}
	return hk, hk.load()
}

func (hk *hostKeys) load() error {
	hk.read, hk.db = nil, nil
	for _, f := range hk.o.KnownHosts {
		if _, err := os.Stat(f); err == nil {
			hk.read = append(hk.read, f)
		}
	}
	if len(hk.read) == 0 {
		return nil
	}
	db, err := knownhosts.NewDB(hk.read...)
	if err != nil {
		return fmt.Errorf("known_hosts: %w", err)
	}
	hk.db = db
	return nil
}

// algorithms returns the host key algorithms to offer for addr: those of the
// keys on file first, so a host known as ECDSA presents its ECDSA key even if
// it prefers ED25519, then every other plain algorithm so a changed key is
// seen (and reported) rather than failing as "no common algorithm".
func (hk *hostKeys) algorithms(addr string) []string {
	var algos []string
	if hk.db != nil && hk.o.HostKey == "" && !hk.o.InsecureIgnoreHostKey {
		algos = hk.db.HostKeyAlgorithms(addr)
	}
	// OpenSSH's own order for a host not on file: Ed25519, then ECDSA, then
	// RSA, so accept-new records the key ssh itself would have.
	preferred := []string{ssh.KeyAlgoED25519, ssh.KeyAlgoECDSA256, ssh.KeyAlgoECDSA384, ssh.KeyAlgoECDSA521,
		ssh.KeyAlgoRSASHA512, ssh.KeyAlgoRSASHA256}
	for _, a := range append(preferred, ssh.SupportedAlgorithms().HostKeys...) {
		if !strings.Contains(a, "-cert-") && !slices.Contains(algos, a) {
			algos = append(algos, a)
		}
	}
	return algos
}

// verifier is the host key callback of one hop. It remembers what it saw so
// Dial can tell a host key failure from a transport or auth failure, whatever
// x/crypto makes of the error.
type verifier struct {
	hk      *hostKeys
	clock   *handshakeClock
	reached time.Time // when the server's key arrived
	took    time.Duration
	status  string
	detail  string
	err     error
}

func (v *verifier) check(addr string, remote net.Addr, key ssh.PublicKey) error {
	v.reached = time.Now()
	v.status, v.detail, v.err = v.hk.check(addr, remote, key, v.clock)
	v.took = time.Since(v.reached)
	return v.err
}

func (hk *hostKeys) check(addr string, remote net.Addr, key ssh.PublicKey, clock *handshakeClock) (status, detail string, err error) {
	host := knownhosts.Normalize(addr)
	offered := describeKey(key)
	switch {
	case hk.o.InsecureIgnoreHostKey:
		return "skipped", offered + " NOT VERIFIED (host key checking disabled)", nil
	case hk.o.HostKey != "":
		if fp := ssh.FingerprintSHA256(plainKey(key)); fp == strings.TrimRight(hk.o.HostKey, "=") {
			return "ok", offered + " pinned", nil
		}
		return "failed", "", &HostKeyError{Kind: "pin", Host: host, Key: offered, Known: []string{hk.o.HostKey},
			Remedy: "check the pinned fingerprint with the host's owner (ssh-keygen -lf /etc/ssh/ssh_host_*_key.pub on the host)"}
	}
	var cbErr error = &xknownhosts.KeyError{}
	if hk.db != nil {
		cbErr = hk.db.HostKeyCallback()(addr, remote, key)
	}
	var keyErr *xknownhosts.KeyError
	var revoked *xknownhosts.RevokedError
	switch {
	case cbErr == nil:
		if c, ok := key.(*ssh.Certificate); ok {
			return "unchanged", fmt.Sprintf("%s certificate signed by %s, a known CA", describeKey(c.Key), describeKey(c.SignatureKey)), nil
		}
		return "unchanged", offered + " known", nil
	case errors.As(cbErr, &revoked):
		return "failed", "", &HostKeyError{Kind: "revoked", Host: host, Key: offered,
			Known:  []string{"@revoked " + hk.where(revoked.Revoked)},
			Remedy: "the key was revoked on purpose: do not connect until the host has a new key"}
	case errors.As(cbErr, &keyErr):
		if known := hk.plainKnown(addr, keyErr.Want); len(known) > 0 {
			return "failed", "", &HostKeyError{Kind: "changed", Host: host, Key: offered, Known: known,
				Remedy: fmt.Sprintf("ssh-keygen -R %q -f %s", host, tildePath(keyErr.Want[0].Filename, hk.home))}
		}
		return hk.unknown(addr, host, remote, key, clock)
	default:
		// A certificate from an unknown CA, an expired one, a principal that
		// does not match: not a key on file and not one to record.
		return "failed", "", fmt.Errorf("host key for %s: %w", host, cbErr)
	}
}

// plainKnown lists the non-CA keys on file for addr; a host matched only by
// a @cert-authority line but offering a plain key is unknown, not changed.
func (hk *hostKeys) plainKnown(addr string, want []xknownhosts.KnownKey) []string {
	if len(want) == 0 || hk.db == nil {
		return nil
	}
	ca := map[string]bool{}
	for _, k := range hk.db.HostKeys(addr) {
		if k.Cert {
			ca[string(k.Marshal())] = true
		}
	}
	var out []string
	for _, w := range want {
		if !ca[string(w.Key.Marshal())] {
			out = append(out, describeKey(w.Key)+" ("+hk.where(w)+")")
		}
	}
	return out
}

func (hk *hostKeys) where(k xknownhosts.KnownKey) string {
	return fmt.Sprintf("%s:%d", tildePath(k.Filename, hk.home), k.Line)
}

func (hk *hostKeys) unknown(addr, host string, remote net.Addr, key ssh.PublicKey, clock *handshakeClock) (string, string, error) {
	offered := describeKey(key)
	refuse := &HostKeyError{Kind: "unknown", Host: host, Key: offered, Remedy: "re-run with --accept-new, or pin it with --host-key " + ssh.FingerprintSHA256(plainKey(key))}
	switch {
	case hk.o.AcceptNew:
	case hk.o.Prompt != nil:
		q := fmt.Sprintf("The authenticity of host '%s' can't be established.\n%s key fingerprint is %s.\nAre you sure you want to continue connecting (yes/no)?",
			host, keyTypeName(plainKey(key)), ssh.FingerprintSHA256(plainKey(key)))
		// A person reading a fingerprint is not a stalled server.
		clock.pause()
		yes, err := hk.o.Prompt.Confirm(q)
		clock.resume()
		if err != nil {
			return "failed", "", fmt.Errorf("host key for %s: asking: %w", host, err)
		}
		if !yes {
			refuse.Remedy = "answered no; re-run and answer yes if the fingerprint is right"
			return "failed", "", refuse
		}
	default:
		return "failed", "", refuse
	}
	if hk.write == "" {
		return "failed", "", fmt.Errorf("host key for %s: no known_hosts file to record it in", host)
	}
	if err := appendKnownHost(hk.write, addr, plainKey(key)); err != nil {
		return "failed", "", fmt.Errorf("host key for %s: %w", host, err)
	}
	if err := hk.load(); err != nil {
		return "failed", "", err
	}
	return "changed", fmt.Sprintf("%s recorded in %s", offered, tildePath(hk.write, hk.home)), nil
}

// appendKnownHost adds one line to path, creating it 0600 and its directory
// 0700. Existing lines are never rewritten: the file is opened for append.
func appendKnownHost(path, addr string, key ssh.PublicKey) error {
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return fmt.Errorf("known_hosts: %w", err)
	}
	f, err := os.OpenFile(path, os.O_RDWR|os.O_APPEND|os.O_CREATE, 0o600)
	if err != nil {
		return fmt.Errorf("known_hosts: %w", err)
	}
	line := knownhosts.Line([]string{addr}, key) + "\n"
	if st, err := f.Stat(); err == nil && st.Size() > 0 {
		last := make([]byte, 1)
		if _, err := f.ReadAt(last, st.Size()-1); err != nil && err != io.EOF {
			f.Close()
			return fmt.Errorf("known_hosts: %w", err)
		}
		if last[0] != '\n' {
			line = "\n" + line
		}
	}
	if _, err := f.WriteString(line); err != nil {
		f.Close()
		return fmt.Errorf("known_hosts: %w", err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("known_hosts: %w", err)
	}
	return nil
}

func plainKey(k ssh.PublicKey) ssh.PublicKey {
	if c, ok := k.(*ssh.Certificate); ok {
		return c.Key
	}
	return k
}

// describeKey formats a key the way ssh(1) prints it: "ED25519 SHA256:…".
func describeKey(k ssh.PublicKey) string {
	if c, ok := k.(*ssh.Certificate); ok {
		return keyTypeName(c.Key) + "-CERT " + ssh.FingerprintSHA256(c.Key)
	}
	return keyTypeName(k) + " " + ssh.FingerprintSHA256(k)
}

func keyTypeName(k ssh.PublicKey) string {
	switch t := k.Type(); {
	case t == ssh.KeyAlgoED25519:
		return "ED25519"
	case t == ssh.KeyAlgoSKED25519:
		return "ED25519-SK"
	case t == ssh.KeyAlgoSKECDSA256:
		return "ECDSA-SK"
	case strings.HasPrefix(t, "ecdsa-"):
		return "ECDSA"
	case t == ssh.KeyAlgoRSA:
		return "RSA"
	case t == ssh.KeyAlgoDSA:
		return "DSA"
	default:
		return t
	}
}

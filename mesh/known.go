package mesh

import (
	"bufio"
	"bytes"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"syscall"

	"github.com/robonet-mesh/robonet/trust"
)

// KnownNodesFile is the default known-nodes file, under the user's config
// directory: $XDG_CONFIG_HOME/robonet/known_nodes, else
// ~/.config/robonet/known_nodes.
func KnownNodesFile() (string, error) {
	if x := os.Getenv("XDG_CONFIG_HOME"); x != "" {
		return filepath.Join(x, "robonet", "known_nodes"), nil
	}
	h, err := os.UserHomeDir()
	if err != nil {
		return "", fmt.Errorf("known nodes: no home directory: %w", err)
	}
	return filepath.Join(h, ".config", "robonet", "known_nodes"), nil
}

// ErrNodeKey is wrapped when a node's key is not the one the client trusts
// for it (NodeKeyChangedError), or the node does not prove a key at all.
var ErrNodeKey = errors.New("node key")

// NodeKeyChangedError says that the node at Addr proved key Got, but File
// pins Pinned for that address: the node was reinstalled with a new data
// dir, or something else answers at that address.
type NodeKeyChangedError struct {
	Addr, Pinned, Got, File string
}

func (e *NodeKeyChangedError) Error() string {
	return fmt.Sprintf("WARNING: THE NODE KEY AT %s HAS CHANGED: %s pins %s, but the node there proves %s. "+
		"Something may be impersonating the node, or it was reinstalled with a new data dir. "+
		"If you know why it changed, remove (or correct) the line for %s in %s and try again",
		e.Addr, e.File, e.Pinned, e.Got, e.Addr, e.File)
}

func (e *NodeKeyChangedError) Unwrap() error { return ErrNodeKey }

// maxKnownNodes bounds the file read: about 10,000 lines.
const maxKnownNodes = 1 << 20

// KnownNodes is a file of node keys pinned on first use, like SSH's
// known_hosts: one line per server address, "host:port NODEKEY", '#'
// comments. It is written atomically (a new file renamed over the old),
// mode 0600, under an exclusive lock, so concurrent CLIs do not lose pins.
type KnownNodes struct {
	path string
}

// OpenKnownNodes returns the known-nodes file at path (it need not exist).
func OpenKnownNodes(path string) *KnownNodes { return &KnownNodes{path: path} }

// Path is the file's path.
func (k *KnownNodes) Path() string { return k.path }

// Lookup returns the key pinned for addr (a NodeAddr).
func (k *KnownNodes) Lookup(addr string) (string, bool, error) {
	pins, err := k.read()
	if err != nil {
		return "", false, err
	}
	pub, ok := pins[addr]
	return pub, ok, nil
}

// Pin records pub for addr unless the file pins it already; a different
// key already pinned for addr is a *NodeKeyChangedError.
func (k *KnownNodes) Pin(addr, pub string) error {
	if err := trust.CheckKey(pub); err != nil {
		return fmt.Errorf("known nodes: node key: %w", err)
	}
	if strings.ContainsAny(addr, " \t\r\n#") || addr == "" {
		return fmt.Errorf("known nodes: address %q", addr)
	}
	dir := filepath.Dir(k.path)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("known nodes %s: %w", k.path, err)
	}
	lock, err := os.OpenFile(k.path+".lock", os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return fmt.Errorf("known nodes %s: %w", k.path, err)
	}
	defer lock.Close()
	if err := syscall.Flock(int(lock.Fd()), syscall.LOCK_EX); err != nil {
		return fmt.Errorf("known nodes %s: lock: %w", k.path, err)
	}
	defer syscall.Flock(int(lock.Fd()), syscall.LOCK_UN)
	old, err := k.readRaw()
	if err != nil {
		return err
	}
	pins, err := k.parse(old)
	if err != nil {
		return err
	}
	if have, ok := pins[addr]; ok {
		if have == pub {
			return nil
		}
		return &NodeKeyChangedError{Addr: addr, Pinned: have, Got: pub, File: k.path}
	}
	var buf bytes.Buffer
	if len(old) == 0 {
		buf.WriteString("# robonet known nodes: server address, node public key (pinned on first use; see README)\n")
	} else {
		buf.Write(old)
		if old[len(old)-1] != '\n' {
			buf.WriteByte('\n')
		}
	}
	fmt.Fprintf(&buf, "%s %s\n", addr, pub)
	return writeAtomic(k.path, buf.Bytes())
}

func (k *KnownNodes) read() (map[string]string, error) {
	data, err := k.readRaw()
	if err != nil {
		return nil, err
	}
	return k.parse(data)
}

func (k *KnownNodes) readRaw() ([]byte, error) {
	f, err := os.Open(k.path)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("known nodes: %w", err)
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, maxKnownNodes+1))
	if err != nil {
		return nil, fmt.Errorf("known nodes %s: %w", k.path, err)
	}
	if len(data) > maxKnownNodes {
		return nil, fmt.Errorf("known nodes %s: over %d bytes", k.path, maxKnownNodes)
	}
	return data, nil
}

func (k *KnownNodes) parse(data []byte) (map[string]string, error) {
	pins := map[string]string{}
	sc := bufio.NewScanner(bytes.NewReader(data))
	sc.Buffer(make([]byte, 4096), maxKnownNodes)
	for line := 1; sc.Scan(); line++ {
		s := strings.TrimSpace(sc.Text())
		if s == "" || strings.HasPrefix(s, "#") {
			continue
		}
		f := strings.Fields(s)
		if len(f) != 2 || trust.CheckKey(f[1]) != nil {
			return nil, fmt.Errorf("known nodes %s:%d: want \"host:port NODEKEY\", got %q", k.path, line, clipKey(s))
		}
		if have, dup := pins[f[0]]; dup && have != f[1] {
			return nil, fmt.Errorf("known nodes %s:%d: %s is pinned twice, to %s and %s", k.path, line, f[0], have, f[1])
		}
		pins[f[0]] = f[1]
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("known nodes %s: %w", k.path, err)
	}
	return pins, nil
}

// writeAtomic replaces path with data (mode 0600): a temporary file in the
// same directory, synced, renamed over path, and the directory synced.
func writeAtomic(path string, data []byte) error {
	var r [8]byte
	_, _ = rand.Read(r[:])
	tmp := path + ".tmp-" + hex.EncodeToString(r[:])
	f, err := os.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	_, werr := f.Write(data)
	if werr == nil {
		werr = f.Sync()
	}
	if cerr := f.Close(); werr == nil {
		werr = cerr
	}
	if werr == nil {
		werr = os.Rename(tmp, path)
	}
	if werr != nil {
		os.Remove(tmp)
		return fmt.Errorf("write %s: %w", path, werr)
	}
	if d, err := os.Open(filepath.Dir(path)); err == nil {
		_ = d.Sync()
		d.Close()
	}
	return nil
}

// NodeAddr is the address a server URL pins under: host:port, the host in
// lower case, the port 4222 when the URL has none ("nats://Node-A" →
// "node-a:4222", "tls://[::1]:4333" → "[::1]:4333").
func NodeAddr(server string) (string, error) {
	s := strings.TrimSpace(server)
	if !strings.Contains(s, "://") {
		s = "nats://" + s
	}
	u, err := url.Parse(s)
	if err != nil || u.Hostname() == "" {
		return "", fmt.Errorf("server URL %q: no host", server)
	}
	port := u.Port()
	if port == "" {
		port = "4222"
	}
	return net.JoinHostPort(strings.ToLower(u.Hostname()), port), nil
}

// loopbackURL reports whether a server URL names this machine only.
func loopbackURL(server string) bool {
	addr, err := NodeAddr(server)
	if err != nil {
		return false
	}
	host, _, _ := net.SplitHostPort(addr)
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// nodePin decides which node key one connection trusts, and pins it.
// Trusted keys (Options.NodeKeys) are accepted at any address without
// pinning; otherwise the key pinned in known for the address must match,
// and an address not pinned yet is pinned on first use. Without a known
// file and without trusted keys the first key proved (by TLS or by a query
// reply bound to the connected server) is this connection's.
type nodePin struct {
	trusted map[string]bool
	known   *KnownNodes
	addrs   []string // Options.Server's addresses (NodeAddr)
	notice  func(string)

	mu     sync.Mutex // guards key, tlsKey and tlsErr
	key    string     // the node key of this connection, once settled
	tlsKey string     // the key the last TLS handshake proved
	tlsErr error      // why the last handshake was refused
}

// checkTLS judges the key a TLS handshake proved, before the client sends
// its credentials. With several server URLs the address is not known yet:
// the key must fit one of them (the connected one is settled after).
func (p *nodePin) checkTLS(pub string) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	err := p.checkTLSLocked(pub)
	p.tlsErr = err
	if err == nil {
		p.tlsKey = pub
	}
	return err
}

func (p *nodePin) checkTLSLocked(pub string) error {
	if p.key != "" {
		if pub != p.key {
			return fmt.Errorf("%w: this connection's node is %s, but after reconnecting the node proves %s", ErrNodeKey, p.key, pub)
		}
		return nil
	}
	if p.trusted[pub] {
		return nil
	}
	if p.known == nil {
		if len(p.trusted) > 0 {
			return fmt.Errorf("%w: the node proves %s, not a key this client trusts (%s)", ErrNodeKey, pub, keyList(p.trusted))
		}
		return nil
	}
	var changed error
	for _, a := range p.addrs {
		have, ok, err := p.known.Lookup(a)
		if err != nil {
			return err
		}
		if !ok || have == pub {
			return nil // pinned here, or to be pinned on first use
		}
		if changed == nil {
			changed = &NodeKeyChangedError{Addr: a, Pinned: have, Got: pub, File: p.known.Path()}
		}
	}
	return changed
}

// settle makes pub this connection's node key, if the rules allow it for
// addr, pinning it on first use.
func (p *nodePin) settle(addr, pub string) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.key != "" {
		if pub != p.key {
			return fmt.Errorf("%w: reply signed by %s, but this connection's node is %s", ErrNodeKey, pub, p.key)
		}
		return nil
	}
	if p.tlsKey != "" && pub != p.tlsKey {
		return fmt.Errorf("%w: reply signed by %s, but the node's TLS certificate is %s's", ErrNodeKey, pub, p.tlsKey)
	}
	switch {
	case p.trusted[pub]:
	case p.known != nil:
		have, ok, err := p.known.Lookup(addr)
		if err != nil {
			return err
		}
		if ok && have != pub {
			return &NodeKeyChangedError{Addr: addr, Pinned: have, Got: pub, File: p.known.Path()}
		}
		if !ok {
			if err := p.known.Pin(addr, pub); err != nil {
				return err
			}
			if p.notice != nil {
				p.notice(fmt.Sprintf("pinned node key %s for %s in %s (first use)", pub, addr, p.known.Path()))
			}
		}
	case len(p.trusted) > 0:
		return fmt.Errorf("%w: the node at %s proves %s, not a key this client trusts (%s)", ErrNodeKey, addr, pub, keyList(p.trusted))
	}
	p.key = pub
	return nil
}

// current is the settled node key ("" before the first proof).
func (p *nodePin) current() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.key
}

func (p *nodePin) lastTLSErr() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.tlsErr
}

func keyList(m map[string]bool) string {
	var out []string
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	if len(out) > 3 {
		out = append(out[:3], "…")
	}
	return strings.Join(out, ", ")
}

func clipKey(s string) string {
	if len(s) > 80 {
		return s[:80] + "…"
	}
	return s
}

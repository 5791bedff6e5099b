//go:build e2e

package e2e

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

// labSeq numbers the labs of this run, so each gets its own namespaces.
var labSeq atomic.Int64

// lab is one test's private network: a namespace holding a bridge, and one
// namespace per host, each with a veth whose far end is on the bridge. Hosts
// have addresses subnet+1, subnet+2, …; the bridge has subnet+254. The host
// namespaces have no default route, so nothing leaves the lab.
type lab struct {
	t      *testing.T
	prefix string // namespace names start with it
	bridge string // the bridge's namespace
	dir    string // the test's temp dir: data dirs and logs
	hosts  []*host
}

// host is one machine of a lab: a network namespace with interface eth0.
type host struct {
	lab  *lab
	ns   string // namespace name
	ip   string // address on the lab subnet
	veth string // the bridge-side end of its link, in lab.bridge
}

// newLab builds a lab of n hosts and registers its removal (namespaces, and
// any process still in them) with t.Cleanup.
func newLab(t *testing.T, n int) *lab {
	t.Helper()
	requireEnv(t)
	l := &lab{
		t:      t,
		prefix: fmt.Sprintf("%s%d-", nsPrefix(), labSeq.Add(1)),
		dir:    t.TempDir(),
	}
	l.bridge = l.prefix + "br"
	t.Cleanup(l.destroy) // registered first, so it runs after every node's cleanup
	l.ip("netns", "add", l.bridge)
	l.ip("-n", l.bridge, "link", "set", "lo", "up")
	l.ip("-n", l.bridge, "link", "add", "br0", "type", "bridge")
	l.ip("-n", l.bridge, "addr", "add", subnet+"254/24", "dev", "br0")
	l.ip("-n", l.bridge, "link", "set", "br0", "up")
	for i := 1; i <= n; i++ {
		h := &host{lab: l, ns: fmt.Sprintf("%sh%d", l.prefix, i), ip: fmt.Sprintf("%s%d", subnet, i), veth: fmt.Sprintf("vh%d", i)}
		l.hosts = append(l.hosts, h)
		l.ip("netns", "add", h.ns)
		l.ip("-n", h.ns, "link", "set", "lo", "up")
		l.ip("-n", l.bridge, "link", "add", h.veth, "type", "veth", "peer", "name", "eth0", "netns", h.ns)
		l.ip("-n", l.bridge, "link", "set", h.veth, "master", "br0", "up")
		l.ip("-n", h.ns, "addr", "add", h.ip+"/24", "dev", "eth0")
		l.ip("-n", h.ns, "link", "set", "eth0", "up")
	}
	return l
}

// ip runs iproute2's ip and fails the test if it fails.
func (l *lab) ip(args ...string) {
	l.t.Helper()
	if out, err := exec.Command(ipBin, args...).CombinedOutput(); err != nil {
		l.t.Fatalf("ip %s: %v: %s", strings.Join(args, " "), err, bytes.TrimSpace(out))
	}
}

// namespaces lists the lab's namespaces, hosts first.
func (l *lab) namespaces() []string {
	var out []string
	for _, h := range l.hosts {
		out = append(out, h.ns)
	}
	return append(out, l.bridge)
}

// destroy kills whatever still runs in the lab's namespaces and deletes them.
// Node cleanups have normally stopped every process already.
func (l *lab) destroy() {
	for _, ns := range l.namespaces() {
		killNamespacePids(ns)
	}
	for _, ns := range l.namespaces() {
		if out, err := exec.Command(ipBin, "netns", "del", ns).CombinedOutput(); err != nil &&
			!bytes.Contains(out, []byte("No such file")) {
			l.t.Errorf("delete namespace %s: %v: %s", ns, err, bytes.TrimSpace(out))
		}
	}
}

// joinList is every host's cluster address: the --join every node gets.
func (l *lab) joinList() string {
	var addrs []string
	for _, h := range l.hosts {
		addrs = append(addrs, net.JoinHostPort(h.ip, clusterPort))
	}
	return strings.Join(addrs, ",")
}

// linkDown takes the host's eth0 down from inside its namespace: its routes
// to the lab vanish and its peers' packets to it are lost.
func (h *host) linkDown() { h.lab.ip("-n", h.ns, "link", "set", "eth0", "down") }

// linkUp brings eth0 back; the kernel restores its subnet route.
func (h *host) linkUp() { h.lab.ip("-n", h.ns, "link", "set", "eth0", "up") }

// dropRules are the iptables rules that silently drop every packet on the
// host's lab link, both ways (loopback keeps working, so the CLI still
// reaches the node inside the namespace).
var dropRules = [][]string{
	{"INPUT", "-i", "eth0", "-j", "DROP"},
	{"OUTPUT", "-o", "eth0", "-j", "DROP"},
}

// dropAll installs dropRules in the host's namespace: a partition where
// packets vanish without an error, as on a cut cable between switches.
func (h *host) dropAll() {
	h.lab.t.Helper()
	for _, r := range dropRules {
		h.iptables(append([]string{"-I"}, r...)...)
	}
}

// undrop removes dropRules again.
func (h *host) undrop() {
	h.lab.t.Helper()
	for _, r := range dropRules {
		h.iptables(append([]string{"-D"}, r...)...)
	}
}

func (h *host) iptables(args ...string) {
	h.lab.t.Helper()
	full := append([]string{"netns", "exec", h.ns, "iptables", "-w", "5"}, args...)
	if out, err := exec.Command(ipBin, full...).CombinedOutput(); err != nil {
		h.lab.t.Fatalf("iptables %s in %s: %v: %s", strings.Join(args, " "), h.ns, err, bytes.TrimSpace(out))
	}
}

// exec runs the robonet binary with args inside the host's namespace and
// returns its stdout; the error carries its stderr.
func (h *host) exec(ctx context.Context, args ...string) ([]byte, error) {
	cmd := exec.CommandContext(ctx, ipBin, append([]string{"netns", "exec", h.ns, robonetBin}, args...)...)
	cmd.Env = childEnv()
	cmd.WaitDelay = time.Second
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return out, fmt.Errorf("robonet %s in %s: %v: %s", strings.Join(args, " "), h.ns, err, bytes.TrimSpace(stderr.Bytes()))
	}
	return out, nil
}

// childEnv is the environment for robonet processes: ours without any
// ROBONET_* variable, which the CLI would read as flags.
func childEnv() []string {
	var env []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "ROBONET_") {
			env = append(env, kv)
		}
	}
	return env
}

// Package testmesh starts real in-process robonet swarms for tests: embedded
// nats-servers on ephemeral ports, data in t.TempDir(), everything shut down
// in t.Cleanup. It also has the polling helper tests use instead of sleeps.
package testmesh

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nkeys"

	"github.com/robonet-mesh/robonet/mesh"
	"github.com/robonet-mesh/robonet/node"
	"github.com/robonet-mesh/robonet/trust"
	"github.com/robonet-mesh/robonet/wire"
)

// Swarm is a set of in-process nodes.
type Swarm struct {
	t      testing.TB
	mu     sync.Mutex
	nodes  []*node.Node
	opts   []node.Options
	routes []string
	done   *atomic.Bool
	base   node.Options
	secret string            // the swarm secret every member starts with
	seeds  map[string]string // user name → seed file (User), guarded by mu
}

// UserSeedFile is the seed file User wrote for name ("" if none): a second
// client of the user must use it, so that it shares the key's chain file
// (a key used with two chain files is one used from two places, and the
// nodes refuse whichever falls behind).
func (s *Swarm) UserSeedFile(name string) string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.seeds[name]
}

// Secret is the swarm secret the members were started with.
func (s *Swarm) Secret() string { return s.secret }

// Option adjusts the options of node i before it starts.
type Option func(i int, o *node.Options)

// WithChevrons gives node i the chevron cs[i] ("" = auto-number).
func WithChevrons(cs ...string) Option {
	return func(i int, o *node.Options) {
		if i < len(cs) {
			o.Chevron = cs[i]
		}
	}
}

// WithCaps gives node i the capabilities caps[i].
func WithCaps(caps ...[]string) Option {
	return func(i int, o *node.Options) {
		if i < len(caps) {
			o.Caps = caps[i]
		}
	}
}

// Start starts n nodes at once and waits until every one is ready. One node
// runs standalone; two or more form a swarm whose every member lists every
// route address (its own included, as nats-server allows).
func Start(t testing.TB, n int, options ...Option) *Swarm {
	t.Helper()
	s := &Swarm{t: t, done: new(atomic.Bool)}
	if n > 1 {
		s.routes = ReservePorts(t, n)
	}
	var err error
	if s.secret, err = trust.GenerateSecret(); err != nil {
		t.Fatal(err)
	}
	for i := 0; i < n; i++ {
		o := s.options(i, options)
		s.opts = append(s.opts, o)
	}
	s.nodes = make([]*node.Node, n)
	t.Cleanup(s.shutdown)
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i := 0; i < n; i++ {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			s.nodes[i], errs[i] = s.startNode(s.opts[i])
		}(i)
	}
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Fatalf("start node %d: %v", i, err)
		}
	}
	s.waitFounder()
	return s
}

func (s *Swarm) options(i int, options []Option) node.Options {
	o := node.Options{
		DataDir: filepath.Join(s.t.TempDir(), fmt.Sprintf("n%d", i)),
		Listen:  "127.0.0.1:0",
		Swarm:   "test",
		Logger:  Logger(s.t, s.done),
		// Node 0 founds: its operator key (Client(0)) is the swarm's
		// first admin; the others' are operators outside their node.
		Founder: i == 0,
		// Members of a testmesh swarm start together and join as core
		// members without asking (AddEdge and AddCandidate say otherwise).
		ForceCore: true,
	}
	if i != 0 {
		// Node 0 alone founds, however late its write comes on a loaded
		// machine.
		o.FounderGrace = -1
	}
	if len(s.routes) > 0 {
		o.Cluster = s.routes[i%len(s.routes)]
		o.Join = append([]string(nil), s.routes...)
		o.Token = s.secret
		if i >= len(s.routes) {
			o.Cluster = "127.0.0.1:0"
		}
	}
	for _, opt := range options {
		opt(i, &o)
	}
	return o
}

func (s *Swarm) startNode(o node.Options) (*node.Node, error) {
	nd, err := node.New(o)
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	if err := nd.Start(ctx); err != nil {
		return nil, err
	}
	return nd, nil
}

// waitFounder waits until every live node knows the founder, so that
// Client(0)'s admin key works everywhere from the first command.
func (s *Swarm) waitFounder() {
	s.t.Helper()
	CheckFor(s.t, 30*time.Second, 20*time.Millisecond, func() error {
		for i, nd := range s.nodes {
			if nd != nil && nd.Founder() == "" {
				return fmt.Errorf("node %d does not know the founder yet", i)
			}
		}
		return nil
	})
}

// waitKnowsFounder waits until node i (nd) knows the founder.
func (s *Swarm) waitKnowsFounder(i int, nd *node.Node) {
	s.t.Helper()
	CheckFor(s.t, 30*time.Second, 20*time.Millisecond, func() error {
		if nd.Founder() == "" {
			return fmt.Errorf("node %d does not know the founder yet", i)
		}
		return nil
	})
}

// Add starts one more member that joins the existing swarm, and waits
// until it knows the founder (so Client(0) is an admin there too).
func (s *Swarm) Add(options ...Option) *node.Node {
	s.t.Helper()
	nd, i := s.add(options)
	s.waitKnowsFounder(i, nd)
	return nd
}

// AddNode starts one more member like Add but returns once it is up,
// without waiting for it to learn the founder. Nodes joining a formed
// swarm at the same instant can form a JetStream meta group of their own
// (README, "Known limits"); tests of what is decided before that shows
// use AddNode.
func (s *Swarm) AddNode(options ...Option) *node.Node {
	s.t.Helper()
	nd, _ := s.add(options)
	return nd
}

// add starts one more node and returns it with its index: Add, AddNode,
// AddEdge and AddCandidate differ only in options. Its route address is a
// fresh port (the reserved ones are the first members') unless an option
// says otherwise: an edge has none.
func (s *Swarm) add(options []Option) (*node.Node, int) {
	s.t.Helper()
	fresh := func(_ int, o *node.Options) { o.Cluster = "127.0.0.1:0" }
	s.mu.Lock()
	i := len(s.nodes)
	o := s.options(i, append([]Option{fresh}, options...))
	s.opts = append(s.opts, o)
	s.nodes = append(s.nodes, nil)
	s.mu.Unlock()
	nd, err := s.startNode(o)
	if err != nil {
		s.t.Fatalf("add node %d: %v", i, err)
	}
	s.mu.Lock()
	s.nodes[i] = nd
	s.mu.Unlock()
	return nd, i
}

// Node returns node i (nil once stopped).
func (s *Swarm) Node(i int) *node.Node {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.nodes[i]
}

// Len is how many nodes the swarm has had.
func (s *Swarm) Len() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.nodes)
}

// Options returns the options node i was started with.
func (s *Swarm) Options(i int) node.Options {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.opts[i]
}

// Kill stops node i as a crash looks to the others (see node.Kill).
func (s *Swarm) Kill(i int) {
	s.mu.Lock()
	nd := s.nodes[i]
	s.nodes[i] = nil
	s.mu.Unlock()
	if nd != nil {
		nd.Kill()
	}
}

// Stop shuts node i down cleanly.
func (s *Swarm) Stop(i int) {
	s.mu.Lock()
	nd := s.nodes[i]
	s.nodes[i] = nil
	s.mu.Unlock()
	if nd != nil {
		_ = nd.Shutdown(context.Background())
	}
}

// Restart starts node i again with the same options and data dir.
func (s *Swarm) Restart(i int) *node.Node {
	s.t.Helper()
	s.Stop(i)
	nd, err := s.startNode(s.Options(i))
	if err != nil {
		s.t.Fatalf("restart node %d: %v", i, err)
	}
	s.mu.Lock()
	s.nodes[i] = nd
	s.mu.Unlock()
	s.waitKnowsFounder(i, nd)
	return nd
}

// Live returns the running nodes.
func (s *Swarm) Live() []*node.Node {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []*node.Node
	for _, n := range s.nodes {
		if n != nil {
			out = append(out, n)
		}
	}
	return out
}

// Leaders returns the indexes of the nodes that believe they lead now.
func (s *Swarm) Leaders() []int {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []int
	for i, n := range s.nodes {
		if n != nil && n.IsLeader() {
			out = append(out, i)
		}
	}
	return out
}

// Client connects to node i with its operator key.
func (s *Swarm) Client(i int) *mesh.Client {
	s.t.Helper()
	nd := s.Node(i)
	c, err := mesh.Connect(context.Background(), mesh.Options{Server: nd.ClientURL(), SeedFile: nd.OperatorSeedPath()})
	if err != nil {
		s.t.Fatalf("client for node %d: %v", i, err)
	}
	s.t.Cleanup(c.Close)
	return c
}

// User adds a user with role through node 0's operator and returns a
// client connected to node i with the user's own key, once every node
// knows it.
func (s *Swarm) User(i int, name, role string) *mesh.Client {
	s.t.Helper()
	kp, err := nkeys.CreateUser()
	if err != nil {
		s.t.Fatal(err)
	}
	pub, _ := kp.PublicKey()
	seed, _ := kp.Seed()
	path := filepath.Join(s.t.TempDir(), name+".nk")
	s.mu.Lock()
	if s.seeds == nil {
		s.seeds = map[string]string{}
	}
	s.seeds[name] = path
	s.mu.Unlock()
	if err := os.WriteFile(path, seed, 0o600); err != nil {
		s.t.Fatal(err)
	}
	ids, err := s.Client(0).Identities(context.Background())
	if err != nil {
		s.t.Fatal(err)
	}
	// A write can stall for seconds while the leader raises the buckets to
	// R3 (a swarm that just grew to three): try again, and take "exists"
	// on a later try as the earlier try having landed (the check below
	// proves it is this key with this role).
	deadline := time.Now().Add(30 * time.Second)
	for try := 0; ; try++ {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		_, err := ids.AddUser(ctx, name, role, pub, "", time.Now())
		cancel()
		if err == nil || (try > 0 && strings.Contains(err.Error(), "exists")) {
			break
		}
		var ne *mesh.NotEverywhereError
		if errors.As(err, &ne) {
			break // written; the check below waits for every node
		}
		if !errors.Is(err, context.DeadlineExceeded) || time.Now().After(deadline) {
			s.t.Fatalf("add user %s: %v", name, err)
		}
	}
	CheckFor(s.t, 20*time.Second, 50*time.Millisecond, func() error {
		for _, nd := range s.Live() {
			if r, ok := nd.RoleOf(pub); !ok || r != role {
				return fmt.Errorf("node %s does not know user %s yet", nd.Chevron(), name)
			}
		}
		return nil
	})
	c, err := mesh.Connect(context.Background(), mesh.Options{Server: s.Node(i).ClientURL(), SeedFile: path})
	if err != nil {
		s.t.Fatalf("client for user %s: %v", name, err)
	}
	s.t.Cleanup(c.Close)
	return c
}

// WaitAlive waits until every running node sees exactly the running nodes as
// alive (and nothing else as alive).
func (s *Swarm) WaitAlive(timeout time.Duration) {
	s.t.Helper()
	CheckFor(s.t, timeout, 50*time.Millisecond, func() error {
		live := s.Live()
		want := map[string]bool{}
		for _, n := range live {
			want[n.Chevron().String()] = true
		}
		for _, n := range live {
			alive := map[string]bool{}
			for _, m := range n.Members() {
				if m.State == wire.StateAlive {
					alive[m.Chevron] = true
				}
			}
			if len(alive) != len(want) {
				return fmt.Errorf("node %s sees %d alive, want %d", n.Chevron(), len(alive), len(want))
			}
			for c := range want {
				if !alive[c] {
					return fmt.Errorf("node %s does not see %s alive", n.Chevron(), c)
				}
			}
		}
		return nil
	})
}

// WaitLeader waits until exactly one running node leads and every running
// node agrees who it is; it returns that node's index.
func (s *Swarm) WaitLeader(timeout time.Duration) int {
	s.t.Helper()
	idx := -1
	CheckFor(s.t, timeout, 50*time.Millisecond, func() error {
		ls := s.Leaders()
		if len(ls) != 1 {
			return fmt.Errorf("%d leaders: %v", len(ls), ls)
		}
		chev := s.Node(ls[0]).Chevron().String()
		for _, n := range s.Live() {
			if st := n.Status(); st.Leader != chev {
				return fmt.Errorf("node %s thinks the leader is %q, not %s", n.Chevron(), st.Leader, chev)
			}
		}
		idx = ls[0]
		return nil
	})
	return idx
}

func (s *Swarm) shutdown() {
	s.mu.Lock()
	nodes := append([]*node.Node(nil), s.nodes...)
	s.mu.Unlock()
	var wg sync.WaitGroup
	for _, n := range nodes {
		if n != nil {
			wg.Add(1)
			go func() { defer wg.Done(); n.Kill() }()
		}
	}
	wg.Wait()
	s.done.Store(true)
}

// CheckFor polls f every interval until it returns nil, failing the test with
// f's last error after timeout.
func CheckFor(t testing.TB, timeout, interval time.Duration, f func() error) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	var err error
	for {
		if err = f(); err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("after %v: %v", timeout, err)
		}
		time.Sleep(interval)
	}
}

// ReservePorts returns n free loopback addresses. The listeners are closed
// before returning, so another process could take one in between; routes must
// know their peers before any server starts, and this is the usual trade.
// The ports come from below the kernel's ephemeral range when there is room:
// a port picked from that range with :0 is the very kind the kernel hands out
// as the source port of an outgoing connection, and the nodes of a test dial
// each other (routes, clients) before every listener is up, so a reserved
// port could be taken by a peer's dial before its own server binds it.
func ReservePorts(t testing.TB, n int) []string {
	t.Helper()
	var ls []net.Listener
	var out []string
	for tries := 0; len(ls) < n; tries++ {
		addr := "127.0.0.1:0"
		if p := nextLowPort(); p != 0 && tries < 10*n+100 {
			addr = fmt.Sprintf("127.0.0.1:%d", p)
		}
		l, err := net.Listen("tcp", addr)
		if err != nil {
			if addr != "127.0.0.1:0" {
				continue // taken: try the next one
			}
			t.Fatal(err)
		}
		ls = append(ls, l)
		out = append(out, l.Addr().String())
	}
	for _, l := range ls {
		l.Close()
	}
	return out
}

var lowPorts struct {
	once     sync.Once
	lo, size int
	next     atomic.Int64
}

// nextLowPort walks the ports between 10000 and the start of the ephemeral
// range (0 when there is no room), from an offset of this process's id, so
// test processes running side by side start far apart.
func nextLowPort() int {
	lowPorts.once.Do(func() {
		b, err := os.ReadFile("/proc/sys/net/ipv4/ip_local_port_range")
		var first, last int
		if err != nil || func() bool { _, err := fmt.Sscan(string(b), &first, &last); return err != nil }() {
			return
		}
		if first-10000 >= 1000 {
			lowPorts.lo, lowPorts.size = 10000, first-10000
			lowPorts.next.Store(int64(os.Getpid()*7919) % int64(lowPorts.size))
		}
	})
	if lowPorts.size == 0 {
		return 0
	}
	return lowPorts.lo + int((lowPorts.next.Add(1)-1)%int64(lowPorts.size))
}

// Logger returns a logger that writes to t at the level in ROBONET_TEST_LOG
// (debug, info, warn; default warn) and goes quiet once done is set, so a
// late log line cannot fail a finished test.
func Logger(t testing.TB, done *atomic.Bool) *slog.Logger {
	level := slog.LevelWarn
	switch strings.ToLower(os.Getenv("ROBONET_TEST_LOG")) {
	case "debug":
		level = slog.LevelDebug
	case "info":
		level = slog.LevelInfo
	case "error":
		level = slog.LevelError
	}
	return slog.New(slog.NewTextHandler(tlogWriter{t: t, done: done}, &slog.HandlerOptions{Level: level}))
}

type tlogWriter struct {
	t    testing.TB
	done *atomic.Bool
}

func (w tlogWriter) Write(p []byte) (int, error) {
	if !w.done.Load() {
		w.t.Log(strings.TrimRight(string(p), "\n"))
	}
	return len(p), nil
}

// CheckNoLeaks fails t if goroutines from robonet's packages are still
// running a few seconds after the test: every Start must be matched by a
// Shutdown that waits for what it started.
func CheckNoLeaks(t testing.TB) {
	t.Helper()
	CheckFor(t, 10*time.Second, 50*time.Millisecond, func() error {
		buf := make([]byte, 1<<20)
		stacks := string(buf[:runtime.Stack(buf, true)])
		for _, g := range strings.Split(stacks, "\n\n") {
			if strings.Contains(g, "robonet-mesh/robonet/node.") || strings.Contains(g, "robonet-mesh/robonet/mesh.") {
				return fmt.Errorf("leaked goroutine:\n%s", g)
			}
		}
		return nil
	})
}

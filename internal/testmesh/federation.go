package testmesh

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nuid"

	"github.com/robonet-mesh/robonet/node"
	"github.com/robonet-mesh/robonet/subjects"
)

// StartSwarm starts a federated swarm of n nodes with chevrons prefix.1 …
// prefix.n (prefix is zone.region.swarm, e.g. "3.12.7") and waits until
// every one is ready. Its swarm name is then the domain rn-z-r-s. Pass
// AsHub for a swarm that accepts child swarms, WithFederate (or use
// StartChild) for a child; later options override earlier ones. One node
// is a single-node swarm (JetStream standalone), as in Start.
func StartSwarm(t testing.TB, n int, prefix string, options ...Option) *Swarm {
	t.Helper()
	chevs := make([]string, n)
	for i := range chevs {
		chevs[i] = fmt.Sprintf("%s.%d", prefix, i+1)
	}
	base := []Option{WithChevrons(chevs...), func(_ int, o *node.Options) { o.Swarm = "" }}
	return Start(t, n, append(base, options...)...)
}

// AsHub makes every node listen for child swarms on an ephemeral loopback
// port (Swarm.LeafAddrs lists them).
func AsHub() Option {
	return func(_ int, o *node.Options) { o.LeafListen = "127.0.0.1:0" }
}

// WithFederate makes every node a child of the swarm whose leaf addresses
// are parents, admitted with token.
func WithFederate(parents []string, token string) Option {
	return func(_ int, o *node.Options) {
		o.Federate = append([]string(nil), parents...)
		o.FederateToken = token
	}
}

// WithLogTap copies every node's log records into tap as well.
func WithLogTap(tap *LogTap) Option {
	return func(_ int, o *node.Options) {
		if o.Logger == nil {
			o.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
		}
		o.Logger = slog.New(tapHandler{next: o.Logger.Handler(), tap: tap})
	}
}

// LeafAddrs lists the leaf addresses of the running nodes of a hub swarm.
func (s *Swarm) LeafAddrs() []string {
	var out []string
	for _, nd := range s.Live() {
		if a := nd.LeafAddr(); a != "" {
			out = append(out, a)
		}
	}
	return out
}

// FederationToken has node 0's founder (the swarm's first admin) create a
// federation token through the signed token query, as `robonet token
// create --federate` does; prefix binds it to one child swarm ("" : any).
func (s *Swarm) FederationToken(ttl time.Duration, prefix string) string {
	s.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	var tr node.TokenReply
	if err := s.Client(0).Query(ctx, subjects.QueryToken, node.TokenRequest{TTLMs: ttl.Milliseconds(), Federate: true, Prefix: prefix}, &tr); err != nil {
		s.t.Fatalf("federation token: %v", err)
	}
	return tr.Token
}

// StartChild starts a swarm of n nodes with prefix as a child of hub,
// admitted with a fresh federation token bound to prefix, and waits until
// every node holds its own leaf link to the hub.
func StartChild(t testing.TB, hub *Swarm, n int, prefix string, options ...Option) *Swarm {
	t.Helper()
	tok := hub.FederationToken(15*time.Minute, prefix)
	s := StartSwarm(t, n, prefix, append([]Option{WithFederate(hub.LeafAddrs(), tok)}, options...)...)
	s.WaitLinked(30 * time.Second)
	return s
}

// WaitLinked waits until every running node of s has its link to the
// parent swarm up.
func (s *Swarm) WaitLinked(timeout time.Duration) {
	s.t.Helper()
	CheckFor(s.t, timeout, 20*time.Millisecond, func() error {
		for _, nd := range s.Live() {
			if nd.ParentPrefix() == "" {
				return fmt.Errorf("node %s has no leaf link to its parent: %+v", nd.Chevron(), nd.LeafLinks())
			}
		}
		return nil
	})
}

// RestartWith stops node i and starts it again on its data dir with its
// options changed by change (e.g. without the federation flags).
func (s *Swarm) RestartWith(i int, change func(*node.Options)) *node.Node {
	s.t.Helper()
	s.mu.Lock()
	change(&s.opts[i])
	s.mu.Unlock()
	return s.Restart(i)
}

// LogTap keeps the log records of the nodes it was given to (WithLogTap),
// for tests that check what a node said, such as why it refused a peer.
type LogTap struct {
	mu   sync.Mutex
	recs []string
}

// Find returns the records (message and attributes, as text) that contain
// every one of parts.
func (l *LogTap) Find(parts ...string) []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	var out []string
	for _, r := range l.recs {
		all := true
		for _, p := range parts {
			if !strings.Contains(r, p) {
				all = false
				break
			}
		}
		if all {
			out = append(out, r)
		}
	}
	return out
}

// Wait waits until a record contains every one of parts and returns it.
func (l *LogTap) Wait(t testing.TB, timeout time.Duration, parts ...string) string {
	t.Helper()
	var got string
	CheckFor(t, timeout, 20*time.Millisecond, func() error {
		if f := l.Find(parts...); len(f) > 0 {
			got = f[0]
			return nil
		}
		return fmt.Errorf("no log record with %q", parts)
	})
	return got
}

type tapHandler struct {
	next  slog.Handler
	tap   *LogTap
	attrs []slog.Attr
}

func (h tapHandler) Enabled(context.Context, slog.Level) bool { return true }

func (h tapHandler) Handle(ctx context.Context, r slog.Record) error {
	var b strings.Builder
	b.WriteString(r.Level.String() + " " + r.Message)
	for _, a := range h.attrs {
		fmt.Fprintf(&b, " %s=%v", a.Key, a.Value)
	}
	r.Attrs(func(a slog.Attr) bool {
		fmt.Fprintf(&b, " %s=%v", a.Key, a.Value)
		return true
	})
	h.tap.mu.Lock()
	if len(h.tap.recs) < 100000 {
		h.tap.recs = append(h.tap.recs, b.String())
	}
	h.tap.mu.Unlock()
	if h.next.Enabled(ctx, r.Level) {
		return h.next.Handle(ctx, r)
	}
	return nil
}

func (h tapHandler) WithAttrs(as []slog.Attr) slog.Handler {
	return tapHandler{next: h.next.WithAttrs(as), tap: h.tap, attrs: append(append([]slog.Attr(nil), h.attrs...), as...)}
}

func (h tapHandler) WithGroup(name string) slog.Handler {
	return tapHandler{next: h.next.WithGroup(name), tap: h.tap, attrs: h.attrs}
}

// Proxy is a TCP proxy in front of one address, for partitions: Blackhole
// makes it drop every byte in both directions while keeping the sockets
// open (a silent drop: no FIN, no RST, as a dropped route looks), Heal
// makes it forward again.
type Proxy struct {
	t      testing.TB
	ln     net.Listener
	target string
	mu     sync.Mutex
	holed  bool
	conns  []net.Conn
	closed bool
}

// NewProxy listens on an ephemeral loopback port and forwards to target.
func NewProxy(t testing.TB, target string) *Proxy {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &Proxy{t: t, ln: ln, target: target}
	go p.accept()
	t.Cleanup(p.Close)
	return p
}

// Addr is the proxy's address.
func (p *Proxy) Addr() string { return p.ln.Addr().String() }

// Blackhole drops every byte from now on, keeping connections open.
func (p *Proxy) Blackhole() { p.mu.Lock(); p.holed = true; p.mu.Unlock() }

// Heal forwards again (connections that lost bytes are usually closed by
// then; new ones work).
func (p *Proxy) Heal() { p.mu.Lock(); p.holed = false; p.mu.Unlock() }

func (p *Proxy) isHoled() bool { p.mu.Lock(); defer p.mu.Unlock(); return p.holed }

// Close stops the proxy and closes every connection.
func (p *Proxy) Close() {
	p.mu.Lock()
	p.closed = true
	conns := p.conns
	p.conns = nil
	p.mu.Unlock()
	p.ln.Close()
	for _, c := range conns {
		c.Close()
	}
}

func (p *Proxy) accept() {
	for {
		in, err := p.ln.Accept()
		if err != nil {
			return
		}
		out, err := net.DialTimeout("tcp", p.target, time.Second)
		if err != nil {
			in.Close()
			continue
		}
		p.mu.Lock()
		if p.closed {
			p.mu.Unlock()
			in.Close()
			out.Close()
			return
		}
		p.conns = append(p.conns, in, out)
		p.mu.Unlock()
		go p.pipe(in, out)
		go p.pipe(out, in)
	}
}

// pipe copies from → to, dropping bytes while the proxy is holed. A close
// on one side reaches the other only while forwarding: a blackhole carries
// no FIN either, so each side has to notice the silence by itself.
func (p *Proxy) pipe(from, to net.Conn) {
	buf := make([]byte, 32<<10)
	for {
		k, err := from.Read(buf)
		if k > 0 && !p.isHoled() {
			if _, werr := to.Write(buf[:k]); werr != nil {
				from.Close()
				to.Close()
				return
			}
		}
		if err != nil {
			from.Close()
			if !p.isHoled() {
				to.Close()
			}
			return
		}
	}
}

// Crosses reports whether a message published on subj through from
// reaches a subscriber on to (connections to nodes of two swarms), without
// timing: to subscribes to subj, a sync subject and a probe (rn.fed.…,
// which crosses both ways); from publishes the sync subject until it
// arrives, which proves to's interest reached from's side (interest
// travels in order), then publishes subj and the probe; subj crossed if
// it arrived before the probe, which travels behind it. The three
// subscriptions share one channel, filled in arrival order.
func Crosses(t testing.TB, from, to *nats.Conn, subj string) bool {
	t.Helper()
	msgs := make(chan *nats.Msg, 1024)
	tag := nuid.Next()
	sync, probe := subjects.Root+".fed.sync."+tag, subjects.Root+".fed.probe."+tag
	for _, s := range []string{subj, probe, sync} { // sync last: its crossing proves the others' interest arrived
		sub, err := to.ChanSubscribe(s, msgs)
		if err != nil {
			t.Fatal(err)
		}
		defer sub.Unsubscribe()
	}
	if err := to.Flush(); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(20 * time.Second)
	for synced := false; !synced; {
		if time.Now().After(deadline) {
			t.Fatalf("sync subject %s never crossed", sync)
		}
		if err := from.Publish(sync, nil); err != nil {
			t.Fatal(err)
		}
		_ = from.Flush()
		timer := time.NewTimer(50 * time.Millisecond)
	wait:
		for {
			select {
			case m := <-msgs:
				if m.Subject == sync {
					synced = true
					break wait
				}
			case <-timer.C:
				break wait
			}
		}
		timer.Stop()
	}
	if err := from.Publish(subj, []byte("x")); err != nil {
		t.Fatal(err)
	}
	if err := from.Publish(probe, nil); err != nil {
		t.Fatal(err)
	}
	_ = from.Flush()
	seen := false
	for {
		select {
		case m := <-msgs:
			switch m.Subject {
			case subj:
				seen = true
			case probe:
				return seen
			}
		case <-time.After(20 * time.Second):
			t.Fatalf("probe %s never crossed", probe)
		}
	}
}

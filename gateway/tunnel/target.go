package tunnel

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"slices"
	"strconv"
	"sync"
	"syscall"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/robonet-mesh/robonet/node"
	"github.com/robonet-mesh/robonet/wire"
)

// Limits bound what a target serves. Zero values take the defaults.
type Limits struct {
	MaxTunnels  int           // open tunnels on this node; 0: 256
	MaxPerKey   int           // open tunnels per requesting key; 0: 32
	DialTimeout time.Duration // connecting to the local port; 0: 5 s
	IdleTimeout time.Duration // no data either way this long closes a tunnel; 0: 10 min; <0: never
	MaxDuration time.Duration // a tunnel's whole life; 0: no limit
	MaxBytes    int64         // data both ways per tunnel; 0: no limit
	KeepAlive   time.Duration // 0: DefaultKeepAlive
	Window      int           // receive window; 0: DefaultWindow
}

// Options configure a Target.
type Options struct {
	Node   *node.Node   // the node this runs on: its chevron, its signer, Authorize
	Conn   *nats.Conn   // the feature connection, n.FeatureConn("proxy"); the caller closes it
	Allow  []int        // the ports of 127.0.0.1 the mesh may reach (--proxy-allow)
	Logger *slog.Logger // nil: discard
	Limits Limits
}

// Target serves tunnels to this node's allowed loopback ports: it answers
// opens on rn.<chevron>.http.*, checks each is signed by an operator or an
// admin and names an allowed port, connects to 127.0.0.1:<port> and copies
// bytes both ways until either side is done.
type Target struct {
	opts  Options
	allow []int
	log   *slog.Logger

	mu      sync.Mutex // guards all below
	sub     *nats.Subscription
	conns   map[*Conn]string // open tunnels → requesting key
	perKey  map[string]int
	stopped bool
	wg      sync.WaitGroup // tunnel goroutines
}

// New checks opts; it starts nothing.
func New(opts Options) (*Target, error) {
	if opts.Node == nil || opts.Conn == nil {
		return nil, errors.New("proxy target: Node and Conn are required")
	}
	if opts.Node.Chevron().IsZero() {
		return nil, errors.New("proxy target: the node has no chevron yet")
	}
	allow, err := CheckPorts(opts.Allow)
	if err != nil {
		return nil, fmt.Errorf("proxy target: %w", err)
	}
	if len(allow) == 0 {
		return nil, errors.New("proxy target: no port allowed")
	}
	l := &opts.Limits
	l.MaxTunnels = orDefault(l.MaxTunnels, 256)
	l.MaxPerKey = orDefault(l.MaxPerKey, 32)
	l.DialTimeout = orDefault(l.DialTimeout, 5*time.Second)
	l.IdleTimeout = orDefault(l.IdleTimeout, 10*time.Minute)
	l.KeepAlive = orDefault(l.KeepAlive, DefaultKeepAlive)
	l.Window = orDefault(l.Window, DefaultWindow)
	switch {
	case l.MaxTunnels < 0 || l.MaxPerKey < 0 || l.DialTimeout < 0 || l.MaxDuration < 0 || l.MaxBytes < 0 || l.KeepAlive < 0:
		return nil, fmt.Errorf("proxy target: negative limit in %+v", *l)
	case l.Window < MinWindow || l.Window > MaxWindow:
		return nil, fmt.Errorf("proxy target: window %d, want %d..%d", l.Window, MinWindow, MaxWindow)
	}
	if l.IdleTimeout < 0 {
		l.IdleTimeout = 0
	}
	log := opts.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Target{opts: opts, allow: allow, log: log.With("feature", "proxy"),
		conns: map[*Conn]string{}, perKey: map[string]int{}}, nil
}

func orDefault[T int | int64 | time.Duration](v, def T) T {
	if v == 0 {
		return def
	}
	return v
}

// CheckPorts validates a --proxy-allow list: each 1..65535, no duplicates.
// It returns the ports sorted.
func CheckPorts(ports []int) ([]int, error) {
	out := slices.Clone(ports)
	slices.Sort(out)
	for i, p := range out {
		if p < 1 || p > 65535 {
			return nil, fmt.Errorf("proxy port %d: want 1..65535", p)
		}
		if i > 0 && out[i-1] == p {
			return nil, fmt.Errorf("proxy port %d: listed twice", p)
		}
	}
	return out, nil
}

// Start subscribes to this node's open subject.
func (t *Target) Start(ctx context.Context) error {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.sub != nil || t.stopped {
		return errors.New("proxy target: already started")
	}
	subj := subscription(t.opts.Node.Chevron())
	sub, err := t.opts.Conn.Subscribe(subj, t.handleOpen)
	if err != nil {
		return fmt.Errorf("proxy target: subscribe %s: %w", subj, err)
	}
	t.sub = sub
	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, 10*time.Second)
		defer cancel()
	}
	if err := t.opts.Conn.FlushWithContext(ctx); err != nil {
		return fmt.Errorf("proxy target: subscribe %s: %w", subj, err)
	}
	t.log.Info("mesh proxy serving", "ports", t.allow, "subject", subj)
	return nil
}

// Shutdown stops answering opens, closes every open tunnel and waits for
// their goroutines (or ctx). It is idempotent.
func (t *Target) Shutdown(ctx context.Context) error {
	t.mu.Lock()
	t.stopped = true
	sub := t.sub
	conns := make([]*Conn, 0, len(t.conns))
	for c := range t.conns {
		conns = append(conns, c)
	}
	t.mu.Unlock()
	if sub != nil {
		_ = sub.Unsubscribe()
	}
	for _, c := range conns {
		c.end(errors.New("the proxy target is shutting down"), true)
	}
	done := make(chan struct{})
	go func() { t.wg.Wait(); close(done) }()
	select {
	case <-done:
		return nil
	case <-ctx.Done():
		return fmt.Errorf("proxy target shutdown: %w", ctx.Err())
	}
}

// Active is the number of open tunnels.
func (t *Target) Active() int {
	t.mu.Lock()
	defer t.mu.Unlock()
	return len(t.conns)
}

// handleOpen answers one open request (on the subscription's goroutine:
// the checks are quick; the dial and the copying run on their own).
func (t *Target) handleOpen(m *nats.Msg) {
	if m.Reply == "" {
		return
	}
	chev := t.opts.Node.Chevron()
	port, err := portOf(chev, m.Subject)
	if err != nil {
		t.refuse(m, wire.CodeBadRequest, err.Error())
		return
	}
	target := chev.String() + ":" + strconv.Itoa(port)
	if len(m.Data) > maxOpenRequest {
		t.refuse(m, wire.CodeBadRequest, fmt.Sprintf("open for %s: %d bytes, limit %d", target, len(m.Data), maxOpenRequest))
		return
	}
	pub, role, werr := t.opts.Node.Authorize(m, wire.RoleOperator)
	if werr != nil {
		t.log.Warn("proxy open refused", "target", target, "reason", werr.Msg)
		t.refuse(m, werr.Code, fmt.Sprintf("proxy to %s: %s", target, werr.Msg))
		return
	}
	if pub == "" {
		return // a replay: no answer
	}
	var req openRequest
	if err := json.Unmarshal(m.Data, &req); err != nil {
		t.refuse(m, wire.CodeBadRequest, fmt.Sprintf("open for %s: %v", target, err))
		return
	}
	if req.Window < MinWindow || req.Window > MaxWindow {
		t.refuse(m, wire.CodeBadRequest, fmt.Sprintf("open for %s: window %d, want %d..%d", target, req.Window, MinWindow, MaxWindow))
		return
	}
	if _, ok := slices.BinarySearch(t.allow, port); !ok {
		t.log.Warn("proxy open refused", "target", target, "key", pub, "reason", "port not allowed")
		t.refuse(m, CodeNotAllowed, fmt.Sprintf("port %d on %s is not open to the mesh proxy (allowed: %v)", port, chev, t.allow))
		return
	}
	if msg := t.reserve(pub); msg != "" {
		t.refuse(m, CodeBusy, fmt.Sprintf("proxy to %s: %s", target, msg))
		return
	}
	t.wg.Add(1)
	go t.serve(m, pub, role, port)
}

// reserve counts a tunnel for pub, or says which limit is reached.
func (t *Target) reserve(pub string) string {
	t.mu.Lock()
	defer t.mu.Unlock()
	l := t.opts.Limits
	switch {
	case t.stopped:
		return "the target is shutting down"
	case len(t.conns)+t.pending() >= l.MaxTunnels:
		return fmt.Sprintf("%d tunnels open on this node, the limit", l.MaxTunnels)
	case t.perKey[pub] >= l.MaxPerKey:
		return fmt.Sprintf("%d tunnels open for key %s, the limit", l.MaxPerKey, pub)
	}
	t.perKey[pub]++
	return ""
}

// pending is the number of reserved tunnels not yet in conns. t.mu must be held.
func (t *Target) pending() int {
	n := 0
	for _, k := range t.perKey {
		n += k
	}
	return n - len(t.conns)
}

func (t *Target) release(pub string, c *Conn) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if c != nil {
		delete(t.conns, c)
	}
	if t.perKey[pub]--; t.perKey[pub] <= 0 {
		delete(t.perKey, pub)
	}
}

// refuse answers an open with a wire error.
func (t *Target) refuse(m *nats.Msg, code, msg string) {
	t.answer(m, wire.Reply{Error: &wire.Error{Code: code, Msg: msg}})
}

// answer sends a signed reply to an open.
func (t *Target) answer(m *nats.Msg, r wire.Reply) {
	data, _ := json.Marshal(r)
	out := &nats.Msg{Subject: m.Reply, Data: data}
	if err := t.opts.Node.Signer().SignMsg(out); err != nil {
		t.log.Warn("proxy: sign an answer", "err", err)
		return
	}
	if err := t.opts.Conn.PublishMsg(out); err != nil {
		t.log.Debug("proxy: answer", "err", err)
	}
}

// serve dials the port, answers the open, and copies until both
// directions are done or the tunnel ends.
func (t *Target) serve(m *nats.Msg, pub, role string, port int) {
	defer t.wg.Done()
	chev := t.opts.Node.Chevron()
	target := chev.String() + ":" + strconv.Itoa(port)
	addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
	tcp, err := net.DialTimeout("tcp", addr, t.opts.Limits.DialTimeout)
	if err != nil {
		t.release(pub, nil)
		code, why := CodeRefused, "connection refused"
		if !errors.Is(err, syscall.ECONNREFUSED) {
			why = err.Error()
		}
		t.log.Info("proxy: port closed", "target", target, "key", pub, "err", err)
		t.refuse(m, code, fmt.Sprintf("port %d on %s: %s", port, chev, why))
		return
	}
	l := t.opts.Limits
	c := newConn(t.opts.Conn, connConfig{window: l.Window, keepAlive: l.KeepAlive, idle: l.IdleTimeout,
		maxDuration: l.MaxDuration, maxBytes: l.MaxBytes}, dataSubject(t.opts.Conn), Addr(target), Addr(pub))
	t.mu.Lock()
	stopped := t.stopped
	if !stopped {
		t.conns[c] = pub
	}
	t.mu.Unlock()
	if stopped {
		tcp.Close()
		t.release(pub, nil)
		t.refuse(m, CodeBusy, fmt.Sprintf("proxy to %s: the target is shutting down", target))
		return
	}
	defer t.release(pub, c)
	if err := c.subscribe(); err != nil {
		tcp.Close()
		c.end(err, false)
		t.refuse(m, wire.CodeInternal, fmt.Sprintf("proxy to %s: %v", target, err))
		return
	}
	data, _ := json.Marshal(openReply{Subject: c.in, Window: l.Window})
	t.answer(m, wire.Reply{Data: data})
	// The dialer's window comes with its hello; until then Write waits.
	c.run()
	t.log.Debug("proxy tunnel open", "target", target, "key", pub, "role", role)
	t.pump(c, tcp)
	t.log.Debug("proxy tunnel closed", "target", target, "key", pub, "why", c.Err())
}

// pump copies both ways: each direction's end is passed on as a
// half-close; the tunnel ending (reset, limits, a silent dialer) closes the
// TCP connection.
func (t *Target) pump(c *Conn, tcp net.Conn) {
	var wg sync.WaitGroup
	wg.Add(2)
	go func() { // port → tunnel
		defer wg.Done()
		_, err := io.CopyBuffer(struct{ io.Writer }{c}, struct{ io.Reader }{tcp}, make([]byte, MaxChunk))
		if err == nil {
			_ = c.CloseWrite()
		} else {
			c.end(fmt.Errorf("%w: port: %v", ErrReset, err), true)
		}
	}()
	go func() { // tunnel → port
		defer wg.Done()
		_, err := io.CopyBuffer(struct{ io.Writer }{tcp}, struct{ io.Reader }{c}, make([]byte, MaxChunk))
		if cw, ok := tcp.(interface{ CloseWrite() error }); ok && err == nil {
			_ = cw.CloseWrite()
		} else {
			tcp.Close()
		}
	}()
	both := make(chan struct{})
	go func() { wg.Wait(); close(both) }()
	select {
	case <-both:
	case <-c.Done():
		tcp.Close() // unblocks the port reader
		<-both
	}
	tcp.Close()
	_ = c.Close()
}

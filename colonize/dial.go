package colonize

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"os"
	"os/user"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/crypto/ssh"
)

var (
	// ErrUnreachable is wrapped by TCP, proxy and handshake-transport
	// failures: the recap counts the host "unreachable".
	ErrUnreachable = errors.New("host unreachable")
	// ErrAuth is wrapped when every auth method was refused; the message
	// lists the methods tried.
	ErrAuth = errors.New("unable to authenticate")
	// ErrConnLost is wrapped when the connection dies under a Run.
	ErrConnLost = errors.New("ssh connection lost")
)

// SSHOptions says how Dial connects. The zero value reads ~/.ssh/config,
// ~/.ssh/known_hosts and $SSH_AUTH_SOCK like ssh(1) and refuses unknown hosts.
type SSHOptions struct {
	ConfigFile            string        // ssh_config path; "" = ~/.ssh/config if it exists; "none" = no config
	KnownHosts            []string      // default ~/.ssh/known_hosts (+ /etc/ssh/ssh_known_hosts read-only); the first is where --accept-new writes
	AcceptNew             bool          // record an unknown host key (like StrictHostKeyChecking=accept-new)
	HostKey               string        // "SHA256:…" pin: only a key with this fingerprint is accepted, known_hosts not needed
	InsecureIgnoreHostKey bool          // accept any key (callers warn loudly)
	KeyFiles              []string      // --key, repeatable; added to ssh_config IdentityFile entries
	AgentSocket           string        // "" = $SSH_AUTH_SOCK (unset = no agent); "none" = no agent
	Password              []byte        // password auth (and keyboard-interactive answering a single password prompt)
	Prompt                Prompter      // nil = no terminal
	ConnectTimeout        time.Duration // TCP dial, default 10s
	HandshakeTimeout      time.Duration // SSH handshake incl. auth, default 15s
	Keepalive             time.Duration // keepalive@openssh.com interval, default 15s (negative = none); the conn is closed after 3 missed
	Attempts              int           // connect attempts on network errors (not on auth/host-key errors), default 3, jittered 100–500 ms backoff

	home string // tests point this at a temp dir; "" = the user's home
}

// withDefaults validates o and fills in the defaults.
func (o SSHOptions) withDefaults() (SSHOptions, error) {
	if o.home == "" {
		h, err := os.UserHomeDir()
		if err != nil {
			return o, fmt.Errorf("ssh options: home directory: %w", err)
		}
		o.home = h
	}
	if o.HostKey != "" {
		if !strings.HasPrefix(o.HostKey, "SHA256:") || len(o.HostKey) < 20 {
			return o, fmt.Errorf("ssh options: host key pin %q is not a SHA256:… fingerprint", o.HostKey)
		}
		if o.InsecureIgnoreHostKey {
			return o, errors.New("ssh options: a host key pin and ignoring host keys contradict each other")
		}
	}
	if o.ConnectTimeout < 0 || o.HandshakeTimeout < 0 || o.Attempts < 0 {
		return o, errors.New("ssh options: negative timeout or attempts")
	}
	if len(o.KnownHosts) == 0 {
		o.KnownHosts = []string{filepath.Join(o.home, ".ssh", "known_hosts"), "/etc/ssh/ssh_known_hosts"}
	}
	if o.AgentSocket == "" {
		o.AgentSocket = os.Getenv("SSH_AUTH_SOCK")
	}
	if o.ConnectTimeout == 0 {
		o.ConnectTimeout = 10 * time.Second
	}
	if o.HandshakeTimeout == 0 {
		o.HandshakeTimeout = 15 * time.Second
	}
	if o.Keepalive == 0 {
		o.Keepalive = 15 * time.Second
	}
	if o.Attempts == 0 {
		o.Attempts = 3
	}
	return o, nil
}

// StepResult is the outcome of one step of colonize.
type StepResult struct {
	Step   string // "connect", "host key", "authenticate"
	Status string // "ok", "changed", "unchanged", "skipped", "failed"
	Detail string // e.g. "10.0.0.7:22 via bastion", "ED25519 SHA256:… known"
	Took   time.Duration
	Err    error
}

// Dial connects to t, checks its host key and authenticates, through any
// ProxyJump chain, each jump host checked and authenticated the same way. It
// returns one StepResult per step it reached (connect, host key,
// authenticate), the failing one last with Status "failed" and Err set.
// Network failures are retried (o.Attempts); host key and auth failures not.
func Dial(ctx context.Context, t Target, o SSHOptions) (*Conn, []StepResult, error) {
	fail := func(err error) (*Conn, []StepResult, error) {
		return nil, []StepResult{{Step: "connect", Status: "failed", Detail: t.String(), Err: err}}, err
	}
	o, err := o.withDefaults()
	if err != nil {
		return fail(err)
	}
	local := ""
	if u, err := user.Current(); err == nil {
		local = u.Username
	}
	cfg, err := loadSSHConfig(o.ConfigFile, o.home, local)
	if err != nil {
		return fail(err)
	}
	chain, err := cfg.resolveChain(t)
	if err != nil {
		return fail(err)
	}
	hk, err := newHostKeys(&o, o.home)
	if err != nil {
		return fail(err)
	}
	kr := newKeyring(&o, o.home)
	defer kr.close()
	plans := make([]*hopAuth, len(chain))
	for i, h := range chain {
		plans[i] = kr.plan(h)
	}
	for attempt := 1; ; attempt++ {
		c, steps, err := dialChain(ctx, chain, plans, hk, &o)
		if err == nil || !errors.Is(err, ErrUnreachable) || attempt >= o.Attempts || ctx.Err() != nil {
			if err != nil && attempt > 1 && errors.Is(err, ErrUnreachable) {
				err = fmt.Errorf("%w (%d attempts)", err, attempt)
				steps[len(steps)-1].Err = err
			}
			return c, steps, err
		}
		backoff := 100*time.Millisecond + rand.N(400*time.Millisecond)
		select {
		case <-ctx.Done():
			return c, steps, err
		case <-time.After(backoff):
		}
	}
}

// dialChain makes one attempt through every hop. On failure it closes what
// it opened and returns the steps of the hop that failed.
func dialChain(ctx context.Context, chain []hop, plans []*hopAuth, hk *hostKeys, o *SSHOptions) (*Conn, []StepResult, error) {
	start := time.Now()
	var clients []*ssh.Client
	closeAll := func() {
		for i := len(clients) - 1; i >= 0; i-- {
			clients[i].Close()
		}
	}
	var via *ssh.Client
	var steps []StepResult
	var dialed string
	for i, h := range chain {
		last := i == len(chain)-1
		c, hopSteps, addr, err := dialHop(ctx, via, h, plans[i], hk, o)
		if err != nil {
			closeAll()
			if !last {
				err = fmt.Errorf("jump host %s: %w", h.alias, err)
				for j := range hopSteps {
					hopSteps[j].Detail = "jump host " + h.alias + ": " + hopSteps[j].Detail
				}
				hopSteps[len(hopSteps)-1].Err = err
			}
			return nil, hopSteps, err
		}
		clients = append(clients, c)
		via, steps, dialed = c, hopSteps, addr
	}
	if len(chain) > 1 {
		var jumps []string
		for _, h := range chain[:len(chain)-1] {
			jumps = append(jumps, h.alias)
		}
		steps[0].Detail += " via " + strings.Join(jumps, ", ")
		steps[0].Took = time.Since(start) - steps[1].Took - steps[2].Took
	}
	tgt := chain[len(chain)-1]
	c := &Conn{client: via, jumps: clients[:len(clients)-1], addr: dialed, user: tgt.user, done: make(chan struct{})}
	c.start(o.Keepalive)
	return c, steps, nil
}

// dialHop dials one hop (directly or through via) and runs the handshake
// under its own deadline.
func dialHop(ctx context.Context, via *ssh.Client, h hop, a *hopAuth, hk *hostKeys, o *SSHOptions) (*ssh.Client, []StepResult, string, error) {
	start := time.Now()
	addr := h.addr()
	connectFailed := func(err error) (*ssh.Client, []StepResult, string, error) {
		return nil, []StepResult{{Step: "connect", Status: "failed", Detail: addr, Took: time.Since(start), Err: err}}, addr, err
	}
	dctx, cancel := context.WithTimeout(ctx, o.ConnectTimeout)
	var nc net.Conn
	var err error
	if via == nil {
		nc, err = (&net.Dialer{}).DialContext(dctx, "tcp", addr)
	} else {
		nc, err = via.DialContext(dctx, "tcp", addr)
	}
	cancel()
	if err != nil {
		if ctx.Err() != nil {
			return connectFailed(fmt.Errorf("connect %s: %w", addr, ctx.Err()))
		}
		return connectFailed(fmt.Errorf("%w: connect %s: %v", ErrUnreachable, addr, err))
	}
	dialed := addr
	if via == nil {
		dialed = nc.RemoteAddr().String()
	}

	clock := newHandshakeClock(ctx, nc, o.HandshakeTimeout)
	v := &verifier{hk: hk, clock: clock}
	cfg := &ssh.ClientConfig{
		User:              h.user,
		Auth:              a.methods(),
		HostKeyCallback:   v.check,
		HostKeyAlgorithms: hk.algorithms(addr),
	}
	sc, chans, reqs, err := ssh.NewClientConn(nc, addr, cfg)
	timedOut := clock.stop()
	end := time.Now()
	if err != nil {
		nc.Close()
	}
	if v.reached.IsZero() {
		if err == nil { // cannot happen: x/crypto always checks the host key
			err = errors.New("server sent no host key")
		}
		switch {
		case timedOut:
			err = fmt.Errorf("%w: ssh handshake with %s timed out after %s", ErrUnreachable, addr, o.HandshakeTimeout)
		case ctx.Err() != nil:
			err = fmt.Errorf("ssh handshake with %s: %w", addr, ctx.Err())
		default:
			err = fmt.Errorf("%w: ssh handshake with %s: %v", ErrUnreachable, addr, err)
		}
		return connectFailed(err)
	}
	steps := []StepResult{
		{Step: "connect", Status: "ok", Detail: dialed, Took: v.reached.Sub(start)},
		{Step: "host key", Status: v.status, Detail: v.detail, Took: v.took, Err: v.err},
	}
	if v.err != nil {
		steps[1].Status = "failed"
		return nil, steps, dialed, v.err
	}
	authStep := StepResult{Step: "authenticate", Took: end.Sub(v.reached) - v.took}
	if err != nil {
		switch {
		case ctx.Err() != nil:
			err = fmt.Errorf("authenticate to %s: %w", addr, ctx.Err())
		case timedOut:
			err = fmt.Errorf("%w: ssh handshake with %s timed out after %s while authenticating", ErrUnreachable, addr, o.HandshakeTimeout)
		default:
			err = a.failure(err)
		}
		authStep.Status, authStep.Detail, authStep.Err = "failed", h.user, err
		return nil, append(steps, authStep), dialed, err
	}
	authStep.Status, authStep.Detail = "ok", a.used
	if authStep.Detail == "" {
		authStep.Detail = "none"
	}
	return ssh.NewClient(sc, chans, reqs), append(steps, authStep), dialed, nil
}

// handshakeClock bounds a handshake: a deadline on the conn where the conn
// supports one, a timer that closes it where not (a channel through a jump
// host), and ctx cancellation. pause/resume stop it while a person answers.
type handshakeClock struct {
	nc       net.Conn
	timeout  time.Duration
	mu       sync.Mutex // guards timer
	timer    *time.Timer
	deadline time.Time // when the running timer fires; zero while paused
	timedOut atomic.Bool
	stopCtx  func() bool
}

func newHandshakeClock(ctx context.Context, nc net.Conn, timeout time.Duration) *handshakeClock {
	c := &handshakeClock{nc: nc, timeout: timeout}
	c.stopCtx = context.AfterFunc(ctx, func() { nc.Close() })
	c.resume()
	return c
}

func (c *handshakeClock) resume() {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.deadline = time.Now().Add(c.timeout)
	_ = c.nc.SetDeadline(c.deadline)
	c.timer = time.AfterFunc(c.timeout, func() {
		c.timedOut.Store(true)
		c.nc.Close()
	})
}

func (c *handshakeClock) pause() {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.timer != nil {
		c.timer.Stop()
	}
	if !c.deadline.IsZero() && !time.Now().Before(c.deadline) {
		// The conn's own deadline can fail the read before the timer runs.
		c.timedOut.Store(true)
	}
	c.deadline = time.Time{}
	_ = c.nc.SetDeadline(time.Time{})
}

// stop ends the clock and reports whether it ran out.
func (c *handshakeClock) stop() bool {
	c.pause()
	c.stopCtx()
	return c.timedOut.Load()
}

// Conn is an authenticated SSH connection to one target.
type Conn struct {
	client *ssh.Client
	jumps  []*ssh.Client // closed after client, last first
	addr   string
	user   string

	done      chan struct{} // closed when the transport ends
	closeOnce sync.Once
	wg        sync.WaitGroup
	lostMu    sync.Mutex // guards lostErr
	lostErr   error
}

func (c *Conn) start(keepalive time.Duration) {
	c.wg.Add(1)
	go func() {
		defer c.wg.Done()
		err := c.client.Wait()
		c.markLost(err)
		close(c.done)
	}()
	if keepalive > 0 {
		c.wg.Add(1)
		go c.keepalive(keepalive)
	}
}

func (c *Conn) markLost(err error) {
	c.lostMu.Lock()
	defer c.lostMu.Unlock()
	if c.lostErr == nil {
		if err == nil {
			err = errors.New("closed by the server")
		}
		c.lostErr = err
	}
}

func (c *Conn) lost() error {
	select {
	case <-c.done:
		c.lostMu.Lock()
		defer c.lostMu.Unlock()
		return fmt.Errorf("%w to %s: %v", ErrConnLost, c.addr, c.lostErr)
	default:
		return nil
	}
}

// keepalive sends keepalive@openssh.com every interval and closes the
// connection when three in a row go unanswered.
func (c *Conn) keepalive(interval time.Duration) {
	defer c.wg.Done()
	t := time.NewTicker(interval)
	defer t.Stop()
	reply := make(chan error, 1)
	pending, missed := false, 0
	for {
		select {
		case <-c.done:
			return
		case err := <-reply:
			pending, missed = false, 0
			if err != nil {
				c.markLost(fmt.Errorf("keepalive: %v", err))
				c.client.Close()
				return
			}
		case <-t.C:
			if pending {
				if missed++; missed >= 3 {
					c.markLost(fmt.Errorf("%d keepalives unanswered", missed))
					c.client.Close()
					return
				}
				continue
			}
			pending = true
			c.wg.Add(1)
			go func() {
				defer c.wg.Done()
				_, _, err := c.client.SendRequest("keepalive@openssh.com", true, nil)
				reply <- err
			}()
		}
	}
}

// Addr returns the resolved host:port actually dialed.
func (c *Conn) Addr() string { return c.addr }

// User returns the user the connection is authenticated as.
func (c *Conn) User() string { return c.user }

// Close closes the connection and its jump hosts and waits for the
// goroutines the Conn started. It is safe to call more than once.
func (c *Conn) Close() error {
	var err error
	c.closeOnce.Do(func() {
		c.markLost(errors.New("closed"))
		err = c.client.Close()
		for i := len(c.jumps) - 1; i >= 0; i-- {
			c.jumps[i].Close()
		}
		c.wg.Wait()
		if errors.Is(err, net.ErrClosed) {
			err = nil
		}
	})
	return err
}

// ExitError is a remote command that ran and exited non-zero (or was killed
// by a signal).
type ExitError struct {
	Code   int
	Signal string // set when the command was killed by a signal
	Stderr string // the last 4 KiB of its stderr
}

func (e *ExitError) Error() string {
	msg := fmt.Sprintf("exit status %d", e.Code)
	if e.Signal != "" {
		msg = "killed by signal " + e.Signal
	}
	if s := strings.TrimSpace(e.Stderr); s != "" {
		msg += ": " + lastLine(s)
	}
	return msg
}

func lastLine(s string) string {
	if i := strings.LastIndexByte(s, '\n'); i >= 0 {
		return s[i+1:]
	}
	return s
}

// Run runs cmd in a new session. stdin, stdout and stderr may be nil.
// Cancelling ctx kills the command and closes the session and returns at
// once: stdout and stderr are not written after Run returns, but a stdin
// Read in flight finishes on its own. A non-zero exit
// returns *ExitError; a lost connection an error wrapping ErrConnLost.
func (c *Conn) Run(ctx context.Context, cmd string, stdin io.Reader, stdout, stderr io.Writer) error {
	if err := c.lost(); err != nil {
		return err
	}
	s, err := c.client.NewSession()
	if err != nil {
		if lost := c.lost(); lost != nil {
			return lost
		}
		return fmt.Errorf("run %q: new session: %w", cmd, err)
	}
	defer s.Close()
	// After a cancelled Run returns, x/crypto may still deliver output until
	// the server closes the channel; the gate drops it so the caller's
	// writers are never touched after Run returns.
	g := &gate{}
	defer g.shut()
	tail := &tailBuffer{max: 4096}
	if stdout != nil {
		s.Stdout = &gateWriter{g: g, w: stdout}
	}
	s.Stderr = tail
	if stderr != nil {
		s.Stderr = io.MultiWriter(&gateWriter{g: g, w: stderr}, tail)
	}
	// x/crypto's Wait waits for stdin to reach EOF; feed it ourselves so a
	// command that exits early (or a cancelled one) does not wait on it.
	var in io.WriteCloser
	if stdin != nil {
		if in, err = s.StdinPipe(); err != nil {
			return fmt.Errorf("run %q: %w", cmd, err)
		}
	}
	if err := s.Start(cmd); err != nil {
		if lost := c.lost(); lost != nil {
			return lost
		}
		return fmt.Errorf("run %q: %w", cmd, err)
	}
	if stdin != nil {
		go func() {
			_, _ = io.Copy(in, stdin)
			in.Close()
		}()
	}
	waited := make(chan error, 1)
	go func() { waited <- s.Wait() }()
	select {
	case err = <-waited:
	case <-ctx.Done():
		// OpenSSH refuses signals on sessions without a privilege-separated
		// child (root logins), so the close is what usually ends it.
		_ = s.Signal(ssh.SIGKILL)
		s.Close()
		return fmt.Errorf("run %q: %w", cmd, ctx.Err())
	case <-c.done:
		return fmt.Errorf("run %q: %w", cmd, c.lost())
	}
	var exit *ssh.ExitError
	switch {
	case err == nil:
		return nil
	case errors.As(err, &exit):
		return &ExitError{Code: exit.ExitStatus(), Signal: exit.Signal(), Stderr: tail.String()}
	}
	if lost := c.lost(); lost != nil {
		return fmt.Errorf("run %q: %w", cmd, lost)
	}
	var missing *ssh.ExitMissingError
	if errors.As(err, &missing) {
		// The channel closed without a status; the connection is usually
		// going down with it.
		select {
		case <-c.done:
			return fmt.Errorf("run %q: %w", cmd, c.lost())
		case <-time.After(100 * time.Millisecond):
		}
	}
	return fmt.Errorf("run %q: %w", cmd, err)
}

// Output runs cmd and returns its stdout; a non-zero exit returns
// *ExitError with the stderr tail.
func (c *Conn) Output(ctx context.Context, cmd string, stdin io.Reader) ([]byte, error) {
	var out bytes.Buffer
	err := c.Run(ctx, cmd, stdin, &out, nil)
	return out.Bytes(), err
}

// gate stops writes to the caller's writers once Run has returned.
type gate struct {
	mu     sync.Mutex // held across each write, so shut waits for one in flight
	closed bool
}

func (g *gate) shut() {
	g.mu.Lock()
	g.closed = true
	g.mu.Unlock()
}

type gateWriter struct {
	g *gate
	w io.Writer
}

func (w *gateWriter) Write(p []byte) (int, error) {
	w.g.mu.Lock()
	defer w.g.mu.Unlock()
	if w.g.closed {
		return len(p), nil
	}
	return w.w.Write(p)
}

// tailBuffer keeps the last max bytes written to it.
type tailBuffer struct {
	mu  sync.Mutex // x/crypto may write stderr from its own goroutine
	max int
	b   []byte
}

func (t *tailBuffer) Write(p []byte) (int, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.b = append(t.b, p...)
	if len(t.b) > t.max {
		t.b = append(t.b[:0], t.b[len(t.b)-t.max:]...)
	}
	return len(p), nil
}

func (t *tailBuffer) String() string {
	t.mu.Lock()
	defer t.mu.Unlock()
	return string(t.b)
}

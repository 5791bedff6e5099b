package tunnel

import (
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
)

// Errors a tunnel ends with. Read and Write return them (wrapped with the
// reason) once the tunnel is over; Read returns data already received first.
var (
	// ErrReset: the other end reset the tunnel (it closed without reading
	// everything, its side failed, or a frame was lost on the way).
	ErrReset = errors.New("tunnel reset")
	// ErrPeerGone: nothing came from the other end for three keepalive
	// intervals.
	ErrPeerGone = errors.New("tunnel peer silent")
	// ErrIdle: no stream bytes either way for the idle timeout.
	ErrIdle = errors.New("tunnel idle")
	// ErrLimit: the tunnel reached its byte or time limit.
	ErrLimit = errors.New("tunnel limit")
	// errWriteClosed: Write after CloseWrite.
	errWriteClosed = errors.New("tunnel: write after CloseWrite")
)

// Window bounds: a receiver grants between MinWindow and MaxWindow bytes.
// A data frame costs its length plus frameCost of the window, so a window
// also bounds the frames in flight (a writer of one-byte chunks could
// otherwise queue a million messages in a 1 MiB window).
const (
	frameCost        = 256
	DefaultWindow    = 1 << 20
	MinWindow        = MaxChunk
	MaxWindow        = 16 << 20
	DefaultKeepAlive = 10 * time.Second
)

// Addr is a tunnel end's address: network "robonet", a chevron and port
// (the target) or a requester's key (the dialer, seen from the target).
type Addr string

// Network is "robonet".
func (Addr) Network() string  { return "robonet" }
func (a Addr) String() string { return string(a) }

// connConfig is what both ends set on a Conn.
type connConfig struct {
	window      int           // our receive window
	keepAlive   time.Duration // ping interval; silence for 3 of them ends the tunnel
	idle        time.Duration // no data either way this long ends it (0: never)
	maxDuration time.Duration // the tunnel's whole life (0: no limit)
	maxBytes    int64         // data both ways (0: no limit)
}

// Conn is one end of a tunnel: a net.Conn whose bytes travel as frames over
// NATS, with credit-based flow control, so a slow reader slows the writer
// instead of filling memory. It also has CloseWrite (half-close).
type Conn struct {
	nc            *nats.Conn
	cfg           connConfig
	local, remote Addr
	in            string // our data subject
	start         time.Time

	wmu sync.Mutex // one Write at a time, so chunks of two writes never interleave

	sendMu sync.Mutex // orders frames (seq order is publish order); guards out, sseq, wbuf. Taken before mu, never inside it.
	out    string     // the other end's data subject ("" until known)
	sseq   uint64
	wbuf   []byte

	lastSend atomic.Int64 // unix nanos of the last frame sent

	mu       sync.Mutex // guards all below
	sub      *nats.Subscription
	rbuf     [][]byte // received, unread chunks; rbuf[0][roff:] is next
	roff     int
	rbytes   int    // unread bytes buffered
	rcost    int    // their credit cost: rbytes + frameCost per buffered frame
	rseq     uint64 // seq of the last frame received
	consumed uint64 // credit Read freed: bytes returned + frameCost per frame drained
	acked    uint64 // consumed as last acked
	rfin     bool   // the other end sent fin
	sent     uint64 // credit used: data bytes sent + frameCost per data frame
	peerAck  uint64 // credit the other end freed
	peerWin  uint64 // the other end's window (0 until known)
	wfin     bool   // we sent fin
	total    int64  // data bytes both ways
	err      error  // why the tunnel ended (nil: still up)
	closed   bool   // Close was called
	lastRecv time.Time
	lastData time.Time
	changed  chan struct{} // closed and replaced on every change (a broadcast)
	done     chan struct{} // closed when the tunnel ends
	onEnd    func()        // called once when the tunnel ends (the target's bookkeeping)

	rdl, wdl *deadline
	wg       sync.WaitGroup // the keepalive goroutine
}

func newConn(nc *nats.Conn, cfg connConfig, in string, local, remote Addr) *Conn {
	now := time.Now()
	c := &Conn{
		nc: nc, cfg: cfg, in: in, local: local, remote: remote, start: now,
		lastRecv: now, lastData: now,
		changed: make(chan struct{}), done: make(chan struct{}),
		rdl: newDeadline(), wdl: newDeadline(),
	}
	c.lastSend.Store(now.UnixNano())
	return c
}

// subscribe starts receiving frames on c.in.
func (c *Conn) subscribe() error {
	sub, err := c.nc.Subscribe(c.in, c.handle)
	if err != nil {
		return fmt.Errorf("tunnel subscribe %s: %w", c.in, err)
	}
	// The window bounds what a well-behaved peer has in flight; twice it
	// (plus frames) bounds the pending queue against one that is not.
	_ = sub.SetPendingLimits(2*c.cfg.window/frameCost+1024, 2*c.cfg.window+(1<<20))
	c.mu.Lock()
	c.sub = sub
	c.mu.Unlock()
	return nil
}

// run starts the keepalive goroutine.
func (c *Conn) run() {
	c.wg.Add(1)
	go c.keepalive()
}

// broadcastLocked wakes every blocked Read and Write. c.mu must be held.
func (c *Conn) broadcastLocked() {
	close(c.changed)
	c.changed = make(chan struct{})
}

// send publishes one frame to the other end.
func (c *Conn) send(k kind, val uint64, body []byte) error {
	c.sendMu.Lock()
	defer c.sendMu.Unlock()
	if c.out == "" {
		return fmt.Errorf("tunnel %s: the other end's subject is not known yet", c.remote)
	}
	c.sseq++
	c.wbuf = appendFrame(c.wbuf[:0], k, c.sseq, val, body)
	// Publish copies the frame into the connection's buffer: wbuf is ours again.
	if err := c.nc.Publish(c.out, c.wbuf); err != nil {
		return fmt.Errorf("tunnel %s: send %s: %w", c.remote, k, err)
	}
	c.lastSend.Store(time.Now().UnixNano())
	return nil
}

// setOut sets the other end's data subject and window.
func (c *Conn) setOut(subject string, window uint64) {
	c.sendMu.Lock()
	c.out = subject
	c.sendMu.Unlock()
	c.mu.Lock()
	c.peerWin = window
	c.broadcastLocked()
	c.mu.Unlock()
}

// handle takes one frame from the other end. NATS calls it in order, on one
// goroutine per subscription; it never blocks.
func (c *Conn) handle(m *nats.Msg) {
	f, err := parseFrame(m.Data)
	c.mu.Lock()
	if c.err != nil {
		c.mu.Unlock()
		return
	}
	if err == nil && f.seq != c.rseq+1 {
		err = fmt.Errorf("%w: frames %d..%d lost on the way", ErrReset, c.rseq+1, f.seq-1)
	}
	if err != nil {
		c.mu.Unlock()
		c.end(err, true)
		return
	}
	c.rseq = f.seq
	now := time.Now()
	c.lastRecv = now
	var ferr error
	switch f.kind {
	case kindHello:
		ferr = c.helloLocked(f)
		if ferr == nil {
			c.mu.Unlock()
			c.setOut(string(f.body), f.val)
			return
		}
	case kindData:
		switch {
		case c.rfin:
			ferr = fmt.Errorf("%w: data after fin", errFrame)
		case c.rcost+len(f.body)+frameCost > c.cfg.window:
			ferr = fmt.Errorf("%w: %d bytes beyond the window of %d", errFrame, c.rcost+len(f.body)+frameCost-c.cfg.window, c.cfg.window)
		case c.overLimitLocked(len(f.body)):
			ferr = fmt.Errorf("%w: %d bytes", ErrLimit, c.cfg.maxBytes)
		default:
			// NATS gave this message its own buffer: keep it, no copy.
			c.rbuf = append(c.rbuf, f.body)
			c.rbytes += len(f.body)
			c.rcost += len(f.body) + frameCost
			c.lastData = now
		}
	case kindAck:
		if f.val > c.sent {
			ferr = fmt.Errorf("%w: ack of %d bytes, only %d sent", errFrame, f.val, c.sent)
		} else if f.val > c.peerAck {
			c.peerAck = f.val
		}
	case kindFin:
		c.rfin = true
	case kindReset:
		c.mu.Unlock()
		c.end(fmt.Errorf("%w by %s: %s", ErrReset, c.remote, clip(string(f.body), 200)), false)
		return
	case kindPing:
	}
	if ferr != nil {
		c.mu.Unlock()
		c.end(ferr, true)
		return
	}
	c.broadcastLocked()
	c.mu.Unlock()
}

// helloLocked checks a hello: only the dialer sends one, as its first
// frame, naming an inbox subject. c.mu must be held.
func (c *Conn) helloLocked(f frame) error {
	if f.seq != 1 || c.peerWin != 0 {
		return fmt.Errorf("%w: hello as frame %d", errFrame, f.seq)
	}
	if err := checkDataSubject(string(f.body)); err != nil {
		return err
	}
	if f.val < MinWindow || f.val > MaxWindow {
		return fmt.Errorf("%w: window %d, want %d..%d", errFrame, f.val, MinWindow, MaxWindow)
	}
	return nil
}

func (c *Conn) overLimitLocked(n int) bool {
	c.total += int64(n)
	return c.cfg.maxBytes > 0 && c.total > c.cfg.maxBytes
}

// end ends the tunnel with err (once), telling the other end when reset
// is set, and stops receiving.
func (c *Conn) end(err error, reset bool) {
	c.mu.Lock()
	if c.err != nil {
		c.mu.Unlock()
		return
	}
	c.err = err
	sub := c.sub
	onEnd := c.onEnd
	close(c.done)
	c.broadcastLocked()
	c.mu.Unlock()
	if reset {
		_ = c.send(kindReset, 0, []byte(clip(err.Error(), maxBody)))
	}
	if sub != nil {
		_ = sub.Unsubscribe()
	}
	c.rdl.stop()
	c.wdl.stop()
	if onEnd != nil {
		onEnd()
	}
}

// keepalive pings when nothing else was sent for an interval, and ends the
// tunnel when the other end fell silent, or it idled or ran too long.
func (c *Conn) keepalive() {
	defer c.wg.Done()
	t := time.NewTicker(c.cfg.keepAlive)
	defer t.Stop()
	for {
		select {
		case <-c.done:
			return
		case now := <-t.C:
			c.mu.Lock()
			recv, data := c.lastRecv, c.lastData
			c.mu.Unlock()
			switch {
			case now.Sub(recv) > 3*c.cfg.keepAlive:
				c.end(fmt.Errorf("%w: nothing from %s for %s", ErrPeerGone, c.remote, now.Sub(recv).Round(time.Second)), true)
			case c.cfg.idle > 0 && now.Sub(data) > c.cfg.idle:
				c.end(fmt.Errorf("%w: no data for %s", ErrIdle, c.cfg.idle), true)
			case c.cfg.maxDuration > 0 && now.Sub(c.start) > c.cfg.maxDuration:
				c.end(fmt.Errorf("%w: open longer than %s", ErrLimit, c.cfg.maxDuration), true)
			case now.Sub(time.Unix(0, c.lastSend.Load())) >= c.cfg.keepAlive/2:
				_ = c.send(kindPing, 0, nil)
			}
		}
	}
}

// Read reads stream bytes. After the other end's CloseWrite (or Close) and
// the bytes before it, it returns io.EOF.
func (c *Conn) Read(p []byte) (int, error) {
	for {
		if c.rdl.passed() {
			return 0, os.ErrDeadlineExceeded
		}
		c.mu.Lock()
		switch {
		case c.closed:
			c.mu.Unlock()
			return 0, net.ErrClosed
		case c.rbytes > 0 && len(p) > 0:
			n, cost := c.copyOutLocked(p)
			c.consumed += uint64(cost)
			var ack uint64
			if c.err == nil && c.consumed-c.acked >= uint64(c.cfg.window/4) {
				c.acked, ack = c.consumed, c.consumed
			}
			c.mu.Unlock()
			if ack > 0 {
				_ = c.send(kindAck, ack, nil)
			}
			return n, nil
		case c.rfin:
			c.mu.Unlock()
			return 0, io.EOF
		case c.err != nil:
			err := c.err
			c.mu.Unlock()
			return 0, err
		case len(p) == 0:
			c.mu.Unlock()
			return 0, nil
		}
		ch := c.changed
		c.mu.Unlock()
		select {
		case <-ch:
		case <-c.rdl.wait():
		}
	}
}

// copyOutLocked moves buffered bytes into p and returns how many, and the
// credit that freed. c.mu must be held.
func (c *Conn) copyOutLocked(p []byte) (n, cost int) {
	for n < len(p) && len(c.rbuf) > 0 {
		k := copy(p[n:], c.rbuf[0][c.roff:])
		n += k
		cost += k
		c.roff += k
		if c.roff == len(c.rbuf[0]) {
			c.rbuf[0] = nil
			c.rbuf = c.rbuf[1:]
			c.roff = 0
			cost += frameCost
		}
	}
	c.rbytes -= n
	c.rcost -= cost
	return n, cost
}

// Write sends p, waiting for credit from the other end as needed.
func (c *Conn) Write(p []byte) (int, error) {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	n := 0
	for n < len(p) {
		if c.wdl.passed() {
			return n, os.ErrDeadlineExceeded
		}
		c.mu.Lock()
		var err error
		switch {
		case c.closed:
			err = net.ErrClosed
		case c.err != nil:
			err = c.err
		case c.wfin:
			err = errWriteClosed
		}
		if err != nil {
			c.mu.Unlock()
			return n, err
		}
		credit := c.peerAck + c.peerWin - c.sent
		if c.peerWin == 0 || credit <= frameCost {
			ch := c.changed
			c.mu.Unlock()
			select {
			case <-ch:
			case <-c.wdl.wait():
			}
			continue
		}
		k := min(uint64(len(p)-n), credit-frameCost, MaxChunk)
		if c.overLimitLocked(int(k)) {
			c.mu.Unlock()
			err := fmt.Errorf("%w: %d bytes", ErrLimit, c.cfg.maxBytes)
			c.end(err, true)
			return n, err
		}
		c.sent += k + frameCost
		c.lastData = time.Now()
		c.mu.Unlock()
		if err := c.send(kindData, 0, p[n:n+int(k)]); err != nil {
			c.end(err, false)
			return n, err
		}
		n += int(k)
	}
	return n, nil
}

// CloseWrite tells the other end no more bytes follow (its Read returns
// io.EOF after those sent); this end can still read.
func (c *Conn) CloseWrite() error {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		return net.ErrClosed
	}
	if c.wfin || c.err != nil {
		c.mu.Unlock()
		return nil
	}
	c.wfin = true
	c.mu.Unlock()
	return c.send(kindFin, 0, nil)
}

// Close ends the tunnel both ways: the other end reads what was sent, then
// io.EOF; its writes fail. It waits for the tunnel's goroutine.
func (c *Conn) Close() error {
	_ = c.CloseWrite()
	c.mu.Lock()
	already := c.closed
	c.closed = true
	c.broadcastLocked()
	c.mu.Unlock()
	c.end(fmt.Errorf("%w: closed", net.ErrClosed), true)
	c.wg.Wait()
	if already {
		return net.ErrClosed
	}
	return nil
}

// Done is closed when the tunnel has ended.
func (c *Conn) Done() <-chan struct{} { return c.done }

// Err is why the tunnel ended (nil while it is up).
func (c *Conn) Err() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.err
}

// LocalAddr is this end's address.
func (c *Conn) LocalAddr() net.Addr { return c.local }

// RemoteAddr is the other end's address.
func (c *Conn) RemoteAddr() net.Addr { return c.remote }

// SetDeadline sets both deadlines.
func (c *Conn) SetDeadline(t time.Time) error {
	c.rdl.set(t)
	c.wdl.set(t)
	return nil
}

// SetReadDeadline sets the read deadline.
func (c *Conn) SetReadDeadline(t time.Time) error { c.rdl.set(t); return nil }

// SetWriteDeadline sets the write deadline.
func (c *Conn) SetWriteDeadline(t time.Time) error { c.wdl.set(t); return nil }

func clip(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "…"
}

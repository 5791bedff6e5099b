package gateway

import (
	"errors"
	"io"
	"net"
	"os"
	"sync"
	"time"
)

// ICE over TCP on the gateway's own port. A browser that cannot send UDP
// still reaches the gateway's port (it loaded the dashboard from it), so the
// media engine's ICE-TCP candidates (RFC 6544, passive) name that port too:
// every accepted connection is classified by its first bytes. ICE-TCP frames
// each message with a 2-byte length (RFC 4571), and the first message is a
// STUN binding request, whose first byte is 0x00 or 0x01: that goes to the
// ICE side. Anything else (an HTTP method, a TLS ClientHello starting with
// 0x16) goes to the HTTP (or TLS) server as before.

// Bounds of the demux.
const (
	// peekTimeout is how long a new connection has to send its first 3
	// bytes before it is handed to HTTP with what it sent: HTTP clients
	// that open a connection ahead of time (browsers' preconnects) are
	// served as ever, the HTTP server's own timeouts apply from there.
	peekTimeout = 2 * time.Second
	// iceBacklog is how many classified ICE-TCP connections may wait for
	// the media engine to accept them; beyond, they are closed.
	iceBacklog = 64
	// stunHeader is the size of a STUN header: a shorter framed message is
	// not STUN.
	stunHeader = 20
)

// Peeked is what a connection's first bytes say it is.
type peeked int

const (
	peekHTTP peeked = iota // HTTP, TLS, or too little to tell
	peekICE                // an RFC 4571 frame holding a STUN message
)

// classify reads the first bytes of a connection: a 2-byte big-endian
// length of at least a STUN header, then a STUN message's first byte (0x00
// or 0x01). A first byte of 0x16 is a TLS handshake record, whatever
// follows.
func classify(b []byte) peeked {
	if len(b) < 3 || b[0] == 0x16 {
		return peekHTTP
	}
	n := int(b[0])<<8 | int(b[1])
	if n >= stunHeader && (b[2] == 0x00 || b[2] == 0x01) {
		return peekICE
	}
	return peekHTTP
}

// demux splits one TCP listener into an HTTP side and an ICE-TCP side.
// Closing the HTTP side closes the listener (the server owns it); closing
// the ICE side only refuses ICE connections from then on.
type demux struct {
	raw  net.Listener
	http *demuxSide
	ice  *demuxSide

	mu      sync.Mutex // guards pending and closed
	pending map[net.Conn]struct{}
	closed  bool
	wg      sync.WaitGroup // the accept loop and the classifiers
}

// demuxSide is one side of a demux, a net.Listener.
type demuxSide struct {
	d     *demux
	conns chan net.Conn
	done  chan struct{} // closed when this side is closed
	once  sync.Once
	err   error // set before done is closed
}

func newDemux(raw net.Listener) *demux {
	d := &demux{raw: raw, pending: map[net.Conn]struct{}{}}
	d.http = &demuxSide{d: d, conns: make(chan net.Conn), done: make(chan struct{})}
	d.ice = &demuxSide{d: d, conns: make(chan net.Conn, iceBacklog), done: make(chan struct{})}
	d.wg.Add(1)
	go d.loop()
	return d
}

// loop accepts connections and classifies each in a goroutine of its own,
// so a silent client never holds up the next one.
func (d *demux) loop() {
	defer d.wg.Done()
	var backoff time.Duration
	for {
		c, err := d.raw.Accept()
		if err != nil {
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() || errors.Is(err, os.ErrDeadlineExceeded) || isTooManyFiles(err) {
				// Out of file descriptors and the like: back off as
				// net/http does, the listener is still good.
				backoff = min(max(2*backoff, 5*time.Millisecond), time.Second)
				time.Sleep(backoff)
				continue
			}
			d.http.close(err)
			d.ice.close(err)
			return
		}
		backoff = 0
		if !d.track(c) {
			c.Close()
			continue
		}
		d.wg.Add(1)
		go d.route(c)
	}
}

func isTooManyFiles(err error) bool {
	var se interface{ Temporary() bool }
	return errors.As(err, &se) && se.Temporary()
}

// track adds c to the connections being classified; false once closed.
func (d *demux) track(c net.Conn) bool {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.closed {
		return false
	}
	d.pending[c] = struct{}{}
	return true
}

func (d *demux) untrack(c net.Conn) {
	d.mu.Lock()
	delete(d.pending, c)
	d.mu.Unlock()
}

// route peeks at c's first 3 bytes and hands it to the side it belongs to.
func (d *demux) route(c net.Conn) {
	defer d.wg.Done()
	var buf [3]byte
	_ = c.SetReadDeadline(time.Now().Add(peekTimeout))
	n, err := io.ReadFull(c, buf[:])
	_ = c.SetReadDeadline(time.Time{})
	d.untrack(c)
	if err != nil && !errors.Is(err, os.ErrDeadlineExceeded) && n == 0 {
		c.Close() // closed or reset before it said anything
		return
	}
	pc := &peekedConn{Conn: c, head: append([]byte(nil), buf[:n]...)}
	side := d.http
	if err == nil && classify(buf[:]) == peekICE {
		side = d.ice
	}
	side.deliver(pc, side == d.ice)
}

// deliver hands c to the side's Accept; an ICE connection nobody takes
// (a full backlog) is closed rather than held.
func (s *demuxSide) deliver(c net.Conn, drop bool) {
	if drop {
		select {
		case <-s.done:
			c.Close()
			return
		default:
		}
		select {
		case s.conns <- c:
			select {
			case <-s.done: // closed meanwhile: nobody will take it
				s.drain()
			default:
			}
		default:
			c.Close()
		}
		return
	}
	select {
	case s.conns <- c:
	case <-s.done:
		c.Close()
	}
}

// Accept waits for the next connection of this side.
func (s *demuxSide) Accept() (net.Conn, error) {
	select {
	case c := <-s.conns:
		return c, nil
	case <-s.done:
		return nil, s.err
	}
}

// close ends the side's Accept with err.
func (s *demuxSide) close(err error) {
	s.once.Do(func() {
		s.err = err
		close(s.done)
	})
	s.drain()
}

// drain closes the connections handed over but not accepted.
func (s *demuxSide) drain() {
	for {
		select {
		case c := <-s.conns:
			c.Close()
		default:
			return
		}
	}
}

// Close closes the side. The HTTP side's Close closes the listener too and
// waits for the classifiers (each ends within peekTimeout, or at once: the
// connections they read are closed).
func (s *demuxSide) Close() error {
	s.close(net.ErrClosed)
	if s != s.d.http {
		return nil
	}
	d := s.d
	err := d.raw.Close()
	d.mu.Lock()
	d.closed = true
	for c := range d.pending {
		c.Close()
	}
	d.mu.Unlock()
	d.wg.Wait()
	d.ice.close(net.ErrClosed)
	return err
}

// Addr is the listener's address (a *net.TCPAddr, as pion's ICE-TCP mux
// needs).
func (s *demuxSide) Addr() net.Addr { return s.d.raw.Addr() }

// peekedConn gives back the bytes read to classify it before the rest.
type peekedConn struct {
	net.Conn
	head []byte
}

// CloseWrite and ReadFrom keep what the HTTP server uses of a
// *net.TCPConn: a half-close before closing after an error, sendfile.
func (c *peekedConn) CloseWrite() error {
	if cw, ok := c.Conn.(interface{ CloseWrite() error }); ok {
		return cw.CloseWrite()
	}
	return c.Conn.Close()
}

func (c *peekedConn) ReadFrom(r io.Reader) (int64, error) { return io.Copy(c.Conn, r) }

func (c *peekedConn) Read(b []byte) (int, error) {
	if len(c.head) > 0 {
		n := copy(b, c.head)
		c.head = c.head[n:]
		return n, nil
	}
	return c.Conn.Read(b)
}

// ICETCP is the ICE-TCP side of the gateway's listener (for
// media.EngineConfig.TCP): connections to the gateway's port that open with
// an RFC 4571-framed STUN message. It is nil before Start and when the
// gateway does not serve. Closing it leaves the gateway serving HTTP.
func (g *Gateway) ICETCP() net.Listener {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.ice == nil {
		return nil
	}
	return g.ice
}

// demuxICE splits the gateway's raw listener: it returns the HTTP side and
// keeps the ICE side for ICETCP. g.mu is held.
func (g *Gateway) demuxICE(raw net.Listener) net.Listener {
	d := newDemux(raw)
	g.ice = d.ice
	return d.http
}

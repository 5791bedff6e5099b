package gateway

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"encoding/binary"
	"errors"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nkeys"

	"github.com/robonet-mesh/robonet/trust"
)

// stunBinding is an RFC 4571-framed STUN binding request as a browser's
// ICE agent sends it first on an ICE-TCP connection: a 2-byte length, the
// 20-byte STUN header (type 0x0001, the magic cookie, a transaction id) and
// a USERNAME attribute.
func stunBinding(user string) []byte {
	attr := make([]byte, 4, 4+len(user)+3)
	binary.BigEndian.PutUint16(attr[0:], 0x0006) // USERNAME
	binary.BigEndian.PutUint16(attr[2:], uint16(len(user)))
	attr = append(attr, user...)
	for len(attr)%4 != 0 {
		attr = append(attr, 0)
	}
	msg := make([]byte, 20, 20+len(attr))
	binary.BigEndian.PutUint16(msg[0:], 0x0001)
	binary.BigEndian.PutUint16(msg[2:], uint16(len(attr)))
	binary.BigEndian.PutUint32(msg[4:], 0x2112A442)
	copy(msg[8:], "robonet-txid")
	msg = append(msg, attr...)
	framed := binary.BigEndian.AppendUint16(nil, uint16(len(msg)))
	return append(framed, msg...)
}

// demuxRig serves HTTP on a demux's HTTP side of a real loopback listener
// (over TLS when tlsCfg is set) and hands out its ICE side.
type demuxRig struct {
	addr string
	ice  net.Listener
	// accepted receives each connection the HTTP server took, as it takes it.
	accepted chan struct{}
}

func newDemuxRig(t *testing.T, tlsCfg *tls.Config) *demuxRig {
	t.Helper()
	raw, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	d := newDemux(raw)
	r := &demuxRig{addr: raw.Addr().String(), ice: d.ice, accepted: make(chan struct{}, 16)}
	var ln net.Listener = &notifyListener{Listener: d.http, accepted: r.accepted}
	if tlsCfg != nil {
		ln = tls.NewListener(ln, tlsCfg)
	}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, "hello "+r.URL.Path)
	}), ReadHeaderTimeout: 10 * time.Second}
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ln) }()
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := srv.Shutdown(ctx); err != nil {
			t.Errorf("shutdown: %v", err)
		}
		if err := <-done; !errors.Is(err, http.ErrServerClosed) {
			t.Errorf("serve: %v", err)
		}
		// The ICE side ends with the listener.
		if c, err := d.ice.Accept(); err == nil {
			c.Close()
			t.Errorf("the ICE side accepted after the listener closed")
		}
	})
	return r
}

type notifyListener struct {
	net.Listener
	accepted chan struct{}
}

func (l *notifyListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err == nil {
		select {
		case l.accepted <- struct{}{}:
		default:
		}
	}
	return c, err
}

// acceptICE takes the next ICE-side connection within 10 s.
func acceptICE(t *testing.T, ln net.Listener) net.Conn {
	t.Helper()
	got := make(chan net.Conn, 1)
	go func() {
		c, err := ln.Accept()
		if err != nil {
			close(got)
			return
		}
		got <- c
	}()
	select {
	case c, ok := <-got:
		if !ok {
			t.Fatal("the ICE side closed")
		}
		t.Cleanup(func() { c.Close() })
		return c
	case <-time.After(10 * time.Second):
		t.Fatal("no connection on the ICE side within 10 s")
	}
	return nil
}

func httpGet(t *testing.T, c net.Conn, path string) string {
	t.Helper()
	_ = c.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := io.WriteString(c, "GET "+path+" HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n"); err != nil {
		t.Fatal(err)
	}
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return string(b)
}

// An HTTP request and an ICE-TCP binding request on the same port: the
// first is served as before, the second arrives on the ICE side with every
// byte, and the ICE side's connection still carries both ways.
func TestDemuxSplitsHTTPAndICETCP(t *testing.T) {
	r := newDemuxRig(t, nil)
	hc, err := net.Dial("tcp", r.addr)
	if err != nil {
		t.Fatal(err)
	}
	defer hc.Close()
	if got := httpGet(t, hc, "/x"); got != "hello /x" {
		t.Fatalf("HTTP answer %q", got)
	}

	ic, err := net.Dial("tcp", r.addr)
	if err != nil {
		t.Fatal(err)
	}
	defer ic.Close()
	want := stunBinding("abcd:efgh")
	if _, err := ic.Write(want); err != nil {
		t.Fatal(err)
	}
	sc := acceptICE(t, r.ice)
	if sc.LocalAddr().String() != r.addr {
		t.Errorf("ICE connection's local address %s, want the gateway's %s", sc.LocalAddr(), r.addr)
	}
	if _, ok := r.ice.Addr().(*net.TCPAddr); !ok {
		t.Errorf("ICE side's address is a %T, pion's TCP mux needs a *net.TCPAddr", r.ice.Addr())
	}
	got := make([]byte, len(want))
	_ = sc.SetReadDeadline(time.Now().Add(10 * time.Second))
	if _, err := io.ReadFull(sc, got); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, want) {
		t.Fatalf("the ICE side read %x, want %x", got, want)
	}
	if _, err := sc.Write([]byte("pong")); err != nil {
		t.Fatal(err)
	}
	back := make([]byte, 4)
	_ = ic.SetReadDeadline(time.Now().Add(10 * time.Second))
	if _, err := io.ReadFull(ic, back); err != nil || string(back) != "pong" {
		t.Fatalf("reply on the ICE connection: %q %v", back, err)
	}
}

// A client that opens a connection and says nothing for a while (a
// browser's preconnect) is still served once it speaks; so is one that
// sent a single byte first.
func TestDemuxServesSlowHTTPClients(t *testing.T) {
	r := newDemuxRig(t, nil)
	for _, first := range []string{"", "G"} {
		c, err := net.Dial("tcp", r.addr)
		if err != nil {
			t.Fatal(err)
		}
		if first != "" {
			if _, err := io.WriteString(c, first); err != nil {
				t.Fatal(err)
			}
		}
		// The connection reaches the HTTP server after peekTimeout.
		select {
		case <-r.accepted:
		case <-time.After(peekTimeout + 10*time.Second):
			t.Fatalf("first %q: the silent connection never reached the HTTP server", first)
		}
		rest := "GET /slow HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n"[len(first):]
		_ = c.SetDeadline(time.Now().Add(10 * time.Second))
		if _, err := io.WriteString(c, rest); err != nil {
			t.Fatal(err)
		}
		resp, err := http.ReadResponse(bufio.NewReader(c), nil)
		if err != nil {
			t.Fatalf("first %q: %v", first, err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		c.Close()
		if string(b) != "hello /slow" {
			t.Fatalf("first %q: answer %q", first, b)
		}
	}
}

// Under TLS, the ClientHello (0x16 …) goes to the TLS server and an ICE-TCP
// request still to the ICE side.
func TestDemuxKeepsTLSForTheServer(t *testing.T) {
	kp, err := nkeys.CreateServer()
	if err != nil {
		t.Fatal(err)
	}
	cert, err := trust.ClientCertificate(kp, []string{"127.0.0.1"})
	if err != nil {
		t.Fatal(err)
	}
	r := newDemuxRig(t, &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12})
	hc := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}}}
	resp, err := hc.Get("https://" + r.addr + "/tls")
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if string(b) != "hello /tls" {
		t.Fatalf("HTTPS answer %q", b)
	}
	ic, err := net.Dial("tcp", r.addr)
	if err != nil {
		t.Fatal(err)
	}
	defer ic.Close()
	want := stunBinding("u:v")
	if _, err := ic.Write(want); err != nil {
		t.Fatal(err)
	}
	sc := acceptICE(t, r.ice)
	got := make([]byte, len(want))
	_ = sc.SetReadDeadline(time.Now().Add(10 * time.Second))
	if _, err := io.ReadFull(sc, got); err != nil || !bytes.Equal(got, want) {
		t.Fatalf("ICE side read %x (%v), want %x", got, err, want)
	}
}

// Closing the ICE side (the media engine stopped) leaves HTTP served, and
// ICE-TCP connections are then closed rather than held.
func TestDemuxICESideClosedLeavesHTTP(t *testing.T) {
	r := newDemuxRig(t, nil)
	if err := r.ice.Close(); err != nil {
		t.Fatal(err)
	}
	ic, err := net.Dial("tcp", r.addr)
	if err != nil {
		t.Fatal(err)
	}
	defer ic.Close()
	if _, err := ic.Write(stunBinding("a:b")); err != nil {
		t.Fatal(err)
	}
	_ = ic.SetReadDeadline(time.Now().Add(10 * time.Second))
	if n, err := ic.Read(make([]byte, 1)); err == nil || n > 0 {
		t.Fatalf("an ICE connection with the ICE side closed: read %d, %v; want it closed", n, err)
	}
	hc, err := net.Dial("tcp", r.addr)
	if err != nil {
		t.Fatal(err)
	}
	defer hc.Close()
	if got := httpGet(t, hc, "/still"); got != "hello /still" {
		t.Fatalf("HTTP answer %q", got)
	}
}

func TestClassify(t *testing.T) {
	for _, c := range []struct {
		in   []byte
		want peeked
	}{
		{stunBinding("a:b")[:3], peekICE},
		{[]byte{0x00, 0x14, 0x00}, peekICE},  // a bare 20-byte STUN header
		{[]byte{0x00, 0x13, 0x00}, peekHTTP}, // shorter than a STUN header
		{[]byte{0x00, 0x40, 0x02}, peekHTTP}, // not a STUN first byte
		{[]byte{0x16, 0x03, 0x01}, peekHTTP}, // TLS ClientHello
		{[]byte("GET"), peekHTTP},            // HTTP
		{[]byte("PRI"), peekHTTP},            // HTTP/2 preface
		{[]byte{0x00, 0x14}, peekHTTP},       // too little to tell
		{nil, peekHTTP},
		{[]byte{0xff, 0xff, 0x01}, peekICE}, // the longest frame
		{[]byte(strings.Repeat("x", 3)), peekHTTP},
	} {
		if got := classify(c.in); got != c.want {
			t.Errorf("classify(%x) = %v, want %v", c.in, got, c.want)
		}
	}
}

// FuzzClassify: any first bytes classify without panicking, and only an
// RFC 4571 length of at least a STUN header followed by a STUN first byte,
// never a TLS record, is ICE.
func FuzzClassify(f *testing.F) {
	f.Add(stunBinding("a:b"))
	f.Add([]byte("GET / HTTP/1.1\r\n"))
	f.Add([]byte{0x16, 0x03, 0x01, 0x02, 0x00})
	f.Add([]byte{0x00, 0x14, 0x01})
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, b []byte) {
		got := classify(b)
		ice := len(b) >= 3 && b[0] != 0x16 && int(b[0])<<8|int(b[1]) >= 20 && b[2] <= 1
		if (got == peekICE) != ice {
			t.Fatalf("classify(%x) = %v", b, got)
		}
	})
}

package tunnel_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/robonet-mesh/robonet/gateway/tunnel"
	"github.com/robonet-mesh/robonet/internal/testmesh"
	"github.com/robonet-mesh/robonet/mesh"
	"github.com/robonet-mesh/robonet/node"
	"github.com/robonet-mesh/robonet/subjects"
	"github.com/robonet-mesh/robonet/wire"
)

// rig is a two-node swarm: a target on node 1 allowing the ports given,
// and dialers on node 0, so every tunnel crosses a route.
type rig struct {
	s      *testmesh.Swarm
	target *tunnel.Target
	gw     *nats.Conn // node 0's feature connection, as the gateway's
}

func newRig(t *testing.T, limits tunnel.Limits, allow ...int) *rig {
	t.Helper()
	s := testmesh.Start(t, 2)
	r := &rig{s: s}
	r.target = startTarget(t, s.Node(1), limits, allow...)
	gw, err := s.Node(0).FeatureConn("gateway")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(gw.Close)
	r.gw = gw
	r.waitReachable(t)
	return r
}

// waitReachable waits until node 0 knows the target's subscription (it
// crosses the route a moment after Start).
func (r *rig) waitReachable(t *testing.T) {
	t.Helper()
	testmesh.CheckFor(t, 10*time.Second, 20*time.Millisecond, func() error {
		_, err := r.gw.Request(tunnel.Subject(r.chevron(), 1), nil, time.Second)
		return err
	})
}

func startTarget(t *testing.T, n *node.Node, limits tunnel.Limits, allow ...int) *tunnel.Target {
	t.Helper()
	fc, err := n.FeatureConn("proxy")
	if err != nil {
		t.Fatal(err)
	}
	tg, err := tunnel.New(tunnel.Options{Node: n, Conn: fc, Allow: allow, Limits: limits})
	if err != nil {
		t.Fatal(err)
	}
	if err := tg.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := tg.Shutdown(ctx); err != nil {
			t.Error(err)
		}
		fc.Close()
	})
	return tg
}

// as is a client on the gateway's connection that signs as user's key, as
// a gateway session does.
func (r *rig) as(user *mesh.Client) *mesh.Client {
	return mesh.NewClient(r.gw).WithSigner(user.Signer())
}

func (r *rig) chevron() subjects.Chevron { return r.s.Node(1).Chevron() }

// echoServer echoes every connection on 127.0.0.1 until the test ends.
func echoServer(t *testing.T) int {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	t.Cleanup(func() { ln.Close(); wg.Wait() })
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			wg.Add(1)
			go func() {
				defer wg.Done()
				defer c.Close()
				_, _ = io.Copy(c, c)
				_ = c.(*net.TCPConn).CloseWrite()
			}()
		}
	}()
	return ln.Addr().(*net.TCPAddr).Port
}

// closedPort is a port nothing listens on.
func closedPort(t *testing.T) int {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := ln.Addr().(*net.TCPAddr).Port
	ln.Close()
	return p
}

func TestTunnelEchoesAStreamBothWaysAcrossARoute(t *testing.T) {
	port := echoServer(t)
	r := newRig(t, tunnel.Limits{}, port)
	op := r.s.User(0, "op", wire.RoleOperator)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	c, err := tunnel.Dial(ctx, r.as(op), r.chevron(), port)
	if err != nil {
		t.Fatal(err)
	}
	want := make([]byte, 8<<20+123) // several windows, an odd tail
	_, _ = rand.Read(want)
	werr := make(chan error, 1)
	go func() {
		_, err := c.Write(want)
		if err == nil {
			err = c.CloseWrite()
		}
		werr <- err
	}()
	got, err := io.ReadAll(c)
	if err != nil {
		t.Fatalf("read: %v", err)
	}
	if err := <-werr; err != nil {
		t.Fatalf("write: %v", err)
	}
	if !bytes.Equal(got, want) {
		t.Fatalf("echo: got %d bytes, want %d (equal: false)", len(got), len(want))
	}
	if err := c.Close(); err != nil {
		t.Fatal(err)
	}
	testmesh.CheckFor(t, 10*time.Second, 20*time.Millisecond, func() error {
		if n := r.target.Active(); n != 0 {
			return fmt.Errorf("%d tunnels still open on the target", n)
		}
		return nil
	})
}

func TestTunnelAdminClientDialsOnItsOwnConnection(t *testing.T) {
	port := echoServer(t)
	r := newRig(t, tunnel.Limits{}, port)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	c, err := tunnel.Dial(ctx, r.s.Client(0), r.chevron(), port)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if _, err := c.Write([]byte("ping")); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 4)
	if _, err := io.ReadFull(c, buf); err != nil || string(buf) != "ping" {
		t.Fatalf("read %q, %v", buf, err)
	}
}

func openErr(t *testing.T, err error, code string, mention ...string) {
	t.Helper()
	var oe *tunnel.OpenError
	if !errors.As(err, &oe) {
		t.Fatalf("err = %v (%T), want an *OpenError with code %s", err, err, code)
	}
	if oe.Code != code {
		t.Fatalf("code %q (%v), want %q", oe.Code, err, code)
	}
	for _, m := range mention {
		if !strings.Contains(err.Error(), m) {
			t.Errorf("error %q does not mention %q", err, m)
		}
	}
}

func TestTunnelRefusals(t *testing.T) {
	allowed := echoServer(t)
	closed := closedPort(t)
	r := newRig(t, tunnel.Limits{}, allowed, closed)
	op := r.s.User(0, "op", wire.RoleOperator)
	obs := r.s.User(0, "obs", wire.RoleObserver)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	other := echoServer(t)

	_, err := tunnel.Dial(ctx, r.as(op), r.chevron(), other)
	openErr(t, err, tunnel.CodeNotAllowed, fmt.Sprint(other), r.chevron().String())

	_, err = tunnel.Dial(ctx, r.as(op), r.chevron(), closed)
	openErr(t, err, tunnel.CodeRefused, fmt.Sprintf("port %d on %s: connection refused", closed, r.chevron()))

	_, err = tunnel.Dial(ctx, r.as(obs), r.chevron(), allowed)
	openErr(t, err, wire.CodeDenied, "observer")

	// A node key is not a user: node 0's own signer is refused.
	_, err = tunnel.Dial(ctx, mesh.NewClient(r.gw).WithSigner(r.s.Node(0).Signer()), r.chevron(), allowed)
	openErr(t, err, wire.CodeDenied)

	unknown, _ := subjects.Parse("9.9.9.9")
	_, err = tunnel.Dial(ctx, r.as(op), unknown, allowed)
	openErr(t, err, tunnel.CodeNoTarget, "9.9.9.9")

	// On its own connection (robonet proxy) an operator may open tunnels
	// and send their data: the node's permissions let operators publish
	// opens and frames to the target end's subject.
	c, err := tunnel.Dial(ctx, op, r.chevron(), allowed)
	if err != nil {
		t.Fatalf("operator on its own connection: %v", err)
	}
	if _, err := c.Write([]byte("hi")); err != nil {
		t.Fatalf("operator's tunnel: write: %v", err)
	}
	buf := make([]byte, 2)
	if _, err := io.ReadFull(c, buf); err != nil || string(buf) != "hi" {
		t.Fatalf("operator's tunnel: echo %q %v", buf, err)
	}
	c.Close()
	testmesh.CheckFor(t, 5*time.Second, 20*time.Millisecond, func() error {
		if n := r.target.Active(); n != 0 {
			return fmt.Errorf("%d tunnels open after the operator's closed", n)
		}
		return nil
	})

	_, err = tunnel.Dial(ctx, mesh.NewClient(r.gw), r.chevron(), allowed)
	if !errors.Is(err, mesh.ErrUnsigned) {
		t.Fatalf("unsigned client: %v, want mesh.ErrUnsigned", err)
	}
	if n := r.target.Active(); n != 0 {
		t.Fatalf("%d tunnels open after refusals", n)
	}
}

func TestTunnelRefusesAnUnsignedOrForgedOpen(t *testing.T) {
	port := echoServer(t)
	r := newRig(t, tunnel.Limits{}, port)
	op := r.s.User(0, "op", wire.RoleOperator)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	subj := tunnel.Subject(r.chevron(), port)
	ask := func(m *nats.Msg) wire.Reply {
		t.Helper()
		resp, err := r.gw.RequestMsgWithContext(ctx, m)
		if err != nil {
			t.Fatal(err)
		}
		var rep wire.Reply
		if err := json.Unmarshal(resp.Data, &rep); err != nil {
			t.Fatal(err)
		}
		return rep
	}
	rep := ask(&nats.Msg{Subject: subj, Data: []byte(`{"window":1048576}`)})
	if rep.Error == nil || rep.Error.Code != wire.CodeDenied {
		t.Fatalf("unsigned open answered %+v, want denied", rep)
	}
	// Signed by the operator for a small window, then the payload changed.
	m := &nats.Msg{Subject: subj, Data: []byte(`{"window":65536}`)}
	if err := op.Signer().SignMsg(m); err != nil {
		t.Fatal(err)
	}
	m.Data = []byte(`{"window":16777216}`)
	rep = ask(m)
	if rep.Error == nil || rep.Error.Code != wire.CodeDenied {
		t.Fatalf("forged open answered %+v, want denied", rep)
	}
	if n := r.target.Active(); n != 0 {
		t.Fatalf("%d tunnels open", n)
	}
}

func TestTunnelPerKeyLimit(t *testing.T) {
	port := echoServer(t)
	r := newRig(t, tunnel.Limits{MaxPerKey: 2}, port)
	op := r.s.User(0, "op", wire.RoleOperator)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	var open []*tunnel.Conn
	for range 2 {
		c, err := tunnel.Dial(ctx, r.as(op), r.chevron(), port)
		if err != nil {
			t.Fatal(err)
		}
		open = append(open, c)
	}
	_, err := tunnel.Dial(ctx, r.as(op), r.chevron(), port)
	openErr(t, err, tunnel.CodeBusy, "2 tunnels")
	for _, c := range open {
		c.Close()
	}
	testmesh.CheckFor(t, 10*time.Second, 20*time.Millisecond, func() error {
		c, err := tunnel.Dial(ctx, r.as(op), r.chevron(), port)
		if err != nil {
			return err
		}
		return c.Close()
	})
}

func TestTunnelChecksTheTargetsKeyWhenAsked(t *testing.T) {
	port := echoServer(t)
	r := newRig(t, tunnel.Limits{}, port)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	c0 := r.s.Client(0)
	d := tunnel.Dialer{TargetKey: tunnel.RegistryKey(c0)}
	c, err := d.Dial(ctx, c0, r.chevron(), port)
	if err != nil {
		t.Fatalf("with the registry's key: %v", err)
	}
	c.Close()
	wrong := r.s.Node(0).Pubkey()
	d = tunnel.Dialer{TargetKey: func(context.Context, subjects.Chevron) (string, error) { return wrong, nil }}
	if _, err := d.Dial(ctx, c0, r.chevron(), port); !errors.Is(err, tunnel.ErrTargetKey) {
		t.Fatalf("with another node's key: %v, want ErrTargetKey", err)
	}
}

func TestTunnelDeadlinesAndHalfClose(t *testing.T) {
	port := echoServer(t)
	r := newRig(t, tunnel.Limits{}, port)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	c, err := tunnel.Dial(ctx, r.s.Client(0), r.chevron(), port)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	_ = c.SetReadDeadline(time.Now().Add(50 * time.Millisecond))
	if _, err := c.Read(make([]byte, 10)); !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("read past the deadline: %v", err)
	}
	_ = c.SetReadDeadline(time.Time{})
	if _, err := c.Write([]byte("after")); err != nil {
		t.Fatal(err)
	}
	if err := c.CloseWrite(); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Write([]byte("x")); err == nil {
		t.Fatal("write after CloseWrite succeeded")
	}
	got, err := io.ReadAll(c)
	if err != nil || string(got) != "after" {
		t.Fatalf("after half-close read %q, %v", got, err)
	}
}

func TestTunnelSilentPeerEndsTheTunnel(t *testing.T) {
	port := echoServer(t)
	r := newRig(t, tunnel.Limits{KeepAlive: 100 * time.Millisecond}, port)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	// A dialer whose connection vanishes: its keepalives stop.
	nc, err := r.s.Node(0).FeatureConn("gone")
	if err != nil {
		t.Fatal(err)
	}
	d := tunnel.Dialer{KeepAlive: time.Hour}
	c, err := d.Dial(ctx, mesh.NewClient(nc).WithSigner(r.s.User(0, "op", wire.RoleOperator).Signer()), r.chevron(), port)
	if err != nil {
		t.Fatal(err)
	}
	nc.Close()
	testmesh.CheckFor(t, 10*time.Second, 20*time.Millisecond, func() error {
		if n := r.target.Active(); n != 0 {
			return fmt.Errorf("%d tunnels still open", n)
		}
		return nil
	})
	c.Close()
}

func TestTunnelGoroutinesAllGoneAfterClose(t *testing.T) {
	port := echoServer(t)
	r := newRig(t, tunnel.Limits{}, port)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	var conns []*tunnel.Conn
	for range 5 {
		c, err := tunnel.Dial(ctx, r.s.Client(0), r.chevron(), port)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := c.Write([]byte("x")); err != nil {
			t.Fatal(err)
		}
		conns = append(conns, c)
	}
	if n := tunnelGoroutines(); n == 0 {
		t.Fatal("no tunnel goroutine running while tunnels are open: the check below would prove nothing")
	}
	for i, c := range conns {
		if i%2 == 0 {
			c.Close()
		}
	}
	// The others end when the target shuts down.
	sctx, scancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer scancel()
	if err := r.target.Shutdown(sctx); err != nil {
		t.Fatal(err)
	}
	for _, c := range conns {
		select {
		case <-c.Done():
		case <-sctx.Done():
			t.Fatal("a tunnel outlived its target's shutdown")
		}
		c.Close()
	}
	testmesh.CheckFor(t, 10*time.Second, 20*time.Millisecond, func() error {
		if n := tunnelGoroutines(); n != 0 {
			return fmt.Errorf("%d tunnel goroutines still running", n)
		}
		return nil
	})
}

func tunnelGoroutines() int {
	buf := make([]byte, 4<<20)
	n := 0
	for _, g := range strings.Split(string(buf[:runtime.Stack(buf, true)]), "\n\n") {
		if strings.Contains(g, "robonet/gateway/tunnel.(*") && !strings.Contains(g, "tunnel_test.") {
			n++
		}
	}
	return n
}

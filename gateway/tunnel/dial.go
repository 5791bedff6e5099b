package tunnel

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/robonet-mesh/robonet/mesh"
	"github.com/robonet-mesh/robonet/subjects"
	"github.com/robonet-mesh/robonet/trust"
	"github.com/robonet-mesh/robonet/wire"
)

// Dialer opens tunnels. The zero value uses the defaults.
type Dialer struct {
	Window      int           // receive window in bytes; 0: DefaultWindow (MinWindow..MaxWindow)
	KeepAlive   time.Duration // 0: DefaultKeepAlive
	IdleTimeout time.Duration // no data either way this long closes the tunnel; 0: never
	// TargetKey, when set, returns the node key the target with chevron
	// must sign its answer with (from a verified registry: mesh.Client.Nodes
	// or the gateway's view); an answer signed otherwise is refused. Nil:
	// any answer on the dialer's private inbox is taken.
	TargetKey func(ctx context.Context, chevron subjects.Chevron) (string, error)
}

// Dial opens a tunnel to 127.0.0.1:port on the node with chevron, through
// c's connection, signing the open as c's signer (the target judges that
// key's role: operator or above). It returns when the target has
// connected to the port, or an *OpenError saying why it did not.
func Dial(ctx context.Context, c *mesh.Client, chevron subjects.Chevron, port int) (*Conn, error) {
	var d Dialer
	return d.Dial(ctx, c, chevron, port)
}

// Dial is Dial with d's settings.
func (d *Dialer) Dial(ctx context.Context, c *mesh.Client, chevron subjects.Chevron, port int) (*Conn, error) {
	window := d.Window
	if window == 0 {
		window = DefaultWindow
	}
	keep := d.KeepAlive
	if keep <= 0 {
		keep = DefaultKeepAlive
	}
	target := chevron.String() + ":" + strconv.Itoa(port)
	switch {
	case chevron.IsZero():
		return nil, fmt.Errorf("tunnel to %s: no chevron", target)
	case port < 1 || port > 65535:
		return nil, fmt.Errorf("tunnel to %s: port %d, want 1..65535", target, port)
	case window < MinWindow || window > MaxWindow:
		return nil, fmt.Errorf("tunnel to %s: window %d, want %d..%d", target, window, MinWindow, MaxWindow)
	case c == nil || c.Signer() == nil:
		return nil, fmt.Errorf("tunnel to %s: %w client: the target admits signed opens only", target, mesh.ErrUnsigned)
	}
	nc := c.Conn()
	conn := newConn(nc, connConfig{window: window, keepAlive: keep, idle: d.IdleTimeout},
		dataSubject(nc), Addr(c.Signer().PublicKey()), Addr(target))
	// Subscribe before the target can send: its first frames follow our hello.
	if err := conn.subscribe(); err != nil {
		return nil, err
	}
	rep, err := d.open(ctx, c, chevron, port, window)
	if err != nil {
		conn.end(err, false)
		return nil, err
	}
	conn.setOut(rep.Subject, uint64(rep.Window))
	if err := conn.send(kindHello, uint64(window), []byte(conn.in)); err != nil {
		conn.end(err, false)
		return nil, err
	}
	conn.run()
	return conn, nil
}

// open sends the signed open request and reads the target's answer.
func (d *Dialer) open(ctx context.Context, c *mesh.Client, chevron subjects.Chevron, port, window int) (openReply, error) {
	target := chevron.String() + ":" + strconv.Itoa(port)
	oerr := func(code, format string, args ...any) error {
		return &OpenError{Chevron: chevron.String(), Port: port, Code: code, Msg: fmt.Sprintf(format, args...)}
	}
	payload, _ := json.Marshal(openRequest{Window: window})
	m := &nats.Msg{Subject: Subject(chevron, port), Data: payload}
	if err := c.Signer().SignMsg(m); err != nil {
		return openReply{}, fmt.Errorf("tunnel to %s: sign: %w", target, err)
	}
	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, 10*time.Second)
		defer cancel()
	}
	resp, err := request(ctx, c.Conn(), m)
	switch {
	case errors.Is(err, nats.ErrNoResponders):
		return openReply{}, oerr(CodeNoTarget, "no node answers for %s: no node has chevron %s, or it allows no proxy port (robonet up --proxy-allow)", target, chevron)
	case errors.Is(err, nats.ErrPermissionViolation):
		return openReply{}, oerr(wire.CodeDenied, "key %s may not open tunnels on this connection: %v", c.Signer().PublicKey(), err)
	case errors.Is(err, context.DeadlineExceeded) || errors.Is(err, nats.ErrTimeout):
		return openReply{}, oerr(CodeTimeout, "no answer from %s in time", target)
	case err != nil:
		return openReply{}, fmt.Errorf("tunnel to %s: %w", target, err)
	}
	if d.TargetKey != nil {
		if err := checkTargetKey(ctx, d.TargetKey, chevron, resp); err != nil {
			return openReply{}, fmt.Errorf("tunnel to %s: %w", target, err)
		}
	}
	var r wire.Reply
	if err := json.Unmarshal(resp.Data, &r); err != nil {
		return openReply{}, fmt.Errorf("tunnel to %s: bad answer: %w", target, err)
	}
	if r.Error != nil {
		return openReply{}, oerr(r.Error.Code, "%s", clip(r.Error.Msg, 512))
	}
	var rep openReply
	if err := json.Unmarshal(r.Data, &rep); err != nil {
		return openReply{}, fmt.Errorf("tunnel to %s: bad answer: %w", target, err)
	}
	if err := checkDataSubject(rep.Subject); err != nil {
		return openReply{}, fmt.Errorf("tunnel to %s: %w", target, err)
	}
	if rep.Window < MinWindow || rep.Window > MaxWindow {
		return openReply{}, fmt.Errorf("tunnel to %s: target window %d, want %d..%d", target, rep.Window, MinWindow, MaxWindow)
	}
	return rep, nil
}

// request publishes m and waits for one reply, like nats.Conn.RequestMsg,
// but tells a publish the server refused (a permissions violation, which
// nats.go reports only asynchronously) at once instead of at the deadline.
func request(ctx context.Context, nc *nats.Conn, m *nats.Msg) (*nats.Msg, error) {
	ch := make(chan *nats.Msg, 1)
	sub, err := nc.ChanSubscribe(nc.NewInbox(), ch)
	if err != nil {
		return nil, err
	}
	defer sub.Unsubscribe()
	m.Reply = sub.Subject
	if err := nc.PublishMsg(m); err != nil {
		return nil, err
	}
	// The server answers a refused publish before the flush's pong.
	if err := nc.FlushWithContext(ctx); err != nil {
		return nil, err
	}
	if le := nc.LastError(); errors.Is(le, nats.ErrPermissionViolation) && strings.Contains(le.Error(), `"`+m.Subject+`"`) {
		return nil, le
	}
	select {
	case resp := <-ch:
		if len(resp.Data) == 0 && resp.Header.Get("Status") == "503" {
			return nil, nats.ErrNoResponders
		}
		return resp, nil
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

// ErrTargetKey is wrapped when an open's answer is not signed by the
// target's node key.
var ErrTargetKey = errors.New("answer not signed by the target node")

// checkTargetKey checks that resp is signed by the key targetKey gives for
// chevron.
func checkTargetKey(ctx context.Context, targetKey func(context.Context, subjects.Chevron) (string, error), chevron subjects.Chevron, resp *nats.Msg) error {
	want, err := targetKey(ctx, chevron)
	if err != nil {
		return fmt.Errorf("the node key of %s: %w", chevron, err)
	}
	h, err := mesh.ParseSigned(resp)
	if err != nil {
		return fmt.Errorf("%w: %v", ErrTargetKey, err)
	}
	if h.From != want {
		return fmt.Errorf("%w: signed by %s, %s has key %s", ErrTargetKey, h.From, chevron, want)
	}
	if err := trust.NewVerifier(1).Verify(h, resp.Subject, resp.Data); err != nil {
		return fmt.Errorf("%w: %v", ErrTargetKey, err)
	}
	return nil
}

// RegistryKey is a Dialer.TargetKey that asks c for the swarm's registry
// (verified against the node key c trusts) and returns the key of the
// member with chevron.
func RegistryKey(c *mesh.Client) func(context.Context, subjects.Chevron) (string, error) {
	return func(ctx context.Context, chevron subjects.Chevron) (string, error) {
		members, err := c.Nodes(ctx)
		if err != nil {
			return "", err
		}
		for _, m := range members {
			if m.Chevron == chevron.String() && m.Pubkey != "" {
				return m.Pubkey, nil
			}
		}
		return "", &OpenError{Chevron: chevron.String(), Code: CodeNoTarget, Msg: fmt.Sprintf("no node with chevron %s in the registry", chevron)}
	}
}

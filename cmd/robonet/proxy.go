package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"strings"
	"sync"
	"time"

	"github.com/spf13/cobra"

	"github.com/robonet-mesh/robonet/gateway/tunnel"
	"github.com/robonet-mesh/robonet/mesh"
	"github.com/robonet-mesh/robonet/subjects"
)

func newProxyCmd(g *globals) *cobra.Command {
	var listen string
	cmd := &cobra.Command{
		Use:   "proxy <chevron>:<port>",
		Short: "Forward a local TCP port to a port of a node's 127.0.0.1 through the mesh (like ssh -L)",
		Long: `proxy listens on --listen and carries every connection it accepts through the mesh to
127.0.0.1:<port> on the node with <chevron>; that node opens no port, but must allow
<port> (robonet up --proxy-allow) and the key you connect with must be an operator or
an admin. The address it listens on is printed alone on standard output (host:port);
diagnostics go to standard error. It runs until interrupted.`,
		Example: "  robonet proxy 3.12.7.1:8080 --listen 127.0.0.1:9000",
		Args:    cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			chev, port, err := parseProxyTarget(args[0])
			if err != nil {
				return err
			}
			ctx := cmd.Context()
			c, err := g.connect(ctx)
			if err != nil {
				return err
			}
			defer c.Close()
			// The target's key from the verified registry: an open's answer
			// must be signed by it. This also tells an unknown chevron now.
			key, err := tunnel.RegistryKey(c)(ctx, chev)
			if err != nil {
				return fmt.Errorf("proxy %s: %w", args[0], err)
			}
			d := &tunnel.Dialer{TargetKey: func(context.Context, subjects.Chevron) (string, error) { return key, nil }}
			ln, err := net.Listen("tcp", listen)
			if err != nil {
				return fmt.Errorf("proxy --listen %s: %w", listen, err)
			}
			fmt.Fprintln(cmd.OutOrStdout(), ln.Addr().String())
			return serveProxy(ctx, ln, c, d, chev, port, cmd.ErrOrStderr())
		},
	}
	cmd.Flags().StringVar(&listen, "listen", "127.0.0.1:0", "local address to listen on (port 0: any free port)")
	return cmd
}

// parseProxyTarget reads <chevron>:<port>.
func parseProxyTarget(s string) (subjects.Chevron, int, error) {
	c, p, ok := strings.Cut(s, ":")
	if !ok {
		return subjects.Chevron{}, 0, fmt.Errorf("proxy target %q: want <chevron>:<port>, e.g. 3.12.7.1:8080", s)
	}
	chev, err := subjects.Parse(c)
	if err != nil {
		return subjects.Chevron{}, 0, fmt.Errorf("proxy target %q: %w", s, err)
	}
	port, err := tunnel.ParsePort(p)
	if err != nil {
		return subjects.Chevron{}, 0, fmt.Errorf("proxy target %q: %w", s, err)
	}
	return chev, port, nil
}

// serveProxy accepts on ln until ctx ends, each connection through its own
// tunnel, and waits for every connection it started.
func serveProxy(ctx context.Context, ln net.Listener, c *mesh.Client, d *tunnel.Dialer, chev subjects.Chevron, port int, diag io.Writer) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var wg sync.WaitGroup
	var diagMu sync.Mutex
	say := func(format string, args ...any) {
		diagMu.Lock()
		defer diagMu.Unlock()
		fmt.Fprintf(diag, "robonet proxy: "+format+"\n", args...)
	}
	stop := context.AfterFunc(ctx, func() { ln.Close() })
	defer stop()
	defer wg.Wait()
	for {
		local, err := ln.Accept()
		if err != nil {
			if ctx.Err() != nil || errors.Is(err, net.ErrClosed) {
				return nil
			}
			return fmt.Errorf("proxy: accept: %w", err)
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := forward(ctx, local, c, d, chev, port); err != nil {
				say("%s: %v", local.RemoteAddr(), err)
			}
		}()
	}
}

// forward carries one local connection through a tunnel, passing each
// direction's end on as a half-close.
func forward(ctx context.Context, local net.Conn, c *mesh.Client, d *tunnel.Dialer, chev subjects.Chevron, port int) error {
	defer local.Close()
	octx, cancel := context.WithTimeout(ctx, 10*time.Second)
	t, err := d.Dial(octx, c, chev, port)
	cancel()
	if err != nil {
		return err
	}
	defer t.Close()
	stop := context.AfterFunc(ctx, func() { local.Close(); t.Close() })
	defer stop()
	errs := make(chan error, 2)
	go func() {
		_, err := io.CopyBuffer(struct{ io.Writer }{t}, struct{ io.Reader }{local}, make([]byte, tunnel.MaxChunk))
		if err == nil {
			err = t.CloseWrite()
		}
		errs <- err
	}()
	go func() {
		_, err := io.Copy(local, t)
		if tc, ok := local.(*net.TCPConn); ok && err == nil {
			err = tc.CloseWrite()
		}
		errs <- err
	}()
	var first error
	for range 2 {
		if err := <-errs; err != nil && first == nil {
			first = err
			local.Close() // unblock the other direction
			t.Close()
		}
	}
	if ctx.Err() != nil || errors.Is(first, net.ErrClosed) {
		return nil
	}
	return first
}

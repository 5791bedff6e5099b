package main

import (
	"context"
	"fmt"
	"log/slog"
	"time"

	"github.com/spf13/pflag"

	"github.com/robonet-mesh/robonet/gateway"
	"github.com/robonet-mesh/robonet/gateway/tunnel"
	"github.com/robonet-mesh/robonet/node"
)

// proxyFlags are `robonet up`'s mesh-proxy flags: which loopback ports of
// this node the mesh may reach, the target's limits, and the limits of the
// gateway's /proxy/ handler.
type proxyFlags struct {
	allow       []string
	maxTunnels  int
	maxPerKey   int
	idle        time.Duration
	maxDuration time.Duration
	maxBytes    int64
	maxBody     int64
	timeout     time.Duration
}

// addProxyFlags registers the mesh-proxy flags on f.
func addProxyFlags(f *pflag.FlagSet) *proxyFlags {
	pf := &proxyFlags{}
	f.StringSliceVar(&pf.allow, "proxy-allow", nil, "ports of this node's 127.0.0.1 the mesh proxy may reach, e.g. 8080,3000 (none: no proxy target)")
	f.IntVar(&pf.maxTunnels, "proxy-max-tunnels", 256, "open proxy tunnels into this node at most")
	f.IntVar(&pf.maxPerKey, "proxy-max-per-key", 32, "open proxy tunnels into this node per user key at most")
	f.DurationVar(&pf.idle, "proxy-idle-timeout", 10*time.Minute, "close a proxy tunnel with no data either way for this long (0: never)")
	f.DurationVar(&pf.maxDuration, "proxy-max-duration", 0, "close a proxy tunnel open this long (0: no limit)")
	f.Int64Var(&pf.maxBytes, "proxy-max-bytes", 0, "close a proxy tunnel after this many bytes both ways (0: no limit)")
	f.Int64Var(&pf.maxBody, "proxy-max-body", 0, "the gateway's /proxy/: largest request or response body in bytes (0: no limit)")
	f.DurationVar(&pf.timeout, "proxy-timeout", 0, "the gateway's /proxy/: longest request, WebSockets and event streams included (0: no limit)")
	return pf
}

// ports parses --proxy-allow: each 1..65535, no duplicates.
func (pf *proxyFlags) ports() ([]int, error) {
	var out []int
	for _, s := range pf.allow {
		p, err := tunnel.ParsePort(s)
		if err != nil {
			return nil, fmt.Errorf("--proxy-allow: %w", err)
		}
		out = append(out, p)
	}
	if _, err := tunnel.CheckPorts(out); err != nil {
		return nil, fmt.Errorf("--proxy-allow: %w", err)
	}
	return out, nil
}

// check validates the flags before the node starts.
func (pf *proxyFlags) check() error {
	if _, err := pf.ports(); err != nil {
		return err
	}
	switch {
	case pf.maxTunnels < 1:
		return fmt.Errorf("--proxy-max-tunnels %d: want at least 1", pf.maxTunnels)
	case pf.maxPerKey < 1:
		return fmt.Errorf("--proxy-max-per-key %d: want at least 1", pf.maxPerKey)
	case pf.idle < 0:
		return fmt.Errorf("--proxy-idle-timeout %s: want 0 or more", pf.idle)
	case pf.maxDuration < 0:
		return fmt.Errorf("--proxy-max-duration %s: want 0 or more", pf.maxDuration)
	case pf.maxBytes < 0:
		return fmt.Errorf("--proxy-max-bytes %d: want 0 or more", pf.maxBytes)
	case pf.maxBody < 0:
		return fmt.Errorf("--proxy-max-body %d: want 0 or more", pf.maxBody)
	case pf.timeout < 0:
		return fmt.Errorf("--proxy-timeout %s: want 0 or more", pf.timeout)
	}
	return nil
}

// httpOptions are the limits of the gateway's /proxy/ handler; the
// gateway fills in Client.
func (pf *proxyFlags) httpOptions(log *slog.Logger) gateway.ProxyOptions {
	return gateway.ProxyOptions{MaxBodyBytes: pf.maxBody, Timeout: pf.timeout, Logger: log}
}

// startProxyTarget serves the --proxy-allow ports to the mesh on a started
// node (a no-op without any). The returned stop shuts the target down and
// closes its connection; call it before the node's Shutdown.
func startProxyTarget(ctx context.Context, n *node.Node, pf *proxyFlags, log *slog.Logger) (stop func(context.Context), err error) {
	noop := func(context.Context) {}
	if err := pf.check(); err != nil {
		return noop, err
	}
	ports, _ := pf.ports()
	if len(ports) == 0 {
		return noop, nil
	}
	idle := pf.idle
	if idle == 0 {
		idle = -1 // tunnel.Limits: <0 is never
	}
	fc, err := n.FeatureConn("proxy")
	if err != nil {
		return noop, fmt.Errorf("mesh proxy: %w", err)
	}
	t, err := tunnel.New(tunnel.Options{Node: n, Conn: fc, Allow: ports, Logger: log, Limits: tunnel.Limits{
		MaxTunnels: pf.maxTunnels, MaxPerKey: pf.maxPerKey, IdleTimeout: idle,
		MaxDuration: pf.maxDuration, MaxBytes: pf.maxBytes,
	}})
	if err == nil {
		err = t.Start(ctx)
	}
	if err != nil {
		fc.Close()
		return noop, fmt.Errorf("mesh proxy: %w", err)
	}
	return func(ctx context.Context) {
		if err := t.Shutdown(ctx); err != nil {
			log.Warn("mesh proxy shutdown", "err", err)
		}
		fc.Close()
	}, nil
}

package main

import (
	"context"
	"fmt"
	"log/slog"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/robonet-mesh/robonet/gateway"
	"github.com/robonet-mesh/robonet/node"
	"github.com/robonet-mesh/robonet/wire"
)

// gatewayFlags are up's gateway settings.
type gatewayFlags struct {
	Addr        string // host:port or "off"
	Explicit    bool   // --gateway was given
	Cert, Key   string
	MetricsOpen bool
	// ProxyAddr is --gateway-proxy (host:port, off, "" for the gateway's
	// port + 2); ProxyExplicit says it was given.
	ProxyAddr     string
	ProxyExplicit bool
	// Proxy mounts the mesh proxy with these limits (nil: no /proxy/).
	Proxy *gateway.ProxyOptions
	// OnMetrics, when set, is given the gateway's metrics (media adds its
	// gauges to them once it is mounted).
	OnMetrics func(*gateway.Metrics)
}

// addGatewayFlags registers up's gateway flags on f.
func addGatewayFlags(f *pflag.FlagSet) {
	f.String("gateway", gateway.DefaultAddr, "the HTTP gateway (dashboard, REST, WebSocket) on host:port, or off; TLS on any address but loopback. The default address, when taken (two nodes on one host), is skipped with a log line")
	f.String("gateway-cert", "", "PEM certificate for the gateway's TLS (default: one derived from the node key)")
	f.String("gateway-key", "", "PEM private key for --gateway-cert")
	f.Bool("metrics-open", false, "serve /metrics without a bearer token")
	f.String("gateway-proxy", "", "where browsers open apps through /proxy/ (the proxy origin, kept apart from the dashboard's): host:port or off (default: the gateway's host, its port + 2: 127.0.0.1:8342)")
}

// gatewayFlagsOf reads the flags addGatewayFlags registered.
func gatewayFlagsOf(cmd *cobra.Command) (gatewayFlags, error) {
	f := cmd.Flags()
	var gf gatewayFlags
	var err error
	if gf.Addr, err = f.GetString("gateway"); err != nil {
		return gf, err
	}
	gf.Explicit = f.Changed("gateway")
	if gf.Cert, err = f.GetString("gateway-cert"); err != nil {
		return gf, err
	}
	if gf.Key, err = f.GetString("gateway-key"); err != nil {
		return gf, err
	}
	if gf.MetricsOpen, err = f.GetBool("metrics-open"); err != nil {
		return gf, err
	}
	if gf.ProxyAddr, err = f.GetString("gateway-proxy"); err != nil {
		return gf, err
	}
	gf.ProxyExplicit = f.Changed("gateway-proxy")
	return gf, nil
}

// startGateway composes the gateway onto the running node n. With --gateway
// off, or when the default address is taken, g is nil and stop does nothing.
func startGateway(ctx context.Context, n *node.Node, gf gatewayFlags, log *slog.Logger) (g *gateway.Gateway, stop func(context.Context), err error) {
	noop := func(context.Context) {}
	if gf.Addr == "off" {
		return nil, noop, nil
	}
	g, err = gateway.New(gateway.Options{Node: n, Addr: gf.Addr, Explicit: gf.Explicit, CertFile: gf.Cert, KeyFile: gf.Key,
		MetricsOpen: gf.MetricsOpen, Logger: log, ProxyAddr: gf.ProxyAddr, ProxyExplicit: gf.ProxyExplicit})
	if err != nil {
		return nil, noop, fmt.Errorf("--gateway: %w", err)
	}
	// /metrics: a bearer token (any role) unless --metrics-open.
	need := wire.RoleObserver
	if gf.MetricsOpen {
		need = ""
	}
	m := gateway.NewMetrics(n)
	if gf.OnMetrics != nil {
		gf.OnMetrics(m)
	}
	if gf.Proxy != nil {
		m.AddProxy(g.MountProxy(*gf.Proxy))
	}
	g.Handle("GET /metrics", m.Handler(), need)
	if err := g.Start(ctx); err != nil {
		return nil, noop, fmt.Errorf("--gateway: %w", err)
	}
	if g.Addr() == "" {
		return nil, noop, nil
	}
	return g, func(ctx context.Context) {
		if err := g.Shutdown(ctx); err != nil {
			log.Warn("gateway shutdown", "err", err)
		}
	}, nil
}

// composeGateway starts the gateway up's flags ask for, prints its banner
// line, and returns a stop that shuts it down before calling then.
func composeGateway(ctx context.Context, cmd *cobra.Command, n *node.Node, log *slog.Logger, pf *proxyFlags, then func(context.Context)) (func(context.Context), *gateway.Gateway, *gateway.Metrics, error) {
	gf, err := gatewayFlagsOf(cmd)
	if err != nil {
		return then, nil, nil, err
	}
	po := pf.httpOptions(log)
	gf.Proxy = &po
	var metrics *gateway.Metrics
	gf.OnMetrics = func(m *gateway.Metrics) { metrics = m }
	g, stop, err := startGateway(ctx, n, gf, log)
	if err != nil {
		return then, nil, nil, err
	}
	w := cmd.OutOrStdout()
	switch {
	case g != nil:
		fmt.Fprintf(w, "  gateway   %s (robonet gateway login for a link)\n", g.URL())
		if u := g.ProxyURL(); u != "" {
			fmt.Fprintf(w, "  proxy     %s/proxy/<chevron>/<port>/ (browsers open proxied apps here; targets need --proxy-allow)\n", u)
		}
	case gf.Addr == "off":
		fmt.Fprintln(w, "  gateway   off")
	default:
		fmt.Fprintf(w, "  gateway   none: %s is taken (another node on this host?); --gateway ADDR picks another\n", gf.Addr)
	}
	return func(ctx context.Context) {
		stop(ctx)
		then(ctx)
	}, g, metrics, nil
}

package gateway

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"sync"
	"syscall"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/robonet-mesh/robonet/command"
	"github.com/robonet-mesh/robonet/mesh"
	"github.com/robonet-mesh/robonet/node"
	"github.com/robonet-mesh/robonet/trust"
)

// DefaultAddr is where the gateway listens unless told otherwise.
const DefaultAddr = "127.0.0.1:8340"

// Errors Start and New return.
var (
	ErrOptions = errors.New("gateway options")
	ErrListen  = errors.New("gateway listen")
)

// Options configure a gateway. The zero value but Node is a loopback
// gateway on DefaultAddr.
type Options struct {
	Node *node.Node // the running node the gateway serves; required
	// Addr is host:port to listen on; "" is DefaultAddr. Any host but a
	// loopback one gets TLS.
	Addr string
	// Explicit says Addr was asked for: when it is taken Start fails.
	// Otherwise (the default address, two nodes on one host) Start logs it
	// and the node runs without a gateway.
	Explicit bool
	// CertFile and KeyFile are a PEM certificate and key for TLS; both or
	// neither. Neither: the node's key-derived certificate.
	CertFile, KeyFile string
	// MetricsOpen is kept for the /metrics handler mounted with Handle: it
	// reads it with MetricsOpen().
	MetricsOpen bool
	Logger      *slog.Logger
	// SessionIdle ends a browser session unused this long; default 12 h.
	SessionIdle time.Duration
	// Now is the clock; default time.Now.
	Now func() time.Time
	// Getenv reads the LLM planner's settings for /api/ask (see
	// intents.LLMConfigFromEnv); default os.Getenv.
	Getenv func(string) string
	// ProxyAddr is where the proxy origin listens (proxyorigin.go) once a
	// proxy is mounted: host:port, "off", or "" for the gateway's host
	// with its port + 2. ProxyExplicit says it was asked for: taken, Start
	// fails; otherwise browsers just cannot open proxied apps.
	ProxyAddr     string
	ProxyExplicit bool
}

// Gateway is a node's HTTP server. Its lifecycle is New, Start, Shutdown.
type Gateway struct {
	opts Options
	log  *slog.Logger
	now  func() time.Time
	mux  *http.ServeMux
	cat  *command.Catalogue
	auth *authState
	live *hub
	// proxy is the mesh proxy MountProxy mounted (nil: none).
	proxy *Proxy

	mu      sync.Mutex // guards everything below
	started bool
	stopped bool
	srv     *http.Server
	ln      net.Listener
	tls     bool
	// loopback: the gateway listens on a loopback address (hostChecked).
	loopback bool
	// ice is the ICE-TCP side of the listener (icetcp.go; nil: none).
	ice *demuxSide
	// closeMedia ends what MountMedia started (nil: not mounted).
	closeMedia func()
	// pln and psrv are the proxy origin's listener and server (nil: none).
	pln    net.Listener
	psrv   *http.Server
	nc     *nats.Conn
	login  *nats.Subscription
	cancel context.CancelFunc
	wg     sync.WaitGroup
}

// New validates opts and builds the gateway's routes; it starts nothing.
func New(opts Options) (*Gateway, error) {
	if opts.Node == nil {
		return nil, fmt.Errorf("%w: no node", ErrOptions)
	}
	if opts.Addr == "" {
		opts.Addr = DefaultAddr
	}
	if _, _, err := splitAddr(opts.Addr); err != nil {
		return nil, fmt.Errorf("%w: address %q: %v", ErrOptions, opts.Addr, err)
	}
	if (opts.CertFile == "") != (opts.KeyFile == "") {
		return nil, fmt.Errorf("%w: certificate %q and key %q: give both or neither", ErrOptions, opts.CertFile, opts.KeyFile)
	}
	if opts.SessionIdle < 0 {
		return nil, fmt.Errorf("%w: session idle %v: want more than 0", ErrOptions, opts.SessionIdle)
	}
	if opts.SessionIdle == 0 {
		opts.SessionIdle = 12 * time.Hour
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if opts.Getenv == nil {
		opts.Getenv = os.Getenv
	}
	// The catalogue checks verbs and arguments before anything is sent and
	// says which plan steps change things; it never runs a verb.
	cat, err := command.New(command.Options{ListenBaseline: []string{}})
	if err != nil {
		return nil, fmt.Errorf("gateway: command catalogue: %w", err)
	}
	g := &Gateway{opts: opts, log: opts.Logger.With("feature", "gateway"), now: opts.Now, mux: http.NewServeMux(), cat: cat}
	g.auth = newAuthState(g)
	g.live = newHub(g)
	g.routes()
	return g, nil
}

// MetricsOpen reports Options.MetricsOpen, for the /metrics handler.
func (g *Gateway) MetricsOpen() bool { return g.opts.MetricsOpen }

// Start listens, opens the gateway's connection to its node and serves. When
// the default address is taken it logs that and returns nil without serving
// (Addr is then ""); an explicit address that is taken is an error.
func (g *Gateway) Start(ctx context.Context) error {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.started {
		return fmt.Errorf("gateway on %s: already started", g.opts.Addr)
	}
	g.started = true
	ln, err := (&net.ListenConfig{}).Listen(ctx, "tcp", g.opts.Addr)
	if err != nil {
		if !g.opts.Explicit && errors.Is(err, syscall.EADDRINUSE) {
			g.log.Warn("gateway address taken: running without a gateway (--gateway ADDR picks another)", "addr", g.opts.Addr)
			return nil
		}
		return fmt.Errorf("%w: %s: %v", ErrListen, g.opts.Addr, err)
	}
	ln = g.demuxICE(ln) // ICE-TCP shares the port (icetcp.go), under TLS
	host, _, _ := splitAddr(g.opts.Addr)
	wrap := func(l net.Listener) net.Listener { return l }
	g.loopback = isLoopback(host)
	if !g.loopback {
		cfg, err := g.tlsConfig(host)
		if err != nil {
			ln.Close()
			return err
		}
		wrap = func(l net.Listener) net.Listener { return tls.NewListener(l, cfg) }
		ln, g.tls = wrap(ln), true
	}
	pln, err := g.listenProxyOrigin(ctx, ln.Addr(), wrap)
	if err != nil {
		ln.Close()
		return err
	}
	closeAll := func() {
		ln.Close()
		if pln != nil {
			pln.Close()
		}
	}
	nc, err := g.opts.Node.FeatureConn("gateway")
	if err != nil {
		closeAll()
		return fmt.Errorf("gateway: connection to the node: %w", err)
	}
	sub, err := nc.Subscribe(loginSubject(g.opts.Node.Chevron()), g.serveLogin)
	if err != nil {
		closeAll()
		nc.Close()
		return fmt.Errorf("gateway: login service: %w", err)
	}
	_ = sub.SetPendingLimits(256, 1<<20)
	if err := nc.Flush(); err != nil {
		closeAll()
		nc.Close()
		return fmt.Errorf("gateway: login service: %w", err)
	}
	runCtx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	g.ln, g.nc, g.login, g.cancel = ln, nc, sub, cancel
	g.srv = &http.Server{
		Handler:           g.handler(),
		ReadHeaderTimeout: 10 * time.Second,
		IdleTimeout:       2 * time.Minute,
		MaxHeaderBytes:    64 << 10,
		ErrorLog:          slog.NewLogLogger(g.log.Handler(), slog.LevelDebug),
		BaseContext:       func(net.Listener) context.Context { return runCtx },
	}
	g.wg.Add(2)
	go func() {
		defer g.wg.Done()
		if err := g.srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			g.log.Error("gateway stopped serving", "addr", ln.Addr().String(), "err", err)
		}
	}()
	if pln != nil {
		g.pln = pln
		g.psrv = &http.Server{
			Handler:           g.proxyOriginHandler(),
			ReadHeaderTimeout: 10 * time.Second,
			IdleTimeout:       2 * time.Minute,
			MaxHeaderBytes:    64 << 10,
			ErrorLog:          slog.NewLogLogger(g.log.Handler(), slog.LevelDebug),
			BaseContext:       func(net.Listener) context.Context { return runCtx },
		}
		g.wg.Add(1)
		go func() {
			defer g.wg.Done()
			if err := g.psrv.Serve(pln); err != nil && !errors.Is(err, http.ErrServerClosed) {
				g.log.Error("gateway proxy origin stopped serving", "addr", pln.Addr().String(), "err", err)
			}
		}()
	}
	go func() {
		defer g.wg.Done()
		g.auth.sweep(runCtx)
	}()
	g.log.Info("gateway listening", "url", g.urlLocked())
	return nil
}

// Shutdown stops serving, closes live sockets and the node connection, and
// waits for every goroutine the gateway started. It is idempotent.
func (g *Gateway) Shutdown(ctx context.Context) error {
	g.mu.Lock()
	if g.stopped || g.srv == nil {
		g.stopped = true
		g.mu.Unlock()
		return nil
	}
	g.stopped = true
	srv, psrv, sub, nc, cancel, closeMedia := g.srv, g.psrv, g.login, g.nc, g.cancel, g.closeMedia
	g.mu.Unlock()

	// Requests in flight (a streamed run may take minutes) end now: their
	// context is cancelled before the server waits for them.
	cancel()
	g.live.close()
	err := srv.Shutdown(ctx)
	if psrv != nil {
		if perr := psrv.Shutdown(ctx); err == nil {
			err = perr
		}
	}
	if closeMedia != nil {
		closeMedia() // relay sessions and relays, before their connection goes
	}
	_ = sub.Unsubscribe()
	nc.Close()
	done := make(chan struct{})
	go func() { g.wg.Wait(); g.live.wait(); close(done) }()
	select {
	case <-done:
	case <-ctx.Done():
		return fmt.Errorf("gateway shutdown: %w", ctx.Err())
	}
	if err != nil && !errors.Is(err, http.ErrServerClosed) {
		return fmt.Errorf("gateway shutdown: %w", err)
	}
	return nil
}

// Addr is the address the gateway listens on, "" when it does not serve.
func (g *Gateway) Addr() string {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.ln == nil {
		return ""
	}
	return g.ln.Addr().String()
}

// URL is the gateway's base URL (http:// or https://, no trailing slash),
// "" when it does not serve. On an unspecified address (0.0.0.0, ::) it
// names this host by its name.
func (g *Gateway) URL() string {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.urlLocked()
}

func (g *Gateway) urlLocked() string {
	if g.ln == nil {
		return ""
	}
	return g.baseURL(g.ln.Addr().String())
}

// baseURL is the URL of a listener of the gateway on addr. g.mu is held.
func (g *Gateway) baseURL(addr string) string {
	scheme := "http"
	if g.tls {
		scheme = "https"
	}
	// Listening on every address: a link must name one a browser can
	// open, and the one the certificate names (the host name).
	if host, port, err := net.SplitHostPort(addr); err == nil {
		if ip := net.ParseIP(host); ip != nil && ip.IsUnspecified() {
			host = "127.0.0.1"
			if hn, err := os.Hostname(); err == nil && hn != "" {
				host = hn
			}
			addr = net.JoinHostPort(host, port)
		}
	}
	return scheme + "://" + addr
}

// TLS reports whether the gateway serves HTTPS.
func (g *Gateway) TLS() bool {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.tls
}

// conn is the gateway's connection to its node (nil before Start).
func (g *Gateway) conn() *nats.Conn {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.nc
}

// tlsConfig is the HTTPS configuration for a gateway on host: the files
// given, or a certificate derived from the node's key (as its client port's),
// naming host.
func (g *Gateway) tlsConfig(host string) (*tls.Config, error) {
	var cert tls.Certificate
	var err error
	if g.opts.CertFile != "" {
		cert, err = tls.LoadX509KeyPair(g.opts.CertFile, g.opts.KeyFile)
		if err != nil {
			return nil, fmt.Errorf("%w: certificate %s and key %s: %v", ErrOptions, g.opts.CertFile, g.opts.KeyFile, err)
		}
	} else {
		seed := filepath.Join(g.opts.Node.DataDir(), node.NodeSeedFile)
		kp, err := mesh.ReadSeed(seed)
		if err != nil {
			return nil, fmt.Errorf("gateway TLS: the node key: %w", err)
		}
		names := []string{"localhost", "127.0.0.1"}
		if ip := net.ParseIP(host); host != "" && (ip == nil || !ip.IsUnspecified()) {
			names = append(names, host)
		}
		if hn, err := os.Hostname(); err == nil && hn != "" {
			names = append(names, hn)
		}
		if cert, err = trust.ClientCertificate(kp, names); err != nil {
			return nil, fmt.Errorf("gateway TLS certificate for %v: %w", names, err)
		}
	}
	return &tls.Config{MinVersion: tls.VersionTLS12, Certificates: []tls.Certificate{cert}}, nil
}

// splitAddr checks host:port (the host may be empty: every address).
func splitAddr(addr string) (host, port string, err error) {
	host, port, err = net.SplitHostPort(addr)
	if err != nil {
		return "", "", err
	}
	if port == "" {
		return "", "", errors.New("no port")
	}
	return host, port, nil
}

// isLoopback reports whether host only ever means this machine.
func isLoopback(host string) bool {
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

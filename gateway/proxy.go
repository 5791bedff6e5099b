package gateway

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/robonet-mesh/robonet/gateway/tunnel"
	"github.com/robonet-mesh/robonet/mesh"
	"github.com/robonet-mesh/robonet/subjects"
	"github.com/robonet-mesh/robonet/wire"
)

// ProxyOptions configure the mesh proxy, /proxy/<chevron>/<port>/….
type ProxyOptions struct {
	// Client returns the request's mesh client (it signs as the
	// principal's delegated session key, so the target judges the user's
	// role) and the user's public key, passed on as X-Robonet-User. An
	// error answers 401.
	Client func(r *http.Request) (c *mesh.Client, user string, err error)
	// Prefix is where the handler is mounted; "" means "/proxy/".
	Prefix string
	// MaxBodyBytes bounds a request body and a response body each; 0: no limit.
	MaxBodyBytes int64
	// Timeout bounds a whole request, upgraded connections (WebSocket)
	// and streams (SSE) included; 0: no limit.
	Timeout time.Duration
	// OpenTimeout bounds opening the tunnel (504 after it); 0: 10 s.
	OpenTimeout time.Duration
	// Dialer sets the tunnels' window and keepalive, and TargetKey (the
	// gateway's registry view) so that only the target node can answer.
	Dialer tunnel.Dialer
	// SameOrigin serves proxied pages as the gateway's own origin. By
	// default a response served on the dashboard's origin carries a CSP
	// sandbox without allow-same-origin: a page there would otherwise
	// call /api/ with the user's session. Browsers get proxied apps on
	// the proxy origin (proxyorigin.go), where no sandbox is needed and
	// apps keep their storage and cookies; the sandbox guards what a
	// program with a bearer token fetches on the dashboard's port.
	SameOrigin bool
	Logger     *slog.Logger // nil: discard
}

// Proxy is the mesh proxy handler: each request goes through a tunnel to
// 127.0.0.1:<port> on the node with <chevron>, which opens no port.
type Proxy struct {
	opts     ProxyOptions
	log      *slog.Logger
	rp       *httputil.ReverseProxy
	up, down atomic.Uint64
}

// proxyTarget is what a request's context carries to the transport's dial.
type proxyTarget struct {
	client  *mesh.Client
	user    string
	chevron subjects.Chevron
	port    int
	prefix  string // /proxy/<chevron>/<port>
}

type proxyTargetKey struct{}

// NewProxy makes the handler.
func NewProxy(opts ProxyOptions) *Proxy {
	if opts.Prefix == "" {
		opts.Prefix = "/proxy/"
	}
	if !strings.HasSuffix(opts.Prefix, "/") {
		opts.Prefix += "/"
	}
	if opts.OpenTimeout <= 0 {
		opts.OpenTimeout = 10 * time.Second
	}
	log := opts.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	p := &Proxy{opts: opts, log: log}
	p.rp = &httputil.ReverseProxy{
		Rewrite: p.rewrite,
		Transport: &http.Transport{
			Proxy:       nil, // never an environment proxy: the tunnel is the way
			DialContext: p.dial,
			// One tunnel per request: a pooled tunnel was authorized for
			// one user and must never carry another's request.
			DisableKeepAlives: true,
			ReadBufferSize:    tunnel.MaxChunk,
			WriteBufferSize:   tunnel.MaxChunk,
		},
		FlushInterval:  -1, // server-sent events arrive as sent
		ModifyResponse: p.modifyResponse,
		ErrorHandler:   p.errorHandler,
		ErrorLog:       slog.NewLogLogger(log.Handler(), slog.LevelDebug),
	}
	return p
}

// Bytes is how many bytes went through the tunnels: up to the targets
// (requests) and down from them (responses), HTTP headers included.
func (p *Proxy) Bytes() (up, down uint64) { return p.up.Load(), p.down.Load() }

// ServeHTTP proxies /proxy/<chevron>/<port>/<rest> to /<rest> on the target.
func (p *Proxy) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	rest, ok := strings.CutPrefix(r.URL.Path, p.opts.Prefix)
	if !ok {
		proxyError(w, http.StatusNotFound, wire.CodeNotFound, fmt.Sprintf("%q is not under %s", clipText(r.URL.Path, 128), p.opts.Prefix))
		return
	}
	chevText, rest, _ := strings.Cut(rest, "/")
	portText, rest, slash := strings.Cut(rest, "/")
	chev, err := subjects.Parse(chevText)
	if err != nil {
		proxyError(w, http.StatusBadRequest, wire.CodeBadRequest, fmt.Sprintf("proxy path: chevron: %v", err))
		return
	}
	port, err := tunnel.ParsePort(portText)
	if err != nil {
		proxyError(w, http.StatusBadRequest, wire.CodeBadRequest, fmt.Sprintf("proxy path: %v", err))
		return
	}
	prefix := p.opts.Prefix + chev.String() + "/" + strconv.Itoa(port)
	if !slash {
		// The app's relative links need the trailing slash.
		u := *r.URL
		u.Path, u.RawPath = prefix+"/", ""
		http.Redirect(w, r, u.RequestURI(), http.StatusPermanentRedirect)
		return
	}
	client, user, err := p.opts.Client(r)
	if err != nil || client == nil {
		proxyError(w, http.StatusUnauthorized, "unauthorized", fmt.Sprintf("proxy to %s:%d: %v", chev, port, err))
		return
	}
	ctx := context.WithValue(r.Context(), proxyTargetKey{}, &proxyTarget{client: client, user: user, chevron: chev, port: port, prefix: prefix})
	if p.opts.Timeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, p.opts.Timeout)
		defer cancel()
	}
	r = r.WithContext(ctx)
	if p.opts.MaxBodyBytes > 0 && r.Body != nil {
		r.Body = http.MaxBytesReader(w, r.Body, p.opts.MaxBodyBytes)
	}
	p.rp.ServeHTTP(w, r)
}

func targetOf(ctx context.Context) *proxyTarget {
	t, _ := ctx.Value(proxyTargetKey{}).(*proxyTarget)
	return t
}

// rewrite makes the request the target sees: its path without the prefix,
// X-Forwarded-*, the user, and none of the gateway's own credentials.
func (p *Proxy) rewrite(pr *httputil.ProxyRequest) {
	t := targetOf(pr.In.Context())
	out := pr.Out
	out.URL.Scheme = "http"
	out.URL.Host = net.JoinHostPort("127.0.0.1", strconv.Itoa(t.port))
	out.Host = ""
	out.URL.Path = strings.TrimPrefix(pr.In.URL.Path, t.prefix)
	out.URL.RawPath = ""
	if raw := pr.In.URL.RawPath; raw != "" {
		out.URL.RawPath = strings.TrimPrefix(raw, t.prefix)
	}
	pr.SetXForwarded()
	h := out.Header
	h.Set("X-Forwarded-Prefix", t.prefix)
	h.Set("X-Robonet-User", t.user)
	if strings.HasPrefix(h.Get("Authorization"), "Bearer rngw_") {
		h.Del("Authorization")
	}
	stripSessionCookie(h)
}

// stripSessionCookie removes the gateway's cookies (rn_session, rn_proxy): the app
// behind the proxy must not be able to act as the user on the gateway.
func stripSessionCookie(h http.Header) {
	cookies := h.Values("Cookie")
	if len(cookies) == 0 {
		return
	}
	h.Del("Cookie")
	for _, line := range cookies {
		var keep []string
		for _, c := range strings.Split(line, ";") {
			name, _, _ := strings.Cut(strings.TrimSpace(c), "=")
			if !isGatewayCookie(name) && strings.TrimSpace(c) != "" {
				keep = append(keep, strings.TrimSpace(c))
			}
		}
		if len(keep) > 0 {
			h.Add("Cookie", strings.Join(keep, "; "))
		}
	}
}

// dial opens the request's tunnel.
func (p *Proxy) dial(ctx context.Context, _, _ string) (net.Conn, error) {
	t := targetOf(ctx)
	if t == nil {
		return nil, errors.New("proxy: a request without a target")
	}
	octx, cancel := context.WithTimeout(ctx, p.opts.OpenTimeout)
	defer cancel()
	c, err := p.opts.Dialer.Dial(octx, t.client, t.chevron, t.port)
	if err != nil {
		return nil, err
	}
	return &countingConn{Conn: c, up: &p.up, down: &p.down}, nil
}

// countingConn counts a tunnel's bytes each way.
type countingConn struct {
	*tunnel.Conn
	up, down *atomic.Uint64
}

func (c *countingConn) Read(b []byte) (int, error) {
	n, err := c.Conn.Read(b)
	c.down.Add(uint64(n))
	return n, err
}

func (c *countingConn) Write(b []byte) (int, error) {
	n, err := c.Conn.Write(b)
	c.up.Add(uint64(n))
	return n, err
}

// modifyResponse keeps the app's redirects and cookies under the prefix,
// and bounds the response body.
func (p *Proxy) modifyResponse(resp *http.Response) error {
	t := targetOf(resp.Request.Context())
	if loc := resp.Header.Get("Location"); loc != "" {
		resp.Header.Set("Location", rewriteLocation(loc, t.prefix, t.port))
	}
	if cookies := resp.Header.Values("Set-Cookie"); len(cookies) > 0 {
		resp.Header.Del("Set-Cookie")
		for _, c := range cookies {
			// The app may not plant a cookie of the gateway's.
			if name, _, _ := strings.Cut(c, "="); isGatewayCookie(strings.TrimSpace(name)) {
				continue
			}
			resp.Header.Add("Set-Cookie", rewriteCookiePath(c, t.prefix))
		}
	}
	if !p.opts.SameOrigin && !isolated(resp.Request.Context()) {
		resp.Header.Add("Content-Security-Policy", proxySandbox)
	}
	if p.opts.MaxBodyBytes > 0 && resp.StatusCode != http.StatusSwitchingProtocols {
		resp.Body = &limitedBody{ReadCloser: resp.Body, left: p.opts.MaxBodyBytes, target: t}
	}
	return nil
}

// proxySandbox runs a proxied page in an opaque origin: scripts and forms
// work, the gateway's origin (its cookies, its /api/) is out of reach.
const proxySandbox = "sandbox allow-scripts allow-forms allow-popups allow-modals allow-downloads"

// rewriteLocation maps a redirect the app made for itself (an absolute
// path, or its own 127.0.0.1/localhost address) under prefix.
func rewriteLocation(loc, prefix string, port int) string {
	if strings.HasPrefix(loc, "/") && !strings.HasPrefix(loc, "//") {
		return prefix + loc
	}
	u, err := url.Parse(loc)
	if err != nil || u.Host == "" {
		return loc
	}
	self := u.Port() == strconv.Itoa(port) && (u.Hostname() == "127.0.0.1" || u.Hostname() == "localhost") ||
		u.Port() == "" && port == 80 && (u.Hostname() == "127.0.0.1" || u.Hostname() == "localhost")
	if !self {
		return loc
	}
	return prefix + u.RequestURI()
}

// rewriteCookiePath puts a cookie's Path attribute under prefix.
func rewriteCookiePath(c, prefix string) string {
	parts := strings.Split(c, ";")
	for i, a := range parts {
		name, val, ok := strings.Cut(strings.TrimSpace(a), "=")
		if ok && strings.EqualFold(name, "path") && strings.HasPrefix(val, "/") {
			parts[i] = " Path=" + prefix + val
		}
	}
	return strings.Join(parts, ";")
}

// limitedBody fails a response body past its limit (the client sees the
// response cut short).
type limitedBody struct {
	io.ReadCloser
	left   int64
	target *proxyTarget
}

func (b *limitedBody) Read(p []byte) (int, error) {
	if b.left <= 0 {
		return 0, fmt.Errorf("proxy to %s:%d: response body over the limit", b.target.chevron, b.target.port)
	}
	if int64(len(p)) > b.left {
		p = p[:b.left]
	}
	n, err := b.ReadCloser.Read(p)
	b.left -= int64(n)
	return n, err
}

// errorHandler answers a failed proxy request as JSON {error, code}.
func (p *Proxy) errorHandler(w http.ResponseWriter, r *http.Request, err error) {
	t := targetOf(r.Context())
	status, code := http.StatusBadGateway, "bad_gateway"
	var oe *tunnel.OpenError
	var mbe *http.MaxBytesError
	switch {
	case errors.As(err, &oe):
		code = oe.Code
		switch oe.Code {
		case tunnel.CodeNotAllowed, wire.CodeDenied:
			status = http.StatusForbidden
		case tunnel.CodeBusy:
			status = http.StatusServiceUnavailable
		case tunnel.CodeTimeout:
			status = http.StatusGatewayTimeout
		case wire.CodeBadRequest:
			status = http.StatusBadRequest
		}
	case errors.As(err, &mbe):
		status, code = http.StatusRequestEntityTooLarge, "too_large"
		err = fmt.Errorf("request body over the limit of %d bytes", mbe.Limit)
	case errors.Is(err, context.DeadlineExceeded):
		status, code = http.StatusGatewayTimeout, tunnel.CodeTimeout
		err = fmt.Errorf("no answer within the proxy's time limit")
	case errors.Is(err, context.Canceled):
		return // the client went away
	}
	msg := err.Error()
	if t != nil && oe == nil {
		msg = fmt.Sprintf("proxy to %s:%d: %v", t.chevron, t.port, err)
	}
	p.log.Debug("proxy request failed", "path", clipText(r.URL.Path, 128), "status", status, "err", msg)
	proxyError(w, status, code, msg)
}

func proxyError(w http.ResponseWriter, status int, code, msg string) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(struct {
		Error string `json:"error"`
		Code  string `json:"code"`
	}{msg, code})
}

func clipText(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "…"
}

package gateway

import (
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/robonet-mesh/robonet/gateway/tunnel"
	"github.com/robonet-mesh/robonet/mesh"
	"github.com/robonet-mesh/robonet/subjects"
	"github.com/robonet-mesh/robonet/wire"
)

// The proxy origin. A web app reached through /proxy/ runs its own scripts;
// served on the dashboard's origin, they could call /api/ with the user's
// session cookie (same origin: no browser rule stops them) and run commands
// as the user. So a browser session never gets a proxied page on the
// dashboard's origin: GET /proxy/<chevron>/<port>/… there answers a redirect
// to the same path on a second listener, the proxy origin (by default the
// gateway's port + 2: 8342), through a single-use entry ticket that sets a
// cookie of its own (rn_proxy) for the apps this browser entered. Scripts on
// the proxy origin reach the dashboard's API only cross-origin: POSTs are
// refused (CrossOriginProtection), answers unreadable (no CORS), sockets
// refused (Origin checked). Neither cookie is ever passed to an app.
// Programs with a bearer token are served on the dashboard's port directly:
// a bearer token is never sent by a browser on its own.

// ProxyCookie is the proxy origin's cookie.
const ProxyCookie = "rn_proxy"

// Proxy-origin bounds.
const (
	proxyTicketTTL = 60 * time.Second
	maxProxyVisits = 4096
	maxVisitApps   = 256
	enterPath      = "/_rn/enter"
)

// proxyTicket lets one browser session enter one app on the proxy origin.
type proxyTicket struct {
	session [32]byte // the dashboard session's key
	app     string   // "<chevron>/<port>"
	expires time.Time
}

// proxyVisit is a browser's proxy-origin cookie: the dashboard session it
// acts for and the apps it entered.
type proxyVisit struct {
	session [32]byte
	apps    map[string]bool
}

// MountProxy serves the mesh proxy under /proxy/: on this port for bearer
// tokens (and browsers by redirect), and on the proxy origin for browser
// sessions; opts.Client is the request's principal's. It returns the
// proxy (for its byte counts). Call it before Start.
func (g *Gateway) MountProxy(opts ProxyOptions) *Proxy {
	opts.Client = proxyClient
	// Only the node registered at the chevron may answer an open: the
	// gateway's node knows every registration, so no query per request.
	opts.Dialer.TargetKey = func(_ context.Context, c subjects.Chevron) (string, error) {
		if k, ok := g.opts.Node.KeyOf(c); ok {
			return k, nil
		}
		return "", &tunnel.OpenError{Chevron: c.String(), Code: tunnel.CodeNoTarget, Msg: fmt.Sprintf("no node with chevron %s in the registry", c)}
	}
	g.proxy = NewProxy(opts)
	g.mux.Handle("/proxy/", g.authed(wire.RoleOperator, g.serveProxyMain))
	return g.proxy
}

// ProxyURL is the proxy origin's base URL, "" when it does not serve.
func (g *Gateway) ProxyURL() string {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.pln == nil {
		return ""
	}
	return g.baseURL(g.pln.Addr().String())
}

// isGatewayCookie reports whether name is a cookie of the gateway's, which
// an app behind the proxy never sees nor sets.
func isGatewayCookie(name string) bool { return name == SessionCookie || name == ProxyCookie }

type isolatedKey struct{}

// isolated reports whether the request came in on the proxy origin, where
// the app's page cannot reach the dashboard's API.
func isolated(ctx context.Context) bool { v, _ := ctx.Value(isolatedKey{}).(bool); return v }

// proxyClient is the Proxy's way to the request's mesh client: the
// principal the gateway put in its context.
func proxyClient(r *http.Request) (*mesh.Client, string, error) {
	p, ok := PrincipalFrom(r.Context())
	if !ok || p.Client == nil {
		return nil, "", errors.New("not logged in")
	}
	return p.Client, p.User, nil
}

// proxyAddr is where the proxy origin listens, from the gateway's actual
// address: Options.ProxyAddr, or the gateway's host with its port + 2 (an
// ephemeral port when the gateway's was).
func (g *Gateway) proxyAddr(main net.Addr) string {
	if g.opts.ProxyAddr != "" {
		return g.opts.ProxyAddr
	}
	host, port, _ := splitAddr(g.opts.Addr)
	if n, err := strconv.Atoi(port); err == nil && n > 0 && n+2 <= 65535 {
		return net.JoinHostPort(host, strconv.Itoa(n+2))
	}
	if ta, ok := main.(*net.TCPAddr); ok {
		return net.JoinHostPort(ta.IP.String(), "0")
	}
	return net.JoinHostPort(host, "0")
}

// listenProxyOrigin opens the proxy origin's listener (wrapped by wrap,
// the main listener's TLS); nil when there is no proxy, it is off, or the
// default address is taken. g.mu is held.
func (g *Gateway) listenProxyOrigin(ctx context.Context, main net.Addr, wrap func(net.Listener) net.Listener) (net.Listener, error) {
	if g.proxy == nil || g.opts.ProxyAddr == "off" {
		return nil, nil
	}
	addr := g.proxyAddr(main)
	ln, err := (&net.ListenConfig{}).Listen(ctx, "tcp", addr)
	if err != nil {
		if !g.opts.ProxyExplicit && errors.Is(err, syscall.EADDRINUSE) {
			g.log.Warn("proxy origin address taken: browsers cannot open proxied apps (bearer tokens still can); --gateway-proxy ADDR picks another", "addr", addr)
			return nil, nil
		}
		return nil, fmt.Errorf("%w: proxy origin %s: %v", ErrListen, addr, err)
	}
	return wrap(ln), nil
}

// serveProxyMain serves /proxy/ on the dashboard's port: a bearer token is
// proxied here; a browser session is sent to the proxy origin.
func (g *Gateway) serveProxyMain(w http.ResponseWriter, r *http.Request, p *Principal) {
	if p.Via != "session" {
		g.proxy.ServeHTTP(w, r.WithContext(withPrincipal(r.Context(), p)))
		return
	}
	app, ok := proxyApp(r.URL.Path)
	if !ok {
		// Not a well-formed target: the proxy names what is wrong.
		g.proxy.ServeHTTP(w, r.WithContext(withPrincipal(r.Context(), p)))
		return
	}
	base := g.ProxyURL()
	switch {
	case base == "":
		writeError(w, errorf(http.StatusServiceUnavailable, CodeUnavailable,
			"proxied apps are not served to browsers here: the proxy origin is off or its address was taken (robonet up --gateway-proxy ADDR); programs use a bearer token"))
		return
	case r.Method != http.MethodGet && r.Method != http.MethodHead:
		writeError(w, errorf(http.StatusForbidden, CodeDenied,
			"%s %s: a browser reaches proxied apps on %s, never on the dashboard's origin", r.Method, r.URL.Path, base))
		return
	}
	raw, err := base64.RawURLEncoding.DecodeString(p.session)
	if err != nil || len(raw) != 32 {
		writeError(w, errorf(http.StatusUnauthorized, CodeUnauthenticated, "the session ended: run robonet gateway login again"))
		return
	}
	t, err := g.auth.newProxyTicket([32]byte(raw), app)
	if err != nil {
		writeError(w, errorf(http.StatusServiceUnavailable, CodeUnavailable, "%v", err))
		return
	}
	u := base + enterPath + "?" + url.Values{"t": {t}, "to": {r.URL.RequestURI()}}.Encode()
	w.Header().Set("Cache-Control", "no-store")
	http.Redirect(w, r, u, http.StatusSeeOther)
}

// underApp reports whether uri (a path and query) is app's root or under it.
func underApp(uri, app string) bool {
	root := "/proxy/" + app
	rest, ok := strings.CutPrefix(uri, root)
	return ok && (rest == "" || rest[0] == '/' || rest[0] == '?')
}

// proxyApp is "<chevron>/<port>" of a /proxy/<chevron>/<port>/… path, in
// canonical form.
func proxyApp(path string) (string, bool) {
	rest, ok := strings.CutPrefix(path, "/proxy/")
	if !ok {
		return "", false
	}
	chevText, rest, _ := strings.Cut(rest, "/")
	portText, _, _ := strings.Cut(rest, "/")
	chev, err := subjects.Parse(chevText)
	if err != nil {
		return "", false
	}
	port, err := tunnel.ParsePort(portText)
	if err != nil {
		return "", false
	}
	return chev.String() + "/" + strconv.Itoa(port), true
}

// proxyOriginHandler serves the proxy origin: the entry, and proxied apps
// for browsers that entered them.
func (g *Gateway) proxyOriginHandler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET "+enterPath, g.serveProxyEnter)
	mux.HandleFunc("/proxy/", g.serveProxyVisit)
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		loginPage(w, http.StatusNotFound, "This is the gateway's proxy origin: it serves apps under /proxy/<chevron>/<port>/, opened from the dashboard.")
	})
	return g.hostChecked(mux)
}

// serveProxyEnter burns an entry ticket, adds its app to this browser's
// visit (a new rn_proxy cookie when it has none for the same session) and
// sends the browser on to the app.
func (g *Gateway) serveProxyEnter(w http.ResponseWriter, r *http.Request) {
	addr := clientAddr(r)
	if g.auth.limited(addr, false) {
		loginPage(w, http.StatusTooManyRequests, "Too many failed attempts from this address: wait a minute.")
		return
	}
	q := r.URL.Query()
	tk, ok := g.auth.burnProxyTicket(q.Get("t"))
	to := q.Get("to")
	if !ok || !underApp(to, tk.app) {
		g.auth.limited(addr, true)
		loginPage(w, http.StatusUnauthorized, "This link to a proxied app is not valid (any more): open the app again from the dashboard.")
		return
	}
	var id string
	if ck, err := r.Cookie(ProxyCookie); err == nil {
		id = ck.Value
	}
	id, err := g.auth.enterVisit(id, tk)
	if err != nil {
		loginPage(w, http.StatusServiceUnavailable, err.Error())
		return
	}
	http.SetCookie(w, &http.Cookie{Name: ProxyCookie, Value: id, Path: "/", HttpOnly: true,
		SameSite: http.SameSiteStrictMode, Secure: g.TLS()})
	w.Header().Set("Cache-Control", "no-store")
	w.Header().Set("Referrer-Policy", "no-referrer")
	http.Redirect(w, r, to, http.StatusSeeOther)
}

// serveProxyVisit proxies a request of a browser that entered the app,
// for its dashboard session's principal (its role as of now). Anything
// else goes back to the dashboard's port, which sends a logged-in browser
// here again with a fresh ticket.
func (g *Gateway) serveProxyVisit(w http.ResponseWriter, r *http.Request) {
	app, ok := proxyApp(r.URL.Path)
	if !ok {
		g.proxy.ServeHTTP(w, r) // names what is wrong with the path
		return
	}
	var p *Principal
	if ck, err := r.Cookie(ProxyCookie); err == nil {
		p, ok = g.auth.visit(ck.Value, app)
	}
	if p == nil || !ok {
		if r.Method != http.MethodGet && r.Method != http.MethodHead {
			writeError(w, errorf(http.StatusUnauthorized, CodeUnauthenticated, "open %s from the dashboard first", app))
			return
		}
		http.Redirect(w, r, g.URL()+r.URL.RequestURI(), http.StatusSeeOther)
		return
	}
	if roleRank(p.Role) < roleRank(wire.RoleOperator) {
		writeError(w, errorf(http.StatusForbidden, CodeDenied, "the mesh proxy needs role operator; %s has %s", p.User, p.Role))
		return
	}
	ctx := context.WithValue(withPrincipal(r.Context(), p), isolatedKey{}, true)
	g.proxy.ServeHTTP(w, r.WithContext(ctx))
}

// newProxyTicket stores a single-use entry of session into app.
func (a *authState) newProxyTicket(session [32]byte, app string) (string, error) {
	return storeSecret(a, a.proxyTickets, proxyTicket{session: session, app: app, expires: a.g.now().Add(proxyTicketTTL)}, "proxy entries")
}

// burnProxyTicket takes entry ticket t out (used, whatever happens next).
func (a *authState) burnProxyTicket(t string) (proxyTicket, bool) {
	if t == "" || len(t) > 128 {
		return proxyTicket{}, false
	}
	now := a.g.now()
	a.mu.Lock()
	defer a.mu.Unlock()
	k := secretKey(t)
	tk, ok := a.proxyTickets[k]
	delete(a.proxyTickets, k)
	if !ok || !now.Before(tk.expires) {
		return proxyTicket{}, false
	}
	return tk, true
}

// enterVisit adds tk's app to visit id when that visit acts for the same
// session, else starts a new visit; it returns the visit's cookie value.
func (a *authState) enterVisit(id string, tk proxyTicket) (string, error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if id != "" && len(id) <= 128 {
		if v, ok := a.visits[secretKey(id)]; ok && v.session == tk.session && len(v.apps) < maxVisitApps {
			v.apps[tk.app] = true
			return id, nil
		}
	}
	if len(a.visits) >= maxProxyVisits {
		return "", fmt.Errorf("%d browsers are visiting proxied apps: try again later", len(a.visits))
	}
	id, err := randomSecret()
	if err != nil {
		return "", err
	}
	a.visits[secretKey(id)] = &proxyVisit{session: tk.session, apps: map[string]bool{tk.app: true}}
	return id, nil
}

// visit is the principal of proxy cookie id for app: its dashboard
// session's, while that session lives and the browser entered app.
func (a *authState) visit(id, app string) (*Principal, bool) {
	if len(id) > 128 {
		return nil, false
	}
	k := secretKey(id)
	a.mu.Lock()
	v, ok := a.visits[k]
	entered := ok && v.apps[app]
	a.mu.Unlock()
	if !ok {
		return nil, false
	}
	p, live := a.sessionByKey(v.session)
	if !live {
		a.mu.Lock()
		delete(a.visits, k)
		a.mu.Unlock()
		return nil, false
	}
	return p, entered
}

// hostChecked refuses a request to a loopback listener whose Host is not a
// loopback name: a web page whose name an attacker points at 127.0.0.1
// (DNS rebinding) must not be served as if it were the gateway.
func (g *Gateway) hostChecked(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if g.loopback {
			host := r.Host
			if hh, _, err := net.SplitHostPort(r.Host); err == nil {
				host = hh
			}
			if !isLoopback(host) && !strings.EqualFold(host, "localhost") {
				writeError(w, errorf(http.StatusMisdirectedRequest, CodeBadRequest,
					"Host %q: this gateway listens on loopback and answers only loopback names (127.0.0.1, localhost, [::1])", clipHost(r.Host)))
				return
			}
		}
		h.ServeHTTP(w, r)
	})
}

func clipHost(s string) string {
	if len(s) > 128 {
		return s[:128] + "…"
	}
	return s
}

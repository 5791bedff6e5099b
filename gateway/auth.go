package gateway

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"fmt"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nkeys"

	"github.com/robonet-mesh/robonet/mesh"
	"github.com/robonet-mesh/robonet/wire"
)

// SessionCookie is the browser session's cookie.
const SessionCookie = "rn_session"

// Bounds on what the gateway keeps for others.
const (
	ticketTTL        = 60 * time.Second
	maxSessions      = 4096
	maxTickets       = 1024
	maxTokenCache    = 1024
	failWindow       = time.Minute
	maxFailsInWindow = 20 // failed auths (and logins) per client address per failWindow
)

// Principal is who an authenticated request acts for.
type Principal struct {
	User    string    // the user's public key
	Role    string    // min(delegated role, the user's role when checked)
	Via     string    // "session" or "token"
	Expires time.Time // when the delegation ends
	// Client signs as the session key the user delegated: nodes judge what
	// it sends by the user's role.
	Client *mesh.Client

	session string // the session's key in authState.sessions ("" for tokens)
}

type principalKey struct{}

func withPrincipal(ctx context.Context, p *Principal) context.Context {
	return context.WithValue(ctx, principalKey{}, p)
}

// PrincipalFrom is the principal of a request served through Handle.
func PrincipalFrom(ctx context.Context) (*Principal, bool) {
	p, ok := ctx.Value(principalKey{}).(*Principal)
	return p, ok
}

// credential is a delegated session key: what a ticket, a session and a
// token all hold.
type credential struct {
	kp   nkeys.KeyPair
	hdr  string // the delegation header value
	d    wire.Delegation
	role string // as granted at login: d.Role
}

type session struct {
	p    *Principal
	cred credential
	idle time.Time // ends unless used before
}

type ticket struct {
	cred    credential
	expires time.Time
}

type cachedToken struct {
	p    *Principal
	cred credential
}

type failCount struct {
	start time.Time
	n     int
}

// authState holds sessions, login tickets, the token cache, pending logins
// and failure counts. Keys of sessions, tickets and tokens are SHA-256 of
// the secret, so lookups leak nothing about a secret through timing.
type authState struct {
	g *Gateway

	mu       sync.Mutex // guards the maps; never held across a network call
	sessions map[[32]byte]*session
	tickets  map[[32]byte]ticket
	tokens   map[[32]byte]cachedToken
	pending  map[string]pendingLogin // by session key pub
	fails    map[string]*failCount   // by client address
	// proxyTickets and visits are the proxy origin's (proxyorigin.go).
	proxyTickets map[[32]byte]proxyTicket
	visits       map[[32]byte]*proxyVisit
}

func newAuthState(g *Gateway) *authState {
	return &authState{g: g, sessions: map[[32]byte]*session{}, tickets: map[[32]byte]ticket{},
		tokens: map[[32]byte]cachedToken{}, pending: map[string]pendingLogin{}, fails: map[string]*failCount{},
		proxyTickets: map[[32]byte]proxyTicket{}, visits: map[[32]byte]*proxyVisit{}}
}

func secretKey(s string) [32]byte { return sha256.Sum256([]byte(s)) }

// randomSecret is 256 random bits, base64url.
func randomSecret() (string, error) {
	var b [32]byte
	if _, err := rand.Read(b[:]); err != nil {
		return "", fmt.Errorf("random secret: %w", err)
	}
	return base64.RawURLEncoding.EncodeToString(b[:]), nil
}

// sweep drops what has expired, every 30 s until ctx ends.
func (a *authState) sweep(ctx context.Context) {
	t := time.NewTicker(30 * time.Second)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			a.expire(a.g.now())
		}
	}
}

func (a *authState) expire(now time.Time) {
	a.mu.Lock()
	defer a.mu.Unlock()
	for k, s := range a.sessions {
		if !now.Before(s.idle) || !now.Before(s.p.Expires) {
			delete(a.sessions, k)
		}
	}
	for k, t := range a.tickets {
		if !now.Before(t.expires) {
			delete(a.tickets, k)
		}
	}
	for k, t := range a.tokens {
		if !now.Before(t.p.Expires) {
			delete(a.tokens, k)
		}
	}
	for k, p := range a.pending {
		if !now.Before(p.deadline) {
			delete(a.pending, k)
		}
	}
	for k, t := range a.proxyTickets {
		if !now.Before(t.expires) {
			delete(a.proxyTickets, k)
		}
	}
	for k, v := range a.visits {
		if _, live := a.sessions[v.session]; !live {
			delete(a.visits, k)
		}
	}
	for k, f := range a.fails {
		if now.Sub(f.start) > failWindow {
			delete(a.fails, k)
		}
	}
}

// limited reports whether addr failed too often lately; count adds one
// failure first.
func (a *authState) limited(addr string, count bool) bool {
	now := a.g.now()
	a.mu.Lock()
	defer a.mu.Unlock()
	f := a.fails[addr]
	if f == nil || now.Sub(f.start) > failWindow {
		if !count {
			return false
		}
		if len(a.fails) >= 16384 {
			clear(a.fails) // a flood of addresses: start counting afresh
		}
		f = &failCount{start: now}
		a.fails[addr] = f
	}
	if count {
		f.n++
	}
	return f.n > maxFailsInWindow
}

// clientAddr is the request's peer address without the port.
func clientAddr(r *http.Request) string {
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		return r.RemoteAddr
	}
	return host
}

// newTicket stores cred behind a single-use login ticket.
func (a *authState) newTicket(cred credential) (string, error) {
	return storeSecret(a, a.tickets, ticket{cred: cred, expires: a.g.now().Add(ticketTTL)}, "login links")
}

// storeSecret stores v in m (one of a's maps, at most maxTickets entries)
// under a fresh random secret, which it returns; what names the entries
// for the error when m is full. a.mu must not be held.
func storeSecret[T any](a *authState, m map[[32]byte]T, v T, what string) (string, error) {
	t, err := randomSecret()
	if err != nil {
		return "", err
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	if len(m) >= maxTickets {
		return "", fmt.Errorf("%d %s are waiting to be used: try again in a minute", len(m), what)
	}
	m[secretKey(t)] = v
	return t, nil
}

// burnTicket takes ticket t out (whatever happens next, it is used).
func (a *authState) burnTicket(t string) (credential, bool) {
	now := a.g.now()
	a.mu.Lock()
	defer a.mu.Unlock()
	k := secretKey(t)
	tk, ok := a.tickets[k]
	delete(a.tickets, k)
	if !ok || !now.Before(tk.expires) {
		return credential{}, false
	}
	return tk.cred, true
}

// principalFor makes the principal of cred, with the user's current role
// as this node knows it now; an error when the user is unknown or the
// delegation has run out.
func (a *authState) principalFor(cred credential, via string) (*Principal, error) {
	now := a.g.now()
	if !now.Before(cred.d.Expires) {
		return nil, fmt.Errorf("the delegation to %s expired at %s", cred.d.Key, cred.d.Expires.Format(time.RFC3339))
	}
	cur, ok := a.g.opts.Node.RoleOf(cred.d.User)
	if !ok {
		return nil, fmt.Errorf("user %s is not known to this node (removed or revoked?)", cred.d.User)
	}
	signer, err := mesh.NewSessionSigner(cred.kp, cred.hdr)
	if err != nil {
		return nil, fmt.Errorf("session signer for %s: %w", cred.d.Key, err)
	}
	nc := a.g.conn()
	if nc == nil {
		return nil, fmt.Errorf("the gateway is not started")
	}
	c := mesh.NewClient(nc).WithNodeKey(a.g.opts.Node.Pubkey()).WithSigner(signer).WithVerify()
	return &Principal{User: cred.d.User, Role: minRole(cred.role, cur), Via: via, Expires: cred.d.Expires, Client: c}, nil
}

// newSession starts a browser session for cred and returns its cookie value.
func (a *authState) newSession(cred credential) (string, *Principal, error) {
	p, err := a.principalFor(cred, "session")
	if err != nil {
		return "", nil, err
	}
	id, err := randomSecret()
	if err != nil {
		return "", nil, err
	}
	now := a.g.now()
	a.mu.Lock()
	defer a.mu.Unlock()
	if len(a.sessions) >= maxSessions {
		return "", nil, fmt.Errorf("%d browser sessions are open: log out of some first", len(a.sessions))
	}
	k := secretKey(id)
	p.session = base64.RawURLEncoding.EncodeToString(k[:])
	a.sessions[k] = &session{p: p, cred: cred, idle: now.Add(a.g.opts.SessionIdle)}
	return id, p, nil
}

// session finds the live session of cookie value id and refreshes its idle
// deadline and role.
func (a *authState) session(id string) (*Principal, bool) {
	return a.sessionByKey(secretKey(id))
}

// sessionByKey is session for the session's key (SHA-256 of its cookie
// value), as a proxy visit holds it.
func (a *authState) sessionByKey(k [32]byte) (*Principal, bool) {
	now := a.g.now()
	a.mu.Lock()
	s, ok := a.sessions[k]
	if ok && (!now.Before(s.idle) || !now.Before(s.p.Expires)) {
		delete(a.sessions, k)
		ok = false
	}
	if ok {
		s.idle = now.Add(a.g.opts.SessionIdle)
	}
	a.mu.Unlock()
	if !ok {
		return nil, false
	}
	cur, known := a.g.opts.Node.RoleOf(s.p.User)
	if !known {
		a.drop(s.p)
		return nil, false
	}
	p := *s.p
	p.Role = minRole(s.cred.role, cur)
	return &p, true
}

// alive reports whether p's session or token is still good (for live
// sockets, which outlast the request that opened them).
func (a *authState) alive(p *Principal) bool {
	if !a.g.now().Before(p.Expires) {
		return false
	}
	if _, ok := a.g.opts.Node.RoleOf(p.User); !ok {
		return false
	}
	if p.session == "" {
		return true
	}
	raw, err := base64.RawURLEncoding.DecodeString(p.session)
	if err != nil || len(raw) != 32 {
		return false
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	_, ok := a.sessions[[32]byte(raw)]
	return ok
}

// drop ends p's session.
func (a *authState) drop(p *Principal) {
	raw, err := base64.RawURLEncoding.DecodeString(p.session)
	if err != nil || len(raw) != 32 {
		return
	}
	a.mu.Lock()
	delete(a.sessions, [32]byte(raw))
	a.mu.Unlock()
}

// token checks bearer token tok and returns its principal.
func (a *authState) token(tok string) (*Principal, error) {
	now := a.g.now()
	k := secretKey(tok)
	a.mu.Lock()
	c, ok := a.tokens[k]
	a.mu.Unlock()
	if !ok {
		cred, err := parseToken(tok, now)
		if err != nil {
			return nil, err
		}
		if cred.d.Node != a.g.opts.Node.Pubkey() {
			return nil, fmt.Errorf("token for node %s, not this one", cred.d.Node)
		}
		p, err := a.principalFor(cred, "token")
		if err != nil {
			return nil, err
		}
		c = cachedToken{p: p, cred: cred}
		a.mu.Lock()
		if len(a.tokens) >= maxTokenCache {
			clear(a.tokens)
		}
		a.tokens[k] = c
		a.mu.Unlock()
	}
	if !now.Before(c.p.Expires) {
		return nil, fmt.Errorf("token expired at %s", c.p.Expires.Format(time.RFC3339))
	}
	cur, known := a.g.opts.Node.RoleOf(c.p.User)
	if !known {
		return nil, fmt.Errorf("user %s is not known to this node (removed or revoked?)", c.p.User)
	}
	p := *c.p
	p.Role = minRole(c.cred.role, cur)
	return &p, nil
}

// authenticate finds r's principal: a bearer token, else the session
// cookie.
func (a *authState) authenticate(r *http.Request) (*Principal, *apiError) {
	if h := r.Header.Get("Authorization"); h != "" {
		scheme, tok, ok := strings.Cut(h, " ")
		if !ok || !strings.EqualFold(scheme, "Bearer") {
			return nil, errorf(http.StatusUnauthorized, CodeUnauthenticated, "Authorization: want Bearer rngw_…")
		}
		p, err := a.token(strings.TrimSpace(tok))
		if err != nil {
			return nil, errorf(http.StatusUnauthorized, CodeUnauthenticated, "bearer token: %v", err)
		}
		return p, nil
	}
	ck, err := r.Cookie(SessionCookie)
	if err != nil || ck.Value == "" {
		return nil, errorf(http.StatusUnauthorized, CodeUnauthenticated, "not logged in: run robonet gateway login and open the link, or send Authorization: Bearer <robonet gateway token create>")
	}
	p, ok := a.session(ck.Value)
	if !ok {
		return nil, errorf(http.StatusUnauthorized, CodeUnauthenticated, "the session ended: run robonet gateway login again")
	}
	return p, nil
}

// authed serves h for principals of role need or above.
func (g *Gateway) authed(need string, h func(http.ResponseWriter, *http.Request, *Principal)) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		addr := clientAddr(r)
		if g.auth.limited(addr, false) {
			w.Header().Set("Retry-After", strconv.Itoa(int(failWindow.Seconds())))
			writeError(w, errorf(http.StatusTooManyRequests, CodeRateLimited, "too many failed attempts from %s: wait a minute", addr))
			return
		}
		p, aerr := g.auth.authenticate(r)
		if aerr != nil {
			g.auth.limited(addr, true)
			writeError(w, aerr)
			return
		}
		if roleRank(p.Role) < roleRank(need) {
			writeError(w, errorf(http.StatusForbidden, CodeDenied, "%s needs role %s; %s has %s", r.URL.Path, need, p.User, p.Role))
			return
		}
		h(w, r, p)
	})
}

// serveLoginLink turns a login ticket into a session cookie.
func (g *Gateway) serveLoginLink(w http.ResponseWriter, r *http.Request) {
	addr := clientAddr(r)
	if g.auth.limited(addr, true) {
		w.Header().Set("Retry-After", strconv.Itoa(int(failWindow.Seconds())))
		loginPage(w, http.StatusTooManyRequests, "Too many login attempts from this address: wait a minute.")
		return
	}
	// A link followed from another site would log the browser in as
	// whoever made the link (login CSRF). The CLI's link is opened from a
	// terminal or pasted: the browser sends Sec-Fetch-Site: none. The
	// ticket is left unused so it can still be pasted.
	if r.Header.Get("Sec-Fetch-Site") == "cross-site" {
		loginPage(w, http.StatusForbidden, "This login link was opened from another site. Paste it into the address bar instead.")
		return
	}
	t := r.URL.Query().Get("t")
	if len(t) > 128 {
		t = ""
	}
	cred, ok := g.auth.burnTicket(t)
	if !ok {
		loginPage(w, http.StatusUnauthorized, "This login link is not valid (any more): links work once, for a minute. Run robonet gateway login again.")
		return
	}
	id, p, err := g.auth.newSession(cred)
	if err != nil {
		g.log.Warn("gateway login refused", "user", cred.d.User, "err", err)
		loginPage(w, http.StatusUnauthorized, "This login cannot start a session: "+err.Error())
		return
	}
	http.SetCookie(w, &http.Cookie{Name: SessionCookie, Value: id, Path: "/", HttpOnly: true,
		SameSite: http.SameSiteStrictMode, Secure: g.TLS(), Expires: p.Expires})
	g.log.Info("gateway session started", "user", p.User, "role", p.Role, "from", addr)
	http.Redirect(w, r, "/", http.StatusSeeOther)
}

// serveLogout ends the request's session.
func (g *Gateway) serveLogout(w http.ResponseWriter, r *http.Request) {
	if ck, err := r.Cookie(SessionCookie); err == nil {
		if p, ok := g.auth.session(ck.Value); ok {
			g.auth.drop(p)
		}
	}
	http.SetCookie(w, &http.Cookie{Name: SessionCookie, Value: "", Path: "/", HttpOnly: true,
		SameSite: http.SameSiteStrictMode, Secure: g.TLS(), MaxAge: -1})
	http.Redirect(w, r, "/", http.StatusSeeOther)
}

// loginPage answers a small HTML page (no script, nothing from input).
func loginPage(w http.ResponseWriter, status int, msg string) {
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	fmt.Fprintf(w, "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>robonet login</title></head><body><p>%s</p></body></html>\n",
		htmlEscape(msg))
}

func htmlEscape(s string) string {
	return strings.NewReplacer("&", "&amp;", "<", "&lt;", ">", "&gt;", `"`, "&quot;", "'", "&#39;").Replace(s)
}

package gateway

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nkeys"

	"github.com/robonet-mesh/robonet/mesh"
	"github.com/robonet-mesh/robonet/subjects"
	"github.com/robonet-mesh/robonet/trust"
	"github.com/robonet-mesh/robonet/wire"
)

// Kinds of credential the login service issues.
const (
	KindLogin = "login" // a one-time login link for a browser
	KindToken = "token" // a bearer token for programs
)

// Credential lifetimes.
const (
	DefaultTTL    = 12 * time.Hour
	MinTTL        = time.Minute
	MaxLoginTTL   = 7 * 24 * time.Hour
	MaxTokenTTL   = 30 * 24 * time.Hour
	finishWithin  = 2 * time.Minute // between begin and finish
	maxPending    = 256
	maxLoginBytes = 16 << 10
)

// LoginRequest is one step of the login exchange on
// rn.<chevron>.gateway.login, signed by the user (HCTH).
type LoginRequest struct {
	Op         string `json:"op"`             // "begin" or "finish"
	Kind       string `json:"kind,omitempty"` // begin: KindLogin or KindToken
	Role       string `json:"role,omitempty"` // begin: "" is the user's own
	TTL        string `json:"ttl,omitempty"`  // begin: a Go duration; "" is DefaultTTL
	Delegation string `json:"delegation,omitempty"`
}

// LoginReply answers a LoginRequest; the gateway's node signs it.
type LoginReply struct {
	Key     string      `json:"key,omitempty"`  // begin: the session key to delegate to
	Node    string      `json:"node,omitempty"` // begin: the gateway's node key
	Role    string      `json:"role,omitempty"` // begin: the role to delegate
	Expires time.Time   `json:"expires,omitzero"`
	URL     string      `json:"url,omitempty"`   // finish, login: the one-time link
	Token   string      `json:"token,omitempty"` // finish, token: the bearer token
	Error   *wire.Error `json:"error,omitempty"`
}

type pendingLogin struct {
	user     string
	kind     string
	role     string
	kp       nkeys.KeyPair
	expires  time.Time // the latest expiry the delegation may have
	deadline time.Time // finish before this
}

// loginSubject is where a node's gateway serves logins.
func loginSubject(c subjects.Chevron) string {
	return subjects.Root + "." + c.String() + ".gateway.login"
}

// serveLogin answers one login step. It acts for the verified signer only.
func (g *Gateway) serveLogin(m *nats.Msg) {
	if m.Reply == "" {
		return
	}
	pub, role, werr := g.opts.Node.Authorize(m, "")
	if werr == nil && pub == "" {
		return // a replay
	}
	var rep LoginReply
	switch {
	case werr != nil:
		rep.Error = werr
	case len(m.Data) > maxLoginBytes:
		rep.Error = &wire.Error{Code: wire.CodeBadRequest, Msg: fmt.Sprintf("login request of %d bytes, at most %d", len(m.Data), maxLoginBytes)}
	default:
		var req LoginRequest
		if err := json.Unmarshal(m.Data, &req); err != nil {
			rep.Error = &wire.Error{Code: wire.CodeBadRequest, Msg: "login request: " + err.Error()}
			break
		}
		switch req.Op {
		case "begin":
			rep = g.beginLogin(pub, role, req)
		case "finish":
			rep = g.finishLogin(pub, req)
		default:
			rep.Error = &wire.Error{Code: wire.CodeBadRequest, Msg: fmt.Sprintf("login op %q: want begin or finish", req.Op)}
		}
	}
	if rep.Error != nil {
		g.log.Info("gateway login refused", "signer", pub, "code", rep.Error.Code, "err", rep.Error.Msg)
	}
	data, _ := json.Marshal(rep)
	out := &nats.Msg{Subject: m.Reply, Data: data}
	if err := g.opts.Node.Signer().SignMsg(out); err != nil {
		g.log.Warn("gateway login: signing the reply", "err", err)
		return
	}
	_ = m.RespondMsg(out)
}

func loginErr(code, format string, args ...any) LoginReply {
	return LoginReply{Error: &wire.Error{Code: code, Msg: fmt.Sprintf(format, args...)}}
}

// beginLogin creates a session key for user (whose role is role now).
func (g *Gateway) beginLogin(user, role string, req LoginRequest) LoginReply {
	maxTTL := MaxLoginTTL
	switch req.Kind {
	case KindLogin:
	case KindToken:
		maxTTL = MaxTokenTTL
	default:
		return loginErr(wire.CodeBadRequest, "kind %q: want login or token", req.Kind)
	}
	want := req.Role
	if want == "" {
		want = role
	}
	if roleRank(want) == 0 {
		return loginErr(wire.CodeBadRequest, "role %q: want admin, operator or observer", want)
	}
	if roleRank(want) > roleRank(role) {
		return loginErr(wire.CodeDenied, "role %s is above %s's own (%s)", want, user, role)
	}
	ttl := DefaultTTL
	if req.TTL != "" {
		d, err := time.ParseDuration(req.TTL)
		if err != nil {
			return loginErr(wire.CodeBadRequest, "ttl %q: %v", req.TTL, err)
		}
		ttl = d
	}
	if ttl < MinTTL || ttl > maxTTL {
		return loginErr(wire.CodeBadRequest, "ttl %v: want %v to %v for a %s", ttl, MinTTL, maxTTL, req.Kind)
	}
	kp, err := nkeys.CreateUser()
	if err != nil {
		return loginErr(wire.CodeInternal, "session key: %v", err)
	}
	key, _ := kp.PublicKey()
	now := g.now()
	p := pendingLogin{user: user, kind: req.Kind, role: want, kp: kp, expires: now.Add(ttl), deadline: now.Add(finishWithin)}
	a := g.auth
	a.mu.Lock()
	if len(a.pending) >= maxPending {
		a.mu.Unlock()
		return loginErr(wire.CodeInternal, "%d logins are half done: try again in a minute", maxPending)
	}
	a.pending[key] = p
	a.mu.Unlock()
	return LoginReply{Key: key, Node: g.opts.Node.Pubkey(), Role: want, Expires: p.expires}
}

// finishLogin checks the delegation user signed for a pending session key
// and issues the link or the token.
func (g *Gateway) finishLogin(user string, req LoginRequest) LoginReply {
	now := g.now()
	d, err := trust.ParseDelegation(req.Delegation, now)
	if err != nil {
		return loginErr(wire.CodeDenied, "delegation: %v", err)
	}
	a := g.auth
	a.mu.Lock()
	p, ok := a.pending[d.Key]
	if ok && p.user == user {
		delete(a.pending, d.Key)
	}
	a.mu.Unlock()
	switch {
	case d.User != user:
		return loginErr(wire.CodeDenied, "delegation by %s, sent by %s", d.User, user)
	case !ok || p.user != user || !now.Before(p.deadline):
		return loginErr(wire.CodeDenied, "no login of %s waits for key %s (begin again)", user, d.Key)
	case d.Node != g.opts.Node.Pubkey():
		return loginErr(wire.CodeDenied, "delegation for node %s, this is %s", d.Node, g.opts.Node.Pubkey())
	case d.Role != p.role:
		return loginErr(wire.CodeDenied, "delegation role %q, begun as %q", d.Role, p.role)
	case d.Expires.After(p.expires.Add(time.Minute)) || !d.Expires.After(now):
		return loginErr(wire.CodeDenied, "delegation expires %s: want after now and by %s", d.Expires.Format(time.RFC3339), p.expires.Format(time.RFC3339))
	}
	cred := credential{kp: p.kp, hdr: req.Delegation, d: d, role: d.Role}
	if p.kind == KindToken {
		tok, err := FormatToken(p.kp, req.Delegation)
		if err != nil {
			return loginErr(wire.CodeInternal, "%v", err)
		}
		g.log.Info("gateway token issued", "user", user, "role", d.Role, "expires", d.Expires)
		return LoginReply{Token: tok, Role: d.Role, Expires: d.Expires}
	}
	base := g.URL()
	if base == "" {
		return loginErr(wire.CodeInternal, "the gateway does not serve")
	}
	t, err := a.newTicket(cred)
	if err != nil {
		return loginErr(wire.CodeInternal, "%v", err)
	}
	g.log.Info("gateway login link issued", "user", user, "role", d.Role)
	return LoginReply{URL: base + "/login?t=" + t, Role: d.Role, Expires: now.Add(ticketTTL)}
}

// CredentialRequest asks a gateway for a login link or a bearer token.
type CredentialRequest struct {
	Kind string        // KindLogin or KindToken
	Role string        // "" is the user's own
	TTL  time.Duration // 0 is DefaultTTL
}

// Credential is what a gateway issued: URL for a login, Token for a token.
type Credential struct {
	URL, Token string
	Role       string
	Expires    time.Time
}

// Requester is what RequestCredential talks through: a connection to the
// gateway's node, the user's signer (its chain) and the user's key pair,
// which signs the delegation.
type Requester struct {
	Conn    *nats.Conn
	Signer  *mesh.Signer
	KeyPair nkeys.KeyPair
	// NodeKey is the gateway node's key, proved to the caller (a client's
	// NodeKey): replies must be signed by it.
	NodeKey string
	Chevron subjects.Chevron // the gateway node's chevron
}

// RequestCredential runs the two-step login exchange with the gateway of
// the node rq names: the gateway makes a session key, the user delegates to
// it, and the gateway answers with a link or a token.
func RequestCredential(ctx context.Context, rq Requester, req CredentialRequest) (Credential, error) {
	user, err := rq.KeyPair.PublicKey()
	if err != nil {
		return Credential{}, fmt.Errorf("gateway %s: the user key: %w", req.Kind, err)
	}
	ttl := ""
	if req.TTL != 0 {
		ttl = req.TTL.String()
	}
	begin, err := loginCall(ctx, rq, LoginRequest{Op: "begin", Kind: req.Kind, Role: req.Role, TTL: ttl})
	if err != nil {
		return Credential{}, err
	}
	if begin.Node != rq.NodeKey || begin.Key == "" || roleRank(begin.Role) == 0 {
		return Credential{}, fmt.Errorf("gateway %s: node %s offered key %q for node %q, role %q", req.Kind, rq.NodeKey, begin.Key, begin.Node, begin.Role)
	}
	now := time.Now()
	hdr, err := trust.SignDelegation(rq.KeyPair, wire.Delegation{User: user, Key: begin.Key, Role: begin.Role,
		Node: begin.Node, Issued: now, Expires: begin.Expires})
	if err != nil {
		return Credential{}, fmt.Errorf("gateway %s: signing the delegation: %w", req.Kind, err)
	}
	fin, err := loginCall(ctx, rq, LoginRequest{Op: "finish", Delegation: hdr})
	if err != nil {
		return Credential{}, err
	}
	if (req.Kind == KindLogin && fin.URL == "") || (req.Kind == KindToken && fin.Token == "") {
		return Credential{}, fmt.Errorf("gateway %s: node %s answered without one", req.Kind, rq.NodeKey)
	}
	return Credential{URL: fin.URL, Token: fin.Token, Role: fin.Role, Expires: fin.Expires}, nil
}

// ErrGateway is wrapped by the errors a gateway answers a login with.
var ErrGateway = errors.New("gateway refused")

// loginCall sends one signed login step and checks the reply is the
// gateway node's.
func loginCall(ctx context.Context, rq Requester, req LoginRequest) (LoginReply, error) {
	data, _ := json.Marshal(req)
	m := &nats.Msg{Subject: loginSubject(rq.Chevron), Data: data}
	if err := rq.Signer.SignMsg(m); err != nil {
		return LoginReply{}, fmt.Errorf("gateway login %s: signing: %w", req.Op, err)
	}
	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, 10*time.Second)
		defer cancel()
	}
	r, err := rq.Conn.RequestMsgWithContext(ctx, m)
	if errors.Is(err, nats.ErrNoResponders) {
		return LoginReply{}, fmt.Errorf("gateway login on %s: no gateway answers there (is the node running with --gateway off, or was its address taken?)", m.Subject)
	}
	if errors.Is(err, context.DeadlineExceeded) {
		return LoginReply{}, fmt.Errorf("gateway login %s on %s: no answer in time (a key whose NATS permissions do not allow publishing there gets none: try the node's own operator key, --data of the node)", req.Op, m.Subject)
	}
	if err != nil {
		return LoginReply{}, fmt.Errorf("gateway login %s on %s: %w", req.Op, m.Subject, err)
	}
	h, err := mesh.ParseSigned(r)
	if err != nil {
		return LoginReply{}, fmt.Errorf("gateway login reply: %w", err)
	}
	if h.From != rq.NodeKey {
		return LoginReply{}, fmt.Errorf("gateway login reply signed by %s, not by node %s", h.From, rq.NodeKey)
	}
	if err := trust.NewVerifier(0).Verify(h, r.Subject, r.Data); err != nil {
		return LoginReply{}, fmt.Errorf("gateway login reply from %s: %w", h.From, err)
	}
	var rep LoginReply
	if err := json.Unmarshal(r.Data, &rep); err != nil {
		return LoginReply{}, fmt.Errorf("gateway login reply from %s: %w", h.From, err)
	}
	if rep.Error != nil {
		return LoginReply{}, fmt.Errorf("%w: %s: %s", ErrGateway, rep.Error.Code, rep.Error.Msg)
	}
	return rep, nil
}

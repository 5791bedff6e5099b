package gateway

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"mime"
	"net/http"
	"net/netip"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/robonet-mesh/robonet/media"
	"github.com/robonet-mesh/robonet/subjects"
	"github.com/robonet-mesh/robonet/wire"
)

// The gateway's side of media (package media): WHEP endpoints for browsers,
// the stream list for the dashboard, and the player page.
//
// A browser's WHEP request takes one of two paths. Direct: the gateway
// relays it over NATS to the camera's node, signed by the viewer's
// delegated key (Principal.Client), and the node answers with its own
// peer connection; the browser then sends media to the node's UDP port.
// Relay: the gateway terminates WebRTC itself (a media.Sessions on the
// Engine it was given) and takes the stream's RTP from the node over NATS
// (a media.RelaySource per stream, shared by every relay viewer of it), so
// video plays wherever the gateway's port is reachable. Relay session ids
// start with "r", so a PATCH or DELETE knows where to go without state.

// Bounds of the media endpoints.
const (
	// whepTimeout bounds one WHEP request: an offer waits for the node's
	// encoder to start (a cold ffmpeg: up to a second or two on a busy
	// machine) and, on the relay path, for the first packet over NATS.
	whepTimeout = 20 * time.Second
	// listTTL is how long a node's stream list (its addresses, for the
	// path choice) is reused.
	listTTL = 10 * time.Second
	// maxLists bounds the cache of stream lists.
	maxLists = 1024
	// relayPrefix starts a relay session's id in its URL.
	relayPrefix = "r"
	// retryAfterUnavailable is Retry-After on the gateway's own 503s.
	retryAfterUnavailable = 5
)

// Paths a WHEP offer may take (?path=).
const (
	PathAuto   = "auto"
	PathDirect = "direct"
	PathRelay  = "relay"
)

// MediaOptions configure the gateway's media endpoints.
type MediaOptions struct {
	// Engine terminates the relay path's WebRTC sessions (its TCP side is
	// usually ICETCP()). nil: no relay path, offers take the direct path.
	Engine *media.Engine
	// Local is this node's own stream list (nil, or a nil result: it
	// offers none). Offers for it take the direct path (this node's engine
	// is the gateway's), and robonet_media_encoders_running counts its
	// live streams.
	Local func() *media.MediaList
	// DirectSessions counts this node's direct-path sessions (its media
	// service's Sessions().Count) for robonet_media_sessions{path="direct"};
	// nil counts none.
	DirectSessions func() int
	// Sessions bounds the relay path's sessions (zero: the media defaults).
	Sessions media.SessionOptions
	Logger   *slog.Logger
}

// Media is the gateway's media side, as MountMedia mounted it.
type Media struct {
	g        *Gateway
	opts     MediaOptions
	log      *slog.Logger
	sessions *media.Sessions // the relay path's; nil without an Engine

	mu      sync.Mutex // guards the fields below; never held across a network call
	relays  map[string]*relay
	viewers map[string]*relayViewer // by relay session id (without relayPrefix)
	lists   map[subjects.Chevron]cachedList
	closed  bool
}

// relay is one stream relayed to this gateway, shared by its relay viewers.
type relay struct {
	chev   subjects.Chevron
	stream string
	src    *media.RelaySource
	// viewers in the order they came: the lease is renewed as the first
	// whose login is still good.
	viewers []*relayViewer
}

// relayViewer is one relay session and who opened it.
type relayViewer struct {
	p    *Principal
	rel  *relay
	id   string // the session id, once the offer was answered
	gone bool   // the session ended (its source was released)
}

type cachedList struct {
	l       media.MediaList
	fetched time.Time
}

// MountMedia serves WHEP (POST, OPTIONS, HEAD /media/{chevron}/{stream}/whep;
// PATCH, DELETE …/whep/{session}), the player page GET
// /media/{chevron}/{stream}, and GET /api/media. Watching needs any known
// user (the camera's node checks the viewer again). It may be called after
// Start, once the engine on ICETCP() exists; call it once.
func (g *Gateway) MountMedia(opts MediaOptions) *Media {
	log := opts.Logger
	if log == nil {
		log = g.log
	}
	m := &Media{g: g, opts: opts, log: log.With("feature", "media"), relays: map[string]*relay{},
		viewers: map[string]*relayViewer{}, lists: map[subjects.Chevron]cachedList{}}
	if opts.Engine != nil {
		m.sessions = media.NewSessions(opts.Engine, opts.Sessions)
	}
	const whep = "/media/{chevron}/{stream}/whep"
	const sess = whep + "/{session}"
	g.Handle("OPTIONS "+whep, http.HandlerFunc(m.serveOptions), "")
	g.Handle("OPTIONS "+sess, http.HandlerFunc(m.serveOptions), "")
	g.Handle("HEAD "+whep, m.handler(m.serveHead), wire.RoleObserver)
	g.Handle("POST "+whep, m.handler(m.servePost), wire.RoleObserver)
	g.Handle("PATCH "+sess, m.handler(m.servePatch), wire.RoleObserver)
	g.Handle("DELETE "+sess, m.handler(m.serveDelete), wire.RoleObserver)
	g.Handle(whep, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		methodNotAllowed(w, r, "POST, HEAD, OPTIONS")
	}), "")
	g.Handle(sess, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		methodNotAllowed(w, r, "PATCH, DELETE, OPTIONS")
	}), "")
	g.Handle("GET /media/{chevron}/{stream}", http.HandlerFunc(m.servePage), "")
	g.api("GET", "/api/media", wire.RoleObserver, m.apiMedia)
	g.mu.Lock()
	g.closeMedia = m.close
	g.mu.Unlock()
	return m
}

// close ends every relay session and relay (the gateway's Shutdown).
func (m *Media) close() {
	m.mu.Lock()
	if m.closed {
		m.mu.Unlock()
		return
	}
	m.closed = true
	relays := make([]*relay, 0, len(m.relays))
	for _, rl := range m.relays {
		relays = append(relays, rl)
	}
	m.mu.Unlock()
	if m.sessions != nil {
		m.sessions.Close()
	}
	for _, rl := range relays {
		rl.src.Close()
	}
}

// Sessions counts the WHEP sessions this node serves: relay ones the
// gateway terminates, direct ones its media service does.
func (m *Media) Sessions() (direct, relay int) {
	if m.sessions != nil {
		relay = m.sessions.Count()
	}
	if m.opts.DirectSessions != nil {
		direct = m.opts.DirectSessions()
	}
	return direct, relay
}

// EncodersRunning counts this node's streams whose encoder is live.
func (m *Media) EncodersRunning() int {
	if m.opts.Local == nil {
		return 0
	}
	l := m.opts.Local()
	if l == nil {
		return 0
	}
	n := 0
	for _, s := range l.Streams {
		if s.Live {
			n++
		}
	}
	return n
}

// whepTarget is what a WHEP URL names.
type whepTarget struct {
	chev    subjects.Chevron
	stream  string
	session string // "" for the endpoint; relay ids keep relayPrefix
}

// handler checks the URL's chevron, stream and session, sets the CORS
// headers every WHEP answer carries, and calls h.
func (m *Media) handler(h func(http.ResponseWriter, *http.Request, *Principal, whepTarget)) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		corsHeaders(w)
		p, ok := PrincipalFrom(r.Context())
		if !ok || p.Client == nil {
			writeError(w, errorf(http.StatusUnauthorized, CodeUnauthenticated, "not logged in"))
			return
		}
		t, aerr := parseTarget(r.PathValue("chevron"), r.PathValue("stream"), r.PathValue("session"), r.Pattern)
		if aerr != nil {
			writeError(w, aerr)
			return
		}
		if _, known := m.g.opts.Node.KeyOf(t.chev); !known {
			writeError(w, errorf(http.StatusNotFound, CodeNotFound, "no node %s in the swarm's registry", t.chev))
			return
		}
		h(w, r, p, t)
	})
}

// parseTarget checks a WHEP URL's parts: a 404 names what is wrong.
func parseTarget(chevText, stream, session, pattern string) (whepTarget, *apiError) {
	chev, err := subjects.Parse(chevText)
	if err != nil || chev.IsZero() {
		return whepTarget{}, errorf(http.StatusNotFound, CodeNotFound, "no node %q: a chevron is 1 to 4 numbers, as in 3.12.7.1", clipText(chevText, 64))
	}
	if !validStream(stream) {
		return whepTarget{}, errorf(http.StatusNotFound, CodeNotFound,
			"no stream %q: a stream name is a lowercase letter or digit, then letters, digits, '_' or '-', at most 32", clipText(stream, 64))
	}
	t := whepTarget{chev: chev, stream: stream}
	if strings.HasSuffix(pattern, "{session}") {
		if _, _, ok := splitSession(session); !ok {
			return whepTarget{}, errorf(http.StatusNotFound, CodeNotFound, "no session %q", clipText(session, 64))
		}
		t.session = session
	}
	return t, nil
}

// validStream is media's stream-name rule: [a-z0-9][a-z0-9_-]{0,31}.
func validStream(s string) bool {
	if len(s) == 0 || len(s) > 32 {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c >= 'a' && c <= 'z', c >= '0' && c <= '9':
		case (c == '_' || c == '-') && i > 0:
		default:
			return false
		}
	}
	return true
}

// splitSession reads a session id of a URL: 32 lowercase hex characters
// (a direct session, the node's), or relayPrefix and 32 (a relay one).
func splitSession(s string) (id string, relay, ok bool) {
	if rest, found := strings.CutPrefix(s, relayPrefix); found && len(s) == 33 {
		s, relay = rest, true
	}
	if len(s) != 32 {
		return "", false, false
	}
	for i := 0; i < len(s); i++ {
		if c := s[i]; (c < '0' || c > '9') && (c < 'a' || c > 'f') {
			return "", false, false
		}
	}
	return s, relay, true
}

// corsHeaders are on every WHEP answer: WHEP players on other origins read
// Location and ETag (draft-ietf-wish-whep-03). No credentials are allowed
// cross-origin: the session cookie is SameSite=Strict, and a bearer token
// must be sent on purpose.
func corsHeaders(w http.ResponseWriter) {
	h := w.Header()
	h.Set("Access-Control-Allow-Origin", "*")
	h.Set("Access-Control-Expose-Headers", "Location, ETag, Link, Retry-After")
	h.Set("Cache-Control", "no-store")
}

// serveOptions answers a CORS preflight (no credentials are sent with one)
// and says what the endpoint takes.
func (m *Media) serveOptions(w http.ResponseWriter, r *http.Request) {
	corsHeaders(w)
	h := w.Header()
	methods := "POST, HEAD, OPTIONS"
	if r.PathValue("session") != "" {
		methods = "PATCH, DELETE, OPTIONS"
	} else {
		h.Set("Accept-Post", media.ContentTypeSDP)
	}
	h.Set("Allow", methods)
	h.Set("Access-Control-Allow-Methods", methods)
	h.Set("Access-Control-Allow-Headers", "Authorization, Content-Type, If-Match")
	h.Set("Access-Control-Max-Age", "600")
	w.WriteHeader(http.StatusNoContent)
}

func methodNotAllowed(w http.ResponseWriter, r *http.Request, allow string) {
	corsHeaders(w)
	w.Header().Set("Allow", allow)
	writeError(w, errorf(http.StatusMethodNotAllowed, CodeMethodNotAllowed, "%s on %s: use %s", r.Method, clipText(r.URL.Path, 128), allow))
}

// serveHead is WHEP endpoint discovery: 200, application/sdp, no body.
func (m *Media) serveHead(w http.ResponseWriter, _ *http.Request, _ *Principal, _ whepTarget) {
	w.Header().Set("Accept-Post", media.ContentTypeSDP)
	w.Header().Set("Content-Type", media.ContentTypeSDP)
	w.WriteHeader(http.StatusOK)
}

// readBody reads a WHEP body of content type want (at most
// media.MaxWHEPBody bytes).
func readBody(w http.ResponseWriter, r *http.Request, want string) (string, *apiError) {
	ct := r.Header.Get("Content-Type")
	if mt, _, err := mime.ParseMediaType(ct); err != nil || mt != want {
		return "", errorf(http.StatusUnsupportedMediaType, CodeBadRequest, "Content-Type %q: want %s", clipText(ct, 64), want)
	}
	rc := http.NewResponseController(w)
	_ = rc.SetReadDeadline(time.Now().Add(30 * time.Second))
	defer func() { _ = rc.SetReadDeadline(time.Time{}) }()
	b, err := io.ReadAll(http.MaxBytesReader(w, r.Body, media.MaxWHEPBody))
	if err != nil {
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			return "", errorf(http.StatusRequestEntityTooLarge, CodeTooLarge, "request body over %d bytes", media.MaxWHEPBody)
		}
		return "", errorf(http.StatusBadRequest, CodeBadRequest, "request body: %v", err)
	}
	return string(b), nil
}

// servePost answers an offer: 201, Location, ETag and the SDP answer.
func (m *Media) servePost(w http.ResponseWriter, r *http.Request, p *Principal, t whepTarget) {
	offer, aerr := readBody(w, r, media.ContentTypeSDP)
	if aerr != nil {
		writeError(w, aerr)
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), whepTimeout)
	defer cancel()
	path, err := m.choosePath(ctx, r, p, t)
	if err != nil {
		writeMediaError(w, err)
		return
	}
	var ans media.Answer
	if path == PathRelay {
		ans, err = m.offerRelay(ctx, p, t, offer)
	} else {
		ans, err = m.offerDirect(ctx, p, t, offer)
	}
	if err != nil {
		m.log.Debug("media offer refused", "chevron", t.chev.String(), "stream", t.stream, "path", path, "user", p.User, "err", err)
		writeMediaError(w, err)
		return
	}
	m.log.Info("media session", "chevron", t.chev.String(), "stream", t.stream, "path", path, "user", p.User)
	h := w.Header()
	h.Set("Location", "/media/"+t.chev.String()+"/"+t.stream+"/whep/"+ans.Session)
	if ans.ETag != "" {
		h.Set("ETag", ans.ETag)
	}
	h.Set("Content-Type", media.ContentTypeSDP)
	w.WriteHeader(http.StatusCreated)
	_, _ = io.WriteString(w, ans.SDP)
}

// choosePath reads ?path= (auto when absent): direct for this node's own
// streams and for browsers on a subnet of the node's ICE addresses, relay
// otherwise; relay only with an engine.
func (m *Media) choosePath(ctx context.Context, r *http.Request, p *Principal, t whepTarget) (string, error) {
	want := r.URL.Query().Get("path")
	switch want {
	case "", PathAuto:
	case PathDirect:
		return PathDirect, nil
	case PathRelay:
		if m.sessions == nil {
			return "", &media.Error{Status: http.StatusServiceUnavailable, Code: CodeUnavailable, RetryAfter: retryAfterUnavailable,
				Msg: "this gateway relays no media (its node runs without a media engine): use ?path=direct"}
		}
		return PathRelay, nil
	default:
		return "", &media.Error{Status: http.StatusBadRequest, Code: CodeBadRequest, Msg: fmt.Sprintf("path=%q: want auto, direct or relay", clipText(want, 32))}
	}
	if m.sessions == nil || t.chev == m.g.opts.Node.Chevron() {
		return PathDirect, nil
	}
	l, err := m.list(ctx, p, t.chev)
	if err != nil {
		return "", err
	}
	if l.UDPPort > 0 && onSubnet(clientAddr(r), l.Addrs) {
		return PathDirect, nil
	}
	return PathRelay, nil
}

// list is the node's stream list, reused for listTTL.
func (m *Media) list(ctx context.Context, p *Principal, chev subjects.Chevron) (media.MediaList, error) {
	now := time.Now()
	m.mu.Lock()
	c, ok := m.lists[chev]
	m.mu.Unlock()
	if ok && now.Sub(c.fetched) < listTTL {
		return c.l, nil
	}
	l, err := m.caller(p).List(ctx, chev)
	if err != nil {
		return l, err
	}
	m.mu.Lock()
	if len(m.lists) >= maxLists {
		clear(m.lists)
	}
	m.lists[chev] = cachedList{l: l, fetched: now}
	m.mu.Unlock()
	return l, nil
}

// onSubnet reports whether the browser at client is on a subnet of one of
// addrs: a prefix as given ("192.168.1.5/24"), else the address's /24
// (IPv4) or /64 (IPv6).
func onSubnet(client string, addrs []string) bool {
	ip, err := netip.ParseAddr(client)
	if err != nil {
		return false
	}
	ip = ip.Unmap().WithZone("")
	for _, a := range addrs {
		pfx, err := netip.ParsePrefix(a)
		if err != nil {
			addr, err := netip.ParseAddr(a)
			if err != nil {
				continue
			}
			addr = addr.Unmap().WithZone("")
			bits := 64
			if addr.Is4() {
				bits = 24
			}
			pfx = netip.PrefixFrom(addr, bits)
		}
		if pfx.Masked().Contains(ip) {
			return true
		}
	}
	return false
}

// offerDirect relays the offer to the camera's node, signed as the viewer.
func (m *Media) offerDirect(ctx context.Context, p *Principal, t whepTarget, offer string) (media.Answer, error) {
	rep, err := m.caller(p).WHEP(ctx, t.chev, t.stream, "", media.WHEPRequest{Method: http.MethodPost, ContentType: media.ContentTypeSDP, Body: offer})
	if err != nil {
		return media.Answer{}, err
	}
	if rep.Status != http.StatusCreated || rep.Body == "" {
		return media.Answer{}, &media.Error{Status: http.StatusBadGateway, Code: CodeUpstream,
			Msg: fmt.Sprintf("node %s answered the offer with status %d and no SDP", t.chev, rep.Status)}
	}
	if _, relay, ok := splitSession(rep.Session); !ok || relay {
		return media.Answer{}, &media.Error{Status: http.StatusBadGateway, Code: CodeUpstream,
			Msg: fmt.Sprintf("node %s answered the offer with session %q: want 32 lowercase hex characters", t.chev, clipText(rep.Session, 64))}
	}
	return media.Answer{Session: rep.Session, ETag: rep.ETag, SDP: rep.Body}, nil
}

// servePatch applies trickled candidates: 204.
func (m *Media) servePatch(w http.ResponseWriter, r *http.Request, p *Principal, t whepTarget) {
	body, aerr := readBody(w, r, media.ContentTypeSDPFrag)
	if aerr != nil {
		writeError(w, aerr)
		return
	}
	ifMatch := r.Header.Get("If-Match")
	ctx, cancel := context.WithTimeout(r.Context(), whepTimeout)
	defer cancel()
	var err error
	if id, relay, _ := splitSession(t.session); relay {
		if _, err = m.relaySession(id, p, t); err == nil {
			err = m.sessions.Patch(id, ifMatch, media.ContentTypeSDPFrag, []byte(body))
		}
	} else {
		err = m.sessionRequest(ctx, p, t, id, media.WHEPRequest{Method: http.MethodPatch, ContentType: media.ContentTypeSDPFrag, IfMatch: ifMatch, Body: body})
	}
	if err != nil {
		writeMediaError(w, err)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

// serveDelete ends a session: 200.
func (m *Media) serveDelete(w http.ResponseWriter, r *http.Request, p *Principal, t whepTarget) {
	ctx, cancel := context.WithTimeout(r.Context(), whepTimeout)
	defer cancel()
	var err error
	if id, relay, _ := splitSession(t.session); relay {
		var v *relayViewer
		if v, err = m.relaySession(id, p, t); err == nil {
			err = m.sessions.Delete(id)
			m.leave(v)
		}
	} else {
		err = m.sessionRequest(ctx, p, t, id, media.WHEPRequest{Method: http.MethodDelete})
	}
	if err != nil {
		writeMediaError(w, err)
		return
	}
	w.WriteHeader(http.StatusOK)
}

// sessionRequest sends a PATCH or DELETE of a direct session to its node.
func (m *Media) sessionRequest(ctx context.Context, p *Principal, t whepTarget, id string, req media.WHEPRequest) error {
	rep, err := m.caller(p).WHEP(ctx, t.chev, t.stream, id, req)
	if err != nil {
		return err
	}
	if rep.Status >= 300 {
		return &media.Error{Status: http.StatusBadGateway, Code: CodeUpstream, Msg: fmt.Sprintf("node %s answered %s with status %d", t.chev, req.Method, rep.Status)}
	}
	return nil
}

// writeMediaError answers err as {error, code} with its status, and
// Retry-After when the node (or the gateway) gave one.
func writeMediaError(w http.ResponseWriter, err error) {
	var me *media.Error
	switch {
	case errors.As(err, &me):
		status := me.Status
		if status < 400 || status > 599 {
			status = http.StatusBadGateway
		}
		code := me.Code
		if code == "" {
			code = codeOfStatus(status)
		}
		if me.RetryAfter > 0 {
			w.Header().Set("Retry-After", strconv.Itoa(me.RetryAfter))
		}
		writeError(w, &apiError{Status: status, Code: code, Msg: me.Msg})
	case errors.Is(err, context.DeadlineExceeded):
		writeError(w, errorf(http.StatusGatewayTimeout, CodeTimeout, "no answer in time: %v", err))
	case errors.Is(err, context.Canceled):
		// the browser went away
	default:
		writeError(w, errorf(http.StatusBadGateway, CodeUpstream, "%v", err))
	}
}

func codeOfStatus(status int) string {
	switch status {
	case http.StatusNotFound:
		return CodeNotFound
	case http.StatusForbidden:
		return CodeDenied
	case http.StatusServiceUnavailable:
		return CodeUnavailable
	case http.StatusGatewayTimeout:
		return CodeTimeout
	case http.StatusRequestEntityTooLarge:
		return CodeTooLarge
	}
	if status >= 500 {
		return CodeUpstream
	}
	return CodeBadRequest
}

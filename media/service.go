package media

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/robonet-mesh/robonet/mesh"
	"github.com/robonet-mesh/robonet/subjects"
	"github.com/robonet-mesh/robonet/wire"
)

// MaxRequest bounds a media request on the wire (an SDP offer is 5–10 KiB).
const MaxRequest = 64 << 10

// ViewTier is the tier a signer needs to watch a stream or lease its relay.
const ViewTier = 1

// offerTimeout bounds an offer's work on the node: gathering (host
// candidates only: milliseconds) and the encoder's first packet, which a
// cold ffmpeg needs up to a second or two for on a busy machine.
const offerTimeout = 10 * time.Second

// ServiceOptions wire a Service onto a running node. `robonet up`
// composes it: media does not import the node (DESIGN, layering).
type ServiceOptions struct {
	// Conn is the node's feature connection; the Service subscribes on it.
	Conn *nats.Conn
	// Chevron is the node's address; the Service serves its subjects only.
	Chevron subjects.Chevron
	// Signer signs every answer as the node (viewers check the node's key).
	Signer *mesh.Signer
	// Authorize checks a signed request (node.Authorize with node.Tier):
	// the signer's key and tier, or the error to answer with; an empty pub
	// with a nil error is a replay, dropped without an answer.
	Authorize func(m *nats.Msg) (pub string, tier int, werr *wire.Error)
	// Encoders are the node's streams, one per --media entry.
	Encoders []*Encoder
	// Engine terminates the direct path; nil: offers are refused (503)
	// and only the relay serves (the gateway's engine then).
	Engine *Engine
	// Sessions limits the direct path's sessions.
	Sessions SessionOptions
	// UDPPort and Addrs go into the list: where the direct path listens.
	UDPPort int
	Addrs   []string
	Logger  *slog.Logger
}

// Service answers a node's media subjects: the stream list, WHEP offers
// and their sessions (the direct path), and relay leases.
type Service struct {
	opts     ServiceOptions
	log      *slog.Logger
	enc      map[string]*Encoder
	relays   map[string]*RelayPublisher
	sessions *Sessions // nil without an engine

	mu     sync.Mutex
	owners map[string]sessionOwner // direct session id -> who opened it
	subs   []*nats.Subscription
	closed bool
	wg     sync.WaitGroup
}

type sessionOwner struct{ pub, stream string }

// NewService checks opts and builds the Service; Start subscribes.
func NewService(opts ServiceOptions) (*Service, error) {
	switch {
	case opts.Conn == nil:
		return nil, errors.New("media service: no connection")
	case opts.Chevron.IsZero():
		return nil, errors.New("media service: the node has no chevron")
	case opts.Signer == nil || opts.Authorize == nil:
		return nil, errors.New("media service: no signer or no authorizer")
	}
	log := opts.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	s := &Service{opts: opts, log: log, enc: map[string]*Encoder{}, relays: map[string]*RelayPublisher{}, owners: map[string]sessionOwner{}}
	for _, e := range opts.Encoders {
		name := e.Spec().Name
		if _, dup := s.enc[name]; dup {
			return nil, fmt.Errorf("media service: stream %q twice", name)
		}
		s.enc[name] = e
		s.relays[name] = NewRelayPublisher(opts.Conn, opts.Chevron, e)
	}
	if opts.Engine != nil {
		so := opts.Sessions
		prev := so.OnChange
		so.OnChange = func() {
			s.forgetClosed()
			if prev != nil {
				prev()
			}
		}
		s.sessions = NewSessions(opts.Engine, so)
	}
	return s, nil
}

// Start subscribes to the node's media subjects.
func (s *Service) Start() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, subj := range subjects.MediaSubscriptions(s.opts.Chevron) {
		sub, err := s.opts.Conn.Subscribe(subj, s.dispatch)
		if err != nil {
			for _, o := range s.subs {
				_ = o.Unsubscribe()
			}
			s.subs = nil
			return fmt.Errorf("media service: subscribe %s: %w", subj, err)
		}
		s.subs = append(s.subs, sub)
	}
	return nil
}

// Close stops answering, ends every session and relay, and stops the
// encoders.
func (s *Service) Close() {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return
	}
	s.closed = true
	for _, sub := range s.subs {
		_ = sub.Unsubscribe()
	}
	s.subs = nil
	s.mu.Unlock()
	s.wg.Wait()
	if s.sessions != nil {
		s.sessions.Close()
	}
	for _, r := range s.relays {
		r.Close()
	}
	for _, e := range s.enc {
		e.Close()
	}
}

// List is this node's stream list, as rn.<chevron>.media.list answers.
func (s *Service) List() MediaList {
	out := MediaList{Chevron: s.opts.Chevron.String(), Addrs: s.opts.Addrs, UDPPort: s.opts.UDPPort, Streams: []StreamInfo{}}
	if s.opts.Engine == nil {
		out.UDPPort = 0
	}
	for _, e := range s.opts.Encoders {
		si := e.Info()
		si.Chevron = out.Chevron
		if s.sessions != nil {
			si.Viewers = s.sessions.Viewers(si.Stream)
		}
		si.Viewers += s.relays[si.Stream].Leases()
		out.Streams = append(out.Streams, si)
	}
	return out
}

// Sessions are the direct path's sessions (nil without an engine).
func (s *Service) Sessions() *Sessions { return s.sessions }

// dispatch runs each request in its own goroutine: an offer blocks while
// the engine gathers and the encoder starts.
func (s *Service) dispatch(m *nats.Msg) {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return
	}
	s.wg.Add(1)
	s.mu.Unlock()
	go func() {
		defer s.wg.Done()
		s.handle(m)
	}()
}

// route is what a subject under rn.<chevron>.media asks.
type route struct {
	kind    string // "list", "whep", "session", "relay"
	stream  string
	session string
}

// parseRoute reads the tokens after rn.<chevron>.media.
func parseRoute(c subjects.Chevron, subj string) (route, error) {
	pre := subjects.Root + "." + c.String() + ".media."
	rest, ok := strings.CutPrefix(subj, pre)
	if !ok {
		return route{}, fmt.Errorf("subject %q is not under %s", clipStr(subj, 128), pre)
	}
	t := strings.Split(rest, ".")
	switch {
	case len(t) == 1 && t[0] == "list":
		return route{kind: "list"}, nil
	case len(t) == 2 && t[1] == "whep":
		return route{kind: "whep", stream: t[0]}, checkStream(t[0])
	case len(t) == 3 && t[1] == "whep":
		if err := checkStream(t[0]); err != nil {
			return route{}, err
		}
		if !validSession(t[2]) {
			return route{}, fmt.Errorf("session %q: want 32 lowercase hex characters", clipStr(t[2], 64))
		}
		return route{kind: "session", stream: t[0], session: t[2]}, nil
	case len(t) == 2 && t[1] == "relay":
		return route{kind: "relay", stream: t[0]}, checkStream(t[0])
	}
	return route{}, fmt.Errorf("subject %q: not a media request", clipStr(subj, 128))
}

func checkStream(name string) error { return checkName(name) }

func validSession(id string) bool {
	if len(id) != 32 {
		return false
	}
	for i := 0; i < len(id); i++ {
		c := id[i]
		if (c < '0' || c > '9') && (c < 'a' || c > 'f') {
			return false
		}
	}
	return true
}

func (s *Service) handle(m *nats.Msg) {
	if m.Reply == "" {
		return // nothing to answer to; a request without a reply does nothing
	}
	r, err := parseRoute(s.opts.Chevron, m.Subject)
	if err != nil {
		s.fail(m, &Error{Status: http.StatusBadRequest, Code: wire.CodeBadRequest, Msg: err.Error()})
		return
	}
	if len(m.Data) > MaxRequest {
		s.fail(m, &Error{Status: http.StatusRequestEntityTooLarge, Code: wire.CodeBadRequest,
			Msg: fmt.Sprintf("media request of %d bytes: at most %d", len(m.Data), MaxRequest)})
		return
	}
	pub, tier, werr := s.opts.Authorize(m)
	if werr != nil {
		s.fail(m, &Error{Status: http.StatusForbidden, Code: werr.Code, Msg: werr.Msg})
		return
	}
	if pub == "" {
		return // a replay
	}
	if r.kind == "list" {
		s.answer(m, s.List(), nil)
		return
	}
	if tier < ViewTier {
		s.log.Info("media request refused", "key", pub, "tier", tier, "stream", r.stream)
		s.fail(m, &Error{Status: http.StatusForbidden, Code: wire.CodeDenied,
			Msg: fmt.Sprintf("watching %s on %s needs tier %d; key %s has tier %d", r.stream, s.opts.Chevron, ViewTier, pub, tier)})
		return
	}
	enc := s.enc[r.stream]
	if enc == nil {
		s.fail(m, s.unknownStream(r.stream))
		return
	}
	switch r.kind {
	case "relay":
		s.lease(m, pub, r.stream)
	case "whep":
		s.offer(m, pub, r.stream, enc)
	case "session":
		s.session(m, pub, r)
	}
}

func (s *Service) unknownStream(name string) *Error {
	var have []string
	for n := range s.enc {
		have = append(have, n)
	}
	slices.Sort(have)
	offers := "offers no streams (robonet up --media name=source)"
	if len(have) > 0 {
		offers = "offers " + strings.Join(have, ", ")
	}
	return &Error{Status: http.StatusNotFound, Code: wire.CodeNotFound,
		Msg: fmt.Sprintf("node %s has no stream %q: it %s", s.opts.Chevron, name, offers)}
}

// decode reads a WHEPRequest.
func decodeWHEP(data []byte) (WHEPRequest, *Error) {
	var req WHEPRequest
	if err := json.Unmarshal(data, &req); err != nil {
		return req, &Error{Status: http.StatusBadRequest, Code: wire.CodeBadRequest, Msg: "media request: " + err.Error()}
	}
	return req, nil
}

func (s *Service) offer(m *nats.Msg, pub, stream string, enc *Encoder) {
	req, e := decodeWHEP(m.Data)
	if e != nil {
		s.fail(m, e)
		return
	}
	switch {
	case req.Method != http.MethodPost:
		s.fail(m, &Error{Status: http.StatusMethodNotAllowed, Code: wire.CodeBadRequest, Msg: fmt.Sprintf("method %q on a WHEP endpoint: want POST", clipStr(req.Method, 16))})
		return
	case !isSDP(req.ContentType):
		s.fail(m, &Error{Status: http.StatusUnsupportedMediaType, Code: wire.CodeBadRequest, Msg: fmt.Sprintf("content type %q: a WHEP offer is application/sdp", clipStr(req.ContentType, 64))})
		return
	case s.sessions == nil:
		s.fail(m, &Error{Status: http.StatusServiceUnavailable, Code: codeNoDirect,
			Msg: fmt.Sprintf("node %s takes no direct WebRTC sessions (no UDP port: robonet up --media-udp): watch it through a gateway's relay", s.opts.Chevron)})
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), offerTimeout)
	defer cancel()
	ans, err := s.sessions.Offer(ctx, stream, enc, req.Body)
	if err != nil {
		s.fail(m, asError(err))
		return
	}
	s.mu.Lock()
	s.owners[ans.Session] = sessionOwner{pub: pub, stream: stream}
	s.mu.Unlock()
	s.log.Info("media session", "stream", stream, "session", ans.Session, "key", pub, "path", "direct")
	s.answer(m, WHEPReply{Status: http.StatusCreated, Session: ans.Session, ETag: ans.ETag, ContentType: "application/sdp", Body: ans.SDP}, nil)
}

// session answers PATCH and DELETE. Only the key that opened a session
// may change it: to anyone else it does not exist.
func (s *Service) session(m *nats.Msg, pub string, r route) {
	req, e := decodeWHEP(m.Data)
	if e != nil {
		s.fail(m, e)
		return
	}
	s.mu.Lock()
	o, ok := s.owners[r.session]
	s.mu.Unlock()
	if !ok || o.pub != pub || o.stream != r.stream || s.sessions == nil {
		s.fail(m, &Error{Status: http.StatusNotFound, Code: wire.CodeNotFound, Msg: fmt.Sprintf("no session %s of stream %s on %s (ended, or never opened by this key)", r.session, r.stream, s.opts.Chevron)})
		return
	}
	switch req.Method {
	case http.MethodPatch:
		if err := s.sessions.Patch(r.session, req.IfMatch, req.ContentType, []byte(req.Body)); err != nil {
			s.fail(m, asError(err))
			return
		}
		s.answer(m, WHEPReply{Status: http.StatusNoContent}, nil)
	case http.MethodDelete:
		err := s.sessions.Delete(r.session)
		s.mu.Lock()
		delete(s.owners, r.session)
		s.mu.Unlock()
		if err != nil {
			s.fail(m, asError(err))
			return
		}
		s.answer(m, WHEPReply{Status: http.StatusOK}, nil)
	default:
		s.fail(m, &Error{Status: http.StatusMethodNotAllowed, Code: wire.CodeBadRequest, Msg: fmt.Sprintf("method %q on a WHEP session: want PATCH or DELETE", clipStr(req.Method, 16))})
	}
}

// lease starts or renews pub's relay of stream. The first lease of a run
// waits for the encoder's first packet, so a failing camera is said at
// once, not as a relay that never sends.
func (s *Service) lease(m *nats.Msg, pub, stream string) {
	enc, rp := s.enc[stream], s.relays[stream]
	fresh := rp.Lease(pub)
	if fresh {
		ctx, cancel := context.WithTimeout(context.Background(), offerTimeout)
		defer cancel()
		if err := enc.Ready(ctx); err != nil {
			s.fail(m, asError(err))
			return
		}
		s.log.Info("media relay", "stream", stream, "key", pub)
	}
	s.answer(m, WHEPReply{Status: http.StatusOK}, nil)
}

// forgetClosed drops owners of sessions that ended on their own.
func (s *Service) forgetClosed() {
	if s.sessions == nil {
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	for id := range s.owners {
		if !s.sessions.Has(id) {
			delete(s.owners, id)
		}
	}
}

// asError makes any error a *Error (500 for one that is not).
func asError(err error) *Error {
	var e *Error
	if errors.As(err, &e) {
		return e
	}
	if errors.Is(err, context.DeadlineExceeded) {
		return &Error{Status: http.StatusGatewayTimeout, Code: wire.CodeTimeout, Msg: "the node did not finish the offer in time: " + err.Error()}
	}
	return &Error{Status: http.StatusInternalServerError, Code: wire.CodeInternal, Msg: err.Error()}
}

func (s *Service) fail(m *nats.Msg, e *Error) {
	s.answer(m, WHEPReply{Status: e.Status, RetryAfter: e.RetryAfter, Error: e.Msg, Code: e.Code}, &wire.Error{Code: e.Code, Msg: e.Msg})
}

// answer sends a signed wire.Reply with data (and werr, if any).
func (s *Service) answer(m *nats.Msg, data any, werr *wire.Error) {
	raw, err := json.Marshal(data)
	if err != nil {
		s.log.Warn("media: encode an answer", "err", err)
		return
	}
	out, _ := json.Marshal(wire.Reply{Data: raw, Error: werr})
	msg := &nats.Msg{Subject: m.Reply, Data: out}
	if err := s.opts.Signer.SignMsg(msg); err != nil {
		s.log.Warn("media: sign an answer", "err", err)
		return
	}
	if err := s.opts.Conn.PublishMsg(msg); err != nil {
		s.log.Debug("media: answer", "err", err)
	}
}

func isSDP(ct string) bool {
	mt, _, _ := strings.Cut(ct, ";")
	return strings.EqualFold(strings.TrimSpace(mt), "application/sdp")
}

func clipStr(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "…"
}

package media

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/pion/webrtc/v4"
	"github.com/robonet-mesh/robonet/wire"
)

// Content types of WHEP bodies.
const (
	ContentTypeSDP     = "application/sdp"
	ContentTypeSDPFrag = "application/trickle-ice-sdpfrag"
)

// Defaults of SessionOptions.
const (
	DefaultMaxSessions    = 64
	DefaultConnectTimeout = 15 * time.Second
	// disconnectedGrace is how long a session may stay ICE-disconnected
	// before it is closed (its viewer is gone without a DELETE).
	disconnectedGrace = 10 * time.Second
)

// SessionOptions bounds a Sessions.
type SessionOptions struct {
	MaxSessions    int           // 0 = 64; beyond: *Error 503 Retry-After 5
	ConnectTimeout time.Duration // 0 = 15 s: a session whose ICE has not connected by then is closed and forgotten
	OnChange       func()        // called (not under a lock) when a session is added or removed
}

// Answer is a WHEP 201: the session's id, its ETag and the SDP answer.
type Answer struct {
	Session string // 32 lowercase hex chars from crypto/rand (unguessable; a NATS subject token)
	ETag    string // quoted ICE ufrag, e.g. "\"abcd\""
	SDP     string
}

// Sessions are the WHEP sessions of one Engine: one peer connection each,
// all sending shared tracks.
type Sessions struct {
	e     *Engine
	opts  SessionOptions
	grace time.Duration // disconnectedGrace; shorter in tests

	mu      sync.Mutex // guards the fields below; never held across pion calls
	byID    map[string]*session
	pending int // offers being answered, counted against MaxSessions
	closed  bool
}

// session is one viewer's peer connection.
type session struct {
	id, stream string
	ufrag      string // ours: the ETag
	peerUfrag  string // the viewer's, from its offer: what its PATCHes carry (RFC 8840)
	etag       string
	pc         *webrtc.PeerConnection
	release    func()

	mu        sync.Mutex // guards the fields below
	connected bool
	reaper    *time.Timer // the never-connected or disconnected-for-long timer
	done      bool
}

// NewSessions returns an empty set of sessions on e.
func NewSessions(e *Engine, opts SessionOptions) *Sessions {
	if opts.MaxSessions <= 0 {
		opts.MaxSessions = DefaultMaxSessions
	}
	if opts.ConnectTimeout <= 0 {
		opts.ConnectTimeout = DefaultConnectTimeout
	}
	return &Sessions{e: e, opts: opts, grace: disconnectedGrace, byID: map[string]*session{}}
}

// Offer takes a WHEP POST body (application/sdp, recvonly video), binds
// src's track, gathers every candidate (WHEP servers cannot trickle), and
// returns the answer. It Acquires src for the session's life and waits
// (bounded by ctx) for src.Ready in parallel with the gathering; a src
// failure closes the session and returns the src's *Error.
func (s *Sessions) Offer(ctx context.Context, stream string, src Source, offer string) (Answer, error) {
	if err := checkOffer(offer); err != nil {
		return Answer{}, err
	}
	s.mu.Lock()
	switch {
	case s.closed:
		s.mu.Unlock()
		return Answer{}, &Error{Status: http.StatusServiceUnavailable, Code: "closed", Msg: "the media engine is shutting down; try again later", RetryAfter: 5}
	case len(s.byID)+s.pending >= s.opts.MaxSessions:
		s.mu.Unlock()
		return Answer{}, &Error{Status: http.StatusServiceUnavailable, Code: "too_many_sessions",
			Msg: fmt.Sprintf("this node already serves %d media sessions, its limit; try again later", s.opts.MaxSessions), RetryAfter: 5}
	}
	s.pending++
	s.mu.Unlock()
	defer func() {
		s.mu.Lock()
		s.pending--
		s.mu.Unlock()
	}()

	track := src.Track()
	if track == nil {
		return Answer{}, &Error{Status: http.StatusServiceUnavailable, Code: wire.CodeUnavailable, Msg: "the stream " + stream + " has no track to send", RetryAfter: 5}
	}
	pc, err := s.e.api.NewPeerConnection(webrtc.Configuration{
		BundlePolicy:  webrtc.BundlePolicyMaxBundle,
		RTCPMuxPolicy: webrtc.RTCPMuxPolicyRequire,
	})
	if err != nil {
		return Answer{}, &Error{Status: http.StatusInternalServerError, Code: wire.CodeInternal, Msg: "new peer connection: " + err.Error()}
	}
	sess := &session{id: newSessionID(), stream: stream, pc: pc}
	var once sync.Once
	rel := src.Acquire()
	sess.release = func() { once.Do(rel) }
	fail := func(err error) (Answer, error) {
		sess.close()
		return Answer{}, err
	}

	readyCtx, cancelReady := context.WithCancel(ctx)
	defer cancelReady()
	ready := make(chan error, 1)
	go func() { ready <- src.Ready(readyCtx) }()

	sender, err := pc.AddTrack(track)
	if err != nil {
		return fail(&Error{Status: http.StatusInternalServerError, Code: wire.CodeInternal, Msg: "bind the stream's track: " + err.Error()})
	}
	go drainRTCP(sender)
	pc.OnConnectionStateChange(func(st webrtc.PeerConnectionState) { s.stateChanged(sess, st) })
	sess.mu.Lock()
	sess.reaper = time.AfterFunc(s.opts.ConnectTimeout, func() { s.reap(sess, "never connected") })
	sess.mu.Unlock()

	if err := negotiate(ctx, pc, offer, ready); err != nil {
		return fail(err)
	}
	local := pc.LocalDescription()
	if local == nil {
		return fail(&Error{Status: http.StatusInternalServerError, Code: wire.CodeInternal, Msg: "no local description after gathering"})
	}
	sess.ufrag = sdpUfrag(local.SDP)
	sess.peerUfrag = sdpUfrag(offer)
	sess.etag = `"` + sess.ufrag + `"`

	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return fail(&Error{Status: http.StatusServiceUnavailable, Code: "closed", Msg: "the media engine is shutting down; try again later", RetryAfter: 5})
	}
	s.byID[sess.id] = sess
	s.mu.Unlock()
	// The peer connection may have failed while we gathered; its callback
	// found no registered session then.
	if st := pc.ConnectionState(); st == webrtc.PeerConnectionStateFailed || st == webrtc.PeerConnectionStateClosed {
		s.mu.Lock()
		delete(s.byID, sess.id) // never announced: no OnChange
		s.mu.Unlock()
		return fail(&Error{Status: http.StatusServiceUnavailable, Code: wire.CodeUnavailable, Msg: "the peer connection failed while answering", RetryAfter: 1})
	}
	s.changed()
	return Answer{Session: sess.id, ETag: sess.etag, SDP: s.e.withTCPCandidates(local.SDP)}, nil
}

// negotiate answers offer on pc, waits for every candidate (WHEP servers
// cannot trickle) and for the source's readiness, all bounded by ctx.
func negotiate(ctx context.Context, pc *webrtc.PeerConnection, offer string, ready <-chan error) *Error {
	if err := pc.SetRemoteDescription(webrtc.SessionDescription{Type: webrtc.SDPTypeOffer, SDP: offer}); err != nil {
		return &Error{Status: http.StatusBadRequest, Code: wire.CodeBadRequest, Msg: "the SDP offer was refused: " + err.Error()}
	}
	answer, err := pc.CreateAnswer(nil)
	if err != nil {
		return &Error{Status: http.StatusBadRequest, Code: wire.CodeBadRequest, Msg: "no answer to this offer: " + err.Error()}
	}
	if !sendsVideo(answer.SDP) {
		return &Error{Status: http.StatusBadRequest, Code: "unsupported_codec",
			Msg: "the offer has no video section accepting H.264 constrained baseline (packetization-mode=1) to receive"}
	}
	gathered := webrtc.GatheringCompletePromise(pc)
	if err := pc.SetLocalDescription(answer); err != nil {
		return &Error{Status: http.StatusInternalServerError, Code: wire.CodeInternal, Msg: "set the answer: " + err.Error()}
	}
	select {
	case <-gathered:
	case <-ctx.Done():
		return ctxError(ctx, "gathering ICE candidates")
	}
	select {
	case err := <-ready:
		if err != nil {
			var me *Error
			if !errors.As(err, &me) {
				me = ctxError(ctx, "waiting for the stream")
				if ctx.Err() == nil {
					me = &Error{Status: http.StatusServiceUnavailable, Code: wire.CodeUnavailable, Msg: "the stream failed: " + err.Error(), RetryAfter: 5}
				}
			}
			return me
		}
	case <-ctx.Done():
		return ctxError(ctx, "waiting for the stream's first packet")
	}
	return nil
}

// ctxError is the *Error for a context that ended during what.
func ctxError(ctx context.Context, what string) *Error {
	if errors.Is(ctx.Err(), context.DeadlineExceeded) {
		return &Error{Status: http.StatusGatewayTimeout, Code: wire.CodeTimeout, Msg: "timed out " + what}
	}
	return &Error{Status: http.StatusServiceUnavailable, Code: wire.CodeCanceled, Msg: "canceled while " + what, RetryAfter: 1}
}

// checkOffer refuses what cannot be a WHEP offer before pion parses it.
func checkOffer(offer string) error {
	switch {
	case offer == "":
		return &Error{Status: http.StatusBadRequest, Code: wire.CodeBadRequest, Msg: "empty SDP offer"}
	case len(offer) > MaxWHEPBody:
		return &Error{Status: http.StatusRequestEntityTooLarge, Code: wire.CodeBadRequest, Msg: fmt.Sprintf("SDP offer of %d bytes: the limit is %d", len(offer), MaxWHEPBody)}
	case !strings.HasPrefix(offer, "v=0"):
		return &Error{Status: http.StatusBadRequest, Code: wire.CodeBadRequest, Msg: "the body is not an SDP offer (it does not start with v=0)"}
	case !strings.Contains(offer, "\nm=video "):
		return &Error{Status: http.StatusBadRequest, Code: wire.CodeBadRequest, Msg: "the SDP offer has no video m= section"}
	}
	return nil
}

// sendsVideo reports whether an answer has a video section that sends.
func sendsVideo(answer string) bool {
	inVideo := false
	for _, line := range strings.Split(answer, "\n") {
		line = strings.TrimRight(line, "\r")
		if strings.HasPrefix(line, "m=") {
			f := strings.Fields(line)
			inVideo = len(f) >= 2 && f[0] == "m=video" && f[1] != "0"
			continue
		}
		if inVideo && (line == "a=sendonly" || line == "a=sendrecv") {
			return true
		}
	}
	return false
}

// sdpUfrag is the first a=ice-ufrag of an SDP.
func sdpUfrag(sdp string) string {
	for _, line := range strings.Split(sdp, "\n") {
		if v, ok := strings.CutPrefix(strings.TrimRight(line, "\r"), "a=ice-ufrag:"); ok {
			return v
		}
	}
	return ""
}

func newSessionID() string {
	var b [16]byte
	_, _ = rand.Read(b[:]) // crypto/rand.Read never fails (Go ≥ 1.24)
	return hex.EncodeToString(b[:])
}

// drainRTCP reads the sender's RTCP so the interceptors (NACK responder,
// reports) see it; it ends when the peer connection closes.
func drainRTCP(sender *webrtc.RTPSender) {
	buf := make([]byte, 1500)
	for {
		if _, _, err := sender.Read(buf); err != nil {
			return
		}
	}
}

// stateChanged runs in a goroutine of its own (pion starts one per call).
func (s *Sessions) stateChanged(sess *session, st webrtc.PeerConnectionState) {
	if st == webrtc.PeerConnectionStateFailed || st == webrtc.PeerConnectionStateClosed {
		s.remove(sess)
		return
	}
	sess.mu.Lock()
	defer sess.mu.Unlock()
	if sess.done {
		return
	}
	switch st {
	case webrtc.PeerConnectionStateConnected:
		sess.connected = true
		if sess.reaper != nil {
			sess.reaper.Stop()
			sess.reaper = nil
		}
	case webrtc.PeerConnectionStateDisconnected:
		if sess.reaper == nil {
			sess.reaper = time.AfterFunc(s.grace, func() { s.reap(sess, "disconnected for long") })
		}
	}
}

// reap closes a session its timer found not connected.
func (s *Sessions) reap(sess *session, why string) {
	sess.mu.Lock()
	keep := sess.done || (why == "never connected" && sess.connected) ||
		(why != "never connected" && sess.pc.ConnectionState() == webrtc.PeerConnectionStateConnected)
	if !keep {
		sess.reaper = nil
	}
	sess.mu.Unlock()
	if keep {
		return
	}
	s.e.log.Info("media session closed", "session", sess.id, "stream", sess.stream, "why", why)
	s.remove(sess)
}

// remove forgets sess and closes it; OnChange runs if it was registered.
func (s *Sessions) remove(sess *session) {
	s.mu.Lock()
	_, known := s.byID[sess.id]
	if known && s.byID[sess.id] == sess {
		delete(s.byID, sess.id)
	}
	s.mu.Unlock()
	sess.close()
	if known {
		s.changed()
	}
}

func (s *Sessions) changed() {
	if s.opts.OnChange != nil {
		s.opts.OnChange()
	}
}

// close stops the session's timer, closes its peer connection and releases
// its source; idempotent.
func (sess *session) close() {
	sess.mu.Lock()
	if sess.done {
		sess.mu.Unlock()
		return
	}
	sess.done = true
	if sess.reaper != nil {
		sess.reaper.Stop()
		sess.reaper = nil
	}
	sess.mu.Unlock()
	_ = sess.pc.Close()
	sess.release()
}

func (s *Sessions) get(id string) (*session, error) {
	s.mu.Lock()
	sess := s.byID[id]
	s.mu.Unlock()
	if sess == nil {
		return nil, &Error{Status: http.StatusNotFound, Code: wire.CodeNotFound, Msg: fmt.Sprintf("no media session %q (it ended, or never existed)", clip(id, 40))}
	}
	return sess, nil
}

// Patch applies a WHEP PATCH: an unknown session is 404; contentType must be
// application/trickle-ice-sdpfrag (else 415); a missing ifMatch is 428, one
// that is neither the session's ETag nor "*" is 412; an ICE restart (a new
// ice-ufrag) is 422 (unsupported); the fragment's candidates are added. nil
// means 204.
func (s *Sessions) Patch(id, ifMatch, contentType string, body []byte) error {
	sess, err := s.get(id)
	if err != nil {
		return err
	}
	if mt, _, _ := strings.Cut(contentType, ";"); !strings.EqualFold(strings.TrimSpace(mt), ContentTypeSDPFrag) {
		return &Error{Status: http.StatusUnsupportedMediaType, Code: wire.CodeBadRequest,
			Msg: fmt.Sprintf("content type %q: a WHEP PATCH is %s", clip(contentType, 64), ContentTypeSDPFrag)}
	}
	ifMatch = strings.TrimSpace(ifMatch)
	switch {
	case ifMatch == "":
		return &Error{Status: http.StatusPreconditionRequired, Code: wire.CodeBadRequest, Msg: "a WHEP PATCH needs If-Match with the session's ETag"}
	case ifMatch != "*" && ifMatch != sess.etag:
		return &Error{Status: http.StatusPreconditionFailed, Code: wire.CodeBadRequest,
			Msg: fmt.Sprintf("If-Match %q is not this session's ETag (the one its POST answered with)", clip(ifMatch, 64))}
	}
	ufrag, _, cands, err := ParseSDPFrag(body)
	if err != nil {
		return &Error{Status: http.StatusBadRequest, Code: wire.CodeBadRequest, Msg: err.Error()}
	}
	// A trickle fragment carries the viewer's own credentials (RFC 8840);
	// new ones are an ICE restart.
	if ufrag != "" && ufrag != sess.peerUfrag || ifMatch == "*" && ufrag == "" {
		return &Error{Status: http.StatusUnprocessableEntity, Code: "ice_restart_unsupported",
			Msg: "ICE restart is not supported: open a new session (POST) instead"}
	}
	for _, c := range cands {
		if err := sess.pc.AddICECandidate(webrtc.ICECandidateInit{Candidate: c}); err != nil {
			return &Error{Status: http.StatusBadRequest, Code: wire.CodeBadRequest, Msg: fmt.Sprintf("candidate %q: %v", clip(c, 80), err)}
		}
	}
	return nil
}

// Delete ends a session: 404 *Error when unknown.
func (s *Sessions) Delete(id string) error {
	sess, err := s.get(id)
	if err != nil {
		return err
	}
	s.remove(sess)
	return nil
}

// Viewers is the number of open sessions of stream.
func (s *Sessions) Viewers(stream string) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	n := 0
	for _, sess := range s.byID {
		if sess.stream == stream {
			n++
		}
	}
	return n
}

// Count is the number of open sessions.
func (s *Sessions) Count() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.byID)
}

// Close closes every session and refuses new offers.
func (s *Sessions) Close() {
	s.mu.Lock()
	s.closed = true
	all := make([]*session, 0, len(s.byID))
	for _, sess := range s.byID {
		all = append(all, sess)
	}
	s.mu.Unlock()
	for _, sess := range all {
		s.remove(sess)
	}
}

func clip(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "…"
}

// Limits of a trickle-ICE fragment.
const (
	maxFragLine       = 1024
	maxFragCandidates = 64
)

// ParseSDPFrag parses an RFC 8840 trickle-ICE SDP fragment (a WHEP PATCH
// body): a=ice-ufrag, a=ice-pwd, a=candidate lines (returned as
// "candidate:…"), m= and a=mid lines; a=ice-options, a=group and
// a=end-of-candidates are accepted and ignored. Every line must be an SDP
// line; fragments over MaxWHEPBody, lines over 1024 bytes, more than 64
// candidates or two different ufrags are refused.
func ParseSDPFrag(body []byte) (ufrag, pwd string, candidates []string, err error) {
	if len(body) > MaxWHEPBody {
		return "", "", nil, fmt.Errorf("sdpfrag of %d bytes: the limit is %d", len(body), MaxWHEPBody)
	}
	for i, line := range strings.Split(string(body), "\n") {
		line = strings.TrimSuffix(line, "\r")
		n := i + 1
		if line == "" {
			continue
		}
		if len(line) > maxFragLine {
			return "", "", nil, fmt.Errorf("sdpfrag line %d: %d bytes, the limit is %d", n, len(line), maxFragLine)
		}
		for _, r := range line {
			if r < 0x20 || r > 0x7e {
				return "", "", nil, fmt.Errorf("sdpfrag line %d: character %q is not printable ASCII", n, r)
			}
		}
		if len(line) < 2 || line[1] != '=' || line[0] < 'a' || line[0] > 'z' {
			return "", "", nil, fmt.Errorf("sdpfrag line %d %q: not an SDP line (x=value)", n, clip(line, 40))
		}
		key, val, _ := strings.Cut(line[2:], ":")
		if line[0] != 'a' {
			continue // m=, c=, … carry nothing the session needs (max-bundle)
		}
		switch key {
		case "ice-ufrag":
			if err := checkICEChars(val, 4, 256); err != nil {
				return "", "", nil, fmt.Errorf("sdpfrag line %d: ice-ufrag %q: %w", n, clip(val, 40), err)
			}
			if ufrag != "" && ufrag != val {
				return "", "", nil, fmt.Errorf("sdpfrag line %d: a second ice-ufrag %q (first %q)", n, clip(val, 40), ufrag)
			}
			ufrag = val
		case "ice-pwd":
			if err := checkICEChars(val, 22, 256); err != nil {
				return "", "", nil, fmt.Errorf("sdpfrag line %d: ice-pwd: %w", n, err)
			}
			if pwd != "" && pwd != val {
				return "", "", nil, fmt.Errorf("sdpfrag line %d: a second, different ice-pwd", n)
			}
			pwd = val
		case "candidate":
			if len(candidates) == maxFragCandidates {
				return "", "", nil, fmt.Errorf("sdpfrag: more than %d candidates", maxFragCandidates)
			}
			if f := strings.Fields(val); len(f) < 8 || f[6] != "typ" {
				return "", "", nil, fmt.Errorf("sdpfrag line %d: candidate %q: want \"<foundation> <component> <transport> <priority> <address> <port> typ <type> …\"", n, clip(val, 60))
			}
			candidates = append(candidates, "candidate:"+val)
		case "mid":
			if val == "" || len(val) > 32 {
				return "", "", nil, fmt.Errorf("sdpfrag line %d: mid %q: want 1 to 32 characters", n, clip(val, 40))
			}
		}
	}
	return ufrag, pwd, candidates, nil
}

// checkICEChars checks an ice-ufrag or ice-pwd: min..max ice-chars
// (ALPHA / DIGIT / "+" / "/", RFC 8839).
func checkICEChars(v string, min, max int) error {
	if len(v) < min || len(v) > max {
		return fmt.Errorf("%d characters, want %d to %d", len(v), min, max)
	}
	for _, r := range v {
		if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '+' || r == '/') {
			return fmt.Errorf("character %q is not an ice-char", r)
		}
	}
	return nil
}

// Has reports whether session id is open.
func (s *Sessions) Has(id string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.byID[id] != nil
}

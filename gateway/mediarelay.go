package gateway

import (
	"context"
	"fmt"
	"net/http"
	"slices"
	"sync"

	"github.com/robonet-mesh/robonet/media"
	"github.com/robonet-mesh/robonet/subjects"
)

// The relay path: the gateway terminates WebRTC with its own engine and
// feeds every relay viewer of a stream from one media.RelaySource, whose
// RTP comes over NATS while a lease lives on the camera's node.

// offerRelay answers the offer with the gateway's own peer connection fed
// by the stream's relay. The viewer leases the relay first, as
// themselves: the camera's node checks every viewer, and a failure (no
// such stream, an encoder that cannot start, the node offline) is said
// now rather than as a video that never comes.
func (m *Media) offerRelay(ctx context.Context, p *Principal, t whepTarget, offer string) (media.Answer, error) {
	if err := m.caller(p).Lease(ctx, t.chev, t.stream); err != nil {
		return media.Answer{}, err
	}
	v, err := m.join(p, t)
	if err != nil {
		return media.Answer{}, err
	}
	src := &viewerSource{RelaySource: v.rel.src, ended: func() { m.leave(v) }}
	ans, err := m.sessions.Offer(ctx, relayKey(t.chev, t.stream), src, offer)
	if err != nil {
		m.leave(v)
		return media.Answer{}, err
	}
	m.mu.Lock()
	if !v.gone {
		v.id = ans.Session
		m.viewers[ans.Session] = v
	}
	m.mu.Unlock()
	ans.Session = relayPrefix + ans.Session
	return ans, nil
}

// caller sends media requests as p, checking answers against the node
// keys of this gateway's node's registry (no registry query per request:
// a relay renews every 2 s).
func (m *Media) caller(p *Principal) media.Caller {
	return media.Caller{Client: p.Client, Key: m.g.opts.Node.KeyOf}
}

func relayKey(chev subjects.Chevron, stream string) string { return chev.String() + "/" + stream }

// join adds p as a viewer of the stream's relay, making the relay when it
// is the first.
func (m *Media) join(p *Principal, t whepTarget) (*relayViewer, error) {
	nc := m.g.conn()
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.closed || nc == nil {
		return nil, &media.Error{Status: http.StatusServiceUnavailable, Code: CodeUnavailable, RetryAfter: retryAfterUnavailable, Msg: "the gateway is shutting down"}
	}
	key := relayKey(t.chev, t.stream)
	rl := m.relays[key]
	if rl == nil {
		rl = &relay{chev: t.chev, stream: t.stream}
		rl.src = media.NewRelaySource(nc, t.chev, t.stream, func(ctx context.Context) error { return m.renew(ctx, rl) })
		m.relays[key] = rl
	}
	v := &relayViewer{p: p, rel: rl}
	rl.viewers = append(rl.viewers, v)
	return v, nil
}

// leave forgets a relay viewer whose session ended (or never started).
func (m *Media) leave(v *relayViewer) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if v.gone {
		return
	}
	v.gone = true
	if v.id != "" {
		delete(m.viewers, v.id)
	}
	rl := v.rel
	if i := slices.Index(rl.viewers, v); i >= 0 {
		rl.viewers = slices.Delete(rl.viewers, i, i+1)
	}
}

// renew renews the relay's lease as its first viewer whose login is still
// good (the node renews per key: one lease per gateway viewer, not per
// packet). With none left the lease lapses on the node.
func (m *Media) renew(ctx context.Context, rl *relay) error {
	m.mu.Lock()
	ps := make([]*Principal, 0, len(rl.viewers))
	for _, v := range rl.viewers {
		ps = append(ps, v.p)
	}
	m.mu.Unlock()
	for _, p := range ps {
		if m.g.auth.alive(p) {
			return m.caller(p).Lease(ctx, rl.chev, rl.stream)
		}
	}
	return &media.Error{Status: http.StatusConflict, Code: "no_viewer", Msg: "no viewer with a live login watches " + rl.stream + " on " + rl.chev.String()}
}

// viewerSource is one relay viewer's view of the shared relay: it tells
// the gateway when the session released it (the session ended).
type viewerSource struct {
	*media.RelaySource
	ended func()
}

func (s *viewerSource) Acquire() (release func()) {
	rel := s.RelaySource.Acquire()
	var once sync.Once
	return func() {
		once.Do(func() {
			rel()
			s.ended()
		})
	}
}

// relaySession is the relay viewer of session id, if p opened it: to
// anyone else it does not exist.
func (m *Media) relaySession(id string, p *Principal, t whepTarget) (*relayViewer, error) {
	m.mu.Lock()
	v, ok := m.viewers[id]
	m.mu.Unlock()
	if !ok || v.p.User != p.User || v.rel.chev != t.chev || v.rel.stream != t.stream {
		return nil, &media.Error{Status: http.StatusNotFound, Code: CodeNotFound,
			Msg: fmt.Sprintf("no session %s%s of stream %s on %s (ended, or opened by someone else)", relayPrefix, id, t.stream, t.chev)}
	}
	return v, nil
}

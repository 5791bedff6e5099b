package media

import (
	"context"
	"errors"
	"net/http"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/pion/webrtc/v4"
	"github.com/robonet-mesh/robonet/subjects"
	"github.com/robonet-mesh/robonet/wire"
)

// Relay lease timing: the gateway renews every RelayRenew; a lease not
// renewed lapses after RelayLease.
const (
	RelayRenew = 2 * time.Second
	RelayLease = 6 * time.Second
)

// rtpSource is what a RelayPublisher relays: the Encoder.
type rtpSource interface {
	Spec() Spec
	Acquire() (release func())
	OnRTP(f func(pkt []byte)) (cancel func())
}

// RelayPublisher is the camera node's side of the relay path: while at least
// one lease is alive it publishes every RTP packet of its source on
// rn.<chevron>.media.<stream>.rtp, one packet a message, unsigned (RTP is
// media; the lease request was signed).
type RelayPublisher struct {
	nc      *nats.Conn
	subject string
	src     rtpSource
	lease   time.Duration // RelayLease; shorter in tests

	mu      sync.Mutex // guards the fields below
	leases  map[string]time.Time
	timer   *time.Timer
	release func() // non-nil while publishing
	cancel  func()
	closed  bool
}

// NewRelayPublisher returns a publisher of src's packets; it publishes
// nothing until the first Lease.
func NewRelayPublisher(nc *nats.Conn, chevron subjects.Chevron, src rtpSource) *RelayPublisher {
	return &RelayPublisher{
		nc: nc, subject: subjects.MediaRTP(chevron, src.Spec().Name), src: src,
		lease: RelayLease, leases: map[string]time.Time{},
	}
}

// Lease starts or extends holder's lease (holder is the requester's key). It
// reports whether this lease started the publishing: no lease was alive
// before it. The source is Acquired while any lease lives.
func (p *RelayPublisher) Lease(holder string) (fresh bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		return false
	}
	p.leases[holder] = time.Now().Add(p.lease)
	if p.release != nil {
		return false
	}
	p.release = p.src.Acquire()
	p.cancel = p.src.OnRTP(func(pkt []byte) {
		_ = p.nc.Publish(p.subject, pkt) // a lost packet is a NACK's business
	})
	p.timer = time.AfterFunc(p.lease, p.expire)
	return true
}

// Leases is the number of holders whose lease is alive (the list counts
// each as a viewer: a gateway relaying to its browsers).
func (p *RelayPublisher) Leases() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	now, n := time.Now(), 0
	for _, until := range p.leases {
		if until.After(now) {
			n++
		}
	}
	return n
}

// Publishing reports whether a lease is alive.
func (p *RelayPublisher) Publishing() bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.release != nil
}

// expire drops lapsed leases and stops publishing when none is left.
func (p *RelayPublisher) expire() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.release == nil {
		return
	}
	now := time.Now()
	var next time.Time
	for h, until := range p.leases {
		if !until.After(now) {
			delete(p.leases, h)
		} else if next.IsZero() || until.Before(next) {
			next = until
		}
	}
	if next.IsZero() {
		p.stopLocked()
		return
	}
	p.timer = time.AfterFunc(next.Sub(now), p.expire)
}

func (p *RelayPublisher) stopLocked() {
	if p.timer != nil {
		p.timer.Stop()
		p.timer = nil
	}
	if p.release != nil {
		p.cancel()
		p.release()
		p.release, p.cancel = nil, nil
	}
	clear(p.leases)
}

// Close drops every lease and stops publishing; idempotent.
func (p *RelayPublisher) Close() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.closed = true
	p.stopLocked()
}

// RelaySource is the gateway's side of the relay path: a Source whose track
// is fed from rn.<chevron>.media.<stream>.rtp. Acquire subscribes and renews
// the node's lease every RelayRenew while acquired; after the last release
// it lingers DefaultLinger before it unsubscribes and stops renewing.
type RelaySource struct {
	nc      *nats.Conn
	subject string
	stream  string
	renew   func(ctx context.Context) error
	track   *webrtc.TrackLocalStaticRTP
	every   time.Duration // RelayRenew; shorter in tests
	linger  time.Duration // DefaultLinger; shorter in tests

	mu      sync.Mutex // guards the fields below
	refs    int
	run     *relayRun // nil when stopped
	lingerT *time.Timer
	closed  bool
}

// relayRun is one subscription with its renewing goroutine.
type relayRun struct {
	sub    *nats.Subscription
	stop   context.CancelFunc
	done   chan struct{} // the renew goroutine ended
	ready  chan struct{} // closed at the first packet
	failed chan struct{} // closed at renew's first error before the first packet
	err    error         // renew's error, set before failed is closed
	once   sync.Once     // closes ready
}

// hasFailed reports whether the run's first lease was refused before any packet.
func (run *relayRun) hasFailed() bool {
	select {
	case <-run.ready:
		return false
	default:
	}
	select {
	case <-run.failed:
		return true
	default:
		return false
	}
}

// NewRelaySource returns a stopped relay source of chevron's stream; renew
// sends one signed lease request (as the viewer) and returns the node's
// *Error.
func NewRelaySource(nc *nats.Conn, chevron subjects.Chevron, stream string, renew func(ctx context.Context) error) *RelaySource {
	track, err := newTrack(stream)
	if err != nil {
		// Only a codec without a MIME type fails; ours is a constant.
		panic("media: relay track: " + err.Error())
	}
	return &RelaySource{
		nc: nc, subject: subjects.MediaRTP(chevron, stream), stream: stream, renew: renew, track: track,
		every: RelayRenew, linger: DefaultLinger,
	}
}

// Track is the shared track every relay viewer of the stream is bound to.
func (r *RelaySource) Track() *webrtc.TrackLocalStaticRTP { return r.track }

// Acquire counts a viewer and starts the relay if it is stopped; release is
// idempotent.
func (r *RelaySource) Acquire() (release func()) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.refs++
	if r.lingerT != nil {
		r.lingerT.Stop()
		r.lingerT = nil
	}
	if r.run != nil && r.run.hasFailed() {
		r.stopLocked() // a new viewer asks the node again
	}
	if r.run == nil && !r.closed {
		r.start()
	}
	var once sync.Once
	return func() { once.Do(r.release) }
}

func (r *RelaySource) release() {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.refs--
	if r.refs > 0 || r.run == nil {
		return
	}
	r.lingerT = time.AfterFunc(r.linger, func() {
		r.mu.Lock()
		defer r.mu.Unlock()
		if r.refs == 0 {
			r.stopLocked()
		}
	})
}

// start subscribes and starts renewing; r.mu is held.
func (r *RelaySource) start() {
	ctx, stop := context.WithCancel(context.Background())
	run := &relayRun{stop: stop, done: make(chan struct{}), ready: make(chan struct{}), failed: make(chan struct{})}
	sub, err := r.nc.Subscribe(r.subject, func(m *nats.Msg) {
		if _, err := r.track.Write(m.Data); err == nil {
			run.once.Do(func() { close(run.ready) })
		}
	})
	if err != nil {
		run.err = &Error{Status: http.StatusServiceUnavailable, Code: wire.CodeUnavailable, Msg: "subscribe to the stream's RTP: " + err.Error(), RetryAfter: 5}
		close(run.failed)
		close(run.done)
		stop()
		r.run = run
		return
	}
	run.sub = sub
	r.run = run
	go r.renewLoop(ctx, run)
}

func (r *RelaySource) renewLoop(ctx context.Context, run *relayRun) {
	defer close(run.done)
	t := time.NewTicker(r.every)
	defer t.Stop()
	first := true
	for {
		rctx, cancel := context.WithTimeout(ctx, r.every+RelayRenew)
		err := r.renew(rctx)
		cancel()
		if err != nil && ctx.Err() == nil && first {
			select {
			case <-run.ready:
			default:
				var me *Error
				if !errors.As(err, &me) {
					me = &Error{Status: http.StatusServiceUnavailable, Code: wire.CodeUnavailable, Msg: "relay lease: " + err.Error(), RetryAfter: 5}
				}
				run.err = me
				close(run.failed)
				first = false
			}
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// stopLocked unsubscribes and stops renewing; r.mu is held. It does not
// wait for an in-flight renew (it is bounded by its own context).
func (r *RelaySource) stopLocked() {
	if r.lingerT != nil {
		r.lingerT.Stop()
		r.lingerT = nil
	}
	if r.run == nil {
		return
	}
	if r.run.sub != nil {
		_ = r.run.sub.Unsubscribe()
	}
	r.run.stop()
	r.run = nil
}

// Ready waits for the current run's first packet, or renew's first error
// (the node's *Error), or ctx. A source not acquired is not ready: 409.
func (r *RelaySource) Ready(ctx context.Context) error {
	r.mu.Lock()
	run := r.run
	r.mu.Unlock()
	if run == nil {
		return &Error{Status: http.StatusConflict, Code: "not_live", Msg: "the relay of " + r.stream + " is not running", RetryAfter: 1}
	}
	select {
	case <-run.ready:
		return nil
	case <-run.failed:
		select {
		case <-run.ready: // a packet came after all
			return nil
		default:
			return run.err
		}
	case <-ctx.Done():
		return ctxError(ctx, "waiting for the relay's first RTP packet of "+r.stream)
	}
}

// Running reports whether the relay is subscribed (acquired or lingering).
func (r *RelaySource) Running() bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.run != nil
}

// Close stops the relay now and waits for its renew goroutine.
func (r *RelaySource) Close() {
	r.mu.Lock()
	r.closed = true
	run := r.run
	r.stopLocked()
	r.mu.Unlock()
	if run != nil {
		<-run.done
	}
}

package media

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/pion/webrtc/v4"
	"github.com/robonet-mesh/robonet/internal/testmesh"
	"github.com/robonet-mesh/robonet/subjects"
)

// startNATS runs an embedded nats-server on a random loopback port and
// returns a connection to it.
func startNATS(t *testing.T) *nats.Conn {
	t.Helper()
	srv, err := server.NewServer(&server.Options{Host: "127.0.0.1", Port: -1, NoLog: true, NoSigs: true})
	if err != nil {
		t.Fatal(err)
	}
	srv.Start()
	t.Cleanup(srv.Shutdown)
	if !srv.ReadyForConnections(10 * time.Second) {
		t.Fatal("nats-server not ready")
	}
	nc, err := nats.Connect(srv.ClientURL())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	return nc
}

// fakeEncoder is an rtpSource the test drives: it counts Acquires and hands
// packets to the OnRTP callbacks that are registered.
type fakeEncoder struct {
	name string
	refs atomic.Int32

	mu  sync.Mutex
	fns map[int]func([]byte)
	n   int
}

func (f *fakeEncoder) Spec() Spec { return Spec{Name: f.name, Source: "testsrc", Kind: "testsrc"} }
func (f *fakeEncoder) Acquire() func() {
	f.refs.Add(1)
	var once sync.Once
	return func() { once.Do(func() { f.refs.Add(-1) }) }
}
func (f *fakeEncoder) OnRTP(fn func([]byte)) func() {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.fns == nil {
		f.fns = map[int]func([]byte){}
	}
	f.n++
	id := f.n
	f.fns[id] = fn
	return func() { f.mu.Lock(); delete(f.fns, id); f.mu.Unlock() }
}
func (f *fakeEncoder) callbacks() int { f.mu.Lock(); defer f.mu.Unlock(); return len(f.fns) }

// emit sends one packet to every callback, as the Encoder does per packet.
func (f *fakeEncoder) emit(pkt []byte) {
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, fn := range f.fns {
		fn(pkt)
	}
}

// pump emits synthetic packets every 10 ms until the test ends.
func (f *fakeEncoder) pump(t *testing.T) {
	stop, done := make(chan struct{}), make(chan struct{})
	go func() {
		defer close(done)
		tick := time.NewTicker(10 * time.Millisecond)
		defer tick.Stop()
		for i := 0; ; i++ {
			select {
			case <-stop:
				return
			case <-tick.C:
			}
			b, _ := synthPacket(i).Marshal()
			f.emit(b)
		}
	}()
	t.Cleanup(func() { close(stop); <-done })
}

var relayChevron = func() subjects.Chevron { c, _ := subjects.Parse("3.12.7.1"); return c }()

// The publisher publishes only while a lease lives, and stops when the
// lease lapses.
func TestRelayPublisherPublishesOnlyWhileLeased(t *testing.T) {
	nc := startNATS(t)
	enc := &fakeEncoder{name: "cam0"}
	enc.pump(t)
	p := NewRelayPublisher(nc, relayChevron, enc)
	p.lease = 300 * time.Millisecond
	defer p.Close()

	var got atomic.Int64
	sub, err := nc.Subscribe("rn.3.12.7.1.media.cam0.rtp", func(*nats.Msg) { got.Add(1) })
	if err != nil {
		t.Fatal(err)
	}
	defer sub.Unsubscribe()
	if err := nc.Flush(); err != nil {
		t.Fatal(err)
	}
	if enc.refs.Load() != 0 || enc.callbacks() != 0 || p.Publishing() {
		t.Fatalf("before any lease: refs %d, callbacks %d, publishing %v; want nothing", enc.refs.Load(), enc.callbacks(), p.Publishing())
	}
	if !p.Lease("viewer-a") {
		t.Error("the first lease is not fresh")
	}
	if p.Lease("viewer-b") || p.Lease("viewer-a") {
		t.Error("a lease while publishing is fresh")
	}
	if enc.refs.Load() != 1 || enc.callbacks() != 1 {
		t.Errorf("leased twice: refs %d, callbacks %d; want one Acquire and one OnRTP", enc.refs.Load(), enc.callbacks())
	}
	testmesh.CheckFor(t, 5*time.Second, 20*time.Millisecond, func() error {
		if n := got.Load(); n < 10 {
			return fmt.Errorf("%d packets on the rtp subject, want ≥ 10", n)
		}
		return nil
	})
	// Nobody renews: the leases lapse and publishing stops.
	testmesh.CheckFor(t, 5*time.Second, 20*time.Millisecond, func() error {
		if p.Publishing() || enc.refs.Load() != 0 || enc.callbacks() != 0 {
			return fmt.Errorf("publishing %v, refs %d, callbacks %d after the leases lapsed", p.Publishing(), enc.refs.Load(), enc.callbacks())
		}
		return nil
	})
	if !p.Lease("viewer-a") {
		t.Error("a lease after the lapse is not fresh")
	}
	p.Close()
	if p.Publishing() || enc.refs.Load() != 0 || p.Lease("viewer-a") {
		t.Error("Close left the publisher publishing or leasable")
	}
}

// A lease renewed every RelayRenew keeps publishing for as long as it is
// renewed, and lapses RelayLease after the last renewal (synctest's clock).
func TestRelayLeaseRenewalKeepsPublishing(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		enc := &fakeEncoder{name: "cam0"}
		p := NewRelayPublisher(nil, relayChevron, enc) // no packet is emitted: no connection needed
		defer p.Close()
		p.Lease("a")
		// The sleeps below advance synctest's fake clock: nothing waits.
		for i := 0; i < 15; i++ { // 30 s, five times the lease
			time.Sleep(RelayRenew)
			if !p.Publishing() {
				t.Fatalf("a lease renewed every %v lapsed after %v", RelayRenew, time.Duration(i+1)*RelayRenew)
			}
			p.Lease("a")
		}
		time.Sleep(RelayLease - time.Millisecond)
		if !p.Publishing() {
			t.Fatal("the lease lapsed before RelayLease")
		}
		time.Sleep(2 * time.Millisecond)
		synctest.Wait()
		if p.Publishing() || enc.refs.Load() != 0 {
			t.Fatal("the lease outlived RelayLease after the last renewal")
		}
	})
}

// The relay end to end: a RelaySource renews its lease over a real NATS
// request, feeds a viewer's track from the rtp subject, and after the last
// viewer leaves (and the linger) stops renewing, so the node's lease lapses.
func TestRelaySourceFeedsViewerAndRenews(t *testing.T) {
	nc := startNATS(t)
	enc := &fakeEncoder{name: "cam0"}
	enc.pump(t)
	p := NewRelayPublisher(nc, relayChevron, enc)
	p.lease = 400 * time.Millisecond
	defer p.Close()
	var leases atomic.Int64
	sub, err := nc.Subscribe(subjects.MediaRelay(relayChevron, "cam0"), func(m *nats.Msg) {
		leases.Add(1)
		p.Lease("gateway-viewer")
		_ = m.Respond([]byte(`{}`))
	})
	if err != nil {
		t.Fatal(err)
	}
	defer sub.Unsubscribe()

	rs := NewRelaySource(nc, relayChevron, "cam0", func(ctx context.Context) error {
		_, err := nc.RequestWithContext(ctx, subjects.MediaRelay(relayChevron, "cam0"), []byte(`{"stream":"cam0"}`))
		return err
	})
	rs.every, rs.linger = 100*time.Millisecond, 200*time.Millisecond
	defer rs.Close()

	e := newUDPEngine(t)
	s := NewSessions(e, SessionOptions{})
	defer s.Close()
	v := newViewer(t, webrtc.NetworkTypeUDP4)
	a := offer(t, s, "cam0", rs, v.offer)
	v.accept(t, a)
	v.waitPackets(t, 20)
	testmesh.CheckFor(t, 5*time.Second, 20*time.Millisecond, func() error {
		if n := leases.Load(); n < 4 {
			return fmt.Errorf("%d lease requests, want ≥ 4 (renewed every 100 ms)", n)
		}
		return nil
	})
	if !p.Publishing() {
		t.Fatal("the node stopped publishing while the relay renews")
	}
	if err := s.Delete(a.Session); err != nil {
		t.Fatal(err)
	}
	testmesh.CheckFor(t, 5*time.Second, 20*time.Millisecond, func() error {
		if rs.Running() || p.Publishing() || enc.refs.Load() != 0 {
			return fmt.Errorf("relay running %v, node publishing %v, encoder refs %d after the last viewer left", rs.Running(), p.Publishing(), enc.refs.Load())
		}
		return nil
	})
}

// A lease the node refuses makes Ready (and so the Offer) fail with the
// node's *Error.
func TestRelaySourceReadyFailsWithTheNodesError(t *testing.T) {
	nc := startNATS(t)
	denied := &Error{Status: 403, Code: "denied", Msg: "viewing cam0 needs tier 1"}
	rs := NewRelaySource(nc, relayChevron, "cam0", func(context.Context) error { return denied })
	defer rs.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := rs.Ready(ctx); err == nil {
		t.Fatal("Ready of a relay not acquired succeeded")
	}
	release := rs.Acquire()
	defer release()
	var me *Error
	if err := rs.Ready(ctx); !errors.As(err, &me) || me != denied {
		t.Fatalf("Ready: %v, want the node's *Error %v", err, denied)
	}

	e := newUDPEngine(t)
	s := NewSessions(e, SessionOptions{})
	defer s.Close()
	_, err := s.Offer(ctx, "cam0", rs, newViewer(t, webrtc.NetworkTypeUDP4).offer)
	if !errors.As(err, &me) || me != denied {
		t.Fatalf("Offer: %v, want the node's *Error", err)
	}
	if s.Count() != 0 {
		t.Errorf("%d sessions after a refused relay", s.Count())
	}
}

// After a refused lease, the next viewer's Acquire asks the node again
// rather than inheriting the old refusal.
func TestRelaySourceRetriesAfterARefusal(t *testing.T) {
	nc := startNATS(t)
	enc := &fakeEncoder{name: "cam0"}
	enc.pump(t)
	p := NewRelayPublisher(nc, relayChevron, enc)
	defer p.Close()
	var refuse atomic.Bool
	refuse.Store(true)
	rs := NewRelaySource(nc, relayChevron, "cam0", func(context.Context) error {
		if refuse.Load() {
			return &Error{Status: 409, Code: "not_live", Msg: "cam0 is starting", RetryAfter: 1}
		}
		p.Lease("gw")
		return nil
	})
	defer rs.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	r1 := rs.Acquire()
	defer r1()
	var me *Error
	if err := rs.Ready(ctx); !errors.As(err, &me) || me.Status != 409 {
		t.Fatalf("Ready while refused: %v, want the 409", err)
	}
	refuse.Store(false)
	r2 := rs.Acquire()
	defer r2()
	if err := rs.Ready(ctx); err != nil {
		t.Fatalf("Ready after the node accepts: %v", err)
	}
}

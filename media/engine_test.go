package media

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/pion/ice/v4"
	"github.com/pion/rtp"
	"github.com/pion/webrtc/v4"

	"github.com/robonet-mesh/robonet/internal/testmesh"
)

// newUDPEngine returns an engine on a 127.0.0.1 UDP socket.
func newUDPEngine(t *testing.T) *Engine {
	t.Helper()
	udp, err := net.ListenPacket("udp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	e, err := NewEngine(EngineConfig{UDP: udp, Loopback: true})
	if err != nil {
		udp.Close()
		t.Fatal(err)
	}
	t.Cleanup(func() { e.Close() })
	return e
}

// testSource is a Source whose track the test feeds with synthetic H.264
// RTP packets (single-NAL packets of a fake IDR slice): the thing under
// test is the engine, not the encoder.
type testSource struct {
	track    *webrtc.TrackLocalStaticRTP
	refs     atomic.Int32
	acquires atomic.Int32
	readyErr error
	stop     chan struct{}
	done     chan struct{}
}

func newTestSource(t *testing.T, stream string) *testSource {
	t.Helper()
	track, err := newTrack(stream)
	if err != nil {
		t.Fatal(err)
	}
	s := &testSource{track: track, stop: make(chan struct{}), done: make(chan struct{})}
	go s.feed()
	t.Cleanup(func() { close(s.stop); <-s.done })
	return s
}

// feed writes one packet every 10 ms until stop.
func (s *testSource) feed() {
	defer close(s.done)
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	for i := 0; ; i++ {
		select {
		case <-s.stop:
			return
		case <-tick.C:
		}
		_ = s.track.WriteRTP(synthPacket(i))
	}
}

// synthPacket is the i-th packet of a fake stream: a single NAL unit (type 5,
// IDR) per 90 kHz frame at 100 fps.
func synthPacket(i int) *rtp.Packet {
	return &rtp.Packet{
		Header: rtp.Header{
			Version: 2, Marker: true, PayloadType: 96,
			SequenceNumber: uint16(i), Timestamp: uint32(i * 900), SSRC: 0x1234,
		},
		Payload: []byte{0x65, 0x88, 0x84, byte(i), 0x00, 0x01},
	}
}

func (s *testSource) Track() *webrtc.TrackLocalStaticRTP { return s.track }
func (s *testSource) Acquire() func() {
	s.refs.Add(1)
	s.acquires.Add(1)
	var once sync.Once
	return func() { once.Do(func() { s.refs.Add(-1) }) }
}
func (s *testSource) Ready(ctx context.Context) error { return s.readyErr }

// viewer is a Go pion client playing the WHEP player's part.
type viewer struct {
	pc      *webrtc.PeerConnection
	packets atomic.Int64
	offer   string
}

// newViewer builds a client that receives H.264 over the given network
// type, loopback only, and gathers fully before offering.
func newViewer(t *testing.T, network webrtc.NetworkType) *viewer {
	t.Helper()
	return buildViewer(t, network, nil)
}

// newViewerOn builds a UDP viewer whose every packet goes through conn, so
// the test can make it vanish by closing conn.
func newViewerOn(t *testing.T, conn net.PacketConn) *viewer {
	t.Helper()
	return buildViewer(t, webrtc.NetworkTypeUDP4, conn)
}

func buildViewer(t *testing.T, network webrtc.NetworkType, conn net.PacketConn) *viewer {
	t.Helper()
	me := &webrtc.MediaEngine{}
	if err := me.RegisterCodec(webrtc.RTPCodecParameters{
		RTPCodecCapability: webrtc.RTPCodecCapability{MimeType: webrtc.MimeTypeH264, ClockRate: 90000, SDPFmtpLine: H264FmtpLine},
		PayloadType:        109,
	}, webrtc.RTPCodecTypeVideo); err != nil {
		t.Fatal(err)
	}
	se := webrtc.SettingEngine{LoggerFactory: slogFactory{log: slog.New(slog.DiscardHandler)}}
	se.SetIncludeLoopbackCandidate(true)
	se.SetICEMulticastDNSMode(ice.MulticastDNSModeDisabled)
	se.SetNetworkTypes([]webrtc.NetworkType{network})
	se.SetIPFilter(func(ip net.IP) bool { return ip.IsLoopback() })
	if conn != nil {
		se.SetICEUDPMux(webrtc.NewICEUDPMux(nil, conn))
	}
	api := webrtc.NewAPI(webrtc.WithMediaEngine(me), webrtc.WithSettingEngine(se))
	pc, err := api.NewPeerConnection(webrtc.Configuration{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { pc.Close() })
	v := &viewer{pc: pc}
	if _, err := pc.AddTransceiverFromKind(webrtc.RTPCodecTypeVideo, webrtc.RTPTransceiverInit{Direction: webrtc.RTPTransceiverDirectionRecvonly}); err != nil {
		t.Fatal(err)
	}
	pc.OnTrack(func(tr *webrtc.TrackRemote, _ *webrtc.RTPReceiver) {
		for {
			if _, _, err := tr.ReadRTP(); err != nil {
				return
			}
			v.packets.Add(1)
		}
	})
	offer, err := pc.CreateOffer(nil)
	if err != nil {
		t.Fatal(err)
	}
	gathered := webrtc.GatheringCompletePromise(pc)
	if err := pc.SetLocalDescription(offer); err != nil {
		t.Fatal(err)
	}
	<-gathered
	v.offer = pc.LocalDescription().SDP
	return v
}

func (v *viewer) accept(t *testing.T, a Answer) {
	t.Helper()
	if err := v.pc.SetRemoteDescription(webrtc.SessionDescription{Type: webrtc.SDPTypeAnswer, SDP: a.SDP}); err != nil {
		t.Fatal(err)
	}
}

func (v *viewer) waitPackets(t *testing.T, n int64) {
	t.Helper()
	testmesh.CheckFor(t, 15*time.Second, 20*time.Millisecond, func() error {
		if got := v.packets.Load(); got < n {
			return fmt.Errorf("%d RTP packets received (state %s), want ≥ %d", got, v.pc.ConnectionState(), n)
		}
		return nil
	})
}

func offer(t *testing.T, s *Sessions, stream string, src Source, sdp string) Answer {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	a, err := s.Offer(ctx, stream, src, sdp)
	if err != nil {
		t.Fatalf("Offer: %v", err)
	}
	return a
}

func checkAnswer(t *testing.T, a Answer) {
	t.Helper()
	if len(a.Session) != 32 || strings.Trim(a.Session, "0123456789abcdef") != "" {
		t.Errorf("session id %q: want 32 lowercase hex", a.Session)
	}
	if want := `"` + sdpUfrag(a.SDP) + `"`; a.ETag != want || len(a.ETag) < 6 {
		t.Errorf("ETag %q, want the quoted ufrag %q", a.ETag, want)
	}
	if !strings.Contains(a.SDP, "a=candidate:") {
		t.Errorf("answer without candidates (gathering not waited for):\n%s", a.SDP)
	}
}

func TestEngineNeedsAPort(t *testing.T) {
	if _, err := NewEngine(EngineConfig{}); err == nil || !strings.Contains(err.Error(), "neither") {
		t.Fatalf("NewEngine without UDP or TCP: %v, want an error saying neither is set", err)
	}
	udp, err := net.ListenPacket("udp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer udp.Close()
	if _, err := NewEngine(EngineConfig{UDP: udp, HostIPs: []string{"not-an-ip"}}); err == nil || !strings.Contains(err.Error(), "not-an-ip") {
		t.Fatalf("NewEngine with a bad host IP: %v, want an error naming it", err)
	}
}

// Several viewers share one track: each is one Acquire, each receives the
// packets over the UDP mux, each Delete releases its Acquire.
func TestViewersShareOneTrackOverUDPMux(t *testing.T) {
	e := newUDPEngine(t)
	var changes atomic.Int32
	s := NewSessions(e, SessionOptions{OnChange: func() { changes.Add(1) }})
	defer s.Close()
	src := newTestSource(t, "test")

	const n = 3
	var vs []*viewer
	var ids []string
	for i := 0; i < n; i++ {
		v := newViewer(t, webrtc.NetworkTypeUDP4)
		a := offer(t, s, "test", src, v.offer)
		checkAnswer(t, a)
		if !strings.Contains(a.SDP, "127.0.0.1") || !strings.Contains(a.SDP, " udp ") {
			t.Fatalf("answer has no 127.0.0.1 UDP candidate:\n%s", a.SDP)
		}
		v.accept(t, a)
		vs, ids = append(vs, v), append(ids, a.Session)
	}
	for _, v := range vs {
		v.waitPackets(t, 10)
	}
	if got := src.refs.Load(); got != n {
		t.Errorf("source refs %d with %d viewers, want %d", got, n, n)
	}
	if got := s.Viewers("test"); got != n {
		t.Errorf("Viewers = %d, want %d", got, n)
	}
	if got := s.Viewers("other"); got != 0 {
		t.Errorf("Viewers(other) = %d, want 0", got)
	}
	for i, id := range ids {
		if err := s.Delete(id); err != nil {
			t.Fatalf("Delete %s: %v", id, err)
		}
		if got, want := src.refs.Load(), int32(n-1-i); got != want {
			t.Errorf("after %d deletes: source refs %d, want %d", i+1, got, want)
		}
	}
	if got := s.Count(); got != 0 {
		t.Errorf("Count after deleting all = %d", got)
	}
	var me *Error
	if err := s.Delete(ids[0]); !errors.As(err, &me) || me.Status != 404 {
		t.Errorf("second Delete: %v, want a 404 *Error", err)
	}
	testmesh.CheckFor(t, 5*time.Second, 20*time.Millisecond, func() error {
		if got := changes.Load(); got != 2*n {
			return fmt.Errorf("OnChange called %d times, want %d (one add and one remove a session)", got, 2*n)
		}
		return nil
	})
}

// ICE-TCP: with only a TCP listener, a client with TCP network types
// connects through the TCP mux and receives the packets.
func TestICETCPSessionReceives(t *testing.T) {
	ln, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	e, err := NewEngine(EngineConfig{TCP: ln, Loopback: true})
	if err != nil {
		ln.Close()
		t.Fatal(err)
	}
	defer e.Close()
	s := NewSessions(e, SessionOptions{})
	defer s.Close()
	src := newTestSource(t, "test")
	v := newViewer(t, webrtc.NetworkTypeTCP4)
	a := offer(t, s, "test", src, v.offer)
	port := ln.Addr().(*net.TCPAddr).Port
	if !strings.Contains(a.SDP, fmt.Sprintf("127.0.0.1 %d typ host tcptype passive", port)) {
		t.Fatalf("answer has no passive TCP candidate on 127.0.0.1:%d:\n%s", port, a.SDP)
	}
	if strings.Contains(a.SDP, " udp ") {
		t.Errorf("answer has UDP candidates though UDP is unset:\n%s", a.SDP)
	}
	v.accept(t, a)
	v.waitPackets(t, 10)
}

// The Patch status matrix: 404, 415, 428, 412, 422, 400, 204.
func TestPatchStatusMatrix(t *testing.T) {
	e := newUDPEngine(t)
	s := NewSessions(e, SessionOptions{})
	defer s.Close()
	src := newTestSource(t, "test")
	v := newViewer(t, webrtc.NetworkTypeUDP4)
	a := offer(t, s, "test", src, v.offer)
	frag := func(ufrag string) []byte {
		return []byte("a=ice-ufrag:" + ufrag + "\r\na=ice-pwd:abcdefghijklmnopqrstuvwx\r\nm=video 9 UDP/TLS/RTP/SAVPF 0\r\na=mid:0\r\n" +
			"a=candidate:1 1 udp 2130706431 127.0.0.1 40000 typ host\r\na=end-of-candidates\r\n")
	}
	// A trickle fragment carries the viewer's credentials (RFC 8840), not
	// the server's (the ETag): the viewer's are the unchanged case.
	ours := sdpUfrag(v.offer)
	if ours == strings.Trim(a.ETag, `"`) {
		t.Fatal("the viewer's ufrag equals the server's: the test could not tell them apart")
	}
	cases := []struct {
		name            string
		id, ifMatch, ct string
		body            []byte
		status          int // 0 = nil (204)
	}{
		{"unknown session", strings.Repeat("0", 32), a.ETag, ContentTypeSDPFrag, frag(ours), 404},
		{"wrong content type", a.Session, a.ETag, "application/sdp", frag(ours), 415},
		{"no If-Match", a.Session, "", ContentTypeSDPFrag, frag(ours), 428},
		{"stale If-Match", a.Session, `"nope"`, ContentTypeSDPFrag, frag(ours), 412},
		{"ICE restart", a.Session, a.ETag, ContentTypeSDPFrag, frag("newufrag"), 422},
		{"the server's ufrag (not the viewer's)", a.Session, a.ETag, ContentTypeSDPFrag, frag(strings.Trim(a.ETag, `"`)), 422},
		{"ICE restart with *", a.Session, "*", ContentTypeSDPFrag, []byte("a=ice-ufrag:zzzz\r\na=ice-pwd:abcdefghijklmnopqrstuvwx\r\n"), 422},
		{"garbage fragment", a.Session, a.ETag, ContentTypeSDPFrag, []byte("hello\r\n"), 400},
		{"trickled candidates", a.Session, a.ETag, ContentTypeSDPFrag + "; charset=utf-8", frag(ours), 0},
		{"candidates only", a.Session, a.ETag, ContentTypeSDPFrag, []byte("a=candidate:2 1 udp 2130706431 127.0.0.1 40001 typ host\r\n"), 0},
	}
	for _, c := range cases {
		err := s.Patch(c.id, c.ifMatch, c.ct, c.body)
		var me *Error
		switch {
		case c.status == 0 && err != nil:
			t.Errorf("%s: %v, want nil (204)", c.name, err)
		case c.status != 0 && (!errors.As(err, &me) || me.Status != c.status):
			t.Errorf("%s: %v, want a %d *Error", c.name, err, c.status)
		case me != nil && me.Msg == "":
			t.Errorf("%s: *Error without a message", c.name)
		}
	}
}

// A session whose ICE never connects is closed after ConnectTimeout and
// releases its source.
func TestNeverConnectedSessionIsReaped(t *testing.T) {
	e := newUDPEngine(t)
	var changes atomic.Int32
	s := NewSessions(e, SessionOptions{ConnectTimeout: 300 * time.Millisecond, OnChange: func() { changes.Add(1) }})
	defer s.Close()
	src := newTestSource(t, "test")
	v := newViewer(t, webrtc.NetworkTypeUDP4)
	a := offer(t, s, "test", src, v.offer) // the viewer never takes the answer
	testmesh.CheckFor(t, 10*time.Second, 20*time.Millisecond, func() error {
		if n, r := s.Count(), src.refs.Load(); n != 0 || r != 0 {
			return fmt.Errorf("%d sessions, source refs %d: the never-connected session is still there", n, r)
		}
		return nil
	})
	if err := s.Delete(a.Session); err == nil {
		t.Error("Delete of a reaped session succeeded")
	}
	if got := changes.Load(); got != 2 {
		t.Errorf("OnChange called %d times, want 2 (added, reaped)", got)
	}
}

// Beyond MaxSessions, an Offer is a 503 with Retry-After and acquires nothing.
func TestMaxSessionsIs503(t *testing.T) {
	e := newUDPEngine(t)
	s := NewSessions(e, SessionOptions{MaxSessions: 1})
	defer s.Close()
	src := newTestSource(t, "test")
	offer(t, s, "test", src, newViewer(t, webrtc.NetworkTypeUDP4).offer)
	_, err := s.Offer(context.Background(), "test", src, newViewer(t, webrtc.NetworkTypeUDP4).offer)
	var me *Error
	if !errors.As(err, &me) || me.Status != 503 || me.RetryAfter != 5 {
		t.Fatalf("second Offer with MaxSessions 1: %v, want a 503 *Error with Retry-After 5", err)
	}
	if got := src.acquires.Load(); got != 1 {
		t.Errorf("source acquired %d times, want 1 (the refused offer acquires nothing)", got)
	}
}

// A source whose Ready fails makes the Offer fail with the source's *Error,
// and leaves no session and no Acquire behind.
func TestOfferFailsWithTheSourcesError(t *testing.T) {
	e := newUDPEngine(t)
	s := NewSessions(e, SessionOptions{})
	defer s.Close()
	src := newTestSource(t, "cam0")
	want := &Error{Status: 503, Code: "unavailable", Msg: "ffmpeg: /dev/video0: No such file or directory", RetryAfter: 5}
	src.readyErr = want
	_, err := s.Offer(context.Background(), "cam0", src, newViewer(t, webrtc.NetworkTypeUDP4).offer)
	var me *Error
	if !errors.As(err, &me) || me != want {
		t.Fatalf("Offer: %v, want the source's *Error %v", err, want)
	}
	if n, r := s.Count(), src.refs.Load(); n != 0 || r != 0 {
		t.Errorf("after a failed offer: %d sessions, source refs %d, want 0 and 0", n, r)
	}
}

// Offers that are not WHEP video offers are 400s that say why.
func TestBadOffersAre400(t *testing.T) {
	e := newUDPEngine(t)
	s := NewSessions(e, SessionOptions{})
	defer s.Close()
	src := newTestSource(t, "test")
	vp8 := strings.NewReplacer("H264/90000", "VP8/90000").Replace(newViewer(t, webrtc.NetworkTypeUDP4).offer)
	for name, body := range map[string]string{
		"empty":    "",
		"not sdp":  "hello",
		"no video": "v=0\r\no=- 1 1 IN IP4 0.0.0.0\r\ns=-\r\nt=0 0\r\nm=audio 9 UDP/TLS/RTP/SAVPF 111\r\n",
		"VP8 only": vp8,
		"broken":   "v=0\r\nm=video 9 x\r\n",
	} {
		_, err := s.Offer(context.Background(), "test", src, body)
		var me *Error
		if !errors.As(err, &me) || me.Status != 400 || me.Msg == "" {
			t.Errorf("%s: %v, want a 400 *Error with a message", name, err)
		}
	}
	if n, r := s.Count(), src.refs.Load(); n != 0 || r != 0 {
		t.Errorf("after bad offers: %d sessions, source refs %d", n, r)
	}
}

// A viewer that goes away without DELETE (its peer connection closed) is
// removed and releases its source.
func TestViewerGoneWithoutDeleteIsRemoved(t *testing.T) {
	e := newUDPEngine(t)
	s := NewSessions(e, SessionOptions{})
	defer s.Close()
	src := newTestSource(t, "test")
	v := newViewer(t, webrtc.NetworkTypeUDP4)
	v.accept(t, offer(t, s, "test", src, v.offer))
	v.waitPackets(t, 5)
	v.pc.Close()
	testmesh.CheckFor(t, 30*time.Second, 20*time.Millisecond, func() error {
		if n, r := s.Count(), src.refs.Load(); n != 0 || r != 0 {
			return fmt.Errorf("%d sessions, source refs %d after the viewer closed", n, r)
		}
		return nil
	})
}

// Close ends every session, releases every Acquire and refuses new offers.
func TestSessionsCloseEndsEverything(t *testing.T) {
	e := newUDPEngine(t)
	s := NewSessions(e, SessionOptions{})
	src := newTestSource(t, "test")
	for i := 0; i < 2; i++ {
		offer(t, s, "test", src, newViewer(t, webrtc.NetworkTypeUDP4).offer)
	}
	s.Close()
	if n, r := s.Count(), src.refs.Load(); n != 0 || r != 0 {
		t.Errorf("after Close: %d sessions, source refs %d", n, r)
	}
	_, err := s.Offer(context.Background(), "test", src, newViewer(t, webrtc.NetworkTypeUDP4).offer)
	var me *Error
	if !errors.As(err, &me) || me.Status != 503 {
		t.Errorf("Offer after Close: %v, want a 503 *Error", err)
	}
}

// HostIPs replace the host candidates' addresses (NAT 1:1).
func TestHostIPsReplaceCandidates(t *testing.T) {
	udp, err := net.ListenPacket("udp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	e, err := NewEngine(EngineConfig{UDP: udp, HostIPs: []string{"192.0.2.10"}, Loopback: true})
	if err != nil {
		t.Fatal(err)
	}
	defer e.Close()
	s := NewSessions(e, SessionOptions{})
	defer s.Close()
	a := offer(t, s, "test", newTestSource(t, "test"), newViewer(t, webrtc.NetworkTypeUDP4).offer)
	if want := fmt.Sprintf("192.0.2.10 %d typ host", udp.LocalAddr().(*net.UDPAddr).Port); !strings.Contains(a.SDP, want) {
		t.Errorf("answer lacks %q:\n%s", want, a.SDP)
	}
	if strings.Contains(a.SDP, "127.0.0.1") {
		t.Errorf("answer still advertises 127.0.0.1:\n%s", a.SDP)
	}
}

// TCPAdvertise adds passive TCP candidates a viewer can connect through (a
// NAT's address that reaches one of the host's interfaces): the listener
// is on every interface, the gathered candidates all say an unreachable
// 203.0.113.99 (HostIPs), and the viewer reaches the session through the
// advertised 127.0.0.1 alone.
func TestTCPAdvertiseReachesTheSession(t *testing.T) {
	ln, err := net.Listen("tcp4", "0.0.0.0:0")
	if err != nil {
		t.Fatal(err)
	}
	e, err := NewEngine(EngineConfig{TCP: ln, HostIPs: []string{"203.0.113.99"}, TCPAdvertise: []string{"127.0.0.1"}, Loopback: true})
	if err != nil {
		ln.Close()
		t.Fatal(err)
	}
	defer e.Close()
	s := NewSessions(e, SessionOptions{})
	defer s.Close()
	v := newViewer(t, webrtc.NetworkTypeTCP4)
	a := offer(t, s, "test", newTestSource(t, "test"), v.offer)
	if want := fmt.Sprintf("127.0.0.1 %d typ host tcptype passive", ln.Addr().(*net.TCPAddr).Port); !strings.Contains(a.SDP, want) {
		t.Fatalf("answer lacks %q:\n%s", want, a.SDP)
	}
	v.accept(t, a)
	v.waitPackets(t, 10)
	pair, err := v.pc.GetTransceivers()[0].Receiver().Transport().ICETransport().GetSelectedCandidatePair()
	if err != nil || pair == nil {
		t.Fatalf("selected pair: %v %v", pair, err)
	}
	if pair.Remote.Address != "127.0.0.1" || pair.Remote.Protocol != webrtc.ICEProtocolTCP {
		t.Errorf("the viewer connected to %s %s, want the advertised 127.0.0.1 over TCP", pair.Remote.Protocol, pair.Remote.Address)
	}
}

// The real Encoder as a Source: ffmpeg's test pattern reaches a viewer
// through the engine, and a missing camera fails the Offer with the
// Encoder's *Error instead of a black video.
func TestEncoderPlaysThroughEngine(t *testing.T) {
	if _, err := exec.LookPath("ffmpeg"); err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("ffmpeg is required in CI: %v", err)
		}
		t.Skipf("no ffmpeg: %v", err)
	}
	specs, err := ParseSpecs("test=testsrc@320x240@15,cam9=/dev/video99")
	if err != nil {
		t.Fatal(err)
	}
	e := newUDPEngine(t)
	s := NewSessions(e, SessionOptions{})
	defer s.Close()
	var encs []*Encoder
	for _, sp := range specs {
		enc, err := NewEncoder(sp, EncoderOptions{Linger: -1, Logger: slog.New(slog.DiscardHandler)})
		if err != nil {
			t.Fatal(err)
		}
		defer enc.Close()
		encs = append(encs, enc)
	}

	v := newViewer(t, webrtc.NetworkTypeUDP4)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	a, err := s.Offer(ctx, "test", encs[0], v.offer)
	if err != nil {
		t.Fatalf("Offer of the test pattern: %v", err)
	}
	v.accept(t, a)
	v.waitPackets(t, 30)

	_, err = s.Offer(ctx, "cam9", encs[1], newViewer(t, webrtc.NetworkTypeUDP4).offer)
	var me *Error
	if !errors.As(err, &me) || me.Status < 400 || me.Msg == "" {
		t.Fatalf("Offer of a missing camera: %v, want the Encoder's *Error", err)
	}
	if !strings.Contains(me.Msg, "video99") {
		t.Errorf("the missing camera's error does not name it: %v", me)
	}
	if s.Viewers("cam9") != 0 || s.Count() != 1 {
		t.Errorf("after the failed offer: %d cam9 viewers, %d sessions; want 0 and 1", s.Viewers("cam9"), s.Count())
	}
}

// logBuffer collects log lines, safe for concurrent use.
type logBuffer struct {
	mu sync.Mutex
	b  strings.Builder
}

func (l *logBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *logBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// A viewer that vanishes without a word (its socket gone: no DELETE, no
// DTLS close) is closed once it has been ICE-disconnected for the grace
// period, and releases its source.
func TestVanishedViewerIsClosedAfterDisconnect(t *testing.T) {
	udp, err := net.ListenPacket("udp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var logs logBuffer
	e, err := NewEngine(EngineConfig{UDP: udp, Loopback: true, Logger: slog.New(slog.NewTextHandler(&logs, nil))})
	if err != nil {
		t.Fatal(err)
	}
	defer e.Close()
	s := NewSessions(e, SessionOptions{})
	s.grace = 100 * time.Millisecond
	defer s.Close()
	src := newTestSource(t, "test")

	vconn, err := net.ListenPacket("udp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	v := newViewerOn(t, vconn)
	v.accept(t, offer(t, s, "test", src, v.offer))
	v.waitPackets(t, 5)
	vconn.Close() // the viewer's machine is gone
	testmesh.CheckFor(t, 30*time.Second, 20*time.Millisecond, func() error {
		if n, r := s.Count(), src.refs.Load(); n != 0 || r != 0 {
			return fmt.Errorf("%d sessions, source refs %d after the viewer vanished", n, r)
		}
		return nil
	})
	if !strings.Contains(logs.String(), `why="disconnected for long"`) {
		t.Errorf("the session was not closed by the disconnect reaper; logs:\n%s", logs.String())
	}
}

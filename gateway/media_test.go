package gateway_test

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"regexp"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/pion/ice/v4"
	"github.com/pion/webrtc/v4"
	"github.com/prometheus/client_golang/prometheus/testutil/promlint"

	"github.com/robonet-mesh/robonet/gateway"
	"github.com/robonet-mesh/robonet/internal/testmesh"
	"github.com/robonet-mesh/robonet/media"
	"github.com/robonet-mesh/robonet/mesh"
	"github.com/robonet-mesh/robonet/node"
	"github.com/robonet-mesh/robonet/wire"
)

// The media tests run a real two-node swarm on loopback: node 0 runs the
// gateway (with a media engine on a loopback UDP port and ICE-TCP on the
// gateway's own port), node 1 offers a real ffmpeg test pattern through
// media.NewService (its own engine on another loopback UDP port, the
// direct path). Every peer connection binds 127.0.0.1 and uses loopback
// candidates only: no packet leaves the host, and the tests need no
// network namespace.

// needFFmpeg skips without ffmpeg, failing under CI=true.
func needFFmpeg(t *testing.T) {
	t.Helper()
	if _, err := exec.LookPath("ffmpeg"); err == nil {
		return
	}
	if os.Getenv("CI") == "true" {
		t.Fatal("no ffmpeg on PATH and CI=true")
	}
	t.Skip("no ffmpeg on PATH")
}

// mediaRig is the two-node media fixture.
type mediaRig struct {
	*fixture
	md      *gateway.Media
	metrics *gateway.Metrics
	cam     *node.Node // node 1, the camera
	camChev string
	svc     *media.Service
	encs    []*media.Encoder
	viewer  *mesh.Client // an observer
	tok     string
}

// newMediaRig starts the swarm, the gateway with media on node 0 and a
// media service on node 1 offering specs (as --media). With firewalled,
// node 1's media port sends and receives nothing (a firewall dropping
// UDP): its direct path's ICE fails.
func newMediaRig(t *testing.T, specs string, firewalled ...bool) *mediaRig {
	t.Helper()
	needFFmpeg(t)
	f := newFixture(t, 2)
	r := &mediaRig{fixture: f, cam: f.s.Node(1)}
	r.camChev = r.cam.Chevron().String()
	log := testmesh.Logger(t, new(atomic.Bool))

	// The gateway's engine: relay sessions, over loopback UDP and the
	// gateway's port (ICE-TCP).
	gwUDP := listenUDP(t)
	eng, err := media.NewEngine(media.EngineConfig{UDP: gwUDP, TCP: f.g.ICETCP(), Loopback: true, Logger: log})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = eng.Close() })
	r.md = f.g.MountMedia(gateway.MediaOptions{Engine: eng, Logger: log})
	r.metrics = gateway.NewMetrics(f.s.Node(0))
	r.metrics.AddMedia(r.md)

	// Node 1's media service: the direct path on its own loopback port.
	sp, err := media.ParseSpecs(specs)
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range sp {
		e, err := media.NewEncoder(s, media.EncoderOptions{Linger: 2 * time.Second, Logger: log})
		if err != nil {
			t.Fatal(err)
		}
		r.encs = append(r.encs, e)
	}
	camUDP := listenUDP(t)
	var camConn net.PacketConn = camUDP
	if len(firewalled) > 0 && firewalled[0] {
		camConn = dropAll{camUDP}
	}
	camEng, err := media.NewEngine(media.EngineConfig{UDP: camConn, Loopback: true, Logger: log})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = camEng.Close() })
	fc, err := r.cam.FeatureConn("media")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(fc.Close)
	cam := r.cam
	r.svc, err = media.NewService(media.ServiceOptions{Conn: fc, Chevron: cam.Chevron(), Signer: cam.Signer(),
		Encoders: r.encs, Engine: camEng, Logger: log, UDPPort: camUDP.LocalAddr().(*net.UDPAddr).Port, Addrs: []string{"127.0.0.1/8"},
		Authorize: func(m *nats.Msg) (string, int, *wire.Error) {
			pub, role, werr := cam.Authorize(m, "")
			if werr != nil || pub == "" {
				return pub, 0, werr
			}
			return pub, cam.Tier(role, pub), nil
		}})
	if err != nil {
		t.Fatal(err)
	}
	if err := r.svc.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(r.svc.Close) // before the engine: cleanups run last first
	r.viewer = f.s.User(0, "vera", wire.RoleObserver)
	r.tok = f.token(r.viewer, wire.RoleObserver)
	return r
}

// dropAll is a UDP socket behind a firewall that drops every datagram,
// both ways: what it is asked to send goes nowhere, what arrives is
// discarded.
type dropAll struct{ net.PacketConn }

func (d dropAll) WriteTo(b []byte, _ net.Addr) (int, error) { return len(b), nil }

func (d dropAll) ReadFrom(b []byte) (int, net.Addr, error) {
	for {
		if _, _, err := d.PacketConn.ReadFrom(b); err != nil {
			return 0, nil, err
		}
	}
}

func listenUDP(t *testing.T) net.PacketConn {
	t.Helper()
	c, err := net.ListenPacket("udp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// whep sends one WHEP request with the viewer's token (tok "" sends none).
func (r *mediaRig) whep(method, path, tok, ctype, body string, hdr ...string) answer {
	r.t.Helper()
	req, err := http.NewRequest(method, r.g.URL()+path, strings.NewReader(body))
	if err != nil {
		r.t.Fatal(err)
	}
	if ctype != "" {
		req.Header.Set("Content-Type", ctype)
	}
	if tok != "" {
		req.Header.Set("Authorization", "Bearer "+tok)
	}
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	resp, err := (&http.Client{Timeout: 60 * time.Second}).Do(req)
	if err != nil {
		r.t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return answer{status: resp.StatusCode, header: resp.Header, body: b}
}

func (r *mediaRig) endpoint(stream string) string {
	return "/media/" + r.camChev + "/" + stream + "/whep"
}

// pionViewer is a real WebRTC receiver (what a browser does), loopback only.
type pionViewer struct {
	pc      *webrtc.PeerConnection
	packets atomic.Int64
	offer   string
}

func newPionViewer(t *testing.T, network webrtc.NetworkType) *pionViewer {
	t.Helper()
	var se webrtc.SettingEngine
	se.SetIncludeLoopbackCandidate(true)
	se.SetICEMulticastDNSMode(ice.MulticastDNSModeDisabled)
	se.SetNetworkTypes([]webrtc.NetworkType{network})
	se.SetIPFilter(func(ip net.IP) bool { return ip.IsLoopback() })
	me := &webrtc.MediaEngine{}
	if err := me.RegisterDefaultCodecs(); err != nil {
		t.Fatal(err)
	}
	pc, err := webrtc.NewAPI(webrtc.WithMediaEngine(me), webrtc.WithSettingEngine(se)).NewPeerConnection(webrtc.Configuration{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = pc.Close() })
	v := &pionViewer{pc: pc}
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
	done := webrtc.GatheringCompletePromise(pc)
	if err := pc.SetLocalDescription(offer); err != nil {
		t.Fatal(err)
	}
	<-done
	v.offer = pc.LocalDescription().SDP
	return v
}

func (v *pionViewer) accept(t *testing.T, a answer) {
	t.Helper()
	if err := v.pc.SetRemoteDescription(webrtc.SessionDescription{Type: webrtc.SDPTypeAnswer, SDP: string(a.body)}); err != nil {
		t.Fatalf("set the answer: %v\n%s", err, a.body)
	}
}

func (v *pionViewer) waitPackets(t *testing.T, n int64) {
	t.Helper()
	testmesh.CheckFor(t, 30*time.Second, 20*time.Millisecond, func() error {
		if got := v.packets.Load(); got < n {
			return fmt.Errorf("%d RTP packets received (ICE %s), want %d", got, v.pc.ICEConnectionState(), n)
		}
		return nil
	})
}

var (
	relayLocation  = regexp.MustCompile(`^/media/[0-9.]+/[a-z0-9_-]+/whep/r[0-9a-f]{32}$`)
	directLocation = regexp.MustCompile(`^/media/[0-9.]+/[a-z0-9_-]+/whep/[0-9a-f]{32}$`)
)

// checkCreated checks a WHEP 201 and returns its Location.
func checkCreated(t *testing.T, a answer, loc *regexp.Regexp) string {
	t.Helper()
	if a.status != http.StatusCreated {
		t.Fatalf("POST: %d %s", a.status, a.body)
	}
	l := a.header.Get("Location")
	if !loc.MatchString(l) {
		t.Fatalf("Location %q, want %s", l, loc)
	}
	if et := a.header.Get("ETag"); !strings.HasPrefix(et, `"`) || !strings.HasSuffix(et, `"`) || len(et) < 3 {
		t.Errorf("ETag %q, want a quoted value", et)
	}
	if ct := a.header.Get("Content-Type"); ct != "application/sdp" {
		t.Errorf("Content-Type %q, want application/sdp", ct)
	}
	exp := a.header.Get("Access-Control-Expose-Headers")
	for _, h := range []string{"Location", "ETag", "Link"} {
		if !strings.Contains(exp, h) {
			t.Errorf("Access-Control-Expose-Headers %q lacks %s", exp, h)
		}
	}
	if !bytes.Contains(a.body, []byte("a=sendonly")) || !bytes.Contains(a.body, []byte("H264")) {
		t.Errorf("the answer is not a sendonly H.264 SDP:\n%s", a.body)
	}
	return l
}

func expectStatus(t *testing.T, what string, a answer, status int, code string) {
	t.Helper()
	if a.status != status || (code != "" && a.code() != code) {
		t.Fatalf("%s: %d %s, want %d %s", what, a.status, a.body, status, code)
	}
}

// sdpFrag is a trickled candidate for a PATCH (RFC 8840). It carries no
// ICE credentials: media.Sessions compares a fragment's ice-ufrag with
// its own (server) ufrag, where RFC 8840 fragments carry the client's.
func sdpFrag(string) string {
	return "m=video 9 UDP/TLS/RTP/SAVPF 0\r\na=mid:0\r\n" +
		"a=candidate:1 1 udp 2130706431 127.0.0.1 9 typ host\r\na=end-of-candidates\r\n"
}

// The WHEP matrix on both paths: a real pion viewer plays the node's real
// ffmpeg test pattern; PATCH and DELETE answer as the draft says; refusals
// are {error, code} with the right status.
func TestMediaWHEPMatrix(t *testing.T) {
	r := newMediaRig(t, "test=testsrc@320x240@15")
	ep := r.endpoint("test")

	// OPTIONS needs no login: a CORS preflight carries none.
	a := r.whep(http.MethodOptions, ep, "", "", "")
	expectStatus(t, "OPTIONS", a, http.StatusNoContent, "")
	if a.header.Get("Accept-Post") != "application/sdp" || !strings.Contains(a.header.Get("Access-Control-Allow-Methods"), "POST") ||
		!strings.Contains(a.header.Get("Access-Control-Allow-Headers"), "Authorization") {
		t.Errorf("OPTIONS headers: %v", a.header)
	}
	a = r.whep(http.MethodHead, ep, r.tok, "", "")
	if a.status != http.StatusOK || a.header.Get("Content-Type") != "application/sdp" {
		t.Errorf("HEAD: %d %v", a.status, a.header)
	}
	expectStatus(t, "HEAD without a login", r.whep(http.MethodHead, ep, "", "", ""), http.StatusUnauthorized, "")
	expectStatus(t, "POST without a login", r.whep(http.MethodPost, ep, "", "application/sdp", "v=0"), http.StatusUnauthorized, "unauthenticated")
	expectStatus(t, "POST text/plain", r.whep(http.MethodPost, ep, r.tok, "text/plain", "v=0"), http.StatusUnsupportedMediaType, "bad_request")
	expectStatus(t, "GET on the endpoint", r.whep(http.MethodGet, ep, r.tok, "", ""), http.StatusMethodNotAllowed, "method_not_allowed")
	big := strings.Repeat("a", media.MaxWHEPBody+1)
	expectStatus(t, "POST 64 KiB+1", r.whep(http.MethodPost, ep, r.tok, "application/sdp", big), http.StatusRequestEntityTooLarge, "too_large")
	expectStatus(t, "unknown node", r.whep(http.MethodPost, "/media/9.9.9.9/test/whep", r.tok, "application/sdp", "v=0"), http.StatusNotFound, "not_found")
	expectStatus(t, "bad path", r.whep(http.MethodPost, ep+"?path=sideways", r.tok, "application/sdp", "v=0"), http.StatusBadRequest, "bad_request")
	for _, path := range []string{"direct", "relay"} {
		a := r.whep(http.MethodPost, r.endpoint("nope")+"?path="+path, r.tok, "application/sdp", newPionViewer(t, webrtc.NetworkTypeUDP4).offer)
		expectStatus(t, "unknown stream on the "+path+" path", a, http.StatusNotFound, "not_found")
		if !strings.Contains(string(a.body), "test") {
			t.Errorf("the unknown stream's error does not say which streams there are: %s", a.body)
		}
	}

	for i, c := range []struct {
		path string
		loc  *regexp.Regexp
		net  webrtc.NetworkType
	}{
		{"relay", relayLocation, webrtc.NetworkTypeUDP4},
		{"direct", directLocation, webrtc.NetworkTypeUDP4},
		{"relay", relayLocation, webrtc.NetworkTypeTCP4}, // ICE-TCP on the gateway's port
	} {
		name := c.path + " over " + c.net.String()
		v := newPionViewer(t, c.net)
		a := r.whep(http.MethodPost, ep+"?path="+c.path, r.tok, "application/sdp", v.offer)
		loc := checkCreated(t, a, c.loc)
		if c.net == webrtc.NetworkTypeTCP4 {
			_, port, _ := net.SplitHostPort(r.g.Addr())
			if !strings.Contains(string(a.body), " "+port+" typ host tcptype passive") {
				t.Fatalf("%s: the answer has no ICE-TCP candidate on the gateway's port %s:\n%s", name, port, a.body)
			}
		}
		v.accept(t, a)
		v.waitPackets(t, 50)
		etag := a.header.Get("ETag")
		sdpFrag := sdpFrag(v.offer)

		expectStatus(t, name+": PATCH without If-Match", r.whep(http.MethodPatch, loc, r.tok, "application/trickle-ice-sdpfrag", sdpFrag), http.StatusPreconditionRequired, "")
		expectStatus(t, name+": PATCH with a stale If-Match", r.whep(http.MethodPatch, loc, r.tok, "application/trickle-ice-sdpfrag", sdpFrag, "If-Match", `"stale"`), http.StatusPreconditionFailed, "")
		expectStatus(t, name+": PATCH as application/sdp", r.whep(http.MethodPatch, loc, r.tok, "application/sdp", sdpFrag, "If-Match", etag), http.StatusUnsupportedMediaType, "")
		expectStatus(t, name+": PATCH", r.whep(http.MethodPatch, loc, r.tok, "application/trickle-ice-sdpfrag", sdpFrag, "If-Match", etag), http.StatusNoContent, "")

		// Another user cannot end it: to them it does not exist.
		other := r.token(r.s.User(0, "otto-"+strconv.Itoa(i), wire.RoleObserver), wire.RoleObserver)
		expectStatus(t, name+": DELETE by another user", r.whep(http.MethodDelete, loc, other, "", ""), http.StatusNotFound, "not_found")

		expectStatus(t, name+": DELETE", r.whep(http.MethodDelete, loc, r.tok, "", ""), http.StatusOK, "")
		expectStatus(t, name+": DELETE again", r.whep(http.MethodDelete, loc, r.tok, "", ""), http.StatusNotFound, "not_found")
		expectStatus(t, name+": PATCH after DELETE", r.whep(http.MethodPatch, loc, r.tok, "application/trickle-ice-sdpfrag", sdpFrag, "If-Match", etag), http.StatusNotFound, "not_found")
	}

	// A WHEP player on another origin: served with a bearer token (CORS is
	// for it), refused with only the session cookie (a foreign page could
	// borrow that one).
	{
		v := newPionViewer(t, webrtc.NetworkTypeUDP4)
		a := r.whep(http.MethodPost, ep+"?path=relay", r.tok, "application/sdp", v.offer, "Origin", "https://player.example", "Sec-Fetch-Site", "cross-site")
		loc := checkCreated(t, a, relayLocation)
		if a.header.Get("Access-Control-Allow-Origin") != "*" {
			t.Errorf("cross-origin POST: Access-Control-Allow-Origin %q", a.header.Get("Access-Control-Allow-Origin"))
		}
		expectStatus(t, "cross-origin DELETE with a bearer token", r.whep(http.MethodDelete, loc, r.tok, "", "", "Origin", "https://player.example", "Sec-Fetch-Site", "cross-site"), http.StatusOK, "")
		a = r.whep(http.MethodPost, ep, "", "application/sdp", v.offer, "Origin", "https://player.example", "Sec-Fetch-Site", "cross-site", "Cookie", gateway.SessionCookie+"=whatever")
		expectStatus(t, "cross-origin POST with a cookie", a, http.StatusForbidden, "cross_origin")
	}

	// The node's media service stops: 503 with Retry-After, both paths.
	r.svc.Close()
	for _, path := range []string{"direct", "relay", "auto"} {
		a := r.whep(http.MethodPost, ep+"?path="+path, r.tok, "application/sdp", newPionViewer(t, webrtc.NetworkTypeUDP4).offer)
		expectStatus(t, "offline node, path "+path, a, http.StatusServiceUnavailable, "")
		if ra, err := strconv.Atoi(a.header.Get("Retry-After")); err != nil || ra <= 0 {
			t.Errorf("offline node, path %s: Retry-After %q", path, a.header.Get("Retry-After"))
		}
	}
}

// /api/media lists node 1's stream with its WHEP endpoint and page; the
// page itself is served, a malformed one is 404.
func TestMediaListAndPage(t *testing.T) {
	r := newMediaRig(t, "test=testsrc@320x240@15,other=testsrc@160x120@5")
	a := r.do(nil, http.MethodGet, "/api/media", "", bearer(r.tok)...)
	if a.status != http.StatusOK {
		t.Fatalf("/api/media: %d %s", a.status, a.body)
	}
	var items []struct {
		media.StreamInfo
		WHEP string `json:"whep"`
		Page string `json:"page"`
	}
	if err := json.Unmarshal(a.body, &items); err != nil {
		t.Fatal(err)
	}
	if len(items) != 2 {
		t.Fatalf("/api/media: %s, want node %s's two streams", a.body, r.camChev)
	}
	got := items[1] // sorted by chevron then stream: other, test
	if got.Chevron != r.camChev || got.Stream != "test" || got.Kind != media.KindTest || got.Width != 320 || got.Height != 240 ||
		got.WHEP != r.endpoint("test") || got.Page != "/media/"+r.camChev+"/test" {
		t.Errorf("/api/media entry %+v", got)
	}
	page := r.do(nil, http.MethodGet, got.Page, "")
	if page.status != http.StatusOK || !strings.Contains(string(page.body), `src="/media.js"`) ||
		!strings.HasPrefix(page.header.Get("Content-Type"), "text/html") {
		t.Errorf("player page: %d %s", page.status, page.body)
	}
	if a := r.do(nil, http.MethodGet, "/media/x.y/test", ""); a.status != http.StatusNotFound {
		t.Errorf("a malformed player page: %d", a.status)
	}
	if a := r.do(nil, http.MethodGet, "/api/media", ""); a.status != http.StatusUnauthorized {
		t.Errorf("/api/media without a login: %d", a.status)
	}
}

// Five viewers of one stream (three relay, two direct) share one ffmpeg on
// the node; the gauges say so on both nodes, wired as robonet up wires
// them, and promlint finds nothing.
func TestMediaFiveViewersOneEncoder(t *testing.T) {
	r := newMediaRig(t, "test=testsrc@320x240@15")
	// The camera node's own gateway, with its media as up mounts it.
	g1 := serveGateway(t, gateway.Options{Node: r.cam, Addr: "127.0.0.1:0", Explicit: true, Logger: testmesh.Logger(t, new(atomic.Bool))})
	md1 := g1.MountMedia(gateway.MediaOptions{
		Local:          func() *media.MediaList { l := r.svc.List(); return &l },
		DirectSessions: func() int { return r.svc.Sessions().Count() },
	})
	m1 := gateway.NewMetrics(r.cam)
	m1.AddMedia(md1)

	var locs []string
	for i := 0; i < 5; i++ {
		path, loc := "relay", relayLocation
		if i%2 == 1 {
			path, loc = "direct", directLocation
		}
		v := newPionViewer(t, webrtc.NetworkTypeUDP4)
		a := r.whep(http.MethodPost, r.endpoint("test")+"?path="+path, r.tok, "application/sdp", v.offer)
		locs = append(locs, checkCreated(t, a, loc))
		v.accept(t, a)
		v.waitPackets(t, 20)
	}
	if n := ffmpegChildren(t); n != 1 {
		t.Errorf("%d ffmpeg processes for five viewers of one stream, want 1", n)
	}
	for _, c := range []struct {
		m            *gateway.Metrics
		name, labels string
		want         float64
	}{
		{r.metrics, "robonet_media_sessions", "relay", 3},
		{r.metrics, "robonet_media_sessions", "direct", 0},
		{r.metrics, "robonet_media_encoders_running", "", 0},
		{m1, "robonet_media_sessions", "direct", 2},
		{m1, "robonet_media_sessions", "relay", 0},
		{m1, "robonet_media_encoders_running", "", 1},
	} {
		sc := scrapeOnce(t, c.m.Handler())
		var got float64
		if c.labels == "" {
			got = sc.must(t, c.name)
		} else {
			got = sc.must(t, c.name, "path", c.labels)
		}
		if got != c.want {
			t.Errorf("%s{path=%q} = %v, want %v", c.name, c.labels, got, c.want)
		}
		problems, err := promlint.New(bytes.NewReader(sc.body)).Lint()
		if err != nil {
			t.Fatal(err)
		}
		for _, p := range problems {
			t.Errorf("promlint: %s: %s", p.Metric, p.Text)
		}
	}
	for _, l := range locs {
		expectStatus(t, "DELETE", r.whep(http.MethodDelete, l, r.tok, "", ""), http.StatusOK, "")
	}
	testmesh.CheckFor(t, 10*time.Second, 20*time.Millisecond, func() error {
		if _, relay := r.md.Sessions(); relay != 0 {
			return fmt.Errorf("%d relay sessions after every DELETE", relay)
		}
		if direct, _ := md1.Sessions(); direct != 0 {
			return fmt.Errorf("%d direct sessions after every DELETE", direct)
		}
		return nil
	})
}

// ffmpegChildren counts the ffmpeg processes this test process started.
func ffmpegChildren(t *testing.T) int {
	t.Helper()
	ents, err := os.ReadDir("/proc")
	if err != nil {
		t.Skipf("no /proc: %v", err)
	}
	me := strconv.Itoa(os.Getpid())
	n := 0
	for _, e := range ents {
		if _, err := strconv.Atoi(e.Name()); err != nil {
			continue
		}
		b, err := os.ReadFile("/proc/" + e.Name() + "/stat")
		if err != nil {
			continue
		}
		// pid (comm) state ppid …
		s := string(b)
		open, closing := strings.IndexByte(s, '('), strings.LastIndexByte(s, ')')
		if open < 0 || closing < open {
			continue
		}
		f := strings.Fields(s[closing+1:])
		if s[open+1:closing] == "ffmpeg" && len(f) > 1 && f[1] == me {
			n++
		}
	}
	return n
}

package media

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net/http"
	"os/exec"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/pion/ice/v4"
	"github.com/pion/rtp"
	"github.com/pion/rtp/codecs"
	"github.com/pion/webrtc/v4"

	"github.com/robonet-mesh/robonet/mesh"
	"github.com/robonet-mesh/robonet/subjects"
)

// SnapshotOptions adjust Snapshot.
type SnapshotOptions struct {
	// FFmpeg decodes the frame; "" is "ffmpeg" from PATH.
	FFmpeg string
	// Path is "direct" (WebRTC to the node's UDP port), "relay" (the RTP
	// over NATS), or "" for direct, then relay when the node takes no
	// direct sessions or ICE does not connect.
	Path string
	// Loopback offers loopback candidates (a loopback-only network).
	Loopback bool
	// Timeout bounds the whole snapshot; 0 is 20 s.
	Timeout time.Duration
	// Note receives what Snapshot says along the way (the path it fell
	// back to); nil: nothing.
	Note func(string)
}

// Snapshot receives one frame of stream on the node with chevron as a
// viewer does, signed as c's key, and returns it as a JPEG and the path
// it came by ("direct" or "relay"): the first keyframe is decoded with
// ffmpeg.
func Snapshot(ctx context.Context, c *mesh.Client, chevron subjects.Chevron, stream string, o SnapshotOptions) ([]byte, string, error) {
	if c == nil || c.Signer() == nil {
		return nil, "", fmt.Errorf("snapshot: %w client: nodes answer signed requests only", mesh.ErrUnsigned)
	}
	if o.Timeout <= 0 {
		o.Timeout = 20 * time.Second
	}
	if o.FFmpeg == "" {
		o.FFmpeg = "ffmpeg"
	}
	ff, err := exec.LookPath(o.FFmpeg)
	if err != nil {
		return nil, "", fmt.Errorf("snapshot: decoding the frame needs ffmpeg (apt-get install ffmpeg): %w", err)
	}
	note := o.Note
	if note == nil {
		note = func(string) {}
	}
	ctx, cancel := context.WithTimeout(ctx, o.Timeout)
	defer cancel()
	// The node's key once: every request of the snapshot (the relay's
	// renewals too) checks its answer against it.
	key, err := registryKey(ctx, c, chevron)
	if err != nil {
		return nil, "", err
	}
	k := Caller{Client: c, Key: func(subjects.Chevron) (string, bool) { return key, true }}
	var au []byte
	path := o.Path
	switch path {
	case "direct", "relay":
	case "":
		path = "direct"
	default:
		return nil, "", fmt.Errorf("snapshot: path %q: want direct or relay", path)
	}
	if path == "direct" {
		dctx, dcancel := context.WithTimeout(ctx, min(o.Timeout/2, 10*time.Second))
		au, err = snapshotDirect(dctx, k, chevron, stream, o.Loopback)
		dcancel()
		var e *Error
		switch {
		case err == nil:
		case o.Path == "" && (errors.Is(err, errICE) || (errors.As(err, &e) && e.Code == codeNoDirect) || ctx.Err() == nil && errors.Is(err, context.DeadlineExceeded)):
			note(fmt.Sprintf("direct path to %s: %v; trying the relay over NATS", chevron, err))
			path = "relay"
		default:
			return nil, "direct", err
		}
	}
	if path == "relay" {
		if au, err = snapshotRelay(ctx, k, chevron, stream); err != nil {
			return nil, "relay", err
		}
	}
	jpg, err := decodeJPEG(ctx, ff, au)
	return jpg, path, err
}

// errICE is a direct session whose ICE failed.
var errICE = errors.New("ICE did not connect")

// codeNoDirect is the code of a node's refusal of direct sessions.
const codeNoDirect = "no_direct"

// snapshotDirect opens a WHEP session to the node and returns the first
// keyframe's access unit.
func snapshotDirect(ctx context.Context, k Caller, chevron subjects.Chevron, stream string, loopback bool) ([]byte, error) {
	me := &webrtc.MediaEngine{}
	if err := me.RegisterCodec(webrtc.RTPCodecParameters{RTPCodecCapability: webrtc.RTPCodecCapability{MimeType: webrtc.MimeTypeH264, ClockRate: 90000, SDPFmtpLine: H264FmtpLine}, PayloadType: 102}, webrtc.RTPCodecTypeVideo); err != nil {
		return nil, err
	}
	var se webrtc.SettingEngine
	se.SetIncludeLoopbackCandidate(loopback)
	se.SetICEMulticastDNSMode(ice.MulticastDNSModeDisabled)
	se.SetNetworkTypes([]webrtc.NetworkType{webrtc.NetworkTypeUDP4, webrtc.NetworkTypeTCP4})
	api := webrtc.NewAPI(webrtc.WithMediaEngine(me), webrtc.WithSettingEngine(se))
	pc, err := api.NewPeerConnection(webrtc.Configuration{})
	if err != nil {
		return nil, err
	}
	defer pc.Close()
	if _, err := pc.AddTransceiverFromKind(webrtc.RTPCodecTypeVideo, webrtc.RTPTransceiverInit{Direction: webrtc.RTPTransceiverDirectionRecvonly}); err != nil {
		return nil, err
	}
	got := make(chan []byte, 1)
	failed := make(chan struct{})
	var once sync.Once
	pc.OnConnectionStateChange(func(s webrtc.PeerConnectionState) {
		if s == webrtc.PeerConnectionStateFailed {
			once.Do(func() { close(failed) })
		}
	})
	pc.OnTrack(func(tr *webrtc.TrackRemote, _ *webrtc.RTPReceiver) {
		var b auBuilder
		for {
			p, _, err := tr.ReadRTP()
			if err != nil {
				return
			}
			if au, ok := b.push(p); ok {
				select {
				case got <- au:
				default:
				}
				return
			}
		}
	})
	offer, err := pc.CreateOffer(nil)
	if err != nil {
		return nil, err
	}
	gathered := webrtc.GatheringCompletePromise(pc)
	if err := pc.SetLocalDescription(offer); err != nil {
		return nil, err
	}
	select {
	case <-gathered:
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	rep, err := k.WHEP(ctx, chevron, stream, "", WHEPRequest{Method: http.MethodPost, ContentType: "application/sdp", Body: pc.LocalDescription().SDP})
	if err != nil {
		return nil, err
	}
	defer func() {
		dctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
		defer cancel()
		_, _ = k.WHEP(dctx, chevron, stream, rep.Session, WHEPRequest{Method: http.MethodDelete})
	}()
	if err := pc.SetRemoteDescription(webrtc.SessionDescription{Type: webrtc.SDPTypeAnswer, SDP: rep.Body}); err != nil {
		return nil, fmt.Errorf("the node's answer: %w", err)
	}
	select {
	case au := <-got:
		return au, nil
	case <-failed:
		return nil, fmt.Errorf("%w with %s (its UDP port is not reachable from here?)", errICE, chevron)
	case <-ctx.Done():
		return nil, fmt.Errorf("no keyframe from %s over the direct path: %w", chevron, ctx.Err())
	}
}

// snapshotRelay leases the stream's relay and takes the first keyframe
// from its RTP over NATS.
func snapshotRelay(ctx context.Context, k Caller, chevron subjects.Chevron, stream string) ([]byte, error) {
	ch := make(chan *nats.Msg, 512)
	sub, err := k.Client.Conn().ChanSubscribe(subjects.MediaRTP(chevron, stream), ch)
	if err != nil {
		return nil, err
	}
	defer func() { _ = sub.Unsubscribe() }()
	if err := k.Lease(ctx, chevron, stream); err != nil {
		return nil, err
	}
	renew := time.NewTicker(RelayRenew)
	defer renew.Stop()
	var b auBuilder
	for {
		select {
		case m := <-ch:
			var p rtp.Packet
			if p.Unmarshal(m.Data) != nil {
				continue
			}
			if au, ok := b.push(&p); ok {
				return au, nil
			}
		case <-renew.C:
			if err := k.Lease(ctx, chevron, stream); err != nil {
				return nil, err
			}
		case <-ctx.Done():
			return nil, fmt.Errorf("no keyframe from %s over the relay: %w", chevron, ctx.Err())
		}
	}
}

// auBuilder gathers RTP packets into H.264 access units (Annex-B) and
// reports the first one that holds an IDR slice.
type auBuilder struct {
	dep  codecs.H264Packet
	ts   uint32
	buf  []byte
	used bool
}

// maxAU bounds an access unit (a 4K keyframe is well under it).
const maxAU = 8 << 20

func (b *auBuilder) push(p *rtp.Packet) ([]byte, bool) {
	if b.used && p.Timestamp != b.ts {
		b.buf = b.buf[:0] // the previous unit lost its marker: drop it
	}
	b.ts, b.used = p.Timestamp, true
	nal, err := b.dep.Unmarshal(p.Payload)
	if err == nil && len(b.buf)+len(nal) <= maxAU {
		b.buf = append(b.buf, nal...)
	}
	if !p.Marker {
		return nil, false
	}
	au := b.buf
	b.buf, b.used = nil, false
	if hasIDR(au) {
		return au, true
	}
	return nil, false
}

// hasIDR reports whether an Annex-B access unit holds an SPS and an IDR
// slice (a frame a decoder can start from).
func hasIDR(au []byte) bool {
	var sps, idr bool
	for i := 0; i+3 < len(au); i++ {
		if au[i] == 0 && au[i+1] == 0 && au[i+2] == 1 {
			switch au[i+3] & 0x1f {
			case 7:
				sps = true
			case 5:
				idr = true
			}
			i += 2
		}
	}
	return sps && idr
}

// decodeJPEG decodes an access unit into one JPEG with ffmpeg.
func decodeJPEG(ctx context.Context, ff string, au []byte) ([]byte, error) {
	cmd := exec.CommandContext(ctx, ff, "-hide_banner", "-loglevel", "error", "-f", "h264", "-i", "pipe:0",
		"-frames:v", "1", "-f", "image2pipe", "-c:v", "mjpeg", "-q:v", "3", "pipe:1")
	cmd.Stdin = bytes.NewReader(au)
	var out, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &stderr
	if err := cmd.Run(); err != nil {
		return nil, fmt.Errorf("snapshot: ffmpeg could not decode the frame: %v: %s", err, clipStr(strings.TrimSpace(stderr.String()), 512))
	}
	if out.Len() < 4 || out.Bytes()[0] != 0xff || out.Bytes()[1] != 0xd8 {
		return nil, fmt.Errorf("snapshot: ffmpeg wrote no JPEG (%d bytes): %s", out.Len(), clipStr(strings.TrimSpace(stderr.String()), 512))
	}
	return out.Bytes(), nil
}

package media

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"net"
	"net/netip"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/pion/rtp"
	"github.com/pion/webrtc/v4"
)

// DefaultLinger is how long an Encoder keeps ffmpeg running after its last
// viewer left, so a reload or a second tab finds the stream warm.
const DefaultLinger = 10 * time.Second

const (
	// H264FmtpLine is the codec every Encoder's track announces: constrained
	// baseline level 3.1, packetization mode 1, which every browser decodes.
	H264FmtpLine = "level-asymmetry-allowed=1;packetization-mode=1;profile-level-id=42e01f"

	rtpPayloadType     = 102              // what ffmpeg is told to send; pion rewrites it per viewer
	rtpPacketSize      = 1200             // fits any path MTU WebRTC meets, with SRTP and TURN overhead
	firstPacketTimeout = 10 * time.Second // a run with no packet by then has failed
	stopGrace          = 2 * time.Second  // SIGTERM, then SIGKILL this long after
	restartDelay       = time.Second      // before restarting a run that died after it had worked
	liveGap            = 2 * time.Second  // Info says live while packets came this recently
	stderrTail         = 4 << 10          // the bytes of ffmpeg's stderr kept for the error
	retryAfter         = 5                // seconds, in a failed run's *Error
	codeUnavailable    = "media_unavailable"
)

// EncoderOptions configures an Encoder; the zero value is usable.
type EncoderOptions struct {
	FFmpeg string        // the ffmpeg binary; "" = "ffmpeg" from PATH
	Linger time.Duration // how long ffmpeg outlives the last release; 0 = DefaultLinger; <0 = stop at once
	Logger *slog.Logger  // nil = slog.Default()
}

// Encoder runs one ffmpeg for one stream, started on the first Acquire and
// stopped Linger after the last release. ffmpeg writes RTP (H.264
// constrained baseline, a keyframe every second, SPS/PPS before each one)
// to a loopback UDP socket the Encoder opened; each packet goes to Track()
// and to every OnRTP callback. A run that fails (ffmpeg missing or exiting,
// the device absent or busy, no packet within 10 s) is reported by Ready
// and Info as an *Error quoting ffmpeg; the next Acquire tries again.
type Encoder struct {
	spec   Spec
	ffmpeg string // resolved by NewEncoder
	linger time.Duration
	log    *slog.Logger
	track  *webrtc.TrackLocalStaticRTP
	noShow time.Duration // firstPacketTimeout; shorter in tests

	// mu guards the fields below. Lock order: Encoder.mu, then run.mu.
	mu       sync.Mutex
	refs     int
	closed   bool
	cur      *run        // the latest run, nil before the first Acquire
	lingerT  *time.Timer // pending stop after the last release
	lingerN  uint64      // bumped by every Acquire and last release: a stale linger timer does nothing
	lastErr  string      // the latest run's failure, cleared by a run's first packet
	runCount uint64

	cbMu   sync.Mutex                    // serialises OnRTP and its cancels
	cbs    atomic.Pointer[[]rtpCallback] // copied on write: the read loop takes no lock
	cbNext uint64                        // guarded by cbMu

	// seq is the RTP numbering the Encoder sends, continued across runs. Only
	// the current run's read loop touches it; a run starts after the previous
	// one's read loop ended (run.done), which orders the accesses.
	seq rtpNumbering
}

type rtpCallback struct {
	id uint64
	f  func([]byte)
}

// rtpNumbering continues RTP sequence numbers and timestamps from one
// ffmpeg run to the next, so a viewer's decoder sees one stream with a gap
// rather than a jump to another ffmpeg's random numbering.
type rtpNumbering struct {
	valid    bool
	lastSeq  uint16
	lastTS   uint32
	lastWall time.Time
}

// offsets returns what to add to a new run's sequence numbers and
// timestamps, given its first packet, so they continue where the previous
// run left off (the timestamps by the wall time since, at least a frame).
func (n *rtpNumbering) offsets(first *rtp.Packet, fps int, now time.Time) (seqOff uint16, tsOff uint32) {
	if !n.valid {
		return 0, 0
	}
	gap := max(now.Sub(n.lastWall), time.Second/time.Duration(fps))
	ticks := uint32(min(gap, time.Hour).Milliseconds() * 90)
	return n.lastSeq + 1 - first.SequenceNumber, n.lastTS + ticks - first.Timestamp
}

// NewEncoder checks spec and that ffmpeg exists, and starts nothing. Its
// error is an *Error (503) when ffmpeg cannot be found, else a plain error
// naming what is wrong with spec.
func NewEncoder(spec Spec, opts EncoderOptions) (*Encoder, error) {
	if err := spec.validate(); err != nil {
		return nil, fmt.Errorf("media stream %q: %w", spec.Name, err)
	}
	bin := opts.FFmpeg
	if bin == "" {
		bin = "ffmpeg"
	}
	path, err := exec.LookPath(bin)
	if err != nil {
		return nil, &Error{Status: 503, Code: codeUnavailable, RetryAfter: retryAfter,
			Msg: fmt.Sprintf("stream %q: ffmpeg not found (%v); install ffmpeg: apt-get install ffmpeg", spec.Name, err)}
	}
	linger := opts.Linger
	if linger == 0 {
		linger = DefaultLinger
	}
	log := opts.Logger
	if log == nil {
		log = slog.Default()
	}
	track, err := webrtc.NewTrackLocalStaticRTP(webrtc.RTPCodecCapability{
		MimeType: webrtc.MimeTypeH264, ClockRate: 90000, SDPFmtpLine: H264FmtpLine,
	}, "video", "robonet-"+spec.Name)
	if err != nil {
		return nil, fmt.Errorf("media stream %q: track: %w", spec.Name, err)
	}
	return &Encoder{spec: spec, ffmpeg: path, linger: linger, log: log.With("stream", spec.Name), track: track,
		noShow: firstPacketTimeout}, nil
}

// Spec returns the stream the Encoder serves.
func (e *Encoder) Spec() Spec { return e.spec }

// Track returns the track every viewer's peer connection shares: H264/90000
// with H264FmtpLine, id "video", stream id "robonet-<name>".
func (e *Encoder) Track() *webrtc.TrackLocalStaticRTP { return e.track }

// Acquire counts one more user of the stream and starts ffmpeg unless it is
// running (or cancels the pending stop if it lingers). The release func
// undoes it once, however often it is called. After Close, Acquire does
// nothing and Ready reports the Encoder closed.
func (e *Encoder) Acquire() (release func()) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.closed {
		return func() {}
	}
	e.refs++
	e.lingerN++
	if e.lingerT != nil {
		e.lingerT.Stop()
		e.lingerT = nil
	}
	if e.cur == nil || !e.cur.usable() {
		e.startLocked(0)
	}
	var once sync.Once
	return func() { once.Do(e.release) }
}

func (e *Encoder) release() {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.refs--
	if e.refs > 0 || e.closed || e.cur == nil {
		return
	}
	e.lingerN++
	if e.linger < 0 {
		e.cur.stop()
		return
	}
	n, r := e.lingerN, e.cur
	e.lingerT = time.AfterFunc(e.linger, func() {
		e.mu.Lock()
		defer e.mu.Unlock()
		if e.lingerN != n || e.refs > 0 || e.cur != r {
			return
		}
		e.lingerT = nil
		r.stop()
	})
}

// startLocked begins a new run after the current one (if any) has ended, so
// two ffmpegs never contend for one device. Called with e.mu held.
func (e *Encoder) startLocked(delay time.Duration) {
	e.runCount++
	prev := e.cur
	if prev != nil {
		prev.stop()
	}
	r := &run{enc: e, n: e.runCount, ready: make(chan struct{}), done: make(chan struct{}),
		stderr: &tailBuffer{max: stderrTail}}
	e.cur = r
	go r.start(prev, delay)
}

// Ready waits until the current run's first RTP packet arrived, or the run
// failed (an *Error whose Msg quotes ffmpeg's reason), or ctx ended (an
// *Error 504). It returns the run's failure if the run died since.
func (e *Encoder) Ready(ctx context.Context) error {
	e.mu.Lock()
	r, closed := e.cur, e.closed
	e.mu.Unlock()
	switch {
	case closed:
		return &Error{Status: 503, Code: codeUnavailable, RetryAfter: retryAfter,
			Msg: fmt.Sprintf("stream %q is closed: its node is shutting down", e.spec.Name)}
	case r == nil:
		return &Error{Status: 409, Code: "not_live", RetryAfter: 1,
			Msg: fmt.Sprintf("stream %q is not running: nobody has asked for it yet", e.spec.Name)}
	}
	select {
	case <-r.ready:
	case <-ctx.Done():
		return &Error{Status: 504, Code: "timeout",
			Msg: fmt.Sprintf("stream %q: no video from ffmpeg yet (%v); try again", e.spec.Name, context.Cause(ctx))}
	}
	if err := r.failure(); err != nil {
		return err
	}
	return nil
}

// OnRTP calls f with every RTP packet ffmpeg sends until cancel is called.
// The packets are ffmpeg's bytes, with the sequence numbers and timestamps
// the track sends (continued across ffmpeg restarts). f runs on the
// Encoder's read loop: it must not block, and must not modify pkt (every
// callback gets the same slice, fresh for each packet, so keeping it is
// fine). cancel is idempotent and may be called from f.
func (e *Encoder) OnRTP(f func(pkt []byte)) (cancel func()) {
	if f == nil {
		return func() {}
	}
	e.cbMu.Lock()
	defer e.cbMu.Unlock()
	id := e.cbNext
	e.cbNext++
	e.setCallbacks(func(old []rtpCallback) []rtpCallback { return append(old, rtpCallback{id, f}) })
	return func() {
		e.cbMu.Lock()
		defer e.cbMu.Unlock()
		e.setCallbacks(func(old []rtpCallback) []rtpCallback {
			var kept []rtpCallback
			for _, c := range old {
				if c.id != id {
					kept = append(kept, c)
				}
			}
			return kept
		})
	}
}

// setCallbacks replaces the callback list by edit's copy of it; e.cbMu held.
func (e *Encoder) setCallbacks(edit func(old []rtpCallback) []rtpCallback) {
	var old []rtpCallback
	if p := e.cbs.Load(); p != nil {
		old = *p
	}
	next := edit(append([]rtpCallback(nil), old...))
	e.cbs.Store(&next)
}

// Info describes the stream for the media list; Chevron is left to the
// caller. Viewers counts the Acquires not yet released.
func (e *Encoder) Info() StreamInfo {
	e.mu.Lock()
	r, refs, lastErr := e.cur, e.refs, e.lastErr
	e.mu.Unlock()
	live := false
	if r != nil && r.alive() {
		last := r.lastPacket.Load()
		live = last != 0 && time.Since(time.Unix(0, last)) < liveGap
	}
	return StreamInfo{Stream: e.spec.Name, Source: e.spec.Source, Kind: e.spec.Kind, Codec: "H264",
		Width: e.spec.Width, Height: e.spec.Height, FPS: e.spec.FPS, Live: live, Viewers: refs, Error: lastErr}
}

// Running tells whether an ffmpeg process of this Encoder is alive.
func (e *Encoder) Running() bool {
	e.mu.Lock()
	r := e.cur
	e.mu.Unlock()
	return r != nil && r.alive()
}

// Close stops ffmpeg now and waits for it and every goroutine the Encoder
// started. It is idempotent.
func (e *Encoder) Close() {
	e.mu.Lock()
	e.closed = true
	if e.lingerT != nil {
		e.lingerT.Stop()
		e.lingerT = nil
	}
	r := e.cur
	if r != nil {
		r.stop()
	}
	e.mu.Unlock()
	if r != nil {
		<-r.done
	}
}

// args is ffmpeg's command line for a run sending RTP to port.
func (e *Encoder) args(port int) []string {
	s := e.spec
	size, fps := fmt.Sprintf("%dx%d", s.Width, s.Height), strconv.Itoa(s.FPS)
	a := []string{"-hide_banner", "-loglevel", "error"}
	switch s.Kind {
	case KindV4L2:
		a = append(a, "-nostdin", "-f", "v4l2", "-video_size", size, "-framerate", fps, "-i", s.Source)
	case KindX11:
		a = append(a, "-nostdin", "-f", "x11grab", "-video_size", size, "-framerate", fps, "-i", s.Source)
	case KindTest:
		a = append(a, "-nostdin", "-re", "-f", "lavfi", "-i", "testsrc2=size="+size+":rate="+fps)
	case KindClock:
		a = append(a, "-f", "rawvideo", "-pix_fmt", "yuv420p", "-video_size", size, "-framerate", fps, "-i", "pipe:0")
	}
	rate := bitrate(s)
	a = append(a, "-an", "-c:v", "libx264", "-preset", "ultrafast", "-tune", "zerolatency",
		"-profile:v", "baseline", "-pix_fmt", "yuv420p", "-bf", "0",
		"-g", fps, "-keyint_min", fps, "-sc_threshold", "0", "-x264-params", "repeat-headers=1",
		// A keyframe every 250 ms in a run's first 2 s: the first viewer's
		// offer is answered once the first packet is out, so that first
		// keyframe goes before its DTLS is up and it would wait a whole GOP
		// (1 s) for the next one.
		"-force_key_frames", fmt.Sprintf("expr:lt(t,%g)*gte(t,n_forced*%g)", startBurst.Seconds(), startKeyEvery.Seconds()),
		"-b:v", strconv.Itoa(rate), "-maxrate", strconv.Itoa(rate), "-bufsize", strconv.Itoa(rate/2),
		"-f", "rtp", "-payload_type", strconv.Itoa(rtpPayloadType),
		// RTCP goes to the same socket (and is dropped there) rather than to port+1, which is someone else's.
		fmt.Sprintf("rtp://127.0.0.1:%d?pkt_size=%d&rtcpport=%d", port, rtpPacketSize, port))
	return a
}

// startBurst and startKeyEvery: keyframes come every startKeyEvery during
// a run's first startBurst, then every second (-g FPS).
const (
	startBurst    = 2 * time.Second
	startKeyEvery = 250 * time.Millisecond
)

// bitrate gives a stream about 0.07 bits per pixel: 2 Mb/s at 720p30,
// never under 150 kb/s nor over 8 Mb/s.
func bitrate(s Spec) int {
	b := s.Width * s.Height * s.FPS / 14
	return min(max(b, 150_000), 8_000_000)
}

// run is one ffmpeg process and the goroutines around it.
type run struct {
	enc    *Encoder
	n      uint64
	stderr *tailBuffer
	ready  chan struct{} // closed at the first packet or the first failure
	done   chan struct{} // closed when the process and every goroutine of the run ended

	readyOnce  sync.Once
	gotPacket  atomic.Bool
	lastPacket atomic.Int64 // unix nanoseconds

	// mu guards the fields below.
	mu      sync.Mutex
	err     *Error // the run's failure: the first one recorded wins
	stopped bool   // stop was called: the end is intended
	started bool   // the process was started
	exited  bool   // the process was waited for
	pid     int    //
	cancel  func() // ends the clock writer
}

// usable tells whether the run is starting or running and not stopping.
func (r *run) usable() bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	return !r.stopped && !r.exited && r.err == nil
}

func (r *run) alive() bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.started && !r.exited
}

func (r *run) failure() *Error {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.err
}

// fail records err as the run's failure unless one is recorded already, and
// wakes Ready.
func (r *run) fail(err *Error) {
	r.mu.Lock()
	if r.err == nil {
		r.err = err
	}
	r.mu.Unlock()
	r.readyOnce.Do(func() { close(r.ready) })
}

// stop ends the run on purpose: the clock writer stops (closing ffmpeg's
// stdin), ffmpeg gets SIGTERM and, stopGrace later, SIGKILL.
func (r *run) stop() {
	r.mu.Lock()
	if r.stopped {
		r.mu.Unlock()
		return
	}
	r.stopped = true
	if r.err == nil {
		r.err = &Error{Status: 503, Code: codeUnavailable, RetryAfter: 1,
			Msg: fmt.Sprintf("stream %q was stopped (no viewers); ask again", r.enc.spec.Name)}
	}
	if r.cancel != nil {
		r.cancel()
	}
	if r.started && !r.exited {
		signalGroup(r.pid, false)
		time.AfterFunc(stopGrace, r.kill)
	}
	r.mu.Unlock()
	r.readyOnce.Do(func() { close(r.ready) })
}

// kill sends SIGKILL to the run's process group if the process is alive.
func (r *run) kill() {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.started && !r.exited {
		signalGroup(r.pid, true)
	}
}

// start waits for prev to end (and delay), then opens the socket, starts
// ffmpeg and runs the read loop, the clock writer and the watchdog until
// ffmpeg exits. It closes r.done last.
func (r *run) start(prev *run, delay time.Duration) {
	defer close(r.done)
	e := r.enc
	if prev != nil {
		<-prev.done
	}
	if delay > 0 {
		t := time.NewTimer(delay)
		select {
		case <-t.C:
		case <-r.ready: // stopped meanwhile
			t.Stop()
		}
	}
	conn, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		r.fail(&Error{Status: 503, Code: codeUnavailable, RetryAfter: retryAfter,
			Msg: fmt.Sprintf("stream %q: cannot open a loopback UDP socket for ffmpeg's RTP: %v", e.spec.Name, err)})
		e.recordEnd(r)
		return
	}
	defer conn.Close()
	_ = conn.SetReadBuffer(1 << 20) // a keyframe is a burst of packets; a failure only means the OS default
	port := conn.LocalAddr().(*net.UDPAddr).Port

	cmd := exec.Command(e.ffmpeg, e.args(port)...)
	cmd.Stderr = r.stderr
	cmd.WaitDelay = stopGrace // a child left holding stderr must not keep Wait (and Close) waiting
	setProcessGroup(cmd)

	r.mu.Lock()
	if r.stopped {
		r.mu.Unlock()
		return
	}
	var stdin io.WriteCloser
	if e.spec.Kind == KindClock {
		stdin, err = cmd.StdinPipe()
	}
	if err == nil {
		err = cmd.Start() // closes the pipe's ends on failure
	}
	if err != nil {
		r.mu.Unlock()
		r.fail(startError(e.spec, e.ffmpeg, err))
		e.recordEnd(r)
		return
	}
	r.started, r.pid = true, cmd.Process.Pid
	ctx, cancel := context.WithCancel(context.Background())
	r.cancel = cancel
	r.mu.Unlock()
	e.log.Info("media: ffmpeg started", "run", r.n, "pid", r.pid, "source", e.spec.Source, "port", port)
	e.log.Debug("media: ffmpeg command", "args", cmd.Args)

	var wg sync.WaitGroup
	if stdin != nil {
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer stdin.Close()
			_ = writeClock(ctx, stdin, e.spec) // ends when stopped or when ffmpeg stops reading
		}()
	}
	wg.Add(1)
	go func() {
		defer wg.Done()
		r.read(conn)
	}()
	watchdog := time.AfterFunc(e.noShow, func() {
		if !r.gotPacket.Load() {
			r.fail(r.exitError(fmt.Sprintf("sent no video within %v", e.noShow), r.stderr.String()))
			r.kill()
		}
	})

	werr := cmd.Wait()
	r.mu.Lock()
	r.exited = true
	stopped := r.stopped
	r.mu.Unlock()
	watchdog.Stop()
	cancel()
	conn.Close() // ends the read loop
	wg.Wait()
	if !stopped {
		r.fail(r.exitError(exitStatus(werr), r.stderr.String()))
	}
	e.log.Info("media: ffmpeg ended", "run", r.n, "pid", r.pid, "stopped", stopped, "status", exitStatus(werr),
		"stderr", r.stderr.lastLines(3))
	e.recordEnd(r)
}

// recordEnd notes how r ended: an unintended end becomes the stream's
// error, and a run that had worked is restarted while viewers remain.
func (e *Encoder) recordEnd(r *run) {
	r.mu.Lock()
	stopped, err := r.stopped, r.err
	r.mu.Unlock()
	if stopped || err == nil {
		return
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.cur != r {
		return
	}
	e.lastErr = err.Msg
	if r.gotPacket.Load() && e.refs > 0 && !e.closed {
		e.log.Warn("media: ffmpeg died; restarting", "error", err.Msg)
		e.startLocked(restartDelay)
	}
}

// read forwards ffmpeg's RTP packets until conn is closed. It accepts
// packets from 127.0.0.1 only, and, once the first RTP packet came, from
// that sender's port only; it drops RTCP and anything that is not RTP with
// our payload type.
func (r *run) read(conn *net.UDPConn) {
	e := r.enc
	buf := make([]byte, 2048)
	loopback := netip.AddrFrom4([4]byte{127, 0, 0, 1})
	var sender netip.AddrPort
	var seqOff uint16
	var tsOff uint32
	for {
		n, from, err := conn.ReadFromUDPAddrPort(buf)
		if err != nil {
			if !errors.Is(err, net.ErrClosed) {
				e.log.Warn("media: reading ffmpeg's RTP", "error", err)
			}
			return
		}
		if from.Addr().Unmap() != loopback || sender.IsValid() && from != sender {
			continue
		}
		b := buf[:n]
		if n >= 2 && b[1] >= 192 && b[1] <= 223 { // RTCP packet types 192..223 sit where RTP has M+PT
			continue
		}
		var pkt rtp.Packet
		if pkt.Unmarshal(b) != nil || pkt.PayloadType != rtpPayloadType {
			continue
		}
		now := time.Now()
		if !sender.IsValid() {
			sender = from
			seqOff, tsOff = e.seq.offsets(&pkt, e.spec.FPS, now)
		}
		pkt.SequenceNumber += seqOff
		pkt.Timestamp += tsOff
		e.seq = rtpNumbering{valid: true, lastSeq: pkt.SequenceNumber, lastTS: pkt.Timestamp, lastWall: now}
		r.lastPacket.Store(now.UnixNano())
		if !r.gotPacket.Swap(true) {
			r.readyOnce.Do(func() { close(r.ready) })
			e.mu.Lock()
			if e.cur == r {
				e.lastErr = ""
			}
			e.mu.Unlock()
			e.log.Info("media: first RTP packet", "run", r.n)
		}
		_ = e.track.WriteRTP(&pkt) // a viewer's failed write is that viewer's problem
		if cbs := e.cbs.Load(); cbs != nil && len(*cbs) > 0 {
			raw := append([]byte(nil), b...)
			binary.BigEndian.PutUint16(raw[2:4], pkt.SequenceNumber)
			binary.BigEndian.PutUint32(raw[4:8], pkt.Timestamp)
			for _, c := range *cbs {
				c.f(raw)
			}
		}
	}
}

// startError explains why ffmpeg could not be started at all.
func startError(s Spec, bin string, err error) *Error {
	msg := fmt.Sprintf("stream %q: cannot start ffmpeg (%s): %v", s.Name, bin, err)
	if errors.Is(err, fs.ErrNotExist) || errors.Is(err, exec.ErrNotFound) {
		msg = fmt.Sprintf("stream %q: ffmpeg not found at %s; install ffmpeg: apt-get install ffmpeg", s.Name, bin)
	} else if errors.Is(err, fs.ErrPermission) {
		msg = fmt.Sprintf("stream %q: %s is not executable by this user (%v); install ffmpeg: apt-get install ffmpeg", s.Name, bin, err)
	}
	return &Error{Status: 503, Code: codeUnavailable, RetryAfter: retryAfter, Msg: msg}
}

// stderrHints map what ffmpeg says (lower-cased) to what the user should
// know; the first match wins, so the specific come before the general.
var stderrHints = []struct {
	needle string
	advice func(s Spec) string
}{
	{"cannot open display", func(s Spec) string {
		return fmt.Sprintf("cannot open X display %s: is an X server running there, and may this user connect to it (XAUTHORITY, xhost)?", s.Source)
	}},
	{"outside the screen", func(s Spec) string {
		return fmt.Sprintf("display %s is smaller than %dx%d; give a smaller @WxH", s.Source, s.Width, s.Height)
	}},
	{"device or resource busy", func(s Spec) string {
		return fmt.Sprintf("camera %s is busy: another program is using it (fuser %s shows which)", s.Source, s.Source)
	}},
	{"permission denied", func(s Spec) string {
		return fmt.Sprintf("permission denied opening %s: add the node's user to the video group", s.Source)
	}},
	{"no such file or directory", func(s Spec) string {
		return fmt.Sprintf("no such device %s (ls /dev/video* lists the cameras)", s.Source)
	}},
	{"no such device", func(s Spec) string {
		return fmt.Sprintf("no such device %s (ls /dev/video* lists the cameras)", s.Source)
	}},
	{"inappropriate ioctl", func(s Spec) string {
		return fmt.Sprintf("%s is not a video capture device", s.Source)
	}},
	{"unknown encoder", func(Spec) string {
		return "this ffmpeg has no libx264 encoder; install ffmpeg: apt-get install ffmpeg"
	}},
	{"unknown input format", func(s Spec) string {
		return fmt.Sprintf("this ffmpeg cannot read %s input; install ffmpeg: apt-get install ffmpeg", s.Kind)
	}},
	{"not supported", unsupported},
	{"unsupported", unsupported},
	{"invalid argument", unsupported},
	{"does not support", unsupported},
}

func unsupported(s Spec) string {
	if s.Kind == KindV4L2 {
		return fmt.Sprintf("%s refused %dx%d at %d fps; pick a mode it offers (v4l2-ctl -d %s --list-formats-ext) with @WxH@FPS",
			s.Source, s.Width, s.Height, s.FPS, s.Source)
	}
	return fmt.Sprintf("%s refused %dx%d at %d fps; try another @WxH@FPS", s.Source, s.Width, s.Height, s.FPS)
}

// exitError explains a failed run from ffmpeg's stderr: what went wrong, what
// to do, and ffmpeg's own words.
func (r *run) exitError(status, stderr string) *Error {
	s := r.enc.spec
	lower := strings.ToLower(stderr)
	advice := "ffmpeg stopped unexpectedly"
	for _, h := range stderrHints {
		if strings.Contains(lower, h.needle) {
			advice = h.advice(s)
			break
		}
	}
	said := lastLines(stderr, 2)
	msg := fmt.Sprintf("stream %q (%s): %s; ffmpeg %s", s.Name, s.Source, advice, status)
	if said != "" {
		msg += fmt.Sprintf(": %q", said)
	}
	return &Error{Status: 503, Code: codeUnavailable, RetryAfter: retryAfter, Msg: msg}
}

func exitStatus(err error) string {
	var ee *exec.ExitError
	switch {
	case err == nil:
		return "exited with status 0"
	case errors.As(err, &ee):
		return ee.ProcessState.String() // "exit status 1", "signal: killed"
	}
	return err.Error()
}

// tailBuffer keeps the last max bytes written to it.
type tailBuffer struct {
	mu  sync.Mutex
	max int
	b   []byte
}

func (t *tailBuffer) Write(p []byte) (int, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.b = append(t.b, p...)
	if over := len(t.b) - t.max; over > 0 {
		t.b = append(t.b[:0], t.b[over:]...)
	}
	return len(p), nil
}

func (t *tailBuffer) String() string {
	t.mu.Lock()
	defer t.mu.Unlock()
	return string(t.b)
}

func (t *tailBuffer) lastLines(n int) string { return lastLines(t.String(), n) }

// lastLines returns the last n non-blank lines of s joined by " / ",
// printable and at most 400 bytes.
func lastLines(s string, n int) string {
	var out []string
	lines := strings.Split(s, "\n")
	for i := len(lines) - 1; i >= 0 && len(out) < n; i-- {
		if l := strings.TrimSpace(lines[i]); l != "" {
			out = append([]string{l}, out...)
		}
	}
	j := strings.ToValidUTF8(strings.Join(out, " / "), "?")
	if len(j) > 400 {
		j = "…" + strings.ToValidUTF8(j[len(j)-400:], "")
	}
	return j
}

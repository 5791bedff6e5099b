package media

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/pion/rtp"
	"github.com/pion/rtp/codecs"

	"github.com/robonet-mesh/robonet/internal/testmesh"
)

// needFFmpeg skips the test when ffmpeg is missing, or fails it in CI.
func needFFmpeg(t *testing.T) {
	t.Helper()
	if _, err := exec.LookPath("ffmpeg"); err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("ffmpeg is required in CI: %v", err)
		}
		t.Skipf("no ffmpeg: %v", err)
	}
}

// tLogWriter sends the Encoder's log to the test's.
type tLogWriter struct{ t *testing.T }

func (w tLogWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimSpace(string(p)))
	return len(p), nil
}

// newTestEncoder parses one --media entry and builds its Encoder, closed
// at the end of the test (Close waits for every goroutine, so the log
// stops before the test ends).
func newTestEncoder(t *testing.T, entry string, opts EncoderOptions) *Encoder {
	t.Helper()
	specs, err := ParseSpecs(entry)
	if err != nil {
		t.Fatal(err)
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.NewTextHandler(tLogWriter{t}, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	e, err := NewEncoder(specs[0], opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(e.Close)
	return e
}

// ffmpegChildren lists the ffmpeg processes (zombies included) whose parent
// is this test process, from /proc.
func ffmpegChildren(t *testing.T) []int {
	t.Helper()
	dirs, err := filepath.Glob("/proc/[0-9]*/stat")
	if err != nil {
		t.Fatal(err)
	}
	me := os.Getpid()
	var pids []int
	for _, d := range dirs {
		b, err := os.ReadFile(d)
		if err != nil {
			continue // gone meanwhile
		}
		// pid (comm) state ppid ...: comm may hold spaces, so split after the last ')'.
		s := string(b)
		open, end := strings.IndexByte(s, '('), strings.LastIndexByte(s, ')')
		if open < 0 || end < open {
			continue
		}
		fields := strings.Fields(s[end+1:])
		if len(fields) < 2 || s[open+1:end] != "ffmpeg" {
			continue
		}
		if ppid, _ := strconv.Atoi(fields[1]); ppid == me {
			pid, _ := strconv.Atoi(strings.TrimSpace(s[:open]))
			pids = append(pids, pid)
		}
	}
	return pids
}

func readyWithin(t *testing.T, e *Encoder, d time.Duration) error {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), d)
	defer cancel()
	return e.Ready(ctx)
}

// nalUnits splits an H.264 RTP payload (RFC 6184) into the NAL units it
// starts: a single NAL, each unit of a STAP-A, or the start of an FU-A
// (its first bytes, with the NAL header rebuilt).
func nalUnits(payload []byte) [][]byte {
	if len(payload) < 1 {
		return nil
	}
	switch typ := payload[0] & 0x1f; {
	case typ >= 1 && typ <= 23:
		return [][]byte{payload}
	case typ == 24: // STAP-A: 2-byte size, NAL, …
		var out [][]byte
		for p := payload[1:]; len(p) >= 2; {
			n := int(p[0])<<8 | int(p[1])
			if n == 0 || len(p) < 2+n {
				break
			}
			out = append(out, p[2:2+n])
			p = p[2+n:]
		}
		return out
	case typ == 28: // FU-A: indicator, header (S E R type), fragment
		if len(payload) < 2 || payload[1]&0x80 == 0 {
			return nil
		}
		nal := append([]byte{payload[0]&0xe0 | payload[1]&0x1f}, payload[2:]...)
		return [][]byte{nal}
	}
	return nil
}

func TestTestsrcSendsConstrainedBaselineH264(t *testing.T) {
	needFFmpeg(t)
	e := newTestEncoder(t, "test=testsrc@320x240@15", EncoderOptions{Linger: 300 * time.Millisecond})
	if c := e.Track().Codec(); c.MimeType != "video/H264" || c.ClockRate != 90000 || c.SDPFmtpLine != H264FmtpLine {
		t.Errorf("track codec %+v", c)
	}
	if e.Track().ID() != "video" || e.Track().StreamID() != "robonet-test" {
		t.Errorf("track id %q stream id %q, want video, robonet-test", e.Track().ID(), e.Track().StreamID())
	}
	pkts := make(chan []byte, 1024)
	cancel := e.OnRTP(func(p []byte) {
		select {
		case pkts <- p:
		default:
		}
	})
	defer cancel()
	release := e.Acquire()
	defer release()
	if err := readyWithin(t, e, 20*time.Second); err != nil {
		t.Fatal(err)
	}

	var sps []byte
	sawIDR := false
	deadline := time.After(15 * time.Second)
	for sps == nil || !sawIDR {
		select {
		case b := <-pkts:
			var p rtp.Packet
			if err := p.Unmarshal(b); err != nil {
				t.Fatalf("not RTP: %v", err)
			}
			if p.PayloadType != rtpPayloadType {
				t.Fatalf("payload type %d, want %d", p.PayloadType, rtpPayloadType)
			}
			for _, nal := range nalUnits(p.Payload) {
				switch nal[0] & 0x1f {
				case 7:
					if len(nal) >= 4 && sps == nil {
						sps = nal
					}
				case 5:
					sawIDR = true
				}
			}
		case <-deadline:
			t.Fatalf("no SPS and IDR in the RTP (sps %x, idr %v)", sps, sawIDR)
		}
	}
	if profile, constraints := sps[1], sps[2]; profile != 66 || constraints&0x40 == 0 {
		t.Errorf("SPS profile_idc %d constraint flags %08b; want 66 (baseline) with constraint_set1 (constrained)", profile, constraints)
	}
	testmesh.CheckFor(t, 5*time.Second, 20*time.Millisecond, func() error {
		if i := e.Info(); !i.Live || i.Viewers != 1 || i.Error != "" || i.Codec != "H264" {
			return fmt.Errorf("Info = %+v, want live with 1 viewer and no error", i)
		}
		return nil
	})
}

func TestOneFFmpegForManyViewersNoneAfterTheLinger(t *testing.T) {
	needFFmpeg(t)
	e := newTestEncoder(t, "test=testsrc@320x240@15", EncoderOptions{Linger: 300 * time.Millisecond})
	r1, r2 := e.Acquire(), e.Acquire()
	if err := readyWithin(t, e, 20*time.Second); err != nil {
		t.Fatal(err)
	}
	if !e.Running() {
		t.Fatal("Running() = false with two viewers")
	}
	if pids := ffmpegChildren(t); len(pids) != 1 {
		t.Fatalf("ffmpeg children %v, want exactly one", pids)
	}
	if v := e.Info().Viewers; v != 2 {
		t.Errorf("Viewers = %d, want 2", v)
	}
	r1()
	r1() // idempotent
	if v := e.Info().Viewers; v != 1 {
		t.Errorf("Viewers = %d after one viewer released twice, want 1", v)
	}
	if pids := ffmpegChildren(t); len(pids) != 1 || !e.Running() {
		t.Fatalf("ffmpeg children %v, Running %v with one viewer left; want one running", pids, e.Running())
	}
	r2()
	testmesh.CheckFor(t, 10*time.Second, 20*time.Millisecond, func() error {
		if pids := ffmpegChildren(t); len(pids) != 0 || e.Running() {
			return fmt.Errorf("ffmpeg children %v, Running %v after the last release and the linger", pids, e.Running())
		}
		return nil
	})
	if i := e.Info(); i.Live || i.Viewers != 0 || i.Error != "" {
		t.Errorf("Info after the linger = %+v, want not live, no viewers, no error", i)
	}
}

func TestAcquireDuringTheLingerKeepsTheProcess(t *testing.T) {
	needFFmpeg(t)
	e := newTestEncoder(t, "test=testsrc@320x240@15", EncoderOptions{Linger: time.Hour})
	release := e.Acquire()
	if err := readyWithin(t, e, 20*time.Second); err != nil {
		t.Fatal(err)
	}
	before := ffmpegChildren(t)
	release()
	release = e.Acquire()
	if err := readyWithin(t, e, 20*time.Second); err != nil {
		t.Fatal(err)
	}
	if after := ffmpegChildren(t); len(before) != 1 || len(after) != 1 || before[0] != after[0] {
		t.Errorf("ffmpeg children %v before the release, %v after the new Acquire; want the same one process", before, after)
	}
	release()
	e.Close() // stops at once despite the hour's linger, and waits
	if pids := ffmpegChildren(t); len(pids) != 0 || e.Running() {
		t.Errorf("ffmpeg children %v, Running %v after Close", pids, e.Running())
	}
	e.Close() // idempotent
	e.Acquire()()
	var me *Error
	if err := readyWithin(t, e, time.Second); !errors.As(err, &me) || me.Status != 503 {
		t.Errorf("Ready after Close = %v, want a 503 *Error", err)
	}
}

func TestNegativeLingerStopsAtOnceAndRestarts(t *testing.T) {
	needFFmpeg(t)
	e := newTestEncoder(t, "test=testsrc@320x240@15", EncoderOptions{Linger: -1})
	for i := 0; i < 2; i++ {
		release := e.Acquire()
		if err := readyWithin(t, e, 20*time.Second); err != nil {
			t.Fatalf("run %d: %v", i+1, err)
		}
		release()
		testmesh.CheckFor(t, 10*time.Second, 20*time.Millisecond, func() error {
			if pids := ffmpegChildren(t); len(pids) != 0 || e.Running() {
				return fmt.Errorf("run %d: ffmpeg children %v, Running %v after the release", i+1, pids, e.Running())
			}
			return nil
		})
	}
}

func TestReadyBeforeAcquireIsNotLive(t *testing.T) {
	e := newTestEncoder(t, "test=testsrc@320x240@15", EncoderOptions{FFmpeg: "/bin/true"})
	var me *Error
	if err := readyWithin(t, e, time.Second); !errors.As(err, &me) || me.Status != 409 || me.RetryAfter == 0 {
		t.Errorf("Ready before Acquire = %v, want a 409 *Error with Retry-After", err)
	}
}

// wantFailure acquires e and checks that Ready fails with a 503 *Error
// whose Msg holds every one of want, that Info reports it, and that no
// ffmpeg is left.
func wantFailure(t *testing.T, e *Encoder, want ...string) {
	t.Helper()
	release := e.Acquire()
	defer release()
	err := readyWithin(t, e, 20*time.Second)
	var me *Error
	if !errors.As(err, &me) {
		t.Fatalf("Ready = %v, want an *Error", err)
	}
	if me.Status != 503 || me.Code != codeUnavailable || me.RetryAfter != retryAfter {
		t.Errorf("Ready = %+v, want status 503, code %s, Retry-After %d", me, codeUnavailable, retryAfter)
	}
	for _, w := range want {
		if !strings.Contains(me.Msg, w) {
			t.Errorf("Ready's message %q does not say %q", me.Msg, w)
		}
	}
	testmesh.CheckFor(t, 10*time.Second, 20*time.Millisecond, func() error {
		if i := e.Info(); i.Error != me.Msg || i.Live || e.Running() || len(ffmpegChildren(t)) != 0 {
			return fmt.Errorf("Info = %+v, Running %v, children %v; want the error, not live, no ffmpeg", i, e.Running(), ffmpegChildren(t))
		}
		return nil
	})
}

func TestMissingCameraQuotesFFmpeg(t *testing.T) {
	needFFmpeg(t)
	e := newTestEncoder(t, "cam=/dev/video99@320x240@15", EncoderOptions{Linger: 300 * time.Millisecond})
	wantFailure(t, e, `stream "cam"`, "no such device /dev/video99", "No such file or directory")
}

func TestMissingDisplayQuotesFFmpeg(t *testing.T) {
	needFFmpeg(t)
	e := newTestEncoder(t, "screen=:97@320x240@15", EncoderOptions{Linger: 300 * time.Millisecond})
	wantFailure(t, e, `stream "screen"`, "cannot open X display :97", "Cannot open display :97")
}

func TestMissingFFmpegSaysHowToInstallIt(t *testing.T) {
	spec := Spec{Name: "test", Source: "testsrc", Kind: KindTest, Width: 320, Height: 240, FPS: 15}
	_, err := NewEncoder(spec, EncoderOptions{FFmpeg: "/nonexistent/ffmpeg"})
	var me *Error
	if !errors.As(err, &me) || me.Status != 503 || !strings.Contains(me.Msg, "install ffmpeg: apt-get install ffmpeg") {
		t.Errorf("NewEncoder with no ffmpeg = %v, want a 503 *Error saying how to install it", err)
	}

	// ffmpeg vanishing after NewEncoder found it: the run fails with the same advice.
	bin := filepath.Join(t.TempDir(), "ffmpeg")
	if err := os.WriteFile(bin, []byte("#!/bin/sh\nexit 1\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	e := newTestEncoder(t, "test=testsrc@320x240@15", EncoderOptions{FFmpeg: bin, Linger: 300 * time.Millisecond})
	if err := os.Remove(bin); err != nil {
		t.Fatal(err)
	}
	wantFailure(t, e, `stream "test"`, "ffmpeg not found at "+bin, "install ffmpeg: apt-get install ffmpeg")
}

func TestFFmpegThatSendsNothingFailsTheRun(t *testing.T) {
	// A stand-in that exits at once and says why, as ffmpeg does for an
	// option it does not know.
	bin := filepath.Join(t.TempDir(), "ffmpeg")
	script := "#!/bin/sh\necho \"[video4linux2,v4l2 @ 0x5] ioctl(VIDIOC_S_FMT): Device or resource busy\" >&2\necho '/dev/video0: Device or resource busy' >&2\nexit 1\n"
	if err := os.WriteFile(bin, []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
	e := newTestEncoder(t, "cam=/dev/video0@320x240@15", EncoderOptions{FFmpeg: bin, Linger: 300 * time.Millisecond})
	wantFailure(t, e, "camera /dev/video0 is busy", "exit status 1", "/dev/video0: Device or resource busy")
}

func TestFFmpegComplaintsBecomeAdvice(t *testing.T) {
	for _, tc := range []struct{ entry, stderr, want string }{
		{"c=/dev/video0", "[video4linux2,v4l2 @ 0x55] Cannot open video device /dev/video0: No such file or directory\n/dev/video0: No such file or directory\n", "no such device /dev/video0"},
		{"c=/dev/video0", "/dev/video0: Device or resource busy\n", "camera /dev/video0 is busy"},
		{"c=/dev/video0", "/dev/video0: Permission denied\n", "add the node's user to the video group"},
		{"c=/dev/video0", "", "ffmpeg stopped unexpectedly; ffmpeg exit status 1"},
		{"c=/dev/video1", "[video4linux2,v4l2 @ 0x55] ioctl(VIDIOC_QUERYCAP): Inappropriate ioctl for device\n", "/dev/video1 is not a video capture device"},
		{"c=/dev/video0@4000x3000", "[video4linux2,v4l2 @ 0x55] ioctl(VIDIOC_S_FMT): Invalid argument\n", "refused 4000x3000 at 30 fps; pick a mode it offers (v4l2-ctl -d /dev/video0 --list-formats-ext)"},
		{"s=:0", "[x11grab @ 0x55] Cannot open display :0, error 1.\n:0: Input/output error\n", "cannot open X display :0"},
		{"s=:0@4096x4096", "[x11grab @ 0x55] Capture area 4096x4096 at position 0.0 outside the screen size 1024x768\n", "display :0 is smaller than 4096x4096"},
		{"t=testsrc", "Unknown encoder 'libx264'\n", "no libx264 encoder; install ffmpeg"},
	} {
		specs, err := ParseSpecs(tc.entry)
		if err != nil {
			t.Fatal(err)
		}
		r := &run{enc: &Encoder{spec: specs[0]}}
		got := r.exitError("exit status 1", tc.stderr)
		if !strings.Contains(got.Msg, tc.want) {
			t.Errorf("%s saying %q: %q, want it to say %q", tc.entry, tc.stderr, got.Msg, tc.want)
		}
		if last := lastLines(tc.stderr, 1); last != "" && !strings.Contains(got.Msg, strings.TrimSpace(last)) {
			t.Errorf("%s: %q does not quote ffmpeg's %q", tc.entry, got.Msg, last)
		}
	}
}

func TestTailBufferKeepsTheEnd(t *testing.T) {
	tb := &tailBuffer{max: 8}
	for _, s := range []string{"abc", "defgh", "ijklmnopqr", "s"} {
		tb.Write([]byte(s))
	}
	if got := tb.String(); got != "lmnopqrs" {
		t.Errorf("tail = %q, want %q", got, "lmnopqrs")
	}
	if got := lastLines("a\n\n b \nc\n\n", 2); got != "b / c" {
		t.Errorf("lastLines = %q", got)
	}
}

// TestClockFramesDecodeBack depacketizes the clock stream's RTP, decodes
// it with a second ffmpeg and reads the barcode of its first frame: the
// wall clock when the frame was drawn, as the latency bench reads it in
// the browser.
func TestClockFramesDecodeBack(t *testing.T) {
	needFFmpeg(t)
	const w, h = 640, 480
	e := newTestEncoder(t, fmt.Sprintf("clk=clock@%dx%d@15", w, h), EncoderOptions{Linger: 300 * time.Millisecond})

	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	dec := exec.CommandContext(ctx, "ffmpeg", "-hide_banner", "-loglevel", "error",
		"-probesize", "32", "-analyzeduration", "0", "-f", "h264", "-i", "pipe:0",
		"-frames:v", "1", "-f", "rawvideo", "-pix_fmt", "gray", "pipe:1")
	in, err := dec.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	var out, stderr bytes.Buffer
	dec.Stdout, dec.Stderr = &out, &stderr
	if err := dec.Start(); err != nil {
		t.Fatal(err)
	}

	annexB := make(chan []byte, 4096)
	var depack codecs.H264Packet
	stop := e.OnRTP(func(b []byte) {
		var p rtp.Packet
		if p.Unmarshal(b) != nil {
			return
		}
		if au, err := depack.Unmarshal(p.Payload); err == nil && len(au) > 0 {
			select {
			case annexB <- au:
			default:
			}
		}
	})
	defer stop()
	release := e.Acquire()
	defer release()
	if err := readyWithin(t, e, 20*time.Second); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- dec.Wait() }()
	var werr error
feed:
	for {
		select {
		case au := <-annexB:
			if _, err := in.Write(au); err != nil {
				werr = <-exited
				break feed
			}
		case werr = <-exited:
			break feed
		}
	}
	if werr != nil || out.Len() != w*h {
		t.Fatalf("decoder: %v, %d bytes of %d, said %q", werr, out.Len(), w*h, stderr.String())
	}
	frame := out.Bytes()
	got := ReadBarcode(func(x, y int) uint8 { return frame[y*w+x] })
	now := uint64(time.Now().UnixMilli()) & barcodeMask
	age := (now - got) & barcodeMask
	// Not a latency assertion: only that the barcode survived H.264 and is
	// a time of this run (the frame was drawn after the test started).
	if age > 60_000 {
		t.Errorf("barcode reads %d, now is %d: %d ms apart; the barcode did not survive the encoding", got, now, age)
	}
	t.Logf("first decoded frame was drawn %d ms before it was read back", age)
}

// procGone tells whether pid has ended (gone, or a zombie left to init).
func procGone(pid int) bool {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return true
	}
	s := string(b)
	fields := strings.Fields(s[strings.LastIndexByte(s, ')')+1:])
	return len(fields) > 0 && fields[0] == "Z"
}

func TestSilentFFmpegIsKilledWithItsGroup(t *testing.T) {
	dir := t.TempDir()
	bin, pidFile := filepath.Join(dir, "ffmpeg"), filepath.Join(dir, "child.pid")
	script := "#!/bin/sh\nsleep 600 &\necho $! > " + pidFile + "\necho 'waiting for frames that never come' >&2\nwait\n"
	if err := os.WriteFile(bin, []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
	e := newTestEncoder(t, "test=testsrc@320x240@15", EncoderOptions{FFmpeg: bin, Linger: time.Hour})
	e.noShow = 500 * time.Millisecond
	wantFailure(t, e, "sent no video within 500ms", "waiting for frames that never come")
	b, err := os.ReadFile(pidFile)
	if err != nil {
		t.Fatal(err)
	}
	child, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil {
		t.Fatal(err)
	}
	testmesh.CheckFor(t, 10*time.Second, 20*time.Millisecond, func() error {
		if !procGone(child) {
			return fmt.Errorf("the stand-in's child %d outlived it", child)
		}
		return nil
	})
}

func TestCloseKillsAnFFmpegThatIgnoresSIGTERM(t *testing.T) {
	bin := filepath.Join(t.TempDir(), "ffmpeg")
	if err := os.WriteFile(bin, []byte("#!/bin/sh\ntrap '' TERM\nexec sleep 600\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	e := newTestEncoder(t, "test=testsrc@320x240@15", EncoderOptions{FFmpeg: bin, Linger: time.Hour})
	e.Acquire()
	testmesh.CheckFor(t, 10*time.Second, 20*time.Millisecond, func() error {
		if !e.Running() {
			return errors.New("the stand-in is not running")
		}
		return nil
	})
	e.mu.Lock()
	pid := e.cur.pid
	e.mu.Unlock()
	e.Close()
	if e.Running() || !procGone(pid) {
		t.Errorf("after Close: Running %v, process %d gone %v", e.Running(), pid, procGone(pid))
	}
}

func TestFFmpegDyingUnderAViewerIsRestarted(t *testing.T) {
	needFFmpeg(t)
	e := newTestEncoder(t, "test=testsrc@320x240@15", EncoderOptions{Linger: 300 * time.Millisecond})
	type numbers struct {
		seq uint16
		ts  uint32
	}
	var mu sync.Mutex
	var seen []numbers
	defer e.OnRTP(func(b []byte) {
		mu.Lock()
		seen = append(seen, numbers{binary.BigEndian.Uint16(b[2:]), binary.BigEndian.Uint32(b[4:])})
		mu.Unlock()
	})()
	release := e.Acquire()
	defer release()
	if err := readyWithin(t, e, 20*time.Second); err != nil {
		t.Fatal(err)
	}
	first := ffmpegChildren(t)
	if len(first) != 1 {
		t.Fatalf("ffmpeg children %v, want one", first)
	}
	if err := syscall.Kill(first[0], syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	testmesh.CheckFor(t, 20*time.Second, 20*time.Millisecond, func() error {
		now := ffmpegChildren(t)
		if len(now) != 1 || now[0] == first[0] || !e.Info().Live || e.Info().Error != "" {
			return fmt.Errorf("ffmpeg children %v (the killed one was %d), Info %+v; want a new live one", now, first[0], e.Info())
		}
		return nil
	})
	if err := readyWithin(t, e, 20*time.Second); err != nil {
		t.Errorf("Ready after the restart = %v", err)
	}
	// The second ffmpeg's packets continue the first's numbering, so a
	// viewer's decoder sees one stream with a pause.
	mu.Lock()
	defer mu.Unlock()
	for i := 1; i < len(seen); i++ {
		dseq, dts := seen[i].seq-seen[i-1].seq, int32(seen[i].ts-seen[i-1].ts)
		if dseq != 1 || dts < 0 || dts > 10*90000 {
			t.Fatalf("packet %d of %d: sequence %d→%d, timestamp %d→%d; want +1 and a step forward under 10 s",
				i, len(seen), seen[i-1].seq, seen[i].seq, seen[i-1].ts, seen[i].ts)
		}
	}
}

// startXvfb runs a virtual X display of w×h for the test and returns its
// name (":N"), or skips the test when Xvfb is not installed (fails in CI).
func startXvfb(t *testing.T, w, h int) string {
	t.Helper()
	bin, err := exec.LookPath("Xvfb")
	if err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("no Xvfb and CI=true (scripts/test installs xvfb): %v", err)
		}
		t.Skipf("no Xvfb (apt-get install xvfb): %v", err)
	}
	for n := 90 + os.Getpid()%50; n < 200; n++ {
		sock := fmt.Sprintf("/tmp/.X11-unix/X%d", n)
		if _, err := os.Stat(sock); err == nil {
			continue
		}
		if _, err := os.Stat(fmt.Sprintf("/tmp/.X%d-lock", n)); err == nil {
			continue
		}
		x := exec.Command(bin, fmt.Sprintf(":%d", n), "-nolisten", "tcp", "-screen", "0", fmt.Sprintf("%dx%dx24", w, h))
		var out bytes.Buffer
		x.Stdout, x.Stderr = &out, &out
		if err := x.Start(); err != nil {
			t.Fatal(err)
		}
		exited := make(chan struct{})
		go func() { _ = x.Wait(); close(exited) }()
		t.Cleanup(func() { _ = x.Process.Kill(); <-exited })
		testmesh.CheckFor(t, 10*time.Second, 20*time.Millisecond, func() error {
			select {
			case <-exited:
				t.Fatalf("Xvfb :%d exited: %s", n, out.String())
			default:
			}
			if _, err := os.Stat(sock); err != nil {
				return fmt.Errorf("Xvfb :%d has no socket yet", n)
			}
			return nil
		})
		return fmt.Sprintf(":%d", n)
	}
	t.Fatal("no free X display number in :90..:199")
	return ""
}

func TestX11GrabSendsVideo(t *testing.T) {
	needFFmpeg(t)
	display := startXvfb(t, 640, 480)
	e := newTestEncoder(t, "screen="+display+"@320x240@15", EncoderOptions{Linger: 300 * time.Millisecond})
	release := e.Acquire()
	defer release()
	if err := readyWithin(t, e, 20*time.Second); err != nil {
		t.Fatal(err)
	}
	testmesh.CheckFor(t, 5*time.Second, 20*time.Millisecond, func() error {
		if i := e.Info(); !i.Live {
			return fmt.Errorf("Info = %+v, want live", i)
		}
		return nil
	})
}

func TestX11GrabLargerThanTheScreenSaysSo(t *testing.T) {
	needFFmpeg(t)
	display := startXvfb(t, 640, 480)
	e := newTestEncoder(t, "screen="+display+"@1280x720@15", EncoderOptions{Linger: 300 * time.Millisecond})
	wantFailure(t, e, "display "+display+" is smaller than 1280x720", "outside the screen")
}

// FuzzFFmpegStderr feeds exitError whatever ffmpeg might print: the message
// stays valid UTF-8 of bounded size and always names the stream.
func FuzzFFmpegStderr(f *testing.F) {
	for _, s := range []string{"", "/dev/video0: Device or resource busy\n", "\xff\xfe\n\n\n", strings.Repeat("é", 3000),
		"[x11grab @ 0x5] Cannot open display :0, error 1.\n:0: Input/output error\n"} {
		f.Add(s)
	}
	r := &run{enc: &Encoder{spec: Spec{Name: "cam", Source: "/dev/video0", Kind: KindV4L2, Width: 640, Height: 480, FPS: 30}}}
	f.Fuzz(func(t *testing.T, stderr string) {
		tb := &tailBuffer{max: stderrTail}
		tb.Write([]byte(stderr))
		err := r.exitError("exit status 1", tb.String())
		if !utf8.ValidString(err.Msg) || len(err.Msg) > 1200 || !strings.HasPrefix(err.Msg, `stream "cam" (/dev/video0): `) {
			t.Fatalf("exitError(%q) = %q", stderr, err.Msg)
		}
	})
}

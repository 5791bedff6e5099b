// Command media prints the media figures of issue 13 on this machine, for
// both WHEP paths (direct: the browser's WebRTC ends at the camera's node;
// relay: it ends at the gateway, which takes the RTP over a NATS route):
//
//   - time to first frame, cold (no encoder running: the viewer starts
//     ffmpeg) and warm (joining a running stream), from the player page's
//     WHEP POST and from its navigation start to the first
//     requestVideoFrameCallback;
//   - glass-to-glass latency of the `clock` stream (the wall clock drawn as
//     a barcode into each frame, read back from every presented frame) with
//     one and with five viewers;
//   - CPU of ffmpeg, of both nodes and of the browser with one and with
//     five viewers.
//
// It drives the real binary as two processes (camera node B with the
// streams, node A with the gateway, one swarm over a route) and a headless
// Chromium on the gateway's real player page. It measures and asserts
// nothing.
//
//	go run ./bench/media [-runs 5] [-window 10s] [-bin PATH] [-json] [-v]
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"runtime"
	"syscall"
	"time"

	"github.com/robonet-mesh/robonet/bench/internal/proc"
)

// netnsEnv marks the copy of the program re-executed in a loopback-only
// network namespace (not ROBONET_*: robonet reads those as flags).
const netnsEnv = "BENCH_MEDIA_NETNS"

// config is what the flags say.
type config struct {
	runs    int
	viewers int
	window  time.Duration
	settle  time.Duration
	linger  time.Duration
	bin     string
	json    bool
	verbose bool
	netns   bool
	ttff    bool
	rounds  int
}

func main() { os.Exit(run()) }

func run() int {
	var cfg config
	flag.IntVar(&cfg.runs, "runs", 5, "time-to-first-frame runs per path, cold and warm")
	flag.IntVar(&cfg.viewers, "viewers", 5, "browser tabs watching the clock stream for the latency and CPU figures")
	flag.DurationVar(&cfg.window, "window", 10*time.Second, "how long latency and CPU are measured, with 1 and with -viewers viewers")
	flag.DurationVar(&cfg.settle, "settle", 2*time.Second, "wait after the viewers play before a window starts")
	flag.DurationVar(&cfg.linger, "linger", time.Second, "node B's --media-linger (how long an encoder outlives its last viewer: a cold run waits for it)")
	flag.StringVar(&cfg.bin, "bin", "", "robonet binary to drive (default: go build ./cmd/robonet into a temp dir)")
	flag.BoolVar(&cfg.json, "json", false, "print JSON instead of a table")
	flag.BoolVar(&cfg.verbose, "v", false, "print progress on stderr")
	flag.IntVar(&cfg.rounds, "rounds", 1, "latency and CPU rounds: each measures direct then relay, and the windows of every round are pooled")
	flag.BoolVar(&cfg.ttff, "ttff", true, "measure time to first frame (false: latency and CPU only)")
	flag.BoolVar(&cfg.netns, "netns", true, "as root, run in a new loopback-only network namespace (unshare -n)")
	flag.Usage = func() {
		fmt.Fprintf(flag.CommandLine.Output(), "usage: media [flags]\n\n"+
			"Prints robonet's media figures (time to first frame, glass-to-glass latency, CPU) for the\n"+
			"direct and the relay path, driving the real binary and headless Chromium on 127.0.0.1.\n\n")
		flag.PrintDefaults()
	}
	flag.Parse()
	if flag.NArg() > 0 {
		fmt.Fprintf(os.Stderr, "media: unexpected argument %q\n", flag.Arg(0))
		return 2
	}
	if cfg.runs < 1 || cfg.rounds < 1 || cfg.viewers < 2 || cfg.window < time.Second || cfg.settle < 0 || cfg.linger < 0 {
		fmt.Fprintln(os.Stderr, "media: -runs and -rounds must be at least 1, -viewers at least 2, -window at least 1s, -settle and -linger not negative")
		return 2
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()

	tmp, err := os.MkdirTemp("", "robonet-mediabench-")
	if err != nil {
		fmt.Fprintln(os.Stderr, "media:", err)
		return 1
	}
	defer os.RemoveAll(tmp)
	b := &bench{cfg: cfg, tmp: tmp, progress: io.Discard}
	if cfg.verbose {
		b.progress = os.Stderr
	}
	defer b.ps.Close()

	if b.bin = cfg.bin; b.bin == "" {
		b.bin = filepath.Join(tmp, "robonet")
		b.logf("building ./cmd/robonet")
		if out, err := exec.CommandContext(ctx, "go", "build", "-o", b.bin, "./cmd/robonet").CombinedOutput(); err != nil {
			fmt.Fprintf(os.Stderr, "media: go build: %v\n%s", err, out)
			return 1
		}
	}
	inNetns := os.Getenv(netnsEnv) == "1"
	if !inNetns && cfg.netns && os.Geteuid() == 0 {
		return reexecInNetns(ctx, b.bin)
	}
	if inNetns {
		if out, err := exec.CommandContext(ctx, "ip", "link", "set", "lo", "up").CombinedOutput(); err != nil {
			fmt.Fprintf(os.Stderr, "media: ip link set lo up: %v: %s\n", err, out)
			return 1
		}
	}

	rep := report{
		Runs: cfg.runs, Viewers: cfg.viewers, Rounds: cfg.rounds, Window: cfg.window.String(), Linger: cfg.linger.String(),
		Go: runtime.Version(), CPUs: runtime.NumCPU(), Netns: inNetns,
		Started: time.Now().UTC().Truncate(time.Second), LoadStart: proc.LoadAvg(),
	}
	b.rep = &rep
	began := time.Now()
	err = b.measure(ctx)
	rep.Elapsed = time.Since(began).Round(time.Second).String()
	rep.LoadEnd = proc.LoadAvg()
	if err != nil {
		b.note("stopped early: " + err.Error())
	}
	rep.Notes = b.notes
	if cfg.json {
		enc := json.NewEncoder(os.Stdout)
		enc.SetIndent("", "  ")
		if err := enc.Encode(rep); err != nil {
			fmt.Fprintln(os.Stderr, "media:", err)
			return 1
		}
	} else {
		rep.print(os.Stdout)
	}
	if err != nil || b.failed {
		return 1
	}
	return 0
}

// reexecInNetns runs this program again under `unshare -n`, with -bin set
// to the binary already built (the namespace has no network for go build),
// and returns its exit status.
func reexecInNetns(ctx context.Context, bin string) int {
	self, err := os.Executable()
	if err != nil {
		fmt.Fprintln(os.Stderr, "media: find this program for unshare:", err)
		return 1
	}
	args := append([]string{"-n", "--", self}, os.Args[1:]...)
	args = append(args, "-bin", bin)
	cmd := exec.Command("unshare", args...)
	cmd.Stdin, cmd.Stdout, cmd.Stderr = os.Stdin, os.Stdout, os.Stderr
	cmd.Env = append(os.Environ(), netnsEnv+"=1")
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		fmt.Fprintln(os.Stderr, "media: unshare -n:", err)
		return 1
	}
	go func() {
		<-ctx.Done() // a Ctrl-C reaches the child too; a SIGTERM is passed on
		_ = cmd.Process.Signal(syscall.SIGTERM)
	}()
	err = cmd.Wait()
	var ee *exec.ExitError
	switch {
	case err == nil:
		return 0
	case errors.As(err, &ee) && ee.ExitCode() > 0:
		return ee.ExitCode()
	default:
		fmt.Fprintln(os.Stderr, "media: unshare -n:", err)
		return 1
	}
}

// bench is one run of the program.
type bench struct {
	cfg      config
	tmp      string
	bin      string
	ps       proc.Group
	progress io.Writer
	rep      *report
	notes    []string
	failed   bool // a run failed: the exit status is 1

	sw *swarm
	br *browser
}

func (b *bench) logf(format string, a ...any) {
	fmt.Fprintf(b.progress, "media %s: "+format+"\n", append([]any{time.Now().Format("15:04:05.000")}, a...)...)
}

// note adds a line under the table.
func (b *bench) note(s string) {
	b.notes = append(b.notes, s)
	b.logf("note: %s", s)
}

// fail notes a failed run.
func (b *bench) fail(format string, a ...any) {
	b.failed = true
	b.note(fmt.Sprintf(format, a...))
}

// measure sets everything up and takes every figure.
func (b *bench) measure(ctx context.Context) error {
	sw, err := startSwarm(ctx, b)
	if err != nil {
		return err
	}
	b.sw = sw
	b.rep.Chevron = sw.chevB
	b.rep.Version = sw.version(ctx)
	br, err := startBrowser(ctx, b)
	if err != nil {
		return err
	}
	b.br = br
	defer br.close()
	link, err := sw.loginLink(ctx)
	if err != nil {
		return err
	}
	if err := br.login(ctx, link, sw.gwURL); err != nil {
		return err
	}
	for _, path := range []string{pathDirect, pathRelay} {
		pf := &pathFigures{Path: path}
		b.rep.Paths = append(b.rep.Paths, pf)
		if !b.cfg.ttff {
			continue
		}
		if err := b.firstFrames(ctx, pf); err != nil {
			return err
		}
	}
	for round := 1; round <= b.cfg.rounds; round++ {
		for _, pf := range b.rep.Paths {
			if b.cfg.rounds > 1 {
				b.logf("latency round %d of %d, %s", round, b.cfg.rounds, pf.Path)
			}
			if err := b.latency(ctx, pf); err != nil {
				return err
			}
		}
	}
	return nil
}

// The WHEP paths (?path=).
const (
	pathDirect = "direct"
	pathRelay  = "relay"
)

// The streams node B offers.
const (
	streamClock = "clock"
	streamTest  = "test"
	streamsFlag = "clock=clock@1280x720@30,test=testsrc@1280x720@30"
)

// firstFrames takes the cold and the warm time to first frame on pf.Path,
// on the test stream.
func (b *bench) firstFrames(ctx context.Context, pf *pathFigures) error {
	for r := 1; r <= b.cfg.runs; r++ {
		if err := b.sw.waitEncoderStopped(ctx, streamTest); err != nil {
			return err
		}
		t, err := b.br.firstFrame(ctx, b.sw.pageURL(streamTest, pf.Path), pf.Path)
		if err != nil {
			b.fail("%s cold run %d: %v", pf.Path, r, err)
			continue
		}
		b.logf("%s cold %d: navigation → POST %.0f ms; from the POST: answered %.0f ms, connected %.0f ms, first frame %.0f ms",
			pf.Path, r, t.PostStart, t.PostEnd-t.PostStart, t.Connected-t.PostStart, t.First-t.PostStart)
		pf.ColdPost = append(pf.ColdPost, t.First-t.PostStart)
		pf.ColdConnected = append(pf.ColdConnected, t.Connected-t.PostStart)
		pf.ColdNav = append(pf.ColdNav, t.First)
		pf.ColdAnswer = append(pf.ColdAnswer, t.PostEnd-t.PostStart)
	}
	// Warm: one viewer holds the stream while each run joins it.
	holder, err := b.br.open(ctx, b.sw.pageURL(streamTest, pf.Path), pf.Path)
	if err != nil {
		return fmt.Errorf("%s: the viewer holding the stream for the warm runs: %w", pf.Path, err)
	}
	defer holder.close()
	if _, err := b.sw.ffmpegPid(streamTest); err != nil {
		return fmt.Errorf("%s: warm runs: %w", pf.Path, err)
	}
	for r := 1; r <= b.cfg.runs; r++ {
		t, err := b.br.firstFrame(ctx, b.sw.pageURL(streamTest, pf.Path), pf.Path)
		if err != nil {
			b.fail("%s warm run %d: %v", pf.Path, r, err)
			continue
		}
		b.logf("%s warm %d: navigation → POST %.0f ms; from the POST: answered %.0f ms, connected %.0f ms, first frame %.0f ms",
			pf.Path, r, t.PostStart, t.PostEnd-t.PostStart, t.Connected-t.PostStart, t.First-t.PostStart)
		pf.WarmPost = append(pf.WarmPost, t.First-t.PostStart)
		pf.WarmConnected = append(pf.WarmConnected, t.Connected-t.PostStart)
		pf.WarmNav = append(pf.WarmNav, t.First)
		pf.WarmAnswer = append(pf.WarmAnswer, t.PostEnd-t.PostStart)
	}
	return nil
}

// latency watches the clock stream on pf.Path with one viewer, then with
// b.cfg.viewers, each time for a window of latency and CPU.
func (b *bench) latency(ctx context.Context, pf *pathFigures) error {
	if err := b.sw.waitEncoderStopped(ctx, streamTest); err != nil {
		return err // the test stream's ffmpeg would count in the CPU figures
	}
	url := b.sw.pageURL(streamClock, pf.Path)
	var tabs []*tab
	defer func() {
		for _, t := range tabs {
			t.close()
		}
	}()
	for _, n := range []int{1, b.cfg.viewers} {
		for len(tabs) < n {
			t, err := b.br.open(ctx, url, pf.Path)
			if err != nil {
				return fmt.Errorf("%s: viewer %d of the clock stream: %w", pf.Path, len(tabs)+1, err)
			}
			tabs = append(tabs, t)
			if err := t.startBarcode(ctx); err != nil {
				return fmt.Errorf("%s: viewer %d: %w", pf.Path, len(tabs), err)
			}
		}
		b.logf("%s: %d viewer(s) playing the clock stream; settling %v, then a %v window", pf.Path, n, b.cfg.settle, b.cfg.window)
		if err := sleep(ctx, b.cfg.settle); err != nil {
			return err
		}
		lw, cw, err := b.window(ctx, tabs)
		if err != nil {
			return fmt.Errorf("%s, %d viewers: %w", pf.Path, n, err)
		}
		if n == 1 {
			pf.Latency1, pf.CPU1 = pf.Latency1.merge(lw), pf.CPU1.merge(cw)
		} else {
			pf.Latency, pf.CPU = pf.Latency.merge(lw), pf.CPU.merge(cw)
		}
	}
	return nil
}

// window measures latency in every tab and CPU of ffmpeg, the nodes and
// the browser over b.cfg.window.
func (b *bench) window(ctx context.Context, tabs []*tab) (*latencyFig, *cpuFig, error) {
	ff, err := b.sw.ffmpegPid(streamClock)
	if err != nil {
		return nil, nil, err
	}
	pids := []int{ff, b.sw.nodeA.Pid(), b.sw.nodeB.Pid()}
	browserPids := b.br.pids()
	t0 := make([]int64, len(pids))
	for i, p := range pids {
		if t0[i], err = proc.CPUTicks(p); err != nil {
			return nil, nil, err
		}
	}
	bt0 := ticks(browserPids)
	mb0, mt0 := machineTicks()
	for _, t := range tabs {
		if err := t.resetBarcode(ctx); err != nil {
			return nil, nil, err
		}
	}
	began := time.Now()
	if err := sleep(ctx, b.cfg.window); err != nil {
		return nil, nil, err
	}
	wall := time.Since(began).Seconds()
	cpu := make([]float64, len(pids))
	for i, p := range pids {
		v, err := proc.CPUTicks(p)
		if err != nil {
			return nil, nil, err
		}
		cpu[i] = float64(v-t0[i]) * 1000 / proc.ClockTick / wall
	}
	bt1 := ticks(browserPids)
	mb1, mt1 := machineTicks()
	lf := &latencyFig{Viewers: len(tabs)}
	var all []float64
	for i, t := range tabs {
		s, err := t.readBarcode(ctx)
		if err != nil {
			return nil, nil, fmt.Errorf("viewer %d: %w", i+1, err)
		}
		all = append(all, s.Lat...)
		lf.Unreadable += s.Bad
		lf.FPS = append(lf.FPS, float64(s.Frames)/s.Secs)
		lf.Decoded = append(lf.Decoded, s.Stats.FramesDecoded/s.Secs)
		lf.RTP.add(s.Stats)
		if s.Width != 1280 || s.Height != 720 {
			b.note(fmt.Sprintf("viewer %d decoded %dx%d, not 1280x720 (the barcode was read scaled)", i+1, s.Width, s.Height))
		}
	}
	lf.all, lf.Rounds = all, 1
	lf.Samples = len(all)
	lf.P50, lf.P95, lf.Max = proc.Percentile(all, 0.5), proc.Percentile(all, 0.95), proc.Percentile(all, 1)
	cf := &cpuFig{FFmpeg: cpu[0], NodeA: cpu[1], NodeB: cpu[2], Browser: float64(spent(bt0, bt1)) * 1000 / proc.ClockTick / wall, Rounds: 1}
	if mt1 > mt0 {
		cf.MachineBusy = float64(mb1-mb0) / float64(mt1-mt0)
	}
	cf.Load = proc.LoadAvg()
	if lf.RTP.JitterBufferEmittedCount > 0 {
		lf.JitterMS = lf.RTP.JitterBufferDelay * 1000 / lf.RTP.JitterBufferEmittedCount
	}
	b.logf("  rtp: %+v; jitter buffer %.0f ms; decoded fps %s", lf.RTP, lf.JitterMS, fpsRange(lf.Decoded))
	b.logf("  %d viewers: latency p50 %.0f p95 %.0f max %.0f ms (%d frames, %d unreadable); CPU ffmpeg %.0f, A %.0f, B %.0f, chromium %.0f ms/s; machine %.0f%% busy, load %s",
		len(tabs), lf.P50, lf.P95, lf.Max, lf.Samples, lf.Unreadable, cf.FFmpeg, cf.NodeA, cf.NodeB, cf.Browser, cf.MachineBusy*100, proc.FormatLoad(cf.Load))
	return lf, cf, nil
}

func sleep(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}

package main

import (
	"context"
	"errors"
	"fmt"
	"os/exec"
	"path/filepath"
	"time"

	"github.com/chromedp/cdproto/page"
	"github.com/chromedp/chromedp"
)

// browser is one headless Chromium; root is its first tab (cancelling it
// stops the browser), every viewer a tab of its own window (a window's
// only tab is visible, so it gets video frames and their callbacks).
type browser struct {
	b           *bench
	root        context.Context
	cancelAlloc context.CancelFunc
	cancelRoot  context.CancelFunc
}

func findChromium() (string, error) {
	for _, name := range []string{"chromium", "chromium-browser", "google-chrome", "headless-shell"} {
		if p, err := exec.LookPath(name); err == nil {
			return p, nil
		}
	}
	return "", errors.New("no chromium on PATH (chromium, chromium-browser, google-chrome, headless-shell): apt-get install -y chromium")
}

func startBrowser(ctx context.Context, b *bench) (*browser, error) {
	bin, err := findChromium()
	if err != nil {
		return nil, err
	}
	opts := append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath(bin),
		chromedp.Flag("headless", "new"),
		chromedp.NoSandbox, // root in containers needs it
		chromedp.Flag("autoplay-policy", "no-user-gesture-required"),
		chromedp.Flag("allow-loopback-in-peer-connection", true),
		// The defaults disable Translate too; this list replaces theirs.
		chromedp.Flag("disable-features", "Translate,WebRtcHideLocalIpsWithMdns"),
		chromedp.UserDataDir(filepath.Join(b.tmp, "chromium")),
		chromedp.WindowSize(1280, 860),
	)
	actx, cancelAlloc := chromedp.NewExecAllocator(context.Background(), opts...)
	root, cancelRoot := chromedp.NewContext(actx, chromedp.WithErrorf(func(f string, a ...any) { b.logf("chromium: "+f, a...) }))
	br := &browser{b: b, root: root, cancelAlloc: cancelAlloc, cancelRoot: cancelRoot}
	began := time.Now()
	// The first action starts the browser; it runs on root itself, whose
	// end is the browser's, and a Ctrl-C meanwhile stops it.
	stop := context.AfterFunc(ctx, cancelRoot)
	defer stop()
	if err := chromedp.Do(root); err != nil {
		br.close()
		return nil, fmt.Errorf("start %s: %w", bin, err)
	}
	b.logf("chromium %s started in %v", bin, time.Since(began).Round(time.Millisecond))
	return br, nil
}

func (br *browser) close() {
	br.cancelRoot()
	br.cancelAlloc()
}

// pids are the browser's processes now.
func (br *browser) pids() []int {
	c := chromedp.FromContext(br.root)
	if c == nil || c.Browser == nil || c.Browser.Process() == nil {
		return nil
	}
	return descendants(c.Browser.Process().Pid)
}

// login opens the login link in the root tab; the session cookie it sets
// is every later tab's (one browser context). It checks that the
// gateway's API then answers the page.
func (br *browser) login(ctx context.Context, link, gwURL string) error {
	lctx, cancel := context.WithTimeout(br.root, 30*time.Second)
	defer cancel()
	stop := context.AfterFunc(ctx, cancel)
	defer stop()
	if err := chromedp.Do(lctx, chromedp.Navigate(link)); err != nil {
		return fmt.Errorf("open the login link: %w", err)
	}
	status, err := chromedp.Run(lctx, chromedp.Evaluate[int](`fetch("/api/media", {credentials: "same-origin"}).then((r) => r.status)`, chromedp.EvalAwaitPromise))
	if err != nil {
		return fmt.Errorf("after login: GET /api/media: %w", err)
	}
	if status != 200 {
		return fmt.Errorf("after login: GET %s/api/media answered %d: the login link did not log the browser in", gwURL, status)
	}
	return nil
}

// firstFrameJS runs in every page before its own scripts: it registers a
// requestVideoFrameCallback on the player's video as soon as the element
// exists, and keeps the time of the first one (ms since navigation start).
// It also notes when the page's peer connection first connected (ICE
// and DTLS done), through a subclass of RTCPeerConnection.
const firstFrameJS = `(() => {
  const B = { first: -1, connected: -1 };
  window.rnBench = B;
  const PC = window.RTCPeerConnection;
  if (PC) {
    window.RTCPeerConnection = class extends PC {
      constructor(...a) {
        super(...a);
        this.addEventListener("connectionstatechange", () => {
          if (this.connectionState === "connected" && B.connected < 0) B.connected = performance.now();
        });
      }
    };
  }
  const hook = () => {
    const v = document.getElementById("media-video");
    if (!v || typeof v.requestVideoFrameCallback !== "function") return;
    v.requestVideoFrameCallback((now) => { B.first = now; });
  };
  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", hook, { once: true });
  else hook();
})();`

// waitFirstJS waits in the page for the first frame or the player's
// failure, then reads the WHEP POST's times from Resource Timing.
const waitFirstJS = `(async () => {
  const B = window.rnBench;
  if (!B) return { err: "the measurement script is not in the page" };
  const deadline = performance.now() + 30000;
  while (B.first < 0) {
    const m = window.rnMedia;
    if (m && m.state === "failed") return { err: "the player failed: " + m.error };
    if (performance.now() > deadline) return { err: "no frame 30 s after navigation (player: " + (m ? m.state + " " + m.error : "absent") + ")" };
    await new Promise((r) => setTimeout(r, 20));
  }
  const posts = performance.getEntriesByType("resource").filter((e) => e.initiatorType === "fetch" && new URL(e.name).pathname.endsWith("/whep"));
  const m = window.rnMedia || {};
  return { first: B.first, connected: B.connected, post_start: posts.length ? posts[0].startTime : -1, post_end: posts.length ? posts[0].responseEnd : -1,
    posts: posts.length, path: m.path || "", state: m.state || "", note: m.note || "" };
})()`

// frameTimes are one page's times, in ms since its navigation start.
type frameTimes struct {
	Err       string  `json:"err"`
	First     float64 `json:"first"`
	Connected float64 `json:"connected"`
	PostStart float64 `json:"post_start"`
	PostEnd   float64 `json:"post_end"`
	Posts     int     `json:"posts"`
	Path      string  `json:"path"`
	State     string  `json:"state"`
	Note      string  `json:"note"`
}

// tab is one viewer: a page of its own window on the player.
type tab struct {
	br     *browser
	ctx    context.Context
	cancel context.CancelFunc
	times  frameTimes
}

// open opens url in a new window and waits for its first frame; the page
// must play on path.
func (br *browser) open(ctx context.Context, url, path string) (*tab, error) {
	tctx, cancel := chromedp.NewContext(br.root)
	t := &tab{br: br, ctx: tctx, cancel: cancel}
	// The tab's first action must not run on a context that ends sooner
	// than the tab: chromedp ties the new target's event loop to it.
	if err := chromedp.Do(tctx); err != nil {
		cancel()
		return nil, fmt.Errorf("open a window: %w", err)
	}
	octx, ocancel := context.WithTimeout(tctx, 45*time.Second)
	defer ocancel()
	stop := context.AfterFunc(ctx, ocancel)
	defer stop()
	if _, err := chromedp.Call(octx, page.AddScriptToEvaluateOnNewDocument, page.AddScriptToEvaluateOnNewDocumentParams{Source: firstFrameJS}); err != nil {
		cancel()
		return nil, fmt.Errorf("install the first-frame hook: %w", err)
	}
	if err := chromedp.Do(octx, chromedp.Navigate(url)); err != nil {
		cancel()
		return nil, fmt.Errorf("open %s: %w", url, err)
	}
	ft, err := chromedp.Run(octx, chromedp.Evaluate[frameTimes](waitFirstJS, chromedp.EvalAwaitPromise))
	switch {
	case err != nil:
		err = fmt.Errorf("wait for the first frame: %w", err)
	case ft.Err != "":
		err = errors.New(ft.Err)
	case ft.Path != path:
		err = fmt.Errorf("the page plays on the %s path, not %s (%s)", ft.Path, path, ft.Note)
	case ft.Posts != 1 || ft.PostStart < 0:
		err = fmt.Errorf("the page made %d WHEP POSTs, not 1 (retried?)", ft.Posts)
	}
	if err != nil {
		t.close()
		return nil, err
	}
	t.times = ft
	return t, nil
}

// firstFrame opens url in a new window, takes its times and closes it.
func (br *browser) firstFrame(ctx context.Context, url, path string) (frameTimes, error) {
	t, err := br.open(ctx, url, path)
	if err != nil {
		return frameTimes{}, err
	}
	t.close()
	return t.times, nil
}

// close leaves the page (its pagehide DELETEs the WHEP session) and closes
// the window.
func (t *tab) close() {
	ctx, cancel := context.WithTimeout(t.ctx, 10*time.Second)
	_ = chromedp.Do(ctx, chromedp.Navigate("about:blank"))
	cancel()
	t.cancel()
}

// barcodeJS reads the clock stream's barcode from every presented frame
// (media.ReadBarcode's rule): the top 16 rows drawn to a canvas, block i's
// centre (16i+8, 8) white at 128 or more is bit 39-i; the value is the
// frame's generation time, UnixMilli mod 2^40, and the latency is
// Date.now() mod 2^40 minus it, mod 2^40. Samples are kept while on.
const barcodeJS = `(() => {
  const v = document.getElementById("media-video");
  if (!v) return "no video element";
  const TWO40 = 1099511627776;
  const c = document.createElement("canvas");
  c.width = 640; c.height = 16;
  const g = c.getContext("2d", { willReadFrequently: true });
  const L = { on: false, lat: [], bad: 0, frames: 0, t0: 0, w: 0, h: 0 };
  window.rnLatency = L;
  const cb = (now, md) => {
    const wall = Date.now();
    if (L.on) {
      L.frames++;
      const w = v.videoWidth, h = v.videoHeight;
      L.w = w; L.h = h;
      const k = w / 1280;
      g.drawImage(v, 0, 0, 640 * k, 16 * k, 0, 0, 640, 16);
      const px = g.getImageData(0, 0, 640, 16).data;
      let val = 0;
      for (let i = 0; i < 40; i++) {
        const o = (8 * 640 + 16 * i + 8) * 4;
        const y = 0.299 * px[o] + 0.587 * px[o + 1] + 0.114 * px[o + 2];
        val = val * 2 + (y >= 128 ? 1 : 0);
      }
      const lat = ((wall % TWO40) - val + TWO40) % TWO40;
      if (lat > 60000) L.bad++; else L.lat.push(lat);
    }
    v.requestVideoFrameCallback(cb);
  };
  v.requestVideoFrameCallback(cb);
  return "";
})()`

// barcodeSamples is one window of one page.
type barcodeSamples struct {
	Lat    []float64 `json:"lat"`
	Bad    int       `json:"bad"`
	Frames int       `json:"frames"`
	Secs   float64   `json:"secs"`
	Width  int       `json:"w"`
	Height int       `json:"h"`
	Stats  rtpStats  `json:"stats"`
}

func (t *tab) eval(ctx context.Context, expr string) (string, error) {
	ectx, cancel := context.WithTimeout(t.ctx, 10*time.Second)
	defer cancel()
	stop := context.AfterFunc(ctx, cancel)
	defer stop()
	return chromedp.Run(ectx, chromedp.Evaluate[string](expr))
}

// startBarcode injects the barcode reader (idle until resetBarcode).
func (t *tab) startBarcode(ctx context.Context) error {
	msg, err := t.eval(ctx, barcodeJS)
	if err == nil && msg != "" {
		err = errors.New(msg)
	}
	if err != nil {
		return fmt.Errorf("inject the barcode reader: %w", err)
	}
	return nil
}

// statsJS reads the page's inbound video counters (W3C webrtc-stats).
const statsJS = `async () => {
  const out = { packetsReceived: 0, packetsLost: 0, nackCount: 0, pliCount: 0, framesDecoded: 0, framesDropped: 0,
    freezeCount: 0, jitterBufferDelay: 0, jitterBufferEmittedCount: 0 };
  const pc = window.rnMedia && window.rnMedia.pc;
  if (!pc) return out;
  (await pc.getStats()).forEach((r) => {
    if (r.type === "inbound-rtp" && r.kind === "video") for (const k of Object.keys(out)) out[k] += r[k] || 0;
  });
  return out;
}`

// resetBarcode drops the samples so far and starts keeping them.
func (t *tab) resetBarcode(ctx context.Context) error {
	ectx, cancel := context.WithTimeout(t.ctx, 10*time.Second)
	defer cancel()
	stop := context.AfterFunc(ctx, cancel)
	defer stop()
	_, err := chromedp.Run(ectx, chromedp.Evaluate[string](`(async () => { const L = window.rnLatency; L.s0 = await (`+statsJS+`)();
  L.lat = []; L.bad = 0; L.frames = 0; L.t0 = performance.now(); L.on = true; return ""; })()`, chromedp.EvalAwaitPromise))
	return err
}

// readBarcode stops keeping samples and returns them.
func (t *tab) readBarcode(ctx context.Context) (barcodeSamples, error) {
	ectx, cancel := context.WithTimeout(t.ctx, 10*time.Second)
	defer cancel()
	stop := context.AfterFunc(ctx, cancel)
	defer stop()
	return chromedp.Run(ectx, chromedp.Evaluate[barcodeSamples](`(async () => { const L = window.rnLatency; L.on = false;
  const secs = (performance.now() - L.t0) / 1000;
  const s1 = await (`+statsJS+`)();
  const d = {};
  for (const k of Object.keys(s1)) d[k] = s1[k] - L.s0[k];
  return { lat: L.lat, bad: L.bad, frames: L.frames, secs, w: L.w, h: L.h, stats: d }; })()`, chromedp.EvalAwaitPromise))
}

// rtpStats are a page's inbound video counters over a window.
type rtpStats struct {
	PacketsReceived          float64 `json:"packetsReceived"`
	PacketsLost              float64 `json:"packetsLost"`
	NACKs                    float64 `json:"nackCount"`
	PLIs                     float64 `json:"pliCount"`
	FramesDecoded            float64 `json:"framesDecoded"`
	FramesDropped            float64 `json:"framesDropped"`
	Freezes                  float64 `json:"freezeCount"`
	JitterBufferDelay        float64 `json:"jitterBufferDelay"` // s, summed over emitted frames
	JitterBufferEmittedCount float64 `json:"jitterBufferEmittedCount"`
}

func (s *rtpStats) add(o rtpStats) {
	s.PacketsReceived += o.PacketsReceived
	s.PacketsLost += o.PacketsLost
	s.NACKs += o.NACKs
	s.PLIs += o.PLIs
	s.FramesDecoded += o.FramesDecoded
	s.FramesDropped += o.FramesDropped
	s.Freezes += o.Freezes
	s.JitterBufferDelay += o.JitterBufferDelay
	s.JitterBufferEmittedCount += o.JitterBufferEmittedCount
}

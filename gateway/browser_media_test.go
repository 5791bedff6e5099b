package gateway_test

// The media player in a real headless Chromium: a remote node's real
// ffmpeg test pattern played through the gateway on both paths (frames
// decoded at the stream's size, read from getStats), five viewers sharing
// one ffmpeg, the dashboard's media tiles, an unknown stream's error shown
// in the page, and a direct path whose ICE fails falling back to the relay
// with the reason in words. Every address is 127.0.0.1: the gateway's and
// the camera's engines offer loopback candidates only and Chromium is
// allowed loopback peer connections. As root (CI) each test runs again in a
// fresh network namespace that has only lo (inLoopbackNetns), so no packet
// can leave the host and no other interface's candidate can help.

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"testing"
	"time"

	"github.com/chromedp/cdproto/page"
	"github.com/chromedp/chromedp"

	"github.com/robonet-mesh/robonet/internal/testmesh"
	"github.com/robonet-mesh/robonet/wire"
)

// inLoopbackNetns reports whether the calling test should run here: yes
// inside the namespace, or without root (on the host's loopback, logged);
// as root it runs the test again in a new network namespace with only lo
// up (unshare -n), reports that run's result and returns false.
func inLoopbackNetns(t *testing.T) bool {
	t.Helper()
	if os.Getenv("RN_TEST_NETNS") == "1" {
		return true
	}
	if os.Getuid() != 0 {
		if os.Getenv("CI") == "true" {
			t.Fatal("CI runs the media browser tests as root, in a loopback-only network namespace")
		}
		t.Log("not root: running on the host's loopback instead of a loopback-only network namespace")
		return true
	}
	args := []string{"-n", "--", "sh", "-c", `ip link set lo up && exec "$0" "$@"`, os.Args[0],
		"-test.run=^" + t.Name() + "$", "-test.count=1", "-test.v"}
	cmd := exec.Command("unshare", args...)
	cmd.Env = append(os.Environ(), "RN_TEST_NETNS=1")
	out, err := cmd.CombinedOutput()
	t.Logf("in a loopback-only network namespace:\n%s", out)
	if err != nil {
		t.Fatalf("the run in a loopback-only network namespace failed: %v", err)
	}
	return false
}

// newMediaBrowser is newBrowser with what WebRTC in a test needs: autoplay
// without a gesture, loopback peer connections, and no mDNS-hidden host
// candidates.
func newMediaBrowser(t *testing.T) *browser {
	t.Helper()
	bin := findChromium(t)
	opts := append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath(bin),
		chromedp.Flag("headless", "new"),
		chromedp.NoSandbox,
		chromedp.DisableGPU,
		chromedp.Flag("disable-dev-shm-usage", true),
		chromedp.Flag("autoplay-policy", "no-user-gesture-required"),
		chromedp.Flag("allow-loopback-in-peer-connection", true),
		chromedp.Flag("disable-features", "WebRtcHideLocalIpsWithMdns"),
		chromedp.UserDataDir(t.TempDir()),
		chromedp.WindowSize(1000, 760),
	)
	actx, cancelAlloc := chromedp.NewExecAllocator(context.Background(), opts...)
	ctx, cancelTab := chromedp.NewContext(actx, chromedp.WithLogf(t.Logf))
	t.Cleanup(func() { cancelTab(); cancelAlloc() })
	if err := chromedp.Do(ctx); err != nil {
		t.Fatalf("start chromium %s: %v", bin, err)
	}
	b := &browser{t: t, ctx: ctx, shots: artifactDir(t)}
	b.watch()
	return b
}

// watch installs the page watcher (CSP violations, errors) in b's tab.
func (b *browser) watch() {
	b.t.Helper()
	if _, err := chromedp.Call(b.ctx, page.AddScriptToEvaluateOnNewDocument, page.AddScriptToEvaluateOnNewDocumentParams{Source: problemsJS}); err != nil {
		b.t.Fatalf("install the page watcher: %v", err)
	}
}

// tab opens another tab of b's browser (it shares the login cookie).
func (b *browser) tab() *browser {
	b.t.Helper()
	ctx, cancel := chromedp.NewContext(b.ctx)
	b.t.Cleanup(cancel)
	if err := chromedp.Do(ctx); err != nil {
		b.t.Fatalf("open a tab: %v", err)
	}
	nb := &browser{t: b.t, ctx: ctx, shots: b.shots}
	nb.watch()
	return nb
}

// framesJS is true once the player's peer connection decoded frames of
// width w (getStats, inbound-rtp video).
func framesJS(w int) string {
	return fmt.Sprintf(`(async () => {
  const pc = window.rnMedia && window.rnMedia.pc;
  if (!pc) return false;
  let ok = false;
  (await pc.getStats()).forEach((r) => { if (r.type === "inbound-rtp" && r.kind === "video" && r.framesDecoded > 0 && r.frameWidth === %d) ok = true; });
  return ok;
})()`, w)
}

// TestMediaPlaysInChromium: node 1's testsrc@320x240 played through node 0's
// gateway on the relay and the direct path, five tabs on one ffmpeg, the
// stream's tile on the dashboard, and an unknown stream's and a missing
// camera's errors in words.
func TestMediaPlaysInChromium(t *testing.T) {
	if !inLoopbackNetns(t) {
		return
	}
	b := newMediaBrowser(t)
	r := newMediaRig(t, "test=testsrc@320x240@15,cam=/dev/video99")
	b.run("log in", chromedp.Navigate(browserLoginLink(t, r.s, 0, r.viewer)))
	b.waitJS("logged in", 15*time.Second, `location.pathname === "/"`)
	b.waitJS("the stream's tile on the dashboard", 20*time.Second,
		fmt.Sprintf(`!!document.querySelector('#media:not(.hidden) a.media-tile[data-stream="%s/test"][href="/media/%s/test"]')`, r.camChev, r.camChev))
	b.shot("media-tiles")

	page := r.g.URL() + "/media/" + r.camChev + "/test"
	b.run("open the player on the relay path", chromedp.Navigate(page+"?path=relay"))
	b.waitJS("relay frames decoded at 320 px", 30*time.Second, framesJS(320))
	b.waitJS("the player says it plays through the relay", 5*time.Second,
		`window.rnMedia.state === "playing" && window.rnMedia.path === "relay" && window.rnMedia.session.startsWith("r")`)
	b.shot("media-relay")

	tabs := []*browser{b}
	for i := 0; i < 4; i++ {
		tb := b.tab()
		path := "relay"
		if i%2 == 0 {
			path = "auto" // the browser is on the node's subnet: direct
		}
		tb.run("open viewer "+strconv.Itoa(i+2), chromedp.Navigate(page+"?path="+path))
		tabs = append(tabs, tb)
	}
	for i, tb := range tabs {
		tb.waitJS("viewer "+strconv.Itoa(i+1)+" decodes frames", 45*time.Second, framesJS(320))
	}
	tabs[1].waitJS("auto chose the direct path", 5*time.Second, `window.rnMedia.path === "direct" && !window.rnMedia.session.startsWith("r")`)
	tabs[1].shot("media-direct")
	if n := ffmpegChildren(t); n != 1 {
		t.Errorf("%d ffmpeg processes for five viewers (three relay, two direct) of one stream, want 1", n)
	}

	if _, relay := r.md.Sessions(); relay != 3 {
		t.Errorf("%d relay sessions at the gateway for three relay tabs", relay)
	}

	// Leaving the page ends its session (DELETE on pagehide).
	b.run("open an unknown stream", chromedp.Navigate(r.g.URL()+"/media/"+r.camChev+"/nope"))
	b.waitJS("the node's error in the page", 20*time.Second,
		`window.rnMedia.state === "failed" && document.getElementById("media-error").textContent.includes("has no stream \"nope\"") && !document.getElementById("media-error").classList.contains("hidden") && document.getElementById("media-video").classList.contains("hidden")`)
	b.shot("media-unknown")
	testmesh.CheckFor(t, 15*time.Second, 20*time.Millisecond, func() error {
		if _, relay := r.md.Sessions(); relay != 2 {
			return fmt.Errorf("%d relay sessions after one relay tab left, want 2", relay)
		}
		return nil
	})

	// Every viewer gone: the relay lingers, its lease lapses on the node,
	// the encoder lingers (2 s here), and no ffmpeg is left.
	for _, tb := range tabs[1:] {
		tb.run("leave the player", chromedp.Navigate("about:blank"))
	}
	testmesh.CheckFor(t, 60*time.Second, 100*time.Millisecond, func() error {
		if n := ffmpegChildren(t); n != 0 {
			return fmt.Errorf("%d ffmpeg processes after every viewer left", n)
		}
		return nil
	})

	// A camera that is not there: ffmpeg's reason in the page, not a black
	// video, on either path.
	for _, path := range []string{"relay", "direct"} {
		b.run("open the missing camera ("+path+")", chromedp.Navigate(r.g.URL()+"/media/"+r.camChev+"/cam?path="+path))
		b.waitJS("the missing device in the page ("+path+")", 30*time.Second,
			`document.getElementById("media-error").textContent.includes("/dev/video99") && !document.getElementById("media-error").classList.contains("hidden") && window.rnMedia.state !== "playing"`)
	}
	b.shot("media-missing-camera")
}

// TestMediaDirectFailureFallsBackToTheRelay: the camera's media port is
// firewalled (UDP dropped both ways); the page says in words which address
// it could not reach and plays through the gateway's relay instead. When
// the node then stops serving, the page says no frames come.
func TestMediaDirectFailureFallsBackToTheRelay(t *testing.T) {
	if !inLoopbackNetns(t) {
		return
	}
	b := newMediaBrowser(t)
	r := newMediaRig(t, "test=testsrc@320x240@15", true)
	b.run("log in", chromedp.Navigate(browserLoginLink(t, r.s, 0, r.s.User(0, "vic", wire.RoleObserver))))
	b.waitJS("logged in", 15*time.Second, `location.pathname === "/"`)
	b.run("open the player", chromedp.Navigate(r.g.URL()+"/media/"+r.camChev+"/test"))
	b.waitJS("the direct failure said, then frames through the relay", 60*time.Second,
		framesJS(320)+` .then((ok) => ok && window.rnMedia.path === "relay" && window.rnMedia.note.includes("could not reach node `+r.camChev+` over UDP 127.0.0.1:") && window.rnMedia.note.includes("relay"))`)
	b.shot("media-fallback")

	// The node stops serving: the frozen picture is not left looking live.
	r.svc.Close()
	b.waitJS("the page says no frames come", 30*time.Second,
		`window.rnMedia.state === "stalled" && document.getElementById("media-error").textContent.startsWith("no frames from test on node `+r.camChev+`")`)
	b.shot("media-stalled")
}

package gateway_test

// The dashboard driven in a real headless Chromium against a real gateway on
// a real testmesh swarm (issue #14: login by link, the node list, a node
// started later appearing without a reload, a command run from the page with
// per-node results, an alert shown, cross-origin POSTs refused). Screenshots
// are written to $ROBONET_ARTIFACTS (default: robonet-artifacts under the
// system temp dir) and are not committed.

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/chromedp/cdproto/network"
	"github.com/chromedp/cdproto/page"
	"github.com/chromedp/chromedp"
	"github.com/chromedp/chromedp/kb"
	"github.com/nats-io/nats.go"

	"github.com/robonet-mesh/robonet/gateway"
	"github.com/robonet-mesh/robonet/internal/testmesh"
	"github.com/robonet-mesh/robonet/mesh"
	"github.com/robonet-mesh/robonet/node"
	"github.com/robonet-mesh/robonet/sentinel"
	"github.com/robonet-mesh/robonet/subjects"
	"github.com/robonet-mesh/robonet/wire"
)

// findChromium returns the browser binary; a test without one skips
// locally and fails under CI=true.
func findChromium(t *testing.T) string {
	t.Helper()
	for _, name := range []string{"chromium", "chromium-browser", "google-chrome", "headless-shell"} {
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
	}
	if os.Getenv("CI") == "true" {
		t.Fatal("no chromium binary on PATH (chromium, chromium-browser, google-chrome, headless-shell) and CI=true")
	}
	t.Skip("no chromium binary on PATH")
	return ""
}

// browser is one headless Chromium tab with the test's helpers.
type browser struct {
	t     *testing.T
	ctx   context.Context
	shots string
}

func newBrowser(t *testing.T) *browser {
	t.Helper()
	bin := findChromium(t)
	opts := append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath(bin),
		chromedp.Flag("headless", "new"),
		chromedp.NoSandbox, // root in containers needs it
		chromedp.DisableGPU,
		chromedp.Flag("disable-dev-shm-usage", true),
		chromedp.UserDataDir(t.TempDir()),
		chromedp.WindowSize(1280, 860),
	)
	actx, cancelAlloc := chromedp.NewExecAllocator(context.Background(), opts...)
	ctx, cancelTab := chromedp.NewContext(actx, chromedp.WithLogf(t.Logf))
	t.Cleanup(func() { cancelTab(); cancelAlloc() })
	start := time.Now()
	if err := chromedp.Do(ctx); err != nil { // starts the browser
		t.Fatalf("start chromium %s: %v", bin, err)
	}
	t.Logf("chromium %s started in %v", bin, time.Since(start).Round(time.Millisecond))
	// Every page records what went wrong in it: CSP violations (an inline
	// script or style, a resource from elsewhere), uncaught errors and
	// unhandled promise rejections. shot fails the test on any.
	if _, err := chromedp.Call(ctx, page.AddScriptToEvaluateOnNewDocument, page.AddScriptToEvaluateOnNewDocumentParams{Source: problemsJS}); err != nil {
		t.Fatalf("install the page watcher: %v", err)
	}
	return &browser{t: t, ctx: ctx, shots: artifactDir(t)}
}

const problemsJS = `window.rnProblems = [];
document.addEventListener("securitypolicyviolation", (e) => window.rnProblems.push("CSP " + e.violatedDirective + " blocked " + e.blockedURI + " at " + e.sourceFile + ":" + e.lineNumber));
window.addEventListener("error", (e) => window.rnProblems.push("error " + e.message + " at " + e.filename + ":" + e.lineno));
window.addEventListener("unhandledrejection", (e) => window.rnProblems.push("unhandled rejection " + String(e.reason)));`

// artifactDir is where screenshots go: $ROBONET_ARTIFACTS or
// robonet-artifacts under the system temp dir, outside the repository.
func artifactDir(t *testing.T) string {
	t.Helper()
	dir := os.Getenv("ROBONET_ARTIFACTS")
	if dir == "" {
		dir = filepath.Join(os.TempDir(), "robonet-artifacts")
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatalf("artifact dir %s: %v", dir, err)
	}
	return dir
}

// run runs chromedp actions with a deadline, failing the test on error.
func (b *browser) run(what string, actions ...chromedp.Action[chromedp.Void]) {
	b.t.Helper()
	ctx, cancel := context.WithTimeout(b.ctx, 20*time.Second)
	defer cancel()
	if err := chromedp.Do(ctx, actions...); err != nil {
		b.shot("failed-" + what)
		b.t.Fatalf("%s: %v", what, err)
	}
}

// eval evaluates a JavaScript expression (a promise is awaited) into v.
func (b *browser) eval(expr string, v any) error {
	ctx, cancel := context.WithTimeout(b.ctx, 5*time.Second)
	defer cancel()
	raw, err := chromedp.Run(ctx, chromedp.Evaluate[[]byte](expr, chromedp.EvalAwaitPromise))
	if err != nil {
		return err
	}
	return json.Unmarshal(raw, v)
}

// waitJS polls a boolean JavaScript expression until it is true.
func (b *browser) waitJS(what string, timeout time.Duration, expr string) time.Duration {
	b.t.Helper()
	start := time.Now()
	deadline := start.Add(timeout)
	for {
		var ok bool
		err := b.eval(expr, &ok)
		if err == nil && ok {
			return time.Since(start)
		}
		if time.Now().After(deadline) {
			var body string
			_ = b.eval(`document.getElementById("view") ? document.getElementById("view").innerText.slice(0, 2000) : document.body.innerText.slice(0, 2000)`, &body)
			b.shot("failed-" + what)
			b.t.Fatalf("after %v: %s (%s): err %v; page says:\n%s", timeout, what, expr, err, body)
		}
		time.Sleep(25 * time.Millisecond) // the poll interval of a deadline-bound wait
	}
}

// shot saves a full-page PNG screenshot named after the test and step, and
// fails the test if the page recorded a problem (see problemsJS).
func (b *browser) shot(name string) string {
	b.t.Helper()
	if !strings.HasPrefix(name, "failed-") {
		var problems []string
		if err := b.eval(`window.rnProblems || []`, &problems); err != nil {
			b.t.Errorf("%s: read the page's problems: %v", name, err)
		}
		for _, p := range problems {
			b.t.Errorf("%s: the page reports %s", name, p)
		}
	}
	ctx, cancel := context.WithTimeout(b.ctx, 10*time.Second)
	defer cancel()
	buf, err := chromedp.Run(ctx, chromedp.FullScreenshot(100))
	if err != nil {
		b.t.Logf("screenshot %s: %v", name, err)
		return ""
	}
	safe := strings.NewReplacer("/", "_", " ", "_").Replace(b.t.Name() + "-" + name)
	p := filepath.Join(b.shots, safe+".png")
	if err := os.WriteFile(p, buf, 0o644); err != nil {
		b.t.Logf("screenshot %s: %v", p, err)
		return ""
	}
	b.t.Logf("screenshot: %s", p)
	return p
}

// startBrowserGateway runs a gateway on node i of s on a free loopback port.
func startBrowserGateway(t *testing.T, s *testmesh.Swarm, i int) *gateway.Gateway {
	t.Helper()
	quiet := new(atomic.Bool)
	t.Cleanup(func() { quiet.Store(true) }) // runs after the Shutdown below
	g, err := gateway.New(gateway.Options{Node: s.Node(i), Addr: "127.0.0.1:0", Explicit: true,
		Logger: testmesh.Logger(t, quiet)})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := g.Start(ctx); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		_ = g.Shutdown(ctx)
	})
	return g
}

// browserLoginLink asks node i's gateway for a one-time login link for the
// user behind c, as `robonet gateway login` does. The exchange travels over
// the admin's connection (which may publish anywhere) and is signed by the
// user: what a user's own NATS permissions allow is the node's business.
func browserLoginLink(t *testing.T, s *testmesh.Swarm, i int, c *mesh.Client) string {
	t.Helper()
	nd := s.Node(i)
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	cred, err := gateway.RequestCredential(ctx, gateway.Requester{Conn: s.Client(0).Conn(), Signer: c.Signer(), KeyPair: c.KeyPair(),
		NodeKey: nd.Pubkey(), Chevron: nd.Chevron()}, gateway.CredentialRequest{Kind: gateway.KindLogin})
	if err != nil {
		t.Fatalf("login link: %v", err)
	}
	return cred.URL
}

const rowsJS = `document.querySelectorAll("table.nodes tbody tr[data-chevron]").length`

// dash is one dashboard session in Chromium against a gateway on node 0 of
// a real swarm, shared by the steps of TestDashboardInChromium.
type dash struct {
	t     *testing.T
	b     *browser
	s     *testmesh.Swarm
	g     *gateway.Gateway
	alice *mesh.Client // the operator logged in
	added string       // the chevron of the node started later
}

// TestDashboardInChromium: log in by link, see the node list grouped, see a
// node started later appear without a reload, watch a node's live charts,
// run a command and an ask from the page with per-node results, confirm
// before a mutating verb, see approvals pending, switch the theme, have
// cross-origin requests refused, see a dead node offline, and log out.
func TestDashboardInChromium(t *testing.T) {
	b := newBrowser(t)
	// Chevrons in two swarms of one region: the page groups them by zone,
	// region and swarm; the node added later opens a region of its own.
	s := testmesh.Start(t, 2, testmesh.WithChevrons("3.12.7.1", "3.12.8.1"))
	s.WaitAlive(30 * time.Second)
	d := &dash{t: t, b: b, s: s, g: startBrowserGateway(t, s, 0), alice: s.User(0, "alice", wire.RoleOperator)}
	d.loginByLink()
	d.nodeJoinsWithoutReload()
	d.nodePage()
	d.runFromThePage()
	d.askFromThePage()
	d.approvalsPending()
	d.themeKept()
	d.crossOriginRefused()
	d.deadNodeOffline()
	d.logoutElsewhere()
}

// loginByLink: the ticket becomes an HttpOnly, SameSite=Strict cookie the
// page's scripts cannot read, and the page lands on the grouped node list.
func (d *dash) loginByLink() {
	t, b := d.t, d.b
	b.run("open the login link", chromedp.Navigate(browserLoginLink(t, d.s, 0, d.alice)))
	b.waitJS("redirected to the dashboard", 10*time.Second, `location.pathname === "/" && !location.search`)
	b.waitJS("two nodes listed", 15*time.Second, rowsJS+` === 2`)
	b.waitJS("socket live", 10*time.Second, `document.getElementById("conn").textContent === "live"`)
	ctx, cancel := context.WithTimeout(b.ctx, 5*time.Second)
	cookies, err := chromedp.Call(ctx, network.GetCookies, network.GetCookiesParams{URLs: []string{d.g.URL()}})
	cancel()
	if err != nil {
		t.Fatalf("read cookies: %v", err)
	}
	var sess *network.Cookie
	for _, c := range cookies.Cookies {
		if c.Name == "rn_session" {
			sess = c
		}
	}
	if sess == nil || !sess.HTTPOnly || sess.SameSite != network.CookieSameSiteStrict {
		t.Fatalf("session cookie: %+v", sess)
	}
	var docCookie string
	if err := b.eval(`document.cookie`, &docCookie); err != nil || strings.Contains(docCookie, "rn_session") {
		t.Fatalf("the page's script can read the session cookie: %q (%v)", docCookie, err)
	}
	var who string
	_ = b.eval(`document.getElementById("who").textContent`, &who)
	if !strings.HasPrefix(who, "operator ") {
		t.Fatalf("header shows %q, want the operator's role", who)
	}
	for _, in := range [][2]string{{"3", "3.12.7.1"}, {"3.12", "3.12.8.1"}, {"3.12.7", "3.12.7.1"}, {"3.12.8", "3.12.8.1"}} {
		b.waitJS("grouped by zone, region and swarm", 5*time.Second,
			fmt.Sprintf(`!!document.querySelector('section[data-group=%q] tr[data-chevron=%q]')`, in[0], in[1]))
	}
	b.shot("nodes")
}

// nodeJoinsWithoutReload: a marker set on the page's window survives only
// if the page was not reloaded.
func (d *dash) nodeJoinsWithoutReload() {
	t, b := d.t, d.b
	b.run("mark the page", chromedp.Evaluate[chromedp.Void](`window.rnNoReload = 42`))
	// When the swarm hears the join: the figure runs from there.
	joined := make(chan time.Time, 1)
	for _, subj := range subjects.EventWildcards(subjects.EvtJoin) {
		sub, err := d.s.Client(0).Conn().Subscribe(subj, func(m *nats.Msg) {
			if strings.Contains(string(m.Data), `"3.13.1.1"`) {
				select {
				case joined <- time.Now():
				default:
				}
			}
		})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = sub.Unsubscribe() })
	}
	start := time.Now()
	added := d.s.AddNode(testmesh.WithChevrons("", "", "3.13.1.1"))
	up := time.Since(start)
	d.added = added.Chevron().String()
	b.waitJS("the new node listed in a new region", 15*time.Second,
		fmt.Sprintf(`!!document.querySelector('section[data-group="3.13"] section[data-group="3.13.1"] tr[data-chevron=%q]')`, d.added))
	onPage := time.Now()
	var marker int
	if err := b.eval(`window.rnNoReload || 0`, &marker); err != nil || marker != 42 {
		t.Fatalf("the page was reloaded (marker %d, %v)", marker, err)
	}
	select {
	case at := <-joined:
		t.Logf("figure: node %s started in %v; its join event -> on the page in %v (polled every 25 ms; no reload)",
			d.added, up.Round(time.Millisecond), onPage.Sub(at).Round(time.Millisecond))
	default:
		t.Logf("figure: node %s started in %v, on the page %v after Start began (its join event was not seen; no reload)",
			d.added, up.Round(time.Millisecond), onPage.Sub(start).Round(time.Millisecond))
	}
	b.shot("nodes-after-join")
}

// nodePage: opened by keyboard (the focus survives the list's updates),
// one-second charts fed by the socket; malformed routes are named.
func (d *dash) nodePage() {
	b := d.b
	first := d.s.Node(1).Chevron().String()
	b.run("focus a node's link", chromedp.Focus(chromedp.CSS(fmt.Sprintf(`table.nodes tr[data-chevron=%q] a`, first))))
	b.waitJS("focus kept across updates", 5*time.Second, fmt.Sprintf(
		`document.activeElement && document.activeElement.closest("tr") && document.activeElement.closest("tr").getAttribute("data-chevron") === %q && document.querySelector("tr[data-chevron='%s'] td.last-seen").textContent !== ""`, first, first))
	b.run("open a node's page", chromedp.KeyEvent(kb.Enter))
	b.waitJS("node page", 5*time.Second, fmt.Sprintf(`location.hash === "#/node/%s"`, first))
	b.waitJS("four charts with 5+ one-second samples", 20*time.Second,
		`[...document.querySelectorAll("figure.chart")].filter(f => +f.getAttribute("data-samples") >= 5).length === 4`)
	b.shot("node")

	// Hash routes are input too: a malformed one is named, nothing breaks.
	for _, bad := range []string{"#/node/%E0%A4%A", "#/node/1.2.3.4.5", "#/node/<b>x</b>", "#/nowhere"} {
		b.run("open "+bad, chromedp.Navigate(d.g.URL()+"/"+bad))
		b.waitJS("refused: "+bad, 5*time.Second, `!!document.getElementById("no-page") && document.querySelectorAll("#view b").length === 0`)
	}
	b.shot("bad-route")
	b.run("back to the node", chromedp.Navigate(d.g.URL()+"/#/node/"+first))
	b.waitJS("node page", 10*time.Second, `!!document.querySelector("figure.chart")`)

	// From the node's page to a command on it: the selector comes filled in.
	b.run("run on this node", chromedp.Click(chromedp.CSS(`a[href^="#/run?sel="]`)))
	b.waitJS("selector filled in", 10*time.Second, fmt.Sprintf(`document.getElementById("run-selector") && document.getElementById("run-selector").value === %q`, first))
}

// runFromThePage: a selector matching nothing explained, ping with one ok
// row per node, and a mutating verb confirmed first (Escape cancels).
func (d *dash) runFromThePage() {
	b := d.b
	b.waitJS("catalogue loaded", 10*time.Second, `!!document.querySelector('#run-verb option[value="ping"]')`)
	b.run("run on nothing",
		chromedp.SetValue(chromedp.ID("run-selector"), "caps=no-such-cap"),
		chromedp.Click(chromedp.ID("run-go")))
	b.waitJS("no match explained", 10*time.Second, `/no-such-cap/.test((document.querySelector("#run-out .error") || {}).textContent || "")`)
	var noMatch string
	_ = b.eval(`document.querySelector("#run-out .error").textContent`, &noMatch)
	d.t.Logf("the page shows: %s", noMatch)

	b.run("run ping",
		chromedp.SetValue(chromedp.ID("run-selector"), "all"),
		chromedp.SetValue(chromedp.ID("run-verb"), "ping"),
		chromedp.Click(chromedp.ID("run-go")))
	b.waitJS("three ok results", 15*time.Second, `document.querySelectorAll('#run-results tbody tr[data-status="ok"]').length === 3`)
	b.waitJS("summary line", 10*time.Second, `/3/.test(document.getElementById("run-summary").textContent) && !/running/.test(document.getElementById("run-summary").textContent)`)
	b.shot("run")

	b.run("run config set",
		chromedp.SetValue(chromedp.ID("run-verb"), "config"),
		chromedp.SetValue(chromedp.ID("run-args"), `{"op":"set","key":"browser.test","value":"1"}`),
		chromedp.Click(chromedp.ID("run-go")))
	b.waitJS("confirmation asked", 5*time.Second, `!!document.querySelector("#run-out .confirm") && !document.getElementById("run-results")`)
	b.shot("run-confirm")
	b.run("cancel with Escape", chromedp.KeyEvent(kb.Escape))
	b.waitJS("cancelled, nothing sent", 5*time.Second, `/cancelled/.test(document.getElementById("run-out").textContent) && !document.getElementById("run-results")`)
}

// askFromThePage: the plan first, then its results streamed per node; a
// plan that changes things is confirmed first (cancel runs nothing).
func (d *dash) askFromThePage() {
	b := d.b
	b.run("open ask", chromedp.Navigate(d.g.URL()+"/#/ask"))
	b.run("plan", chromedp.WaitVisible(chromedp.ID("ask-text")),
		chromedp.SetValue(chromedp.ID("ask-text"), "ping everything"),
		chromedp.Click(chromedp.ID("ask-plan")))
	b.waitJS("plan shown", 10*time.Second, `!!document.querySelector('#ask-plan-view tr[data-step]')`)
	b.run("run the plan", chromedp.Click(chromedp.ID("ask-run")))
	b.waitJS("ask results", 20*time.Second, `document.querySelectorAll('#ask-results tr[data-status="ok"]').length === 3`)
	b.shot("ask")

	b.run("plan a config change", chromedp.SetValue(chromedp.ID("ask-text"), "set config browser.test to 1"),
		chromedp.Click(chromedp.ID("ask-plan")))
	b.waitJS("mutating step marked", 10*time.Second, `/changes things/.test(document.getElementById("ask-plan-view").textContent)`)
	b.run("run it", chromedp.Click(chromedp.ID("ask-run")))
	b.waitJS("confirmation asked", 5*time.Second, `!!document.querySelector("#ask-out .confirm") && !document.getElementById("ask-results")`)
	b.shot("ask-confirm")
	b.run("cancel", chromedp.Click(chromedp.CSS(`#ask-out .confirm button.secondary`)))
	b.waitJS("nothing run", 5*time.Second, `/cancelled/.test(document.getElementById("ask-out").textContent) && !document.getElementById("ask-results")`)
	b.run("run it again", chromedp.Click(chromedp.ID("ask-run")))
	b.run("confirm", chromedp.Click(chromedp.ID("confirm-yes")))
	b.waitJS("the config step ran", 20*time.Second, `document.querySelectorAll('#ask-results tr[data-status]').length >= 1 && !/running/.test(document.getElementById("ask-summary").textContent)`)

	// Unsure of a sentence, the planner offers readings; one picked shows
	// its plan, which is what runs.
	b.run("plan an unsure sentence", chromedp.SetValue(chromedp.ID("ask-text"), "nginx on all nodes"),
		chromedp.Click(chromedp.ID("ask-plan")))
	b.waitJS("readings offered", 10*time.Second, `document.querySelectorAll('#ask-readings button[data-reading]').length >= 1`)
	b.shot("ask-readings")
	b.run("pick the first", chromedp.Click(chromedp.CSS(`#ask-readings button[data-reading="1"]`)))
	b.waitJS("its plan shown", 10*time.Second, `/is-active/.test(document.getElementById("ask-plan-view").textContent) && /changes things/.test(document.getElementById("ask-plan-view").textContent)`)
}

// approvalsPending: a dangerous command waiting for a quorum is listed and
// counted in the header.
func (d *dash) approvalsPending() {
	t, b := d.t, d.b
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	apps, err := d.alice.Approvals(ctx)
	if err != nil {
		t.Fatal(err)
	}
	ap, err := apps.Request(ctx, d.alice.KeyPair(), "exec", json.RawMessage(`{"argv":["uptime"]}`), 2, 10*time.Minute, time.Now())
	if err != nil {
		t.Fatalf("request an approval: %v", err)
	}
	b.run("open approvals", chromedp.Navigate(d.g.URL()+"/#/approvals"))
	b.waitJS("the approval listed", 10*time.Second, fmt.Sprintf(`[...document.querySelectorAll("#view td")].some(td => td.textContent === %q)`, ap.ID))
	b.waitJS("counted in the header", 5*time.Second, `document.getElementById("approval-count").textContent === "1"`)
	b.shot("approvals")
}

// themeKept: the toggle switches light and dark and a reload keeps it.
func (d *dash) themeKept() {
	b := d.b
	b.run("nodes again", chromedp.Navigate(d.g.URL()+"/#/"))
	b.waitJS("three nodes", 10*time.Second, rowsJS+` === 3`)
	b.run("forget the theme", chromedp.Evaluate[chromedp.Void](`localStorage.removeItem("rn-theme")`), chromedp.Reload())
	b.waitJS("three nodes", 10*time.Second, rowsJS+` === 3`)
	var theme string
	_ = b.eval(`document.documentElement.getAttribute("data-theme") || (matchMedia("(prefers-color-scheme: dark)").matches ? "dark" : "light")`, &theme)
	b.run("toggle", chromedp.Click(chromedp.ID("theme")))
	want := map[string]string{"dark": "light", "light": "dark"}[theme]
	b.run("reload", chromedp.Reload())
	b.waitJS("theme kept after a reload", 10*time.Second, fmt.Sprintf(`document.documentElement.getAttribute("data-theme") === %q`, want))
	b.waitJS("three nodes", 10*time.Second, rowsJS+` === 3`)
	b.shot("nodes-" + want)
}

// crossOriginRefused: a page on another origin posts a form to the API and
// opens the live socket while the session cookie is there (same site:
// 127.0.0.1, another port): both refused.
func (d *dash) crossOriginRefused() {
	t, b, g := d.t, d.b, d.g
	evil := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		fmt.Fprintf(w, `<!doctype html><form method="post" action="%s/api/run" enctype="text/plain">`+
			`<input name='{"selector":"all","verb":"ping","x":"' value='"}'><button id="go">go</button></form>`, g.URL())
	}))
	t.Cleanup(evil.Close)
	b.run("open the foreign page", chromedp.Navigate(evil.URL), chromedp.WaitVisible(chromedp.ID("go")),
		chromedp.Click(chromedp.ID("go")))
	b.waitJS("cross-origin POST refused", 10*time.Second,
		fmt.Sprintf(`location.href.startsWith(%q) && /cross_origin/.test(document.body.innerText)`, g.URL()+"/api/run"))
	b.shot("cross-origin-refused")

	b.run("back to the foreign page", chromedp.Navigate(evil.URL), chromedp.WaitVisible(chromedp.ID("go")))
	wsURL := "ws" + strings.TrimPrefix(g.URL(), "http") + "/api/live"
	ctx, cancel := context.WithTimeout(b.ctx, 15*time.Second)
	defer cancel()
	got, err := chromedp.Run(ctx, chromedp.Evaluate[string](fmt.Sprintf(`new Promise((done) => {
		const ws = new WebSocket(%q);
		ws.onmessage = (ev) => { done("message " + ev.data.slice(0, 80)); ws.close(); };
		ws.onclose = (ev) => done("closed " + ev.code);
	})`, wsURL), chromedp.EvalAwaitPromise))
	if err != nil || !strings.HasPrefix(got, "closed") {
		t.Fatalf("a foreign page's WebSocket to %s: %q (%v), want it refused", wsURL, got, err)
	}
	t.Logf("a foreign page's WebSocket: %s", got)
}

// deadNodeOffline: a killed node is shown offline, live.
func (d *dash) deadNodeOffline() {
	b := d.b
	b.run("back to the dashboard", chromedp.Navigate(d.g.URL()+"/#/"))
	b.waitJS("three nodes", 10*time.Second, rowsJS+` === 3`)
	d.s.Kill(2)
	gone := b.waitJS("the killed node offline", 15*time.Second,
		fmt.Sprintf(`(document.querySelector('tr[data-chevron=%q] td.state') || {}).textContent === "offline"`, d.added))
	d.t.Logf("figure: node %s killed -> offline on the page in %v", d.added, gone.Round(time.Millisecond))
	b.shot("node-offline")
}

// logoutElsewhere: log out in a second tab; the first one, left open,
// learns that its session ended and says how to log in again, without a
// reload, and the API refuses the old session.
func (d *dash) logoutElsewhere() {
	t, b := d.t, d.b
	b.run("mark the page", chromedp.Evaluate[chromedp.Void](`window.rnNoReload = 43`))
	tctx, cancelT := context.WithTimeout(b.ctx, 20*time.Second)
	tab, cancelTab := chromedp.NewContext(tctx)
	err := chromedp.Do(tab, chromedp.Navigate(d.g.URL()+"/#/"), chromedp.WaitVisible(chromedp.CSS(`#logout button`)),
		chromedp.Click(chromedp.CSS(`#logout button`)), chromedp.WaitVisible(chromedp.ID("signed-out")))
	cancelTab()
	cancelT()
	if err != nil {
		t.Fatalf("log out in a second tab: %v", err)
	}
	b.waitJS("the open page signed out", 10*time.Second, `!!document.getElementById("signed-out") && /robonet gateway login/.test(document.getElementById("view").textContent)`)
	var marker int
	if err := b.eval(`window.rnNoReload || 0`, &marker); err != nil || marker != 43 {
		t.Fatalf("the page was reloaded (marker %d, %v)", marker, err)
	}
	b.shot("signed-out")
	var me string
	if err := b.eval(`fetch("/api/me").then(r => String(r.status))`, &me); err != nil || me != "401" {
		t.Fatalf("GET /api/me after logging out: %q (%v), want 401", me, err)
	}
}

// TestDashboardShowsAnAlert: a client floods a node with commands after a
// normal baseline; the node's Sentinel alerts on it (cmd_rate, as in node's
// TestSentinelQuarantinesACommandFlood) and the page shows the alert live.
// The Sentinel's clock is shortened (100 ms heartbeats, 300 ms windows) so
// warm-up takes seconds; the flood and the detection are real.
func TestDashboardShowsAnAlert(t *testing.T) {
	b := newBrowser(t)
	s := testmesh.Start(t, 1, func(_ int, o *node.Options) {
		o.Timing.Heartbeat = 100 * time.Millisecond
		o.Sentinel = sentinel.Config{Window: 300 * time.Millisecond, WarmUp: 8, History: 40, QuarantineAfter: 3,
			Quiet: time.Minute, Heartbeat: 100 * time.Millisecond, AgreeWindow: 30 * time.Second, Quorum: 1}
	})
	g := startBrowserGateway(t, s, 0)
	viewer := s.User(0, "viewer", wire.RoleObserver)
	flooder := s.User(0, "flooder", wire.RoleOperator)
	key, _ := flooder.KeyPair().PublicKey()
	b.run("open the login link", chromedp.Navigate(browserLoginLink(t, s, 0, viewer)))
	b.waitJS("one node listed", 15*time.Second, rowsJS+` === 1`)

	// What an observer may not do in the CLI it may not do here, and the
	// page says why in the server's words.
	b.run("open run", chromedp.Navigate(g.URL()+"/#/run"))
	b.waitJS("catalogue loaded", 10*time.Second, `!!document.querySelector('#run-verb option[value="config"]')`)
	b.run("run config set as an observer",
		chromedp.SetValue(chromedp.ID("run-verb"), "config"),
		chromedp.SetValue(chromedp.ID("run-args"), `{"op":"set","key":"browser.test","value":"1"}`),
		chromedp.Click(chromedp.ID("run-go")))
	b.run("confirm", chromedp.Click(chromedp.ID("confirm-yes")))
	// Refused by the gateway before sending (an error box) or by the node
	// (a denied row), as in the CLI; either way the reason is on the page.
	refused := `(document.querySelector("#run-out .error") || document.querySelector('#run-results tr[data-status="denied"]') || {}).textContent || ""`
	b.waitJS("refused with the reason", 10*time.Second, `/denied.*observer/.test(`+refused+`)`)
	var refusal string
	_ = b.eval(refused, &refusal)
	t.Logf("the page shows: %s", refusal)
	b.shot("observer-denied")

	b.run("open alerts", chromedp.Navigate(g.URL()+"/#/alerts"))
	b.waitJS("no alerts yet", 10*time.Second, `!!document.getElementById("no-alerts") || !!document.querySelector("table.alerts")`)

	nd := s.Node(0)
	ping := func() mesh.GatherResult {
		res, err := flooder.Gather(context.Background(), mesh.GatherRequest{Selector: "all", Verb: "ping", Timeout: 3 * time.Second}, nil)
		if err != nil {
			t.Fatal(err)
		}
		return res
	}
	testmesh.CheckFor(t, 30*time.Second, 150*time.Millisecond, func() error {
		ping()
		for _, f := range nd.SentinelView(key) {
			if f.Signal == sentinel.CmdRate && !strings.Contains(f.Detail, "warming") {
				return nil
			}
		}
		return fmt.Errorf("the command baseline of %s is not warm", key)
	})
	start := time.Now()
	row := fmt.Sprintf(`!!document.querySelector('table.alerts tr[data-peer=%q][data-signal="cmd_rate"]')`, key)
	testmesh.CheckFor(t, 30*time.Second, 10*time.Millisecond, func() error {
		for i := 0; i < 40; i++ {
			ping()
		}
		var shown bool
		if err := b.eval(row, &shown); err != nil || !shown {
			return fmt.Errorf("no cmd_rate alert about %s on the page yet (%v)", key, err)
		}
		return nil
	})
	t.Logf("figure: command flood -> alert on the page in %v (no reload)", time.Since(start).Round(time.Millisecond))
	b.waitJS("alert count in the header", 5*time.Second, `+document.getElementById("alert-count").textContent >= 1`)
	b.shot("alerts")
}

// TestDashboardShowsANodeAlert: a node whose heartbeats turn erratic after
// a regular baseline is alerted on by its peer (hb_jitter, as in node's
// TestSentinelAlertsOnErraticHeartbeats); the node list counts the alert on
// that node's row and the node's page lists it, live. The heartbeats are
// really late (the node's BeatDelay hook); the Sentinel's clock is short.
func TestDashboardShowsANodeAlert(t *testing.T) {
	b := newBrowser(t)
	var erratic atomic.Bool
	s := testmesh.Start(t, 2, func(i int, o *node.Options) {
		o.Timing.Heartbeat = 100 * time.Millisecond
		o.Sentinel = sentinel.Config{Window: 300 * time.Millisecond, WarmUp: 8, History: 40, QuarantineAfter: 3,
			Quiet: time.Minute, Heartbeat: 100 * time.Millisecond, AgreeWindow: 30 * time.Second, Quorum: 1,
			SelfBusy: 2} // the shared test machine's load must not mute the observer
		if i != 1 {
			return
		}
		var flip atomic.Bool
		o.BeatDelay = func() time.Duration {
			if erratic.Load() && !flip.Swap(!flip.Load()) {
				return 95 * time.Millisecond // alternately late and on time
			}
			return 0
		}
	})
	s.WaitAlive(20 * time.Second)
	g := startBrowserGateway(t, s, 0)
	viewer := s.User(0, "viewer", wire.RoleObserver)
	victim := s.Node(1).Chevron().String()
	b.run("open the login link", chromedp.Navigate(browserLoginLink(t, s, 0, viewer)))
	b.waitJS("two nodes listed", 15*time.Second, rowsJS+` === 2`)
	testmesh.CheckFor(t, 30*time.Second, 50*time.Millisecond, func() error {
		for _, f := range s.Node(0).SentinelView(victim) {
			if f.Signal == sentinel.HBJitter && !strings.Contains(f.Detail, "warming") {
				return nil
			}
		}
		return fmt.Errorf("the jitter baseline of %s is not warm", victim)
	})
	erratic.Store(true)
	seen := b.waitJS("the alert counted on the node's row", 30*time.Second,
		fmt.Sprintf(`/hb_jitter/.test((document.querySelector('tr[data-chevron=%q] a.badge') || {}).textContent || "")`, victim))
	t.Logf("figure: erratic heartbeats -> alert on the node list in %v (no reload)", seen.Round(time.Millisecond))
	b.shot("nodes")
	b.run("open the node", chromedp.Navigate(g.URL()+"/#/node/"+victim))
	b.waitJS("the node's page lists it", 10*time.Second, `!!document.querySelector('table.alerts tr[data-signal="hb_jitter"]')`)
	b.shot("node")
}

// TestDashboardHelpersInChromium checks the page's pure helpers in the
// browser that runs them, on the embedded files served as they are: chevron
// grouping and order, the gauges the charts draw, and that markup built from
// network strings is text.
func TestDashboardHelpersInChromium(t *testing.T) {
	b := newBrowser(t)
	// /api/run here streams one result, then waits for the test before
	// the last line: the page must show the first line while it waits.
	release := make(chan struct{})
	mux := http.NewServeMux()
	mux.Handle("/", http.FileServerFS(os.DirFS("ui")))
	mux.HandleFunc("GET /blank.html", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		fmt.Fprint(w, "<!doctype html><title>helpers</title><body></body>")
	})
	mux.HandleFunc("POST /api/run", func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("Accept") != "application/x-ndjson" {
			http.Error(w, "want NDJSON", http.StatusNotAcceptable)
			return
		}
		w.Header().Set("Content-Type", "application/x-ndjson")
		fmt.Fprintln(w, `{"type":"result","result":{"chevron":"1","status":"ok"}}`)
		w.(http.Flusher).Flush()
		select {
		case <-release:
		case <-r.Context().Done():
			return
		}
		fmt.Fprint(w, `{"type":"result","result":{"chevron":"2","status":"ok"}}`+"\n"+`{"type":"done","gather":{}}`)
	})
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)
	t.Cleanup(func() {
		select {
		case <-release:
		default:
			close(release)
		}
	})
	b.run("open a blank page on the files' origin", chromedp.Navigate(srv.URL+"/blank.html"))
	for _, tc := range []struct{ name, expr, want string }{
		{"a flat swarm is one group", `import("/nodes.js").then(m => {
			const g = m.groupNodes([{chevron: "2"}, {chevron: "1"}], "lab");
			return g.label + "|" + g.children.size + "|" + g.nodes.length; })`, "swarm lab|0|2"},
		{"four tokens nest zone, region, swarm", `import("/nodes.js").then(m => {
			const g = m.groupNodes([{chevron: "3.12.7.1"}, {chevron: "3.12.8.1"}, {chevron: "4.1.1.1"}], "x");
			const z3 = g.children.get("3"), r = z3.children.get("3.12");
			return [g.nodes.length, [...g.children.keys()].join(","), z3.label, [...r.children.keys()].join(","), r.children.get("3.12.7").nodes[0].chevron].join("|"); })`,
			"0|3,4|zone 3|3.12.7,3.12.8|3.12.7.1"},
		{"chevrons sort by number", `import("/nodes.js").then(m => ["10", "2", "3.12.10.1", "3.12.9.1", "3.2"].sort(m.compareChevrons).join(" "))`,
			"2 3.2 3.12.9.1 3.12.10.1 10"},
		{"gauges: fullest mount, interfaces but loopback", `import("/node.js").then(m => JSON.stringify(m.reduceGauges([
			{name: "cpu.busy_pct", value: 12.5}, {name: "mem.used_pct", value: 40},
			{name: "disk.used_pct", value: 20, labels: {mount: "/"}}, {name: "disk.used_pct", value: 70, labels: {mount: "/data"}},
			{name: "net.rx_rate", value: 1000, labels: {iface: "lo"}}, {name: "net.rx_rate", value: 10, labels: {iface: "eth0"}},
			{name: "net.rx_rate", value: 5, labels: {iface: "wlan0"}}, {name: "net.tx_rate", value: 7, labels: {iface: "lo"}},
			{name: "cpu.busy_pct", value: "x"}, null])))`, `{"cpu":12.5,"mem":40,"disk":70,"rx":15,"tx":7}`},
		{"gauges missing stay unknown", `import("/node.js").then(m => JSON.stringify(m.reduceGauges("nonsense")))`,
			`{"cpu":null,"mem":null,"disk":null,"rx":null,"tx":null}`},
		{"rates", `import("/node.js").then(m => [0, 999, 1500, 2.5e6, 3e12].map(m.fmtRate).join(", "))`,
			"0 B/s, 999 B/s, 1.5 KB/s, 2.5 MB/s, 3000.0 GB/s"},
		{"network strings are text, never markup", `import("/dom.js").then(m => {
			const el = m.h("td", {title: "\"><img src=x>"}, "<img src=x onerror=alert(1)>", ["<b>", null, false], 7);
			return el.children.length + "|" + el.textContent + "|" + el.getAttribute("title"); })`,
			`0|<img src=x onerror=alert(1)><b>7|"><img src=x>`},
		{"keys shortened, other strings kept", `import("/dom.js").then(m => [m.shortKey("UCVJUQ" + "A".repeat(45) + "2HBPM"), m.shortKey("3.12.7.1")].join(" "))`,
			"UCVJUQ…2HBPM 3.12.7.1"},
	} {
		ctx, cancel := context.WithTimeout(b.ctx, 10*time.Second)
		got, err := chromedp.Run(ctx, chromedp.Evaluate[string](tc.expr, chromedp.EvalAwaitPromise))
		cancel()
		if err != nil || got != tc.want {
			t.Errorf("%s: got %q (%v), want %q", tc.name, got, err, tc.want)
		}
	}

	// Figure: rendering the grouped list of 10,000 nodes (100 swarms of
	// 100), and the once-a-second update when only heartbeats changed.
	ctx, cancel := context.WithTimeout(b.ctx, 60*time.Second)
	figure, err := chromedp.Run(ctx, chromedp.Evaluate[string](`import("/nodes.js").then(m => {
		const nodes = [];
		for (let i = 0; i < 10000; i++) nodes.push({chevron: "3." + (1 + (i / 1000 | 0)) + "." + (1 + (i / 100 | 0) % 10) + "." + (1 + i % 100),
			name: "n" + i, state: "alive", role: "edge", load: 0.1, tier: 2, version: "0.1.0", last_seen: new Date().toISOString()});
		const app = {state: {nodes, status: {swarm: "big"}}, activeAlerts: () => [], mediaSection: () => document.createElement("section")};
		const root = document.createElement("main");
		document.body.append(root);
		const v = new m.NodesView(app);
		let t = performance.now();
		v.mount(root);
		v.update();
		const first = performance.now() - t;
		app.state.nodes = nodes.map(n => ({...n, last_seen: new Date(Date.now() + 1000).toISOString()}));
		t = performance.now();
		v.update();
		const again = performance.now() - t;
		app.state.nodes = nodes.map((n, i) => ({...n, load: i % 10 === 0 ? 0.9 : n.load}));
		t = performance.now();
		v.update();
		const tenth = performance.now() - t;
		const rows = root.querySelectorAll("tr[data-chevron]").length;
		const changed = [...root.querySelectorAll("tr[data-chevron] td.num:nth-child(5)")].filter(td => td.textContent === "0.90").length;
		root.remove();
		return rows + " rows: first render " + first.toFixed(0) + " ms, heartbeat-only update " + again.toFixed(0) +
			" ms, update with a tenth of the loads changed " + tenth.toFixed(0) + " ms (" + changed + " rows show it)";
	})`, chromedp.EvalAwaitPromise))
	cancel()
	if err != nil || !strings.HasPrefix(figure, "10000 rows") || !strings.HasSuffix(figure, "(1000 rows show it)") {
		t.Fatalf("render 10,000 nodes: %q (%v)", figure, err)
	}
	t.Logf("figure: %s", figure)

	// Streamed results are shown as each line arrives, not at the end.
	b.run("start a streamed run", chromedp.Evaluate[chromedp.Void](`window.rnLines = []; window.rnDone = "";
		import("/api.js").then(m => m.postStream("/api/run", {selector: "all", verb: "ping"}, (l) => window.rnLines.push(l.type + ":" + ((l.result || {}).chevron || "")))
			.then(() => { window.rnDone = "done"; }, (e) => { window.rnDone = "failed " + e; }))`))
	b.waitJS("the first line while the rest is held back", 10*time.Second, `window.rnLines.join(",") === "result:1" && window.rnDone === ""`)
	close(release)
	b.waitJS("the rest, then the end", 10*time.Second, `window.rnLines.join(",") === "result:1,result:2,done:" && window.rnDone === "done"`)
}

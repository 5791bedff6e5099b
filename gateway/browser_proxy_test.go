package gateway_test

import (
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strconv"
	"sync/atomic"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
	"github.com/coder/websocket"

	"github.com/robonet-mesh/robonet/wire"
)

// proxiedAppJS is the app's script: it reads its own API with a relative
// fetch, echoes over its own WebSocket, and tries to run a command on the
// dashboard with the user's session (which must fail), writing each
// outcome into the page.
const proxiedAppJS = `
const say = (id, text) => { document.getElementById(id).textContent = text; };
fetch("api/data").then(r => r.text()).then(t => say("data", t), e => say("data", "failed " + e));
const ws = new WebSocket(location.href.replace(/^http/, "ws").replace(/[^/]*$/, "") + "ws");
ws.onopen = () => ws.send("ping over the mesh");
ws.onmessage = (m) => say("ws", m.data);
ws.onerror = () => say("ws", "failed");
const dash = new URL(document.body.dataset.dashboard);
fetch(dash.origin + "/api/run", {method: "POST", credentials: "include", headers: {"Content-Type": "text/plain"},
  body: JSON.stringify({selector: "all", verb: "ping"})})
  .then(r => say("attack", "answered " + r.status), e => say("attack", "blocked"));
`

// proxiedApp serves a small web app on 127.0.0.1 and returns its port and
// where to store the dashboard's URL, which its page names.
func proxiedApp(t *testing.T) (int, *atomic.Value) {
	t.Helper()
	dashboard := new(atomic.Value)
	dashboard.Store("")
	mux := http.NewServeMux()
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		fmt.Fprintf(w, `<!doctype html><html><head><title>proxied app</title></head><body data-dashboard="%s">
<h1>An app on another node's loopback</h1>
<p>own API: <span id="data">…</span></p><p>own WebSocket: <span id="ws">…</span></p>
<p>the dashboard's API with your session: <span id="attack">…</span></p>
<script src="app.js"></script></body></html>`, dashboard.Load())
	})
	mux.HandleFunc("/app.js", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/javascript")
		io.WriteString(w, proxiedAppJS)
	})
	mux.HandleFunc("/api/data", func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "data from the app") })
	mux.HandleFunc("/ws", func(w http.ResponseWriter, r *http.Request) {
		c, err := websocket.Accept(w, r, &websocket.AcceptOptions{OriginPatterns: []string{"127.0.0.1:*"}})
		if err != nil {
			return
		}
		defer c.CloseNow()
		typ, b, err := c.Read(r.Context())
		if err == nil {
			_ = c.Write(r.Context(), typ, append([]byte("echo: "), b...))
		}
	})
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)
	return srv.Listener.Addr().(*net.TCPAddr).Port, dashboard
}

// TestDashboardProxyServesAPageInChromium: a web app on node 1's loopback,
// opened in a logged-in browser through node 0's gateway, runs on the
// proxy origin: its own API and WebSocket work through the mesh, and its
// script cannot use the dashboard's session.
func TestDashboardProxyServesAPageInChromium(t *testing.T) {
	b := newBrowser(t)
	port, dashboard := proxiedApp(t)
	f := newProxyFixture(t, port)
	s, g, n1 := f.s, f.g, f.s.Node(1)
	dashboard.Store(g.URL())
	op := s.User(0, "olga", wire.RoleOperator)
	b.run("login", chromedp.Navigate(browserLoginLink(t, s, 0, op)))
	b.waitJS("logged in", 15*time.Second, rowsJS+` >= 2`)
	app := g.URL() + "/proxy/" + n1.Chevron().String() + "/" + strconv.Itoa(port) + "/"
	b.run("open the app", chromedp.Navigate(app))
	b.waitJS("the app on the proxy origin", 15*time.Second, `location.origin === `+strconv.Quote(g.ProxyURL()))
	b.waitJS("the app's own API", 15*time.Second, `document.getElementById("data").textContent === "data from the app"`)
	b.waitJS("the app's own WebSocket", 15*time.Second, `document.getElementById("ws").textContent === "echo: ping over the mesh"`)
	b.waitJS("the dashboard refused the app's script", 15*time.Second,
		`["blocked", "answered 403"].includes(document.getElementById("attack").textContent)`)
	b.shot("proxied-app")
}

package gateway_test

import (
	"bufio"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"net/http/httptest"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/coder/websocket"

	"github.com/robonet-mesh/robonet/gateway"
	"github.com/robonet-mesh/robonet/gateway/tunnel"
	"github.com/robonet-mesh/robonet/internal/testmesh"
	"github.com/robonet-mesh/robonet/mesh"
	"github.com/robonet-mesh/robonet/wire"
)

// proxyRig: a two-node swarm, an upstream app on node 1's loopback allowed
// to the mesh proxy, and the proxy handler on node 0's feature connection,
// so every request crosses a route. Requests carry X-Test-As: op|obs to
// pick the user (the gateway's principal in production).
type proxyRig struct {
	s        *testmesh.Swarm
	proxy    *gateway.Proxy
	srv      *httptest.Server
	app      *upstream
	chevron  string
	appPort  int
	closed   int // allowed, nothing listening
	notAllow int // listening, not allowed
	opPub    string
}

func newProxyRig(t *testing.T, opts gateway.ProxyOptions) *proxyRig {
	t.Helper()
	r := &proxyRig{s: testmesh.Start(t, 2), app: newUpstream(t)}
	r.appPort = r.app.port
	r.closed = freePort(t)
	r.notAllow = newUpstream(t).port
	n1 := r.s.Node(1)
	r.chevron = n1.Chevron().String()
	fc, err := n1.FeatureConn("proxy")
	if err != nil {
		t.Fatal(err)
	}
	tg, err := tunnel.New(tunnel.Options{Node: n1, Conn: fc, Allow: []int{r.appPort, r.closed}})
	if err != nil {
		t.Fatal(err)
	}
	if err := tg.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		_ = tg.Shutdown(ctx)
		fc.Close()
	})
	gw, err := r.s.Node(0).FeatureConn("gateway")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(gw.Close)
	op := r.s.User(0, "op", wire.RoleOperator)
	obs := r.s.User(0, "obs", wire.RoleObserver)
	r.opPub = op.Signer().PublicKey()
	users := map[string]*mesh.Client{"op": op, "obs": obs}
	opts.Client = func(req *http.Request) (*mesh.Client, string, error) {
		u, ok := users[req.Header.Get("X-Test-As")]
		if !ok {
			return nil, "", fmt.Errorf("no session")
		}
		return mesh.NewClient(gw).WithSigner(u.Signer()), u.Signer().PublicKey(), nil
	}
	r.proxy = gateway.NewProxy(opts)
	r.srv = httptest.NewServer(r.proxy)
	t.Cleanup(r.srv.Close)
	// The target's subscription reaches node 0 a moment after Start.
	testmesh.CheckFor(t, 10*time.Second, 20*time.Millisecond, func() error {
		resp, err := r.do(t, "op", http.MethodGet, r.url(r.appPort, "/hello"), nil)
		if err != nil {
			return err
		}
		resp.Body.Close()
		if resp.StatusCode != 200 {
			return fmt.Errorf("status %d", resp.StatusCode)
		}
		return nil
	})
	return r
}

func (r *proxyRig) url(port int, path string) string {
	return r.srv.URL + "/proxy/" + r.chevron + "/" + strconv.Itoa(port) + path
}

func (r *proxyRig) do(t *testing.T, as, method, url string, body io.Reader) (*http.Response, error) {
	t.Helper()
	req, err := http.NewRequest(method, url, body)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("X-Test-As", as)
	return http.DefaultClient.Do(req)
}

// upstream is the app behind the proxy, on 127.0.0.1.
type upstream struct {
	port int
	sse  chan struct{} // each receive lets /sse send its next event
}

func newUpstream(t *testing.T) *upstream {
	t.Helper()
	u := &upstream{sse: make(chan struct{})}
	mux := http.NewServeMux()
	mux.HandleFunc("/hello", func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "hello") })
	mux.HandleFunc("/upload", func(w http.ResponseWriter, r *http.Request) {
		h := sha256.New()
		n, err := io.Copy(h, r.Body)
		if err != nil {
			http.Error(w, err.Error(), 500)
			return
		}
		fmt.Fprintf(w, "%d %x", n, h.Sum(nil))
	})
	mux.HandleFunc("/download", func(w http.ResponseWriter, r *http.Request) {
		n, _ := strconv.ParseInt(r.URL.Query().Get("n"), 10, 64)
		_, _ = io.Copy(w, io.LimitReader(rand.NewChaCha8([32]byte{1}), n))
	})
	mux.HandleFunc("/headers", func(w http.ResponseWriter, r *http.Request) {
		_ = json.NewEncoder(w).Encode(map[string]string{
			"path": r.URL.Path, "query": r.URL.RawQuery, "user": r.Header.Get("X-Robonet-User"),
			"auth": r.Header.Get("Authorization"), "cookie": r.Header.Get("Cookie"),
			"prefix": r.Header.Get("X-Forwarded-Prefix"), "fwd-host": r.Header.Get("X-Forwarded-Host"),
		})
	})
	mux.HandleFunc("/redirect", func(w http.ResponseWriter, r *http.Request) {
		http.SetCookie(w, &http.Cookie{Name: "app", Value: "1", Path: "/"})
		http.SetCookie(w, &http.Cookie{Name: "rn_session", Value: "planted", Path: "/"})
		http.Redirect(w, r, "/hello", http.StatusFound)
	})
	mux.HandleFunc("/slow", func(w http.ResponseWriter, r *http.Request) {
		<-r.Context().Done() // answers never; the proxy's time limit ends it
	})
	mux.HandleFunc("/sse", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/event-stream")
		w.WriteHeader(http.StatusOK)
		w.(http.Flusher).Flush()
		for i := range 3 {
			select {
			case <-u.sse:
			case <-r.Context().Done():
				return
			}
			fmt.Fprintf(w, "data: event %d\n\n", i)
			w.(http.Flusher).Flush()
		}
	})
	mux.HandleFunc("/ws", func(w http.ResponseWriter, r *http.Request) {
		c, err := websocket.Accept(w, r, nil)
		if err != nil {
			return
		}
		defer c.CloseNow()
		c.SetReadLimit(1 << 20)
		for {
			typ, b, err := c.Read(r.Context())
			if err != nil {
				return
			}
			if err := c.Write(r.Context(), typ, b); err != nil {
				return
			}
		}
	})
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)
	u.port = srv.Listener.Addr().(*net.TCPAddr).Port
	return u
}

func freePort(t *testing.T) int {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}

type apiError struct {
	Error string `json:"error"`
	Code  string `json:"code"`
}

func expectError(t *testing.T, resp *http.Response, err error, status int, code string, mention ...string) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var e apiError
	_ = json.NewDecoder(resp.Body).Decode(&e)
	if resp.StatusCode != status || e.Code != code {
		t.Fatalf("got %d %+v, want %d with code %q", resp.StatusCode, e, status, code)
	}
	for _, m := range mention {
		if !strings.Contains(e.Error, m) {
			t.Errorf("error %q does not mention %q", e.Error, m)
		}
	}
}

func TestProxyRefusals(t *testing.T) {
	r := newProxyRig(t, gateway.ProxyOptions{})
	resp, err := r.do(t, "op", "GET", r.url(r.notAllow, "/hello"), nil)
	expectError(t, resp, err, http.StatusForbidden, tunnel.CodeNotAllowed, strconv.Itoa(r.notAllow))

	resp, err = r.do(t, "op", "GET", r.url(r.closed, "/"), nil)
	expectError(t, resp, err, http.StatusBadGateway, tunnel.CodeRefused,
		fmt.Sprintf("port %d on %s: connection refused", r.closed, r.chevron))

	resp, err = r.do(t, "obs", "GET", r.url(r.appPort, "/hello"), nil)
	expectError(t, resp, err, http.StatusForbidden, wire.CodeDenied, "observer")

	resp, err = r.do(t, "nobody", "GET", r.url(r.appPort, "/hello"), nil)
	expectError(t, resp, err, http.StatusUnauthorized, "unauthorized")

	resp, err = r.do(t, "op", "GET", r.srv.URL+"/proxy/9.9.9.9/"+strconv.Itoa(r.appPort)+"/", nil)
	expectError(t, resp, err, http.StatusBadGateway, tunnel.CodeNoTarget, "9.9.9.9")

	for _, path := range []string{"/proxy/0.1/80/", "/proxy/x/80/", "/proxy/1/0/", "/proxy/1/65536/", "/proxy/1/080/", "/proxy/1/http/", "/proxy//80/"} {
		resp, err = r.do(t, "op", "GET", r.srv.URL+path, nil)
		expectError(t, resp, err, http.StatusBadRequest, wire.CodeBadRequest)
	}
}

func TestProxyRewritesRequestAndResponse(t *testing.T) {
	r := newProxyRig(t, gateway.ProxyOptions{})
	req, _ := http.NewRequest("GET", r.url(r.appPort, "/headers?a=1"), nil)
	req.Header.Set("X-Test-As", "op")
	req.Header.Set("X-Robonet-User", "forged")
	req.Header.Set("Authorization", "Bearer rngw_secret")
	req.Header.Set("Cookie", "rn_session=secret; app=1")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	var got map[string]string
	_ = json.NewDecoder(resp.Body).Decode(&got)
	resp.Body.Close()
	prefix := "/proxy/" + r.chevron + "/" + strconv.Itoa(r.appPort)
	want := map[string]string{"path": "/headers", "query": "a=1", "user": r.opPub, "auth": "", "cookie": "app=1",
		"prefix": prefix, "fwd-host": strings.TrimPrefix(r.srv.URL, "http://")}
	for k, v := range want {
		if got[k] != v {
			t.Errorf("upstream saw %s = %q, want %q", k, got[k], v)
		}
	}
	// Redirects and cookie paths stay under the prefix.
	noFollow := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	req, _ = http.NewRequest("GET", r.url(r.appPort, "/redirect"), nil)
	req.Header.Set("X-Test-As", "op")
	resp, err = noFollow.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if loc := resp.Header.Get("Location"); loc != prefix+"/hello" {
		t.Errorf("Location %q, want %q", loc, prefix+"/hello")
	}
	if c := resp.Header.Values("Set-Cookie"); len(c) != 1 || !strings.Contains(c[0], "Path="+prefix+"/") {
		t.Errorf("Set-Cookie %q: want the app's cookie alone, its path under %s (rn_session dropped)", c, prefix)
	}
	if csp := resp.Header.Get("Content-Security-Policy"); !strings.HasPrefix(csp, "sandbox ") || strings.Contains(csp, "allow-same-origin") {
		t.Errorf("Content-Security-Policy %q: want a sandbox without allow-same-origin", csp)
	}
	// No trailing slash after the port: a redirect to it.
	req, _ = http.NewRequest("GET", r.url(r.appPort, ""), nil)
	resp, err = noFollow.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusPermanentRedirect || resp.Header.Get("Location") != prefix+"/" {
		t.Errorf("no slash: %d to %q", resp.StatusCode, resp.Header.Get("Location"))
	}
}

func TestProxyBodyLimitAndBytes(t *testing.T) {
	r := newProxyRig(t, gateway.ProxyOptions{MaxBodyBytes: 1 << 20})
	up0, down0 := r.proxy.Bytes()
	resp, err := r.do(t, "op", "POST", r.url(r.appPort, "/upload"), strings.NewReader(strings.Repeat("x", 1000)))
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || !strings.HasPrefix(string(b), "1000 ") {
		t.Fatalf("small upload: %d %q", resp.StatusCode, b)
	}
	up, down := r.proxy.Bytes()
	if up-up0 < 1000 || down-down0 < uint64(len(b)) {
		t.Errorf("bytes counted up %d down %d, want at least 1000 and %d", up-up0, down-down0, len(b))
	}
	resp, err = r.do(t, "op", "POST", r.url(r.appPort, "/upload"), strings.NewReader(strings.Repeat("x", 2<<20)))
	if err == nil {
		// The proxy may answer before or after the upstream read it all.
		defer resp.Body.Close()
		if resp.StatusCode != http.StatusRequestEntityTooLarge && resp.StatusCode != http.StatusInternalServerError {
			b, _ := io.ReadAll(resp.Body)
			t.Fatalf("2 MiB upload over a 1 MiB limit: %d %s", resp.StatusCode, b)
		}
	}
	resp, err = r.do(t, "op", "GET", r.url(r.appPort, "/download?n="+strconv.Itoa(2<<20)), nil)
	if err != nil {
		t.Fatal(err)
	}
	n, _ := io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if n > 1<<20 {
		t.Fatalf("read %d bytes of a response over the 1 MiB limit", n)
	}
}

func TestProxyWebSocketEcho(t *testing.T) {
	r := newProxyRig(t, gateway.ProxyOptions{})
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	url := "ws" + strings.TrimPrefix(r.url(r.appPort, "/ws"), "http")
	c, _, err := websocket.Dial(ctx, url, &websocket.DialOptions{HTTPHeader: http.Header{"X-Test-As": {"op"}}})
	if err != nil {
		t.Fatal(err)
	}
	defer c.CloseNow()
	c.SetReadLimit(1 << 20)
	for i, msg := range []string{"hello", strings.Repeat("big ", 100<<10), "bye"} {
		if err := c.Write(ctx, websocket.MessageText, []byte(msg)); err != nil {
			t.Fatal(err)
		}
		_, got, err := c.Read(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if string(got) != msg {
			t.Fatalf("message %d: echo of %d bytes differs", i, len(got))
		}
	}
	if err := c.Close(websocket.StatusNormalClosure, ""); err != nil {
		t.Fatal(err)
	}
	waitNoTunnels(t)
}

// waitNoTunnels waits until no goroutine of package tunnel runs: every
// tunnel a request opened ended with it, both ends.
func waitNoTunnels(t *testing.T) {
	t.Helper()
	testmesh.CheckFor(t, 10*time.Second, 20*time.Millisecond, func() error {
		buf := make([]byte, 4<<20)
		for _, g := range strings.Split(string(buf[:runtime.Stack(buf, true)]), "\n\n") {
			if strings.Contains(g, "robonet/gateway/tunnel.(*") {
				return fmt.Errorf("tunnel goroutine still running:\n%s", g)
			}
		}
		return nil
	})
}

func TestProxyTimeLimitAnswers504(t *testing.T) {
	r := newProxyRig(t, gateway.ProxyOptions{Timeout: 300 * time.Millisecond})
	resp, err := r.do(t, "op", "GET", r.url(r.appPort, "/slow"), nil)
	expectError(t, resp, err, http.StatusGatewayTimeout, tunnel.CodeTimeout, r.chevron)
	waitNoTunnels(t)
}

func TestProxySSEArrivesAsSent(t *testing.T) {
	r := newProxyRig(t, gateway.ProxyOptions{})
	resp, err := r.do(t, "op", "GET", r.url(r.appPort, "/sse"), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if ct := resp.Header.Get("Content-Type"); ct != "text/event-stream" {
		t.Fatalf("content type %q", ct)
	}
	br := bufio.NewReader(resp.Body)
	for i := range 3 {
		// The upstream sends event i only now, and event i+1 only after
		// the test read event i: a buffered proxy would hang here.
		r.app.sse <- struct{}{}
		line, err := br.ReadString('\n')
		if err != nil {
			t.Fatal(err)
		}
		if want := fmt.Sprintf("data: event %d\n", i); line != want {
			t.Fatalf("got %q, want %q", line, want)
		}
		if _, err := br.ReadString('\n'); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := br.ReadString('\n'); err != io.EOF {
		t.Fatalf("after the last event: %v, want EOF", err)
	}
	resp.Body.Close()
	waitNoTunnels(t)
}

// TestProxyStreams1GiBBothWays sends 1 GiB up and 1 GiB down through the
// proxy and checks SHA-256 each way, and that the heap stays far below the
// body: the tunnel streams, it does not buffer.
func TestProxyStreams1GiBBothWays(t *testing.T) {
	if testing.Short() {
		t.Skip("1 GiB each way: not in -short")
	}
	const size = 1 << 30
	r := newProxyRig(t, gateway.ProxyOptions{})
	var peak atomic.Uint64
	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() { // heap sampler
		defer wg.Done()
		tick := time.NewTicker(100 * time.Millisecond)
		defer tick.Stop()
		var ms runtime.MemStats
		for {
			select {
			case <-stop:
				return
			case <-tick.C:
				runtime.ReadMemStats(&ms)
				if ms.HeapInuse > peak.Load() {
					peak.Store(ms.HeapInuse)
				}
			}
		}
	}()
	defer func() { close(stop); wg.Wait() }()

	h := sha256.New()
	_, _ = io.Copy(h, io.LimitReader(rand.NewChaCha8([32]byte{1}), size))
	want := hex.EncodeToString(h.Sum(nil))

	start := time.Now()
	resp, err := r.do(t, "op", "POST", r.url(r.appPort, "/upload"), io.LimitReader(rand.NewChaCha8([32]byte{1}), size))
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if got := string(b); got != fmt.Sprintf("%d %s", size, want) {
		t.Fatalf("upload: upstream got %q, want %d bytes with SHA-256 %s", got, size, want)
	}
	t.Logf("1 GiB up in %s", time.Since(start).Round(time.Millisecond))

	start = time.Now()
	resp, err = r.do(t, "op", "GET", r.url(r.appPort, "/download?n="+strconv.Itoa(size)), nil)
	if err != nil {
		t.Fatal(err)
	}
	h.Reset()
	n, err := io.Copy(h, resp.Body)
	resp.Body.Close()
	if err != nil || n != size || hex.EncodeToString(h.Sum(nil)) != want {
		t.Fatalf("download: %d bytes (%v), SHA-256 %x, want %d bytes with %s", n, err, h.Sum(nil), size, want)
	}
	t.Logf("1 GiB down in %s; heap peak %d MiB", time.Since(start).Round(time.Millisecond), peak.Load()>>20)
	if p := peak.Load(); p > 256<<20 {
		t.Fatalf("heap in use peaked at %d MiB moving 1 GiB: the proxy buffers", p>>20)
	}
}

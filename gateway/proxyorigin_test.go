package gateway_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/robonet-mesh/robonet/gateway"
	"github.com/robonet-mesh/robonet/gateway/tunnel"
	"github.com/robonet-mesh/robonet/internal/testmesh"
	"github.com/robonet-mesh/robonet/wire"
)

// originRig is a 2-node swarm: the gateway with the mesh proxy mounted on
// node 0, an app on 127.0.0.1 served to the mesh by node 1.
type originRig struct {
	*fixture
	app   *upstream
	other int // a second allowed app port
	chev  string
}

func newOriginRig(t *testing.T) *originRig {
	t.Helper()
	r := &originRig{app: newUpstream(t), other: newUpstream(t).port}
	r.fixture = newProxyFixture(t, r.app.port, r.other)
	r.chev = r.s.Node(1).Chevron().String()
	return r
}

// newProxyFixture is a 2-node swarm whose node 1 serves ports to the mesh
// and whose node 0 runs a gateway with the mesh proxy mounted (and so a
// proxy origin).
func newProxyFixture(t *testing.T, ports ...int) *fixture {
	t.Helper()
	s := testmesh.Start(t, 2)
	s.WaitAlive(30 * time.Second)
	n1 := s.Node(1)
	fc, err := n1.FeatureConn("proxy")
	if err != nil {
		t.Fatal(err)
	}
	tg, err := tunnel.New(tunnel.Options{Node: n1, Conn: fc, Allow: ports})
	if err == nil {
		err = tg.Start(context.Background())
	}
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		_ = tg.Shutdown(ctx)
		fc.Close()
	})
	g, err := gateway.New(gateway.Options{Node: s.Node(0), Addr: "127.0.0.1:0", Explicit: true, Logger: testmesh.Logger(t, new(atomic.Bool))})
	if err != nil {
		t.Fatal(err)
	}
	g.MountProxy(gateway.ProxyOptions{})
	if err := g.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		_ = g.Shutdown(ctx)
	})
	return &fixture{t: t, s: s, g: g, admin: s.Client(0), clock: &testClock{}}
}

func (r *originRig) path(port int, rest string) string {
	return "/proxy/" + r.chev + "/" + strconv.Itoa(port) + rest
}

// appHeaders decodes the upstream's /headers answer.
func appHeaders(t *testing.T, a answer) map[string]string {
	t.Helper()
	var h map[string]string
	if err := json.Unmarshal(a.body, &h); err != nil {
		t.Fatalf("/headers: %d %s: %v", a.status, a.body, err)
	}
	return h
}

// A browser session never gets a proxied page on the dashboard's origin:
// it is sent to the proxy origin through a single-use entry, whose cookie
// opens the apps it entered and nothing else; neither cookie reaches the
// app; the proxied page cannot post to the dashboard's API.
func TestBrowsersGetProxiedAppsOnTheProxyOrigin(t *testing.T) {
	r := newOriginRig(t)
	if r.g.ProxyURL() == "" || r.g.ProxyURL() == r.g.URL() {
		t.Fatalf("proxy origin %q, gateway %q", r.g.ProxyURL(), r.g.URL())
	}
	op := r.s.User(0, "op", wire.RoleOperator)
	hc := r.browser(op, wire.RoleOperator)
	var final *url.URL
	testmesh.CheckFor(t, 10*time.Second, 50*time.Millisecond, func() error {
		resp, err := hc.Get(r.g.URL() + r.path(r.app.port, "/headers"))
		if err != nil {
			return err
		}
		defer resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			return fmt.Errorf("status %d", resp.StatusCode)
		}
		final = resp.Request.URL
		if csp := strings.Join(resp.Header.Values("Content-Security-Policy"), ", "); strings.Contains(csp, "sandbox") {
			return fmt.Errorf("the proxy origin sandboxed the app: %q", csp)
		}
		var h map[string]string
		if err := json.NewDecoder(resp.Body).Decode(&h); err != nil {
			return err
		}
		if h["cookie"] != "" || h["user"] != op.Signer().PublicKey() {
			return fmt.Errorf("the app saw cookie %q, user %q", h["cookie"], h["user"])
		}
		return nil
	})
	if !strings.HasPrefix(final.String(), r.g.ProxyURL()+r.path(r.app.port, "/headers")) {
		t.Fatalf("served at %s, want the proxy origin %s", final, r.g.ProxyURL())
	}

	// The app's root without its slash ends there too, with it (the test
	// app has no page at its root: its own 404 answers).
	resp, err := hc.Get(r.g.URL() + r.path(r.app.port, ""))
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.Request.URL.String() != r.g.ProxyURL()+r.path(r.app.port, "/") || !strings.Contains(string(body), "404 page not found") {
		t.Fatalf("the app's root without a slash: %d at %s: %s", resp.StatusCode, resp.Request.URL, body)
	}

	// Scripts of the proxied page reach the dashboard only cross-origin:
	// a POST carrying the session cookie is refused.
	a := r.do(hc, "POST", "/api/run", `{"selector":"all","verb":"ping"}`, "Origin", r.g.ProxyURL(), "Sec-Fetch-Site", "same-site")
	if a.status != http.StatusForbidden || a.code() != gateway.CodeCrossOrigin {
		t.Fatalf("POST /api/run from the proxy origin: %d %s", a.status, a.body)
	}
	// The proxy origin serves nothing of the dashboard's.
	if resp, err := hc.Get(r.g.ProxyURL() + "/api/me"); err != nil || resp.StatusCode != http.StatusNotFound {
		t.Fatalf("/api/me on the proxy origin: %v %v", resp, err)
	}

	// Another app this browser did not enter is not opened by the cookie:
	// the proxy origin sends it back to the dashboard's port.
	noFollow := &http.Client{Jar: hc.Jar, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	resp, err = noFollow.Get(r.g.ProxyURL() + r.path(r.other, "/hello"))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusSeeOther || !strings.HasPrefix(resp.Header.Get("Location"), r.g.URL()+"/proxy/") {
		t.Fatalf("an app not entered: %d %s", resp.StatusCode, resp.Header.Get("Location"))
	}

	// An entry works once.
	resp, err = noFollow.Get(r.g.URL() + r.path(r.other, "/hello"))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	enter := resp.Header.Get("Location")
	if resp.StatusCode != http.StatusSeeOther || !strings.HasPrefix(enter, r.g.ProxyURL()+"/_rn/enter?") {
		t.Fatalf("entry: %d %q", resp.StatusCode, enter)
	}
	fresh, _ := cookiejar.New(nil)
	for i, want := range []int{http.StatusSeeOther, http.StatusUnauthorized} {
		resp, err := (&http.Client{Jar: fresh, CheckRedirect: noFollow.CheckRedirect}).Get(enter)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != want {
			t.Fatalf("entry used %d times: %d, want %d", i+1, resp.StatusCode, want)
		}
	}

	// Logging out of the dashboard ends the proxy visit.
	if a := r.do(hc, "POST", "/logout", ""); a.status != http.StatusOK {
		t.Fatalf("logout: %d", a.status)
	}
	resp, err = noFollow.Get(r.g.ProxyURL() + r.path(r.app.port, "/hello"))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusSeeOther {
		t.Fatalf("after logout the proxy origin answered %d, want a redirect to the dashboard", resp.StatusCode)
	}
}

// Programs with a bearer token are served on the dashboard's port, with
// the sandbox; observers are refused; the dashboard answers only loopback
// names (DNS rebinding).
func TestProxyForTokensAndRefusals(t *testing.T) {
	r := newOriginRig(t)
	op := r.s.User(0, "op", wire.RoleOperator)
	tok := r.token(op, wire.RoleOperator)
	var a answer
	testmesh.CheckFor(t, 10*time.Second, 50*time.Millisecond, func() error {
		a = r.do(nil, "GET", r.path(r.app.port, "/headers"), "", bearer(tok)...)
		if a.status != http.StatusOK {
			return fmt.Errorf("status %d %s", a.status, a.body)
		}
		return nil
	})
	if h := appHeaders(t, a); h["auth"] != "" || h["user"] != op.Signer().PublicKey() {
		t.Fatalf("the app saw %v", h)
	}
	if csp := strings.Join(a.header.Values("Content-Security-Policy"), ", "); !strings.Contains(csp, "sandbox") {
		t.Fatalf("a proxied answer on the dashboard's origin without the sandbox: %q", csp)
	}

	obs := r.s.User(0, "obs", wire.RoleObserver)
	if a := r.do(nil, "GET", r.path(r.app.port, "/hello"), "", bearer(r.token(obs, wire.RoleObserver))...); a.status != http.StatusForbidden {
		t.Fatalf("observer through the proxy: %d %s", a.status, a.body)
	}

	req, _ := http.NewRequest("GET", r.g.URL()+"/api/me", nil)
	req.Host = "rebound.example:8340"
	req.Header.Set("Authorization", "Bearer "+tok)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusMisdirectedRequest {
		t.Fatalf("Host rebound.example on a loopback gateway: %d", resp.StatusCode)
	}
}

package gateway_test

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/coder/websocket"
	"github.com/nats-io/nkeys"

	"github.com/robonet-mesh/robonet/gateway"
	"github.com/robonet-mesh/robonet/internal/testmesh"
	"github.com/robonet-mesh/robonet/wire"
)

// liveMsg is any message of /api/live.
type liveMsg struct {
	Type    string
	Nodes   []wire.Member
	Chevron string
	Gauges  []struct {
		Name  string
		Value float64
	}
	Error string
	Code  string
	Alert *wire.Alert
}

func dialLive(t *testing.T, f *fixture, tok, origin string) (*websocket.Conn, *http.Response, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	h := http.Header{}
	if tok != "" {
		h.Set("Authorization", "Bearer "+tok)
	}
	if origin != "" {
		h.Set("Origin", origin)
	}
	u := "ws" + strings.TrimPrefix(f.g.URL(), "http") + "/api/live"
	return websocket.Dial(ctx, u, &websocket.DialOptions{HTTPHeader: h})
}

// next reads messages until one of type typ satisfies ok, or fails after
// timeout.
func next(t *testing.T, c *websocket.Conn, timeout time.Duration, typ string, ok func(liveMsg) bool) liveMsg {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	for {
		_, b, err := c.Read(ctx)
		if err != nil {
			t.Fatalf("waiting for a %s message: %v", typ, err)
		}
		var m liveMsg
		if err := json.Unmarshal(b, &m); err != nil {
			t.Fatalf("message %s: %v", b, err)
		}
		if m.Type == typ && (ok == nil || ok(m)) {
			return m
		}
	}
}

// TestLiveSocketShowsAJoiningNodeAndGauges: the snapshot on connect, a node
// that joins appears within a second of being up, and a watched node's
// gauges arrive every second; a foreign Origin is refused.
func TestLiveSocketShowsAJoiningNodeAndGauges(t *testing.T) {
	f := newFixture(t, 2)
	tok := f.token(f.admin, wire.RoleObserver)

	if _, resp, err := dialLive(t, f, tok, "http://evil.example"); err == nil || resp == nil || resp.StatusCode != http.StatusForbidden {
		t.Fatalf("foreign Origin: %v %v", resp, err)
	}
	if _, resp, err := dialLive(t, f, "", f.g.URL()); err == nil || resp == nil || resp.StatusCode != http.StatusUnauthorized {
		t.Fatalf("no token: %v %v", resp, err)
	}
	c, _, err := dialLive(t, f, tok, f.g.URL())
	if err != nil {
		t.Fatal(err)
	}
	defer c.CloseNow()
	next(t, c, 5*time.Second, "hello", nil)
	next(t, c, 5*time.Second, "nodes", func(m liveMsg) bool { return len(m.Nodes) == 2 })

	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := c.Write(ctx, websocket.MessageText, []byte(`{"type":"watch","chevron":"1"}`)); err != nil {
		t.Fatal(err)
	}
	g := next(t, c, 10*time.Second, "gauges", func(m liveMsg) bool { return m.Chevron == "1" })
	names := map[string]bool{}
	for _, x := range g.Gauges {
		names[x.Name] = true
	}
	for _, want := range []string{"cpu.busy_pct", "mem.used_pct"} {
		if !names[want] {
			t.Fatalf("gauges %+v lack %s (error %q)", g.Gauges, want, g.Error)
		}
	}
	if err := c.Write(ctx, websocket.MessageText, []byte(`{"type":"watch","chevron":"1..2"}`)); err != nil {
		t.Fatal(err)
	}
	next(t, c, 5*time.Second, "error", func(m liveMsg) bool { return m.Code == gateway.CodeBadRequest })

	// An alert event reaches the socket as it is published.
	alert, _ := json.Marshal(wire.Alert{Kind: "alert", Peer: "2", By: "1", Signal: "cpu", Score: 9, Level: "alert", Time: time.Now()})
	if err := f.admin.Conn().Publish("rn.1.evt.alert", alert); err != nil {
		t.Fatal(err)
	}
	next(t, c, 5*time.Second, "alert", func(m liveMsg) bool { return m.Alert != nil && m.Alert.Signal == "cpu" && m.Alert.Peer == "2" })

	nd := f.s.AddNode()
	up := time.Now()
	m := next(t, c, 20*time.Second, "nodes", func(m liveMsg) bool {
		for _, n := range m.Nodes {
			if n.Chevron == nd.Chevron().String() {
				return true
			}
		}
		return false
	})
	t.Logf("node %s appeared on the socket %v after it was up (%d nodes)", nd.Chevron(), time.Since(up).Round(time.Millisecond), len(m.Nodes))
	if d := time.Since(up); d > 2*time.Second {
		t.Errorf("the joining node took %v to appear", d)
	}
}

// TestTLSOnANonLoopbackAddress: any address but loopback is HTTPS, with a
// certificate of the node's key.
func TestTLSOnANonLoopbackAddress(t *testing.T) {
	s := testmesh.Start(t, 1)
	g := serveGateway(t, gateway.Options{Node: s.Node(0), Addr: "0.0.0.0:0", Explicit: true})
	if !strings.HasPrefix(g.URL(), "https://") || !g.TLS() {
		t.Fatalf("URL %s", g.URL())
	}
	port := g.Addr()[strings.LastIndex(g.Addr(), ":"):]
	var leafKey ed25519.PublicKey
	hc := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{
		InsecureSkipVerify: true, // checked below: the certificate's key must be the node's
		VerifyConnection: func(cs tls.ConnectionState) error {
			leafKey, _ = cs.PeerCertificates[0].PublicKey.(ed25519.PublicKey)
			return nil
		},
	}}}
	resp, err := hc.Get("https://127.0.0.1" + port + "/api/me")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusUnauthorized || resp.Header.Get("Strict-Transport-Security") == "" {
		t.Fatalf("%d %v", resp.StatusCode, resp.Header)
	}
	pub := s.Node(0).Pubkey()
	raw, err := nkeys.Decode(nkeys.PrefixByteServer, []byte(pub))
	if err != nil {
		if raw, err = nkeys.Decode(nkeys.PrefixByteUser, []byte(pub)); err != nil {
			t.Fatal(err)
		}
	}
	if !leafKey.Equal(ed25519.PublicKey(raw)) {
		t.Fatalf("certificate key %x is not node key %s", leafKey, pub)
	}
	// Plain HTTP is not served there.
	if resp, err := (&http.Client{Timeout: 5 * time.Second}).Get("http://127.0.0.1" + port + "/"); err == nil {
		resp.Body.Close()
		if resp.StatusCode < 400 {
			t.Fatalf("plain http answered %d", resp.StatusCode)
		}
	}
}

// TestLogoutClosesTheLiveSocket: a socket does not outlive its session.
func TestLogoutClosesTheLiveSocket(t *testing.T) {
	f := newFixture(t, 1)
	hc := f.browser(f.admin, "")
	u, _ := url.Parse(f.g.URL())
	h := http.Header{}
	h.Set("Origin", f.g.URL())
	for _, ck := range hc.Jar.Cookies(u) {
		h.Add("Cookie", ck.String())
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	c, _, err := websocket.Dial(ctx, "ws"+strings.TrimPrefix(f.g.URL(), "http")+"/api/live", &websocket.DialOptions{HTTPHeader: h})
	if err != nil {
		t.Fatal(err)
	}
	defer c.CloseNow()
	next(t, c, 5*time.Second, "hello", nil)
	if a := f.do(hc, "POST", "/logout", ""); a.status != http.StatusOK {
		t.Fatalf("logout: %d", a.status)
	}
	for {
		_, _, err := c.Read(ctx)
		if err != nil {
			if websocket.CloseStatus(err) != gateway.CloseUnauthenticated {
				t.Fatalf("socket ended with %v, want close %d", err, gateway.CloseUnauthenticated)
			}
			return
		}
	}
}

// TestShutdownClosesSocketsAndWaits: Shutdown ends open sockets and leaves
// no goroutine of the gateway behind.
func TestShutdownClosesSocketsAndWaits(t *testing.T) {
	s := testmesh.Start(t, 1)
	f := &fixture{t: t, s: s, admin: s.Client(0), clock: &testClock{}}
	g, err := gateway.New(gateway.Options{Node: s.Node(0), Addr: "127.0.0.1:0", Explicit: true})
	if err != nil {
		t.Fatal(err)
	}
	if err := g.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	f.g = g
	c, _, err := dialLive(t, f, f.token(f.admin, ""), g.URL())
	if err != nil {
		t.Fatal(err)
	}
	defer c.CloseNow()
	next(t, c, 5*time.Second, "nodes", nil)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	t0 := time.Now()
	if err := g.Shutdown(ctx); err != nil {
		t.Fatal(err)
	}
	t.Logf("shutdown took %v", time.Since(t0))
	if err := g.Shutdown(ctx); err != nil {
		t.Fatalf("second shutdown: %v", err)
	}
	// Updates sent before the close may still be queued on the client's
	// side: read past them to the close.
	for {
		_, _, err := c.Read(ctx)
		if err == nil {
			continue
		}
		if websocket.CloseStatus(err) != websocket.StatusGoingAway {
			t.Fatalf("socket after shutdown: %v", err)
		}
		break
	}
	testmesh.CheckFor(t, 5*time.Second, 20*time.Millisecond, func() error {
		buf := make([]byte, 1<<20)
		for _, st := range strings.Split(string(buf[:runtime.Stack(buf, true)]), "\n\n") {
			if strings.Contains(st, "robonet/gateway.") {
				return fmt.Errorf("goroutine left:\n%s", st)
			}
		}
		return nil
	})
}

// TestTLSWithGivenCertificateFiles: --gateway-cert/--gateway-key replace the
// node key's certificate; a missing file is an error naming it.
func TestTLSWithGivenCertificateFiles(t *testing.T) {
	s := testmesh.Start(t, 1)
	pub, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(7), Subject: pkix.Name{CommonName: "gw.test"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour), DNSNames: []string{"gw.test"}}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, pub, priv)
	if err != nil {
		t.Fatal(err)
	}
	pk, err := x509.MarshalPKCS8PrivateKey(priv)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	certFile, keyFile := filepath.Join(dir, "gw.crt"), filepath.Join(dir, "gw.key")
	if err := os.WriteFile(certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: pk}), 0o600); err != nil {
		t.Fatal(err)
	}
	g := serveGateway(t, gateway.Options{Node: s.Node(0), Addr: "0.0.0.0:0", Explicit: true, CertFile: certFile, KeyFile: keyFile})
	port := g.Addr()[strings.LastIndex(g.Addr(), ":"):]
	var got []byte
	hc := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{
		InsecureSkipVerify: true, // the test compares the certificate itself
		VerifyConnection: func(cs tls.ConnectionState) error {
			got = cs.PeerCertificates[0].Raw
			return nil
		},
	}}}
	resp, err := hc.Get("https://127.0.0.1" + port + "/")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if !bytes.Equal(got, der) {
		t.Fatal("the gateway did not serve the given certificate")
	}
	bad, err := gateway.New(gateway.Options{Node: s.Node(0), Addr: "0.0.0.0:0", Explicit: true, CertFile: filepath.Join(dir, "nope.crt"), KeyFile: keyFile})
	if err != nil {
		t.Fatal(err)
	}
	if err := bad.Start(context.Background()); err == nil || !strings.Contains(err.Error(), "nope.crt") {
		t.Fatalf("missing certificate file: %v", err)
	}
	if _, err := gateway.New(gateway.Options{Node: s.Node(0), CertFile: certFile}); !errors.Is(err, gateway.ErrOptions) {
		t.Fatalf("a certificate without a key: %v", err)
	}
}

package main

import (
	"context"
	"io"
	"net"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/robonet-mesh/robonet/gateway"
	"github.com/robonet-mesh/robonet/internal/testmesh"
	"github.com/robonet-mesh/robonet/wire"
)

// TestGatewayLoginAndTokenPrintOnlyTheCredential: stdout is the URL or the
// token alone, and each works against the gateway.
func TestGatewayLoginAndTokenPrintOnlyTheCredential(t *testing.T) {
	s := testmesh.Start(t, 1)
	nd := s.Node(0)
	g, stop, err := startGateway(context.Background(), nd, gatewayFlags{Addr: "127.0.0.1:0", Explicit: true}, testmesh.Logger(t, new(atomic.Bool)))
	if err != nil || g == nil {
		t.Fatalf("start: %v", err)
	}
	t.Cleanup(func() { stop(context.Background()) })
	conn := []string{"--server", nd.ClientURL(), "--nkey", nd.OperatorSeedPath(), "--data", nd.DataDir()}

	out, errOut, err := rncli(t, append([]string{"gateway", "token", "create", "--role", "observer", "--ttl", "24h"}, conn...)...)
	if err != nil || strings.Count(out, "\n") != 1 || !strings.HasPrefix(out, gateway.TokenPrefix) || !strings.Contains(errOut, "as observer") {
		t.Fatalf("token create: %v\nstdout %q\nstderr %q", err, out, errOut)
	}
	req, _ := http.NewRequest("GET", g.URL()+"/api/nodes", nil)
	req.Header.Set("Authorization", "Bearer "+strings.TrimSpace(out))
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || !strings.Contains(string(body), nd.Pubkey()) {
		t.Fatalf("curl with the token: %d %s", resp.StatusCode, body)
	}

	// /metrics wants the token (--metrics-open not given).
	mreq, _ := http.NewRequest("GET", g.URL()+"/metrics", nil)
	if resp, err := http.DefaultClient.Do(mreq); err != nil || resp.StatusCode != http.StatusUnauthorized {
		t.Fatalf("/metrics without a token: %v %v", resp, err)
	} else {
		resp.Body.Close()
	}
	mreq.Header.Set("Authorization", "Bearer "+strings.TrimSpace(out))
	resp, err = http.DefaultClient.Do(mreq)
	if err != nil {
		t.Fatal(err)
	}
	body, _ = io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || !strings.Contains(string(body), "robonet_") {
		t.Fatalf("/metrics with the token: %d %.300s", resp.StatusCode, body)
	}

	out, errOut, err = rncli(t, append([]string{"gateway", "login"}, conn...)...)
	if err != nil || strings.Count(out, "\n") != 1 || !strings.HasPrefix(out, g.URL()+"/login?t=") || !strings.Contains(errOut, "single use") {
		t.Fatalf("login: %v\nstdout %q\nstderr %q", err, out, errOut)
	}
	hc := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	resp, err = hc.Get(strings.TrimSpace(out))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusSeeOther || !strings.Contains(resp.Header.Get("Set-Cookie"), "rn_session=") {
		t.Fatalf("login link: %d %v", resp.StatusCode, resp.Header)
	}

	if _, _, err := rncli(t, append([]string{"gateway", "token", "create", "--role", "root"}, conn...)...); err == nil || !strings.Contains(err.Error(), `--role "root"`) {
		t.Fatalf("--role root: %v", err)
	}
	if _, _, err := rncli(t, append([]string{"gateway", "token", "create", "--ttl", "10000h"}, conn...)...); err == nil || !strings.Contains(err.Error(), "ttl") {
		t.Fatalf("--ttl 10000h: %v", err)
	}
}

// TestGatewayCredentialsForOperatorsAndObservers: users of every role get
// a token over their own connection (the node's permissions let them reach
// the login service), never one above their role.
func TestGatewayCredentialsForOperatorsAndObservers(t *testing.T) {
	s := testmesh.Start(t, 1)
	nd := s.Node(0)
	g, stop, err := startGateway(context.Background(), nd, gatewayFlags{Addr: "127.0.0.1:0", Explicit: true}, testmesh.Logger(t, new(atomic.Bool)))
	if err != nil || g == nil {
		t.Fatalf("start: %v", err)
	}
	t.Cleanup(func() { stop(context.Background()) })
	for _, role := range []string{wire.RoleOperator, wire.RoleObserver} {
		s.User(0, role+"1", role)
		conn := []string{"--server", nd.ClientURL(), "--nkey", s.UserSeedFile(role + "1"), "--data", nd.DataDir()}
		out, errOut, err := rncli(t, append([]string{"gateway", "token", "create", "--role", role}, conn...)...)
		if err != nil || !strings.HasPrefix(out, gateway.TokenPrefix) {
			t.Fatalf("%s: token create: %v\nstdout %q\nstderr %q", role, err, out, errOut)
		}
		if _, _, err := rncli(t, append([]string{"gateway", "token", "create", "--role", wire.RoleAdmin}, conn...)...); err == nil || !strings.Contains(err.Error(), role) {
			t.Fatalf("%s asking for an admin token: %v", role, err)
		}
	}
}

// TestStartGatewayOffAndTakenAddresses: off starts nothing; the default
// address taken runs without a gateway; an explicit one taken fails.
func TestStartGatewayOffAndTakenAddresses(t *testing.T) {
	s := testmesh.Start(t, 1)
	nd := s.Node(0)
	log := testmesh.Logger(t, new(atomic.Bool))
	if g, _, err := startGateway(context.Background(), nd, gatewayFlags{Addr: "off", Explicit: true}, log); g != nil || err != nil {
		t.Fatalf("off: %v %v", g, err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	if g, stop, err := startGateway(context.Background(), nd, gatewayFlags{Addr: ln.Addr().String()}, log); g != nil || err != nil {
		t.Fatalf("default taken: %v %v", g, err)
	} else {
		stop(context.Background())
	}
	if _, _, err := startGateway(context.Background(), nd, gatewayFlags{Addr: ln.Addr().String(), Explicit: true}, log); err == nil || !strings.Contains(err.Error(), ln.Addr().String()) {
		t.Fatalf("explicit taken: %v", err)
	}
	// --metrics-open: /metrics without a token, the API still with one.
	g, stop, err := startGateway(context.Background(), nd, gatewayFlags{Addr: "127.0.0.1:0", Explicit: true, MetricsOpen: true}, log)
	if err != nil {
		t.Fatal(err)
	}
	for path, want := range map[string]int{"/metrics": 200, "/api/nodes": 401} {
		resp, err := http.Get(g.URL() + path)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != want {
			t.Errorf("--metrics-open: %s answered %d, want %d", path, resp.StatusCode, want)
		}
	}
	stop(context.Background())
	// No gateway at all: login says so.
	conn := []string{"--server", nd.ClientURL(), "--nkey", nd.OperatorSeedPath(), "--data", nd.DataDir()}
	if _, _, err := rncli(t, append([]string{"gateway", "login"}, conn...)...); err == nil || !strings.Contains(err.Error(), "no gateway answers") {
		t.Fatalf("login without a gateway: %v", err)
	}
}

package main

import (
	"context"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/spf13/pflag"

	"github.com/robonet-mesh/robonet/gateway/tunnel"
	"github.com/robonet-mesh/robonet/internal/testmesh"
	"github.com/robonet-mesh/robonet/wire"
)

func TestProxyFlagsRefuseBadPorts(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"--proxy-allow", "8080,8080"}, "8080: listed twice"},
		{[]string{"--proxy-allow", "0"}, `port "0"`},
		{[]string{"--proxy-allow", "70000"}, `port "70000"`},
		{[]string{"--proxy-allow", "80x"}, `port "80x"`},
		{[]string{"--proxy-max-per-key", "0"}, "--proxy-max-per-key 0"},
		{[]string{"--proxy-max-bytes", "-1"}, "--proxy-max-bytes -1"},
	} {
		f := pflag.NewFlagSet("up", pflag.ContinueOnError)
		pf := addProxyFlags(f)
		if err := f.Parse(tc.args); err != nil {
			t.Fatal(err)
		}
		err := pf.check()
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%v: err %v, want one naming %s", tc.args, err, tc.want)
		}
	}
	f := pflag.NewFlagSet("up", pflag.ContinueOnError)
	pf := addProxyFlags(f)
	if err := f.Parse([]string{"--proxy-allow", "8080,3000"}); err != nil {
		t.Fatal(err)
	}
	if ports, err := pf.ports(); err != nil || len(ports) != 2 {
		t.Fatalf("8080,3000: %v, %v", ports, err)
	}
}

func TestParseProxyTarget(t *testing.T) {
	for _, bad := range []string{"3.12.7.1", "3.12.7.1:", ":80", "3.12.7.1:0", "0.1:80", "a:80", "1:80:80", "1.2.3.4.5:80"} {
		if _, _, err := parseProxyTarget(bad); err == nil {
			t.Errorf("%q accepted", bad)
		}
	}
	c, p, err := parseProxyTarget("3.12.7.1:8080")
	if err != nil || c.String() != "3.12.7.1" || p != 8080 {
		t.Fatalf("got %s %d %v", c, p, err)
	}
}

// TestProxyCommandForwardsALocalPort runs what `robonet proxy` runs: a local
// listener whose connections reach an app on another node's loopback, served
// by what `robonet up --proxy-allow` starts there.
func TestProxyCommandForwardsALocalPort(t *testing.T) {
	s := testmesh.Start(t, 2)
	app := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, "hello from "+r.URL.Path)
	}))
	t.Cleanup(app.Close)
	port := app.Listener.Addr().(*net.TCPAddr).Port

	f := pflag.NewFlagSet("up", pflag.ContinueOnError)
	pf := addProxyFlags(f)
	if err := f.Parse([]string{"--proxy-allow", strconv.Itoa(port)}); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	stopTarget, err := startProxyTarget(ctx, s.Node(1), pf, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	defer stopTarget(context.Background())

	// The CLI connects with the swarm founder's key (an admin): operators
	// reach the proxy through the gateway (see the report on permissions).
	c := s.Client(0)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		if err := serveProxy(ctx, ln, c, &tunnel.Dialer{TargetKey: tunnel.RegistryKey(c)}, s.Node(1).Chevron(), port, io.Discard); err != nil {
			t.Error(err)
		}
	}()
	client := &http.Client{Transport: &http.Transport{DisableKeepAlives: true}}
	testmesh.CheckFor(t, 10*time.Second, 50*time.Millisecond, func() error {
		resp, err := client.Get("http://" + ln.Addr().String() + "/x")
		if err != nil {
			return err
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		if string(b) != "hello from /x" {
			return &wire.Error{Code: "unexpected", Msg: string(b)}
		}
		return nil
	})
	cancel()
	wg.Wait()
}

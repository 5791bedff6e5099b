package main

import (
	"fmt"
	"io"
	"net/http"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/robonet-mesh/robonet/gateway"
	"github.com/robonet-mesh/robonet/internal/testmesh"
)

// TestBinaryGatewayTokenAndCurl is the lines with the real binary:
// up serves a gateway, token create prints a token alone, curl with it
// reads /api/nodes; a second up asking for the same address explicitly
// fails.
func TestBinaryGatewayTokenAndCurl(t *testing.T) {
	gw := freeAddr(t)
	p := startUp(t, filepath.Join(t.TempDir(), "d"), "--gateway", gw)
	p.waitReady(t)
	line := "  gateway   http://" + gw + " (robonet gateway login for a link)"
	testmesh.CheckFor(t, 10*time.Second, 20*time.Millisecond, func() error {
		if !strings.Contains(p.output(), line) {
			return fmt.Errorf("no %q in\n%s", line, p.output())
		}
		return nil
	})
	out, errOut, code := cli(t, nil, "gateway", "token", "create", "--role", "observer", "--ttl", "24h", "--server", p.client, "--data", p.data)
	if code != 0 || strings.Count(out, "\n") != 1 || !strings.HasPrefix(out, gateway.TokenPrefix) {
		t.Fatalf("token create: exit %d\nstdout %q\nstderr %s", code, out, errOut)
	}
	req, _ := http.NewRequest("GET", "http://"+gw+"/api/nodes", nil)
	req.Header.Set("Authorization", "Bearer "+strings.TrimSpace(out))
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || !strings.Contains(string(body), `"chevron":"1"`) {
		t.Fatalf("curl: %d %s", resp.StatusCode, body)
	}
	out, errOut, code = cli(t, nil, "gateway", "login", "--server", p.client, "--data", p.data)
	if code != 0 || !strings.HasPrefix(out, "http://"+gw+"/login?t=") || strings.Count(out, "\n") != 1 {
		t.Fatalf("login: exit %d\nstdout %q\nstderr %s", code, out, errOut)
	}

	q := startUp(t, filepath.Join(t.TempDir(), "d2"), "--gateway", gw)
	select {
	case <-q.done:
	case <-time.After(60 * time.Second):
		t.Fatalf("a second up on the same explicit gateway address kept running:\n%s", q.output())
	}
	if !strings.Contains(q.output(), gw) || !strings.Contains(q.output(), "--gateway") {
		t.Fatalf("second up: %v\n%s", q.err, q.output())
	}
}

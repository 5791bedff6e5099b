// Command proxy prints the mesh proxy's figures (issue 14): the overhead
// per request (a small GET straight to the app against the same GET
// through /proxy/, each through its own tunnel; target p50 <= 2 ms on
// loopback) and throughput of a large body up and down (target >= 100 MB/s).
//
// Everything runs in this process: a 2-node swarm (internal/testmesh: real
// embedded nats-servers, a route between them), the app on 127.0.0.1, the
// proxy target beside node 1 as `robonet up --proxy-allow` starts it, and
// the gateway's /proxy/ handler on node 0's feature connection signing as
// an operator, as a gateway session does. So every request crosses a route.
//
// It measures; it asserts nothing.
//
//	go run ./bench/proxy [-n 1000] [-size 1024] [-v]
package main

import (
	"context"
	"crypto/sha256"
	"errors"
	"flag"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"runtime"
	"slices"
	"strconv"
	"text/tabwriter"
	"time"

	"github.com/robonet-mesh/robonet/bench/internal/scope"
	"github.com/robonet-mesh/robonet/gateway"
	"github.com/robonet-mesh/robonet/gateway/tunnel"
	"github.com/robonet-mesh/robonet/internal/testmesh"
	"github.com/robonet-mesh/robonet/mesh"
	"github.com/robonet-mesh/robonet/wire"
)

func main() {
	n := flag.Int("n", 1000, "small requests per path")
	size := flag.Int("size", 1024, "large body in MiB, each way")
	verbose := flag.Bool("v", false, "log the swarm to stderr")
	flag.Parse()
	if err := run(*n, *size, *verbose); err != nil {
		fmt.Fprintln(os.Stderr, "bench/proxy:", err)
		os.Exit(1)
	}
}

func run(n, sizeMiB int, verbose bool) (err error) {
	root, err := os.MkdirTemp("", "bench-proxy")
	if err != nil {
		return err
	}
	defer os.RemoveAll(root)
	s := scope.New(root, "bench/proxy", verbose)
	defer s.Close()
	defer scope.Recover(&err)
	b, err := setup(s)
	if err != nil {
		return err
	}
	load0 := loadavg()
	direct := &http.Client{}
	proxied := &http.Client{}
	d, err := latencies(direct, b.appURL+"/small", n)
	if err != nil {
		return fmt.Errorf("direct: %w", err)
	}
	p, err := latencies(proxied, b.proxyURL+"/small", n)
	if err != nil {
		return fmt.Errorf("proxied: %w", err)
	}
	op, err := openTimes(b, n)
	if err != nil {
		return err
	}
	size := int64(sizeMiB) << 20
	down, err := download(proxied, b.proxyURL, size)
	if err != nil {
		return fmt.Errorf("download: %w", err)
	}
	up, err := upload(proxied, b.proxyURL, size)
	if err != nil {
		return fmt.Errorf("upload: %w", err)
	}
	ddown, err := download(direct, b.appURL, size)
	if err != nil {
		return fmt.Errorf("direct download: %w", err)
	}
	tw := tabwriter.NewWriter(os.Stdout, 2, 4, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintf(os.Stdout, "mesh proxy, 2-node swarm in one process, %d CPUs, load %s → %s\n", runtime.NumCPU(), load0, loadavg())
	fmt.Fprintln(tw, "small GET (ms)\tp50\tp95\tp99\tn\t")
	row := func(name string, v []time.Duration) {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%d\t\n", name, ms(pct(v, 50)), ms(pct(v, 95)), ms(pct(v, 99)), len(v))
	}
	row("direct (keep-alive)", d)
	row("through /proxy/ (a tunnel each)", p)
	row("tunnel open alone", op)
	fmt.Fprintf(tw, "overhead\t%s\t%s\t%s\t\t\n", ms(pct(p, 50)-pct(d, 50)), ms(pct(p, 95)-pct(d, 95)), ms(pct(p, 99)-pct(d, 99)))
	fmt.Fprintln(tw, "\t\t\t\t\t")
	fmt.Fprintf(tw, "%d MiB body\tMB/s\t\t\t\t\n", sizeMiB)
	fmt.Fprintf(tw, "down through /proxy/\t%.0f\t\t\t\t\n", down)
	fmt.Fprintf(tw, "up through /proxy/\t%.0f\t\t\t\t\n", up)
	fmt.Fprintf(tw, "down direct\t%.0f\t\t\t\t\n", ddown)
	return tw.Flush()
}

type bench struct {
	appURL, proxyURL string
	gw               *mesh.Client
	target           *testmesh.Swarm
	port             int
}

func setup(s *scope.Scope) (*bench, error) {
	sw := testmesh.Start(s, 2)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	app := &http.Server{Handler: appHandler()}
	go app.Serve(ln)
	s.Cleanup(func() { app.Close() })
	port := ln.Addr().(*net.TCPAddr).Port

	n1 := sw.Node(1)
	fc, err := n1.FeatureConn("proxy")
	if err != nil {
		return nil, err
	}
	tg, err := tunnel.New(tunnel.Options{Node: n1, Conn: fc, Allow: []int{port}})
	if err != nil {
		return nil, err
	}
	if err := tg.Start(context.Background()); err != nil {
		return nil, err
	}
	s.Cleanup(func() { _ = tg.Shutdown(context.Background()); fc.Close() })

	gwc, err := sw.Node(0).FeatureConn("gateway")
	if err != nil {
		return nil, err
	}
	s.Cleanup(gwc.Close)
	op := sw.User(0, "op", wire.RoleOperator)
	gw := mesh.NewClient(gwc).WithSigner(op.Signer())
	px := gateway.NewProxy(gateway.ProxyOptions{Client: func(*http.Request) (*mesh.Client, string, error) {
		return gw, op.Signer().PublicKey(), nil
	}})
	pln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	ps := &http.Server{Handler: px}
	go ps.Serve(pln)
	s.Cleanup(func() { ps.Close() })
	b := &bench{appURL: "http://" + ln.Addr().String(), gw: gw, target: sw, port: port,
		proxyURL: "http://" + pln.Addr().String() + "/proxy/" + n1.Chevron().String() + "/" + strconv.Itoa(port)}
	// Node 0 learns the target's subscription a moment after Start.
	testmesh.CheckFor(s, 10*time.Second, 20*time.Millisecond, func() error {
		_, err := latencies(&http.Client{}, b.proxyURL+"/small", 1)
		return err
	})
	return b, nil
}

func appHandler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("/small", func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "ok") })
	mux.HandleFunc("/big", func(w http.ResponseWriter, r *http.Request) {
		n, _ := strconv.ParseInt(r.URL.Query().Get("n"), 10, 64)
		w.Header().Set("Content-Length", strconv.FormatInt(n, 10))
		_, _ = io.Copy(w, io.LimitReader(rand.NewChaCha8([32]byte{}), n))
	})
	mux.HandleFunc("/upload", func(w http.ResponseWriter, r *http.Request) {
		h := sha256.New()
		n, _ := io.Copy(h, r.Body)
		fmt.Fprintf(w, "%d", n)
	})
	return mux
}

func latencies(c *http.Client, url string, n int) ([]time.Duration, error) {
	out := make([]time.Duration, 0, n)
	for range n {
		t0 := time.Now()
		resp, err := c.Get(url)
		if err != nil {
			return nil, err
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 200 {
			return nil, fmt.Errorf("GET %s: %s", url, resp.Status)
		}
		out = append(out, time.Since(t0))
	}
	return out, nil
}

// openTimes is how long tunnel.Dial takes (the signed open, the target's
// checks and its dial of the port, the answer), closed right after.
func openTimes(b *bench, n int) ([]time.Duration, error) {
	out := make([]time.Duration, 0, n)
	chev := b.target.Node(1).Chevron()
	for range n {
		t0 := time.Now()
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		c, err := tunnel.Dial(ctx, b.gw, chev, b.port)
		cancel()
		if err != nil {
			return nil, fmt.Errorf("tunnel open: %w", err)
		}
		out = append(out, time.Since(t0))
		c.Close()
	}
	return out, nil
}

func download(c *http.Client, base string, size int64) (float64, error) {
	t0 := time.Now()
	resp, err := c.Get(base + "/big?n=" + strconv.FormatInt(size, 10))
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	got, err := io.Copy(io.Discard, resp.Body)
	if err != nil {
		return 0, err
	}
	if got != size {
		return 0, fmt.Errorf("got %d bytes of %d", got, size)
	}
	return float64(size) / 1e6 / time.Since(t0).Seconds(), nil
}

func upload(c *http.Client, base string, size int64) (float64, error) {
	t0 := time.Now()
	resp, err := c.Post(base+"/upload", "application/octet-stream", io.LimitReader(rand.NewChaCha8([32]byte{}), size))
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if string(b) != strconv.FormatInt(size, 10) {
		return 0, errors.New("upload: the app got " + string(b) + " bytes")
	}
	return float64(size) / 1e6 / time.Since(t0).Seconds(), nil
}

func pct(v []time.Duration, p int) time.Duration {
	s := slices.Clone(v)
	slices.Sort(s)
	if len(s) == 0 {
		return 0
	}
	return s[min(len(s)-1, len(s)*p/100)]
}

func ms(d time.Duration) string { return fmt.Sprintf("%.2f", float64(d.Microseconds())/1000) }

func loadavg() string {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil || len(b) < 14 {
		return "?"
	}
	return string(b[:14])
}

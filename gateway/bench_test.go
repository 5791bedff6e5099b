package gateway_test

import (
	"io"
	"net/http"
	"sort"
	"strings"
	"testing"
	"time"
)

// BenchmarkAPI measures a REST call through the gateway on loopback, with a
// bearer token, against a one-node swarm: GET /api/nodes (one signed query)
// and POST /api/run ping (a registry read and one command). It reports p50
// and p99 in ms.
func BenchmarkAPI(b *testing.B) {
	for _, c := range []struct{ name, method, path, body string }{
		{"nodes", "GET", "/api/nodes", ""},
		{"run-ping", "POST", "/api/run", `{"selector":"all","verb":"ping"}`},
	} {
		b.Run(c.name, func(b *testing.B) {
			f := newFixture(b, 1)
			tok := f.token(f.admin, "")
			hc := &http.Client{Timeout: 10 * time.Second}
			var ms []float64
			for b.Loop() {
				var rd io.Reader
				if c.body != "" {
					rd = strings.NewReader(c.body)
				}
				req, _ := http.NewRequest(c.method, f.g.URL()+c.path, rd)
				req.Header.Set("Authorization", "Bearer "+tok)
				start := time.Now()
				resp, err := hc.Do(req)
				if err != nil {
					b.Fatal(err)
				}
				_, _ = io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				if resp.StatusCode != 200 {
					b.Fatalf("%s %s: %d", c.method, c.path, resp.StatusCode)
				}
				ms = append(ms, float64(time.Since(start).Microseconds())/1000)
			}
			sort.Float64s(ms)
			b.ReportMetric(ms[len(ms)/2], "p50-ms")
			b.ReportMetric(ms[len(ms)*99/100], "p99-ms")
		})
	}
}

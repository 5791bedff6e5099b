package gateway_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/prometheus/client_golang/prometheus/testutil/promlint"
	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"github.com/robonet-mesh/robonet/gateway"
	"github.com/robonet-mesh/robonet/internal/testmesh"
	"github.com/robonet-mesh/robonet/mesh"
	"github.com/robonet-mesh/robonet/node"
	"github.com/robonet-mesh/robonet/wire"
)

// scrape is one /metrics answer: its text and its parsed families.
type scrape struct {
	body []byte
	fams map[string]*dto.MetricFamily
}

func scrapeOnce(t testing.TB, h http.Handler) scrape {
	t.Helper()
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/metrics", nil))
	if rec.Code != http.StatusOK {
		t.Fatalf("scrape: HTTP %d: %s", rec.Code, rec.Body)
	}
	if ct := rec.Header().Get("Content-Type"); !strings.HasPrefix(ct, "text/plain") {
		t.Fatalf("scrape: content type %q, want the text format", ct)
	}
	body := rec.Body.Bytes()
	p := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := p.TextToMetricFamilies(bytes.NewReader(body))
	if err != nil {
		t.Fatalf("scrape does not parse: %v", err)
	}
	return scrape{body: body, fams: fams}
}

// value is the sample of name whose labels include want (a histogram's
// sample count for a histogram); ok is false when there is none.
func (s scrape) value(name string, want ...string) (float64, bool) {
	f := s.fams[name]
	if f == nil {
		return 0, false
	}
next:
	for _, m := range f.Metric {
		have := map[string]string{}
		for _, l := range m.Label {
			have[l.GetName()] = l.GetValue()
		}
		for i := 0; i+1 < len(want); i += 2 {
			if have[want[i]] != want[i+1] {
				continue next
			}
		}
		switch {
		case m.Counter != nil:
			return m.Counter.GetValue(), true
		case m.Gauge != nil:
			return m.Gauge.GetValue(), true
		case m.Histogram != nil:
			return float64(m.Histogram.GetSampleCount()), true
		}
	}
	return 0, false
}

func (s scrape) must(t testing.TB, name string, labels ...string) float64 {
	t.Helper()
	v, ok := s.value(name, labels...)
	if !ok {
		t.Fatalf("no %s%v in the scrape", name, labels)
	}
	return v
}

func (s scrape) series(name string) int {
	if f := s.fams[name]; f != nil {
		return len(f.Metric)
	}
	return 0
}

// sendCommand sends one command for verb to chev signed by signer (nil: not
// signed) over nc and returns the reply's result.
func sendCommand(t *testing.T, nc *nats.Conn, signer *mesh.Signer, chev, verb string, args string) wire.Result {
	t.Helper()
	body, _ := json.Marshal(wire.Request{Verb: verb, Args: json.RawMessage(args), ID: verb})
	m := &nats.Msg{Subject: fmt.Sprintf("rn.%s.cmd.%s", chev, verb), Data: body}
	if signer != nil {
		if err := signer.SignMsg(m); err != nil {
			t.Fatal(err)
		}
	}
	reply, err := nc.RequestMsg(m, 5*time.Second)
	if err != nil {
		t.Fatalf("%s: %v", verb, err)
	}
	var res wire.Result
	if err := json.Unmarshal(reply.Data, &res); err != nil {
		t.Fatal(err)
	}
	return res
}

// The counters move as the README says: on a two-node swarm, a ping to
// every node counts one ok ping and its latency on each; an observer's
// exec counts one denied exec; an unsigned ping one denied ping and one
// unsigned HCTH failure; twenty made-up verbs count twenty errors under
// "other" and add no series. Both members are alive cores, exactly one
// holds the lease, JetStream is healthy, and the build info names the
// version.
func TestMetricsCountCommandsHCTHLeaseAndNodes(t *testing.T) {
	s := testmesh.Start(t, 2)
	s.WaitAlive(20 * time.Second)
	s.WaitLeader(20 * time.Second)
	nd := s.Node(0)
	chev := nd.Chevron().String()
	h0, h1 := gateway.NewMetrics(nd).Handler(), gateway.NewMetrics(s.Node(1)).Handler()
	admin := s.Client(0)
	obs := s.User(0, "olga", wire.RoleObserver)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()

	before := scrapeOnce(t, h0)
	res, err := admin.Gather(ctx, mesh.GatherRequest{Selector: "all", Verb: "ping", Timeout: 5 * time.Second}, nil)
	if err != nil || len(res.Results) != 2 {
		t.Fatalf("ping: %+v %v", res, err)
	}
	if r := sendCommand(t, admin.Conn(), obs.Signer(), chev, "exec", `{"argv":["true"]}`); r.Status != wire.StatusDenied {
		t.Fatalf("observer exec: %+v", r)
	}
	if r := sendCommand(t, admin.Conn(), nil, chev, "ping", `{}`); r.Status != wire.StatusDenied {
		t.Fatalf("unsigned ping: %+v", r)
	}
	for i := range 20 {
		if r := sendCommand(t, admin.Conn(), admin.Signer(), chev, fmt.Sprintf("made-up-%d", i), `{}`); r.Status != wire.StatusError {
			t.Fatalf("made-up verb: %+v", r)
		}
	}
	after := scrapeOnce(t, h0)

	delta := func(name string, labels ...string) float64 {
		return after.must(t, name, labels...) - before.must(t, name, labels...)
	}
	for _, c := range []struct {
		name   string
		labels []string
		want   float64
	}{
		{"robonet_commands_total", []string{"verb", "ping", "status", "ok"}, 1},
		{"robonet_commands_total", []string{"verb", "exec", "status", "denied"}, 1},
		{"robonet_commands_total", []string{"verb", "ping", "status", "denied"}, 1},
		{"robonet_commands_total", []string{"verb", "other", "status", "error"}, 20},
		{"robonet_commands_total", []string{"verb", "exec", "status", "ok"}, 0},
		{"robonet_command_duration_seconds", []string{"verb", "ping"}, 1},
		{"robonet_command_duration_seconds", []string{"verb", "exec"}, 0},
		{"robonet_command_duration_seconds", []string{"verb", "other"}, 20},
		{"robonet_hcth_failures_total", []string{"reason", "unsigned"}, 1},
		{"robonet_hcth_failures_total", []string{"reason", "bad_signature"}, 0},
	} {
		if got := delta(c.name, c.labels...); got != c.want {
			t.Errorf("%s%v rose by %v, want %v", c.name, c.labels, got, c.want)
		}
	}
	if d := delta("robonet_hcth_verifications_total"); d < 23 {
		t.Errorf("HCTH verifications rose by %v, want at least the 23 signed or unsigned commands", d)
	}
	if b, a := before.series("robonet_commands_total"), after.series("robonet_commands_total"); a != b || a == 0 {
		t.Errorf("commands_total series %d before, %d after made-up verbs: labels must stay bounded", b, a)
	}
	if strings.Contains(string(after.body), "made-up") {
		t.Error("a caller's verb became a label value")
	}

	s1 := scrapeOnce(t, h1)
	holders := 0.0
	for i, sc := range []scrape{after, s1} {
		if v := sc.must(t, "robonet_nodes", "state", "alive", "role", "core"); v != 2 {
			t.Errorf("node %d: robonet_nodes{alive,core} = %v, want 2", i, v)
		}
		if v := sc.must(t, "robonet_nodes", "state", "offline", "role", "edge"); v != 0 {
			t.Errorf("node %d: robonet_nodes{offline,edge} = %v, want 0", i, v)
		}
		if v := sc.must(t, "robonet_lease_changes_total"); v < 1 {
			t.Errorf("node %d saw %v lease terms, want at least 1", i, v)
		}
		if v := sc.must(t, "robonet_jetstream_healthy"); v != 1 {
			t.Errorf("node %d: jetstream_healthy %v", i, v)
		}
		if v := sc.must(t, "robonet_build_info", "version", node.Version, "goversion", runtime.Version()); v != 1 {
			t.Errorf("node %d: build_info %v", i, v)
		}
		for _, lv := range node.SentinelLevels() {
			sc.must(t, "robonet_sentinel_alerts_total", "level", lv)
		}
		sc.must(t, "robonet_jetstream_replicas")
		sc.must(t, "robonet_jetstream_buckets_behind")
		sc.must(t, "go_goroutines")
		holders += sc.must(t, "robonet_lease_holder")
	}
	if holders != 1 {
		t.Errorf("%v lease holders over the two scrapes, want 1", holders)
	}
}

// Every metric of /metrics passes promlint, the extra collectors other
// parts of the gateway register included (a proxy byte counter and a
// media session gauge, named as they will be).
func TestMetricsPassPromlint(t *testing.T) {
	s := testmesh.Start(t, 1)
	m := gateway.NewMetrics(s.Node(0))
	proxy := prometheus.NewCounterVec(prometheus.CounterOpts{Name: "robonet_proxy_bytes_total",
		Help: "Bytes through the mesh proxy, by direction."}, []string{"direction"})
	proxy.WithLabelValues("in").Add(1024)
	media := prometheus.NewGauge(prometheus.GaugeOpts{Name: "robonet_media_sessions", Help: "Media sessions open."})
	m.Registry().MustRegister(proxy, media)
	sc := scrapeOnce(t, m.Handler())
	problems, err := promlint.New(bytes.NewReader(sc.body)).Lint()
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range problems {
		t.Errorf("promlint: %s: %s", p.Metric, p.Text)
	}
	if problems, err := testutil.GatherAndLint(m.Registry()); err != nil || len(problems) > 0 {
		t.Errorf("promlint on the registry: %v %v", problems, err)
	}
	if v := sc.must(t, "robonet_proxy_bytes_total", "direction", "in"); v != 1024 {
		t.Errorf("an extra collector's counter reads %v, want 1024", v)
	}
	for name := range sc.fams {
		if !strings.HasPrefix(name, "robonet_") && !strings.HasPrefix(name, "go_") && !strings.HasPrefix(name, "process_") &&
			!strings.HasPrefix(name, "promhttp_") {
			t.Errorf("metric %s outside robonet_, go_, process_", name)
		}
	}
	t.Logf("%d metric families, %d bytes", len(sc.fams), len(sc.body))
}

// BenchmarkMetricsScrape prints what one scrape of a single node costs
// (ns/op, allocations, bytes/scrape): the collector reads counters and
// the node's member view, no network.
func BenchmarkMetricsScrape(b *testing.B) {
	s := testmesh.Start(b, 1)
	h := gateway.NewMetrics(s.Node(0)).Handler()
	req := httptest.NewRequest(http.MethodGet, "/metrics", nil)
	size := 0
	b.ReportAllocs()
	for b.Loop() {
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		size = rec.Body.Len()
	}
	b.ReportMetric(float64(size), "bytes/scrape")
}

// An edge's /metrics works from the core's member list: both the edge and
// a core count two alive cores and one alive edge, and the edge reports
// JetStream healthy while its core link is up.
func TestMetricsOnAnEdgeCountCoresAndEdges(t *testing.T) {
	s := testmesh.StartCore(t, 2)
	edge := s.AddEdge()
	he, hc := gateway.NewMetrics(edge).Handler(), gateway.NewMetrics(s.Node(0)).Handler()
	testmesh.CheckFor(t, 20*time.Second, 100*time.Millisecond, func() error {
		for name, h := range map[string]http.Handler{"edge": he, "core": hc} {
			sc := scrapeOnce(t, h)
			cores, _ := sc.value("robonet_nodes", "state", "alive", "role", "core")
			edges, _ := sc.value("robonet_nodes", "state", "alive", "role", "edge")
			if cores != 2 || edges != 1 {
				return fmt.Errorf("%s sees %v alive cores and %v alive edges, want 2 and 1", name, cores, edges)
			}
			if v, _ := sc.value("robonet_jetstream_healthy"); v != 1 {
				return fmt.Errorf("%s: jetstream_healthy %v", name, v)
			}
		}
		return nil
	})
	if v := scrapeOnce(t, he).must(t, "robonet_lease_holder"); v != 0 {
		t.Errorf("the edge holds the lease: %v", v)
	}
}

// A scrape racing the node's shutdown (the gateway stops after its node
// in `up`) still answers: lease holder 0, no panic.
func TestMetricsScrapeAfterTheNodeStopped(t *testing.T) {
	s := testmesh.Start(t, 1)
	nd := s.Node(0)
	h := gateway.NewMetrics(nd).Handler()
	s.WaitLeader(10 * time.Second)
	if v := scrapeOnce(t, h).must(t, "robonet_lease_holder"); v != 1 {
		t.Fatalf("a single node does not hold its lease: %v", v)
	}
	s.Stop(0)
	sc := scrapeOnce(t, h)
	if v := sc.must(t, "robonet_lease_holder"); v != 0 {
		t.Errorf("a stopped node holds the lease: %v", v)
	}
	sc.must(t, "robonet_commands_total", "verb", "ping", "status", "ok")
}

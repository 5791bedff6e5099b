package gateway

import (
	"net/http"
	"runtime"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/robonet-mesh/robonet/node"
)

// Scrape limits of Metrics.Handler: a scrape reads counters and the
// node's member view, so a few at once is plenty; more wait or are
// refused with 503 rather than pile up.
const (
	metricsMaxInFlight = 4
	metricsTimeout     = 10 * time.Second
)

// Metrics is the gateway's Prometheus endpoint (/metrics): the node's
// counters read at every scrape (node.Stats), the build info, and the Go
// runtime and process collectors, in one registry that other parts of the
// gateway add their own collectors to (proxy bytes, media sessions).
// It does no authentication: the gateway puts its bearer check in front
// unless --metrics-open.
type Metrics struct {
	reg *prometheus.Registry
}

// NewMetrics builds the registry for node n; nothing is read from n until
// a scrape.
func NewMetrics(n *node.Node) *Metrics {
	reg := prometheus.NewRegistry()
	reg.MustRegister(
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
		newNodeCollector(n),
	)
	return &Metrics{reg: reg}
}

// Registry is where other collectors register (MustRegister or
// Register): proxy bytes, media sessions. Their names start with
// robonet_ and follow the same conventions; the metrics test lints them.
func (m *Metrics) Registry() *prometheus.Registry { return m.reg }

// AddProxy counts p's bytes as robonet_proxy_bytes_total{direction}: "up"
// to the targets (requests), "down" from them (responses), HTTP headers
// included.
func (m *Metrics) AddProxy(p *Proxy) {
	for _, dir := range []string{"up", "down"} {
		m.reg.MustRegister(prometheus.NewCounterFunc(prometheus.CounterOpts{
			Name:        "robonet_proxy_bytes_total",
			Help:        "Bytes carried by the gateway's mesh proxy, by direction: up to the targets, down from them.",
			ConstLabels: prometheus.Labels{"direction": dir},
		}, func() float64 {
			up, down := p.Bytes()
			if dir == "up" {
				return float64(up)
			}
			return float64(down)
		}))
	}
}

// AddMedia adds the media gauges: robonet_media_sessions{path} (the WHEP
// sessions this node serves: relay ones its gateway terminates, direct
// ones its media service does) and robonet_media_encoders_running (this
// node's streams whose ffmpeg is live).
func (m *Metrics) AddMedia(md *Media) {
	for _, path := range []string{PathDirect, PathRelay} {
		m.reg.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name:        "robonet_media_sessions",
			Help:        "WebRTC sessions this node serves to viewers, by path: direct (its own streams, from its media port) or relay (terminated by its gateway).",
			ConstLabels: prometheus.Labels{"path": path},
		}, func() float64 {
			direct, relay := md.Sessions()
			if path == PathDirect {
				return float64(direct)
			}
			return float64(relay)
		}))
	}
	m.reg.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "robonet_media_encoders_running",
		Help: "This node's streams whose encoder (ffmpeg) is running.",
	}, func() float64 { return float64(md.EncodersRunning()) }))
}

// Handler serves the registry in the Prometheus text format (or what the
// scraper negotiates). A collector's error is reported with the metrics
// that did gather; a scrape over metricsTimeout answers 503.
func (m *Metrics) Handler() http.Handler {
	return promhttp.HandlerFor(m.reg, promhttp.HandlerOpts{
		ErrorHandling:       promhttp.ContinueOnError,
		MaxRequestsInFlight: metricsMaxInFlight,
		Timeout:             metricsTimeout,
	})
}

// nodeCollector turns one node.Stats snapshot per scrape into constant
// metrics. Its descriptors are fixed; its label values come from the
// fixed sets node.Stats documents.
type nodeCollector struct {
	n *node.Node

	buildInfo, nodes, commands, latency        *prometheus.Desc
	hcthChecks, hcthFailures, hcthBreaks       *prometheus.Desc
	alerts, leaseChanges, leaseHolder          *prometheus.Desc
	jsHealthy, jsReplicas, jsBehind, badRecord *prometheus.Desc
}

func newNodeCollector(n *node.Node) *nodeCollector {
	d := func(name, help string, labels ...string) *prometheus.Desc {
		return prometheus.NewDesc("robonet_"+name, help, labels, nil)
	}
	return &nodeCollector{
		n:         n,
		buildInfo: d("build_info", "Always 1: the robonet version and the Go version it was built with.", "version", "goversion"),
		nodes:     d("nodes", "Members of the swarm in this node's live view (itself included), by state and role.", "state", "role"),
		commands: d("commands_total", "Commands this node answered or dropped, by verb (catalogue verbs, else other) and status "+
			"(ok, error, denied, timeout, busy, dropped).", "verb", "status"),
		latency: d("command_duration_seconds", "How long the commands this node ran took, from admission to reply, by verb.", "verb"),
		hcthChecks: d("hcth_verifications_total", "Signed messages this node checked with HCTH (commands, queries, heartbeats, events), "+
			"refusals before the chain check included."),
		hcthFailures: d("hcth_failures_total", "HCTH checks that refused a message, by reason.", "reason"),
		hcthBreaks:   d("hcth_chain_breaks_total", "Chain breaks this node saw (a fork, a bad signature under a node's own chevron, a cloned key): the key is quarantined."),
		alerts:       d("sentinel_alerts_total", "Alerts this node's Sentinel raised, by the peer's level.", "level"),
		leaseChanges: d("lease_changes_total", "New swarm-leader lease terms this node saw (the fencing token rose)."),
		leaseHolder:  d("lease_holder", "1 while this node holds the swarm-leader lease."),
		jsHealthy:    d("jetstream_healthy", "1 while this node's JetStream is current (on an edge: while its core link is up)."),
		jsReplicas:   d("jetstream_replicas", "The lowest replica count over the swarm's buckets (0: not read yet)."),
		jsBehind:     d("jetstream_buckets_behind", "Buckets replicated on fewer servers than the swarm wants."),
		badRecord:    d("trust_bad_records_total", "Identity records (users, revocations, tokens) that failed their check."),
	}
}

// Describe sends every descriptor the collector may emit.
func (c *nodeCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{c.buildInfo, c.nodes, c.commands, c.latency, c.hcthChecks, c.hcthFailures,
		c.hcthBreaks, c.alerts, c.leaseChanges, c.leaseHolder, c.jsHealthy, c.jsReplicas, c.jsBehind, c.badRecord} {
		ch <- d
	}
}

// Collect reads one node.Stats snapshot.
func (c *nodeCollector) Collect(ch chan<- prometheus.Metric) {
	st := c.n.Stats()
	gauge := func(d *prometheus.Desc, v float64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, v, labels...)
	}
	counter := func(d *prometheus.Desc, v uint64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.CounterValue, float64(v), labels...)
	}
	gauge(c.buildInfo, 1, node.Version, runtime.Version())
	for _, nc := range st.Nodes {
		gauge(c.nodes, float64(nc.Count), nc.State, nc.Role)
	}
	for _, cc := range st.Commands {
		counter(c.commands, cc.Count, cc.Verb, cc.Status)
	}
	for _, h := range st.Latency {
		buckets := make(map[float64]uint64, len(h.Bounds))
		for i, b := range h.Bounds {
			buckets[b.Seconds()] = h.Counts[i]
		}
		ch <- prometheus.MustNewConstHistogram(c.latency, h.Count, h.Sum.Seconds(), buckets, h.Verb)
	}
	counter(c.hcthChecks, st.HCTH.Verified)
	for _, f := range st.HCTH.Failures {
		counter(c.hcthFailures, f.Count, f.Reason)
	}
	counter(c.hcthBreaks, st.Trust.Breaks)
	counter(c.badRecord, st.Trust.BadRecords)
	for _, a := range st.Alerts {
		counter(c.alerts, a.Count, a.Level)
	}
	counter(c.leaseChanges, st.LeaseChanges)
	gauge(c.leaseHolder, bit(st.LeaseHolder))
	gauge(c.jsHealthy, bit(st.JetStreamOK))
	gauge(c.jsReplicas, float64(st.Replicas))
	gauge(c.jsBehind, float64(len(st.Behind)))
}

func bit(b bool) float64 {
	if b {
		return 1
	}
	return 0
}

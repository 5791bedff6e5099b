package main

import (
	"fmt"
	"io"
	"slices"
	"strings"
	"time"

	"github.com/robonet-mesh/robonet/bench/internal/proc"
)

// report is the whole output; -json prints it as is. Times are in ms, CPU
// in ms of CPU per s of wall time.
type report struct {
	Version   string         `json:"version"`
	Go        string         `json:"go"`
	CPUs      int            `json:"cpus"`
	Netns     bool           `json:"netns"` // ran in a loopback-only network namespace
	Started   time.Time      `json:"started"`
	Elapsed   string         `json:"elapsed"`
	LoadStart [3]float64     `json:"load_start"`
	LoadEnd   [3]float64     `json:"load_end"`
	Runs      int            `json:"runs"`
	Viewers   int            `json:"viewers"`
	Rounds    int            `json:"rounds"`
	Window    string         `json:"window"`
	Linger    string         `json:"linger"`
	Chevron   string         `json:"chevron"` // camera node B's
	Paths     []*pathFigures `json:"paths"`
	Notes     []string       `json:"notes,omitempty"`
}

// pathFigures are one path's figures.
type pathFigures struct {
	Path string `json:"path"`
	// Time to first frame per run, from the WHEP POST's start and from
	// navigation start; Answer is the POST's own duration.
	ColdPost   []float64 `json:"cold_post_ms"`
	ColdNav    []float64 `json:"cold_nav_ms"`
	ColdAnswer []float64 `json:"cold_answer_ms"`
	// ColdConnected, WarmConnected: the POST's start to the peer
	// connection's "connected" (ICE and DTLS done).
	ColdConnected []float64   `json:"cold_connected_ms"`
	WarmConnected []float64   `json:"warm_connected_ms"`
	WarmPost      []float64   `json:"warm_post_ms"`
	WarmNav       []float64   `json:"warm_nav_ms"`
	WarmAnswer    []float64   `json:"warm_answer_ms"`
	Latency1      *latencyFig `json:"latency_1"`
	Latency       *latencyFig `json:"latency"`
	CPU1          *cpuFig     `json:"cpu_1"`
	CPU           *cpuFig     `json:"cpu"`
}

// latencyFig is glass-to-glass over one window, every viewer's frames.
type latencyFig struct {
	Viewers    int       `json:"viewers"`
	Samples    int       `json:"samples"`
	Unreadable int       `json:"unreadable"`
	P50        float64   `json:"p50_ms"`
	P95        float64   `json:"p95_ms"`
	Max        float64   `json:"max_ms"`
	FPS        []float64 `json:"fps"`     // frames presented per second, per viewer
	Decoded    []float64 `json:"decoded"` // frames decoded per second, per viewer
	RTP        rtpStats  `json:"rtp"`     // every viewer's counters, summed
	JitterMS   float64   `json:"jitter_buffer_ms"`
	Rounds     int       `json:"rounds"` // windows pooled

	all []float64 // every sample
}

// merge pools o's window into l's (nil l: o).
func (l *latencyFig) merge(o *latencyFig) *latencyFig {
	if l == nil {
		return o
	}
	l.all = append(l.all, o.all...)
	l.Samples += o.Samples
	l.Unreadable += o.Unreadable
	l.FPS = append(l.FPS, o.FPS...)
	l.Decoded = append(l.Decoded, o.Decoded...)
	l.RTP.add(o.RTP)
	l.Rounds += o.Rounds
	l.P50, l.P95, l.Max = proc.Percentile(l.all, 0.5), proc.Percentile(l.all, 0.95), proc.Percentile(l.all, 1)
	if l.RTP.JitterBufferEmittedCount > 0 {
		l.JitterMS = l.RTP.JitterBufferDelay * 1000 / l.RTP.JitterBufferEmittedCount
	}
	return l
}

// cpuFig is CPU over one window, in ms/s.
type cpuFig struct {
	FFmpeg  float64 `json:"ffmpeg"`
	NodeA   float64 `json:"node_a"`
	NodeB   float64 `json:"node_b"`
	Browser float64 `json:"chromium"`
	// MachineBusy is the share of all CPUs' time not idle over the window
	// (/proc/stat), whoever used it; Load the load average at its end.
	MachineBusy float64    `json:"machine_busy"`
	Load        [3]float64 `json:"load"` // the highest of the windows pooled
	Rounds      int        `json:"rounds"`
}

// merge averages o's window into c's (nil c: o).
func (c *cpuFig) merge(o *cpuFig) *cpuFig {
	if c == nil {
		return o
	}
	n := float64(c.Rounds)
	avg := func(a, b float64) float64 { return (a*n + b) / (n + 1) }
	c.FFmpeg, c.NodeA, c.NodeB, c.Browser = avg(c.FFmpeg, o.FFmpeg), avg(c.NodeA, o.NodeA), avg(c.NodeB, o.NodeB), avg(c.Browser, o.Browser)
	c.MachineBusy = avg(c.MachineBusy, o.MachineBusy)
	if o.Load[0] > c.Load[0] {
		c.Load = o.Load
	}
	c.Rounds++
	return c
}

func (r *report) print(w io.Writer) {
	ns := "no"
	if r.Netns {
		ns = "yes (unshare -n, lo only)"
	}
	fmt.Fprintf(w, "media figures: %s, %s, %d CPUs (nproc), load %s at the start, %s at the end, %s\n",
		orDash(r.Version), r.Go, r.CPUs, proc.FormatLoad(r.LoadStart), proc.FormatLoad(r.LoadEnd), r.Elapsed)
	fmt.Fprintf(w, "camera node B (chevron %s): --media %s, --media-linger %s; gateway on node A; loopback-only netns: %s\n",
		r.Chevron, streamsFlag, r.Linger, ns)
	fmt.Fprintf(w, "first frame: %d runs per path (test stream); latency and CPU: clock stream, %s windows with 1 and %d viewers (one tab each)",
		r.Runs, r.Window, r.Viewers)
	if r.Rounds > 1 {
		fmt.Fprintf(w, ", %d rounds (direct then relay) pooled", r.Rounds)
	}
	fmt.Fprint(w, "\n\n")
	var d, rl *pathFigures
	for _, p := range r.Paths {
		switch p.Path {
		case pathDirect:
			d = p
		case pathRelay:
			rl = p
		}
	}
	if d == nil {
		d = &pathFigures{Path: pathDirect}
	}
	if rl == nil {
		rl = &pathFigures{Path: pathRelay}
	}
	fmt.Fprintln(w, "| figure | direct | relay | target |")
	fmt.Fprintln(w, "|---|---|---|---|")
	row := func(name string, f func(*pathFigures) string, target string) {
		fmt.Fprintf(w, "| %s | %s | %s | %s |\n", name, f(d), f(rl), target)
	}
	pp := func(v []float64) string {
		if len(v) == 0 {
			return "–"
		}
		return fmt.Sprintf("%.0f / %.0f ms (n=%d)", proc.Percentile(v, 0.5), proc.Percentile(v, 0.95), len(v))
	}
	met := func(get func(*pathFigures) []float64, limit float64) string {
		var s []string
		for _, p := range []*pathFigures{d, rl} {
			v := get(p)
			switch {
			case len(v) == 0:
				s = append(s, p.Path+" –")
			case proc.Percentile(v, 0.5) <= limit:
				s = append(s, p.Path+" met")
			default:
				s = append(s, p.Path+" **missed**")
			}
		}
		return strings.Join(s, ", ")
	}
	row("TTFF cold, POST → first frame, p50 / p95", func(p *pathFigures) string { return pp(p.ColdPost) },
		"p50 ≤ 600 ms: "+met(func(p *pathFigures) []float64 { return p.ColdPost }, 600))
	row("TTFF cold, navigation → first frame, p50 / p95", func(p *pathFigures) string { return pp(p.ColdNav) }, "")
	phases := func(ans, conn []float64) string {
		if len(ans) == 0 {
			return "–"
		}
		return fmt.Sprintf("%.0f / %.0f ms", proc.Percentile(ans, 0.5), proc.Percentile(conn, 0.5))
	}
	row("cold: POST answered / connected (ICE+DTLS), p50 after the POST", func(p *pathFigures) string { return phases(p.ColdAnswer, p.ColdConnected) }, "")
	row("TTFF warm, POST → first frame, p50 / p95", func(p *pathFigures) string { return pp(p.WarmPost) },
		"p50 ≤ 700 ms: "+met(func(p *pathFigures) []float64 { return p.WarmPost }, 700))
	row("TTFF warm, navigation → first frame, p50 / p95", func(p *pathFigures) string { return pp(p.WarmNav) }, "")
	row("warm: POST answered / connected (ICE+DTLS), p50 after the POST", func(p *pathFigures) string { return phases(p.WarmAnswer, p.WarmConnected) }, "")
	lat := func(l *latencyFig) string {
		if l == nil {
			return "–"
		}
		return fmt.Sprintf("%.0f / %.0f / %.0f ms", l.P50, l.P95, l.Max)
	}
	latMet := func() string {
		var s []string
		for _, p := range []*pathFigures{d, rl} {
			switch l := p.Latency; {
			case l == nil:
				s = append(s, p.Path+" –")
			case l.P50 <= 80 && l.P95 <= 150:
				s = append(s, p.Path+" met")
			default:
				s = append(s, p.Path+" **missed**")
			}
		}
		return strings.Join(s, ", ")
	}
	row(fmt.Sprintf("glass-to-glass, %d viewers, p50 / p95 / max", r.Viewers), func(p *pathFigures) string { return lat(p.Latency) },
		"p50 ≤ 80 ms, p95 ≤ 150 ms: "+latMet())
	frames := func(l *latencyFig) string {
		if l == nil {
			return "–"
		}
		return fmt.Sprintf("%d read, %d unreadable; %s fps", l.Samples, l.Unreadable, fpsRange(l.FPS))
	}
	rtp := func(l *latencyFig) string {
		if l == nil {
			return "–"
		}
		return fmt.Sprintf("lost %.0f of %.0f packets, %.0f NACKs, %.0f PLIs, %.0f freezes, jitter buffer %.0f ms", l.RTP.PacketsLost,
			l.RTP.PacketsReceived+l.RTP.PacketsLost, l.RTP.NACKs, l.RTP.PLIs, l.RTP.Freezes, l.JitterMS)
	}
	row(fmt.Sprintf("… frames read (%d viewers), fps per viewer", r.Viewers), func(p *pathFigures) string { return frames(p.Latency) }, "")
	row(fmt.Sprintf("… browser's RTP counters (%d viewers, summed)", r.Viewers), func(p *pathFigures) string { return rtp(p.Latency) }, "")
	row("glass-to-glass, 1 viewer, p50 / p95 / max", func(p *pathFigures) string { return lat(p.Latency1) }, "")
	over := "–"
	overMet := ""
	if d.Latency != nil && rl.Latency != nil {
		o := rl.Latency.P95 - d.Latency.P95
		over = fmt.Sprintf("%+.0f ms", o)
		overMet = "met"
		if o > 5 {
			overMet = "**missed**"
		}
	}
	fmt.Fprintf(w, "| relay overhead: relay p95 − direct p95 (%d viewers) | | %s | ≤ 5 ms: %s |\n", r.Viewers, over, overMet)
	if d.Latency1 != nil && rl.Latency1 != nil {
		fmt.Fprintf(w, "| relay overhead: relay p95 − direct p95 (1 viewer) | | %+.0f ms | |\n", rl.Latency1.P95-d.Latency1.P95)
	}
	cpu := func(get func(*cpuFig) float64) func(*pathFigures) string {
		return func(p *pathFigures) string {
			if p.CPU1 == nil || p.CPU == nil {
				return "–"
			}
			return fmt.Sprintf("%.0f / %.0f ms/s", get(p.CPU1), get(p.CPU))
		}
	}
	row(fmt.Sprintf("ffmpeg CPU, clock 1280x720@30, 1 / %d viewers", r.Viewers), cpu(func(c *cpuFig) float64 { return c.FFmpeg }), "")
	row(fmt.Sprintf("node B (camera) CPU, 1 / %d viewers", r.Viewers), cpu(func(c *cpuFig) float64 { return c.NodeB }), "")
	row(fmt.Sprintf("node A (gateway) CPU, 1 / %d viewers", r.Viewers), cpu(func(c *cpuFig) float64 { return c.NodeA }), "")
	row(fmt.Sprintf("nodes A+B per added viewer: (%d − 1 viewers) / %d", r.Viewers, r.Viewers-1), func(p *pathFigures) string {
		if p.CPU1 == nil || p.CPU == nil {
			return "–"
		}
		per := func(c *cpuFig) float64 { return c.NodeA + c.NodeB }
		return fmt.Sprintf("%.1f ms/s (A %.1f, B %.1f)", (per(p.CPU)-per(p.CPU1))/float64(r.Viewers-1),
			(p.CPU.NodeA-p.CPU1.NodeA)/float64(r.Viewers-1), (p.CPU.NodeB-p.CPU1.NodeB)/float64(r.Viewers-1))
	}, "")
	row(fmt.Sprintf("chromium CPU (all its processes), 1 / %d viewers", r.Viewers), cpu(func(c *cpuFig) float64 { return c.Browser }), "")
	row(fmt.Sprintf("machine busy (all %d CPUs, anyone), 1 / %d viewers", r.CPUs, r.Viewers), func(p *pathFigures) string {
		if p.CPU1 == nil || p.CPU == nil {
			return "–"
		}
		return fmt.Sprintf("%.0f%% / %.0f%% (load %.1f / %.1f)", p.CPU1.MachineBusy*100, p.CPU.MachineBusy*100, p.CPU1.Load[0], p.CPU.Load[0])
	}, "")
	if len(r.Notes) > 0 {
		fmt.Fprintln(w)
		for _, n := range r.Notes {
			fmt.Fprintln(w, "note:", n)
		}
	}
}

func fpsRange(v []float64) string {
	if len(v) == 0 {
		return "–"
	}
	lo, hi := slices.Min(v), slices.Max(v)
	if fmt.Sprintf("%.1f", lo) == fmt.Sprintf("%.1f", hi) {
		return fmt.Sprintf("%.1f", lo)
	}
	return fmt.Sprintf("%.1f–%.1f", lo, hi)
}

func orDash(s string) string {
	if s == "" {
		return "robonet (version unknown)"
	}
	return s
}

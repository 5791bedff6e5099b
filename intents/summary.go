package intents

import (
	"cmp"
	"encoding/json"
	"fmt"
	"math"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/robonet-mesh/robonet/command"
	"github.com/robonet-mesh/robonet/mesh"
	"github.com/robonet-mesh/robonet/wire"
)

// Verdict is what one node of a step came to, in a word and a line.
type Verdict struct {
	Chevron string `json:"chevron"`
	Name    string `json:"name"`
	// Verdict is a short word: for a node that answered ok, per verb: scan
	// "clean" or "findings", exec "exit 0", "exit 3", "signal KILL" or
	// "timed out", anything else "ok"; for any other node its mesh status
	// (error, timeout, offline, denied).
	Verdict string `json:"verdict"`
	// Detail is one line: scan's findings ("2 findings: warning disk: …;
	// …"), ping's round trip, the gauge's headline values, exec's first
	// line of output, status's state ("alive, up 3h12m, leader"), the
	// first line of other verbs' text, or the error.
	Detail string `json:"detail,omitempty"`
	Status string `json:"status"` // the node's mesh status
	Ms     int64  `json:"ms"`     // round trip seen by the client, rounded
}

// Good reports whether v is a verdict nothing needs to be said about: ok,
// clean, exit 0.
func (v Verdict) Good() bool {
	return v.Status == mesh.StatusOK && (v.Verdict == "ok" || v.Verdict == "clean" || v.Verdict == "exit 0")
}

// Summarize fills sr's Findings, Top, Verdicts and Summary from its Gather
// (args are the step's arguments; top is how many values to list per
// gauge; now dates the nodes' uptimes, none when zero). Run calls it; it
// is exported for callers that gather themselves.
func Summarize(sr *StepResult, args json.RawMessage, top int, now time.Time) {
	if top <= 0 {
		top = DefaultTopN
	}
	g := sr.Gather
	sum := g.Summary
	if sum.Total == 0 && len(g.Results) > 0 {
		for _, r := range g.Results {
			sum.Total++
			switch r.Status {
			case mesh.StatusOK:
				sum.OK++
			case mesh.StatusError:
				sum.Error++
			case mesh.StatusTimeout:
				sum.Timeout++
			case mesh.StatusOffline:
				sum.Offline++
			case mesh.StatusDenied:
				sum.Denied++
			}
		}
	}
	counts := []string{countWord(sum.Total, "node", "nodes"), fmt.Sprintf("%d ok", sum.OK)}
	for _, c := range []struct {
		n    int
		what string
	}{{sum.Error, "error"}, {sum.Denied, "denied"}, {sum.Timeout, "timeout"}, {sum.Offline, "offline"}} {
		if c.n > 0 {
			counts = append(counts, fmt.Sprintf("%d %s", c.n, c.what))
		}
	}
	var notable []string
	switch sr.Verb {
	case "scan":
		sr.Findings = scanFindings(g.Results)
		counts = append(counts, fmt.Sprintf("%d with findings", len(sr.Findings)))
	case "gauge":
		sr.Top = gaugeTop(g.Results, gaugeMetric(args), top)
		byGauge := map[string][]string{}
		var names []string
		for _, tv := range sr.Top {
			if _, seen := byGauge[tv.Gauge]; !seen {
				names = append(names, tv.Gauge)
			}
			byGauge[tv.Gauge] = append(byGauge[tv.Gauge], fmt.Sprintf("%s %s", nodeLabel(tv.Chevron, tv.Name), runFormatValue(tv)))
		}
		for _, n := range names {
			notable = append(notable, fmt.Sprintf("top %s: %s", n, strings.Join(byGauge[n], ", ")))
		}
	}
	sr.Verdicts = Verdicts(sr.Verb, args, g.Results, now)
	notable = append(notable, verdictLines(sr.Verdicts, sr.Findings)...)
	line := fmt.Sprintf("%s %s on %s: %s", sr.ID, verbLabel(sr.Verb, args), sr.Selector, strings.Join(counts, ", "))
	lines := []string{line}
	for i, n := range notable {
		if i == maxNotable {
			lines = append(lines, fmt.Sprintf("    … and %d more", len(notable)-maxNotable))
			break
		}
		lines = append(lines, "    "+n)
	}
	sr.Summary = strings.Join(lines, "\n")
}

// verdictLines are a step's node lines: each node when there are at most
// maxListed, else the good ones grouped and each other one; a node's scan
// findings follow it, one per line.
func verdictLines(vs []Verdict, findings []NodeFindings) []string {
	byChev := map[string][]command.Finding{}
	for _, nf := range findings {
		byChev[nf.Chevron] = nf.Findings
	}
	var out []string
	if len(vs) > maxListed {
		var word string
		var named []string
		n := 0
		for _, v := range vs {
			if !v.Good() {
				continue
			}
			if n == 0 {
				word = v.Verdict
			} else if v.Verdict != word {
				word = "ok"
			}
			n++
			if len(named) < maxGroupNamed {
				named = append(named, cmp.Or(v.Name, v.Chevron))
			}
		}
		if n > 0 {
			if n > len(named) {
				named = append(named, "…")
			}
			out = append(out, fmt.Sprintf("%d %s: %s", n, word, strings.Join(named, ", ")))
		}
	}
	for _, v := range vs {
		if len(vs) > maxListed && v.Good() {
			continue
		}
		text := v.Verdict
		switch {
		case v.Verdict == "findings":
			text = countWord(len(byChev[v.Chevron]), "finding", "findings")
		case v.Detail != "":
			text += ": " + v.Detail
		}
		out = append(out, nodeLabel(v.Chevron, v.Name)+": "+text)
		out = append(out, findingLines(byChev[v.Chevron])...)
	}
	return out
}

// findingLines are a node's findings, one line per check and severity (the
// most severe first): seven new listening ports are one line, so that a
// node's other checks (a Sentinel's finding) are never cut off by them.
func findingLines(fs []command.Finding) []string {
	type group struct {
		sev, check string
		first      string
		n          int
	}
	var gs []*group
	for _, f := range fs {
		i := slices.IndexFunc(gs, func(g *group) bool { return g.sev == string(f.Severity) && g.check == f.Check })
		if i < 0 {
			gs = append(gs, &group{sev: string(f.Severity), check: f.Check, first: f.Message})
			i = len(gs) - 1
		}
		gs[i].n++
	}
	rank := map[string]int{string(command.SeverityCritical): 0, string(command.SeverityWarning): 1, string(command.SeverityInfo): 2}
	slices.SortStableFunc(gs, func(a, b *group) int { return cmp.Compare(rank[a.sev], rank[b.sev]) })
	out := make([]string, 0, len(gs))
	for _, g := range gs {
		line := fmt.Sprintf("    %s %s: %s", g.sev, g.check, runOneLine(g.first))
		if g.n > 1 {
			line += fmt.Sprintf(" (and %d more)", g.n-1)
		}
		out = append(out, line)
	}
	return out
}

// Verdicts judges each result of a gather of verb with args, in order; now
// dates status's uptimes (none when zero).
func Verdicts(verb string, args json.RawMessage, results []mesh.NodeResult, now time.Time) []Verdict {
	out := make([]Verdict, 0, len(results))
	metric := gaugeMetric(args)
	for _, r := range results {
		v := Verdict{Chevron: r.Chevron, Name: r.Name, Status: r.Status, Ms: int64(math.Round(r.Ms))}
		if r.Status != mesh.StatusOK {
			v.Verdict = r.Status
			v.Detail = runOneLine(cmp.Or(r.Error, r.Code))
			out = append(out, v)
			continue
		}
		v.Verdict = "ok"
		switch verb {
		case "scan":
			v.Verdict, v.Detail = scanVerdict(r.Output)
		case "ping":
			v.Detail = fmtMs(r.Ms)
		case "gauge":
			v.Detail = gaugeDetail(r, metric)
		case "exec":
			v.Verdict, v.Detail = execVerdict(r)
		case "status":
			v.Detail = statusDetail(r, now)
		}
		if v.Detail == "" && verb != "scan" {
			v.Detail = firstLine(r.Text)
		}
		out = append(out, v)
	}
	return out
}

// scanVerdict is "clean", or "findings" with them in one line.
func scanVerdict(output json.RawMessage) (string, string) {
	var rep command.ScanReport
	if len(output) == 0 || json.Unmarshal(output, &rep) != nil {
		return "ok", "no scan report"
	}
	if len(rep.Findings) == 0 {
		return "clean", ""
	}
	parts := make([]string, len(rep.Findings))
	for i, f := range rep.Findings {
		parts[i] = fmt.Sprintf("%s %s: %s", f.Severity, f.Check, f.Message)
	}
	return "findings", runOneLine(countWord(len(rep.Findings), "finding", "findings") + ": " + strings.Join(parts, "; "))
}

// execVerdict is "exit N" (or "signal S", "timed out") and the first line
// of output, stdout first.
func execVerdict(r mesh.NodeResult) (string, string) {
	var rep command.ExecReply
	if len(r.Output) == 0 || json.Unmarshal(r.Output, &rep) != nil {
		return "ok", ""
	}
	word := "exit " + strconv.Itoa(rep.ExitCode)
	switch {
	case rep.TimedOut:
		word = "timed out"
	case rep.Signal != "":
		word = "signal " + rep.Signal
	}
	return word, cmp.Or(firstLine(rep.Stdout), firstLine(rep.Stderr))
}

// gaugeDetail is a node's headline gauges: "cpu.busy_pct 12.0%".
func gaugeDetail(r mesh.NodeResult, metric string) string {
	var parts []string
	for _, tv := range gaugeTop([]mesh.NodeResult{r}, metric, 1) {
		parts = append(parts, tv.Gauge+" "+runFormatValue(tv))
	}
	return strings.Join(parts, ", ")
}

// statusDetail reads a node's wire.Status: "alive, up 3h12m, leader".
func statusDetail(r mesh.NodeResult, now time.Time) string {
	var st wire.Status
	if len(r.Output) == 0 || json.Unmarshal(r.Output, &st) != nil || st.State == "" {
		return ""
	}
	parts := []string{st.State}
	if !st.Started.IsZero() && !now.IsZero() && now.After(st.Started) {
		parts = append(parts, "up "+now.Sub(st.Started).Truncate(time.Second).String())
	}
	if st.Leader != "" && st.Leader == cmp.Or(st.Chevron, r.Chevron) {
		parts = append(parts, "leader")
	}
	return strings.Join(parts, ", ")
}

func fmtMs(ms float64) string {
	if ms < 10 {
		return strconv.FormatFloat(ms, 'f', 1, 64) + " ms"
	}
	return strconv.FormatFloat(ms, 'f', 0, 64) + " ms"
}

// firstLine is the first non-blank line of s, in one short line.
func firstLine(s string) string {
	for l := range strings.Lines(s) {
		if t := strings.TrimSpace(l); t != "" {
			return runOneLine(t)
		}
	}
	return ""
}

// scanFindings decodes each node's scan report and keeps the nodes that
// have findings, in result (chevron) order.
func scanFindings(results []mesh.NodeResult) []NodeFindings {
	var out []NodeFindings
	for _, r := range results {
		if len(r.Output) == 0 {
			continue
		}
		var rep command.ScanReport
		if json.Unmarshal(r.Output, &rep) != nil || len(rep.Findings) == 0 {
			continue
		}
		out = append(out, NodeFindings{Chevron: r.Chevron, Name: r.Name, Findings: rep.Findings})
	}
	return out
}

func gaugeMetric(args json.RawMessage) string {
	var a struct {
		Metric string `json:"metric"`
	}
	_ = json.Unmarshal(args, &a)
	return cmp.Or(a.Metric, "list")
}

// headlineGauges are the gauges a metric's summary ranks nodes by, and how
// one node's several readings of a gauge (mounts, interfaces) combine.
func headlineGauges(metric string) []struct{ name, combine string } {
	type g = struct{ name, combine string }
	switch metric {
	case "cpu":
		return []g{{"cpu.busy_pct", "max"}}
	case "mem":
		return []g{{"mem.used_pct", "max"}}
	case "disk":
		return []g{{"disk.used_pct", "max"}}
	case "net":
		return []g{{"net.rx_rate", "sum"}, {"net.tx_rate", "sum"}}
	case "load":
		return []g{{"load.per_cpu", "max"}}
	}
	return []g{{"cpu.busy_pct", "max"}, {"mem.used_pct", "max"}, {"disk.used_pct", "max"}, {"load.per_cpu", "max"}}
}

// gaugeTop ranks the nodes by each headline gauge and keeps the top n.
func gaugeTop(results []mesh.NodeResult, metric string, n int) []TopValue {
	var out []TopValue
	for _, hg := range headlineGauges(metric) {
		var vals []TopValue
		for _, r := range results {
			if len(r.Output) == 0 {
				continue
			}
			var rep command.GaugeReply
			if json.Unmarshal(r.Output, &rep) != nil {
				continue
			}
			var tv *TopValue
			for _, g := range rep.Gauges {
				if g.Name != hg.name || math.IsNaN(g.Value) || math.IsInf(g.Value, 0) {
					continue
				}
				switch {
				case tv == nil:
					tv = &TopValue{Gauge: g.Name, Chevron: r.Chevron, Name: r.Name, Value: g.Value, Unit: g.Unit, Labels: g.Labels}
				case hg.combine == "sum":
					tv.Value += g.Value
					tv.Labels = nil
				case g.Value > tv.Value:
					tv.Value, tv.Labels = g.Value, g.Labels
				}
			}
			if tv != nil {
				vals = append(vals, *tv)
			}
		}
		slices.SortStableFunc(vals, func(a, b TopValue) int { return cmp.Compare(b.Value, a.Value) })
		out = append(out, vals[:min(n, len(vals))]...)
	}
	return out
}

func runFormatValue(tv TopValue) string {
	v := ""
	switch tv.Unit {
	case command.UnitPercent:
		v = fmt.Sprintf("%.1f%%", tv.Value)
	case command.UnitBytesPerSec:
		v = runHumanRate(tv.Value)
	default:
		v = strconv.FormatFloat(tv.Value, 'f', 2, 64)
	}
	if m := tv.Labels["mount"]; m != "" {
		v += " (" + m + ")"
	}
	return v
}

func runHumanRate(v float64) string {
	units := []string{"B/s", "KiB/s", "MiB/s", "GiB/s", "TiB/s"}
	i := 0
	for v >= 1024 && i < len(units)-1 {
		v /= 1024
		i++
	}
	return fmt.Sprintf("%.1f %s", v, units[i])
}

package command

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"runtime"
	"slices"
	"strings"
	"time"

	"github.com/shirou/gopsutil/v4/cpu"
	"github.com/shirou/gopsutil/v4/disk"
	"github.com/shirou/gopsutil/v4/load"
	"github.com/shirou/gopsutil/v4/mem"
	psnet "github.com/shirou/gopsutil/v4/net"
)

func gaugeMetrics() []string { return []string{"list", "cpu", "mem", "disk", "net", "load"} }

// Gauge is one current value.
type Gauge struct {
	Name   string            `json:"name"` // cpu.busy_pct, mem.used_pct, disk.free, net.rx_rate, load.1, …
	Value  float64           `json:"value"`
	Unit   string            `json:"unit,omitempty"`   // "%", "bytes", "bytes/s", or none
	Labels map[string]string `json:"labels,omitempty"` // mount, device, iface
}

// GaugeReply is the output of gauge.
type GaugeReply struct {
	Metric   string   `json:"metric"`
	Gauges   []Gauge  `json:"gauges"`
	Warnings []string `json:"warnings,omitempty"` // parts that could not be read
}

// Units of gauges.
const (
	UnitPercent     = "%"
	UnitBytes       = "bytes"
	UnitBytesPerSec = "bytes/s"
)

func (c *Catalogue) gauge(ctx context.Context, args json.RawMessage) (Output, error) {
	var a struct {
		Metric   string      `json:"metric"`
		Interval argDuration `json:"interval"`
	}
	if err := decodeArgs(args, &a); err != nil {
		return Output{}, err
	}
	a.Metric = cmp.Or(a.Metric, "list")
	interval := time.Duration(a.Interval)
	if interval == 0 {
		interval = 250 * time.Millisecond
	}
	want := func(m string) bool { return a.Metric == "list" || a.Metric == m }
	r := GaugeReply{Metric: a.Metric, Gauges: []Gauge{}}
	add := func(name string, v float64, unit string, labels ...string) {
		g := Gauge{Name: name, Value: v, Unit: unit}
		if len(labels) > 0 {
			g.Labels = map[string]string{}
			for i := 0; i+1 < len(labels); i += 2 {
				g.Labels[labels[i]] = labels[i+1]
			}
		}
		r.Gauges = append(r.Gauges, g)
	}
	warn := func(part string, err error) { r.Warnings = append(r.Warnings, part+": "+err.Error()) }

	// cpu and net are rates: two readings interval apart.
	var cpu0 cpu.TimesStat
	var cpuErr error
	var net0 []psnet.IOCountersStat
	var netErr error
	if want("cpu") {
		cpu0, cpuErr = cpuTimes(ctx)
	}
	if want("net") {
		net0, netErr = psnet.IOCountersWithContext(ctx, true)
	}
	if want("cpu") || want("net") {
		if err := sleepCtx(ctx, interval); err != nil {
			return Output{}, err
		}
	}
	secs := interval.Seconds()

	if want("cpu") {
		var cpu1 cpu.TimesStat
		if cpuErr == nil {
			cpu1, cpuErr = cpuTimes(ctx)
		}
		if cpuErr != nil {
			warn("cpu", cpuErr)
		} else {
			busy, iowait := cpuBusy(cpu0, cpu1)
			add("cpu.busy_pct", busy, UnitPercent)
			add("cpu.iowait_pct", iowait, UnitPercent)
		}
		add("cpu.count", float64(runtime.NumCPU()), "")
	}
	if want("mem") {
		if vm, err := mem.VirtualMemoryWithContext(ctx); err != nil {
			warn("mem", err)
		} else {
			add("mem.total", float64(vm.Total), UnitBytes)
			add("mem.available", float64(vm.Available), UnitBytes)
			add("mem.used_pct", usedPct(vm.Total, vm.Available), UnitPercent)
		}
		if sw, err := mem.SwapMemoryWithContext(ctx); err != nil {
			warn("swap", err)
		} else {
			add("swap.total", float64(sw.Total), UnitBytes)
			add("swap.used_pct", usedPct(sw.Total, sw.Free), UnitPercent)
		}
	}
	if want("disk") {
		parts, err := mounts(ctx)
		if err != nil {
			warn("disk", err)
		}
		for _, p := range parts {
			u, err := disk.UsageWithContext(ctx, p.Mountpoint)
			if err != nil {
				warn("disk "+p.Mountpoint, err)
				continue
			}
			add("disk.used_pct", u.UsedPercent, UnitPercent, "mount", p.Mountpoint, "device", p.Device)
			add("disk.free", float64(u.Free), UnitBytes, "mount", p.Mountpoint, "device", p.Device)
			if u.InodesTotal > 0 {
				add("disk.inodes_used_pct", u.InodesUsedPercent, UnitPercent, "mount", p.Mountpoint, "device", p.Device)
			}
		}
	}
	if want("net") {
		var net1 []psnet.IOCountersStat
		if netErr == nil {
			net1, netErr = psnet.IOCountersWithContext(ctx, true)
		}
		if netErr != nil {
			warn("net", netErr)
		}
		before := map[string]psnet.IOCountersStat{}
		for _, n := range net0 {
			before[n.Name] = n
		}
		slices.SortFunc(net1, func(a, b psnet.IOCountersStat) int { return strings.Compare(a.Name, b.Name) })
		for _, n := range net1 {
			if n.Name == "lo" {
				continue
			}
			add("net.rx_bytes", float64(n.BytesRecv), UnitBytes, "iface", n.Name)
			add("net.tx_bytes", float64(n.BytesSent), UnitBytes, "iface", n.Name)
			if b, ok := before[n.Name]; ok && secs > 0 && n.BytesRecv >= b.BytesRecv && n.BytesSent >= b.BytesSent {
				add("net.rx_rate", float64(n.BytesRecv-b.BytesRecv)/secs, UnitBytesPerSec, "iface", n.Name)
				add("net.tx_rate", float64(n.BytesSent-b.BytesSent)/secs, UnitBytesPerSec, "iface", n.Name)
			}
		}
	}
	if want("load") {
		if l, err := load.AvgWithContext(ctx); err != nil {
			warn("load", err)
		} else {
			add("load.1", l.Load1, "")
			add("load.5", l.Load5, "")
			add("load.15", l.Load15, "")
			add("load.per_cpu", l.Load1/float64(runtime.NumCPU()), "")
		}
		if m, err := load.MiscWithContext(ctx); err != nil {
			warn("procs", err)
		} else {
			add("procs.total", float64(m.ProcsTotal), "")
			add("procs.running", float64(m.ProcsRunning), "")
			add("procs.blocked", float64(m.ProcsBlocked), "")
		}
	}
	if err := ctx.Err(); err != nil {
		return Output{}, err
	}
	if len(r.Gauges) == 0 && len(r.Warnings) > 0 {
		return Output{Value: r}, fmt.Errorf("no %s gauge could be read: %s", a.Metric, strings.Join(r.Warnings, "; "))
	}
	return Output{Value: r, Text: r.text()}, nil
}

// cpuTimes reads the machine's aggregate CPU times.
func cpuTimes(ctx context.Context) (cpu.TimesStat, error) {
	ts, err := cpu.TimesWithContext(ctx, false)
	if err != nil {
		return cpu.TimesStat{}, err
	}
	if len(ts) == 0 {
		return cpu.TimesStat{}, errors.New("no CPU times")
	}
	return ts[0], nil
}

// cpuBusy returns the percentages of time between two readings that the CPUs
// were busy and waiting for I/O.
func cpuBusy(t0, t1 cpu.TimesStat) (busy, iowait float64) {
	total := func(t cpu.TimesStat) float64 {
		all := t.Total()
		if runtime.GOOS == "linux" { // guest time is counted in user and nice as well
			all -= t.Guest + t.GuestNice
		}
		return all
	}
	dt := total(t1) - total(t0)
	if dt <= 0 {
		return 0, 0
	}
	idle := (t1.Idle - t0.Idle) + (t1.Iowait - t0.Iowait)
	busy = 100 * (dt - idle) / dt
	iowait = 100 * (t1.Iowait - t0.Iowait) / dt
	return min(max(busy, 0), 100), min(max(iowait, 0), 100)
}

func usedPct(total, free uint64) float64 {
	if total == 0 || free > total {
		return 0
	}
	return 100 * float64(total-free) / float64(total)
}

// sleepCtx waits d or until ctx is done.
func sleepCtx(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}

func (r GaugeReply) text() string {
	var b strings.Builder
	for _, g := range r.Gauges {
		name := g.Name
		if len(g.Labels) > 0 {
			keys := make([]string, 0, len(g.Labels))
			for k := range g.Labels {
				keys = append(keys, k)
			}
			slices.Sort(keys)
			var kv []string
			for _, k := range keys {
				kv = append(kv, k+"="+g.Labels[k])
			}
			name += "{" + strings.Join(kv, ",") + "}"
		}
		var v string
		switch g.Unit {
		case UnitBytes:
			v = humanBytes(uint64(max(g.Value, 0)))
		case UnitBytesPerSec:
			v = humanBytes(uint64(max(g.Value, 0))) + "/s"
		case UnitPercent:
			v = fmt.Sprintf("%.1f%%", g.Value)
		default:
			v = fmt.Sprintf("%.2f", g.Value)
			v = strings.TrimSuffix(strings.TrimRight(v, "0"), ".")
		}
		fmt.Fprintf(&b, "%-40s %s\n", name, v)
	}
	for _, w := range r.Warnings {
		fmt.Fprintf(&b, "warning: %s\n", w)
	}
	return strings.TrimRight(b.String(), "\n")
}

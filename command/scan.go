package command

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os/exec"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/shirou/gopsutil/v4/disk"
	"github.com/shirou/gopsutil/v4/load"
	"github.com/shirou/gopsutil/v4/mem"
	psnet "github.com/shirou/gopsutil/v4/net"
	"github.com/shirou/gopsutil/v4/process"
)

// Scan checks, in the order scan runs and reports them.
const (
	CheckDisk     = "disk"     // filesystems nearly full
	CheckInodes   = "inodes"   // filesystems nearly out of inodes
	CheckMemory   = "memory"   // memory pressure
	CheckLoad     = "load"     // 5-minute load above the CPUs
	CheckZombies  = "zombies"  // processes nobody reaped
	CheckSystemd  = "systemd"  // failed units
	CheckPorts    = "ports"    // listening ports that were not there at baseline
	CheckClock    = "clock"    // clock skew against the swarm
	CheckSentinel = "sentinel" // what other nodes' Sentinels currently report about this node
)

func scanChecks() []string {
	return []string{CheckDisk, CheckInodes, CheckMemory, CheckLoad, CheckZombies, CheckSystemd, CheckPorts, CheckClock, CheckSentinel}
}

// SentinelHost is a Host that knows what the swarm's Sentinels report
// about it (the node); scan includes those findings.
type SentinelHost interface {
	SentinelFindings() []Finding
}

// Severity grades a finding.
type Severity string

// Severities, in increasing order.
const (
	SeverityInfo     Severity = "info"
	SeverityWarning  Severity = "warning"
	SeverityCritical Severity = "critical"
)

func (s Severity) rank() int {
	switch s {
	case SeverityCritical:
		return 2
	case SeverityWarning:
		return 1
	}
	return 0
}

// Finding is one thing scan found wrong.
type Finding struct {
	Check    string   `json:"check"` // one of the Check constants
	Severity Severity `json:"severity"`
	Subject  string   `json:"subject,omitempty"` // the mount, unit, port … it is about
	Message  string   `json:"message"`
}

// ScanReport is the output of scan. Findings are ordered most severe first.
type ScanReport struct {
	Time     time.Time         `json:"time"`
	Findings []Finding         `json:"findings"`
	Checked  []string          `json:"checked"`           // checks that ran
	Skipped  map[string]string `json:"skipped,omitempty"` // check → why it could not run
}

// scanLimits are scan's thresholds.
type scanLimits struct {
	diskPct, memPct, loadFactor float64
	clockSkew                   time.Duration
}

func (c *Catalogue) scan(ctx context.Context, args json.RawMessage) (Output, error) {
	var a struct {
		Checks     []string     `json:"checks"`
		DiskPct    *float64     `json:"disk_pct"`
		MemPct     *float64     `json:"mem_pct"`
		LoadFactor *float64     `json:"load_factor"`
		ClockSkew  *argDuration `json:"clock_skew"`
	}
	if err := decodeArgs(args, &a); err != nil {
		return Output{}, err
	}
	lim := scanLimits{diskPct: 90, memPct: 90, loadFactor: 1, clockSkew: 2 * time.Second}
	if a.DiskPct != nil {
		lim.diskPct = *a.DiskPct
	}
	if a.MemPct != nil {
		lim.memPct = *a.MemPct
	}
	if a.LoadFactor != nil {
		lim.loadFactor = *a.LoadFactor
	}
	if a.ClockSkew != nil {
		lim.clockSkew = time.Duration(*a.ClockSkew)
	}
	want := a.Checks
	if len(want) == 0 {
		want = scanChecks()
	}
	r := ScanReport{Time: c.now().UTC(), Findings: []Finding{}, Checked: []string{}, Skipped: map[string]string{}}

	var usages []*disk.UsageStat
	var usageErr error
	if slices.Contains(want, CheckDisk) || slices.Contains(want, CheckInodes) {
		usages, usageErr = diskUsages(ctx)
	}
	for _, check := range scanChecks() {
		if !slices.Contains(want, check) {
			continue
		}
		if err := ctx.Err(); err != nil {
			return Output{Value: r}, err
		}
		var found []Finding
		var err error
		switch check {
		case CheckDisk:
			found, err = diskFindings(usages, usageErr, lim.diskPct, false)
		case CheckInodes:
			found, err = diskFindings(usages, usageErr, lim.diskPct, true)
		case CheckMemory:
			found, err = memoryFindings(ctx, lim.memPct)
		case CheckLoad:
			found, err = loadFindings(ctx, lim.loadFactor)
		case CheckZombies:
			found, err = zombieFindings(ctx)
		case CheckSystemd:
			found, err = c.systemdFindings(ctx)
		case CheckPorts:
			found, err = c.portFindings(ctx)
		case CheckClock:
			found, err = c.clockFindings(lim.clockSkew)
		case CheckSentinel:
			if sh, ok := c.host.(SentinelHost); ok {
				found = sh.SentinelFindings()
			} else {
				err = errors.New("no sentinel on this node")
			}
		}
		if err != nil {
			r.Skipped[check] = err.Error()
			continue
		}
		r.Checked = append(r.Checked, check)
		r.Findings = append(r.Findings, found...)
	}
	order := scanChecks()
	slices.SortStableFunc(r.Findings, func(x, y Finding) int {
		if d := y.Severity.rank() - x.Severity.rank(); d != 0 {
			return d
		}
		if d := slices.Index(order, x.Check) - slices.Index(order, y.Check); d != 0 {
			return d
		}
		return strings.Compare(x.Subject, y.Subject)
	})
	if len(r.Skipped) == 0 {
		r.Skipped = nil
	}
	return Output{Value: r, Text: r.text()}, nil
}

// severityAt grades a percentage against its limit: a warning at the limit,
// critical halfway from the limit to 100.
func severityAt(v, limit float64) (Severity, bool) {
	switch {
	case v < limit:
		return "", false
	case v >= limit+(100-limit)/2:
		return SeverityCritical, true
	}
	return SeverityWarning, true
}

func diskUsages(ctx context.Context) ([]*disk.UsageStat, error) {
	parts, err := mounts(ctx)
	if err != nil {
		return nil, err
	}
	var out []*disk.UsageStat
	for _, p := range parts {
		u, err := disk.UsageWithContext(ctx, p.Mountpoint)
		if err != nil {
			continue // unmounted meanwhile, or not ours to stat
		}
		out = append(out, u)
	}
	if len(out) == 0 {
		return nil, errors.New("no filesystem could be read")
	}
	return out, nil
}

func diskFindings(usages []*disk.UsageStat, err error, limit float64, inodes bool) ([]Finding, error) {
	if err != nil {
		return nil, err
	}
	var out []Finding
	for _, u := range usages {
		check, pct, what := CheckDisk, u.UsedPercent, "space"
		if inodes {
			if u.InodesTotal == 0 {
				continue // btrfs, vfat…: no fixed inode table
			}
			check, pct, what = CheckInodes, u.InodesUsedPercent, "inodes"
		}
		if sev, ok := severityAt(pct, limit); ok {
			out = append(out, Finding{Check: check, Severity: sev, Subject: u.Path,
				Message: fmt.Sprintf("%s %.1f%% used on %s (%s, limit %s%%)", what, pct, u.Path, u.Fstype, num(limit))})
		}
	}
	return out, nil
}

func memoryFindings(ctx context.Context, limit float64) ([]Finding, error) {
	vm, err := mem.VirtualMemoryWithContext(ctx)
	if err != nil {
		return nil, err
	}
	pct := usedPct(vm.Total, vm.Available)
	sev, ok := severityAt(pct, limit)
	if !ok {
		return nil, nil
	}
	return []Finding{{Check: CheckMemory, Severity: sev, Subject: "memory",
		Message: fmt.Sprintf("memory %.1f%% used, %s available of %s (limit %s%%)", pct, humanBytes(vm.Available), humanBytes(vm.Total), num(limit))}}, nil
}

func loadFindings(ctx context.Context, factor float64) ([]Finding, error) {
	l, err := load.AvgWithContext(ctx)
	if err != nil {
		return nil, err
	}
	cpus := runtime.NumCPU()
	per := l.Load5 / float64(cpus)
	var sev Severity
	switch {
	case per > 2*factor:
		sev = SeverityCritical
	case per > factor:
		sev = SeverityWarning
	default:
		return nil, nil
	}
	return []Finding{{Check: CheckLoad, Severity: sev, Subject: "load",
		Message: fmt.Sprintf("5-minute load %.2f on %d CPUs (%.2f per CPU, limit %s)", l.Load5, cpus, per, num(factor))}}, nil
}

// zombieWarning is the number of zombies that is more than a slow parent.
const zombieWarning = 20

// zombies returns the ids of processes that exited and were not reaped.
func zombies(ctx context.Context) ([]int32, error) {
	procs, err := process.ProcessesWithContext(ctx)
	if err != nil {
		return nil, err
	}
	var out []int32
	for _, p := range procs {
		st, err := p.StatusWithContext(ctx)
		if err != nil {
			continue // exited meanwhile, or hidden (hidepid)
		}
		if slices.Contains(st, process.Zombie) {
			out = append(out, p.Pid)
		}
	}
	return out, nil
}

func zombieFindings(ctx context.Context) ([]Finding, error) {
	pids, err := zombies(ctx)
	if err != nil {
		return nil, err
	}
	if len(pids) == 0 {
		return nil, nil
	}
	sev := SeverityInfo
	if len(pids) >= zombieWarning {
		sev = SeverityWarning
	}
	shown := make([]string, 0, 10)
	for _, p := range pids[:min(len(pids), 10)] {
		shown = append(shown, strconv.Itoa(int(p)))
	}
	more := ""
	if len(pids) > 10 {
		more = ", …"
	}
	return []Finding{{Check: CheckZombies, Severity: sev, Subject: "processes",
		Message: fmt.Sprintf("%d zombie processes (pids %s%s)", len(pids), strings.Join(shown, ", "), more)}}, nil
}

func (c *Catalogue) systemdFindings(ctx context.Context) ([]Finding, error) {
	if c.systemctl == "" {
		return nil, errors.New("systemctl not found")
	}
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, c.systemctl, "--failed", "--no-legend", "--plain").Output()
	if err != nil {
		var ee *exec.ExitError
		if errors.As(err, &ee) && len(ee.Stderr) > 0 {
			first, _, _ := strings.Cut(strings.TrimSpace(string(ee.Stderr)), "\n")
			if len(first) > 200 {
				first = first[:200] + "…"
			}
			return nil, fmt.Errorf("systemctl: %s", first)
		}
		return nil, fmt.Errorf("systemctl: %w", err)
	}
	var found []Finding
	sc := bufio.NewScanner(strings.NewReader(string(out)))
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) == 0 {
			continue
		}
		unit := strings.TrimPrefix(f[0], "●")
		if unit == "" && len(f) > 1 {
			f = f[1:]
			unit = f[0]
		}
		msg := "unit " + unit + " failed"
		if len(f) >= 4 {
			msg += fmt.Sprintf(" (load %s, active %s, sub %s)", f[1], f[2], f[3])
		}
		if len(f) > 4 {
			msg += ": " + strings.Join(f[4:], " ")
		}
		found = append(found, Finding{Check: CheckSystemd, Severity: SeverityWarning, Subject: unit, Message: msg})
	}
	return found, nil
}

func (c *Catalogue) portFindings(ctx context.Context) ([]Finding, error) {
	if c.baseline == nil {
		return nil, fmt.Errorf("no baseline: %v", c.baselineErr)
	}
	ls, err := listeners(ctx)
	if err != nil {
		return nil, err
	}
	var found []Finding
	for _, l := range ls {
		if c.baseline[l.addr] {
			continue
		}
		msg := "listening on " + l.addr + ", not at baseline"
		if l.pid > 0 {
			msg += fmt.Sprintf(" (pid %d)", l.pid)
		}
		found = append(found, Finding{Check: CheckPorts, Severity: SeverityWarning, Subject: l.addr, Message: msg})
	}
	return found, nil
}

func (c *Catalogue) clockFindings(limit time.Duration) ([]Finding, error) {
	if c.host == nil {
		return nil, errors.New("no host to give the swarm's clock")
	}
	off, known := c.host.ClockOffset()
	if !known {
		return nil, errors.New("no reference clock from the swarm yet")
	}
	abs, dir := off, "ahead of"
	if off < 0 {
		abs, dir = -off, "behind"
	}
	var sev Severity
	switch {
	case abs > 10*limit:
		sev = SeverityCritical
	case abs > limit:
		sev = SeverityWarning
	default:
		return nil, nil
	}
	return []Finding{{Check: CheckClock, Severity: sev, Subject: "clock",
		Message: fmt.Sprintf("clock %s %s the swarm (limit %s)", abs, dir, limit)}}, nil
}

type listener struct {
	addr string
	pid  int32
}

// listeners returns the listening TCP sockets, sorted, each address once.
func listeners(ctx context.Context) ([]listener, error) {
	conns, err := psnet.ConnectionsWithoutUidsWithContext(ctx, "tcp")
	if err != nil {
		return nil, fmt.Errorf("listening ports: %w", err)
	}
	seen := map[string]bool{}
	var out []listener
	for _, cs := range conns {
		if cs.Status != "LISTEN" {
			continue
		}
		addr := "tcp/" + net.JoinHostPort(cs.Laddr.IP, strconv.FormatUint(uint64(cs.Laddr.Port), 10))
		if seen[addr] {
			continue
		}
		seen[addr] = true
		out = append(out, listener{addr: addr, pid: cs.Pid})
	}
	slices.SortFunc(out, func(a, b listener) int { return strings.Compare(a.addr, b.addr) })
	return out, nil
}

// ListeningPorts returns the machine's listening TCP endpoints in the form
// scan and Options.ListenBaseline use, "tcp/127.0.0.1:4222" or
// "tcp/[::]:8340", sorted, each once.
func ListeningPorts(ctx context.Context) ([]string, error) {
	ls, err := listeners(ctx)
	if err != nil {
		return nil, err
	}
	out := make([]string, len(ls))
	for i, l := range ls {
		out[i] = l.addr
	}
	return out, nil
}

func (r ScanReport) text() string {
	var b strings.Builder
	for _, f := range r.Findings {
		fmt.Fprintf(&b, "%-8s %-8s %s\n", f.Severity, f.Check, f.Message)
	}
	if len(r.Findings) == 0 {
		fmt.Fprintf(&b, "no findings (checked %s)\n", strings.Join(r.Checked, ", "))
	}
	keys := make([]string, 0, len(r.Skipped))
	for k := range r.Skipped {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	for _, k := range keys {
		fmt.Fprintf(&b, "skipped  %-8s %s\n", k, r.Skipped[k])
	}
	return strings.TrimRight(b.String(), "\n")
}

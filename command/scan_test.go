package command

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"
)

func findings(t *testing.T, c *Catalogue, args string) ScanReport {
	t.Helper()
	res := run(t, c, "scan", args)
	mustOK(t, res)
	return outputOf[ScanReport](t, res)
}

func TestScanRunsEveryCheck(t *testing.T) {
	t.Parallel()
	at := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	c := newCatalogue(t, Options{Now: func() time.Time { return at }, Host: testHost{known: true}})
	r := findings(t, c, "")
	if !r.Time.Equal(at) {
		t.Errorf("time %v", r.Time)
	}
	var all []string
	all = append(all, r.Checked...)
	for k := range r.Skipped {
		all = append(all, k)
	}
	slices.Sort(all)
	want := scanChecks()
	slices.Sort(want)
	if !slices.Equal(all, want) {
		t.Errorf("checked %v + skipped %v, want every check", r.Checked, r.Skipped)
	}
	for _, must := range []string{CheckDisk, CheckMemory, CheckLoad, CheckClock} {
		if runtime.GOOS == "linux" && !slices.Contains(r.Checked, must) {
			t.Errorf("%s did not run: %v", must, r.Skipped)
		}
	}
	for i, f := range r.Findings {
		if f.Severity.rank() == 0 && f.Severity != SeverityInfo || f.Message == "" || !slices.Contains(scanChecks(), f.Check) {
			t.Errorf("finding %+v", f)
		}
		if i > 0 && f.Severity.rank() > r.Findings[i-1].Severity.rank() {
			t.Errorf("findings not ordered by severity: %v", r.Findings)
		}
	}
	t.Logf("scan: %+v", r)
}

func TestScanFindingsHaveSeverity(t *testing.T) {
	t.Parallel()
	c := newCatalogue(t, Options{ListenBaseline: []string{}})
	// Limits this low turn what every machine has into findings.
	r := findings(t, c, `{"checks":["disk","inodes","memory","load"],"disk_pct":0,"mem_pct":0,"load_factor":0}`)
	got := map[string]Severity{}
	for _, f := range r.Findings {
		got[f.Check+" "+f.Subject] = f.Severity
	}
	if sev := got["disk /"]; sev != SeverityWarning && sev != SeverityCritical {
		t.Errorf("no disk finding for /: %+v", r.Findings)
	}
	if sev := got["memory memory"]; sev == "" {
		t.Errorf("no memory finding: %+v", r.Findings)
	}
	for _, f := range r.Findings {
		if f.Check == CheckDisk && !strings.Contains(f.Message, "% used on "+f.Subject) {
			t.Errorf("disk message %q", f.Message)
		}
	}
	// Ordinary limits on an ordinary test machine: no disk finding at 100%.
	r = findings(t, c, `{"checks":["disk"],"disk_pct":100}`)
	for _, f := range r.Findings {
		t.Logf("at 100%%: %+v", f)
	}
}

func TestSeverityAt(t *testing.T) {
	t.Parallel()
	for _, tt := range []struct {
		v, limit float64
		want     Severity
	}{
		{89.9, 90, ""}, {90, 90, SeverityWarning}, {94.9, 90, SeverityWarning}, {95, 90, SeverityCritical},
		{100, 100, SeverityCritical}, {10, 0, SeverityWarning}, {50, 0, SeverityCritical},
	} {
		got, ok := severityAt(tt.v, tt.limit)
		if got != tt.want || ok != (tt.want != "") {
			t.Errorf("severityAt(%v, %v) = %q, %v; want %q", tt.v, tt.limit, got, ok, tt.want)
		}
	}
}

func TestScanFindsPortOpenedAfterBaseline(t *testing.T) {
	t.Parallel()
	if runtime.GOOS != "linux" {
		t.Skip("listening ports are read from /proc")
	}
	before, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer before.Close()
	c := newCatalogue(t, Options{}) // baseline taken now, with `before` in it
	after, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer after.Close()

	r := findings(t, c, `{"checks":["ports"]}`)
	byAddr := map[string]Finding{}
	for _, f := range r.Findings {
		byAddr[f.Subject] = f
	}
	newAddr, oldAddr := "tcp/"+after.Addr().String(), "tcp/"+before.Addr().String()
	f, ok := byAddr[newAddr]
	if !ok {
		t.Fatalf("no finding for %s in %+v", newAddr, r.Findings)
	}
	if f.Check != CheckPorts || f.Severity != SeverityWarning || !strings.Contains(f.Message, "pid "+strconv.Itoa(os.Getpid())) {
		t.Errorf("finding %+v", f)
	}
	if _, ok := byAddr[oldAddr]; ok {
		t.Errorf("%s was in the baseline but is reported", oldAddr)
	}

	ports, err := ListeningPorts(context.Background())
	if err != nil || !slices.Contains(ports, newAddr) || !slices.IsSorted(ports) {
		t.Errorf("ListeningPorts = %v, %v", ports, err)
	}
}

func TestScanUsesInjectedBaseline(t *testing.T) {
	t.Parallel()
	if runtime.GOOS != "linux" {
		t.Skip("listening ports are read from /proc")
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	addr := "tcp/" + ln.Addr().String()
	has := func(r ScanReport) bool {
		return slices.ContainsFunc(r.Findings, func(f Finding) bool { return f.Subject == addr })
	}
	if r := findings(t, newCatalogue(t, Options{ListenBaseline: []string{addr}}), `{"checks":["ports"]}`); has(r) {
		t.Errorf("%s is in the injected baseline but reported", addr)
	}
	if r := findings(t, newCatalogue(t, Options{ListenBaseline: []string{}}), `{"checks":["ports"]}`); !has(r) {
		t.Errorf("empty baseline: %s not reported in %+v", addr, r.Findings)
	}
}

func TestScanReportsZombies(t *testing.T) {
	t.Parallel()
	if runtime.GOOS != "linux" {
		t.Skip("zombies are read from /proc")
	}
	cmd := exec.Command("/bin/true")
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer cmd.Wait() // reaps it
	pid := cmd.Process.Pid
	c := newCatalogue(t, Options{ListenBaseline: []string{}})
	var z []int32
	checkFor(t, 5*time.Second, func() error { // until /bin/true has exited, unreaped
		var err error
		if z, err = zombies(context.Background()); err != nil || !slices.Contains(z, int32(pid)) {
			return fmt.Errorf("zombies = %v, %v; want %d among them", z, err, pid)
		}
		return nil
	})
	r := findings(t, c, `{"checks":["zombies"]}`)
	if len(r.Findings) != 1 || r.Findings[0].Check != CheckZombies || !strings.Contains(r.Findings[0].Message, "zombie processes (pids ") {
		t.Fatalf("findings %+v", r.Findings)
	}
	want := SeverityInfo
	if len(z) >= zombieWarning {
		want = SeverityWarning
	}
	if r.Findings[0].Severity != want {
		t.Errorf("severity %q with %d zombies", r.Findings[0].Severity, len(z))
	}
}

func TestScanReportsFailedSystemdUnits(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	c := newCatalogue(t, Options{ListenBaseline: []string{}})
	c.systemctl = writeScript(t, dir, "systemctl", `[ "$*" = "--failed --no-legend --plain" ] || { echo "bad args: $*" >&2; exit 2; }
echo "nginx.service  loaded failed failed A high performance web server"
echo "backup.timer   loaded failed failed Nightly backup"
`)
	r := findings(t, c, `{"checks":["systemd"]}`)
	if len(r.Findings) != 2 {
		t.Fatalf("findings %+v (skipped %v)", r.Findings, r.Skipped)
	}
	f := r.Findings[1]
	if f.Subject != "nginx.service" || f.Severity != SeverityWarning ||
		f.Message != "unit nginx.service failed (load loaded, active failed, sub failed): A high performance web server" {
		t.Errorf("finding %+v", f)
	}

	c.systemctl = writeScript(t, dir, "systemctl-down", `echo "System has not been booted with systemd as init system (PID 1). Can't operate." >&2
echo "Failed to connect to bus: Host is down" >&2
exit 1
`)
	r = findings(t, c, `{"checks":["systemd"]}`)
	if len(r.Findings) != 0 || !strings.Contains(r.Skipped[CheckSystemd], "System has not been booted with systemd") {
		t.Errorf("without systemd: findings %+v skipped %v", r.Findings, r.Skipped)
	}
	c.systemctl = ""
	if r := findings(t, c, `{"checks":["systemd"]}`); r.Skipped[CheckSystemd] != "systemctl not found" {
		t.Errorf("without systemctl: skipped %v", r.Skipped)
	}
}

func TestScanReportsClockSkew(t *testing.T) {
	t.Parallel()
	tests := []struct {
		host testHost
		args string
		want Severity
		msg  string
	}{
		{testHost{offset: time.Second, known: true}, "", "", ""},
		{testHost{offset: 5 * time.Second, known: true}, "", SeverityWarning, "clock 5s ahead of the swarm (limit 2s)"},
		{testHost{offset: -30 * time.Second, known: true}, "", SeverityCritical, "clock 30s behind the swarm (limit 2s)"},
		{testHost{offset: 300 * time.Millisecond, known: true}, `,"clock_skew":"100ms"`, SeverityWarning, "clock 300ms ahead of the swarm (limit 100ms)"},
	}
	for _, tt := range tests {
		c := newCatalogue(t, Options{ListenBaseline: []string{}, Host: tt.host})
		r := findings(t, c, `{"checks":["clock"]`+tt.args+`}`)
		if tt.want == "" {
			if len(r.Findings) != 0 {
				t.Errorf("offset %v: findings %+v", tt.host.offset, r.Findings)
			}
			continue
		}
		if len(r.Findings) != 1 || r.Findings[0].Severity != tt.want || r.Findings[0].Message != tt.msg {
			t.Errorf("offset %v: findings %+v, want %s %q", tt.host.offset, r.Findings, tt.want, tt.msg)
		}
	}
	c := newCatalogue(t, Options{ListenBaseline: []string{}, Host: testHost{}})
	if r := findings(t, c, `{"checks":["clock"]}`); !strings.Contains(r.Skipped[CheckClock], "no reference clock") {
		t.Errorf("unknown offset: %+v", r)
	}
	c = newCatalogue(t, Options{ListenBaseline: []string{}})
	if r := findings(t, c, `{"checks":["clock"]}`); !strings.Contains(r.Skipped[CheckClock], "no host") {
		t.Errorf("no host: %+v", r)
	}
}

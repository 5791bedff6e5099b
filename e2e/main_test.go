//go:build e2e

package e2e

import (
	"bytes"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// Suite-wide settings, fixed by TestMain before any test runs and read-only
// afterwards.
var (
	// robonetBin is the robonet binary built for this run.
	robonetBin string
	// ipBin is the path of iproute2's ip.
	ipBin string
	// subnet is the first three octets of the /24 the labs use, with the
	// trailing dot ("10.77.0."); it overlaps no route or address of the machine.
	subnet string
	// envProblem says why the suite cannot run on this machine; "" if it can.
	envProblem string
)

// nsPrefixBase starts the name of every namespace the suite creates; the
// process id follows, so concurrent runs never share one and stale ones from
// a run that died can be recognised.
const nsPrefixBase = "rne2e-"

// nsPrefix is this run's namespace name prefix ("rne2e-1234-").
func nsPrefix() string { return nsPrefixBase + strconv.Itoa(os.Getpid()) + "-" }

func TestMain(m *testing.M) {
	if mode := os.Getenv(fakeModeEnv); mode != "" {
		os.Exit(runFake(mode, os.Getenv(fakeAddrEnv)))
	}
	if seed := os.Getenv(agentSeedEnv); seed != "" {
		os.Exit(runAgent(seed, os.Getenv(agentNodeEnv)))
	}
	code := func() int {
		defer cleanupTargets()
		envProblem = checkEnv()
		if envProblem != "" {
			fmt.Fprintf(os.Stderr, "e2e: cannot run here: %s\n", envProblem)
			return m.Run() // every test skips (or fails when CI=true)
		}
		removeStaleNamespaces()
		removeStaleBinDirs()
		dir, err := os.MkdirTemp("", binDirPrefix+strconv.Itoa(os.Getpid())+"-")
		if err != nil {
			fmt.Fprintln(os.Stderr, "e2e:", err)
			return 1
		}
		defer os.RemoveAll(dir)
		began := time.Now()
		if robonetBin, err = buildRobonet(dir); err != nil {
			fmt.Fprintln(os.Stderr, "e2e:", err)
			return 1
		}
		fmt.Fprintf(os.Stderr, "e2e: built %s in %s; lab subnet %s0/24; namespaces %s*\n",
			robonetBin, time.Since(began).Round(time.Millisecond), subnet, nsPrefix())
		code := m.Run()
		printFigures()
		return code
	}()
	os.Exit(code)
}

// requireEnv skips the test when the machine cannot run the suite, or fails
// it when CI=true: in CI a missing tool is a broken runner, not a reason to
// pass.
func requireEnv(t *testing.T) {
	t.Helper()
	if envProblem == "" {
		return
	}
	if os.Getenv("CI") == "true" {
		t.Fatalf("e2e needs root, iproute2 and network namespaces: %s (CI=true: failing instead of skipping)", envProblem)
	}
	t.Skipf("e2e needs root, iproute2 and network namespaces: %s", envProblem)
}

// checkEnv returns why the suite cannot run here, or "" when it can; it also
// sets ipBin and subnet.
func checkEnv() string {
	if os.Geteuid() != 0 {
		return "not running as root"
	}
	var err error
	if ipBin, err = exec.LookPath("ip"); err != nil {
		return "`ip` (iproute2) not found"
	}
	probe := nsPrefix() + "probe"
	if out, err := exec.Command(ipBin, "netns", "add", probe).CombinedOutput(); err != nil {
		return fmt.Sprintf("cannot create a network namespace: %v: %s", err, bytes.TrimSpace(out))
	}
	if out, err := exec.Command(ipBin, "netns", "del", probe).CombinedOutput(); err != nil {
		return fmt.Sprintf("cannot delete network namespace %s: %v: %s", probe, err, bytes.TrimSpace(out))
	}
	if subnet, err = pickSubnet(); err != nil {
		return err.Error()
	}
	return ""
}

// pickSubnet returns the first 10.X.0.0/24 (X from 77) that overlaps no
// address or route of the machine's own namespace, as "10.X.0.". The labs'
// namespaces are isolated from it anyway; this keeps their addresses from
// ever meaning something on this host.
func pickSubnet() (string, error) {
	var used []netip.Prefix
	for _, args := range [][]string{{"-4", "-o", "addr", "show"}, {"-4", "route", "show", "table", "all"}} {
		out, err := exec.Command(ipBin, args...).Output()
		if err != nil {
			return "", fmt.Errorf("ip %s: %v", strings.Join(args, " "), err)
		}
		for _, tok := range strings.Fields(string(out)) {
			if p, err := netip.ParsePrefix(tok); err == nil && p.Bits() > 0 {
				used = append(used, p.Masked())
			} else if a, err := netip.ParseAddr(tok); err == nil && a.Is4() {
				used = append(used, netip.PrefixFrom(a, 32))
			}
		}
	}
	for x := 77; x < 100; x++ {
		cand := netip.MustParsePrefix(fmt.Sprintf("10.%d.0.0/24", x))
		free := true
		for _, p := range used {
			if p.Overlaps(cand) {
				free = false
				break
			}
		}
		if free {
			return fmt.Sprintf("10.%d.0.", x), nil
		}
	}
	return "", fmt.Errorf("no free 10.77-99.0.0/24 subnet on this machine")
}

// staleNS matches the namespaces of any run of this suite and captures the
// run's process id.
var staleNS = regexp.MustCompile(`^` + regexp.QuoteMeta(nsPrefixBase) + `(\d+)-`)

// removeStaleNamespaces deletes namespaces left by runs of this suite whose
// test process is gone (killed before its cleanups ran), after killing the
// robonet processes that run started in them.
func removeStaleNamespaces() {
	out, err := exec.Command(ipBin, "netns", "list").Output()
	if err != nil {
		return
	}
	for _, line := range strings.Split(string(out), "\n") {
		f := strings.Fields(line)
		if len(f) == 0 {
			continue
		}
		m := staleNS.FindStringSubmatch(f[0])
		if m == nil {
			continue
		}
		pid, _ := strconv.Atoi(m[1])
		if pid == os.Getpid() || suiteAlive(pid) {
			continue
		}
		killNamespacePids(f[0])
		_ = exec.Command(ipBin, "netns", "del", f[0]).Run()
		fmt.Fprintf(os.Stderr, "e2e: removed stale namespace %s\n", f[0])
	}
}

// binDirPrefix starts the name of the temp dir the binary is built in; the
// process id follows, as for namespaces.
const binDirPrefix = "rn-e2e-bin-"

// removeStaleBinDirs deletes the build dirs of runs that died before
// TestMain could remove them.
func removeStaleBinDirs() {
	dirs, _ := filepath.Glob(filepath.Join(os.TempDir(), binDirPrefix+"*-*"))
	for _, d := range dirs {
		pid, err := strconv.Atoi(strings.SplitN(strings.TrimPrefix(filepath.Base(d), binDirPrefix), "-", 2)[0])
		if err == nil && pid != os.Getpid() && !suiteAlive(pid) {
			_ = os.RemoveAll(d)
		}
	}
}

// suiteAlive reports whether pid is a running test binary of this suite.
func suiteAlive(pid int) bool {
	comm, err := os.ReadFile(filepath.Join("/proc", strconv.Itoa(pid), "comm"))
	return err == nil && strings.HasPrefix(strings.TrimSpace(string(comm)), "e2e.test")
}

// killNamespacePids SIGKILLs every process in namespace ns. Only the suite
// starts processes in its namespaces, so these are ours (or a dead run's).
func killNamespacePids(ns string) {
	out, err := exec.Command(ipBin, "netns", "pids", ns).Output()
	if err != nil {
		return
	}
	for _, f := range strings.Fields(string(out)) {
		if pid, err := strconv.Atoi(f); err == nil && pid > 1 && pid != os.Getpid() {
			_ = syscall.Kill(pid, syscall.SIGKILL)
		}
	}
}

// buildRobonet builds ./cmd/robonet of this module into dir.
func buildRobonet(dir string) (string, error) {
	gomod, err := exec.Command("go", "env", "GOMOD").Output()
	if err != nil {
		return "", fmt.Errorf("go env GOMOD: %v", err)
	}
	root := filepath.Dir(strings.TrimSpace(string(gomod)))
	bin := filepath.Join(dir, "robonet")
	cmd := exec.Command("go", "build", "-o", bin, "./cmd/robonet")
	cmd.Dir = root
	if out, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("go build ./cmd/robonet in %s: %v\n%s", root, err, out)
	}
	return bin, nil
}

// figure is one measured duration, for the summary at the end of the run.
type figure struct {
	test, what, target string
	d                  time.Duration
}

var (
	figuresMu sync.Mutex // guards figures
	figures   []figure
)

// record logs a measured duration with its target (DESIGN.md), and keeps it
// for the summary TestMain prints. It never fails the test: figures are
// reported, not asserted.
func record(t *testing.T, what string, d time.Duration, target string) {
	t.Helper()
	note := ""
	if target != "" {
		note = " (target " + target + ")"
	}
	t.Logf("FIGURE %s: %s%s", what, d.Round(time.Millisecond), note)
	figuresMu.Lock()
	figures = append(figures, figure{test: t.Name(), what: what, target: target, d: d})
	figuresMu.Unlock()
}

func printFigures() {
	figuresMu.Lock()
	defer figuresMu.Unlock()
	if len(figures) == 0 {
		return
	}
	fmt.Println("\ne2e figures (measured through the CLI; include ~tens of ms of CLI latency per sample):")
	for _, f := range figures {
		target := f.target
		if target == "" {
			target = "-"
		}
		fmt.Printf("  %-34s %-60s %9s  target %s\n", f.test, f.what, f.d.Round(time.Millisecond), target)
	}
}

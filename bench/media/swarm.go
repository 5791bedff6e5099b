package main

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/robonet-mesh/robonet/bench/internal/proc"
	"github.com/robonet-mesh/robonet/trust"
)

const upMarker = " up as chevron "

// swarm is the two `robonet up` processes: A with the gateway (the
// founder, whose operator key logs the browser in), B with the streams.
type swarm struct {
	b            *bench
	nodeA, nodeB *proc.Child
	dataA        string
	serverA      string // nats:// of A's client port
	gwURL        string // http:// of A's gateway
	chevB        string
}

// startSwarm starts A and B at once, joined over their routes with the
// swarm's secret token, and waits for both `up` lines.
func startSwarm(ctx context.Context, b *bench) (*swarm, error) {
	addrs, err := proc.LocalAddrs(5) // A client, B client, A route, B route, A gateway
	if err != nil {
		return nil, err
	}
	udp, err := freeUDP(2)
	if err != nil {
		return nil, err
	}
	secret, err := trust.GenerateSecret()
	if err != nil {
		return nil, err
	}
	s := &swarm{b: b, dataA: filepath.Join(b.tmp, "a"), serverA: "nats://" + addrs[0], gwURL: "http://" + addrs[4]}
	routes := addrs[2] + "," + addrs[3]
	common := []string{"up", "--log-level", "warn", "--swarm", "mediabench", "--token", secret, "--join", routes}
	argsA := append(append([]string{}, common...), "--data", s.dataA, "--name", "gw", "--listen", addrs[0],
		"--cluster", addrs[2], "--founder", "--gateway", addrs[4], "--media-udp", udp[0])
	argsB := append(append([]string{}, common...), "--data", filepath.Join(b.tmp, "b"), "--name", "camera",
		"--listen", addrs[1], "--cluster", addrs[3], "--gateway", "off",
		"--media", streamsFlag, "--media-udp", udp[1], "--media-linger", b.cfg.linger.String())
	b.logf("starting node A: robonet %s", strings.Join(argsA, " "))
	if s.nodeA, err = b.ps.Start("A", b.bin, argsA, upMarker); err != nil {
		return nil, err
	}
	b.logf("starting node B: robonet %s", strings.Join(argsB, " "))
	if s.nodeB, err = b.ps.Start("B", b.bin, argsB, upMarker); err != nil {
		return nil, err
	}
	for _, c := range []*proc.Child{s.nodeA, s.nodeB} {
		if err := c.WaitReady(ctx, time.Now().Add(90*time.Second)); err != nil {
			return nil, err
		}
	}
	line := s.nodeB.ReadyLine()
	i := strings.Index(line, upMarker)
	f := strings.Fields(line[i+len(upMarker):])
	if len(f) == 0 {
		return nil, fmt.Errorf("node B's up line names no chevron: %q", line)
	}
	s.chevB = f[0]
	b.logf("swarm up: gateway %s, camera node B is chevron %s", s.gwURL, s.chevB)
	return s, nil
}

// freeUDP returns n free 127.0.0.1 UDP addresses (listen, then close).
func freeUDP(n int) ([]string, error) {
	var out []string
	var ls []net.PacketConn
	defer func() {
		for _, l := range ls {
			l.Close()
		}
	}()
	for range n {
		l, err := net.ListenPacket("udp4", "127.0.0.1:0")
		if err != nil {
			return nil, fmt.Errorf("reserve a UDP port: %w", err)
		}
		ls = append(ls, l)
		out = append(out, l.LocalAddr().String())
	}
	return out, nil
}

// pageURL is the player page of stream on B, asking for path.
func (s *swarm) pageURL(stream, path string) string {
	return s.gwURL + "/media/" + url.PathEscape(s.chevB) + "/" + stream + "?path=" + path
}

// cli runs a robonet command against A as its founder, with HOME in the
// temp dir (the CLI pins node keys under it), and returns its stdout.
func (s *swarm) cli(ctx context.Context, args ...string) (string, error) {
	cctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	args = append(args, "--data", s.dataA, "--server", s.serverA)
	cmd := proc.Command(cctx, s.b.bin, args...)
	home := filepath.Join(s.b.tmp, "home")
	if err := os.MkdirAll(home, 0o700); err != nil {
		return "", err
	}
	cmd.Env = append(cmd.Env, "HOME="+home, "XDG_CONFIG_HOME="+filepath.Join(home, ".config"))
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		return "", fmt.Errorf("robonet %s: %v: %s", strings.Join(args, " "), err, strings.TrimSpace(stderr.String()))
	}
	return strings.TrimSpace(stdout.String()), nil
}

// loginLink is `robonet gateway login` against A.
func (s *swarm) loginLink(ctx context.Context) (string, error) {
	out, err := s.cli(ctx, "gateway", "login")
	if err != nil {
		return "", err
	}
	if !strings.HasPrefix(out, s.gwURL+"/login?") {
		return "", fmt.Errorf("robonet gateway login printed %q, not a link to %s", out, s.gwURL)
	}
	return out, nil
}

// version is `robonet version`'s first line ("" if it fails).
func (s *swarm) version(ctx context.Context) string {
	cctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	raw, err := proc.Command(cctx, s.b.bin, "version").Output()
	if err != nil {
		return ""
	}
	line, _, _ := strings.Cut(strings.TrimSpace(string(raw)), "\n")
	return line
}

// ffmpegPid finds the ffmpeg that node B runs for stream: a child of B
// whose command line reads the stream's source (the clock's frames on a
// pipe, the test pattern from lavfi).
func (s *swarm) ffmpegPid(stream string) (int, error) {
	want := "pipe:0"
	if stream == streamTest {
		want = "testsrc2="
	}
	var found []int
	for _, pid := range children(s.nodeB.Pid()) {
		cmdline, err := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
		if err != nil {
			continue
		}
		args := strings.Split(strings.TrimRight(string(cmdline), "\x00"), "\x00")
		if len(args) == 0 || filepath.Base(args[0]) != "ffmpeg" {
			continue
		}
		for _, a := range args {
			if strings.HasPrefix(a, want) {
				found = append(found, pid)
				break
			}
		}
	}
	switch len(found) {
	case 0:
		return 0, fmt.Errorf("node B runs no ffmpeg for stream %s", stream)
	case 1:
		return found[0], nil
	default:
		return 0, fmt.Errorf("node B runs %d ffmpeg processes for stream %s", len(found), stream)
	}
}

// waitEncoderStopped waits until B runs no ffmpeg for stream: a relay
// lease lapses RelayLease after the gateway's source stopped renewing it,
// which it does its linger after its last viewer, then B's encoder lingers.
func (s *swarm) waitEncoderStopped(ctx context.Context, stream string) error {
	began := time.Now()
	deadline := began.Add(60 * time.Second)
	for {
		if _, err := s.ffmpegPid(stream); err != nil && strings.Contains(err.Error(), "no ffmpeg") {
			s.b.logf("stream %s: no encoder running (waited %v)", stream, time.Since(began).Round(100*time.Millisecond))
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("stream %s's ffmpeg still runs 60 s after its last viewer left", stream)
		}
		if err := sleep(ctx, 100*time.Millisecond); err != nil {
			return err
		}
	}
}

// children lists the processes whose parent is pid.
func children(pid int) []int {
	var out []int
	for p, pp := range parents() {
		if pp == pid {
			out = append(out, p)
		}
	}
	return out
}

// parents maps every process to its parent, from /proc/<pid>/stat.
func parents() map[int]int {
	ents, err := os.ReadDir("/proc")
	if err != nil {
		return nil
	}
	out := map[int]int{}
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		data, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
		if err != nil {
			continue
		}
		s := string(data)
		i := strings.LastIndexByte(s, ')')
		if i < 0 {
			continue
		}
		f := strings.Fields(s[i+1:])
		if len(f) < 2 {
			continue
		}
		if pp, err := strconv.Atoi(f[1]); err == nil {
			out[pid] = pp
		}
	}
	return out
}

// descendants lists root and every process under it.
func descendants(root int) []int {
	par := parents()
	kids := map[int][]int{}
	for p, pp := range par {
		kids[pp] = append(kids[pp], p)
	}
	out := []int{root}
	for i := 0; i < len(out); i++ {
		out = append(out, kids[out[i]]...)
	}
	return out
}

// ticks reads the CPU ticks of each of pids that still runs.
func ticks(pids []int) map[int]int64 {
	out := map[int]int64{}
	for _, p := range pids {
		if v, err := proc.CPUTicks(p); err == nil {
			out[p] = v
		}
	}
	return out
}

// spent is the ticks spent between t0 and t1 by the processes in both.
func spent(t0, t1 map[int]int64) int64 {
	var sum int64
	for p, v := range t1 {
		if v0, ok := t0[p]; ok {
			sum += v - v0
		}
	}
	return sum
}

// machineTicks reads the first line of /proc/stat: the ticks of every CPU
// and how many of them were busy (not idle or iowait).
func machineTicks() (busy, total int64) {
	data, err := os.ReadFile("/proc/stat")
	if err != nil {
		return 0, 0
	}
	line, _, _ := strings.Cut(string(data), "\n")
	f := strings.Fields(line)
	if len(f) < 6 || f[0] != "cpu" {
		return 0, 0
	}
	for i, v := range f[1:] {
		n, err := strconv.ParseInt(v, 10, 64)
		if err != nil {
			return 0, 0
		}
		if i >= 7 { // guest and guest_nice are already in user and nice
			break
		}
		total += n
		if i != 3 && i != 4 { // idle, iowait
			busy += n
		}
	}
	return busy, total
}

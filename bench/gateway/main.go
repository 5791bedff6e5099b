// Command gateway prints the gateway figures of issue 14 on this machine: a
// core of 3 real `robonet up` processes (the gateway on member 0 only) and
// real edge processes (`robonet up --edge`) up to -nodes live nodes, then
//
//   - the gateway node's CPU with the fleet idle and nobody watching, with
//     one dashboard socket (`/api/live`, watching one node's gauges), and
//     with -viewers sockets;
//   - dashboard update latency: from a new edge's `up` line to the first
//     `nodes` message on the socket that lists it alive;
//   - `GET /api/nodes` latency with the whole fleet.
//
// It measures and asserts nothing.
//
//	go run ./bench/gateway                    # 100 nodes (3 core + 97 edges), 5 joins
//	go run ./bench/gateway -nodes 20 -v       # a small run while developing
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/coder/websocket"
	"github.com/nats-io/nats.go"

	"github.com/robonet-mesh/robonet/bench/internal/proc"
	"github.com/robonet-mesh/robonet/mesh"
	"github.com/robonet-mesh/robonet/subjects"
	"github.com/robonet-mesh/robonet/trust"
	"github.com/robonet-mesh/robonet/wire"
)

const upMarker = " up as chevron "

type bench struct {
	bin     string
	tmp     string
	ps      proc.Group
	verbose bool
	secret  string
	routes  []string
	gwURL   string
	token   string
	core    []*proc.Child
	coreDir []string
	coreURL []string
}

func main() { os.Exit(run()) }

func run() int {
	var (
		bin     string
		nodes   int
		joins   int
		viewers int
		idle    time.Duration
		verbose bool
	)
	flag.StringVar(&bin, "bin", "", "robonet binary (default: go build ./cmd/robonet)")
	flag.IntVar(&nodes, "nodes", 100, "live nodes: 3 core members and nodes-3 edges")
	flag.IntVar(&joins, "joins", 5, "edges started one at a time for the update latency")
	flag.IntVar(&viewers, "viewers", 10, "dashboard sockets for the many-viewers CPU figure")
	flag.DurationVar(&idle, "idle", 20*time.Second, "window for each CPU figure")
	flag.BoolVar(&verbose, "v", false, "progress on stderr")
	flag.Parse()
	if nodes < 3 {
		fmt.Fprintln(os.Stderr, "gateway: -nodes must be at least 3")
		return 2
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	b := &bench{verbose: verbose}
	var err error
	if b.tmp, err = os.MkdirTemp("", "robonet-gwbench-"); err != nil {
		fmt.Fprintln(os.Stderr, "gateway:", err)
		return 1
	}
	defer func() {
		b.ps.KillAll()
		_ = os.RemoveAll(b.tmp)
	}()
	if b.bin = bin; b.bin == "" {
		b.bin = filepath.Join(b.tmp, "robonet")
		b.logf("building ./cmd/robonet")
		if out, err := exec.CommandContext(ctx, "go", "build", "-o", b.bin, "./cmd/robonet").CombinedOutput(); err != nil {
			fmt.Fprintf(os.Stderr, "gateway: go build: %v\n%s", err, out)
			return 1
		}
	}
	if err := b.figures(ctx, nodes, joins, viewers, idle); err != nil {
		fmt.Fprintln(os.Stderr, "gateway:", err)
		return 1
	}
	return 0
}

func (b *bench) logf(format string, a ...any) {
	if b.verbose {
		fmt.Fprintf(os.Stderr, "gateway: "+format+"\n", a...)
	}
}

func (b *bench) figures(ctx context.Context, nodes, joins, viewers int, idle time.Duration) error {
	fmt.Printf("gateway figures: %d live nodes (3 core + %d edges), load %s\n", nodes, nodes-3, proc.FormatLoad(proc.LoadAvg()))
	if err := b.startCore(ctx); err != nil {
		return err
	}
	b.logf("starting %d edges", nodes-3)
	var names []string
	for i := range nodes - 3 {
		names = append(names, fmt.Sprint("edge", i))
	}
	if _, err := b.startEdges(ctx, names); err != nil {
		return err
	}
	if err := b.waitAlive(ctx, nodes, 180*time.Second); err != nil {
		return err
	}
	if err := b.makeToken(ctx); err != nil {
		return err
	}
	gw := b.core[0].Pid()
	cpu := func(label string) error {
		v, err := proc.CPUOver(ctx, []int{gw}, idle)
		if err != nil {
			return err
		}
		fig(label, fmt.Sprintf("%.1f ms/s (%.1f%% of a core)", v[0], v[0]/10), "")
		return nil
	}
	if err := cpu("gateway node CPU, nobody watching"); err != nil {
		return err
	}
	sock, err := b.dial(ctx)
	if err != nil {
		return err
	}
	defer sock.close()
	if err := sock.send(ctx, map[string]string{"type": "watch", "chevron": "1"}); err != nil {
		return err
	}
	if err := cpu("gateway node CPU, 1 dashboard (1 node's gauges)"); err != nil {
		return err
	}
	var more []*socket
	for range viewers - 1 {
		s, err := b.dial(ctx)
		if err != nil {
			return err
		}
		defer s.close()
		more = append(more, s)
	}
	if err := cpu(fmt.Sprintf("gateway node CPU, %d dashboards", viewers)); err != nil {
		return err
	}
	for _, s := range more {
		s.close()
	}
	joined, err := b.watchJoins(ctx)
	if err != nil {
		return err
	}
	var lat []float64
	for i := range joins {
		name := fmt.Sprint("late", i)
		seen := sock.await(func(ms []wire.Member) bool {
			for _, m := range ms {
				if m.Name == name && m.State == wire.StateAlive {
					return true
				}
			}
			return false
		})
		started, err := b.startEdges(ctx, []string{name})
		if err != nil {
			return err
		}
		select {
		case at := <-seen:
			j, ok := joined(name)
			if !ok {
				return fmt.Errorf("%s is on the page but its join event never arrived", name)
			}
			d := at.Sub(j)
			lat = append(lat, float64(d.Microseconds())/1000)
			b.logf("%s: on the page %.1f ms after its join event (its up line came %.0f ms after the event)",
				name, float64(d.Microseconds())/1000, float64(started[0].ReadyAt().Sub(j).Milliseconds()))
		case <-time.After(30 * time.Second):
			return fmt.Errorf("%s never appeared alive on the dashboard socket", name)
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	fig(fmt.Sprintf("node join → on the page (join event → socket), %d joins", joins),
		fmt.Sprintf("p50 %.0f ms, max %.0f ms", proc.Percentile(lat, 0.5), proc.Percentile(lat, 1)), "≤ 1 s")
	var api []float64
	for range 20 {
		t0 := time.Now()
		if _, err := b.get(ctx, "/api/nodes"); err != nil {
			return err
		}
		api = append(api, float64(time.Since(t0).Microseconds())/1000)
	}
	fig(fmt.Sprintf("GET /api/nodes with %d nodes, 20 requests", nodes+joins), fmt.Sprintf("p50 %.1f ms, p95 %.1f ms", proc.Percentile(api, 0.5), proc.Percentile(api, 0.95)), "")
	return nil
}

func (b *bench) startCore(ctx context.Context) error {
	addrs, err := proc.LocalAddrs(7)
	if err != nil {
		return err
	}
	if b.secret, err = trust.GenerateSecret(); err != nil {
		return err
	}
	b.routes = addrs[3:6]
	b.gwURL = "http://" + addrs[6]
	for i := range 3 {
		data := filepath.Join(b.tmp, fmt.Sprint("core", i))
		gw := "off"
		if i == 0 {
			gw = addrs[6]
		}
		args := []string{"up", "--log-level", "warn", "--data", data, "--listen", addrs[i], "--cluster", b.routes[i],
			"--join", strings.Join(b.routes, ","), "--swarm", "gwbench", "--token", b.secret, "--gateway", gw}
		if i == 0 {
			args = append(args, "--founder")
		}
		c, err := b.ps.Start(fmt.Sprint("core", i), b.bin, args, upMarker)
		if err != nil {
			return err
		}
		b.core, b.coreDir, b.coreURL = append(b.core, c), append(b.coreDir, data), append(b.coreURL, "nats://"+addrs[i])
	}
	for _, c := range b.core {
		if err := c.WaitReady(ctx, time.Now().Add(90*time.Second)); err != nil {
			return err
		}
	}
	return nil
}

// startEdges starts an edge for each name at once and waits for their
// `up` lines.
func (b *bench) startEdges(ctx context.Context, names []string) ([]*proc.Child, error) {
	addrs, err := proc.LocalAddrs(len(names))
	if err != nil {
		return nil, err
	}
	var started []*proc.Child
	for i, name := range names {
		args := []string{"up", "--edge", "--log-level", "warn", "--join", strings.Join(b.routes, ","), "--data", filepath.Join(b.tmp, name),
			"--listen", addrs[i], "--swarm", "gwbench", "--token", b.secret, "--name", name, "--gateway", "off"}
		c, err := b.ps.Start(name, b.bin, args, upMarker)
		if err != nil {
			return started, err
		}
		started = append(started, c)
	}
	for _, c := range started {
		if err := c.WaitReady(ctx, time.Now().Add(180*time.Second)); err != nil {
			return started, err
		}
	}
	return started, nil
}

func (b *bench) waitAlive(ctx context.Context, n int, d time.Duration) error {
	deadline := time.Now().Add(d)
	for {
		alive, err := b.aliveVia(ctx)
		if err == nil && alive >= n {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%d of %d nodes alive after %s (last error: %v)", alive, n, d, err)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(500 * time.Millisecond):
		}
	}
}

// aliveVia counts alive nodes with `robonet nodes --json` on core member 0.
func (b *bench) aliveVia(ctx context.Context) (int, error) {
	out, err := exec.CommandContext(ctx, b.bin, "nodes", "--json", "--data", b.coreDir[0], "--server", b.coreURL[0]).Output()
	if err != nil {
		return 0, err
	}
	var ms []wire.Member
	if err := json.Unmarshal(out, &ms); err != nil {
		return 0, err
	}
	alive := 0
	for _, m := range ms {
		if m.State == wire.StateAlive {
			alive++
		}
	}
	return alive, nil
}

// watchJoins subscribes to the swarm's join events (flat chevrons) and
// returns when each node's arrived, by name.
func (b *bench) watchJoins(ctx context.Context) (func(name string) (time.Time, bool), error) {
	c, err := mesh.Connect(ctx, mesh.Options{Server: b.coreURL[1], SeedFile: filepath.Join(b.coreDir[0], "operator.nk"), Name: "gwbench", Timeout: 5 * time.Second})
	if err != nil {
		return nil, fmt.Errorf("watch joins: %w", err)
	}
	var mu sync.Mutex
	at := map[string]time.Time{}
	sub, err := c.Conn().Subscribe(subjects.Root+".*.evt."+subjects.EvtJoin, func(m *nats.Msg) {
		now := time.Now()
		var e wire.Event
		if json.Unmarshal(m.Data, &e) == nil && e.Name != "" {
			mu.Lock()
			if _, ok := at[e.Name]; !ok {
				at[e.Name] = now
			}
			mu.Unlock()
		}
	})
	if err == nil {
		err = c.Conn().Flush()
	}
	if err != nil {
		c.Close()
		return nil, fmt.Errorf("watch joins: %w", err)
	}
	go func() {
		<-ctx.Done()
		_ = sub.Unsubscribe()
		c.Close()
	}()
	return func(name string) (time.Time, bool) {
		mu.Lock()
		defer mu.Unlock()
		t, ok := at[name]
		return t, ok
	}, nil
}

// makeToken makes an observer token with the founder's operator key.
func (b *bench) makeToken(ctx context.Context) error {
	cmd := exec.CommandContext(ctx, b.bin, "gateway", "token", "create", "--role", "observer", "--ttl", "1h",
		"--data", b.coreDir[0], "--server", b.coreURL[0])
	out, err := cmd.Output()
	if err != nil {
		var ee *exec.ExitError
		if errors.As(err, &ee) {
			return fmt.Errorf("gateway token create: %v: %s", err, ee.Stderr)
		}
		return fmt.Errorf("gateway token create: %w", err)
	}
	b.token = strings.TrimSpace(string(out))
	return nil
}

func (b *bench) get(ctx context.Context, path string) ([]byte, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, b.gwURL+path, nil)
	if err != nil {
		return nil, err
	}
	req.Header.Set("Authorization", "Bearer "+b.token)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("GET %s: %s: %s", path, resp.Status, body)
	}
	return body, err
}

// socket is one dashboard WebSocket; it reads every message and hands
// `nodes` lists to whoever awaits one.
type socket struct {
	c      *websocket.Conn
	cancel context.CancelFunc
	mu     sync.Mutex
	wants  []want
}

type want struct {
	match func([]wire.Member) bool
	ch    chan time.Time
}

func (b *bench) dial(ctx context.Context) (*socket, error) {
	rctx, cancel := context.WithCancel(ctx)
	h := http.Header{"Authorization": {"Bearer " + b.token}}
	c, _, err := websocket.Dial(rctx, strings.Replace(b.gwURL, "http", "ws", 1)+"/api/live", &websocket.DialOptions{HTTPHeader: h})
	if err != nil {
		cancel()
		return nil, fmt.Errorf("dial /api/live: %w", err)
	}
	c.SetReadLimit(64 << 20)
	s := &socket{c: c, cancel: cancel}
	go s.read(rctx)
	return s, nil
}

func (s *socket) read(ctx context.Context) {
	for {
		_, data, err := s.c.Read(ctx)
		if err != nil {
			return
		}
		at := time.Now()
		var m struct {
			Type  string        `json:"type"`
			Nodes []wire.Member `json:"nodes"`
		}
		if json.Unmarshal(data, &m) != nil || m.Type != "nodes" {
			continue
		}
		s.mu.Lock()
		keep := s.wants[:0]
		for _, w := range s.wants {
			if w.match(m.Nodes) {
				w.ch <- at
				continue
			}
			keep = append(keep, w)
		}
		s.wants = keep
		s.mu.Unlock()
	}
}

// await returns a channel that gets the arrival time of the first `nodes`
// message from now on that match accepts.
func (s *socket) await(match func([]wire.Member) bool) <-chan time.Time {
	ch := make(chan time.Time, 1)
	s.mu.Lock()
	s.wants = append(s.wants, want{match: match, ch: ch})
	s.mu.Unlock()
	return ch
}

func (s *socket) send(ctx context.Context, v any) error {
	data, err := json.Marshal(v)
	if err != nil {
		return err
	}
	return s.c.Write(ctx, websocket.MessageText, data)
}

func (s *socket) close() {
	_ = s.c.Close(websocket.StatusNormalClosure, "")
	s.cancel()
}

// fig prints one figure line.
func fig(name, value, target string) {
	if target != "" {
		target = "  (target " + target + ")"
	}
	fmt.Printf("  %-58s %s%s\n", name, value, target)
}

package main

import (
	"context"
	"encoding/json"
	"fmt"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/robonet-mesh/robonet/bench/internal/proc"
	"github.com/robonet-mesh/robonet/command"
	"github.com/robonet-mesh/robonet/mesh"
	"github.com/robonet-mesh/robonet/subjects"
	"github.com/robonet-mesh/robonet/wire"
)

// simPrefix is the chevron prefix of the simulated edges: 9000.1 … 9000.N.
const simPrefix = "9000"

// scale runs one scale: a fresh core of 3, the real edges, n simulated
// edges, and prints its figures.
func (b *bench) scale(ctx context.Context, n int) error {
	coreKind := "robonet up"
	if b.cfg.coreKind == "self" {
		coreKind = fmt.Sprintf("package node, peer bounds %d", b.cfg.maxPeers)
	}
	fmt.Printf("\n== core 3 (%s) + %d real edges + %d simulated edges · sim heartbeat %v · %d sim processes, %d edges per connection · load %s\n",
		coreKind, b.realEdges(), n, b.cfg.hb, b.cfg.simProcs, b.cfg.perConn, loadAvg())
	dir := filepath.Join(b.tmp, fmt.Sprint("scale-", n))
	t0 := time.Now()
	c, err := b.startCore(ctx, dir)
	if err != nil {
		return err
	}
	defer c.close()
	b.logf("core of 3 up in %v", time.Since(t0).Round(time.Millisecond))
	fig("core of 3: exec → every member sees 3 alive", ms(time.Since(t0)), "")

	var edges []*child
	if b.realEdges() > 0 {
		if edges, err = b.startEdges(ctx, c, dir); err != nil {
			return err
		}
	}
	expected := 3 + len(edges) + n
	if n > 0 {
		// Edges watch rn_nodes (each verifies every registry record):
		// what the simulated edges' registration costs each real edge.
		t0 := make([]int64, len(edges))
		for i, p := range edges {
			t0[i], _ = proc.CPUTicks(p.Pid())
		}
		if err := b.startSims(ctx, c, dir, n, expected); err != nil {
			return err
		}
		var spent []float64
		for i, p := range edges {
			t1, _ := proc.CPUTicks(p.Pid())
			spent = append(spent, float64(t1-t0[i])/proc.ClockTick)
		}
		if len(spent) > 0 {
			fig(fmt.Sprintf("real edge CPU while %d edges registered p50 / max", n), fmt.Sprintf("%.1f / %.1f s", proc.Percentile(spent, .5), proc.Percentile(spent, 1)), "")
		}
	}
	b.settle(ctx, 5*time.Second)
	b.idleFigures(ctx, c, edges)
	if err := b.pingFigures(ctx, c, expected); err != nil {
		fmt.Printf("  run all ping: %v\n", err)
	}
	if len(edges) >= 2 {
		b.leaveFigures(ctx, c, edges, n > 0)
	}
	return nil
}

func (b *bench) realEdges() int {
	if !b.edgeOK {
		return 0
	}
	return b.cfg.edges
}

func (b *bench) settle(ctx context.Context, d time.Duration) {
	select {
	case <-ctx.Done():
	case <-time.After(d):
	}
}

// startEdges starts the real edges all at once and waits until the core's
// nodes view lists each of them alive.
func (b *bench) startEdges(ctx context.Context, c *core, dir string) ([]*child, error) {
	n := b.cfg.edges
	addrs, err := proc.LocalAddrs(n)
	if err != nil {
		return nil, err
	}
	join := strings.Join(c.routes, ",")
	var edges []*child
	t0 := time.Now()
	for i := range n {
		data := filepath.Join(dir, fmt.Sprint("edge", i))
		bin, args := b.self, []string{"edge"}
		if b.cfg.coreKind != "self" {
			bin, args = b.bin, []string{"up", "--edge", "--log-level", "warn"}
		}
		args = append(args, "--join", join, "--data", data, "--listen", addrs[i], "--swarm", "scale", "--token", c.secret, "--name", fmt.Sprint("edge", i))
		p, err := b.start(fmt.Sprint("edge", i), bin, args, upMarker)
		if err != nil {
			return nil, err
		}
		p.data, p.listen = data, addrs[i]
		edges = append(edges, p)
	}
	names := map[string]bool{}
	for _, p := range edges {
		names[p.Label] = true
	}
	var lastUp time.Time
	for _, p := range edges {
		if err := p.WaitReady(ctx, time.Now().Add(120*time.Second)); err != nil {
			return edges, err
		}
		if p.ReadyAt().After(lastUp) {
			lastUp = p.ReadyAt()
		}
	}
	at, err := poll(ctx, 120*time.Second, 100*time.Millisecond, func(ctx context.Context) (bool, error) {
		ms, err := nodesView(ctx, c.client, c.other())
		if err != nil {
			return false, err
		}
		alive := 0
		for _, m := range ms {
			if names[m.Name] && m.State == wire.StateAlive {
				alive++
			}
		}
		if alive != n {
			return false, fmt.Errorf("%d of %d edges alive in the core's view", alive, n)
		}
		return true, nil
	})
	if err != nil {
		return edges, fmt.Errorf("%d edges joining: %w", n, err)
	}
	fig(fmt.Sprintf("%d edges started at once: exec → last `up` line", n), ms(lastUp.Sub(t0)), "")
	fig(fmt.Sprintf("%d edges started at once: exec → all alive in core view", n), ms(at.Sub(t0)), "")
	return edges, nil
}

// watchLeave subscribes to every leave event and returns a function that
// says when the first one for chev arrived.
func (b *bench) watchLeave(c *core, chev string) func() (time.Time, bool) {
	var mu sync.Mutex
	var at time.Time
	var subs []*nats.Subscription
	for _, subj := range subjects.EventWildcards(subjects.EvtLeave) {
		sub, err := c.client.Conn().Subscribe(subj, func(m *nats.Msg) {
			var e wire.Event
			if json.Unmarshal(m.Data, &e) != nil || e.Chevron != chev {
				return
			}
			mu.Lock()
			defer mu.Unlock()
			if at.IsZero() {
				at = time.Now()
			}
		})
		if err == nil {
			subs = append(subs, sub)
		}
	}
	_ = c.client.Conn().Flush()
	return func() (time.Time, bool) {
		for _, s := range subs {
			_ = s.Unsubscribe()
		}
		mu.Lock()
		defer mu.Unlock()
		return at, !at.IsZero()
	}
}

// chevronOf reads the chevron from a `robonet up` line.
func chevronOf(p *child) string {
	_, rest, ok := strings.Cut(p.ReadyLine(), upMarker)
	if !ok {
		return ""
	}
	f := strings.Fields(rest)
	if len(f) == 0 {
		return ""
	}
	return f[0]
}

// startSims starts the sim children and waits until the core's view lists
// expected members alive.
func (b *bench) startSims(ctx context.Context, c *core, dir string, n, expected int) error {
	k := max(1, min(b.cfg.simProcs, n))
	urls := strings.Join(c.urls(), ",")
	seed := filepath.Join(c.members[0].data, operatorSeed)
	t0 := time.Now()
	var sims []*child
	for i := range k {
		from, to := 1+i*n/k, (i+1)*n/k
		sdir := filepath.Join(dir, fmt.Sprint("sim", i))
		if err := mkdir(sdir); err != nil {
			return err
		}
		p, err := b.start(fmt.Sprint("sim", i), b.self, []string{"sim", "-urls", urls, "-seed", seed, "-prefix", simPrefix,
			"-from", fmt.Sprint(from), "-to", fmt.Sprint(to), "-perconn", fmt.Sprint(b.cfg.perConn), "-hb", b.cfg.hb.String(), "-dir", sdir,
			"-rate", fmt.Sprint(b.cfg.regRate / float64(k))},
			simReadyLine)
		if err != nil {
			return err
		}
		sims = append(sims, p)
	}
	b.sims = sims
	var lastReady time.Time
	for _, p := range sims {
		if err := p.WaitReady(ctx, time.Now().Add(b.regWait(n))); err != nil {
			fig(fmt.Sprintf("%d simulated edges registered (rn_nodes Create each)", n), "NOT REACHED: "+err.Error(), "")
			return nil
		}
		if p.ReadyAt().After(lastReady) {
			lastReady = p.ReadyAt()
		}
	}
	fig(fmt.Sprintf("%d simulated edges registered (rn_nodes Create each)", n), ms(lastReady.Sub(t0)), "")
	var seen int
	// Each view of a big registry is megabytes the member builds under
	// its registry lock: ask every 5 s, not to slow what is measured.
	at, err := poll(ctx, b.regWait(n), 5*time.Second, func(ctx context.Context) (bool, error) {
		asked := time.Now()
		ms, err := nodesView(ctx, c.client, c.other())
		if err != nil {
			return false, err
		}
		st := states(ms)
		seen = st[wire.StateAlive]
		b.logf("core view: %d members %v (asked in %v)", len(ms), st, time.Since(asked).Round(time.Millisecond))
		if seen < expected {
			return false, fmt.Errorf("%d of %d alive in the core's view (%v)", seen, expected, st)
		}
		return true, nil
	})
	if err != nil {
		// Measure the rest anyway: what the core does with the edges it
		// did take in is a figure too.
		fig(fmt.Sprintf("all %d members alive in core view", expected), fmt.Sprintf("NOT REACHED: %v", err), "")
		return nil
	}
	fig(fmt.Sprintf("all %d members alive in core view", expected), ms(at.Sub(t0))+" from the sims' exec", "")
	return nil
}

// regWait bounds the registration of n simulated edges.
func (b *bench) regWait(n int) time.Duration {
	d := 90 * time.Second
	if b.cfg.regRate > 0 {
		d += time.Duration(float64(n) / b.cfg.regRate * float64(time.Second))
	}
	return d
}

// idleFigures measures CPU over the idle window: the core's three
// members (the heartbeat fan-in), the real edges, the sim children.
func (b *bench) idleFigures(ctx context.Context, c *core, edges []*child) {
	pids := c.pids()
	for _, p := range edges {
		pids = append(pids, p.Pid())
	}
	for _, p := range b.sims {
		pids = append(pids, p.Pid())
	}
	cpu, err := proc.CPUOver(ctx, pids, b.cfg.idle)
	if err != nil {
		fmt.Printf("  idle CPU: %v\n", err)
		return
	}
	core := cpu[:3]
	sum := core[0] + core[1] + core[2]
	fig(fmt.Sprintf("core CPU, idle, sum of 3 (over %v)", b.cfg.idle),
		fmt.Sprintf("%.0f ms/s = %.2f cores (members %.0f / %.0f / %.0f)", sum, sum/1000, core[0], core[1], core[2]), "≤ 1 core")
	var rss []float64
	for _, pid := range c.pids() {
		r, _ := rssMiB(pid)
		rss = append(rss, r)
	}
	fig("core RSS", fmt.Sprintf("%.0f / %.0f / %.0f MiB", rss[0], rss[1], rss[2]), "")
	if len(edges) > 0 {
		ec := cpu[3 : 3+len(edges)]
		var er []float64
		for _, p := range edges {
			r, _ := rssMiB(p.Pid())
			er = append(er, r)
		}
		fig("real edge idle CPU p50 / max", fmt.Sprintf("%.2f / %.2f ms/s", proc.Percentile(ec, .5), proc.Percentile(ec, 1)), "≤ 2 ms/s")
		fig("real edge RSS p50 / max", fmt.Sprintf("%.1f / %.1f MiB", proc.Percentile(er, .5), proc.Percentile(er, 1)), "≤ 30 MiB")
	}
	if len(b.sims) > 0 {
		var s, r float64
		for i, p := range b.sims {
			s += cpu[3+len(edges)+i]
			v, _ := rssMiB(p.Pid())
			r += v
		}
		fig("sim children (all simulated edges) CPU / RSS", fmt.Sprintf("%.0f ms/s / %.0f MiB", s, r), "")
	}
}

// pingFigures runs `run all ping` as the CLI does (registry view, then a
// signed gather of every member, replies verified against their keys).
func (b *bench) pingFigures(ctx context.Context, c *core, expected int) error {
	cat, err := command.New(command.Options{ListenBaseline: []string{}})
	if err != nil {
		return err
	}
	args, err := cat.ArgsFromWords("ping", nil)
	if err != nil {
		return err
	}
	sel, err := subjects.ParseSelector("all")
	if err != nil {
		return err
	}
	if _, err := c.client.Nodes(ctx); err != nil {
		b.note("at %d members mesh.Client.Nodes (what `robonet nodes` and `robonet run` call) fails: %v; the bench reads the same query without the 1 MiB decode limit", expected, err)
	}
	var walls, nodeMs []float64
	shown := 0 // results not ok logged (-v)
	accounted := 0
	var last string
	for r := range b.cfg.pings {
		t0 := time.Now()
		qctx, cancel := context.WithTimeout(ctx, 60*time.Second)
		members, err := nodesView(qctx, c.client, "")
		if err != nil {
			cancel()
			return err
		}
		tView := time.Since(t0)
		set := mesh.Resolve(sel, members)
		res, err := c.client.GatherSet(qctx, mesh.GatherRequest{Selector: "all", Verb: "ping", Args: args, Timeout: 30 * time.Second, From: "scale"}, sel, set, nil)
		cancel()
		if err != nil {
			return err
		}
		wall := time.Since(t0)
		walls = append(walls, wall.Seconds())
		for _, nr := range res.Results {
			if nr.Status == mesh.StatusOK {
				nodeMs = append(nodeMs, nr.Ms)
			} else if r == 0 && shown < 10 {
				shown++
				b.logf("ping: %s %s: %s %s %s", nr.Chevron, nr.Name, nr.Status, nr.Code, nr.Error)
			}
		}
		ok := res.Summary.OK == expected && len(set) == expected && res.Summary.Dropped == 0
		if ok {
			accounted++
		}
		last = res.Summary.Line
		b.logf("ping round %d: view %v, all %v: %s", r+1, tView.Round(time.Millisecond), wall.Round(time.Millisecond), res.Summary.Line)
		b.settle(ctx, 2*time.Second)
	}
	fig(fmt.Sprintf("run all ping, whole command p50 / p90 (%d rounds)", len(walls)),
		fmt.Sprintf("%.3f / %.3f s", proc.Percentile(walls, .5), proc.Percentile(walls, .9)), "p50 < 1 s")
	fig("run all ping, per-node reply p50 / p90", fmt.Sprintf("%.0f / %.0f ms", proc.Percentile(nodeMs, .5), proc.Percentile(nodeMs, .9)), "")
	fig(fmt.Sprintf("rounds with all %d members ok and accounted", expected), fmt.Sprintf("%d of %d (last: %s)", accounted, len(walls), last), "all")
	return nil
}

// leaveFigures SIGKILLs one real edge and SIGSTOPs another, and times
// until the core's view shows each offline; the stopped one is then
// continued and timed back to alive.
func (b *bench) leaveFigures(ctx context.Context, c *core, edges []*child, big bool) {
	every := 100 * time.Millisecond
	if big {
		every = 250 * time.Millisecond // each view is megabytes at scale
	}
	for i, sig := range []syscall.Signal{syscall.SIGKILL, syscall.SIGSTOP} {
		p := edges[len(edges)-1-i]
		chev := chevronOf(p)
		leaveAt := b.watchLeave(c, chev)
		t0 := time.Now()
		_ = p.Cmd.Process.Signal(sig)
		at, err := poll(ctx, 30*time.Second, every, func(ctx context.Context) (bool, error) {
			ms, err := nodesView(ctx, c.client, c.other())
			if err != nil {
				return false, err
			}
			return stateOf(ms, chev) == wire.StateOffline, nil
		})
		name := map[syscall.Signal]string{syscall.SIGKILL: "SIGKILL", syscall.SIGSTOP: "SIGSTOP (frozen, no FIN)"}[sig]
		target := map[syscall.Signal]string{syscall.SIGKILL: "≤ 3 s", syscall.SIGSTOP: "≤ 6 s"}[sig]
		if err != nil {
			fig("edge "+name+" → offline in core view", "not seen: "+err.Error(), target)
			continue
		}
		ev := "no leave event"
		if t, ok := leaveAt(); ok {
			ev = "leave event at " + ms(t.Sub(t0))
		}
		fig("edge "+name+" → offline in core view", fmt.Sprintf("%s (poll every %v; %s)", ms(at.Sub(t0)), every, ev), target)
		if sig == syscall.SIGSTOP {
			t1 := time.Now()
			_ = p.Cmd.Process.Signal(syscall.SIGCONT)
			at, err := poll(ctx, 30*time.Second, every, func(ctx context.Context) (bool, error) {
				ms, err := nodesView(ctx, c.client, c.other())
				if err != nil {
					return false, err
				}
				return stateOf(ms, chev) == wire.StateAlive, nil
			})
			if err != nil {
				fig("frozen edge SIGCONT → alive again", "not seen: "+err.Error(), "")
			} else {
				fig("frozen edge SIGCONT → alive again", ms(at.Sub(t1)), "")
			}
		}
	}
}

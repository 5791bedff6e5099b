package main

import (
	"context"
	"fmt"
	"path/filepath"
	"strings"
	"time"

	"github.com/robonet-mesh/robonet/bench/internal/proc"
	"github.com/robonet-mesh/robonet/trust"
)

// swarm starts n route-clustered members at once (what every node is
// before edge mode: no --edge), and prints the time to form and the idle
// CPU and RSS per node.
func (b *bench) swarm(ctx context.Context, n int) error {
	fmt.Printf("\n== route-clustered swarm of %d (every member a core member) · load %s\n", n, loadAvg())
	addrs, err := proc.LocalAddrs(2 * n)
	if err != nil {
		return err
	}
	secret, err := trust.GenerateSecret()
	if err != nil {
		return err
	}
	routes := addrs[n:]
	join := strings.Join(routes, ",")
	dir := filepath.Join(b.tmp, fmt.Sprint("swarm-", n))
	var ps []*child
	t0 := time.Now()
	for i := range n {
		data := filepath.Join(dir, fmt.Sprint("n", i))
		args := []string{"up", "--data", data, "--listen", addrs[i], "--log-level", "warn",
			"--cluster", routes[i], "--join", join, "--swarm", fmt.Sprint("route", n), "--token", secret}
		if i == 0 {
			args = append(args, "--founder")
		}
		p, err := b.start(fmt.Sprint("n", i), b.swarmBin, args, upMarker)
		if err != nil {
			return err
		}
		p.data, p.listen = data, addrs[i]
		ps = append(ps, p)
	}
	for _, p := range ps {
		if err := p.WaitReady(ctx, time.Now().Add(180*time.Second)); err != nil {
			return err
		}
	}
	client, err := connect(ctx, ps[0].url(), ps[0].data, "scale-swarm")
	if err != nil {
		return fmt.Errorf("%s: %w", ps[0].Label, err)
	}
	defer client.Close()
	at, _, err := formed(ctx, client, n, 120*time.Second)
	if err != nil {
		return fmt.Errorf("swarm of %d: %w", n, err)
	}
	fig(fmt.Sprintf("%d members started at once: exec → all see %d alive", n, n), ms(at.Sub(t0)), "")
	b.settle(ctx, 5*time.Second)
	var pids []int
	for _, p := range ps {
		pids = append(pids, p.Pid())
	}
	cpu, err := proc.CPUOver(ctx, pids, b.cfg.idle)
	if err != nil {
		return err
	}
	var rss []float64
	sum := 0.0
	for i, pid := range pids {
		r, _ := rssMiB(pid)
		rss = append(rss, r)
		sum += cpu[i]
	}
	fig("idle CPU per node p50 / max", fmt.Sprintf("%.1f / %.1f ms/s (all %d: %.0f ms/s)", proc.Percentile(cpu, .5), proc.Percentile(cpu, 1), n, sum), "")
	fig("RSS per node p50 / max", fmt.Sprintf("%.0f / %.0f MiB", proc.Percentile(rss, .5), proc.Percentile(rss, 1)), "")
	return nil
}

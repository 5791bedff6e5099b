// Command gather prints scatter/gather figures: the time for `ping` to be
// gathered from 100, 1,000 and 10,000 responders, against a bare nats.go
// request-to-many baseline in the same run (so the figure is a ratio), and
// the commands per second one node's command host sustains.
//
// Responders are real node.CommandHost instances (the handler path a node
// runs: decode, catalogue validation, run, reply, audit event) on one
// embedded nats-server, spread over in-process connections; the gatherer is
// mesh.Client.GatherSet with a resolved set, so the registry query is not
// part of the figure.
package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"runtime"
	"runtime/pprof"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"text/tabwriter"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"

	"github.com/robonet-mesh/robonet/command"
	"github.com/robonet-mesh/robonet/mesh"
	"github.com/robonet-mesh/robonet/node"
	"github.com/robonet-mesh/robonet/subjects"
	"github.com/robonet-mesh/robonet/wire"
)

func main() {
	sizes := flag.String("n", "100,1000,10000", "responder counts")
	runs := flag.Int("runs", 15, "gathers per size (each alternated with a bare one)")
	perConn := flag.Int("per-conn", 100, "responders per NATS connection")
	cps := flag.Duration("cps", 3*time.Second, "how long to measure commands per second (0: skip)")
	cpuprofile := flag.String("cpuprofile", "", "write a CPU profile here")
	flag.Parse()
	if *cpuprofile != "" {
		f, err := os.Create(*cpuprofile)
		if err != nil {
			fmt.Fprintln(os.Stderr, "gather:", err)
			os.Exit(1)
		}
		_ = pprof.StartCPUProfile(f)
		defer pprof.StopCPUProfile()
	}
	if err := run(*sizes, *runs, *perConn, *cps); err != nil {
		fmt.Fprintln(os.Stderr, "gather:", err)
		pprof.StopCPUProfile()
		os.Exit(1)
	}
}

func run(sizes string, runs, perConn int, cps time.Duration) error {
	srv, err := server.NewServer(&server.Options{DontListen: true, NoSigs: true, MaxPayload: node.MaxPayload})
	if err != nil {
		return err
	}
	srv.Start()
	defer srv.Shutdown()
	if !srv.ReadyForConnections(5 * time.Second) {
		return fmt.Errorf("server not ready")
	}
	conn := func() (*nats.Conn, error) { return nats.Connect("", nats.InProcessServer(srv)) }
	cat, err := command.New(command.Options{ListenBaseline: []string{}})
	if err != nil {
		return err
	}
	fmt.Printf("gather ping, %d runs per size, GOMAXPROCS %d, %s\n", runs, runtime.GOMAXPROCS(0), time.Now().Format(time.RFC3339))
	tw := tabwriter.NewWriter(os.Stdout, 2, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "responders\trobonet p50\tp99\tbare p50\tp99\tratio (p50)\tall answered")
	for _, f := range strings.Split(sizes, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(f))
		if err != nil || n < 1 || n > 60000 {
			return fmt.Errorf("-n %q: want 1..60000", f)
		}
		row, err := measure(conn, cat, n, runs, perConn)
		if err != nil {
			return err
		}
		fmt.Fprintln(tw, row)
		tw.Flush()
	}
	if cps > 0 {
		return commandsPerSecond(conn, cat, cps)
	}
	return nil
}

func measure(conn func() (*nats.Conn, error), cat *command.Catalogue, n, runs, perConn int) (string, error) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var conns []*nats.Conn
	defer func() {
		for _, c := range conns {
			c.Close()
		}
	}()
	var hosts []*node.CommandHost
	var members []wire.Member
	var cur *nats.Conn
	for i := 0; i < n; i++ {
		if i%perConn == 0 {
			c, err := conn()
			if err != nil {
				return "", err
			}
			conns = append(conns, c)
			cur = c
		}
		chev, _ := subjects.Flat(uint16(i + 1))
		h, err := node.NewCommandHost(ctx, cur, chev, "b"+chev.String(), cat, nil)
		if err != nil {
			return "", err
		}
		hosts = append(hosts, h)
		members = append(members, wire.Member{Chevron: chev.String(), Name: "b" + chev.String(), State: wire.StateAlive})
		// The bare baseline's responders: a plain subscription answering at once.
		if _, err := cur.Subscribe("bare.ping", func(m *nats.Msg) { _ = m.Respond([]byte(`{"pong":true}`)) }); err != nil {
			return "", err
		}
	}
	defer func() {
		for _, h := range hosts {
			h.Stop()
		}
	}()
	for _, c := range conns {
		if err := c.Flush(); err != nil {
			return "", err
		}
	}
	cnc, err := conn()
	if err != nil {
		return "", err
	}
	defer cnc.Close()
	client := mesh.NewClient(cnc)
	sel, _ := subjects.ParseSelector("all")
	var rob, bare []time.Duration
	complete := true
	for r := 0; r < runs+1; r++ {
		t0 := time.Now()
		res, err := client.GatherSet(ctx, mesh.GatherRequest{Selector: "all", Verb: "ping", Timeout: 30 * time.Second}, sel, members, nil)
		d := time.Since(t0)
		if err != nil {
			return "", err
		}
		if res.Summary.OK != n {
			complete = false
		}
		b, ok, err := bareGather(cnc, n)
		if err != nil {
			return "", err
		}
		complete = complete && ok
		if r == 0 {
			continue // warm-up
		}
		rob, bare = append(rob, d), append(bare, b)
	}
	rp50, rp99 := pct(rob, 0.5), pct(rob, 0.99)
	bp50, bp99 := pct(bare, 0.5), pct(bare, 0.99)
	return fmt.Sprintf("%d\t%s\t%s\t%s\t%s\t%.2fx\t%v", n, ms(rp50), ms(rp99), ms(bp50), ms(bp99),
		float64(rp50)/float64(bp50), complete), nil
}

// bareGather is the baseline: one publish, n plain responders, wait for n replies.
func bareGather(nc *nats.Conn, n int) (time.Duration, bool, error) {
	inbox := nc.NewInbox()
	ch := make(chan *nats.Msg, n+16)
	sub, err := nc.ChanSubscribe(inbox, ch)
	if err != nil {
		return 0, false, err
	}
	defer sub.Unsubscribe()
	_ = sub.SetPendingLimits(-1, -1)
	t0 := time.Now()
	if err := nc.PublishRequest("bare.ping", inbox, []byte(`{}`)); err != nil {
		return 0, false, err
	}
	timeout := time.After(30 * time.Second)
	for got := 0; got < n; got++ {
		select {
		case m := <-ch:
			var v map[string]any
			_ = json.Unmarshal(m.Data, &v) // a client looks at what it gathers
		case <-timeout:
			return time.Since(t0), false, nil
		}
	}
	return time.Since(t0), true, nil
}

// commandsPerSecond drives one command host with concurrent pings.
func commandsPerSecond(conn func() (*nats.Conn, error), cat *command.Catalogue, dur time.Duration) error {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	hnc, err := conn()
	if err != nil {
		return err
	}
	defer hnc.Close()
	chev, _ := subjects.Flat(1)
	h, err := node.NewCommandHost(ctx, hnc, chev, "rn1", cat, nil)
	if err != nil {
		return err
	}
	defer h.Stop()
	cnc, err := conn()
	if err != nil {
		return err
	}
	defer cnc.Close()
	body, _ := json.Marshal(wire.Request{Verb: "ping", ID: "bench"})
	for _, workers := range []int{1, 16, 64} {
		var done, failed atomic.Int64
		deadline := time.Now().Add(dur)
		var wg sync.WaitGroup
		for w := 0; w < workers; w++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for time.Now().Before(deadline) {
					m, err := cnc.Request("rn.1.cmd.ping", body, 5*time.Second)
					var res wire.Result
					if err != nil || json.Unmarshal(m.Data, &res) != nil || res.Status != wire.StatusOK {
						failed.Add(1)
						continue
					}
					done.Add(1)
				}
			}()
		}
		wg.Wait()
		fmt.Printf("one node, ping, %2d concurrent requesters: %8.0f commands/s (%d failed)\n",
			workers, float64(done.Load())/dur.Seconds(), failed.Load())
	}
	return nil
}

func pct(ds []time.Duration, p float64) time.Duration {
	s := slices.Clone(ds)
	slices.Sort(s)
	i := int(p*float64(len(s))+0.5) - 1
	return s[max(0, min(i, len(s)-1))]
}

func ms(d time.Duration) string { return fmt.Sprintf("%.1f ms", float64(d.Microseconds())/1000) }

// Command federation prints robonet's federation figures (issue 11):
// gather latency inside one swarm against one and two leaf hops through
// the target swarm's ambassador, how fast a silently dropped leaf link
// shows as partitioned, how fast it comes back after the heal, and how
// long the hub's rn_fed_events takes to catch up with the events a child
// produced while cut off (counted: none lost, none duplicated).
//
// Everything runs in this process: real robonet nodes (internal/testmesh:
// embedded nats-servers, clustered JetStream, TLS leaf links on
// 127.0.0.1) with the federated features beside each node started as
// `robonet up` starts them (directory, ambassador, and on hubs the
// authority publisher). A target swarm larger than -full nodes is made up
// with responders (responders.go): registered, heartbeating node
// identities answering through a real command host, on the real nodes'
// servers. Partitions come from testmesh.Proxy (bytes dropped, sockets
// kept); -rtt puts a delay proxy in front of every hub leaf listener.
//
// It measures; it asserts nothing.
//
// Usage, from inside the module:
//
//	go run ./bench/federation [-nodes 30] [-full 3] [-rounds 200] [-rtt 0] [-runs 5] [-events 300] [-partition 10s] [-v]
//
// See bench/README.md for what each figure measures.
package main

import (
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"runtime"
	"runtime/pprof"
	"slices"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/robonet-mesh/robonet/bench/internal/scope"
)

// config is the command line.
type config struct {
	nodes, full, rounds, warm int
	rtt                       time.Duration
	runs, events              int
	hold                      time.Duration
	verbose                   bool
	cpuprofile                string
}

func main() {
	var c config
	flag.IntVar(&c.nodes, "nodes", 30, "nodes of the larger target swarm (the smaller has 3)")
	flag.IntVar(&c.full, "full", 3, "how many of a target swarm's nodes are full nodes; the rest are responders")
	flag.IntVar(&c.rounds, "rounds", 200, "gathers of each kind per swarm size (0: no latency figures)")
	flag.IntVar(&c.warm, "warm", 10, "warm-up rounds before those, not counted")
	flag.DurationVar(&c.rtt, "rtt", 0, "round trip added to every leaf link by a delay proxy (half each way)")
	flag.IntVar(&c.runs, "runs", 5, "partition and heal cycles (0: no partition figures)")
	flag.IntVar(&c.events, "events", 300, "events the child produces during each partition (audit events of local pings)")
	flag.DurationVar(&c.hold, "partition", 10*time.Second, "how long each partition lasts at least (it lasts until detected and the events are in)")
	flag.BoolVar(&c.verbose, "v", false, "progress and node warnings on stderr")
	flag.StringVar(&c.cpuprofile, "cpuprofile", "", "write a CPU profile of the whole run (every node included) here")
	flag.Parse()
	if c.nodes < 1 || c.full < 1 || c.rounds < 0 || c.warm < 0 || c.runs < 0 || c.events < 0 || c.rtt < 0 {
		fmt.Fprintln(os.Stderr, "federation: -nodes and -full must be at least 1; the other counts and -rtt at least 0")
		os.Exit(2)
	}
	root, err := os.MkdirTemp("", "bench-federation")
	if err != nil {
		fmt.Fprintln(os.Stderr, "federation:", err)
		os.Exit(1)
	}
	if c.cpuprofile != "" {
		f, err := os.Create(c.cpuprofile)
		if err != nil {
			fmt.Fprintln(os.Stderr, "federation:", err)
			os.Exit(1)
		}
		_ = pprof.StartCPUProfile(f)
	}
	err = run(root, c)
	pprof.StopCPUProfile()
	os.RemoveAll(root)
	if err != nil {
		fmt.Fprintln(os.Stderr, "federation:", err)
		os.Exit(1)
	}
}

func run(root string, c config) (err error) {
	defer scope.Recover(&err)
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	if c.verbose {
		log = slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	}
	rtt := "none"
	if c.rtt > 0 {
		rtt = fmt.Sprintf("%v (delay proxies, %v each way)", c.rtt, c.rtt/2)
	}
	fmt.Printf("robonet federation figures, GOMAXPROCS %d, load %s at the start, %s; RTT added to each leaf link: %s\n",
		runtime.GOMAXPROCS(0), loadavg(), time.Now().Format(time.RFC3339), rtt)
	if c.rounds > 0 {
		if err := latencyFigures(root, c, log); err != nil {
			return err
		}
	}
	if c.runs > 0 {
		if err := partitionFigures(root, c, log); err != nil {
			return err
		}
	}
	fmt.Printf("\nload %s at the end\n", loadavg())
	return nil
}

// inScope runs f in a fresh scope and closes it.
func inScope(root string, c config, f func(s *scope.Scope)) error {
	dir, err := os.MkdirTemp(root, "scope")
	if err != nil {
		return err
	}
	s := scope.New(dir, "bench/federation", c.verbose)
	defer s.Close()
	f(s)
	return nil
}

func progress(c config, format string, args ...any) {
	if c.verbose {
		fmt.Fprintf(os.Stderr, "federation: "+format+"\n", args...)
	}
}

func latencyFigures(root string, c config, log *slog.Logger) error {
	sizes := []int{3}
	if c.nodes != 3 {
		sizes = append(sizes, c.nodes)
	}
	var rows []latency
	for _, n := range sizes {
		progress(c, "latency: target swarm of %d nodes", n)
		if err := inScope(root, c, func(s *scope.Scope) {
			rows = append(rows, measureLatency(s, n, c.full, c.rounds, c.warm, c.rtt, log))
		}); err != nil {
			return err
		}
	}
	fmt.Printf("\nGather latency: `ping` to every node of swarm %s, p50 / p99 of %d gathers of each kind (after %d warm-up rounds);\n"+
		"target: p50 ≤ in-swarm p50 + the RTT of each link crossed (as nats-server measured it, below) + 3 ms\n",
		targetPrefix, c.rounds, c.warm)
	tw := tabwriter.NewWriter(os.Stdout, 2, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "nodes (full+resp.)\tin-swarm\t1 hop: hub→child\t2 hops: sibling→hub→child\t1 hop − in-swarm (p50)\t2 hops − in-swarm (p50)\ttarget p50 1 hop / 2 hops\tmet\tall answered")
	for _, l := range rows {
		in, one, two := pct(l.inSwarm, 0.5), pct(l.oneHop, 0.5), pct(l.two, 0.5)
		t1, t2 := in+l.linkRTT+3*time.Millisecond, in+2*l.linkRTT+3*time.Millisecond
		fmt.Fprintf(tw, "%d (%d+%d)\t%s\t%s\t%s\t%+.2f ms\t%+.2f ms\t≤ %s / ≤ %s\t%s / %s\t%d/%d/%d of %d\n",
			l.nodes, l.full, l.nodes-l.full, pq(l.inSwarm), pq(l.oneHop), pq(l.two),
			msf(one-in), msf(two-in), ms(t1), ms(t2), yes(one <= t1), yes(two <= t2), l.okIn, l.okOne, l.okTwo, c.rounds)
	}
	tw.Flush()
	for _, l := range rows {
		if l.linkRTT > c.rtt+5*time.Millisecond {
			fmt.Printf("Swarm of %d: the leaf links' RTT (%s) is far above the %v added: the servers are too busy to answer pings in time, and the target built on it means little.\n",
				l.nodes, ms(l.linkRTT), c.rtt)
		}
		fmt.Printf("Swarm of %d: the reads `robonet run` makes before a federated gather (directory, federated registry, registry; not in the figures above) took p50 / p99 %s on the hub, %s on the sibling; leaf link RTT as nats-server measured it: %s; topology up and every node answering after %v.\n",
			l.nodes, pq(l.preHub), pq(l.preSibling), ms(l.linkRTT), l.startup.Round(100*time.Millisecond))
	}
	return nil
}

func partitionFigures(root string, c config, log *slog.Logger) error {
	var cycles []cycle
	err := inScope(root, c, func(s *scope.Scope) {
		progress(c, "partition: starting a hub of %d nodes and a child of %d", partHub, partChild)
		p := startPartitionTopology(s, c.rtt, log)
		for i := 0; i < c.runs; i++ {
			progress(c, "partition: run %d of %d", i+1, c.runs)
			cycles = append(cycles, p.runCycle(s, c.events, c.hold))
		}
	})
	if err != nil {
		return err
	}
	fmt.Printf("\nPartition and heal: child swarm %s (%d nodes, each with its own leaf link, all through one proxy) under hub %s (%d nodes); %d runs\n",
		targetPrefix, partChild, hubPrefix, partHub, len(cycles))
	tw := tabwriter.NewWriter(os.Stdout, 2, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "run\tdirectory: partitioned\tgather: partitioned (took)\thub link down\tchild links down\theld\tfirst link\tall links\tdirectory: up\tfirst reply\tkick (step-downs)\tcaught up\tevents\tlost\tdup")
	for i, cy := range cycles {
		fmt.Fprintf(tw, "%d\t%s\t%s (%s)\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s (%d)\t%s\t%d\t%d\t%d\n", i+1,
			sec(cy.dirDown), sec(cy.gatherDown), ms(cy.gatherTook), sec(cy.hubLink), sec(cy.childLink), sec(cy.held),
			sec(cy.firstLink), sec(cy.linksUp), sec(cy.dirUp), sec(cy.firstOK), sec(cy.kickAt), cy.kicks, sec(cy.caughtUp),
			cy.produced, cy.lost, cy.dup)
	}
	tw.Flush()
	fmt.Println()
	tw = tabwriter.NewWriter(os.Stdout, 2, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "figure\tmin\tmedian\tmax\tmissed\ttarget (issue 11)")
	row := func(name, target string, get func(cycle) time.Duration) {
		var ds []time.Duration
		missed := 0
		for _, cy := range cycles {
			if d := get(cy); d > 0 {
				ds = append(ds, d)
			} else {
				missed++
			}
		}
		if len(ds) == 0 {
			fmt.Fprintf(tw, "%s\t-\t-\t-\t%d\t%s\n", name, missed, target)
			return
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%d\t%s\n", name, sec(slices.Min(ds)), sec(pct(ds, 0.5)), sec(slices.Max(ds)), missed, target)
	}
	row("blackhole → hub's directory shows the child partitioned", "", func(c cycle) time.Duration { return c.dirDown })
	row("blackhole → a gather from the hub returns partitioned", "≤ 8 s", func(c cycle) time.Duration { return c.gatherDown })
	row("blackhole → the hub holds no link from the child", "≤ 4 s", func(c cycle) time.Duration { return c.hubLink })
	row("blackhole → no child node holds a link", "≤ 4 s", func(c cycle) time.Duration { return c.childLink })
	row("heal → the hub holds a link from the child", "", func(c cycle) time.Duration { return c.firstLink })
	row("heal → every link up at both ends", "≤ 2 s", func(c cycle) time.Duration { return c.linksUp })
	row("heal → hub's directory shows the child up", "", func(c cycle) time.Duration { return c.dirUp })
	row("heal → first complete cross-swarm gather", "≤ 2 s after the links", func(c cycle) time.Duration { return c.firstOK })
	row("heal → hub's rn_fed_events has every event", "a 10-min backlog at the zone: ≤ 10 s", func(c cycle) time.Duration { return c.caughtUp })
	tw.Flush()
	lost, dup, produced := 0, 0, 0
	for _, cy := range cycles {
		lost, dup, produced = lost+cy.lost, dup+cy.dup, produced+cy.produced
	}
	fmt.Printf("Events: %d produced in the child during the partitions; of the child's rn_events, %d missing and %d duplicated at the hub.\n",
		produced, lost, dup)
	return nil
}

func pq(ds []time.Duration) string { return ms(pct(ds, 0.5)) + " / " + ms(pct(ds, 0.99)) }

func pct(ds []time.Duration, p float64) time.Duration {
	if len(ds) == 0 {
		return 0
	}
	s := slices.Clone(ds)
	slices.Sort(s)
	i := int(p*float64(len(s))+0.5) - 1
	return s[max(0, min(i, len(s)-1))]
}

func ms(d time.Duration) string { return fmt.Sprintf("%.2f ms", msf(d)) }

func msf(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }

func sec(d time.Duration) string {
	if d <= 0 {
		return "-"
	}
	return fmt.Sprintf("%.2f s", d.Seconds())
}

func yes(b bool) string {
	if b {
		return "yes"
	}
	return "no"
}

// loadavg is the 1-minute load average ("?" when unreadable).
func loadavg() string {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return "?"
	}
	f := strings.Fields(string(b))
	if len(f) == 0 {
		return "?"
	}
	return f[0]
}

package main

import (
	"context"
	"flag"
	"fmt"
	"log/slog"
	"net/http"
	_ "net/http/pprof" // -pprof
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/robonet-mesh/robonet/node"
	"github.com/robonet-mesh/robonet/sentinel"
	"github.com/robonet-mesh/robonet/trust"
)

// runNode is the `core` and `edge` subcommands: one node as its own
// process, started from package node with the options `robonet up` passes
// (`--cluster --join --swarm --token [--founder]` for a core member,
// `--edge --join --swarm --token` for an edge). Core members get
// ForceCore (the three start at once, so none would find a core to ask)
// and one change: the trust ledger's and the Sentinel's peer bounds
// (trust.Config.MaxPeers, sentinel.Config.MaxPeers, 1024 by default and
// not settable from the CLI) raised to -maxpeers. With the default a core
// member refuses every peer past the 1024th: its heartbeats are dropped
// and it is shown offline. Edges keep every default. It prints the line
// `robonet up` prints when ready.
func runNode(kind string, args []string) int {
	fs := flag.NewFlagSet(kind, flag.ExitOnError)
	var o node.Options
	var join string
	maxPeers := fs.Int("maxpeers", 65536, "trust ledger and Sentinel peer bound")
	fs.StringVar(&o.DataDir, "data", "", "data dir")
	fs.StringVar(&o.Listen, "listen", "", "client address")
	fs.StringVar(&o.Cluster, "cluster", "", "route address")
	fs.StringVar(&join, "join", "", "route addresses, comma-separated")
	fs.StringVar(&o.Swarm, "swarm", node.DefaultSwarm, "swarm name")
	fs.StringVar(&o.Token, "token", "", "swarm secret")
	fs.BoolVar(&o.Founder, "founder", false, "found the swarm")
	fs.StringVar(&o.Name, "name", "", "node name")
	pprof := fs.String("pprof", "", "serve net/http/pprof on this address")
	_ = fs.Parse(args)
	if *pprof != "" {
		go func() { _ = http.ListenAndServe(*pprof, nil) }()
	}
	if join != "" {
		o.Join = strings.Split(join, ",")
	}
	if kind == "edge" {
		o.Edge = true
	} else {
		o.ForceCore = true
		o.Trust = trust.DefaultConfig()
		o.Trust.MaxPeers = *maxPeers
		o.Sentinel = sentinel.DefaultConfig()
		o.Sentinel.MaxPeers = *maxPeers
	}
	o.Logger = slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	n, err := node.New(o)
	if err != nil {
		fmt.Fprintln(os.Stderr, kind+":", err)
		return 1
	}
	began := time.Now()
	sctx, cancel := context.WithTimeout(ctx, 5*time.Minute)
	defer cancel()
	if err := n.Start(sctx); err != nil {
		fmt.Fprintln(os.Stderr, kind+":", err)
		return 1
	}
	fmt.Printf("scale "+kind+": node %s%s%s in swarm %q, ready in %s\n", n.Name(), upMarker, n.Chevron(), o.Swarm, time.Since(began).Round(time.Millisecond))
	select {
	case <-ctx.Done():
	case <-n.Done():
	}
	dctx, dcancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer dcancel()
	if err := n.Shutdown(dctx); err != nil {
		fmt.Fprintln(os.Stderr, kind+":", err)
		return 1
	}
	return 0
}

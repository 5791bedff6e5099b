package main

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/robonet-mesh/robonet/node"
	"github.com/robonet-mesh/robonet/trust"
	"github.com/robonet-mesh/robonet/wire"
)

func newUpCmd(g *globals) *cobra.Command {
	var (
		o          node.Options
		tags       string
		logLevel   string
		wait       time.Duration
		tokenFile  string
		fedFile    string
		pf         *proxyFlags
		mf         *mediaFlags
		healthAddr *string
	)
	cmd := &cobra.Command{
		Use:   "up",
		Short: "Run a node (default: a single-node mesh, chevron 1, clients on 127.0.0.1:4222)",
		Long: `Run a robonet node in the foreground until Ctrl-C or SIGTERM.

With no --cluster and no --join the node is a single-node mesh (JetStream standalone).
With --cluster and/or --join it is a swarm member, in one of two roles:

  core  route-clustered with the other core members: JetStream, the lease, the durable
        buckets, the registry. The first --core nodes (default 3, at most 7) form it:
        a node with --cluster and no --join founds it; one with --cluster and --join
        joins it while it has fewer members up than its size (or when no core answers
        within about 5 s: nodes that all start together form it).
  edge  every other node: its server connects to the core as a NATS leaf node (failing
        over to another core member), local programs keep using --listen, and it does
        not hear other nodes' heartbeats. A node with --join and no --cluster, or with
        --edge, is an edge; so is a node with --cluster and --join once the core is full.

The role is saved in --data, so a restart keeps it. An admin changes it with robonet core
add <node> (an edge started with --cluster becomes core) and robonet core remove <node>;
the node restarts in-process in its new role. The core needs two members before the
swarm's state can be written; buckets become R3 once three are up.

Federation: --leaf-listen makes the node's swarm a hub that accepts child swarms;
--federate with --federate-token makes it a child of the swarm at those addresses.
Either needs a chevron zone.region.swarm.node; the swarm's name and JetStream domain
become rn-<zone>-<region>-<swarm>. Give every node of the swarm the same settings;
they are saved in --data, so a restart needs none of them.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			level, err := parseLevel(logLevel)
			if err != nil {
				return err
			}
			if tags != "" {
				if o.Tags, err = node.ParseTags(tags); err != nil {
					return err
				}
			}
			fromFile := false
			if tokenFile != "" {
				tok, err := readTokenFile(tokenFile)
				if err != nil {
					return err
				}
				if tok != "" && o.Token != "" {
					return fmt.Errorf("--token and --token-file %s both give a token; use one", tokenFile)
				}
				if tok != "" {
					o.Token, fromFile = tok, true
				}
			}
			if fedFile != "" {
				tok, err := readTokenFile(fedFile)
				if err != nil {
					return fmt.Errorf("--federate-token-file: %w", err)
				}
				if tok != "" && o.FederateToken != "" {
					return fmt.Errorf("--federate-token and --federate-token-file %s both give a token; use one", fedFile)
				}
				if tok != "" {
					o.FederateToken = tok
				}
			}
			if o.Core < 1 || o.Core > node.MaxCore {
				return fmt.Errorf("--core %d: want a core size of 1..%d", o.Core, node.MaxCore)
			}
			o.DataDir = g.data
			o.Logger = slog.New(slog.NewTextHandler(cmd.ErrOrStderr(), &slog.HandlerOptions{Level: level}))
			ctx := cmd.Context()
			if err := pf.check(); err != nil {
				return err
			}
			if err := mf.check(); err != nil {
				return err
			}
			hl, err := startHealth(*healthAddr, o.Logger)
			if err != nil {
				return err
			}
			defer hl.close()
			r, err := startRunning(ctx, cmd, o, wait, pf, mf)
			if err != nil {
				return err
			}
			hl.set(r.n)
			rw := &resilienceWatch{out: cmd.OutOrStdout(), log: o.Logger}
			go rw.watch(ctx, r.n)
			if fromFile && strings.HasPrefix(o.Token, trust.TokenPrefix) {
				forgetTokenFile(cmd, tokenFile)
			}
			for {
				select {
				case <-ctx.Done():
				case <-r.n.Done():
				case <-r.n.RestartRequested():
					// robonet core add/remove changed the node's role: it
					// saved the new one; a new node with the same options
					// starts in it.
					was := r.n.Role()
					why := r.n.RestartReason()
					fmt.Fprintf(cmd.ErrOrStderr(), "robonet: %s asked to restart (%s; it was %s); restarting in-process…\n", r.n.Name(), why, was)
					o.Logger.Warn("restarting in-process", "why", why, "was", was)
					hl.set(nil)
					if err := r.stop(); err != nil {
						return err
					}
					if r, err = startRunning(ctx, cmd, o, wait, pf, mf); err != nil {
						return fmt.Errorf("restart in the new role: %w", err)
					}
					hl.set(r.n)
					go rw.watch(ctx, r.n)
					fmt.Fprintf(cmd.ErrOrStderr(), "robonet: restarted as %s\n", r.n.Role())
					continue
				}
				break
			}
			fmt.Fprintln(cmd.ErrOrStderr(), "robonet: shutting down (lame duck)…")
			hl.stop()
			if err := r.stop(); err != nil {
				return err
			}
			fmt.Fprintln(cmd.ErrOrStderr(), "robonet: stopped cleanly")
			return nil
		},
	}
	f := cmd.Flags()
	f.StringVar(&o.Name, "name", "", "node name (default rn<chevron>)")
	f.StringVar(&o.Chevron, "chevron", "", "address zone.region.swarm.node, e.g. 3.12.7.1 (default: saved one, else lowest free number)")
	f.StringVar(&o.Listen, "listen", node.DefaultListen, "NATS client listen address (TLS only on any address but loopback)")
	f.StringSliceVar(&o.ClientNames, "client-name", nil, "extra DNS names or addresses the client port's certificate lists (for clients that check the name they dial)")
	f.StringVar(&o.Cluster, "cluster", "", "NATS route listen address (default "+node.DefaultCluster+" when --join is set)")
	f.StringSliceVar(&o.Join, "join", nil, "cluster addresses of other nodes, host:port,host:port")
	f.StringVar(&o.Swarm, "swarm", node.DefaultSwarm, "swarm name (the NATS cluster name)")
	f.BoolVar(&o.Founder, "founder", false, "this node founds the swarm: its operator key becomes the first admin (default: a node with no --join, else the first founder to write it)")
	f.StringVar(&o.Token, "token", "", "swarm secret (rnsec_…, robonet token generate) or one-time join token (rntok_…, robonet token create); default: the secret saved in --data")
	f.StringVar(&tokenFile, "token-file", "", "file holding the --token (mode 0600 or stricter); a one-time token's file is deleted once the node has joined; a missing file means no token")
	f.StringSliceVar(&o.Caps, "caps", nil, "declared capabilities, e.g. gpu,ai")
	f.StringVar(&tags, "tags", "", "tags key=value,key=value, e.g. role=camera")
	f.StringSliceVar(&o.FileRoots, "file-root", nil, "directories the file verb may read and write under (default <data>/files); never the data dir")
	f.StringSliceVar(&o.ExecAllow, "exec-allow", nil, "programs exec may run as a mutate command (others are dangerous), e.g. systemctl,journalctl")
	f.BoolVar(&o.Edge, "edge", false, "be an edge (a leaf node of the core) whatever role is saved; a node started with it cannot be promoted (robonet core add)")
	f.IntVar(&o.Core, "core", 3, "the core's size when this node founds it: 1..7 route-clustered members (admins change it later: robonet core size N)")
	f.StringVar(&o.EdgeListen, "edge-listen", "", "core members: where edges connect as leaf nodes, host:port (default <--cluster host>:7422; with --leaf-listen, that listener serves edges too)")
	f.StringVar(&o.LeafListen, "leaf-listen", "", "accept child swarms' leaf connections on host:port, e.g. 0.0.0.0:7422 (TLS; makes this swarm a federation hub)")
	f.StringSliceVar(&o.Federate, "federate", nil, "the parent swarm's leaf addresses, host:port,host:port (makes this swarm a child; needs --federate-token)")
	f.StringVar(&o.FederateToken, "federate-token", "", "federation token from the parent swarm (rntok_…, robonet token create --federate there); saved in --data")
	f.StringVar(&fedFile, "federate-token-file", "", "file holding the --federate-token (mode 0600 or stricter); a missing file means no token")
	addGatewayFlags(f)
	pf = addProxyFlags(f)
	mf = addMediaFlags(f)
	healthAddr = addHealthFlags(f)
	f.StringVar(&logLevel, "log-level", "info", "debug, info, warn or error (logs go to stderr)")
	f.DurationVar(&wait, "wait", 10*time.Minute, "how long to wait for the swarm's JetStream before giving up")
	return cmd
}

// running is a started node with the features composed onto it.
type running struct {
	n       *node.Node
	fed     *federationFeature
	stopFed func(context.Context)
}

// startRunning creates and starts a node with o (waiting up to wait for
// the swarm), composes the federation features, the gateway and the mesh
// proxy's target onto it and prints the banner.
func startRunning(ctx context.Context, cmd *cobra.Command, o node.Options, wait time.Duration, pf *proxyFlags, mf *mediaFlags) (*running, error) {
	n, err := node.New(o)
	if err != nil {
		return nil, err
	}
	startCtx, cancel := context.WithTimeout(ctx, wait)
	defer cancel()
	began := time.Now()
	if err := n.Start(startCtx); err != nil {
		return nil, err
	}
	fed, err := startFederation(ctx, n, o.Logger)
	if err != nil {
		_ = n.Shutdown(context.Background())
		return nil, err
	}
	stopFed, err := startFedCommands(ctx, n, o.Logger)
	if err != nil {
		fed.stop()
		_ = n.Shutdown(context.Background())
		return nil, err
	}
	printUp(cmd, n, time.Since(began))
	stopTarget, err := startProxyTarget(ctx, n, pf, o.Logger)
	if err != nil {
		stopFed(context.Background())
		fed.stop()
		_ = n.Shutdown(context.Background())
		return nil, err
	}
	then := func(ctx context.Context) {
		stopTarget(ctx)
		stopFed(ctx)
	}
	stopGw, g, gm, err := composeGateway(ctx, cmd, n, o.Logger, pf, then)
	if err != nil {
		then(context.Background())
		fed.stop()
		_ = n.Shutdown(context.Background())
		return nil, err
	}
	stopAll, err := composeMedia(ctx, cmd, n, g, gm, mf, o.Logger, stopGw)
	if err != nil {
		stopGw(context.Background())
		fed.stop()
		_ = n.Shutdown(context.Background())
		return nil, err
	}
	return &running{n: n, fed: fed, stopFed: stopAll}, nil
}

// stop shuts the features and the node down (lame duck), within 30 s.
func (r *running) stop() error {
	sctx, scancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer scancel()
	r.stopFed(sctx)
	r.fed.stop()
	return r.n.Shutdown(sctx)
}

func printUp(cmd *cobra.Command, n *node.Node, took time.Duration) {
	w := cmd.OutOrStdout()
	mode := "single node, JetStream standalone"
	switch {
	case n.Role() == wire.NodeRoleEdge:
		mode = "edge: a leaf node of the core"
	case n.Clustered():
		mode = "core member, JetStream clustered"
	}
	fmt.Fprintf(w, "robonet %s: node %s up as chevron %s in swarm %q (%s), ready in %s\n",
		node.Version, n.Name(), n.Chevron(), n.Status().Swarm, mode, took.Round(time.Millisecond))
	if strings.HasPrefix(n.ClientURL(), "tls://") {
		fmt.Fprintf(w, "  clients   %s (nkey auth, TLS with the node key %s: clients pin it on first use)\n", n.ClientURL(), n.Pubkey())
	} else {
		fmt.Fprintf(w, "  clients   %s (nkey auth)\n", n.ClientURL())
	}
	if n.Role() == wire.NodeRoleEdge {
		fmt.Fprintf(w, "  routes    none: an edge links to the core as a leaf node (robonet core add %s promotes it when it has --cluster)\n", n.Name())
	} else if a := n.ClusterAddr(); a != "" {
		fmt.Fprintf(w, "  routes    %s (others: robonet up --join <this host>:%s)\n", a, a[strings.LastIndex(a, ":")+1:])
	} else {
		fmt.Fprintln(w, "  routes    none (to grow: restart with --cluster 0.0.0.0:6222, see README)")
	}
	if n.Federated() || !n.SwarmPrefix().IsZero() {
		fmt.Fprintf(w, "  swarm     %s, JetStream domain %s\n", n.SwarmPrefix(), n.Domain())
		if a := n.LeafAddr(); a != "" {
			fmt.Fprintf(w, "  leafs     %s (child swarms: robonet token create --federate, then robonet up --federate <this host>:%s)\n", a, a[strings.LastIndex(a, ":")+1:])
		}
		for _, l := range n.LeafLinks() {
			if l.Outbound {
				state := "linking"
				if l.Up {
					state = "up via " + l.Server
				}
				fmt.Fprintf(w, "  parent    swarm %s (%s)\n", l.Swarm, state)
			}
		}
	}
	fmt.Fprintf(w, "  data      %s\n", n.DataDir())
	switch f := n.Founder(); {
	case f == n.OperatorKey():
		fmt.Fprintf(w, "  creds     %s (the swarm's founder: its first admin; see README to move the admin key off this node)\n", n.OperatorSeedPath())
	case f == "" && n.ClusterAddr() != "":
		fmt.Fprintf(w, "  creds     %s (admin of this node; the swarm's founder is being chosen: robonet user list names it)\n", n.OperatorSeedPath())
	default:
		fmt.Fprintf(w, "  creds     %s (admin of this node, operator elsewhere)\n", n.OperatorSeedPath())
	}
	fmt.Fprintf(w, "  nats CLI  robonet nats-context --data %s && nats --context robonet sub 'rn.>'\n", n.DataDir())
}

// forgetTokenFile deletes a one-time token's file once the node has joined:
// the token is used up, and the node comes back as a member by its key.
func forgetTokenFile(cmd *cobra.Command, path string) {
	if err := os.Remove(path); err != nil && !errors.Is(err, fs.ErrNotExist) {
		fmt.Fprintf(cmd.ErrOrStderr(), "robonet: joined, but could not delete the used token file: %v\n", err)
		return
	}
	fmt.Fprintf(cmd.ErrOrStderr(), "robonet: joined; deleted the used one-time token file %s\n", path)
}

func parseLevel(s string) (slog.Level, error) {
	switch strings.ToLower(s) {
	case "debug":
		return slog.LevelDebug, nil
	case "info", "":
		return slog.LevelInfo, nil
	case "warn", "warning":
		return slog.LevelWarn, nil
	case "error":
		return slog.LevelError, nil
	}
	return 0, fmt.Errorf("--log-level %q: want debug, info, warn or error", s)
}

package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strconv"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/robonet-mesh/robonet/mesh"
	"github.com/robonet-mesh/robonet/node"
	"github.com/robonet-mesh/robonet/subjects"
	"github.com/robonet-mesh/robonet/wire"
)

// coreTimeout bounds one core control query: a removal waits for
// JetStream's meta group to drop the server.
const coreTimeout = 20 * time.Second

func newCoreCmd(g *globals) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "core",
		Short: "The swarm's core: its size and members; promote an edge, demote a member (admin)",
		Long: `The core is the few route-clustered members (default 3, at most 7) that hold JetStream,
the lease, the durable buckets and the registry; every other node is an edge on a leaf
connection to it (robonet up --help).

  robonet core status           the core's size, its members and which are up
  robonet core add <node>       promote an edge (started with --cluster) to the core
  robonet core remove <node>    demote a core member to an edge
  robonet core size N           set the core's size, 1..7

<node> is a name, a chevron or a node key (robonet nodes lists them). add, remove and
size need an admin key. A promoted or demoted node restarts in-process in its new role.`,
		Args: cobra.NoArgs,
	}
	cmd.AddCommand(newCoreStatusCmd(g), newCoreAddCmd(g), newCoreRemoveCmd(g), newCoreSizeCmd(g))
	return cmd
}

// coreKeys are the keys of the core members in ms that are up.
func coreKeys(ms []wire.Member, except string) []string {
	var keys []string
	for _, m := range ms {
		if node.MemberRole(m) == wire.NodeRoleCore && m.State != wire.StateOffline && m.Pubkey != except {
			keys = append(keys, m.Pubkey)
		}
	}
	return keys
}

// askCore asks query name of a core node: the one of server srv (signed
// by key), or with srv empty any core member up (keys).
func askCore(ctx context.Context, c *mesh.Client, name, srv string, keys []string, req, v any) error {
	if len(keys) == 0 {
		return errors.New("no core member is up in this node's registry (robonet nodes)")
	}
	qctx, cancel := context.WithTimeout(ctx, coreTimeout)
	defer cancel()
	err := c.QueryMember(qctx, name, srv, keys, req, v)
	if errors.Is(err, mesh.ErrNoResponse) && name != subjects.QueryCore {
		return fmt.Errorf("%w (core add, remove and size need an admin key: a non-admin's connection may not even publish them)", err)
	}
	return err
}

func newCoreStatusCmd(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:   "status",
		Short: "Show the core: its size, its members, which are up, and whether it is below or above its size",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			var st wire.CoreStatus
			if err := askAnyCore(cmd.Context(), g, subjects.QueryCore, nil, &st); err != nil {
				return err
			}
			if st.Members == nil {
				st.Members = []wire.CoreMember{}
			}
			if g.json {
				return printJSON(cmd.OutOrStdout(), st)
			}
			printCore(cmd.OutOrStdout(), st)
			return nil
		},
	}
}

func printCore(w io.Writer, st wire.CoreStatus) {
	state := "at its size"
	switch {
	case st.Below:
		state = "BELOW its size: promote an edge with robonet core add <node>"
	case st.Above:
		state = "ABOVE its size: robonet core remove <node> demotes a member, or robonet core size raises it"
	}
	fmt.Fprintf(w, "core: %d of %d members up, %s\n", st.Live(), st.Size, state)
	tw := tabwriter.NewWriter(w, 2, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "CHEVRON\tNAME\tSERVER\tUP")
	for _, m := range st.Members {
		up := "no"
		if m.Up {
			up = "yes"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\n", orDash(m.Chevron), orDash(m.Name), m.Server, up)
	}
	tw.Flush()
}

// nodeArg checks a <node> argument's shape before any connection.
func nodeArg(use string) cobra.PositionalArgs {
	return func(_ *cobra.Command, args []string) error {
		if len(args) != 1 {
			return fmt.Errorf("%s takes one argument, the node (a name, chevron or key; got %d)", use, len(args))
		}
		if _, err := node.FindMember(nil, args[0]); !errors.Is(err, node.ErrNoMember) {
			return err
		}
		return nil
	}
}

func newCoreAddCmd(g *globals) *cobra.Command {
	var (
		force bool
		wait  time.Duration
	)
	cmd := &cobra.Command{
		Use:   "add <node>",
		Short: "Promote an edge to the core (admin): it restarts as a core member",
		Long: `Promote an edge to the core. The edge is asked itself: it must have a cluster address
(it was started with --cluster, without --edge), and the core must have fewer members up
than its size unless --force grows it. It saves the core role and restarts in-process,
routes to the core and joins JetStream; the buckets re-replicate when the core has three.
The command waits (--wait) until the registry shows the node as a core member again.`,
		Example: `  robonet core add rn17
  robonet core add 3.12.7.17 --force`,
		Args: nodeArg("core add"),
		RunE: func(cmd *cobra.Command, args []string) error {
			ctx := cmd.Context()
			c, _, m, what, err := coreTarget(ctx, g, args[0])
			if err != nil {
				return err
			}
			defer c.Close()
			if node.MemberRole(m) == wire.NodeRoleCore {
				return fmt.Errorf("%s is a core member already", what)
			}
			if m.State == wire.StateOffline {
				return fmt.Errorf("%s is offline: an edge is promoted while it is up (it restarts itself as core)", what)
			}
			var out node.CoreChange
			req := node.CoreAddRequest{Pubkey: m.Pubkey, Force: force}
			if err := askCore(ctx, c, subjects.QueryCoreAdd, mesh.ServerName(m.Pubkey), []string{m.Pubkey}, req, &out); err != nil {
				return err
			}
			return reportChange(ctx, cmd, g, c, out, what, "a core member", wait)
		},
	}
	cmd.Flags().BoolVar(&force, "force", false, "grow the core beyond its size when it is full")
	cmd.Flags().DurationVar(&wait, "wait", time.Minute, "how long to wait for the node to show up in its new role (0: do not wait)")
	return cmd
}

// coreView connects and reads the registry, where every core command
// finds whom to ask. The caller closes the client.
func coreView(ctx context.Context, g *globals) (*mesh.Client, []wire.Member, error) {
	c, err := g.connect(ctx)
	if err != nil {
		return nil, nil, err
	}
	ms, err := c.Nodes(ctx)
	if err != nil {
		c.Close()
		return nil, nil, err
	}
	return c, ms, nil
}

// askAnyCore asks query name of any core member up (core status, size).
func askAnyCore(ctx context.Context, g *globals, name string, req, v any) error {
	c, ms, err := coreView(ctx, g)
	if err != nil {
		return err
	}
	defer c.Close()
	return askCore(ctx, c, name, "", coreKeys(ms, ""), req, v)
}

// coreTarget connects and finds the node core add or remove names, with
// the registry it was found in and how to name it in messages.
func coreTarget(ctx context.Context, g *globals, arg string) (*mesh.Client, []wire.Member, wire.Member, string, error) {
	c, ms, err := coreView(ctx, g)
	if err != nil {
		return nil, nil, wire.Member{}, "", err
	}
	m, err := node.FindMember(ms, arg)
	if err != nil {
		c.Close()
		return nil, nil, wire.Member{}, "", err
	}
	return c, ms, m, fmt.Sprintf("%s (%s)", m.Name, m.Chevron), nil
}

func newCoreRemoveCmd(g *globals) *cobra.Command {
	var wait time.Duration
	cmd := &cobra.Command{
		Use:   "remove <node>",
		Short: "Demote a core member to an edge (admin)",
		Long: `Demote a core member: its server leaves JetStream's meta group and rn_config lists it
removed (core.removed.<key>), so it comes back as an edge. A member that is up is asked
itself and restarts in-process as an edge; one that is down is removed by another core
member. The last core member up is never removed: promote an edge first.`,
		Example: `  robonet core remove rn3`,
		Args:    nodeArg("core remove"),
		RunE: func(cmd *cobra.Command, args []string) error {
			ctx := cmd.Context()
			c, ms, m, what, err := coreTarget(ctx, g, args[0])
			if err != nil {
				return err
			}
			defer c.Close()
			if node.MemberRole(m) != wire.NodeRoleCore {
				return fmt.Errorf("%s is an edge, not a core member", what)
			}
			srv, keys := "", coreKeys(ms, m.Pubkey)
			if m.State != wire.StateOffline {
				srv, keys = mesh.ServerName(m.Pubkey), []string{m.Pubkey}
			} else {
				wait = 0 // nothing restarts
			}
			var out node.CoreChange
			req := node.CoreRemoveRequest{Target: m.Pubkey}
			if err := askCore(ctx, c, subjects.QueryCoreRemove, srv, keys, req, &out); err != nil {
				return err
			}
			return reportChange(ctx, cmd, g, c, out, what, "an edge", wait)
		},
	}
	cmd.Flags().DurationVar(&wait, "wait", time.Minute, "how long to wait for the node to show up in its new role (0: do not wait)")
	return cmd
}

func newCoreSizeCmd(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:     "size N",
		Short:   "Set the core's size, 1..7 (admin)",
		Long:    `Set the core's size (rn_config core.size): how many members the core should have. The swarm's leader says when fewer are up; new nodes that join with --cluster become core members while there is room.`,
		Example: `  robonet core size 5`,
		Args: func(_ *cobra.Command, args []string) error {
			if len(args) != 1 {
				return fmt.Errorf("core size takes one argument, the size %d..%d (got %d)", 1, node.MaxCore, len(args))
			}
			if v, err := strconv.Atoi(args[0]); err != nil || v < 1 || v > node.MaxCore {
				return fmt.Errorf("core size %q: want an integer %d..%d", clip(args[0]), 1, node.MaxCore)
			}
			return nil
		},
		RunE: func(cmd *cobra.Command, args []string) error {
			size, _ := strconv.Atoi(args[0])
			var out node.CoreChange
			if err := askAnyCore(cmd.Context(), g, subjects.QueryCoreSize, node.CoreSizeRequest{Size: size}, &out); err != nil {
				return err
			}
			if g.json {
				return printJSON(cmd.OutOrStdout(), out)
			}
			fmt.Fprintf(cmd.OutOrStdout(), "core size set to %d (%d members up)\n", out.Size, out.Live)
			if out.Note != "" {
				fmt.Fprintf(cmd.ErrOrStderr(), "robonet: %s\n", out.Note)
			}
			return nil
		},
	}
}

// reportChange prints a core add or remove and, when the node restarts,
// waits up to wait for the registry to show it in its new role.
func reportChange(ctx context.Context, cmd *cobra.Command, g *globals, c *mesh.Client, out node.CoreChange, what, becomes string, wait time.Duration) error {
	w := cmd.OutOrStdout()
	if out.Note != "" {
		fmt.Fprintf(cmd.ErrOrStderr(), "robonet: %s\n", out.Note)
	}
	if !out.Restarting || wait <= 0 {
		if g.json {
			return printJSON(w, out)
		}
		if out.Restarting {
			fmt.Fprintf(w, "%s is restarting as %s\n", what, becomes)
		} else {
			fmt.Fprintf(w, "%s is %s (listed removed; JetStream peer removed: %v)\n", what, becomes, out.JetStreamRemoved)
		}
		return nil
	}
	if !g.json {
		fmt.Fprintf(w, "%s is restarting as %s…\n", what, becomes)
	}
	began := time.Now()
	deadline := began.Add(wait)
	var last error
	for {
		qctx, cancel := context.WithTimeout(ctx, 3*time.Second)
		ms, err := c.Nodes(qctx)
		cancel()
		if err == nil {
			last = fmt.Errorf("not in the registry")
			for _, m := range ms {
				if m.Pubkey != out.Pubkey {
					continue
				}
				if m.State == wire.StateAlive && node.MemberRole(m) == out.Role {
					if g.json {
						return printJSON(w, out)
					}
					fmt.Fprintf(w, "%s is %s (%s)\n", what, becomes, time.Since(began).Round(100*time.Millisecond))
					return nil
				}
				last = fmt.Errorf("registry shows it %s, %s", m.State, node.MemberRole(m))
			}
		} else {
			last = err
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%s was asked and is restarting, but is not %s after %v (%v): robonet nodes shows it", what, becomes, wait, last)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(250 * time.Millisecond):
		}
	}
}

package main

import (
	"fmt"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/robonet-mesh/robonet/node"
	"github.com/robonet-mesh/robonet/wire"
)

func newStatusCmd(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:   "status",
		Short: "Show this swarm: name, leader, member count, JetStream meta leader, bucket replication, the node's own state",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctx := cmd.Context()
			c, err := g.connect(ctx)
			if err != nil {
				return err
			}
			defer c.Close()
			st, err := c.Status(ctx)
			if err != nil {
				return err
			}
			if g.json {
				return printJSON(cmd.OutOrStdout(), st)
			}
			tw := tabwriter.NewWriter(cmd.OutOrStdout(), 2, 4, 2, ' ', 0)
			leader := "none (no lease holder right now)"
			if st.Leader != "" {
				leader = fmt.Sprintf("%s (%s), token %d", st.LeaderName, st.Leader, st.Token)
			}
			js := "standalone (single node)"
			if st.Role == wire.NodeRoleEdge {
				js = "the core's, through the leaf link (an edge has none of its own)"
				if !st.JetStreamOK {
					js += ", NOT linked now"
				}
			} else if st.Clustered {
				js = "clustered"
				if !st.JetStreamOK {
					js += ", NOT current (no quorum?)"
				}
			}
			fmt.Fprintf(tw, "swarm\t%s\n", st.Swarm)
			fmt.Fprintf(tw, "node\t%s (%s), %s, version %s\n", st.Name, st.Chevron, st.State, st.Version)
			fmt.Fprintf(tw, "leader\t%s\n", leader)
			fmt.Fprintf(tw, "members\t%d live, %d known\n", st.Members, st.Known)
			if st.Role != "" {
				fmt.Fprintf(tw, "role\t%s\n", st.Role)
			}
			if st.CoreSize > 0 {
				core := fmt.Sprintf("%d/%d up", st.CoreLive, st.CoreSize)
				if st.CoreBelow {
					core += ", BELOW its size (robonet core add <node> promotes an edge)"
				}
				if st.CoreLink != "" {
					core += fmt.Sprintf(", linked to %s since %s", st.CoreLink, st.CoreLinkSince.Local().Format(time.TimeOnly))
				}
				fmt.Fprintf(tw, "core\t%s\n", core)
			}
			fmt.Fprintf(tw, "jetstream\t%s, meta leader %s, %s\n", js, orDash(st.MetaLeader), fmtReplication(st))
			return tw.Flush()
		},
	}
}

// fmtReplication says how the buckets are replicated: the lowest replica
// count over every bucket, and the buckets behind by name.
func fmtReplication(st wire.Status) string {
	if st.Replicas == 0 {
		return "buckets not read yet"
	}
	if len(st.Behind) == 0 {
		return fmt.Sprintf("buckets R%d", st.Replicas)
	}
	return fmt.Sprintf("buckets R%d at the lowest; behind: %s (the leader raises them while 3 JetStream servers are up)",
		st.Replicas, strings.Join(st.Behind, ", "))
}

func newVersionCmd(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:   "version",
		Short: "Print robonet's version",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if g.json {
				return printJSON(cmd.OutOrStdout(), map[string]string{"version": node.Version})
			}
			fmt.Fprintln(cmd.OutOrStdout(), "robonet", node.Version)
			return nil
		},
	}
}

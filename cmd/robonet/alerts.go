package main

import (
	"context"
	"fmt"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/robonet-mesh/robonet/subjects"
)

func newAlertsCmd(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:   "alerts",
		Short: "Sentinel alerts across the swarm: peer, signal, score, level, action taken, reporter",
		Long: `Every node keeps behavioural baselines of its peers (message and command rates, command mix, heartbeat
jitter, cpu/mem/disk) and scores each 10 s window against them. alerts asks every live node for what it sees now.
Levels escalate alert -> quarantine (the peer's commands are refused by that node) -> disconnect (a quorum of
nodes agree: the key is revoked swarm-wide).`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctx, cancel := context.WithTimeout(cmd.Context(), 10*time.Second)
			defer cancel()
			c, err := g.connect(ctx)
			if err != nil {
				return err
			}
			defer c.Close()
			members, err := c.Nodes(ctx)
			if err != nil {
				return err
			}
			live := liveCount(members)
			view, err := c.Alerts(ctx, members, 3*time.Second)
			if err != nil {
				return err
			}
			if view.Dropped > 0 {
				fmt.Fprintf(cmd.ErrOrStderr(), "robonet: %s: %d answers dropped (bad signature, or not a member's registered key)\n", subjects.QueryAlerts, view.Dropped)
			}
			all := view.Alerts
			if g.json {
				return printJSON(cmd.OutOrStdout(), view)
			}
			w := cmd.OutOrStdout()
			if len(all) == 0 {
				fmt.Fprintf(w, "no alerts (%d of %d live nodes answered)\n", view.Nodes, live)
				return nil
			}
			tw := tabwriter.NewWriter(w, 2, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "PEER\tSIGNAL\tSCORE\tVALUE\tBASELINE\tLEVEL\tACTION\tBY\tDETAIL")
			for _, a := range all {
				action := a.Action
				if action == "" {
					action = "-"
				}
				fmt.Fprintf(tw, "%s\t%s\t%.1f\t%.3g\t%.3g\t%s\t%s\t%s\t%s\n", a.Peer, a.Signal, a.Score, a.Value, a.Baseline, a.Level, action, a.By, a.Detail)
			}
			if err := tw.Flush(); err != nil {
				return err
			}
			fmt.Fprintf(w, "%d alerts from %d of %d live nodes\n", len(all), view.Nodes, live)
			return nil
		},
	}
}

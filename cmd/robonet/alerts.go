package main

import (
	"context"
	"fmt"
	"sort"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/robonet-mesh/robonet/node"
	"github.com/robonet-mesh/robonet/subjects"
	"github.com/robonet-mesh/robonet/wire"
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
			reports, err := askEvery[node.AlertsReport](ctx, c, subjects.QueryAlerts, nil, members)
			if err != nil {
				return err
			}
			var all []wire.Alert
			for _, r := range reports {
				all = append(all, r.Alerts...)
			}
			sort.Slice(all, func(i, j int) bool {
				if all[i].Peer != all[j].Peer {
					return subjects.CompareText(all[i].Peer, all[j].Peer) < 0
				}
				return all[i].Score > all[j].Score
			})
			if g.json {
				if all == nil {
					all = []wire.Alert{}
				}
				return printJSON(cmd.OutOrStdout(), map[string]any{"nodes": len(reports), "alerts": all})
			}
			w := cmd.OutOrStdout()
			if len(all) == 0 {
				fmt.Fprintf(w, "no alerts (%d of %d live nodes answered)\n", len(reports), live)
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
			fmt.Fprintf(w, "%d alerts from %d of %d live nodes\n", len(all), len(reports), live)
			return nil
		},
	}
}

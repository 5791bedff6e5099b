package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"sort"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/robonet-mesh/robonet/node"
	"github.com/robonet-mesh/robonet/wire"
)

func newNodesCmd(g *globals) *cobra.Command {
	var (
		watch    bool
		interval time.Duration
		all      bool
	)
	cmd := &cobra.Command{
		Use:   "nodes",
		Short: "List the swarm's nodes: chevron, name, role (core|edge), state, leader, trust tier, caps, tags, load, version, uptime",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctx := cmd.Context()
			c, err := g.connect(ctx)
			if err != nil {
				return err
			}
			defer c.Close()
			if all {
				if watch {
					return fmt.Errorf("--all and --watch: watch one swarm at a time (without --all)")
				}
				return nodesAll(ctx, cmd, g, c)
			}
			ms, err := c.Nodes(ctx)
			if err != nil {
				return err
			}
			if !watch {
				if g.json {
					return printJSON(cmd.OutOrStdout(), nonNil(ms))
				}
				printNodes(cmd.OutOrStdout(), ms, time.Now())
				return nil
			}
			if interval <= 0 {
				return fmt.Errorf("--interval %v: must be positive", interval)
			}
			return watchNodes(ctx, cmd.OutOrStdout(), g.json, ms, interval, func(ctx context.Context) ([]wire.Member, error) {
				return c.Nodes(ctx)
			})
		},
	}
	cmd.Flags().BoolVarP(&watch, "watch", "w", false, "keep running and print joins, leaves and state changes as they happen")
	cmd.Flags().DurationVar(&interval, "interval", 250*time.Millisecond, "with --watch: how often to ask the node")
	cmd.Flags().BoolVar(&all, "all", false, "every swarm of the federation this node knows (its registry, the hubs' rn_fed_nodes, the directory's liveness); --json adds swarm")
	return cmd
}

func nonNil(ms []wire.Member) []wire.Member {
	if ms == nil {
		return []wire.Member{}
	}
	return ms
}

func printNodes(w io.Writer, ms []wire.Member, now time.Time) {
	tw := tabwriter.NewWriter(w, 2, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "CHEVRON\tNAME\tROLE\tSTATE\tLEADER\tTIER\tCAPS\tTAGS\tLOAD\tVERSION\tUPTIME")
	for _, m := range ms {
		leader := ""
		if m.Leader {
			leader = "*"
		}
		uptime := "-"
		if !m.Started.IsZero() && m.State != wire.StateOffline {
			uptime = fmtDuration(now.Sub(m.Started))
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%d\t%s\t%s\t%.2f\t%s\t%s\n", m.Chevron, m.Name, node.MemberRole(m), m.State, leader, m.Tier,
			orDash(strings.Join(m.Caps, ",")), orDash(fmtTags(m.Tags)), m.Load, orDash(m.Version), uptime)
	}
	tw.Flush()
}

func fmtTags(t map[string]string) string {
	keys := make([]string, 0, len(t))
	for k := range t {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	parts := make([]string, 0, len(keys))
	for _, k := range keys {
		if t[k] == "" {
			parts = append(parts, k)
		} else {
			parts = append(parts, k+"="+t[k])
		}
	}
	return strings.Join(parts, ",")
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

func fmtDuration(d time.Duration) string {
	switch {
	case d < time.Minute:
		return fmt.Sprintf("%ds", int(d.Seconds()))
	case d < time.Hour:
		return fmt.Sprintf("%dm%02ds", int(d.Minutes()), int(d.Seconds())%60)
	case d < 48*time.Hour:
		return fmt.Sprintf("%dh%02dm", int(d.Hours()), int(d.Minutes())%60)
	}
	return fmt.Sprintf("%dd%02dh", int(d.Hours())/24, int(d.Hours())%24)
}

// change is one line of `nodes --watch`.
type change struct {
	Time   time.Time   `json:"time"`
	Change string      `json:"change"` // join, leave, state, role, leader
	Node   wire.Member `json:"node"`
	Was    string      `json:"was,omitempty"`
}

// diffMembers lists what changed between two registry views.
func diffMembers(prev, cur []wire.Member, now time.Time) []change {
	old := map[string]wire.Member{}
	for _, m := range prev {
		old[m.Chevron] = m
	}
	var out []change
	seen := map[string]bool{}
	for _, m := range cur {
		seen[m.Chevron] = true
		p, ok := old[m.Chevron]
		switch {
		case !ok || (p.State == wire.StateOffline && m.State != wire.StateOffline):
			out = append(out, change{Time: now, Change: "join", Node: m, Was: p.State})
		case m.State == wire.StateOffline && p.State != wire.StateOffline:
			out = append(out, change{Time: now, Change: "leave", Node: m, Was: p.State})
		case m.State != p.State:
			out = append(out, change{Time: now, Change: "state", Node: m, Was: p.State})
		}
		if ok && p.State != wire.StateOffline && m.State != wire.StateOffline && node.MemberRole(m) != node.MemberRole(p) {
			out = append(out, change{Time: now, Change: "role", Node: m, Was: node.MemberRole(p)})
		}
		if ok && m.Leader && !p.Leader {
			out = append(out, change{Time: now, Change: "leader", Node: m})
		}
	}
	for _, p := range prev {
		if !seen[p.Chevron] && p.State != wire.StateOffline {
			p.State = wire.StateOffline
			out = append(out, change{Time: now, Change: "leave", Node: p, Was: old[p.Chevron].State})
		}
	}
	return out
}

func watchNodes(ctx context.Context, w io.Writer, asJSON bool, first []wire.Member, every time.Duration,
	fetch func(context.Context) ([]wire.Member, error)) error {
	if asJSON {
		enc := json.NewEncoder(w)
		for _, m := range first {
			if err := enc.Encode(change{Time: time.Now().UTC(), Change: "present", Node: m}); err != nil {
				return err
			}
		}
	} else {
		printNodes(w, first, time.Now())
		fmt.Fprintln(w)
	}
	prev := first
	t := time.NewTicker(every)
	defer t.Stop()
	failing := false
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
		qctx, cancel := context.WithTimeout(ctx, 2*time.Second)
		cur, err := fetch(qctx)
		cancel()
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			if !failing {
				fmt.Fprintf(w, "%s ! %v (retrying)\n", time.Now().Format("15:04:05.000"), err)
			}
			failing = true
			continue
		}
		failing = false
		for _, c := range diffMembers(prev, cur, time.Now().UTC()) {
			if asJSON {
				if err := json.NewEncoder(w).Encode(c); err != nil {
					return err
				}
				continue
			}
			mark := map[string]string{"join": "+", "leave": "-", "state": "~", "role": "~", "leader": "*"}[c.Change]
			detail := c.Node.State
			if c.Change == "leader" {
				detail = "is now the leader"
			} else if c.Change == "role" {
				detail = c.Was + " -> " + node.MemberRole(c.Node)
			} else if c.Was != "" {
				detail = c.Was + " -> " + c.Node.State
			}
			fmt.Fprintf(w, "%s %s %-10s %-12s %s\n", c.Time.Local().Format("15:04:05.000"), mark, c.Node.Chevron, c.Node.Name, detail)
		}
		prev = cur
	}
}

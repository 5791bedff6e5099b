package main

import (
	"fmt"
	"runtime"
	"runtime/debug"
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
			if st.Resilience != "" {
				fmt.Fprintf(tw, "failover\t%s\n", st.Resilience)
			}
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

// buildInfo is `robonet version --json`: the version and what the Go
// toolchain recorded in the binary.
type buildInfo struct {
	Version  string `json:"version"`
	Go       string `json:"go"`
	OS       string `json:"os"`
	Arch     string `json:"arch"`
	Path     string `json:"path,omitempty"`     // the main package's import path
	Revision string `json:"revision,omitempty"` // the VCS commit built, when built in a checkout
	Time     string `json:"time,omitempty"`     // the commit's time (RFC 3339)
	Modified bool   `json:"modified"`           // the checkout had uncommitted changes
	CGO      bool   `json:"cgo"`                // built with cgo (false: a static binary)
	Race     bool   `json:"race,omitempty"`     // built with the race detector
}

func readBuildInfo() buildInfo {
	b := buildInfo{Version: node.Version, Go: runtime.Version(), OS: runtime.GOOS, Arch: runtime.GOARCH}
	info, ok := debug.ReadBuildInfo()
	if !ok {
		return b
	}
	b.Path = info.Path
	for _, s := range info.Settings {
		switch s.Key {
		case "vcs.revision":
			b.Revision = s.Value
		case "vcs.time":
			b.Time = s.Value
		case "vcs.modified":
			b.Modified = s.Value == "true"
		case "CGO_ENABLED":
			b.CGO = s.Value == "1"
		case "-race":
			b.Race = s.Value == "true"
		}
	}
	return b
}

func newVersionCmd(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:   "version",
		Short: "Print robonet's version (--json: with the Go version, platform and commit it was built from)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			bi := readBuildInfo()
			if g.json {
				return printJSON(cmd.OutOrStdout(), bi)
			}
			fmt.Fprintln(cmd.OutOrStdout(), "robonet", node.Version)
			return nil
		},
	}
}

package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/robonet-mesh/robonet/federation"
	"github.com/robonet-mesh/robonet/mesh"
	"github.com/robonet-mesh/robonet/node"
	"github.com/robonet-mesh/robonet/wire"
)

func newFederationCmd(g *globals) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "federation",
		Short: "The federation of swarms this node's swarm belongs to",
		Args:  cobra.NoArgs,
	}
	cmd.AddCommand(&cobra.Command{
		Use:   "status",
		Short: "Show the tree of swarms as this node's directory knows it: links up or down, lag, last heard, nodes live/known",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctx := cmd.Context()
			c, err := g.connect(ctx)
			if err != nil {
				return err
			}
			defer c.Close()
			v, err := federation.ReadDirectory(ctx, c)
			if err != nil {
				return notFederated(err)
			}
			if g.json {
				return printJSON(cmd.OutOrStdout(), struct {
					federation.View
					Tree []*federation.TreeNode `json:"tree"`
				}{v, v.Tree()})
			}
			printFederation(cmd.OutOrStdout(), v)
			return nil
		},
	})
	return cmd
}

// notFederated explains a directory query nobody answered.
func notFederated(err error) error {
	if errors.Is(err, mesh.ErrNoResponse) {
		return fmt.Errorf("%w (is the node federated? robonet up --leaf-listen or --federate runs the directory)", err)
	}
	return err
}

func printFederation(w io.Writer, v federation.View) {
	role := "member"
	if v.Leader {
		role = "leader, publishes the summary"
	}
	parent := "none (a root)"
	if v.Parent != "" {
		parent = v.Parent
	}
	hub := ""
	if v.Hub {
		hub = ", hub"
	}
	fmt.Fprintf(w, "swarm %s (domain %s%s), parent %s; answered by %s (%s)\n", v.Swarm, v.Domain, hub, parent, v.Node, role)
	for _, l := range v.Links {
		state, dir := "down", "from"
		if l.Up {
			state = "up"
		}
		if l.Outbound {
			dir = "to"
		}
		since := ""
		if !l.Since.IsZero() {
			since = ", since " + fmtDuration(v.At.Sub(l.Since))
		}
		fmt.Fprintf(w, "  link %s %s (%s) %s, rtt %.1fms%s\n", dir, orDash(l.Swarm), orDash(l.Server), state, l.RTTMs, since)
	}
	tw := tabwriter.NewWriter(w, 2, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "SWARM\tROLE\tLINK\tLEADER\tLIVE/KNOWN\tLAG\tLAST HEARD\tREV")
	var walk func(ns []*federation.TreeNode, indent string, top bool)
	walk = func(ns []*federation.TreeNode, indent string, top bool) {
		for i, n := range ns {
			branch, more := "", ""
			if !top {
				branch, more = "├─ ", "│  "
				if i == len(ns)-1 {
					branch, more = "└─ ", "   "
				}
			}
			lag, heard := "-", "-"
			if n.Link != federation.LinkSelf && !n.LastHeard.IsZero() {
				lag = fmt.Sprintf("%.1fms", n.LagMs)
			}
			if !n.LastHeard.IsZero() {
				heard = fmtAgo(v.At.Sub(n.LastHeard))
			}
			link := n.Link
			if n.Via != "" {
				link += " (via " + n.Via + ")"
			}
			fmt.Fprintf(tw, "%s%s%s\t%s\t%s\t%s\t%d/%d\t%s\t%s\t%d\n", indent, branch, n.Prefix, n.Role, link,
				orDash(n.Leader), n.Live, n.Nodes, lag, heard, n.RegistryRev)
			walk(n.Children, indent+more, false)
		}
	}
	walk(v.Tree(), "", true)
	tw.Flush()
	if c := v.Counters; c.Refused() > 0 {
		fmt.Fprintf(w, "summaries: %d accepted, %d ignored (bad signature %d, wrong signer %d, leader not under its prefix %d, key mismatch %d, stale %d, malformed %d)\n",
			c.Accepted, c.Refused(), c.BadSignature, c.WrongSigner, c.NotUnder, c.KeyMismatch, c.Stale, c.Malformed)
	}
	if v.Kicks > 0 {
		fmt.Fprintf(w, "catch-up kicks sent: %d\n", v.Kicks)
	}
	if v.AggregateErr != "" {
		fmt.Fprintf(w, "durable streams: %s\n", v.AggregateErr)
	}
}

// fmtAgo is a short age: "0.4s ago", "12s ago", "3m05s ago".
func fmtAgo(d time.Duration) string {
	if d < 0 {
		d = 0
	}
	if d < 10*time.Second {
		return fmt.Sprintf("%.1fs ago", d.Seconds())
	}
	return fmtDuration(d) + " ago"
}

// nodesAll prints `robonet nodes --all`: the federated registry, or this
// swarm's alone (swarm "-") from a node that runs no directory.
func nodesAll(ctx context.Context, cmd *cobra.Command, g *globals, c *mesh.Client) error {
	fn, err := federation.ReadNodes(ctx, c)
	if errors.Is(err, mesh.ErrNoResponse) {
		ms, nerr := c.Nodes(ctx)
		if nerr != nil {
			return nerr
		}
		fmt.Fprintln(cmd.ErrOrStderr(), "robonet: this node runs no federated directory (not federated): its swarm only")
		for _, m := range ms {
			fn.Nodes = append(fn.Nodes, wire.FedMember{Member: m})
		}
	} else if err != nil {
		return err
	}
	for _, u := range fn.Unread {
		fmt.Fprintln(cmd.ErrOrStderr(), "robonet: not read: "+u)
	}
	if fn.Unverified > 0 {
		fmt.Fprintf(cmd.ErrOrStderr(), "robonet: %d registrations dropped: their signatures do not verify\n", fn.Unverified)
	}
	if g.json {
		if fn.Nodes == nil {
			fn.Nodes = []wire.FedMember{}
		}
		return printJSON(cmd.OutOrStdout(), fn.Nodes)
	}
	printFedNodes(cmd.OutOrStdout(), fn.Nodes, time.Now())
	return nil
}

func printFedNodes(w io.Writer, ms []wire.FedMember, now time.Time) {
	tw := tabwriter.NewWriter(w, 2, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "SWARM\tCHEVRON\tNAME\tROLE\tSTATE\tLEADER\tCAPS\tTAGS\tVERSION\tUPTIME")
	for _, m := range ms {
		leader := ""
		if m.Leader {
			leader = "*"
		}
		uptime := "-"
		if !m.Started.IsZero() && m.State == wire.StateAlive {
			uptime = fmtDuration(now.Sub(m.Started))
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", orDash(m.Swarm), m.Chevron, m.Name, node.MemberRole(m.Member), m.State, leader,
			orDash(strings.Join(m.Caps, ",")), orDash(fmtTags(m.Tags)), orDash(m.Version), uptime)
	}
	tw.Flush()
}

// federationFeature is the directory composed onto a started node.
type federationFeature struct {
	dir  *federation.Directory
	stop func()
}

// startFederation runs the federated directory beside a federated node
// (nothing for one that is not): on its own feature connection, signing
// with the node's signer.
func startFederation(ctx context.Context, n *node.Node, log *slog.Logger) (*federationFeature, error) {
	if !n.Federated() {
		return &federationFeature{stop: func() {}}, nil
	}
	fc, err := n.FeatureConn("directory")
	if err != nil {
		return nil, fmt.Errorf("federated directory: %w", err)
	}
	d, err := federation.NewDirectory(federation.DirectoryOptions{
		Conn: fc, Signer: n.Signer(), Local: n, Prefix: n.SwarmPrefix().String(),
		Parent: n.ParentPrefix, Hub: n.IsHub(), Links: func() []federation.Link { return leafLinks(n) },
		Logger: log.With("feature", "directory"),
	})
	if err == nil {
		err = d.Start(ctx)
	}
	if err != nil {
		fc.Close()
		return nil, fmt.Errorf("federated directory: %w", err)
	}
	return &federationFeature{dir: d, stop: func() {
		sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = d.Shutdown(sctx)
		fc.Close()
	}}, nil
}

// leafLinks are the node's leaf connections as the directory reports them.
func leafLinks(n *node.Node) []federation.Link {
	var out []federation.Link
	for _, l := range n.LeafLinks() {
		out = append(out, federation.Link{Swarm: l.Swarm, Server: l.Server, Domain: l.Domain, Up: l.Up, Outbound: l.Outbound,
			RTTMs: float64(l.RTT.Microseconds()) / 1000, Since: l.Since, InMsgs: l.InMsgs, OutMsgs: l.OutMsgs})
	}
	return out
}

package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"text/tabwriter"

	"github.com/nats-io/nats.go"
	"github.com/spf13/cobra"
	"golang.org/x/term"

	"github.com/robonet-mesh/robonet/federation"
	"github.com/robonet-mesh/robonet/mesh"
	"github.com/robonet-mesh/robonet/subjects"
	"github.com/robonet-mesh/robonet/wire"
)

// federatedRun runs req as a federated command when its selector reaches
// outside the connected node's swarm (`robonet run 3.12 ping` from 3.12.7);
// fed is false, and nothing is done, for a selector that stays inside, or
// when the node is not federated.
func federatedRun(ctx context.Context, cmd *cobra.Command, g *globals, c *mesh.Client, req mesh.GatherRequest) (fed bool, err error) {
	sel, err := subjects.ParseSelector(req.Selector)
	if err != nil {
		return false, nil // the in-swarm gather reports it
	}
	if _, ok := sel.Scope(); !ok {
		return false, nil
	}
	st, err := c.Status(ctx)
	if err != nil {
		return false, err
	}
	chev, err := subjects.Parse(st.Chevron)
	if err != nil {
		return false, nil
	}
	local, err := subjects.NodeSwarm(chev)
	if err != nil || !federation.IsFederated(sel, local) {
		return false, nil // a node outside any federated swarm, or a selector inside its swarm
	}
	view, err := federation.ReadDirectory(ctx, c)
	if errors.Is(err, nats.ErrNoResponders) {
		// No directory is served: the node is not federated (a swarm may
		// use four-token chevrons without federation), so the selector
		// means this swarm's nodes.
		return false, nil
	}
	if err != nil {
		return true, fmt.Errorf("%s reaches outside swarm %s, but the federated directory is not available from node %s: %w", req.Selector, local, st.Chevron, err)
	}
	dir := view.Swarms
	// The federated registry's keys (signed registrations, checked by the
	// node) pin who may answer for a chevron of another swarm; a chevron it
	// does not list is checked for consistency only (see Request.NodeKey).
	var nodeKey func(string) (string, bool)
	if fn, err := federation.ReadNodes(ctx, c); err == nil {
		nodeKey = fn.KeyOf()
	}
	members, err := c.Nodes(ctx)
	if err != nil {
		return true, err
	}
	stderr := cmd.ErrOrStderr()
	f, isFile := stderr.(*os.File)
	tty := !g.json && isFile && term.IsTerminal(int(f.Fd()))
	done := 0
	var progress func(federation.NodeResult)
	if tty {
		progress = func(federation.NodeResult) {
			done++
			fmt.Fprintf(stderr, "\r%s %s: %d answered…", req.Selector, req.Verb, done)
		}
	}
	res, err := federation.Gather(ctx, c, federation.Request{GatherRequest: req, Local: local, Members: members, Swarms: dir, NodeKey: nodeKey}, progress)
	if tty {
		fmt.Fprint(stderr, "\r\033[K")
	}
	if err != nil {
		return true, err
	}
	if g.json {
		if err := printJSON(cmd.OutOrStdout(), res); err != nil {
			return true, err
		}
	} else {
		printFedGather(cmd.OutOrStdout(), res)
	}
	for _, r := range res.Results {
		if r.Code == wire.CodeApprovalRequired {
			fmt.Fprintln(stderr, "robonet: a dangerous verb needs a quorum approval recorded in each target swarm (robonet run from inside that swarm asks for one)")
			break
		}
	}
	if !res.OK() {
		return true, exitError{code: 2, err: fmt.Errorf("%w: %s", errPartial, res.Summary.Line)}
	}
	return true, nil
}

// printFedGather prints the swarms, then every node, then the summary.
func printFedGather(w io.Writer, res federation.Result) {
	tw := tabwriter.NewWriter(w, 2, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "SWARM\tSTATUS\tAMBASSADOR\tEXPECTED\tANSWERED\tDETAIL")
	for _, s := range res.Swarms {
		var detail []string
		if s.Error != "" {
			detail = append(detail, s.Error)
		}
		if len(s.Offline) > 0 {
			detail = append(detail, "offline "+strings.Join(s.Offline, ","))
		}
		if len(s.Timeout) > 0 {
			detail = append(detail, "timeout "+strings.Join(s.Timeout, ","))
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%d\t%d\t%s\n", s.Swarm, s.Status, s.Ambassador, s.Expected, s.Answered, strings.Join(detail, "; "))
	}
	tw.Flush()
	fmt.Fprintln(w)
	g := mesh.GatherResult{Selector: res.Selector, Verb: res.Verb, Summary: res.Summary.Summary}
	for _, r := range res.Results {
		g.Results = append(g.Results, r.NodeResult)
	}
	printGather(w, g)
}
